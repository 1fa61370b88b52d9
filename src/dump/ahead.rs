//! Reading a table's pages ahead of the SQL writer, in order, with up to two page requests
//! on the wire.
//!
//! A keyset page can only be asked for once the last key of the page before it is known,
//! which leaves one request in flight. For a rowid table the key space itself can be split:
//! once a full page ending at key `k` arrives, the next two pages go out together — a
//! *bounded* page `k < rowid <= k + span` (the span the last page's density says holds about
//! one page of rows) and an *open* page `rowid > k + span` — so two round trips overlap with
//! each other and with the writer. The output order is unchanged (the bounded page is
//! written before the open one), and so is the number of requests on a table whose rowids
//! are dense: a bounded page that comes back full before its bound is completed by one more
//! bounded read. Tables keyed by a primary key (WITHOUT ROWID) read one page ahead.
//!
//! Memory stays bounded: the two pages that follow an open page are sent when the writer
//! takes that page, so at most three pages exist at once (the one being written and the two
//! on the wire), one more than a plain one-ahead read.

use std::collections::VecDeque;
use std::sync::Arc;

use anyhow::{Context, Result};
use tokio::task::JoinHandle;

use super::paging::PagePolicy;
use crate::rows::Page;

/// What a page read returned: the page, the row limit it was read with (smaller than asked
/// when D1's memory limit made it shrink) and the requests it took.
pub type Fetched = (Page, usize, u64);

/// One page to read: the rows after `after` (a key literal; `None` for the first page), up
/// to and including key `upto` when bounded, at most `limit` rows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    pub after: Option<Vec<String>>,
    pub upto: Option<i64>,
    pub limit: usize,
}

/// What follows a page, by [`plan`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Next {
    /// The table ends with this page.
    Done,
    /// Read these pages next, in this order.
    Read(Vec<Segment>),
}

/// The rowid of a key literal, if the key is a single integer.
fn rowid(key: &str) -> Option<i64> {
    key.parse().ok()
}

/// What to read after a page (pure policy, tested below).
///
/// `seg`: how the page was read; `used`: the limit it was read with; `rows`, `bytes`: what
/// it held; `first`/`last`: the key literals of its first and last rows (`last` is the key
/// list for the next `WHERE`); `ranges`: the table's keys are rowids.
#[allow(clippy::too_many_arguments)]
pub fn plan(
    policy: &PagePolicy,
    seg: &Segment,
    used: usize,
    rows: usize,
    bytes: usize,
    first: Option<&str>,
    last: Option<Vec<String>>,
    ranges: bool,
) -> Next {
    let Some(last) = last.filter(|_| rows > 0 && rows >= used) else {
        // Not full: the page reached the end of the table, or of its range (whose rest is
        // already in the queue).
        return Next::Done;
    };
    if let Some(upto) = seg.upto {
        // A bounded page that came back full: finish its range before what follows it.
        let last_id = last.first().and_then(|k| rowid(k));
        return match last_id {
            Some(id) if id >= upto => Next::Done,
            _ => Next::Read(vec![Segment {
                after: Some(last),
                upto: Some(upto),
                limit: seg.limit,
            }]),
        };
    }
    let limit = policy.next_limit(used, rows, bytes);
    let open = |after: Vec<String>| Segment {
        after: Some(after),
        upto: None,
        limit,
    };
    // WITHOUT ROWID tables have no key arithmetic; while pages are still growing at the
    // policy's fastest rate, one page ahead keeps the request count of a plain keyset read.
    if !ranges || limit >= used.saturating_mul(policy.max_growth) {
        return Next::Read(vec![open(last)]);
    }
    let ids = (first.and_then(rowid), last.first().and_then(|k| rowid(k)));
    let (Some(lo), Some(hi)) = ids else {
        return Next::Read(vec![open(last)]);
    };
    // Keys per row over this page; the next `limit` rows are expected within `span` keys.
    let spread = i128::from(hi) - i128::from(lo);
    let per = (rows.max(2) - 1) as i128;
    let span = (spread * limit as i128 / per).max(limit as i128).max(1);
    let Some(upto) = i64::try_from(i128::from(hi) + span).ok() else {
        return Next::Read(vec![open(last)]);
    };
    Next::Read(vec![
        Segment {
            after: Some(last),
            upto: Some(upto),
            // Room for a little more density than the last page had.
            limit: limit + limit / 8,
        },
        open(vec![upto.to_string()]),
    ])
}

/// Reads one segment (the dumper's page fetch, with its retries).
pub type Reader = Arc<
    dyn Fn(Segment) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<Fetched>> + Send>>
        + Send
        + Sync,
>;

/// The key list for the `WHERE` after row `r` of a page.
pub type KeyOf = Box<dyn Fn(&Page, usize) -> Result<Vec<String>> + Send + Sync>;

enum State {
    Running(JoinHandle<Result<Fetched>>),
    Done(Fetched),
}

struct Slot {
    seg: Segment,
    state: State,
}

/// The pages of one table, in output order.
pub struct Ahead {
    read: Reader,
    policy: PagePolicy,
    ranges: bool,
    key_of: KeyOf,
    queue: VecDeque<Slot>,
}

impl Ahead {
    /// Start with the first page: already read (`first`) or read now.
    pub fn new(
        read: Reader,
        policy: PagePolicy,
        ranges: bool,
        key_of: KeyOf,
        first: Option<(Page, usize)>,
    ) -> Ahead {
        let seg = Segment {
            after: None,
            upto: None,
            limit: policy.initial_rows,
        };
        let mut ahead = Ahead {
            read,
            policy,
            ranges,
            key_of,
            queue: VecDeque::new(),
        };
        let state = match first {
            Some((page, used)) => State::Done((page, used, 0)),
            None => State::Running(tokio::spawn((ahead.read)(seg.clone()))),
        };
        ahead.queue.push_back(Slot { seg, state });
        ahead
    }

    fn spawn(&self, seg: Segment) -> Slot {
        let handle = tokio::spawn((self.read)(seg.clone()));
        Slot {
            seg,
            state: State::Running(handle),
        }
    }

    /// The successors of a read page.
    fn successors(&self, seg: &Segment, fetched: &Fetched) -> Result<Vec<Segment>> {
        let (page, used, _) = fetched;
        let rows = page.len();
        let last = if rows > 0 {
            Some((self.key_of)(page, rows - 1)?)
        } else {
            None
        };
        let first = (rows > 0).then(|| page.cell(0, 0));
        Ok(
            match plan(
                &self.policy,
                seg,
                *used,
                rows,
                page.bytes(),
                first,
                last,
                self.ranges,
            ) {
                Next::Done => Vec::new(),
                Next::Read(segs) => segs,
            },
        )
    }

    /// The next page in output order, or `None` at the end of the table.
    pub async fn next(&mut self) -> Result<Option<Fetched>> {
        let Some(slot) = self.queue.pop_front() else {
            return Ok(None);
        };
        let fetched = match slot.state {
            State::Done(f) => f,
            State::Running(h) => h.await.context("page fetch task failed")??,
        };
        let next = self.successors(&slot.seg, &fetched)?;
        if slot.seg.upto.is_some() {
            // The rest of a bounded range comes before everything queued after it.
            for s in next.into_iter().rev() {
                let slot = self.spawn(s);
                self.queue.push_front(slot);
            }
        } else {
            // An open page is the last in the queue: what follows it goes behind it.
            for s in next {
                let slot = self.spawn(s);
                self.queue.push_back(slot);
            }
        }
        Ok(Some(fetched))
    }
}

impl Drop for Ahead {
    fn drop(&mut self) {
        for slot in &self.queue {
            if let State::Running(h) = &slot.state {
                h.abort();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(k: i64) -> Option<Vec<String>> {
        Some(vec![k.to_string()])
    }

    fn seg(after: Option<i64>, upto: Option<i64>, limit: usize) -> Segment {
        Segment {
            after: after.map(|a| vec![a.to_string()]),
            upto,
            limit,
        }
    }

    #[test]
    fn plans_pages() {
        let p = PagePolicy {
            target_bytes: 1000,
            initial_rows: 10,
            max_rows: 1000,
            max_growth: 100,
        };
        // (segment read, used limit, rows, bytes, first key, last key, rowid table) → next
        #[allow(clippy::type_complexity)]
        let cases: Vec<(
            Segment,
            usize,
            usize,
            usize,
            Option<i64>,
            Option<i64>,
            bool,
            Next,
        )> = vec![
            // An open page that is not full ends the table.
            (
                seg(None, None, 10),
                10,
                7,
                70,
                Some(1),
                Some(7),
                true,
                Next::Done,
            ),
            (seg(None, None, 10), 10, 0, 0, None, None, true, Next::Done),
            // Dense rowids, 10 bytes a row: 100 rows next, split into (10, 110] and > 110.
            (
                seg(None, None, 10),
                10,
                10,
                100,
                Some(1),
                Some(10),
                true,
                Next::Read(vec![
                    seg(Some(10), Some(110), 112),
                    seg(Some(110), None, 100),
                ]),
            ),
            // Every other rowid used: 100 rows span 200 keys (and at least `limit`).
            (
                seg(Some(0), None, 10),
                10,
                10,
                100,
                Some(2),
                Some(20),
                true,
                Next::Read(vec![
                    seg(Some(20), Some(220), 112),
                    seg(Some(220), None, 100),
                ]),
            ),
            // WITHOUT ROWID: one open page at a time.
            (
                seg(None, None, 10),
                10,
                10,
                100,
                Some(1),
                Some(10),
                false,
                Next::Read(vec![seg(Some(10), None, 100)]),
            ),
            // Still growing at the fastest rate (10 → 10 × 100 rows): one open page.
            (
                seg(None, None, 10),
                10,
                10,
                10,
                Some(1),
                Some(10),
                true,
                Next::Read(vec![seg(Some(10), None, 1000)]),
            ),
            // A full bounded page that stopped short of its bound: read the rest of it.
            (
                seg(Some(10), Some(110), 112),
                112,
                112,
                1120,
                Some(11),
                Some(90),
                true,
                Next::Read(vec![seg(Some(90), Some(110), 112)]),
            ),
            // A full bounded page that reached its bound, or a bounded page not full: done.
            (
                seg(Some(10), Some(110), 100),
                100,
                100,
                1000,
                Some(11),
                Some(110),
                true,
                Next::Done,
            ),
            (
                seg(Some(10), Some(110), 112),
                112,
                5,
                50,
                Some(11),
                Some(30),
                true,
                Next::Done,
            ),
            // Keys near the top of the range: no bound that overflows.
            (
                seg(None, None, 10),
                10,
                10,
                100,
                Some(i64::MAX - 9),
                Some(i64::MAX),
                true,
                Next::Read(vec![seg(Some(i64::MAX), None, 100)]),
            ),
        ];
        for (i, (s, used, rows, bytes, first, last, ranges, want)) in cases.into_iter().enumerate()
        {
            let first = first.map(|k| k.to_string());
            let got = plan(
                &p,
                &s,
                used,
                rows,
                bytes,
                first.as_deref(),
                last.and_then(key),
                ranges,
            );
            assert_eq!(got, want, "case {i}");
        }
    }
}
