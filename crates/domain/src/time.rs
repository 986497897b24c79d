//! Time as the store keeps it: microseconds since the Unix epoch in an `i64`, rendered as
//! RFC 3339 on the wire. One representation on both engines keeps comparisons and indexes
//! simple.

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// Microseconds since the Unix epoch.
pub type Micros = i64;

/// The current time.
pub fn now_micros() -> Micros {
    let now = OffsetDateTime::now_utc();
    (now.unix_timestamp_nanos() / 1000) as Micros
}

/// Renders a timestamp as RFC 3339 (UTC, microsecond precision).
pub fn to_rfc3339(us: Micros) -> String {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(us) * 1000)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_else(|| "1970-01-01T00:00:00Z".to_owned())
}

/// Parses an RFC 3339 timestamp.
pub fn parse_rfc3339(s: &str) -> Option<Micros> {
    let t = OffsetDateTime::parse(s, &Rfc3339).ok()?;
    i64::try_from(t.unix_timestamp_nanos() / 1000).ok()
}

/// One day in microseconds.
pub const DAY: Micros = 86_400_000_000;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_round_trips() {
        let t = 1_700_000_000_123_456;
        assert_eq!(parse_rfc3339(&to_rfc3339(t)), Some(t));
        assert_eq!(parse_rfc3339("not a date"), None);
    }
}
