//! The accept path of one client connection, before its protocol session starts: PROXY header
//! (when the listener takes one), connection limits, the connection gauge and implicit TLS.
//!
//! Refusals are logged and counted in `limit_rejections_total{limit}`. A connection refused by
//! a connection cap on a plaintext-first listener (`starttls`/`none`) gets one line first —
//! IMAP `* BYE [UNAVAILABLE] too many connections` (RFC 5530), POP3 `-ERR [SYS/TEMP] too many
//! connections` (RFC 3206) — and is closed; on an implicit-TLS listener it is closed before the
//! handshake (no CPU spent on TLS for a refused client).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use crate::config::{ListenerTls, Protocol};
use crate::context::{accept_tls, ConnectionGuard, ListenerRuntime, SessionContext};
use crate::limits::LimitHit;
use crate::metrics::{metrics, Limit};
use crate::net::Stream;
use crate::proxy_protocol::{self, ProxyHeaderError};

/// Longest spent writing the refusal line to a client over a connection cap.
const REFUSAL_WRITE_TIMEOUT: Duration = Duration::from_secs(2);

/// Client and local addresses of a connection, after the PROXY header.
struct Addresses {
    peer: SocketAddr,
    local: SocketAddr,
    proxied_by: Option<SocketAddr>,
}

/// Runs one accepted connection to its end.
pub async fn handle_connection(
    runtime: Arc<ListenerRuntime>,
    shutdown: CancellationToken,
    mut tcp: TcpStream,
) {
    // Boxed steps (here and the session's start): their futures are alive only while the
    // connection starts, so the task an idle session keeps does not carry their space.
    let addresses = match Box::pin(resolve_addresses(&runtime, &mut tcp)).await {
        Ok(addresses) => addresses,
        Err(error) => {
            tracing::warn!(%error, "connection refused: PROXY header");
            crate::session::count_limit(Limit::ProxyHeader);
            return;
        }
    };
    if let Some(proxy) = addresses.proxied_by {
        let span = tracing::Span::current();
        span.record("peer", tracing::field::display(addresses.peer));
        span.record("proxied_by", tracing::field::display(proxy));
    }
    let limits = &runtime.shared;
    let permit = match limits.connections.try_acquire(addresses.peer.ip()) {
        Ok(permit) => permit,
        Err(hit) => {
            tracing::warn!(limit = hit.limit().as_str(), "connection refused: {hit}");
            crate::session::count_limit(hit.limit());
            Box::pin(refuse(&runtime, tcp, hit)).await;
            return;
        }
    };
    let active = metrics().track_connection(runtime.name(), runtime.protocol());
    let context = SessionContext {
        listener: runtime.clone(),
        peer: addresses.peer,
        local: addresses.local,
        shutdown,
        penalty: limits.penalty.clone(),
        scan_permits: limits.scan_permits.clone(),
        memory: limits.memory.clone(),
        _connection: Arc::new(ConnectionGuard::new(permit, active)),
    };
    let stream = match runtime.config.tls {
        ListenerTls::Implicit => match Box::pin(accept_tls(&runtime.tls, tcp)).await {
            Ok(stream) => stream,
            Err(error) => {
                tracing::info!(%error, "client TLS handshake failed");
                return;
            }
        },
        ListenerTls::Starttls | ListenerTls::None => Stream::Plain(tcp),
    };
    match runtime.protocol() {
        Protocol::Imap => crate::imap::session::run(context, stream).await,
        Protocol::Pop3 => crate::pop3::session::run(context, stream).await,
    }
}

/// The socket's addresses, or — on a `proxy_protocol` listener — the ones a trusted proxy
/// announced in its header.
async fn resolve_addresses(
    runtime: &ListenerRuntime,
    tcp: &mut TcpStream,
) -> Result<Addresses, ProxyHeaderError> {
    let socket_peer = tcp.peer_addr()?;
    let socket_local = tcp.local_addr()?;
    let own = Addresses {
        peer: socket_peer,
        local: socket_local,
        proxied_by: None,
    };
    if !runtime.config.proxy_protocol {
        return Ok(own);
    }
    let trusted = runtime
        .config
        .trusted_proxies
        .iter()
        .any(|net| net.contains(socket_peer.ip()));
    if !trusted {
        return Err(ProxyHeaderError::Untrusted(socket_peer.ip()));
    }
    let timeout = runtime.limits.proxy_header_timeout;
    let header = tokio::time::timeout(timeout, proxy_protocol::read_header(tcp))
        .await
        .map_err(|_| ProxyHeaderError::Timeout)??;
    Ok(match header {
        Some(announced) => Addresses {
            peer: announced.source,
            local: announced.destination,
            proxied_by: Some(socket_peer),
        },
        // LOCAL / UNKNOWN: the proxy speaks for itself (health checks).
        None => own,
    })
}

/// Sends the protocol's "too many connections" line where the protocol is plaintext-first,
/// then closes.
async fn refuse(runtime: &ListenerRuntime, mut tcp: TcpStream, hit: LimitHit) {
    if runtime.config.tls == ListenerTls::Implicit {
        return;
    }
    let line: &[u8] = match (runtime.protocol(), hit) {
        (Protocol::Imap, _) => b"* BYE [UNAVAILABLE] too many connections\r\n",
        (Protocol::Pop3, _) => b"-ERR [SYS/TEMP] too many connections\r\n",
    };
    let write = async {
        tcp.write_all(line).await?;
        tcp.shutdown().await
    };
    let _ = tokio::time::timeout(REFUSAL_WRITE_TIMEOUT, write).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The size of the future `f` returns: what the session task of a connection carries.
    fn future_size<A, B, C, F: std::future::Future>(_: impl Fn(A, B, C) -> F) -> usize {
        size_of::<F>()
    }

    #[test]
    fn an_idle_session_task_is_small() {
        // Before the handshake, the session's start and the protocol handlers were boxed, every
        // connection's task carried their futures: about 9 KiB while the session was idle.
        let size = future_size(handle_connection);
        assert!(size <= 3 * 1024, "connection future: {size} bytes");
    }
}
