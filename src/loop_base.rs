//! `LoopBase`: the loop as the layers below it see it — the ready queue, the poller's
//! registration half, the scratch buffer reads land in, the closed and debug flags and the
//! x-ray's tags. `CoreLoop` (event_loop.rs) extends it; a native transport holds its loop
//! as a `Py<LoopBase>`, the narrow handle through which it queues work, registers its fd
//! and schedules its callbacks, without naming the loop above it (as tokio's IO resources
//! hold a driver handle).

use std::collections::VecDeque;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};

use pyo3::exceptions::PyRuntimeError;
use pyo3::gc::PyVisit;
use pyo3::prelude::*;
use pyo3::types::PyTuple;
use pyo3::PyTraverseError;

use crate::gil_cell::GilCell;
use crate::handles::{untracked, visit_held, Args, Handle};
use crate::os::os_error;
use crate::poller::Poller;
use crate::ready::{IoRef, Ready};
use crate::trace::{self, Trace};

/// Size of the scratch buffer reads land in (asyncio's `max_size`: what one read takes).
pub(crate) const MAX_READ: usize = 256 * 1024;

#[pyclass(module = "ferroloop._ferroloop", subclass, frozen)]
pub struct LoopBase {
    pub(crate) ready: GilCell<VecDeque<Ready>>,
    /// Scratch space socket reads land in before they become `bytes`.
    read_buf: GilCell<Vec<u8>>,
    pub(crate) poller: GilCell<Option<Poller>>,
    pub(crate) closed: AtomicBool,
    pub(crate) debug: AtomicBool,
    /// The x-ray's instrumentation; off unless a recorder is attached.
    pub(crate) trace: Trace,
}

pub(crate) fn closed_error() -> PyErr {
    PyRuntimeError::new_err("Event loop is closed")
}

impl LoopBase {
    pub(crate) fn new(poller: Poller) -> Self {
        LoopBase {
            ready: GilCell::new(VecDeque::new()),
            read_buf: GilCell::new(Vec::new()),
            poller: GilCell::new(Some(poller)),
            closed: AtomicBool::new(false),
            debug: AtomicBool::new(false),
            trace: Trace::default(),
        }
    }

    /// asyncio's `_check_closed`.
    #[inline]
    pub(crate) fn check_open(&self) -> PyResult<()> {
        if self.closed.load(Relaxed) {
            Err(closed_error())
        } else {
            Ok(())
        }
    }

    #[inline]
    pub(crate) fn is_debug(&self) -> bool {
        self.debug.load(Relaxed)
    }

    #[inline]
    pub(crate) fn push_ready(&self, py: Python<'_>, entry: Ready) -> PyResult<()> {
        self.ready.borrow_mut(py)?.push_back(entry);
        Ok(())
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
        me.check_open()?;
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
            buf.resize(MAX_READ, 0);
        }
        Ok(f(&mut buf))
    }

    /// Registers a native transport's fd, readable and writable (edge-triggered).
    pub(crate) fn register(&self, py: Python<'_>, fd: RawFd, io: IoRef) -> PyResult<usize> {
        let (key, displaced) = {
            let mut poller = self.poller.borrow_mut(py)?;
            let poller = poller.as_mut().ok_or_else(closed_error)?;
            poller.add_transport(fd, io).map_err(|e| os_error(&e))?
        };
        // asyncio lets a transport take over an fd that had add_reader/add_writer callbacks.
        if let Some(w) = displaced {
            for h in w.reader.iter().chain(w.writer.iter()) {
                Handle::cancel(h.bind(py))?;
            }
        }
        Ok(key)
    }

    /// Forgets a transport (before its fd is closed).
    pub(crate) fn deregister(&self, py: Python<'_>, key: usize, fd: RawFd) -> PyResult<()> {
        let source = {
            let mut poller = self.poller.borrow_mut(py)?;
            poller.as_mut().and_then(|p| p.remove_transport(key, fd))
        };
        drop(source);
        Ok(())
    }
}

#[pymethods]
impl LoopBase {
    /// The ready queue and the poller's sources: transports, and handles as
    /// `handles::visit_held` says (walked through while the loop is their only holder).
    /// Runs only when the collector examines the loop's generation.
    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        if let Some(ready) = self.ready.try_borrow_for_gc() {
            for entry in ready.iter() {
                match entry {
                    Ready::Handle(h) => visit_held(h, h.get(), &visit)?,
                    other => other.visit(&visit)?,
                }
            }
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
        Ok(())
    }

    fn __clear__(&self) {
        Python::attach(|py| {
            let ready = self.ready.borrow_mut(py).ok().map(|mut r| std::mem::take(&mut *r));
            let sources = self.poller.borrow_mut(py).ok().and_then(|mut p| p.as_mut().map(Poller::drain));
            drop((ready, sources));
        });
    }
}
