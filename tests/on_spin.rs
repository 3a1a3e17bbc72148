//! The product under the real Spin (`spin build` + `spin up` of spin.toml),
//! with nats-server, the bridge and fake provider APIs, once with the stores
//! in SQLite files and once on redis-server (SpinKube's configuration): what
//! the wasmtime test host cannot prove, because it is our own model of Spin.
//! tests/README.md lists where the two differ and which test here covers it.

use e2e_tests::on_real_spin;
use greentic::TenantCtx;
use greentic::tenancy::ids::{ChannelId, Conversation, SessionId};
use greentic_bridge::testing::DELIVERY_TOKEN;
use greentic_harness::spin_up::{
    Kv, RealPlatform, SLACK_BOT_TOKEN, TELEGRAM_BOT_TOKEN, WEBCHAT_TOKEN_SECRET, platform, unique,
};
use serde_json::{Value, json};

on_real_spin!(
    every_provider_webhook_reaches_its_flow_and_its_reply_goes_out,
    twenty_turns_of_one_conversation_are_exact_after_every_turn,
    quick_answers_are_applied_and_answered_in_the_order_they_were_sent,
    a_telegram_conversation_is_exact_after_every_turn,
    a_redelivered_message_is_applied_once,
    two_messages_to_one_session_at_once_both_land,
    one_tenant_cannot_reach_anothers_sessions,
    secrets_are_put_read_and_listed_without_values,
    a_person_talks_to_bigcorps_flow_in_the_web_chat_page,
    a_header_that_is_not_utf8_is_answered_by_spin_itself,
    a_signed_slack_body_of_the_largest_size_is_verified_and_published,
    rest_calls_over_a_subjects_quota_are_refused_with_429_and_rate_limit_headers,
    a_tenant_onboarded_changed_rolled_back_and_suspended_at_runtime,
    a_person_is_erased_and_the_retention_sweep_runs_on_spins_stores,
    a_tenant_is_deleted_with_everything_of_it_from_spins_stores_and_the_streams,
);

/// Spin opens its SQLite stores in the journal mode the file has, and the
/// platform leaves them in WAL mode (scripts/sqlite-wal, as scripts/dev does):
/// one disk flush per write transaction instead of several. After a message
/// was stored, the file says WAL in its header (bytes 18 and 19 are 2 in WAL
/// mode, 1 with a rollback journal: https://www.sqlite.org/fileformat.html,
/// 1.3.3) and its write-ahead log exists beside it.
#[test]
fn spins_sqlite_stores_run_in_wal_mode() {
    let p = platform(Kv::Sqlite);
    let (status, body) = p.telegram(unique_number(), unique_number(), "hi", unique_number());
    assert_eq!(status, 200, "{body}");
    let file = p.sqlite_file("sessions").unwrap();
    p.eventually("the executor wrote the session", || {
        std::fs::metadata(file.with_extension("db-wal")).is_ok_and(|m| m.len() > 0)
    });
    let header = std::fs::read(&file).unwrap();
    assert_eq!(
        header[18..20],
        [2, 2],
        "{} is not in WAL mode",
        file.display()
    );
}

// ---- the ACME support flow (bundles/flows/acme_support_flow.yaml) ----------

/// What the ACME flow answers to each message of a conversation that says
/// hi, a name, an order number and a topic, over and over.
fn acme_turn(turn: usize) -> (&'static str, Vec<&'static str>) {
    match turn % 4 {
        0 => (
            "hi",
            vec![
                "Welcome to ACME Support! How can I help?",
                "May I have your name?",
            ],
        ),
        1 => ("Dana", vec!["Thanks Dana! What is your order number?"]),
        2 => (
            "12345",
            vec!["Got it, order 12345. Is it about a refund, a delivery, or something else?"],
        ),
        _ => (
            "where is my delivery?",
            vec![
                "Dana, order 12345 is with the carrier. I have asked them for an update and will message you here.",
            ],
        ),
    }
}

fn acme_status(turn: usize) -> &'static str {
    if turn % 4 == 3 { "active" } else { "waiting" }
}

fn ctx(tenant: &str, env: &str, team: &str) -> TenantCtx {
    TenantCtx::new(tenant, env, Some(team)).unwrap()
}

fn session_id(
    ctx: &TenantCtx,
    channel: &str,
    conversation: &str,
    thread: Option<&str>,
    user: &str,
) -> SessionId {
    SessionId::derive(
        ctx,
        &ChannelId::parse(channel).unwrap(),
        &Conversation {
            id: conversation.into(),
            thread: thread.map(str::to_owned),
        },
        user,
    )
}

/// The session as the session API shows it (`None` while it does not exist).
fn session(p: &RealPlatform, ctx: &TenantCtx, id: &SessionId) -> Option<Value> {
    let token = p.token(ctx.tenant_id(), ctx.env_id());
    let (status, body) = p.call(
        "GET",
        &format!("/api/v1/sessions/{id}"),
        &[
            ("authorization", &token.bearer()),
            ("x-tenant-id", ctx.tenant_id()),
            ("x-env-id", ctx.env_id()),
            ("x-team-id", ctx.team_id().unwrap_or("default")),
        ],
        None,
    );
    match status {
        200 => Some(body),
        404 => None,
        other => panic!("GET session: {other} {body}"),
    }
}

/// Waits until the session shows `count` messages, then returns it.
fn session_at(p: &RealPlatform, ctx: &TenantCtx, id: &SessionId, count: u64) -> Value {
    let mut seen = None;
    p.eventually(&format!("the session reaches {count} messages"), || {
        seen = session(p, ctx, id);
        seen.as_ref()
            .is_some_and(|s| s["message_count"].as_u64() >= Some(count))
    });
    let seen = seen.unwrap();
    assert_eq!(seen["message_count"], count, "{seen}");
    seen
}

fn transcript(session: &Value) -> Vec<(String, String)> {
    session["transcript"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["direction"].as_str().unwrap().to_owned(),
                e["text"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// The transcript a conversation of `turns` ACME turns must show: its
/// latest 20 entries, in order.
fn expected_transcript(turns: usize) -> Vec<(String, String)> {
    let mut all = Vec::new();
    for turn in 0..turns {
        let (text, replies) = acme_turn(turn);
        all.push(("inbound".to_owned(), text.to_owned()));
        all.extend(
            replies
                .iter()
                .map(|r| ("outbound".to_owned(), r.to_string())),
        );
    }
    all[all.len().saturating_sub(20)..].to_vec()
}

fn usage(p: &RealPlatform, ctx: &TenantCtx) -> Value {
    let token = p.token(ctx.tenant_id(), ctx.env_id());
    let (status, body) = p.call(
        "GET",
        "/api/v1/usage",
        &[
            ("authorization", &token.bearer()),
            ("x-tenant-id", ctx.tenant_id()),
            ("x-env-id", ctx.env_id()),
            ("x-team-id", ctx.team_id().unwrap_or("default")),
        ],
        None,
    );
    assert_eq!(status, 200, "{body}");
    body["totals"].clone()
}

// ---- tests ------------------------------------------------------------------

fn every_provider_webhook_reaches_its_flow_and_its_reply_goes_out(kv: Kv) {
    let p = platform(kv);

    // Slack, in a thread of its own: the greeting goes back to that thread.
    let thread = unique_thread();
    let (status, body) = p.slack(&unique("Ev"), &unique("U"), "hi", &thread);
    assert_eq!(
        (status, &body["status"]),
        (200, &json!("published")),
        "{body}"
    );
    p.eventually("Slack gets the two greeting replies", || {
        slack_posts(p, &thread).len() == 2
    });
    let posts = slack_posts(p, &thread);
    assert_eq!(posts[0].0, format!("Bearer {SLACK_BOT_TOKEN}"));
    assert_eq!(posts[0].1, "Welcome to ACME Support! How can I help?");
    assert_eq!(posts[1].1, "May I have your name?");

    // Telegram, in a forum topic of its own.
    let topic = unique_number();
    let (status, body) = p.telegram(unique_number(), unique_number(), "hi", topic);
    assert_eq!(
        (status, &body["status"]),
        (200, &json!("published")),
        "{body}"
    );
    p.eventually("Telegram gets the two greeting replies", || {
        telegram_sends(p, topic).len() == 2
    });

    // Teams: verified with keys fetched from (fake) Bot Framework's OpenID
    // metadata and cached; the replies go to the activity's service URL with
    // a token from the (fake) login endpoint.
    let (conversation, from) = (unique("19:conv"), unique("29:user"));
    let (status, body) = p.teams(&unique("act"), &from, &conversation, "hi");
    assert_eq!(
        (status, &body["status"]),
        (200, &json!("published")),
        "{body}"
    );
    let sales = ctx("acme", "prod", "sales");
    let id = session_id(&sales, "teams", &conversation, None, &from);
    let shown = session_at(p, &sales, &id, 3);
    assert_eq!(transcript(&shown), expected_transcript(1));
    p.eventually("Bot Framework gets the two greeting replies", || {
        p.provider_calls()
            .iter()
            .filter(|c| {
                c.path
                    .contains(&format!("/v3/conversations/{}", encode(&conversation)))
            })
            .count()
            == 2
    });
    let fetched_keys = p
        .provider_calls()
        .iter()
        .filter(|c| c.path.starts_with("/v1/.well-known/"))
        .count();
    assert!(
        fetched_keys <= 2 * 2,
        "keys are cached, not fetched per message"
    );

    // Web chat: a token from the site's secret, a message, the reply in the log.
    let (status, chat) = p.call(
        "POST",
        "/webhooks/prod/bigcorp/helpdesk/webchat/tokens",
        &[("authorization", &format!("Bearer {WEBCHAT_TOKEN_SECRET}"))],
        Some(br#"{"user_name":"Dana"}"#.to_vec()),
    );
    assert_eq!(status, 200, "{chat}");
    let bearer = format!("Bearer {}", chat["token"].as_str().unwrap());
    let (status, body) = p.call(
        "POST",
        "/webhooks/prod/bigcorp/helpdesk/webchat",
        &[("authorization", &bearer)],
        Some(
            json!({"type": "message", "id": "m1", "text": "hi"})
                .to_string()
                .into_bytes(),
        ),
    );
    assert_eq!(
        (status, &body["status"]),
        (200, &json!("published")),
        "{body}"
    );
    p.eventually("the web chat log holds the bot's greeting", || {
        let (status, log) = p.call(
            "GET",
            "/webchat/v1/prod/bigcorp/helpdesk/webchat/activities",
            &[("authorization", &bearer)],
            None,
        );
        status == 200
            && log["activities"].as_array().is_some_and(|a| {
                a.iter()
                    .any(|m| m["text"] == "BigCorp Helpdesk here. What's your issue?")
            })
    });
}

fn twenty_turns_of_one_conversation_are_exact_after_every_turn(kv: Kv) {
    let p = platform(kv);
    // acme/staging is this test's alone, so its usage counts are exact.
    let staging = ctx("acme", "staging", "support");
    let before = usage(p, &staging);
    let (user, thread) = (unique("U"), unique_thread());
    let id = session_id(&staging, "slack", "C789012", Some(&thread), &user);
    let mut count = 0;
    let mut replies = 0;
    for turn in 0..20 {
        let (text, answers) = acme_turn(turn);
        slack_message(p, "staging", &user, text, &thread);
        count += 1 + answers.len() as u64;
        replies += answers.len() as u64;
        let shown = session_at(p, &staging, &id, count);
        assert_eq!(
            transcript(&shown),
            expected_transcript(turn + 1),
            "after turn {turn}"
        );
        assert_eq!(shown["status"], acme_status(turn), "after turn {turn}");
        assert_eq!(
            shown["state"]["name"],
            if turn >= 1 {
                json!("Dana")
            } else {
                Value::Null
            }
        );
        // This test checks each turn's replies as they come, so it waits.
        p.eventually("the turn's replies reach Slack", || {
            slack_posts(p, &thread).len() as u64 == replies
        });
    }
    assert_eq!(count, 45);
    let sent: Vec<String> = slack_posts(p, &thread)
        .into_iter()
        .map(|(_, t)| t)
        .collect();
    let expected: Vec<String> = (0..20)
        .flat_map(|t| acme_turn(t).1.into_iter().map(str::to_owned))
        .collect();
    assert_eq!(sent, expected, "each reply once, in order");
    let after = usage(p, &staging);
    assert_eq!(
        after["messages_in"].as_i64().unwrap() - before["messages_in"].as_i64().unwrap(),
        20
    );
    assert_eq!(
        after["replies_out"].as_i64().unwrap() - before["replies_out"].as_i64().unwrap(),
        replies as i64
    );
    let failed: Vec<Value> = p
        .component_log("flow-executor")
        .into_iter()
        .filter(|l| {
            l["event"] == "request"
                && l["status"] != 200
                && l["tenant"] == "acme"
                && l["env"] == "staging"
        })
        .collect();
    assert!(
        failed.is_empty(),
        "the executor refused a delivery: {failed:?}"
    );
}

/// The issue's own example: a person who answers "Dana" then "12345" in
/// quick succession has them applied in that order, although the bridge
/// delivers 16 messages at once (tests/harness: concurrency 16): the four
/// messages go out without waiting for any reply.
fn quick_answers_are_applied_and_answered_in_the_order_they_were_sent(kv: Kv) {
    let p = platform(kv);
    let support = ctx("acme", "prod", "support");
    let (user, thread) = (unique("U"), unique_thread());
    let id = session_id(&support, "slack", "C789012", Some(&thread), &user);
    for turn in 0..4 {
        slack_message(p, "prod", &user, acme_turn(turn).0, &thread);
    }
    // 4 messages in, 5 replies out.
    let shown = session_at(p, &support, &id, 9);
    assert_eq!(transcript(&shown), expected_transcript(4));
    assert_eq!(shown["state"]["name"], "Dana");
    assert_eq!(shown["state"]["order"], "12345");
    let expected: Vec<String> = (0..4)
        .flat_map(|t| acme_turn(t).1.into_iter().map(str::to_owned))
        .collect();
    p.eventually("every reply reaches Slack", || {
        slack_posts(p, &thread).len() == expected.len()
    });
    let sent: Vec<String> = slack_posts(p, &thread)
        .into_iter()
        .map(|(_, t)| t)
        .collect();
    assert_eq!(
        sent, expected,
        "the replies go out in the order of the turns"
    );
}

fn a_telegram_conversation_is_exact_after_every_turn(kv: Kv) {
    let p = platform(kv);
    let support = ctx("acme", "prod", "support");
    let (from, topic) = (unique_number(), unique_number());
    let id = session_id(
        &support,
        "telegram",
        &telegram_chat(),
        Some(&topic.to_string()),
        &from.to_string(),
    );
    let mut count = 0;
    for turn in 0..5 {
        let (text, answers) = acme_turn(turn);
        let (status, body) = p.telegram(unique_number(), from, text, topic);
        assert_eq!(status, 200, "{body}");
        count += 1 + answers.len() as u64;
        let shown = session_at(p, &support, &id, count);
        assert_eq!(transcript(&shown), expected_transcript(turn + 1));
    }
    let shown = session(p, &support, &id).unwrap();
    assert_eq!(shown["state"]["order"], "12345");
    assert_eq!(shown["state"]["topic"], "where is my delivery?");
    let replies: usize = (0..5).map(|t| acme_turn(t).1.len()).sum();
    p.eventually("every reply reached Telegram", || {
        telegram_sends(p, topic).len() == replies
    });
    let sends = telegram_sends(p, topic);
    assert!(
        sends
            .iter()
            .all(|s| s.0 == format!("/bot{TELEGRAM_BOT_TOKEN}/sendMessage"))
    );
}

/// An inbound envelope for a delivery straight to the executor, as the
/// bridge pushes it.
fn delivery(
    p: &RealPlatform,
    envelope: &greentic::messaging::envelope::Envelope,
    attempt: u32,
) -> (u16, Value) {
    let subject =
        greentic::tenancy::subjects::ingress(&envelope.tenant, &envelope.channel).to_string();
    p.call(
        "POST",
        "/internal/v1/deliveries/ingress",
        &[
            ("authorization", &format!("Bearer {DELIVERY_TOKEN}")),
            ("content-type", "application/json"),
            (greentic::messaging::delivery::SUBJECT_HEADER, &subject),
            (greentic::messaging::delivery::MSG_ID_HEADER, &envelope.id),
            (
                greentic::messaging::delivery::ATTEMPT_HEADER,
                &attempt.to_string(),
            ),
        ],
        Some(envelope.to_json()),
    )
}

fn envelope(provider_id: &str, user: &str, text: &str) -> greentic::messaging::envelope::Envelope {
    let host = greentic::testing::MemoryHost::new(&[]);
    let mut message = greentic::testing::message(provider_id, user, text);
    message.conversation.id = "C789012".into();
    greentic::testing::envelope_on(&host, "acme", "support", "slack", message)
}

fn a_redelivered_message_is_applied_once(kv: Kv) {
    let p = platform(kv);
    let user = unique("U");
    let first = envelope(&unique("Ev"), &user, "hi");
    let support = ctx("acme", "prod", "support");
    for attempt in 1..=3 {
        let (status, body) = delivery(p, &first, attempt);
        assert_eq!(status, 200, "attempt {attempt}: {body}");
        assert_eq!(body["duplicate"], attempt > 1, "{body}");
    }
    let shown = session_at(p, &support, &first.session_id, 3);
    assert_eq!(transcript(&shown), expected_transcript(1));
}

fn two_messages_to_one_session_at_once_both_land(kv: Kv) {
    let p = platform(kv);
    let support = ctx("acme", "prod", "support");
    let user = unique("U");
    let opening = envelope(&unique("Ev"), &user, "hi");
    assert_eq!(delivery(p, &opening, 1).0, 200);
    let mut expected = 3;
    for round in 0..5 {
        let pair = [
            envelope(&unique("Ev"), &user, &format!("a{round}")),
            envelope(&unique("Ev"), &user, &format!("b{round}")),
        ];
        std::thread::scope(|s| {
            for e in &pair {
                s.spawn(move || {
                    // A loser may be told to retry, as the bridge would.
                    for attempt in 1..=10 {
                        let (status, body) = delivery(p, e, attempt);
                        match status {
                            200 => return,
                            503 => std::thread::sleep(std::time::Duration::from_millis(50)),
                            _ => panic!("{status} {body}"),
                        }
                    }
                    panic!("never applied");
                });
            }
        });
        // Each message asks for the next question: one reply each.
        expected += 4;
        let shown = session_at(p, &support, &opening.session_id, expected);
        let texts: Vec<String> = transcript(&shown).into_iter().map(|(_, t)| t).collect();
        for e in &pair {
            assert_eq!(
                texts.iter().filter(|t| **t == e.text).count(),
                1,
                "{texts:?}"
            );
        }
    }
}

fn one_tenant_cannot_reach_anothers_sessions(kv: Kv) {
    let p = platform(kv);
    let user = unique("U");
    let acme_message = envelope(&unique("Ev"), &user, "hi");
    assert_eq!(delivery(p, &acme_message, 1).0, 200);
    let support = ctx("acme", "prod", "support");
    session_at(p, &support, &acme_message.session_id, 3);
    let path = format!("/api/v1/sessions/{}", acme_message.session_id);

    let ask = |token: &greentic::testing::TokenBuilder,
               tenant: &str,
               env: Option<&str>,
               team: Option<&str>| {
        let bearer = token.bearer();
        let mut headers = vec![("authorization", bearer.as_str()), ("x-tenant-id", tenant)];
        if let Some(env) = env {
            headers.push(("x-env-id", env));
        }
        if let Some(team) = team {
            headers.push(("x-team-id", team));
        }
        p.call("GET", &path, &headers, None).0
    };
    // The owner sees it; every other scope gets 404, a token for another
    // tenant or env used with acme's headers gets 403.
    assert_eq!(
        ask(&p.token("acme", "prod"), "acme", None, Some("support")),
        200
    );
    assert_eq!(ask(&p.token("bigcorp", "prod"), "bigcorp", None, None), 404);
    assert_eq!(ask(&p.token("bigcorp", "prod"), "acme", None, None), 403);
    assert_eq!(
        ask(&p.token("acme", "staging"), "acme", None, Some("support")),
        404
    );
    assert_eq!(
        ask(&p.token("acme", "staging"), "acme", Some("prod"), None),
        403
    );
    assert_eq!(
        ask(&p.token("acme", "prod"), "acme", None, Some("sales")),
        404
    );
    assert_eq!(
        ask(
            &p.token("acme", "prod").teams(&["sales"]),
            "acme",
            None,
            Some("support")
        ),
        403
    );
    assert_eq!(
        ask(
            &p.token("acme", "prod").teams(&["sales"]),
            "acme",
            None,
            None
        ),
        404
    );

    // BigCorp's listing holds nothing of ACME's.
    let bigcorp = p.token("bigcorp", "prod");
    let (status, list) = p.call(
        "GET",
        "/api/v1/sessions?limit=200",
        &[
            ("authorization", &bigcorp.bearer()),
            ("x-tenant-id", "bigcorp"),
        ],
        None,
    );
    assert_eq!(status, 200);
    assert!(
        list["sessions"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["tenant"] == "bigcorp"),
        "{list}"
    );
    // Nor can BigCorp delete it.
    let (status, _) = p.call(
        "DELETE",
        &path,
        &[
            ("authorization", &bigcorp.roles(&["admin"]).bearer()),
            ("x-tenant-id", "bigcorp"),
        ],
        None,
    );
    assert_eq!(status, 404);
    assert!(session(p, &support, &acme_message.session_id).is_some());
}

fn secrets_are_put_read_and_listed_without_values(kv: Kv) {
    let p = platform(kv);
    let name = unique("note");
    let admin = p.token("acme", "prod").roles(&["admin", "secrets-reader"]);
    let headers = |t: &greentic::testing::TokenBuilder, tenant: &'static str| (t.bearer(), tenant);
    let (bearer, tenant) = headers(&admin, "acme");
    let h = [
        ("authorization", bearer.as_str()),
        ("x-tenant-id", tenant),
        ("x-team-id", "support"),
    ];
    let put = |value: &str| {
        p.call(
            "PUT",
            &format!("/api/v1/secrets/{name}"),
            &h,
            Some(json!({"value": value}).to_string().into_bytes()),
        )
    };
    assert_eq!(put("first value").0, 201);
    assert_eq!(put("second value").0, 200);
    let (status, read) = p.call("GET", &format!("/api/v1/secrets/{name}/value"), &h, None);
    assert_eq!(
        (status, &read["value"]),
        (200, &json!("second value")),
        "{read}"
    );
    let (status, list) = p.call("GET", "/api/v1/secrets?limit=200", &h, None);
    assert_eq!(status, 200);
    let listed = list["secrets"].as_array().unwrap();
    assert!(listed.iter().any(|s| s["name"] == name.as_str()));
    assert!(
        !list.to_string().contains("second value"),
        "a listing shows no value"
    );
    // Another tenant's admin does not find it.
    let other = p
        .token("bigcorp", "prod")
        .roles(&["admin", "secrets-reader"]);
    let (bearer, tenant) = headers(&other, "bigcorp");
    let (status, _) = p.call(
        "GET",
        &format!("/api/v1/secrets/{name}/value"),
        &[("authorization", bearer.as_str()), ("x-tenant-id", tenant)],
        None,
    );
    assert_eq!(status, 404);
}

fn a_person_talks_to_bigcorps_flow_in_the_web_chat_page(kv: Kv) {
    let p = platform(kv);
    let report = greentic_harness::browser::chat_in_the_web_chat_page(
        &p.url,
        WEBCHAT_TOKEN_SECRET,
        &format!("webchat-{kv:?}.png").to_lowercase(),
    );
    assert_eq!(report["ok"], true, "{report}");
    // Past the conversation's 30 messages a minute, the page said so.
    assert!(report["refused_after"].is_u64(), "{report}");
}

/// tests/README.md, conformance row 6: Spin refuses such a request itself,
/// before any component (and its problem+json) sees it.
fn a_header_that_is_not_utf8_is_answered_by_spin_itself(kv: Kv) {
    let p = platform(kv);
    let request = ureq::http::Request::builder()
        .method("GET")
        .uri(format!("{}/api/v1/sessions", p.url))
        .header(
            "x-tenant-id",
            ureq::http::HeaderValue::from_bytes(b"acme\xff").unwrap(),
        )
        .body(())
        .unwrap();
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let response = agent.run(request).unwrap();
    assert_eq!(response.status().as_u16(), 500);
    assert!(response.into_body().read_to_vec().unwrap().is_empty());
}

/// One byte under ingress's 1 MiB, verified by the broker through Spin's
/// service chaining, then published (the envelope keeps 32 KiB of text).
fn a_signed_slack_body_of_the_largest_size_is_verified_and_published(kv: Kv) {
    let p = platform(kv);
    let mut body = greentic_harness::providers::slack::message_event(
        &unique("Ev"),
        &unique("U"),
        "big",
        Some(&unique_thread()),
    );
    body["event"]["blocks"] = json!([{ "type": "rich_text", "padding": "" }]);
    let pad = ingress::BODY_LIMIT - 1 - body.to_string().len();
    body["event"]["blocks"][0]["padding"] = json!("p".repeat(pad));
    let raw = body.to_string().into_bytes();
    assert_eq!(raw.len(), ingress::BODY_LIMIT - 1);
    let (status, answer) = signed_slack_post(p, "prod", raw);
    assert_eq!(
        (status, &answer["status"]),
        (200, &json!("published")),
        "{answer}"
    );
}

// ---- provider-side views ------------------------------------------------------

/// A signed Slack message event from `user` in `thread`, to acme/`env`'s
/// support channel, answered 200 (published).
fn slack_message(p: &RealPlatform, env: &str, user: &str, text: &str, thread: &str) {
    let body =
        greentic_harness::providers::slack::message_event(&unique("Ev"), user, text, Some(thread))
            .to_string();
    let (status, answer) = signed_slack_post(p, env, body.into_bytes());
    assert_eq!(status, 200, "{text}: {answer}");
}

/// `raw` signed as Slack signs it, posted to acme/`env`'s support channel.
fn signed_slack_post(p: &RealPlatform, env: &str, raw: Vec<u8>) -> (u16, Value) {
    let headers = greentic_harness::providers::slack::signed_headers(
        greentic_harness::spin_up::SLACK_SIGNING_SECRET,
        p.now_secs(),
        &raw,
    );
    let headers: Vec<(&str, &str)> = headers
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    p.call(
        "POST",
        &format!("/webhooks/{env}/acme/support/slack"),
        &headers,
        Some(raw),
    )
}

/// What Slack was asked to post in `thread`: (authorization, text).
fn slack_posts(p: &RealPlatform, thread: &str) -> Vec<(String, String)> {
    p.provider_calls()
        .into_iter()
        .filter(|c| c.path == "/api/chat.postMessage" && c.body["thread_ts"] == thread)
        .map(|c| {
            (
                c.authorization.unwrap_or_default(),
                c.body["text"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

/// What Telegram was asked to send in forum topic `topic`: (path, text).
fn telegram_sends(p: &RealPlatform, topic: i64) -> Vec<(String, String)> {
    p.provider_calls()
        .into_iter()
        .filter(|c| c.path.ends_with("/sendMessage") && c.body["message_thread_id"] == topic)
        .map(|c| {
            (
                c.path,
                c.body["text"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

/// A conversation id as it appears in a Bot Framework reply path.
fn encode(conversation: &str) -> String {
    conversation
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn telegram_chat() -> String {
    greentic_harness::providers::telegram::CHAT_ID.to_string()
}

fn unique_number() -> i64 {
    greentic_harness::spin_up::unique_number()
}

/// A Slack thread timestamp no other test uses.
fn unique_thread() -> String {
    format!("{}.000100", unique_number())
}

/// The REST rate limit under the real Spin (its key-value `increment` on
/// SQLite and on Redis): a token subject's 600 calls a minute are admitted
/// with `RateLimit` headers counting down, the 601st is 429 with
/// `Retry-After`. A tenant of its own, created here with the platform's
/// default limits, so no other test's calls share its quota.
fn rest_calls_over_a_subjects_quota_are_refused_with_429_and_rate_limit_headers(kv: Kv) {
    let p = platform(kv);
    let tenant = format!("limits-{}", unique_number());
    // A tenant of its own, with the platform's default limits.
    let flow = json!({ "name": "greeter", "version": "1", "nodes": [
        { "id": "hello", "type": "reply", "config": { "message": "hello" } },
    ] });
    create_telegram_tenant(p, &tenant, flow);
    let mut token = p.token(&tenant, "prod");
    token.claims.sub = "prober".into();
    let bearer = token.bearer();
    let call = || {
        p.call_with_headers(
            "GET",
            "/api/v1/sessions",
            &[
                ("authorization", bearer.as_str()),
                ("x-tenant-id", tenant.as_str()),
            ],
            None,
        )
    };
    let header = |headers: &[(String, String)], name: &str| {
        headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    // Windows are whole minutes of the wall clock: start early in one, so
    // the 601 calls (well under a second here) all fall in it.
    let second = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        % 60;
    if second > 40 {
        std::thread::sleep(std::time::Duration::from_secs(61 - second));
    }
    for i in 1..=600u32 {
        let (status, headers, body) = call();
        assert_eq!(status, 200, "call {i}: {}", String::from_utf8_lossy(&body));
        assert_eq!(
            header(&headers, "ratelimit-policy"),
            "\"tenant\";q=1200;w=60, \"subject\";q=600;w=60"
        );
        let current = header(&headers, "ratelimit");
        assert!(
            current.starts_with(&format!("\"tenant\";r={};t=", 1200 - i))
                && current.contains(&format!("\"subject\";r={};t=", 600 - i)),
            "call {i}: {current}"
        );
    }
    let (status, headers, body) = call();
    assert_eq!(status, 429, "{}", String::from_utf8_lossy(&body));
    let retry_after: u64 = header(&headers, "retry-after").parse().unwrap();
    assert!((1..=60).contains(&retry_after), "{retry_after}");
    let problem: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(problem["type"], "urn:greentic:problem:too-many-requests");
}

/// A tenant of one team with a Telegram channel, running `flow`.
fn telegram_tenant(flow: Value) -> Value {
    json!({
        "tenant": {
            "name": "Runtime Co.",
            "environments": [{ "id": "prod" }],
            "flow": "greeter",
            "teams": { "support": { "channels": { "telegram": {
                "provider": "messaging-telegram",
                "config": { "chat_id": telegram_chat() },
            } } } },
        },
        "flows": { "greeter": flow },
    })
}

/// Creates `tenant` at runtime, as a platform operator, from [`telegram_tenant`].
fn create_telegram_tenant(p: &RealPlatform, tenant: &str, flow: Value) {
    let operator = p.token("ops", "prod").roles(&["platform-admin"]).bearer();
    let (status, body) = p.call(
        "PUT",
        &format!("/api/v1/tenants/{tenant}"),
        &[("authorization", &operator), ("x-tenant-id", "ops")],
        Some(telegram_tenant(flow).to_string().into_bytes()),
    );
    assert_eq!(status, 201, "{body}");
}

/// Creates `tenant` at runtime, as a platform operator, with `flow` answering
/// its Telegram channel in team `support` ([`telegram_tenant`]), and puts the
/// channel's two secrets as its admin. Returns the bot token.
fn onboard_telegram_tenant(
    p: &RealPlatform,
    tenant: &str,
    flow: Value,
    webhook_secret: &str,
) -> String {
    create_telegram_tenant(p, tenant, flow);
    let admin = p.token(tenant, "prod").roles(&["admin"]).bearer();
    let bot_token = format!("999:{tenant}");
    for (name, value) in [
        ("telegram_webhook_secret", webhook_secret),
        ("telegram_bot_token", bot_token.as_str()),
    ] {
        let (status, body) = p.call(
            "PUT",
            &format!("/api/v1/secrets/{name}"),
            &[
                ("authorization", &admin),
                ("x-tenant-id", tenant),
                ("x-team-id", "support"),
            ],
            Some(json!({ "value": value }).to_string().into_bytes()),
        );
        assert!(matches!(status, 200 | 201), "{name}: {status} {body}");
    }
    bot_token
}

/// The tenant control plane under the real Spin, with no build or restart
/// between the steps: an operator creates a tenant through the API and its
/// first Telegram message is answered by its flow; its admin changes the flow
/// (the session waiting at an `ask` the new version lacks starts the flow
/// over instead of failing), rolls it back, and an operator suspends it
/// (webhook and API refused) and resumes it.
fn a_tenant_onboarded_changed_rolled_back_and_suspended_at_runtime(kv: Kv) {
    use greentic_harness::providers::telegram;
    let p = platform(kv);
    let tenant = format!("runtime{}", unique_number());
    let v1 = json!({ "name": "greeter", "version": "1", "nodes": [
        { "id": "ask_name", "type": "ask", "config": { "prompt": "v1: your name?", "key": "name" }, "next": "thanks" },
        { "id": "thanks", "type": "reply", "config": { "message": "v1: thanks {{ state.name }}" } },
    ] });
    let v2 = json!({ "name": "greeter", "version": "2", "nodes": [
        { "id": "hello", "type": "reply", "config": { "message": "v2: hello {{ message.text }}" } },
    ] });
    let operator = p.token("ops", "prod").roles(&["platform-admin"]).bearer();
    let admin = p.token(&tenant, "prod").roles(&["admin"]).bearer();
    let as_operator = [("authorization", operator.as_str()), ("x-tenant-id", "ops")];
    let as_admin = |if_match: &'static str| {
        [
            ("authorization", admin.clone()),
            ("x-tenant-id", tenant.clone()),
            ("if-match", if_match.to_owned()),
        ]
    };
    let headers = |h: &[(&'static str, String); 3]| -> Vec<(&'static str, String)> { h.to_vec() };
    let call = |method: &str, path: &str, h: Vec<(&str, String)>, body: Value| {
        let h: Vec<(&str, &str)> = h.iter().map(|(n, v)| (*n, v.as_str())).collect();
        p.call(method, path, &h, Some(body.to_string().into_bytes()))
    };
    let tenant_path = format!("/api/v1/tenants/{tenant}");

    let bot_token = onboard_telegram_tenant(p, &tenant, v1.clone(), "runtime-webhook-secret");
    let (from, topic) = (unique_number(), unique_number());
    let send = |text: &str| {
        p.call(
            "POST",
            &format!("/webhooks/prod/{tenant}/support/telegram"),
            &[(telegram::SECRET_HEADER, "runtime-webhook-secret")],
            Some(
                telegram::update(unique_number(), from, text, Some(topic))
                    .to_string()
                    .into_bytes(),
            ),
        )
    };
    let replies = |n: usize| {
        p.eventually(&format!("{n} replies reached Telegram"), || {
            telegram_sends(p, topic).len() >= n
        });
        let sends = telegram_sends(p, topic);
        assert!(
            sends
                .iter()
                .all(|s| s.0 == format!("/bot{bot_token}/sendMessage")),
            "{sends:?}"
        );
        sends.into_iter().map(|s| s.1).collect::<Vec<_>>()
    };

    assert_eq!(send("hi").0, 200);
    assert_eq!(replies(1), ["v1: your name?"]);

    // The admin's new flow applies to the next message, whose session waits
    // at an `ask` the new version does not have.
    let (status, body) = call(
        "PUT",
        &tenant_path,
        headers(&as_admin("\"1\"")),
        telegram_tenant(v2),
    );
    assert_eq!(
        (status, &body["result"]),
        (200, &json!("updated")),
        "{body}"
    );
    assert_eq!(send("Dana").0, 200);
    assert_eq!(replies(2)[1], "v2: hello Dana");

    let (status, body) = call(
        "POST",
        &format!("{tenant_path}/rollback"),
        headers(&as_admin("\"2\"")),
        json!({ "version": 1 }),
    );
    assert_eq!((status, &body["version"]), (200, &json!(3)), "{body}");
    assert_eq!(send("again").0, 200);
    assert_eq!(replies(3)[2], "v1: your name?");

    let set_status = |status: &str| {
        p.call(
            "PUT",
            &format!("{tenant_path}/status"),
            &as_operator,
            Some(json!({ "status": status }).to_string().into_bytes()),
        )
    };
    assert_eq!(set_status("suspended").0, 200);
    let (status, body) = send("anyone there?");
    assert_eq!(
        (status, &body["type"]),
        (403, &json!("urn:greentic:problem:tenant-suspended")),
        "{body}"
    );
    let (status, _) = p.call(
        "GET",
        "/api/v1/sessions",
        &[("authorization", &admin), ("x-tenant-id", &tenant)],
        None,
    );
    assert_eq!(status, 403);

    assert_eq!(set_status("active").0, 200);
    assert_eq!(send("Dana").0, 200);
    assert_eq!(replies(4)[3], "v1: thanks Dana");
    assert_eq!(
        telegram_sends(p, topic).len(),
        4,
        "nothing was answered while suspended"
    );

    let (status, history) = p.call(
        "GET",
        &format!("{tenant_path}/versions"),
        &[("authorization", &admin), ("x-tenant-id", &tenant)],
        None,
    );
    assert_eq!(status, 200, "{history}");
    let changes = e2e_tests::item_fields(&history, "change");
    assert_eq!(
        changes,
        [
            "resumed",
            "suspended",
            "rolled back to 1",
            "updated",
            "created"
        ]
    );
}

/// Erasure and the retention sweep on Spin's own key-value backends: a
/// person who wrote on Telegram is erased (their session goes, and a second
/// erasure finds no one), and the sweep the bridge schedules answers with
/// what it examined, keeping the sessions within their retention.
fn a_person_is_erased_and_the_retention_sweep_runs_on_spins_stores(kv: Kv) {
    let p = platform(kv);
    let support = ctx("acme", "prod", "support");
    let (from, topic) = (unique_number(), unique_number());
    let (status, body) = p.telegram(unique_number(), from, "hi", topic);
    assert_eq!(status, 200, "{body}");
    let id = session_id(
        &support,
        "telegram",
        &telegram_chat(),
        Some(&topic.to_string()),
        &from.to_string(),
    );
    session_at(p, &support, &id, 3);

    let admin = p.token("acme", "prod").roles(&["admin"]).bearer();
    let erase = || {
        p.call(
            "DELETE",
            &format!("/api/v1/people/telegram/{from}"),
            &[("authorization", &admin), ("x-tenant-id", "acme")],
            None,
        )
    };
    let (status, erased) = erase();
    assert_eq!(status, 200, "{erased}");
    assert_eq!(erased["sessions"], 1, "{erased}");
    assert_eq!(session(p, &support, &id), None);
    assert_eq!(erase().0, 404);

    let (status, swept) = p.call(
        "POST",
        "/internal/v1/sweeps/retention",
        &[("authorization", &format!("Bearer {DELIVERY_TOKEN}"))],
        None,
    );
    assert_eq!(status, 200, "{swept}");
    assert!(swept["examined"].as_u64().unwrap() > 0, "{swept}");
    assert_eq!(
        swept["deleted"], 0,
        "every session here is younger than a year"
    );
    let (status, _) = p.call(
        "POST",
        "/internal/v1/sweeps/retention",
        &[("authorization", "Bearer not-the-bridge")],
        None,
    );
    assert_eq!(status, 401);
}

/// Offboarding under the real Spin, its stores and the bridge's streams: a
/// tenant created at runtime talks on Telegram, holds secrets and has called
/// the API; an operator deletes it call after call until it is gone. Then no
/// key of any store names it (the stores read by the test from SQLite's file
/// or redis-server), its messages were purged from the streams, its webhook
/// is unknown and its admin's token reaches nothing.
fn a_tenant_is_deleted_with_everything_of_it_from_spins_stores_and_the_streams(kv: Kv) {
    let p = platform(kv);
    let tenant = format!("gone{}", unique_number());
    let operator = p.token("ops", "prod").roles(&["platform-admin"]).bearer();
    let admin = p.token(&tenant, "prod").roles(&["admin"]).bearer();
    let as_operator = [("authorization", operator.as_str()), ("x-tenant-id", "ops")];
    let as_admin = [
        ("authorization", admin.as_str()),
        ("x-tenant-id", tenant.as_str()),
    ];
    let tenant_path = format!("/api/v1/tenants/{tenant}");
    let flow = json!({ "name": "greeter", "version": "1", "nodes": [
        { "id": "hello", "type": "reply", "config": { "message": "hello {{ message.text }}" } },
    ] });
    onboard_telegram_tenant(p, &tenant, flow, "gone-webhook-secret");
    let (from, topic) = (unique_number(), unique_number());
    let webhook = format!("/webhooks/prod/{tenant}/support/telegram");
    let send = || {
        use greentic_harness::providers::telegram;
        p.call(
            "POST",
            &webhook,
            &[(telegram::SECRET_HEADER, "gone-webhook-secret")],
            Some(
                telegram::update(unique_number(), from, "hi", Some(topic))
                    .to_string()
                    .into_bytes(),
            ),
        )
    };
    assert_eq!(send().0, 200);
    p.eventually("the reply reached Telegram", || {
        telegram_sends(p, topic).len() == 1
    });
    let (status, body) = p.call("GET", "/api/v1/sessions", &as_admin, None);
    assert_eq!(status, 200, "{body}");
    let named = |p: &RealPlatform| -> Vec<String> {
        p.all_keys()
            .into_iter()
            .filter(|k| k.contains(&tenant))
            .collect()
    };
    assert!(named(p).len() > 10, "{:#?}", named(p));

    let mut calls = 0;
    let removed = loop {
        calls += 1;
        assert!(calls < 50, "the deletion does not end");
        let (status, body) = p.call("DELETE", &tenant_path, &as_operator, None);
        match status {
            202 => continue,
            200 => break body["removed"].clone(),
            _ => panic!("{status} {body}"),
        }
    };
    assert_eq!(removed["sessions"], 1, "{removed}");
    assert_eq!(removed["secrets"], 2, "{removed}");
    // Its inbound message and its reply were still in the streams (they
    // keep what was delivered for a week).
    assert!(
        removed["stream_messages"].as_u64().unwrap() >= 2,
        "{removed}"
    );
    assert_eq!(named(p), Vec::<String>::new());

    assert_eq!(p.call("GET", &tenant_path, &as_operator, None).0, 404);
    assert_eq!(p.call("DELETE", &tenant_path, &as_operator, None).0, 404);
    assert_eq!(send().0, 404, "its channel is not configured any more");
    assert_eq!(p.call("GET", "/api/v1/sessions", &as_admin, None).0, 403);
    assert_eq!(
        named(p),
        Vec::<String>::new(),
        "refused calls wrote nothing"
    );
}
