//! Native transports: what runs per packet. Each kind is one file; this one holds what
//! they share — borrowed views of Python bytes-like objects, the write buffer, and the
//! link to `ferroloop._transports` (the Python side: facades that are real
//! `asyncio.Transport` instances, error reporting). A transport sees its loop only as a
//! `LoopBase` (loop_base.rs), and its readiness arrives as an `IoRef` entry (ready.rs).

pub(crate) mod datagram;
pub(crate) mod pipe;
pub(crate) mod socket;
pub(crate) mod stream;

use std::collections::VecDeque;
use std::io;
use std::mem::MaybeUninit;
use std::os::fd::RawFd;

use pyo3::exceptions::PyTypeError;
use pyo3::ffi;
use pyo3::gc::PyVisit;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBytes, PyModule, PyTuple};
use pyo3::PyTraverseError;

use crate::handles::is_fatal_to_loop;
use crate::loop_base::LoopBase;
use crate::os::{is_refused, last_os_error, SEND_FLAGS};

/// How many buffered chunks one vectored send may carry (Linux's and macOS's IOV_MAX).
const MAX_IOV: usize = 1024;

/// asyncio's default high-water mark of a transport's write buffer (the low one is a
/// quarter of it).
pub(crate) const DEFAULT_HIGH_WATER: usize = 64 * 1024;

/// asyncio.constants.LOG_THRESHOLD_FOR_CONNLOST_WRITES: writes after the connection was
/// lost are dropped, with a warning from this many on.
pub(crate) const LOG_THRESHOLD_FOR_CONNLOST_WRITES: u32 = 5;

/// asyncio's `_set_write_buffer_limits` (and `sslproto.add_flowcontrol_defaults`) rule and
/// message; `default_high` when neither mark is given.
pub(crate) fn water_marks(high: Option<i64>, low: Option<i64>, default_high: usize) -> PyResult<(usize, usize)> {
    let high = match (high, low) {
        (Some(h), _) => h,
        (None, Some(l)) => 4 * l,
        (None, None) => default_high as i64,
    };
    let low = low.unwrap_or(high.div_euclid(4)); // Python's high // 4, negatives included
    if !(high >= low && low >= 0) {
        return Err(pyo3::exceptions::PyValueError::new_err(format!(
            "high ({high}) must be >= low ({low}) must be >= 0"
        )));
    }
    Ok((high as usize, low as usize))
}

/// How received data reaches a protocol (a stream transport's, or the app protocol above
/// TLS): its bound methods, looked up once per `set_protocol`.
pub(crate) enum Receiver {
    Data(Py<PyAny>),
    Buffered { get_buffer: Py<PyAny>, buffer_updated: Py<PyAny> },
}

impl Receiver {
    /// A stream transport's rule (asyncio's `_SelectorSocketTransport.set_protocol`): a
    /// `BufferedProtocol` gets buffered reads, anything else `data_received`.
    pub(crate) fn for_protocol(protocol: &Bound<'_, PyAny>) -> PyResult<Receiver> {
        let py = protocol.py();
        let buffered = py_side(py)?.getattr(intern!(py, "BufferedProtocol"))?;
        if protocol.is_instance(&buffered)? {
            Ok(Receiver::Buffered {
                get_buffer: protocol.getattr(intern!(py, "get_buffer"))?.unbind(),
                buffer_updated: protocol.getattr(intern!(py, "buffer_updated"))?.unbind(),
            })
        } else {
            Ok(Receiver::Data(protocol.getattr(intern!(py, "data_received"))?.unbind()))
        }
    }

    pub(crate) fn clone_ref(&self, py: Python<'_>) -> Receiver {
        match self {
            Receiver::Data(f) => Receiver::Data(f.clone_ref(py)),
            Receiver::Buffered { get_buffer, buffer_updated } => Receiver::Buffered {
                get_buffer: get_buffer.clone_ref(py),
                buffer_updated: buffer_updated.clone_ref(py),
            },
        }
    }

    pub(crate) fn visit(&self, visit: &PyVisit<'_>) -> Result<(), PyTraverseError> {
        match self {
            Receiver::Data(f) => visit.call(f),
            Receiver::Buffered { get_buffer, buffer_updated } => {
                visit.call(get_buffer)?;
                visit.call(buffer_updated)
            }
        }
    }
}

/// `ferroloop._transports`: facades, error reports, logging.
pub(crate) fn py_side(py: Python<'_>) -> PyResult<&Bound<'_, PyModule>> {
    static MODULE: PyOnceLock<Py<PyModule>> = PyOnceLock::new();
    MODULE.get_or_try_init(py, || py.import("ferroloop._transports").map(Bound::unbind)).map(|m| m.bind(py))
}

/// Where a transport is in its life: asyncio's `_closing` and `_conn_lost` (a counter it
/// also uses as a flag) as one state.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Life {
    /// Made: `connection_made` is queued, reading starts after it (`_start_reading`).
    Made,
    /// Reading (unless paused), writing.
    Open,
    /// `close()` was called: what is buffered still drains, then connection_lost.
    Closing,
    /// `connection_lost` is scheduled or ran: nothing is read or sent any more.
    Lost,
}

/// The state every native transport has (uvloop's basetransport, asyncio's
/// `_SelectorTransport`): its objects, its registration, its life, flow control.
pub(crate) struct Base {
    pub(crate) protocol: Option<Py<PyAny>>,
    pub(crate) facade: Option<Py<PyAny>>,
    pub(crate) sock: Option<Py<PyAny>>,
    /// Copied at creation: protocol callbacks for IO run in it.
    pub(crate) context: Py<PyAny>,
    /// The poller's key while registered.
    pub(crate) key: Option<usize>,
    pub(crate) life: Life,
    /// Writes dropped while lost or (a write pipe) closing: asyncio counts them in
    /// `_conn_lost` and warns from LOG_THRESHOLD_FOR_CONNLOST_WRITES on.
    lost_writes: u32,
    /// The write buffer's marks, and whether the protocol was told to pause writing.
    pub(crate) high: usize,
    pub(crate) low: usize,
    protocol_paused: bool,
    /// A readable edge not yet consumed by a read that came up short.
    pub(crate) readable: bool,
}

impl Base {
    pub(crate) fn new(
        py: Python<'_>,
        facade: &Bound<'_, PyAny>,
        sock: &Bound<'_, PyAny>,
        protocol: &Bound<'_, PyAny>,
    ) -> PyResult<Base> {
        Ok(Base {
            protocol: Some(protocol.clone().unbind()),
            facade: Some(facade.clone().unbind()),
            sock: Some(sock.clone().unbind()),
            context: crate::handles::copy_context(py)?,
            key: None,
            life: Life::Made,
            lost_writes: 0,
            high: DEFAULT_HIGH_WATER,
            low: DEFAULT_HIGH_WATER / 4,
            protocol_paused: false,
            readable: false,
        })
    }

    /// asyncio's `is_closing()`.
    pub(crate) fn is_closing(&self) -> bool {
        matches!(self.life, Life::Closing | Life::Lost)
    }

    pub(crate) fn is_lost(&self) -> bool {
        self.life == Life::Lost
    }

    /// `_start_reading`: a transport not closed meanwhile is open now.
    pub(crate) fn start(&mut self) {
        if self.life == Life::Made {
            self.life = Life::Open;
        }
    }

    /// `close()`: false if it was already closing.
    pub(crate) fn close(&mut self) -> bool {
        if self.is_closing() {
            return false;
        }
        self.life = Life::Closing;
        true
    }

    /// The connection is lost (connection_lost is to be scheduled): false if it already was.
    pub(crate) fn lose(&mut self) -> bool {
        if self.is_lost() {
            return false;
        }
        self.life = Life::Lost;
        true
    }

    /// A write that is dropped: counted as asyncio counts it in `_conn_lost` (1 once the
    /// connection is lost, plus one per dropped write); true when it is to be warned about.
    /// Only the count changes: a closing write pipe that drops a write still flushes what it
    /// holds and then closes, as asyncio's `_write_ready` does.
    pub(crate) fn drop_write(&mut self) -> bool {
        let count = u32::from(self.is_lost()) + self.lost_writes;
        self.lost_writes += 1;
        count >= LOG_THRESHOLD_FOR_CONNLOST_WRITES
    }

    /// Flow control after the buffer grew to `size`: the protocol to tell `pause_writing`.
    pub(crate) fn pause_due(&mut self, py: Python<'_>, size: usize) -> Option<Py<PyAny>> {
        if size <= self.high || self.protocol_paused {
            return None;
        }
        self.protocol_paused = true;
        self.protocol.as_ref().map(|p| p.clone_ref(py))
    }

    /// Flow control after the buffer shrank to `size`: the protocol to tell `resume_writing`.
    pub(crate) fn resume_due(&mut self, py: Python<'_>, size: usize) -> Option<Py<PyAny>> {
        if !self.protocol_paused || size > self.low {
            return None;
        }
        self.protocol_paused = false;
        self.protocol.as_ref().map(|p| p.clone_ref(py))
    }

    pub(crate) fn facade_or_none(&self, py: Python<'_>) -> Py<PyAny> {
        self.facade.as_ref().map_or_else(|| py.None(), |f| f.clone_ref(py))
    }

    pub(crate) fn protocol_or_none(&self, py: Python<'_>) -> Py<PyAny> {
        self.protocol.as_ref().map_or_else(|| py.None(), |p| p.clone_ref(py))
    }

    pub(crate) fn visit(&self, visit: &PyVisit<'_>) -> Result<(), PyTraverseError> {
        visit.call(&self.protocol)?;
        visit.call(&self.facade)?;
        visit.call(&self.sock)?;
        visit.call(&self.context)
    }
}

/// `pause_writing`/`resume_writing`; their errors go to the exception handler.
pub(crate) fn call_flow_control(
    py: Python<'_>,
    r#loop: &Py<LoopBase>,
    facade: Py<PyAny>,
    protocol: &Py<PyAny>,
    method: &str,
) -> PyResult<()> {
    if let Err(err) = protocol.bind(py).call_method0(method) {
        if is_fatal_to_loop(py, &err) {
            return Err(err);
        }
        py_side(py)?.call_method1(
            intern!(py, "flow_control_failed"),
            (r#loop.clone_ref(py), facade, protocol, err.into_value(py), method),
        )?;
    }
    Ok(())
}

/// asyncio's `_fatal_error` report: OSErrors (a peer gone) only in debug logs (read pipes
/// keep quiet only about EIO, `quiet`), others to the exception handler.
pub(crate) fn report_fatal(
    py: Python<'_>,
    r#loop: &Py<LoopBase>,
    parts: (Py<PyAny>, Py<PyAny>),
    exc: &Bound<'_, PyAny>,
    message: &str,
    quiet: &str,
) -> PyResult<()> {
    let (facade, protocol) = parts;
    py_side(py)?
        .call_method1(intern!(py, "fatal_error"), (r#loop.clone_ref(py), facade, protocol, exc, message, quiet))?;
    Ok(())
}

/// The fd a new transport is made over: the loop must be open, the file object's
/// `fileno()` valid.
pub(crate) fn open_fd(r#loop: &Bound<'_, LoopBase>, sock: &Bound<'_, PyAny>) -> PyResult<RawFd> {
    r#loop.get().check_open()?;
    let fd: RawFd = sock.call_method0(intern!(sock.py(), "fileno"))?.extract()?;
    if fd < 0 {
        return Err(pyo3::exceptions::PyValueError::new_err(format!("Invalid file descriptor: {fd}")));
    }
    Ok(fd)
}

/// `loop.call_soon(transport._call_connection_lost, exc)`.
pub(crate) fn schedule_connection_lost(
    transport: &Bound<'_, PyAny>,
    r#loop: &Py<LoopBase>,
    exc: Option<Py<PyAny>>,
) -> PyResult<()> {
    let py = transport.py();
    let callback = transport.getattr(intern!(py, "_call_connection_lost"))?;
    let exc = exc.unwrap_or_else(|| py.None());
    LoopBase::call_soon_native(r#loop.bind(py), callback, PyTuple::new(py, [exc])?, None)
}

/// The end every transport shares, once: forget the fd (before it is closed, so a reused
/// number is never confused with ours), `protocol.connection_lost(exc)`, close the socket.
pub(crate) fn finish(
    py: Python<'_>,
    r#loop: &LoopBase,
    registration: (Option<usize>, RawFd),
    ends: (Option<Py<PyAny>>, Option<Py<PyAny>>),
    exc: Bound<'_, PyAny>,
) -> PyResult<()> {
    let ((key, fd), (protocol, sock)) = (registration, ends);
    if let Some(key) = key {
        r#loop.deregister(py, key, fd)?;
    }
    let lost = match &protocol {
        Some(p) => p.bind(py).call_method1(intern!(py, "connection_lost"), (exc,)).map(drop),
        None => Ok(()),
    };
    let closed = match &sock {
        Some(s) => s.bind(py).call_method0(intern!(py, "close")).map(drop),
        None => Ok(()),
    };
    drop((protocol, sock));
    lost.and(closed)
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
            Ok(b) if data.get_type().is(data.py().get_type::<PyBytes>()) => (b.clone().unbind(), offset),
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

/// What asyncio does when a transport is born, in its order: `connection_made`, then
/// reading starts, then the creator's waiter is woken — each in a later callback, so the
/// protocol sees `connection_made` before any data.
pub(crate) fn schedule_start(
    r#loop: &Bound<'_, LoopBase>,
    protocol: &Bound<'_, PyAny>,
    facade: &Bound<'_, PyAny>,
    transport: &Bound<'_, PyAny>,
    waiter: Option<&Bound<'_, PyAny>>,
) -> PyResult<()> {
    let py = r#loop.py();
    LoopBase::call_soon_native(
        r#loop,
        protocol.getattr(intern!(py, "connection_made"))?,
        PyTuple::new(py, [facade])?,
        None,
    )?;
    LoopBase::call_soon_native(r#loop, transport.getattr(intern!(py, "_start_reading"))?, PyTuple::empty(py), None)?;
    if let Some(waiter) = waiter {
        let setter = py_side(py)?.getattr(intern!(py, "set_result_unless_done"))?;
        LoopBase::call_soon_native(
            r#loop,
            setter,
            PyTuple::new(py, [waiter.clone(), py.None().into_bound(py)])?,
            None,
        )?;
    }
    Ok(())
}
