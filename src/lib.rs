//! ferroloop's native core. This file only registers the module; see docs/architecture.md
//! for how one loop iteration flows through the other files.

mod clock;
mod event_loop;
mod fastcall;
mod gil_cell;
mod handles;
mod loop_base;
mod os;
mod poller;
mod ready;
mod timers;
mod tls;
mod trace;
mod transports;

use pyo3::prelude::*;

/// `gil_used = true`: every pyclass here relies on the GIL to serialise access to its
/// state (see gil_cell.rs), so a free-threaded interpreter must keep the GIL on for us.
#[pymodule(gil_used = true)]
fn _ferroloop(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<loop_base::LoopBase>()?;
    m.add_class::<event_loop::CoreLoop>()?;
    fastcall::install(&m.py().get_type::<event_loop::CoreLoop>())?;
    m.add_class::<handles::Handle>()?;
    m.add_class::<handles::TimerHandle>()?;
    m.add_class::<transports::socket::SocketTransport>()?;
    m.add_class::<transports::pipe::ReadPipeTransport>()?;
    m.add_class::<transports::pipe::WritePipeTransport>()?;
    m.add_class::<transports::datagram::DatagramTransport>()?;
    m.add_function(wrap_pyfunction!(os::sendfile_chunk, m)?)?;
    m.add_function(wrap_pyfunction!(os::remove_stale_socket, m)?)?;
    m.add_function(wrap_pyfunction!(os::path_inode, m)?)?;
    m.add_function(wrap_pyfunction!(os::unlink_if_inode, m)?)?;
    m.add_class::<tls::protocol::TlsProtocol>()?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
