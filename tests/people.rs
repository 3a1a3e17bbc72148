//! Erasing a person (`DELETE /api/v1/people/{channel}/{user}`, GDPR art. 17)
//! as a tenant's admin meets it: every session of the person in the caller's
//! scope goes with its transcript, state, index entries, web chat log and
//! send progress; nothing else changes; a second erasure finds nothing; the
//! audit line names no one. The stores are scanned by the test (never by the
//! product). Natively, in wasm, and in wasm on Redis.

use std::collections::BTreeMap;

use e2e_tests::{Call, Platform, Target, assert_problem, token};
use greentic::TenantCtx;
use greentic::store::kv::{KeyValue, TestKv};
use greentic::store::webchat_log::ConversationLog;
use greentic::tenancy::ids::{ChannelId, ConversationId, SessionId};
use greentic::tenancy::keys;
use greentic::testing::bot_activity;
use serde_json::json;

e2e_tests::on_every_target!(
    erasing_a_person_removes_their_sessions_in_scope_and_nothing_else,
    a_team_admin_erases_only_in_its_team,
    a_web_chat_visitors_log_and_send_progress_go_with_them,
    erasure_is_for_admins_and_bad_or_unknown_people_change_nothing,
);

const STORES: &[&str] = &["sessions", "webchat", "egress", "limits", "config"];

/// The stores a person's data could be in (the limits store counts every
/// admitted call, refused ones included, and holds no one's data).
const DATA_STORES: &[&str] = &["sessions", "webchat", "egress", "config"];

fn ctx(tenant: &str, env: &str, team: Option<&str>) -> TenantCtx {
    TenantCtx::new(tenant, env, team).unwrap()
}

fn admin(tenant: &str, env: &str) -> Call {
    Call::with(&token(tenant, env).roles(&["admin"]))
}

fn erase(p: &Platform, call: &Call, channel: &str, user: &str) -> greentic::http::Response {
    p.call(call.request("DELETE", &format!("/api/v1/people/{channel}/{user}")))
}

fn snapshot(p: &Platform) -> BTreeMap<&'static str, BTreeMap<String, Vec<u8>>> {
    DATA_STORES
        .iter()
        .map(|l| (*l, p.store(l).snapshot()))
        .collect()
}

/// Fails naming the keys that differ (the values are too long to show).
#[track_caller]
fn assert_unchanged(p: &Platform, before: &BTreeMap<&'static str, BTreeMap<String, Vec<u8>>>) {
    let after = snapshot(p);
    let changed: Vec<String> = DATA_STORES
        .iter()
        .flat_map(|l| {
            let (b, a) = (&before[l], &after[l]);
            b.keys()
                .chain(a.keys())
                .filter(|k| b.get(*k) != a.get(*k))
                .map(|k| format!("{l}: {k}"))
                .collect::<Vec<_>>()
        })
        .collect();
    assert!(changed.is_empty(), "changed: {changed:?}");
}

/// Every key of every store that names one of `sessions`.
fn keys_naming(p: &Platform, sessions: &[SessionId]) -> Vec<String> {
    STORES
        .iter()
        .flat_map(|l| p.store(l).snapshot().into_keys())
        .filter(|k| sessions.iter().any(|s| k.contains(s.as_str())))
        .collect()
}

fn exists(p: &Platform, ctx: &TenantCtx, id: &SessionId) -> bool {
    p.kv()
        .get(&keys::session_record(ctx, id))
        .unwrap()
        .is_some()
}

fn erasing_a_person_removes_their_sessions_in_scope_and_nothing_else(target: Target) {
    let mut p = Platform::seeded(target);
    let erased: Vec<(TenantCtx, SessionId)> = [Some("support"), Some("sales"), None]
        .into_iter()
        .map(|team| {
            let c = ctx("acme", "prod", team);
            (c.clone(), p.add_session(&c, "slack", "U-DANA"))
        })
        .collect();
    // Dana in another env, another tenant, and on another channel: not asked for.
    let kept: Vec<(TenantCtx, SessionId)> = [
        (ctx("acme", "staging", Some("support")), "slack"),
        (ctx("bigcorp", "prod", Some("support")), "slack"),
        (ctx("acme", "prod", Some("support")), "telegram"),
    ]
    .into_iter()
    .map(|(c, channel)| (c.clone(), p.add_session(&c, channel, "U-DANA")))
    .collect();
    let others: Vec<(TenantCtx, SessionId)> = p
        .sessions
        .iter()
        .filter(|s| !erased.contains(s))
        .cloned()
        .collect();

    let r = erase(&p, &admin("acme", "prod"), "slack", "U-DANA");
    assert_eq!(r.status, 200, "{}", r.json_body());
    assert_eq!(
        r.json_body(),
        json!({ "sessions": 3, "webchat_activities": 0, "egress_records": 0, "complete": true })
    );
    let ids: Vec<SessionId> = erased.iter().map(|(_, id)| id.clone()).collect();
    assert_eq!(keys_naming(&p, &ids), Vec::<String>::new());
    // Nor is Dana's index in acme/prod: nothing of hers is left there.
    let slack = ChannelId::parse("slack").unwrap();
    let dana = keys::person_index(&ctx("acme", "prod", None), &slack, "U-DANA");
    assert_eq!(p.kv().get(&dana.seq()).unwrap(), None);
    for (c, id) in &erased {
        let got = p.call(
            admin("acme", "prod")
                .request("GET", &format!("/api/v1/sessions/{id}"))
                .with_header("x-team-id", c.team_token()),
        );
        assert_problem(&got, 404, "not-found");
    }
    for (c, id) in kept.iter().chain(&others) {
        assert!(exists(&p, c, id), "{c:?} {id} was not Dana's here");
    }
    // The audit line says who erased how much, never whom.
    let audit: Vec<_> = p
        .logs()
        .into_iter()
        .filter(|l| l["event"] == "person.erased")
        .collect();
    assert_eq!(audit.len(), 1);
    assert_eq!(audit[0]["erased"]["sessions"], 3);
    assert!(!p.raw_logs().contains("U-DANA"));

    // Again: nothing left to erase, and nothing changes.
    let before = snapshot(&p);
    assert_problem(
        &erase(&p, &admin("acme", "prod"), "slack", "U-DANA"),
        404,
        "not-found",
    );
    assert_unchanged(&p, &before);
}

fn a_team_admin_erases_only_in_its_team(target: Target) {
    let mut p = Platform::empty(target);
    let support = ctx("acme", "prod", Some("support"));
    let sales = ctx("acme", "prod", Some("sales"));
    let in_support = p.add_session(&support, "slack", "U-DANA");
    let in_sales = p.add_session(&sales, "slack", "U-DANA");
    let support_admin = Call::with(&token("acme", "prod").teams(&["support"]).roles(&["admin"]));
    let r = erase(&p, &support_admin, "slack", "U-DANA");
    assert_eq!(r.json_body()["sessions"], 1, "{}", r.json_body());
    assert!(!exists(&p, &support, &in_support));
    assert!(
        exists(&p, &sales, &in_sales),
        "sales is not the support admin's"
    );
    // Nothing of Dana is left in support: the support admin finds no one.
    assert_problem(
        &erase(&p, &support_admin, "slack", "U-DANA"),
        404,
        "not-found",
    );
    let r = erase(&p, &admin("acme", "prod"), "slack", "U-DANA");
    assert_eq!(r.json_body()["sessions"], 1);
    assert!(!exists(&p, &sales, &in_sales));
}

fn a_web_chat_visitors_log_and_send_progress_go_with_them(target: Target) {
    let p = Platform::empty(target);
    let helpdesk = ctx("bigcorp", "prod", Some("helpdesk"));
    let channel = ChannelId::parse("webchat").unwrap();
    let conversation = ConversationId::parse("wc-visitor-1").unwrap();
    let new = greentic::store::session::NewSession {
        channel: channel.clone(),
        provider: "messaging-webchat".into(),
        conversation: greentic::tenancy::ids::Conversation {
            id: conversation.as_str().into(),
            thread: None,
        },
        user_id: "u-visitor".into(),
        flow: None,
    };
    let store = greentic::store::sessions::SessionStore::new(p.kv());
    let id = store.create(&helpdesk, new, 1).unwrap().id;
    let webchat: &TestKv = p.store("webchat");
    let log = ConversationLog::new(webchat, &helpdesk, &channel, &conversation);
    for n in 0..2 {
        log.append(&bot_activity(
            &format!("reply-{n}"),
            "BigCorp Helpdesk here.",
        ))
        .unwrap();
    }
    // Another visitor's conversation stays.
    let other = ConversationId::parse("wc-visitor-2").unwrap();
    let other_log = ConversationLog::new(webchat, &helpdesk, &channel, &other);
    other_log.append(&bot_activity("other", "hello")).unwrap();
    let other_keys = webchat.snapshot().len();
    p.store("egress")
        .set(&keys::egress_progress(&helpdesk, &id), b"progress")
        .unwrap();

    let r = erase(&p, &admin("bigcorp", "prod"), "webchat", "u-visitor");
    assert_eq!(
        r.json_body(),
        json!({ "sessions": 1, "webchat_activities": 2, "egress_records": 1, "complete": true })
    );
    // Only the other conversation's log (its counter, activity and marker) is left.
    let left: Vec<String> = webchat.snapshot().into_keys().collect();
    assert_eq!(left.len(), other_keys - 5, "{left:?}");
    assert_eq!(log.read_after(0).unwrap().0, Vec::new());
    assert_eq!(other_log.read_after(0).unwrap().0.len(), 1);
    assert_eq!(p.store("egress").snapshot().len(), 0);
}

fn erasure_is_for_admins_and_bad_or_unknown_people_change_nothing(target: Target) {
    let mut p = Platform::empty(target);
    let support = ctx("acme", "prod", Some("support"));
    p.add_session(&support, "slack", "U-DANA");
    let before = snapshot(&p);
    for role in [None, Some("writer")] {
        let tok = match role {
            Some(r) => token("acme", "prod").roles(&[r]),
            None => token("acme", "prod"),
        };
        assert_problem(
            &erase(&p, &Call::with(&tok), "slack", "U-DANA"),
            403,
            "forbidden",
        );
    }
    assert_problem(
        &erase(&p, &admin("bigcorp", "prod"), "slack", "U-DANA"),
        404,
        "not-found",
    );
    assert_problem(
        &erase(&p, &admin("acme", "staging"), "slack", "U-DANA"),
        404,
        "not-found",
    );
    assert_problem(
        &erase(&p, &admin("acme", "prod"), "slack", "U-NOBODY"),
        404,
        "not-found",
    );
    assert_problem(
        &erase(&p, &admin("acme", "prod"), "Slack!", "U-DANA"),
        400,
        "invalid-id",
    );
    let long = "u".repeat(257);
    assert_problem(
        &erase(&p, &admin("acme", "prod"), "slack", &long),
        400,
        "bad-request",
    );
    let get = p.call(admin("acme", "prod").request("GET", "/api/v1/people/slack/U-DANA"));
    assert_problem(&get, 405, "method-not-allowed");
    assert_unchanged(&p, &before);
}
