//! Regex rules loaded from `rules_dir/*.toml`, compiled once into size-limited `RegexSet`s.
//!
//! Four targets: header values (by header name), decoded text of `text/*` parts, attachment file
//! names (Content-Disposition `filename` and Content-Type `name`, RFC 2231/2047 decoded) and
//! content types (`type/subtype`). The format is documented in `rules/README.md`.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use regex::{RegexBuilder, RegexSet, RegexSetBuilder};
use serde::Deserialize;

use super::mime::MimeView;

/// Compiled size limit of one rule's regex and of each set (bytes).
const REGEX_SIZE_LIMIT: usize = 1 << 20;
/// Size limit of each compiled set (bytes).
const SET_SIZE_LIMIT: usize = 32 << 20;
/// The rules used when `scan.rules_dir` is not set: `rules/default.toml` of the source tree.
pub const BUILTIN_RULES: &str = include_str!("../../rules/default.toml");
/// How the built-in rules are named in messages.
pub const BUILTIN_RULES_NAME: &str = "<built-in rules>";

/// Largest rule file read.
const MAX_RULE_FILE: u64 = 1 << 20;

/// Errors loading rules; each names the file and, where known, the rule.
#[derive(Debug, thiserror::Error)]
pub enum RuleError {
    /// A rule file cannot be read.
    #[error("{file}: {problem}")]
    File {
        /// The file.
        file: PathBuf,
        /// What went wrong.
        problem: String,
    },
    /// One rule is invalid.
    #[error("{file}: rule '{rule}': {problem}")]
    Rule {
        /// The file.
        file: PathBuf,
        /// The rule name.
        rule: String,
        /// What is wrong.
        problem: String,
    },
}

/// What happens when a rule matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, PartialOrd, Ord, Hash)]
#[serde(rename_all = "lowercase")]
pub enum RuleAction {
    /// Count only; deliver unchanged.
    Log,
    /// Prefix Subject and add `X-Portcullis-Rule`.
    Tag,
    /// Replace the matching part with a notice part.
    Strip,
    /// Quarantine and replace the whole message.
    Block,
}

impl RuleAction {
    /// Lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            RuleAction::Log => "log",
            RuleAction::Tag => "tag",
            RuleAction::Strip => "strip",
            RuleAction::Block => "block",
        }
    }
}

/// What a rule looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RuleTarget {
    /// Decoded value of the header named by `header`.
    Header,
    /// Decoded text of `text/*` parts.
    Body,
    /// Attachment file names.
    Filename,
    /// `type/subtype` of each part, lower case.
    ContentType,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleFile {
    #[serde(default)]
    rule: Vec<RuleSpec>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleSpec {
    name: String,
    target: RuleTarget,
    pattern: String,
    action: RuleAction,
    #[serde(default)]
    header: Option<String>,
    #[serde(default)]
    #[allow(dead_code)]
    description: Option<String>,
}

/// One compiled rule (its regex lives in a set).
#[derive(Debug, Clone)]
pub struct Rule {
    /// Unique name (`[A-Za-z0-9._-]+`).
    pub name: String,
    /// Action on match.
    pub action: RuleAction,
    /// Header name (lower case) for header rules.
    pub header: Option<String>,
}

/// Rules of one target compiled into a set.
#[derive(Debug)]
struct TargetSet {
    rules: Vec<Rule>,
    set: RegexSet,
}

impl TargetSet {
    fn build(specs: Vec<(Rule, String)>) -> Result<TargetSet, String> {
        let patterns: Vec<&str> = specs.iter().map(|(_, p)| p.as_str()).collect();
        let set = RegexSetBuilder::new(patterns)
            .size_limit(SET_SIZE_LIMIT)
            .dfa_size_limit(SET_SIZE_LIMIT)
            .build()
            .map_err(|e| e.to_string())?;
        let rules = specs.into_iter().map(|(rule, _)| rule).collect();
        Ok(TargetSet { rules, set })
    }

    fn matching<'a>(&'a self, text: &str) -> impl Iterator<Item = &'a Rule> + 'a {
        let hits = self.set.matches(text);
        hits.into_iter().filter_map(|i| self.rules.get(i))
    }
}

/// A rule that matched, with the MIME part it matched in (for `strip`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleHit {
    /// Rule name.
    pub name: String,
    /// Rule action.
    pub action: RuleAction,
    /// Index into [`MimeView::parts`] when the match is tied to one part.
    pub part: Option<usize>,
}

/// All compiled rules.
#[derive(Debug)]
pub struct RuleSet {
    header: TargetSet,
    body: TargetSet,
    filename: TargetSet,
    content_type: TargetSet,
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

fn check_spec(spec: &RuleSpec) -> Result<(), String> {
    if !valid_name(&spec.name) {
        return Err("name must be 1-64 characters of A-Z a-z 0-9 . _ -".into());
    }
    match (spec.target, &spec.header) {
        (RuleTarget::Header, None) => return Err("target = \"header\" needs `header`".into()),
        (RuleTarget::Header, Some(h)) if h.is_empty() || h.contains([':', ' ']) => {
            return Err(format!("invalid header name '{h}'"));
        }
        (RuleTarget::Header, Some(_)) | (_, None) => {}
        (_, Some(_)) => return Err("`header` is only allowed with target = \"header\"".into()),
    }
    RegexBuilder::new(&spec.pattern)
        .size_limit(REGEX_SIZE_LIMIT)
        .build()
        .map(|_| ())
        .map_err(|e| format!("bad pattern: {e}"))
}

impl RuleSet {
    /// An empty rule set.
    pub fn empty() -> RuleSet {
        RuleSet::compile(Vec::new(), Path::new("")).unwrap_or_else(|_| unreachable_empty())
    }

    /// The built-in rules (`rules/default.toml` of the source tree, compiled into the binary).
    pub fn builtin() -> Result<RuleSet, RuleError> {
        RuleSet::from_toml(BUILTIN_RULES, Path::new(BUILTIN_RULES_NAME))
    }

    /// Loads `dir/*.toml` when a directory is configured, else the [built-in
    /// rules](RuleSet::builtin) (`scan.rules_dir` unset).
    pub fn load(dir: Option<&Path>) -> Result<RuleSet, RuleError> {
        match dir {
            Some(dir) => RuleSet::load_dir(dir),
            None => RuleSet::builtin(),
        }
    }

    /// Loads and compiles `dir/*.toml` (sorted by name). A missing directory is an error.
    pub fn load_dir(dir: &Path) -> Result<RuleSet, RuleError> {
        let file_err = |problem: String| RuleError::File {
            file: dir.to_path_buf(),
            problem,
        };
        let entries = std::fs::read_dir(dir).map_err(|e| file_err(e.to_string()))?;
        let mut files: Vec<PathBuf> = entries
            .filter_map(|entry| entry.ok().map(|e| e.path()))
            .filter(|path| path.extension().is_some_and(|ext| ext == "toml"))
            .collect();
        files.sort();
        let mut specs = Vec::new();
        for file in files {
            specs.extend(
                read_file(&file)?
                    .into_iter()
                    .map(|spec| (file.clone(), spec)),
            );
        }
        RuleSet::compile(specs, dir)
    }

    /// Parses rules from TOML text (used by tests and `load_dir`).
    pub fn from_toml(text: &str, file: &Path) -> Result<RuleSet, RuleError> {
        let specs = parse_text(text, file)?;
        RuleSet::compile(
            specs.into_iter().map(|s| (file.to_path_buf(), s)).collect(),
            file,
        )
    }

    fn compile(specs: Vec<(PathBuf, RuleSpec)>, dir: &Path) -> Result<RuleSet, RuleError> {
        let mut seen = HashSet::new();
        let mut by_target: [Vec<(Rule, String)>; 4] = Default::default();
        for (file, spec) in specs {
            let fail = |problem: String| RuleError::Rule {
                file: file.clone(),
                rule: spec.name.clone(),
                problem,
            };
            check_spec(&spec).map_err(fail)?;
            if !seen.insert(spec.name.clone()) {
                return Err(fail("duplicate rule name".into()));
            }
            let slot = spec.target as usize;
            let rule = Rule {
                name: spec.name,
                action: spec.action,
                header: spec.header.map(|h| h.to_ascii_lowercase()),
            };
            if let Some(list) = by_target.get_mut(slot) {
                list.push((rule, spec.pattern));
            }
        }
        let [header, body, filename, content_type] = by_target;
        let build = |specs| {
            TargetSet::build(specs).map_err(|problem| RuleError::File {
                file: dir.to_path_buf(),
                problem: format!("compiling rule set: {problem}"),
            })
        };
        Ok(RuleSet {
            header: build(header)?,
            body: build(body)?,
            filename: build(filename)?,
            content_type: build(content_type)?,
        })
    }

    /// Number of rules.
    pub fn len(&self) -> usize {
        [&self.header, &self.body, &self.filename, &self.content_type]
            .iter()
            .map(|t| t.rules.len())
            .sum()
    }

    /// Whether there are no rules.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every rule hit in the decoded message, in a stable order.
    pub fn evaluate(&self, view: &MimeView) -> Vec<RuleHit> {
        let mut hits = Vec::new();
        let mut push = |rule: &Rule, part: Option<usize>| {
            hits.push(RuleHit {
                name: rule.name.clone(),
                action: rule.action,
                part,
            })
        };
        for (name, value) in &view.headers {
            for rule in self.header.matching(value) {
                if rule.header.as_deref() == Some(name.as_str()) {
                    push(rule, None);
                }
            }
        }
        for (index, part) in view.parts.iter().enumerate() {
            if let Some(text) = &part.text {
                self.body
                    .matching(text)
                    .for_each(|rule| push(rule, Some(index)));
            }
            for filename in &part.filenames {
                self.filename
                    .matching(filename)
                    .for_each(|rule| push(rule, Some(index)));
            }
            self.content_type
                .matching(&part.content_type)
                .for_each(|rule| push(rule, Some(index)));
        }
        hits.dedup();
        hits
    }
}

fn unreachable_empty() -> RuleSet {
    // An empty RegexSet always compiles; this path exists only to avoid a panic path.
    let empty = || TargetSet {
        rules: Vec::new(),
        set: RegexSet::empty(),
    };
    RuleSet {
        header: empty(),
        body: empty(),
        filename: empty(),
        content_type: empty(),
    }
}

fn read_file(file: &Path) -> Result<Vec<RuleSpec>, RuleError> {
    let file_err = |problem: String| RuleError::File {
        file: file.to_path_buf(),
        problem,
    };
    let meta = std::fs::metadata(file).map_err(|e| file_err(e.to_string()))?;
    if meta.len() > MAX_RULE_FILE {
        return Err(file_err("rule file larger than 1MiB".into()));
    }
    let text = std::fs::read_to_string(file).map_err(|e| file_err(e.to_string()))?;
    parse_text(&text, file)
}

fn parse_text(text: &str, file: &Path) -> Result<Vec<RuleSpec>, RuleError> {
    toml::from_str::<RuleFile>(text)
        .map(|parsed| parsed.rule)
        .map_err(|e| RuleError::File {
            file: file.to_path_buf(),
            problem: e.to_string(),
        })
}

#[cfg(test)]
#[path = "rules_tests.rs"]
mod tests;
