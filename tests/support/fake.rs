//! In-process fake servers for faults a real daemon cannot produce: a backend that injects
//! bytes after STARTTLS, one that closes mid-literal, one that never answers.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
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

/// What a [`recording_imap_backend`] received on one connection.
#[derive(Debug, Clone, Default)]
pub struct RecordedImapSession {
    /// Every command (line plus inlined literals) and SASL response line before login.
    pub pre_login: Vec<Vec<u8>>,
    /// Every command received after a LOGIN/AUTHENTICATE it accepted.
    pub post_login: Vec<Vec<u8>>,
    /// True once the connection is closed (the record is final).
    pub closed: bool,
}

/// Capabilities the recording backend announces (before and after login).
pub const RECORDING_BACKEND_CAPS: &str = "IMAP4rev1 LITERAL+ SASL-IR ID IDLE AUTH=PLAIN";

/// A scripted plaintext IMAP backend that accepts LOGIN / AUTHENTICATE PLAIN with `user` and
/// `password` (anything else: `NO`), answers every other command `OK` (pre-login: CAPABILITY,
/// ID, NOOP, LOGOUT; anything else `BAD`) and records every byte it receives, split into
/// commands the way a server frames them. Synchronizing literals get a `+` continuation.
/// Returns the port and the sessions, one per accepted connection.
pub fn recording_imap_backend(
    user: &str,
    password: &str,
) -> (u16, Arc<Mutex<Vec<RecordedImapSession>>>) {
    let sasl = String::from_utf8(super::mime::base64(
        format!("\0{user}\0{password}").as_bytes(),
    ))
    .expect("ascii")
    .trim_end()
    .to_string();
    let (user, password) = (user.to_string(), password.to_string());
    let sessions = Arc::new(Mutex::new(Vec::<RecordedImapSession>::new()));
    let record = sessions.clone();
    let port = serve(move |tcp| {
        let index = {
            let mut all = record.lock().expect("lock");
            all.push(RecordedImapSession::default());
            all.len() - 1
        };
        let mut reader = BufReader::new(tcp.try_clone().expect("clone"));
        let mut writer = tcp;
        let note = |post: bool, bytes: Vec<u8>| {
            let mut all = record.lock().expect("lock");
            let session = &mut all[index];
            if post {
                session.post_login.push(bytes);
            } else {
                session.pre_login.push(bytes);
            }
        };
        send(
            &mut writer,
            format!("* OK [CAPABILITY {RECORDING_BACKEND_CAPS}] fake ready\r\n").as_bytes(),
        );
        let mut logged_in = false;
        while let Some(command) = read_imap_command(&mut reader, &mut writer) {
            note(logged_in, command.clone());
            let text = String::from_utf8_lossy(&command).into_owned();
            let mut words = text.split_ascii_whitespace();
            let tag = words.next().unwrap_or("*").to_string();
            let name = words.next().unwrap_or("").to_ascii_uppercase();
            let mechanism = words.next().unwrap_or("").to_ascii_uppercase();
            let initial = words.next().map(str::to_string);
            let ok = format!("{tag} OK [CAPABILITY {RECORDING_BACKEND_CAPS}] logged in\r\n");
            let no = format!("{tag} NO [AUTHENTICATIONFAILED] wrong\r\n");
            let reply = match (logged_in, name.as_str()) {
                (false, "LOGIN") => {
                    logged_in = text.contains(&user) && text.contains(&password);
                    if logged_in {
                        ok
                    } else {
                        no
                    }
                }
                (false, "AUTHENTICATE") => {
                    let response = match initial {
                        Some(initial) => initial,
                        None => {
                            send(&mut writer, b"+ \r\n");
                            let mut response = Vec::new();
                            if reader.read_until(b'\n', &mut response).unwrap_or(0) == 0 {
                                break;
                            }
                            note(false, response.clone());
                            String::from_utf8_lossy(&response).trim_end().to_string()
                        }
                    };
                    logged_in = mechanism == "PLAIN" && response == sasl;
                    if logged_in {
                        ok
                    } else {
                        no
                    }
                }
                (_, "LOGOUT") => {
                    send(&mut writer, format!("* BYE bye\r\n{tag} OK\r\n").as_bytes());
                    break;
                }
                (_, "CAPABILITY") => {
                    format!("* CAPABILITY {RECORDING_BACKEND_CAPS}\r\n{tag} OK\r\n")
                }
                (_, "ID") => format!("* ID NIL\r\n{tag} OK\r\n"),
                (false, "NOOP") => format!("{tag} OK\r\n"),
                (false, _) => format!("{tag} BAD not before login\r\n"),
                (true, _) => format!("{tag} OK done\r\n"),
            };
            send(&mut writer, reply.as_bytes());
        }
        record.lock().expect("lock")[index].closed = true;
    });
    (port, sessions)
}

/// Reads one IMAP command (line plus literals); sends `+` for synchronizing literals. `None`
/// at EOF or on a read error.
fn read_imap_command<R: Read, W: Write>(
    reader: &mut BufReader<R>,
    writer: &mut W,
) -> Option<Vec<u8>> {
    let mut command = Vec::new();
    loop {
        let mut line = Vec::new();
        if reader.read_until(b'\n', &mut line).ok()? == 0 {
            return None;
        }
        command.extend_from_slice(&line);
        let Some((size, sync)) = super::raw::announced_literal(&line) else {
            return Some(command);
        };
        if sync {
            send(writer, b"+ go ahead\r\n");
        }
        let mut literal = vec![0; size];
        reader.read_exact(&mut literal).ok()?;
        command.extend_from_slice(&literal);
    }
}
