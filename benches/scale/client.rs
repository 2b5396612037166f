//! The benchmark's IMAP clients: rustls over tokio, tiny buffers (10,000 idle sessions must not
//! cost the bench much), literals counted and discarded rather than kept.

use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls_pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

/// Longest wait for any one read: a proxy that stops answering fails the bench, not hangs it.
const READ_TIMEOUT: Duration = Duration::from_secs(60);

/// One client connection with its pending input.
pub struct Conn {
    stream: TlsStream<TcpStream>,
    buf: Vec<u8>,
    next_tag: u64,
}

/// Where to connect and how.
#[derive(Clone)]
pub struct Target {
    /// The proxy's listener port on 127.0.0.1.
    pub port: u16,
    /// TLS client configuration (trusts the bench CA, no resumption).
    pub connector: TlsConnector,
}

impl Target {
    /// A target at `port` with `config`.
    pub fn new(port: u16, config: Arc<rustls::ClientConfig>) -> Target {
        Target {
            port,
            connector: TlsConnector::from(config),
        }
    }

    /// Connects, completes the TLS handshake and reads the greeting.
    pub async fn connect(&self) -> io::Result<Conn> {
        let tcp = TcpStream::connect(("127.0.0.1", self.port)).await?;
        tcp.set_nodelay(true)?;
        let name = ServerName::try_from("localhost").expect("server name");
        let stream = timeout(self.connector.connect(name, tcp)).await?;
        let mut conn = Conn {
            stream,
            buf: Vec::new(),
            next_tag: 0,
        };
        let greeting = conn.line().await?;
        if !greeting.starts_with(b"* OK") {
            return Err(failure("greeting", &greeting));
        }
        Ok(conn)
    }

    /// Connects, logs in and selects INBOX: an idle session as a mail client leaves it.
    pub async fn session(&self) -> io::Result<Conn> {
        let mut conn = self.connect().await?;
        conn.command("LOGIN bench secret").await?;
        conn.command("SELECT INBOX").await?;
        conn.buf = Vec::new();
        Ok(conn)
    }
}

impl Conn {
    /// The key-exchange group negotiated.
    pub fn kx_group(&self) -> String {
        self.stream
            .get_ref()
            .1
            .negotiated_key_exchange_group()
            .map(|g| format!("{:?}", g.name()))
            .unwrap_or_else(|| "?".into())
    }

    /// Sends `text` with a fresh tag and reads to the tagged `OK`; returns the octets of all
    /// literals in the responses (discarded after counting).
    pub async fn command(&mut self, text: &str) -> io::Result<u64> {
        self.send(text).await?;
        self.finish().await
    }

    /// Sends `text` with a fresh tag without reading the answer.
    pub async fn send(&mut self, text: &str) -> io::Result<()> {
        self.next_tag += 1;
        let line = format!("t{} {text}\r\n", self.next_tag);
        timeout(self.stream.write_all(line.as_bytes())).await?;
        timeout(self.stream.flush()).await
    }

    /// Reads responses up to the tagged answer of the last command sent.
    async fn finish(&mut self) -> io::Result<u64> {
        let tag = format!("t{} ", self.next_tag);
        let mut literals = 0;
        loop {
            let line = self.line().await?;
            if line.starts_with(tag.as_bytes()) {
                return if line[tag.len()..].starts_with(b"OK") {
                    Ok(literals)
                } else {
                    Err(failure("command", &line))
                };
            }
            if let Some(size) = literal_at_end(&line) {
                self.skip(size).await?;
                literals += size;
            }
        }
    }

    /// One line including CRLF.
    async fn line(&mut self) -> io::Result<Vec<u8>> {
        let mut scanned = 0;
        loop {
            if let Some(end) = self.buf[scanned..].iter().position(|&b| b == b'\n') {
                let rest = self.buf.split_off(scanned + end + 1);
                return Ok(std::mem::replace(&mut self.buf, rest));
            }
            scanned = self.buf.len();
            if self.buf.len() > 1 << 20 {
                return Err(failure("line longer than 1 MiB", b""));
            }
            self.fill().await?;
        }
    }

    /// Discards `size` octets.
    async fn skip(&mut self, mut size: u64) -> io::Result<()> {
        loop {
            let take = (self.buf.len() as u64).min(size) as usize;
            self.buf.drain(..take);
            size -= take as u64;
            if size == 0 {
                return Ok(());
            }
            self.fill().await?;
        }
    }

    async fn fill(&mut self) -> io::Result<()> {
        let mut chunk = [0u8; 16 * 1024];
        let read = timeout(self.stream.read(&mut chunk)).await?;
        if read == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "proxy closed the connection",
            ));
        }
        self.buf.extend_from_slice(&chunk[..read]);
        Ok(())
    }
}

async fn timeout<T>(f: impl std::future::Future<Output = io::Result<T>>) -> io::Result<T> {
    tokio::time::timeout(READ_TIMEOUT, f)
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "no answer within 60 s"))?
}

fn failure(what: &str, line: &[u8]) -> io::Error {
    io::Error::other(format!(
        "{what}: unexpected {:?}",
        String::from_utf8_lossy(line).trim_end()
    ))
}

/// `{n}` or `~{n}` at the end of a response line.
fn literal_at_end(line: &[u8]) -> Option<u64> {
    let text = std::str::from_utf8(line).ok()?.trim_end();
    let inner = text.strip_suffix('}')?;
    let open = inner.rfind('{')?;
    inner[open + 1..].trim_end_matches('+').parse().ok()
}

/// Opens `count` idle sessions, at most `parallel` handshakes at a time, and appends them to
/// `sessions`.
pub async fn open_sessions(
    target: &Target,
    count: usize,
    parallel: usize,
    sessions: &mut Vec<Conn>,
) -> io::Result<()> {
    let gate = Arc::new(Semaphore::new(parallel.max(1)));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..count {
        let permit = gate.clone().acquire_owned().await.expect("semaphore open");
        let target = target.clone();
        tasks.spawn(async move {
            let session = target.session().await;
            drop(permit);
            session
        });
        // Collect finished ones as we go so the set never holds many results.
        while let Some(done) = tasks.try_join_next() {
            sessions.push(done.expect("session task")?);
        }
    }
    while let Some(done) = tasks.join_next().await {
        sessions.push(done.expect("session task")?);
    }
    Ok(())
}

/// Fetches message `number` `count` times on each of `clients` sessions (concurrently);
/// returns the octets fetched and the wall time. The first fetch on each session is checked to
/// carry exactly `size` octets (a notice or a withheld message would fail the bench).
pub async fn fetch_repeatedly(
    target: &Target,
    clients: usize,
    count: usize,
    number: usize,
    size: u64,
) -> io::Result<(u64, Duration)> {
    let mut sessions = Vec::new();
    open_sessions(target, clients, clients, &mut sessions).await?;
    let start = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for mut conn in sessions {
        tasks.spawn(async move {
            let mut total = 0;
            for _ in 0..count {
                let got = conn.command(&format!("FETCH {number} BODY.PEEK[]")).await?;
                if got != size {
                    return Err(failure(
                        &format!("FETCH returned {got} octets, expected {size}"),
                        b"",
                    ));
                }
                total += got;
            }
            Ok::<u64, io::Error>(total)
        });
    }
    let mut total = 0;
    while let Some(done) = tasks.join_next().await {
        total += done.expect("fetch task")?;
    }
    Ok((total, start.elapsed()))
}

/// `count` full handshakes (connect, TLS, greeting, close), `parallel` at a time; returns the
/// wall time and the key-exchange group of the last connection.
pub async fn handshakes(
    target: &Target,
    count: usize,
    parallel: usize,
) -> io::Result<(Duration, String)> {
    let start = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    let per_task = count.div_ceil(parallel.max(1));
    let mut left = count;
    while left > 0 {
        let mine = per_task.min(left);
        left -= mine;
        let target = target.clone();
        tasks.spawn(async move {
            let mut group = String::new();
            for _ in 0..mine {
                let conn = target.connect().await?;
                group = conn.kx_group();
            }
            Ok::<String, io::Error>(group)
        });
    }
    let mut group = String::new();
    while let Some(done) = tasks.join_next().await {
        group = done.expect("handshake task")?;
    }
    Ok((start.elapsed(), group))
}
