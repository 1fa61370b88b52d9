//! Record and replay of the fake's answers, so a benchmark can measure d1-backup without the
//! cost of the fake's SQLite work.
//!
//! With [`crate::Options::record`] the fake runs as usual and also writes every answer it gives
//! under `/client/v4` and every signed-URL export download to a directory. With
//! [`crate::Options::replay`] it answers those requests from the directory and runs no SQL at
//! all: it looks the request up and streams the stored body from disk in 256 KiB reads, with the
//! stored status and headers. A request with no recording gets HTTP 500 with a D1 error
//! envelope (code 7500, `replay: no recording for METHOD PATH[?QUERY]`) and a line on stderr.
//!
//! **Key.** A request is known by its method, path, query string and the SHA-256 of its body:
//! `"{METHOD} {path}[?{query}]\n{hex SHA-256 of the body}"`, whose own SHA-256 (hex) names the
//! files. The query is normalized: `timestamp` parameters (a Time Travel lookup by time) are
//! dropped; the other parameters keep their order. Nothing else in d1-backup's requests varies
//! from run to run: export polls carry the bookmark the fake answered (derived from the
//! database uuid and its write count), and the signed download URL is the one the replayed
//! export answer hands out. Small answers (up to 64 KiB) that contain the recording server's
//! origin (`http://127.0.0.1:PORT`, in a signed URL) get the replaying server's origin instead.
//!
//! **Files.** `DIR/<key hash>-<n>.rec`, n = 0, 1, 2… for the distinct answers given to one key,
//! in the order they were given; an answer identical to the key's previous one is not stored
//! again (so a recording keeps every answer, and repeated identical ones once). Each file is a
//! text header, `name value` per line, ended by an empty line, then the body to the end of the
//! file:
//!
//! ```text
//! fake-d1-recording 1
//! key POST /client/v4/accounts/<account>/d1/database/<uuid>/raw
//! body-sha256 <hex>
//! status 200
//! header content-type application/json
//! rows-read 1000
//!
//! {"result":[…
//! ```
//!
//! `header` lines (any number) are response headers: `content-type`, `retry-after` (a 429),
//! `content-length` (a HEAD answer, whose stored body is empty); without one, the body's length
//! is sent. An `origin` line marks a body holding that origin. A file is written under a
//! temporary name in the directory and renamed into place. One recorder per directory; a new
//! recorder continues the numbering of the files already there.
//!
//! **Replay order.** The n-th request for a key (from 0, since the replaying server started)
//! gets answer n modulo the number of answers: an export's polls replay "active", "active",
//! "complete" in order, and the next run of the same backup replays the same sequence again.
//! Faults, the rate limit and the databases' files play no part in a replay.
//!
//! A building block: it imports only `reply` and `util`.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use axum::body::Body;
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::response::Response;
use futures_util::StreamExt;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio_util::io::ReaderStream;

use crate::reply::Reply;
use crate::util::uuid_for;

/// Read size when streaming a stored body (and the header reader's buffer).
const READ_CHUNK: usize = 256 << 10;
/// Bodies up to this size are searched for the server's origin when recorded.
const ORIGIN_SCAN_MAX: usize = 64 << 10;
/// First line of every recording.
const MAGIC: &str = "fake-d1-recording 1";
/// Longest header line read back.
const MAX_LINE: u64 = 64 << 10;
/// Query parameters left out of the key.
const DROPPED_PARAMS: &[&str] = &["timestamp"];

/// What the fake does with answers: serve them live, also record them, or replay them.
pub enum Mode {
    Live,
    Record(Arc<Recorder>),
    Replay(Player),
}

impl Mode {
    /// The mode for `--record DIR` / `--replay DIR` (at most one of them).
    pub fn open(record: Option<&Path>, replay: Option<&Path>) -> Result<Mode, String> {
        match (record, replay) {
            (Some(_), Some(_)) => Err("--record and --replay exclude each other".to_string()),
            (Some(dir), None) => Ok(Mode::Record(Arc::new(Recorder::open(dir)?))),
            (None, Some(dir)) => Ok(Mode::Replay(Player::open(dir)?)),
            (None, None) => Ok(Mode::Live),
        }
    }
}

/// The key of one request; see the module documentation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Key {
    /// `METHOD path[?query]`, the query normalized.
    pub request: String,
    /// Hex SHA-256 of the request body.
    pub body_sha256: String,
    /// Hex SHA-256 of `request`, a newline and `body_sha256`: the file name stem.
    pub hash: String,
}

impl Key {
    /// The key of a request whose body is in memory.
    pub fn new(method: &str, path: &str, query: Option<&str>, body: &[u8]) -> Key {
        Key::with_digest(method, path, query, &hex::encode(Sha256::digest(body)))
    }

    /// The key of a request whose body is still to be read: hashes it as it arrives. Also
    /// returns its first 300 bytes (lossy UTF-8), for the request log. A body that breaks off
    /// is keyed by what arrived.
    pub async fn read(method: &str, path: &str, query: Option<&str>, body: Body) -> (Key, String) {
        let mut hasher = Sha256::new();
        let mut head = Vec::new();
        let mut stream = body.into_data_stream();
        while let Some(Ok(chunk)) = stream.next().await {
            if head.len() < 300 {
                let take = (300 - head.len()).min(chunk.len());
                head.extend_from_slice(&chunk[..take]);
            }
            hasher.update(&chunk);
        }
        let digest = hex::encode(hasher.finalize());
        (
            Key::with_digest(method, path, query, &digest),
            String::from_utf8_lossy(&head).into_owned(),
        )
    }

    fn with_digest(method: &str, path: &str, query: Option<&str>, body_sha256: &str) -> Key {
        let request = match normalize_query(query) {
            Some(q) => format!("{method} {path}?{q}"),
            None => format!("{method} {path}"),
        };
        let hash = hex::encode(Sha256::digest(format!("{request}\n{body_sha256}")));
        Key {
            request,
            body_sha256: body_sha256.to_string(),
            hash,
        }
    }
}

/// The query without the [`DROPPED_PARAMS`]; `None` when nothing is left.
fn normalize_query(query: Option<&str>) -> Option<String> {
    let kept: Vec<&str> = query?
        .split('&')
        .filter(|pair| {
            let name = pair.split_once('=').map_or(*pair, |(n, _)| n);
            !pair.is_empty() && !DROPPED_PARAMS.contains(&name)
        })
        .collect();
    (!kept.is_empty()).then(|| kept.join("&"))
}

/// The uuid the fake gives the database a path names (by uuid or by name).
pub fn database_uuid(reference: &str) -> String {
    let b = reference.as_bytes();
    let is_uuid = b.len() == 36
        && b.iter().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => *c == b'-',
            _ => c.is_ascii_hexdigit(),
        });
    if is_uuid {
        reference.to_string()
    } else {
        uuid_for(reference)
    }
}

/// The header of a recording: what is sent besides the body.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Head {
    status: u16,
    /// Response headers, lowercase names.
    headers: Vec<(String, String)>,
    rows_read: u64,
    /// The body holds this origin (the recording server's).
    origin: Option<String>,
}

impl Head {
    fn of_reply(reply: &Reply, origin: &str) -> Head {
        let mut headers = Vec::new();
        if !reply.content_type.is_empty() {
            headers.push(("content-type".to_string(), reply.content_type.to_string()));
        }
        headers.extend(
            reply
                .headers
                .iter()
                .map(|(n, v)| (n.to_ascii_lowercase(), v.clone())),
        );
        let holds_origin = !origin.is_empty()
            && reply.body.len() <= ORIGIN_SCAN_MAX
            && find(&reply.body, origin.as_bytes()).is_some();
        Head {
            status: reply.status,
            headers,
            rows_read: reply.rows_read,
            origin: holds_origin.then(|| origin.to_string()),
        }
    }

    fn encode(&self, key: &Key) -> String {
        let mut out = format!(
            "{MAGIC}\nkey {}\nbody-sha256 {}\nstatus {}\n",
            key.request, key.body_sha256, self.status
        );
        for (name, value) in &self.headers {
            out.push_str(&format!("header {name} {value}\n"));
        }
        out.push_str(&format!("rows-read {}\n", self.rows_read));
        if let Some(o) = &self.origin {
            out.push_str(&format!("origin {o}\n"));
        }
        out.push('\n');
        out
    }

    /// Reads one header line (not the first, not the empty last one).
    fn parse_line(&mut self, line: &str) -> Result<(), String> {
        let (name, value) = line.split_once(' ').unwrap_or((line, ""));
        let number = |v: &str| {
            v.parse::<u64>()
                .map_err(|e| format!("bad header line {line:?}: {e}"))
        };
        match name {
            "key" | "body-sha256" => {}
            "status" => {
                self.status = u16::try_from(number(value)?)
                    .map_err(|e| format!("bad header line {line:?}: {e}"))?;
            }
            "header" => {
                let (n, v) = value.split_once(' ').unwrap_or((value, ""));
                self.headers.push((n.to_string(), v.to_string()));
            }
            "rows-read" => self.rows_read = number(value)?,
            "origin" => self.origin = Some(value.to_string()),
            // Lines from a later version are skipped.
            _ => {}
        }
        Ok(())
    }
}

/// Where the first `needle` is in `hay`.
fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() {
        return None;
    }
    hay.windows(needle.len()).position(|w| w == needle)
}

/// `hay` with every `from` replaced by `to`.
fn replace_all(hay: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(hay.len());
    let mut rest = hay;
    while let Some(i) = find(rest, from) {
        out.extend_from_slice(&rest[..i]);
        out.extend_from_slice(to);
        rest = &rest[i + from.len()..];
    }
    out.extend_from_slice(rest);
    out
}

/// The recordings in `dir`: key hash → the answer numbers there, ascending.
fn scan(dir: &Path) -> io::Result<HashMap<String, Vec<u64>>> {
    let mut found: HashMap<String, Vec<u64>> = HashMap::new();
    for entry in std::fs::read_dir(dir)? {
        let name = entry?.file_name();
        let Some(stem) = name.to_str().and_then(|n| n.strip_suffix(".rec")) else {
            continue;
        };
        let Some((hash, n)) = stem.rsplit_once('-') else {
            continue;
        };
        if let Ok(n) = n.parse::<u64>()
            && hash.len() == 64
        {
            found.entry(hash.to_string()).or_default().push(n);
        }
    }
    for answers in found.values_mut() {
        answers.sort_unstable();
    }
    Ok(found)
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// What a key's answers so far look like.
#[derive(Debug, Default)]
struct Stored {
    /// Number of the next answer.
    next: u64,
    /// SHA-256 of the whole file of the key's last answer (when hashed).
    last: Option<Vec<u8>>,
}

/// Writes answers to a recording directory.
pub struct Recorder {
    dir: PathBuf,
    keys: Mutex<HashMap<String, Stored>>,
    tmp: AtomicU64,
}

impl Recorder {
    /// Records into `dir` (created if missing), after the answers already there.
    pub fn open(dir: &Path) -> Result<Recorder, String> {
        std::fs::create_dir_all(dir).map_err(|e| format!("--record {}: {e}", dir.display()))?;
        let found = scan(dir).map_err(|e| format!("--record {}: {e}", dir.display()))?;
        let keys = found
            .into_iter()
            .map(|(hash, answers)| {
                let next = answers.last().map_or(0, |n| n + 1);
                (hash, Stored { next, last: None })
            })
            .collect();
        Ok(Recorder {
            dir: dir.to_path_buf(),
            keys: Mutex::new(keys),
            tmp: AtomicU64::new(0),
        })
    }

    fn tmp_path(&self) -> PathBuf {
        let n = self.tmp.fetch_add(1, Ordering::Relaxed);
        self.dir
            .join(format!(".tmp-{}-{n}.part", std::process::id()))
    }

    /// Writes the header and then the body `write_body` produces to a temporary file, and
    /// moves it into place; with `hash_body`, an answer identical to the key's last one is
    /// dropped instead.
    fn save(
        &self,
        key: &Key,
        head: &Head,
        hash_body: Option<&[u8]>,
        write_body: impl FnOnce(&mut File) -> io::Result<()>,
    ) -> io::Result<()> {
        let tmp = self.tmp_path();
        let header = head.encode(key);
        let written = File::create(&tmp).and_then(|mut f| {
            f.write_all(header.as_bytes())?;
            write_body(&mut f)?;
            f.flush()
        });
        if let Err(e) = written {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
        let digest = hash_body.map(|body| {
            let mut h = Sha256::new();
            h.update(header.as_bytes());
            h.update(body);
            h.finalize().to_vec()
        });
        let mut keys = lock(&self.keys);
        let stored = keys.entry(key.hash.clone()).or_default();
        if digest.is_some() && stored.last == digest {
            drop(keys);
            return std::fs::remove_file(&tmp);
        }
        let path = self.dir.join(format!("{}-{}.rec", key.hash, stored.next));
        if let Err(e) = std::fs::rename(&tmp, &path) {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
        stored.next += 1;
        stored.last = digest;
        Ok(())
    }

    /// Records an answer whose body is in memory. Blocking.
    fn save_reply(&self, key: &Key, reply: &Reply, origin: &str) -> io::Result<()> {
        let head = Head::of_reply(reply, origin);
        self.save(key, &head, Some(&reply.body), |f| f.write_all(&reply.body))
    }

    /// Records an answer whose body is the file at `body` (copied in the kernel). Blocking.
    fn save_file(&self, key: &Key, head: &Head, body: &Path) -> io::Result<()> {
        self.save(key, head, None, |f| {
            let mut src = File::open(body)?;
            io::copy(&mut src, f).map(|_| ())
        })
    }
}

/// Records an API answer off the async threads, then hands it back. A recording that fails
/// is reported on stderr; the answer is sent all the same.
pub async fn record_reply(rec: Arc<Recorder>, key: Key, reply: Reply, origin: String) -> Reply {
    let task = tokio::task::spawn_blocking(move || {
        if let Err(e) = rec.save_reply(&key, &reply, &origin) {
            eprintln!("fake-d1: record {}: {e}", key.request);
        }
        reply
    });
    match task.await {
        Ok(reply) => reply,
        Err(e) => Reply::error(500, 7500, &format!("fake-d1: recording failed: {e}")),
    }
}

/// What a signed-URL download answered, for [`record_download`].
pub enum Download {
    /// The dump file at this path, of this length (HEAD: only the length is recorded).
    File(PathBuf, u64),
    /// Any other answer.
    Reply(Reply),
}

/// Records a signed-URL download off the async threads (a dump file is copied whole before
/// this returns).
pub async fn record_download(
    rec: Arc<Recorder>,
    key: Key,
    head_only: bool,
    answer: Download,
    origin: String,
) {
    let request = key.request.clone();
    let task = tokio::task::spawn_blocking(move || match answer {
        Download::File(path, _) if !head_only => {
            let head = Head {
                status: 200,
                headers: vec![("content-type".into(), "application/sql".into())],
                ..Head::default()
            };
            rec.save_file(&key, &head, &path)
        }
        Download::File(_, len) => {
            let reply = Reply::new(200, "application/sql", Vec::new())
                .with_header("content-length", len.to_string());
            rec.save_reply(&key, &reply, &origin)
        }
        Download::Reply(reply) => rec.save_reply(&key, &reply, &origin),
    });
    match task.await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => eprintln!("fake-d1: record {request}: {e}"),
        Err(e) => eprintln!("fake-d1: record {request}: {e}"),
    }
}

/// One replayed answer and what the request log keeps of it.
pub struct Answer {
    pub response: Response,
    pub status: u16,
    pub bytes: u64,
    pub rows_read: u64,
}

impl Answer {
    fn reply(reply: Reply) -> Answer {
        Answer {
            status: reply.status,
            bytes: reply.body.len() as u64,
            rows_read: 0,
            response: reply.into_response(),
        }
    }
}

/// Serves answers from a recording directory.
pub struct Player {
    dir: PathBuf,
    /// Key hash → the answer numbers on disk, ascending.
    answers: HashMap<String, Vec<u64>>,
    /// Key hash → requests answered so far.
    served: Mutex<HashMap<String, u64>>,
}

impl Player {
    /// Replays the recordings in `dir` (which must exist).
    pub fn open(dir: &Path) -> Result<Player, String> {
        let answers = scan(dir).map_err(|e| format!("--replay {}: {e}", dir.display()))?;
        Ok(Player {
            dir: dir.to_path_buf(),
            answers,
            served: Mutex::new(HashMap::new()),
        })
    }

    /// The next recorded answer to `key`, or the 500 of a request with no recording.
    /// `head_only` sends no body (a HEAD request). `origin` replaces the recording server's
    /// origin in bodies marked as holding it.
    pub async fn answer(&self, key: &Key, head_only: bool, origin: &str) -> Answer {
        let Some(answers) = self.answers.get(&key.hash).filter(|a| !a.is_empty()) else {
            eprintln!(
                "fake-d1: replay: no recording for {} (body sha256 {})",
                key.request, key.body_sha256
            );
            return Answer::reply(Reply::error(
                500,
                7500,
                &format!("replay: no recording for {}", key.request),
            ));
        };
        let n = {
            let mut served = lock(&self.served);
            let count = served.entry(key.hash.clone()).or_insert(0);
            let n = *count;
            *count += 1;
            n
        };
        let len = answers.len() as u64;
        let which = answers
            .get(usize::try_from(n % len).unwrap_or(0))
            .copied()
            .unwrap_or(0);
        let path = self.dir.join(format!("{}-{which}.rec", key.hash));
        match open(&path, head_only, origin).await {
            Ok(answer) => answer,
            Err(e) => {
                let message = format!("replay: cannot read {}: {e}", path.display());
                eprintln!("fake-d1: {message} ({})", key.request);
                Answer::reply(Reply::error(500, 7500, &message))
            }
        }
    }
}

fn invalid(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message)
}

/// Opens one recording: reads its header, and streams its body.
async fn open(path: &Path, head_only: bool, origin: &str) -> io::Result<Answer> {
    let file = tokio::fs::File::open(path).await?;
    let file_len = file.metadata().await?.len();
    let mut reader = BufReader::with_capacity(READ_CHUNK, file);
    let mut head = Head::default();
    let mut consumed = 0u64;
    let mut line = Vec::new();
    let mut first = true;
    loop {
        line.clear();
        let n = (&mut reader)
            .take(MAX_LINE)
            .read_until(b'\n', &mut line)
            .await?;
        if n == 0 || line.last() != Some(&b'\n') {
            return Err(invalid("the header is cut short".to_string()));
        }
        consumed += n as u64;
        let text = std::str::from_utf8(&line[..n - 1])
            .map_err(|e| invalid(format!("the header is not UTF-8: {e}")))?;
        if first {
            if text != MAGIC {
                return Err(invalid(format!("not a recording (starts {text:?})")));
            }
            first = false;
        } else if text.is_empty() {
            break;
        } else {
            head.parse_line(text).map_err(invalid)?;
        }
    }
    let mut body_len = file_len.saturating_sub(consumed);
    let rewrite = head
        .origin
        .as_deref()
        .filter(|o| *o != origin && body_len <= ORIGIN_SCAN_MAX as u64);
    let body = if head_only {
        Body::empty()
    } else if let Some(from) = rewrite {
        let mut buf = Vec::with_capacity(usize::try_from(body_len).unwrap_or(0));
        reader.read_to_end(&mut buf).await?;
        let replaced = replace_all(&buf, from.as_bytes(), origin.as_bytes());
        body_len = replaced.len() as u64;
        Body::from(replaced)
    } else {
        Body::from_stream(ReaderStream::with_capacity(reader, READ_CHUNK))
    };
    let mut response = Response::new(body);
    *response.status_mut() =
        StatusCode::from_u16(head.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let headers = response.headers_mut();
    for (name, value) in &head.headers {
        if let (Ok(n), Ok(v)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value),
        ) {
            headers.insert(n, v);
        }
    }
    if !headers.contains_key(header::CONTENT_LENGTH) {
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(body_len));
    }
    Ok(Answer {
        response,
        status: head.status,
        bytes: body_len,
        rows_read: head.rows_read,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamp_is_dropped_from_the_key() {
        assert_eq!(normalize_query(None), None);
        assert_eq!(
            normalize_query(Some("timestamp=2024-01-01T00:00:00Z")),
            None
        );
        assert_eq!(
            normalize_query(Some("page=1&timestamp=x&per_page=100")).as_deref(),
            Some("page=1&per_page=100")
        );
        let a = Key::new("GET", "/p", Some("timestamp=1"), b"");
        let b = Key::new("GET", "/p", Some("timestamp=2"), b"");
        let c = Key::new("GET", "/p", None, b"");
        assert_eq!(a, b);
        assert_eq!(a, c);
        assert_eq!(a.request, "GET /p");
        assert_ne!(a.hash, Key::new("GET", "/p", None, b"x").hash);
        assert_ne!(a.hash, Key::new("POST", "/p", None, b"").hash);
        assert_ne!(a.hash, Key::new("GET", "/p", Some("x=1"), b"").hash);
    }

    #[tokio::test]
    async fn streamed_body_keys_like_a_body_in_memory() {
        let (k, head) = Key::read("POST", "/p", None, Body::from("hello")).await;
        assert_eq!(k, Key::new("POST", "/p", None, b"hello"));
        assert_eq!(head, "hello");
    }

    #[test]
    fn database_references() {
        let u = uuid_for("shop");
        assert_eq!(database_uuid("shop"), u);
        assert_eq!(database_uuid(&u), u);
    }

    #[test]
    fn origin_is_replaced() {
        assert_eq!(
            replace_all(b"a http://o/x http://o/y", b"http://o", b"http://n:1"),
            b"a http://n:1/x http://n:1/y".to_vec()
        );
        assert_eq!(replace_all(b"abc", b"zz", b"y"), b"abc".to_vec());
    }

    #[test]
    fn header_round_trip() {
        let key = Key::new("GET", "/p", None, b"");
        let head = Head {
            status: 429,
            headers: vec![
                ("content-type".into(), "application/json".into()),
                ("retry-after".into(), "7".into()),
            ],
            rows_read: 12,
            origin: Some("http://127.0.0.1:1".into()),
        };
        let text = head.encode(&key);
        let mut lines = text.lines();
        assert_eq!(lines.next(), Some(MAGIC));
        let mut back = Head::default();
        for l in lines.take_while(|l| !l.is_empty()) {
            back.parse_line(l).expect("parse");
        }
        assert_eq!(back, head);
        assert!(text.ends_with("\n\n"));
    }
}
