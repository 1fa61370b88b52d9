//! Signed manifests: an OpenSSH signature (SSHSIG, what `ssh-keygen -Y sign` writes and git
//! uses for signed commits) over a manifest's exact bytes.
//!
//! The manifest records the object's size and SHA-256, so a valid signature on the manifest
//! covers the whole backup: a reader that checks the signature and then the object against the
//! manifest (as [`crate::read::stored`] does) trusts nothing a bucket writer could forge. Keys
//! are ed25519 only; the namespace is [`NAMESPACE`]. Anyone can check a signature with stock
//! OpenSSH:
//!
//! ```text
//! echo "d1-backup $(cat key.pub)" > allowed_signers
//! ssh-keygen -Y verify -f allowed_signers -I d1-backup -n d1-backup -s m.json.sig < m.json
//! ```

use std::fmt;

use ssh_key::{Algorithm, HashAlg, LineEnding, PrivateKey, PublicKey, SshSig};

use crate::util::secrets;

/// The SSHSIG namespace of every d1-backup signature.
pub const NAMESPACE: &str = "d1-backup";

/// A key-text problem, in words (the caller names the input).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyError(pub String);

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for KeyError {}

/// The private key that signs manifests.
pub struct SigningKey {
    key: PrivateKey,
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SigningKey({})", self.fingerprint())
    }
}

impl SigningKey {
    /// Parse an unencrypted OpenSSH ed25519 private key (`-----BEGIN OPENSSH PRIVATE KEY-----`).
    /// The text (and each of its lines) is registered as a secret before anything else.
    pub fn parse(text: &str) -> Result<SigningKey, KeyError> {
        secrets::register(text);
        for line in text.lines() {
            secrets::register(line);
        }
        let key = PrivateKey::from_openssh(text.trim()).map_err(|_| {
            KeyError(
                "not an OpenSSH private key (expected the text of a file that starts with `-----BEGIN OPENSSH PRIVATE KEY-----`, as `ssh-keygen -t ed25519` writes it)".into(),
            )
        })?;
        if key.is_encrypted() {
            return Err(KeyError(
                "the private key is protected by a passphrase; a job cannot type it (store an unencrypted copy as a secret)".into(),
            ));
        }
        if key.algorithm() != Algorithm::Ed25519 {
            return Err(KeyError(format!(
                "the private key is {}; only ed25519 keys sign backups (`ssh-keygen -t ed25519`)",
                key.algorithm()
            )));
        }
        Ok(SigningKey { key })
    }

    /// The armored SSHSIG signature of `message`.
    pub fn sign(&self, message: &[u8]) -> anyhow::Result<String> {
        let sig = self
            .key
            .sign(NAMESPACE, HashAlg::Sha512, message)
            .map_err(|e| anyhow::anyhow!("signing the manifest failed: {e}"))?;
        sig.to_pem(LineEnding::LF)
            .map_err(|e| anyhow::anyhow!("encoding the signature failed: {e}"))
    }

    /// The public key's SHA-256 fingerprint (`SHA256:…`).
    pub fn fingerprint(&self) -> String {
        self.key
            .public_key()
            .fingerprint(HashAlg::Sha256)
            .to_string()
    }
}

/// Why a manifest's signature is not accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignatureProblem {
    /// No signature object beside the manifest.
    Unsigned,
    /// A valid-looking signature by a key that is not trusted (its fingerprint).
    OtherKey(String),
    /// The signature does not verify (the manifest was changed, or it is not a signature).
    Invalid(String),
}

impl fmt::Display for SignatureProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SignatureProblem::Unsigned => f.write_str("it is not signed"),
            SignatureProblem::OtherKey(fp) => {
                write!(f, "it is signed by {fp}, which is not a trusted key")
            }
            SignatureProblem::Invalid(why) => write!(f, "its signature is not valid ({why})"),
        }
    }
}

impl std::error::Error for SignatureProblem {}

/// The public keys a manifest's signature must come from.
#[derive(Debug, Clone)]
pub struct VerifyKeys {
    keys: Vec<PublicKey>,
}

impl VerifyKeys {
    /// One `ssh-ed25519 AAAA… [comment]` key per line (blank lines and `#` comments skipped).
    pub fn parse(text: &str) -> Result<VerifyKeys, KeyError> {
        let mut keys = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            if line.contains("PRIVATE KEY") {
                secrets::register(text);
                return Err(KeyError(
                    "this is a private key; give its public key (`ssh-keygen -y -f key` prints it)"
                        .into(),
                ));
            }
            let key = PublicKey::from_openssh(line).map_err(|_| {
                KeyError(format!(
                    "line {}: not an OpenSSH public key (expected `ssh-ed25519 AAAA…`)",
                    i + 1
                ))
            })?;
            if key.algorithm() != Algorithm::Ed25519 {
                return Err(KeyError(format!(
                    "line {}: {} keys do not sign backups; give an ssh-ed25519 key",
                    i + 1,
                    key.algorithm()
                )));
            }
            keys.push(key);
        }
        if keys.is_empty() {
            return Err(KeyError("no public key given".into()));
        }
        Ok(VerifyKeys { keys })
    }

    /// Checks `signature` (armored SSHSIG, if any) over `message`.
    pub fn verify(&self, message: &[u8], signature: Option<&[u8]>) -> Result<(), SignatureProblem> {
        let Some(armored) = signature else {
            return Err(SignatureProblem::Unsigned);
        };
        let sig = SshSig::from_pem(armored)
            .map_err(|_| SignatureProblem::Invalid("not an SSH signature".into()))?;
        if sig.namespace() != NAMESPACE {
            return Err(SignatureProblem::Invalid(format!(
                "made for namespace {:?}, not {NAMESPACE:?}",
                sig.namespace()
            )));
        }
        let Some(key) = self.keys.iter().find(|k| k.key_data() == sig.public_key()) else {
            let fp = PublicKey::from(sig.public_key().clone())
                .fingerprint(HashAlg::Sha256)
                .to_string();
            return Err(SignatureProblem::OtherKey(fp));
        };
        key.verify(NAMESPACE, message, &sig).map_err(|_| {
            SignatureProblem::Invalid("the manifest was changed after it was signed".into())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `ssh-keygen -t ed25519 -N '' -C test` (test keys only).
    const PRIVATE: &str = "-----BEGIN OPENSSH PRIVATE KEY-----
b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW
QyNTUxOQAAACA6vFqOZuZPmxDZzvzEexUBjBJM/tOEvUU7itGzXT7uWwAAAIjPBgVazwYF
WgAAAAtzc2gtZWQyNTUxOQAAACA6vFqOZuZPmxDZzvzEexUBjBJM/tOEvUU7itGzXT7uWw
AAAEAtUm0JGZrjOytTKd/pZqtEEPtesNZLMXCmvpQzIghXwjq8Wo5m5k+bENnO/MR7FQGM
Ekz+04S9RTuK0bNdPu5bAAAABHRlc3QB
-----END OPENSSH PRIVATE KEY-----
";
    const PUBLIC: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDq8Wo5m5k+bENnO/MR7FQGMEkz+04S9RTuK0bNdPu5b test";
    const OTHER_PUBLIC: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBnNrz6CdMRisLa0JEHOW90/VFKGsqx8ARW3B6ClC2+6 other";

    #[test]
    fn signs_and_verifies() {
        let key = SigningKey::parse(PRIVATE).unwrap();
        let sig = key.sign(b"manifest").unwrap();
        assert!(sig.starts_with("-----BEGIN SSH SIGNATURE-----"));
        let trusted = VerifyKeys::parse(&format!("# ours\n{PUBLIC}\n")).unwrap();
        assert_eq!(trusted.verify(b"manifest", Some(sig.as_bytes())), Ok(()));
        assert!(matches!(
            trusted.verify(b"manifest!", Some(sig.as_bytes())),
            Err(SignatureProblem::Invalid(_))
        ));
        assert_eq!(
            trusted.verify(b"manifest", None),
            Err(SignatureProblem::Unsigned)
        );
        assert!(matches!(
            trusted.verify(b"manifest", Some(b"garbage")),
            Err(SignatureProblem::Invalid(_))
        ));
        let others = VerifyKeys::parse(OTHER_PUBLIC).unwrap();
        assert_eq!(
            others.verify(b"manifest", Some(sig.as_bytes())),
            Err(SignatureProblem::OtherKey(key.fingerprint()))
        );
    }

    #[test]
    fn bad_keys_are_refused() {
        assert!(SigningKey::parse("AGE-SECRET-KEY-1XYZ").is_err());
        assert!(SigningKey::parse(PUBLIC).is_err());
        assert!(VerifyKeys::parse("").is_err());
        assert!(VerifyKeys::parse("ssh-ed25519 notbase64").is_err());
        assert!(VerifyKeys::parse(PRIVATE).is_err());
    }
}
