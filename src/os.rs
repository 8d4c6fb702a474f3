//! The raw system calls the core makes, and asyncio's mapping of their errors: socket and
//! pipe reads and writes, `sendfile(2)` for `loop.sendfile` / `sock_sendfile`, and the
//! file-system calls around a Unix socket's path. A leaf: nothing here knows the loop.
//!
//! sendfile and the path calls are made here rather than through Python's `os` module on
//! the loop thread: one native call per chunk, and blocking-call detectors (blockbuster,
//! run by aiohttp's and anyio's suites) accept `os.stat`/`os.unlink` only from asyncio's
//! own frames. The once-per-call work around them stays in Python (`_net.py`, `_sockets.py`).

use std::ffi::{CString, OsStr};
use std::io;
use std::os::fd::RawFd;
use std::os::unix::ffi::OsStrExt;

use pyo3::exceptions::{PyConnectionError, PyOSError};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyBytes;

#[cfg(any(target_os = "linux", target_os = "android"))]
pub(crate) const SEND_FLAGS: libc::c_int = libc::MSG_NOSIGNAL;
#[cfg(not(any(target_os = "linux", target_os = "android")))]
pub(crate) const SEND_FLAGS: libc::c_int = 0;

pub(crate) fn last_os_error() -> io::Error {
    io::Error::last_os_error()
}

pub(crate) fn is_would_block(e: &io::Error) -> bool {
    matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted)
}

/// The kernel refused (EAGAIN): only this arms the next writable edge. EINTR is not a
/// refusal, the call is repeated.
pub(crate) fn is_refused(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::WouldBlock
}

/// `OSError(errno, strerror)`: Python picks the subclass (ConnectionResetError, ...).
pub(crate) fn os_error_value<'py>(py: Python<'py>, e: &io::Error) -> PyResult<Bound<'py, PyAny>> {
    Ok(os_error(e).into_value(py).into_bound(py).into_any())
}

pub(crate) fn os_error(e: &io::Error) -> PyErr {
    match e.raw_os_error() {
        Some(code) => PyOSError::new_err((code, strerror(code))),
        None => PyOSError::new_err(e.to_string()),
    }
}

/// The C library's message for an errno, as Python shows it (without Rust's
/// " (os error N)" suffix).
pub(crate) fn strerror(code: i32) -> String {
    let text = io::Error::from_raw_os_error(code).to_string();
    match text.rfind(" (os error ") {
        Some(i) => text[..i].to_string(),
        None => text,
    }
}

fn check(n: isize) -> io::Result<usize> {
    if n < 0 {
        Err(last_os_error())
    } else {
        Ok(n as usize)
    }
}

pub(crate) fn recv(fd: RawFd, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: buf is a valid writable region of buf.len() bytes for the duration of the call.
    check(unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), 0) })
}

pub(crate) fn read(fd: RawFd, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: as recv.
    check(unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) })
}

pub(crate) fn write(fd: RawFd, data: &[u8]) -> io::Result<usize> {
    // SAFETY: as send.
    check(unsafe { libc::write(fd, data.as_ptr().cast(), data.len()) })
}

pub(crate) fn send(fd: RawFd, data: &[u8]) -> io::Result<usize> {
    // SAFETY: data is a valid readable region for the duration of the call.
    check(unsafe { libc::send(fd, data.as_ptr().cast(), data.len(), SEND_FLAGS) })
}

/// `shutdown(fd, SHUT_WR)`: the write half is closed (write_eof).
pub(crate) fn shutdown_write(fd: RawFd) -> io::Result<()> {
    // SAFETY: a plain descriptor; the kernel checks it.
    check(unsafe { libc::shutdown(fd, libc::SHUT_WR) } as isize).map(drop)
}

// -- sendfile ---------------------------------------------------------------------------

/// One sendfile(2) of up to `size` bytes of `fileno` from `pos` to the socket `fd`: the
/// bytes sent (0 at the end of the file), or None if the socket would block. Errors as
/// asyncio's `_sock_sendfile_native_impl` raises them: any OSError before the first byte
/// went out (`first`) is SendfileNotAvailableError (the caller may fall back to read +
/// send); later, ENOTCONN is ConnectionError("socket is not connected", ENOTCONN) caused
/// by it, and any other error is the OSError itself.
#[pyfunction]
pub(crate) fn sendfile_chunk(
    py: Python<'_>,
    fd: RawFd,
    fileno: RawFd,
    pos: i64,
    size: usize,
    first: bool,
) -> PyResult<Option<usize>> {
    let result = py.detach(|| sendfile(fd, fileno, pos, size));
    match result {
        Ok(n) => Ok(Some(n)),
        Err(e) if is_would_block(&e) => Ok(None),
        Err(_) if first => {
            Err(PyErr::from_value(sendfile_not_available(py)?.bind(py).call1(("os.sendfile call failed",))?))
        }
        Err(e) if e.raw_os_error() == Some(libc::ENOTCONN) => {
            let err = PyConnectionError::new_err(("socket is not connected", libc::ENOTCONN));
            err.set_cause(py, Some(os_error(&e)));
            Err(err)
        }
        Err(e) => Err(os_error(&e)),
    }
}

fn sendfile_not_available(py: Python<'_>) -> PyResult<&Py<PyAny>> {
    static CLASS: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
    CLASS.get_or_try_init(py, || Ok(py.import("asyncio.exceptions")?.getattr("SendfileNotAvailableError")?.unbind()))
}

#[cfg(any(target_os = "linux", target_os = "android"))]
fn sendfile(fd: RawFd, fileno: RawFd, pos: i64, size: usize) -> io::Result<usize> {
    let mut offset: libc::off_t = pos;
    // SAFETY: plain descriptors (the kernel checks them) and a valid off_t for the call.
    check(unsafe { libc::sendfile(fd, fileno, &mut offset, size) })
}

#[cfg(target_os = "macos")]
fn sendfile(fd: RawFd, fileno: RawFd, pos: i64, size: usize) -> io::Result<usize> {
    let mut len: libc::off_t = size as libc::off_t;
    // SAFETY: plain descriptors (the kernel checks them), a valid off_t for the length out,
    // no header/trailer vectors.
    let rc = unsafe { libc::sendfile(fileno, fd, pos, &mut len, std::ptr::null_mut(), 0) };
    // macOS reports bytes sent through `len` even when it fails with EAGAIN.
    if rc < 0 {
        let e = last_os_error();
        if len > 0 && is_would_block(&e) {
            return Ok(len as usize);
        }
        return Err(e);
    }
    Ok(len as usize)
}

// -- a Unix socket's path ----------------------------------------------------------------
// (a stale socket file removed before bind, the listener's file removed when it stops
// serving). Errors are the OSError os.stat / os.unlink raise, filename included.

/// `path` as the C string os.stat would pass (os.fsencode: str, bytes or PathLike).
fn c_path(path: &Bound<'_, PyAny>) -> PyResult<CString> {
    let encoded = path.py().import("os")?.call_method1("fsencode", (path,))?;
    let bytes = encoded.cast::<PyBytes>()?.as_bytes();
    CString::new(OsStr::from_bytes(bytes).as_bytes())
        .map_err(|_| pyo3::exceptions::PyValueError::new_err("embedded null byte"))
}

fn path_error(path: &Bound<'_, PyAny>, e: io::Error) -> PyErr {
    match e.raw_os_error() {
        Some(code) => PyOSError::new_err((code, strerror(code), path.clone().unbind())),
        None => PyOSError::new_err(e.to_string()),
    }
}

fn stat(path: &Bound<'_, PyAny>, c: &CString) -> PyResult<libc::stat> {
    // SAFETY: an all-zero `stat` is a valid value of that plain C struct.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: c is a NUL-terminated string and st a valid out-pointer for the call.
    if unsafe { libc::stat(c.as_ptr(), &mut st) } != 0 {
        return Err(path_error(path, last_os_error()));
    }
    Ok(st)
}

fn unlink(path: &Bound<'_, PyAny>, c: &CString) -> PyResult<()> {
    // SAFETY: c is a NUL-terminated string.
    if unsafe { libc::unlink(c.as_ptr()) } != 0 {
        return Err(path_error(path, last_os_error()));
    }
    Ok(())
}

/// Removes `path` if it is a socket (left by an earlier server); FileNotFoundError if
/// there is nothing there.
#[pyfunction]
pub(crate) fn remove_stale_socket(path: &Bound<'_, PyAny>) -> PyResult<()> {
    let c = c_path(path)?;
    if stat(path, &c)?.st_mode & libc::S_IFMT == libc::S_IFSOCK {
        unlink(path, &c)?;
    }
    Ok(())
}

/// The inode of `path` (os.stat(path).st_ino).
#[pyfunction]
pub(crate) fn path_inode(path: &Bound<'_, PyAny>) -> PyResult<u64> {
    Ok(stat(path, &c_path(path)?)?.st_ino as u64)
}

/// Removes `path` only if it is still the file with `inode` (not replaced meanwhile).
#[pyfunction]
pub(crate) fn unlink_if_inode(path: &Bound<'_, PyAny>, inode: u64) -> PyResult<()> {
    let c = c_path(path)?;
    if stat(path, &c)?.st_ino as u64 == inode {
        unlink(path, &c)?;
    }
    Ok(())
}
