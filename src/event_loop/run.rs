//! The run-once step (asyncio's `BaseEventLoop._run_once`, see the module comment of
//! mod.rs), and its one observing hook: the x-ray's recorder or live counters, and debug
//! mode's slow-callback log.

use std::sync::atomic::{Ordering::Relaxed, Ordering::SeqCst};
use std::time::Duration;

use pyo3::intern;
use pyo3::prelude::*;

use super::CoreLoop;
use crate::clock;
use crate::handles::{helpers, is_fatal_to_loop, run_handle, Running};
use crate::loop_base::{closed_error, LoopBase};
use crate::os::os_error;
use crate::poller::Poller;
use crate::ready::{IoKind, IoRef, Readiness, Ready};
use crate::trace::{self, Span};
use crate::transports::datagram::DatagramTransport;
use crate::transports::pipe::{ReadPipeTransport, WritePipeTransport};
use crate::transports::socket::SocketTransport;
use crate::transports::stream::Stream;

/// asyncio's MAXIMUM_SELECT_TIMEOUT: never block longer than a day in one wait.
const MAX_SELECT_TIMEOUT: f64 = 24.0 * 3600.0;

impl CoreLoop {
    /// One loop iteration (see the module comment).
    pub(super) fn run_once(&self, slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let base = Self::base(slf);

        let has_timers = {
            let mut timers = self.timers.borrow_mut(py)?;
            if timers.len() > 0 {
                let mut dropped = Vec::new();
                timers.prune(py, &mut dropped);
                drop(timers);
                drop(dropped);
                true
            } else {
                false
            }
        };

        let timeout = if !base.ready.borrow(py)?.is_empty() || self.stopping.load(Relaxed) {
            Some(Duration::ZERO)
        } else {
            match self.timers.borrow(py)?.peek_when() {
                Some(when) => {
                    let t = (when - clock::monotonic()).clamp(0.0, MAX_SELECT_TIMEOUT);
                    Some(Duration::from_secs_f64(if t.is_nan() { 0.0 } else { t }))
                }
                None => Some(Duration::from_secs_f64(MAX_SELECT_TIMEOUT)),
            }
        };

        self.poll_io(py, base, timeout)?;
        if base.trace.is_on() {
            base.trace.iteration(py);
        }

        // No timers, no clock read: a callback-only iteration makes no syscall at all.
        if has_timers {
            let end_time = clock::monotonic() + self.clock_resolution;
            let mut timers = self.timers.borrow_mut(py)?;
            let mut ready = base.ready.borrow_mut(py)?;
            timers.pop_due(py, end_time, &mut ready);
        }

        let ntodo = base.ready.borrow(py)?.len();
        let debug = base.is_debug();
        for _ in 0..ntodo {
            let Some(entry) = base.ready.borrow_mut(py)?.pop_front() else { break };
            if debug || base.trace.is_on() {
                self.run_observed(py, base, entry, debug)?;
            } else {
                self.run_entry(py, base, entry)?;
            }
        }
        Ok(())
    }

    /// The one observing hook: an entry run with the x-ray on (its recorder or its live
    /// counters, `Probe`) or in debug mode, whose slow callbacks are logged as asyncio logs
    /// them. Off the plain path: the loop tests one flag per entry to come here.
    #[inline(never)]
    fn run_observed(&self, py: Python<'_>, base: &LoopBase, entry: Ready, debug: bool) -> PyResult<()> {
        let trace = &base.trace;
        let probe = if trace.is_on() {
            match Probe::begin(py, trace, &entry)? {
                Some(p) => Some(p),
                None => return Ok(()), // a cancelled handle: the recorder does not see it
            }
        } else {
            None
        };
        let t0 = probe.as_ref().map_or_else(clock::monotonic, |p| p.t0);
        let result = self.run_entry(py, base, entry);
        let (t1, report) = match probe {
            Some(p) => p.end(py, trace),
            None => (clock::monotonic(), Ok(())),
        };
        // A failure to report is printed, unless it must stop the loop.
        if let Err(e) = report {
            if is_fatal_to_loop(py, &e) {
                return Err(e);
            }
            e.print(py);
        }
        let what = result?;
        let dt = t1 - t0;
        if debug && dt >= f64::from_bits(self.slow_callback_duration.load(Relaxed)) {
            if let Some(what) = what {
                helpers(py)?.call_method1(intern!(py, "log_slow_callback"), (what, dt))?;
            }
        }
        Ok(())
    }

    /// Runs one ready entry; returns what ran (for the slow-callback log), if anything did.
    /// Objects leave the ready queue as `Bound`: releasing those is a plain decref
    /// (a `Py` drop would consult a thread-local first), once per callback.
    #[inline]
    fn run_entry(&self, py: Python<'_>, base: &LoopBase, entry: Ready) -> PyResult<Option<Py<PyAny>>> {
        let debug = base.is_debug();
        match entry {
            Ready::Handle(h) => {
                let hb = h.into_bound(py);
                let handle = hb.get();
                if handle.is_cancelled() {
                    if handle.oneshot.load(Relaxed) && !debug {
                        self.recycle(py, hb)?;
                    }
                    return Ok(None);
                }
                if handle.waits.load(Relaxed) {
                    let _running = Running::mark(handle);
                    run_handle(py, &hb)?;
                } else {
                    run_handle(py, &hb)?;
                }
                if debug {
                    return Ok(Some(hb.into_any().unbind()));
                }
                if handle.oneshot.load(Relaxed) {
                    self.recycle(py, hb)?;
                }
                Ok(None)
            }
            Ready::Io(io, bits) => run_io(py, io, bits, debug),
        }
    }

    fn poll_io(&self, py: Python<'_>, base: &LoopBase, timeout: Option<Duration>) -> PyResult<()> {
        let mut core_ref = self.poll.borrow_mut(py)?;
        let Some(core) = core_ref.as_mut() else { return Err(closed_error()) };
        let blocking = timeout != Some(Duration::ZERO);
        if blocking {
            self.parked.store(true, SeqCst);
            let res = py.detach(|| core.wait(timeout));
            self.parked.store(false, SeqCst);
            self.wake_sent.store(false, SeqCst);
            res.map_err(|e| os_error(&e))?;
        } else {
            // Nothing registered and nothing to wait for: skip the syscall. (The waker only
            // matters while parked; signals interrupt a blocking wait by themselves, and
            // otherwise reach Python code through the interpreter's own checks.)
            if base.poller.borrow(py)?.as_ref().is_none_or(Poller::is_empty) {
                return Ok(());
            }
            core.wait(timeout).map_err(|e| os_error(&e))?;
        }
        // Queue the events before anything can raise: edge-triggered events are not repeated.
        {
            let mut poller = base.poller.borrow_mut(py)?;
            if let Some(poller) = poller.as_mut() {
                let mut ready = base.ready.borrow_mut(py)?;
                poller.dispatch(py, core.events(), &mut ready);
            }
        }
        drop(core_ref);
        // A signal (Ctrl-C) that interrupted the wait runs its Python handler now.
        if blocking {
            py.check_signals()?;
        }
        Ok(())
    }
}

/// What the x-ray notes around one entry (trace.rs): for its recorder, the entry's tag and
/// subject, reported with its times; in live mode, its counters.
struct Probe {
    seq: u64,
    t0: f64,
    kind: ProbeKind,
}

enum ProbeKind {
    Recorder { origin: u8, cause: u64, subject: Py<PyAny> },
    Live { due: u64, callback: Option<Py<PyAny>> },
}

impl Probe {
    /// Starts observing `entry`; None if the recorder is not to see it (a cancelled handle).
    fn begin(py: Python<'_>, trace: &trace::Trace, entry: &Ready) -> PyResult<Option<Probe>> {
        let live = trace.is_live();
        let (seq, kind) = match entry {
            Ready::Handle(h) => {
                let handle = h.get();
                if handle.is_cancelled() && !live {
                    return Ok(None);
                }
                let tag = &handle.tag;
                if tag.seq.load(Relaxed) == 0 {
                    // scheduled before tracing started
                    trace.tag(tag, trace::ORIGIN_SOON);
                }
                let callback = handle.cb.borrow(py)?.callback.as_ref().map(|c| c.clone_ref(py));
                let kind = if live {
                    ProbeKind::Live { due: tag.due_ns.load(Relaxed), callback }
                } else {
                    ProbeKind::Recorder {
                        origin: tag.origin.load(Relaxed),
                        cause: tag.cause.load(Relaxed),
                        subject: callback.unwrap_or_else(|| py.None()),
                    }
                };
                (tag.seq.load(Relaxed), kind)
            }
            Ready::Io(io, _) => {
                let kind = if live {
                    ProbeKind::Live { due: 0, callback: None }
                } else {
                    ProbeKind::Recorder { origin: io_origin(io), cause: 0, subject: io.obj().clone_ref(py) }
                };
                (trace.fresh(), kind)
            }
        };
        Ok(Some(Probe { seq, t0: trace.begin(py, seq), kind }))
    }

    /// Ends it: the end time, and how reporting it went.
    fn end(self, py: Python<'_>, trace: &trace::Trace) -> (f64, PyResult<()>) {
        let Probe { seq, t0, kind } = self;
        let (t1, cpu) = trace.end(py, seq, t0);
        let report = match kind {
            ProbeKind::Recorder { origin, cause, subject } => match trace.entry_callback(py) {
                Some(on_entry) => on_entry.bind(py).call1((seq, origin, cause, subject, t0, t1, cpu)).map(drop),
                None => Ok(()),
            },
            ProbeKind::Live { due, callback } => {
                trace.account(py, seq, due, callback.as_ref().map(|c| c.bind(py)), Span { t0, t1, cpu })
            }
        };
        (t1, report)
    }
}

/// Runs a transport's readiness: its `on_ready`, picked by the IoRef's kind. Out of line,
/// so the handle path of `run_entry` (every callback) stays small.
#[inline(never)]
fn run_io(py: Python<'_>, io: IoRef, bits: Readiness, debug: bool) -> PyResult<Option<Py<PyAny>>> {
    let kind = io.kind();
    let obj = io.into_obj().into_bound(py);
    // An IoRef's kind is its object's class (`IoRef::new` takes it from the
    // type), so each arm casts to the class the object is.
    match kind {
        IoKind::Socket => {
            // SAFETY: kind Socket: the object is a SocketTransport (see above).
            let t = unsafe { obj.cast_unchecked::<SocketTransport>() };
            Stream::on_ready(t, bits)?;
        }
        IoKind::ReadPipe => {
            // SAFETY: kind ReadPipe: the object is a ReadPipeTransport.
            let t = unsafe { obj.cast_unchecked::<ReadPipeTransport>() };
            Stream::on_ready(t, bits)?;
        }
        IoKind::WritePipe => {
            // SAFETY: kind WritePipe: the object is a WritePipeTransport.
            let t = unsafe { obj.cast_unchecked::<WritePipeTransport>() };
            Stream::on_ready(t, bits)?;
        }
        IoKind::Datagram => {
            // SAFETY: kind Datagram: the object is a DatagramTransport.
            let t = unsafe { obj.cast_unchecked::<DatagramTransport>() };
            DatagramTransport::on_ready(t, bits)?;
        }
    }
    Ok(debug.then(|| obj.unbind()))
}

/// The x-ray's origin for an IO entry.
fn io_origin(io: &IoRef) -> u8 {
    match io.kind() {
        IoKind::Socket | IoKind::ReadPipe | IoKind::WritePipe => trace::ORIGIN_STREAM,
        IoKind::Datagram => trace::ORIGIN_DATAGRAM,
    }
}
