//! fd watchers: `add_reader`/`add_writer` and their removal (asyncio's selector-based
//! API, level-triggered over mio's edge-triggered registration: see poller.rs).

use std::os::fd::RawFd;
use std::sync::atomic::Ordering::Relaxed;

use pyo3::exceptions::{PyRuntimeError, PyTypeError, PyValueError};
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyInt, PyTuple};

use super::CoreLoop;
use crate::handles::{untracked, Args, Handle};
use crate::loop_base::{closed_error, LoopBase};
use crate::os::os_error;
use crate::poller::{Direction, FdError};
use crate::trace;

/// `selectors._fileobj_to_fd`: an int, or an object with `fileno()`.
fn fileobj_to_fd(obj: &Bound<'_, PyAny>) -> PyResult<RawFd> {
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

fn fd_error(py: Python<'_>, fd: RawFd, e: FdError) -> PyErr {
    match e {
        FdError::Os(e) => os_error(&e),
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
    pub(super) fn watch_fd(
        &self,
        slf: &Bound<'_, Self>,
        fd: &Bound<'_, PyAny>,
        dir: Direction,
        callback: Bound<'_, PyAny>,
        args: Bound<'_, PyTuple>,
    ) -> PyResult<Py<Handle>> {
        let py = slf.py();
        let base = Self::base(slf);
        let fileobj = fd;
        let fd = fileobj_to_fd(fileobj)?;
        base.check_open()?;
        let method = if dir == Direction::Read { "add_reader" } else { "add_writer" };
        self.check_callback(base, &callback, method)?;
        let handle = self.make_handle(slf, callback, Args::from_tuple(args), None)?;
        if base.trace.is_on() {
            base.trace.tag(&handle.tag, trace::ORIGIN_FD);
        }
        let handle = untracked(Py::new(py, handle)?);
        let old = {
            let mut poller = base.poller.borrow_mut(py)?;
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

    pub(super) fn unwatch_fd(
        base: &LoopBase,
        py: Python<'_>,
        fileobj: &Bound<'_, PyAny>,
        dir: Direction,
    ) -> PyResult<bool> {
        // As asyncio: an object without fileno() is refused even on a closed loop; any
        // number (a closed socket's -1 too) gets False there.
        let raw = fileobj_to_raw_fd(fileobj)?;
        if base.closed.load(Relaxed) {
            return Ok(false);
        }
        let fd = match checked_fd(raw) {
            Ok(fd) => fd,
            // A closed socket answers fileno() with -1: as selectors do, look for the
            // registration of the object itself before giving up.
            Err(e) => {
                let found = base.poller.borrow(py)?.as_ref().and_then(|p| p.fd_of_fileobj(fileobj));
                found.ok_or(e)?
            }
        };
        let old = {
            let mut poller = base.poller.borrow_mut(py)?;
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

    /// The transport owning `fd`, or None (asyncio's `_transports` lookup).
    pub(super) fn transport_for_fd(
        base: &LoopBase,
        py: Python<'_>,
        fd: &Bound<'_, PyAny>,
    ) -> PyResult<Option<Py<PyAny>>> {
        let fd = fileobj_to_fd(fd)?;
        Ok(base.poller.borrow(py)?.as_ref().and_then(|p| p.transport_at(py, fd)))
    }
}
