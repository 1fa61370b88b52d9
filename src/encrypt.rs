//! Client-side encryption with age: recipients for writing, identities for reading.
//!
//! A backup with `encrypt-recipients` is compressed, then encrypted to every recipient in the
//! age format (v1, streaming: 64 KiB chunks, each authenticated), then uploaded. The writer
//! needs only public keys (X25519 `age1…`, or `ssh-ed25519` / `ssh-rsa`). Reading takes an
//! identity: the `AGE-SECRET-KEY-1…` lines `age-keygen` writes, or an unencrypted OpenSSH
//! private key. Nothing here ever prints key material: parse errors name the entry by its
//! position, and secret keys pasted into the wrong input are registered as secrets.

use std::fmt;
use std::io::{self, BufReader, Read};
use std::str::FromStr;

use anyhow::{Result, anyhow, bail};

/// The `encryption` value in metadata and manifests.
pub const SCHEME: &str = "age";

/// Key suffix of encrypted backups (after `.sql.zst` / `.sql`).
pub const EXTENSION: &str = ".age";

/// Content type of encrypted objects.
pub const CONTENT_TYPE: &str = "application/octet-stream";

/// How much of an encrypted object [`Identities::check_head`] needs: the header (a few
/// hundred bytes per recipient) and the first 64 KiB payload chunk.
pub const HEAD_BYTES: usize = 128 * 1024;

/// Why a recipient or identity was rejected (never contains key material).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct KeyError(pub String);

/// The public keys a backup is encrypted to.
pub struct Recipients {
    keys: Vec<Box<dyn age::Recipient + Send + Sync>>,
    /// The recipients as given (public keys; recorded in the manifest).
    pub text: Vec<String>,
}

impl fmt::Debug for Recipients {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Recipients").field(&self.text).finish()
    }
}

impl Recipients {
    /// Parse recipients, one per entry. Comment entries (`# …`) are skipped, as in age
    /// recipient files.
    pub fn parse(entries: &[String]) -> Result<Recipients, KeyError> {
        let mut keys: Vec<Box<dyn age::Recipient + Send + Sync>> = Vec::new();
        let mut text = Vec::new();
        for (i, entry) in entries.iter().enumerate() {
            let entry = entry.trim();
            if entry.is_empty() || entry.starts_with('#') {
                continue;
            }
            keys.push(parse_recipient(entry).map_err(|why| {
                KeyError(format!(
                    "recipient #{} ({}): {why}",
                    i + 1,
                    describe_entry(entry)
                ))
            })?);
            text.push(entry.to_string());
        }
        if keys.is_empty() {
            return Err(KeyError(
                "no recipient given: list age public keys (`age1…`, from `age-keygen -y key.txt`) or SSH public keys".into(),
            ));
        }
        Ok(Recipients { keys, text })
    }

    /// An age encryptor for these recipients.
    pub fn encryptor(&self) -> Result<age::Encryptor> {
        age::Encryptor::with_recipients(self.keys.iter().map(|k| k.as_ref() as &dyn age::Recipient))
            .map_err(|e| anyhow!("cannot encrypt to the given recipients: {e}"))
    }
}

/// How an entry is named in errors: its kind, never its value when it may be secret.
fn describe_entry(entry: &str) -> String {
    if is_secret_key(entry) {
        "a secret key".into()
    } else {
        let shown: String = entry.chars().take(16).collect();
        format!(
            "{shown:?}{}",
            if entry.chars().count() > 16 {
                "…"
            } else {
                ""
            }
        )
    }
}

fn is_secret_key(entry: &str) -> bool {
    let upper = entry.to_ascii_uppercase();
    upper.starts_with("AGE-SECRET-KEY-") || upper.contains("PRIVATE KEY")
}

fn parse_recipient(entry: &str) -> Result<Box<dyn age::Recipient + Send + Sync>, String> {
    if is_secret_key(entry) {
        crate::util::secrets::register(entry);
        return Err("this is a secret key and must not be on the runner; give its public key instead (`age-keygen -y key.txt` prints it)".into());
    }
    if entry.starts_with("age1") {
        return age::x25519::Recipient::from_str(entry)
            .map(|r| Box::new(r) as Box<dyn age::Recipient + Send + Sync>)
            .map_err(|e| format!("not a valid X25519 recipient: {e}"));
    }
    if entry.starts_with("ssh-") {
        return match age::ssh::Recipient::from_str(entry) {
            Ok(r) => Ok(Box::new(r)),
            Err(e) => Err(match e {
                age::ssh::ParseRecipientKeyError::RsaModulusTooSmall => {
                    "the ssh-rsa key is shorter than 2048 bits".into()
                }
                age::ssh::ParseRecipientKeyError::RsaModulusTooLarge => {
                    "the ssh-rsa key is longer than age supports".into()
                }
                age::ssh::ParseRecipientKeyError::Unsupported(kind) => {
                    format!("SSH key type {kind:?} is not supported; use ssh-ed25519 or ssh-rsa")
                }
                _ => "not a valid SSH public key (ssh-ed25519 or ssh-rsa)".into(),
            }),
        };
    }
    Err("not an age recipient: use an X25519 public key (`age1…`) or an SSH public key (`ssh-ed25519 …`, `ssh-rsa …`)".into())
}

/// Secret keys that can open backups.
pub struct Identities {
    keys: Vec<Box<dyn age::Identity + Send + Sync>>,
}

impl fmt::Debug for Identities {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Identities({} keys)", self.keys.len())
    }
}

impl Identities {
    /// Parse identity text: `AGE-SECRET-KEY-1…` lines (with `#` comments, as `age-keygen`
    /// writes them), or an unencrypted OpenSSH private key. `origin` names where it came from.
    pub fn parse(text: &str, origin: &str) -> Result<Identities, KeyError> {
        for line in text.lines() {
            let line = line.trim();
            if is_secret_key(line) && line.len() > 20 {
                crate::util::secrets::register(line);
            }
        }
        if text.contains("-----BEGIN") {
            return parse_ssh_identity(text, origin);
        }
        let file = age::IdentityFile::from_buffer(BufReader::new(text.as_bytes()))
            .map_err(|e| KeyError(format!("{origin}: {}", redact_key_error(&e.to_string()))))?;
        let keys = file
            .into_identities()
            .map_err(|e| KeyError(format!("{origin}: {e}")))?;
        if keys.is_empty() {
            return Err(KeyError(format!(
                "{origin} holds no identity (expected `AGE-SECRET-KEY-1…` lines from `age-keygen`)"
            )));
        }
        Ok(Identities { keys })
    }

    /// Read and parse an identity file.
    pub fn from_file(path: &std::path::Path) -> Result<Identities, KeyError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| KeyError(format!("cannot read {}: {e}", path.display())))?;
        Identities::parse(&text, &path.display().to_string())
    }

    /// Check that these identities decrypt the age file whose first bytes are `head`: the
    /// header must open and the first chunk must authenticate. `head` holds at least
    /// [`HEAD_BYTES`] bytes of the file, or all of it.
    pub fn check_head(&self, head: &[u8]) -> Result<()> {
        let mut plain = self.decrypt(head)?;
        let mut first = [0u8; 1];
        plain
            .read(&mut first)
            .map(|_| ())
            .map_err(|e| anyhow!("the first chunk does not decrypt: {e}"))
    }

    /// A reader of the plaintext of the age file `input`. The header is read first, line by
    /// line and at most [`MAX_HEADER_BYTES`] of it (see [`read_header`]), so a hostile header
    /// costs bounded time and memory.
    pub fn decrypt<R: Read>(&self, input: R) -> Result<Plaintext<R>> {
        let mut input = io::BufReader::new(input);
        let header = read_header(&mut input)?;
        let decryptor = age::Decryptor::new_buffered(io::Cursor::new(header).chain(input))
            .map_err(|e| match e {
                age::DecryptError::InvalidHeader | age::DecryptError::UnknownFormat => {
                    anyhow!("the object is not an age file, or not one this version can read ({e})")
                }
                age::DecryptError::Io(io) if io.kind() == std::io::ErrorKind::UnexpectedEof => {
                    anyhow!("the object is not an age file: it ends inside the age header")
                }
                e => anyhow!("reading the age header: {e}"),
            })?;
        decryptor
            .decrypt(self.keys.iter().map(|k| k.as_ref() as &dyn age::Identity))
            .map_err(|e| match e {
                age::DecryptError::NoMatchingKeys => anyhow!(
                    "none of the given identities can decrypt this backup: it was encrypted to other recipients (see `recipients` in its manifest)"
                ),
                e => anyhow!("decrypting: {e}"),
            })
    }
}

/// The plaintext of an age file read from `R` (its header already read whole, then the rest).
pub type Plaintext<R> = age::stream::StreamReader<io::Chain<io::Cursor<Vec<u8>>, io::BufReader<R>>>;

/// Longest age header accepted. A header is one short stanza per recipient (about 100 bytes
/// for X25519, 700 for ssh-rsa) and a MAC line; anything longer is not a backup of ours.
pub const MAX_HEADER_BYTES: usize = 64 * 1024;

/// Most lines an age header may have (stanza lines, their bodies, the version and the MAC).
pub const MAX_HEADER_LINES: usize = 2048;

/// Read an age header (through its `--- ` MAC line) in one pass. The age crate re-parses the
/// whole header each time it needs more bytes, which is quadratic in the header's size; a
/// header handed to it whole, and bounded here, is parsed once.
pub fn read_header<R: io::BufRead>(input: &mut R) -> Result<Vec<u8>> {
    let mut header = Vec::new();
    let mut line_start = 0;
    let mut lines = 0;
    loop {
        let available = match input.fill_buf() {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(anyhow!("reading the age header: {e}")),
        };
        if available.is_empty() {
            if header.is_empty() {
                bail!("the object is empty: not an age file");
            }
            bail!("the object is not an age file: it ends inside the age header");
        }
        let room = MAX_HEADER_BYTES + 1 - header.len();
        let take = available.len().min(room);
        let newline = available[..take].iter().position(|&b| b == b'\n');
        let used = newline.map_or(take, |i| i + 1);
        header.extend_from_slice(&available[..used]);
        input.consume(used);
        if newline.is_some() {
            lines += 1;
            let line = &header[line_start..];
            if lines == 1 && !line.starts_with(b"age-encryption.org/") {
                bail!("the object is not an age file (it does not start with an age header)");
            }
            if line.starts_with(b"--- ") {
                return Ok(header);
            }
            if lines >= MAX_HEADER_LINES {
                bail!(
                    "the age header has more than {MAX_HEADER_LINES} lines; not a backup written by d1-backup"
                );
            }
            line_start = header.len();
        }
        if header.len() > MAX_HEADER_BYTES {
            bail!(
                "the age header is over {MAX_HEADER_BYTES} bytes; not a backup written by d1-backup"
            );
        }
    }
}

fn parse_ssh_identity(text: &str, origin: &str) -> Result<Identities, KeyError> {
    let identity =
        age::ssh::Identity::from_buffer(BufReader::new(text.as_bytes()), None).map_err(|_| {
            KeyError(format!(
                "{origin} is not an OpenSSH private key age can use (ssh-ed25519 or ssh-rsa)"
            ))
        })?;
    match identity {
        age::ssh::Identity::Unencrypted(_) => Ok(Identities {
            keys: vec![Box::new(identity)],
        }),
        age::ssh::Identity::Encrypted(_) => Err(KeyError(format!(
            "{origin} is a passphrase-protected SSH key, which cannot be used unattended; use an age identity (`age-keygen`) or an unencrypted key"
        ))),
        age::ssh::Identity::Unsupported(_) => Err(KeyError(format!(
            "{origin}: this SSH key type is not supported by age; use ssh-ed25519 or ssh-rsa"
        ))),
    }
}

/// age's identity-file errors name a line number, never its contents; keep it that way even if
/// a future version changes.
fn redact_key_error(message: &str) -> String {
    if message.contains("AGE-SECRET-KEY") || message.contains("PRIVATE KEY") {
        "the identity text could not be parsed".into()
    } else {
        message.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn keypair() -> (String, String) {
        let id = age::x25519::Identity::generate();
        (
            id.to_public().to_string(),
            age::secrecy::ExposeSecret::expose_secret(&id.to_string()).to_string(),
        )
    }

    #[test]
    fn recipient_parsing_table() {
        let (public, secret) = keypair();
        let ssh_ed = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHsKLqeplhpW+uObz5dvMgjz1OxfM/XXUB+VHtZ6isGN alice@rust";
        let cases: Vec<(Vec<String>, Result<usize, &str>)> = vec![
            (vec![public.clone()], Ok(1)),
            (vec![public.clone(), ssh_ed.into()], Ok(2)),
            (vec!["# ops team".into(), public.clone(), "".into()], Ok(1)),
            (vec![], Err("no recipient given")),
            (vec!["# only a comment".into()], Err("no recipient given")),
            (
                vec!["age1notakey".into()],
                Err("not a valid X25519 recipient"),
            ),
            (vec![secret.clone()], Err("this is a secret key")),
            (vec!["hello".into()], Err("not an age recipient")),
            (
                vec!["ssh-ed25519 AAAA".into()],
                Err("not a valid SSH public key"),
            ),
            (vec![public.clone(), "age1bad".into()], Err("recipient #2")),
        ];
        for (entries, want) in cases {
            let got = Recipients::parse(&entries);
            match (got, want) {
                (Ok(r), Ok(n)) => assert_eq!(r.keys.len(), n, "{entries:?}"),
                (Err(e), Err(needle)) => {
                    assert!(e.0.contains(needle), "{entries:?}: {e}");
                    assert!(!e.0.contains(&secret), "secret key echoed: {e}");
                }
                (got, want) => panic!("{entries:?}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn identities_parse_and_errors_never_echo_keys() {
        let (_, secret) = keypair();
        let file = format!("# created: 2026-11-28\n# public key: age1…\n{secret}\n");
        assert_eq!(Identities::parse(&file, "x").unwrap().keys.len(), 1);
        for bad in [
            "",
            "# nothing\n",
            "AGE-SECRET-KEY-1NOTAREALKEY",
            &secret[..secret.len() - 3],
        ] {
            let e = Identities::parse(bad, "age-identity").unwrap_err();
            assert!(e.0.starts_with("age-identity"), "{e}");
            let body = bad.trim().trim_start_matches("AGE-SECRET-KEY-1");
            assert!(body.is_empty() || !e.0.contains(body), "key echoed: {e}");
        }
        let e = Identities::parse(
            "-----BEGIN OPENSSH PRIVATE KEY-----\nnope\n-----END OPENSSH PRIVATE KEY-----\n",
            "key.txt",
        )
        .unwrap_err();
        assert!(e.0.contains("not an OpenSSH private key"), "{e}");
    }

    /// Headers are read once, bounded: many recipients decrypt, a hostile header (hundreds of
    /// kilobytes of stanzas) is refused at once, whatever its shape.
    #[test]
    fn age_headers_are_bounded() {
        let ids: Vec<age::x25519::Identity> =
            (0..40).map(|_| age::x25519::Identity::generate()).collect();
        let mut out = Vec::new();
        {
            let publics: Vec<age::x25519::Recipient> = ids.iter().map(|i| i.to_public()).collect();
            let enc =
                age::Encryptor::with_recipients(publics.iter().map(|r| r as &dyn age::Recipient))
                    .unwrap();
            let mut w = enc.wrap_output(&mut out).unwrap();
            w.write_all(b"forty recipients").unwrap();
            w.finish().unwrap();
        }
        let last = Identities::parse(
            age::secrecy::ExposeSecret::expose_secret(&ids[39].to_string()),
            "test",
        )
        .unwrap();
        let mut plain = Vec::new();
        last.decrypt(&out[..])
            .unwrap()
            .read_to_end(&mut plain)
            .unwrap();
        assert_eq!(plain, b"forty recipients");

        let stanzas = |n: usize, line: &str| {
            let mut h = b"age-encryption.org/v1\n".to_vec();
            for _ in 0..n {
                h.extend_from_slice(line.as_bytes());
            }
            h.extend_from_slice(b"--- AAAA\n");
            h.extend_from_slice(&[0u8; 64]);
            h
        };
        for (what, hostile) in [
            ("400 KB of short stanzas", stanzas(80_000, "-> a\n")),
            (
                "400 KB of stanza bodies",
                stanzas(
                    6_000,
                    "-> X25519 AAAA\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\n",
                ),
            ),
            ("one 400 KB line", {
                let mut h = b"age-encryption.org/v1\n-> ".to_vec();
                h.extend(std::iter::repeat_n(b'A', 400_000));
                h
            }),
        ] {
            let started = std::time::Instant::now();
            let e = last.decrypt(&hostile[..]).err().unwrap().to_string();
            assert!(e.contains("age header"), "{what}: {e}");
            assert!(
                started.elapsed() < std::time::Duration::from_secs(1),
                "{what}: {:?}",
                started.elapsed()
            );
        }
    }

    #[test]
    fn encrypt_then_decrypt_round_trip() {
        let id = age::x25519::Identity::generate();
        let rec = Recipients::parse(&[id.to_public().to_string()]).unwrap();
        let ids = Identities::parse(
            age::secrecy::ExposeSecret::expose_secret(&id.to_string()),
            "test",
        )
        .unwrap();
        let mut out = Vec::new();
        {
            let enc = age::Encryptor::with_recipients(
                rec.keys.iter().map(|k| k.as_ref() as &dyn age::Recipient),
            )
            .unwrap();
            let mut w = enc.wrap_output(&mut out).unwrap();
            w.write_all(&vec![7u8; 200_000]).unwrap();
            w.finish().unwrap();
        }
        assert!(out.starts_with(b"age-encryption.org/v1\n"));
        let mut plain = Vec::new();
        ids.decrypt(&out[..])
            .unwrap()
            .read_to_end(&mut plain)
            .unwrap();
        assert_eq!(plain, vec![7u8; 200_000]);

        let other = Identities::parse(
            age::secrecy::ExposeSecret::expose_secret(
                &age::x25519::Identity::generate().to_string(),
            ),
            "other",
        )
        .unwrap();
        let e = other.decrypt(&out[..]).err().unwrap().to_string();
        assert!(e.contains("none of the given identities"), "{e}");
        let e = ids.decrypt(&b"(zstd bytes)"[..]).err().unwrap().to_string();
        assert!(e.contains("not an age file"), "{e}");
    }
}
