//! The loop's clock: CLOCK_MONOTONIC, the clock behind `time.monotonic()` on Linux, so
//! `loop.time()` and `time.monotonic()` agree as they do on stock asyncio.

pub(crate) fn monotonic() -> f64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes into the timespec we own; CLOCK_MONOTONIC always exists.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9
}

/// `time.get_clock_info('monotonic').resolution`, used as asyncio uses it: timers due
/// within one resolution step of now are considered due.
pub(crate) fn resolution() -> f64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: as above.
    let rc = unsafe { libc::clock_getres(libc::CLOCK_MONOTONIC, &mut ts) };
    if rc != 0 {
        return 1e-9;
    }
    ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9
}
