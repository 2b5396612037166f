//! Ephemeral loopback ports: picking free ones and waiting until a daemon accepts on them.

use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

/// Returns `count` distinct ports that were free on 127.0.0.1 a moment ago.
///
/// All listeners are held until every port is chosen (so the kernel cannot hand out the same
/// port twice) and then released; a daemon started afterwards may still lose a race for one of
/// them, so callers retry their start on "address in use".
pub fn free_ports(count: usize) -> Vec<u16> {
    let listeners: Vec<TcpListener> = (0..count)
        .map(|_| TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind 127.0.0.1:0"))
        .collect();
    listeners
        .iter()
        .map(|listener| listener.local_addr().expect("local_addr").port())
        .collect()
}

/// Returns one port that was free on 127.0.0.1 a moment ago (see [`free_ports`]).
pub fn free_port() -> u16 {
    free_ports(1)[0]
}

/// Waits until something accepts TCP connections on 127.0.0.1:`port`; `false` on timeout.
pub fn wait_for_port(port: u16, timeout: Duration) -> bool {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return true;
        }
        thread::sleep(Duration::from_millis(25));
    }
    false
}

/// Waits until nothing accepts on any of `ports` (127.0.0.1); `false` on timeout.
pub fn wait_until_closed(ports: &[u16], timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        let open = ports.iter().any(|&port| {
            let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
            TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
        });
        if !open {
            return true;
        }
        thread::sleep(Duration::from_millis(10));
    }
    false
}

/// A loopback port on which connections are refused for as long as this value lives: the port is
/// bound (so no other process can take it) but never listened on. Use it for "backend down" /
/// "scanner down" endpoints instead of a [`free_port`], which someone else may bind meanwhile.
pub struct ClosedPort {
    socket: tokio::net::TcpSocket,
}

impl ClosedPort {
    /// Binds 127.0.0.1:0 without listening.
    pub fn new() -> ClosedPort {
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        socket
            .bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
            .expect("bind 127.0.0.1:0");
        ClosedPort { socket }
    }

    /// The reserved port number.
    pub fn port(&self) -> u16 {
        self.socket.local_addr().expect("local_addr").port()
    }
}

impl Default for ClosedPort {
    fn default() -> Self {
        ClosedPort::new()
    }
}
