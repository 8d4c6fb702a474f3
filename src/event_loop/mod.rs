//! `CoreLoop`: the native half of `ferroloop.Loop` — the timer heap, the poll and the
//! run-once step, over `LoopBase` (loop_base.rs: the ready queue and what the transports
//! see). The Python class `ferroloop.Loop` derives from it and from
//! `asyncio.AbstractEventLoop`, and adds what runs once per loop or per connection.
//!
//! One iteration (`run_once`), as asyncio's `BaseEventLoop._run_once`:
//!  1. drop cancelled timers (compact the heap when they are the majority);
//!  2. timeout: 0 if callbacks are ready or the loop is stopping, else until the next timer;
//!  3. poll (the GIL is released only when the wait can block), queue IO callbacks;
//!  4. queue the timers now due;
//!  5. run exactly the callbacks queued at this point — those they schedule run next time.
//!
//! By concept: this file holds the class (its state, its Python surface, what the garbage
//! collector sees); `schedule.rs` call_soon/call_later/call_at and the handle pools;
//! `run.rs` the run-once step and its one observing hook (x-ray, debug timing); and
//! `fd_watch.rs` add_reader/add_writer. Each adds methods to `CoreLoop`.

mod fd_watch;
mod run;
mod schedule;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};

use mio::Waker;
use pyo3::ffi;
use pyo3::gc::PyVisit;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyTuple};
use pyo3::PyTraverseError;

use crate::clock;
use crate::gil_cell::GilCell;
use crate::handles::{visit_held, Handle, TimerHandle};
use crate::loop_base::LoopBase;
use crate::os::os_error;
use crate::poller::{self, Direction, PollCore};
use crate::ready::Ready;
use crate::timers::TimerHeap;

/// Handles kept for reuse, per kind.
const POOL_SIZE: usize = 512;

#[pyclass(module = "ferroloop._ferroloop", extends = LoopBase, subclass, frozen)]
pub struct CoreLoop {
    /// Handles that ran and that nobody else held, kept for the next call_soon/call_later
    /// to fill again: no allocation, no deallocation per callback.
    handle_pool: GilCell<Vec<Py<Handle>>>,
    timer_pool: GilCell<Vec<Py<TimerHandle>>>,
    timers: GilCell<TimerHeap>,
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
    /// Ident of the thread running the loop, 0 when it is not running.
    thread_id: AtomicU64,
    slow_callback_duration: AtomicU64,
    clock_resolution: f64,
    /// `set_task_factory`'s factory and the attached x-ray recorder (Python objects the
    /// native create_task must see without a dict lookup). The recorder is the one the
    /// x-ray's native tracing reports to (`_xray_start` is given the same object).
    task_factory: GilCell<Option<Py<PyAny>>>,
    xray: GilCell<Option<Py<PyAny>>>,
    /// Whether call_soon_threadsafe's handles have 3.14's waiting cancel (threadsafe.rs):
    /// set from the running Python's version; tests flip it to hold the contract.
    threadsafe_waits: AtomicBool,
}

impl CoreLoop {
    /// The loop's base: the ready queue, the poller, the flags (a fixed offset, no lookup).
    #[inline]
    pub(crate) fn base<'a>(slf: &'a Bound<'_, Self>) -> &'a LoopBase {
        slf.as_super().get()
    }
}

#[pymethods]
impl CoreLoop {
    #[new]
    #[pyo3(signature = (*_args, **_kwargs))]
    fn py_new(
        py: Python<'_>,
        _args: &Bound<'_, PyTuple>,
        _kwargs: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<PyClassInitializer<Self>> {
        let (core, poller, waker) = poller::new().map_err(|e| os_error(&e))?;
        Ok(PyClassInitializer::from(LoopBase::new(poller)).add_subclass(CoreLoop {
            handle_pool: GilCell::new(Vec::with_capacity(POOL_SIZE)),
            timer_pool: GilCell::new(Vec::with_capacity(POOL_SIZE)),
            timers: GilCell::new(TimerHeap::new()),
            poll: GilCell::new(Some(core)),
            waker: GilCell::new(Some(waker)),
            parked: AtomicBool::new(false),
            wake_sent: AtomicBool::new(false),
            stopping: AtomicBool::new(false),
            thread_id: AtomicU64::new(0),
            slow_callback_duration: AtomicU64::new(0.1f64.to_bits()),
            clock_resolution: clock::resolution(),
            task_factory: GilCell::new(None),
            xray: GilCell::new(None),
            threadsafe_waits: AtomicBool::new(py.version_info() >= (3, 14)),
        }))
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
    fn _add_callback(slf: &Bound<'_, Self>, handle: Py<Handle>) -> PyResult<()> {
        let base = Self::base(slf);
        base.check_open()?;
        base.push_ready(slf.py(), Ready::Handle(handle))
    }

    fn _set_debug_flag(slf: &Bound<'_, Self>, enabled: bool) {
        Self::base(slf).debug.store(enabled, Relaxed);
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

    fn is_closed(slf: &Bound<'_, Self>) -> bool {
        Self::base(slf).closed.load(Relaxed)
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
    fn closed_attr(slf: &Bound<'_, Self>) -> bool {
        Self::base(slf).closed.load(Relaxed)
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
    fn _close_native(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let (me, base) = (slf.get(), Self::base(slf));
        if base.closed.swap(true, Relaxed) {
            return Ok(());
        }
        base.trace.stop(py)?;
        let ready = std::mem::take(&mut *base.ready.borrow_mut(py)?);
        let timers = me.timers.borrow_mut(py)?.drain();
        let sources = base.poller.borrow_mut(py)?.take().map(|mut p| p.drain());
        let core = me.poll.borrow_mut(py)?.take();
        let waker = me.waker.borrow_mut(py)?.take();
        let pools =
            (std::mem::take(&mut *me.handle_pool.borrow_mut(py)?), std::mem::take(&mut *me.timer_pool.borrow_mut(py)?));
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

    fn _remove_reader(slf: &Bound<'_, Self>, fd: &Bound<'_, PyAny>) -> PyResult<bool> {
        Self::unwatch_fd(Self::base(slf), slf.py(), fd, Direction::Read)
    }

    fn _remove_writer(slf: &Bound<'_, Self>, fd: &Bound<'_, PyAny>) -> PyResult<bool> {
        Self::unwatch_fd(Self::base(slf), slf.py(), fd, Direction::Write)
    }

    /// The transport owning `fd`, or None (asyncio's `_transports` lookup).
    fn _transport_for_fd(slf: &Bound<'_, Self>, fd: &Bound<'_, PyAny>) -> PyResult<Option<Py<PyAny>>> {
        Self::transport_for_fd(Self::base(slf), slf.py(), fd)
    }

    fn remove_reader(slf: &Bound<'_, Self>, fd: &Bound<'_, PyAny>) -> PyResult<bool> {
        Self::unwatch_fd(Self::base(slf), slf.py(), fd, Direction::Read)
    }

    fn remove_writer(slf: &Bound<'_, Self>, fd: &Bound<'_, PyAny>) -> PyResult<bool> {
        Self::unwatch_fd(Self::base(slf), slf.py(), fd, Direction::Write)
    }

    /// Attaches an x-ray recorder (ferroloop.xray): every entry is reported to it; with a
    /// threshold (seconds), a watchdog samples the stack of entries that block longer.
    #[pyo3(signature = (recorder, blocking_threshold=None))]
    fn _xray_start(slf: &Bound<'_, Self>, recorder: Py<PyAny>, blocking_threshold: Option<f64>) -> PyResult<()> {
        Self::base(slf).trace.start(slf.py(), recorder, blocking_threshold)
    }

    fn _xray_stop(slf: &Bound<'_, Self>) -> PyResult<()> {
        Self::base(slf).trace.stop(slf.py())
    }

    /// The x-ray's live mode (ferroloop.xray.serve): native counters, and `hub` hears of
    /// entries that hold the loop longer than `blocking_threshold` (during and after).
    fn _xray_start_live(slf: &Bound<'_, Self>, hub: Py<PyAny>, blocking_threshold: f64) -> PyResult<()> {
        Self::base(slf).trace.start_live(slf.py(), hub, blocking_threshold)
    }

    /// Live mode's counters (None when it is off).
    fn _xray_live_stats<'py>(slf: &Bound<'py, Self>) -> PyResult<Option<Bound<'py, PyDict>>> {
        Self::base(slf).trace.live_stats(slf.py())
    }

    /// Sizes of the loop's queues, for tests and the doctor: ready callbacks, timers in the
    /// heap (cancelled ones included until pruned), registered IO sources.
    fn _ferro_stats<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyDict>> {
        let py = slf.py();
        let (me, base) = (slf.get(), Self::base(slf));
        let d = PyDict::new(py);
        d.set_item("ready", base.ready.borrow(py)?.len())?;
        d.set_item("timers", me.timers.borrow(py)?.len())?;
        d.set_item("sources", base.poller.borrow(py)?.as_ref().map_or(0, |p| p.len()))?;
        let mut transports = 0usize;
        if let Some(p) = base.poller.borrow(py)?.as_ref() {
            p.for_each_transport(|_| transports += 1);
        }
        d.set_item("transports", transports)?;
        d.set_item("pooled_handles", me.handle_pool.borrow(py)?.len())?;
        d.set_item("pooled_timers", me.timer_pool.borrow(py)?.len())?;
        Ok(d)
    }

    /// When a run ends (`Loop._run_forever_cleanup`): the handles the loop holds that
    /// someone else holds too (a TimerHandle kept by the frame of `asyncio.sleep`) become
    /// ordinary tracked objects, so the collector sees both holders and a cycle through
    /// them can be collected (see `handles::visit_held`). Once per run, never per
    /// callback; they stay tracked, as asyncio's handles are.
    fn _gc_expose_shared(slf: &Bound<'_, Self>) -> usize {
        let (me, base) = (slf.get(), Self::base(slf));
        let mut shared: Vec<*mut ffi::PyObject> = Vec::new();
        let mut note = |p: *mut ffi::PyObject| {
            // SAFETY: reading the GC flag and reference count of a live object the loop holds.
            if unsafe { ffi::PyObject_GC_IsTracked(p) == 0 && ffi::Py_REFCNT(p) > 1 } {
                shared.push(p);
            }
        };
        // Nothing is borrowed when a run ends; if something were, it is skipped (the loop
        // then only stays alive longer).
        if let Some(ready) = base.ready.try_borrow_for_gc() {
            for entry in ready.iter() {
                if let Ready::Handle(h) = entry {
                    note(h.as_ptr());
                }
            }
        }
        if let Some(timers) = me.timers.try_borrow_for_gc() {
            timers.iter().for_each(|t| note(t.as_ptr()));
        }
        if let Some(poller) = base.poller.try_borrow_for_gc() {
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

    /// What the loop holds beyond its base (whose own traverse PyO3 runs first): timers
    /// and pooled handles as `handles::visit_held` says (walked through while the loop is
    /// their only holder), the task factory and the recorder. Runs only when the collector
    /// examines the loop's generation; nothing of it is on the per-callback path.
    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        // SAFETY: a token for reading pyclass fields; the collector holds the GIL and
        // nothing here calls into Python.
        let py = unsafe { Python::assume_attached() };
        let timer = |t: &Py<TimerHandle>| visit_held(t, TimerHandle::handle(t.bind(py)), &visit);
        if let Some(timers) = self.timers.try_borrow_for_gc() {
            timers.iter().try_for_each(timer)?;
        }
        if let Some(pool) = self.handle_pool.try_borrow_for_gc() {
            pool.iter().try_for_each(|h| visit_held(h, h.get(), &visit))?;
        }
        if let Some(pool) = self.timer_pool.try_borrow_for_gc() {
            pool.iter().try_for_each(timer)?;
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
            let timers = self.timers.borrow_mut(py).ok().map(|mut t| t.drain());
            let pools = (
                self.handle_pool.borrow_mut(py).ok().map(|mut p| std::mem::take(&mut *p)),
                self.timer_pool.borrow_mut(py).ok().map(|mut p| std::mem::take(&mut *p)),
            );
            let held = (
                self.task_factory.borrow_mut(py).ok().and_then(|mut f| f.take()),
                self.xray.borrow_mut(py).ok().and_then(|mut x| x.take()),
            );
            drop((timers, pools, held));
        });
    }
}
