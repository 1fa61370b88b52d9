//! Reading backups back, trusting nothing the store says until it is checked: the one
//! verified reader of stored objects ([`stored`], over [`codec`]: decrypt and decompress),
//! loading SQL the way D1 imports it ([`load`]), verification ([`verify`]) and restore to a
//! file or into D1 ([`restore`]).

pub(crate) mod codec;
pub mod load;
pub(crate) mod restore;
pub(crate) mod stored;
pub(crate) mod verify;
