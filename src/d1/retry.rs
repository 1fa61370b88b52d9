//! Retry policy and the shared request budget for the Cloudflare API.
//!
//! * [`RetryPolicy`]: bounded by attempts *and* total time, exponential backoff with full
//!   jitter (the random source is injectable for tests), never sooner than `retry-after`.
//! * [`Budget`]: one per API token, shared by every database backed up in a run. It keeps
//!   requests under Cloudflare's 1,200 per 5 minutes and, after a 429, holds *all* requests
//!   until the server's `retry-after` has passed (the limit is per token, so one caller's
//!   429 concerns everybody).

use std::collections::VecDeque;
use std::time::Duration;

use rand::Rng;
use tokio::sync::Mutex;
use tokio::time::Instant;

/// How often and how long to retry.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    pub max_attempts: u32,
    pub max_elapsed: Duration,
    pub base_delay: Duration,
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 8,
            max_elapsed: Duration::from_secs(180),
            base_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(20),
        }
    }
}

impl RetryPolicy {
    /// Delay before retry number `retry` (1 = first retry): full jitter over
    /// `[base/2, min(max, base·2^(retry-1))]`, but never less than `retry_after`.
    pub fn delay(&self, retry: u32, retry_after: Option<Duration>, rng: &mut impl Rng) -> Duration {
        let exp = self
            .base_delay
            .saturating_mul(2u32.saturating_pow(retry.saturating_sub(1).min(16)));
        let ceiling = exp.min(self.max_delay).max(self.base_delay / 2);
        let floor = self.base_delay / 2;
        let jittered = if ceiling > floor {
            let span = (ceiling - floor).as_millis() as u64;
            floor + Duration::from_millis(rng.random_range(0..=span))
        } else {
            floor
        };
        match retry_after {
            Some(ra) => jittered.max(ra),
            None => jittered,
        }
    }

    /// Whether another attempt is allowed after `attempts` tries, `elapsed` so far, and a
    /// planned `delay`.
    pub fn allows(&self, attempts: u32, elapsed: Duration, delay: Duration) -> bool {
        attempts < self.max_attempts && elapsed.saturating_add(delay) <= self.max_elapsed
    }
}

/// Parse a `Retry-After` header: delta-seconds or an HTTP date.
pub fn parse_retry_after(value: &str, now: chrono::DateTime<chrono::Utc>) -> Option<Duration> {
    let v = value.trim();
    let parsed = if let Ok(secs) = v.parse::<u64>() {
        Duration::from_secs(secs)
    } else if let Ok(secs) = v.parse::<f64>()
        && secs.is_finite()
        && secs >= 0.0
    {
        Duration::try_from_secs_f64(secs).unwrap_or(MAX_RETRY_AFTER)
    } else {
        let when = chrono::DateTime::parse_from_rfc2822(v).ok()?;
        let delta = when.with_timezone(&chrono::Utc) - now;
        delta.to_std().unwrap_or(Duration::ZERO)
    };
    Some(parsed.min(MAX_RETRY_AFTER))
}

/// Longer `Retry-After` values are read as this (a day): no retry waits that long anyway.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(24 * 3600);

/// A sliding-window request budget plus a pause set by 429 answers.
#[derive(Debug)]
pub struct Budget {
    max_requests: usize,
    window: Duration,
    state: Mutex<BudgetState>,
}

#[derive(Debug, Default)]
struct BudgetState {
    starts: VecDeque<Instant>,
    paused_until: Option<Instant>,
}

impl Budget {
    /// Cloudflare's documented limit: 1,200 requests per 5 minutes per token.
    pub fn cloudflare_default() -> Budget {
        Budget::new(1200, Duration::from_secs(300))
    }

    pub fn new(max_requests: usize, window: Duration) -> Budget {
        Budget {
            max_requests: max_requests.max(1),
            window,
            state: Mutex::new(BudgetState::default()),
        }
    }

    /// Wait until a request may start, then count it.
    pub async fn acquire(&self) {
        loop {
            let wait = {
                let mut st = self.state.lock().await;
                let now = Instant::now();
                match wait_time(now, &mut st, self.max_requests, self.window) {
                    None => {
                        st.starts.push_back(now);
                        return;
                    }
                    Some(w) => w,
                }
            };
            tokio::time::sleep(wait).await;
        }
    }

    /// Hold every request until `delay` from now (after a 429 with `retry-after`).
    pub async fn pause_for(&self, delay: Duration) {
        let mut st = self.state.lock().await;
        let until = Instant::now() + delay.min(MAX_RETRY_AFTER);
        if st.paused_until.is_none_or(|p| p < until) {
            st.paused_until = Some(until);
        }
    }
}

/// Pure core of [`Budget::acquire`]: `None` if a request may start at `now`, otherwise how
/// long to wait. Forgets starts older than the window.
fn wait_time(
    now: Instant,
    st: &mut BudgetState,
    max_requests: usize,
    window: Duration,
) -> Option<Duration> {
    if let Some(p) = st.paused_until {
        if p > now {
            return Some(p - now);
        }
        st.paused_until = None;
    }
    while st
        .starts
        .front()
        .is_some_and(|t| now.duration_since(*t) >= window)
    {
        st.starts.pop_front();
    }
    if st.starts.len() < max_requests {
        return None;
    }
    let oldest = *st.starts.front()?;
    Some(window.saturating_sub(now.duration_since(oldest)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    #[test]
    fn delays_grow_are_capped_and_jittered() {
        let p = RetryPolicy::default();
        let mut rng = StdRng::seed_from_u64(7);
        for retry in 1..=12 {
            let ceiling = p
                .base_delay
                .saturating_mul(2u32.pow(retry - 1))
                .min(p.max_delay);
            for _ in 0..50 {
                let d = p.delay(retry, None, &mut rng);
                assert!(d >= p.base_delay / 2, "retry {retry}: {d:?}");
                assert!(d <= ceiling, "retry {retry}: {d:?} > {ceiling:?}");
            }
        }
        // Jitter: not every delay is the same.
        let ds: Vec<_> = (0..20).map(|_| p.delay(5, None, &mut rng)).collect();
        assert!(ds.iter().any(|d| *d != ds[0]));
    }

    #[test]
    fn retry_after_is_a_floor() {
        let p = RetryPolicy::default();
        let mut rng = StdRng::seed_from_u64(1);
        for retry in 1..5 {
            assert!(
                p.delay(retry, Some(Duration::from_secs(30)), &mut rng) >= Duration::from_secs(30)
            );
        }
    }

    #[test]
    fn attempts_and_total_time_bound_retries() {
        let p = RetryPolicy {
            max_attempts: 3,
            max_elapsed: Duration::from_secs(10),
            ..RetryPolicy::default()
        };
        let cases = [
            (1, 0, 1, true),
            (2, 0, 1, true),
            (3, 0, 1, false),
            (1, 9, 1, true),
            (1, 9, 2, false),
        ];
        for (attempts, elapsed, delay, ok) in cases {
            assert_eq!(
                p.allows(
                    attempts,
                    Duration::from_secs(elapsed),
                    Duration::from_secs(delay)
                ),
                ok,
                "{attempts} {elapsed} {delay}"
            );
        }
    }

    #[test]
    fn retry_after_forms() {
        let now = chrono::DateTime::parse_from_rfc3339("2015-10-21T07:28:00Z")
            .unwrap()
            .with_timezone(&chrono::Utc);
        let cases: &[(&str, Option<u64>)] = &[
            ("1", Some(1)),
            (" 120 ", Some(120)),
            ("Wed, 21 Oct 2015 07:28:10 GMT", Some(10)),
            ("Wed, 21 Oct 2015 07:27:00 GMT", Some(0)),
            ("soon", None),
            // Absurd values are capped, never a panic or an overflow later.
            ("1e20", Some(86_400)),
            ("18446744073709551615", Some(86_400)),
            ("8888888888888888888888888888888888888888", Some(86_400)),
            ("Fri, 31 Dec 9999 23:59:59 GMT", Some(86_400)),
        ];
        for (v, want) in cases {
            assert_eq!(parse_retry_after(v, now).map(|d| d.as_secs()), *want, "{v}");
        }
        let p = RetryPolicy::default();
        assert!(!p.allows(1, Duration::MAX, Duration::MAX));
    }

    #[test]
    fn window_limits_and_pauses() {
        let start = Instant::now();
        let window = Duration::from_secs(300);
        let mut st = BudgetState::default();
        for i in 0..3 {
            let now = start + Duration::from_secs(i);
            assert_eq!(wait_time(now, &mut st, 3, window), None);
            st.starts.push_back(now);
        }
        // Fourth request inside the window waits until the first one ages out.
        let now = start + Duration::from_secs(10);
        assert_eq!(
            wait_time(now, &mut st, 3, window),
            Some(Duration::from_secs(290))
        );
        // After the window, it may go.
        let later = start + Duration::from_secs(300);
        assert_eq!(wait_time(later, &mut st, 3, window), None);
        // A pause holds everything.
        st.paused_until = Some(later + Duration::from_secs(2));
        assert_eq!(
            wait_time(later, &mut st, 3, window),
            Some(Duration::from_secs(2))
        );
        assert_eq!(
            wait_time(later + Duration::from_secs(2), &mut st, 100, window),
            None
        );
    }
}
