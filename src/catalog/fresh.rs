//! Is a database's backup fresh? The pure judgement behind `check`: the newest complete
//! backup must be younger than a maximum age and have passed its verification, and — when a
//! shrink limit is given — must not hold that much fewer rows than the backup before it (a
//! table emptied by a bug or an attacker is a backup that succeeds and is useless).

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::prune::Listed;

/// What a database's backups must satisfy.
#[derive(Debug, Clone, Copy)]
pub struct Freshness {
    pub max_age: std::time::Duration,
    /// Fail when the newest backup has this many percent fewer rows than the one before.
    pub max_shrink_percent: Option<u32>,
}

/// The verdict on one database.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Verdict {
    /// Key of the newest complete backup, if there is one.
    pub newest_key: Option<String>,
    /// Its age in seconds.
    pub age_seconds: Option<i64>,
    /// Why the database is stale; empty when it is fresh.
    pub problems: Vec<String>,
    /// The newest backup is older than the maximum age, but still holds the database: its
    /// bookmark is the database's current one (nothing was written since).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub unchanged: bool,
    /// The newest backup is older than the maximum age (and not known to hold the database).
    #[serde(skip)]
    pub too_old: bool,
}

impl Verdict {
    pub fn is_fresh(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Judge the backups of one database (`backups` newest first, as [`super::prune::list`]
/// returns them) at `now`. Backups that are incomplete or not signed by a trusted key do not
/// count. `current`: the database's Time Travel bookmark now, when known — a newest backup
/// that recorded it still holds the database (nothing was written since), however old it is.
pub fn judge(
    backups: &[Listed],
    now: DateTime<Utc>,
    rule: &Freshness,
    current: Option<&str>,
) -> Verdict {
    let mut sound = backups
        .iter()
        .filter(|b| b.entry.complete && !b.untrusted());
    let Some(newest) = sound.next() else {
        return Verdict {
            newest_key: None,
            age_seconds: None,
            problems: vec![format!(
                "has no complete backup ({} object(s) found)",
                backups.len()
            )],
            unchanged: false,
            too_old: false,
        };
    };
    let age = (now - newest.entry.time).num_seconds().max(0);
    let mut problems = Vec::new();
    let max = rule.max_age.as_secs() as i64;
    let holds_current = current.is_some() && newest.bookmark.as_deref() == current;
    let too_old = age > max && !holds_current;
    if too_old {
        problems.push(format!(
            "its newest backup is {} old, older than {}",
            human_age(age),
            human_age(max)
        ));
    }
    match newest.verified {
        Some(true) => {}
        Some(false) => problems.push("its newest backup failed verification".to_string()),
        None => problems.push("its newest backup has no passing verification".to_string()),
    }
    if let (Some(pct), Some(rows), Some(before)) = (
        rule.max_shrink_percent,
        newest.rows,
        sound.next().and_then(|b| b.rows),
    ) {
        // rows < before × (100 − pct) / 100, in integers.
        if before > 0
            && u128::from(rows) * 100 < u128::from(before) * u128::from(100 - pct.min(100))
        {
            let drop = 100.0 - rows as f64 * 100.0 / before as f64;
            problems.push(format!(
                "its newest backup has {rows} rows, {drop:.0}% fewer than the {before} of the backup before it (more than {pct}%)"
            ));
        }
    }
    Verdict {
        newest_key: Some(newest.entry.key.clone()),
        age_seconds: Some(age),
        problems,
        unchanged: age > max && holds_current,
        too_old,
    }
}

/// `3d 2h`, `5h 10m`, `42m`, `15s`.
pub fn human_age(secs: i64) -> String {
    let (d, h, m) = (secs / 86_400, secs % 86_400 / 3_600, secs % 3_600 / 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{secs}s"),
        (0, 0, m) => format!("{m}m"),
        (0, h, 0) => format!("{h}h"),
        (0, h, m) => format!("{h}h {m}m"),
        (d, 0, _) => format!("{d}d"),
        (d, h, _) => format!("{d}d {h}h"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::BackupEntry;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn backup(time: &str, rows: u64, verified: Option<bool>, complete: bool) -> Listed {
        Listed {
            entry: BackupEntry {
                key: format!("db/backup-{time}.sql.zst"),
                time: at(time),
                size: 100,
                complete,
                held: None,
            },
            sql_bytes: Some(1000),
            tables: Some(1),
            rows: Some(rows),
            method: Some("query".into()),
            verified,
            bookmark: None,
            encryption: None,
            decryptable: None,
            signature: None,
        }
    }

    #[test]
    fn judges_age_verification_and_shrink() {
        let now = at("2026-12-02T12:00:00Z");
        let day = std::time::Duration::from_secs(26 * 3600);
        let rule = |shrink| Freshness {
            max_age: day,
            max_shrink_percent: shrink,
        };
        let fresh = backup("2026-12-02T06:00:00Z", 100, Some(true), true);
        let old = backup("2026-11-29T12:00:00Z", 100, Some(true), true);
        let unverified = backup("2026-12-02T06:00:00Z", 100, None, true);
        let failed = backup("2026-12-02T06:00:00Z", 100, Some(false), true);
        let shrunk = backup("2026-12-02T06:00:00Z", 10, Some(true), true);
        let half = backup("2026-12-02T06:00:00Z", 50, Some(true), true);
        let incomplete = backup("2026-12-02T11:00:00Z", 100, Some(true), false);
        let before = backup("2026-12-01T06:00:00Z", 100, Some(true), true);
        // (backups newest first, max-shrink, problems expected (substrings))
        let cases: Vec<(Vec<&Listed>, Option<u32>, Vec<&str>)> = vec![
            (vec![&fresh, &before], None, vec![]),
            (vec![&old], None, vec!["3d old, older than 1d 2h"]),
            (
                vec![&unverified, &before],
                None,
                vec!["no passing verification"],
            ),
            (vec![&failed], None, vec!["failed verification"]),
            (
                vec![&shrunk, &before],
                Some(50),
                vec!["10 rows, 90% fewer than the 100"],
            ),
            (vec![&shrunk, &before], None, vec![]),
            (vec![&half, &before], Some(50), vec![]),
            (vec![&incomplete, &fresh, &before], Some(50), vec![]),
            (vec![&incomplete], None, vec!["no complete backup"]),
            (vec![], None, vec!["no complete backup (0 object(s)"]),
        ];
        for (i, (list, shrink, want)) in cases.into_iter().enumerate() {
            let list: Vec<Listed> = list.into_iter().cloned().collect();
            let v = judge(&list, now, &rule(shrink), None);
            assert_eq!(v.problems.len(), want.len(), "case {i}: {:?}", v.problems);
            for (p, w) in v.problems.iter().zip(&want) {
                assert!(p.contains(w), "case {i}: {p:?} lacks {w:?}");
            }
        }
        let v = judge(std::slice::from_ref(&old), now, &rule(None), None);
        assert_eq!(v.age_seconds, Some(3 * 86_400));
        assert_eq!(v.newest_key.as_deref(), Some(old.entry.key.as_str()));
        assert!(v.too_old && !v.unchanged);
        // An old backup that still holds the database (same bookmark) is fresh; another
        // bookmark is not.
        let held = Listed {
            bookmark: Some("b1".into()),
            ..old.clone()
        };
        let v = judge(std::slice::from_ref(&held), now, &rule(None), Some("b1"));
        assert!(v.is_fresh() && v.unchanged, "{v:?}");
        let v = judge(std::slice::from_ref(&held), now, &rule(None), Some("b2"));
        assert!(!v.is_fresh() && v.too_old, "{v:?}");
    }

    #[test]
    fn ages_read_like_people_write_them() {
        for (secs, want) in [
            (15, "15s"),
            (120, "2m"),
            (3600, "1h"),
            (3660, "1h 1m"),
            (86_400, "1d"),
            (93_600, "1d 2h"),
            (3 * 86_400 + 7200, "3d 2h"),
        ] {
            assert_eq!(human_age(secs), want);
        }
    }
}
