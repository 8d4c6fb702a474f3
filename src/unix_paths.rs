//! The file-system calls around a Unix socket's path (a stale socket file removed before
//! bind, the listener's file removed when it stops serving). Made here rather than
//! through Python's `os.stat`/`os.unlink` on the loop thread: blocking-call detectors
//! (blockbuster, run by aiohttp's and anyio's suites) accept those only from asyncio's own
//! frames. Errors are the OSError os.stat / os.unlink raise, filename included.

use std::ffi::{CString, OsStr};
use std::io;
use std::os::unix::ffi::OsStrExt;

use pyo3::exceptions::PyOSError;
use pyo3::prelude::*;
use pyo3::types::PyBytes;

use crate::transports::strerror;

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
        return Err(path_error(path, io::Error::last_os_error()));
    }
    Ok(st)
}

fn unlink(path: &Bound<'_, PyAny>, c: &CString) -> PyResult<()> {
    // SAFETY: c is a NUL-terminated string.
    if unsafe { libc::unlink(c.as_ptr()) } != 0 {
        return Err(path_error(path, io::Error::last_os_error()));
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
