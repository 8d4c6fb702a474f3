//! The ready queue's entries: what one iteration runs, in order. A handle, or IO readiness
//! for a native transport — held by reference and kind, so the layers below the transports
//! (the poller, the timers, the loop's base) queue it without naming its type, as tokio's
//! IO driver only sets readiness and never names a TcpStream.

use pyo3::gc::PyVisit;
use pyo3::prelude::*;
use pyo3::PyClass;
use pyo3::PyTraverseError;

use crate::handles::Handle;

/// Readiness bits of one poll event.
pub(crate) type Readiness = u8;
pub(crate) const READ: Readiness = 1;
pub(crate) const WRITE: Readiness = 2;
/// The peer closed its side (or the socket has an error): a read will not block even
/// after a short read drained the data before it.
pub(crate) const HUP: Readiness = 4;

/// Which native transport an `IoRef` is: the loop picks the transport's `on_ready` by it
/// (a match, no dynamic dispatch, no type test).
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum IoKind {
    Socket,
    ReadPipe,
    WritePipe,
    Datagram,
}

/// A native transport type: the kind its `IoRef`s carry.
pub(crate) trait IoSource: PyClass {
    const KIND: IoKind;
}

/// A native transport registered with the poller, by reference and kind.
pub(crate) struct IoRef {
    obj: Py<PyAny>,
    kind: IoKind,
}

impl IoRef {
    /// The only way to make one: the kind comes from the type, so `kind` always names the
    /// class of `obj` (the loop relies on it to cast without a check).
    pub(crate) fn new<T: IoSource>(obj: Py<T>) -> IoRef {
        IoRef { obj: obj.into_any(), kind: T::KIND }
    }

    pub(crate) fn kind(&self) -> IoKind {
        self.kind
    }

    pub(crate) fn obj(&self) -> &Py<PyAny> {
        &self.obj
    }

    pub(crate) fn into_obj(self) -> Py<PyAny> {
        self.obj
    }

    pub(crate) fn clone_ref(&self, py: Python<'_>) -> IoRef {
        IoRef { obj: self.obj.clone_ref(py), kind: self.kind }
    }
}

/// An entry of the ready queue: a Python-visible handle, or IO readiness for a native
/// transport (no Python object is made for it).
pub(crate) enum Ready {
    Handle(Py<Handle>),
    Io(IoRef, Readiness),
}

impl Ready {
    /// The entry as an ordinary edge (handles the loop holds alone are walked through by
    /// the loop instead: `handles::visit_held`).
    pub(crate) fn visit(&self, visit: &PyVisit<'_>) -> Result<(), PyTraverseError> {
        match self {
            Ready::Handle(h) => visit.call(h),
            Ready::Io(t, _) => visit.call(&t.obj),
        }
    }
}
