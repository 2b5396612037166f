//! In-process fake servers for faults a real daemon cannot produce: a backend that injects
//! bytes after STARTTLS, one that closes mid-literal, one that never answers.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use rustls::{ServerConfig, ServerConnection, StreamOwned};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use super::certs::TestCa;

/// Starts a fake server on an ephemeral loopback port; `script` runs for every accepted
/// connection on its own thread. Returns the port.
pub fn serve<F>(script: F) -> u16
where
    F: Fn(TcpStream) + Send + Sync + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind fake");
    let port = listener.local_addr().expect("addr").port();
    let script = Arc::new(script);
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            stream.set_read_timeout(Some(Duration::from_secs(20))).ok();
            let script = script.clone();
            std::thread::spawn(move || script(stream));
        }
    });
    port
}

/// A rustls server configuration presenting the test CA's leaf certificate.
pub fn tls_config(ca: &TestCa) -> Arc<ServerConfig> {
    let certs = CertificateDer::pem_slice_iter(ca.cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .expect("cert pem");
    let key = PrivateKeyDer::from_pem_slice(ca.key_pem.as_bytes()).expect("key pem");
    let config = ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .expect("server config");
    Arc::new(config)
}

/// Accepts TLS on `tcp` as the server.
pub fn accept_tls(
    tcp: TcpStream,
    config: Arc<ServerConfig>,
) -> StreamOwned<ServerConnection, TcpStream> {
    let connection = ServerConnection::new(config).expect("server connection");
    let mut stream = StreamOwned::new(connection, tcp);
    while stream.conn.is_handshaking() {
        if stream.conn.complete_io(&mut stream.sock).is_err() {
            break;
        }
    }
    stream
}

/// Reads one line (lossy text) from a buffered reader; empty at EOF.
pub fn read_line<R: Read>(reader: &mut BufReader<R>) -> String {
    let mut line = String::new();
    let _ = reader.read_line(&mut line);
    line
}

/// Writes and flushes, ignoring errors (the peer may be gone).
pub fn send<W: Write>(writer: &mut W, bytes: &[u8]) {
    let _ = writer.write_all(bytes);
    let _ = writer.flush();
}
