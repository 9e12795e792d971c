//! `map.subscribe_catch_up_timeout`: how long a map subscriber may page
//! through the state before it must be live (centrifuge's
//! `MapChannelOptions.SubscribeCatchUpTimeout`, `isMapCatchUpExpired` in
//! `client_map.go`), and its parsing as Centrifugo's `configtypes.Duration`.

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};
use std::fmt;
use std::time::Duration;

/// centrifuge's timeout when the option is zero (unset).
pub const DEFAULT: Duration = Duration::from_secs(5);

/// The option as configured, in nanoseconds: 0 means [`DEFAULT`], a
/// negative value turns the timeout off. Reads as Centrifugo's
/// `configtypes.Duration` does: a string in Go's `time.ParseDuration`
/// syntax (`"10s"`, `"1m30s"`, `"-1s"`, `"1.5s"`, `"0"`; no days, no bare
/// numbers but `0`), or a JSON integer counted in nanoseconds. Written back
/// as that integer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CatchUpTimeout(pub i64);

impl CatchUpTimeout {
    /// The timeout in force: `None` when turned off.
    pub fn effective(self) -> Option<Duration> {
        match self.0 {
            0 => Some(DEFAULT),
            n if n < 0 => None,
            n => Some(Duration::from_nanos(n as u64)),
        }
    }
}

impl Serialize for CatchUpTimeout {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_i64(self.0)
    }
}

impl<'de> Deserialize<'de> for CatchUpTimeout {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = CatchUpTimeout;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a Go duration string (\"10s\") or integer nanoseconds")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<CatchUpTimeout, E> {
                parse_go_duration(s).map(CatchUpTimeout).map_err(E::custom)
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<CatchUpTimeout, E> {
                Ok(CatchUpTimeout(n))
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<CatchUpTimeout, E> {
                i64::try_from(n).map(CatchUpTimeout).map_err(|_| E::custom("duration out of range"))
            }
        }
        deserializer.deserialize_any(V)
    }
}

/// Nanoseconds per unit, as Go's `time` package names them.
fn unit(name: &str) -> Option<u128> {
    Some(match name {
        "ns" => 1,
        "us" | "\u{b5}s" | "\u{3bc}s" => 1_000,
        "ms" => 1_000_000,
        "s" => 1_000_000_000,
        "m" => 60_000_000_000,
        "h" => 3_600_000_000_000,
        _ => return None,
    })
}

/// Go's `time.ParseDuration`: `[-+]?([0-9]*(\.[0-9]*)?unit)+` or a bare
/// `0`, in nanoseconds; refuses what Go refuses (an empty string, a number
/// without a unit, an unknown unit such as `d`, a value beyond `i64`).
pub fn parse_go_duration(text: &str) -> Result<i64, String> {
    let invalid = || format!("invalid duration {text:?}");
    let (negative, mut rest) = match text.as_bytes().first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    if rest == "0" {
        return Ok(0);
    }
    if rest.is_empty() {
        return Err(invalid());
    }
    let mut total: u128 = 0;
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len());
        let (whole, after) = rest.split_at(digits);
        let (fraction, after) = match after.strip_prefix('.') {
            Some(after) => after.split_at(after.find(|c: char| !c.is_ascii_digit()).unwrap_or(after.len())),
            None => ("", after),
        };
        if whole.is_empty() && fraction.is_empty() {
            return Err(invalid());
        }
        let name_len = after.find(|c: char| c == '.' || c.is_ascii_digit()).unwrap_or(after.len());
        let (name, after) = after.split_at(name_len);
        let per = unit(name).ok_or_else(|| format!("unknown unit {name:?} in duration {text:?}"))?;
        let whole: u128 = if whole.is_empty() { 0 } else { whole.parse().map_err(|_| invalid())? };
        let mut part = whole.checked_mul(per).ok_or_else(invalid)?;
        // Go keeps the fraction's leading digits only as far as they count.
        let mut scale = 1u128;
        let mut fraction_value = 0u128;
        for d in fraction.bytes().take(18) {
            fraction_value = fraction_value * 10 + u128::from(d - b'0');
            scale *= 10;
        }
        part += fraction_value * per / scale;
        total = total.checked_add(part).ok_or_else(invalid)?;
        if total > 1u128 << 63 {
            return Err(invalid());
        }
        rest = after;
    }
    match (negative, total) {
        (true, t) => Ok((t as i128).wrapping_neg() as i64),
        (false, t) if t > i64::MAX as u128 => Err(invalid()),
        (false, t) => Ok(t as i64),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations_parse_as_go_parses_them() {
        let ok = [
            ("0", 0),
            ("-0", 0),
            ("10s", 10_000_000_000),
            ("1m30s", 90_000_000_000),
            ("1h", 3_600_000_000_000),
            ("-1s", -1_000_000_000),
            ("+2ms", 2_000_000),
            ("1.5s", 1_500_000_000),
            (".5s", 500_000_000),
            ("5.s", 5_000_000_000),
            ("300us", 300_000),
            ("300\u{b5}s", 300_000),
            ("300\u{3bc}s", 300_000),
            ("7ns", 7),
            ("1h2m3s4ms", 3_723_004_000_000),
        ];
        for (text, nanos) in ok {
            assert_eq!(parse_go_duration(text), Ok(nanos), "{text}");
        }
        for bad in ["", "10", "1d", "s", ".s", "-", "1.2.3s", "5 s", "10S", "99999999999h", "1s2"] {
            assert!(parse_go_duration(bad).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn zero_is_five_seconds_and_negative_turns_the_timeout_off() {
        assert_eq!(CatchUpTimeout(0).effective(), Some(DEFAULT));
        assert_eq!(DEFAULT, Duration::from_secs(5));
        assert_eq!(CatchUpTimeout(-1).effective(), None);
        assert_eq!(CatchUpTimeout(250_000_000).effective(), Some(Duration::from_millis(250)));
    }

    #[test]
    fn reads_strings_and_integer_nanoseconds() {
        let read = |v: serde_json::Value| serde_json::from_value::<CatchUpTimeout>(v);
        assert_eq!(read(serde_json::json!("2s")).unwrap(), CatchUpTimeout(2_000_000_000));
        assert_eq!(read(serde_json::json!(-1)).unwrap(), CatchUpTimeout(-1));
        assert_eq!(read(serde_json::json!(3_000_000_000u64)).unwrap(), CatchUpTimeout(3_000_000_000));
        assert!(read(serde_json::json!("2d")).is_err());
        assert!(read(serde_json::json!(1.5)).is_err());
        assert!(read(serde_json::json!(true)).is_err());
    }
}
