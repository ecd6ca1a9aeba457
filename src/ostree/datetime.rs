//! Dates for `--timestamp` and for display, without a calendar crate: the subset of gnulib's
//! `parse_datetime` that `ostree commit --timestamp` users write (`@EPOCH`, ISO 8601 dates).

use anyhow::{Result, bail};

fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    // Howard Hinnant's algorithm.
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (m as i64 + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146097 + doe - 719468
}

fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719468;
    let era = if z >= 0 { z } else { z - 146096 } / 146097;
    let doe = z - era * 146097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// `YYYY-MM-DDTHH:MM:SS+00` as ostree prints dates (UTC).
pub fn format_iso(ts: u64) -> String {
    let days = (ts / 86400) as i64;
    let secs = ts % 86400;
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}+00",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

/// Parses a commit timestamp: `@SECONDS`, `YYYY-MM-DD`, `YYYY-MM-DD[T ]HH:MM[:SS]` with an
/// optional `Z`, ` UTC` or `±HH[:MM]` zone (no zone = UTC, as on build machines with TZ unset).
pub fn parse_timestamp(s: &str) -> Result<u64> {
    let t = s.trim();
    let bad = || {
        anyhow::anyhow!(
            "could not parse timestamp '{s}': use @SECONDS_SINCE_EPOCH or \
             YYYY-MM-DD[ HH:MM[:SS]][Z|+HH:MM]"
        )
    };
    if let Some(n) = t.strip_prefix('@') {
        return n.parse::<u64>().map_err(|_| bad());
    }
    let b = t.as_bytes();
    if b.len() < 10 || b[4] != b'-' || b[7] != b'-' {
        return Err(bad());
    }
    let num = |r: std::ops::Range<usize>| -> Result<i64> {
        let p = t.get(r).ok_or_else(bad)?;
        if p.is_empty() || !p.bytes().all(|c| c.is_ascii_digit()) {
            return Err(bad());
        }
        p.parse::<i64>().map_err(|_| bad())
    };
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) {
        return Err(bad());
    }
    let mut secs = 0i64;
    let mut rest = &t[10..];
    if let Some(r) = rest.strip_prefix('T').or_else(|| rest.strip_prefix(' ')) {
        let rb = r.as_bytes();
        if rb.len() < 5 || rb[2] != b':' {
            return Err(bad());
        }
        let hh = r[0..2].parse::<i64>().map_err(|_| bad())?;
        let mm = r[3..5].parse::<i64>().map_err(|_| bad())?;
        let mut ss = 0;
        let mut after = &r[5..];
        if after.starts_with(':') && after.len() >= 3 {
            ss = after[1..3].parse::<i64>().map_err(|_| bad())?;
            after = &after[3..];
        }
        if hh > 23 || mm > 59 || ss > 60 {
            return Err(bad());
        }
        secs = hh * 3600 + mm * 60 + ss;
        rest = after;
    }
    let rest = rest.trim();
    let offset = match rest {
        "" | "Z" | "z" | "UTC" | "GMT" => 0,
        _ => {
            let sign = match rest.as_bytes()[0] {
                b'+' => 1,
                b'-' => -1,
                _ => return Err(bad()),
            };
            let digits: String = rest[1..].chars().filter(|c| *c != ':').collect();
            if !(digits.len() == 2 || digits.len() == 4)
                || !digits.bytes().all(|c| c.is_ascii_digit())
            {
                return Err(bad());
            }
            let h: i64 = digits[0..2].parse().map_err(|_| bad())?;
            let m: i64 = if digits.len() == 4 {
                digits[2..4].parse().map_err(|_| bad())?
            } else {
                0
            };
            sign * (h * 3600 + m * 60)
        }
    };
    let total = days_from_civil(y, mo as u32, d as u32) * 86400 + secs - offset;
    if total < 0 {
        bail!("timestamp '{s}' is before 1970");
    }
    Ok(total as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_what_ostree_accepts() {
        assert_eq!(parse_timestamp("@1704164645").unwrap(), 1704164645);
        assert_eq!(parse_timestamp("2024-01-02 03:04:05Z").unwrap(), 1704164645);
        assert_eq!(
            parse_timestamp("2024-01-02T03:04:05+00:00").unwrap(),
            1704164645
        );
        assert_eq!(
            parse_timestamp("2024-01-02T05:04:05+02:00").unwrap(),
            1704164645
        );
        assert_eq!(parse_timestamp("2024-01-02").unwrap(), 1704153600);
        assert!(parse_timestamp("yesterday-ish").is_err());
        assert_eq!(format_iso(1704164645), "2024-01-02T03:04:05+00");
    }
}
