//! What an attempt's result means, and when to try again. Pure: the jitter
//! comes in as a number so the schedule is testable.

use chrono::{DateTime, Duration, Utc};

/// The retry schedule. The default is Klaviyo's: up to 17 attempts within
/// 24 hours — exponential from 5 s, capped at 3 h, ±20% jitter (at most
/// ~21 h from the first attempt to the last).
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    pub max_attempts: u32,
    pub initial: Duration,
    pub max_interval: Duration,
    /// Fraction of each delay added or taken at random (0.2 = ±20%).
    pub jitter: f64,
    /// `Retry-After` is honoured between these bounds.
    pub retry_after_min: Duration,
    pub retry_after_max: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 17,
            initial: Duration::seconds(5),
            max_interval: Duration::hours(3),
            jitter: 0.2,
            retry_after_min: Duration::seconds(1),
            retry_after_max: Duration::hours(1),
        }
    }
}

/// What one attempt's result means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Succeeded,
    /// 408, 425, 429, 5xx, timeouts and connection errors.
    Retry,
    /// 410: the receiver wants no more; the destination is disabled.
    Gone,
    /// Any other status: final.
    Skip,
}

/// `None` is a timeout or connection error.
pub fn classify(status: Option<u16>) -> Verdict {
    match status {
        None => Verdict::Retry,
        Some(200..=299) => Verdict::Succeeded,
        Some(410) => Verdict::Gone,
        Some(408 | 425 | 429 | 500..=599) => Verdict::Retry,
        Some(_) => Verdict::Skip,
    }
}

impl RetryPolicy {
    /// The wait before the next attempt after `attempts` attempts have been
    /// made, or `None` when they are used up. `unit` is a random number in
    /// [-1, 1] that scales the jitter.
    pub fn next_delay(
        &self,
        attempts: u32,
        retry_after: Option<Duration>,
        unit: f64,
    ) -> Option<Duration> {
        if attempts >= self.max_attempts {
            return None;
        }
        if let Some(ra) = retry_after {
            return Some(ra.clamp(self.retry_after_min, self.retry_after_max));
        }
        let exp = attempts.saturating_sub(1).min(30);
        let base = self
            .initial
            .checked_mul(1i32 << exp)
            .unwrap_or(self.max_interval)
            .min(self.max_interval);
        let ms = base.num_milliseconds() as f64;
        let jittered = ms * (1.0 + self.jitter * unit.clamp(-1.0, 1.0));
        Some(Duration::milliseconds(jittered.max(0.0) as i64))
    }
}

/// `Retry-After`: delay-seconds or an HTTP date.
pub fn parse_retry_after(value: &str, now: DateTime<Utc>) -> Option<Duration> {
    let v = value.trim();
    if let Ok(secs) = v.parse::<i64>() {
        return (secs >= 0).then(|| Duration::seconds(secs));
    }
    let at: DateTime<Utc> = httpdate::parse_http_date(v).ok()?.into();
    Some((at - now).max(Duration::zero()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses() {
        assert_eq!(classify(Some(200)), Verdict::Succeeded);
        assert_eq!(classify(Some(204)), Verdict::Succeeded);
        for s in [408, 425, 429, 500, 502, 503, 504, 599] {
            assert_eq!(classify(Some(s)), Verdict::Retry, "{s}");
        }
        assert_eq!(classify(None), Verdict::Retry);
        assert_eq!(classify(Some(410)), Verdict::Gone);
        for s in [301, 302, 400, 401, 403, 404, 422] {
            assert_eq!(classify(Some(s)), Verdict::Skip, "{s}");
        }
    }

    #[test]
    fn default_schedule_fits_in_a_day_with_full_jitter() {
        let p = RetryPolicy::default();
        let mut longest = Duration::zero();
        let mut shortest = Duration::zero();
        for n in 1..p.max_attempts {
            longest += p.next_delay(n, None, 1.0).unwrap();
            shortest += p.next_delay(n, None, -1.0).unwrap();
        }
        assert!(longest < Duration::hours(24), "{longest}");
        assert!(shortest > Duration::hours(12), "{shortest}");
        assert_eq!(p.next_delay(17, None, 0.0), None);
        assert_eq!(p.next_delay(1, None, 0.0), Some(Duration::seconds(5)));
        assert_eq!(p.next_delay(2, None, 0.0), Some(Duration::seconds(10)));
        assert_eq!(p.next_delay(1, None, 1.0), Some(Duration::seconds(6)));
        assert_eq!(p.next_delay(1, None, -1.0), Some(Duration::seconds(4)));
        assert_eq!(p.next_delay(16, None, 0.0), Some(Duration::hours(3)));
    }

    #[test]
    fn retry_after_within_bounds() {
        let p = RetryPolicy::default();
        let now = Utc::now();
        let d = parse_retry_after("120", now);
        assert_eq!(d, Some(Duration::seconds(120)));
        assert_eq!(p.next_delay(1, d, 1.0), Some(Duration::seconds(120)));
        assert_eq!(
            p.next_delay(1, Some(Duration::days(3)), 0.0),
            Some(Duration::hours(1))
        );
        assert_eq!(
            p.next_delay(1, Some(Duration::zero()), 0.0),
            Some(Duration::seconds(1))
        );
        assert_eq!(p.next_delay(17, d, 0.0), None);
        let at = chrono::DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(
            parse_retry_after("Thu, 01 Jan 2026 00:01:30 GMT", at),
            Some(Duration::seconds(90))
        );
        assert_eq!(parse_retry_after("soon", at), None);
        assert_eq!(parse_retry_after("-5", at), None);
    }
}
