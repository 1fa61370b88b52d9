//! The registry of presigned R2 URLs the fake has handed out: export downloads (the dump file
//! behind each) and import upload slots, with their signatures and expiry (one hour). The
//! handlers that serve these URLs are in `signed`.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::util::{amz_now, random_hex};

const VALIDITY: Duration = Duration::from_secs(3600);

/// A presigned export download: the dump file it serves.
#[derive(Clone, Debug)]
pub struct ExportLink {
    pub uuid: String,
    pub filename: String,
    pub path: PathBuf,
    pub signature: String,
    pub expires: Instant,
}

/// A presigned import upload slot: where its upload lands.
#[derive(Clone, Debug)]
pub struct ImportLink {
    pub uuid: String,
    pub filename: String,
    pub signature: String,
    pub expires: Instant,
}

/// Every presigned URL handed out, by its id (the path segment after `/signed/export/` or
/// `/signed/import/`).
#[derive(Debug, Default)]
pub struct Signed {
    exports: HashMap<String, ExportLink>,
    imports: HashMap<String, ImportLink>,
}

impl Signed {
    /// Registers a download of `path` and returns its presigned URL.
    pub fn export_url(
        &mut self,
        origin: &str,
        uuid: &str,
        filename: &str,
        path: PathBuf,
    ) -> String {
        let id = random_hex(16);
        let signature = random_hex(32);
        let (date, day) = amz_now();
        let url = format!(
            "{origin}/signed/export/{id}/{filename}?X-Amz-Algorithm=AWS4-HMAC-SHA256\
             &X-Amz-Credential={}%2F{day}%2Fauto%2Fs3%2Faws4_request&X-Amz-Date={date}\
             &X-Amz-Expires=3600&X-Amz-SignedHeaders=host&X-Amz-Signature={signature}",
            random_hex(16)
        );
        self.exports.insert(
            id,
            ExportLink {
                uuid: uuid.to_string(),
                filename: filename.to_string(),
                path,
                signature,
                expires: Instant::now() + VALIDITY,
            },
        );
        url
    }

    /// Registers an upload slot for `filename` and returns its presigned URL.
    pub fn import_url(&mut self, origin: &str, uuid: &str, filename: &str) -> String {
        let id = random_hex(16);
        let signature = random_hex(32);
        let url = format!("{origin}/signed/import/{id}?X-Amz-Signature={signature}");
        self.imports.insert(
            id,
            ImportLink {
                uuid: uuid.to_string(),
                filename: filename.to_string(),
                signature,
                expires: Instant::now() + VALIDITY,
            },
        );
        url
    }

    /// The export download registered under `id`, if any.
    pub fn export_link(&self, id: &str) -> Option<ExportLink> {
        self.exports.get(id).cloned()
    }

    /// The import upload slot registered under `id`, if any.
    pub fn import_link(&self, id: &str) -> Option<ImportLink> {
        self.imports.get(id).cloned()
    }
}
