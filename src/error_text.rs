//! One line of text for an error and its causes, each said once.
//!
//! Many error types here put their cause into their own message (`listener imaps: cannot bind
//! 0.0.0.0:993: Address in use (os error 98)`) *and* expose it as `source()`. Printing the
//! whole chain (`anyhow`'s `{:#}`) then repeats the cause. [`render_chain`] appends a cause only
//! when the text so far does not already contain it.

use std::error::Error;

/// `error`, then `: cause` for every cause in its `source()` chain not already said.
pub fn render_chain(error: &(dyn Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let said = cause.to_string();
        if !said.is_empty() && !text.contains(&said) {
            text.push_str(": ");
            text.push_str(&said);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("listener imaps: cannot bind 127.0.0.1:993: {source}")]
    struct Bind {
        source: std::io::Error,
    }

    #[derive(Debug, thiserror::Error)]
    #[error("starting: {0}")]
    struct Outer(#[source] Bind);

    #[derive(Debug, thiserror::Error)]
    #[error("loading portcullis.toml")]
    struct Context(#[source] std::io::Error);

    #[test]
    fn a_cause_already_in_the_message_is_not_repeated() {
        let io = std::io::Error::from(std::io::ErrorKind::AddrInUse);
        let cause = io.to_string();
        let text = render_chain(&Outer(Bind { source: io }));
        assert_eq!(text.matches(&cause).count(), 1, "{text}");
        assert!(
            text.starts_with("starting: listener imaps: cannot bind"),
            "{text}"
        );
    }

    #[test]
    fn a_cause_not_yet_said_is_appended() {
        let io = std::io::Error::from(std::io::ErrorKind::NotFound);
        let cause = io.to_string();
        let text = render_chain(&Context(io));
        assert_eq!(text, format!("loading portcullis.toml: {cause}"));
    }
}
