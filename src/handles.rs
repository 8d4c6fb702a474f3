//! `Handle` and `TimerHandle`: a callback, its arguments and the `contextvars.Context` it
//! runs in — asyncio's `events.Handle` / `events.TimerHandle`, natively.
//!
//! The ready queue holds these objects; running one enters its context through the C API
//! (`PyContext_Enter`/`Exit`, cheaper than `Context.run`) and vectorcalls the callback.
//! What happens once per error or per repr (formatting, logging) is delegated to
//! `ferroloop._handles`, the Python mirror of this file.
//!
//! Python 3.14's `_ThreadSafeHandle` semantics for the handles `call_soon_threadsafe`
//! returns live here too (`Running`, `wait_while_running`): `cancel()` and `cancelled()`
//! called from another thread wait while the callback is running (asyncio 3.14 holds an
//! `RLock` across the run and in both methods; on the loop's own thread, inside the
//! callback, they do not wait, as with an RLock). Only where the running Python does it
//! (`CoreLoop::threadsafe_waits`, 3.14+): 3.11-3.13's handles never wait, as asyncio's
//! there do not. The mark costs two atomic stores and an uncontended lock per such
//! callback; a waiting thread sleeps on a condition variable with the GIL released, so
//! the callback it waits for can go on.

use std::mem::ManuallyDrop;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed, Ordering::SeqCst};
use std::sync::{Arc, Condvar, Mutex};

use pyo3::exceptions::{PyKeyboardInterrupt, PySystemExit};
use pyo3::ffi;
use pyo3::gc::PyVisit;
use pyo3::prelude::*;
use pyo3::pyclass::CompareOp;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyModule, PyTuple};
use pyo3::PyTraverseError;

use crate::gil_cell::GilCell;

/// A callback's positional arguments, inline up to two — a task step takes none, a
/// future's done-callback takes the future — so scheduling them allocates no tuple.
pub(crate) enum Args {
    Zero,
    One(Py<PyAny>),
    Two(Py<PyAny>, Py<PyAny>),
    Many(Py<PyTuple>),
}

impl Args {
    /// From borrowed argument pointers (a vectorcall's argument array).
    ///
    /// # Safety
    /// Every pointer must be a live object for the duration of the call.
    pub(crate) unsafe fn from_ptrs(py: Python<'_>, items: &[*mut ffi::PyObject]) -> PyResult<Args> {
        // SAFETY: the caller's contract: every pointer is a live object.
        let borrow = |p: *mut ffi::PyObject| unsafe { Bound::from_borrowed_ptr(py, p) };
        Ok(match items {
            [] => Args::Zero,
            [a] => Args::One(borrow(*a).unbind()),
            [a, b] => Args::Two(borrow(*a).unbind(), borrow(*b).unbind()),
            many => Args::Many(PyTuple::new(py, many.iter().map(|p| borrow(*p)))?.unbind()),
        })
    }

    pub(crate) fn from_tuple(t: Bound<'_, PyTuple>) -> Args {
        match t.len() {
            0 => Args::Zero,
            1 => Args::One(t.get_item(0).expect("len 1").unbind()),
            2 => Args::Two(t.get_item(0).expect("len 2").unbind(), t.get_item(1).expect("len 2").unbind()),
            _ => Args::Many(t.unbind()),
        }
    }

    fn clone_ref(&self, py: Python<'_>) -> Args {
        match self {
            Args::Zero => Args::Zero,
            Args::One(a) => Args::One(a.clone_ref(py)),
            Args::Two(a, b) => Args::Two(a.clone_ref(py), b.clone_ref(py)),
            Args::Many(t) => Args::Many(t.clone_ref(py)),
        }
    }

    pub(crate) fn to_tuple(&self, py: Python<'_>) -> PyResult<Py<PyTuple>> {
        Ok(match self {
            Args::Zero => PyTuple::empty(py).unbind(),
            Args::One(a) => PyTuple::new(py, [a])?.unbind(),
            Args::Two(a, b) => PyTuple::new(py, [a, b])?.unbind(),
            Args::Many(t) => t.clone_ref(py),
        })
    }
}

/// The mutable part of a handle; emptied by `cancel()` so a cancelled handle keeps nothing
/// alive (asyncio does the same, and it is what keeps cancelled timers from holding memory).
pub(crate) struct Callback {
    pub(crate) callback: Option<Py<PyAny>>,
    pub(crate) args: Option<Args>,
    pub(crate) context: Option<HandleContext>,
    /// In debug mode, the repr taken at cancel time (asyncio's `_repr`).
    pub(crate) repr: Option<Py<PyAny>>,
}

// Freelists: one Handle per call_soon, so reusing their memory matters. TimerHandle has
// its own, so a TimerHandle never lands in Handle's list (PyO3 requires exact types).
//
// Not tracked by the garbage collector (the loop untracks the handles it makes, see
// `untracked` in event_loop.rs): with thousands of timers alive, collections that walk
// every handle were a fifth of the loop's time. What makes that safe
// is that a handle lets go of its callback and arguments once it has run or been cancelled
// (`release`), as uvloop's handles do, so the usual `self._timer = loop.call_later(t,
// self._cb)` cannot leave a cycle the collector would have to find. While pending, the
// loop itself holds the handle.
#[pyclass(module = "ferroloop", subclass, frozen, weakref, freelist = 1024)]
pub struct Handle {
    pub(crate) cb: GilCell<Callback>,
    pub(crate) cancelled: AtomicBool,
    pub(crate) loop_: Py<PyAny>,
    pub(crate) source_traceback: Option<Py<PyAny>>,
    /// Runs once (call_soon, timers): its callback is released after it ran. Fd watcher
    /// and signal handles run again and keep theirs.
    pub(crate) oneshot: std::sync::atomic::AtomicBool,
    /// Filled only while the x-ray traces (trace.rs).
    pub(crate) tag: crate::trace::Tag,
    /// 3.14's threadsafe handle: cancel()/cancelled() wait for a running callback, whose
    /// thread `running` holds meanwhile (`Running`).
    pub(crate) waits: AtomicBool,
    pub(crate) running: AtomicU64,
}

impl Handle {
    /// `context=None` means "a copy of the current context", as in asyncio; `untrack`: keep
    /// that copy out of the collector's watch (`HandleContext`).
    pub(crate) fn create(
        py: Python<'_>,
        callback: Py<PyAny>,
        args: Args,
        loop_: Py<PyAny>,
        context: Option<Py<PyAny>>,
        source_traceback: Option<Py<PyAny>>,
        untrack: bool,
    ) -> PyResult<Self> {
        let context = HandleContext::new(py, context, untrack)?;
        Ok(Handle {
            cb: GilCell::new(Callback {
                callback: Some(callback),
                args: Some(args),
                context: Some(context),
                repr: None,
            }),
            cancelled: AtomicBool::new(false),
            loop_,
            source_traceback,
            oneshot: AtomicBool::new(false),
            tag: Default::default(),
            waits: AtomicBool::new(false),
            running: AtomicU64::new(0),
        })
    }

    pub(crate) fn oneshot(self) -> Self {
        self.oneshot.store(true, Relaxed);
        self
    }

    #[inline]
    pub(crate) fn is_cancelled(&self) -> bool {
        self.cancelled.load(Relaxed)
    }

    /// Runs the callback inside its context; the callback's exception comes back untouched.
    #[inline]
    pub(crate) fn call(&self, py: Python<'_>) -> PyResult<()> {
        // Take new references: the callback may cancel its own handle, which clears them.
        // Raw ones (`Held`): this runs once per callback, and PyO3's Py drop would consult
        // a thread-local on every release.
        let held = {
            let cb = self.cb.borrow(py)?;
            match (&cb.callback, &cb.args, &cb.context) {
                (Some(f), Some(a), Some(c)) => Held::new(f, a, c),
                _ => return Ok(()),
            }
        };
        held.call(py)
    }

    /// Whether the loop may reuse this handle object for a new callback: nobody but the
    /// loop holds it, nobody watches it through a weak reference, and it carries nothing
    /// of debug mode. A weakly referenced handle is not reused but freed, as asyncio's
    /// would be: its weak references then die (and call back) when it is done, instead of
    /// turning into references to someone else's callback.
    #[inline]
    pub(crate) fn recyclable(obj: &Bound<'_, Handle>) -> bool {
        let p = obj.as_ptr();
        // SAFETY: reading the reference count, and the weak-reference list head at the
        // offset the type declares (Handle and its subclasses have one), of a live object.
        let (sole, watched) = unsafe {
            let offset = (*ffi::Py_TYPE(p)).tp_weaklistoffset;
            let watched = offset > 0 && !(*p.cast::<u8>().offset(offset).cast::<*mut ffi::PyObject>()).is_null();
            (ffi::Py_REFCNT(p) == 1, watched)
        };
        sole && !watched && obj.get().source_traceback.is_none()
    }

    /// Empties a handle for the loop's pool (its references dropped outside the borrow).
    pub(crate) fn empty(&self, py: Python<'_>) -> PyResult<()> {
        let taken = {
            let mut cb = self.cb.borrow_mut(py)?;
            (cb.callback.take(), cb.args.take(), cb.context.take(), cb.repr.take())
        };
        drop(taken);
        Ok(())
    }

    /// Refills a pooled handle: as if just created by `create(...).oneshot()`.
    pub(crate) fn refill(
        &self,
        py: Python<'_>,
        callback: Py<PyAny>,
        args: Args,
        context: Option<Py<PyAny>>,
        untrack: bool,
    ) -> PyResult<()> {
        let context = HandleContext::new(py, context, untrack)?;
        {
            let mut cb = self.cb.borrow_mut(py)?;
            cb.callback = Some(callback);
            cb.args = Some(args);
            cb.context = Some(context);
        }
        self.cancelled.store(false, Relaxed);
        self.oneshot.store(true, Relaxed);
        self.tag.seq.store(0, Relaxed);
        self.tag.cause.store(0, Relaxed);
        self.tag.origin.store(0, Relaxed);
        self.tag.due_ns.store(0, Relaxed);
        Ok(())
    }

    /// Drops the callback and its arguments after the handle ran (see the note on the
    /// class). In debug mode they are kept, for the slow-callback log and reprs.
    #[inline]
    pub(crate) fn release(&self, py: Python<'_>) -> PyResult<()> {
        let taken = {
            let mut cb = self.cb.borrow_mut(py)?;
            (cb.callback.take(), cb.args.take())
        };
        drop(taken);
        Ok(())
    }

    /// What the handle references, for the garbage collector: through its own
    /// `__traverse__` when tracked, and through the loop's (`visit_held`) when the loop
    /// made it untracked and is its only holder.
    pub(crate) fn visit_refs(&self, visit: &PyVisit<'_>) -> Result<(), PyTraverseError> {
        visit.call(&self.loop_)?;
        visit.call(&self.source_traceback)?;
        if let Some(cb) = self.cb.try_borrow_for_gc() {
            visit.call(&cb.callback)?;
            visit.call(&cb.repr)?;
            if let Some(ctx) = &cb.context {
                visit.call(&**ctx)?;
            }
            match &cb.args {
                Some(Args::One(a)) => visit.call(a)?,
                Some(Args::Two(a, b)) => {
                    visit.call(a)?;
                    visit.call(b)?;
                }
                Some(Args::Many(t)) => visit.call(t)?,
                Some(Args::Zero) | None => {}
            }
        }
        Ok(())
    }

    fn do_cancel(slf: &Bound<'_, Handle>) -> PyResult<()> {
        let py = slf.py();
        let h = slf.get();
        if h.cancelled.swap(true, Relaxed) {
            return Ok(());
        }
        // asyncio keeps the repr in debug mode so a later "slow callback" log can show it.
        let repr = if loop_debug(py, &h.loop_) { Some(slf.as_any().repr()?.into_any().unbind()) } else { None };
        let (f, a) = {
            let mut cb = h.cb.borrow_mut(py)?;
            cb.repr = repr;
            (cb.callback.take(), cb.args.take())
        };
        drop((f, a)); // outside the borrow: dropping may run arbitrary __del__ code
        Ok(())
    }
}

/// A handle the loop holds, as the garbage collector must see it (`CoreLoop::__traverse__`).
/// A tracked handle is an ordinary edge. An untracked one (every handle the loop makes)
/// is walked through — its callback, arguments, context and loop become the loop's own
/// edges — but only while the loop is its sole holder (reference count 1): then it is a
/// private part of the loop, and a cycle through it (loop → handle → task → loop) can be
/// collected. A handle someone else holds too (`h = loop.call_later(...)` kept by a frame)
/// stays opaque: its other holder is invisible to the collector through it, so seeing
/// through it could free what that holder still uses; the loop then stays alive (as
/// before), which is safe.
pub(crate) fn visit_held<T>(obj: &Py<T>, handle: &Handle, visit: &PyVisit<'_>) -> Result<(), PyTraverseError> {
    // SAFETY: reading the GC flag and reference count of a live object (the loop holds
    // it); the collector runs with the GIL held.
    let (tracked, refcnt) = unsafe { (ffi::PyObject_GC_IsTracked(obj.as_ptr()) != 0, ffi::Py_REFCNT(obj.as_ptr())) };
    if tracked {
        visit.call(obj)
    } else if refcnt == 1 {
        handle.visit_refs(visit)
    } else {
        Ok(())
    }
}

/// SystemExit and KeyboardInterrupt escape the loop; everything else is reported.
pub(crate) fn is_fatal_to_loop(py: Python<'_>, err: &PyErr) -> bool {
    err.is_instance_of::<PySystemExit>(py) || err.is_instance_of::<PyKeyboardInterrupt>(py)
}

/// Takes a handle out of the garbage collector's watch (PyO3 makes every pyclass
/// collectable). Handles the loop makes hold no reference cycles of their own: they let go
/// of their callback once run or cancelled, and while pending the loop holds them.
/// Untracked, the collector never walks the thousands a busy loop has alive.
#[inline]
pub(crate) fn untracked<T>(obj: Py<T>) -> Py<T> {
    // SAFETY: a live object of a GC type (every pyclass is); untracking an object that is
    // not tracked is a no-op, and deallocation untracks again safely.
    unsafe { ffi::PyObject_GC_UnTrack(obj.as_ptr().cast()) };
    obj
}

/// Runs a handle as the loop does: errors other than SystemExit/KeyboardInterrupt go to
/// the loop's exception handler (asyncio's `Handle._run`).
pub(crate) fn run_handle(py: Python<'_>, h: &Bound<'_, Handle>) -> PyResult<()> {
    if let Err(err) = h.get().call(py) {
        if is_fatal_to_loop(py, &err) {
            return Err(err);
        }
        // The handle may outlive this in the error context (a handler that keeps it): keep
        // its repr, since the callback is released once the handle has run.
        let repr = helpers(py)?.call_method1(pyo3::intern!(py, "handle_repr"), (h,))?.unbind();
        let old = h.get().cb.borrow_mut(py)?.repr.replace(repr);
        drop(old);
        helpers(py)?.call_method1(pyo3::intern!(py, "report_callback_error"), (h, err.into_value(py)))?;
    }
    Ok(())
}

/// Strong references to what a handle calls, taken under the borrow and released after
/// the call (with the GIL held, as everywhere a Handle runs).
struct Held {
    callback: *mut ffi::PyObject,
    context: *mut ffi::PyObject,
    args: Args,
}

impl Held {
    fn new(callback: &Py<PyAny>, args: &Args, context: &Py<PyAny>) -> Held {
        // SAFETY: both are live objects; the matching decrefs are in Drop.
        unsafe {
            ffi::Py_INCREF(callback.as_ptr());
            ffi::Py_INCREF(context.as_ptr());
        }
        let args = match args {
            Args::Zero => Args::Zero,
            // SAFETY: cloning a reference needs the GIL, which the caller holds.
            other => unsafe { other.clone_ref(Python::assume_attached()) },
        };
        Held { callback: callback.as_ptr(), context: context.as_ptr(), args }
    }

    fn call(&self, py: Python<'_>) -> PyResult<()> {
        // SAFETY: the pointers are kept alive by the references this Held owns.
        unsafe { call_raw(py, self.callback, &self.args, self.context) }
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        // SAFETY: releases the references taken in `new`; the GIL is held.
        unsafe {
            ffi::Py_DECREF(self.callback);
            ffi::Py_DECREF(self.context);
        }
    }
}

/// # Safety
/// `callback` and `context` must be live objects for the duration of the call.
#[inline]
unsafe fn call_raw(
    py: Python<'_>,
    callback: *mut ffi::PyObject,
    args: &Args,
    context: *mut ffi::PyObject,
) -> PyResult<()> {
    // SAFETY: all pointers are live references held for the duration of the call; a
    // tuple's item array is read through CPython's public layout (non-limited API). Slot
    // 0 of `stack` is scratch space the callee may use (PY_VECTORCALL_ARGUMENTS_OFFSET).
    unsafe {
        if ffi::PyContext_Enter(context) < 0 {
            return Err(PyErr::fetch(py));
        }
        let mut stack: [*mut ffi::PyObject; 3] = [std::ptr::null_mut(); 3];
        let (items, nargs): (*const *mut ffi::PyObject, usize) = match args {
            Args::Zero => (stack.as_ptr().add(1), 0),
            Args::One(a) => {
                stack[1] = a.as_ptr();
                (stack.as_ptr().add(1), 1)
            }
            Args::Two(a, b) => {
                stack[1] = a.as_ptr();
                stack[2] = b.as_ptr();
                (stack.as_ptr().add(1), 2)
            }
            Args::Many(t) => {
                let tuple = t.as_ptr() as *mut ffi::PyTupleObject;
                ((*tuple).ob_item.as_ptr(), ffi::PyTuple_GET_SIZE(t.as_ptr()) as usize)
            }
        };
        let flags = if matches!(args, Args::Many(_)) { 0 } else { ffi::PY_VECTORCALL_ARGUMENTS_OFFSET };
        let result = ffi::PyObject_Vectorcall(callback, items, nargs | flags, std::ptr::null_mut());
        let call_result = if result.is_null() {
            Err(PyErr::fetch(py))
        } else {
            ffi::Py_DECREF(result);
            Ok(())
        };
        if ffi::PyContext_Exit(context) < 0 {
            let exit_err = PyErr::fetch(py);
            return call_result.and(Err(exit_err));
        }
        call_result
    }
}

pub(crate) fn copy_context(py: Python<'_>) -> PyResult<Py<PyAny>> {
    // SAFETY: PyContext_CopyCurrent returns a new reference or NULL with an exception set.
    unsafe {
        let ctx = ffi::PyContext_CopyCurrent();
        if ctx.is_null() {
            Err(PyErr::fetch(py))
        } else {
            Ok(Bound::from_owned_ptr(py, ctx).unbind())
        }
    }
}

/// The context a handle runs its callback in. `context=None` makes it a copy of the current
/// context, as asyncio does; while the loop holds many handles (a backlog of
/// `call_soon_threadsafe` calls, thousands of timers) that copy is kept out of the garbage
/// collector's watch: each copy counts towards a young-generation collection every ~700,
/// which walks every pending copy (`call_soon_threadsafe` paid ~580 instructions a call for
/// it). With few handles pending, copies die before a collection and untracking would only
/// cost (~120 instructions a call), so it is not done.
/// The copy is the handle's own: code inside the callback cannot reach it (`copy_context()`
/// gives another copy), so it cannot close a cycle; `get_context()` hands it out tracked
/// again. What it references stays collectable: an untracked holder only keeps it alive.
///
/// CPython's context deallocation unlinks the object from the collector's list without
/// checking that it is on one, so a context must be tracked again before its last
/// reference can go: every path that lets go of it goes through `Drop` here.
pub(crate) struct HandleContext {
    ctx: ManuallyDrop<Py<PyAny>>,
    /// Ours and untracked (a caller's `context=` is left as it came).
    private: bool,
}

impl HandleContext {
    fn new(py: Python<'_>, given: Option<Py<PyAny>>, untrack: bool) -> PyResult<Self> {
        let (ctx, private) = match given {
            Some(ctx) => (ctx, false),
            None => (copy_context(py)?, untrack),
        };
        if private {
            // SAFETY: a live, tracked context object just made; Drop and `shared` track it
            // again.
            unsafe { ffi::PyObject_GC_UnTrack(ctx.as_ptr().cast()) };
        }
        Ok(HandleContext { ctx: ManuallyDrop::new(ctx), private })
    }

    /// The context for Python code that asked for it, tracked again first.
    fn shared(&self, py: Python<'_>) -> Py<PyAny> {
        if self.private {
            // SAFETY: the GIL is held (`py`); a live context object.
            unsafe { track_again(self.ctx.as_ptr()) };
        }
        self.ctx.clone_ref(py)
    }
}

impl std::ops::Deref for HandleContext {
    type Target = Py<PyAny>;
    fn deref(&self) -> &Py<PyAny> {
        &self.ctx
    }
}

impl Drop for HandleContext {
    fn drop(&mut self) {
        // SAFETY: tracking and releasing need the GIL. Handles are only dropped by Python
        // code or by the loop, with the GIL held; if that ever fails, leaking the context is
        // the safe outcome (a deferred release would deallocate it untracked).
        unsafe {
            if !self.private {
                ManuallyDrop::drop(&mut self.ctx);
            } else if ffi::PyGILState_Check() == 1 {
                track_again(self.ctx.as_ptr());
                ManuallyDrop::drop(&mut self.ctx);
            }
        }
    }
}

/// # Safety
/// The GIL must be held and `obj` a live context object.
unsafe fn track_again(obj: *mut ffi::PyObject) {
    // SAFETY: the caller's contract (the GIL, a live context object); tracking only an
    // untracked object is what PyObject_GC_Track requires.
    unsafe {
        if ffi::PyObject_GC_IsTracked(obj) == 0 {
            ffi::PyObject_GC_Track(obj.cast());
        }
    }
}

/// `ferroloop._handles`: the Python side of handles (repr, error reporting, logging).
pub(crate) fn helpers(py: Python<'_>) -> PyResult<&Bound<'_, PyModule>> {
    static MODULE: PyOnceLock<Py<PyModule>> = PyOnceLock::new();
    MODULE.get_or_try_init(py, || py.import("ferroloop._handles").map(Bound::unbind)).map(|m| m.bind(py))
}

fn loop_debug(py: Python<'_>, loop_: &Py<PyAny>) -> bool {
    loop_.bind(py).call_method0(pyo3::intern!(py, "get_debug")).and_then(|v| v.is_truthy()).unwrap_or(false)
}

#[pymethods]
impl Handle {
    #[new]
    #[pyo3(signature = (callback, args, loop_, context=None))]
    fn py_new(
        py: Python<'_>,
        callback: Py<PyAny>,
        args: Option<Bound<'_, PyAny>>,
        loop_: Py<PyAny>,
        context: Option<Py<PyAny>>,
    ) -> PyResult<Self> {
        let args = match args {
            None => Args::Zero,
            Some(a) => Args::from_tuple(PyTuple::new(py, a.try_iter()?.collect::<PyResult<Vec<_>>>()?)?),
        };
        Handle::create(py, callback, args, loop_, context, None, false)
    }

    pub(crate) fn cancel(slf: &Bound<'_, Self>) -> PyResult<()> {
        wait_while_running(slf.py(), slf.get());
        Handle::do_cancel(slf)
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        self.visit_refs(&visit)
    }

    fn __clear__(&self) {
        Python::attach(|py| {
            let taken = self.cb.borrow_mut(py).ok().map(|mut cb| (cb.callback.take(), cb.args.take(), cb.repr.take()));
            drop(taken);
        });
    }

    fn cancelled(slf: &Bound<'_, Self>) -> bool {
        wait_while_running(slf.py(), slf.get());
        slf.get().is_cancelled()
    }

    fn get_context(&self, py: Python<'_>) -> PyResult<Option<Py<PyAny>>> {
        Ok(self.cb.borrow(py)?.context.as_ref().map(|c| c.shared(py)))
    }

    fn _run(slf: &Bound<'_, Self>) -> PyResult<()> {
        run_handle(slf.py(), slf)
    }

    #[getter]
    fn _callback(&self, py: Python<'_>) -> PyResult<Option<Py<PyAny>>> {
        Ok(self.cb.borrow(py)?.callback.as_ref().map(|c| c.clone_ref(py)))
    }

    #[getter]
    fn _args(&self, py: Python<'_>) -> PyResult<Option<Py<PyTuple>>> {
        let args = self.cb.borrow(py)?.args.as_ref().map(|a| a.clone_ref(py));
        args.map(|a| a.to_tuple(py)).transpose()
    }

    #[getter]
    fn _context(&self, py: Python<'_>) -> PyResult<Option<Py<PyAny>>> {
        self.get_context(py)
    }

    #[getter]
    fn _cancelled(&self) -> bool {
        self.is_cancelled()
    }

    #[getter]
    fn _loop(&self, py: Python<'_>) -> Py<PyAny> {
        self.loop_.clone_ref(py)
    }

    #[getter]
    fn _source_traceback(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        self.source_traceback.as_ref().map(|t| t.clone_ref(py))
    }

    #[getter]
    fn _repr(&self, py: Python<'_>) -> PyResult<Option<Py<PyAny>>> {
        Ok(self.cb.borrow(py)?.repr.as_ref().map(|r| r.clone_ref(py)))
    }

    fn __repr__(slf: &Bound<'_, Self>) -> PyResult<Py<PyAny>> {
        let py = slf.py();
        if let Some(r) = slf.get().cb.borrow(py)?.repr.as_ref() {
            return Ok(r.clone_ref(py));
        }
        Ok(helpers(py)?.call_method1(pyo3::intern!(py, "handle_repr"), (slf,))?.unbind())
    }
}

/// A `Handle` with a deadline, kept in the loop's timer heap until it is due.
#[pyclass(module = "ferroloop", extends = Handle, frozen, freelist = 1024)]
pub struct TimerHandle {
    /// The deadline (f64 bits): atomic only so a recycled timer can take a new one.
    pub(crate) when: std::sync::atomic::AtomicU64,
    /// True while the timer sits in the heap (asyncio's `_scheduled`).
    pub(crate) scheduled: AtomicBool,
    /// The loop's count of cancelled timers still in its heap (asyncio's
    /// `_timer_cancelled_count`): it decides when the heap is compacted.
    pub(crate) cancelled_in_heap: Arc<AtomicUsize>,
}

impl TimerHandle {
    pub(crate) fn handle<'a, 'py>(slf: &'a Bound<'py, TimerHandle>) -> &'a Handle {
        slf.as_super().get()
    }

    #[inline]
    pub(crate) fn when_value(&self) -> f64 {
        f64::from_bits(self.when.load(Relaxed))
    }
}

#[pymethods]
impl TimerHandle {
    #[new]
    #[pyo3(signature = (when, callback, args, loop_, context=None))]
    fn py_new(
        py: Python<'_>,
        when: f64,
        callback: Py<PyAny>,
        args: Option<Bound<'_, PyAny>>,
        loop_: Py<PyAny>,
        context: Option<Py<PyAny>>,
    ) -> PyResult<PyClassInitializer<Self>> {
        let base = Handle::py_new(py, callback, args, loop_, context)?;
        Ok(PyClassInitializer::from(base).add_subclass(TimerHandle {
            when: std::sync::atomic::AtomicU64::new(when.to_bits()),
            scheduled: AtomicBool::new(false),
            cancelled_in_heap: Arc::new(AtomicUsize::new(0)),
        }))
    }

    fn when(&self) -> f64 {
        self.when_value()
    }

    #[getter]
    fn _when(&self) -> f64 {
        self.when_value()
    }

    #[getter]
    fn _scheduled(&self) -> bool {
        self.scheduled.load(Relaxed)
    }

    fn cancel(slf: &Bound<'_, Self>) -> PyResult<()> {
        let me = slf.get();
        if !TimerHandle::handle(slf).is_cancelled() && me.scheduled.load(Relaxed) {
            me.cancelled_in_heap.fetch_add(1, Relaxed);
        }
        Handle::do_cancel(slf.as_super())
    }

    fn __hash__(&self) -> u64 {
        // hash(float) semantics are not needed; equal `when`s must hash equal.
        let when = self.when_value();
        let w = if when == 0.0 { 0.0 } else { when };
        w.to_bits()
    }

    fn __richcmp__(slf: &Bound<'_, Self>, other: &Bound<'_, PyAny>, op: CompareOp) -> PyResult<Py<PyAny>> {
        let py = slf.py();
        let Ok(other) = other.cast::<TimerHandle>() else {
            return Ok(py.NotImplemented());
        };
        let (a, b) = (slf.get().when_value(), other.get().when_value());
        let result = match op {
            CompareOp::Lt => a < b,
            CompareOp::Le => a < b || Self::equal(slf, other)?,
            CompareOp::Gt => a > b,
            CompareOp::Ge => a > b || Self::equal(slf, other)?,
            CompareOp::Eq => Self::equal(slf, other)?,
            CompareOp::Ne => !Self::equal(slf, other)?,
        };
        Ok(pyo3::types::PyBool::new(py, result).to_owned().into_any().unbind())
    }
}

impl TimerHandle {
    /// asyncio's TimerHandle equality: same deadline, callback, args and cancelled state.
    fn equal(a: &Bound<'_, Self>, b: &Bound<'_, Self>) -> PyResult<bool> {
        if a.is(b) {
            return Ok(true);
        }
        let py = a.py();
        let (ha, hb) = (TimerHandle::handle(a), TimerHandle::handle(b));
        if a.get().when_value() != b.get().when_value() || ha.is_cancelled() != hb.is_cancelled() {
            return Ok(false);
        }
        let (fa, aa) = {
            let c = ha.cb.borrow(py)?;
            (c.callback.as_ref().map(|x| x.clone_ref(py)), c.args.as_ref().map(|x| x.clone_ref(py)))
        };
        let (fb, ab) = {
            let c = hb.cb.borrow(py)?;
            (c.callback.as_ref().map(|x| x.clone_ref(py)), c.args.as_ref().map(|x| x.clone_ref(py)))
        };
        let aa = aa.map(|a| a.to_tuple(py)).transpose()?;
        let ab = ab.map(|a| a.to_tuple(py)).transpose()?;
        Ok(opt_eq(py, fa, fb)? && opt_eq(py, aa.map(Py::into_any), ab.map(Py::into_any))?)
    }
}

fn opt_eq(py: Python<'_>, a: Option<Py<PyAny>>, b: Option<Py<PyAny>>) -> PyResult<bool> {
    match (a, b) {
        (None, None) => Ok(true),
        (Some(a), Some(b)) => a.bind(py).eq(b.bind(py)),
        _ => Ok(false),
    }
}

// -- 3.14's threadsafe handles (see the module comment) ------------------------------------

/// Signalled whenever a marked callback finishes (one for the process: waits are rare).
static FINISHED: (Mutex<()>, Condvar) = (Mutex::new(()), Condvar::new());

pub(crate) fn thread_ident() -> u64 {
    // SAFETY: a plain query of the calling thread's ident (threading.get_ident()).
    unsafe { ffi::PyThread_get_thread_ident() as u64 }
}

/// Marks `h` as running on this thread until dropped (also if the run unwinds).
pub(crate) struct Running<'a>(&'a Handle);

impl<'a> Running<'a> {
    pub(crate) fn mark(h: &'a Handle) -> Self {
        h.running.store(thread_ident(), SeqCst);
        Running(h)
    }
}

impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.0.running.store(0, SeqCst);
        // Taking the lock orders this store before any waiter's re-check (no lost wake-up).
        let _g = FINISHED.0.lock().unwrap_or_else(|e| e.into_inner());
        FINISHED.1.notify_all();
    }
}

/// Waits, with the GIL released, while another thread runs the callback of `h`.
fn wait_while_running(py: Python<'_>, h: &Handle) {
    if !h.waits.load(Relaxed) {
        return;
    }
    let running = h.running.load(SeqCst);
    if running == 0 || running == thread_ident() {
        return;
    }
    py.detach(|| {
        let mut g = FINISHED.0.lock().unwrap_or_else(|e| e.into_inner());
        while h.running.load(SeqCst) != 0 {
            g = FINISHED.1.wait(g).unwrap_or_else(|e| e.into_inner());
        }
    });
}
