//! RFC 2971 ID: the forwarding fields only the proxy may set are removed from a client's ID.

use imap_codec::imap_types::{
    command::CommandBody,
    core::{IString, NString},
};

use super::{classify, Classified, ParsedCommand};

impl ParsedCommand {
    /// For ID commands from a client: removes the parameters only the proxy may set — names
    /// starting (case-insensitively) with `x-originating-`, `x-connected-`, `x-proxy-ttl`,
    /// `x-session-`, `x-forward-` — and returns the command (ID NIL if nothing is left). No-op
    /// for other commands.
    pub fn without_forwarding_fields(mut self) -> ParsedCommand {
        const RESERVED: [&str; 5] = [
            "x-originating-",
            "x-connected-",
            "x-proxy-ttl",
            "x-session-",
            "x-forward-",
        ];
        let CommandBody::Id { parameters } = &mut self.command.body else {
            return self;
        };
        if let Some(params) = parameters.take() {
            let kept: Vec<(IString<'static>, NString<'static>)> = params
                .into_iter()
                .filter(|(key, _)| {
                    let key = key.as_ref();
                    !RESERVED.iter().any(|prefix| {
                        key.len() >= prefix.len()
                            && key[..prefix.len()].eq_ignore_ascii_case(prefix.as_bytes())
                    })
                })
                .collect();
            *parameters = (!kept.is_empty()).then_some(kept);
        }
        if let Classified::Kind(kind) = classify(&self.command.body) {
            self.kind = kind;
        }
        self
    }
}
