//! Time as the core sees it: instants and durations passed in, never read from a clock.

use serde::{Deserialize, Serialize};

/// Milliseconds since the Unix epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Timestamp(pub i64);

impl Timestamp {
    /// Milliseconds since the epoch.
    pub fn millis(self) -> i64 {
        self.0
    }

    /// `self + d`, saturating.
    pub fn plus(self, d: Duration) -> Self {
        Self(
            self.0
                .saturating_add(i64::try_from(d.0).unwrap_or(i64::MAX)),
        )
    }

    /// How long from `earlier` to `self` (zero if `earlier` is later).
    pub fn since(self, earlier: Self) -> Duration {
        Duration(u64::try_from(self.0.saturating_sub(earlier.0)).unwrap_or(0))
    }

    /// RFC 3339 in UTC with milliseconds, as `$task.startedAt.iso8601` wants.
    pub fn to_rfc3339(self) -> String {
        let ms = self.0.rem_euclid(1000);
        let secs = self.0.div_euclid(1000);
        let days = secs.div_euclid(86_400);
        let rem = secs.rem_euclid(86_400);
        let (y, m, d) = civil_from_days(days);
        format!(
            "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{ms:03}Z",
            rem / 3600,
            (rem / 60) % 60,
            rem % 60
        )
    }
}

// Howard Hinnant's days-to-civil algorithm.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// A non-negative span of time, in milliseconds.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default,
)]
pub struct Duration(pub u64);

impl Duration {
    /// From milliseconds.
    pub const fn from_millis(ms: u64) -> Self {
        Self(ms)
    }

    /// From seconds.
    pub const fn from_secs(s: u64) -> Self {
        Self(s * 1000)
    }

    /// In milliseconds.
    pub fn as_millis(self) -> u64 {
        self.0
    }

    /// As a std duration (for the shell's timers).
    pub fn to_std(self) -> std::time::Duration {
        std::time::Duration::from_millis(self.0)
    }

    /// Parses an ISO 8601 duration (`PT1.5S`, `P1DT2H`, `PT250MS` is not ISO and is refused).
    ///
    /// Years and months have no fixed length and are refused; weeks are 7 days, days 24 hours.
    pub fn parse_iso8601(s: &str) -> Result<Self, String> {
        let bad = |why: &str| format!("`{s}` is not an ISO 8601 duration: {why}");
        let rest = s
            .strip_prefix('P')
            .ok_or_else(|| bad("it must start with P"))?;
        if rest.is_empty() {
            return Err(bad("it has no components"));
        }
        let mut total_ms: f64 = 0.0;
        let mut in_time = false;
        let mut num = String::new();
        let mut seen_any = false;
        for c in rest.chars() {
            match c {
                'T' if !in_time && num.is_empty() => in_time = true,
                '0'..='9' | '.' | ',' => num.push(if c == ',' { '.' } else { c }),
                unit => {
                    let n: f64 = num
                        .parse()
                        .map_err(|_| bad(&format!("no number before `{unit}`")))?;
                    num.clear();
                    seen_any = true;
                    let ms_per = match (in_time, unit) {
                        (false, 'W') => 7.0 * 86_400_000.0,
                        (false, 'D') => 86_400_000.0,
                        (true, 'H') => 3_600_000.0,
                        (true, 'M') => 60_000.0,
                        (true, 'S') => 1000.0,
                        (false, 'Y' | 'M') => {
                            return Err(bad("years and months have no fixed length"));
                        }
                        _ => return Err(bad(&format!("unexpected `{unit}`"))),
                    };
                    total_ms += n * ms_per;
                }
            }
        }
        if !num.is_empty() || !seen_any {
            return Err(bad("a number has no unit"));
        }
        if !total_ms.is_finite() || !(0.0..=1e15).contains(&total_ms) {
            return Err(bad("it is out of range"));
        }
        Ok(Self(total_ms.round() as u64))
    }

    /// ISO 8601 form, for messages and serialisation.
    pub fn to_iso8601(self) -> String {
        let secs = self.0 / 1000;
        let ms = self.0 % 1000;
        if ms == 0 {
            format!("PT{secs}S")
        } else {
            format!("PT{secs}.{ms:03}S")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso8601_durations_parse() {
        assert_eq!(Duration::parse_iso8601("PT7S"), Ok(Duration::from_secs(7)));
        assert_eq!(
            Duration::parse_iso8601("PT0.25S"),
            Ok(Duration::from_millis(250))
        );
        assert_eq!(
            Duration::parse_iso8601("P1DT1H30M"),
            Ok(Duration::from_secs(86_400 + 5400))
        );
        assert_eq!(
            Duration::parse_iso8601("P2W"),
            Ok(Duration::from_secs(14 * 86_400))
        );
        assert!(Duration::parse_iso8601("P1M").is_err());
        assert!(Duration::parse_iso8601("PT").is_err());
        assert!(Duration::parse_iso8601("7S").is_err());
        assert!(Duration::parse_iso8601("PT5").is_err());
    }

    #[test]
    fn timestamps_format_as_rfc3339() {
        assert_eq!(Timestamp(0).to_rfc3339(), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            Timestamp(1_700_000_000_123).to_rfc3339(),
            "2023-11-14T22:13:20.123Z"
        );
    }
}
