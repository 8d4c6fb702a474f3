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
//!
//! The live monitor (`ferroloop.xray.serve`) uses a lighter mode of the same switch: no
//! Python call per entry, only native counters — iterations, busy time, the lag between
//! a handle becoming ready and running (a histogram), and per task its steps and time on
//! the loop — read when a client asks. Python hears only of entries that blocked.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering::Relaxed, Ordering::SeqCst};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use pyo3::prelude::*;
use pyo3::types::{PyDict, PyType, PyWeakrefReference};
use pyo3::{ffi, intern};

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
    /// Live mode: when the handle became ready (scheduled, or its timer's deadline), ns.
    pub(crate) due_ns: AtomicU64,
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
    /// The entry the watchdog is sampling now (0: none). Set before it waits for the GIL,
    /// cleared once `_sample` returned: `_sample` is Python, so the loop thread can take the
    /// GIL back halfway through it, and an entry that ended then must wait for the sample
    /// rather than report a block that has no stack yet.
    sampling: AtomicU64,
}

/// Sequence numbers are process-wide: one recorder may watch several loops.
static NEXT_SEQ: AtomicU64 = AtomicU64::new(0);

/// Upper bounds (seconds) of the loop-lag histogram's buckets; one more for +Inf.
pub(crate) const LAG_BUCKETS: [f64; 12] =
    [0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 1.0];

/// One task's account in live mode, keyed by the task's address; the weak reference
/// tells a dead task's entry from a new task at the same address.
struct TaskAcc {
    task: Py<PyWeakrefReference>,
    steps: u64,
    run_ns: u64,
    cpu_ns: u64,
    first_ns: u64,
    last_ns: u64,
}

/// Hashes a task's address: one multiply (SipHash, the default, costs more than the rest
/// of a step's accounting; addresses need no protection from collision attacks).
#[derive(Default, Clone, Copy)]
struct AddrHasher(u64);

impl std::hash::Hasher for AddrHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ b as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }
    fn write_usize(&mut self, n: usize) {
        self.0 = (n as u64 >> 4).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

type AddrMap<V> = HashMap<usize, V, std::hash::BuildHasherDefault<AddrHasher>>;

/// The live monitor's counters (see the module comment).
#[derive(Default)]
struct Live {
    started_ns: u64,
    iterations: u64,
    /// When the last poll returned: IO readiness becomes ready then.
    iter_ns: u64,
    entries: u64,
    busy_ns: u64,
    lag: [u64; LAG_BUCKETS.len() + 1],
    lag_sum_ns: u64,
    lag_max_ns: u64,
    tasks: AddrMap<TaskAcc>,
    prune_at: usize,
    task_type: Option<Py<PyType>>,
    /// `hub._blocked`, called after an entry that held the loop past the threshold.
    on_blocked: Option<Py<PyAny>>,
    threshold: f64,
}

/// One entry's run: its start and end on the loop's clock, and the CPU seconds it used.
#[derive(Clone, Copy)]
pub(crate) struct Span {
    pub(crate) t0: f64,
    pub(crate) t1: f64,
    pub(crate) cpu: f64,
}

#[derive(Default)]
pub(crate) struct Trace {
    on: AtomicBool,
    /// Live mode (counters only) rather than a recorder.
    live_on: AtomicBool,
    live: GilCell<Live>,
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
        if self.live_on.load(Relaxed) {
            // an fd watcher's handle runs again and again: it is ready when the poll says so
            tag.due_ns.store(if origin == ORIGIN_FD { 0 } else { now_ns() }, Relaxed);
        }
        seq
    }

    /// Tags a timer being armed: ready at its deadline.
    pub(crate) fn tag_timer(&self, tag: &Tag, when: f64) -> u64 {
        let seq = self.tag(tag, ORIGIN_TIMER);
        tag.due_ns.store((when.max(0.0) * 1e9) as u64, Relaxed);
        seq
    }

    pub(crate) fn is_live(&self) -> bool {
        self.live_on.load(Relaxed)
    }

    /// A new sequence number for an entry that is not a handle (transport readiness).
    pub(crate) fn fresh(&self) -> u64 {
        self.next()
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
                    // SAFETY: pthread_self has no preconditions.
                    w.loop_thread.store(unsafe { libc::pthread_self() } as u64, Relaxed);
                    // SAFETY: nor has gettid.
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
        // The watch is held by reference (an Arc clone) only when a sample of this entry is
        // under way: then the GIL is let go for the sample to finish, and the cell with it.
        let sampled = self.watch.borrow(py).ok().and_then(|w| {
            let w = w.as_ref()?;
            w.running.store(0, SeqCst);
            (w.sampling.load(SeqCst) == seq).then(|| Arc::clone(w))
        });
        if let Some(w) = sampled {
            py.detach(|| {
                let deadline = std::time::Instant::now() + Duration::from_secs(1);
                while w.sampling.load(SeqCst) == seq && std::time::Instant::now() < deadline {
                    thread::sleep(Duration::from_micros(100));
                }
            });
        }
        if let Ok(w) = self.watch.borrow(py) {
            if let Some(w) = w.as_ref() {
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

    /// Starts the blocking watchdog; it reports samples to `target._sample`.
    fn start_watchdog(&self, py: Python<'_>, target: &Py<PyAny>, threshold: f64) -> PyResult<()> {
        let watch = Arc::new(Watch::default());
        watch.threshold_ns.store((threshold.max(0.001) * 1e9) as u64, Relaxed);
        let for_thread = watch.clone();
        let rec = target.clone_ref(py);
        let handle = thread::Builder::new()
            .name("ferroloop-xray-watchdog".into())
            .spawn(move || watchdog(for_thread, rec))
            .map_err(|e| pyo3::exceptions::PyRuntimeError::new_err(format!("cannot start the watchdog: {e}")))?;
        *self.watch.borrow_mut(py)? = Some(watch);
        *self.watchdog.borrow_mut(py)? = Some(handle);
        Ok(())
    }

    /// Starts tracing into `recorder`; with a threshold, also the blocking watchdog.
    pub(crate) fn start(&self, py: Python<'_>, recorder: Py<PyAny>, threshold: Option<f64>) -> PyResult<()> {
        self.stop(py)?;
        if let Some(threshold) = threshold {
            self.start_watchdog(py, &recorder, threshold)?;
        }
        *self.on_entry.borrow_mut(py)? = Some(recorder.bind(py).getattr("_entry")?.unbind());
        self.on.store(true, Relaxed);
        Ok(())
    }

    /// Starts live mode: counters only; `hub._sample` hears from the watchdog while an
    /// entry blocks, `hub._blocked` once it ended.
    pub(crate) fn start_live(&self, py: Python<'_>, hub: Py<PyAny>, threshold: f64) -> PyResult<()> {
        self.stop(py)?;
        self.start_watchdog(py, &hub, threshold)?;
        let task_type =
            py.import(intern!(py, "asyncio"))?.getattr(intern!(py, "Task"))?.cast_into::<PyType>()?.unbind();
        let now = now_ns();
        *self.live.borrow_mut(py)? = Live {
            started_ns: now,
            iter_ns: now,
            prune_at: 1024,
            task_type: Some(task_type),
            on_blocked: Some(hub.bind(py).getattr(intern!(py, "_blocked"))?.unbind()),
            threshold,
            ..Live::default()
        };
        self.live_on.store(true, Relaxed);
        self.on.store(true, Relaxed);
        Ok(())
    }

    /// Live mode: one loop iteration's poll returned.
    pub(crate) fn iteration(&self, py: Python<'_>) {
        if let Ok(mut live) = self.live.borrow_mut(py) {
            live.iterations += 1;
            live.iter_ns = now_ns();
        }
    }

    /// The task whose step or wake-up `callback` is (a bound C method of the Task, or the
    /// C Task's step wrapper), if any.
    fn task_of<'py>(callback: &Bound<'py, PyAny>, task_type: &Bound<'py, PyType>) -> Option<Bound<'py, PyAny>> {
        let py = callback.py();
        let ptr = callback.as_ptr();
        // SAFETY: `ptr` is a live object (we hold `callback`); PyCFunction_GetSelf returns
        // a borrowed reference (or NULL) kept alive by the function object itself.
        let owner = unsafe {
            if ffi::PyCFunction_Check(ptr) != 0 {
                let s = ffi::PyCFunction_GetSelf(ptr);
                if s.is_null() {
                    return None;
                }
                Bound::from_borrowed_ptr(py, s)
            } else {
                let name = std::ffi::CStr::from_ptr((*ffi::Py_TYPE(ptr)).tp_name);
                // "TaskStepMethWrapper" on 3.11, "_asyncio.TaskStepMethWrapper" on 3.12+
                if !name.to_bytes().ends_with(b"TaskStepMethWrapper") {
                    return None;
                }
                callback.getattr(intern!(py, "__self__")).ok()?
            }
        };
        owner.is_instance(task_type).unwrap_or(false).then_some(owner)
    }

    /// Live mode, after an entry ran: counters, the task's account, and the hub if it blocked.
    pub(crate) fn account(
        &self,
        py: Python<'_>,
        seq: u64,
        due_ns: u64,
        callback: Option<&Bound<'_, PyAny>>,
        span: Span,
    ) -> PyResult<()> {
        let Span { t0, t1, cpu } = span;
        let t0_ns = (t0 * 1e9) as u64;
        let run_ns = ((t1 - t0).max(0.0) * 1e9) as u64;
        // A task seen for the first time gets a weak reference, made outside any borrow
        // (allocating may run the collector, and so Python code).
        let (task, key, fresh) = {
            let live = self.live.borrow(py)?;
            let task = match (callback, live.task_type.as_ref()) {
                (Some(cb), Some(tt)) => Self::task_of(cb, tt.bind(py)),
                _ => None,
            };
            let key = task.as_ref().map(|t| t.as_ptr() as usize);
            let fresh = key.is_some_and(|k| live.tasks.get(&k).is_none_or(|acc| acc.task.bind(py).upgrade().is_none()));
            (task, key, fresh)
        };
        let weak = match (&task, fresh) {
            (Some(t), true) => PyWeakrefReference::new(t).ok().map(Bound::unbind),
            _ => None,
        };
        let mut dropped: Vec<TaskAcc> = Vec::new(); // released after the borrow
        let blocked = {
            let mut live = self.live.borrow_mut(py)?;
            let live = &mut *live;
            live.entries += 1;
            live.busy_ns += run_ns;
            let due = if due_ns == 0 { live.iter_ns } else { due_ns };
            let lag_ns = t0_ns.saturating_sub(due);
            let lag = lag_ns as f64 * 1e-9;
            let bucket = LAG_BUCKETS.iter().position(|&b| lag <= b).unwrap_or(LAG_BUCKETS.len());
            live.lag[bucket] += 1;
            live.lag_sum_ns += lag_ns;
            live.lag_max_ns = live.lag_max_ns.max(lag_ns);
            if let Some(key) = key {
                if let Some(weak) = weak {
                    if live.tasks.len() >= live.prune_at {
                        let dead: Vec<usize> = live
                            .tasks
                            .iter()
                            .filter(|(_, acc)| acc.task.bind(py).upgrade().is_none())
                            .map(|(k, _)| *k)
                            .collect();
                        dropped.extend(dead.iter().filter_map(|k| live.tasks.remove(k)));
                        live.prune_at = (live.tasks.len() * 2).max(1024);
                    }
                    let acc = TaskAcc { task: weak, steps: 0, run_ns: 0, cpu_ns: 0, first_ns: due, last_ns: 0 };
                    dropped.extend(live.tasks.insert(key, acc));
                }
                if let Some(acc) = live.tasks.get_mut(&key) {
                    acc.steps += 1;
                    acc.run_ns += run_ns;
                    acc.cpu_ns += (cpu.max(0.0) * 1e9) as u64;
                    acc.last_ns = t0_ns;
                }
            }
            (t1 - t0 >= live.threshold).then(|| live.on_blocked.as_ref().map(|f| f.clone_ref(py))).flatten()
        };
        drop(dropped);
        drop(task);
        if let Some(on_blocked) = blocked {
            let subject = callback.map_or_else(|| py.None(), |c| c.clone().unbind());
            on_blocked.bind(py).call1((seq, t0, t1, cpu, subject))?;
        }
        Ok(())
    }

    /// Live mode's counters, for `ferroloop.xray` (None when live mode is off).
    pub(crate) fn live_stats<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyDict>>> {
        if !self.live_on.load(Relaxed) {
            return Ok(None);
        }
        let live = self.live.borrow(py)?;
        let d = PyDict::new(py);
        let s = |ns: u64| ns as f64 * 1e-9;
        d.set_item("since", s(live.started_ns))?;
        d.set_item("iterations", live.iterations)?;
        d.set_item("entries", live.entries)?;
        d.set_item("busy", s(live.busy_ns))?;
        d.set_item("lag_buckets", LAG_BUCKETS.to_vec())?;
        d.set_item("lag_counts", live.lag.to_vec())?;
        d.set_item("lag_sum", s(live.lag_sum_ns))?;
        d.set_item("lag_max", s(live.lag_max_ns))?;
        let tasks = PyDict::new(py);
        for acc in live.tasks.values() {
            if let Some(task) = acc.task.bind(py).upgrade() {
                tasks.set_item(task, (acc.steps, s(acc.run_ns), s(acc.cpu_ns), s(acc.first_ns), s(acc.last_ns)))?;
            }
        }
        d.set_item("tasks", tasks)?;
        Ok(Some(d))
    }

    pub(crate) fn stop(&self, py: Python<'_>) -> PyResult<()> {
        self.on.store(false, Relaxed);
        self.live_on.store(false, Relaxed);
        let old_live = std::mem::take(&mut *self.live.borrow_mut(py)?);
        drop(old_live);
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
        let old = self.on_entry.borrow_mut(py)?.take();
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
        // The loop is held: look at its stack now, while it blocks. `sampling` is set
        // before `running` is checked, and `end` clears `running` before it checks
        // `sampling` (both SeqCst): either the sample is skipped or the end waits for it.
        watch.sampling.store(seq, SeqCst);
        Python::attach(|py| {
            if watch.running.load(SeqCst) == seq && !watch.stop.load(Relaxed) {
                if let Err(e) = recorder.bind(py).call_method1("_sample", (seq, elapsed as f64 * 1e-9)) {
                    e.print(py);
                }
            }
        });
        watch.sampling.store(0, SeqCst);
    }
}
