//! Rendering a generated [`Stream`] to bytes, with the ground truth for every command: its class
//! (real or rejected), its chunks and the tags of command-shaped data inside it.

use crate::generator::{
    Command, LiteralPayload, Login, Quoted, Real, Rejected, Smuggle, Step, Stream,
};
use crate::oracle::contains;
use crate::support;
use crate::{MARK, PASSWORD};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Class {
    Real,
    Rejected,
}

/// One rendered command: `chunks[0]` is sent at once, every further chunk only after a `+`
/// continuation request (synchronizing literals, SASL without SASL-IR).
#[derive(Debug, Clone)]
pub(crate) struct Rendered {
    pub(crate) tag: String,
    pub(crate) class: Class,
    pub(crate) chunks: Vec<Vec<u8>>,
    /// Tags of command-shaped data inside this command (never to execute or be answered).
    pub(crate) data_tags: Vec<String>,
    pub(crate) wait: bool,
    pub(crate) login: bool,
}

impl Rendered {
    pub(crate) fn bytes(&self) -> Vec<u8> {
        self.chunks.concat()
    }

    pub(crate) fn mentions_mark(&self) -> bool {
        contains(&self.bytes(), MARK.as_bytes())
    }
}

struct Renderer {
    user: String,
    next: usize,
    out: Vec<Rendered>,
}

pub(crate) fn sasl_plain(user: &str) -> String {
    let encoded = support::mime::base64(format!("\0{user}\0{PASSWORD}").as_bytes());
    String::from_utf8(encoded)
        .expect("ascii")
        .trim_end()
        .to_string()
}

impl Renderer {
    fn tag(&mut self, prefix: char) -> String {
        self.next += 1;
        format!("{prefix}{}", self.next)
    }

    /// A smuggled command line (with CRLF) and its data tag.
    fn smuggle(&mut self, smuggle: Smuggle) -> (String, String) {
        let tag = self.tag('s');
        let line = match smuggle {
            Smuggle::Select => format!("{tag} SELECT {MARK}\r\n"),
            Smuggle::Compress => format!("{tag} COMPRESS DEFLATE\r\n"),
            Smuggle::Starttls => format!("{tag} STARTTLS\r\n"),
            Smuggle::Login => format!("{tag} LOGIN {} {PASSWORD}\r\n", self.user),
        };
        (line, tag)
    }

    fn push(&mut self, tag: String, class: Class, chunks: Vec<Vec<u8>>, data: Vec<String>) {
        self.out.push(Rendered {
            tag,
            class,
            chunks,
            data_tags: data,
            wait: false,
            login: false,
        });
    }

    fn real(&mut self, real: &Real) {
        let t = self.tag('r');
        let mut data = Vec::new();
        let chunks: Vec<Vec<u8>> = match real {
            Real::Noop => vec![format!("{t} NOOP\r\n").into_bytes()],
            Real::NoopLower => vec![format!("{t} noop\r\n").into_bytes()],
            Real::Capability => vec![format!("{t} CAPABILITY\r\n").into_bytes()],
            Real::IdNil => vec![format!("{t} ID NIL\r\n").into_bytes()],
            Real::IdQuoted(smuggle) => {
                let (line, tag) = self.smuggle(*smuggle);
                data.push(tag);
                let inner = line.trim_end();
                vec![format!("{t} ID (\"name\" \"{inner}\")\r\n").into_bytes()]
            }
            Real::Select => vec![format!("{t} SELECT INBOX\r\n").into_bytes()],
            Real::SelectLower => vec![format!("{t} select inbox\r\n").into_bytes()],
            Real::Examine => vec![format!("{t} EXAMINE INBOX\r\n").into_bytes()],
            Real::SelectMark => vec![format!("{t} SELECT {MARK}\r\n").into_bytes()],
            Real::List => vec![format!("{t} LIST \"\" \"*\"\r\n").into_bytes()],
            Real::Status(quoted) => {
                let inner = match quoted {
                    Quoted::Inbox => "INBOX".to_string(),
                    Quoted::Mark => MARK.to_string(),
                    Quoted::Brace => "{12}".to_string(),
                    Quoted::EscapedBrace => "\\\"{3}".to_string(),
                    Quoted::Compress => "COMPRESS DEFLATE".to_string(),
                    Quoted::Command(smuggle) => {
                        let (line, tag) = self.smuggle(*smuggle);
                        data.push(tag);
                        line.trim_end().to_string()
                    }
                };
                vec![format!("{t} STATUS \"{inner}\" (MESSAGES)\r\n").into_bytes()]
            }
            Real::StatusLiteral { payload, sync } => {
                let payload: Vec<u8> = match payload {
                    LiteralPayload::Empty => Vec::new(),
                    LiteralPayload::Inbox => b"INBOX".to_vec(),
                    LiteralPayload::Brace => b"{5}\r\nabcde".to_vec(),
                    LiteralPayload::Line(smuggle) => {
                        let (line, tag) = self.smuggle(*smuggle);
                        data.push(tag);
                        line.into_bytes()
                    }
                };
                let rest = [payload.as_slice(), b" (MESSAGES)\r\n"].concat();
                if *sync {
                    vec![
                        format!("{t} STATUS {{{}}}\r\n", payload.len()).into_bytes(),
                        rest,
                    ]
                } else {
                    let head = format!("{t} STATUS {{{}+}}\r\n", payload.len()).into_bytes();
                    vec![[head, rest].concat()]
                }
            }
            Real::LongStatus(pad) => {
                let (line, tag) = self.smuggle(Smuggle::Select);
                data.push(tag);
                let padding = "x".repeat(*pad);
                let inner = line.trim_end();
                vec![format!("{t} STATUS \"{padding} {inner}\" (MESSAGES)\r\n").into_bytes()]
            }
            Real::QuotedControl(c) => {
                let mut line = format!("{t} STATUS \"IN").into_bytes();
                line.push(*c);
                line.extend_from_slice(b"BOX\" (MESSAGES)\r\n");
                vec![line]
            }
        };
        self.push(t, Class::Real, chunks, data);
    }

    fn rejected(&mut self, rejected: &Rejected) {
        let t = self.tag('b');
        let mut data = Vec::new();
        let chunks: Vec<Vec<u8>> = match rejected {
            Rejected::Garbage { command, garbage } => {
                vec![format!("{t} {command} {garbage}\r\n").into_bytes()]
            }
            Rejected::QuoteBrace(command) => {
                vec![format!("{t} {command} \"{{12}}\r\n").into_bytes()]
            }
            Rejected::LiteralPlusArg { command, smuggle } => {
                let (line, tag) = self.smuggle(*smuggle);
                data.push(tag);
                vec![format!("{t} {command} {{{}+}}\r\n{line}\r\n", line.len()).into_bytes()]
            }
            Rejected::BareCr(smuggle) => {
                let (line, tag) = self.smuggle(*smuggle);
                data.push(tag);
                vec![format!("{t} NOOP x\r{line}").into_bytes()]
            }
            Rejected::Nul(variant) => {
                let line: &[u8] = match variant {
                    0 => b" SELECT \"IN\0BOX\"\r\n",
                    1 => b" NOOP \0\r\n",
                    _ => b" SELECT IN\0BOX\r\n",
                };
                vec![[t.as_bytes(), line].concat()]
            }
            Rejected::AtomControl(c) => {
                let mut line = format!("{t} SELECT IN").into_bytes();
                line.push(*c);
                line.extend_from_slice(b"BOX\r\n");
                vec![line]
            }
            Rejected::Compress => vec![format!("{t} COMPRESS DEFLATE\r\n").into_bytes()],
            Rejected::Starttls => vec![format!("{t} STARTTLS\r\n").into_bytes()],
            Rejected::Unknown => vec![format!("{t} XSMUGGLE {MARK}\r\n").into_bytes()],
            Rejected::MissingArgument => vec![format!("{t} SELECT\r\n").into_bytes()],
            Rejected::AuthenticateAfterLogin => {
                vec![format!("{t} AUTHENTICATE PLAIN\r\n").into_bytes()]
            }
            Rejected::AuthenticatePipelined(smuggle) => {
                let (line, tag) = self.smuggle(*smuggle);
                data.push(tag);
                vec![format!("{t} AUTHENTICATE PLAIN\r\n{line}").into_bytes()]
            }
            Rejected::AuthenticateCancelled => {
                vec![format!("{t} AUTHENTICATE PLAIN\r\n*\r\n").into_bytes()]
            }
            Rejected::SelectBeforeLogin => vec![format!("{t} SELECT {MARK}\r\n").into_bytes()],
        };
        self.push(t, Class::Rejected, chunks, data);
    }

    fn login(&mut self, login: Login) {
        let t = self.tag('r');
        let user = self.user.clone();
        let chunks = match login {
            Login::Atoms => vec![format!("{t} LOGIN {user} {PASSWORD}\r\n")],
            Login::Quoted => vec![format!("{t} LOGIN \"{user}\" \"{PASSWORD}\"\r\n")],
            Login::Lower => vec![format!("{t} login {user} {PASSWORD}\r\n")],
            Login::Literal => vec![
                format!("{t} LOGIN {user} {{{}}}\r\n", PASSWORD.len()),
                format!("{PASSWORD}\r\n"),
            ],
            Login::LiteralPlus => vec![format!(
                "{t} LOGIN {{{}+}}\r\n{user} {{{}+}}\r\n{PASSWORD}\r\n",
                user.len(),
                PASSWORD.len()
            )],
            Login::SaslIr => vec![format!("{t} AUTHENTICATE PLAIN {}\r\n", sasl_plain(&user))],
            Login::SaslContinuation => vec![
                format!("{t} AUTHENTICATE PLAIN\r\n"),
                format!("{}\r\n", sasl_plain(&user)),
            ],
        };
        let chunks = chunks.into_iter().map(String::into_bytes).collect();
        self.push(t, Class::Real, chunks, Vec::new());
        self.out.last_mut().expect("pushed").login = true;
    }

    fn step(&mut self, step: &Step) {
        match &step.command {
            Command::Real(real) => self.real(real),
            Command::Rejected(rejected) => self.rejected(rejected),
        }
        self.out.last_mut().expect("pushed").wait = step.wait;
    }
}

pub(crate) fn render(stream: &Stream, user: &str) -> Vec<Rendered> {
    let mut renderer = Renderer {
        user: user.to_string(),
        next: 0,
        out: Vec::new(),
    };
    for step in &stream.pre_login {
        renderer.step(step);
    }
    renderer.login(stream.login);
    renderer.out.last_mut().expect("login").wait = stream.wait_after_login;
    for step in &stream.post_login {
        renderer.step(step);
    }
    renderer.out
}
