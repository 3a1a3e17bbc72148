//! The session API as a user meets it: list, get, delete, pages, filters,
//! logs and failures downstream.

use e2e_tests::{Call, Platform, Target, assert_problem, token};
use greentic::TenantCtx;
use greentic::service::auth::VAR_HS256_SECRET;
use greentic::store::session::{Direction, SessionState, SessionStatus};
use greentic::store::sessions::SessionStore;
use serde_json::json;

e2e_tests::on_every_target!(
    list_shows_the_callers_sessions_newest_first,
    get_returns_the_session_with_its_state_and_transcript,
    delete_needs_a_writer_and_removes_record_state_and_index,
    pagination_over_a_thousand_sessions_lists_each_once_in_a_stable_order,
    filters_narrow_the_listing,
    every_log_line_carries_the_scope_and_no_credentials,
    a_response_carries_the_request_id,
    a_store_outage_is_503_and_changes_nothing,
    without_a_verification_key_nothing_is_served,
    an_export_pages_through_every_session_of_the_scope_with_transcript_and_state,
);

fn support() -> TenantCtx {
    TenantCtx::new("acme", "prod", Some("support")).unwrap()
}

fn list_shows_the_callers_sessions_newest_first(target: Target) {
    let mut p = Platform::empty(target);
    let first = p.add_session(&support(), "slack", "U1");
    let second = p.add_session(&support(), "telegram", "U2");
    let r = p.call(
        Call::with(&token("acme", "prod"))
            .team("support")
            .request("GET", "/api/v1/sessions"),
    );
    assert_eq!(r.status, 200);
    let body = r.json_body();
    let ids: Vec<&str> = body["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [second.as_str(), first.as_str()]);
    assert_eq!(body["next_cursor"], serde_json::Value::Null);
    let s = &body["sessions"][1];
    assert_eq!(
        (s["tenant"].as_str(), s["env"].as_str(), s["team"].as_str()),
        (Some("acme"), Some("prod"), Some("support"))
    );
    assert_eq!(s["channel"], "slack");
    assert_eq!(s["status"], "active");
    assert_eq!(s["created_at"], "2026-11-28T12:00:00.000Z");
    assert!(
        s.get("transcript").is_none(),
        "listing leaves transcripts out"
    );
}

fn get_returns_the_session_with_its_state_and_transcript(target: Target) {
    let mut p = Platform::empty(target);
    let id = p.add_session(&support(), "slack", "U1");
    let store = SessionStore::new(p.kv());
    store
        .update(&support(), &id, 1, |r| {
            r.record_message(Direction::Inbound, "where is my order?", 1_795_867_201_000)
        })
        .unwrap();
    let mut state = SessionState::new();
    state.insert("order_number".into(), json!("A-1001"));
    store.put_state(&support(), &id, &state).unwrap();

    // Without X-Team-ID the session is found through its locator.
    for call in [
        Call::with(&token("acme", "prod")),
        Call::with(&token("acme", "prod")).team("support"),
    ] {
        let r = p.call(call.request("GET", &format!("/api/v1/sessions/{id}")));
        assert_eq!(r.status, 200);
        let body = r.json_body();
        assert_eq!(body["id"], id.as_str());
        assert_eq!(body["state"], json!({ "order_number": "A-1001" }));
        assert_eq!(body["transcript"][0]["text"], "where is my order?");
        assert_eq!(body["transcript"][0]["direction"], "inbound");
        assert_eq!(body["message_count"], 1);
    }
}

fn delete_needs_a_writer_and_removes_record_state_and_index(target: Target) {
    let mut p = Platform::empty(target);
    let id = p.add_session(&support(), "slack", "U1");
    let keep = p.add_session(&support(), "slack", "U2");
    SessionStore::new(p.kv())
        .put_state(&support(), &id, &SessionState::new())
        .unwrap();
    let path = format!("/api/v1/sessions/{id}");

    let before = p.kv().snapshot();
    let reader = Call::with(&token("acme", "prod"));
    assert_problem(&p.call(reader.request("DELETE", &path)), 403, "forbidden");
    assert_eq!(p.kv().snapshot(), before);

    let writer = Call::with(&token("acme", "prod").roles(&["writer"]));
    let r = p.call(writer.request("DELETE", &path));
    assert_eq!(r.status, 204);
    assert_problem(&p.call(writer.request("GET", &path)), 404, "not-found");
    assert_problem(&p.call(writer.request("DELETE", &path)), 404, "not-found");
    let left = p.kv().snapshot();
    assert!(
        left.keys().all(|k| !k.contains(id.as_str())),
        "keys of the deleted session remain: {left:?}"
    );
    assert_eq!(p.list_all(&reader, 10).unwrap(), [keep.as_str()]);
    let admin = Call::with(&token("acme", "prod").roles(&["admin"])).team("support");
    assert_eq!(
        p.call(admin.request("DELETE", &format!("/api/v1/sessions/{keep}")))
            .status,
        204
    );
}

fn pagination_over_a_thousand_sessions_lists_each_once_in_a_stable_order(target: Target) {
    let mut p = Platform::empty(target);
    let mut created: Vec<String> = (0..1_100)
        .map(|i| {
            p.add_session(&support(), "slack", &format!("U{i}"))
                .to_string()
        })
        .collect();
    created.reverse();
    let caller = Call::with(&token("acme", "prod")).team("support");
    let first = p.list_all(&caller, 37).unwrap();
    assert_eq!(first, created);
    assert_eq!(
        p.list_all(&caller, 200).unwrap(),
        first,
        "page size does not change the order"
    );
    let env_wide = Call::with(&token("acme", "prod"));
    assert_eq!(p.list_all(&env_wide, 200).unwrap(), created);
}

fn filters_narrow_the_listing(target: Target) {
    let mut p = Platform::empty(target);
    let slack = p.add_session(&support(), "slack", "U1");
    p.set_now_ms(1_795_870_800_000); // one hour later
    let telegram = p.add_session(&support(), "telegram", "U2");
    SessionStore::new(p.kv())
        .update(&support(), &telegram, 1_795_870_800_000, |r| {
            r.status = SessionStatus::Waiting
        })
        .unwrap();
    let caller = Call::with(&token("acme", "prod"));
    let ids = |query: &str| -> Vec<String> {
        let r = p.call(caller.request("GET", &format!("/api/v1/sessions?{query}")));
        assert_eq!(r.status, 200, "{query}: {}", r.json_body());
        r.json_body()["sessions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["id"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(ids("channel=slack"), [slack.to_string()]);
    assert_eq!(ids("status=waiting"), [telegram.to_string()]);
    assert_eq!(ids("status=ended"), Vec::<String>::new());
    assert_eq!(
        ids("updated_since=2026-11-28T12:30:00Z"),
        [telegram.to_string()]
    );
    assert_eq!(
        ids("updated_since=2026-11-28T12:00:00Z&channel=slack&limit=5"),
        [slack.to_string()]
    );
}

fn every_log_line_carries_the_scope_and_no_credentials(target: Target) {
    let mut p = Platform::empty(target);
    let id = p.add_session(&support(), "slack", "U1");
    let caller = Call::with(&token("acme", "prod").roles(&["writer"])).team("support");
    let bearer = caller.token.clone().unwrap();
    p.call(
        caller
            .request("GET", "/api/v1/sessions")
            .with_header("x-request-id", "req-42"),
    );
    p.call(caller.request("DELETE", &format!("/api/v1/sessions/{id}")));
    p.call(
        Call::with(&token("acme", "prod"))
            .tenant("Bad.Tenant")
            .request("GET", "/api/v1/sessions"),
    );
    let logs = p.logs();
    assert_eq!(logs.len(), 4, "{logs:#?}");
    for line in &logs {
        for field in [
            "ts_ms",
            "level",
            "component",
            "request_id",
            "tenant",
            "env",
            "team",
            "event",
        ] {
            assert!(line.get(field).is_some(), "{field} missing in {line}");
        }
        assert_eq!(line["component"], "session-api");
    }
    // Each request's access-log line says how long it took.
    let access: Vec<_> = logs.iter().filter(|l| l["event"] == "request").collect();
    assert_eq!(access.len(), 3);
    assert!(
        access
            .iter()
            .all(|l| l["duration_ms"].as_f64().is_some_and(|d| d >= 0.0)),
        "{access:#?}"
    );
    assert_eq!(logs[0]["request_id"], "req-42");
    assert_eq!(
        (&logs[0]["tenant"], &logs[0]["env"], &logs[0]["team"]),
        (&json!("acme"), &json!("prod"), &json!("support"))
    );
    assert_eq!(logs[1]["event"], "session.deleted");
    assert_eq!(logs[1]["session_id"], id.as_str());
    // A request refused before its scope is known logs nulls, not the raw input.
    assert_eq!(logs[3]["tenant"], serde_json::Value::Null);
    let raw = p.raw_logs();
    assert!(
        !raw.contains(&bearer) && !raw.contains("Bad.Tenant"),
        "{raw}"
    );
}

fn a_response_carries_the_request_id(target: Target) {
    let p = Platform::empty(target);
    let r = p.call(
        Call::with(&token("acme", "prod"))
            .request("GET", "/api/v1/sessions")
            .with_header("x-request-id", "abc-1"),
    );
    assert_eq!(r.header("x-request-id"), Some("abc-1"));
    let r = p.call(
        Call::with(&token("acme", "prod"))
            .request("GET", "/api/v1/sessions")
            .with_header("x-request-id", "{\"forged\":1}"),
    );
    let generated = r.header("x-request-id").unwrap();
    assert_eq!(
        generated.len(),
        32,
        "an unsafe request id is replaced: {generated}"
    );
}

fn a_store_outage_is_503_and_changes_nothing(target: Target) {
    let mut p = Platform::empty(target);
    let id = p.add_session(&support(), "slack", "U1");
    let before = p.kv().snapshot();
    let writer = Call::with(&token("acme", "prod").roles(&["writer"]));
    // Both requests take three store operations; fail each one in turn.
    for fail_after in 0..3 {
        p.kv().fail_after(fail_after);
        for req in [
            writer.request("GET", "/api/v1/sessions"),
            writer.request("GET", &format!("/api/v1/sessions/{id}")),
        ] {
            let r = p.call(req);
            assert_problem(&r, 503, "unavailable");
            assert_eq!(r.header("retry-after"), Some("5"));
        }
        p.kv().recover();
        assert_eq!(p.kv().snapshot(), before);
    }
    // A delete cut short answers 503; its retry finishes the job.
    p.kv().fail_after(4);
    assert_problem(
        &p.call(writer.request("DELETE", &format!("/api/v1/sessions/{id}"))),
        503,
        "unavailable",
    );
    p.kv().recover();
    assert_eq!(
        p.call(writer.request("DELETE", &format!("/api/v1/sessions/{id}")))
            .status,
        204
    );
    assert_eq!(p.list_all(&writer, 10).unwrap(), Vec::<String>::new());
}

fn without_a_verification_key_nothing_is_served(target: Target) {
    let mut p = Platform::empty(target);
    p.add_session(&support(), "slack", "U1");
    p.set_variable(VAR_HS256_SECRET, "");
    let ops = p.kv().ops();
    let r = p.call(Call::with(&token("acme", "prod")).request("GET", "/api/v1/sessions"));
    assert_problem(&r, 503, "not-configured");
    assert_eq!(p.kv().ops(), ops, "the store is not touched");
}

fn an_export_pages_through_every_session_of_the_scope_with_transcript_and_state(target: Target) {
    let mut p = Platform::seeded(target);
    let id = p.add_session(&support(), "slack", "U-export");
    let store = SessionStore::new(p.kv());
    store
        .update(&support(), &id, 1, |r| {
            r.record_message(Direction::Inbound, "export me", 1_795_867_201_000)
        })
        .unwrap();
    let mut state = SessionState::new();
    state.insert("name".into(), json!("Dana"));
    store.put_state(&support(), &id, &state).unwrap();

    let admin = Call::with(&token("acme", "prod").roles(&["admin"]));
    let lines = p.export_all(&admin, 2);
    let mut exported: Vec<String> = lines
        .iter()
        .map(|l| l["id"].as_str().unwrap().to_owned())
        .collect();
    let mut expected: Vec<String> = p
        .sessions_in(|c| c.tenant_id() == "acme" && c.env_id() == "prod")
        .iter()
        .map(ToString::to_string)
        .collect();
    exported.sort();
    expected.sort();
    assert_eq!(exported, expected, "each session of acme/prod exactly once");
    let line = lines.iter().find(|l| l["id"] == id.as_str()).unwrap();
    assert_eq!(line["transcript"][0]["text"], "export me");
    assert_eq!(line["state"], json!({ "name": "Dana" }));

    // A team-limited admin exports its team only.
    let team_admin = Call::with(&token("acme", "prod").teams(&["sales"]).roles(&["admin"]));
    let sales: Vec<String> = p
        .export_all(&team_admin, 100)
        .iter()
        .map(|l| l["team"].as_str().unwrap_or("default").to_owned())
        .collect();
    assert!(
        !sales.is_empty() && sales.iter().all(|t| t == "sales"),
        "{sales:?}"
    );

    // Only admins export; a bad page size is refused before anything is read.
    for role in [None, Some("writer")] {
        let tok = match role {
            Some(r) => token("acme", "prod").roles(&[r]),
            None => token("acme", "prod"),
        };
        let r = p.call(Call::with(&tok).request("GET", "/api/v1/export"));
        assert_problem(&r, 403, "forbidden");
    }
    assert_problem(
        &p.call(admin.request("GET", "/api/v1/export?limit=101")),
        400,
        "bad-request",
    );
}
