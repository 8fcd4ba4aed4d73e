//! When to try a request again: exponential backoff with jitter (the
//! OpenTelemetry Collector's `configretry` defaults) and `Retry-After`.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How retries are spaced and when to give up.
///
/// The wait before retry *n* is `interval_n × (1 ± randomization)`, drawn
/// uniformly, with `interval_1 = initial_interval` and `interval_{n+1} =
/// min(interval_n × multiplier, max_interval)`. A server's `Retry-After`
/// can only lengthen a wait: the wait is `max(retry_after, backoff)`, as in
/// the OpenTelemetry Collector's retry sender, so `Retry-After: 0` or a date
/// in the past never makes the exporter hammer a server that is shedding
/// load. No wait reaches past `max_elapsed` counted from the first attempt;
/// once that budget is spent the request is given up (`max_elapsed == 0`:
/// never retry).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct RetryPolicy {
    /// Wait before the first retry (before jitter).
    pub initial_interval: Duration,
    /// Growth of the wait per retry (at least 1).
    pub multiplier: f64,
    /// Jitter: each wait is spread uniformly over ±this fraction (0..=1).
    pub randomization: f64,
    /// Cap on the wait before jitter.
    pub max_interval: Duration,
    /// Total time budget for one request, attempts and waits included.
    pub max_elapsed: Duration,
}

impl Default for RetryPolicy {
    /// The Collector's defaults: 5 s, ×1.5, ±50 %, 30 s cap, 5 min budget.
    fn default() -> Self {
        Self {
            initial_interval: Duration::from_secs(5),
            multiplier: 1.5,
            randomization: 0.5,
            max_interval: Duration::from_secs(30),
            max_elapsed: Duration::from_secs(300),
        }
    }
}

/// The backoff state of one request.
#[derive(Debug)]
pub(crate) struct Backoff {
    /// The policy.
    policy: RetryPolicy,
    /// The current interval before jitter.
    current: Duration,
}

impl Backoff {
    /// Starts at the policy's initial interval.
    pub(crate) fn new(policy: RetryPolicy) -> Self {
        Self { policy, current: policy.initial_interval }
    }

    /// The next wait (jittered with `rng`), and grows the interval.
    pub(crate) fn next_wait(&mut self, rng: &mut Rng) -> Duration {
        let randomization = self.policy.randomization.clamp(0.0, 1.0);
        let base = self.current.as_secs_f64();
        let spread = 2.0 * randomization * rng.next_f64() - randomization; // in [-r, r)
        let wait = Duration::try_from_secs_f64(base * (1.0 + spread)).unwrap_or(self.current);
        let multiplier =
            if self.policy.multiplier.is_finite() { self.policy.multiplier.max(1.0) } else { 1.0 };
        self.current = Duration::try_from_secs_f64(base * multiplier)
            .unwrap_or(self.policy.max_interval)
            .min(self.policy.max_interval);
        wait
    }
}

/// xorshift64* for jitter: not cryptographic, seeded per thread from
/// `RandomState` (so exporters in many processes do not retry in step).
#[derive(Debug)]
pub(crate) struct Rng(u64);

impl Rng {
    /// A generator with a random seed.
    pub(crate) fn new() -> Self {
        let mut h = RandomState::new().build_hasher();
        h.write_u128(SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos()));
        Self(h.finish() | 1)
    }

    /// The next 64 random bits.
    pub(crate) fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `[0, 1)`.
    pub(crate) fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Parses a `Retry-After` value: delta-seconds, or an HTTP-date (IMF-fixdate,
/// and the obsolete RFC 850 and asctime forms recipients must accept), as a
/// wait from `now` (zero for a date in the past: the backoff still applies,
/// see [`RetryPolicy`]). `None` if unparseable.
pub(crate) fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let v = value.trim();
    if !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) {
        // Huge numbers saturate; the caller caps the wait at its budget.
        return Some(Duration::from_secs(v.parse::<u64>().unwrap_or(u64::MAX)));
    }
    let at = parse_http_date(v)?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// Parses an HTTP-date (RFC 9110 §5.6.7) in any of its three forms:
/// `Sun, 06 Nov 1994 08:49:37 GMT`, `Sunday, 06-Nov-94 08:49:37 GMT`,
/// `Sun Nov  6 08:49:37 1994`.
pub(crate) fn parse_http_date(s: &str) -> Option<SystemTime> {
    const MONTHS: [&str; 12] =
        ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"];
    const WEEKDAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
    if s.len() > 64 {
        return None;
    }
    let mut tokens = s.split([' ', ',', '-']).filter(|t| !t.is_empty());
    let weekday = tokens.next()?.to_ascii_lowercase();
    if !WEEKDAYS.iter().any(|w| weekday.starts_with(w)) {
        return None;
    }
    let rest: Vec<&str> = tokens.collect();
    // [day, month, year, time, "GMT"] or, asctime, [month, day, time, year].
    let (day, month, year, time) = match rest.as_slice() {
        [day, month, year, time, zone] if zone.eq_ignore_ascii_case("gmt") => {
            (*day, *month, *year, *time)
        }
        [month, day, time, year] => (*day, *month, *year, *time),
        _ => return None,
    };
    let month = MONTHS.iter().position(|m| month.eq_ignore_ascii_case(m))? as u32 + 1;
    let day = parse_digits(day, 1, 2)?;
    let mut year = i64::from(parse_digits(year, 2, 4)?);
    if year < 100 {
        // RFC 850's two-digit year: the recent past, not the far future.
        year += if year >= 70 { 1900 } else { 2000 };
    }
    let mut hms = time.split(':');
    let h = parse_digits(hms.next()?, 2, 2)?;
    let m = parse_digits(hms.next()?, 2, 2)?;
    let sec = parse_digits(hms.next()?, 2, 2)?;
    if hms.next().is_some() || day == 0 || day > 31 || h > 23 || m > 59 || sec > 60 {
        return None;
    }
    let days = days_from_civil(year, month, day);
    let secs = days * 86_400 + i64::from(h * 3600 + m * 60 + sec);
    let secs = u64::try_from(secs).ok()?;
    UNIX_EPOCH.checked_add(Duration::from_secs(secs))
}

/// `s` as a number of `min..=max` ASCII digits.
fn parse_digits(s: &str, min: usize, max: usize) -> Option<u32> {
    if s.len() < min || s.len() > max || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's
/// `days_from_civil`).
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn http_dates_in_all_three_forms() {
        // 1994-11-06T08:49:37Z = 784111777.
        for s in [
            "Sun, 06 Nov 1994 08:49:37 GMT",
            "Sunday, 06-Nov-94 08:49:37 GMT",
            "Sun Nov  6 08:49:37 1994",
            "sun, 06 nov 1994 08:49:37 gmt",
        ] {
            assert_eq!(parse_http_date(s), Some(at(784_111_777)), "{s}");
        }
        assert_eq!(parse_http_date("Thu, 01 Jan 1970 00:00:00 GMT"), Some(at(0)));
        assert_eq!(parse_http_date("Tue, 29 Feb 2028 12:00:00 GMT"), Some(at(1_835_438_400)));
        for bad in [
            "",
            "Sun, 06 Nov 1994 08:49:37",
            "Sun, 06 Nov 1994 08:49:37 PST",
            "Sun, 06 Foo 1994 08:49:37 GMT",
            "Sun, 36 Nov 1994 08:49:37 GMT",
            "Sun, 06 Nov 1994 25:49:37 GMT",
            "Sun, 06 Nov 1994 08:49 GMT",
            "Sun, 06 Nov 1994 08:49:37:00 GMT",
            "Xyz, 06 Nov 1994 08:49:37 GMT",
            "Sun, 06 Nov 99999 08:49:37 GMT",
            "Sun, 06 Nov 1969 08:49:37 GMT",
            "Sun, ０6 Nov 1994 08:49:37 GMT",
        ] {
            assert_eq!(parse_http_date(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn retry_after_seconds_and_dates() {
        let now = at(784_111_777);
        assert_eq!(parse_retry_after("1", now), Some(Duration::from_secs(1)));
        assert_eq!(parse_retry_after(" 120 ", now), Some(Duration::from_secs(120)));
        assert_eq!(parse_retry_after("0", now), Some(Duration::ZERO));
        assert_eq!(
            parse_retry_after("99999999999999999999999", now),
            Some(Duration::from_secs(u64::MAX))
        );
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:50:07 GMT", now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(parse_retry_after("Sun, 06 Nov 1994 08:00:00 GMT", now), Some(Duration::ZERO));
        for bad in ["", "-1", "1.5", "soon", "1 s", "\u{0}"] {
            assert_eq!(parse_retry_after(bad, now), None, "{bad:?}");
        }
    }

    #[test]
    fn backoff_grows_caps_and_jitters_within_bounds() {
        let policy = RetryPolicy::default();
        let mut rng = Rng::new();
        let mut b = Backoff::new(policy);
        let expected = [5.0, 7.5, 11.25, 16.875, 25.3125, 30.0, 30.0, 30.0];
        for base in expected {
            let w = b.next_wait(&mut rng).as_secs_f64();
            assert!(w >= base * 0.5 - 1e-9 && w <= base * 1.5 + 1e-9, "{w} vs {base}");
        }
        // Without jitter the waits are exact.
        let mut b = Backoff::new(RetryPolicy { randomization: 0.0, ..policy });
        for base in expected {
            assert!((b.next_wait(&mut rng).as_secs_f64() - base).abs() < 1e-9);
        }
        // Nonsense policies do not panic.
        let mut b = Backoff::new(RetryPolicy {
            initial_interval: Duration::MAX,
            multiplier: f64::NAN,
            randomization: 7.0,
            max_interval: Duration::MAX,
            max_elapsed: Duration::ZERO,
        });
        for _ in 0..5 {
            b.next_wait(&mut rng);
        }
    }

    #[test]
    fn jitter_is_spread() {
        let mut rng = Rng::new();
        let xs: Vec<f64> = (0..1000).map(|_| rng.next_f64()).collect();
        assert!(xs.iter().all(|x| (0.0..1.0).contains(x)));
        let mean = xs.iter().sum::<f64>() / 1000.0;
        assert!((0.4..0.6).contains(&mean), "{mean}");
    }
}
