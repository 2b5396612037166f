//! Backend connector shared by IMAP and POP3: TCP connect, then plaintext, STARTTLS/STLS
//! (RFC 2595 §3/§4) or implicit TLS (RFC 8314), with certificate verification by default.
//!
//! The protocol-specific parts (greeting shape, the STARTTLS command and its reply, how to ask for
//! capabilities) come from a [`Dialect`]. On the STARTTLS path everything the backend sent after
//! its positive reply in the same read is thrown away before the TLS handshake, and capabilities
//! are asked again over TLS. No client byte — and so no credential — is sent before this succeeds.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::ClientConfig;
use rustls_pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::config::{BackendConfig, BackendTls, ForwardClientIp};
use crate::metrics::{metrics, BackendErrorSide};
use crate::net::{set_nodelay, LineError, LineReader, Stream};
use crate::proxy_protocol;

pub mod diagnose;
mod error;
pub mod probe;
pub mod trust;

pub use diagnose::TlsFailure;
use error::Progress;
pub use error::{BackendError, Phase};

/// Longest greeting/handshake line accepted from a backend.
const MAX_HANDSHAKE_LINE: usize = 8192;
/// Most lines accepted while waiting for a handshake reply (untagged noise is bounded too).
const MAX_HANDSHAKE_LINES: usize = 256;

/// How a dialect classifies a line during the handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandshakeLine {
    /// An intermediate line; keep reading.
    More,
    /// The final positive line.
    Done,
    /// The final negative line.
    Refused,
}

/// Greeting classification.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GreetingKind {
    /// Ready for authentication.
    Ready,
    /// Already authenticated (IMAP PREAUTH): refused where TLS must be negotiated first.
    Preauthenticated,
    /// Anything else: BYE, -ERR, garbage.
    Unusable,
}

/// The protocol-specific parts of connecting to a backend.
pub trait Dialect {
    /// Classifies the first line the server sends.
    fn greeting(line: &[u8]) -> GreetingKind;
    /// The STARTTLS/STLS command line, CRLF included.
    fn starttls_command() -> &'static [u8];
    /// Classifies a reply line to that command.
    fn starttls_reply(line: &[u8]) -> HandshakeLine;
    /// The capability query, CRLF included.
    fn capability_command() -> &'static [u8];
    /// Classifies a line of the capability reply.
    fn capability_reply(line: &[u8]) -> HandshakeLine;
    /// The command announcing the client's address (IMAP `ID`, POP3 `XCLIENT`) for `mode`, or
    /// `None` when this dialect has no such command for it.
    fn client_address_command(
        mode: ForwardClientIp,
        client: SocketAddr,
        local: SocketAddr,
    ) -> Option<Vec<u8>>;
    /// Classifies a line of the reply to that command.
    fn client_address_reply(line: &[u8]) -> HandshakeLine;
}

/// A ready backend connection: TLS done where configured, greeting read.
#[derive(Debug)]
pub struct BackendConn {
    /// The stream, positioned after the greeting (and the capability reply, if any).
    pub stream: Stream,
    /// The greeting line as the backend sent it.
    pub greeting: Vec<u8>,
    /// Capability reply lines asked for over TLS on the STARTTLS path.
    pub capabilities: Option<Vec<u8>>,
    /// Bytes already read after the greeting on paths where they are legitimate.
    pub leftover: Vec<u8>,
    /// How long connecting took.
    pub elapsed: Duration,
}

/// Everything needed to reach one backend; built once per configuration.
#[derive(Debug, Clone)]
pub struct BackendTarget {
    /// The configuration section.
    pub config: BackendConfig,
    tls: Option<(Arc<ClientConfig>, ServerName<'static>)>,
}

/// A connection attempt's result before metrics: the step that stalled is read from `progress`.
type Attempt = Result<BackendConn, BackendError>;

impl BackendTarget {
    /// Prepares TLS material for `config` (protocol decides the ALPN id).
    pub fn new(
        config: &BackendConfig,
        protocol: crate::config::Protocol,
    ) -> Result<BackendTarget, crate::tls::TlsError> {
        let tls = match config.tls {
            BackendTls::None => None,
            BackendTls::Starttls | BackendTls::Implicit => Some((
                crate::tls::backend_client_config(config, protocol)?,
                crate::tls::backend_server_name(config)?,
            )),
        };
        Ok(BackendTarget {
            config: config.clone(),
            tls,
        })
    }

    /// Connects and performs the configured handshake within `connect_timeout`, without
    /// telling the backend who the client is. Sessions use [`BackendTarget::connect_for`].
    pub async fn connect<D: Dialect>(&self) -> Result<BackendConn, BackendError> {
        self.connect_for::<D>(None).await
    }

    /// Connects for a client: with `forward_client_ip = "proxy-v1"`/`"proxy-v2"` a PROXY header
    /// announcing `client` = (client address, address it connected to) is the first thing
    /// written on the TCP connection, before TLS. Latency and failures are counted in
    /// `backend_connect_seconds` / `backend_errors_total{side="connect"}`.
    pub async fn connect_for<D: Dialect>(
        &self,
        client: Option<(SocketAddr, SocketAddr)>,
    ) -> Result<BackendConn, BackendError> {
        let started = Instant::now();
        let result = self
            .connect_within::<D>(self.config.connect_timeout, client)
            .await;
        let m = metrics();
        match result {
            Ok(mut conn) => {
                conn.elapsed = started.elapsed();
                m.backend_connect_seconds
                    .with_label_values(&[&self.config.name])
                    .observe(conn.elapsed.as_secs_f64());
                Ok(conn)
            }
            Err(error) => {
                m.backend_errors
                    .with_label_values(&[
                        &self.config.name,
                        BackendErrorSide::Connect.as_str(),
                        error.metric_kind().as_str(),
                    ])
                    .inc();
                Err(error)
            }
        }
    }

    /// Connects and performs the configured handshake within `limit`; no metrics. A timeout
    /// names the step that stalled and, where the TLS mode is the likely cause, the mode meant.
    async fn connect_within<D: Dialect>(
        &self,
        limit: Duration,
        client: Option<(SocketAddr, SocketAddr)>,
    ) -> Attempt {
        let progress = Progress::default();
        match tokio::time::timeout(limit, self.connect_inner::<D>(client, &progress)).await {
            Ok(attempt) => attempt,
            Err(_) => {
                let phase = progress.get();
                Err(BackendError::Timeout {
                    backend: self.config.name.clone(),
                    phase,
                    limit,
                    hint: phase.mode_hint(self.config.tls),
                })
            }
        }
    }

    async fn connect_inner<D: Dialect>(
        &self,
        client: Option<(SocketAddr, SocketAddr)>,
        progress: &Progress,
    ) -> Attempt {
        progress.set(Phase::Connect);
        let mut tcp = TcpStream::connect(&self.config.address)
            .await
            .map_err(|source| BackendError::Connect {
                backend: self.config.name.clone(),
                source,
            })?;
        set_nodelay(&tcp);
        self.send_proxy_header(&mut tcp, client).await?;
        match self.config.tls {
            BackendTls::None => {
                self.plain_greeting::<D>(Stream::Plain(tcp), client, progress)
                    .await
            }
            BackendTls::Implicit => {
                let tls = self.handshake(tcp, progress).await?;
                self.plain_greeting::<D>(tls, client, progress).await
            }
            BackendTls::Starttls => self.starttls::<D>(tcp, client, progress).await,
        }
    }

    async fn plain_greeting<D: Dialect>(
        &self,
        mut stream: Stream,
        client: Option<(SocketAddr, SocketAddr)>,
        progress: &Progress,
    ) -> Attempt {
        let mut reader = LineReader::new(MAX_HANDSHAKE_LINE);
        progress.set(Phase::Greeting);
        let greeting = self.read_line(&mut reader, &mut stream, progress).await?;
        self.check_greeting::<D>(&greeting, true)?;
        self.forward_client_address::<D>(&mut reader, &mut stream, client, progress)
            .await?;
        Ok(BackendConn {
            stream,
            greeting,
            capabilities: None,
            leftover: reader.into_leftover(),
            elapsed: Duration::ZERO,
        })
    }

    async fn starttls<D: Dialect>(
        &self,
        tcp: TcpStream,
        client: Option<(SocketAddr, SocketAddr)>,
        progress: &Progress,
    ) -> Attempt {
        let mut plain = tcp;
        let mut reader = LineReader::new(MAX_HANDSHAKE_LINE);
        progress.set(Phase::Greeting);
        let greeting = self.read_line(&mut reader, &mut plain, progress).await?;
        self.check_greeting::<D>(&greeting, false)?;
        self.write(&mut plain, D::starttls_command()).await?;
        progress.set(Phase::Starttls);
        let refused = |detail| BackendError::StarttlsRefused {
            backend: self.config.name.clone(),
            detail,
        };
        self.read_reply(
            &mut reader,
            &mut plain,
            D::starttls_reply,
            refused,
            progress,
        )
        .await?;
        // RFC 2595 §3 / CVE-2011-0411: anything sent after the positive reply is discarded.
        drop(reader);
        let mut tls = self.handshake(plain, progress).await?;
        let mut reader = LineReader::new(MAX_HANDSHAKE_LINE);
        self.write(&mut tls, D::capability_command()).await?;
        progress.set(Phase::Capabilities);
        let unusable = |detail| BackendError::Greeting {
            backend: self.config.name.clone(),
            detail,
        };
        let capabilities = self
            .read_reply(
                &mut reader,
                &mut tls,
                D::capability_reply,
                unusable,
                progress,
            )
            .await?;
        self.forward_client_address::<D>(&mut reader, &mut tls, client, progress)
            .await?;
        Ok(BackendConn {
            stream: tls,
            greeting,
            capabilities: Some(capabilities),
            leftover: reader.into_leftover(),
            elapsed: Duration::ZERO,
        })
    }

    /// Sends IMAP `ID` / POP3 `XCLIENT` with the client's address when configured, before any
    /// client byte. A backend that refuses it is logged, not fatal: it then sees our address.
    async fn forward_client_address<D: Dialect>(
        &self,
        reader: &mut LineReader,
        stream: &mut Stream,
        client: Option<(SocketAddr, SocketAddr)>,
        progress: &Progress,
    ) -> Result<(), BackendError> {
        let Some((peer, local)) = client else {
            return Ok(());
        };
        let Some(command) = D::client_address_command(self.config.forward_client_ip, peer, local)
        else {
            return Ok(());
        };
        self.write(stream, &command).await?;
        progress.set(Phase::ClientAddress);
        let refused = |detail: String| BackendError::Greeting {
            backend: self.config.name.clone(),
            detail,
        };
        if let Err(error) = self
            .read_reply(reader, stream, D::client_address_reply, refused, progress)
            .await
        {
            match error {
                BackendError::Greeting { detail, .. } => tracing::warn!(
                    backend = %self.config.name,
                    reply = %detail,
                    "backend refused the forwarded client address"
                ),
                other => return Err(other),
            }
        }
        Ok(())
    }

    async fn send_proxy_header(
        &self,
        tcp: &mut TcpStream,
        client: Option<(SocketAddr, SocketAddr)>,
    ) -> Result<(), BackendError> {
        let version = match self.config.forward_client_ip {
            ForwardClientIp::ProxyV1 => proxy_protocol::Version::V1,
            ForwardClientIp::ProxyV2 => proxy_protocol::Version::V2,
            _ => return Ok(()),
        };
        // Without a client (readiness checks, tests) the header announces this connection
        // itself, which a backend requiring PROXY headers still accepts.
        let (source, destination) = match client {
            Some(pair) => pair,
            None => match (tcp.local_addr(), tcp.peer_addr()) {
                (Ok(local), Ok(peer)) => (local, peer),
                (Err(source), _) | (_, Err(source)) => {
                    return Err(BackendError::Connect {
                        backend: self.config.name.clone(),
                        source,
                    })
                }
            },
        };
        let header = proxy_protocol::encode(version, source, destination);
        self.write(tcp, &header).await
    }

    fn check_greeting<D: Dialect>(
        &self,
        greeting: &[u8],
        allow_preauth: bool,
    ) -> Result<(), BackendError> {
        match D::greeting(greeting) {
            GreetingKind::Ready => Ok(()),
            GreetingKind::Preauthenticated if allow_preauth => Ok(()),
            _ => Err(BackendError::Greeting {
                backend: self.config.name.clone(),
                detail: printable(greeting),
            }),
        }
    }

    /// The TLS handshake (RFC 8446 §4 / RFC 5246 §7.3) with the configured verification; a
    /// failure is explained in words ([`diagnose::explain`]) with the presented certificate's
    /// fingerprint, rustls' own error text goes to the debug log.
    async fn handshake(&self, tcp: TcpStream, progress: &Progress) -> Result<Stream, BackendError> {
        let Some((config, name)) = &self.tls else {
            return Ok(Stream::Plain(tcp));
        };
        progress.set(Phase::TlsHandshake);
        let connect = TlsConnector::from(config.clone()).connect(name.clone(), tcp);
        let (result, presented) = trust::capture_presented(connect).await;
        match result {
            Ok(tls) => Ok(Stream::Tls(Box::new(tokio_rustls::TlsStream::Client(tls)))),
            Err(source) => {
                tracing::debug!(backend = %self.config.name, error = %source, "backend TLS handshake failed (library detail)");
                Err(BackendError::Tls {
                    backend: self.config.name.clone(),
                    failure: Box::new(diagnose::explain(&self.config, &source, presented.as_ref())),
                })
            }
        }
    }

    async fn read_line<S: AsyncRead + Unpin>(
        &self,
        reader: &mut LineReader,
        stream: &mut S,
        progress: &Progress,
    ) -> Result<Vec<u8>, BackendError> {
        reader
            .read_line(stream)
            .await
            .map_err(|source| BackendError::Handshake {
                backend: self.config.name.clone(),
                hint: match source {
                    LineError::Closed => progress.get().mode_hint(self.config.tls),
                    _ => "",
                },
                source,
            })
    }

    /// Reads lines until `classify` says the reply is complete; returns all of them.
    async fn read_reply<S: AsyncRead + Unpin>(
        &self,
        reader: &mut LineReader,
        stream: &mut S,
        classify: fn(&[u8]) -> HandshakeLine,
        refused: impl Fn(String) -> BackendError,
        progress: &Progress,
    ) -> Result<Vec<u8>, BackendError> {
        let mut lines = Vec::new();
        for _ in 0..MAX_HANDSHAKE_LINES {
            let line = self.read_line(reader, stream, progress).await?;
            let kind = classify(&line);
            lines.extend_from_slice(&line);
            match kind {
                HandshakeLine::More => continue,
                HandshakeLine::Done => return Ok(lines),
                HandshakeLine::Refused => return Err(refused(printable(&line))),
            }
        }
        Err(refused("too many lines in reply".into()))
    }

    async fn write<S: AsyncWrite + Unpin>(
        &self,
        stream: &mut S,
        bytes: &[u8],
    ) -> Result<(), BackendError> {
        let result = async {
            stream.write_all(bytes).await?;
            stream.flush().await
        };
        result.await.map_err(|source| BackendError::Handshake {
            backend: self.config.name.clone(),
            source: LineError::Io(source),
            hint: "",
        })
    }
}

/// A log-safe rendering of a protocol line (control bytes escaped, at most 200 chars).
pub fn printable(line: &[u8]) -> String {
    let text: String = line
        .iter()
        .take(200)
        .flat_map(|&b| std::ascii::escape_default(b))
        .map(char::from)
        .collect();
    text.trim_end_matches("\\r\\n").to_string()
}
