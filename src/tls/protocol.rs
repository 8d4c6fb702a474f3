//! The TLS engine: asyncio's `SSLProtocol` state machine (UNWRAPPED → DO_HANDSHAKE →
//! WRAPPED → FLUSHING → SHUTDOWN, and the app protocol's INIT → CON_MADE → EOF →
//! CON_LOST), with the per-record work native.
//!
//! Ciphertext from the socket lands in one reused 256 KiB buffer (`get_buffer`), is fed to
//! the incoming `MemoryBIO`, and plaintext is read from the `_ssl._SSLSocket` (the
//! `SSLObject`'s C half: `ssl.SSLObject.read/write/do_handshake/unwrap` only forward to
//! it) into a second reused buffer, then handed over in one `data_received` per batch
//! (or straight into the app's buffer for a BufferedProtocol). Plaintext writes go into
//! the `_SSLSocket`; the outgoing BIO is drained once per batch into one `write` of the
//! transport below. Reads are attempted only while the incoming BIO holds ciphertext, so
//! the steady state raises no `SSLWantReadError`.
//!
//! Where this departs from asyncio on purpose: `close()` after the peer's EOF arrived while
//! reading was paused finishes the connection (asyncio's SSLProtocol waits forever there).

use std::collections::VecDeque;

use pyo3::exceptions::{PyException, PyRuntimeError, PyTypeError};
use pyo3::gc::PyVisit;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyByteArray, PyBytes, PyDict, PyList, PySlice};
use pyo3::PyTraverseError;

use super::{py_tls, ssl_errors};
use crate::gil_cell::GilCell;
use crate::handles::is_fatal_to_loop;
use crate::loop_base::MAX_READ as MAX_SIZE;
use crate::transports::{py_side, water_marks, Receiver, LOG_THRESHOLD_FOR_CONNLOST_WRITES};

/// asyncio.constants.FLOW_CONTROL_HIGH_WATER_SSL_READ / _WRITE.
const HIGH_WATER_READ: usize = 256 * 1024;
const HIGH_WATER_WRITE: usize = 512 * 1024;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum TlsState {
    Unwrapped,
    DoHandshake,
    Wrapped,
    Flushing,
    Shutdown,
}

impl TlsState {
    fn name(self) -> &'static str {
        match self {
            TlsState::Unwrapped => "UNWRAPPED",
            TlsState::DoHandshake => "DO_HANDSHAKE",
            TlsState::Wrapped => "WRAPPED",
            TlsState::Flushing => "FLUSHING",
            TlsState::Shutdown => "SHUTDOWN",
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum AppState {
    Init,
    ConMade,
    Eof,
    ConLost,
}

/// asyncio's `_set_app_protocol` rule: a BufferedProtocol with `get_buffer` gets buffered
/// reads; anything else `data_received` (looked up when data comes, as asyncio does).
fn receiver_for(protocol: &Bound<'_, PyAny>) -> PyResult<Option<Receiver>> {
    let py = protocol.py();
    let buffered = py_tls(py)?.getattr(intern!(py, "BufferedProtocol"))?;
    if protocol.hasattr(intern!(py, "get_buffer"))? && protocol.is_instance(&buffered)? {
        return Ok(Some(Receiver::Buffered {
            get_buffer: protocol.getattr(intern!(py, "get_buffer"))?.unbind(),
            buffer_updated: protocol.getattr(intern!(py, "buffer_updated"))?.unbind(),
        }));
    }
    Ok(protocol.getattr(intern!(py, "data_received")).ok().map(|f| Receiver::Data(f.unbind())))
}

struct State {
    app_protocol: Option<Py<PyAny>>,
    receiver: Option<Receiver>,
    /// The facade the app protocol sees (`_app_transport`).
    app_transport: Option<Py<PyAny>>,
    app_closed: bool,
    /// The transport below, and its bound `write`.
    transport: Option<Py<PyAny>>,
    transport_write: Option<Py<PyAny>>,
    waiter: Option<Py<PyAny>>,
    extra: Py<PyDict>,
    state: TlsState,
    app_state: AppState,
    conn_lost: u32,
    backlog: VecDeque<Py<PyAny>>,
    backlog_size: usize,
    ssl_writing_paused: bool,
    app_reading_paused: bool,
    ssl_reading_paused: bool,
    app_writing_paused: bool,
    eof_received: bool,
    in_high: usize,
    in_low: usize,
    out_high: usize,
    out_low: usize,
    handshake_timer: Option<Py<PyAny>>,
    shutdown_timer: Option<Py<PyAny>>,
    handshake_start: Option<f64>,
}

/// The C objects the engine drives, and their bound methods (fixed per connection).
struct Ssl {
    /// `ssl.SSLObject` (the `ssl_object` extra) and its `_sslobj`.
    sslobject: Py<PyAny>,
    sslobj: Py<PyAny>,
    read: Py<PyAny>,
    write: Py<PyAny>,
    incoming: Py<PyAny>,
    outgoing: Py<PyAny>,
    incoming_write: Py<PyAny>,
    outgoing_read: Py<PyAny>,
    /// Ciphertext from the socket (`get_buffer`), and plaintext on its way to the app.
    cipher_view: Py<PyAny>,
    plain_buf: Py<PyByteArray>,
    plain_view: Py<PyAny>,
}

#[pyclass(module = "ferroloop._ferroloop", frozen, subclass)]
pub struct TlsProtocol {
    loop_: Py<PyAny>,
    ssl: Ssl,
    handshake_timeout: Py<PyAny>,
    shutdown_timeout: Py<PyAny>,
    st: GilCell<State>,
}

fn pending(py: Python<'_>, bio: &Py<PyAny>) -> PyResult<usize> {
    bio.bind(py).getattr(intern!(py, "pending"))?.extract()
}

fn is_again(py: Python<'_>, err: &PyErr) -> PyResult<bool> {
    err.value(py).is_instance(ssl_errors(py)?.again.bind(py))
}

fn is_exception(py: Python<'_>, err: &PyErr) -> bool {
    err.is_instance_of::<PyException>(py)
}

/// A memoryview of `view[start:end]`.
fn slice<'py>(view: &Bound<'py, PyAny>, start: usize, end: usize) -> PyResult<Bound<'py, PyAny>> {
    view.get_item(PySlice::new(view.py(), start as isize, end as isize, 1))
}

fn new_buffer(py: Python<'_>) -> PyResult<(Py<PyByteArray>, Py<PyAny>)> {
    let buf = PyByteArray::new_with(py, MAX_SIZE, |_| Ok(()))?;
    let view = py.import(intern!(py, "builtins"))?.getattr(intern!(py, "memoryview"))?.call1((&buf,))?;
    Ok((buf.unbind(), view.unbind()))
}

/// What a plaintext read ended with.
enum ReadEnd {
    /// Nothing more for now (the BIO is drained or holds a partial record).
    Again,
    /// The peer's close_notify.
    Closed,
    /// The app's buffer is full: read again in a later callback.
    Full,
}

impl TlsProtocol {
    fn loop_<'py>(&self, py: Python<'py>) -> &Bound<'py, PyAny> {
        self.loop_.bind(py)
    }

    fn debug(&self, py: Python<'_>) -> PyResult<bool> {
        self.loop_(py).call_method0(intern!(py, "get_debug"))?.is_truthy()
    }

    fn state(&self, py: Python<'_>) -> PyResult<TlsState> {
        Ok(self.st.borrow(py)?.state)
    }

    /// asyncio's `_set_state`: the allowed transitions, and its message for the others.
    fn set_state(&self, py: Python<'_>, new: TlsState) -> PyResult<()> {
        let mut st = self.st.borrow_mut(py)?;
        use TlsState::*;
        let allowed = matches!(
            (st.state, new),
            (_, Unwrapped)
                | (Unwrapped, DoHandshake)
                | (DoHandshake, Wrapped)
                | (Wrapped, Flushing)
                | (Flushing, Shutdown)
        );
        if !allowed {
            return Err(PyRuntimeError::new_err(format!(
                "cannot switch state from SSLProtocolState.{} to SSLProtocolState.{}",
                st.state.name(),
                new.name()
            )));
        }
        st.state = new;
        Ok(())
    }

    fn transport(&self, py: Python<'_>) -> PyResult<Option<Py<PyAny>>> {
        Ok(self.st.borrow(py)?.transport.as_ref().map(|t| t.clone_ref(py)))
    }

    fn wakeup_waiter(&self, py: Python<'_>, exc: Option<&Bound<'_, PyAny>>) -> PyResult<()> {
        let waiter = self.st.borrow_mut(py)?.waiter.take();
        if let Some(w) = waiter {
            let w = w.bind(py);
            if !w.call_method0(intern!(py, "cancelled"))?.is_truthy()? {
                match exc {
                    Some(e) => w.call_method1(intern!(py, "set_exception"), (e,))?,
                    None => w.call_method1(intern!(py, "set_result"), (py.None(),))?,
                };
            }
        }
        Ok(())
    }

    fn cancel_timer(py: Python<'_>, timer: Option<Py<PyAny>>) -> PyResult<()> {
        if let Some(t) = timer {
            t.bind(py).call_method0(intern!(py, "cancel"))?;
        }
        Ok(())
    }

    // -- handshake ------------------------------------------------------------------------

    fn start_handshake(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let me = slf.get();
        let start = if me.debug(py)? {
            py_tls(py)?.call_method1(intern!(py, "log_debug"), ("%r starts SSL handshake", slf))?;
            Some(me.loop_(py).call_method0(intern!(py, "time"))?.extract::<f64>()?)
        } else {
            None
        };
        me.st.borrow_mut(py)?.handshake_start = start;
        me.set_state(py, TlsState::DoHandshake)?;
        let check = slf.getattr(intern!(py, "_check_handshake_timeout"))?;
        let timer = me.loop_(py).call_method1(intern!(py, "call_later"), (me.handshake_timeout.bind(py), check))?;
        let old = me.st.borrow_mut(py)?.handshake_timer.replace(timer.unbind());
        Self::cancel_timer(py, old)?;
        Self::do_handshake(slf)
    }

    fn do_handshake(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let me = slf.get();
        match me.ssl.sslobj.bind(py).call_method0(intern!(py, "do_handshake")) {
            Ok(_) => Self::on_handshake_complete(slf, None),
            Err(err) if is_again(py, &err)? => Self::process_outgoing(slf),
            Err(err) if err.value(py).is_instance(ssl_errors(py)?.ssl_error.bind(py))? => {
                Self::on_handshake_complete(slf, Some(err.into_value(py).into_bound(py).into_any()))
            }
            Err(err) => Err(err),
        }
    }

    fn on_handshake_complete(slf: &Bound<'_, Self>, exc: Option<Bound<'_, PyAny>>) -> PyResult<()> {
        let py = slf.py();
        let me = slf.get();
        let timer = me.st.borrow_mut(py)?.handshake_timer.take();
        Self::cancel_timer(py, timer)?;
        let sslobject = me.ssl.sslobject.bind(py);
        let outcome = match exc {
            Some(e) => Err(e),
            None => me
                .set_state(py, TlsState::Wrapped)
                .and_then(|_| sslobject.call_method0(intern!(py, "getpeercert")))
                .map_err(|e| e.into_value(py).into_bound(py).into_any()),
        };
        let peercert = match outcome {
            Ok(p) => p,
            Err(exc) => {
                me.set_state(py, TlsState::Unwrapped)?;
                let msg = if exc.is_instance(ssl_errors(py)?.certificate_error.bind(py))? {
                    "SSL handshake failed on verifying the certificate"
                } else {
                    "SSL handshake failed"
                };
                Self::fatal_error(slf, &exc, msg)?;
                return me.wakeup_waiter(py, Some(&exc));
            }
        };
        if me.debug(py)? {
            let start = me.st.borrow(py)?.handshake_start;
            if let Some(start) = start {
                let now: f64 = me.loop_(py).call_method0(intern!(py, "time"))?.extract()?;
                py_tls(py)?.call_method1(
                    intern!(py, "log_debug"),
                    ("%r: SSL handshake took %.1f ms", slf, (now - start) * 1e3),
                )?;
            }
        }
        let extra = me.st.borrow(py)?.extra.clone_ref(py);
        let extra = extra.bind(py);
        extra.set_item(intern!(py, "peercert"), peercert)?;
        extra.set_item(intern!(py, "cipher"), sslobject.call_method0(intern!(py, "cipher"))?)?;
        extra.set_item(intern!(py, "compression"), sslobject.call_method0(intern!(py, "compression"))?)?;
        extra.set_item(intern!(py, "ssl_object"), sslobject)?;
        let made = {
            let mut st = me.st.borrow_mut(py)?;
            if st.app_state == AppState::Init {
                st.app_state = AppState::ConMade;
                st.app_protocol
                    .as_ref()
                    .map(|p| p.clone_ref(py))
                    .zip(st.app_transport.as_ref().map(|t| t.clone_ref(py)))
            } else {
                None
            }
        };
        if let Some((protocol, transport)) = made {
            protocol.bind(py).call_method1(intern!(py, "connection_made"), (transport,))?;
        }
        me.wakeup_waiter(py, None)?;
        Self::do_read(slf)
    }

    // -- shutdown -------------------------------------------------------------------------

    fn start_shutdown(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let me = slf.get();
        let state = {
            let mut st = me.st.borrow_mut(py)?;
            if st.state == TlsState::Flushing && st.eof_received && st.app_reading_paused && st.shutdown_timer.is_none()
            {
                // The peer's EOF came while reading was paused and the app closes without
                // resuming: nobody will read what is left, so finish (asyncio hangs here).
                st.app_closed = true;
                TlsState::Flushing
            } else if matches!(st.state, TlsState::Flushing | TlsState::Shutdown | TlsState::Unwrapped) {
                return Ok(());
            } else {
                st.app_closed = true;
                st.state
            }
        };
        if state == TlsState::DoHandshake {
            return Self::abort_with(slf, None);
        }
        let check = slf.getattr(intern!(py, "_check_shutdown_timeout"))?;
        let timer = me.loop_(py).call_method1(intern!(py, "call_later"), (me.shutdown_timeout.bind(py), check))?;
        let old = me.st.borrow_mut(py)?.shutdown_timer.replace(timer.unbind());
        Self::cancel_timer(py, old)?;
        if state == TlsState::Flushing {
            me.set_state(py, TlsState::Shutdown)?;
            return Self::do_shutdown(slf);
        }
        me.set_state(py, TlsState::Flushing)?;
        Self::do_flush(slf)
    }

    fn do_flush(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        Self::do_read(slf)?;
        slf.get().set_state(py, TlsState::Shutdown)?;
        Self::do_shutdown(slf)
    }

    fn do_shutdown(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let me = slf.get();
        let eof = me.st.borrow(py)?.eof_received;
        let unwrapped =
            if eof { Ok(()) } else { me.ssl.sslobj.bind(py).call_method0(intern!(py, "shutdown")).map(drop) };
        match unwrapped {
            Ok(()) => {
                Self::process_outgoing(slf)?;
                Self::call_eof_received(slf)?;
                Self::on_shutdown_complete(slf, None)
            }
            Err(err) if is_again(py, &err)? => Self::process_outgoing(slf),
            Err(err) if err.value(py).is_instance(ssl_errors(py)?.ssl_error.bind(py))? => {
                Self::on_shutdown_complete(slf, Some(err.into_value(py).into_bound(py).into_any()))
            }
            Err(err) => Err(err),
        }
    }

    fn on_shutdown_complete(slf: &Bound<'_, Self>, exc: Option<Bound<'_, PyAny>>) -> PyResult<()> {
        let py = slf.py();
        let me = slf.get();
        let timer = me.st.borrow_mut(py)?.shutdown_timer.take();
        Self::cancel_timer(py, timer)?;
        match exc {
            Some(exc) => Self::fatal_error(slf, &exc, "Fatal error on transport"),
            None => {
                if let Some(t) = me.transport(py)? {
                    me.loop_(py)
                        .call_method1(intern!(py, "call_soon"), (t.bind(py).getattr(intern!(py, "close"))?,))?;
                }
                Ok(())
            }
        }
    }

    /// asyncio's `_abort(exc)`: 3.11 aborts the transport below, 3.12+ force-closes it
    /// with the exception.
    fn abort_with(slf: &Bound<'_, Self>, exc: Option<Bound<'_, PyAny>>) -> PyResult<()> {
        let py = slf.py();
        let me = slf.get();
        me.set_state(py, TlsState::Unwrapped)?;
        if let Some(t) = me.transport(py)? {
            if py_tls(py)?.getattr(intern!(py, "ABORT_WITH_EXC"))?.is_truthy()? {
                let exc = exc.unwrap_or_else(|| py.None().into_bound(py));
                t.bind(py).call_method1(intern!(py, "_force_close"), (exc,))?;
            } else {
                t.bind(py).call_method0(intern!(py, "abort"))?;
            }
        }
        Ok(())
    }

    // -- outgoing -------------------------------------------------------------------------

    fn write_appdata<'py>(slf: &Bound<'py, Self>, items: impl IntoIterator<Item = Bound<'py, PyAny>>) -> PyResult<()> {
        let py = slf.py();
        let me = slf.get();
        let (state, warn) = {
            let mut st = me.st.borrow_mut(py)?;
            if matches!(st.state, TlsState::Flushing | TlsState::Shutdown | TlsState::Unwrapped) {
                let warn = st.conn_lost >= LOG_THRESHOLD_FOR_CONNLOST_WRITES;
                st.conn_lost += 1;
                (None, warn)
            } else {
                (Some(st.state), false)
            }
        };
        let Some(state) = state else {
            if warn {
                py_tls(py)?.call_method1(intern!(py, "log_warning"), ("SSL connection is closed",))?;
            }
            return Ok(());
        };
        // The common case, one write on an idle wrapped connection: straight into the TLS
        // object, no backlog entry.
        let mut items = items.into_iter().peekable();
        let fast = state == TlsState::Wrapped && me.st.borrow(py)?.backlog.is_empty();
        if fast {
            let result = (|| -> PyResult<()> {
                while let Some(data) = items.peek() {
                    let len = data.len()?;
                    match me.ssl.write.bind(py).call1((data,)) {
                        Ok(n) => {
                            let n: usize = n.extract()?;
                            if n < len {
                                let rest = data.get_item(PySlice::new(py, n as isize, len as isize, 1))?;
                                let mut st = me.st.borrow_mut(py)?;
                                st.backlog_size += len - n;
                                st.backlog.push_back(rest.unbind());
                                items.next();
                                break;
                            }
                            items.next();
                        }
                        Err(err) if is_again(py, &err)? => break,
                        Err(err) => return Err(err),
                    }
                }
                Ok(())
            })();
            if let Err(err) = result {
                return Self::fatal_or_raise(slf, err, "Fatal error on SSL protocol");
            }
        }
        let mut any = false;
        for data in items {
            let len = data.len()?;
            let mut st = me.st.borrow_mut(py)?;
            st.backlog_size += len;
            st.backlog.push_back(data.unbind());
            any = true;
        }
        let result = if any && state == TlsState::Wrapped {
            Self::do_write(slf)
        } else if fast {
            Self::process_outgoing(slf)
        } else {
            Ok(())
        };
        match result {
            Err(err) => Self::fatal_or_raise(slf, err, "Fatal error on SSL protocol"),
            Ok(()) => Ok(()),
        }
    }

    /// asyncio's `except Exception as ex: self._fatal_error(ex, message)`.
    fn fatal_or_raise(slf: &Bound<'_, Self>, err: PyErr, message: &str) -> PyResult<()> {
        let py = slf.py();
        if !is_exception(py, &err) {
            return Err(err);
        }
        Self::fatal_error(slf, err.value(py).as_any(), message)
    }

    fn do_write(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let me = slf.get();
        loop {
            let head = me.st.borrow(py)?.backlog.front().map(|d| d.clone_ref(py));
            let Some(data) = head else { break };
            let data = data.bind(py);
            let len = data.len()?;
            match me.ssl.write.bind(py).call1((data,)) {
                Ok(n) => {
                    let n: usize = n.extract()?;
                    // the slice is made before the borrow: it may run Python code
                    let rest = if n < len {
                        Some(data.get_item(PySlice::new(py, n as isize, len as isize, 1))?)
                    } else {
                        None
                    };
                    let mut st = me.st.borrow_mut(py)?;
                    if let Some(rest) = rest {
                        let old = st.backlog.front_mut().map(|f| std::mem::replace(f, rest.unbind()));
                        st.backlog_size -= n;
                        drop(st);
                        drop(old);
                    } else {
                        let old = st.backlog.pop_front();
                        st.backlog_size -= len;
                        drop(st);
                        drop(old);
                    }
                }
                Err(err) if is_again(py, &err)? => break,
                Err(err) => return Err(err),
            }
        }
        Self::process_outgoing(slf)
    }

    /// Drains the outgoing BIO into one write of the transport below.
    fn process_outgoing(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let me = slf.get();
        let write = {
            let st = me.st.borrow(py)?;
            if st.ssl_writing_paused {
                None
            } else {
                st.transport_write.as_ref().map(|w| w.clone_ref(py))
            }
        };
        let mut left = pending(py, &me.ssl.outgoing)?;
        if let Some(write) = write {
            if left > 0 {
                let data = me.ssl.outgoing_read.bind(py).call0()?;
                left = 0;
                write.bind(py).call1((data,))?;
            }
        }
        Self::control_app_writing_at(slf, left)
    }

    // -- incoming -------------------------------------------------------------------------

    fn do_read(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let me = slf.get();
        let (receiver, paused) = {
            let st = me.st.borrow(py)?;
            if !matches!(st.state, TlsState::Wrapped | TlsState::Flushing) {
                return Ok(());
            }
            (st.receiver.as_ref().map(|r| r.clone_ref(py)), st.app_reading_paused)
        };
        let result = (|| -> PyResult<()> {
            if paused {
                // Still send what the TLS object has to say (the handshake's last flight,
                // alerts): asyncio leaves it in the BIO here, stalling the peer.
                Self::process_outgoing(slf)?;
            } else {
                let receiver = match receiver {
                    Some(r) => r,
                    None => {
                        // No data_received: asyncio fails on the attribute lookup.
                        let p = me.st.borrow(py)?.app_protocol.as_ref().map(|p| p.clone_ref(py));
                        match p {
                            Some(p) => Receiver::Data(p.bind(py).getattr(intern!(py, "data_received"))?.unbind()),
                            None => return Ok(()),
                        }
                    }
                };
                let end = match &receiver {
                    Receiver::Data(f) => Self::read_copied(slf, f)?,
                    Receiver::Buffered { get_buffer, buffer_updated } => {
                        Self::read_buffered(slf, get_buffer, buffer_updated)?
                    }
                };
                match end {
                    ReadEnd::Closed => {
                        Self::call_eof_received(slf)?;
                        Self::start_shutdown(slf)?;
                    }
                    ReadEnd::Full => {
                        let again = slf.getattr(intern!(py, "_do_read"))?;
                        me.loop_(py).call_method1(intern!(py, "call_soon"), (again,))?;
                    }
                    ReadEnd::Again => {}
                }
                if me.st.borrow(py)?.backlog.is_empty() {
                    Self::process_outgoing(slf)?;
                } else {
                    Self::do_write(slf)?;
                }
            }
            Self::control_ssl_reading(slf)
        })();
        match result {
            Err(err) => Self::fatal_or_raise(slf, err, "Fatal error on SSL protocol"),
            Ok(()) => Ok(()),
        }
    }

    /// Plaintext into the reused buffer, record after record, then one `data_received`.
    fn read_copied(slf: &Bound<'_, Self>, data_received: &Py<PyAny>) -> PyResult<ReadEnd> {
        let py = slf.py();
        let me = slf.get();
        let view = me.ssl.plain_view.bind(py);
        let read = me.ssl.read.bind(py);
        let mut chunks: Vec<Bound<'_, PyBytes>> = Vec::new();
        let mut off = 0usize;
        let mut end = ReadEnd::Again;
        let mut first = true;
        loop {
            if off == MAX_SIZE {
                chunks.push(me.plain_bytes(py, off)?);
                off = 0;
            }
            // After a short read the record is used up: only ciphertext still in the BIO
            // can give more (this spares the SSLWantReadError of a read that cannot).
            if !first && pending(py, &me.ssl.incoming)? == 0 {
                break;
            }
            first = false;
            let target = if off == 0 { view.clone() } else { slice(view, off, MAX_SIZE)? };
            match read.call1((MAX_SIZE - off, target)) {
                Ok(n) => {
                    let n: usize = n.extract()?;
                    if n == 0 {
                        end = ReadEnd::Closed;
                        break;
                    }
                    off += n;
                }
                Err(err) if is_again(py, &err)? => break,
                Err(err) => return Err(err),
            }
        }
        if off > 0 {
            chunks.push(me.plain_bytes(py, off)?);
        }
        let data = match chunks.len() {
            0 => return Ok(end),
            1 => chunks.pop().expect("one chunk").into_any(),
            _ => PyBytes::new(py, b"").call_method1(intern!(py, "join"), (PyList::new(py, chunks)?,))?,
        };
        data_received.bind(py).call1((data,))?;
        Ok(end)
    }

    fn plain_bytes<'py>(&self, py: Python<'py>, n: usize) -> PyResult<Bound<'py, PyBytes>> {
        let buf = self.ssl.plain_buf.bind(py);
        // SAFETY: the bytearray is ours (never resized, never handed out); we copy out of
        // its first n bytes (n <= its length) while holding the GIL, with no Python code
        // running in between.
        let bytes = unsafe { &buf.as_bytes()[..n] };
        Ok(PyBytes::new(py, bytes))
    }

    /// asyncio's `_do_read__buffered`: plaintext straight into the app's buffer.
    fn read_buffered(slf: &Bound<'_, Self>, get_buffer: &Py<PyAny>, buffer_updated: &Py<PyAny>) -> PyResult<ReadEnd> {
        let py = slf.py();
        let me = slf.get();
        let hint = pending(py, &me.ssl.incoming)?;
        let buf = get_buffer.bind(py).call1((hint,))?;
        let wants = buf.len()?;
        let view = py.import(intern!(py, "builtins"))?.getattr(intern!(py, "memoryview"))?.call1((&buf,))?;
        let read = me.ssl.read.bind(py);
        let mut off = 0usize;
        let mut count = 1usize;
        let mut end = ReadEnd::Again;
        let result = (|| -> PyResult<()> {
            count = read.call1((wants, &buf))?.extract()?;
            if count > 0 {
                off = count;
                while off < wants {
                    count = read.call1((wants - off, slice(&view, off, wants)?))?.extract()?;
                    if count > 0 {
                        off += count;
                    } else {
                        break;
                    }
                }
                if off >= wants {
                    end = ReadEnd::Full;
                }
            }
            Ok(())
        })();
        let _ = view.call_method0(intern!(py, "release"));
        if let Err(err) = result {
            if !is_again(py, &err)? {
                return Err(err);
            }
        }
        if off > 0 {
            buffer_updated.bind(py).call1((off,))?;
        }
        if count == 0 {
            end = ReadEnd::Closed;
        }
        Ok(end)
    }

    fn call_eof_received(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let me = slf.get();
        let protocol = {
            let mut st = me.st.borrow_mut(py)?;
            if st.app_state != AppState::ConMade {
                return Ok(());
            }
            st.app_state = AppState::Eof;
            st.app_protocol.as_ref().map(|p| p.clone_ref(py))
        };
        let Some(protocol) = protocol else { return Ok(()) };
        match protocol.bind(py).call_method0(intern!(py, "eof_received")) {
            Ok(keep_open) => {
                if keep_open.is_truthy()? {
                    py_tls(py)?.call_method1(
                        intern!(py, "log_warning"),
                        ("returning true from eof_received() has no effect when using ssl",),
                    )?;
                }
                Ok(())
            }
            Err(err) if is_fatal_to_loop(py, &err) => Err(err),
            Err(err) => Self::fatal_error(slf, err.value(py).as_any(), "Error calling eof_received()"),
        }
    }

    // -- flow control ---------------------------------------------------------------------

    fn write_buffer_size(&self, py: Python<'_>) -> PyResult<usize> {
        let backlog = self.st.borrow(py)?.backlog_size;
        Ok(pending(py, &self.ssl.outgoing)? + backlog)
    }

    fn control_app_writing(slf: &Bound<'_, Self>) -> PyResult<()> {
        let outgoing = pending(slf.py(), &slf.get().ssl.outgoing)?;
        Self::control_app_writing_at(slf, outgoing)
    }

    /// asyncio's `_control_app_writing`, with the outgoing BIO's size already known.
    fn control_app_writing_at(slf: &Bound<'_, Self>, outgoing: usize) -> PyResult<()> {
        let py = slf.py();
        let me = slf.get();
        let call = {
            let mut st = me.st.borrow_mut(py)?;
            let size = outgoing + st.backlog_size;
            if size >= st.out_high && !st.app_writing_paused {
                st.app_writing_paused = true;
                Some("pause_writing")
            } else if size <= st.out_low && st.app_writing_paused {
                st.app_writing_paused = false;
                Some("resume_writing")
            } else {
                None
            }
        };
        let Some(method) = call else { return Ok(()) };
        let (protocol, transport) = {
            let st = me.st.borrow(py)?;
            (st.app_protocol.as_ref().map(|p| p.clone_ref(py)), st.app_transport.as_ref().map(|t| t.clone_ref(py)))
        };
        let Some(protocol) = protocol else { return Ok(()) };
        if let Err(err) = protocol.bind(py).call_method0(method) {
            if is_fatal_to_loop(py, &err) {
                return Err(err);
            }
            py_side(py)?.call_method1(
                intern!(py, "flow_control_failed"),
                (me.loop_(py), transport, slf, err.value(py), method),
            )?;
        }
        Ok(())
    }

    fn control_ssl_reading(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let me = slf.get();
        let size = pending(py, &me.ssl.incoming)?;
        let call = {
            let mut st = me.st.borrow_mut(py)?;
            if size >= st.in_high && !st.ssl_reading_paused {
                st.ssl_reading_paused = true;
                Some(intern!(py, "pause_reading"))
            } else if size <= st.in_low && st.ssl_reading_paused {
                st.ssl_reading_paused = false;
                Some(intern!(py, "resume_reading"))
            } else {
                None
            }
        };
        if let (Some(method), Some(t)) = (call, me.transport(py)?) {
            t.bind(py).call_method0(method)?;
        }
        Ok(())
    }

    // -- errors ---------------------------------------------------------------------------

    fn fatal_error(slf: &Bound<'_, Self>, exc: &Bound<'_, PyAny>, message: &str) -> PyResult<()> {
        let py = slf.py();
        let me = slf.get();
        let transport = me.transport(py)?;
        if let Some(t) = &transport {
            t.bind(py).call_method1(intern!(py, "_force_close"), (exc,))?;
        }
        py_tls(py)?.call_method1(intern!(py, "report_fatal"), (me.loop_(py), transport, slf, exc, message))?;
        Ok(())
    }

    /// asyncio's `except Exception: self._transport.close(); raise` around buffer_updated
    /// and eof_received.
    fn close_and_raise(&self, py: Python<'_>, err: PyErr) -> PyResult<()> {
        if is_exception(py, &err) {
            if let Some(t) = self.transport(py)? {
                t.bind(py).call_method0(intern!(py, "close"))?;
            }
        }
        Err(err)
    }

    fn feed(slf: &Bound<'_, Self>) -> PyResult<()> {
        match slf.get().state(slf.py())? {
            TlsState::DoHandshake => Self::do_handshake(slf),
            TlsState::Wrapped => Self::do_read(slf),
            TlsState::Flushing => Self::do_flush(slf),
            TlsState::Shutdown => Self::do_shutdown(slf),
            TlsState::Unwrapped => Ok(()),
        }
    }
}

#[pymethods]
impl TlsProtocol {
    /// Made by `ferroloop._tls.new_protocol` (which validates, picks the context and calls
    /// `wrap_bio`): `tls` is `(sslobject, incoming, outgoing)` (the SSLObject and its two
    /// MemoryBIOs), `timeouts` is `(ssl_handshake_timeout, ssl_shutdown_timeout)`. The
    /// facade is attached with `_set_app_transport`.
    #[new]
    #[pyo3(signature = (r#loop, app_protocol, sslcontext, tls, waiter, call_connection_made, timeouts))]
    fn new(
        r#loop: &Bound<'_, PyAny>,
        app_protocol: &Bound<'_, PyAny>,
        sslcontext: &Bound<'_, PyAny>,
        tls: (Bound<'_, PyAny>, Bound<'_, PyAny>, Bound<'_, PyAny>),
        waiter: Option<&Bound<'_, PyAny>>,
        call_connection_made: bool,
        timeouts: (Bound<'_, PyAny>, Bound<'_, PyAny>),
    ) -> PyResult<Self> {
        let (sslobject, incoming, outgoing) = (&tls.0, &tls.1, &tls.2);
        let (ssl_handshake_timeout, ssl_shutdown_timeout) = (&timeouts.0, &timeouts.1);
        let py = r#loop.py();
        let sslobj = sslobject.getattr(intern!(py, "_sslobj"))?;
        let (_, cipher_view) = new_buffer(py)?;
        let (plain_buf, plain_view) = new_buffer(py)?;
        let (in_high, in_low) = water_marks(None, None, HIGH_WATER_READ)?;
        let (out_high, out_low) = water_marks(None, None, HIGH_WATER_WRITE)?;
        let extra = PyDict::new(py);
        extra.set_item(intern!(py, "sslcontext"), sslcontext)?;
        Ok(TlsProtocol {
            loop_: r#loop.clone().unbind(),
            ssl: Ssl {
                sslobject: sslobject.clone().unbind(),
                read: sslobj.getattr(intern!(py, "read"))?.unbind(),
                write: sslobj.getattr(intern!(py, "write"))?.unbind(),
                sslobj: sslobj.unbind(),
                incoming_write: incoming.getattr(intern!(py, "write"))?.unbind(),
                outgoing_read: outgoing.getattr(intern!(py, "read"))?.unbind(),
                incoming: incoming.clone().unbind(),
                outgoing: outgoing.clone().unbind(),
                cipher_view,
                plain_buf,
                plain_view,
            },
            handshake_timeout: ssl_handshake_timeout.clone().unbind(),
            shutdown_timeout: ssl_shutdown_timeout.clone().unbind(),
            st: GilCell::new(State {
                receiver: receiver_for(app_protocol)?,
                app_protocol: Some(app_protocol.clone().unbind()),
                app_transport: None,
                app_closed: false,
                transport: None,
                transport_write: None,
                waiter: waiter.map(|w| w.clone().unbind()),
                extra: extra.unbind(),
                state: TlsState::Unwrapped,
                app_state: if call_connection_made { AppState::Init } else { AppState::ConMade },
                conn_lost: 0,
                backlog: VecDeque::new(),
                backlog_size: 0,
                ssl_writing_paused: false,
                app_reading_paused: false,
                ssl_reading_paused: false,
                app_writing_paused: false,
                eof_received: false,
                in_high,
                in_low,
                out_high,
                out_low,
                handshake_timer: None,
                shutdown_timer: None,
                handshake_start: None,
            }),
        })
    }

    fn _set_app_transport(&self, transport: &Bound<'_, PyAny>) -> PyResult<()> {
        let old = self.st.borrow_mut(transport.py())?.app_transport.replace(transport.clone().unbind());
        drop(old);
        Ok(())
    }

    #[getter]
    fn _app_transport(&self, py: Python<'_>) -> PyResult<Option<Py<PyAny>>> {
        Ok(self.st.borrow(py)?.app_transport.as_ref().map(|t| t.clone_ref(py)))
    }

    #[getter]
    fn _transport(&self, py: Python<'_>) -> PyResult<Option<Py<PyAny>>> {
        self.transport(py)
    }

    #[getter]
    fn _sslobj(&self, py: Python<'_>) -> Py<PyAny> {
        self.ssl.sslobject.clone_ref(py)
    }

    #[getter]
    fn _state(&self, py: Python<'_>) -> PyResult<&'static str> {
        Ok(self.state(py)?.name())
    }

    #[getter]
    fn _app_writing_paused(&self, py: Python<'_>) -> PyResult<bool> {
        Ok(self.st.borrow(py)?.app_writing_paused)
    }

    #[getter]
    fn _app_reading_paused(&self, py: Python<'_>) -> PyResult<bool> {
        Ok(self.st.borrow(py)?.app_reading_paused)
    }

    // -- the transport below calls these (BufferedProtocol) -------------------------------

    fn connection_made(slf: &Bound<'_, Self>, transport: &Bound<'_, PyAny>) -> PyResult<()> {
        let py = slf.py();
        let write = transport.getattr(intern!(py, "write"))?;
        {
            let mut st = slf.get().st.borrow_mut(py)?;
            st.transport = Some(transport.clone().unbind());
            st.transport_write = Some(write.unbind());
        }
        Self::start_handshake(slf)
    }

    fn connection_lost(slf: &Bound<'_, Self>, exc: &Bound<'_, PyAny>) -> PyResult<()> {
        let py = slf.py();
        let me = slf.get();
        let backlog = {
            let mut st = me.st.borrow_mut(py)?;
            st.backlog_size = 0;
            st.conn_lost += 1;
            st.app_closed = true;
            std::mem::take(&mut st.backlog)
        };
        drop(backlog);
        me.ssl.outgoing_read.bind(py).call0()?;
        let lost = {
            let mut st = me.st.borrow_mut(py)?;
            if st.state != TlsState::DoHandshake && matches!(st.app_state, AppState::ConMade | AppState::Eof) {
                st.app_state = AppState::ConLost;
                st.app_protocol.as_ref().map(|p| p.clone_ref(py))
            } else {
                None
            }
        };
        if let Some(p) = lost {
            let cb = p.bind(py).getattr(intern!(py, "connection_lost"))?;
            me.loop_(py).call_method1(intern!(py, "call_soon"), (cb, exc))?;
        }
        me.set_state(py, TlsState::Unwrapped)?;
        let dropped = {
            let mut st = me.st.borrow_mut(py)?;
            (
                st.transport.take(),
                st.transport_write.take(),
                st.app_transport.take(),
                st.app_protocol.take(),
                st.receiver.take(),
            )
        };
        drop(dropped);
        let exc = if exc.is_none() { None } else { Some(exc) };
        me.wakeup_waiter(py, exc)?;
        let timers = {
            let mut st = me.st.borrow_mut(py)?;
            (st.shutdown_timer.take(), st.handshake_timer.take())
        };
        Self::cancel_timer(py, timers.0)?;
        Self::cancel_timer(py, timers.1)
    }

    fn get_buffer(&self, py: Python<'_>, _n: isize) -> Py<PyAny> {
        self.ssl.cipher_view.clone_ref(py)
    }

    fn buffer_updated(slf: &Bound<'_, Self>, nbytes: usize) -> PyResult<()> {
        let py = slf.py();
        let me = slf.get();
        let n = nbytes.min(MAX_SIZE);
        let chunk = slice(me.ssl.cipher_view.bind(py), 0, n)?;
        me.ssl.incoming_write.bind(py).call1((&chunk,))?;
        let _ = chunk.call_method0(intern!(py, "release"));
        match Self::feed(slf) {
            Ok(()) => Ok(()),
            Err(err) => me.close_and_raise(py, err),
        }
    }

    /// For transports below that deliver bytes (not a BufferedProtocol's).
    fn data_received(slf: &Bound<'_, Self>, data: &Bound<'_, PyAny>) -> PyResult<()> {
        let py = slf.py();
        let me = slf.get();
        me.ssl.incoming_write.bind(py).call1((data,))?;
        match Self::feed(slf) {
            Ok(()) => Ok(()),
            Err(err) => me.close_and_raise(py, err),
        }
    }

    fn eof_received(slf: &Bound<'_, Self>) -> PyResult<Option<bool>> {
        let py = slf.py();
        let me = slf.get();
        me.st.borrow_mut(py)?.eof_received = true;
        let result = (|| -> PyResult<Option<bool>> {
            if me.debug(py)? {
                py_tls(py)?.call_method1(intern!(py, "log_debug"), ("%r received EOF", slf))?;
            }
            match me.state(py)? {
                TlsState::DoHandshake => {
                    let exc =
                        pyo3::exceptions::PyConnectionResetError::new_err(()).into_value(py).into_bound(py).into_any();
                    Self::on_handshake_complete(slf, Some(exc))?;
                }
                TlsState::Wrapped => {
                    me.set_state(py, TlsState::Flushing)?;
                    if me.st.borrow(py)?.app_reading_paused {
                        return Ok(Some(true));
                    }
                    Self::do_flush(slf)?;
                }
                TlsState::Flushing => {
                    Self::do_write(slf)?;
                    me.set_state(py, TlsState::Shutdown)?;
                    Self::do_shutdown(slf)?;
                }
                TlsState::Shutdown => Self::do_shutdown(slf)?,
                TlsState::Unwrapped => {}
            }
            Ok(None)
        })();
        match result {
            Ok(r) => Ok(r),
            Err(err) => me.close_and_raise(py, err).map(|_| None),
        }
    }

    fn pause_writing(&self, py: Python<'_>) -> PyResult<()> {
        let mut st = self.st.borrow_mut(py)?;
        if st.ssl_writing_paused {
            return Err(pyo3::exceptions::PyAssertionError::new_err(()));
        }
        st.ssl_writing_paused = true;
        Ok(())
    }

    fn resume_writing(slf: &Bound<'_, Self>) -> PyResult<()> {
        {
            let mut st = slf.get().st.borrow_mut(slf.py())?;
            if !st.ssl_writing_paused {
                return Err(pyo3::exceptions::PyAssertionError::new_err(()));
            }
            st.ssl_writing_paused = false;
        }
        Self::process_outgoing(slf)
    }

    fn _check_handshake_timeout(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let me = slf.get();
        if me.state(py)? == TlsState::DoHandshake {
            let msg = format!(
                "SSL handshake is taking longer than {} seconds: aborting the connection",
                me.handshake_timeout.bind(py).str()?
            );
            let exc = pyo3::exceptions::PyConnectionAbortedError::new_err(msg).into_value(py).into_bound(py).into_any();
            Self::fatal_error(slf, &exc, "Fatal error on transport")?;
        }
        Ok(())
    }

    fn _check_shutdown_timeout(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let me = slf.get();
        if matches!(me.state(py)?, TlsState::Flushing | TlsState::Shutdown) {
            if let Some(t) = me.transport(py)? {
                let exc = py_tls(py)?.getattr(intern!(py, "TimeoutError"))?.call1(("SSL shutdown timed out",))?;
                t.bind(py).call_method1(intern!(py, "_force_close"), (exc,))?;
            }
        }
        Ok(())
    }

    fn _do_read(slf: &Bound<'_, Self>) -> PyResult<()> {
        Self::do_read(slf)
    }

    /// The app's `resume_reading`, one loop turn later (asyncio's `resume`).
    fn _resume(slf: &Bound<'_, Self>) -> PyResult<()> {
        match slf.get().state(slf.py())? {
            TlsState::Wrapped => Self::do_read(slf),
            TlsState::Flushing => Self::do_flush(slf),
            TlsState::Shutdown => Self::do_shutdown(slf),
            _ => Ok(()),
        }
    }

    // -- the app transport's engine (bound onto ferroloop._tls.TlsTransport) ---------------

    fn write(slf: &Bound<'_, Self>, data: &Bound<'_, PyAny>) -> PyResult<()> {
        let py = slf.py();
        // SAFETY: type checks on a live object.
        let ok = unsafe {
            pyo3::ffi::PyBytes_Check(data.as_ptr()) != 0
                || pyo3::ffi::PyByteArray_Check(data.as_ptr()) != 0
                || pyo3::ffi::PyMemoryView_Check(data.as_ptr()) != 0
        };
        if !ok {
            return Err(PyTypeError::new_err(format!(
                "data: expecting a bytes-like instance, got {}",
                data.get_type().name()?
            )));
        }
        if !data.is_truthy()? {
            return Ok(());
        }
        let _ = py;
        Self::write_appdata(slf, [data.clone()])
    }

    fn writelines(slf: &Bound<'_, Self>, list_of_data: &Bound<'_, PyAny>) -> PyResult<()> {
        let items: Vec<Bound<'_, PyAny>> = list_of_data.try_iter()?.collect::<PyResult<_>>()?;
        Self::write_appdata(slf, items)
    }

    fn is_closing(&self, py: Python<'_>) -> PyResult<bool> {
        Ok(self.st.borrow(py)?.app_closed)
    }

    fn close(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let me = slf.get();
        let first = {
            let mut st = me.st.borrow_mut(py)?;
            let first = !st.app_closed;
            st.app_closed = true;
            first || (st.state == TlsState::Flushing && st.eof_received && st.shutdown_timer.is_none())
        };
        if first {
            Self::start_shutdown(slf)?;
        }
        Ok(())
    }

    fn abort(slf: &Bound<'_, Self>) -> PyResult<()> {
        slf.get().st.borrow_mut(slf.py())?.app_closed = true;
        Self::abort_with(slf, None)
    }

    #[pyo3(signature = (exc=None))]
    fn _force_close(slf: &Bound<'_, Self>, exc: Option<Bound<'_, PyAny>>) -> PyResult<()> {
        slf.get().st.borrow_mut(slf.py())?.app_closed = true;
        Self::abort_with(slf, exc)
    }

    fn is_reading(&self, py: Python<'_>) -> PyResult<bool> {
        Ok(!self.st.borrow(py)?.app_reading_paused)
    }

    fn pause_reading(&self, py: Python<'_>) -> PyResult<()> {
        self.st.borrow_mut(py)?.app_reading_paused = true;
        Ok(())
    }

    fn resume_reading(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let me = slf.get();
        {
            let mut st = me.st.borrow_mut(py)?;
            if !st.app_reading_paused {
                return Ok(());
            }
            st.app_reading_paused = false;
        }
        let resume = slf.getattr(intern!(py, "_resume"))?;
        me.loop_(py).call_method1(intern!(py, "call_soon"), (resume,))?;
        Ok(())
    }

    #[pyo3(signature = (high=None, low=None))]
    fn set_write_buffer_limits(slf: &Bound<'_, Self>, high: Option<i64>, low: Option<i64>) -> PyResult<()> {
        let (h, l) = water_marks(high, low, HIGH_WATER_WRITE)?;
        {
            let mut st = slf.get().st.borrow_mut(slf.py())?;
            st.out_high = h;
            st.out_low = l;
        }
        Self::control_app_writing(slf)
    }

    fn get_write_buffer_limits(&self, py: Python<'_>) -> PyResult<(usize, usize)> {
        let st = self.st.borrow(py)?;
        Ok((st.out_low, st.out_high))
    }

    fn get_write_buffer_size(&self, py: Python<'_>) -> PyResult<usize> {
        self.write_buffer_size(py)
    }

    #[pyo3(signature = (high=None, low=None))]
    fn set_read_buffer_limits(slf: &Bound<'_, Self>, high: Option<i64>, low: Option<i64>) -> PyResult<()> {
        let (h, l) = water_marks(high, low, HIGH_WATER_READ)?;
        {
            let mut st = slf.get().st.borrow_mut(slf.py())?;
            st.in_high = h;
            st.in_low = l;
        }
        Self::control_ssl_reading(slf)
    }

    fn get_read_buffer_limits(&self, py: Python<'_>) -> PyResult<(usize, usize)> {
        let st = self.st.borrow(py)?;
        Ok((st.in_low, st.in_high))
    }

    fn get_read_buffer_size(&self, py: Python<'_>) -> PyResult<usize> {
        pending(py, &self.ssl.incoming)
    }

    fn get_protocol(&self, py: Python<'_>) -> PyResult<Option<Py<PyAny>>> {
        Ok(self.st.borrow(py)?.app_protocol.as_ref().map(|p| p.clone_ref(py)))
    }

    fn set_protocol(&self, protocol: &Bound<'_, PyAny>) -> PyResult<()> {
        let receiver = receiver_for(protocol)?;
        let old = {
            let mut st = self.st.borrow_mut(protocol.py())?;
            (st.app_protocol.replace(protocol.clone().unbind()), std::mem::replace(&mut st.receiver, receiver))
        };
        drop(old);
        Ok(())
    }

    #[pyo3(signature = (name, default=None))]
    fn get_extra_info(
        &self,
        py: Python<'_>,
        name: &Bound<'_, PyAny>,
        default: Option<Py<PyAny>>,
    ) -> PyResult<Py<PyAny>> {
        let (extra, transport) = {
            let st = self.st.borrow(py)?;
            (st.extra.clone_ref(py), st.transport.as_ref().map(|t| t.clone_ref(py)))
        };
        if let Some(v) = extra.bind(py).get_item(name)? {
            return Ok(v.unbind());
        }
        let default = default.unwrap_or_else(|| py.None());
        match transport {
            Some(t) => Ok(t.bind(py).call_method1(intern!(py, "get_extra_info"), (name, default))?.unbind()),
            None => Ok(default),
        }
    }

    #[pyo3(signature = (name, default=None))]
    fn _get_extra_info(
        &self,
        py: Python<'_>,
        name: &Bound<'_, PyAny>,
        default: Option<Py<PyAny>>,
    ) -> PyResult<Py<PyAny>> {
        self.get_extra_info(py, name, default)
    }

    /// For CPython's tests (`_SSLProtocolTransport._test__append_write_backlog`).
    #[pyo3(name = "_test__append_write_backlog")]
    fn test_append_write_backlog(&self, data: &Bound<'_, PyAny>) -> PyResult<()> {
        let len = data.len()?;
        let mut st = self.st.borrow_mut(data.py())?;
        st.backlog.push_back(data.clone().unbind());
        st.backlog_size += len;
        Ok(())
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        visit.call(&self.loop_)?;
        if let Some(st) = self.st.try_borrow_for_gc() {
            visit.call(&st.app_protocol)?;
            visit.call(&st.app_transport)?;
            visit.call(&st.transport)?;
            visit.call(&st.transport_write)?;
            visit.call(&st.waiter)?;
            visit.call(&st.extra)?;
            visit.call(&st.handshake_timer)?;
            visit.call(&st.shutdown_timer)?;
            for d in &st.backlog {
                visit.call(d)?;
            }
            if let Some(r) = &st.receiver {
                r.visit(&visit)?;
            }
        }
        Ok(())
    }

    fn __clear__(&self) {
        Python::attach(|py| {
            let taken = self.st.borrow_mut(py).ok().map(|mut st| {
                (
                    st.app_protocol.take(),
                    st.app_transport.take(),
                    st.transport.take(),
                    st.transport_write.take(),
                    st.waiter.take(),
                    st.receiver.take(),
                    st.handshake_timer.take(),
                    st.shutdown_timer.take(),
                    std::mem::take(&mut st.backlog),
                )
            });
            drop(taken);
        });
    }
}
