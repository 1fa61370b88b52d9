//! Turning stored bytes back into SQL: age decryption (for encrypted backups), then zstd.
//!
//! Verify and restore both read backups through [`sql_reader`], driven by what the manifest
//! says about the object, so the two can never disagree about the format.

use std::io::Read;

use anyhow::{Context, Result, anyhow};

use crate::encrypt::{self, Identities};
use crate::manifest::Manifest;

/// Whether the backup is encrypted (and with what).
pub fn is_encrypted(m: &Manifest) -> bool {
    m.encryption.is_some()
}

/// An encrypted backup was to be read without an identity.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "backup {key} is encrypted with age; give the secret key that matches one of its recipients"
)]
pub struct IdentityNeeded {
    pub key: String,
}

/// The error for an encrypted backup read without an identity.
pub fn identity_needed(m: &Manifest) -> IdentityNeeded {
    IdentityNeeded { key: m.key.clone() }
}

/// The SQL inside `object` (the stored bytes of `m`'s backup).
pub fn sql_reader<'a, R: Read + Send + 'a>(
    object: R,
    m: &Manifest,
    identities: Option<&Identities>,
) -> Result<Box<dyn Read + Send + 'a>> {
    let plain: Box<dyn Read + Send + 'a> = match m.encryption.as_deref() {
        None => Box::new(object),
        Some(encrypt::SCHEME) => {
            let ids = identities.ok_or_else(|| identity_needed(m))?;
            Box::new(ids.decrypt(object)?)
        }
        Some(other) => {
            return Err(anyhow!(
                "backup {} uses encryption {other:?}, which this version cannot read",
                m.key
            ));
        }
    };
    Ok(match m.compression.as_str() {
        "zstd" => Box::new(zstd::stream::read::Decoder::new(plain).context("starting zstd")?),
        "none" => plain,
        other => return Err(anyhow!("unknown compression {other:?} in the manifest")),
    })
}
