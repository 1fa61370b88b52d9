//! Retention: which backups of one database to keep and which to delete, as pure functions.
//!
//! The rules follow restic's `forget` (`ApplyPolicy`): backups are walked newest first, each
//! period rule maps a backup's time to an integer bucket key (`YYYYMMDDHH`, `YYYYMMDD`, ISO
//! `YYYYWW`, `YYYYMM`, `YYYY`, all in UTC) and keeps a backup when its key differs from the last
//! key that rule kept and the rule's count is not used up. So `keep_daily: 7` keeps the newest
//! backup of each of the 7 most recent days *that have a backup*. `keep_within` keeps everything
//! within a duration of the **newest backup** (not of now), so a pause in backups never makes
//! retention delete everything. Every kept backup records the rules that kept it.
//!
//! One deliberate difference from restic: restic also keeps the oldest backup when a rule still
//! has count left at the end of the list; here a rule keeps only the newest backup of each period.
//!
//! [`apply`] is the policy alone (complete backups only, no clock). [`plan`] adds the safety
//! rails and turns the result into actions: nothing is deleted without a policy, after a failed
//! run, or when no complete backup exists; the newest complete backup is always kept; an
//! incomplete backup (no manifest) is deleted only once it is more than a day old, because a
//! younger one may still be uploading. The caller lists the store, calls [`plan`], prints it
//! (dry run) and deletes [`Plan::delete_keys`].

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Datelike, Months, TimeDelta, Timelike, Utc};
use serde::{Deserialize, Serialize};

use crate::keys;

/// Retention rules; every count is "the N most recent periods that have a backup".
///
/// `None` means the rule is not used; `Some(0)` is a rule that keeps nothing (the policy is then
/// not empty, and [`plan`] still keeps the newest complete backup).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// The N newest backups.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_last: Option<u32>,
    /// The newest backup of each of the N most recent hours (UTC) with a backup.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_hourly: Option<u32>,
    /// The newest backup of each of the N most recent days (UTC) with a backup.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_daily: Option<u32>,
    /// ISO 8601 weeks (year of the ISO week, week number; week 53 exists).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_weekly: Option<u32>,
    /// The newest backup of each of the N most recent months with a backup.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_monthly: Option<u32>,
    /// The newest backup of each of the N most recent years with a backup.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_yearly: Option<u32>,
    /// Every backup no older than this before the newest backup.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_within: Option<Within>,
}

impl Policy {
    /// No rule set: retention must not prune anything.
    pub fn is_empty(&self) -> bool {
        // Destructured so that a new rule cannot be forgotten here.
        let Policy {
            keep_last,
            keep_hourly,
            keep_daily,
            keep_weekly,
            keep_monthly,
            keep_yearly,
            keep_within,
        } = self;
        keep_last.is_none()
            && keep_hourly.is_none()
            && keep_daily.is_none()
            && keep_weekly.is_none()
            && keep_monthly.is_none()
            && keep_yearly.is_none()
            && keep_within.is_none()
    }
}

/// A duration like restic's keep-within: `1y2m3d4h` (years, months, days, hours; any subset,
/// in that order; at least one part; not zero); `2w` (weeks, between months and days) is also
/// accepted.
///
/// A zero value can only be built directly; it displays as `0h`, which [`FromStr`] rejects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Within {
    pub years: u32,
    pub months: u32,
    pub weeks: u32,
    pub days: u32,
    pub hours: u32,
}

/// The units of [`Within`], in the only order they may appear.
const UNITS: [char; 5] = ['y', 'm', 'w', 'd', 'h'];

const WITHIN_EXPECTED: &str = "expected a duration like 30d, 12h, 1y2m or 2w: whole numbers with \
     units y (years), m (months), w (weeks), d (days), h (hours), in that order, each at most \
     once, not all zero";

impl Within {
    fn parts(&self) -> [u32; 5] {
        [self.years, self.months, self.weeks, self.days, self.hours]
    }

    fn part_mut(&mut self, unit: usize) -> Option<&mut u32> {
        match unit {
            0 => Some(&mut self.years),
            1 => Some(&mut self.months),
            2 => Some(&mut self.weeks),
            3 => Some(&mut self.days),
            4 => Some(&mut self.hours),
            _ => None,
        }
    }

    /// `t` minus this duration: years and months on the calendar (the day of the month is
    /// clamped, so 31 March minus 1m is 28 or 29 February), then weeks, days and hours as exact
    /// hours (UTC has no DST). Saturates at the earliest representable time.
    pub fn before(&self, t: DateTime<Utc>) -> DateTime<Utc> {
        let months = u64::from(self.years) * 12 + u64::from(self.months);
        let hours = (u64::from(self.weeks) * 7 + u64::from(self.days)) * 24 + u64::from(self.hours);
        u32::try_from(months)
            .ok()
            .and_then(|m| t.checked_sub_months(Months::new(m)))
            .and_then(|t| {
                i64::try_from(hours)
                    .ok()
                    .and_then(TimeDelta::try_hours)
                    .and_then(|d| t.checked_sub_signed(d))
            })
            .unwrap_or(DateTime::<Utc>::MIN_UTC)
    }
}

impl FromStr for Within {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let fail = |why: String| Err(format!("invalid duration {s:?}: {why}; {WITHIN_EXPECTED}"));
        if s.is_empty() {
            return fail("it is empty".into());
        }
        let mut within = Within {
            years: 0,
            months: 0,
            weeks: 0,
            days: 0,
            hours: 0,
        };
        let mut next_unit = 0;
        let mut rest = s;
        while !rest.is_empty() {
            let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
            let (number, tail) = rest.split_at(digits);
            let Some(c) = tail.chars().next() else {
                return fail(format!("{number:?} has no unit"));
            };
            let Some(unit) = UNITS.iter().position(|&u| u == c) else {
                return fail(match number {
                    "" => format!("unexpected {c:?}"),
                    _ => format!("unexpected {c:?} after {number:?}"),
                });
            };
            if number.is_empty() {
                return fail(format!("{c:?} has no number before it"));
            }
            if unit < next_unit {
                return fail(format!("{c:?} is repeated or out of order"));
            }
            let Ok(n) = number.parse::<u32>() else {
                return fail(format!("{number} is too large"));
            };
            if let Some(part) = within.part_mut(unit) {
                *part = n;
            }
            next_unit = unit + 1;
            rest = &tail[c.len_utf8()..];
        }
        if within.parts().iter().all(|&n| n == 0) {
            return fail("it is zero".into());
        }
        Ok(within)
    }
}

impl fmt::Display for Within {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts = self.parts();
        if parts.iter().all(|&n| n == 0) {
            return f.write_str("0h");
        }
        for (n, unit) in parts.iter().zip(UNITS) {
            if *n != 0 {
                write!(f, "{n}{unit}")?;
            }
        }
        Ok(())
    }
}

/// One object set found in the store for a database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The backup object's key.
    pub key: String,
    /// From the key's timestamp.
    pub time: DateTime<Utc>,
    /// Has a manifest that checks out (it names this key, database and time).
    pub complete: bool,
    /// Why the backup is held — neither counted nor deleted (a manifest that exists but does
    /// not check out).
    pub held: Option<String>,
}

/// Backups dated after this are held: never counted, never newest, never deleted.
pub fn future_limit(now: DateTime<Utc>) -> DateTime<Utc> {
    now.checked_add_signed(TimeDelta::days(1))
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

/// Reason a backup dated more than a day in the future is held.
pub const FUTURE_REASON: &str =
    "dated more than a day in the future (planted, or a writer's clock is wrong): held";
/// Reason the backup a run has just written is kept when no rule keeps it.
pub const WRITTEN_REASON: &str = "written by this run";

/// What happens to one backup.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Action {
    Keep,
    Delete,
    /// An incomplete backup younger than a day (it may still be in progress), or an older one
    /// while a [`Hold`] applies: neither kept nor deleted.
    Ignore,
}

/// The decision about one [`Entry`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Decision {
    pub key: String,
    pub time: DateTime<Utc>,
    pub complete: bool,
    pub action: Action,
    /// Why: for kept backups the rules that kept them (`"last"`, `"daily 2026-11-28"`,
    /// `"weekly 2026-W48"`, `"within 30d"`, [`SAFETY_REASON`], …); for the others a short
    /// explanation.
    pub reasons: Vec<String>,
}

/// Why nothing at all is deleted, when that happens.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum Hold {
    /// The policy has no rule.
    NoPolicy,
    /// The backup run that precedes retention failed.
    CurrentRunFailed,
    /// There is no complete backup to fall back on.
    NoCompleteBackup,
}

impl fmt::Display for Hold {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Hold::NoPolicy => "no retention policy is set",
            Hold::CurrentRunFailed => "the current backup run failed",
            Hold::NoCompleteBackup => "there is no complete backup",
        })
    }
}

/// Reason given to the newest complete backup when no rule kept it.
pub const SAFETY_REASON: &str = "newest complete backup (safety)";
/// Reason given to a complete backup that no rule keeps.
pub const NOT_KEPT_REASON: &str = "not kept by any rule";
/// Reason given to an incomplete backup more than a day old.
pub const OLD_INCOMPLETE_REASON: &str = "incomplete (no manifest), older than a day";
/// Reason given to an incomplete backup at most a day old.
pub const YOUNG_INCOMPLETE_REASON: &str = "incomplete, younger than a day: may still be uploading";

/// The outcome of [`plan`]: one decision per entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Plan {
    /// Newest first (ties: key order descending), one per entry.
    pub decisions: Vec<Decision>,
    /// When set, every action is `Keep` or `Ignore`; nothing is `Delete`.
    pub hold: Option<Hold>,
}

impl Plan {
    /// Backups kept.
    pub fn kept(&self) -> usize {
        self.count(Action::Keep)
    }

    /// Backups (complete or not) deleted.
    pub fn deleted(&self) -> usize {
        self.count(Action::Delete)
    }

    fn count(&self, action: Action) -> usize {
        self.decisions.iter().filter(|d| d.action == action).count()
    }

    /// Keys to delete, in the order to delete them: first the signature, manifest and
    /// verification report of every deleted complete backup, then every deleted object
    /// (complete or not).
    ///
    /// Manifests go first so that an interrupted deletion leaves incomplete backups, which a
    /// later run deletes, rather than a manifest without its object.
    pub fn delete_keys(&self) -> Vec<String> {
        let doomed = || self.decisions.iter().filter(|d| d.action == Action::Delete);
        let companions = doomed().filter(|d| d.complete).flat_map(|d| {
            [
                keys::signature_key(&d.key),
                keys::manifest_key(&d.key),
                keys::verify_key(&d.key),
            ]
        });
        let objects = doomed().map(|d| d.key.clone());
        companions.chain(objects).collect()
    }
}

/// The period rules, in the order their reasons are listed.
#[derive(Debug, Clone, Copy)]
enum Rule {
    Last,
    Hourly,
    Daily,
    Weekly,
    Monthly,
    Yearly,
}

impl Rule {
    const ALL: [Rule; 6] = [
        Rule::Last,
        Rule::Hourly,
        Rule::Daily,
        Rule::Weekly,
        Rule::Monthly,
        Rule::Yearly,
    ];

    fn count(self, policy: &Policy) -> Option<u32> {
        match self {
            Rule::Last => policy.keep_last,
            Rule::Hourly => policy.keep_hourly,
            Rule::Daily => policy.keep_daily,
            Rule::Weekly => policy.keep_weekly,
            Rule::Monthly => policy.keep_monthly,
            Rule::Yearly => policy.keep_yearly,
        }
    }

    /// The period of `t` as an integer that grows with time; `index` is the backup's position
    /// in the newest-first list (unique, so "last" keeps every backup while its count lasts).
    fn bucket(self, index: usize, t: DateTime<Utc>) -> i64 {
        let year = i64::from(t.year());
        let month = i64::from(t.month());
        let day = i64::from(t.day());
        match self {
            Rule::Last => i64::try_from(index).unwrap_or(i64::MAX),
            Rule::Hourly => ((year * 100 + month) * 100 + day) * 100 + i64::from(t.hour()),
            Rule::Daily => (year * 100 + month) * 100 + day,
            Rule::Weekly => {
                let week = t.iso_week();
                i64::from(week.year()) * 100 + i64::from(week.week())
            }
            Rule::Monthly => year * 100 + month,
            Rule::Yearly => year,
        }
    }

    fn reason(self, t: DateTime<Utc>) -> String {
        match self {
            Rule::Last => "last".to_string(),
            Rule::Hourly => t.format("hourly %Y-%m-%dT%H").to_string(),
            Rule::Daily => t.format("daily %Y-%m-%d").to_string(),
            Rule::Weekly => {
                let week = t.iso_week();
                format!("weekly {:04}-W{:02}", week.year(), week.week())
            }
            Rule::Monthly => t.format("monthly %Y-%m").to_string(),
            Rule::Yearly => t.format("yearly %Y").to_string(),
        }
    }
}

/// Newest first; ties by key, descending.
fn newest_first(a: (&str, DateTime<Utc>), b: (&str, DateTime<Utc>)) -> std::cmp::Ordering {
    b.1.cmp(&a.1).then_with(|| b.0.cmp(a.0))
}

/// The pure policy: which complete backups each rule keeps (restic's algorithm).
///
/// Returns every input backup, sorted newest first (ties: key descending), with the reasons it
/// is kept; no reasons means not kept. `keep_within` counts back from the newest backup given.
pub fn apply(
    policy: &Policy,
    backups: &[(String, DateTime<Utc>)],
) -> Vec<(String, DateTime<Utc>, Vec<String>)> {
    let mut out: Vec<(String, DateTime<Utc>, Vec<String>)> = backups
        .iter()
        .map(|(key, time)| (key.clone(), *time, Vec::new()))
        .collect();
    out.sort_by(|a, b| newest_first((&a.0, a.1), (&b.0, b.1)));

    for rule in Rule::ALL {
        let Some(mut left) = rule.count(policy) else {
            continue;
        };
        let mut last_kept = None;
        for (index, (_, time, reasons)) in out.iter_mut().enumerate() {
            if left == 0 {
                break;
            }
            let bucket = rule.bucket(index, *time);
            if last_kept != Some(bucket) {
                last_kept = Some(bucket);
                left -= 1;
                reasons.push(rule.reason(*time));
            }
        }
    }

    if let (Some(within), Some(newest)) = (policy.keep_within, out.first().map(|b| b.1)) {
        let start = within.before(newest);
        for (_, _, reasons) in out.iter_mut().take_while(|b| b.1 >= start) {
            reasons.push(format!("within {within}"));
        }
    }
    out
}

/// The whole plan with the safety rails: see the module documentation.
///
/// `now` is used only to age incomplete backups; the rules themselves do not depend on it.
pub fn plan(
    policy: &Policy,
    entries: &[Entry],
    now: DateTime<Utc>,
    current_run_failed: bool,
    written: Option<&str>,
) -> Plan {
    let mut sorted: Vec<&Entry> = entries.iter().collect();
    sorted.sort_by(|a, b| newest_first((&a.key, a.time), (&b.key, b.time)));

    // Only backups that check out and are not dated in the future count for anything.
    let limit = future_limit(now);
    let usable = |e: &Entry| e.complete && e.held.is_none() && e.time <= limit;
    let complete: Vec<(String, DateTime<Utc>)> = sorted
        .iter()
        .filter(|e| usable(e))
        .map(|e| (e.key.clone(), e.time))
        .collect();
    let hold = if policy.is_empty() {
        Some(Hold::NoPolicy)
    } else if current_run_failed {
        Some(Hold::CurrentRunFailed)
    } else if complete.is_empty() {
        Some(Hold::NoCompleteBackup)
    } else {
        None
    };

    // `apply` sorts the same way and its sort is stable, so its output lines up with the
    // complete entries of `sorted`.
    let mut kept = apply(policy, &complete).into_iter();
    let day_ago = now
        .checked_sub_signed(TimeDelta::days(1))
        .unwrap_or(DateTime::<Utc>::MIN_UTC);
    let mut newest_complete = true;

    let decisions = sorted
        .into_iter()
        .map(|entry| {
            let (action, reasons) = if entry.time > limit {
                (Action::Ignore, vec![FUTURE_REASON.to_string()])
            } else if let Some(why) = &entry.held {
                (Action::Ignore, vec![format!("held: {why}")])
            } else if entry.complete {
                let mut reasons = kept.next().map(|k| k.2).unwrap_or_default();
                if newest_complete && reasons.is_empty() {
                    reasons.push(SAFETY_REASON.to_string());
                }
                newest_complete = false;
                match &hold {
                    _ if !reasons.is_empty() => (Action::Keep, reasons),
                    None => (Action::Delete, vec![NOT_KEPT_REASON.to_string()]),
                    Some(Hold::NoPolicy) => (
                        Action::Keep,
                        vec![format!("nothing is deleted: {}", Hold::NoPolicy)],
                    ),
                    Some(h) => (
                        Action::Keep,
                        vec![
                            NOT_KEPT_REASON.to_string(),
                            format!("nothing is deleted: {h}"),
                        ],
                    ),
                }
            } else if entry.time < day_ago {
                match &hold {
                    None => (Action::Delete, vec![OLD_INCOMPLETE_REASON.to_string()]),
                    Some(h) => (
                        Action::Ignore,
                        vec![
                            OLD_INCOMPLETE_REASON.to_string(),
                            format!("nothing is deleted: {h}"),
                        ],
                    ),
                }
            } else {
                (Action::Ignore, vec![YOUNG_INCOMPLETE_REASON.to_string()])
            };
            // Whatever the rules say, a run never deletes the backup it has just written.
            let (action, reasons) = match written {
                Some(w) if action == Action::Delete && w == entry.key => {
                    (Action::Keep, vec![WRITTEN_REASON.to_string()])
                }
                _ => (action, reasons),
            };
            Decision {
                key: entry.key.clone(),
                time: entry.time,
                complete: entry.complete,
                action,
                reasons,
            }
        })
        .collect();
    Plan { decisions, hold }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};
    use std::path::{Path, PathBuf};

    use super::*;
    use crate::keys::key_timestamp;

    /// A fixed data set of 100 backup times over two years (UTC), oldest first. It has several
    /// backups on some days and in some hours, gaps of weeks, month and year boundaries,
    /// 23:59:59.999 / 00:00:00.000 pairs, ISO week 53 of 2026 (Mon 2026-12-28 .. Sun
    /// 2027-01-03), 2028-01-01/02 belonging to 2027-W52, 29 February 2028, and backups exactly
    /// at (and 1 ms before) the keep-within boundaries measured from the newest backup
    /// (2028-05-31T23:59:59.999Z): 12h, 2w, 30d, 3m (clamped to 29 Feb), 1y, 1y2m.
    const TIMES: [&str; 100] = [
        "2026-06-01T00:00:00.000Z",
        "2026-06-01T12:00:00.000Z",
        "2026-06-01T23:59:59.999Z",
        "2026-06-02T00:00:00.000Z",
        "2026-06-15T08:30:00.000Z",
        "2026-06-30T23:59:59.999Z",
        "2026-07-01T00:00:00.000Z",
        "2026-07-04T10:00:00.000Z",
        "2026-08-10T03:00:00.000Z",
        "2026-08-11T03:00:00.000Z",
        "2026-08-12T03:00:00.000Z",
        "2026-09-01T00:00:00.000Z",
        "2026-09-20T15:00:00.000Z",
        "2026-10-25T00:30:00.000Z",
        "2026-10-25T01:30:00.000Z",
        "2026-10-31T23:59:59.999Z",
        "2026-11-28T09:15:26.123Z",
        "2026-11-28T09:45:00.000Z",
        "2026-11-28T10:00:00.000Z",
        "2026-11-28T23:59:59.999Z",
        "2026-11-29T00:00:00.000Z",
        "2026-11-30T06:00:00.000Z",
        "2026-12-24T06:00:00.000Z",
        "2026-12-27T23:59:59.999Z",
        "2026-12-28T00:00:00.000Z",
        "2026-12-29T06:00:00.000Z",
        "2026-12-31T12:00:00.000Z",
        "2026-12-31T23:59:59.999Z",
        "2027-01-01T00:00:00.000Z",
        "2027-01-02T06:00:00.000Z",
        "2027-01-03T23:59:59.999Z",
        "2027-01-04T00:00:00.000Z",
        "2027-01-20T06:00:00.000Z",
        "2027-02-14T06:00:00.000Z",
        "2027-03-31T23:59:59.998Z",
        "2027-03-31T23:59:59.999Z",
        "2027-04-15T06:00:00.000Z",
        "2027-05-31T23:59:59.998Z",
        "2027-05-31T23:59:59.999Z",
        "2027-06-01T00:00:00.000Z",
        "2027-07-15T06:00:00.000Z",
        "2027-08-01T06:00:00.000Z",
        "2027-09-10T06:00:00.000Z",
        "2027-10-31T06:00:00.000Z",
        "2027-11-30T06:00:00.000Z",
        "2027-12-26T06:00:00.000Z",
        "2027-12-31T23:59:59.999Z",
        "2028-01-01T00:00:00.000Z",
        "2028-01-02T12:00:00.000Z",
        "2028-01-03T00:00:00.000Z",
        "2028-01-17T06:00:00.000Z",
        "2028-02-07T06:00:00.000Z",
        "2028-02-28T23:59:59.999Z",
        "2028-02-29T00:00:00.000Z",
        "2028-02-29T12:00:00.000Z",
        "2028-02-29T23:59:59.998Z",
        "2028-02-29T23:59:59.999Z",
        "2028-03-01T00:00:00.000Z",
        "2028-03-26T00:30:00.000Z",
        "2028-03-26T01:30:00.000Z",
        "2028-04-10T06:00:00.000Z",
        "2028-04-20T06:00:00.000Z",
        "2028-05-01T23:59:59.998Z",
        "2028-05-01T23:59:59.999Z",
        "2028-05-02T00:00:00.000Z",
        "2028-05-05T06:00:00.000Z",
        "2028-05-08T06:00:00.000Z",
        "2028-05-10T06:00:00.000Z",
        "2028-05-12T06:00:00.000Z",
        "2028-05-14T06:00:00.000Z",
        "2028-05-16T06:00:00.000Z",
        "2028-05-17T23:59:59.998Z",
        "2028-05-17T23:59:59.999Z",
        "2028-05-18T06:00:00.000Z",
        "2028-05-20T06:00:00.000Z",
        "2028-05-22T06:00:00.000Z",
        "2028-05-24T06:00:00.000Z",
        "2028-05-25T06:00:00.000Z",
        "2028-05-26T06:00:00.000Z",
        "2028-05-27T06:00:00.000Z",
        "2028-05-28T06:00:00.000Z",
        "2028-05-29T06:00:00.000Z",
        "2028-05-30T00:00:00.000Z",
        "2028-05-30T06:00:00.000Z",
        "2028-05-30T12:00:00.000Z",
        "2028-05-30T18:00:00.000Z",
        "2028-05-31T00:00:00.000Z",
        "2028-05-31T05:00:00.000Z",
        "2028-05-31T05:30:00.000Z",
        "2028-05-31T06:00:00.000Z",
        "2028-05-31T06:59:59.999Z",
        "2028-05-31T07:00:00.000Z",
        "2028-05-31T08:15:00.000Z",
        "2028-05-31T08:45:00.000Z",
        "2028-05-31T11:59:59.998Z",
        "2028-05-31T11:59:59.999Z",
        "2028-05-31T18:00:00.000Z",
        "2028-05-31T22:00:00.000Z",
        "2028-05-31T23:30:00.000Z",
        "2028-05-31T23:59:59.999Z",
    ];

    /// Policies with a golden file each, written as their golden names (see [`golden_name`]).
    const POLICIES: &[&str] = &[
        "none",
        "last-0",
        "last-1",
        "last-3",
        "last-200",
        "hourly-0",
        "hourly-1",
        "hourly-5",
        "hourly-500",
        "daily-0",
        "daily-1",
        "daily-7",
        "daily-30",
        "daily-1000",
        "weekly-1",
        "weekly-4",
        "weekly-26",
        "weekly-200",
        "monthly-1",
        "monthly-6",
        "monthly-12",
        "monthly-100",
        "yearly-0",
        "yearly-1",
        "yearly-2",
        "yearly-10",
        "within-12h",
        "within-2w",
        "within-30d",
        "within-3m",
        "within-1y",
        "within-1y2m",
        "within-1y2m3d4h",
        "last-3_hourly-6_daily-7",
        "daily-7_weekly-4_monthly-12_yearly-3",
        "last-0_hourly-0_daily-0_weekly-0_monthly-0_yearly-0",
        "last-1_within-30d",
        "daily-7_within-2w",
        "monthly-6_within-1y",
        "weekly-4_yearly-3_within-12h",
    ];

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn key(time: DateTime<Utc>) -> String {
        format!("db/backup-{}.sql.zst", key_timestamp(time))
    }

    fn dataset() -> Vec<(String, DateTime<Utc>)> {
        TIMES.iter().map(|s| (key(t(s)), t(s))).collect()
    }

    fn within(s: &str) -> Within {
        s.parse().unwrap()
    }

    /// The inverse of [`golden_name`], for the table.
    fn parse_spec(spec: &str) -> Policy {
        let mut p = Policy::default();
        if spec == "none" {
            return p;
        }
        for part in spec.split('_') {
            let (rule, value) = part.split_once('-').unwrap();
            let n = || Some(value.parse::<u32>().unwrap());
            match rule {
                "last" => p.keep_last = n(),
                "hourly" => p.keep_hourly = n(),
                "daily" => p.keep_daily = n(),
                "weekly" => p.keep_weekly = n(),
                "monthly" => p.keep_monthly = n(),
                "yearly" => p.keep_yearly = n(),
                "within" => p.keep_within = Some(within(value)),
                _ => panic!("unknown rule in {spec}"),
            }
        }
        p
    }

    /// The golden file name of a policy: its set fields in declaration order, `rule-value`
    /// joined by `_` (`daily-7_weekly-4`); `none` for the empty policy. It depends only on the
    /// policy, so adding a case adds a file and renames nothing.
    fn golden_name(policy: &Policy) -> String {
        let Policy {
            keep_last,
            keep_hourly,
            keep_daily,
            keep_weekly,
            keep_monthly,
            keep_yearly,
            keep_within,
        } = policy;
        let counts = [
            ("last", keep_last),
            ("hourly", keep_hourly),
            ("daily", keep_daily),
            ("weekly", keep_weekly),
            ("monthly", keep_monthly),
            ("yearly", keep_yearly),
        ];
        let mut parts: Vec<String> = counts
            .iter()
            .filter_map(|(rule, n)| n.map(|n| format!("{rule}-{n}")))
            .collect();
        if let Some(w) = keep_within {
            parts.push(format!("within-{w}"));
        }
        if parts.is_empty() {
            "none".to_string()
        } else {
            parts.join("_")
        }
    }

    #[derive(Serialize)]
    struct GoldenRow<'a> {
        key: &'a str,
        keep: bool,
        reasons: &'a [String],
    }

    /// One backup per line, so diffs and hand checks are easy.
    fn golden_text(policy: &Policy, result: &[(String, DateTime<Utc>, Vec<String>)]) -> String {
        let kept = result.iter().filter(|r| !r.2.is_empty()).count();
        let rows: Vec<String> = result
            .iter()
            .map(|(key, _, reasons)| {
                let row = GoldenRow {
                    key,
                    keep: !reasons.is_empty(),
                    reasons,
                };
                format!("    {}", serde_json::to_string(&row).unwrap())
            })
            .collect();
        format!(
            "{{\n  \"policy\": {},\n  \"kept\": {kept},\n  \"backups\": [\n{}\n  ]\n}}\n",
            serde_json::to_string(policy).unwrap(),
            rows.join(",\n")
        )
    }

    fn golden_dir() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/retention")
    }

    /// Compares `apply` on the data set with `tests/golden/retention/<policy>.json`;
    /// `UPDATE_GOLDEN=1 cargo test --lib retention` rewrites the files instead.
    ///
    /// Checked by hand (the data set is [`TIMES`]; newest 2028-05-31T23:59:59.999Z):
    ///
    /// * `daily-7`: keeps 23:59:59.999 of 05-31 and 18:00 of 05-30, then 06:00 of 05-29, 05-28,
    ///   05-27, 05-26, 05-25: the newest backup of each of the 7 newest days; 05-30 00:00, 06:00
    ///   and 12:00 and everything on 05-31 before 23:59:59.999 are not kept.
    /// * `weekly-200` around ISO week 53: 2027-01-04T00:00 is "weekly 2027-W01";
    ///   2027-01-03T23:59:59.999 (Sunday) is "weekly 2026-W53", and the other W53 backups
    ///   (2026-12-28 .. 2027-01-02, across the year change) are not kept; 2026-12-27T23:59:59.999
    ///   is "weekly 2026-W52". Likewise 2028-01-02T12:00 is "weekly 2027-W52", with 2027-12-31
    ///   and 2028-01-01 not kept, and 2028-01-03 is "weekly 2028-W01". The data set has
    ///   37 weeks with a backup (so `weekly-200` keeps 37); `weekly-26` stops exactly at
    ///   "weekly 2026-W53", its 26th, and does not keep 2026-12-27T23:59:59.999.
    /// * `monthly-12`: 2028-05-31T23:59:59.999, 2028-04-20, 2028-03-26T01:30, 2028-02-29T23:59:59.999,
    ///   2028-01-17, 2027-12-31T23:59:59.999, 2027-11-30, 2027-10-31, 2027-09-10, 2027-08-01,
    ///   2027-07-15, 2027-06-01T00:00 (not 2027-05-31T23:59:59.999, which is May).
    /// * `within-30d`: from the newest backup, not from now: the 37 backups at or after
    ///   2028-05-01T23:59:59.999 (that one included, 2028-05-01T23:59:59.998 not), and
    ///   `within-3m` starts exactly at 2028-02-29T23:59:59.999 (31 May minus 3 months, clamped).
    /// * `daily-7_weekly-4_monthly-12_yearly-3`: 2028-05-31T23:59:59.999 has all four
    ///   reasons; 2028-05-28 06:00 (Sunday) is "daily 2028-05-28" and "weekly 2028-W21";
    ///   2028-05-21 has no backup, so 2028-05-20 06:00 is "weekly 2028-W20"; 2028-05-14 06:00 is
    ///   "weekly 2028-W19"; the monthly ones are as in `monthly-12`; 2027-12-31T23:59:59.999 is
    ///   "monthly 2027-12" and "yearly 2027", 2026-12-31T23:59:59.999 is "yearly 2026".
    #[test]
    fn golden_policies() {
        let update = std::env::var("UPDATE_GOLDEN").is_ok_and(|v| v == "1");
        let dir = golden_dir();
        if update {
            std::fs::create_dir_all(&dir).unwrap();
        }
        let mut failures = Vec::new();
        for spec in POLICIES {
            let policy = parse_spec(spec);
            let name = golden_name(&policy);
            assert_eq!(&name, spec, "the table must use golden names");
            let result = apply(&policy, &dataset());
            let text = golden_text(&policy, &result);
            let path = dir.join(format!("{name}.json"));
            if update {
                std::fs::write(&path, text).unwrap();
                continue;
            }
            let Ok(stored) = std::fs::read_to_string(&path) else {
                failures.push(format!(
                    "{}: missing (run with UPDATE_GOLDEN=1)",
                    path.display()
                ));
                continue;
            };
            let want: serde_json::Value = serde_json::from_str(&stored).unwrap();
            let got: serde_json::Value = serde_json::from_str(&text).unwrap();
            if want != got {
                let differing: Vec<String> = stored
                    .lines()
                    .zip(text.lines())
                    .filter(|(a, b)| a.trim() != b.trim())
                    .map(|(a, b)| format!("  want {}\n  got  {}", a.trim(), b.trim()))
                    .collect();
                failures.push(format!(
                    "{}: differs (UPDATE_GOLDEN=1 rewrites it)\n{}",
                    path.display(),
                    differing.join("\n")
                ));
            }
        }
        if !update {
            let known: BTreeSet<String> = POLICIES.iter().map(|s| format!("{s}.json")).collect();
            for file in std::fs::read_dir(&dir).unwrap() {
                let name = file.unwrap().file_name().to_string_lossy().into_owned();
                if !known.contains(&name) {
                    failures.push(format!("{name}: golden file without a policy in the table"));
                }
            }
        }
        assert!(failures.is_empty(), "{}", failures.join("\n"));
    }

    /// An independent model of the rules: group by a period label, take the N newest labels,
    /// keep the newest backup of each. Returns reasons by key.
    fn model(
        policy: &Policy,
        backups: &[(String, DateTime<Utc>)],
    ) -> BTreeMap<String, Vec<String>> {
        let mut reasons: BTreeMap<String, Vec<String>> =
            backups.iter().map(|(k, _)| (k.clone(), vec![])).collect();
        let mut by_age: Vec<&(String, DateTime<Utc>)> = backups.iter().collect();
        by_age.sort_by(|a, b| (b.1, &b.0).cmp(&(a.1, &a.0)));
        for (k, _) in by_age.iter().take(policy.keep_last.unwrap_or(0) as usize) {
            reasons.get_mut(k).unwrap().push("last".into());
        }
        type Label = fn(DateTime<Utc>) -> String;
        let rules: [(&str, Option<u32>, Label); 5] = [
            ("hourly", policy.keep_hourly, |t| {
                t.format("%Y-%m-%dT%H").to_string()
            }),
            ("daily", policy.keep_daily, |t| {
                t.format("%Y-%m-%d").to_string()
            }),
            ("weekly", policy.keep_weekly, |t| {
                let w = t.iso_week();
                format!("{}-W{:02}", w.year(), w.week())
            }),
            ("monthly", policy.keep_monthly, |t| {
                t.format("%Y-%m").to_string()
            }),
            ("yearly", policy.keep_yearly, |t| t.format("%Y").to_string()),
        ];
        for (rule, count, label) in rules {
            let Some(count) = count else { continue };
            let mut newest: BTreeMap<String, (DateTime<Utc>, &String)> = BTreeMap::new();
            for (k, t) in backups {
                let e = newest.entry(label(*t)).or_insert((*t, k));
                if (*t, k) > *e {
                    *e = (*t, k);
                }
            }
            for (l, (_, k)) in newest.iter().rev().take(count as usize) {
                reasons.get_mut(*k).unwrap().push(format!("{rule} {l}"));
            }
        }
        if let (Some(w), Some(newest)) = (policy.keep_within, by_age.first()) {
            for (k, t) in backups {
                if *t >= w.before(newest.1) {
                    reasons.get_mut(k).unwrap().push(format!("within {w}"));
                }
            }
        }
        reasons
    }

    fn complete_entries(backups: &[(String, DateTime<Utc>)]) -> Vec<Entry> {
        backups
            .iter()
            .map(|(key, time)| Entry {
                key: key.clone(),
                time: *time,
                complete: true,
                held: None,
            })
            .collect()
    }

    #[test]
    fn invariants_for_every_policy() {
        let data = dataset();
        let newest = data.iter().map(|b| b.1).max().unwrap();
        for spec in POLICIES {
            let policy = parse_spec(spec);
            let result = apply(&policy, &data);

            // keep + remove = all, one result per backup, newest first.
            assert_eq!(result.len(), data.len(), "{spec}");
            let keys: BTreeSet<&String> = result.iter().map(|r| &r.0).collect();
            assert_eq!(keys, data.iter().map(|b| &b.0).collect(), "{spec}");
            assert!(result.windows(2).all(|w| w[0].1 > w[1].1), "{spec}");
            let kept = result.iter().filter(|r| !r.2.is_empty()).count();
            let removed = result.iter().filter(|r| r.2.is_empty()).count();
            assert_eq!(kept + removed, data.len(), "{spec}");

            // kept <= sum of counts + everything within the window.
            let counts = [
                policy.keep_last,
                policy.keep_hourly,
                policy.keep_daily,
                policy.keep_weekly,
                policy.keep_monthly,
                policy.keep_yearly,
            ];
            let sum: usize = counts.iter().flatten().map(|&n| n as usize).sum();
            let in_window = policy.keep_within.map_or(0, |w| {
                data.iter().filter(|b| b.1 >= w.before(newest)).count()
            });
            assert!(
                kept <= sum + in_window,
                "{spec}: {kept} > {sum} + {in_window}"
            );

            // Each rule keeps at most its count, each reason comes from a rule that is set, and
            // a rule never gives two backups the same period.
            let named = [
                ("last", policy.keep_last),
                ("hourly ", policy.keep_hourly),
                ("daily ", policy.keep_daily),
                ("weekly ", policy.keep_weekly),
                ("monthly ", policy.keep_monthly),
                ("yearly ", policy.keep_yearly),
            ];
            let all_reasons: Vec<&String> = result.iter().flat_map(|r| &r.2).collect();
            for (prefix, count) in named {
                let given: Vec<&&String> = all_reasons
                    .iter()
                    .filter(|r| r.starts_with(prefix))
                    .collect();
                assert!(
                    given.len() <= count.unwrap_or(0) as usize,
                    "{spec}: {prefix}"
                );
                let distinct: BTreeSet<&&&String> = given.iter().collect();
                assert!(
                    prefix == "last" || distinct.len() == given.len(),
                    "{spec}: {prefix} repeats a period"
                );
            }
            for reason in &all_reasons {
                let from_rule = named
                    .iter()
                    .any(|(p, c)| c.is_some() && reason.starts_with(p));
                let from_within = policy
                    .keep_within
                    .is_some_and(|w| **reason == format!("within {w}"));
                assert!(from_rule || from_within, "{spec}: stray reason {reason}");
            }

            // The independent model agrees.
            let expected = model(&policy, &data);
            for (key, _, reasons) in &result {
                assert_eq!(reasons, &expected[key], "{spec}: {key}");
            }

            // The input order does not matter.
            let mut reversed = data.clone();
            reversed.reverse();
            assert_eq!(apply(&policy, &reversed), result, "{spec}");
            let mut interleaved: Vec<_> = data.iter().step_by(2).cloned().collect();
            interleaved.extend(data.iter().skip(1).step_by(2).cloned());
            assert_eq!(apply(&policy, &interleaved), result, "{spec}");

            // The plan does not depend on now (all complete), keeps what apply keeps plus the
            // newest, and every kept backup says why.
            let entries = complete_entries(&data);
            let soon = plan(&policy, &entries, newest + TimeDelta::hours(1), false, None);
            let later = plan(&policy, &entries, t("2040-01-01T00:00:00Z"), false, None);
            assert_eq!(soon, later, "{spec}");
            for (d, (key, _, reasons)) in soon.decisions.iter().zip(&result) {
                assert_eq!(&d.key, key);
                assert!(!d.reasons.is_empty(), "{spec}: {key}");
                let expected_keep = !reasons.is_empty() || d.time == newest || policy.is_empty();
                assert_eq!(d.action == Action::Keep, expected_keep, "{spec}: {key}");
            }
            if policy.is_empty() {
                assert_eq!(soon.hold, Some(Hold::NoPolicy));
                assert_eq!(soon.deleted(), 0);
            } else {
                assert_eq!(soon.hold, None);
                assert_eq!(soon.kept() + soon.deleted(), data.len(), "{spec}");
                assert_eq!(soon.delete_keys().len(), 4 * soon.deleted(), "{spec}");
            }
        }
    }

    /// One test per bucket function, at its boundaries.
    #[test]
    fn bucket_boundaries() {
        let keeps = |policy: &Policy, times: &[&str]| -> Vec<Vec<String>> {
            let backups: Vec<_> = times.iter().map(|s| (key(t(s)), t(s))).collect();
            apply(policy, &backups).into_iter().map(|r| r.2).collect()
        };
        let daily = Policy {
            keep_daily: Some(10),
            ..Policy::default()
        };
        assert_eq!(
            keeps(
                &daily,
                &["2026-11-28T23:59:59.999Z", "2026-11-29T00:00:00.000Z"]
            ),
            [vec!["daily 2026-11-29"], vec!["daily 2026-11-28"]]
        );
        let hourly = Policy {
            keep_hourly: Some(10),
            ..Policy::default()
        };
        assert_eq!(
            keeps(
                &hourly,
                &[
                    "2026-11-28T08:59:59.999Z",
                    "2026-11-28T09:00:00.000Z",
                    "2026-11-28T09:30:00Z"
                ]
            ),
            [
                vec!["hourly 2026-11-28T09"],
                vec![],
                vec!["hourly 2026-11-28T08"]
            ]
        );
        let weekly = Policy {
            keep_weekly: Some(10),
            ..Policy::default()
        };
        assert_eq!(
            keeps(
                &weekly,
                &[
                    "2026-12-27T23:59:59.999Z",
                    "2026-12-28T00:00:00.000Z",
                    "2027-01-03T23:59:59.999Z",
                    "2027-01-04T00:00:00.000Z",
                ]
            ),
            [
                vec!["weekly 2027-W01"],
                vec!["weekly 2026-W53"],
                vec![],
                vec!["weekly 2026-W52"]
            ]
        );
        let monthly = Policy {
            keep_monthly: Some(10),
            ..Policy::default()
        };
        assert_eq!(
            keeps(
                &monthly,
                &["2028-02-29T23:59:59.999Z", "2028-03-01T00:00:00.000Z"]
            ),
            [vec!["monthly 2028-03"], vec!["monthly 2028-02"]]
        );
        let yearly = Policy {
            keep_yearly: Some(10),
            ..Policy::default()
        };
        assert_eq!(
            keeps(
                &yearly,
                &["2026-12-31T23:59:59.999Z", "2027-01-01T00:00:00.000Z"]
            ),
            [vec!["yearly 2027"], vec!["yearly 2026"]]
        );
        // Non-adjacent backups of one period are still one period (keys grow with time).
        let b = Rule::Weekly.bucket(0, t("2026-12-28T00:00:00Z"));
        assert_eq!(b, Rule::Weekly.bucket(0, t("2027-01-03T23:59:59.999Z")));
        assert!(Rule::Weekly.bucket(0, t("2027-01-04T00:00:00Z")) > b);
    }

    #[test]
    fn apply_edge_cases() {
        let policy = Policy {
            keep_daily: Some(3),
            keep_within: Some(within("1d")),
            ..Policy::default()
        };
        assert!(apply(&policy, &[]).is_empty());
        // Same time: ties are broken by key, descending; only the first one is "daily".
        let time = t("2026-11-28T09:00:00Z");
        let backups = vec![("a".to_string(), time), ("b".to_string(), time)];
        let result = apply(&policy, &backups);
        assert_eq!(result[0].0, "b");
        assert_eq!(result[0].2, ["daily 2026-11-28", "within 1d"]);
        assert_eq!(result[1].2, ["within 1d"]);
    }

    fn entry(time: &str, complete: bool) -> Entry {
        Entry {
            key: key(t(time)),
            time: t(time),
            complete,
            held: None,
        }
    }

    fn actions(plan: &Plan) -> Vec<Action> {
        plan.decisions.iter().map(|d| d.action).collect()
    }

    const NOW: &str = "2026-12-01T12:00:00Z";

    fn mixed_entries() -> Vec<Entry> {
        vec![
            entry("2026-11-20T00:00:00Z", true),
            entry("2026-11-21T00:00:00Z", false), // old incomplete
            entry("2026-11-29T00:00:00Z", true),
            entry("2026-11-30T00:00:00Z", true),
            entry("2026-12-01T06:00:00Z", false), // young incomplete
        ]
    }

    /// What a store cannot prove is never trusted: a future-dated backup (planted, or a
    /// fast clock) is held and does not count as newest; a backup whose manifest does not
    /// check out is held; the backup a run has just written is never deleted by that run.
    #[test]
    fn untrusted_entries_are_held_and_the_new_backup_kept() {
        let held = |time: &str| Entry {
            held: Some("its manifest names another backup".into()),
            ..entry(time, false)
        };
        let genuine = || {
            vec![
                entry("2026-11-29T00:00:00Z", true),
                entry("2026-11-30T00:00:00Z", true),
                entry("2026-12-01T06:00:00Z", true),
            ]
        };
        let last1 = parse_spec("last-1");
        let within = parse_spec("within-2d");
        // (policy, extra entries, written, expected actions newest first, why)
        type Case<'a> = (
            &'a Policy,
            Vec<Entry>,
            Option<&'a str>,
            Vec<Action>,
            &'a str,
        );
        let cases: Vec<Case> = vec![
            (
                &last1,
                vec![
                    entry("2099-01-01T00:00:00Z", true),
                    entry("2099-01-01T00:00:00Z", false),
                ],
                None,
                vec![
                    Action::Ignore,
                    Action::Ignore,
                    Action::Keep,
                    Action::Delete,
                    Action::Delete,
                ],
                "a planted future pair is held; the newest genuine backup is still the one kept",
            ),
            (
                &within,
                vec![entry("2026-12-03T00:00:00Z", true)],
                None,
                vec![Action::Ignore, Action::Keep, Action::Keep, Action::Delete],
                "keep-within counts back from the newest genuine backup, not the future one",
            ),
            (
                &within,
                vec![entry("2026-12-02T11:00:00Z", true)],
                None,
                vec![Action::Keep, Action::Keep, Action::Delete, Action::Delete],
                "less than a day ahead is a fast clock, not a plant: it counts",
            ),
            (
                &last1,
                vec![held("2026-11-20T00:00:00Z"), held("2026-12-01T07:00:00Z")],
                None,
                vec![
                    Action::Ignore,
                    Action::Keep,
                    Action::Delete,
                    Action::Delete,
                    Action::Ignore,
                ],
                "a manifest that does not check out holds its backup, however old",
            ),
            (
                &last1,
                vec![entry("2099-01-01T00:00:00Z", true)],
                Some("db/backup-2026-11-30T00-00-00-000Z.sql.zst"),
                vec![Action::Ignore, Action::Keep, Action::Keep, Action::Delete],
                "the backup this run wrote is kept even when no rule keeps it",
            ),
        ];
        for (policy, extra, written, want, why) in cases {
            let mut entries = genuine();
            entries.extend(extra);
            let p = plan(policy, &entries, t(NOW), false, written);
            assert_eq!(actions(&p), want, "{why}: {:#?}", p.decisions);
        }
        let p = plan(
            &last1,
            &[entry("2099-01-01T00:00:00Z", true)],
            t(NOW),
            false,
            None,
        );
        assert_eq!(p.decisions[0].reasons, [FUTURE_REASON]);
        assert_eq!(
            p.hold,
            Some(Hold::NoCompleteBackup),
            "a future backup is no fallback"
        );
    }

    #[test]
    fn plan_without_hold() {
        let policy = Policy {
            keep_daily: Some(2),
            ..Policy::default()
        };
        let p = plan(&policy, &mixed_entries(), t(NOW), false, None);
        assert_eq!(p.hold, None);
        use Action::*;
        assert_eq!(actions(&p), [Ignore, Keep, Keep, Delete, Delete]);
        assert_eq!(p.decisions[0].reasons, [YOUNG_INCOMPLETE_REASON]);
        assert_eq!(p.decisions[1].reasons, ["daily 2026-11-30"]);
        assert_eq!(p.decisions[3].reasons, [OLD_INCOMPLETE_REASON]);
        assert_eq!(p.decisions[4].reasons, [NOT_KEPT_REASON]);
        assert_eq!((p.kept(), p.deleted()), (2, 2));
        // Manifests and reports only for complete backups, all before any object.
        assert_eq!(
            p.delete_keys(),
            [
                "db/backup-2026-11-20T00-00-00-000Z.sql.zst.manifest.json.sig",
                "db/backup-2026-11-20T00-00-00-000Z.sql.zst.manifest.json",
                "db/backup-2026-11-20T00-00-00-000Z.sql.zst.verify.json",
                "db/backup-2026-11-21T00-00-00-000Z.sql.zst",
                "db/backup-2026-11-20T00-00-00-000Z.sql.zst",
            ]
        );
        // The incomplete entries did not take part: with keep_last 1 the newest complete one
        // is "last", although an incomplete one is newer.
        let last = Policy {
            keep_last: Some(1),
            ..Policy::default()
        };
        let p = plan(&last, &mixed_entries(), t(NOW), false, None);
        assert_eq!(p.decisions[1].reasons, ["last"]);
        assert_eq!(actions(&p), [Ignore, Keep, Delete, Delete, Delete]);
    }

    #[test]
    fn plan_holds() {
        use Action::*;
        let policy = Policy {
            keep_last: Some(1),
            ..Policy::default()
        };
        let none = plan(&Policy::default(), &mixed_entries(), t(NOW), false, None);
        assert_eq!(none.hold, Some(Hold::NoPolicy));
        assert_eq!(actions(&none), [Ignore, Keep, Keep, Ignore, Keep]);
        assert_eq!(none.decisions[1].reasons, [SAFETY_REASON]);
        assert_eq!(
            none.decisions[2].reasons,
            ["nothing is deleted: no retention policy is set"]
        );
        assert_eq!(
            none.decisions[3].reasons,
            [
                OLD_INCOMPLETE_REASON,
                "nothing is deleted: no retention policy is set"
            ]
        );

        let failed = plan(&policy, &mixed_entries(), t(NOW), true, None);
        assert_eq!(failed.hold, Some(Hold::CurrentRunFailed));
        assert_eq!(actions(&failed), [Ignore, Keep, Keep, Ignore, Keep]);
        assert_eq!(failed.decisions[1].reasons, ["last"]);
        assert_eq!(
            failed.decisions[2].reasons,
            [
                NOT_KEPT_REASON,
                "nothing is deleted: the current backup run failed"
            ]
        );

        let incomplete: Vec<Entry> = mixed_entries()
            .into_iter()
            .filter(|e| !e.complete)
            .collect();
        let nothing = plan(&policy, &incomplete, t(NOW), false, None);
        assert_eq!(nothing.hold, Some(Hold::NoCompleteBackup));
        assert_eq!(actions(&nothing), [Ignore, Ignore]);
        assert_eq!(
            nothing.decisions[1].reasons,
            [
                OLD_INCOMPLETE_REASON,
                "nothing is deleted: there is no complete backup"
            ]
        );

        for p in [&none, &failed, &nothing] {
            assert_eq!(p.deleted(), 0);
            assert!(p.delete_keys().is_empty());
        }
        let empty = plan(&policy, &[], t(NOW), false, None);
        assert_eq!(empty.hold, Some(Hold::NoCompleteBackup));
        assert!(empty.decisions.is_empty());
    }

    #[test]
    fn newest_complete_backup_is_always_kept() {
        use Action::*;
        // Every count zero and no within: not empty, keeps nothing, so only the safety rule
        // keeps the newest complete backup.
        let zero = parse_spec("last-0_hourly-0_daily-0_weekly-0_monthly-0_yearly-0");
        assert!(!zero.is_empty());
        let p = plan(&zero, &mixed_entries(), t(NOW), false, None);
        assert_eq!(p.hold, None);
        assert_eq!(actions(&p), [Ignore, Keep, Delete, Delete, Delete]);
        assert_eq!(p.decisions[1].reasons, [SAFETY_REASON]);

        // Kept by a rule: no safety reason added.
        let daily = parse_spec("daily-1");
        let p = plan(&daily, &mixed_entries(), t(NOW), false, None);
        assert_eq!(p.decisions[1].reasons, ["daily 2026-11-30"]);
    }

    #[test]
    fn incomplete_entries_age_against_now() {
        use Action::*;
        let policy = parse_spec("last-1");
        let entries = vec![
            entry("2026-12-01T00:00:00Z", true),
            entry("2026-11-30T12:00:00Z", false), // exactly a day before now: may be uploading
            entry("2026-11-30T11:59:59.999Z", false), // more than a day
            entry("2026-12-02T00:00:00Z", false), // in the future (clock skew)
        ];
        let p = plan(&policy, &entries, t(NOW), false, None);
        assert_eq!(actions(&p), [Ignore, Keep, Ignore, Delete]);
        assert_eq!(p.decisions[2].reasons, [YOUNG_INCOMPLETE_REASON]);
        assert_eq!(
            p.delete_keys(),
            ["db/backup-2026-11-30T11-59-59-999Z.sql.zst"]
        );
        // A day later the other one is old too; the complete ones are unchanged.
        let p = plan(&policy, &entries, t("2026-12-02T12:00:01Z"), false, None);
        assert_eq!(actions(&p), [Ignore, Keep, Delete, Delete]);
    }

    #[test]
    fn buckets_are_utc_days_and_hours() {
        // 23:30 UTC and 00:30 UTC the next day are different days even where local time (e.g.
        // UTC-5) puts them on one day; the EU DST change (2026-10-25 01:00 UTC) is invisible.
        let entries = vec![
            entry("2026-11-28T23:30:00Z", true),
            entry("2026-11-29T00:30:00Z", true),
            entry("2026-10-25T00:30:00Z", true),
            entry("2026-10-25T01:30:00Z", true),
        ];
        let p = plan(&parse_spec("daily-10"), &entries, t(NOW), false, None);
        let reasons: Vec<&[String]> = p.decisions.iter().map(|d| &d.reasons[..]).collect();
        assert_eq!(
            reasons,
            [
                &["daily 2026-11-29".to_string()][..],
                &["daily 2026-11-28".to_string()],
                &["daily 2026-10-25".to_string()],
                &[NOT_KEPT_REASON.to_string()],
            ]
        );
        let p = plan(&parse_spec("hourly-10"), &entries, t(NOW), false, None);
        assert_eq!(p.kept(), 4);
        assert_eq!(p.decisions[2].reasons, ["hourly 2026-10-25T01"]);
    }

    #[test]
    fn decisions_are_newest_first_with_key_ties_descending() {
        let time = t("2026-11-28T09:00:00Z");
        let entries: Vec<Entry> = ["a/x", "c/x", "b/x"]
            .iter()
            .map(|k| Entry {
                key: k.to_string(),
                time,
                complete: true,
                held: None,
            })
            .chain([entry("2026-11-28T10:00:00Z", false)])
            .collect();
        let p = plan(&parse_spec("last-2"), &entries, t(NOW), false, None);
        let keys: Vec<&str> = p.decisions.iter().map(|d| d.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "db/backup-2026-11-28T10-00-00-000Z.sql.zst",
                "c/x",
                "b/x",
                "a/x"
            ]
        );
        assert_eq!(
            actions(&p),
            [Action::Delete, Action::Keep, Action::Keep, Action::Delete]
        );
    }

    #[test]
    fn within_parses() {
        let w = |y, m, wk, d, h| Within {
            years: y,
            months: m,
            weeks: wk,
            days: d,
            hours: h,
        };
        let valid = [
            ("30d", w(0, 0, 0, 30, 0)),
            ("12h", w(0, 0, 0, 0, 12)),
            ("1y", w(1, 0, 0, 0, 0)),
            ("1y2m", w(1, 2, 0, 0, 0)),
            ("1y2m3d4h", w(1, 2, 0, 3, 4)),
            ("2w", w(0, 0, 2, 0, 0)),
            ("1m2w3d", w(0, 1, 2, 3, 0)),
            ("1y0d", w(1, 0, 0, 0, 0)),
            ("007d", w(0, 0, 0, 7, 0)),
            ("4294967295h", w(0, 0, 0, 0, u32::MAX)),
        ];
        for (s, expected) in valid {
            assert_eq!(s.parse::<Within>(), Ok(expected), "{s}");
        }
        let invalid = [
            "",
            "d",
            "30",
            "30x",
            "0d",
            "0y0h",
            "-1d",
            "1d1y",
            "1d1d",
            "1.5d",
            " 30d",
            "30d ",
            "30D",
            "1y2",
            "4294967296h",
            "30dd",
            "+1d",
            "1 d",
        ];
        for s in invalid {
            let err = s.parse::<Within>().unwrap_err();
            assert!(
                err.contains("expected a duration like 30d, 12h, 1y2m"),
                "{s}: {err}"
            );
            assert!(err.contains(&format!("{s:?}")), "{s}: {err}");
        }
        assert!("30x".parse::<Within>().unwrap_err().contains("'x'"));
        assert!(
            "1d1y"
                .parse::<Within>()
                .unwrap_err()
                .contains("out of order")
        );
        assert!("0d".parse::<Within>().unwrap_err().contains("zero"));
    }

    #[test]
    fn within_display_round_trips() {
        for s in [
            "30d",
            "12h",
            "1y",
            "1y2m",
            "1y2m3d4h",
            "2w",
            "1m2w3d",
            "4294967295h",
        ] {
            let w: Within = s.parse().unwrap();
            assert_eq!(w.to_string(), s);
            assert_eq!(w.to_string().parse::<Within>(), Ok(w));
        }
        // Non-canonical inputs display canonically.
        assert_eq!(within("1y0d").to_string(), "1y");
        assert_eq!(within("007d").to_string(), "7d");
        let zero = Within {
            years: 0,
            months: 0,
            weeks: 0,
            days: 0,
            hours: 0,
        };
        assert_eq!(zero.to_string(), "0h");
    }

    #[test]
    fn within_before_is_calendar_aware() {
        let cases = [
            ("1m", "2026-03-31T10:00:00Z", "2026-02-28T10:00:00Z"),
            ("1m", "2028-03-31T10:00:00Z", "2028-02-29T10:00:00Z"),
            ("1y", "2028-02-29T10:00:00Z", "2027-02-28T10:00:00Z"),
            ("3m", "2028-05-31T23:59:59.999Z", "2028-02-29T23:59:59.999Z"),
            (
                "1y2m",
                "2028-05-31T23:59:59.999Z",
                "2027-03-31T23:59:59.999Z",
            ),
            (
                "30d",
                "2028-05-31T23:59:59.999Z",
                "2028-05-01T23:59:59.999Z",
            ),
            ("2w", "2028-05-31T23:59:59.999Z", "2028-05-17T23:59:59.999Z"),
            (
                "12h",
                "2028-05-31T23:59:59.999Z",
                "2028-05-31T11:59:59.999Z",
            ),
            ("1d", "2026-03-29T12:00:00Z", "2026-03-28T12:00:00Z"),
            ("1m1d", "2026-03-31T00:00:00Z", "2026-02-27T00:00:00Z"),
        ];
        for (w, from, to) in cases {
            assert_eq!(within(w).before(t(from)), t(to), "{from} - {w}");
        }
        let huge = within("4294967295y4294967295h");
        assert_eq!(huge.before(t(NOW)), DateTime::<Utc>::MIN_UTC);
    }

    #[test]
    fn within_counts_from_the_newest_backup_not_now() {
        // Backups stopped a year ago: keep_within 30d still keeps the last month of them.
        let policy = parse_spec("within-30d");
        let entries = vec![
            entry("2025-11-30T00:00:00Z", true),
            entry("2025-11-01T00:00:00Z", true),
            entry("2025-10-31T00:00:00Z", true), // exactly 30 days before the newest
            entry("2025-10-30T23:59:59.999Z", true),
        ];
        let p = plan(&policy, &entries, t(NOW), false, None);
        use Action::*;
        assert_eq!(actions(&p), [Keep, Keep, Keep, Delete]);
        assert_eq!(p.decisions[1].reasons, ["within 30d"]);
    }

    #[test]
    fn policy_serde() {
        let policy = Policy {
            keep_daily: Some(7),
            keep_within: Some(within("1y2m")),
            ..Policy::default()
        };
        let json = serde_json::to_string(&policy).unwrap();
        assert_eq!(
            json,
            r#"{"keep_daily":7,"keep_within":{"years":1,"months":2,"weeks":0,"days":0,"hours":0}}"#
        );
        assert_eq!(serde_json::from_str::<Policy>(&json).unwrap(), policy);
        assert!(serde_json::from_str::<Policy>("{}").unwrap().is_empty());
        assert!(serde_json::from_str::<Policy>(r#"{"keep_dayly":7}"#).is_err());
        assert!(!parse_spec("within-12h").is_empty());
    }
}
