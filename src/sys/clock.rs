//! A cheap monotonic clock for checks that only need to know whether a few hundred milliseconds
//! have passed: `CLOCK_MONOTONIC_COARSE` reads the kernel's last tick from the vDSO (a few
//! nanoseconds, resolution a tick, ~4 ms) where `Instant::now` reads the TSC and converts it
//! (~20 ns, a measurable part of an operation that checks it twice).

/// Milliseconds since an arbitrary moment (boot), never going back.
pub fn coarse_millis() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid, writable timespec for the duration of the call.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC_COARSE, &mut ts) };
    if rc != 0 {
        // No coarse clock (not Linux?): the precise one.
        // SAFETY: as above.
        unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    }
    (ts.tv_sec as u64).saturating_mul(1000) + (ts.tv_nsec as u64) / 1_000_000
}

#[cfg(test)]
mod tests {
    #[test]
    fn it_moves_forward_with_time() {
        let a = super::coarse_millis();
        std::thread::sleep(std::time::Duration::from_millis(30));
        let b = super::coarse_millis();
        assert!(b >= a + 20, "{a} -> {b}");
    }
}
