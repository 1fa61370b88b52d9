//! Splitting a fleet of databases across jobs: `shard: I/N` keeps the databases whose stable
//! hash falls in shard I of N, so N jobs of a matrix cover every database exactly once.
//!
//! The hash is of the database UUID (lower case): the same database lands in the same shard
//! on every run, whatever the listing order or the other databases; a new database joins one
//! shard without moving any other. SHA-256 spreads UUIDs evenly.

use sha2::{Digest, Sha256};

/// The most shards a fleet may be split into (a matrix has at most 256 jobs).
pub const MAX_SHARDS: u32 = 256;

/// Shard `index` (1-based) of `count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    pub index: u32,
    pub count: u32,
}

impl Shard {
    /// Parse `I/N` with 1 ≤ I ≤ N ≤ [`MAX_SHARDS`].
    pub fn parse(s: &str) -> Result<Shard, String> {
        let bad =
            || format!("{s:?} is not a shard; use `I/N` with 1 ≤ I ≤ N ≤ {MAX_SHARDS}, like `1/4`");
        let (i, n) = s.trim().split_once('/').ok_or_else(bad)?;
        let index: u32 = i.trim().parse().map_err(|_| bad())?;
        let count: u32 = n.trim().parse().map_err(|_| bad())?;
        if index == 0 || count == 0 || index > count || count > MAX_SHARDS {
            return Err(bad());
        }
        Ok(Shard { index, count })
    }

    /// The shard (1-based) that database `uuid` belongs to, of `count`.
    pub fn of(uuid: &str, count: u32) -> u32 {
        let digest = Sha256::digest(uuid.trim().to_ascii_lowercase().as_bytes());
        let mut first = [0u8; 8];
        first.copy_from_slice(&digest[..8]);
        (u64::from_be_bytes(first) % u64::from(count.max(1))) as u32 + 1
    }

    /// Whether database `uuid` is in this shard.
    pub fn contains(&self, uuid: &str) -> bool {
        Shard::of(uuid, self.count) == self.index
    }
}

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn uuid(i: u32) -> String {
        format!(
            "{:08x}-0000-4000-8000-{:012x}",
            i.wrapping_mul(2_654_435_761),
            i
        )
    }

    #[test]
    fn parses_only_proper_shards() {
        let cases: &[(&str, Option<(u32, u32)>)] = &[
            ("1/1", Some((1, 1))),
            ("1/4", Some((1, 4))),
            (" 4 / 4 ", Some((4, 4))),
            ("256/256", Some((256, 256))),
            ("0/4", None),
            ("5/4", None),
            ("1/0", None),
            ("1/257", None),
            ("1", None),
            ("a/b", None),
            ("-1/4", None),
            ("1/4/2", None),
            ("", None),
        ];
        for (text, want) in cases {
            let got = Shard::parse(text).ok().map(|s| (s.index, s.count));
            assert_eq!(got, *want, "{text:?}");
        }
    }

    #[test]
    fn shards_are_disjoint_cover_everything_and_ignore_order() {
        let fleet: Vec<String> = (0..1000).map(uuid).collect();
        for n in [1u32, 2, 3, 7, 16, 256] {
            let mut seen = std::collections::HashMap::new();
            for i in 1..=n {
                let shard = Shard { index: i, count: n };
                for u in fleet.iter().filter(|u| shard.contains(u)) {
                    assert!(
                        seen.insert(u.clone(), i).is_none(),
                        "{u} in two shards of {n}"
                    );
                }
            }
            assert_eq!(seen.len(), fleet.len(), "{n} shards cover the fleet");
            // The same database, listed in another order or case, lands in the same shard.
            let mut reversed = fleet.clone();
            reversed.reverse();
            for u in &reversed {
                assert_eq!(Shard::of(&u.to_ascii_uppercase(), n), seen[u]);
            }
            if n == 7 {
                // Evenly spread: every shard within 30% of 1000/7.
                for i in 1..=n {
                    let k = seen.values().filter(|&&s| s == i).count() as f64;
                    assert!(
                        (k - 1000.0 / 7.0).abs() < 0.3 * 1000.0 / 7.0,
                        "shard {i}: {k}"
                    );
                }
            }
        }
    }
}
