//! Two real Dovecots for the routing tests (`tests/routing*.rs`): `old` and `new`, each with
//! its own users and one message per user whose subject names the server and the user, so a
//! test can tell from a FETCH/RETR which backend a login reached.

use super::dovecot::{Dovecot, DovecotOptions};
use super::mime::{message, Part};
use super::proxy::dovecot_backend;
use super::raw::{connect_tls, LineClient, TlsStream};

/// Users of the `old` server (besides Dovecot's default `alice`).
pub const OLD_USERS: [(&str, &str); 2] = [("dave", "dave-Pass1"), ("zed", "zed-old-Pass1")];
/// Users of the `new` server.
pub const NEW_USERS: [(&str, &str); 3] = [
    ("bob@example.org", "bob pass%1"),
    ("carol@example.org", "carol-Pass1"),
    ("zed", "zed-new-Pass1"),
];

/// The two servers.
pub struct TwoServers {
    /// The legacy server (`old`): alice, dave, zed.
    pub old: Dovecot,
    /// The new server (`new`): bob@example.org, carol@example.org, zed.
    pub new: Dovecot,
}

/// The subject every user's first message carries on `server`.
pub fn subject(server: &str, user: &str) -> String {
    format!("on-{server} for-{user}")
}

impl TwoServers {
    /// Starts both servers and seeds one message per user (`subject(server, user)`).
    pub fn start() -> TwoServers {
        let users = |list: &[(&str, &str)]| {
            list.iter()
                .map(|(u, p)| (u.to_string(), p.to_string()))
                .collect()
        };
        let old = Dovecot::start_with(DovecotOptions {
            users: users(&OLD_USERS),
            ..DovecotOptions::default()
        });
        let new = Dovecot::start_with(DovecotOptions {
            users: users(&NEW_USERS),
            ..DovecotOptions::default()
        });
        for user in ["alice", "dave", "zed"] {
            seed(&old, "old", user);
        }
        for user in ["bob@example.org", "carol@example.org", "zed"] {
            seed(&new, "new", user);
        }
        TwoServers { old, new }
    }

    /// `[[backend]]` sections `old-{protocol}` and `new-{protocol}` (plain) for both protocols.
    pub fn backends(&self) -> String {
        let mut out = String::new();
        for protocol in ["imap", "pop3"] {
            out += &dovecot_backend(&format!("old-{protocol}"), &self.old, protocol, "none");
            out += &dovecot_backend(&format!("new-{protocol}"), &self.new, protocol, "none");
        }
        out
    }
}

fn seed(dovecot: &Dovecot, server: &str, user: &str) {
    let text = format!("routed to {server}\n");
    dovecot.seed_messages(
        user,
        &[message(
            &format!("{server}-{user}"),
            &subject(server, user),
            Part::text(&text),
        )],
    );
}

/// `[[listener]]` on an ephemeral port naming `router`.
pub fn routed_listener(name: &str, protocol: &str, router: &str) -> String {
    format!(
        "[[listener]]\nname = {name:?}\nprotocol = {protocol:?}\nbind = \"127.0.0.1:0\"\ntls = \"implicit\"\nrouter = {router:?}\n\n"
    )
}

/// An IMAPS client on `port` (greeting read).
pub fn imap_client(port: u16, dovecot: &Dovecot) -> LineClient<TlsStream> {
    let mut client = connect_tls(port, &dovecot.ca);
    let greeting = client.read_line();
    assert!(greeting.starts_with("* OK"), "{greeting}");
    client
}

/// The subject of message 1 of INBOX (EXAMINEd) in a logged-in IMAP session.
pub fn imap_subject(client: &mut LineClient<TlsStream>) -> String {
    let (_, status) = client.imap("x", "EXAMINE INBOX");
    assert!(status.starts_with("x OK"), "{status}");
    let (responses, status) = client.imap("f", "FETCH 1 (BODY.PEEK[HEADER.FIELDS (SUBJECT)])");
    assert!(status.starts_with("f OK"), "{status}");
    header_subject(
        &responses
            .iter()
            .flat_map(|r| r.raw.clone())
            .collect::<Vec<_>>(),
    )
}

/// The value of the `Subject:` header in `bytes`.
pub fn header_subject(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    text.lines()
        .find_map(|line| line.strip_prefix("Subject: "))
        .unwrap_or("")
        .trim()
        .to_string()
}
