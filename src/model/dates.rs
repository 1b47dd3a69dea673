//! `CK_DATE` values ("YYYYMMDD", ASCII digits) and today's date in UTC, for the key-validity
//! window of `CKA_START_DATE`/`CKA_END_DATE`. Equal-length digit strings compare as dates do.

use std::time::{SystemTime, UNIX_EPOCH};

/// Today's date in UTC as a `CK_DATE`.
pub fn today() -> [u8; 8] {
    let secs = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    from_days((secs / 86_400) as i64)
}

fn from_days(days: i64) -> [u8; 8] {
    let (y, m, d) = civil(days);
    let mut out = [0u8; 8];
    out.copy_from_slice(format!("{y:04}{m:02}{d:02}").as_bytes());
    out
}

/// The civil date (year, month, day) `days` after 1970-01-01 (Howard Hinnant's
/// `civil_from_days`).
pub fn civil(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates() {
        assert_eq!(&from_days(0), b"19700101");
        assert_eq!(&from_days(59), b"19700301");
        assert_eq!(&from_days(11_016), b"20000229");
        assert_eq!(&from_days(20_414), b"20251122");
        assert_eq!(&from_days(20_789), b"20261202");
        assert!(today() > *b"20240101");
    }
}
