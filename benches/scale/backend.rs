//! The benchmark's own lightweight IMAP backend (plaintext, tokio tasks in the bench process)
//! and the nginx `auth_http` service that points nginx at it.
//!
//! The backend answers the greeting, `CAPABILITY`, `LOGIN` (any user; synchronizing and
//! non-synchronizing literals as nginx sends them), `SELECT`/`EXAMINE` (two messages),
//! `NOOP`, `FETCH`/`UID FETCH` of `UID`, `FLAGS`, `RFC822.SIZE` and `BODY[]`/`BODY.PEEK[]`/
//! `RFC822` (message 1 is the 1 MiB message, message 2 the large one), `LOGOUT`, and `OK` to
//! anything else. Message bytes are shared (`Arc`), never copied per connection, and each
//! connection keeps a 1 KiB read buffer, so 10,000 idle sessions cost the bench little.

use std::sync::Arc;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

/// Capabilities announced in the greeting and to `CAPABILITY`.
const CAPS: &str = "IMAP4rev1 LITERAL+ ID IDLE AUTH=PLAIN";
/// Longest command line the backend accepts (the proxies send short ones).
const MAX_LINE: usize = 8192;

/// The messages the backend serves, by sequence number (= UID) starting at 1.
#[derive(Clone)]
pub struct Mailbox {
    messages: Arc<Vec<Arc<[u8]>>>,
}

impl Mailbox {
    /// A mailbox holding `messages` in order.
    pub fn new(messages: Vec<Vec<u8>>) -> Mailbox {
        Mailbox {
            messages: Arc::new(messages.into_iter().map(Arc::from).collect()),
        }
    }

    fn get(&self, number: usize) -> Option<&Arc<[u8]>> {
        number
            .checked_sub(1)
            .and_then(|index| self.messages.get(index))
    }
}

/// Starts the backend on an ephemeral loopback port; returns the port.
pub async fn start_imap(mailbox: Mailbox) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind the fake IMAP backend");
    let port = listener.local_addr().expect("backend address").port();
    tokio::spawn(async move {
        loop {
            match listener.accept().await {
                Ok((stream, _)) => {
                    let mailbox = mailbox.clone();
                    tokio::spawn(async move {
                        let _ = serve_imap(stream, mailbox).await;
                    });
                }
                // EMFILE and friends: back off instead of spinning.
                Err(_) => tokio::time::sleep(std::time::Duration::from_millis(10)).await,
            }
        }
    });
    port
}

async fn serve_imap(stream: TcpStream, mailbox: Mailbox) -> std::io::Result<()> {
    stream.set_nodelay(true)?;
    let mut conn = BufReader::with_capacity(1024, stream);
    conn.get_mut()
        .write_all(format!("* OK [CAPABILITY {CAPS}] fake backend ready\r\n").as_bytes())
        .await?;
    loop {
        let Some(command) = read_command(&mut conn).await? else {
            return Ok(());
        };
        let text = String::from_utf8_lossy(&command).into_owned();
        let mut words = text.split_ascii_whitespace();
        let tag = words.next().unwrap_or("*").to_string();
        let mut name = words.next().unwrap_or("").to_ascii_uppercase();
        if name == "UID" {
            name = format!("UID {}", words.next().unwrap_or("").to_ascii_uppercase());
        }
        let out = conn.get_mut();
        match name.as_str() {
            "CAPABILITY" => {
                let reply = format!("* CAPABILITY {CAPS}\r\n{tag} OK CAPABILITY completed\r\n");
                out.write_all(reply.as_bytes()).await?;
            }
            "LOGIN" | "AUTHENTICATE" => {
                let reply = format!("{tag} OK [CAPABILITY {CAPS}] Logged in\r\n");
                out.write_all(reply.as_bytes()).await?;
            }
            "SELECT" | "EXAMINE" => {
                let reply = format!(
                    "* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft)\r\n\
                     * OK [PERMANENTFLAGS (\\Seen)] Limited\r\n\
                     * {} EXISTS\r\n* 0 RECENT\r\n\
                     * OK [UIDVALIDITY 1700000000] UIDs valid\r\n\
                     * OK [UIDNEXT {}] Predicted next UID\r\n\
                     {tag} OK [READ-WRITE] {name} completed\r\n",
                    mailbox.messages.len(),
                    mailbox.messages.len() + 1
                );
                out.write_all(reply.as_bytes()).await?;
            }
            "FETCH" | "UID FETCH" => {
                let set = words.next().unwrap_or("");
                let items = words.collect::<Vec<_>>().join(" ").to_ascii_uppercase();
                for number in sequence(set, mailbox.messages.len()) {
                    let message = mailbox.get(number).expect("number within the mailbox");
                    fetch_response(out, number, message, &items, name == "UID FETCH").await?;
                }
                out.write_all(format!("{tag} OK {name} completed\r\n").as_bytes())
                    .await?;
            }
            "LOGOUT" => {
                let reply = format!("* BYE Logging out\r\n{tag} OK LOGOUT completed\r\n");
                out.write_all(reply.as_bytes()).await?;
                return Ok(());
            }
            _ => {
                out.write_all(format!("{tag} OK {name} completed\r\n").as_bytes())
                    .await?;
            }
        }
    }
}

/// One `* n FETCH (...)` response with the items asked for, in a fixed order.
async fn fetch_response(
    out: &mut TcpStream,
    number: usize,
    message: &[u8],
    items: &str,
    uid_fetch: bool,
) -> std::io::Result<()> {
    let mut head = format!("* {number} FETCH (");
    let mut parts = Vec::new();
    if uid_fetch || items.contains("UID") {
        parts.push(format!("UID {number}"));
    }
    if items.contains("FLAGS") {
        parts.push("FLAGS (\\Seen)".to_string());
    }
    if items.contains("RFC822.SIZE") {
        parts.push(format!("RFC822.SIZE {}", message.len()));
    }
    let body = items.contains("BODY[]")
        || items.contains("BODY.PEEK[]")
        || items
            .split(|c: char| !c.is_ascii_alphanumeric() && c != '.')
            .any(|item| item == "RFC822");
    head.push_str(&parts.join(" "));
    if body {
        if !parts.is_empty() {
            head.push(' ');
        }
        head.push_str(&format!("BODY[] {{{}}}\r\n", message.len()));
        out.write_all(head.as_bytes()).await?;
        out.write_all(message).await?;
        out.write_all(b")\r\n").await
    } else {
        head.push_str(")\r\n");
        out.write_all(head.as_bytes()).await
    }
}

/// The message numbers of a sequence set (`n`, `n:m`, `*`, comma lists), within 1..=`count`.
fn sequence(set: &str, count: usize) -> Vec<usize> {
    let number = |text: &str| -> usize {
        if text == "*" {
            count
        } else {
            text.parse().unwrap_or(0)
        }
    };
    let mut numbers = Vec::new();
    for range in set.split(',') {
        let (low, high) = match range.split_once(':') {
            Some((a, b)) => (number(a).min(number(b)), number(a).max(number(b))),
            None => (number(range), number(range)),
        };
        for n in low.max(1)..=high.min(count) {
            if !numbers.contains(&n) {
                numbers.push(n);
            }
        }
    }
    numbers
}

/// Reads one command (line plus literals, `+` sent for synchronizing ones); `None` at EOF.
async fn read_command(conn: &mut BufReader<TcpStream>) -> std::io::Result<Option<Vec<u8>>> {
    let mut command = Vec::new();
    loop {
        let start = command.len();
        let read = (&mut *conn)
            .take(MAX_LINE as u64)
            .read_until(b'\n', &mut command)
            .await?;
        if read == 0 {
            return Ok(None);
        }
        let line = &command[start..];
        let Some((size, sync)) = literal_at_end(line) else {
            return Ok(Some(command));
        };
        if sync {
            conn.get_mut().write_all(b"+ go ahead\r\n").await?;
        }
        let mut literal = vec![0; size.min(MAX_LINE)];
        conn.read_exact(&mut literal).await?;
        command.extend_from_slice(&literal);
    }
}

/// `{n}` (synchronizing) or `{n+}` at the end of a line.
fn literal_at_end(line: &[u8]) -> Option<(usize, bool)> {
    let text = std::str::from_utf8(line).ok()?.trim_end();
    let inner = text.strip_suffix('}')?;
    let open = inner.rfind('{')?;
    let spec = &inner[open + 1..];
    let (digits, sync) = match spec.strip_suffix('+') {
        Some(digits) => (digits, false),
        None => (spec, true),
    };
    Some((digits.parse().ok()?, sync))
}

/// Starts nginx's `auth_http` service: every login is accepted and sent to the backend at
/// `backend_port`. Returns the service's port.
pub async fn start_auth_http(backend_port: u16) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind the auth_http service");
    let port = listener.local_addr().expect("auth_http address").port();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut conn = BufReader::with_capacity(2048, stream);
                let mut line = Vec::new();
                // The request: headers up to the empty line.
                loop {
                    line.clear();
                    match (&mut conn).take(8192).read_until(b'\n', &mut line).await {
                        Ok(0) | Err(_) => return,
                        Ok(_) if line == b"\r\n" || line == b"\n" => break,
                        Ok(_) => {}
                    }
                }
                let reply = format!(
                    "HTTP/1.0 200 OK\r\nAuth-Status: OK\r\nAuth-Server: 127.0.0.1\r\n\
                     Auth-Port: {backend_port}\r\n\r\n"
                );
                let _ = conn.get_mut().write_all(reply.as_bytes()).await;
            });
        }
    });
    port
}

/// A message of exactly `size` octets: headers, a text part (padded to reach the size) and a
/// base64 attachment of deterministic pseudo-random bytes making up about 3/4 of it.
pub fn message(size: usize, seed: u64) -> Vec<u8> {
    let raw = pseudo_random(seed, size / 78 * 57 * 3 / 4);
    let mut encoded = String::new();
    for chunk in raw.chunks(57) {
        encoded.push_str(&base64(chunk));
        encoded.push_str("\r\n");
    }
    let head = format!(
        "From: Bench Sender <sender@bench.example>\r\nTo: Bench User <user@bench.example>\r\n\
         Subject: Scale benchmark message {seed}\r\nDate: Mon, 1 Jun 2026 12:00:00 +0000\r\n\
         Message-ID: <scale-{seed}@bench.example>\r\nMIME-Version: 1.0\r\n\
         Content-Type: multipart/mixed; boundary=\"scale-boundary\"\r\n\r\n\
         --scale-boundary\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n\
         The attached data is the benchmark's payload.\r\n"
    );
    let tail = format!(
        "--scale-boundary\r\nContent-Type: application/octet-stream; name=\"payload.bin\"\r\n\
         Content-Transfer-Encoding: base64\r\n\
         Content-Disposition: attachment; filename=\"payload.bin\"\r\n\r\n\
         {encoded}--scale-boundary--\r\n"
    );
    let fixed = head.len() + tail.len();
    assert!(size >= fixed + 2, "message size {size} too small");
    let mut padding = String::new();
    let mut missing = size - fixed;
    while missing > 0 {
        let mut line = (missing - 2).min(70);
        if missing - (line + 2) == 1 {
            // A lone octet cannot form a line: leave two for an empty one.
            line -= 1;
        }
        padding.push_str(&"filler text ".repeat(6)[..line]);
        padding.push_str("\r\n");
        missing -= line + 2;
    }
    let message = format!("{head}{padding}{tail}").into_bytes();
    assert_eq!(message.len(), size, "message size");
    message
}

/// Deterministic pseudo-random bytes (xorshift64*).
fn pseudo_random(seed: u64, len: usize) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            state ^= state >> 12;
            state ^= state << 25;
            state ^= state >> 27;
            (state.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 56) as u8
        })
        .collect()
}

fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}
