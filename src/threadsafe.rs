//! Python 3.14's `_ThreadSafeHandle` semantics for the handles `call_soon_threadsafe`
//! returns: `cancel()` and `cancelled()` called from another thread wait while the
//! callback is running (asyncio 3.14 holds an `RLock` across the run and in both methods;
//! on the loop's own thread, inside the callback, they do not wait, as with an RLock).
//! Only where the running Python does it (`CoreLoop::threadsafe_waits`, 3.14+): 3.11-3.13's
//! handles never wait, as asyncio's there do not.
//!
//! The mark costs two atomic stores and an uncontended lock per such callback; a waiting
//! thread sleeps on a condition variable with the GIL released, so the callback it waits
//! for can go on.

use std::sync::atomic::Ordering::{Relaxed, SeqCst};
use std::sync::{Condvar, Mutex};

use pyo3::ffi;
use pyo3::prelude::*;

use crate::handles::Handle;

/// Signalled whenever a marked callback finishes (one for the process: waits are rare).
static FINISHED: (Mutex<()>, Condvar) = (Mutex::new(()), Condvar::new());

fn thread_ident() -> u64 {
    // SAFETY: a plain query of the calling thread's ident (threading.get_ident()).
    unsafe { ffi::PyThread_get_thread_ident() as u64 }
}

/// Marks `h` as running on this thread until dropped (also if the run unwinds).
pub(crate) struct Running<'a>(&'a Handle);

impl<'a> Running<'a> {
    pub(crate) fn mark(h: &'a Handle) -> Self {
        h.running.store(thread_ident(), SeqCst);
        Running(h)
    }
}

impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.0.running.store(0, SeqCst);
        // Taking the lock orders this store before any waiter's re-check (no lost wake-up).
        let _g = FINISHED.0.lock().unwrap_or_else(|e| e.into_inner());
        FINISHED.1.notify_all();
    }
}

/// Waits, with the GIL released, while another thread runs the callback of `h`.
pub(crate) fn wait_while_running(py: Python<'_>, h: &Handle) {
    if !h.waits.load(Relaxed) {
        return;
    }
    let running = h.running.load(SeqCst);
    if running == 0 || running == thread_ident() {
        return;
    }
    py.detach(|| {
        let mut g = FINISHED.0.lock().unwrap_or_else(|e| e.into_inner());
        while h.running.load(SeqCst) != 0 {
            g = FINISHED.1.wait(g).unwrap_or_else(|e| e.into_inner());
        }
    });
}
