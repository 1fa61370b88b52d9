//! Writing a backup: the dump is compressed (zstd) and hashed on its own thread
//! ([`compress`]), encrypted when asked (age), and streamed into the store through bounded
//! channels ([`pipeline`]); [`backup`] runs one backup of a source end to end and records its
//! manifest.

pub(crate) mod backup;
pub(crate) mod compress;
pub(crate) mod encrypt;
pub(crate) mod pipeline;
