//! Raw vectorcall entry points for the methods called once per callback: `call_soon`,
//! `call_soon_threadsafe`, `call_later`, `call_at`; and for the two that make the objects
//! callbacks wait on: `create_task`, `create_future` (every stream read and HTTP request
//! waits on a future); and `get_debug`, which every C Future and Task asks as it is made.
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
use pyo3::types::{PyDict, PyString, PyTuple, PyType};

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

/// A module's global read at each call, as asyncio's `tasks.Task(...)` and
/// `futures.Future(...)` read theirs (so a patched class is used), straight from the
/// module's dict: a third of the cost of a module getattr.
struct ModuleGlobal {
    module: &'static str,
    namespace: Py<PyDict>,
    name: Py<PyString>,
}

impl ModuleGlobal {
    fn new(py: Python<'_>, module: &'static str, name: &str) -> PyResult<ModuleGlobal> {
        Ok(ModuleGlobal {
            module,
            namespace: py.import(module)?.dict().unbind(),
            name: PyString::intern(py, name).unbind(),
        })
    }

    fn get<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        self.namespace.bind(py).get_item(self.name.bind(py))?.ok_or_else(|| {
            pyo3::exceptions::PyAttributeError::new_err(format!(
                "module '{}' has no attribute '{}'",
                self.module,
                self.name.bind(py)
            ))
        })
    }
}

/// `callable(*args)` by vectorcall, `nargsf` and `kwnames` as the protocol has them.
///
/// # Safety
/// `args` holds what `nargsf` and `kwnames` say, live for the call; with
/// PY_VECTORCALL_ARGUMENTS_OFFSET in `nargsf`, `args[-1]` is writable scratch.
unsafe fn vectorcall(
    py: Python<'_>,
    callable: &Bound<'_, PyAny>,
    args: *const *mut ffi::PyObject,
    nargsf: usize,
    kwnames: *mut ffi::PyObject,
) -> PyResult<Py<PyAny>> {
    // SAFETY: the caller's contract; the result is a new reference or NULL with an error set.
    unsafe {
        let r = ffi::PyObject_Vectorcall(callable.as_ptr(), args, nargsf, kwnames);
        Ok(Bound::from_owned_ptr_or_err(py, r)?.unbind())
    }
}

/// `asyncio.tasks.Task` and the keyword-name tuples create_task passes it.
struct TaskCall {
    task: ModuleGlobal,
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
            task: ModuleGlobal::new(py, "asyncio.tasks", "Task")?,
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
                return vectorcall(py, &slow, args, nargsf as usize, kwnames);
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
            vectorcall(
                py,
                &tc.task.get(py)?,
                stack.as_ptr().add(1),
                1 | ffi::PY_VECTORCALL_ARGUMENTS_OFFSET,
                tc.kwnames[which].as_ptr(),
            )
        }
    })
}

/// `asyncio.futures.Future` and the keyword-name tuple `("loop",)`.
struct FutureCall {
    future: ModuleGlobal,
    kwnames: Py<PyTuple>,
}

fn future_call(py: Python<'_>) -> PyResult<&FutureCall> {
    static CELL: pyo3::sync::PyOnceLock<FutureCall> = pyo3::sync::PyOnceLock::new();
    CELL.get_or_try_init(py, || {
        Ok(FutureCall {
            future: ModuleGlobal::new(py, "asyncio.futures", "Future")?,
            kwnames: PyTuple::new(py, [PyString::intern(py, "loop")])?.unbind(),
        })
    })
}

/// `loop.create_future()`: asyncio's `futures.Future(loop=self)`, without a Python frame.
unsafe extern "C" fn create_future(
    slf: *mut ffi::PyObject,
    _args: *const *mut ffi::PyObject,
    nargsf: ffi::Py_ssize_t,
    kwnames: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    guard(|py| {
        // SAFETY: CPython calls a METH_FASTCALL | METH_KEYWORDS method with a valid argument
        // triple (no argument is accepted: only their counts are read); the vectorcall gets
        // `stack` with slot 0 as the scratch slot PY_VECTORCALL_ARGUMENTS_OFFSET allows and
        // `slf` (live for the call) in slot 1.
        unsafe {
            let nargs = ffi::PyVectorcall_NARGS(nargsf as usize);
            if nargs != 0 {
                return Err(PyTypeError::new_err(format!(
                    "create_future() takes 1 positional argument but {} were given",
                    nargs + 1
                )));
            }
            if !kwnames.is_null() && ffi::PyTuple_GET_SIZE(kwnames) > 0 {
                let key = Bound::from_borrowed_ptr(py, ffi::PyTuple_GET_ITEM(kwnames, 0));
                return Err(PyTypeError::new_err(format!(
                    "create_future() got an unexpected keyword argument {}",
                    key.repr()?
                )));
            }
            let fc = future_call(py)?;
            let stack: [*mut ffi::PyObject; 2] = [std::ptr::null_mut(), slf];
            vectorcall(
                py,
                &fc.future.get(py)?,
                stack.as_ptr().add(1),
                ffi::PY_VECTORCALL_ARGUMENTS_OFFSET,
                fc.kwnames.as_ptr(),
            )
        }
    })
}

/// `loop.get_debug()`: asked by every C Future and Task as it is made (`future_init`), so
/// it skips pyo3's method trampoline (about 10 ns of its 26).
unsafe extern "C" fn get_debug(slf: *mut ffi::PyObject, _unused: *mut ffi::PyObject) -> *mut ffi::PyObject {
    guard(|py| {
        // SAFETY: CPython calls a METH_NOARGS method with `slf` of the descriptor's type.
        let lp = unsafe { core(py, slf) };
        Ok(pyo3::types::PyBool::new(py, CoreLoop::base(&lp).is_debug()).to_owned().into_any().unbind())
    })
}

type Entry = unsafe extern "C" fn(
    *mut ffi::PyObject,
    *const *mut ffi::PyObject,
    ffi::Py_ssize_t,
    *mut ffi::PyObject,
) -> *mut ffi::PyObject;

const METHODS: [(&std::ffi::CStr, Entry, &std::ffi::CStr); 6] = [
    (c"create_future", create_future, c"create_future($self)\n--\n\nCreate a Future object attached to the loop."),
    (c"create_task", create_task, c"create_task($self, coro, *, name=None, context=None, **kwargs)\n--\n\nSchedule a coroutine as a Task."),
    (c"call_soon", call_soon, c"call_soon($self, callback, *args, context=None)\n--\n\nArrange for a callback to be called as soon as possible (FIFO)."),
    (c"call_soon_threadsafe", call_soon_threadsafe, c"call_soon_threadsafe($self, callback, *args, context=None)\n--\n\nLike call_soon(), from any thread; wakes the loop."),
    (c"call_later", call_later, c"call_later($self, delay, callback, *args, context=None)\n--\n\nArrange for a callback to be called after delay seconds."),
    (c"call_at", call_at, c"call_at($self, when, callback, *args, context=None)\n--\n\nArrange for a callback to be called at loop time `when`."),
];

/// Installs the entry points as methods of `CoreLoop`.
pub(crate) fn install(ty: &Bound<'_, PyType>) -> PyResult<()> {
    let fast = METHODS.into_iter().map(|(name, func, doc)| ffi::PyMethodDef {
        ml_name: name.as_ptr(),
        ml_meth: ffi::PyMethodDefPointer { PyCFunctionFastWithKeywords: func },
        ml_flags: ffi::METH_FASTCALL | ffi::METH_KEYWORDS,
        ml_doc: doc.as_ptr(),
    });
    let noargs = std::iter::once(ffi::PyMethodDef {
        ml_name: c"get_debug".as_ptr(),
        ml_meth: ffi::PyMethodDefPointer { PyCFunction: get_debug },
        ml_flags: ffi::METH_NOARGS,
        ml_doc: c"get_debug($self, /)\n--\n\nWhether the loop runs in debug mode.".as_ptr(),
    });
    install_defs(ty, fast.chain(noargs))
}

fn install_defs(ty: &Bound<'_, PyType>, defs: impl Iterator<Item = ffi::PyMethodDef>) -> PyResult<()> {
    let py = ty.py();
    for def in defs {
        // Leaked on purpose: a method definition must outlive its type (the process).
        let def: &'static mut ffi::PyMethodDef = Box::leak(Box::new(def));
        // SAFETY: ml_name is a 'static C string (the tables above).
        let name = unsafe { std::ffi::CStr::from_ptr(def.ml_name) };
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
