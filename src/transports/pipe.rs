//! A pipe's two ends (`connect_read_pipe` / `connect_write_pipe`, subprocess stdio):
//! asyncio's `_UnixReadPipeTransport` and `_UnixWritePipeTransport`, natively, on the
//! stream engine (stream.rs), with read(2)/write(2). A read pipe's EOF closes it (no
//! half-close: eof_received and connection_lost follow); a write pipe's write_eof closes
//! it once flushed, and a FIFO's or socket's write end notices its reader going away.

use pyo3::gc::PyVisit;
use pyo3::prelude::*;
use pyo3::PyTraverseError;

use super::stream::{stream_methods, Ends, Stream, StreamKind};
use crate::loop_base::LoopBase;
use crate::ready::{IoKind, IoSource, Readiness, HUP, READ, WRITE};

const READ_ERROR: &str = "Fatal read error on pipe transport";
const WRITE_ERROR: &str = "Fatal write error on pipe transport";
const LOST_WRITE: &str = "pipe closed by peer or os.write(pipe, data) raised exception.";

#[pyclass(module = "ferroloop._ferroloop", frozen)]
pub struct ReadPipeTransport {
    s: Stream,
}

impl IoSource for ReadPipeTransport {
    const KIND: IoKind = IoKind::ReadPipe;
}

impl StreamKind for ReadPipeTransport {
    const PIPE: bool = true;
    const READ_ONLY: bool = true;
    const QUIET: &'static str = "eio";
    const READ_ERROR: &'static str = READ_ERROR;
    const WRITE_ERROR: &'static str = WRITE_ERROR;
    const LOST_WRITE: &'static str = LOST_WRITE;

    fn stream(&self) -> &Stream {
        &self.s
    }

    fn ready(slf: &Bound<'_, Self>, bits: Readiness) -> PyResult<()> {
        Stream::readable(slf, bits)
    }

    fn eof(slf: &Bound<'_, Self>) -> PyResult<()> {
        Stream::pipe_eof(slf)
    }

    /// asyncio's read pipe closes at once (nothing to flush).
    fn close(slf: &Bound<'_, Self>) -> PyResult<()> {
        if slf.get().s.is_closing(slf.py())? {
            return Ok(());
        }
        Stream::force_close(slf, None)
    }
}

stream_methods!(ReadPipeTransport, {
    /// The engine of a pipe's read end (`_transports.ReadPipeTransport`).
    #[staticmethod]
    #[pyo3(signature = (r#loop, facade, pipe, protocol, waiter=None))]
    fn open(
        r#loop: &Bound<'_, LoopBase>,
        facade: &Bound<'_, PyAny>,
        pipe: &Bound<'_, PyAny>,
        protocol: &Bound<'_, PyAny>,
        waiter: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Py<ReadPipeTransport>> {
        let ends = Ends { facade, sock: pipe, protocol };
        Stream::open(r#loop, ends, waiter, None, |s| Py::new(r#loop.py(), ReadPipeTransport { s }))
    }
});

#[pyclass(module = "ferroloop._ferroloop", frozen)]
pub struct WritePipeTransport {
    s: Stream,
    /// A FIFO or socket: readability means the reader went away.
    watch_close: bool,
}

impl IoSource for WritePipeTransport {
    const KIND: IoKind = IoKind::WritePipe;
}

impl StreamKind for WritePipeTransport {
    const PIPE: bool = true;
    const WRITE_ONLY: bool = true;
    const READ_ERROR: &'static str = READ_ERROR;
    const WRITE_ERROR: &'static str = WRITE_ERROR;
    const LOST_WRITE: &'static str = LOST_WRITE;

    fn stream(&self) -> &Stream {
        &self.s
    }

    fn ready(slf: &Bound<'_, Self>, bits: Readiness) -> PyResult<()> {
        if slf.get().watch_close && bits & (READ | HUP) != 0 {
            return Stream::peer_closed(slf);
        }
        if bits & WRITE != 0 {
            Stream::flush(slf)?;
        }
        Ok(())
    }

    fn write_eof(slf: &Bound<'_, Self>) -> PyResult<()> {
        Stream::close_write_end(slf)
    }
}

stream_methods!(WritePipeTransport, {
    /// The engine of a pipe's write end (`_transports.WritePipeTransport`); `watch_close`:
    /// a FIFO or socket, whose readability means the reader went away.
    #[staticmethod]
    #[pyo3(signature = (r#loop, facade, pipe, protocol, waiter=None, watch_close=false))]
    fn open(
        r#loop: &Bound<'_, LoopBase>,
        facade: &Bound<'_, PyAny>,
        pipe: &Bound<'_, PyAny>,
        protocol: &Bound<'_, PyAny>,
        waiter: Option<&Bound<'_, PyAny>>,
        watch_close: bool,
    ) -> PyResult<Py<WritePipeTransport>> {
        let ends = Ends { facade, sock: pipe, protocol };
        Stream::open(r#loop, ends, waiter, None, |s| Py::new(r#loop.py(), WritePipeTransport { s, watch_close }))
    }
});
