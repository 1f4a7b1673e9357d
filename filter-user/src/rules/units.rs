//! Human units in rule files: bit rates ("50Mbit") and durations ("10m").

/// A value that is not a bit rate or a duration, and what would be.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum UnitError {
    #[error(
        "bit rate {text:?} {problem}: write e.g. \"64000bit\", \"800kbit\", \"50Mbit\" or \"1Gbit\""
    )]
    BitrateUnit { text: String, problem: String },
    #[error("bit rate {0:?} is not a number followed by a unit like \"Mbit\"")]
    BitrateNumber(String),
    #[error("bit rate {0:?} out of range: allowed is 1bit to 10Tbit")]
    BitrateRange(String),
    #[error("duration {0:?} needs a unit: ms, s, m, h or d (e.g. \"30s\", \"10m\")")]
    DurationNoUnit(String),
    #[error(
        "duration {text:?} has an unknown unit {unit:?}: use ms, s, m, h or d (e.g. \"30s\", \"10m\")"
    )]
    DurationUnit { text: String, unit: String },
    #[error("duration {0:?} is not a number followed by a unit")]
    DurationNumber(String),
    #[error("duration {0:?} out of range: allowed is 1ms to 365d")]
    DurationRange(String),
}

/// Bits per second from "50Mbit", "1.5Gbit", "800kbit", "64000bit" (SI
/// multipliers: k = 1000).
pub(crate) fn parse_bitrate(text: &str) -> Result<u64, UnitError> {
    let t = text.trim();
    let lower = t.to_ascii_lowercase();
    let Some(num) = lower.strip_suffix("bit") else {
        let unit = t
            .trim_start_matches(|c: char| c.is_ascii_digit() || c == '.')
            .trim();
        let problem = if unit.is_empty() {
            "needs a unit".to_string()
        } else {
            format!("has an unknown unit {unit:?} (rates are in bits, not bytes)")
        };
        return Err(UnitError::BitrateUnit {
            text: t.to_string(),
            problem,
        });
    };
    let (num, mult) = match num.chars().last() {
        Some('k') => (&num[..num.len() - 1], 1e3),
        Some('m') => (&num[..num.len() - 1], 1e6),
        Some('g') => (&num[..num.len() - 1], 1e9),
        Some('t') => (&num[..num.len() - 1], 1e12),
        _ => (num, 1.0),
    };
    let v: f64 = num
        .trim()
        .parse()
        .map_err(|_| UnitError::BitrateNumber(t.to_string()))?;
    let bits = v * mult;
    if !(1.0..=1e13).contains(&bits) {
        return Err(UnitError::BitrateRange(t.to_string()));
    }
    Ok(bits as u64)
}

/// Nanoseconds from "500ms", "30s", "10m", "2h", "1d".
pub(crate) fn parse_duration(text: &str) -> Result<u64, UnitError> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let mult: f64 = match unit.trim() {
        "ms" => 1e6,
        "s" => 1e9,
        "m" => 60e9,
        "h" => 3600e9,
        "d" => 86400e9,
        "" => return Err(UnitError::DurationNoUnit(t.to_string())),
        other => {
            return Err(UnitError::DurationUnit {
                text: t.to_string(),
                unit: other.to_string(),
            });
        }
    };
    let v: f64 = num
        .parse()
        .map_err(|_| UnitError::DurationNumber(t.to_string()))?;
    let ns = v * mult;
    if !(1e6..=365.0 * 86400e9).contains(&ns) {
        return Err(UnitError::DurationRange(t.to_string()));
    }
    Ok(ns as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bitrates() {
        assert_eq!(parse_bitrate("50Mbit"), Ok(50_000_000));
        assert_eq!(parse_bitrate("1.5Gbit"), Ok(1_500_000_000));
        assert_eq!(parse_bitrate("800kbit"), Ok(800_000));
        assert_eq!(parse_bitrate("64000bit"), Ok(64_000));
        assert!(
            parse_bitrate("50MB")
                .unwrap_err()
                .to_string()
                .contains("unknown unit \"MB\" (rates are in bits, not bytes)")
        );
        assert!(
            parse_bitrate("50")
                .unwrap_err()
                .to_string()
                .contains("needs a unit")
        );
        assert!(
            parse_bitrate("fastbit")
                .unwrap_err()
                .to_string()
                .contains("not a number")
        );
        assert!(
            parse_bitrate("0bit")
                .unwrap_err()
                .to_string()
                .contains("out of range")
        );
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms"), Ok(500_000_000));
        assert_eq!(parse_duration("30s"), Ok(30_000_000_000));
        assert_eq!(parse_duration("10m"), Ok(600_000_000_000));
        assert_eq!(parse_duration("1.5h"), Ok(5_400_000_000_000));
        assert!(
            parse_duration("10")
                .unwrap_err()
                .to_string()
                .contains("needs a unit")
        );
        assert!(
            parse_duration("10 minutes")
                .unwrap_err()
                .to_string()
                .contains("unknown unit \"minutes\"")
        );
        assert!(
            parse_duration("0s")
                .unwrap_err()
                .to_string()
                .contains("out of range")
        );
    }
}
