//! Scheduling: `call_soon`, `call_soon_threadsafe`, `call_later`/`call_at` (their raw
//! entry points are fastcall.rs), and the pools that let the loop reuse handles.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed, Ordering::SeqCst};

use pyo3::exceptions::PyRuntimeError;
use pyo3::intern;
use pyo3::prelude::*;

use super::{CoreLoop, POOL_SIZE};
use crate::handles::{helpers, is_fatal_to_loop, thread_ident, untracked, Args, Handle, TimerHandle};
use crate::loop_base::LoopBase;
use crate::ready::Ready;
use crate::trace;

impl CoreLoop {
    /// asyncio checks callbacks (and the calling thread) in debug mode only; a callable
    /// check is one pointer test, so ferroloop does that one always.
    #[inline]
    pub(super) fn check_callback(&self, base: &LoopBase, callback: &Bound<'_, PyAny>, method: &str) -> PyResult<()> {
        if base.is_debug() {
            self.check_thread()?;
        } else if callback.is_callable() {
            return Ok(());
        }
        let py = callback.py();
        helpers(py)?.call_method1(intern!(py, "check_callback"), (callback, method))?;
        Ok(())
    }

    fn check_thread(&self) -> PyResult<()> {
        let tid = self.thread_id.load(Relaxed);
        if tid != 0 && tid != thread_ident() {
            return Err(PyRuntimeError::new_err(
                "Non-thread-safe operation invoked on an event loop other than the current one",
            ));
        }
        Ok(())
    }

    pub(super) fn make_handle(
        &self,
        slf: &Bound<'_, Self>,
        callback: Bound<'_, PyAny>,
        args: Args,
        context: Option<Bound<'_, PyAny>>,
    ) -> PyResult<Handle> {
        let py = slf.py();
        let base = Self::base(slf);
        let tb = if base.is_debug() {
            Some(helpers(py)?.call_method0(intern!(py, "extract_stack"))?.unbind())
        } else {
            None
        };
        let untrack = self.untrack_copy(py, base, context.is_none());
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
    fn untrack_copy(&self, py: Python<'_>, base: &LoopBase, copying: bool) -> bool {
        const CROWD: usize = 256;
        copying
            && (base.ready.borrow(py).is_ok_and(|r| r.len() >= CROWD)
                || self.timers.borrow(py).is_ok_and(|t| t.len() >= CROWD))
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
        let base = Self::base(slf);
        base.check_open()?;
        me.check_callback(base, &callback, "call_at")?;
        let pooled = if base.is_debug() { None } else { me.timer_pool.borrow_mut(py)?.pop() };
        let timer = match pooled {
            Some(timer) => {
                let untrack = me.untrack_copy(py, base, context.is_none());
                let context = context.map(Bound::unbind);
                TimerHandle::handle(timer.bind(py)).refill(py, callback.unbind(), args, context, untrack)?;
                let t = timer.get();
                t.when.store(when.to_bits(), Relaxed);
                t.scheduled.store(true, Relaxed);
                timer
            }
            None => {
                let base_handle = me.make_handle(slf, callback, args, context)?.oneshot();
                let counter = me.timers.borrow(py)?.cancel_counter();
                untracked(Py::new(
                    py,
                    PyClassInitializer::from(base_handle).add_subclass(TimerHandle {
                        when: AtomicU64::new(when.to_bits()),
                        scheduled: AtomicBool::new(true),
                        cancelled_in_heap: counter,
                    }),
                )?)
            }
        };
        let trace = &base.trace;
        let armed = trace.is_on().then(|| trace.tag_timer(&TimerHandle::handle(timer.bind(py)).tag, when));
        me.timers.borrow_mut(py)?.push(when, timer.clone_ref(py));
        if let Some(seq) = armed.filter(|_| !trace.is_live()) {
            me.trace_event(py, "_timer_armed", (seq, when, timer.clone_ref(py)))?;
        }
        Ok(timer)
    }

    /// Reports to the recorder; its failures are printed, never raised into the program.
    fn trace_event<A: for<'py> pyo3::call::PyCallArgs<'py>>(
        &self,
        py: Python<'_>,
        method: &str,
        args: A,
    ) -> PyResult<()> {
        let recorder = self.xray.borrow(py)?.as_ref().map(|r| r.clone_ref(py));
        if let Some(rec) = recorder {
            if let Err(e) = rec.bind(py).call_method1(method, args) {
                if is_fatal_to_loop(py, &e) {
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
        let base = Self::base(slf);
        base.check_open()?;
        if threadsafe {
            if !callback.is_callable() || base.is_debug() {
                helpers(py)?.call_method1(intern!(py, "check_callback"), (&callback, "call_soon_threadsafe"))?;
            }
        } else {
            me.check_callback(base, &callback, "call_soon")?;
        }
        let pooled = if base.is_debug() { None } else { me.handle_pool.borrow_mut(py)?.pop() };
        let h = match pooled {
            Some(h) => {
                let untrack = me.untrack_copy(py, base, context.is_none());
                h.get().refill(py, callback.unbind(), args, context.map(Bound::unbind), untrack)?;
                h
            }
            None => untracked(Py::new(py, me.make_handle(slf, callback, args, context)?.oneshot())?),
        };
        h.get().waits.store(threadsafe && me.threadsafe_waits.load(Relaxed), Relaxed);
        if base.trace.is_on() {
            let other_thread = threadsafe && me.thread_id.load(Relaxed) != thread_ident();
            base.trace.tag(&h.get().tag, if other_thread { trace::ORIGIN_THREAD } else { trace::ORIGIN_SOON });
        }
        base.push_ready(py, Ready::Handle(h.clone_ref(py)))?;
        if threadsafe && me.parked.load(SeqCst) && !me.wake_sent.swap(true, SeqCst) {
            if let Some(w) = me.waker.borrow(py)?.as_ref() {
                let _ = w.wake();
            }
        }
        Ok(h)
    }

    /// Whether create_task can make the Task itself: no factory, no recorder, not debug.
    #[inline]
    pub(crate) fn plain_tasks(slf: &Bound<'_, Self>) -> bool {
        let py = slf.py();
        let me = slf.get();
        !Self::base(slf).is_debug()
            && me.task_factory.borrow(py).is_ok_and(|f| f.is_none())
            && me.xray.borrow(py).is_ok_and(|x| x.is_none())
    }

    /// A one-shot handle that ran (or was cancelled): back to its pool if nobody else
    /// holds it, else it just lets go of its callback (see handles.rs).
    #[inline]
    pub(super) fn recycle(&self, py: Python<'_>, h: Bound<'_, Handle>) -> PyResult<()> {
        if !Handle::recyclable(&h) {
            return h.get().release(py);
        }
        h.get().empty(py)?;
        if h.get_type().is(py.get_type::<Handle>()) {
            let mut pool = self.handle_pool.borrow_mut(py)?;
            if pool.len() < POOL_SIZE {
                pool.push(h.unbind());
            }
        } else if let Ok(t) = h.cast::<TimerHandle>() {
            if t.get_type().is(py.get_type::<TimerHandle>()) {
                let mut pool = self.timer_pool.borrow_mut(py)?;
                if pool.len() < POOL_SIZE {
                    pool.push(t.clone().unbind());
                }
            }
        }
        Ok(())
    }
}
