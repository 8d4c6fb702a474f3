//! `CoreLoop`: the native half of `ferroloop.Loop` — the ready queue, the timer heap, the
//! poller and the run-once step. The Python class `ferroloop.Loop` derives from it and from
//! `asyncio.AbstractEventLoop`, and adds what runs once per loop or per connection.
//!
//! One iteration (`run_once`), as asyncio's `BaseEventLoop._run_once`:
//!  1. drop cancelled timers (compact the heap when they are the majority);
//!  2. timeout: 0 if callbacks are ready or the loop is stopping, else until the next timer;
//!  3. poll (the GIL is released only when the wait can block), queue IO callbacks;
//!  4. queue the timers now due;
//!  5. run exactly the callbacks queued at this point — those they schedule run next time.

use std::collections::VecDeque;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed, Ordering::SeqCst};
use std::time::Duration;

use mio::Waker;
use pyo3::exceptions::{PyRuntimeError, PyTypeError, PyValueError};
use pyo3::ffi;
use pyo3::gc::PyVisit;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyInt, PyTuple};
use pyo3::{intern, PyTraverseError};

use crate::clock;
use crate::gil_cell::GilCell;
use crate::handles::{helpers, run_handle, visit_held, Args, Handle, TimerHandle};
use crate::poller::{self, Direction, FdError, PollCore, Poller, Source};
use crate::timers::TimerHeap;
use crate::trace::{self, Trace};
use crate::transports::{datagram::DatagramTransport, stream::StreamTransport, Readiness};

/// Size of the scratch buffer socket reads land in (asyncio's `max_size`).
const READ_BUFFER_SIZE: usize = 256 * 1024;

/// An entry of the ready queue: a Python-visible handle, or IO readiness for a native
/// transport (no Python object is made for it).
pub(crate) enum Ready {
    Handle(Py<Handle>),
    Stream(Py<StreamTransport>, Readiness),
    Datagram(Py<DatagramTransport>, Readiness),
}

impl Ready {
    fn visit(&self, visit: &PyVisit<'_>) -> Result<(), PyTraverseError> {
        match self {
            Ready::Handle(h) => visit.call(h),
            Ready::Stream(t, _) => visit.call(t),
            Ready::Datagram(t, _) => visit.call(t),
        }
    }
}

/// Handles kept for reuse, per kind.
const POOL_SIZE: usize = 512;

/// asyncio's MAXIMUM_SELECT_TIMEOUT: never block longer than a day in one wait.
const MAX_SELECT_TIMEOUT: f64 = 24.0 * 3600.0;

#[pyclass(module = "ferroloop._ferroloop", subclass, frozen)]
pub struct CoreLoop {
    ready: GilCell<VecDeque<Ready>>,
    /// Scratch space socket reads land in before they become `bytes`.
    read_buf: GilCell<Vec<u8>>,
    /// Handles that ran and that nobody else held, kept for the next call_soon/call_later
    /// to fill again: no allocation, no deallocation per callback.
    handle_pool: GilCell<Vec<Py<Handle>>>,
    timer_pool: GilCell<Vec<Py<TimerHandle>>>,
    timers: GilCell<TimerHeap>,
    poller: GilCell<Option<Poller>>,
    /// Borrowed by the loop thread across the (GIL-released) wait, and by nobody else.
    poll: GilCell<Option<PollCore>>,
    /// Dropped (its eventfd closed) by close(), with the rest of the loop's fds.
    waker: GilCell<Option<Waker>>,
    /// True while the loop thread is blocked in the poller: only then does
    /// `call_soon_threadsafe` need to wake it (see `call_soon_threadsafe`).
    parked: AtomicBool,
    /// A wake-up was sent during this park: later callers need not send another (a
    /// producer thread holding the GIL would otherwise write the eventfd on every call).
    wake_sent: AtomicBool,
    stopping: AtomicBool,
    closed: AtomicBool,
    debug: AtomicBool,
    /// Ident of the thread running the loop, 0 when it is not running.
    thread_id: AtomicU64,
    slow_callback_duration: AtomicU64,
    clock_resolution: f64,
    /// The x-ray's instrumentation; off unless a recorder is attached.
    trace: Trace,
    /// `set_task_factory`'s factory and the attached x-ray recorder (Python objects the
    /// native create_task must see without a dict lookup).
    task_factory: GilCell<Option<Py<PyAny>>>,
    xray: GilCell<Option<Py<PyAny>>>,
    /// Whether call_soon_threadsafe's handles have 3.14's waiting cancel (threadsafe.rs):
    /// set from the running Python's version; tests flip it to hold the contract.
    threadsafe_waits: AtomicBool,
}

fn closed_error() -> PyErr {
    PyRuntimeError::new_err("Event loop is closed")
}

fn current_thread_ident() -> u64 {
    // SAFETY: a plain query of the calling thread's ident; same value as threading.get_ident().
    unsafe { ffi::PyThread_get_thread_ident() as u64 }
}

/// `selectors._fileobj_to_fd`: an int, or an object with `fileno()`.
pub(crate) fn fileobj_to_fd(obj: &Bound<'_, PyAny>) -> PyResult<RawFd> {
    checked_fd(fileobj_to_raw_fd(obj)?)
}

fn checked_fd(fd: i64) -> PyResult<RawFd> {
    if fd < 0 {
        return Err(PyValueError::new_err(format!("Invalid file descriptor: {fd}")));
    }
    RawFd::try_from(fd).map_err(|_| PyValueError::new_err(format!("Invalid file descriptor: {fd}")))
}

/// The number an int or `fileno()` gives, negative included (a closed socket's -1).
fn fileobj_to_raw_fd(obj: &Bound<'_, PyAny>) -> PyResult<i64> {
    let py = obj.py();
    let fd: i64 = if obj.is_instance_of::<PyInt>() {
        obj.extract()?
    } else {
        match obj.call_method0(intern!(py, "fileno")).and_then(|v| v.call_method0(intern!(py, "__index__"))) {
            Ok(v) => v.extract()?,
            Err(e)
                if e.is_instance_of::<pyo3::exceptions::PyAttributeError>(py)
                    || e.is_instance_of::<PyTypeError>(py)
                    || e.is_instance_of::<PyValueError>(py) =>
            {
                return Err(PyValueError::new_err(format!("Invalid file object: {}", obj.repr()?)));
            }
            Err(e) => return Err(e),
        }
    };
    Ok(fd)
}

fn os_error(e: std::io::Error) -> PyErr {
    crate::transports::os_error(&e)
}

/// Takes a handle out of the garbage collector's watch (PyO3 makes every pyclass
/// collectable). Handles the loop makes hold no reference cycles of their own: they let go
/// of their callback once run or cancelled (handles.rs), and while pending the loop holds
/// them. Untracked, the collector never walks the thousands a busy loop has alive.
#[inline]
fn untracked<T>(obj: Py<T>) -> Py<T> {
    // SAFETY: a live object of a GC type (every pyclass is); untracking an object that is
    // not tracked is a no-op, and deallocation untracks again safely.
    unsafe { ffi::PyObject_GC_UnTrack(obj.as_ptr().cast()) };
    obj
}

fn fd_error(py: Python<'_>, fd: RawFd, e: FdError) -> PyErr {
    match e {
        FdError::Os(e) => os_error(e),
        FdError::OwnedByTransport(t) => {
            let facade = t.bind(py).call_method0(intern!(py, "_facade_repr")).map(|r| r.to_string());
            PyRuntimeError::new_err(format!(
                "File descriptor {fd} is used by transport {}",
                facade.unwrap_or_else(|_| "<transport>".into())
            ))
        }
    }
}

impl CoreLoop {
    #[inline]
    fn check_closed(&self) -> PyResult<()> {
        if self.closed.load(Relaxed) {
            Err(closed_error())
        } else {
            Ok(())
        }
    }

    #[inline]
    fn is_debug(&self) -> bool {
        self.debug.load(Relaxed)
    }

    /// asyncio checks callbacks (and the calling thread) in debug mode only; a callable
    /// check is one pointer test, so ferroloop does that one always.
    #[inline]
    fn check_callback(&self, slf: &Bound<'_, Self>, callback: &Bound<'_, PyAny>, method: &str) -> PyResult<()> {
        if self.is_debug() {
            self.check_thread()?;
        } else if callback.is_callable() {
            return Ok(());
        }
        let py = slf.py();
        helpers(py)?.call_method1(intern!(py, "check_callback"), (callback, method))?;
        Ok(())
    }

    fn check_thread(&self) -> PyResult<()> {
        let tid = self.thread_id.load(Relaxed);
        if tid != 0 && tid != current_thread_ident() {
            return Err(PyRuntimeError::new_err(
                "Non-thread-safe operation invoked on an event loop other than the current one",
            ));
        }
        Ok(())
    }

    fn make_handle(
        &self,
        slf: &Bound<'_, Self>,
        callback: Bound<'_, PyAny>,
        args: Args,
        context: Option<Bound<'_, PyAny>>,
    ) -> PyResult<Handle> {
        let py = slf.py();
        let tb = if self.is_debug() {
            Some(helpers(py)?.call_method0(intern!(py, "extract_stack"))?.unbind())
        } else {
            None
        };
        let untrack = self.untrack_copy(py, context.is_none());
        Handle::create(
            py,
            callback.unbind(),
            args,
            slf.clone().into_any().unbind(),
            context.map(Bound::unbind),
            tb,
            untrack,
        )
    }

    /// Whether a new handle's context copy (made only for `context=None`) is worth keeping
    /// from the garbage collector: when the loop holds many handles (`HandleContext` in
    /// handles.rs). A given context — every Task step passes one — costs no check.
    #[inline]
    fn untrack_copy(&self, py: Python<'_>, copying: bool) -> bool {
        const CROWD: usize = 256;
        copying
            && (self.ready.borrow(py).is_ok_and(|r| r.len() >= CROWD)
                || self.timers.borrow(py).is_ok_and(|t| t.len() >= CROWD))
    }

    #[inline]
    pub(crate) fn push_ready(&self, py: Python<'_>, entry: Ready) -> PyResult<()> {
        self.ready.borrow_mut(py)?.push_back(entry);
        Ok(())
    }

    #[inline]
    pub(crate) fn check_open(&self) -> PyResult<()> {
        self.check_closed()
    }

    #[inline]
    pub(crate) fn is_debug_mode(&self) -> bool {
        self.is_debug()
    }

    /// Queues `callback(*args)` as `call_soon` would, for callbacks the core schedules
    /// itself (connection_made, connection_lost, waiters).
    pub(crate) fn call_soon_native(
        slf: &Bound<'_, Self>,
        callback: Bound<'_, PyAny>,
        args: Bound<'_, PyTuple>,
        context: Option<Py<PyAny>>,
    ) -> PyResult<()> {
        let py = slf.py();
        let me = slf.get();
        me.check_closed()?;
        let h = Handle::create(
            py,
            callback.unbind(),
            Args::from_tuple(args),
            slf.clone().into_any().unbind(),
            context,
            None,
            false,
        )?
        .oneshot();
        if me.trace.is_on() {
            me.trace.tag(&h.tag, trace::ORIGIN_SOON);
        }
        me.push_ready(py, Ready::Handle(untracked(Py::new(py, h)?)))
    }

    /// Runs `f` on the loop's read scratch buffer (allocated on first use).
    pub(crate) fn with_read_buffer<R>(&self, py: Python<'_>, f: impl FnOnce(&mut [u8]) -> R) -> PyResult<R> {
        let mut buf = self.read_buf.borrow_mut(py)?;
        if buf.is_empty() {
            buf.resize(READ_BUFFER_SIZE, 0);
        }
        Ok(f(&mut buf))
    }

    /// Registers a native transport's fd, readable and writable (edge-triggered).
    pub(crate) fn register(&self, py: Python<'_>, fd: RawFd, source: Source) -> PyResult<usize> {
        let (key, displaced) = {
            let mut poller = self.poller.borrow_mut(py)?;
            let poller = poller.as_mut().ok_or_else(closed_error)?;
            poller.add_transport(fd, source).map_err(os_error)?
        };
        // asyncio lets a transport take over an fd that had add_reader/add_writer callbacks.
        if let Some(w) = displaced {
            for h in w.reader.iter().chain(w.writer.iter()) {
                Handle::cancel(h.bind(py))?;
            }
        }
        Ok(key)
    }

    pub(crate) fn deregister(&self, py: Python<'_>, key: usize, fd: RawFd) -> PyResult<()> {
        let source = {
            let mut poller = self.poller.borrow_mut(py)?;
            match poller.as_mut() {
                Some(p) => p.remove_transport(key, fd),
                None => None,
            }
        };
        drop(source);
        Ok(())
    }

    /// `call_at`/`call_later`: a TimerHandle in the heap.
    pub(crate) fn schedule_timer(
        slf: &Bound<'_, Self>,
        when: f64,
        callback: Bound<'_, PyAny>,
        args: Args,
        context: Option<Bound<'_, PyAny>>,
    ) -> PyResult<Py<TimerHandle>> {
        let py = slf.py();
        let me = slf.get();
        me.check_closed()?;
        me.check_callback(slf, &callback, "call_at")?;
        let pooled = if me.is_debug() { None } else { me.timer_pool.borrow_mut(py)?.pop() };
        let timer = match pooled {
            Some(timer) => {
                let untrack = me.untrack_copy(py, context.is_none());
                let context = context.map(Bound::unbind);
                TimerHandle::handle(timer.bind(py)).refill(py, callback.unbind(), args, context, untrack)?;
                let t = timer.get();
                t.when.store(when.to_bits(), Relaxed);
                t.scheduled.store(true, Relaxed);
                timer
            }
            None => {
                let base = me.make_handle(slf, callback, args, context)?.oneshot();
                let counter = me.timers.borrow(py)?.cancel_counter();
                untracked(Py::new(
                    py,
                    PyClassInitializer::from(base).add_subclass(TimerHandle {
                        when: AtomicU64::new(when.to_bits()),
                        scheduled: AtomicBool::new(true),
                        cancelled_in_heap: counter,
                    }),
                )?)
            }
        };
        let armed = me.trace.is_on().then(|| me.trace.tag_timer(&TimerHandle::handle(timer.bind(py)).tag, when));
        me.timers.borrow_mut(py)?.push(when, timer.clone_ref(py));
        if let Some(seq) = armed.filter(|_| !me.trace.is_live()) {
            me.trace_event(py, "_timer_armed", (seq, when, timer.clone_ref(py)))?;
        }
        Ok(timer)
    }

    /// Reports to the recorder; its failures are printed, never raised into the program.
    fn trace_event<A: for<'py> pyo3::call::PyCallArgs<'py>>(&self, py: Python<'_>, method: &str, args: A) -> PyResult<()> {
        if let Some(rec) = self.trace.recorder(py) {
            if let Err(e) = rec.bind(py).call_method1(method, args) {
                if crate::transports::is_fatal_to_loop(py, &e) {
                    return Err(e);
                }
                e.print(py);
            }
        }
        Ok(())
    }

    /// `call_soon` and `call_soon_threadsafe`. From another thread the GIL serialises the
    /// append; the wake-up syscall is only made when the loop thread is parked in the
    /// poller (it sets `parked` before releasing the GIL and clears it after re-taking it,
    /// so an append made while it is parked always sees the flag), and only once per park.
    pub(crate) fn schedule_soon(
        slf: &Bound<'_, Self>,
        callback: Bound<'_, PyAny>,
        args: Args,
        context: Option<Bound<'_, PyAny>>,
        threadsafe: bool,
    ) -> PyResult<Py<Handle>> {
        let py = slf.py();
        let me = slf.get();
        me.check_closed()?;
        if threadsafe {
            if !callback.is_callable() || me.is_debug() {
                helpers(py)?.call_method1(intern!(py, "check_callback"), (&callback, "call_soon_threadsafe"))?;
            }
        } else {
            me.check_callback(slf, &callback, "call_soon")?;
        }
        let pooled = if me.is_debug() { None } else { me.handle_pool.borrow_mut(py)?.pop() };
        let h = match pooled {
            Some(h) => {
                let untrack = me.untrack_copy(py, context.is_none());
                h.get().refill(py, callback.unbind(), args, context.map(Bound::unbind), untrack)?;
                h
            }
            None => untracked(Py::new(py, me.make_handle(slf, callback, args, context)?.oneshot())?),
        };
        h.get().waits.store(threadsafe && me.threadsafe_waits.load(Relaxed), Relaxed);
        if me.trace.is_on() {
            let other_thread = threadsafe && me.thread_id.load(Relaxed) != current_thread_ident();
            me.trace.tag(&h.get().tag, if other_thread { trace::ORIGIN_THREAD } else { trace::ORIGIN_SOON });
        }
        me.push_ready(py, Ready::Handle(h.clone_ref(py)))?;
        if threadsafe && me.parked.load(SeqCst) && !me.wake_sent.swap(true, SeqCst) {
            if let Some(w) = me.waker.borrow(py)?.as_ref() {
                let _ = w.wake();
            }
        }
        Ok(h)
    }

    /// Whether create_task can make the Task itself: no factory, no recorder, not debug.
    #[inline]
    pub(crate) fn plain_tasks(&self, py: Python<'_>) -> bool {
        !self.is_debug()
            && self.task_factory.borrow(py).is_ok_and(|f| f.is_none())
            && self.xray.borrow(py).is_ok_and(|x| x.is_none())
    }

    #[inline]
    pub(crate) fn time_now(&self) -> f64 {
        clock::monotonic()
    }

    /// One loop iteration (see the module comment).
    fn run_once(&self, slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();

        let has_timers = {
            let mut timers = self.timers.borrow_mut(py)?;
            if timers.len() > 0 {
                let mut dropped = Vec::new();
                timers.prune(py, &mut dropped);
                drop(timers);
                drop(dropped);
                true
            } else {
                false
            }
        };

        let timeout = if !self.ready.borrow(py)?.is_empty() || self.stopping.load(Relaxed) {
            Some(Duration::ZERO)
        } else {
            match self.timers.borrow(py)?.peek_when() {
                Some(when) => {
                    let t = (when - clock::monotonic()).clamp(0.0, MAX_SELECT_TIMEOUT);
                    Some(Duration::from_secs_f64(if t.is_nan() { 0.0 } else { t }))
                }
                None => Some(Duration::from_secs_f64(MAX_SELECT_TIMEOUT)),
            }
        };

        self.poll_io(py, timeout)?;
        if self.trace.is_on() {
            self.trace.iteration(py);
        }

        // No timers, no clock read: a callback-only iteration makes no syscall at all.
        if has_timers {
            let end_time = clock::monotonic() + self.clock_resolution;
            let mut timers = self.timers.borrow_mut(py)?;
            let mut ready = self.ready.borrow_mut(py)?;
            timers.pop_due(py, end_time, &mut ready);
        }

        let ntodo = self.ready.borrow(py)?.len();
        let debug = self.is_debug();
        for _ in 0..ntodo {
            let Some(entry) = self.ready.borrow_mut(py)?.pop_front() else { break };
            if self.trace.is_on() {
                self.run_entry_traced(py, entry)?;
                continue;
            }
            if debug {
                let t0 = clock::monotonic();
                let what = self.run_entry(py, entry)?;
                let dt = clock::monotonic() - t0;
                if dt >= f64::from_bits(self.slow_callback_duration.load(Relaxed)) {
                    if let Some(what) = what {
                        helpers(py)?.call_method1(intern!(py, "log_slow_callback"), (what, dt))?;
                    }
                }
            } else {
                self.run_entry(py, entry)?;
            }
        }
        Ok(())
    }

    /// A one-shot handle that ran (or was cancelled): back to its pool if nobody else
    /// holds it, else it just lets go of its callback (see handles.rs).
    #[inline]
    fn recycle(&self, py: Python<'_>, h: Bound<'_, Handle>) -> PyResult<()> {
        if !Handle::recyclable(&h) {
            return h.get().release(py);
        }
        h.get().empty(py)?;
        if h.get_type().is(&py.get_type::<Handle>()) {
            let mut pool = self.handle_pool.borrow_mut(py)?;
            if pool.len() < POOL_SIZE {
                pool.push(h.unbind());
            }
        } else if let Ok(t) = h.cast::<TimerHandle>() {
            if t.get_type().is(&py.get_type::<TimerHandle>()) {
                let mut pool = self.timer_pool.borrow_mut(py)?;
                if pool.len() < POOL_SIZE {
                    pool.push(t.clone().unbind());
                }
            }
        }
        Ok(())
    }

    /// `run_entry` with the x-ray on: the entry's tag, times and subject go to the recorder.
    #[inline(never)]
    fn run_entry_traced(&self, py: Python<'_>, entry: Ready) -> PyResult<()> {
        if self.trace.is_live() {
            return self.run_entry_live(py, entry);
        }
        let (seq, origin, cause, subject) = match &entry {
            Ready::Handle(h) => {
                let handle = h.get();
                if handle.is_cancelled() {
                    return Ok(());
                }
                let tag = &handle.tag;
                if tag.seq.load(Relaxed) == 0 {
                    // scheduled before tracing started
                    self.trace.tag(tag, trace::ORIGIN_SOON);
                }
                let callback = handle.cb.borrow(py)?.callback.as_ref().map_or_else(|| py.None(), |c| c.clone_ref(py));
                (tag.seq.load(Relaxed), tag.origin.load(Relaxed), tag.cause.load(Relaxed), callback)
            }
            Ready::Stream(t, _) => (self.trace.fresh(), trace::ORIGIN_STREAM, 0, t.clone_ref(py).into_any()),
            Ready::Datagram(t, _) => (self.trace.fresh(), trace::ORIGIN_DATAGRAM, 0, t.clone_ref(py).into_any()),
        };
        let t0 = self.trace.begin(py, seq);
        let result = self.run_entry(py, entry);
        let (t1, cpu) = self.trace.end(py, seq, t0);
        let report = match self.trace.entry_callback(py) {
            Some(on_entry) => on_entry.bind(py).call1((seq, origin, cause, subject, t0, t1, cpu)).map(drop),
            None => Ok(()),
        };
        self.end_traced(py, report, result, t1 - t0)
    }

    /// How a traced entry ends: a failure to report it is printed (unless it must stop the
    /// loop), and in debug mode a slow callback is logged as asyncio logs it.
    fn end_traced(&self, py: Python<'_>, report: PyResult<()>, result: PyResult<Option<Py<PyAny>>>, dt: f64) -> PyResult<()> {
        if let Err(e) = report {
            if crate::transports::is_fatal_to_loop(py, &e) {
                return Err(e);
            }
            e.print(py);
        }
        if self.is_debug() && dt >= f64::from_bits(self.slow_callback_duration.load(Relaxed)) {
            if let Ok(Some(what)) = &result {
                helpers(py)?.call_method1(intern!(py, "log_slow_callback"), (what, dt))?;
            }
        }
        result.map(drop)
    }

    /// `run_entry` in the x-ray's live mode: native counters only (trace.rs).
    #[inline(never)]
    fn run_entry_live(&self, py: Python<'_>, entry: Ready) -> PyResult<()> {
        let (seq, due, callback) = match &entry {
            Ready::Handle(h) => {
                let handle = h.get();
                let tag = &handle.tag;
                if tag.seq.load(Relaxed) == 0 {
                    self.trace.tag(tag, trace::ORIGIN_SOON);
                }
                let callback = handle.cb.borrow(py)?.callback.as_ref().map(|c| c.clone_ref(py).into_bound(py));
                (tag.seq.load(Relaxed), tag.due_ns.load(Relaxed), callback)
            }
            Ready::Stream(..) | Ready::Datagram(..) => (self.trace.fresh(), 0, None),
        };
        let t0 = self.trace.begin(py, seq);
        let result = self.run_entry(py, entry);
        let (t1, cpu) = self.trace.end(py, seq, t0);
        let report = self.trace.account(py, seq, due, callback.as_ref(), t0, t1, cpu);
        self.end_traced(py, report, result, t1 - t0)
    }

    /// Runs one ready entry; returns what ran (for the slow-callback log), if anything did.
    /// Objects leave the ready queue as `Bound`: releasing those is a plain decref
    /// (a `Py` drop would consult a thread-local first), once per callback.
    #[inline]
    fn run_entry(&self, py: Python<'_>, entry: Ready) -> PyResult<Option<Py<PyAny>>> {
        let debug = self.is_debug();
        match entry {
            Ready::Handle(h) => {
                let hb = h.into_bound(py);
                let handle = hb.get();
                if handle.is_cancelled() {
                    if handle.oneshot.load(Relaxed) && !debug {
                        self.recycle(py, hb)?;
                    }
                    return Ok(None);
                }
                if handle.waits.load(Relaxed) {
                    let _running = crate::threadsafe::Running::mark(handle);
                    run_handle(py, &hb)?;
                } else {
                    run_handle(py, &hb)?;
                }
                if debug {
                    return Ok(Some(hb.into_any().unbind()));
                }
                if handle.oneshot.load(Relaxed) {
                    self.recycle(py, hb)?;
                }
                Ok(None)
            }
            Ready::Stream(t, bits) => {
                let tb = t.into_bound(py);
                StreamTransport::on_ready(&tb, bits)?;
                Ok(debug.then(|| tb.into_any().unbind()))
            }
            Ready::Datagram(t, bits) => {
                let tb = t.into_bound(py);
                DatagramTransport::on_ready(&tb, bits)?;
                Ok(debug.then(|| tb.into_any().unbind()))
            }
        }
    }

    fn poll_io(&self, py: Python<'_>, timeout: Option<Duration>) -> PyResult<()> {
        let mut core_ref = self.poll.borrow_mut(py)?;
        let Some(core) = core_ref.as_mut() else { return Err(closed_error()) };
        let blocking = timeout != Some(Duration::ZERO);
        if blocking {
            self.parked.store(true, SeqCst);
            let res = py.detach(|| core.wait(timeout));
            self.parked.store(false, SeqCst);
            self.wake_sent.store(false, SeqCst);
            res.map_err(os_error)?;
        } else {
            // Nothing registered and nothing to wait for: skip the syscall. (The waker only
            // matters while parked; signals interrupt a blocking wait by themselves, and
            // otherwise reach Python code through the interpreter's own checks.)
            if self.poller.borrow(py)?.as_ref().is_none_or(Poller::is_empty) {
                return Ok(());
            }
            core.wait(timeout).map_err(os_error)?;
        }
        // Queue the events before anything can raise: edge-triggered events are not repeated.
        {
            let mut poller = self.poller.borrow_mut(py)?;
            if let Some(poller) = poller.as_mut() {
                let mut ready = self.ready.borrow_mut(py)?;
                poller.dispatch(py, core.events(), &mut ready);
            }
        }
        drop(core_ref);
        // A signal (Ctrl-C) that interrupted the wait runs its Python handler now.
        if blocking {
            py.check_signals()?;
        }
        Ok(())
    }

    fn watch_fd(
        &self,
        slf: &Bound<'_, Self>,
        fd: &Bound<'_, PyAny>,
        dir: Direction,
        callback: Bound<'_, PyAny>,
        args: Bound<'_, PyTuple>,
    ) -> PyResult<Py<Handle>> {
        let py = slf.py();
        let fileobj = fd;
        let fd = fileobj_to_fd(fileobj)?;
        self.check_closed()?;
        let method = if dir == Direction::Read { "add_reader" } else { "add_writer" };
        self.check_callback(slf, &callback, method)?;
        let handle = self.make_handle(slf, callback, Args::from_tuple(args), None)?;
        if self.trace.is_on() {
            self.trace.tag(&handle.tag, trace::ORIGIN_FD);
        }
        let handle = untracked(Py::new(py, handle)?);
        let old = {
            let mut poller = self.poller.borrow_mut(py)?;
            let poller = poller.as_mut().ok_or_else(closed_error)?;
            let obj = (!fileobj.is_instance_of::<PyInt>()).then(|| fileobj.clone().unbind());
            poller.add_fd(py, fd, obj, dir, handle.clone_ref(py))
        };
        let (old, _released_obj) = old.map_err(|e| fd_error(py, fd, e))?;
        if let Some(old) = old {
            Handle::cancel(old.bind(py))?;
        }
        Ok(handle)
    }

    fn unwatch_fd(&self, py: Python<'_>, fileobj: &Bound<'_, PyAny>, dir: Direction) -> PyResult<bool> {
        // As asyncio: an object without fileno() is refused even on a closed loop; any
        // number (a closed socket's -1 too) gets False there.
        let raw = fileobj_to_raw_fd(fileobj)?;
        if self.closed.load(Relaxed) {
            return Ok(false);
        }
        let fd = match checked_fd(raw) {
            Ok(fd) => fd,
            // A closed socket answers fileno() with -1: as selectors do, look for the
            // registration of the object itself before giving up.
            Err(e) => {
                let found = self.poller.borrow(py)?.as_ref().and_then(|p| p.fd_of_fileobj(fileobj));
                found.ok_or(e)?
            }
        };
        let old = {
            let mut poller = self.poller.borrow_mut(py)?;
            match poller.as_mut() {
                Some(p) => p.remove_fd(py, fd, dir),
                None => Ok((None, None)),
            }
        };
        let (old, _released_obj) = old.map_err(|e| fd_error(py, fd, e))?;
        match old {
            Some(h) => {
                Handle::cancel(h.bind(py))?;
                Ok(true)
            }
            None => Ok(false),
        }
    }
}

#[pymethods]
impl CoreLoop {
    #[new]
    #[pyo3(signature = (*_args, **_kwargs))]
    fn py_new(py: Python<'_>, _args: &Bound<'_, PyTuple>, _kwargs: Option<&Bound<'_, PyDict>>) -> PyResult<Self> {
        let (core, poller, waker) = poller::new().map_err(os_error)?;
        Ok(CoreLoop {
            ready: GilCell::new(VecDeque::new()),
            read_buf: GilCell::new(Vec::new()),
            handle_pool: GilCell::new(Vec::with_capacity(POOL_SIZE)),
            timer_pool: GilCell::new(Vec::with_capacity(POOL_SIZE)),
            timers: GilCell::new(TimerHeap::new()),
            poller: GilCell::new(Some(poller)),
            poll: GilCell::new(Some(core)),
            waker: GilCell::new(Some(waker)),
            parked: AtomicBool::new(false),
            wake_sent: AtomicBool::new(false),
            stopping: AtomicBool::new(false),
            closed: AtomicBool::new(false),
            debug: AtomicBool::new(false),
            thread_id: AtomicU64::new(0),
            slow_callback_duration: AtomicU64::new(0.1f64.to_bits()),
            clock_resolution: clock::resolution(),
            trace: Trace::default(),
            task_factory: GilCell::new(None),
            xray: GilCell::new(None),
            threadsafe_waits: AtomicBool::new(py.version_info() >= (3, 14)),
        })
    }

    #[getter(_threadsafe_cancel_waits)]
    fn threadsafe_waits_attr(&self) -> bool {
        self.threadsafe_waits.load(Relaxed)
    }

    #[setter(_threadsafe_cancel_waits)]
    fn set_threadsafe_waits_attr(&self, value: bool) {
        self.threadsafe_waits.store(value, Relaxed);
    }

    /// The loop's clock (CLOCK_MONOTONIC, as `time.monotonic()`).
    fn time(&self) -> f64 {
        clock::monotonic()
    }

    /// Queue an existing handle (asyncio's `_add_callback`), e.g. a signal handler's.
    fn _add_callback(&self, py: Python<'_>, handle: Py<Handle>) -> PyResult<()> {
        self.check_closed()?;
        self.push_ready(py, Ready::Handle(handle))
    }

    fn get_debug(&self) -> bool {
        self.is_debug()
    }

    fn _set_debug_flag(&self, enabled: bool) {
        self.debug.store(enabled, Relaxed);
    }

    #[getter(slow_callback_duration)]
    fn slow_callback_duration_attr(&self) -> f64 {
        f64::from_bits(self.slow_callback_duration.load(Relaxed))
    }

    #[setter(slow_callback_duration)]
    fn set_slow_callback_duration_attr(&self, value: f64) {
        self.slow_callback_duration.store(value.to_bits(), Relaxed);
    }

    fn is_running(&self) -> bool {
        self.thread_id.load(Relaxed) != 0
    }

    fn is_closed(&self) -> bool {
        self.closed.load(Relaxed)
    }

    /// Stop after the current iteration (asyncio: callbacks already queued still run).
    fn stop(&self) {
        self.stopping.store(true, Relaxed);
    }

    #[getter(_task_factory)]
    fn task_factory_attr(&self, py: Python<'_>) -> PyResult<Option<Py<PyAny>>> {
        Ok(self.task_factory.borrow(py)?.as_ref().map(|f| f.clone_ref(py)))
    }

    #[setter(_task_factory)]
    fn set_task_factory_attr(&self, py: Python<'_>, value: Option<Py<PyAny>>) -> PyResult<()> {
        let old = std::mem::replace(&mut *self.task_factory.borrow_mut(py)?, value);
        drop(old);
        Ok(())
    }

    #[getter(_xray)]
    fn xray_attr(&self, py: Python<'_>) -> PyResult<Option<Py<PyAny>>> {
        Ok(self.xray.borrow(py)?.as_ref().map(|f| f.clone_ref(py)))
    }

    #[setter(_xray)]
    fn set_xray_attr(&self, py: Python<'_>, value: Option<Py<PyAny>>) -> PyResult<()> {
        let old = std::mem::replace(&mut *self.xray.borrow_mut(py)?, value);
        drop(old);
        Ok(())
    }

    #[getter(_stopping)]
    fn stopping_attr(&self) -> bool {
        self.stopping.load(Relaxed)
    }

    #[setter(_stopping)]
    fn set_stopping_attr(&self, value: bool) {
        self.stopping.store(value, Relaxed);
    }

    #[getter(_thread_id)]
    fn thread_id_attr(&self) -> Option<u64> {
        match self.thread_id.load(Relaxed) {
            0 => None,
            t => Some(t),
        }
    }

    #[setter(_thread_id)]
    fn set_thread_id_attr(&self, value: Option<u64>) {
        self.thread_id.store(value.unwrap_or(0), Relaxed);
    }

    #[getter(_closed)]
    fn closed_attr(&self) -> bool {
        self.closed.load(Relaxed)
    }

    #[getter(_clock_resolution)]
    fn clock_resolution_attr(&self) -> f64 {
        self.clock_resolution
    }

    /// Runs iterations until `stop()`; the Python `run_forever` wraps it with the
    /// once-per-run setup (running-loop registration, asyncgen hooks).
    fn _run_forever_native(slf: &Bound<'_, Self>) -> PyResult<()> {
        let me = slf.get();
        loop {
            me.run_once(slf)?;
            if me.stopping.load(Relaxed) {
                return Ok(());
            }
        }
    }

    fn _run_once(slf: &Bound<'_, Self>) -> PyResult<()> {
        slf.get().run_once(slf)
    }

    /// Releases everything the loop holds; idempotent. The Python `close` adds the checks
    /// and the executor shutdown.
    fn _close_native(&self, py: Python<'_>) -> PyResult<()> {
        if self.closed.swap(true, Relaxed) {
            return Ok(());
        }
        self.trace.stop(py)?;
        let ready = std::mem::take(&mut *self.ready.borrow_mut(py)?);
        let timers = self.timers.borrow_mut(py)?.drain();
        let sources = self.poller.borrow_mut(py)?.take().map(|mut p| p.drain());
        let core = self.poll.borrow_mut(py)?.take();
        let waker = self.waker.borrow_mut(py)?.take();
        let pools = (std::mem::take(&mut *self.handle_pool.borrow_mut(py)?), std::mem::take(&mut *self.timer_pool.borrow_mut(py)?));
        drop((ready, timers, sources, core, waker, pools));
        Ok(())
    }

    #[pyo3(signature = (fd, callback, *args))]
    fn add_reader(
        slf: &Bound<'_, Self>,
        fd: &Bound<'_, PyAny>,
        callback: Bound<'_, PyAny>,
        args: Bound<'_, PyTuple>,
    ) -> PyResult<()> {
        slf.get().watch_fd(slf, fd, Direction::Read, callback, args).map(drop)
    }

    #[pyo3(signature = (fd, callback, *args))]
    fn add_writer(
        slf: &Bound<'_, Self>,
        fd: &Bound<'_, PyAny>,
        callback: Bound<'_, PyAny>,
        args: Bound<'_, PyTuple>,
    ) -> PyResult<()> {
        slf.get().watch_fd(slf, fd, Direction::Write, callback, args).map(drop)
    }

    /// asyncio's private `_add_reader`: like add_reader, returning the Handle.
    #[pyo3(signature = (fd, callback, *args))]
    fn _add_reader(
        slf: &Bound<'_, Self>,
        fd: &Bound<'_, PyAny>,
        callback: Bound<'_, PyAny>,
        args: Bound<'_, PyTuple>,
    ) -> PyResult<Py<Handle>> {
        slf.get().watch_fd(slf, fd, Direction::Read, callback, args)
    }

    #[pyo3(signature = (fd, callback, *args))]
    fn _add_writer(
        slf: &Bound<'_, Self>,
        fd: &Bound<'_, PyAny>,
        callback: Bound<'_, PyAny>,
        args: Bound<'_, PyTuple>,
    ) -> PyResult<Py<Handle>> {
        slf.get().watch_fd(slf, fd, Direction::Write, callback, args)
    }

    fn _remove_reader(&self, py: Python<'_>, fd: &Bound<'_, PyAny>) -> PyResult<bool> {
        self.unwatch_fd(py, fd, Direction::Read)
    }

    fn _remove_writer(&self, py: Python<'_>, fd: &Bound<'_, PyAny>) -> PyResult<bool> {
        self.unwatch_fd(py, fd, Direction::Write)
    }

    /// The transport owning `fd`, or None (asyncio's `_transports` lookup).
    fn _transport_for_fd(&self, py: Python<'_>, fd: &Bound<'_, PyAny>) -> PyResult<Option<Py<PyAny>>> {
        let fd = fileobj_to_fd(fd)?;
        Ok(self.poller.borrow(py)?.as_ref().and_then(|p| p.transport_at(py, fd)))
    }

    fn remove_reader(&self, py: Python<'_>, fd: &Bound<'_, PyAny>) -> PyResult<bool> {
        self.unwatch_fd(py, fd, Direction::Read)
    }

    fn remove_writer(&self, py: Python<'_>, fd: &Bound<'_, PyAny>) -> PyResult<bool> {
        self.unwatch_fd(py, fd, Direction::Write)
    }

    /// Attaches an x-ray recorder (ferroloop.xray): every entry is reported to it; with a
    /// threshold (seconds), a watchdog samples the stack of entries that block longer.
    #[pyo3(signature = (recorder, blocking_threshold=None))]
    fn _xray_start(&self, py: Python<'_>, recorder: Py<PyAny>, blocking_threshold: Option<f64>) -> PyResult<()> {
        self.trace.start(py, recorder, blocking_threshold)
    }

    fn _xray_stop(&self, py: Python<'_>) -> PyResult<()> {
        self.trace.stop(py)
    }

    /// The x-ray's live mode (ferroloop.xray.serve): native counters, and `hub` hears of
    /// entries that hold the loop longer than `blocking_threshold` (during and after).
    fn _xray_start_live(&self, py: Python<'_>, hub: Py<PyAny>, blocking_threshold: f64) -> PyResult<()> {
        self.trace.start_live(py, hub, blocking_threshold)
    }

    /// Live mode's counters (None when it is off).
    fn _xray_live_stats<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyDict>>> {
        self.trace.live_stats(py)
    }

    /// Sizes of the loop's queues, for tests and the doctor: ready callbacks, timers in the
    /// heap (cancelled ones included until pruned), registered IO sources.
    fn _ferro_stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let d = PyDict::new(py);
        d.set_item("ready", self.ready.borrow(py)?.len())?;
        d.set_item("timers", self.timers.borrow(py)?.len())?;
        d.set_item("sources", self.poller.borrow(py)?.as_ref().map_or(0, |p| p.len()))?;
        let mut transports = 0usize;
        if let Some(p) = self.poller.borrow(py)?.as_ref() {
            p.for_each_transport(|_| transports += 1);
        }
        d.set_item("transports", transports)?;
        d.set_item("pooled_handles", self.handle_pool.borrow(py)?.len())?;
        d.set_item("pooled_timers", self.timer_pool.borrow(py)?.len())?;
        Ok(d)
    }

    /// When a run ends (`Loop._run_forever_cleanup`): the handles the loop holds that
    /// someone else holds too (a TimerHandle kept by the frame of `asyncio.sleep`) become
    /// ordinary tracked objects, so the collector sees both holders and a cycle through
    /// them can be collected (see `handles::visit_held`). Once per run, never per
    /// callback; they stay tracked, as asyncio's handles are.
    fn _gc_expose_shared(&self) -> usize {
        let mut shared: Vec<*mut ffi::PyObject> = Vec::new();
        let mut note = |p: *mut ffi::PyObject| {
            // SAFETY: reading the GC flag and reference count of a live object the loop holds.
            if unsafe { ffi::PyObject_GC_IsTracked(p) == 0 && ffi::Py_REFCNT(p) > 1 } {
                shared.push(p);
            }
        };
        // Nothing is borrowed when a run ends; if something were, it is skipped (the loop
        // then only stays alive longer).
        if let Some(ready) = self.ready.try_borrow_for_gc() {
            for entry in ready.iter() {
                if let Ready::Handle(h) = entry {
                    note(h.as_ptr());
                }
            }
        }
        if let Some(timers) = self.timers.try_borrow_for_gc() {
            timers.iter().for_each(|t| note(t.as_ptr()));
        }
        if let Some(poller) = self.poller.try_borrow_for_gc() {
            if let Some(p) = poller.as_ref() {
                p.for_each_handle(|h| note(h.as_ptr()));
            }
        }
        shared.sort_unstable();
        shared.dedup();
        for &p in &shared {
            // SAFETY: a live, untracked object of a GC type with a traverse (Handle's);
            // tracking it once (dedup above) is what PyObject_GC_Track requires. The
            // borrows above have ended; nothing here runs Python code.
            unsafe { ffi::PyObject_GC_Track(p.cast()) };
        }
        shared.len()
    }

    /// Everything the loop holds: transports, and handles as `handles::visit_held` says
    /// (walked through while the loop is their only holder). Runs only when the collector
    /// examines the loop's generation; nothing of it is on the per-callback path.
    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        // SAFETY: a token for reading pyclass fields; the collector holds the GIL and
        // nothing here calls into Python.
        let py = unsafe { Python::assume_attached() };
        let timer = |t: &Py<TimerHandle>| visit_held(t, TimerHandle::handle(t.bind(py)), &visit);
        if let Some(ready) = self.ready.try_borrow_for_gc() {
            for entry in ready.iter() {
                match entry {
                    Ready::Handle(h) => visit_held(h, h.get(), &visit)?,
                    other => other.visit(&visit)?,
                }
            }
        }
        if let Some(timers) = self.timers.try_borrow_for_gc() {
            timers.iter().try_for_each(timer)?;
        }
        if let Some(pool) = self.handle_pool.try_borrow_for_gc() {
            pool.iter().try_for_each(|h| visit_held(h, h.get(), &visit))?;
        }
        if let Some(pool) = self.timer_pool.try_borrow_for_gc() {
            pool.iter().try_for_each(timer)?;
        }
        if let Some(poller) = self.poller.try_borrow_for_gc() {
            if let Some(p) = poller.as_ref() {
                let mut res = Ok(());
                p.for_each_transport(|o| {
                    if res.is_ok() {
                        res = visit.call(o);
                    }
                });
                p.for_each_handle(|h| {
                    if res.is_ok() {
                        res = visit_held(h, h.get(), &visit);
                    }
                });
                res?;
            }
        }
        if let Some(f) = self.task_factory.try_borrow_for_gc() {
            visit.call(&*f)?;
        }
        if let Some(x) = self.xray.try_borrow_for_gc() {
            visit.call(&*x)?;
        }
        Ok(())
    }

    fn __clear__(&self) {
        Python::attach(|py| {
            let ready = self.ready.borrow_mut(py).ok().map(|mut r| std::mem::take(&mut *r));
            let timers = self.timers.borrow_mut(py).ok().map(|mut t| t.drain());
            let sources = self.poller.borrow_mut(py).ok().and_then(|mut p| p.as_mut().map(Poller::drain));
            let pools = (
                self.handle_pool.borrow_mut(py).ok().map(|mut p| std::mem::take(&mut *p)),
                self.timer_pool.borrow_mut(py).ok().map(|mut p| std::mem::take(&mut *p)),
            );
            let held = (
                self.task_factory.borrow_mut(py).ok().and_then(|mut f| f.take()),
                self.xray.borrow_mut(py).ok().and_then(|mut x| x.take()),
            );
            drop((ready, timers, sources, pools, held));
        });
    }
}
