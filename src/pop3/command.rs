//! The POP3 [`Dialect`] of the shared backend connector (RFC 1939 §4 greeting, RFC 2595 §4 STLS,
//! RFC 2449 §5 CAPA, XCLIENT as Dovecot speaks it). Client commands are parsed by
//! [`super::grammar`].

use std::net::SocketAddr;

use crate::backend::{Dialect, GreetingKind, HandshakeLine};
use crate::config::ForwardClientIp;

use super::codec::Status;

/// The POP3 side of the shared backend connector.
#[derive(Debug)]
pub struct Pop3Dialect;

impl Dialect for Pop3Dialect {
    fn greeting(line: &[u8]) -> GreetingKind {
        match Status::of(line) {
            Some(Status::Ok) => GreetingKind::Ready,
            _ => GreetingKind::Unusable,
        }
    }

    fn starttls_command() -> &'static [u8] {
        b"STLS\r\n"
    }

    fn starttls_reply(line: &[u8]) -> HandshakeLine {
        match Status::of(line) {
            Some(Status::Ok) => HandshakeLine::Done,
            _ => HandshakeLine::Refused,
        }
    }

    fn capability_command() -> &'static [u8] {
        b"CAPA\r\n"
    }

    fn capability_reply(line: &[u8]) -> HandshakeLine {
        // `-ERR` (no CAPA support) ends the reply too; the session then knows no capabilities.
        if line == b".\r\n" || line == b".\n" || Status::of(line) == Some(Status::Err) {
            HandshakeLine::Done
        } else {
            HandshakeLine::More
        }
    }

    /// XCLIENT (as Dovecot and Postfix speak it) with the client's address and port.
    fn client_address_command(
        mode: ForwardClientIp,
        client: SocketAddr,
        _local: SocketAddr,
    ) -> Option<Vec<u8>> {
        (mode == ForwardClientIp::Xclient).then(|| {
            format!("XCLIENT ADDR={} PORT={}\r\n", client.ip(), client.port()).into_bytes()
        })
    }

    fn client_address_reply(line: &[u8]) -> HandshakeLine {
        match Status::of(line) {
            Some(Status::Ok) => HandshakeLine::Done,
            _ => HandshakeLine::Refused,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dialect_replies() {
        assert_eq!(
            Pop3Dialect::greeting(b"+OK Dovecot ready. <1.2@host>\r\n"),
            GreetingKind::Ready
        );
        assert_eq!(
            Pop3Dialect::greeting(b"-ERR go away\r\n"),
            GreetingKind::Unusable
        );
        assert_eq!(
            Pop3Dialect::starttls_reply(b"+OK Begin TLS\r\n"),
            HandshakeLine::Done
        );
        assert_eq!(
            Pop3Dialect::capability_reply(b"+OK\r\n"),
            HandshakeLine::More
        );
        assert_eq!(Pop3Dialect::capability_reply(b".\r\n"), HandshakeLine::Done);
    }
}
