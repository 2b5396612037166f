//! The grammar of generated client command streams: real, rejected and smuggled commands, and
//! the proptest strategies that build a [`Stream`].

use proptest::prelude::*;

/// A command-shaped line that must never execute (tag `s…`).
#[derive(Debug, Clone, Copy)]
pub(crate) enum Smuggle {
    Select,
    Compress,
    Starttls,
    Login,
}

/// The contents of a real quoted string argument.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Quoted {
    Inbox,
    Mark,
    Brace,
    EscapedBrace,
    Compress,
    Command(Smuggle),
}

/// The contents of a real literal argument.
#[derive(Debug, Clone, Copy)]
pub(crate) enum LiteralPayload {
    Empty,
    Inbox,
    Line(Smuggle),
    Brace,
}

/// Valid, allow-listed commands (tag `r…`).
#[derive(Debug, Clone)]
pub(crate) enum Real {
    Noop,
    NoopLower,
    Capability,
    IdNil,
    IdQuoted(Smuggle),
    /// Post-login only from here on.
    Select,
    SelectLower,
    Examine,
    SelectMark,
    List,
    Status(Quoted),
    StatusLiteral {
        payload: LiteralPayload,
        sync: bool,
    },
    LongStatus(usize),
    QuotedControl(u8),
}

/// Unparseable or not allow-listed commands (tag `b…`).
#[derive(Debug, Clone)]
pub(crate) enum Rejected {
    Garbage {
        command: &'static str,
        garbage: &'static str,
    },
    QuoteBrace(&'static str),
    LiteralPlusArg {
        command: &'static str,
        smuggle: Smuggle,
    },
    BareCr(Smuggle),
    Nul(u8),
    AtomControl(u8),
    Compress,
    Starttls,
    Unknown,
    MissingArgument,
    /// Post-login only.
    AuthenticateAfterLogin,
    /// Pre-login only from here on: a would-be command as the SASL response line.
    AuthenticatePipelined(Smuggle),
    AuthenticateCancelled,
    SelectBeforeLogin,
}

#[derive(Debug, Clone)]
pub(crate) enum Command {
    Real(Real),
    Rejected(Rejected),
}

/// How the client logs in (always valid and successful).
#[derive(Debug, Clone, Copy)]
pub(crate) enum Login {
    Atoms,
    Quoted,
    Lower,
    Literal,
    LiteralPlus,
    SaslIr,
    SaslContinuation,
}

/// One command and whether the client waits for its tagged response before the next (false:
/// pipelined with what follows).
#[derive(Debug, Clone)]
pub(crate) struct Step {
    pub(crate) command: Command,
    pub(crate) wait: bool,
}

#[derive(Debug, Clone)]
pub(crate) struct Stream {
    pub(crate) pre_login: Vec<Step>,
    pub(crate) login: Login,
    pub(crate) wait_after_login: bool,
    pub(crate) post_login: Vec<Step>,
}

fn smuggle() -> impl Strategy<Value = Smuggle> {
    prop_oneof![
        Just(Smuggle::Select),
        Just(Smuggle::Compress),
        Just(Smuggle::Starttls),
        Just(Smuggle::Login),
    ]
}

fn control_char() -> impl Strategy<Value = u8> {
    prop_oneof![1u8..=9, 11u8..=12, 14u8..=31, Just(0x7f)]
}

fn real_any_phase() -> BoxedStrategy<Real> {
    prop_oneof![
        Just(Real::Noop),
        Just(Real::NoopLower),
        Just(Real::Capability),
        Just(Real::IdNil),
        smuggle().prop_map(Real::IdQuoted),
    ]
    .boxed()
}

fn real_post_login() -> BoxedStrategy<Real> {
    let quoted = prop_oneof![
        Just(Quoted::Inbox),
        Just(Quoted::Mark),
        Just(Quoted::Brace),
        Just(Quoted::EscapedBrace),
        Just(Quoted::Compress),
        smuggle().prop_map(Quoted::Command),
    ];
    let payload = prop_oneof![
        Just(LiteralPayload::Empty),
        Just(LiteralPayload::Inbox),
        Just(LiteralPayload::Brace),
        smuggle().prop_map(LiteralPayload::Line),
    ];
    prop_oneof![
        real_any_phase(),
        Just(Real::Select),
        Just(Real::SelectLower),
        Just(Real::Examine),
        Just(Real::SelectMark),
        Just(Real::List),
        quoted.prop_map(Real::Status),
        (payload, any::<bool>()).prop_map(|(payload, sync)| Real::StatusLiteral { payload, sync }),
        prop_oneof![
            4090usize..4100,
            8185usize..8195,
            16377usize..16390,
            30000usize..30010
        ]
        .prop_map(Real::LongStatus),
        control_char().prop_map(Real::QuotedControl),
    ]
    .boxed()
}

fn rejected_any_phase() -> BoxedStrategy<Rejected> {
    let argless = prop_oneof![
        Just("NOOP"),
        Just("noop"),
        Just("CAPABILITY"),
        Just("CHECK"),
        Just("LOGOUT"),
        Just("UNSELECT"),
        Just("CLOSE"),
        Just("EXPUNGE"),
        Just("STARTTLS"),
    ];
    let garbage = prop_oneof![
        Just("x"),
        Just("\"\""),
        Just("()"),
        Just(""),
        Just("SELECT Smuggled"),
    ];
    prop_oneof![
        (argless.clone(), garbage)
            .prop_map(|(command, garbage)| Rejected::Garbage { command, garbage }),
        prop_oneof![Just("NOOP"), Just("SELECT"), Just("LOGIN")].prop_map(Rejected::QuoteBrace),
        (
            prop_oneof![Just("NOOP"), Just("CAPABILITY"), Just("LOGOUT")],
            smuggle()
        )
            .prop_map(|(command, smuggle)| Rejected::LiteralPlusArg { command, smuggle }),
        smuggle().prop_map(Rejected::BareCr),
        (0u8..3).prop_map(Rejected::Nul),
        control_char().prop_map(Rejected::AtomControl),
        Just(Rejected::Compress),
        Just(Rejected::Starttls),
        Just(Rejected::Unknown),
        Just(Rejected::MissingArgument),
    ]
    .boxed()
}

fn pre_login_step() -> impl Strategy<Value = Step> {
    let command = prop_oneof![
        2 => real_any_phase().prop_map(Command::Real),
        3 => rejected_any_phase().prop_map(Command::Rejected),
        1 => smuggle().prop_map(|s| Command::Rejected(Rejected::AuthenticatePipelined(s))),
        1 => Just(Command::Rejected(Rejected::AuthenticateCancelled)),
        1 => Just(Command::Rejected(Rejected::SelectBeforeLogin)),
    ];
    (command, any::<bool>()).prop_map(|(command, wait)| Step { command, wait })
}

fn post_login_step() -> impl Strategy<Value = Step> {
    let command = prop_oneof![
        3 => real_post_login().prop_map(Command::Real),
        3 => rejected_any_phase().prop_map(Command::Rejected),
        1 => Just(Command::Rejected(Rejected::AuthenticateAfterLogin)),
    ];
    (command, any::<bool>()).prop_map(|(command, wait)| Step { command, wait })
}

fn login() -> impl Strategy<Value = Login> {
    prop_oneof![
        Just(Login::Atoms),
        Just(Login::Quoted),
        Just(Login::Lower),
        Just(Login::Literal),
        Just(Login::LiteralPlus),
        Just(Login::SaslIr),
        Just(Login::SaslContinuation),
    ]
}

pub(crate) fn stream() -> impl Strategy<Value = Stream> {
    (
        prop::collection::vec(pre_login_step(), 0..5),
        login(),
        any::<bool>(),
        prop::collection::vec(post_login_step(), 1..10),
    )
        .prop_map(|(pre_login, login, wait_after_login, post_login)| Stream {
            pre_login,
            login,
            wait_after_login,
            post_login,
        })
}
