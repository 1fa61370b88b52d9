//! Writing a backup: the dump is compressed (zstd) and hashed on its own thread
//! ([`compress`]), encrypted when asked (age), and streamed into the store through bounded
//! channels ([`pipeline`]); [`backup`] runs one backup of a source end to end and records its
//! manifest.

pub mod backup;
pub mod compress;
pub mod pipeline;
