//! TCP and Unix stream sockets: asyncio's `_SelectorSocketTransport`, natively, on the
//! stream engine (stream.rs): recv/send, the peer's EOF as a half-close (`eof_received`
//! may keep the transport open), `write_eof` as shutdown(SHUT_WR), and the writable edge
//! a sendfile waits on (`_wait_writable`).

use pyo3::gc::PyVisit;
use pyo3::prelude::*;
use pyo3::PyTraverseError;

use super::stream::{stream_methods, Ends, Stream, StreamKind};
use crate::loop_base::LoopBase;
use crate::ready::{IoKind, IoSource, Readiness, WRITE};

#[pyclass(module = "ferroloop._ferroloop", frozen)]
pub struct SocketTransport {
    s: Stream,
}

impl IoSource for SocketTransport {
    const KIND: IoKind = IoKind::Socket;
}

impl StreamKind for SocketTransport {
    const PIPE: bool = false;
    const READ_ERROR: &'static str = "Fatal read error on socket transport";
    const WRITE_ERROR: &'static str = "Fatal write error on socket transport";
    const LOST_WRITE: &'static str = "socket.send() raised exception.";

    fn stream(&self) -> &Stream {
        &self.s
    }

    fn ready(slf: &Bound<'_, Self>, bits: Readiness) -> PyResult<()> {
        Stream::readable(slf, bits)?;
        if bits & WRITE != 0 {
            Stream::writable(slf)?;
        }
        Ok(())
    }
}

stream_methods!(SocketTransport, {
    /// The engine of a TCP or Unix stream socket transport (`_transports.SocketTransport`).
    #[staticmethod]
    #[pyo3(signature = (r#loop, facade, sock, protocol, waiter=None, server=None))]
    fn open(
        r#loop: &Bound<'_, LoopBase>,
        facade: &Bound<'_, PyAny>,
        sock: &Bound<'_, PyAny>,
        protocol: &Bound<'_, PyAny>,
        waiter: Option<&Bound<'_, PyAny>>,
        server: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Py<SocketTransport>> {
        let ends = Ends { facade, sock, protocol };
        Stream::open(r#loop, ends, waiter, server, |s| Py::new(r#loop.py(), SocketTransport { s }))
    }
});
