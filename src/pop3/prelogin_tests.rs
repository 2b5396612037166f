//! Every script is replayed at every chunk size 1..=512 and must give the same outcome as the
//! unchunked replay (and as the expectation).

use super::*;
use crate::pop3::capa::Capabilities;

const DOVECOT_CAPA: &[u8] = b"+OK\r\nCAPA\r\nTOP\r\nUIDL\r\nRESP-CODES\r\nPIPELINING\r\nAUTH-RESP-CODE\r\nSTLS\r\nUSER\r\nSASL PLAIN LOGIN CRAM-MD5\r\nXCLIENT\r\nX-FANCY 1\r\n.\r\n";
const OK: &[u8] = b"+OK Logged in.\r\n";
const BAD: &[u8] = b"-ERR [AUTH] Authentication failed.\r\n";
/// `\0alice\0pw`
const PLAIN_ALICE: &str = "AGFsaWNlAHB3";

/// What a replay observed (the transaction bytes are collected whole, so chunking cannot show).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Out {
    Client(String),
    StartTls,
    Login(LoginRequest),
    Authenticated,
    LoginRefused,
    Transaction(Vec<u8>),
    Close(CloseReason),
}

/// A piece of a script: client bytes, or the moment the TLS upgrade completes.
#[derive(Clone, Copy)]
enum Segment<'a> {
    Bytes(&'a [u8]),
    Tls,
}

fn config(policy: CapaPolicy, capa: &[u8]) -> PreloginConfig {
    PreloginConfig {
        capabilities: Capabilities::from_reply(Some(capa)),
        policy,
        max_errors: 50,
    }
}

struct Replay<'a> {
    core: Prelogin,
    logins: std::collections::VecDeque<(bool, &'a [u8])>,
    out: Vec<Out>,
    transaction: Option<Vec<u8>>,
}

impl Replay<'_> {
    fn apply(&mut self, actions: Vec<PreloginAction>) {
        let mut queue: std::collections::VecDeque<_> = actions.into();
        while let Some(action) = queue.pop_front() {
            match action {
                PreloginAction::ToClient(bytes) => self
                    .out
                    .push(Out::Client(String::from_utf8_lossy(&bytes).into())),
                PreloginAction::StartTls => self.out.push(Out::StartTls),
                PreloginAction::Login(request) => {
                    self.out.push(Out::Login(request));
                    let (ok, reply) = self.logins.pop_front().expect("scripted login outcome");
                    queue.extend(self.core.login_result(ok, reply));
                }
                PreloginAction::Authenticated(rest) => {
                    self.out.push(Out::Authenticated);
                    self.transaction = Some(rest);
                }
                PreloginAction::LoginRefused => self.out.push(Out::LoginRefused),
                PreloginAction::Close(reason) => self.out.push(Out::Close(reason)),
            }
        }
    }

    fn feed(&mut self, chunk: &[u8]) {
        match &mut self.transaction {
            Some(bytes) => bytes.extend_from_slice(chunk),
            None => {
                let actions = self.core.feed(chunk);
                self.apply(actions);
            }
        }
    }
}

fn replay_at(
    config: &PreloginConfig,
    script: &[Segment<'_>],
    logins: &[(bool, &'static [u8])],
    chunk: usize,
) -> Vec<Out> {
    let mut replay = Replay {
        core: Prelogin::new(config.clone()),
        logins: logins.iter().copied().collect(),
        out: Vec::new(),
        transaction: None,
    };
    for segment in script {
        match segment {
            Segment::Bytes(bytes) => bytes.chunks(chunk).for_each(|c| replay.feed(c)),
            Segment::Tls => replay.core.tls_started(),
        }
    }
    if let Some(bytes) = replay.transaction.take() {
        replay.out.push(Out::Transaction(bytes));
    }
    replay.out
}

/// Replays at every chunk size; all must agree with the unchunked replay, which is returned.
fn replay(
    config: &PreloginConfig,
    script: &[Segment<'_>],
    logins: &[(bool, &'static [u8])],
) -> Vec<Out> {
    let whole = replay_at(config, script, logins, usize::MAX);
    for chunk in 1..=512 {
        assert_eq!(
            replay_at(config, script, logins, chunk),
            whole,
            "chunk size {chunk}"
        );
    }
    whole
}

fn plain_script(bytes: &[u8], logins: &[(bool, &'static [u8])]) -> Vec<Out> {
    replay(
        &config(CapaPolicy::default(), DOVECOT_CAPA),
        &[Segment::Bytes(bytes)],
        logins,
    )
}

fn client(text: &str) -> Out {
    Out::Client(text.to_string())
}

fn is_err(out: &Out) -> bool {
    matches!(out, Out::Client(text) if text.starts_with("-ERR "))
}

#[test]
fn refusals_before_login_are_local_and_never_logins() {
    let script = b"XCLIENT ADDR=203.0.113.9\r\nTOP 5 20\0\r\nRETR 1 x\r\nRETR  1\r\nRETR +1\r\nRETR 0\r\nRETR 99999999999\r\nretr 1\r\nNOOP\r\nSTAT\r\nUSER al\0ice\r\nPASS x\r\nAPOP bob 123\r\nAUTH CRAM-MD5\r\nSTLS\r\nLIST\r\n";
    let out = plain_script(script, &[]);
    assert_eq!(out.len(), 16, "{out:?}");
    assert!(out.iter().all(is_err), "{out:?}");
    assert_eq!(out[0], client("-ERR XCLIENT not permitted\r\n"));
    assert_eq!(
        out[7],
        client("-ERR not logged in\r\n"),
        "lowercase retr parses"
    );
    assert_eq!(out[11], client("-ERR No username given\r\n"));
}

#[test]
fn over_long_lines() {
    let mut script = b"USER ".to_vec();
    script.extend(std::iter::repeat_n(b'a', 600));
    script.extend_from_slice(b"\r\nQUIT\r\n");
    let out = plain_script(&script, &[]);
    assert_eq!(
        out,
        vec![
            client("-ERR line longer than 512 octets\r\n"),
            client("+OK Logging out\r\n"),
            Out::Close(CloseReason::Quit)
        ]
    );
    let endless = vec![b'A'; MAX_AUTH_LINE + 10];
    let out = plain_script(&endless, &[]);
    assert_eq!(
        out,
        vec![
            client("-ERR [SYS/PERM] line too long\r\n"),
            Out::Close(CloseReason::LineTooLong)
        ]
    );
}

#[test]
fn user_pass_logs_in_and_hands_over_pipelined_commands() {
    let out = plain_script(
        b"user alice\r\nCAPA\r\nPASS two words\r\nSTAT\r\nRETR 1\r\n",
        &[(true, OK)],
    );
    let credentials = Credentials::new("alice", "two words");
    assert_eq!(out[0], client("+OK\r\n"));
    assert!(matches!(&out[1], Out::Client(capa) if capa.starts_with("+OK")));
    assert_eq!(out[2], Out::Login(LoginRequest::UserPass(credentials)));
    assert_eq!(
        out[3..],
        [
            client("+OK Logged in.\r\n"),
            Out::Authenticated,
            Out::Transaction(b"STAT\r\nRETR 1\r\n".to_vec())
        ]
    );
}

#[test]
fn failed_login_stays_in_authorization_and_forgets_the_user() {
    let out = plain_script(
        b"USER alice\r\nPASS wrong\r\nPASS again\r\nSTAT\r\nUSER alice\r\nPASS right\r\n",
        &[(false, BAD), (true, OK)],
    );
    assert_eq!(out[2], client(std::str::from_utf8(BAD).unwrap()));
    assert_eq!(out[3], client("-ERR No username given\r\n"));
    assert_eq!(out[4], client("-ERR not logged in\r\n"));
    assert_eq!(out[5], client("+OK\r\n"));
    assert_eq!(
        out[6],
        Out::Login(LoginRequest::UserPass(Credentials::new("alice", "right")))
    );
    assert_eq!(out.last(), Some(&Out::Transaction(Vec::new())));
}

#[test]
fn apop_is_a_login() {
    let out = plain_script(
        b"APOP bob C4C9334BAC560ECC979E58001B3E22FB\r\n",
        &[(true, OK)],
    );
    let request = LoginRequest::Apop {
        user: "bob".into(),
        digest: Secret("c4c9334bac560ecc979e58001b3e22fb".into()),
    };
    assert_eq!(out[0], Out::Login(request.clone()));
    let plan = request.plan(&Capabilities::default()).unwrap();
    assert_eq!(
        plan[0].line,
        b"APOP bob c4c9334bac560ecc979e58001b3e22fb\r\n"
    );
}

#[test]
fn auth_plain_with_initial_response_then_pipelined_retr() {
    let script = format!("AUTH PLAIN {PLAIN_ALICE}\r\nRETR 1\r\n");
    let login = Out::Login(LoginRequest::Sasl(Credentials::new("alice", "pw")));
    let out = plain_script(script.as_bytes(), &[(true, OK)]);
    assert_eq!(
        out,
        vec![
            login.clone(),
            client("+OK Logged in.\r\n"),
            Out::Authenticated,
            Out::Transaction(b"RETR 1\r\n".to_vec())
        ]
    );
    // After a failed login the pipelined line is a command, not SASL data.
    let out = plain_script(script.as_bytes(), &[(false, BAD)]);
    assert_eq!(
        out,
        vec![
            login,
            client(std::str::from_utf8(BAD).unwrap()),
            client("-ERR not logged in\r\n")
        ]
    );
}

#[test]
fn auth_plain_without_initial_response_and_auth_login() {
    let script = format!("AUTH plain\r\n{PLAIN_ALICE}\r\n");
    let out = plain_script(script.as_bytes(), &[(true, OK)]);
    assert_eq!(out[0], client("+ \r\n"));
    assert_eq!(
        out[1],
        Out::Login(LoginRequest::Sasl(Credentials::new("alice", "pw")))
    );
    // LOGIN: user name and password as two challenges; an initial response gives the user.
    let out = plain_script(b"AUTH LOGIN\r\nY2Fyb2w=\r\ncHc=\r\n", &[(true, OK)]);
    assert_eq!(out[0], client("+ VXNlcm5hbWU6\r\n"));
    assert_eq!(out[1], client("+ UGFzc3dvcmQ6\r\n"));
    assert_eq!(
        out[2],
        Out::Login(LoginRequest::Sasl(Credentials::new("carol", "pw")))
    );
    let out = plain_script(b"AUTH LOGIN Y2Fyb2w=\r\ncHc=\r\n", &[(true, OK)]);
    assert_eq!(out[0], client("+ UGFzc3dvcmQ6\r\n"));
    assert_eq!(
        out[1],
        Out::Login(LoginRequest::Sasl(Credentials::new("carol", "pw")))
    );
}

#[test]
fn star_cancels_and_garbage_is_refused() {
    let out = plain_script(
        b"AUTH PLAIN\r\n*\r\nAUTH PLAIN\r\nnot base64!\r\nQUIT\r\n",
        &[],
    );
    assert_eq!(
        out,
        vec![
            client("+ \r\n"),
            client("-ERR authentication cancelled\r\n"),
            client("+ \r\n"),
            client("-ERR invalid base64 in the SASL response\r\n"),
            client("+OK Logging out\r\n"),
            Out::Close(CloseReason::Quit)
        ]
    );
}

#[test]
fn bare_auth_lists_the_proxy_mechanisms() {
    let out = plain_script(b"AUTH\r\n", &[]);
    assert_eq!(out, vec![client("+OK\r\nPLAIN\r\nLOGIN\r\n.\r\n")]);
}

#[test]
fn sasl_login_plan_follows_the_backend() {
    let creds = Credentials::new("alice", "pw");
    let with_plain = Capabilities::from_reply(Some(DOVECOT_CAPA));
    let plan = LoginRequest::Sasl(creds.clone()).plan(&with_plain).unwrap();
    assert_eq!(plan.len(), 1);
    assert_eq!(
        plan[0].line,
        format!("AUTH PLAIN {PLAIN_ALICE}\r\n").into_bytes()
    );
    assert_eq!(plan[0].expect, Expect::Sasl);
    let user_only = Capabilities::from_body(b"USER\r\n");
    let plan = LoginRequest::Sasl(creds).plan(&user_only).unwrap();
    assert_eq!(plan[0].line, b"USER alice\r\n");
    assert_eq!(plan[1].line, b"PASS pw\r\n");
    let boss = Credentials {
        authzid: "boss".into(),
        ..Credentials::new("alice", "pw")
    };
    assert_eq!(
        LoginRequest::Sasl(boss).plan(&user_only),
        Err(LoginRefused::Authzid)
    );
    let spaced = Credentials::new("al ice", "pw");
    assert_eq!(
        LoginRequest::Sasl(spaced).plan(&user_only),
        Err(LoginRefused::Unserialisable)
    );
    // The core refuses such a login itself: nothing reaches the backend.
    let script = b"AUTH PLAIN Ym9zcwBhbGljZQBwdw==\r\n"; // boss\0alice\0pw
    let out = replay(
        &config(CapaPolicy::default(), b"+OK\r\nUSER\r\n.\r\n"),
        &[Segment::Bytes(script)],
        &[],
    );
    assert_eq!(
        out,
        vec![client(
            "-ERR [AUTH] authorization identity not supported\r\n"
        )]
    );
}

#[test]
fn stls_discards_pipelined_bytes() {
    let policy = CapaPolicy {
        offer_stls: true,
        hide_login: true,
    };
    let script = [
        Segment::Bytes(b"CAPA\r\nUSER evil\r\nSTLS\r\nUSER evil\r\nPASS x\r\n"),
        Segment::Tls,
        Segment::Bytes(b"PASS x\r\nCAPA\r\nSTLS\r\n"),
    ];
    let out = replay(&config(policy, DOVECOT_CAPA), &script, &[]);
    let Out::Client(before) = &out[0] else {
        panic!("{out:?}")
    };
    assert!(
        before.contains("STLS\r\n") && !before.contains("USER"),
        "{before}"
    );
    assert_eq!(out[1], Out::LoginRefused);
    assert_eq!(out[2], client(std::str::from_utf8(TLS_REQUIRED).unwrap()));
    assert_eq!(out[3], client("+OK Begin TLS negotiation\r\n"));
    assert_eq!(out[4], Out::StartTls);
    assert_eq!(
        out[5],
        client("-ERR No username given\r\n"),
        "USER evil was discarded"
    );
    let Out::Client(after) = &out[6] else {
        panic!("{out:?}")
    };
    assert!(
        !after.contains("STLS") && after.contains("USER\r\n"),
        "{after}"
    );
    assert_eq!(out[7], client("-ERR STLS not available\r\n"));
    assert_eq!(out.len(), 8);
}

#[test]
fn logins_before_required_tls_are_refused() {
    let policy = CapaPolicy {
        offer_stls: true,
        hide_login: true,
    };
    let script = format!("USER alice\r\nPASS pw\r\nAPOP a 0123456789abcdef0123456789abcdef\r\nAUTH\r\nAUTH PLAIN {PLAIN_ALICE}\r\n");
    let out = replay(
        &config(policy, DOVECOT_CAPA),
        &[Segment::Bytes(script.as_bytes())],
        &[],
    );
    let refusal = [
        Out::LoginRefused,
        client(std::str::from_utf8(TLS_REQUIRED).unwrap()),
    ];
    assert_eq!(
        out,
        refusal.iter().cycle().take(10).cloned().collect::<Vec<_>>()
    );
}

#[test]
fn quit_closes_and_ignores_the_rest() {
    let out = plain_script(b"QUIT\r\nUSER a\r\n", &[]);
    assert_eq!(
        out,
        vec![client("+OK Logging out\r\n"), Out::Close(CloseReason::Quit)]
    );
}

#[test]
fn capa_is_the_allow_listed_backend_capa() {
    let out = plain_script(b"capa\r\n", &[]);
    assert_eq!(
        out,
        vec![client("+OK Capability list follows\r\nTOP\r\nUIDL\r\nRESP-CODES\r\nPIPELINING\r\nAUTH-RESP-CODE\r\nUSER\r\nSASL PLAIN LOGIN\r\n.\r\n")]
    );
}

#[test]
fn too_many_errors_close_the_connection() {
    let mut config = config(CapaPolicy::default(), DOVECOT_CAPA);
    config.max_errors = 3;
    let script = [Segment::Bytes(b"XYZZY\r\nNOOP\r\nXCLIENT\r\nQUIT\r\n")];
    let out = replay(&config, &script, &[]);
    assert_eq!(out.len(), 5, "{out:?}");
    assert_eq!(
        out[3],
        client(std::str::from_utf8(TOO_MANY_ERRORS).unwrap())
    );
    assert_eq!(out[4], Out::Close(CloseReason::TooManyErrors));
}
