//! Properties of the bridge's checks of what callers send: subjects and
//! `Nats-Msg-Id`s. Arbitrary input never panics, and whatever is accepted is
//! made of valid ids only, so no publish can reach another tenant's subject
//! or a wildcard. `PROPTEST_CASES=100000 cargo test -p greentic-bridge --test
//! properties` runs many more cases than CI does.

use greentic_bridge::subject::{AllowList, Pattern, SubjectScope, is_id, is_msg_id};
use proptest::prelude::*;

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(256)
}

fn allow_list() -> AllowList {
    AllowList::new(
        [
            "greentic.messaging.ingress.>",
            "greentic.messaging.egress.>",
        ]
        .into_iter()
        .map(|p| Pattern::parse(p).unwrap())
        .collect(),
    )
}

/// Subjects near the real ones: the messaging prefix, then tokens drawn from
/// ids, near-ids and hostile text.
fn subject() -> impl Strategy<Value = String> {
    let token = prop_oneof![
        "[a-z0-9][a-z0-9_-]{0,8}",
        "[a-zA-Z0-9_.*> -]{0,6}",
        Just(">".to_owned()),
        Just("*".to_owned()),
        Just(String::new()),
        ".{0,4}",
    ];
    (
        prop_oneof![
            Just("greentic.messaging.ingress".to_owned()),
            Just("greentic.messaging.egress".to_owned()),
            Just("greentic.dlq.messaging.ingress".to_owned()),
            ".{0,12}",
        ],
        prop::collection::vec(token, 0..7),
    )
        .prop_map(|(head, tokens)| {
            std::iter::once(head)
                .chain(tokens)
                .collect::<Vec<_>>()
                .join(".")
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases()))]

    #[test]
    fn an_accepted_subject_is_seven_valid_tokens(subject in subject()) {
        if allow_list().check(&subject).is_ok() {
            let tokens: Vec<&str> = subject.split('.').collect();
            prop_assert_eq!(tokens.len(), 7);
            prop_assert!(tokens[3..].iter().all(|t| is_id(t)), "{}", subject);
            let scope = SubjectScope::parse(&subject).unwrap();
            prop_assert!([scope.env, scope.tenant, scope.team, scope.channel].iter().all(|t| is_id(t)));
        }
    }

    #[test]
    fn scope_parsing_never_panics_and_only_reads_messaging_subjects(subject in ".{0,80}") {
        if let Some(scope) = SubjectScope::parse(&subject) {
            prop_assert!(subject.contains(scope.tenant));
        }
    }

    #[test]
    fn an_accepted_message_id_is_short_and_plain(id in ".{0,220}") {
        if is_msg_id(&id) {
            prop_assert!(!id.is_empty() && id.len() <= 200);
            prop_assert!(id.bytes().all(|b| b.is_ascii_alphanumeric() || b"._:-".contains(&b)));
        }
    }

    #[test]
    fn a_pattern_parses_or_is_refused_without_panicking(raw in ".{0,40}") {
        let _ = Pattern::parse(&raw);
    }
}
