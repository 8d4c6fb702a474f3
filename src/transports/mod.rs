//! Native transports: what runs per packet. Each kind is one file; this one holds what
//! they share — readiness bits, borrowed views of Python bytes-like objects, the write
//! buffer, the raw socket syscalls, and the link to `ferroloop._transports` (the Python
//! side: facades that are real `asyncio.Transport` instances, error reporting).

pub(crate) mod datagram;
pub(crate) mod stream;

use std::collections::VecDeque;
use std::io;
use std::mem::MaybeUninit;
use std::os::fd::RawFd;

use pyo3::exceptions::PyTypeError;
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::intern;
use pyo3::types::{PyBytes, PyModule, PyTuple};

use crate::event_loop::CoreLoop;

pub(crate) type Readiness = u8;
pub(crate) const READ: Readiness = 1;
pub(crate) const WRITE: Readiness = 2;
/// The peer closed its side (or the socket has an error): a read will not block even
/// after a short read drained the data before it.
pub(crate) const HUP: Readiness = 4;

#[cfg(any(target_os = "linux", target_os = "android"))]
pub(crate) const SEND_FLAGS: libc::c_int = libc::MSG_NOSIGNAL;
#[cfg(not(any(target_os = "linux", target_os = "android")))]
pub(crate) const SEND_FLAGS: libc::c_int = 0;

/// How many buffered chunks one vectored send may carry (Linux's and macOS's IOV_MAX).
const MAX_IOV: usize = 1024;

/// `ferroloop._transports`: facades, error reports, logging.
pub(crate) fn py_side(py: Python<'_>) -> PyResult<&Bound<'_, PyModule>> {
    static MODULE: PyOnceLock<Py<PyModule>> = PyOnceLock::new();
    MODULE
        .get_or_try_init(py, || py.import("ferroloop._transports").map(Bound::unbind))
        .map(|m| m.bind(py))
}

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
        Some(code) => pyo3::exceptions::PyOSError::new_err((code, strerror(code))),
        None => pyo3::exceptions::PyOSError::new_err(e.to_string()),
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

pub(crate) fn recv(fd: RawFd, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: buf is a valid writable region of buf.len() bytes for the duration of the call.
    let n = unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), 0) };
    if n < 0 {
        Err(last_os_error())
    } else {
        Ok(n as usize)
    }
}

pub(crate) fn read(fd: RawFd, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: as recv.
    let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
    if n < 0 {
        Err(last_os_error())
    } else {
        Ok(n as usize)
    }
}

pub(crate) fn write(fd: RawFd, data: &[u8]) -> io::Result<usize> {
    // SAFETY: as send.
    let n = unsafe { libc::write(fd, data.as_ptr().cast(), data.len()) };
    if n < 0 {
        Err(last_os_error())
    } else {
        Ok(n as usize)
    }
}

pub(crate) fn send(fd: RawFd, data: &[u8]) -> io::Result<usize> {
    // SAFETY: data is a valid readable region for the duration of the call.
    let n = unsafe { libc::send(fd, data.as_ptr().cast(), data.len(), SEND_FLAGS) };
    if n < 0 {
        Err(last_os_error())
    } else {
        Ok(n as usize)
    }
}

/// A contiguous read-only view of a bytes-like object, valid while `self` lives.
pub(crate) struct ByteView {
    ptr: *const u8,
    len: usize,
    view: Option<Box<ffi::Py_buffer>>,
}

impl ByteView {
    /// bytes, bytearray, memoryview (and anything with the buffer protocol).
    pub(crate) fn new(obj: &Bound<'_, PyAny>) -> PyResult<Self> {
        // SAFETY: PyBytes_Check/AS_STRING/GET_SIZE on a live object; for other objects
        // PyObject_GetBuffer fills `view`, released in Drop.
        unsafe {
            if ffi::PyBytes_Check(obj.as_ptr()) != 0 {
                return Ok(ByteView {
                    ptr: ffi::PyBytes_AS_STRING(obj.as_ptr()) as *const u8,
                    len: ffi::PyBytes_Size(obj.as_ptr()) as usize,
                    view: None,
                });
            }
            let mut view: Box<ffi::Py_buffer> = Box::new(std::mem::zeroed());
            if ffi::PyObject_GetBuffer(obj.as_ptr(), &mut *view, ffi::PyBUF_SIMPLE) != 0 {
                return Err(PyErr::fetch(obj.py()));
            }
            Ok(ByteView { ptr: view.buf as *const u8, len: view.len as usize, view: Some(view) })
        }
    }

    pub(crate) fn as_slice(&self) -> &[u8] {
        if self.len == 0 {
            return &[];
        }
        // SAFETY: ptr/len describe memory kept alive by the object (bytes) or the buffer view.
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }
}

impl Drop for ByteView {
    fn drop(&mut self) {
        if let Some(view) = self.view.as_mut() {
            // SAFETY: the view was filled by a successful PyObject_GetBuffer; the GIL is held
            // wherever a ByteView lives (it is created and dropped inside pymethods).
            unsafe { ffi::PyBuffer_Release(&mut **view) };
        }
    }
}

/// The running Python's minor version (3.x), asked once: a few behaviours follow the
/// asyncio of the Python that runs.
pub(crate) fn python_minor(py: Python<'_>) -> u8 {
    static MINOR: std::sync::OnceLock<u8> = std::sync::OnceLock::new();
    *MINOR.get_or_init(|| py.version_info().minor)
}

/// asyncio's check for write()/sendto() data.
pub(crate) fn check_bytes_like(data: &Bound<'_, PyAny>, what: &str) -> PyResult<()> {
    // SAFETY: type checks on a live object.
    let ok = unsafe {
        ffi::PyBytes_Check(data.as_ptr()) != 0
            || ffi::PyByteArray_Check(data.as_ptr()) != 0
            || ffi::PyMemoryView_Check(data.as_ptr()) != 0
    };
    if ok {
        Ok(())
    } else {
        Err(PyTypeError::new_err(format!(
            "{what} argument must be a bytes-like object, not '{}'",
            data.get_type().name()?
        )))
    }
}

/// Unsent data: whole `bytes` objects kept by reference (no copy), other bytes-like
/// objects copied (they may be mutated after write() returns).
#[derive(Default)]
pub(crate) struct WriteBuffer {
    chunks: VecDeque<(Py<PyBytes>, usize)>,
    size: usize,
}

impl WriteBuffer {
    pub(crate) fn len(&self) -> usize {
        self.size
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.size == 0
    }

    /// Buffers `data[offset..]`.
    pub(crate) fn push(&mut self, data: &Bound<'_, PyAny>, view: &ByteView, offset: usize) {
        let rest = view.len() - offset;
        if rest == 0 {
            return;
        }
        let chunk = match data.cast::<PyBytes>() {
            Ok(b) if data.get_type().is(&data.py().get_type::<PyBytes>()) => (b.clone().unbind(), offset),
            _ => (PyBytes::new(data.py(), &view.as_slice()[offset..]).unbind(), 0),
        };
        self.chunks.push_back(chunk);
        self.size += rest;
    }

    /// Drops the first `n` bytes (they were sent).
    pub(crate) fn consume(&mut self, py: Python<'_>, mut n: usize) {
        self.size -= n;
        while n > 0 {
            let (chunk, off) = self.chunks.front_mut().expect("consume within size");
            let avail = chunk.bind(py).as_bytes().len() - *off;
            if n >= avail {
                n -= avail;
                self.chunks.pop_front();
            } else {
                *off += n;
                n = 0;
            }
        }
    }

    /// Empties the buffer; the chunks are returned so they are dropped by the caller.
    pub(crate) fn take(&mut self) -> VecDeque<(Py<PyBytes>, usize)> {
        self.size = 0;
        std::mem::take(&mut self.chunks)
    }

    /// Sends until the buffer is empty or the kernel refuses (EAGAIN). The fd is registered
    /// edge-triggered: a writable edge comes only after a refusal, so stopping earlier (one
    /// send of the head, or a short send) could leave data waiting for an edge that never
    /// comes. Invariant: a non-empty buffer means the last send was refused.
    pub(crate) fn send_all(&mut self, py: Python<'_>, fd: RawFd, pipe: bool) -> io::Result<()> {
        while !self.is_empty() {
            match self.send_head(py, fd, pipe) {
                Ok(0) => break, // no kernel answers 0 to a non-empty send; if one did, do not spin
                Ok(n) => self.consume(py, n),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if is_refused(&e) => break,
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// One vectored write of the head of the buffer (sendmsg for sockets, writev for
    /// pipes); returns bytes written.
    fn send_head(&self, py: Python<'_>, fd: RawFd, pipe: bool) -> io::Result<usize> {
        // Left uninitialised: only the first `cnt` entries are written and passed on.
        let mut iov = [const { MaybeUninit::<libc::iovec>::uninit() }; MAX_IOV];
        let mut cnt = 0;
        for ((chunk, off), slot) in self.chunks.iter().zip(iov.iter_mut()) {
            let bytes = &chunk.bind(py).as_bytes()[*off..];
            slot.write(libc::iovec { iov_base: bytes.as_ptr() as *mut libc::c_void, iov_len: bytes.len() });
            cnt += 1;
        }
        let iov = iov.as_mut_ptr().cast::<libc::iovec>();
        // SAFETY: the first `cnt` iovecs are initialised and point into bytes objects owned
        // by self.chunks, alive for the call; the kernel reads only those `cnt`.
        let n = unsafe {
            if pipe {
                libc::writev(fd, iov, cnt as libc::c_int)
            } else {
                let mut msg: libc::msghdr = std::mem::zeroed();
                msg.msg_iov = iov;
                msg.msg_iovlen = cnt as _;
                libc::sendmsg(fd, &msg, SEND_FLAGS)
            }
        };
        if n < 0 {
            Err(last_os_error())
        } else {
            Ok(n as usize)
        }
    }
}

/// Runs a closure inside a `contextvars.Context` entered through the C API.
pub(crate) fn in_context<R>(py: Python<'_>, ctx: &Py<PyAny>, f: impl FnOnce() -> PyResult<R>) -> PyResult<R> {
    // SAFETY: ctx is a live Context; Enter/Exit are balanced on every path below.
    unsafe {
        if ffi::PyContext_Enter(ctx.as_ptr()) < 0 {
            return Err(PyErr::fetch(py));
        }
    }
    let result = f();
    // SAFETY: balanced with the successful Enter above.
    let exit = unsafe { ffi::PyContext_Exit(ctx.as_ptr()) };
    if exit < 0 {
        let err = PyErr::fetch(py);
        return result.and(Err(err));
    }
    result
}

/// SystemExit and KeyboardInterrupt escape the loop; everything else is reported.
pub(crate) fn is_fatal_to_loop(py: Python<'_>, err: &PyErr) -> bool {
    err.is_instance_of::<pyo3::exceptions::PySystemExit>(py)
        || err.is_instance_of::<pyo3::exceptions::PyKeyboardInterrupt>(py)
}

/// What asyncio does when a transport is born, in its order: `connection_made`, then
/// reading starts, then the creator's waiter is woken — each in a later callback, so the
/// protocol sees `connection_made` before any data.
pub(crate) fn schedule_start(
    r#loop: &Bound<'_, CoreLoop>,
    protocol: &Bound<'_, PyAny>,
    facade: &Bound<'_, PyAny>,
    transport: &Bound<'_, PyAny>,
    waiter: Option<&Bound<'_, PyAny>>,
) -> PyResult<()> {
    let py = r#loop.py();
    CoreLoop::call_soon_native(r#loop, protocol.getattr(intern!(py, "connection_made"))?, PyTuple::new(py, [facade])?, None)?;
    CoreLoop::call_soon_native(r#loop, transport.getattr(intern!(py, "_start_reading"))?, PyTuple::empty(py), None)?;
    if let Some(waiter) = waiter {
        let setter = py_side(py)?.getattr(intern!(py, "set_result_unless_done"))?;
        CoreLoop::call_soon_native(r#loop, setter, PyTuple::new(py, [waiter.clone(), py.None().into_bound(py)])?, None)?;
    }
    Ok(())
}
