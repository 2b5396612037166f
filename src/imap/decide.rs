//! What the proxy does with one complete client command after login (sans-I/O): parse it with
//! the grammar, then answer it itself or forward its canonical serialisation (RFC 9051 §6).
//!
//! Answered by the proxy and never forwarded: anything the grammar refuses (`BAD`/`NO`),
//! STARTTLS (RFC 9051 §6.2.1: only before login), LOGIN/AUTHENTICATE (already logged in),
//! COMPRESS (RFC 4978: compressed traffic could not be scanned), ENABLE (RFC 5161 §3.1: answered
//! with nothing enabled, since every extension it could enable changes response shapes), and
//! every command while shutting down or with too many in flight. A client's ID (RFC 2971) loses
//! the fields only the proxy may set.

use super::grammar::{self, CommandKind, ParsedCommand};
use super::prelogin::refusal_text;

/// The session state a decision depends on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Situation {
    /// The process is shutting down.
    pub draining: bool,
    /// No room for another command in flight.
    pub pipeline_full: bool,
}

/// The decision for one command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Answer with these lines; nothing is forwarded.
    Reply(String),
    /// Forward this parsed command (FETCH and APPEND go through scanning first).
    Forward(Box<ParsedCommand>),
}

/// Decides what happens to the complete command `bytes`.
pub fn decide(bytes: &[u8], situation: Situation) -> Decision {
    let command = match grammar::parse_command(bytes) {
        Ok(command) => command,
        Err(error) => {
            tracing::debug!(%error, "client command refused by the grammar");
            return Decision::Reply(refusal_text(&error));
        }
    };
    if let Some(reply) = local_answer(&command, situation) {
        return Decision::Reply(reply);
    }
    Decision::Forward(Box::new(command.without_forwarding_fields()))
}

/// The proxy's own answer to a parsed command, if it is not to be forwarded.
fn local_answer(command: &ParsedCommand, situation: Situation) -> Option<String> {
    let tag = &command.tag;
    if situation.draining {
        return Some(format!("{tag} NO [UNAVAILABLE] Server shutting down\r\n"));
    }
    if situation.pipeline_full {
        return Some(format!("{tag} NO [LIMIT] Too many commands in flight\r\n"));
    }
    match command.kind {
        CommandKind::StartTls => Some(format!("{tag} BAD STARTTLS not available now\r\n")),
        CommandKind::Login(_) | CommandKind::Authenticate { .. } => {
            Some(format!("{tag} BAD Already logged in\r\n"))
        }
        CommandKind::Compress => Some(format!(
            "{tag} NO [CANNOT] COMPRESS is not available through this proxy\r\n"
        )),
        CommandKind::Enable => Some(format!("* ENABLED\r\n{tag} OK ENABLE completed\r\n")),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::imap::assembler::{Assembled, Assembler};
    use crate::imap::codec::{Framer, Limits, Role};

    const NORMAL: Situation = Situation {
        draining: false,
        pipeline_full: false,
    };

    /// What the proxy does for a script fed in chunks: `+` continuations, replies, and the
    /// canonical bytes of forwarded commands (as the backend would receive them with LITERAL+).
    fn replay(script: &[u8], chunk: usize, situation: Situation) -> Vec<String> {
        let mut framer = Framer::new(Role::Client, Limits::default());
        let mut assembler = Assembler::new(1 << 20);
        let mut out = Vec::new();
        for piece in script.chunks(chunk) {
            framer.feed(piece);
            while let Some(event) = framer.next_event().expect("framing") {
                match assembler.push(event).expect("size") {
                    Assembled::Pending => {}
                    Assembled::SendContinuation => out.push("+".to_string()),
                    Assembled::LiteralTooLarge { .. } => out.push("TOOBIG".to_string()),
                    Assembled::Complete(bytes) => out.push(match decide(&bytes, situation) {
                        Decision::Reply(text) => format!("reply {text}"),
                        Decision::Forward(command) => {
                            let bytes = command.to_bytes(true);
                            format!("forward {}", String::from_utf8_lossy(&bytes))
                        }
                    }),
                }
            }
        }
        out
    }

    fn replay_all(script: &[u8], situation: Situation) -> Vec<String> {
        let whole = replay(script, script.len(), situation);
        for chunk in 1..=512 {
            assert_eq!(
                replay(script, chunk, situation),
                whole,
                "chunk size {chunk}"
            );
        }
        whole
    }

    #[test]
    fn allowed_commands_are_forwarded_canonically() {
        let out = replay_all(
            b"a noop\r\nb select \"INBOX\"\r\nc UID FETCH 1:* (FLAGS)\r\nd APPEND x {3}\r\nabc\r\n",
            NORMAL,
        );
        assert_eq!(
            out,
            vec![
                "forward a NOOP\r\n",
                "forward b SELECT INBOX\r\n",
                "forward c UID FETCH 1:* FLAGS\r\n",
                "+",
                "forward d APPEND x {3+}\r\nabc\r\n",
            ]
        );
    }

    #[test]
    fn refusals_never_forward() {
        let out = replay_all(
            b"a COMPRESS DEFLATE\r\nb STARTTLS\r\nc LOGIN x y\r\nd AUTHENTICATE PLAIN\r\n\
              e ENABLE QRESYNC\r\nf NOOP x\r\ng XSMUGGLE Smuggled\r\nh FETCH 1 (PREVIEW)\r\n\
              i SELECT \"IN\0BOX\"\r\n",
            NORMAL,
        );
        assert!(out.iter().all(|o| o.starts_with("reply")), "{out:?}");
        assert_eq!(
            out[..5],
            [
                "reply a NO [CANNOT] COMPRESS is not available through this proxy\r\n",
                "reply b BAD STARTTLS not available now\r\n",
                "reply c BAD Already logged in\r\n",
                "reply d BAD Already logged in\r\n",
                "reply * ENABLED\r\ne OK ENABLE completed\r\n",
            ]
        );
    }

    #[test]
    fn commands_hidden_in_literals_and_quotes_stay_data() {
        // A literal inside quotes is text: the line is refused, the next one is a command of
        // its own. A literal's bytes are the argument, never a command.
        let out = replay_all(
            b"a NOOP \"{15}\r\ns SELECT Trash\r\nb CAPABILITY {16+}\r\ns SELECT Trash\r\n\r\n",
            NORMAL,
        );
        assert_eq!(out[0], "reply a BAD Invalid command syntax\r\n");
        assert_eq!(out[1], "forward s SELECT Trash\r\n");
        assert_eq!(out[2], "reply b BAD Invalid command syntax\r\n");
        assert_eq!(out.len(), 3);
    }

    #[test]
    fn client_forwarding_fields_are_removed_from_id() {
        let out = replay_all(
            b"a ID (\"name\" \"mua\" \"x-originating-ip\" \"203.0.113.9\" \"X-Forward-For\" \"x\")\r\n",
            NORMAL,
        );
        assert_eq!(out, vec!["forward a ID (\"name\" \"mua\")\r\n"]);
    }

    #[test]
    fn draining_and_full_pipelines_refuse() {
        let draining = Situation {
            draining: true,
            ..NORMAL
        };
        assert_eq!(
            replay_all(b"a NOOP\r\n", draining),
            vec!["reply a NO [UNAVAILABLE] Server shutting down\r\n"]
        );
        let full = Situation {
            pipeline_full: true,
            ..NORMAL
        };
        assert_eq!(
            replay_all(b"a NOOP\r\n", full),
            vec!["reply a NO [LIMIT] Too many commands in flight\r\n"]
        );
    }
}
