//! `loop.sendfile` / `sock_sendfile`'s per-chunk syscall: sendfile(2) from the loop thread
//! in the native core (no Python `os.*` call per chunk), with asyncio's error mapping.
//! The once-per-call work (argument checks, waiting for writability, the file position)
//! stays in Python (`_net.py`, `_sockets.py`).

use std::io;
use std::os::fd::RawFd;

use pyo3::exceptions::PyConnectionError;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;

use crate::transports::os_error;

/// One sendfile(2) of up to `size` bytes of `fileno` from `pos` to the socket `fd`: the
/// bytes sent (0 at the end of the file), or None if the socket would block. Errors as
/// asyncio's `_sock_sendfile_native_impl` raises them: any OSError before the first byte
/// went out (`first`) is SendfileNotAvailableError (the caller may fall back to read +
/// send); later, ENOTCONN is ConnectionError("socket is not connected", ENOTCONN) caused
/// by it, and any other error is the OSError itself.
#[pyfunction]
pub(crate) fn sendfile_chunk(py: Python<'_>, fd: RawFd, fileno: RawFd, pos: i64, size: usize, first: bool) -> PyResult<Option<usize>> {
    let result = py.detach(|| send(fd, fileno, pos, size));
    match result {
        Ok(n) => Ok(Some(n)),
        Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted) => Ok(None),
        Err(_) if first => Err(PyErr::from_value(not_available(py)?.bind(py).call1(("os.sendfile call failed",))?)),
        Err(e) if e.raw_os_error() == Some(libc::ENOTCONN) => {
            let err = PyConnectionError::new_err(("socket is not connected", libc::ENOTCONN));
            err.set_cause(py, Some(os_error(&e)));
            Err(err)
        }
        Err(e) => Err(os_error(&e)),
    }
}

fn not_available(py: Python<'_>) -> PyResult<&Py<PyAny>> {
    static CLASS: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
    CLASS.get_or_try_init(py, || {
        Ok(py.import("asyncio.exceptions")?.getattr("SendfileNotAvailableError")?.unbind())
    })
}

#[cfg(any(target_os = "linux", target_os = "android"))]
fn send(fd: RawFd, fileno: RawFd, pos: i64, size: usize) -> io::Result<usize> {
    let mut offset: libc::off_t = pos;
    // SAFETY: plain descriptors (the kernel checks them) and a valid off_t for the call.
    let n = unsafe { libc::sendfile(fd, fileno, &mut offset, size) };
    if n < 0 { Err(io::Error::last_os_error()) } else { Ok(n as usize) }
}

#[cfg(target_os = "macos")]
fn send(fd: RawFd, fileno: RawFd, pos: i64, size: usize) -> io::Result<usize> {
    let mut len: libc::off_t = size as libc::off_t;
    // SAFETY: plain descriptors (the kernel checks them), a valid off_t for the length out,
    // no header/trailer vectors.
    let rc = unsafe { libc::sendfile(fileno, fd, pos, &mut len, std::ptr::null_mut(), 0) };
    // macOS reports bytes sent through `len` even when it fails with EAGAIN.
    if rc < 0 {
        let e = io::Error::last_os_error();
        if len > 0 && matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted) {
            return Ok(len as usize);
        }
        return Err(e);
    }
    Ok(len as usize)
}
