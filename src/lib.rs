//! ferroloop's native core. This file only registers the module; see docs/architecture.md
//! for how one loop iteration flows through the other files.

mod clock;
mod event_loop;
mod fastcall;
mod gil_cell;
mod handles;
mod poller;
mod sendfile;
mod threadsafe;
mod timers;
mod tls;
mod trace;
mod transports;
mod unix_paths;

use pyo3::prelude::*;

/// `gil_used = true`: every pyclass here relies on the GIL to serialise access to its
/// state (see gil_cell.rs), so a free-threaded interpreter must keep the GIL on for us.
#[pymodule(gil_used = true)]
fn _ferroloop(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<event_loop::CoreLoop>()?;
    fastcall::install(&m.py().get_type::<event_loop::CoreLoop>())?;
    m.add_class::<handles::Handle>()?;
    m.add_class::<handles::TimerHandle>()?;
    m.add_class::<transports::stream::StreamTransport>()?;
    m.add_class::<transports::datagram::DatagramTransport>()?;
    m.add_function(wrap_pyfunction!(sendfile::sendfile_chunk, m)?)?;
    m.add_function(wrap_pyfunction!(unix_paths::remove_stale_socket, m)?)?;
    m.add_function(wrap_pyfunction!(unix_paths::path_inode, m)?)?;
    m.add_function(wrap_pyfunction!(unix_paths::unlink_if_inode, m)?)?;
    m.add_class::<tls::protocol::TlsProtocol>()?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
