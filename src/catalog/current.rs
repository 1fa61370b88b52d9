//! Which stored backup still holds a database's current state.
//!
//! A database whose Time Travel bookmark equals the bookmark recorded by its newest complete,
//! verified backup has not been written since that backup was read: the backup still holds
//! it, and a new one would be the same data again. Only a backup that checks out counts: its
//! object is listed at the size its manifest records, the manifest vouches for it (and is
//! signed by a trusted key when keys are given), its verification passed, and it was made
//! with the same table selection and encryption as the backup that would replace it. One
//! listing, and a few small reads of the newest candidate.

use anyhow::Result;

use super::{check_manifest, read_manifest_checked, read_small};
use crate::keys::{self, MANIFEST_SUFFIX};
use crate::manifest::{Manifest, Selection};
use crate::sign::VerifyKeys;
use crate::store::ObjectStore;

/// What a backup must match to stand for the database's current state.
#[derive(Debug, Clone, Copy)]
pub struct Wanted<'a> {
    /// The database's UUID.
    pub database_id: &'a str,
    /// The database's current Time Travel bookmark.
    pub bookmark: &'a str,
    pub selection: &'a Selection,
    /// The age recipients a new backup would be encrypted for (`None`: not encrypted).
    pub recipients: Option<&'a [String]>,
}

/// The newest complete, verified backup under `<prefix><database>/`, if it still holds the
/// state `wanted` describes.
pub async fn holding(
    store: &dyn ObjectStore,
    prefix: &str,
    database: &str,
    wanted: Wanted<'_>,
    trusted: Option<&VerifyKeys>,
) -> Result<Option<Manifest>> {
    let dir = keys::database_dir(prefix, database);
    let objects = store.list(&dir).await?;
    let present: std::collections::HashSet<&str> = objects.iter().map(|o| o.key.as_str()).collect();
    let mut candidates: Vec<_> = objects
        .iter()
        .filter_map(|o| {
            let parsed = keys::parse_backup_key(&dir, &o.key)?;
            let listed = |k: String| present.contains(k.as_str());
            (listed(format!("{}{MANIFEST_SUFFIX}", o.key)) && listed(keys::verify_key(&o.key)))
                .then_some((parsed.timestamp, o))
        })
        .collect();
    candidates.sort_by(|a, b| b.0.cmp(&a.0).then(b.1.key.cmp(&a.1.key)));
    for (time, object) in candidates {
        let Ok(m) = read_manifest_checked(store, &object.key, trusted).await else {
            continue;
        };
        if check_manifest(&m, &object.key, database, time).is_err()
            || m.object.size != object.size
            || !passed(store, &object.key).await
        {
            continue;
        }
        // The newest verified backup decides: an older one is never "current" over it.
        return Ok(holds(&m, &wanted).then_some(m));
    }
    Ok(None)
}

/// Whether `m` was made from the state `wanted` describes, the way a new backup would be.
pub fn holds(m: &Manifest, wanted: &Wanted<'_>) -> bool {
    let recipients_match = match wanted.recipients {
        None => m.encryption.is_none(),
        Some(r) => m.encryption.is_some() && m.recipients == r,
    };
    m.database.id.eq_ignore_ascii_case(wanted.database_id)
        && m.bookmark.as_deref() == Some(wanted.bookmark)
        && m.consistent != Some(false)
        && &m.selection == wanted.selection
        && recipients_match
}

/// Whether the verification report stored beside `key` says it passed.
async fn passed(store: &dyn ObjectStore, key: &str) -> bool {
    let Ok(bytes) = read_small(store, &keys::verify_key(key)).await else {
        return false;
    };
    serde_json::from_slice::<serde_json::Value>(&bytes)
        .ok()
        .and_then(|v| v["verified"].as_bool())
        == Some(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(bookmark: Option<&str>) -> Manifest {
        Manifest {
            database: crate::manifest::DatabaseRef {
                id: "AAAA-1".into(),
                name: "app".into(),
                source: "d1".into(),
            },
            bookmark: bookmark.map(String::from),
            consistent: Some(true),
            ..Manifest::default()
        }
    }

    #[test]
    fn only_the_same_state_read_the_same_way_holds() {
        let all = Selection::default();
        let some = Selection {
            tables: Some(vec!["t".into()]),
            ..Selection::default()
        };
        let age = vec!["age1xyz".to_string()];
        let wanted = |bookmark, selection, recipients| Wanted {
            database_id: "aaaa-1",
            bookmark,
            selection,
            recipients,
        };
        let encrypted = Manifest {
            encryption: Some("age".into()),
            recipients: age.clone(),
            ..manifest(Some("b1"))
        };
        let inconsistent = Manifest {
            consistent: Some(false),
            ..manifest(Some("b1"))
        };
        let other_db = Manifest {
            database: crate::manifest::DatabaseRef {
                id: "BBBB-2".into(),
                ..manifest(None).database
            },
            ..manifest(Some("b1"))
        };
        let plain = manifest(Some("b1"));
        let unbookmarked = manifest(None);
        let other_age = vec!["age1other".to_string()];
        let cases: Vec<(&Manifest, Wanted<'_>, bool)> = vec![
            (&plain, wanted("b1", &all, None), true),
            (&plain, wanted("b2", &all, None), false),
            (&unbookmarked, wanted("b1", &all, None), false),
            (&plain, wanted("b1", &some, None), false),
            (&plain, wanted("b1", &all, Some(&age)), false),
            (&encrypted, wanted("b1", &all, Some(&age)), true),
            (&encrypted, wanted("b1", &all, None), false),
            (&encrypted, wanted("b1", &all, Some(&other_age)), false),
            (&inconsistent, wanted("b1", &all, None), false),
            (&other_db, wanted("b1", &all, None), false),
        ];
        for (i, (m, w, want)) in cases.iter().enumerate() {
            assert_eq!(holds(m, w), *want, "case {i}");
        }
    }
}
