//! The per-token API rate limit ([`crate::options::RateLimit`]): a sliding window of the
//! admitted requests of each token. A request is admitted while its token has fewer than
//! `requests` admitted requests in the last `window`; otherwise it is refused with the whole
//! seconds (at least 1) until the oldest of them leaves the window. Refused requests do not
//! count, so a client that waits as told always gets through. A leaf: it imports only options.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use crate::options::RateLimit;

/// Admission times per token, behind the application's budget mutex.
#[derive(Debug, Default)]
pub struct Budget {
    admitted: HashMap<String, VecDeque<Instant>>,
}

impl Budget {
    /// Counts a request of token `key` at `now` against `limit`. `Ok` when admitted (and
    /// counted); `Err(secs)` with the `retry-after` seconds when over the limit.
    pub fn admit(&mut self, key: &str, limit: RateLimit, now: Instant) -> Result<(), u32> {
        if limit.requests == 0 {
            return Err(whole_seconds(limit.window));
        }
        let times = self.admitted.entry(key.to_string()).or_default();
        while times
            .front()
            .is_some_and(|t| now.saturating_duration_since(*t) >= limit.window)
        {
            times.pop_front();
        }
        if times.len() < limit.requests as usize {
            times.push_back(now);
            return Ok(());
        }
        let wait = times
            .front()
            .and_then(|oldest| oldest.checked_add(limit.window))
            .map_or(limit.window, |frees_at| {
                frees_at.saturating_duration_since(now)
            });
        Err(whole_seconds(wait))
    }
}

/// `d` rounded up to whole seconds, at least 1, saturating at `u32::MAX`.
fn whole_seconds(d: Duration) -> u32 {
    let secs = d.as_secs() + u64::from(d.subsec_nanos() > 0);
    u32::try_from(secs.max(1)).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limit(requests: u32, secs: u64) -> RateLimit {
        RateLimit {
            requests,
            window: Duration::from_secs(secs),
        }
    }

    #[test]
    fn sliding_window_per_token() {
        let mut b = Budget::default();
        let t0 = Instant::now();
        let l = limit(2, 10);
        assert_eq!(b.admit("a", l, t0), Ok(()));
        assert_eq!(b.admit("a", l, t0 + Duration::from_secs(4)), Ok(()));
        // Full: the first admission leaves the window at t0 + 10s.
        assert_eq!(
            b.admit("a", l, t0 + Duration::from_millis(4500)),
            Err(6),
            "5.5s rounds up"
        );
        // Another token has its own budget.
        assert_eq!(b.admit("b", l, t0 + Duration::from_secs(5)), Ok(()));
        // Refusals do not count; at t0 + 10s the first request has left the window.
        assert_eq!(b.admit("a", l, t0 + Duration::from_secs(10)), Ok(()));
        assert_eq!(b.admit("a", l, t0 + Duration::from_secs(11)), Err(3));
        assert_eq!(b.admit("a", l, t0 + Duration::from_secs(14)), Ok(()));
    }

    #[test]
    fn retry_after_is_at_least_one_second() {
        let mut b = Budget::default();
        let t0 = Instant::now();
        let l = RateLimit {
            requests: 1,
            window: Duration::from_millis(200),
        };
        assert_eq!(b.admit("a", l, t0), Ok(()));
        assert_eq!(b.admit("a", l, t0 + Duration::from_millis(199)), Err(1));
        assert_eq!(b.admit("a", limit(0, 30), t0), Err(30));
        assert_eq!(b.admit("a", limit(0, 0), t0), Err(1));
    }
}
