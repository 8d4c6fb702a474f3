//! Instrumentation for `ferroloop.xray`: what ran, for how long, and what caused it.
//!
//! Off by default, and then free: the loop tests one relaxed atomic per entry. On, every
//! handle is tagged when it is scheduled (a sequence number, its origin — call_soon, timer,
//! fd watcher, another thread — and the entry that was running when it was scheduled, its
//! cause), and every entry run is reported to the Python recorder with its start and end.
//! A task's wake-up thus names what woke it: a timer, IO, an executor, another task.
//!
//! A watchdog thread samples the loop thread's Python stack while one entry holds the loop
//! longer than a threshold — during the block, not after: a blocking call that released the
//! GIL lets the watchdog in at once, a pure-Python CPU loop within the interpreter's switch
//! interval.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering::Relaxed};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use pyo3::prelude::*;

use crate::clock;
use crate::gil_cell::GilCell;

/// Where a handle came from.
pub(crate) const ORIGIN_SOON: u8 = 1;
pub(crate) const ORIGIN_TIMER: u8 = 2;
pub(crate) const ORIGIN_FD: u8 = 3;
pub(crate) const ORIGIN_THREAD: u8 = 4;
pub(crate) const ORIGIN_STREAM: u8 = 5;
pub(crate) const ORIGIN_DATAGRAM: u8 = 6;

/// The trace fields every handle carries (zero while tracing is off).
#[derive(Default)]
pub(crate) struct Tag {
    pub(crate) seq: AtomicU64,
    pub(crate) cause: AtomicU64,
    pub(crate) origin: AtomicU8,
}

/// Shared with the watchdog thread: what the loop is running since when.
#[derive(Default)]
struct Watch {
    running: AtomicU64,
    started_ns: AtomicU64,
    threshold_ns: AtomicU64,
    stop: AtomicBool,
    /// The loop thread (pthread_t), whose CPU clock the watchdog reads.
    loop_thread: AtomicU64,
    /// When the watchdog first saw `detected` blocking: wall and loop-thread CPU time.
    detected: AtomicU64,
    detected_wall_ns: AtomicU64,
    detected_cpu_ns: AtomicU64,
    /// The loop thread's kernel id, and how often the watchdog found it runnable (on or
    /// waiting for a CPU) vs asleep in the kernel during `detected`: under CPU contention
    /// a computing thread stays runnable while its CPU clock falls behind the wall clock.
    loop_tid: AtomicU64,
    runnable: AtomicU64,
    looked: AtomicU64,
}

/// Sequence numbers are process-wide: one recorder may watch several loops.
static NEXT_SEQ: AtomicU64 = AtomicU64::new(0);

#[derive(Default)]
pub(crate) struct Trace {
    on: AtomicBool,
    recorder: GilCell<Option<Py<PyAny>>>,
    /// `recorder._entry`, bound once: it is called after every entry.
    on_entry: GilCell<Option<Py<PyAny>>>,
    /// The entry running now: the cause of whatever it schedules.
    current: AtomicU64,
    watch: GilCell<Option<Arc<Watch>>>,
    /// The watchdog thread, joined when tracing stops: a thread of ours still waiting for
    /// the GIL when the interpreter finalizes would be ended under Rust frames (abort).
    watchdog: GilCell<Option<thread::JoinHandle<()>>>,
}

fn now_ns() -> u64 {
    (clock::monotonic() * 1e9) as u64
}

/// CPU time of the calling thread, in seconds: with wall time it tells a step that
/// computed from one that waited in a blocking call. A syscall (about a microsecond), so
/// it is read only for entries that blocked, never per entry.
pub(crate) fn thread_cpu() -> f64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: writes into a timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9
}

/// Whether a thread of this process is runnable ('R') rather than asleep, from
/// /proc/self/task/TID/stat (None where there is no /proc).
fn is_runnable(tid: u64) -> Option<bool> {
    let stat = std::fs::read_to_string(format!("/proc/self/task/{tid}/stat")).ok()?;
    // "pid (comm) S ...": the state follows the last ')' (comm may contain spaces).
    let state = stat.rsplit_once(')')?.1.trim_start().chars().next()?;
    Some(state == 'R')
}

/// CPU time of another thread of this process, in nanoseconds (None if unavailable).
#[cfg(not(target_os = "linux"))]
fn cpu_of(_thread: u64) -> Option<u64> {
    None
}

/// CPU time of another thread of this process, in nanoseconds (None if unavailable).
#[cfg(target_os = "linux")]
fn cpu_of(thread: u64) -> Option<u64> {
    let mut clock: libc::clockid_t = 0;
    // SAFETY: `thread` is a pthread_t of this process recorded by that thread itself; the
    // loop thread outlives the watchdog's use of it (tracing stops before the loop closes).
    unsafe {
        if libc::pthread_getcpuclockid(thread as libc::pthread_t, &mut clock) != 0 {
            return None;
        }
        let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
        if libc::clock_gettime(clock, &mut ts) != 0 {
            return None;
        }
        Some(ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64)
    }
}

impl Trace {
    #[inline(always)]
    pub(crate) fn is_on(&self) -> bool {
        self.on.load(Relaxed)
    }

    fn next(&self) -> u64 {
        NEXT_SEQ.fetch_add(1, Relaxed) + 1
    }

    /// Tags a handle being scheduled (tracing is on).
    pub(crate) fn tag(&self, tag: &Tag, origin: u8) -> u64 {
        let seq = self.next();
        tag.seq.store(seq, Relaxed);
        tag.origin.store(origin, Relaxed);
        let cause = if origin == ORIGIN_THREAD || origin == ORIGIN_FD { 0 } else { self.current.load(Relaxed) };
        tag.cause.store(cause, Relaxed);
        seq
    }

    /// A new sequence number for an entry that is not a handle (transport readiness).
    pub(crate) fn fresh(&self) -> u64 {
        self.next()
    }

    pub(crate) fn recorder(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        self.recorder.borrow(py).ok().and_then(|r| r.as_ref().map(|r| r.clone_ref(py)))
    }

    pub(crate) fn entry_callback(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        self.on_entry.borrow(py).ok().and_then(|r| r.as_ref().map(|r| r.clone_ref(py)))
    }

    /// Marks `seq` as running (for causes and the watchdog); returns the start time.
    pub(crate) fn begin(&self, py: Python<'_>, seq: u64) -> f64 {
        self.current.store(seq, Relaxed);
        let t0 = clock::monotonic();
        if let Ok(w) = self.watch.borrow(py) {
            if let Some(w) = w.as_ref() {
                if w.loop_thread.load(Relaxed) == 0 {
                    // SAFETY: pthread_self and gettid have no preconditions.
                    w.loop_thread.store(unsafe { libc::pthread_self() } as u64, Relaxed);
                    #[cfg(target_os = "linux")]
                    w.loop_tid.store(unsafe { libc::gettid() } as u64, Relaxed);
                }
                w.started_ns.store((t0 * 1e9) as u64, Relaxed);
                w.running.store(seq, Relaxed);
            }
        }
        t0
    }

    /// Ends the running entry; returns (end time, CPU seconds it used). Entries shorter
    /// than the blocking threshold count as all CPU (they held the loop; measuring would
    /// cost more than they did). For longer ones the watchdog's reading of the loop
    /// thread's CPU clock during the block gives the share.
    pub(crate) fn end(&self, py: Python<'_>, seq: u64, t0: f64) -> (f64, f64) {
        let t1 = clock::monotonic();
        let mut cpu = t1 - t0;
        if let Ok(w) = self.watch.borrow(py) {
            if let Some(w) = w.as_ref() {
                w.running.store(0, Relaxed);
                if w.detected.load(Relaxed) == seq {
                    let looked = w.looked.load(Relaxed);
                    let wall0 = w.detected_wall_ns.load(Relaxed) as f64 * 1e-9;
                    let cpu0 = w.detected_cpu_ns.load(Relaxed) as f64 * 1e-9;
                    if looked > 0 {
                        cpu = w.runnable.load(Relaxed) as f64 / looked as f64 * (t1 - t0);
                    } else if t1 > wall0 {
                        let share = ((thread_cpu() - cpu0) / (t1 - wall0)).clamp(0.0, 1.0);
                        cpu = share * (t1 - t0);
                    }
                }
            }
        }
        self.current.store(0, Relaxed);
        (t1, cpu)
    }

    /// Starts tracing into `recorder`; with a threshold, also the blocking watchdog.
    pub(crate) fn start(&self, py: Python<'_>, recorder: Py<PyAny>, threshold: Option<f64>) -> PyResult<()> {
        self.stop(py)?;
        if let Some(threshold) = threshold {
            let watch = Arc::new(Watch::default());
            watch.threshold_ns.store((threshold.max(0.001) * 1e9) as u64, Relaxed);
            let for_thread = watch.clone();
            let rec = recorder.clone_ref(py);
            let handle = thread::Builder::new()
                .name("ferroloop-xray-watchdog".into())
                .spawn(move || watchdog(for_thread, rec))
                .map_err(|e| pyo3::exceptions::PyRuntimeError::new_err(format!("cannot start the watchdog: {e}")))?;
            *self.watch.borrow_mut(py)? = Some(watch);
            *self.watchdog.borrow_mut(py)? = Some(handle);
        }
        *self.on_entry.borrow_mut(py)? = Some(recorder.bind(py).getattr("_entry")?.unbind());
        *self.recorder.borrow_mut(py)? = Some(recorder);
        self.on.store(true, Relaxed);
        Ok(())
    }

    pub(crate) fn stop(&self, py: Python<'_>) -> PyResult<()> {
        self.on.store(false, Relaxed);
        if let Some(w) = self.watch.borrow_mut(py)?.take() {
            w.stop.store(true, Relaxed);
        }
        if let Some(handle) = self.watchdog.borrow_mut(py)?.take() {
            handle.thread().unpark();
            // Without the GIL: the watchdog may be waiting for it to take a sample.
            let joined = py.detach(|| handle.join());
            if joined.is_err() {
                return Err(pyo3::exceptions::PyRuntimeError::new_err("the x-ray watchdog thread panicked"));
            }
        }
        let old = (self.recorder.borrow_mut(py)?.take(), self.on_entry.borrow_mut(py)?.take());
        drop(old);
        Ok(())
    }
}

fn watchdog(watch: Arc<Watch>, recorder: Py<PyAny>) {
    let threshold = watch.threshold_ns.load(Relaxed);
    let interval = Duration::from_nanos((threshold / 4).clamp(2_000_000, 50_000_000));
    while !watch.stop.load(Relaxed) {
        thread::park_timeout(interval);
        let seq = watch.running.load(Relaxed);
        if seq == 0 || watch.stop.load(Relaxed) {
            continue;
        }
        let elapsed = now_ns().saturating_sub(watch.started_ns.load(Relaxed));
        if elapsed < threshold {
            continue;
        }
        if watch.detected.load(Relaxed) != seq {
            // First sight of this block: note the loop thread's CPU clock (no GIL needed).
            watch.runnable.store(0, Relaxed);
            watch.looked.store(0, Relaxed);
            if let Some(cpu) = cpu_of(watch.loop_thread.load(Relaxed)) {
                watch.detected_cpu_ns.store(cpu, Relaxed);
                watch.detected_wall_ns.store(now_ns(), Relaxed);
                watch.detected.store(seq, Relaxed);
            }
        }
        if let Some(runnable) = is_runnable(watch.loop_tid.load(Relaxed)) {
            watch.looked.fetch_add(1, Relaxed);
            if runnable {
                watch.runnable.fetch_add(1, Relaxed);
            }
        }
        // The loop is held: look at its stack now, while it blocks.
        Python::attach(|py| {
            if watch.running.load(Relaxed) == seq && !watch.stop.load(Relaxed) {
                if let Err(e) = recorder.bind(py).call_method1("_sample", (seq, elapsed as f64 * 1e-9)) {
                    e.print(py);
                }
            }
        });
    }
}
