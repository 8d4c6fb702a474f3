//! IO readiness: one `mio::Poll` (epoll on Linux, kqueue on macOS), a slab of registered
//! sources, and the waker that `call_soon_threadsafe` uses to interrupt a parked loop.
//!
//! mio registers edge-triggered. asyncio's `add_reader`/`add_writer` promise level-triggered
//! behaviour (the callback runs again next iteration while the fd stays ready), so a plain
//! fd watcher is re-armed after each event: `epoll_ctl(MOD)` re-reports a still-ready fd.
//! Native transports need no re-arming: they track readiness themselves. The poller knows
//! them only as `IoRef`s (a reference and a kind): it yields their readiness and never
//! names a transport type.

use std::collections::{HashMap, VecDeque};
use std::io;
use std::os::fd::RawFd;
use std::time::Duration;

use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Registry, Token, Waker};
use pyo3::prelude::*;
use slab::Slab;

use crate::handles::Handle;
use crate::ready::{IoRef, Readiness, Ready, HUP, READ, WRITE};

pub(crate) const WAKER_TOKEN: Token = Token(usize::MAX);
const EVENTS_CAPACITY: usize = 1024;

/// The blocking half: only the loop thread polls, and only it borrows this.
pub(crate) struct PollCore {
    poll: Poll,
    events: Events,
}

/// A plain fd watched for `add_reader`/`add_writer`. The file object it was given (when
/// not an int) is kept, as a selector's key keeps it: once that object is closed its
/// `fileno()` is -1, and `remove_reader(obj)` finds the registration by identity.
pub(crate) struct FdWatch {
    fd: RawFd,
    fileobj: Option<Py<PyAny>>,
    pub(crate) reader: Option<Py<Handle>>,
    pub(crate) writer: Option<Py<Handle>>,
}

impl FdWatch {
    fn interest(&self) -> Option<Interest> {
        match (self.reader.is_some(), self.writer.is_some()) {
            (true, true) => Some(Interest::READABLE | Interest::WRITABLE),
            (true, false) => Some(Interest::READABLE),
            (false, true) => Some(Interest::WRITABLE),
            (false, false) => None,
        }
    }
}

/// What a slab entry is: a plain fd watcher, or a native transport.
pub(crate) enum Source {
    Fd(FdWatch),
    Io(IoRef),
}

/// What add_fd / remove_fd give back to be let go outside the borrow: the handle replaced
/// or removed, and the file object no longer held.
pub(crate) type Released = (Option<Py<Handle>>, Option<Py<PyAny>>);

/// add_reader & co. refuse an fd that a transport owns (asyncio's
/// `_ensure_fd_no_transport`); the caller turns this into the RuntimeError.
pub(crate) enum FdError {
    Os(io::Error),
    OwnedByTransport(Py<PyAny>),
}

impl From<io::Error> for FdError {
    fn from(e: io::Error) -> Self {
        FdError::Os(e)
    }
}

/// The registration half: usable while the loop thread is blocked in `poll`.
pub(crate) struct Poller {
    registry: Registry,
    sources: Slab<Source>,
    by_fd: HashMap<RawFd, usize>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Direction {
    Read,
    Write,
}

pub(crate) fn new() -> io::Result<(PollCore, Poller, Waker)> {
    let poll = Poll::new()?;
    let registry = poll.registry().try_clone()?;
    let waker = Waker::new(poll.registry(), WAKER_TOKEN)?;
    Ok((
        PollCore { poll, events: Events::with_capacity(EVENTS_CAPACITY) },
        Poller { registry, sources: Slab::new(), by_fd: HashMap::new() },
        waker,
    ))
}

impl PollCore {
    /// Waits for readiness. An interrupted wait (EINTR, a signal) counts as zero events.
    pub(crate) fn wait(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        match self.poll.poll(&mut self.events, timeout) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {
                self.events.clear();
                Ok(())
            }
            other => other,
        }
    }

    pub(crate) fn events(&self) -> &Events {
        &self.events
    }
}

impl Poller {
    pub(crate) fn is_empty(&self) -> bool {
        self.sources.is_empty()
    }

    pub(crate) fn len(&self) -> usize {
        self.sources.len()
    }

    /// The transport registered for `fd`, if any (as a Python object, for messages).
    pub(crate) fn transport_at(&self, py: Python<'_>, fd: RawFd) -> Option<Py<PyAny>> {
        let key = *self.by_fd.get(&fd)?;
        match &self.sources[key] {
            Source::Fd(_) => None,
            Source::Io(t) => Some(t.obj().clone_ref(py)),
        }
    }

    /// The fd under which `fileobj` itself was registered (`selectors`' exhaustive search,
    /// for an object whose `fileno()` no longer answers).
    pub(crate) fn fd_of_fileobj(&self, fileobj: &Bound<'_, PyAny>) -> Option<RawFd> {
        self.sources.iter().find_map(|(_, source)| match source {
            Source::Fd(w) if w.fileobj.as_ref().is_some_and(|o| o.is(fileobj)) => Some(w.fd),
            _ => None,
        })
    }

    /// Installs `handle` as the reader or writer of `fd`; returns the handle it replaces
    /// and the file object it no longer holds (both to be let go outside the borrow).
    pub(crate) fn add_fd(
        &mut self,
        py: Python<'_>,
        fd: RawFd,
        fileobj: Option<Py<PyAny>>,
        dir: Direction,
        handle: Py<Handle>,
    ) -> Result<Released, FdError> {
        if let Some(t) = self.transport_at(py, fd) {
            return Err(FdError::OwnedByTransport(t));
        }
        if let Some(&key) = self.by_fd.get(&fd) {
            let Source::Fd(w) = &mut self.sources[key] else { unreachable!("checked above") };
            let old = match dir {
                Direction::Read => w.reader.replace(handle),
                Direction::Write => w.writer.replace(handle),
            };
            let interest = w.interest().expect("just set");
            if let Err(e) = rearm(&self.registry, fd, key, interest) {
                // Undo, so the loop's view matches the kernel's.
                let Source::Fd(w) = &mut self.sources[key] else { unreachable!("checked above") };
                let _new = match dir {
                    Direction::Read => std::mem::replace(&mut w.reader, old),
                    Direction::Write => std::mem::replace(&mut w.writer, old),
                };
                return Err(e.into());
            }
            let old_obj = match fileobj {
                Some(o) => w.fileobj.replace(o),
                None => None,
            };
            return Ok((old, old_obj));
        }
        let mut w = FdWatch { fd, fileobj, reader: None, writer: None };
        match dir {
            Direction::Read => w.reader = Some(handle),
            Direction::Write => w.writer = Some(handle),
        }
        let interest = w.interest().expect("just set");
        let entry = self.sources.vacant_entry();
        let key = entry.key();
        self.registry.register(&mut SourceFd(&fd), Token(key), interest)?;
        entry.insert(Source::Fd(w));
        self.by_fd.insert(fd, key);
        Ok((None, None))
    }

    /// Removes the reader or writer of `fd`; returns it (None if there was none), and the
    /// file object once nothing watches the fd any more.
    pub(crate) fn remove_fd(&mut self, py: Python<'_>, fd: RawFd, dir: Direction) -> Result<Released, FdError> {
        if let Some(t) = self.transport_at(py, fd) {
            return Err(FdError::OwnedByTransport(t));
        }
        let Some(&key) = self.by_fd.get(&fd) else { return Ok((None, None)) };
        let Source::Fd(w) = &mut self.sources[key] else { unreachable!("checked above") };
        let old = match dir {
            Direction::Read => w.reader.take(),
            Direction::Write => w.writer.take(),
        };
        if old.is_none() {
            return Ok((None, None));
        }
        match w.interest() {
            Some(interest) => {
                // The fd may be closed already; the kernel then forgot it, which is fine.
                let _ = rearm(&self.registry, fd, key, interest);
                Ok((old, None))
            }
            None => {
                let _ = self.registry.deregister(&mut SourceFd(&fd));
                self.by_fd.remove(&fd);
                let Source::Fd(w) = self.sources.remove(key) else { unreachable!("checked above") };
                Ok((old, w.fileobj))
            }
        }
    }

    /// Registers a native transport (readable and writable, edge-triggered). An fd watcher
    /// on the same fd is displaced; it is returned, for its handles to be cancelled.
    pub(crate) fn add_transport(&mut self, fd: RawFd, io: IoRef) -> io::Result<(usize, Option<FdWatch>)> {
        let mut displaced = None;
        if let Some(key) = self.by_fd.remove(&fd) {
            let _ = self.registry.deregister(&mut SourceFd(&fd));
            if let Source::Fd(w) = self.sources.remove(key) {
                displaced = Some(w);
            }
        }
        let entry = self.sources.vacant_entry();
        let key = entry.key();
        self.registry.register(&mut SourceFd(&fd), Token(key), Interest::READABLE | Interest::WRITABLE)?;
        entry.insert(Source::Io(io));
        self.by_fd.insert(fd, key);
        Ok((key, displaced))
    }

    /// Forgets a transport (before its fd is closed). Returns the slab entry to drop.
    pub(crate) fn remove_transport(&mut self, key: usize, fd: RawFd) -> Option<Source> {
        if self.by_fd.get(&fd) == Some(&key) {
            self.by_fd.remove(&fd);
        }
        let source = self.sources.try_remove(key)?;
        let _ = self.registry.deregister(&mut SourceFd(&fd));
        Some(source)
    }

    /// Turns poll events into ready handles, in the order the kernel reported them.
    pub(crate) fn dispatch(&mut self, py: Python<'_>, events: &Events, ready: &mut VecDeque<Ready>) {
        for ev in events.iter() {
            let token = ev.token();
            if token == WAKER_TOKEN {
                continue;
            }
            let Some(source) = self.sources.get(token.0) else { continue };
            match source {
                Source::Fd(w) => {
                    // As selectors.EpollSelector: errors and hang-ups wake both sides.
                    let readable = ev.is_readable() || ev.is_error() || ev.is_read_closed();
                    let writable = ev.is_writable() || ev.is_error() || ev.is_write_closed();
                    if readable {
                        if let Some(h) = &w.reader {
                            if !h.get().is_cancelled() {
                                ready.push_back(Ready::Handle(h.clone_ref(py)));
                            }
                        }
                    }
                    if writable {
                        if let Some(h) = &w.writer {
                            if !h.get().is_cancelled() {
                                ready.push_back(Ready::Handle(h.clone_ref(py)));
                            }
                        }
                    }
                    if let Some(interest) = w.interest() {
                        // Level-triggered emulation (see the module comment).
                        let _ = rearm(&self.registry, w.fd, token.0, interest);
                    }
                }
                Source::Io(t) => {
                    let bits = readiness(ev);
                    if bits != 0 {
                        ready.push_back(Ready::Io(t.clone_ref(py), bits));
                    }
                }
            }
        }
    }

    /// Every transport held, for the garbage collector.
    pub(crate) fn for_each_transport(&self, mut f: impl FnMut(&Py<PyAny>)) {
        for (_, source) in self.sources.iter() {
            match source {
                Source::Fd(_) => {}
                Source::Io(t) => f(t.obj()),
            }
        }
    }

    /// Every add_reader/add_writer handle held, for the garbage collector.
    pub(crate) fn for_each_handle(&self, mut f: impl FnMut(&Py<Handle>)) {
        for (_, source) in self.sources.iter() {
            if let Source::Fd(w) = source {
                w.reader.iter().chain(w.writer.iter()).for_each(&mut f);
            }
        }
    }

    /// Forgets every source (loop close); returns them for dropping outside borrows.
    pub(crate) fn drain(&mut self) -> Vec<Source> {
        let out: Vec<Source> = self.sources.drain().collect();
        for fd in self.by_fd.keys() {
            let _ = self.registry.deregister(&mut SourceFd(fd));
        }
        self.by_fd.clear();
        out
    }
}

fn rearm(registry: &Registry, fd: RawFd, key: usize, interest: Interest) -> io::Result<()> {
    match registry.reregister(&mut SourceFd(&fd), Token(key), interest) {
        // The fd was closed and reopened under the same number: epoll forgot the old one.
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => registry.register(&mut SourceFd(&fd), Token(key), interest),
        other => other,
    }
}

/// Read/write bits of an event, as selectors.EpollSelector counts them: errors and
/// hang-ups wake both directions.
fn readiness(ev: &mio::event::Event) -> Readiness {
    let mut bits = 0;
    if ev.is_readable() || ev.is_error() || ev.is_read_closed() {
        bits |= READ;
    }
    if ev.is_error() || ev.is_read_closed() {
        bits |= HUP;
    }
    if ev.is_writable() || ev.is_error() || ev.is_write_closed() {
        bits |= WRITE;
    }
    bits
}
