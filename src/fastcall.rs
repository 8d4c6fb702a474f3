//! Raw vectorcall entry points for the methods called once per callback: `call_soon`,
//! `call_soon_threadsafe`, `call_later`, `call_at`.
//!
//! CPython's C Task calls `loop.call_soon(step, context=ctx)` on every step and every
//! future calls it on completion, so these are the loop's hottest methods. Written against
//! the C API (METH_FASTCALL | METH_KEYWORDS) they skip the generic argument machinery and
//! keep up to two positional arguments inline in the Handle (no tuple). They are installed
//! on `CoreLoop` at module init as ordinary method descriptors.
//!
//! Every entry point catches panics: a Rust panic surfaces as a Python exception.

use std::panic::{catch_unwind, AssertUnwindSafe};

use pyo3::exceptions::PyTypeError;
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::{PyString, PyTuple, PyType};

use crate::clock;
use crate::event_loop::CoreLoop;
use crate::handles::Args;

/// Turns the result of an entry point into what CPython expects, panics included.
fn guard(body: impl FnOnce(Python<'_>) -> PyResult<Py<PyAny>>) -> *mut ffi::PyObject {
    // SAFETY: CPython calls method implementations with the thread attached.
    let py = unsafe { Python::assume_attached() };
    match catch_unwind(AssertUnwindSafe(|| body(py))) {
        Ok(Ok(obj)) => obj.into_ptr(),
        Ok(Err(err)) => {
            err.restore(py);
            std::ptr::null_mut()
        }
        Err(payload) => {
            let msg = payload
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "Rust panic".into());
            pyo3::panic::PanicException::new_err(format!("ferroloop internal error: {msg}")).restore(py);
            std::ptr::null_mut()
        }
    }
}

/// The parsed call: `prefix` positional parameters, the callback, its args, `context=`.
struct Call<'py> {
    prefix: Option<Bound<'py, PyAny>>,
    callback: Bound<'py, PyAny>,
    args: Args,
    context: Option<Bound<'py, PyAny>>,
}

/// Parses `(prefix?, callback, *args, context=None)`.
///
/// # Safety
/// `args`/`nargsf`/`kwnames` must be a valid vectorcall argument triple.
unsafe fn parse<'py>(
    py: Python<'py>,
    method: &str,
    with_prefix: Option<&str>,
    args: *const *mut ffi::PyObject,
    nargsf: ffi::Py_ssize_t,
    kwnames: *mut ffi::PyObject,
) -> PyResult<Call<'py>> {
    // SAFETY: the caller's contract: `args` holds `nargs` positional arguments followed by
    // one value per name in `kwnames` (a tuple, or NULL), all live for the call.
    unsafe {
        let nargs = ffi::PyVectorcall_NARGS(nargsf as usize) as usize;
        let positional = if nargs == 0 { &[][..] } else { std::slice::from_raw_parts(args, nargs) };
        let needed = 1 + with_prefix.is_some() as usize;
        if positional.len() < needed {
            let missing = if with_prefix.is_some() && positional.is_empty() {
                format!("2 required positional arguments: '{}' and 'callback'", with_prefix.unwrap_or(""))
            } else {
                "1 required positional argument: 'callback'".to_string()
            };
            return Err(PyTypeError::new_err(format!("{method}() missing {missing}")));
        }
        let mut context = None;
        if !kwnames.is_null() {
            let names = Bound::from_borrowed_ptr(py, kwnames).cast_into_unchecked::<PyTuple>();
            let context_name = pyo3::intern!(py, "context");
            for (i, name) in names.iter().enumerate() {
                let value = Bound::from_borrowed_ptr(py, *args.add(nargs + i));
                if name.is(context_name) || name.cast::<PyString>().is_ok_and(|n| n.to_str().ok() == Some("context")) {
                    context = (!value.is_none()).then_some(value);
                } else {
                    return Err(PyTypeError::new_err(format!(
                        "{method}() got an unexpected keyword argument '{name}'"
                    )));
                }
            }
        }
        let (prefix, rest) = if with_prefix.is_some() {
            (Some(Bound::from_borrowed_ptr(py, positional[0])), &positional[1..])
        } else {
            (None, positional)
        };
        Ok(Call {
            prefix,
            callback: Bound::from_borrowed_ptr(py, rest[0]),
            args: Args::from_ptrs(py, &rest[1..])?,
            context,
        })
    }
}

/// # Safety
/// `slf` must be a live CoreLoop (the method descriptor checks the type before calling).
unsafe fn core<'py>(py: Python<'py>, slf: *mut ffi::PyObject) -> Bound<'py, CoreLoop> {
    // SAFETY: the caller's contract: a live object whose type is CoreLoop or a subclass.
    unsafe { Bound::from_borrowed_ptr(py, slf).cast_into_unchecked::<CoreLoop>() }
}

unsafe extern "C" fn call_soon(
    slf: *mut ffi::PyObject,
    args: *const *mut ffi::PyObject,
    nargsf: ffi::Py_ssize_t,
    kwnames: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    guard(|py| {
        // SAFETY: CPython calls a METH_FASTCALL | METH_KEYWORDS method with a valid
        // argument triple, and with `slf` of the type the descriptor was made for.
        let call = unsafe { parse(py, "call_soon", None, args, nargsf, kwnames)? };
        // SAFETY: as above.
        let lp = unsafe { core(py, slf) };
        CoreLoop::schedule_soon(&lp, call.callback, call.args, call.context, false).map(Py::into_any)
    })
}

unsafe extern "C" fn call_soon_threadsafe(
    slf: *mut ffi::PyObject,
    args: *const *mut ffi::PyObject,
    nargsf: ffi::Py_ssize_t,
    kwnames: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    guard(|py| {
        // SAFETY: CPython calls a METH_FASTCALL | METH_KEYWORDS method with a valid
        // argument triple, and with `slf` of the type the descriptor was made for.
        let call = unsafe { parse(py, "call_soon_threadsafe", None, args, nargsf, kwnames)? };
        // SAFETY: as above.
        let lp = unsafe { core(py, slf) };
        CoreLoop::schedule_soon(&lp, call.callback, call.args, call.context, true).map(Py::into_any)
    })
}

/// A deadline argument: a real number (asyncio raises TypeError for None).
fn seconds(value: &Bound<'_, PyAny>, none_message: &str) -> PyResult<f64> {
    if value.is_none() {
        return Err(PyTypeError::new_err(none_message.to_string()));
    }
    value.extract()
}

unsafe extern "C" fn call_later(
    slf: *mut ffi::PyObject,
    args: *const *mut ffi::PyObject,
    nargsf: ffi::Py_ssize_t,
    kwnames: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    guard(|py| {
        // SAFETY: CPython calls a METH_FASTCALL | METH_KEYWORDS method with a valid
        // argument triple, and with `slf` of the type the descriptor was made for.
        let call = unsafe { parse(py, "call_later", Some("delay"), args, nargsf, kwnames)? };
        let delay = seconds(call.prefix.as_ref().expect("parsed"), "delay must not be None")?;
        // SAFETY: as above.
        let lp = unsafe { core(py, slf) };
        let when = clock::monotonic() + delay;
        CoreLoop::schedule_timer(&lp, when, call.callback, call.args, call.context).map(Py::into_any)
    })
}

unsafe extern "C" fn call_at(
    slf: *mut ffi::PyObject,
    args: *const *mut ffi::PyObject,
    nargsf: ffi::Py_ssize_t,
    kwnames: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    guard(|py| {
        // SAFETY: CPython calls a METH_FASTCALL | METH_KEYWORDS method with a valid
        // argument triple, and with `slf` of the type the descriptor was made for.
        let call = unsafe { parse(py, "call_at", Some("when"), args, nargsf, kwnames)? };
        let when = seconds(call.prefix.as_ref().expect("parsed"), "when cannot be None")?;
        // SAFETY: as above.
        let lp = unsafe { core(py, slf) };
        CoreLoop::schedule_timer(&lp, when, call.callback, call.args, call.context).map(Py::into_any)
    })
}

/// `asyncio.tasks` (its `Task` is read at each call, as asyncio does, so a patched Task
/// class is honoured) and the keyword-name tuples create_task passes it.
struct TaskCall {
    tasks: Py<PyAny>,
    /// kwnames for (loop), (name, loop), (context, loop), (name, context, loop)
    kwnames: [Py<PyTuple>; 4],
    name: Py<PyString>,
    context: Py<PyString>,
}

fn task_call(py: Python<'_>) -> PyResult<&TaskCall> {
    static CELL: pyo3::sync::PyOnceLock<TaskCall> = pyo3::sync::PyOnceLock::new();
    CELL.get_or_try_init(py, || {
        let names = |n: &[&str]| -> PyResult<Py<PyTuple>> {
            Ok(PyTuple::new(py, n.iter().map(|s| PyString::intern(py, s)))?.unbind())
        };
        Ok(TaskCall {
            tasks: py.import("asyncio.tasks")?.into_any().unbind(),
            kwnames: [
                names(&["loop"])?,
                names(&["name", "loop"])?,
                names(&["context", "loop"])?,
                names(&["name", "context", "loop"])?,
            ],
            name: PyString::intern(py, "name").unbind(),
            context: PyString::intern(py, "context").unbind(),
        })
    })
}

/// `loop.create_task(coro, *, name=None, context=None)`: the C Task made directly when
/// there is no task factory, no x-ray and no debug mode; anything else (a factory, extra
/// keywords such as eager_start, wrong arguments) goes to the Python `_create_task_slow`,
/// with the same arguments.
unsafe extern "C" fn create_task(
    slf: *mut ffi::PyObject,
    args: *const *mut ffi::PyObject,
    nargsf: ffi::Py_ssize_t,
    kwnames: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    guard(|py| {
        // SAFETY: CPython calls a METH_FASTCALL | METH_KEYWORDS method with `slf` of the
        // descriptor's type (CoreLoop) and a valid argument triple: `args` holds `nargs`
        // positional values, then one per name of the `kwnames` tuple (or NULL), all live
        // for the call. The vectorcalls below get arrays laid out as vectorcall requires
        // (slot 0 of `stack` is the scratch slot PY_VECTORCALL_ARGUMENTS_OFFSET allows).
        unsafe {
            let lp = core(py, slf);
            let nargs = ffi::PyVectorcall_NARGS(nargsf as usize) as usize;
            let tc = task_call(py)?;
            let mut name: Option<*mut ffi::PyObject> = None;
            let mut context: Option<*mut ffi::PyObject> = None;
            let mut fast = nargs == 1 && CoreLoop::plain_tasks(&lp);
            if fast && !kwnames.is_null() {
                let n = ffi::PyTuple_GET_SIZE(kwnames) as usize;
                for i in 0..n {
                    let key = ffi::PyTuple_GET_ITEM(kwnames, i as ffi::Py_ssize_t);
                    let value = *args.add(nargs + i);
                    if key == tc.name.as_ptr() {
                        name = Some(value);
                    } else if key == tc.context.as_ptr() {
                        context = Some(value);
                    } else {
                        fast = false;
                    }
                }
            }
            if !fast {
                let slow = lp.getattr(pyo3::intern!(py, "_create_task_slow"))?;
                let r = ffi::PyObject_Vectorcall(slow.as_ptr(), args, nargsf as usize, kwnames);
                return Ok(Bound::from_owned_ptr_or_err(py, r)?.unbind());
            }
            CoreLoop::base(&lp).check_open()?;
            // [scratch, coro, name?, context?, loop], with the kwnames tuple for what is there
            let mut stack: [*mut ffi::PyObject; 5] = [std::ptr::null_mut(); 5];
            stack[1] = *args;
            let mut k = 2;
            for value in [name, context].into_iter().flatten() {
                stack[k] = value;
                k += 1;
            }
            stack[k] = slf;
            let which = usize::from(name.is_some()) | usize::from(context.is_some()) << 1;
            let task_type = tc.tasks.bind(py).getattr(pyo3::intern!(py, "Task"))?;
            let r = ffi::PyObject_Vectorcall(
                task_type.as_ptr(),
                stack.as_ptr().add(1),
                1 | ffi::PY_VECTORCALL_ARGUMENTS_OFFSET,
                tc.kwnames[which].as_ptr(),
            );
            Ok(Bound::from_owned_ptr_or_err(py, r)?.unbind())
        }
    })
}

type Entry = unsafe extern "C" fn(
    *mut ffi::PyObject,
    *const *mut ffi::PyObject,
    ffi::Py_ssize_t,
    *mut ffi::PyObject,
) -> *mut ffi::PyObject;

const METHODS: [(&std::ffi::CStr, Entry, &std::ffi::CStr); 5] = [
    (c"create_task", create_task, c"create_task($self, coro, *, name=None, context=None, **kwargs)\n--\n\nSchedule a coroutine as a Task."),
    (c"call_soon", call_soon, c"call_soon($self, callback, *args, context=None)\n--\n\nArrange for a callback to be called as soon as possible (FIFO)."),
    (c"call_soon_threadsafe", call_soon_threadsafe, c"call_soon_threadsafe($self, callback, *args, context=None)\n--\n\nLike call_soon(), from any thread; wakes the loop."),
    (c"call_later", call_later, c"call_later($self, delay, callback, *args, context=None)\n--\n\nArrange for a callback to be called after delay seconds."),
    (c"call_at", call_at, c"call_at($self, when, callback, *args, context=None)\n--\n\nArrange for a callback to be called at loop time `when`."),
];

/// Installs the entry points as methods of `CoreLoop`.
pub(crate) fn install(ty: &Bound<'_, PyType>) -> PyResult<()> {
    let py = ty.py();
    for (name, func, doc) in METHODS {
        // Leaked on purpose: a method definition must outlive its type (the process).
        let def: &'static mut ffi::PyMethodDef = Box::leak(Box::new(ffi::PyMethodDef {
            ml_name: name.as_ptr(),
            ml_meth: ffi::PyMethodDefPointer { PyCFunctionFastWithKeywords: func },
            ml_flags: ffi::METH_FASTCALL | ffi::METH_KEYWORDS,
            ml_doc: doc.as_ptr(),
        }));
        // SAFETY: a valid type object and a 'static method definition.
        let descr = unsafe {
            let d = ffi::PyDescr_NewMethod(ty.as_ptr() as *mut ffi::PyTypeObject, def);
            if d.is_null() {
                return Err(PyErr::fetch(py));
            }
            Bound::from_owned_ptr(py, d)
        };
        ty.setattr(name.to_str().expect("ascii"), descr)?;
    }
    Ok(())
}
