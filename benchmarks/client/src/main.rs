//! Echo load client for ferroloop's network benchmarks.
//!
//! One single-threaded mio program drives every loop's server the same way, so only the
//! server's event loop differs between runs (the runner pins this client to one core and the
//! server to the other). Each connection keeps exactly one message in flight: send `size`
//! bytes, wait until `size` bytes came back, record the round trip, repeat. Bounded by a
//! duration and a message count; prints one JSON object on stdout.
//!
//!   ferroloop-bench-client tcp  --addr 127.0.0.1:8000 --size 1024 --conns 50 --duration 3
//!   ferroloop-bench-client unix --addr /tmp/echo.sock --size 1024 --conns 1 --duration 3
//!   ferroloop-bench-client udp  --addr 127.0.0.1:8000 --size 1024 --conns 1 --duration 3
//!   ferroloop-bench-client tls  --addr 127.0.0.1:8000 --size 1024 --conns 50 --duration 3
//!   ferroloop-bench-client tls-bulk --addr 127.0.0.1:8000 --size 67108864 --conns 1 --duration 3
//!
//! `tls` is the echo over TLS (OpenSSL through the `openssl` crate, no certificate
//! verification: a benchmark, not a client); `tls-bulk` asks the server for `size` bytes
//! (an 8-byte big-endian count) and reads them, one transfer per message.
//! The handshakes happen before the clock starts. The TLS modes need the `tls` feature
//! (OpenSSL's headers: libssl-dev); the runner builds without it when they are missing.

use mio::net::{TcpStream, UdpSocket, UnixStream};
use mio::{Events, Interest, Poll, Token};
#[cfg(feature = "tls")]
use openssl::ssl::{HandshakeError, SslConnector, SslMethod, SslStream, SslVerifyMode};
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::process::exit;
use std::time::{Duration, Instant};

struct Args {
    mode: String,
    addr: String,
    size: usize,
    conns: usize,
    duration: f64,
    max_msgs: u64,
    // UDP: a datagram not answered within this is counted lost and the next one sent.
    udp_timeout: f64,
}

fn fail(msg: &str) -> ! {
    println!("{{\"error\": {}}}", json_str(msg));
    exit(1)
}

fn json_str(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn parse_args() -> Args {
    let mut it = std::env::args().skip(1);
    let mode = it.next().unwrap_or_else(|| {
        fail("usage: MODE (tcp|unix|udp) --addr A [--size N] [--conns N] [--duration S] [--max-msgs N]")
    });
    let mut a =
        Args { mode, addr: String::new(), size: 1024, conns: 1, duration: 3.0, max_msgs: 10_000_000, udp_timeout: 0.2 };
    while let Some(flag) = it.next() {
        let val = it.next().unwrap_or_else(|| fail(&format!("{flag} needs a value")));
        let bad = || -> ! { fail(&format!("bad value for {flag}: {val}")) };
        match flag.as_str() {
            "--addr" => a.addr = val.clone(),
            "--size" => a.size = val.parse().unwrap_or_else(|_| bad()),
            "--conns" => a.conns = val.parse().unwrap_or_else(|_| bad()),
            "--duration" => a.duration = val.parse().unwrap_or_else(|_| bad()),
            "--max-msgs" => a.max_msgs = val.parse().unwrap_or_else(|_| bad()),
            "--udp-timeout" => a.udp_timeout = val.parse().unwrap_or_else(|_| bad()),
            _ => fail(&format!("unknown flag {flag}")),
        }
    }
    if a.addr.is_empty() || a.size == 0 || a.conns == 0 {
        fail("--addr is required; --size and --conns must be > 0");
    }
    if a.mode == "udp" && a.size > 65_000 {
        fail("udp messages must fit one datagram");
    }
    a
}

enum Sock {
    #[cfg(feature = "tls")]
    Tls(SslStream<TcpStream>),
    Tcp(TcpStream),
    Unix(UnixStream),
    Udp(UdpSocket),
}

impl Sock {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            #[cfg(feature = "tls")]
            Sock::Tls(s) => s.read(buf),
            Sock::Tcp(s) => s.read(buf),
            Sock::Unix(s) => s.read(buf),
            Sock::Udp(s) => s.recv(buf),
        }
    }
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            #[cfg(feature = "tls")]
            Sock::Tls(s) => s.write(buf),
            Sock::Tcp(s) => s.write(buf),
            Sock::Unix(s) => s.write(buf),
            Sock::Udp(s) => s.send(buf),
        }
    }
    fn source(&mut self) -> &mut dyn mio::event::Source {
        match self {
            #[cfg(feature = "tls")]
            Sock::Tls(s) => s.get_mut(),
            Sock::Tcp(s) => s,
            Sock::Unix(s) => s,
            Sock::Udp(s) => s,
        }
    }
}

struct Conn {
    sock: Sock,
    sent: usize,      // bytes of the current message written
    got: usize,       // bytes of the current message echoed back
    started: Instant, // when the current message was begun
    active: bool,     // a message is in flight
}

struct Stats {
    done: u64,
    lost: u64,
    errors: u64,
    lat_ns: Vec<u64>,
}

fn connect(args: &Args) -> Sock {
    let timeout = Duration::from_secs(5);
    match args.mode.as_str() {
        "tcp" => {
            let addr: SocketAddr = args.addr.parse().unwrap_or_else(|_| fail("bad --addr"));
            let s = std::net::TcpStream::connect_timeout(&addr, timeout)
                .unwrap_or_else(|e| fail(&format!("connect {addr}: {e}")));
            s.set_nodelay(true).ok();
            s.set_nonblocking(true).unwrap();
            Sock::Tcp(TcpStream::from_std(s))
        }
        #[cfg(feature = "tls")]
        "tls" | "tls-bulk" => {
            let addr: SocketAddr = args.addr.parse().unwrap_or_else(|_| fail("bad --addr"));
            let s = std::net::TcpStream::connect_timeout(&addr, timeout)
                .unwrap_or_else(|e| fail(&format!("connect {addr}: {e}")));
            s.set_nodelay(true).ok();
            s.set_nonblocking(true).unwrap();
            let cfg = tls_connector(args.mode == "tls-bulk").configure().unwrap();
            let started = Instant::now();
            let mut hs = cfg.verify_hostname(false).connect("localhost", TcpStream::from_std(s));
            loop {
                match hs {
                    Ok(tls) => return Sock::Tls(tls),
                    Err(HandshakeError::WouldBlock(mid)) => {
                        if started.elapsed() > timeout {
                            fail("TLS handshake timed out");
                        }
                        std::thread::sleep(Duration::from_micros(200));
                        hs = mid.handshake();
                    }
                    Err(e) => fail(&format!("TLS handshake: {e}")),
                }
            }
        }
        "unix" => {
            let s = std::os::unix::net::UnixStream::connect(&args.addr)
                .unwrap_or_else(|e| fail(&format!("connect {}: {e}", args.addr)));
            s.set_nonblocking(true).unwrap();
            Sock::Unix(UnixStream::from_std(s))
        }
        "udp" => {
            let addr: SocketAddr = args.addr.parse().unwrap_or_else(|_| fail("bad --addr"));
            let local: SocketAddr = if addr.is_ipv4() { "127.0.0.1:0" } else { "[::1]:0" }.parse().unwrap();
            let s = std::net::UdpSocket::bind(local).unwrap_or_else(|e| fail(&format!("bind: {e}")));
            s.connect(addr).unwrap_or_else(|e| fail(&format!("connect {addr}: {e}")));
            s.set_nonblocking(true).unwrap();
            Sock::Udp(UdpSocket::from_std(s))
        }
        m => fail(&format!("unknown mode {m}")),
    }
}

// libssl (linked by the openssl crate) has this since 1.1.0; the crate does not bind it.
#[cfg(feature = "tls")]
extern "C" {
    fn SSL_CTX_set_default_read_buffer_len(ctx: *mut std::ffi::c_void, len: usize);
}

/// One connector for every connection (building one loads the system's CA store); one
/// process runs one mode, so the first call's `read_ahead` is the only one.
#[cfg(feature = "tls")]
fn tls_connector(read_ahead: bool) -> &'static SslConnector {
    static CONNECTOR: std::sync::OnceLock<SslConnector> = std::sync::OnceLock::new();
    CONNECTOR.get_or_init(|| {
        let mut b = SslConnector::builder(SslMethod::tls_client()).unwrap_or_else(|e| fail(&format!("openssl: {e}")));
        b.set_verify(SslVerifyMode::NONE);
        // A bulk reader takes whole socket buffers, not one 16 KiB record per recv: without
        // read-ahead OpenSSL reads each record's header and body with two syscalls, and the
        // client, not the server, bounds the bulk row. The echo reads one small record per
        // message, where read-ahead measured slower, so it stays off there.
        b.set_read_ahead(read_ahead);
        if read_ahead {
            // read-ahead alone fills a one-record buffer; give it room for many records
            // SAFETY: `b` owns a live SSL_CTX; the call only sets a length on it.
            unsafe { SSL_CTX_set_default_read_buffer_len(b.as_ptr().cast(), 256 * 1024) };
        }
        b.build()
    })
}

/// This process's CPU seconds so far (user + system).
fn cpu_secs() -> f64 {
    // SAFETY: getrusage fills the struct we own.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// Drive one connection as far as it goes without blocking. Returns false on a fatal error.
fn progress(
    c: &mut Conn,
    msg: &[u8],
    rbuf: &mut [u8],
    stats: &mut Stats,
    may_start: &dyn Fn(u64) -> bool,
    dgram: bool,
    expect: usize,
) -> bool {
    let size = msg.len();
    loop {
        if !c.active {
            return true;
        }
        let mut wrote_blocked = false;
        while c.sent < size {
            match c.sock.write(&msg[c.sent..]) {
                Ok(n) => c.sent += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    wrote_blocked = true;
                    break;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return false,
            }
        }
        let _ = wrote_blocked;
        loop {
            match c.sock.read(rbuf) {
                Ok(0) if !dgram => return false, // server closed
                Ok(n) => {
                    // A datagram is a whole message; a late reply to a message already
                    // counted lost is dropped by the size check below only if it is short.
                    c.got += n;
                    if dgram {
                        break;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return false,
            }
        }
        if c.got < expect {
            return true;
        }
        if c.got > expect {
            return false; // more echoed than sent: broken server
        }
        let now = Instant::now();
        stats.lat_ns.push((now - c.started).as_nanos() as u64);
        stats.done += 1;
        if may_start(stats.done) {
            c.sent = 0;
            c.got = 0;
            c.started = now;
        } else {
            c.active = false;
        }
    }
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let idx = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[idx.min(sorted.len() - 1)] as f64 / 1000.0
}

fn main() {
    let args = parse_args();
    let dgram = args.mode == "udp";
    let bulk = args.mode == "tls-bulk";
    let msg: Vec<u8> = if bulk {
        (args.size as u64).to_be_bytes().to_vec()
    } else {
        (0..args.size).map(|i| b'a' + (i % 26) as u8).collect()
    };
    let expect = args.size;
    let mut rbuf = vec![0u8; 256 * 1024];
    let mut poll = Poll::new().unwrap();
    let mut conns: Vec<Conn> = Vec::with_capacity(args.conns);
    for i in 0..args.conns {
        let mut sock = connect(&args);
        poll.registry().register(sock.source(), Token(i), Interest::READABLE | Interest::WRITABLE).unwrap();
        conns.push(Conn { sock, sent: 0, got: 0, started: Instant::now(), active: true });
    }
    let mut stats = Stats { done: 0, lost: 0, errors: 0, lat_ns: Vec::with_capacity(1 << 20) };
    let t0 = Instant::now();
    let cpu0 = cpu_secs();
    let deadline = t0 + Duration::from_secs_f64(args.duration);
    // In-flight messages get this long to finish after the deadline, then are abandoned.
    let grace = deadline + Duration::from_secs(5);
    let max = args.max_msgs;
    let may_start = move |done: u64| done < max && Instant::now() < deadline;
    let udp_timeout = Duration::from_secs_f64(args.udp_timeout);

    for c in conns.iter_mut() {
        c.started = Instant::now();
        if !progress(c, &msg, &mut rbuf, &mut stats, &may_start, dgram, expect) {
            stats.errors += 1;
            c.active = false;
        }
    }
    let mut events = Events::with_capacity(1024);
    loop {
        let now = Instant::now();
        let active = conns.iter().filter(|c| c.active).count();
        if active == 0 || now >= grace {
            break;
        }
        let wait =
            if now < deadline { (deadline - now).min(Duration::from_millis(50)) } else { Duration::from_millis(50) };
        if let Err(e) = poll.poll(&mut events, Some(wait)) {
            if e.kind() != io::ErrorKind::Interrupted {
                fail(&format!("poll: {e}"));
            }
        }
        for ev in events.iter() {
            let c = &mut conns[ev.token().0];
            if !progress(c, &msg, &mut rbuf, &mut stats, &may_start, dgram, expect) {
                stats.errors += 1;
                c.active = false;
            }
        }
        if dgram {
            let now = Instant::now();
            for c in conns.iter_mut().filter(|c| c.active && now - c.started > udp_timeout) {
                stats.lost += 1;
                if may_start(stats.done) {
                    c.sent = 0;
                    c.got = 0;
                    c.started = now;
                    if !progress(c, &msg, &mut rbuf, &mut stats, &may_start, dgram, expect) {
                        stats.errors += 1;
                        c.active = false;
                    }
                } else {
                    c.active = false;
                }
            }
        }
    }
    let elapsed = t0.elapsed().as_secs_f64();
    let cpu = cpu_secs() - cpu0;
    let unfinished = conns.iter().filter(|c| c.active).count();
    let mut lat = std::mem::take(&mut stats.lat_ns);
    lat.sort_unstable();
    let mean_us = if lat.is_empty() { 0.0 } else { lat.iter().sum::<u64>() as f64 / lat.len() as f64 / 1000.0 };
    println!(
        "{{\"mode\": {}, \"size\": {}, \"conns\": {}, \"msgs\": {}, \"secs\": {:.6}, \"msgs_per_sec\": {:.1}, \
         \"mib_per_sec\": {:.3}, \"p50_us\": {:.1}, \"p99_us\": {:.1}, \"mean_us\": {:.1}, \"lost\": {}, \
         \"errors\": {}, \"unfinished\": {}, \"cpu_secs\": {:.6}}}",
        json_str(&args.mode),
        args.size,
        args.conns,
        stats.done,
        elapsed,
        stats.done as f64 / elapsed,
        stats.done as f64 * args.size as f64 / elapsed / (1024.0 * 1024.0),
        percentile(&lat, 50.0),
        percentile(&lat, 99.0),
        mean_us,
        stats.lost,
        stats.errors,
        unfinished,
        cpu
    );
    if stats.errors > 0 && stats.done == 0 {
        exit(1);
    }
}
