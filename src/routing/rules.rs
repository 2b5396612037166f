//! The static router's decision, sans I/O: a pure function of the router's configuration, its
//! map file and the login name ([`StaticTable::decide`]).
//!
//! Order: the `[[router.rule]]`s as written (first match wins), then the map file (the exact
//! user, then `@domain`, both by hash lookup), then `default`. User and domain comparisons are
//! ASCII case-insensitive; a regex is applied as written and may rewrite the login name sent
//! to the backend from its captures (`rewrite = "$1"`, as perdition's regex maps do).

use std::collections::HashMap;

use regex::Regex;

use super::RoutingError;
use crate::config::RouterConfig;

/// Where one login goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// The `[[backend]]` name.
    pub backend: String,
    /// The login name for the backend when a rule rewrote it.
    pub login: Option<String>,
}

/// What one rule matches.
#[derive(Debug, Clone)]
enum Matcher {
    /// The whole login name (lower-cased).
    User(String),
    /// The part after the last `@` (lower-cased).
    Domain(String),
    /// A regular expression, with an optional rewrite template.
    Regex(Regex, Option<String>),
}

#[derive(Debug, Clone)]
struct Rule {
    matcher: Matcher,
    backend: String,
}

/// A parsed map file: `user backend` and `@domain backend` lines.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MapFile {
    users: HashMap<String, String>,
    domains: HashMap<String, String>,
}

impl MapFile {
    /// Number of entries (users and domains).
    pub fn len(&self) -> usize {
        self.users.len() + self.domains.len()
    }

    /// Whether the map has no entries.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every backend the map names.
    pub fn backends(&self) -> impl Iterator<Item = &str> {
        self.users
            .values()
            .chain(self.domains.values())
            .map(String::as_str)
    }
}

/// Why a map file line was refused (the caller adds the file name).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {reason}")]
pub struct MapLineError {
    /// 1-based line number.
    pub line: usize,
    /// What is wrong with it.
    pub reason: String,
}

/// Parses a map file: one `name backend` per line, `@domain backend` for a whole domain,
/// `#` starts a comment, blank lines are ignored. A name listed twice is an error.
pub fn parse_map(text: &str) -> Result<MapFile, MapLineError> {
    let mut map = MapFile::default();
    for (index, raw) in text.lines().enumerate() {
        let line = raw.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let error = |reason: &str| MapLineError {
            line: index + 1,
            reason: reason.to_string(),
        };
        let mut words = line.split_whitespace();
        let (Some(name), Some(backend), None) = (words.next(), words.next(), words.next()) else {
            return Err(error("expected \"user backend\" or \"@domain backend\""));
        };
        let (table, key) = match name.strip_prefix('@') {
            Some("") => return Err(error("empty domain")),
            Some(domain) => (&mut map.domains, domain.to_ascii_lowercase()),
            None => (&mut map.users, name.to_ascii_lowercase()),
        };
        if table.insert(key, backend.to_string()).is_some() {
            return Err(error(&format!("{name:?} is listed twice")));
        }
    }
    Ok(map)
}

/// A static router's rules, map and default, ready to decide.
#[derive(Debug, Clone)]
pub struct StaticTable {
    rules: Vec<Rule>,
    map: MapFile,
    default: Option<String>,
}

impl StaticTable {
    /// Builds the table of `config` (validated) with `map` (its parsed map file, or empty).
    pub fn new(config: &RouterConfig, map: MapFile) -> Result<StaticTable, RoutingError> {
        let mut rules = Vec::with_capacity(config.rules.len());
        for rule in &config.rules {
            let matcher = match (&rule.user, &rule.domain, &rule.regex) {
                (Some(user), None, None) => Matcher::User(user.to_ascii_lowercase()),
                (None, Some(domain), None) => {
                    let domain = domain.trim_start_matches('@');
                    Matcher::Domain(domain.to_ascii_lowercase())
                }
                (None, None, Some(pattern)) => {
                    let regex = Regex::new(pattern).map_err(|e| RoutingError::Rule {
                        router: config.name.clone(),
                        reason: e.to_string(),
                    })?;
                    Matcher::Regex(regex, rule.rewrite.clone())
                }
                _ => {
                    return Err(RoutingError::Rule {
                        router: config.name.clone(),
                        reason: "exactly one of user, domain, regex is required".into(),
                    })
                }
            };
            rules.push(Rule {
                matcher,
                backend: rule.backend.clone(),
            });
        }
        Ok(StaticTable {
            rules,
            map,
            default: config.default.clone(),
        })
    }

    /// Where `user` goes, or `None` when nothing matches and there is no default.
    pub fn decide(&self, user: &str) -> Option<Decision> {
        let lower = user.to_ascii_lowercase();
        let domain = lower.rsplit_once('@').map(|(_, d)| d);
        for rule in &self.rules {
            let login = match &rule.matcher {
                Matcher::User(name) if *name == lower => None,
                Matcher::Domain(wanted) if domain == Some(wanted.as_str()) => None,
                Matcher::Regex(regex, rewrite) => {
                    let Some(captures) = regex.captures(user) else {
                        continue;
                    };
                    match rewrite {
                        None => None,
                        Some(template) => {
                            let mut out = String::new();
                            captures.expand(template, &mut out);
                            // A template naming a group that did not take part yields
                            // nothing: no usable login name, so the rule does not apply.
                            if out.is_empty() {
                                continue;
                            }
                            Some(out)
                        }
                    }
                }
                _ => continue,
            };
            return Some(Decision {
                backend: rule.backend.clone(),
                login,
            });
        }
        let mapped = self
            .map
            .users
            .get(&lower)
            .or_else(|| domain.and_then(|d| self.map.domains.get(d)));
        mapped.or(self.default.as_ref()).map(|backend| Decision {
            backend: backend.clone(),
            login: None,
        })
    }

    /// Every backend the table can answer.
    pub fn backends(&self) -> impl Iterator<Item = &str> {
        self.rules
            .iter()
            .map(|r| r.backend.as_str())
            .chain(self.map.backends())
            .chain(self.default.as_deref())
    }

    /// Entries of the map file.
    pub fn map_entries(&self) -> usize {
        self.map.len()
    }
}

#[cfg(test)]
#[path = "rules_tests.rs"]
mod tests;
