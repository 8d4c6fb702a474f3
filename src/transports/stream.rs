//! The stream engine: what asyncio's `_SelectorSocketTransport` and its Unix pipe
//! transports share, natively, for the three stream classes (socket.rs: TCP and Unix
//! stream sockets; pipe.rs: a pipe's read end, a pipe's write end). Each class holds a
//! `Stream` and is its `StreamKind`: the engine's code is generic over the kind, which
//! supplies the syscalls (read/write instead of recv/send), the messages, and the few
//! places where asyncio's pipe transports differ (EOF closes a read pipe; write_eof
//! closes a write pipe; a write pipe notices its reader going away).
//!
//! Reads go straight from the socket to the protocol (`data_received`, or `get_buffer` +
//! `buffer_updated` for a BufferedProtocol), inside the context copied when the transport
//! was made, as asyncio runs its reader handle. Writes try the socket first and buffer
//! only what it did not take; the buffer drains on writable edges with vectored sends,
//! until empty or refused (EAGAIN), since only a refusal arms the next edge.
//!
//! The fd is registered once, readable and writable, edge-triggered, so steady traffic makes
//! no `epoll_ctl` calls. Edges are remembered in `readable`: a read that fills the buffer
//! queues another read itself (more may be waiting and no new edge will come), and
//! `resume_reading` re-queues a read when an edge arrived while paused.
//!
//! The Python object the protocol sees is a facade (`ferroloop._transports`, an
//! `asyncio.Transport` subclass); the native class is its engine.

use std::os::fd::RawFd;

use pyo3::exceptions::PyRuntimeError;
use pyo3::ffi;
use pyo3::gc::PyVisit;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyTuple};
use pyo3::PyClass;
use pyo3::{intern, PyTraverseError};

use super::{
    check_bytes_like, in_context, py_side, python_minor, water_marks, Base, ByteView, Life, Receiver, WriteBuffer,
    DEFAULT_HIGH_WATER,
};
use crate::gil_cell::GilCell;
use crate::handles::is_fatal_to_loop;
use crate::loop_base::LoopBase;
use crate::os::{self, is_refused, is_would_block, os_error_value};
use crate::ready::{IoRef, IoSource, Readiness, Ready, HUP, READ};

/// Reads this large switch a transport to reading straight into `bytes` objects.
const DIRECT_READ_MIN: usize = 16 * 1024;
/// What one direct read takes: below the C allocator's mmap and trim thresholds, so the
/// allocation stays cheap (a 256 KiB one costs more than the copy it saves).
const READ_CHUNK: usize = 64 * 1024;

extern "C" {
    // CPython API (bytesobject.h), not exported by pyo3-ffi.
    fn _PyBytes_Resize(bytes: *mut *mut pyo3::ffi::PyObject, newsize: pyo3::ffi::Py_ssize_t) -> std::os::raw::c_int;
}

/// One read of up to READ_CHUNK bytes into a new bytes object, shrunk to what came.
fn read_direct<K: StreamKind>(
    py: Python<'_>,
    fd: RawFd,
) -> PyResult<std::io::Result<(usize, Option<Bound<'_, PyBytes>>)>> {
    // SAFETY: a fresh bytes object is ours alone until returned; we write at most its
    // length into it, and resize it (or release it) before anyone else sees it.
    unsafe {
        let mut obj = ffi::PyBytes_FromStringAndSize(std::ptr::null(), READ_CHUNK as ffi::Py_ssize_t);
        if obj.is_null() {
            return Err(PyErr::fetch(py));
        }
        let buf = std::slice::from_raw_parts_mut(ffi::PyBytes_AsString(obj) as *mut u8, READ_CHUNK);
        match K::read(fd, buf) {
            Err(e) => {
                ffi::Py_DECREF(obj);
                Ok(Err(e))
            }
            Ok(0) => {
                ffi::Py_DECREF(obj);
                Ok(Ok((0, None)))
            }
            Ok(n) => {
                if n < READ_CHUNK && _PyBytes_Resize(&mut obj, n as ffi::Py_ssize_t) < 0 {
                    return Err(PyErr::fetch(py)); // obj was freed by the failed resize
                }
                Ok(Ok((n, Some(Bound::from_owned_ptr(py, obj).cast_into_unchecked::<PyBytes>()))))
            }
        }
    }
}

/// What a stream transport's kind decides: its syscalls, its messages, and the places
/// where asyncio's pipe transports differ from its socket transport. Implemented by the
/// three native classes (socket.rs: `SocketTransport`; pipe.rs: `ReadPipeTransport`,
/// `WritePipeTransport`), each a `Stream` engine; the engine's code is generic over it,
/// so a kind is decided at compile time (no kind value is tested at run time).
pub(crate) trait StreamKind: IoSource + PyClass<Frozen = pyo3::pyclass::boolean_struct::True> + Sync {
    /// read(2)/write(2)/writev(2) rather than recv/send/sendmsg.
    const PIPE: bool;
    /// A read pipe: write() is refused.
    const READ_ONLY: bool = false;
    /// A write pipe: writes are dropped once it is closing (write_eof closes it).
    const WRITE_ONLY: bool = false;
    /// What asyncio's fatal-error report keeps quiet about: "oserror" (a peer gone is no
    /// bug) or "eio" (a read pipe's closed pty).
    const QUIET: &'static str = "oserror";
    const READ_ERROR: &'static str;
    const WRITE_ERROR: &'static str;
    /// The warning for writes after the connection was lost.
    const LOST_WRITE: &'static str;

    fn stream(&self) -> &Stream;

    /// IO readiness, inside the transport's context (`Stream::on_ready`).
    fn ready(slf: &Bound<'_, Self>, bits: Readiness) -> PyResult<()>;

    /// The peer's EOF was read: a socket's half-close (`Stream::eof_received`) by default.
    fn eof(slf: &Bound<'_, Self>) -> PyResult<()> {
        Stream::eof_received(slf)
    }

    /// `close()`: flush what is buffered, then connection_lost (`Stream::close`).
    fn close(slf: &Bound<'_, Self>) -> PyResult<()> {
        Stream::close(slf)
    }

    /// `write_eof()`: a socket's shutdown(SHUT_WR) once flushed (`Stream::shutdown`).
    fn write_eof(slf: &Bound<'_, Self>) -> PyResult<()> {
        Stream::shutdown(slf)
    }

    fn read(fd: RawFd, buf: &mut [u8]) -> std::io::Result<usize> {
        if Self::PIPE {
            os::read(fd, buf)
        } else {
            os::recv(fd, buf)
        }
    }

    fn write(fd: RawFd, data: &[u8]) -> std::io::Result<usize> {
        if Self::PIPE {
            os::write(fd, data)
        } else {
            os::send(fd, data)
        }
    }
}

/// A stream's state: the base every transport has, and what streams add.
struct State {
    base: Base,
    receiver: Option<Receiver>,
    server: Option<Py<PyAny>>,
    buf: WriteBuffer,
    eof_written: bool,
    /// pause_reading() (the protocol's own pause, not flow control of writes).
    paused: bool,
    read_eof: bool,
    /// The peer's FIN (or an error) was seen: a short read does not mean drained, the
    /// EOF is still to be read.
    hup: bool,
    /// Size of the last read: large ones switch to direct reads (`read_direct`).
    last_read: usize,
    empty_waiter: Option<Py<PyAny>>,
    /// A future resolved at the next writable edge (loop.sendfile waits on it after EAGAIN).
    writable_waiter: Option<Py<PyAny>>,
}

impl State {
    fn can_read(&self) -> bool {
        self.base.life == Life::Open && !self.paused && !self.read_eof
    }
}

/// The engine each stream transport class holds: its fd, its loop, its state.
pub(crate) struct Stream {
    fd: RawFd,
    loop_: Py<LoopBase>,
    st: GilCell<State>,
}

/// The receiver, or None when the protocol has no such methods (a write pipe's
/// BaseProtocol): then a read looks them up again and reports the AttributeError.
fn receiver_or_none(protocol: &Bound<'_, PyAny>) -> Option<Receiver> {
    Receiver::for_protocol(protocol).ok()
}

impl Stream {
    fn core_loop(&self) -> &LoopBase {
        self.loop_.get()
    }

    /// IO readiness from the poller (via the ready queue), handled by the kind inside the
    /// context copied when the transport was made, as asyncio runs its reader handle.
    pub(crate) fn on_ready<K: StreamKind>(slf: &Bound<'_, K>, bits: Readiness) -> PyResult<()> {
        let py = slf.py();
        let ctx = slf.get().stream().st.borrow(py)?.base.context.clone_ref(py);
        in_context(py, &ctx, || K::ready(slf, bits))
    }

    /// The reading side of readiness (a socket's or a read pipe's). Reads first, as
    /// asyncio queues the reader handle before the writer handle.
    pub(super) fn readable<K: StreamKind>(slf: &Bound<'_, K>, bits: Readiness) -> PyResult<()> {
        if bits & HUP != 0 {
            slf.get().stream().st.borrow_mut(slf.py())?.hup = true;
        }
        if bits & READ != 0 {
            Self::on_readable(slf)?;
        }
        Ok(())
    }

    /// A socket's writable edge: flush, and wake a sendfile waiting for room.
    pub(super) fn writable<K: StreamKind>(slf: &Bound<'_, K>) -> PyResult<()> {
        let py = slf.py();
        Self::flush(slf)?;
        let waiter = slf.get().stream().st.borrow_mut(py)?.writable_waiter.take();
        if let Some(w) = waiter {
            py_side(py)?.call_method1(intern!(py, "set_result_unless_done"), (w, py.None()))?;
        }
        Ok(())
    }

    /// A write pipe's reader closed: asyncio's `_UnixWritePipeTransport._read_ready`.
    pub(super) fn peer_closed<K: StreamKind>(slf: &Bound<'_, K>) -> PyResult<()> {
        let py = slf.py();
        let buffered = {
            let st = slf.get().stream().st.borrow(py)?;
            if st.base.is_lost() {
                return Ok(());
            }
            !st.buf.is_empty()
        };
        if slf.get().stream().core_loop().is_debug() {
            py_side(py)?.call_method1(intern!(py, "log_info"), ("%r was closed by peer", Self::facade(slf)?))?;
        }
        let exc = if buffered {
            Some(pyo3::exceptions::PyBrokenPipeError::new_err(()).into_value(py).into_any())
        } else {
            None
        };
        Self::force_close(slf, exc)
    }

    fn queue_read<K: StreamKind>(slf: &Bound<'_, K>) -> PyResult<()> {
        slf.get().stream().core_loop().push_ready(slf.py(), Ready::Io(IoRef::new(slf.clone().unbind()), READ))
    }

    fn on_readable<K: StreamKind>(slf: &Bound<'_, K>) -> PyResult<()> {
        let py = slf.py();
        let me = slf.get().stream();
        let receiver = {
            let mut st = me.st.borrow_mut(py)?;
            st.base.readable = true;
            if !st.can_read() {
                return Ok(());
            }
            match (&st.receiver, &st.base.protocol) {
                (Some(r), _) => Ok(r.clone_ref(py)),
                (None, Some(p)) => Err(p.clone_ref(py)),
                (None, None) => return Ok(()),
            }
        };
        let receiver = match receiver {
            Ok(r) => r,
            Err(protocol) => match Receiver::for_protocol(protocol.bind(py)) {
                Ok(r) => r,
                Err(err) => {
                    return Self::callback_failed(slf, err, "Fatal error: protocol.data_received() call failed.")
                }
            },
        };
        match receiver {
            Receiver::Data(data_received) => Self::read_data(slf, &data_received),
            Receiver::Buffered { get_buffer, buffer_updated } => Self::read_buffered(slf, &get_buffer, &buffer_updated),
        }
    }

    /// Records how a recv ended: short or failed reads consumed the edge. Returns whether
    /// another read must be queued (the buffer filled up, or an EOF waits behind the data).
    fn note_read(&self, py: Python<'_>, short: bool) -> PyResult<bool> {
        let mut st = self.st.borrow_mut(py)?;
        if short && !st.hup {
            st.base.readable = false;
            return Ok(false);
        }
        Ok(!short || st.hup)
    }

    /// The socket had nothing (more) to give: wait for the next edge.
    fn drained(&self, py: Python<'_>) -> PyResult<()> {
        self.st.borrow_mut(py)?.base.readable = false;
        Ok(())
    }

    fn read_data<K: StreamKind>(slf: &Bound<'_, K>, data_received: &Py<PyAny>) -> PyResult<()> {
        let py = slf.py();
        let me = slf.get().stream();
        let fd = me.fd;
        // Small reads land in the loop's scratch buffer and are copied into an exact-size
        // bytes; once a transport reads large chunks, it reads straight into a new bytes
        // and shrinks it (no copy of the data).
        let large = me.st.borrow(py)?.last_read >= DIRECT_READ_MIN;
        let result = if large {
            read_direct::<K>(py, fd)?.map(|(n, b)| (n, n == READ_CHUNK, b))
        } else {
            me.core_loop().with_read_buffer(py, |buf| {
                K::read(fd, buf).map(|n| (n, n == buf.len(), (n > 0).then(|| PyBytes::new(py, &buf[..n]))))
            })?
        };
        if let Ok((n, _, _)) = &result {
            me.st.borrow_mut(py)?.last_read = *n;
        }
        match result {
            Err(e) if is_would_block(&e) => me.drained(py),
            Err(e) => {
                me.drained(py)?;
                let exc = os_error_value(py, &e)?;
                Self::fatal_error(slf, &exc, K::READ_ERROR)
            }
            Ok((_, _, None)) => {
                me.drained(py)?;
                K::eof(slf)
            }
            Ok((_, full, Some(data))) => {
                if me.note_read(py, !full)? {
                    Self::queue_read(slf)?;
                }
                if let Err(err) = data_received.bind(py).call1((data,)) {
                    return Self::callback_failed(slf, err, "Fatal error: protocol.data_received() call failed.");
                }
                Ok(())
            }
        }
    }

    fn read_buffered<K: StreamKind>(
        slf: &Bound<'_, K>,
        get_buffer: &Py<PyAny>,
        buffer_updated: &Py<PyAny>,
    ) -> PyResult<()> {
        let py = slf.py();
        let me = slf.get().stream();
        let buf = match get_buffer.bind(py).call1((-1,)) {
            Ok(b) => b,
            Err(err) => return Self::callback_failed(slf, err, "Fatal error: protocol.get_buffer() call failed."),
        };
        let received = {
            let mut view = match WritableView::new(&buf) {
                Ok(v) => v,
                Err(err) => return Self::callback_failed(slf, err, "Fatal error: protocol.get_buffer() call failed."),
            };
            if view.len() == 0 {
                let err = PyRuntimeError::new_err("get_buffer() returned an empty buffer");
                return Self::callback_failed(slf, err, "Fatal error: protocol.get_buffer() call failed.");
            }
            let cap = view.len();
            K::read(me.fd, view.as_mut_slice()).map(|n| (n, n == cap))
        };
        drop(buf);
        match received {
            Err(e) if is_would_block(&e) => me.drained(py),
            Err(e) => {
                me.drained(py)?;
                let exc = os_error_value(py, &e)?;
                Self::fatal_error(slf, &exc, K::READ_ERROR)
            }
            Ok((0, _)) => {
                me.drained(py)?;
                K::eof(slf)
            }
            Ok((n, full)) => {
                if me.note_read(py, !full)? {
                    Self::queue_read(slf)?;
                }
                if let Err(err) = buffer_updated.bind(py).call1((n,)) {
                    return Self::callback_failed(slf, err, "Fatal error: protocol.buffer_updated() call failed.");
                }
                Ok(())
            }
        }
    }

    /// The peer's EOF on a socket: `eof_received`, and a close unless it asks to stay open
    /// (half-close).
    pub(super) fn eof_received<K: StreamKind>(slf: &Bound<'_, K>) -> PyResult<()> {
        let py = slf.py();
        let protocol = {
            let mut st = slf.get().stream().st.borrow_mut(py)?;
            st.read_eof = true;
            match &st.base.protocol {
                Some(p) => p.clone_ref(py),
                None => return Ok(()),
            }
        };
        if slf.get().stream().core_loop().is_debug() {
            py_side(py)?.call_method1(intern!(py, "log_debug"), ("%r received EOF", Self::facade(slf)?))?;
        }
        match protocol.bind(py).call_method0(intern!(py, "eof_received")) {
            Err(err) => Self::callback_failed(slf, err, "Fatal error: protocol.eof_received() call failed."),
            Ok(keep_open) => {
                if !keep_open.is_truthy()? {
                    K::close(slf)?;
                }
                Ok(())
            }
        }
    }

    /// The writer of a read pipe closed: eof_received and connection_lost follow on the
    /// next iteration, and the transport is closed (no half-close for pipes).
    pub(super) fn pipe_eof<K: StreamKind>(slf: &Bound<'_, K>) -> PyResult<()> {
        let py = slf.py();
        let protocol = {
            let mut st = slf.get().stream().st.borrow_mut(py)?;
            st.read_eof = true;
            if !st.base.lose() {
                return Ok(());
            }
            st.base.protocol.as_ref().map(|p| p.clone_ref(py))
        };
        if slf.get().stream().core_loop().is_debug() {
            py_side(py)?.call_method1(intern!(py, "log_info"), ("%r was closed by peer", Self::facade(slf)?))?;
        }
        if let Some(protocol) = protocol {
            let eof = protocol.bind(py).getattr(intern!(py, "eof_received"))?;
            LoopBase::call_soon_native(slf.get().stream().loop_.bind(py), eof, PyTuple::empty(py), None)?;
        }
        super::schedule_connection_lost(slf.as_any(), &slf.get().stream().loop_, None)
    }

    /// A protocol callback raised: SystemExit/KeyboardInterrupt leave the loop, anything
    /// else is a fatal error of this transport.
    fn callback_failed<K: StreamKind>(slf: &Bound<'_, K>, err: PyErr, message: &str) -> PyResult<()> {
        let py = slf.py();
        if is_fatal_to_loop(py, &err) {
            return Err(err);
        }
        let exc = err.into_value(py).into_bound(py).into_any();
        Self::fatal_error(slf, &exc, message)
    }

    fn facade<K: StreamKind>(slf: &Bound<'_, K>) -> PyResult<Py<PyAny>> {
        Ok(slf.get().stream().st.borrow(slf.py())?.base.facade_or_none(slf.py()))
    }

    /// asyncio's `_fatal_error`: report (OSErrors only in debug mode), then force-close.
    pub(super) fn fatal_error<K: StreamKind>(
        slf: &Bound<'_, K>,
        exc: &Bound<'_, PyAny>,
        message: &str,
    ) -> PyResult<()> {
        let py = slf.py();
        let parts = {
            let st = slf.get().stream().st.borrow(py)?;
            (st.base.facade_or_none(py), st.base.protocol_or_none(py))
        };
        // asyncio's read pipes keep quiet only about EIO (a closed pty); the rest about
        // every OSError (a peer that went away is not a bug).
        super::report_fatal(py, &slf.get().stream().loop_, parts, exc, message, K::QUIET)?;
        Self::force_close(slf, Some(exc.clone().unbind()))
    }

    pub(super) fn force_close<K: StreamKind>(slf: &Bound<'_, K>, exc: Option<Py<PyAny>>) -> PyResult<()> {
        let py = slf.py();
        let dropped = {
            let mut st = slf.get().stream().st.borrow_mut(py)?;
            if !st.base.lose() {
                return Ok(());
            }
            st.buf.take()
        };
        drop(dropped);
        super::schedule_connection_lost(slf.as_any(), &slf.get().stream().loop_, exc)
    }

    /// `close()`: once the buffer is flushed, connection_lost.
    pub(super) fn close<K: StreamKind>(slf: &Bound<'_, K>) -> PyResult<()> {
        let py = slf.py();
        {
            let mut st = slf.get().stream().st.borrow_mut(py)?;
            if !st.base.close() {
                return Ok(());
            }
            if !st.buf.is_empty() {
                return Ok(()); // the flush finishes the close
            }
            st.base.lose();
        }
        super::schedule_connection_lost(slf.as_any(), &slf.get().stream().loop_, None)
    }

    /// Sends what is buffered (writable edge, or writelines). Finishes a pending close or
    /// write_eof once the buffer is empty.
    pub(super) fn flush<K: StreamKind>(slf: &Bound<'_, K>) -> PyResult<()> {
        let py = slf.py();
        let me = slf.get().stream();
        let resume = {
            let mut st = me.st.borrow_mut(py)?;
            if st.buf.is_empty() || st.base.is_lost() {
                return Ok(());
            }
            match st.buf.send_all(py, me.fd, K::PIPE) {
                Ok(()) => {}
                Err(e) => {
                    let dropped = st.buf.take();
                    let waiter = st.empty_waiter.as_ref().map(|w| w.clone_ref(py));
                    drop(st);
                    drop(dropped);
                    let exc = os_error_value(py, &e)?;
                    Self::fatal_error(slf, &exc, K::WRITE_ERROR)?;
                    if let Some(w) = waiter {
                        py_side(py)?.call_method1(intern!(py, "set_exception_unless_done"), (w, exc))?;
                    }
                    return Ok(());
                }
            }
            let size = st.buf.len();
            st.base.resume_due(py, size)
        };
        if let Some(protocol) = resume {
            Self::call_flow_control(slf, &protocol, "resume_writing")?;
        }
        let (closing, eof, waiter) = {
            let mut st = me.st.borrow_mut(py)?;
            if !st.buf.is_empty() {
                return Ok(());
            }
            let closing = st.base.life == Life::Closing;
            if closing {
                st.base.lose();
            }
            (closing, st.eof_written, st.empty_waiter.as_ref().map(|w| w.clone_ref(py)))
        };
        if let Some(w) = waiter {
            py_side(py)?.call_method1(intern!(py, "set_result_unless_done"), (w, py.None()))?;
        }
        if closing {
            Self::call_connection_lost(slf, py.None().into_bound(py))?;
        } else if eof && !K::PIPE {
            // Our live fd (the transport is not lost); as asyncio, an error here is not
            // reported.
            let _ = os::shutdown_write(me.fd);
        }
        Ok(())
    }

    fn call_flow_control<K: StreamKind>(slf: &Bound<'_, K>, protocol: &Py<PyAny>, method: &str) -> PyResult<()> {
        super::call_flow_control(slf.py(), &slf.get().stream().loop_, Self::facade(slf)?, protocol, method)
    }

    fn maybe_pause<K: StreamKind>(slf: &Bound<'_, K>) -> PyResult<()> {
        let py = slf.py();
        let protocol = {
            let mut st = slf.get().stream().st.borrow_mut(py)?;
            let size = st.buf.len();
            st.base.pause_due(py, size)
        };
        match protocol {
            Some(p) => Self::call_flow_control(slf, &p, "pause_writing"),
            None => Ok(()),
        }
    }

    /// The one place the transport ends: protocol.connection_lost, then the socket closes.
    pub(super) fn call_connection_lost<K: StreamKind>(slf: &Bound<'_, K>, exc: Bound<'_, PyAny>) -> PyResult<()> {
        let py = slf.py();
        let me = slf.get().stream();
        let (protocol, sock, server, facade, key, receiver, waiter, writable) = {
            let mut st = me.st.borrow_mut(py)?;
            (
                st.base.protocol.take(),
                st.base.sock.take(),
                st.server.take(),
                st.base.facade.take(),
                st.base.key.take(),
                st.receiver.take(),
                st.empty_waiter.take(),
                st.writable_waiter.take(),
            )
        };
        drop(waiter);
        drop(receiver);
        if let Some(w) = writable {
            // a sendfile waiting for room: the connection is gone
            let exc = pyo3::exceptions::PyConnectionError::new_err("Connection lost").into_value(py);
            py_side(py)?.call_method1(intern!(py, "set_exception_unless_done"), (w, exc))?;
        }
        let ended = super::finish(py, me.core_loop(), (key, me.fd), (protocol, sock), exc);
        let detached = match (&server, &facade) {
            (Some(server), Some(facade)) => server.bind(py).call_method1(intern!(py, "_detach"), (facade,)).map(drop),
            _ => Ok(()),
        };
        drop((server, facade));
        ended.and(detached)
    }
}

/// A writable view of a `get_buffer()` result (bytearray, memoryview, ...).
struct WritableView {
    view: Box<ffi::Py_buffer>,
}

impl WritableView {
    fn new(obj: &Bound<'_, PyAny>) -> PyResult<Self> {
        // SAFETY: PyObject_GetBuffer fills the view on success; released in Drop.
        unsafe {
            let mut view: Box<ffi::Py_buffer> = Box::new(std::mem::zeroed());
            if ffi::PyObject_GetBuffer(obj.as_ptr(), &mut *view, ffi::PyBUF_WRITABLE) != 0 {
                return Err(PyErr::fetch(obj.py()));
            }
            Ok(WritableView { view })
        }
    }

    fn len(&self) -> usize {
        self.view.len as usize
    }

    fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: a writable buffer of `len` bytes, exported to us until Drop.
        unsafe { std::slice::from_raw_parts_mut(self.view.buf as *mut u8, self.view.len as usize) }
    }
}

impl Drop for WritableView {
    fn drop(&mut self) {
        // SAFETY: filled by a successful PyObject_GetBuffer; the GIL is held here.
        unsafe { ffi::PyBuffer_Release(&mut *self.view) };
    }
}

/// The three objects a transport is made of: the facade the protocol sees, the socket or
/// pipe (its file object), and the protocol.
pub(super) struct Ends<'a, 'py> {
    pub(super) facade: &'a Bound<'py, PyAny>,
    pub(super) sock: &'a Bound<'py, PyAny>,
    pub(super) protocol: &'a Bound<'py, PyAny>,
}

impl Stream {
    /// Makes the engine for `facade` over `sock`, wraps it in its class (`make`) and
    /// registers it with the loop; schedules connection_made, then reading, then the
    /// waiter, as asyncio does.
    pub(super) fn open<K: StreamKind>(
        r#loop: &Bound<'_, LoopBase>,
        ends: Ends<'_, '_>,
        waiter: Option<&Bound<'_, PyAny>>,
        server: Option<&Bound<'_, PyAny>>,
        make: impl FnOnce(Stream) -> PyResult<Py<K>>,
    ) -> PyResult<Py<K>> {
        let Ends { facade, sock, protocol } = ends;
        let py = r#loop.py();
        let core = r#loop.get();
        let fd = super::open_fd(r#loop, sock)?;
        let transport = make(Stream {
            fd,
            loop_: r#loop.clone().unbind(),
            st: GilCell::new(State {
                base: Base::new(py, facade, sock, protocol)?,
                receiver: receiver_or_none(protocol),
                server: server.map(|s| s.clone().unbind()),
                buf: WriteBuffer::default(),
                eof_written: false,
                paused: false,
                read_eof: false,
                hup: false,
                last_read: 0,
                empty_waiter: None,
                writable_waiter: None,
            }),
        })?;
        let key = core.register(py, fd, IoRef::new(transport.clone_ref(py)))?;
        transport.get().stream().st.borrow_mut(py)?.base.key = Some(key);
        super::schedule_start(r#loop, protocol, facade, transport.bind(py).as_any(), waiter)?;
        Ok(transport)
    }
}

/// The Python-visible methods every stream class has (`stream_methods!` binds them).
impl Stream {
    pub(super) fn start_reading<K: StreamKind>(slf: &Bound<'_, K>) -> PyResult<()> {
        let queue = {
            let mut st = slf.get().stream().st.borrow_mut(slf.py())?;
            st.base.start();
            st.base.readable && st.can_read()
        };
        if queue {
            Self::queue_read(slf)?;
        }
        Ok(())
    }

    pub(super) fn write<K: StreamKind>(slf: &Bound<'_, K>, data: &Bound<'_, PyAny>) -> PyResult<()> {
        let py = slf.py();
        let me = slf.get().stream();
        check_bytes_like(data, "data")?;
        let view = ByteView::new(data)?;
        let mut st = me.st.borrow_mut(py)?;
        if K::READ_ONLY {
            return Err(PyRuntimeError::new_err("write() on a read pipe transport"));
        }
        if st.eof_written {
            return Err(PyRuntimeError::new_err("Cannot call write() after write_eof()"));
        }
        if st.empty_waiter.is_some() {
            return Err(PyRuntimeError::new_err("unable to write; sendfile is in progress"));
        }
        if view.len() == 0 {
            return Ok(());
        }
        // A write pipe drops writes once closing (write_eof closes it), as asyncio does.
        if st.base.is_lost() || (K::WRITE_ONLY && st.base.is_closing()) {
            let warn = st.base.drop_write();
            drop(st);
            if warn {
                py_side(py)?.call_method1(intern!(py, "log_warning"), (K::LOST_WRITE,))?;
            }
            return Ok(());
        }
        // Send until done or refused: the writable edge that flushes the rest comes only
        // after a refusal (edge-triggered registration; see WriteBuffer::send_all).
        let mut offset = 0;
        if st.buf.is_empty() {
            while offset < view.len() {
                match K::write(me.fd, &view.as_slice()[offset..]) {
                    Ok(0) => break,
                    Ok(n) => offset += n,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) if is_refused(&e) => break,
                    Err(e) => {
                        drop(st);
                        let exc = os_error_value(py, &e)?;
                        return Self::fatal_error(slf, &exc, K::WRITE_ERROR);
                    }
                }
            }
            if offset == view.len() {
                return Ok(());
            }
        }
        st.buf.push(data, &view, offset);
        drop(st);
        drop(view);
        Self::maybe_pause(slf)
    }

    /// asyncio's writelines, as the running Python has it: 3.11 (and pipes on every
    /// version) join the data and call write(), so a bad item is refused first and the
    /// messages name write(); 3.12+ sockets check the state first and name writelines().
    pub(super) fn writelines<K: StreamKind>(slf: &Bound<'_, K>, list_of_data: &Bound<'_, PyAny>) -> PyResult<()> {
        let py = slf.py();
        let me = slf.get().stream();
        let joined = K::PIPE || python_minor(py) < 12;
        let items: Vec<Bound<'_, PyAny>> = list_of_data.try_iter()?.collect::<PyResult<_>>()?;
        let check_items = |joined: bool| -> PyResult<()> {
            for (i, item) in items.iter().enumerate() {
                if check_bytes_like(item, "data").is_err() {
                    let name = item.get_type().name()?;
                    return Err(pyo3::exceptions::PyTypeError::new_err(if joined {
                        format!("sequence item {i}: expected a bytes-like object, {name} found")
                    } else {
                        format!("memoryview: a bytes-like object is required, not '{name}'")
                    }));
                }
            }
            Ok(())
        };
        if joined {
            check_items(true)?;
        }
        {
            let st = me.st.borrow(py)?;
            let what = if joined { "write" } else { "writelines" };
            if K::READ_ONLY {
                return Err(PyRuntimeError::new_err("write() on a read pipe transport"));
            }
            if st.eof_written {
                return Err(PyRuntimeError::new_err(format!("Cannot call {what}() after write_eof()")));
            }
            if st.empty_waiter.is_some() {
                return Err(PyRuntimeError::new_err(format!("unable to {what}; sendfile is in progress")));
            }
        }
        if items.is_empty() {
            return Ok(());
        }
        if !joined {
            check_items(false)?;
        }
        let was_empty = {
            let mut st = me.st.borrow_mut(py)?;
            if st.base.is_lost() || (K::WRITE_ONLY && st.base.is_closing()) {
                st.base.drop_write();
                return Ok(());
            }
            let was_empty = st.buf.is_empty();
            for item in &items {
                let view = ByteView::new(item)?;
                st.buf.push(item, &view, 0);
            }
            was_empty
        };
        if was_empty {
            Self::flush(slf)?;
        }
        Self::maybe_pause(slf)
    }

    /// A write pipe's EOF: closing the write end once the buffer is flushed.
    pub(super) fn close_write_end<K: StreamKind>(slf: &Bound<'_, K>) -> PyResult<()> {
        {
            let mut st = slf.get().stream().st.borrow_mut(slf.py())?;
            if !st.base.close() {
                return Ok(());
            }
            if !st.buf.is_empty() || !st.base.lose() {
                return Ok(());
            }
        }
        super::schedule_connection_lost(slf.as_any(), &slf.get().stream().loop_, None)
    }

    /// A socket's write_eof: shutdown(SHUT_WR) once what is buffered is sent (flush).
    pub(super) fn shutdown<K: StreamKind>(slf: &Bound<'_, K>) -> PyResult<()> {
        let py = slf.py();
        let me = slf.get().stream();
        let mut st = me.st.borrow_mut(py)?;
        if st.base.is_closing() || st.eof_written {
            return Ok(());
        }
        st.eof_written = true;
        if st.buf.is_empty() && !st.base.is_lost() {
            drop(st);
            if let Err(e) = os::shutdown_write(me.fd) {
                return Err(PyErr::from_value(os_error_value(py, &e)?));
            }
        }
        Ok(())
    }

    pub(super) fn is_closing(&self, py: Python<'_>) -> PyResult<bool> {
        Ok(self.st.borrow(py)?.base.is_closing())
    }

    /// True once connection_lost ran and the socket is closed.
    pub(super) fn is_closed(&self, py: Python<'_>) -> PyResult<bool> {
        Ok(self.st.borrow(py)?.base.sock.is_none())
    }

    pub(super) fn is_reading(&self, py: Python<'_>) -> PyResult<bool> {
        let st = self.st.borrow(py)?;
        Ok(!st.base.is_closing() && !st.paused)
    }

    pub(super) fn pause_reading<K: StreamKind>(slf: &Bound<'_, K>) -> PyResult<()> {
        let py = slf.py();
        let mut st = slf.get().stream().st.borrow_mut(py)?;
        if st.base.is_closing() || st.paused {
            return Ok(());
        }
        st.paused = true;
        Ok(())
    }

    pub(super) fn resume_reading<K: StreamKind>(slf: &Bound<'_, K>) -> PyResult<()> {
        let queue = {
            let mut st = slf.get().stream().st.borrow_mut(slf.py())?;
            if st.base.is_closing() || !st.paused {
                return Ok(());
            }
            st.paused = false;
            st.base.readable && st.can_read()
        };
        if queue {
            Self::queue_read(slf)?;
        }
        Ok(())
    }

    pub(super) fn get_write_buffer_size(&self, py: Python<'_>) -> PyResult<usize> {
        Ok(self.st.borrow(py)?.buf.len())
    }

    pub(super) fn get_write_buffer_limits(&self, py: Python<'_>) -> PyResult<(usize, usize)> {
        let st = self.st.borrow(py)?;
        Ok((st.base.low, st.base.high))
    }

    pub(super) fn set_write_buffer_limits<K: StreamKind>(
        slf: &Bound<'_, K>,
        high: Option<i64>,
        low: Option<i64>,
    ) -> PyResult<()> {
        let (high, low) = water_marks(high, low, DEFAULT_HIGH_WATER)?;
        {
            let mut st = slf.get().stream().st.borrow_mut(slf.py())?;
            st.base.high = high;
            st.base.low = low;
        }
        Self::maybe_pause(slf)
    }

    pub(super) fn set_protocol(&self, protocol: &Bound<'_, PyAny>) -> PyResult<()> {
        let receiver = receiver_or_none(protocol);
        let (old_p, old_r) = {
            let mut st = self.st.borrow_mut(protocol.py())?;
            (st.base.protocol.replace(protocol.clone().unbind()), std::mem::replace(&mut st.receiver, receiver))
        };
        drop((old_p, old_r));
        Ok(())
    }

    pub(super) fn get_protocol(&self, py: Python<'_>) -> PyResult<Option<Py<PyAny>>> {
        Ok(self.st.borrow(py)?.base.protocol.as_ref().map(|p| p.clone_ref(py)))
    }

    pub(super) fn make_empty_waiter<K: StreamKind>(slf: &Bound<'_, K>) -> PyResult<Py<PyAny>> {
        let py = slf.py();
        if slf.get().stream().st.borrow(py)?.empty_waiter.is_some() {
            return Err(PyRuntimeError::new_err("Empty waiter is already set"));
        }
        let waiter = slf.get().stream().loop_.bind(py).call_method0(intern!(py, "create_future"))?;
        let empty = {
            let mut st = slf.get().stream().st.borrow_mut(py)?;
            st.empty_waiter = Some(waiter.clone().unbind());
            st.buf.is_empty()
        };
        if empty {
            waiter.call_method1(intern!(py, "set_result"), (py.None(),))?;
        }
        Ok(waiter.unbind())
    }

    /// A future resolved when the socket next becomes writable (an edge after EAGAIN).
    pub(super) fn wait_writable<K: StreamKind>(slf: &Bound<'_, K>) -> PyResult<Py<PyAny>> {
        let py = slf.py();
        let waiter = slf.get().stream().loop_.bind(py).call_method0(intern!(py, "create_future"))?;
        let old = slf.get().stream().st.borrow_mut(py)?.writable_waiter.replace(waiter.clone().unbind());
        drop(old);
        Ok(waiter.unbind())
    }

    pub(super) fn reset_empty_waiter(&self, py: Python<'_>) -> PyResult<()> {
        let old = self.st.borrow_mut(py)?.empty_waiter.take();
        drop(old);
        Ok(())
    }

    /// `read=polling|idle`, `write=<polling|idle, bufsize=N>` for the facade's repr.
    pub(super) fn repr_state(&self, py: Python<'_>) -> PyResult<(bool, bool, usize)> {
        let st = self.st.borrow(py)?;
        // read=polling: reading, or about to start (made, not paused)
        let reading = st.can_read() || (st.base.life == Life::Made && !st.paused);
        Ok((reading, !st.buf.is_empty(), st.buf.len()))
    }

    pub(super) fn sock_fd(&self) -> RawFd {
        self.fd
    }

    pub(super) fn facade_repr(&self, py: Python<'_>) -> PyResult<String> {
        match self.st.borrow(py)?.base.facade.as_ref().map(|f| f.clone_ref(py)) {
            Some(f) => Ok(f.bind(py).repr()?.to_string()),
            None => Ok("<closed stream transport>".into()),
        }
    }

    pub(super) fn traverse(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        visit.call(&self.loop_)?;
        if let Some(st) = self.st.try_borrow_for_gc() {
            st.base.visit(&visit)?;
            visit.call(&st.server)?;
            visit.call(&st.empty_waiter)?;
            visit.call(&st.writable_waiter)?;
            if let Some(r) = &st.receiver {
                r.visit(&visit)?;
            }
        }
        Ok(())
    }

    pub(super) fn clear(&self) {
        Python::attach(|py| {
            let taken = self.st.borrow_mut(py).ok().map(|mut st| {
                (
                    st.base.protocol.take(),
                    st.base.facade.take(),
                    st.server.take(),
                    st.receiver.take(),
                    st.empty_waiter.take(),
                )
            });
            drop(taken);
        });
    }
}

/// The Python methods of a stream class (a `StreamKind`), bound to its engine; `$open` is
/// the class's own constructor.
macro_rules! stream_methods {
    ($ty:ty, { $($open:tt)* }) => {
        #[pymethods]
        impl $ty {
            $($open)*

            fn _start_reading(slf: &Bound<'_, Self>) -> PyResult<()> {
                Stream::start_reading(slf)
            }

            fn write(slf: &Bound<'_, Self>, data: &Bound<'_, PyAny>) -> PyResult<()> {
                Stream::write(slf, data)
            }

            fn writelines(slf: &Bound<'_, Self>, list_of_data: &Bound<'_, PyAny>) -> PyResult<()> {
                Stream::writelines(slf, list_of_data)
            }

            fn write_eof(slf: &Bound<'_, Self>) -> PyResult<()> {
                <Self as StreamKind>::write_eof(slf)
            }

            fn can_write_eof(&self) -> bool {
                true
            }

            fn close(slf: &Bound<'_, Self>) -> PyResult<()> {
                <Self as StreamKind>::close(slf)
            }

            fn abort(slf: &Bound<'_, Self>) -> PyResult<()> {
                Stream::force_close(slf, None)
            }

            fn _force_close(slf: &Bound<'_, Self>, exc: Option<Py<PyAny>>) -> PyResult<()> {
                Stream::force_close(slf, exc)
            }

            fn _fatal_error(slf: &Bound<'_, Self>, exc: &Bound<'_, PyAny>, message: &str) -> PyResult<()> {
                Stream::fatal_error(slf, exc, message)
            }

            fn _call_connection_lost(slf: &Bound<'_, Self>, exc: Bound<'_, PyAny>) -> PyResult<()> {
                Stream::call_connection_lost(slf, exc)
            }

            fn is_closing(&self, py: Python<'_>) -> PyResult<bool> {
                self.stream().is_closing(py)
            }

            /// True once connection_lost ran and the socket is closed.
            fn _is_closed(&self, py: Python<'_>) -> PyResult<bool> {
                self.stream().is_closed(py)
            }

            fn is_reading(&self, py: Python<'_>) -> PyResult<bool> {
                self.stream().is_reading(py)
            }

            fn pause_reading(slf: &Bound<'_, Self>) -> PyResult<()> {
                Stream::pause_reading(slf)
            }

            fn resume_reading(slf: &Bound<'_, Self>) -> PyResult<()> {
                Stream::resume_reading(slf)
            }

            fn get_write_buffer_size(&self, py: Python<'_>) -> PyResult<usize> {
                self.stream().get_write_buffer_size(py)
            }

            fn get_write_buffer_limits(&self, py: Python<'_>) -> PyResult<(usize, usize)> {
                self.stream().get_write_buffer_limits(py)
            }

            #[pyo3(signature = (high=None, low=None))]
            fn set_write_buffer_limits(slf: &Bound<'_, Self>, high: Option<i64>, low: Option<i64>) -> PyResult<()> {
                Stream::set_write_buffer_limits(slf, high, low)
            }

            fn set_protocol(&self, protocol: &Bound<'_, PyAny>) -> PyResult<()> {
                self.stream().set_protocol(protocol)
            }

            fn get_protocol(&self, py: Python<'_>) -> PyResult<Option<Py<PyAny>>> {
                self.stream().get_protocol(py)
            }

            fn _make_empty_waiter(slf: &Bound<'_, Self>) -> PyResult<Py<PyAny>> {
                Stream::make_empty_waiter(slf)
            }

            /// A future resolved when the socket next becomes writable (an edge after EAGAIN).
            fn _wait_writable(slf: &Bound<'_, Self>) -> PyResult<Py<PyAny>> {
                Stream::wait_writable(slf)
            }

            fn _reset_empty_waiter(&self, py: Python<'_>) -> PyResult<()> {
                self.stream().reset_empty_waiter(py)
            }

            /// `read=polling|idle`, `write=<polling|idle, bufsize=N>` for the facade's repr.
            fn _repr_state(&self, py: Python<'_>) -> PyResult<(bool, bool, usize)> {
                self.stream().repr_state(py)
            }

            #[getter]
            fn _sock_fd(&self) -> std::os::fd::RawFd {
                self.stream().sock_fd()
            }

            fn _facade_repr(&self, py: Python<'_>) -> PyResult<String> {
                self.stream().facade_repr(py)
            }

            fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
                self.stream().traverse(visit)
            }

            fn __clear__(&self) {
                self.stream().clear()
            }
        }
    };
}
pub(super) use stream_methods;
