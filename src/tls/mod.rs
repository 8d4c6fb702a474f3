//! ferroloop's TLS layer: asyncio's `sslproto.SSLProtocol`, natively, over CPython's own
//! `ssl` objects (the user's `SSLContext`, `wrap_bio`, two `MemoryBIO`s, the `SSLObject`).
//!
//! `protocol.rs` is the engine: to the socket transport below it is a BufferedProtocol
//! (`get_buffer`/`buffer_updated`, `eof_received`, flow control); to the application above
//! it is the engine of a transport facade (`ferroloop._tls.TlsTransport`, a real
//! `asyncio.Transport`). It talks to the transport below only through that transport's
//! public methods, so it runs over any transport (a native socket transport, or another
//! TLS transport for TLS in TLS). Per-connection setup and the fallback to asyncio's
//! SSLProtocol are Python (`python/ferroloop/_tls.py`).

pub(crate) mod protocol;

use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyModule;

/// `ferroloop._tls`: the Python side (facade, once-per-connection helpers, reports).
pub(crate) fn py_tls(py: Python<'_>) -> PyResult<&Bound<'_, PyModule>> {
    static MODULE: PyOnceLock<Py<PyModule>> = PyOnceLock::new();
    MODULE.get_or_try_init(py, || py.import("ferroloop._tls").map(Bound::unbind)).map(|m| m.bind(py))
}

/// The `ssl` exception classes the state machine tells apart, looked up once.
pub(crate) struct SslErrors {
    /// `(SSLWantReadError, SSLSyscallError)`: asyncio's `SSLAgainErrors`.
    pub again: Py<PyAny>,
    pub ssl_error: Py<PyAny>,
    pub certificate_error: Py<PyAny>,
}

pub(crate) fn ssl_errors(py: Python<'_>) -> PyResult<&SslErrors> {
    static ERRORS: PyOnceLock<SslErrors> = PyOnceLock::new();
    ERRORS.get_or_try_init(py, || {
        let ssl = py.import("ssl")?;
        let again = pyo3::types::PyTuple::new(py, [ssl.getattr("SSLWantReadError")?, ssl.getattr("SSLSyscallError")?])?;
        Ok(SslErrors {
            again: again.into_any().unbind(),
            ssl_error: ssl.getattr("SSLError")?.unbind(),
            certificate_error: ssl.getattr("CertificateError")?.unbind(),
        })
    })
}
