//! IO readiness: one `mio::Poll` (epoll on Linux, kqueue on macOS), a slab of registered
//! sources, and the waker that `call_soon_threadsafe` uses to interrupt a parked loop.
//!
//! mio registers edge-triggered. asyncio's `add_reader`/`add_writer` promise level-triggered
//! behaviour (the callback runs again next iteration while the fd stays ready), so a plain
//! fd watcher is re-armed after each event: `epoll_ctl(MOD)` re-reports a still-ready fd.
//! Native transports (later) need no re-arming: they track readiness themselves.

use std::collections::{HashMap, VecDeque};
use std::io;
use std::os::fd::RawFd;
use std::time::Duration;

use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Registry, Token, Waker};
use pyo3::prelude::*;
use slab::Slab;

use crate::handles::Handle;

pub(crate) const WAKER_TOKEN: Token = Token(usize::MAX);
const EVENTS_CAPACITY: usize = 1024;

/// The blocking half: only the loop thread polls, and only it borrows this.
pub(crate) struct PollCore {
    poll: Poll,
    events: Events,
}

/// A plain fd watched for `add_reader`/`add_writer`.
pub(crate) struct FdWatch {
    fd: RawFd,
    reader: Option<Py<Handle>>,
    writer: Option<Py<Handle>>,
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

/// What a slab entry is. More kinds (transports, servers) join as they are built.
pub(crate) enum Source {
    Fd(FdWatch),
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

    /// Installs `handle` as the reader or writer of `fd`; returns the handle it replaces.
    pub(crate) fn add_fd(&mut self, fd: RawFd, dir: Direction, handle: Py<Handle>) -> io::Result<Option<Py<Handle>>> {
        if let Some(&key) = self.by_fd.get(&fd) {
            let Source::Fd(w) = &mut self.sources[key];
            let old = match dir {
                Direction::Read => w.reader.replace(handle),
                Direction::Write => w.writer.replace(handle),
            };
            let interest = w.interest().expect("just set");
            if let Err(e) = rearm(&self.registry, fd, key, interest) {
                // Undo, so the loop's view matches the kernel's.
                let Source::Fd(w) = &mut self.sources[key];
                let _new = match dir {
                    Direction::Read => std::mem::replace(&mut w.reader, old),
                    Direction::Write => std::mem::replace(&mut w.writer, old),
                };
                return Err(e);
            }
            return Ok(old);
        }
        let mut w = FdWatch { fd, reader: None, writer: None };
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
        Ok(None)
    }

    /// Removes the reader or writer of `fd`; returns it (None if there was none).
    pub(crate) fn remove_fd(&mut self, fd: RawFd, dir: Direction) -> Option<Py<Handle>> {
        let key = *self.by_fd.get(&fd)?;
        let Source::Fd(w) = &mut self.sources[key];
        let old = match dir {
            Direction::Read => w.reader.take(),
            Direction::Write => w.writer.take(),
        };
        old.as_ref()?;
        match w.interest() {
            Some(interest) => {
                // The fd may be closed already; the kernel then forgot it, which is fine.
                let _ = rearm(&self.registry, fd, key, interest);
            }
            None => {
                let _ = self.registry.deregister(&mut SourceFd(&fd));
                self.sources.remove(key);
                self.by_fd.remove(&fd);
            }
        }
        old
    }

    /// Turns poll events into ready handles, in the order the kernel reported them.
    pub(crate) fn dispatch(&mut self, py: Python<'_>, events: &Events, ready: &mut VecDeque<Py<Handle>>) {
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
                                ready.push_back(h.clone_ref(py));
                            }
                        }
                    }
                    if writable {
                        if let Some(h) = &w.writer {
                            if !h.get().is_cancelled() {
                                ready.push_back(h.clone_ref(py));
                            }
                        }
                    }
                    if let Some(interest) = w.interest() {
                        // Level-triggered emulation (see the module comment).
                        let _ = rearm(&self.registry, w.fd, token.0, interest);
                    }
                }
            }
        }
    }

    /// Every handle held, for loop close and the garbage collector.
    pub(crate) fn for_each_handle(&self, mut f: impl FnMut(&Py<Handle>)) {
        for (_, source) in self.sources.iter() {
            match source {
                Source::Fd(w) => {
                    if let Some(h) = &w.reader {
                        f(h);
                    }
                    if let Some(h) = &w.writer {
                        f(h);
                    }
                }
            }
        }
    }

    /// Forgets every source (loop close); returns their handles for dropping outside borrows.
    pub(crate) fn drain(&mut self) -> Vec<Py<Handle>> {
        let mut out = Vec::new();
        for source in self.sources.drain() {
            match source {
                Source::Fd(w) => {
                    let _ = self.registry.deregister(&mut SourceFd(&w.fd));
                    out.extend(w.reader);
                    out.extend(w.writer);
                }
            }
        }
        self.by_fd.clear();
        out
    }
}

fn rearm(registry: &Registry, fd: RawFd, key: usize, interest: Interest) -> io::Result<()> {
    match registry.reregister(&mut SourceFd(&fd), Token(key), interest) {
        // The fd was closed and reopened under the same number: epoll forgot the old one.
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
            registry.register(&mut SourceFd(&fd), Token(key), interest)
        }
        other => other,
    }
}
