//! `skip-unchanged`: before a D1 database is read, its Time Travel bookmark is compared with
//! the one recorded by its newest complete, verified backup. Equal means nothing was written
//! since that backup: it still holds the database, and no new one is made (one API request
//! and one store listing). Anything else — no bookmark, no such backup, a lookup that fails —
//! means the database is backed up, reusing the bookmark just read.

use crate::catalog::current::{self, Wanted};
use crate::cli::open::Opened;
use crate::keys::sanitize_name;
use crate::manifest::{Manifest, Selection};
use crate::sign::VerifyKeys;
use crate::source::Source;
use crate::util::log;

/// What a new backup would be, as far as "the same backup" goes.
pub struct Settings<'a> {
    /// `skip-unchanged`.
    pub enabled: bool,
    pub prefix: &'a str,
    pub selection: &'a Selection,
    /// The age recipients a new backup would be encrypted for.
    pub recipients: Option<&'a [String]>,
    /// Only backups signed by these keys count (`verify-key`).
    pub trusted: Option<&'a VerifyKeys>,
}

/// What the check found.
pub enum Check {
    /// This backup still holds the database.
    Unchanged(Box<Manifest>),
    /// Back it up; the bookmark read for the check, if any (the backup starts from it).
    Changed(Option<String>),
}

/// Whether `source` changed since its newest verified backup in the store.
pub async fn check(cfg: &Settings<'_>, source: &dyn Source, opened: &Opened) -> Check {
    if !cfg.enabled || source.d1_client().is_none() {
        return Check::Changed(None);
    }
    let info = source.info();
    let bookmark = match source.bookmark().await {
        Ok(Some(b)) => b,
        Ok(None) => return Check::Changed(None),
        Err(e) => {
            log::warn(format!(
                "could not read the Time Travel bookmark of {:?} ({e:#}); backing it up",
                info.name
            ));
            return Check::Changed(None);
        }
    };
    let wanted = Wanted {
        database_id: &info.id,
        bookmark: &bookmark,
        selection: cfg.selection,
        recipients: cfg.recipients,
    };
    let found = current::holding(
        opened.store.as_ref(),
        cfg.prefix,
        &sanitize_name(&info.name),
        wanted,
        cfg.trusted,
    )
    .await;
    match found {
        Ok(Some(m)) => Check::Unchanged(Box::new(m)),
        Ok(None) => Check::Changed(Some(bookmark)),
        Err(e) => {
            log::warn(format!(
                "could not look for the last backup of {:?} ({e:#}); backing it up",
                info.name
            ));
            Check::Changed(Some(bookmark))
        }
    }
}
