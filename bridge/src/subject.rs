//! Subject and message-id syntax: what a caller may publish to, and under which id.
//!
//! Why this exists: a subject is built by components from tenant, env, team and
//! channel ids. If one of those ids could carry a `.`, `*` or `>`, a publish could
//! land in another tenant's subject or become a wildcard. So the bridge does not
//! trust the components' validation: every subject is matched against an
//! allow-list of patterns, and every token a wildcard stands for must be an id
//! per SPEC §3 (`^[a-z0-9][a-z0-9_-]{0,62}$`). Messaging subjects
//! (`greentic.messaging.*`) additionally have exactly seven tokens:
//! `greentic.messaging.{ingress|egress}.{env}.{tenant}.{team}.{channel}`.

use std::fmt;

/// Longest id (SPEC §3).
pub const ID_MAX_LEN: usize = 63;
/// Longest `Nats-Msg-Id` the bridge accepts.
pub const MSG_ID_MAX_LEN: usize = 200;
/// Messaging subjects have exactly this many tokens (SPEC §5).
pub const MESSAGING_TOKENS: usize = 7;
/// The namespace every pattern and every subject lives in.
pub const ROOT: &str = "greentic";
const MESSAGING_PREFIX: &str = "greentic.messaging.";
/// Dead letters keep the original subject under this prefix.
pub const DLQ_PREFIX: &str = "greentic.dlq.";

/// Is `s` an id per SPEC §3 (`^[a-z0-9][a-z0-9_-]{0,62}$`)?
pub fn is_id(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= ID_MAX_LEN
        && (b[0].is_ascii_lowercase() || b[0].is_ascii_digit())
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'_' || *c == b'-')
}

/// Is `s` an acceptable `Nats-Msg-Id`: 1..=200 chars of `[A-Za-z0-9._:-]`?
pub fn is_msg_id(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MSG_ID_MAX_LEN
        && s.bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b':' | b'-'))
}

/// Where a dead letter for `subject` goes: `greentic.dlq.<subject without "greentic.">`.
pub fn dlq_subject(subject: &str) -> String {
    let rest = subject
        .strip_prefix(ROOT)
        .and_then(|s| s.strip_prefix('.'))
        .unwrap_or(subject);
    format!("{DLQ_PREFIX}{rest}")
}

/// The tenant scope a messaging subject names, for log lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SubjectScope<'a> {
    pub direction: &'a str,
    pub env: &'a str,
    pub tenant: &'a str,
    pub team: &'a str,
    pub channel: &'a str,
}

impl<'a> SubjectScope<'a> {
    /// Reads the scope of `greentic.messaging.{dir}.{env}.{tenant}.{team}.{channel}`,
    /// also under the dead-letter prefix; `None` for anything else.
    pub fn parse(subject: &'a str) -> Option<Self> {
        let rest = subject
            .strip_prefix(MESSAGING_PREFIX)
            .or_else(|| subject.strip_prefix("greentic.dlq.messaging."))?;
        let mut it = rest.split('.');
        let scope = SubjectScope {
            direction: it.next()?,
            env: it.next()?,
            tenant: it.next()?,
            team: it.next()?,
            channel: it.next()?,
        };
        it.next().is_none().then_some(scope)
    }
}

/// One token of a subject pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
enum PatternToken {
    Literal(String),
    /// `*`: exactly one token.
    One,
    /// `>`: one or more tokens (last only).
    Rest,
}

/// A subject pattern in NATS syntax (`greentic.messaging.ingress.>`), used for the
/// publish allow-list and for delivery filters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern {
    raw: String,
    tokens: Vec<PatternToken>,
}

/// Why a pattern from the configuration was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatternError {
    #[error("pattern is empty")]
    Empty,
    #[error("pattern has an empty token (`..`, or a leading/trailing `.`)")]
    EmptyToken,
    #[error("`>` may only be the last token")]
    RestNotLast,
    #[error("token `{0}` mixes a wildcard with other characters or has whitespace")]
    BadToken(String),
    #[error("pattern must start with `greentic.`")]
    OutsideNamespace,
}

impl Pattern {
    pub fn parse(raw: &str) -> Result<Self, PatternError> {
        if raw.is_empty() {
            return Err(PatternError::Empty);
        }
        let parts: Vec<&str> = raw.split('.').collect();
        let mut tokens = Vec::with_capacity(parts.len());
        for (i, part) in parts.iter().enumerate() {
            let token = match *part {
                "" => return Err(PatternError::EmptyToken),
                "*" => PatternToken::One,
                ">" if i + 1 == parts.len() => PatternToken::Rest,
                ">" => return Err(PatternError::RestNotLast),
                lit if lit
                    .chars()
                    .any(|c| c == '*' || c == '>' || c.is_whitespace() || c.is_control()) =>
                {
                    return Err(PatternError::BadToken(lit.to_string()));
                }
                lit => PatternToken::Literal(lit.to_string()),
            };
            tokens.push(token);
        }
        if tokens.first() != Some(&PatternToken::Literal(ROOT.to_string())) {
            return Err(PatternError::OutsideNamespace);
        }
        Ok(Pattern {
            raw: raw.to_string(),
            tokens,
        })
    }

    pub fn as_str(&self) -> &str {
        &self.raw
    }

    /// Matches a concrete subject, requiring every token that a wildcard stands
    /// for to be a valid id.
    fn check(&self, subject: &[&str]) -> Match {
        let mut i = 0;
        for token in &self.tokens {
            match token {
                PatternToken::Literal(lit) => {
                    if subject.get(i) != Some(&lit.as_str()) {
                        return Match::No;
                    }
                    i += 1;
                }
                PatternToken::One => {
                    let Some(t) = subject.get(i) else {
                        return Match::No;
                    };
                    if !is_id(t) {
                        return Match::BadToken(i);
                    }
                    i += 1;
                }
                PatternToken::Rest => {
                    if i >= subject.len() {
                        return Match::No;
                    }
                    return match subject[i..].iter().position(|t| !is_id(t)) {
                        Some(bad) => Match::BadToken(i + bad),
                        None => Match::Yes,
                    };
                }
            }
        }
        if i == subject.len() {
            Match::Yes
        } else {
            Match::No
        }
    }

    /// Is every subject this pattern matches also matched by `outer`? Used to
    /// check that a delivery's filter lies inside its stream. Conservative:
    /// `outer` must be literal tokens followed by `>`, the only shape streams use.
    pub fn is_within(&self, outer: &Pattern) -> bool {
        let Some((PatternToken::Rest, prefix)) = outer.tokens.split_last() else {
            return self == outer;
        };
        self.tokens.len() > prefix.len() && self.tokens[..prefix.len()] == *prefix
    }
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.raw)
    }
}

enum Match {
    Yes,
    No,
    BadToken(usize),
}

/// Why a subject was refused (the publish answers 400 with this as detail).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubjectError {
    #[error("subject has an empty token")]
    EmptyToken,
    #[error("subject token {position} is not a valid id (^[a-z0-9][a-z0-9_-]{{0,62}}$)")]
    BadToken { position: usize },
    #[error(
        "messaging subjects have exactly 7 tokens: greentic.messaging.{{ingress|egress}}.{{env}}.{{tenant}}.{{team}}.{{channel}}"
    )]
    TokenCount,
    #[error("subject is not in the publish allow-list")]
    NotAllowed,
}

/// The subjects callers may publish to.
#[derive(Debug, Clone)]
pub struct AllowList {
    patterns: Vec<Pattern>,
}

impl AllowList {
    pub fn new(patterns: Vec<Pattern>) -> Self {
        AllowList { patterns }
    }

    pub fn patterns(&self) -> &[Pattern] {
        &self.patterns
    }

    /// Accepts `subject` only if some pattern matches it with valid ids in every
    /// wildcard position, and a messaging subject has exactly seven tokens.
    pub fn check(&self, subject: &str) -> Result<(), SubjectError> {
        let tokens: Vec<&str> = subject.split('.').collect();
        if tokens.iter().any(|t| t.is_empty()) {
            return Err(SubjectError::EmptyToken);
        }
        let mut bad = None;
        for pattern in &self.patterns {
            match pattern.check(&tokens) {
                Match::Yes => {
                    if subject.starts_with(MESSAGING_PREFIX) && tokens.len() != MESSAGING_TOKENS {
                        return Err(SubjectError::TokenCount);
                    }
                    return Ok(());
                }
                Match::BadToken(position) => bad = bad.or(Some(position)),
                Match::No => {}
            }
        }
        Err(match bad {
            Some(position) => SubjectError::BadToken { position },
            None => SubjectError::NotAllowed,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn default_list() -> AllowList {
        AllowList::new(vec![
            Pattern::parse("greentic.messaging.ingress.>").unwrap(),
            Pattern::parse("greentic.messaging.egress.>").unwrap(),
        ])
    }

    #[test]
    fn ids_follow_spec_syntax() {
        for ok in ["a", "0", "acme", "big-corp", "team_1", &"a".repeat(63)] {
            assert!(is_id(ok), "{ok}");
        }
        for bad in [
            "",
            "-a",
            "_a",
            "Acme",
            "a.b",
            "a*",
            ">",
            "a b",
            "a:b",
            "a/b",
            &"a".repeat(64),
            "é",
        ] {
            assert!(!is_id(bad), "{bad}");
        }
    }

    #[test]
    fn msg_ids_are_bounded_plain_tokens() {
        for ok in ["slack:T1:Ev123", "a", "tg.1-2_3", &"x".repeat(200)] {
            assert!(is_msg_id(ok), "{ok}");
        }
        for bad in ["", "a b", "a/b", "a\nb", &"x".repeat(201), "ä", "a*"] {
            assert!(!is_msg_id(bad), "{bad}");
        }
    }

    #[test]
    fn well_formed_messaging_subjects_are_allowed() {
        let list = default_list();
        assert_eq!(
            list.check("greentic.messaging.ingress.prod.acme.support.slack"),
            Ok(())
        );
        assert_eq!(
            list.check("greentic.messaging.egress.dev.big-corp.default.web_chat-1"),
            Ok(())
        );
    }

    #[test]
    fn wildcards_extra_tokens_case_and_empty_tokens_are_refused() {
        let list = default_list();
        let cases = [
            (
                "greentic.messaging.ingress.prod.*.support.slack",
                SubjectError::BadToken { position: 4 },
            ),
            (
                "greentic.messaging.ingress.prod.acme.support.>",
                SubjectError::BadToken { position: 6 },
            ),
            (
                "greentic.messaging.ingress.>",
                SubjectError::BadToken { position: 3 },
            ),
            (
                "greentic.messaging.ingress.prod.acme.support.slack.extra",
                SubjectError::TokenCount,
            ),
            (
                "greentic.messaging.ingress.prod.acme.support",
                SubjectError::TokenCount,
            ),
            (
                "greentic.messaging.ingress.prod.Acme.support.slack",
                SubjectError::BadToken { position: 4 },
            ),
            (
                "greentic.messaging.ingress.prod..support.slack",
                SubjectError::EmptyToken,
            ),
            (
                "greentic.messaging.ingress.prod.acme.support.slack.",
                SubjectError::EmptyToken,
            ),
            (
                ".greentic.messaging.ingress.prod.acme.support.slack",
                SubjectError::EmptyToken,
            ),
            (
                "other.messaging.ingress.prod.acme.support.slack",
                SubjectError::NotAllowed,
            ),
            (
                "greentic.dlq.messaging.ingress.prod.acme.support.slack",
                SubjectError::NotAllowed,
            ),
            (
                "greentic.messaging.INGRESS.prod.acme.support.slack",
                SubjectError::NotAllowed,
            ),
            ("greentic.messaging.ingress", SubjectError::NotAllowed),
            (
                "greentic.messaging.ingress.prod.acme support.x.slack",
                SubjectError::BadToken { position: 4 },
            ),
        ];
        for (subject, want) in cases {
            assert_eq!(list.check(subject), Err(want), "{subject}");
        }
    }

    #[test]
    fn patterns_must_be_well_formed_and_in_the_namespace() {
        assert_eq!(Pattern::parse(""), Err(PatternError::Empty));
        assert_eq!(Pattern::parse("greentic..x"), Err(PatternError::EmptyToken));
        assert_eq!(
            Pattern::parse("greentic.>.x"),
            Err(PatternError::RestNotLast)
        );
        assert_eq!(
            Pattern::parse("greentic.a*"),
            Err(PatternError::BadToken("a*".into()))
        );
        assert_eq!(
            Pattern::parse("other.>"),
            Err(PatternError::OutsideNamespace)
        );
        assert_eq!(Pattern::parse(">"), Err(PatternError::OutsideNamespace));
        assert!(Pattern::parse("greentic.messaging.*.prod.>").is_ok());
    }

    #[test]
    fn star_matches_exactly_one_id_token() {
        let list = AllowList::new(vec![Pattern::parse("greentic.events.*").unwrap()]);
        assert_eq!(list.check("greentic.events.a1"), Ok(()));
        assert_eq!(
            list.check("greentic.events.a1.b"),
            Err(SubjectError::NotAllowed)
        );
        assert_eq!(
            list.check("greentic.events.A"),
            Err(SubjectError::BadToken { position: 2 })
        );
    }

    #[test]
    fn filters_are_checked_against_their_stream() {
        let stream = Pattern::parse("greentic.messaging.ingress.>").unwrap();
        for inside in [
            "greentic.messaging.ingress.>",
            "greentic.messaging.ingress.prod.>",
            "greentic.messaging.ingress.*.acme.*.*",
        ] {
            assert!(
                Pattern::parse(inside).unwrap().is_within(&stream),
                "{inside}"
            );
        }
        for outside in [
            "greentic.messaging.egress.>",
            "greentic.messaging.>",
            "greentic.messaging.ingress",
            "greentic.>",
        ] {
            assert!(
                !Pattern::parse(outside).unwrap().is_within(&stream),
                "{outside}"
            );
        }
    }

    #[test]
    fn dead_letters_keep_the_subject_under_the_dlq_prefix() {
        assert_eq!(
            dlq_subject("greentic.messaging.ingress.prod.acme.support.slack"),
            "greentic.dlq.messaging.ingress.prod.acme.support.slack"
        );
    }

    #[test]
    fn scope_is_read_from_messaging_and_dead_letter_subjects() {
        let want = SubjectScope {
            direction: "ingress",
            env: "prod",
            tenant: "acme",
            team: "support",
            channel: "slack",
        };
        assert_eq!(
            SubjectScope::parse("greentic.messaging.ingress.prod.acme.support.slack"),
            Some(want)
        );
        assert_eq!(
            SubjectScope::parse("greentic.dlq.messaging.ingress.prod.acme.support.slack"),
            Some(want)
        );
        assert_eq!(SubjectScope::parse("greentic.messaging.ingress.prod"), None);
        assert_eq!(
            SubjectScope::parse("greentic.messaging.ingress.prod.acme.support.slack.x"),
            None
        );
    }
}
