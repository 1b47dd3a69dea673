//! `CK_DATE` values ("YYYYMMDD", ASCII digits) and today's date in UTC, for the key-validity
//! window of `CKA_START_DATE`/`CKA_END_DATE`. Equal-length digit strings compare as dates do.

/// Today's date in UTC as a `CK_DATE`.
pub fn today() -> [u8; 8] {
    if let Some(day) = test_today() {
        return day;
    }
    of(jiff::Timestamp::now())
}

/// Test hook, compiled into debug builds only: `KEYGATE_TEST_TODAY=YYYYMMDD` is today, so that
/// the integration tests can move a key past its last day without waiting for one. Release
/// builds have no such hook.
#[cfg(debug_assertions)]
fn test_today() -> Option<[u8; 8]> {
    let v = std::env::var("KEYGATE_TEST_TODAY").ok()?;
    let day: [u8; 8] = v.as_bytes().try_into().ok()?;
    day.iter().all(u8::is_ascii_digit).then_some(day)
}

#[cfg(not(debug_assertions))]
fn test_today() -> Option<[u8; 8]> {
    None
}

/// The UTC date of `t` as a `CK_DATE`.
fn of(t: jiff::Timestamp) -> [u8; 8] {
    let mut out = [0u8; 8];
    out.copy_from_slice(t.strftime("%Y%m%d").to_string().as_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn from_days(days: i64) -> [u8; 8] {
        of(jiff::Timestamp::from_second(days * 86_400).unwrap())
    }

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
