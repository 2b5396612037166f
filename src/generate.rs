//! `portcullis generate`: files derived from the program itself, for packaging and for trying
//! things out.
//!
//! - `generate man [--out-dir DIR]`: the manual page, rendered from the clap definitions
//!   (`clap_mangen`) plus FILES, SIGNALS, EXIT STATUS and SEE ALSO sections; with `--out-dir`
//!   also one page per subcommand (`portcullis-serve.1`, ...).
//! - `generate completions bash|zsh|fish|elvish|powershell`: a completion script
//!   (`clap_complete`) on standard output.
//! - `generate cert --name NAME --out DIR`: a private CA and a server certificate signed by it
//!   (see [`cert`]).

use std::io::Write;
use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};
use clap_complete::Shell;
use roff::{bold, italic, roman, Roff};

pub mod cert;

/// Arguments of `portcullis generate`.
#[derive(Debug, Args)]
pub struct GenerateArgs {
    #[command(subcommand)]
    what: Generate,
}

#[derive(Debug, Subcommand)]
enum Generate {
    /// Print the manual page (roff) on standard output, or write all pages into a directory.
    ///
    /// Try it with `portcullis generate man | man -l -`.
    Man {
        /// Write portcullis.1 and one page per subcommand (portcullis-serve.1, ...) here
        /// instead of printing portcullis.1.
        #[arg(long, value_name = "DIR")]
        out_dir: Option<PathBuf>,
    },
    /// Print a shell completion script on standard output.
    ///
    /// bash: save as /usr/share/bash-completion/completions/portcullis (or source it);
    /// zsh: save as _portcullis in a directory of $fpath; fish: save as
    /// ~/.config/fish/completions/portcullis.fish.
    Completions {
        /// The shell to complete for.
        #[arg(value_enum)]
        shell: Shell,
    },
    /// Make a private CA and a server certificate signed by it, for trying portcullis out.
    ///
    /// Writes ca.pem, ca.key, server.pem and server.key (keys mode 0600) into --out; refuses
    /// to overwrite existing files unless --force is given. Not for production: use a
    /// certificate from a CA your clients already trust.
    Cert(cert::CertArgs),
}

/// Errors of `portcullis generate`.
#[derive(Debug, thiserror::Error)]
pub enum GenerateError {
    /// Writing the output failed.
    #[error("writing {what}: {source}")]
    Write {
        /// What was being written (a path or "standard output").
        what: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// Generating certificates failed.
    #[error(transparent)]
    Cert(#[from] cert::CertError),
}

/// Runs `portcullis generate ...`; `cli` is the whole command-line definition (for the manual
/// page and the completions).
pub fn run(args: GenerateArgs, cli: clap::Command) -> Result<(), GenerateError> {
    match args.what {
        Generate::Man { out_dir: None } => {
            let mut page = Vec::new();
            render_main_page(cli, &mut page).map_err(stdout_error)?;
            write_stdout(&page)
        }
        Generate::Man {
            out_dir: Some(dir), ..
        } => write_all_pages(cli, &dir),
        Generate::Completions { shell } => {
            let mut script = Vec::new();
            let mut cli = cli;
            let name = cli.get_name().to_owned();
            clap_complete::generate(shell, &mut cli, name, &mut script);
            write_stdout(&script)
        }
        Generate::Cert(args) => {
            let written = cert::generate(&args)?;
            write_stdout(written.summary().as_bytes())
        }
    }
}

fn stdout_error(source: std::io::Error) -> GenerateError {
    GenerateError::Write {
        what: "standard output".to_owned(),
        source,
    }
}

fn write_stdout(bytes: &[u8]) -> Result<(), GenerateError> {
    let mut out = std::io::stdout().lock();
    out.write_all(bytes)
        .and_then(|()| out.flush())
        .map_err(stdout_error)
}

/// The `clap_mangen` page of `cmd` with its metadata set the same way for every page.
fn man_for(cmd: clap::Command) -> clap_mangen::Man {
    let source = format!("portcullis {}", env!("CARGO_PKG_VERSION"));
    clap_mangen::Man::new(cmd)
        .section("1")
        .source(source)
        .manual("portcullis manual")
}

/// The DESCRIPTION of portcullis(1).
const DESCRIPTION: &str = "portcullis sits in front of an IMAP or POP3 server that cannot be \
    changed. It terminates TLS for clients (implicit TLS on 993/995, STARTTLS/STLS on 143/110), \
    relays each session to the backend over plaintext, STARTTLS or TLS, and scans every \
    message a client fetches (IMAP FETCH, POP3 RETR/TOP) with clamd and regex rules before any \
    byte of it reaches the client. A blocked message is replaced by a notice and the original \
    goes to the quarantine. Prometheus metrics and health checks are served over HTTP; SIGHUP \
    reloads the configuration.";

/// Renders portcullis(1): clap's sections, then the hand-written ones an operator needs.
fn render_main_page(cli: clap::Command, out: &mut dyn Write) -> std::io::Result<()> {
    let mut cli = cli.disable_help_subcommand(true).long_about(DESCRIPTION);
    cli.build();
    let man = man_for(cli);
    man.render_title(out)?;
    man.render_name_section(out)?;
    man.render_synopsis_section(out)?;
    man.render_description_section(out)?;
    man.render_options_section(out)?;
    man.render_subcommands_section(out)?;
    out.write_all(operator_sections().to_roff().as_bytes())?;
    man.render_version_section(out)
}

/// Writes portcullis.1 and a page for every visible subcommand (recursively) into `dir`.
fn write_all_pages(mut cli: clap::Command, dir: &Path) -> Result<(), GenerateError> {
    let dir_error = |source| GenerateError::Write {
        what: dir.display().to_string(),
        source,
    };
    std::fs::create_dir_all(dir).map_err(dir_error)?;
    cli = cli.disable_help_subcommand(true);
    cli.build();
    let mut pending: Vec<clap::Command> = cli
        .get_subcommands()
        .filter(|sub| !sub.is_hide_set())
        .cloned()
        .collect();
    while let Some(sub) = pending.pop() {
        pending.extend(sub.get_subcommands().filter(|s| !s.is_hide_set()).cloned());
        let man = man_for(sub);
        let path = dir.join(man.get_filename());
        write_page(&path, |file| man.render(file))?;
    }
    let path = dir.join("portcullis.1");
    write_page(&path, |file| render_main_page(cli, file))
}

fn write_page(
    path: &Path,
    render: impl FnOnce(&mut dyn Write) -> std::io::Result<()>,
) -> Result<(), GenerateError> {
    let mut page = Vec::new();
    render(&mut page)
        .and_then(|()| std::fs::write(path, &page))
        .map_err(|source| GenerateError::Write {
            what: path.display().to_string(),
            source,
        })
}

/// FILES, SIGNALS, EXIT STATUS and SEE ALSO of portcullis(1).
fn operator_sections() -> Roff {
    let mut roff = Roff::new();
    roff.control("SH", ["FILES"]);
    for (path, text) in [
        (
            "/etc/portcullis/portcullis.toml",
            "The configuration (TOML): listeners, backends, [tls], [scan], [metrics]. Check it \
             with portcullis check-config --config FILE.",
        ),
        (
            "/etc/portcullis/tls/",
            "Certificate chains and private keys named by [tls] and [[tls.sni]]; the keys must \
             be readable by the service user only.",
        ),
        (
            "/etc/portcullis/rules/",
            "Regex scan rules (*.toml), [scan] rules_dir.",
        ),
        (
            "/var/lib/portcullis/quarantine/",
            "Originals of blocked messages, [scan] quarantine_dir.",
        ),
    ] {
        roff.control("TP", [])
            .text([italic(path)])
            .text([roman(text)]);
    }
    roff.control("SH", ["SIGNALS"]);
    roff.control("TP", []).text([bold("SIGHUP")]).text([roman(
        "Reload the configuration: certificates, the SNI set, rules and the scan policy change \
         for new work; sessions in progress continue. A configuration that fails to load is \
         rejected and the running one stays in force.",
    )]);
    roff.control("TP", [])
        .text([bold("SIGTERM"), roman(", "), bold("SIGINT")])
        .text([roman(
            "Stop accepting connections, let open sessions finish for a grace period, then exit.",
        )]);
    roff.control("SH", ["EXIT STATUS"]);
    roff.text([roman(
        "0 on success; 1 when the configuration is invalid or the proxy fails. portcullis scan \
         exits 0 when everything is clean, 1 when something was found and 2 on an error.",
    )]);
    roff.control("SH", ["ENVIRONMENT"]);
    roff.control("TP", []).text([bold("RUST_LOG")]).text([roman(
        "Log filter (tracing-subscriber syntax), default info, e.g. portcullis=debug.",
    )]);
    roff.control("SH", ["SEE ALSO"]);
    roff.text([
        bold("portcullis-serve"),
        roman("(1), "),
        bold("portcullis-check-config"),
        roman("(1), "),
        bold("portcullis-scan"),
        roman("(1), "),
        bold("portcullis-generate"),
        roman("(1), "),
        bold("systemd.service"),
        roman("(5), "),
        bold("clamd"),
        roman("(8)"),
    ]);
    roff
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cli() -> clap::Command {
        clap::Command::new("portcullis")
            .version("1.2.3")
            .about("test")
            .subcommand(clap::Command::new("serve").about("Run"))
            .subcommand(
                clap::Command::new("generate")
                    .subcommand(clap::Command::new("man").about("Man page")),
            )
    }

    #[test]
    fn main_page_has_clap_and_operator_sections() {
        let mut page = Vec::new();
        render_main_page(cli(), &mut page).unwrap();
        let page = String::from_utf8(page).unwrap();
        for heading in [
            ".TH portcullis 1",
            ".SH NAME",
            ".SH SYNOPSIS",
            ".SH SUBCOMMANDS",
            ".SH FILES",
            ".SH SIGNALS",
            ".SH \"SEE ALSO\"",
            ".SH \"EXIT STATUS\"",
            ".SH VERSION",
        ] {
            assert!(page.contains(heading), "no {heading} in\n{page}");
        }
    }

    #[test]
    fn out_dir_gets_a_page_per_subcommand() {
        let dir = tempfile::tempdir().unwrap();
        write_all_pages(cli(), dir.path()).unwrap();
        let mut names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(
            names,
            [
                "portcullis-generate-man.1",
                "portcullis-generate.1",
                "portcullis-serve.1",
                "portcullis.1"
            ]
        );
    }
}
