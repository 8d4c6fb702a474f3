//! The datagram transport (UDP, Unix datagram sockets): asyncio's
//! `_SelectorDatagramTransport`, natively.
//!
//! Edge-triggered: a readable edge may stand for many datagrams, so a read drains the
//! socket (up to a batch, then re-queues itself for the next iteration, to stay fair to
//! other callbacks). Addresses of IPv4/IPv6 peers are converted natively; other families
//! go through the Python socket object. As in asyncio, OSErrors of sends and receives go
//! to `error_received` and do not close the transport.

use std::collections::VecDeque;
use std::mem::MaybeUninit;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::{BorrowedFd, RawFd};

use pyo3::exceptions::{PyBlockingIOError, PyInterruptedError, PyOSError, PyValueError};
use pyo3::gc::PyVisit;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyString, PyTuple};
use pyo3::{intern, PyTraverseError};
use socket2::{SockAddr, SockRef};

use super::{
    check_bytes_like, in_context, py_side, python_minor, water_marks, Base, ByteView, Life, DEFAULT_HIGH_WATER,
};
use crate::gil_cell::GilCell;
use crate::handles::is_fatal_to_loop;
use crate::loop_base::{LoopBase, MAX_READ};
use crate::os::{is_would_block, os_error_value};
use crate::ready::{IoKind, IoRef, IoSource, Readiness, Ready, READ, WRITE};

/// Datagrams read per readiness before yielding to other callbacks.
const READ_BATCH: usize = 32;
/// What asyncio counts per buffered datagram beyond its bytes: 8 bytes of header from
/// 3.13 on, nothing before. A flush takes back exactly what sendto counted, so the size is
/// 0 again once the buffer is empty (3.13's own transport takes back only the bytes).
fn header_size(py: Python<'_>) -> usize {
    if py.version_info() >= (3, 13) {
        8
    } else {
        0
    }
}

struct State {
    base: Base,
    /// The fixed peer (`remote_addr`), as given: sendto() addresses must match it.
    address: Option<Py<PyAny>>,
    /// Connected socket: use send(), not sendto().
    connected: bool,
    buf: VecDeque<(Py<PyBytes>, Option<Py<PyAny>>)>,
    /// What get_write_buffer_size reports: the bytes, and from 3.13 on a header each.
    buf_size: usize,
}

impl IoSource for DatagramTransport {
    const KIND: IoKind = IoKind::Datagram;
}

#[pyclass(module = "ferroloop._ferroloop", frozen)]
pub struct DatagramTransport {
    fd: RawFd,
    /// AF_INET / AF_INET6 get native address conversion.
    inet: bool,
    /// Per-datagram overhead in get_write_buffer_size (`header_size`).
    header: usize,
    loop_: Py<LoopBase>,
    st: GilCell<State>,
}

fn with_sock<R>(fd: RawFd, f: impl FnOnce(SockRef<'_>) -> R) -> R {
    // SAFETY: the fd stays open while the transport is registered (it is closed only in
    // connection_lost, after which no IO is attempted); SockRef never closes it.
    let fd = unsafe { BorrowedFd::borrow_raw(fd) };
    f(SockRef::from(&fd))
}

/// (host, port) or (host, port, flowinfo, scope_id), as the socket module returns them.
fn addr_to_py<'py>(py: Python<'py>, addr: &SockAddr) -> PyResult<Option<Bound<'py, PyAny>>> {
    Ok(match addr.as_socket() {
        Some(SocketAddr::V4(a)) => Some(
            PyTuple::new(
                py,
                [a.ip().to_string().into_pyobject(py)?.into_any(), a.port().into_pyobject(py)?.into_any()],
            )?
            .into_any(),
        ),
        Some(SocketAddr::V6(a)) => Some(
            PyTuple::new(
                py,
                [
                    a.ip().to_string().into_pyobject(py)?.into_any(),
                    a.port().into_pyobject(py)?.into_any(),
                    a.flowinfo().into_pyobject(py)?.into_any(),
                    a.scope_id().into_pyobject(py)?.into_any(),
                ],
            )?
            .into_any(),
        ),
        None => None,
    })
}

/// A numeric (host, port[, flowinfo, scope_id]) tuple; None means "let Python resolve it".
fn addr_from_py(addr: &Bound<'_, PyAny>) -> Option<SockAddr> {
    let t = addr.cast::<PyTuple>().ok()?;
    if t.len() < 2 {
        return None;
    }
    let host = t.get_item(0).ok()?;
    let host = host.cast::<PyString>().ok()?.to_str().ok()?;
    let port: u16 = t.get_item(1).ok()?.extract().ok()?;
    let ip: IpAddr = host.parse().ok()?;
    let sa = match ip {
        IpAddr::V4(v4) => SocketAddr::new(IpAddr::V4(v4), port),
        IpAddr::V6(v6) => {
            let flow: u32 = if t.len() > 2 { t.get_item(2).ok()?.extract().ok()? } else { 0 };
            let scope: u32 = if t.len() > 3 { t.get_item(3).ok()?.extract().ok()? } else { 0 };
            SocketAddr::V6(std::net::SocketAddrV6::new(v6, port, flow, scope))
        }
    };
    Some(SockAddr::from(sa))
}

enum SendOutcome {
    Sent,
    WouldBlock,
    OsError(Py<PyAny>),
    Other(PyErr),
}

impl DatagramTransport {
    fn core_loop(&self) -> &LoopBase {
        self.loop_.get()
    }

    pub(crate) fn on_ready(slf: &Bound<'_, Self>, bits: Readiness) -> PyResult<()> {
        let py = slf.py();
        let ctx = slf.get().st.borrow(py)?.base.context.clone_ref(py);
        in_context(py, &ctx, || {
            if bits & READ != 0 {
                Self::on_readable(slf)?;
            }
            if bits & WRITE != 0 {
                Self::flush(slf)?;
            }
            Ok(())
        })
    }

    fn protocol(&self, py: Python<'_>) -> PyResult<Option<Py<PyAny>>> {
        Ok(self.st.borrow(py)?.base.protocol.as_ref().map(|p| p.clone_ref(py)))
    }

    fn on_readable(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let me = slf.get();
        {
            let mut st = me.st.borrow_mut(py)?;
            st.base.readable = true;
            if st.base.life != Life::Open {
                return Ok(());
            }
        }
        for _ in 0..READ_BATCH {
            let Some(protocol) = me.protocol(py)? else { return Ok(()) };
            if me.st.borrow(py)?.base.is_lost() {
                return Ok(());
            }
            let got = if me.inet { Self::recv_native(slf)? } else { Self::recv_python(slf)? };
            let (data, addr) = match got {
                Received::Datagram(d, a) => (d, a),
                Received::Drained => {
                    me.st.borrow_mut(py)?.base.readable = false;
                    return Ok(());
                }
                Received::OsError(exc) => {
                    Self::report(slf, protocol.bind(py).call_method1(intern!(py, "error_received"), (exc,)))?;
                    continue;
                }
                Received::Fatal(err) => {
                    if is_fatal_to_loop(py, &err) {
                        return Err(err);
                    }
                    let exc = err.into_value(py).into_bound(py).into_any();
                    return Self::fatal_error(slf, &exc, "Fatal read error on datagram transport");
                }
            };
            Self::report(slf, protocol.bind(py).call_method1(intern!(py, "datagram_received"), (data, addr)))?;
        }
        // More may be waiting and the edge is spent: come back next iteration.
        me.core_loop().push_ready(py, Ready::Io(IoRef::new(slf.clone().unbind()), READ))
    }

    /// asyncio lets exceptions of datagram_received/error_received escape the reader
    /// handle to the loop's exception handler; the transport stays open.
    fn report(slf: &Bound<'_, Self>, result: PyResult<Bound<'_, PyAny>>) -> PyResult<()> {
        let py = slf.py();
        match result {
            Ok(_) => Ok(()),
            Err(err) if is_fatal_to_loop(py, &err) => Err(err),
            Err(err) => {
                let facade =
                    slf.get().st.borrow(py)?.base.facade.as_ref().map_or_else(|| py.None(), |f| f.clone_ref(py));
                py_side(py)?.call_method1(
                    intern!(py, "datagram_callback_failed"),
                    (slf.get().loop_.clone_ref(py), facade, err.into_value(py)),
                )?;
                Ok(())
            }
        }
    }

    fn recv_native(slf: &Bound<'_, Self>) -> PyResult<Received> {
        let py = slf.py();
        let fd = slf.get().fd;
        let r = slf.get().core_loop().with_read_buffer(py, |buf| {
            // SAFETY: u8 and MaybeUninit<u8> have the same layout; recv_from only writes.
            let uninit = unsafe { &mut *(buf as *mut [u8] as *mut [MaybeUninit<u8>]) };
            with_sock(fd, |s| s.recv_from(uninit)).map(|(n, addr)| (PyBytes::new(py, &buf[..n]), addr))
        })?;
        Ok(match r {
            Ok((data, addr)) => Received::Datagram(
                data.into_any().unbind(),
                match addr_to_py(py, &addr)? {
                    Some(a) => a.unbind(),
                    None => py.None(),
                },
            ),
            Err(e) if is_would_block(&e) => Received::Drained,
            Err(e) => Received::OsError(os_error_value(py, &e)?.unbind()),
        })
    }

    fn recv_python(slf: &Bound<'_, Self>) -> PyResult<Received> {
        let py = slf.py();
        let Some(sock) = slf.get().st.borrow(py)?.base.sock.as_ref().map(|s| s.clone_ref(py)) else {
            return Ok(Received::Drained);
        };
        match sock.bind(py).call_method1(intern!(py, "recvfrom"), (MAX_READ,)) {
            Ok(pair) => {
                let (d, a): (Py<PyAny>, Py<PyAny>) = pair.extract()?;
                Ok(Received::Datagram(d, a))
            }
            Err(e) if e.is_instance_of::<PyBlockingIOError>(py) || e.is_instance_of::<PyInterruptedError>(py) => {
                Ok(Received::Drained)
            }
            Err(e) if e.is_instance_of::<PyOSError>(py) => Ok(Received::OsError(e.into_value(py).into_any())),
            Err(e) => Ok(Received::Fatal(e)),
        }
    }

    /// One datagram to the socket.
    fn send_one(
        slf: &Bound<'_, Self>,
        data: &Bound<'_, PyAny>,
        view: &[u8],
        addr: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<SendOutcome> {
        let py = slf.py();
        let me = slf.get();
        let connected = me.st.borrow(py)?.connected;
        let native = if connected {
            Some(with_sock(me.fd, |s| s.send(view)))
        } else {
            addr.filter(|_| me.inet).and_then(addr_from_py).map(|sa| with_sock(me.fd, |s| s.send_to(view, &sa)))
        };
        match native {
            Some(Ok(_)) => Ok(SendOutcome::Sent),
            Some(Err(e)) if is_would_block(&e) => Ok(SendOutcome::WouldBlock),
            Some(Err(e)) => Ok(SendOutcome::OsError(os_error_value(py, &e)?.unbind())),
            None => {
                // Names to resolve, or a non-IP family: the socket module knows how.
                let Some(sock) = me.st.borrow(py)?.base.sock.as_ref().map(|s| s.clone_ref(py)) else {
                    return Ok(SendOutcome::Sent);
                };
                let addr = addr.map_or_else(|| py.None(), |a| a.clone().unbind());
                match sock.bind(py).call_method1(intern!(py, "sendto"), (data, addr)) {
                    Ok(_) => Ok(SendOutcome::Sent),
                    Err(e)
                        if e.is_instance_of::<PyBlockingIOError>(py) || e.is_instance_of::<PyInterruptedError>(py) =>
                    {
                        Ok(SendOutcome::WouldBlock)
                    }
                    Err(e) if e.is_instance_of::<PyOSError>(py) => {
                        Ok(SendOutcome::OsError(e.into_value(py).into_any()))
                    }
                    Err(e) => Ok(SendOutcome::Other(e)),
                }
            }
        }
    }

    fn flush(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let me = slf.get();
        loop {
            let head = {
                let mut st = me.st.borrow_mut(py)?;
                if st.base.is_lost() {
                    return Ok(());
                }
                match st.buf.pop_front() {
                    Some((data, addr)) => {
                        st.buf_size -= data.bind(py).as_bytes().len() + me.header;
                        (data, addr)
                    }
                    None => break,
                }
            };
            let (data, addr) = head;
            let bytes = data.bind(py);
            let outcome = Self::send_one(slf, bytes.as_any(), bytes.as_bytes(), addr.as_ref().map(|a| a.bind(py)))?;
            match outcome {
                SendOutcome::Sent => {}
                SendOutcome::WouldBlock => {
                    let mut st = me.st.borrow_mut(py)?;
                    st.buf_size += bytes.as_bytes().len() + me.header;
                    st.buf.push_front((data, addr));
                    return Ok(());
                }
                failed => return Self::send_failed(slf, failed),
            }
        }
        let resume = {
            let mut st = me.st.borrow_mut(py)?;
            let size = st.buf_size;
            st.base.resume_due(py, size)
        };
        if let Some(p) = resume {
            Self::call_flow_control(slf, &p, "resume_writing")?;
        }
        let finish = {
            let mut st = me.st.borrow_mut(py)?;
            let finish = st.buf.is_empty() && st.base.life == Life::Closing;
            if finish {
                st.base.lose();
            }
            finish
        };
        if finish {
            Self::call_connection_lost(slf, py.None().into_bound(py))?;
        }
        Ok(())
    }

    /// A send that failed: an OSError goes to `error_received` (the transport stays open,
    /// as in asyncio), anything else is fatal.
    fn send_failed(slf: &Bound<'_, Self>, outcome: SendOutcome) -> PyResult<()> {
        let py = slf.py();
        match outcome {
            SendOutcome::Sent | SendOutcome::WouldBlock => Ok(()),
            SendOutcome::OsError(exc) => {
                let Some(protocol) = slf.get().protocol(py)? else { return Ok(()) };
                Self::report(slf, protocol.bind(py).call_method1(intern!(py, "error_received"), (exc,)))
            }
            SendOutcome::Other(err) => {
                if is_fatal_to_loop(py, &err) {
                    return Err(err);
                }
                let exc = err.into_value(py).into_bound(py).into_any();
                Self::fatal_error(slf, &exc, "Fatal write error on datagram transport")
            }
        }
    }

    fn call_flow_control(slf: &Bound<'_, Self>, protocol: &Py<PyAny>, method: &str) -> PyResult<()> {
        let facade = slf.get().st.borrow(slf.py())?.base.facade_or_none(slf.py());
        super::call_flow_control(slf.py(), &slf.get().loop_, facade, protocol, method)
    }

    fn fatal_error(slf: &Bound<'_, Self>, exc: &Bound<'_, PyAny>, message: &str) -> PyResult<()> {
        let py = slf.py();
        let parts = {
            let st = slf.get().st.borrow(py)?;
            (st.base.facade_or_none(py), st.base.protocol_or_none(py))
        };
        super::report_fatal(py, &slf.get().loop_, parts, exc, message, "oserror")?;
        Self::force_close(slf, Some(exc.clone().unbind()))
    }

    fn force_close(slf: &Bound<'_, Self>, exc: Option<Py<PyAny>>) -> PyResult<()> {
        let py = slf.py();
        let dropped = {
            let mut st = slf.get().st.borrow_mut(py)?;
            if !st.base.lose() {
                return Ok(());
            }
            st.buf_size = 0;
            std::mem::take(&mut st.buf)
        };
        drop(dropped);
        super::schedule_connection_lost(slf.as_any(), &slf.get().loop_, exc)
    }

    fn call_connection_lost(slf: &Bound<'_, Self>, exc: Bound<'_, PyAny>) -> PyResult<()> {
        let py = slf.py();
        let me = slf.get();
        let (protocol, sock, facade, key, address) = {
            let mut st = me.st.borrow_mut(py)?;
            (st.base.protocol.take(), st.base.sock.take(), st.base.facade.take(), st.base.key.take(), st.address.take())
        };
        let ended = super::finish(py, me.core_loop(), (key, me.fd), (protocol, sock), exc);
        drop((facade, address));
        ended
    }

    /// Flow control after the buffer grew (sendto, new limits).
    fn maybe_pause(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let pause = {
            let mut st = slf.get().st.borrow_mut(py)?;
            let size = st.buf_size;
            st.base.pause_due(py, size)
        };
        match pause {
            Some(p) => Self::call_flow_control(slf, &p, "pause_writing"),
            None => Ok(()),
        }
    }
}

enum Received {
    Datagram(Py<PyAny>, Py<PyAny>),
    Drained,
    OsError(Py<PyAny>),
    Fatal(PyErr),
}

#[pymethods]
impl DatagramTransport {
    /// Makes the engine for `facade` over `sock`, registers it, and schedules
    /// connection_made, then reading, then the waiter.
    #[staticmethod]
    #[pyo3(signature = (r#loop, facade, sock, protocol, address=None, waiter=None, connected=false))]
    fn open(
        r#loop: &Bound<'_, LoopBase>,
        facade: &Bound<'_, PyAny>,
        sock: &Bound<'_, PyAny>,
        protocol: &Bound<'_, PyAny>,
        address: Option<&Bound<'_, PyAny>>,
        waiter: Option<&Bound<'_, PyAny>>,
        connected: bool,
    ) -> PyResult<Py<DatagramTransport>> {
        let py = r#loop.py();
        let core = r#loop.get();
        let fd = super::open_fd(r#loop, sock)?;
        let family: i32 = sock.getattr(intern!(py, "family"))?.extract()?;
        let transport = Py::new(
            py,
            DatagramTransport {
                fd,
                inet: family == libc::AF_INET || family == libc::AF_INET6,
                header: header_size(py),
                loop_: r#loop.clone().unbind(),
                st: GilCell::new(State {
                    base: Base::new(py, facade, sock, protocol)?,
                    address: address.filter(|a| !a.is_none()).map(|a| a.clone().unbind()),
                    connected,
                    buf: VecDeque::new(),
                    buf_size: 0,
                }),
            },
        )?;
        let key = core.register(py, fd, IoRef::new(transport.clone_ref(py)))?;
        transport.get().st.borrow_mut(py)?.base.key = Some(key);
        super::schedule_start(r#loop, protocol, facade, transport.bind(py).as_any(), waiter)?;
        Ok(transport)
    }

    fn _start_reading(slf: &Bound<'_, Self>) -> PyResult<()> {
        let queue = {
            let mut st = slf.get().st.borrow_mut(slf.py())?;
            st.base.start();
            st.base.readable && !st.base.is_closing()
        };
        if queue {
            slf.get().core_loop().push_ready(slf.py(), Ready::Io(IoRef::new(slf.clone().unbind()), READ))?;
        }
        Ok(())
    }

    #[pyo3(signature = (data, addr=None))]
    fn sendto(slf: &Bound<'_, Self>, data: &Bound<'_, PyAny>, addr: Option<Bound<'_, PyAny>>) -> PyResult<()> {
        let py = slf.py();
        let me = slf.get();
        check_bytes_like(data, "data")?;
        if python_minor(py) < 13 && !data.is_truthy()? {
            return Ok(()); // before 3.13 asyncio sends no empty datagram
        }
        let mut addr = addr.filter(|a| !a.is_none());
        let (fixed, lost, buffered) = {
            let st = me.st.borrow(py)?;
            (st.address.as_ref().map(|a| a.clone_ref(py)), st.base.is_lost(), !st.buf.is_empty())
        };
        if let Some(fixed) = &fixed {
            if let Some(a) = &addr {
                if !a.eq(fixed.bind(py))? {
                    return Err(PyValueError::new_err(format!(
                        "Invalid address: must be None or {}",
                        fixed.bind(py).str()?
                    )));
                }
            }
            addr = Some(fixed.bind(py).clone());
        }
        if lost && fixed.is_some() {
            let warn = me.st.borrow_mut(py)?.base.drop_write();
            if warn {
                py_side(py)?.call_method1(intern!(py, "log_warning"), ("socket.send() raised exception.",))?;
            }
            return Ok(());
        }
        let view = ByteView::new(data)?;
        if !buffered {
            match Self::send_one(slf, data, view.as_slice(), addr.as_ref())? {
                SendOutcome::Sent => return Ok(()),
                SendOutcome::WouldBlock => {}
                failed => return Self::send_failed(slf, failed),
            }
        }
        {
            let mut st = me.st.borrow_mut(py)?;
            st.buf.push_back((PyBytes::new(py, view.as_slice()).unbind(), addr.map(Bound::unbind)));
            st.buf_size += view.len() + me.header;
        }
        Self::maybe_pause(slf)
    }

    fn close(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        {
            let mut st = slf.get().st.borrow_mut(py)?;
            if !st.base.close() {
                return Ok(());
            }
            if !st.buf.is_empty() {
                return Ok(());
            }
            st.base.lose();
        }
        super::schedule_connection_lost(slf.as_any(), &slf.get().loop_, None)
    }

    fn abort(slf: &Bound<'_, Self>) -> PyResult<()> {
        Self::force_close(slf, None)
    }

    fn _force_close(slf: &Bound<'_, Self>, exc: Option<Py<PyAny>>) -> PyResult<()> {
        Self::force_close(slf, exc)
    }

    fn _call_connection_lost(slf: &Bound<'_, Self>, exc: Bound<'_, PyAny>) -> PyResult<()> {
        Self::call_connection_lost(slf, exc)
    }

    fn is_closing(&self, py: Python<'_>) -> PyResult<bool> {
        Ok(self.st.borrow(py)?.base.is_closing())
    }

    fn _is_closed(&self, py: Python<'_>) -> PyResult<bool> {
        Ok(self.st.borrow(py)?.base.sock.is_none())
    }

    fn get_write_buffer_size(&self, py: Python<'_>) -> PyResult<usize> {
        Ok(self.st.borrow(py)?.buf_size)
    }

    fn get_write_buffer_limits(&self, py: Python<'_>) -> PyResult<(usize, usize)> {
        let st = self.st.borrow(py)?;
        Ok((st.base.low, st.base.high))
    }

    #[pyo3(signature = (high=None, low=None))]
    fn set_write_buffer_limits(slf: &Bound<'_, Self>, high: Option<i64>, low: Option<i64>) -> PyResult<()> {
        let (high, low) = water_marks(high, low, DEFAULT_HIGH_WATER)?;
        {
            let mut st = slf.get().st.borrow_mut(slf.py())?;
            st.base.high = high;
            st.base.low = low;
        }
        Self::maybe_pause(slf)
    }

    fn set_protocol(&self, protocol: &Bound<'_, PyAny>) -> PyResult<()> {
        let old = self.st.borrow_mut(protocol.py())?.base.protocol.replace(protocol.clone().unbind());
        drop(old);
        Ok(())
    }

    fn get_protocol(&self, py: Python<'_>) -> PyResult<Option<Py<PyAny>>> {
        self.protocol(py)
    }

    fn _facade_repr(&self, py: Python<'_>) -> PyResult<String> {
        match self.st.borrow(py)?.base.facade.as_ref().map(|f| f.clone_ref(py)) {
            Some(f) => Ok(f.bind(py).repr()?.to_string()),
            None => Ok("<closed datagram transport>".into()),
        }
    }

    #[getter]
    fn _sock_fd(&self) -> RawFd {
        self.fd
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        visit.call(&self.loop_)?;
        if let Some(st) = self.st.try_borrow_for_gc() {
            st.base.visit(&visit)?;
            visit.call(&st.address)?;
            for (_, a) in st.buf.iter() {
                visit.call(a)?;
            }
        }
        Ok(())
    }

    fn __clear__(&self) {
        Python::attach(|py| {
            let taken = self
                .st
                .borrow_mut(py)
                .ok()
                .map(|mut st| (st.base.protocol.take(), st.base.facade.take(), std::mem::take(&mut st.buf)));
            drop(taken);
        });
    }
}
