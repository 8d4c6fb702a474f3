//! `GilCell`: interior mutability for state that only the GIL guards.
//!
//! Every pyclass in this crate is `frozen` (no PyO3 borrow flag on each method call) and keeps
//! its mutable state in `GilCell`s. Soundness rests on one rule: the cell is only touched
//! while the current thread is attached to the interpreter (a `Python<'py>` token proves it),
//! and the extension module declares `gil_used = true`, so even a free-threaded interpreter
//! keeps a GIL while ferroloop is loaded. The GIL hand-over between threads is a full
//! synchronisation point, so the non-atomic `RefCell` flag is never raced.
//!
//! The `RefCell` still catches re-entrancy on one thread (a callback that reaches back into
//! loop state we are in the middle of changing): it becomes a `RuntimeError`, never UB.
//! Rule for callers: never call into Python, and never drop a Python object, while a
//! borrow is alive — either can run arbitrary code that comes back here.

use std::cell::{Ref, RefCell, RefMut};

use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;

pub struct GilCell<T> {
    inner: RefCell<T>,
}

// SAFETY: see the module comment — all access requires the GIL, which serialises threads.
unsafe impl<T: Send> Sync for GilCell<T> {}

impl<T> GilCell<T> {
    pub const fn new(value: T) -> Self {
        Self { inner: RefCell::new(value) }
    }

    #[inline]
    pub fn borrow_mut<'a>(&'a self, _py: Python<'_>) -> PyResult<RefMut<'a, T>> {
        self.inner.try_borrow_mut().map_err(|_| reentrant())
    }

    #[inline]
    pub fn borrow<'a>(&'a self, _py: Python<'_>) -> PyResult<Ref<'a, T>> {
        self.inner.try_borrow().map_err(|_| reentrant())
    }

    /// For `__traverse__`, which runs inside the garbage collector without a `Python`
    /// token (the GIL is held by definition). Returns `None` if a borrow is active: the GC
    /// then simply sees fewer edges, which is conservative.
    #[inline]
    pub fn try_borrow_for_gc(&self) -> Option<Ref<'_, T>> {
        self.inner.try_borrow().ok()
    }
}

impl<T: Default> Default for GilCell<T> {
    fn default() -> Self {
        Self::new(T::default())
    }
}

#[cold]
fn reentrant() -> PyErr {
    PyRuntimeError::new_err("ferroloop: loop state was re-entered while it was being updated")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reentrant_borrow_is_an_error_not_ub() {
        Python::initialize();
        Python::attach(|py| {
            let cell = GilCell::new(vec![1, 2, 3]);
            let first = cell.borrow_mut(py).expect("first borrow");
            let err = cell.borrow_mut(py).expect_err("second borrow must fail");
            assert!(err.is_instance_of::<PyRuntimeError>(py));
            assert!(cell.try_borrow_for_gc().is_none());
            drop(first);
            assert_eq!(cell.borrow(py).unwrap().len(), 3);
        });
    }
}
