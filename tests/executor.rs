//! The flow executor end to end, natively: deliveries as the bridge pushes
//! them, the demo bundle's flows, replies on the egress subject, the session
//! and its state through the session API, usage through `/api/v1/usage`;
//! with the stores in memory and on Redis (where counters are text and
//! compare-and-swap is WATCH/MULTI).

use std::sync::Arc;

use e2e_tests::{Call, Stores, assert_problem, token};
use greentic::http::Response;
use greentic::messaging::envelope::{Envelope, Outbound};
use greentic::store::kv::KeyValue;
use greentic::store::sessions::SessionStore;
use greentic::testing::{
    FakeBridge, MemoryHost, Published, TEST_DELIVERY_TOKEN, envelope_on, message,
};
use serde_json::json;

/// One host standing for the executor and the session API, which share the
/// `sessions` store under Spin, and a bridge in memory.
struct Platform {
    host: Arc<MemoryHost>,
    bridge: Arc<FakeBridge>,
}

impl Platform {
    fn on(stores: Stores) -> Self {
        let host = stores.host(&[
            greentic::messaging::executor::STORE_LABEL,
            greentic::service::limits::STORE_LABEL,
            greentic::store::webchat_log::STORE_LABEL,
            greentic::messaging::egress::STORE_LABEL,
        ]);
        let bridge = FakeBridge::serve(&host);
        Platform {
            host: Arc::new(host),
            bridge,
        }
    }

    /// An inbound message as ingress would have published it.
    fn message(
        &self,
        tenant: &str,
        team: &str,
        channel: &str,
        user: &str,
        id: &str,
        text: &str,
    ) -> Published {
        let envelope = envelope_on(
            self.host.as_ref(),
            tenant,
            team,
            channel,
            message(id, user, text),
        );
        Published::inbound(&envelope)
    }

    fn deliver(&self, message: &Published) -> Response {
        flow_executor::handle(&FakeBridge::delivery(message, 1), self.host.as_ref())
    }

    /// Delivers and returns the replies it published.
    fn say(&self, message: &Published) -> Vec<String> {
        let before = self.texts().len();
        let r = self.deliver(message);
        assert_eq!(r.status, 200, "{}", r.json_body());
        self.texts()[before..].to_vec()
    }

    /// Every reply text published, in order.
    fn texts(&self) -> Vec<String> {
        self.replies().into_iter().flat_map(|o| o.texts).collect()
    }

    fn replies(&self) -> Vec<Outbound> {
        self.bridge
            .on("greentic.messaging.egress.")
            .iter()
            .map(|p| Outbound::from_json(&p.payload).unwrap())
            .collect()
    }

    fn sessions_api(&self, call: &Call, path: &str) -> Response {
        session_api::handle(&call.request("GET", path), self.host.as_ref())
    }
}

e2e_tests::on_every_store!(
    a_session_deleted_during_its_turn_completes_the_delivery,
    a_conversation_runs_acmes_flow_over_several_deliveries,
    the_same_text_for_bigcorp_runs_bigcorps_flow,
    a_redelivered_message_is_applied_once_and_its_replies_are_not_sent_twice,
    concurrent_messages_to_one_session_both_land,
    an_envelope_that_contradicts_its_subject_is_refused_for_the_dead_letter_queue,
    only_the_bridge_can_deliver,
    usage_is_counted_per_team_and_read_within_the_callers_scope,
    a_redelivery_after_the_commit_completes_the_record_and_usage,
    a_session_waiting_at_a_node_a_new_flow_version_removed_starts_over,
    a_turn_whose_replies_are_too_large_to_send_is_refused_before_its_commit,
    a_message_costs_five_writes_for_a_new_session_and_three_later,
    a_first_message_cut_off_before_its_batch_is_created_once_by_the_retry,
    a_message_sent_before_its_sender_was_erased_is_dropped_and_a_later_one_starts_afresh,
);

/// A person erased while a message of theirs waits in the stream: that
/// message is dropped on delivery (their conversation does not come back);
/// one they send after the erasure starts a new conversation.
fn a_message_sent_before_its_sender_was_erased_is_dropped_and_a_later_one_starts_afresh(
    stores: Stores,
) {
    let p = Platform::on(stores);
    let now_ms = greentic::host::Host::now_ms(p.host.as_ref());
    let at = |id: &str, text: &str, sent_at_ms: i64| {
        let mut m = message(id, "U-DANA", text);
        m.sent_at_ms = sent_at_ms;
        Published::inbound(&envelope_on(p.host.as_ref(), "acme", "support", "slack", m))
    };
    assert!(!p.say(&at("E1", "hi", now_ms - 60_000)).is_empty());
    let erase = session_api::handle(
        &Call::with(&token("acme", "prod").roles(&["admin"]))
            .request("DELETE", "/api/v1/people/slack/U-DANA"),
        p.host.as_ref(),
    );
    assert_eq!(erase.status, 200, "{}", erase.json_body());
    assert_eq!(erase.json_body()["sessions"], 1);

    let late = p.deliver(&at("E2", "Dana", now_ms - 30_000));
    assert_eq!(late.status, 200, "{}", late.json_body());
    assert_eq!(late.json_body()["replies"], 0);
    let listed = p
        .sessions_api(&acme_support(), "/api/v1/sessions")
        .json_body();
    assert_eq!(
        listed["sessions"],
        serde_json::json!([]),
        "the conversation did not come back"
    );

    let replies = p.say(&at("E3", "hi again", now_ms + 1_000));
    assert_eq!(replies[0], "Welcome to ACME Support! How can I help?");
    let listed = p
        .sessions_api(&acme_support(), "/api/v1/sessions")
        .json_body();
    assert_eq!(
        listed["sessions"][0]["message_count"], 3,
        "a new conversation: hi again and two replies"
    );
}

/// What a message costs the store, in write transactions (issue 16 set four
/// for a first message; the person index of erasures, issue 19, adds one):
/// a session's first message five (claim, team index slot, person index
/// slot, one batch, one usage increment), six when it is its team's first in
/// the env (registration), seven when that team is also the env's first (the
/// tenant's env registry, which an offboarding walks); every later message
/// three (memory swap, record swap, usage increment).
fn a_message_costs_five_writes_for_a_new_session_and_three_later(stores: Stores) {
    let p = Platform::on(stores);
    let kv = p.host.store(greentic::messaging::executor::STORE_LABEL);
    let writes = |message: &Published| {
        let before = kv.writes();
        assert_eq!(p.deliver(message).status, 200);
        kv.writes() - before
    };
    assert_eq!(
        writes(&p.message("acme", "support", "slack", "U1", "E1", "hi")),
        7
    );
    assert_eq!(
        writes(&p.message("acme", "support", "slack", "U2", "E2", "hi")),
        5
    );
    assert_eq!(
        writes(&p.message("acme", "support", "slack", "U1", "E3", "Dana")),
        3
    );
    assert_eq!(
        writes(&p.message("acme", "support", "slack", "U2", "E4", "Ada")),
        3
    );
    // A redelivery of an applied message writes nothing.
    assert_eq!(
        writes(&p.message("acme", "support", "slack", "U1", "E3", "Dana")),
        0
    );
}

/// The store fails just before a first message's batch: the claim and the
/// index slot are taken, nothing else is written. The bridge's retries wait
/// for the claimant (503), then the patient one creates the session, once,
/// listed once, with the message in it.
fn a_first_message_cut_off_before_its_batch_is_created_once_by_the_retry(stores: Stores) {
    let p = Platform::on(stores);
    let kv = p.host.store(greentic::messaging::executor::STORE_LABEL);
    let hi = p.message("acme", "support", "slack", "U1", "E1", "hi");
    // Reads of the record and memory, the claim, the slot, the registry
    // check and allocation pass; the batch fails.
    kv.fail_after(6);
    assert_problem(&p.deliver(&hi), 503, "unavailable");
    kv.recover();
    assert!(p.texts().is_empty(), "nothing was published");
    for attempt in 1..3 {
        let r = flow_executor::handle(&FakeBridge::delivery(&hi, attempt), p.host.as_ref());
        assert_problem(&r, 503, "unavailable");
    }
    let r = flow_executor::handle(&FakeBridge::delivery(&hi, 3), p.host.as_ref());
    assert_eq!(r.status, 200, "{}", r.json_body());
    let r = p.sessions_api(&acme_support(), "/api/v1/sessions");
    let listed = r.json_body()["sessions"].as_array().unwrap().clone();
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0]["message_count"], 3);
    assert_eq!(p.texts().len(), 2);
}

/// A flow that echoes a long message three times makes replies larger than
/// one NATS message may be: refused (422, dead-lettered with the reason)
/// before anything is committed, never committed and then lost.
fn a_turn_whose_replies_are_too_large_to_send_is_refused_before_its_commit(stores: Stores) {
    let p = Platform::on(stores);
    p.host.update_tenant("acme", |acme| {
        let flow = acme.flows.get_mut("acme_support_flow").unwrap();
        flow.nodes[0].config.insert(
            "message".into(),
            json!("{{ message.text }}{{ message.text }}{{ message.text }}"),
        );
    });
    let long = p.message("acme", "support", "slack", "U1", "E1", &"x".repeat(30_000));
    let r = p.deliver(&long);
    assert_problem(&r, 422, "unprocessable");
    assert!(
        r.json_body()["detail"]
            .as_str()
            .unwrap()
            .contains("at most")
    );
    assert!(p.replies().is_empty(), "nothing was published");
    let envelope = Envelope::from_json(&long.payload).unwrap();
    let ctx = greentic::TenantCtx::new("acme", "prod", Some("support")).unwrap();
    let kv = p.host.store(greentic::messaging::executor::STORE_LABEL);
    assert!(
        kv.get(&greentic::tenancy::keys::session_state(
            &ctx,
            &envelope.session_id
        ))
        .unwrap()
        .is_none(),
        "nothing was committed"
    );
    // A short message still goes through the same flow.
    let short = p.say(&p.message("acme", "support", "slack", "U1", "E2", "hi"));
    assert_eq!(short[0], "hihihi");
}

/// The memory was committed but the replies could not be published (the
/// bridge down): the redelivery is a duplicate, and still the record's
/// transcript, its count and usage take the message in, once.
fn a_redelivery_after_the_commit_completes_the_record_and_usage(stores: Stores) {
    let p = Platform::on(stores);
    p.say(&p.message("acme", "support", "slack", "U1", "E1", "hi"));
    p.bridge.set_down(true);
    let name = p.message("acme", "support", "slack", "U1", "E2", "Dana");
    assert_problem(&p.deliver(&name), 503, "unavailable");
    p.bridge.set_down(false);
    for _ in 0..2 {
        let again = p.deliver(&name);
        assert_eq!(
            again.json_body()["duplicate"],
            true,
            "{}",
            again.json_body()
        );
    }
    let session = p.replies()[0].session_id.clone();
    let body = p
        .sessions_api(&acme_support(), &format!("/api/v1/sessions/{session}"))
        .json_body();
    assert_eq!(body["message_count"], 5, "{body}");
    let texts: Vec<&str> = body["transcript"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["text"].as_str().unwrap())
        .collect();
    assert_eq!(
        texts,
        [
            "hi",
            "Welcome to ACME Support! How can I help?",
            "May I have your name?",
            "Dana",
            "Thanks Dana! What is your order number?"
        ]
    );
    let usage = p
        .sessions_api(
            &acme_support(),
            "/api/v1/usage?from=2026-11-28&to=2026-11-28",
        )
        .json_body();
    assert_eq!(usage["totals"]["messages_in"], 2, "{usage}");
    assert_eq!(usage["totals"]["replies_out"], 3, "{usage}");
}

/// A new flow version no longer has the `ask` a session waits at: the next
/// message starts the flow over (and says so in the log) instead of failing
/// for ever.
fn a_session_waiting_at_a_node_a_new_flow_version_removed_starts_over(stores: Stores) {
    let p = Platform::on(stores);
    p.say(&p.message("acme", "support", "slack", "U1", "E1", "hi"));
    let session = p.replies()[0].session_id.clone();
    let ctx = greentic::TenantCtx::new("acme", "prod", Some("support")).unwrap();
    let kv = p.host.store(greentic::messaging::executor::STORE_LABEL);
    let key = greentic::tenancy::keys::session_state(&ctx, &session);
    let mut memory =
        greentic::store::session::SessionMemory::decode(&kv.get(&key).unwrap().unwrap()).unwrap();
    memory.waiting_at = Some("ask_shoe_size".into());
    kv.set(&key, &memory.encode()).unwrap();

    let replies = p.say(&p.message("acme", "support", "slack", "U1", "E2", "Dana"));
    assert_eq!(
        replies,
        [
            "Welcome to ACME Support! How can I help?",
            "May I have your name?"
        ]
    );
    let restarted = p
        .host
        .logs()
        .into_iter()
        .find(|l| l["event"] == "flow.restarted")
        .expect("the restart is logged");
    assert_eq!(restarted["missing_node"], "ask_shoe_size");
    assert_eq!(restarted["tenant"], "acme");
}

/// An operator deletes the session while its turn runs, after the memory is
/// committed and the replies are published: the message was applied, so the
/// delivery is done (200), not a 404 the bridge would dead-letter.
fn a_session_deleted_during_its_turn_completes_the_delivery(stores: Stores) {
    let p = Platform::on(stores);
    p.say(&p.message("acme", "support", "slack", "U1", "E1", "hi"));
    let session = p.replies()[0].session_id.clone();
    let ctx = greentic::TenantCtx::new("acme", "prod", Some("support")).unwrap();
    // The next publish (the turn's replies) first deletes the session.
    let host = Arc::downgrade(&p.host);
    let bridge = p.bridge.clone();
    p.host.serve_url(
        greentic::testing::TEST_BRIDGE_URL,
        Arc::new(move |req| {
            let host = host.upgrade().expect("the platform is alive");
            let kv = host.store(greentic::messaging::executor::STORE_LABEL);
            assert!(SessionStore::new(kv).delete(&ctx, &session).unwrap());
            bridge.publish(req)
        }),
    );
    let r = p.deliver(&p.message("acme", "support", "slack", "U1", "E2", "Dana"));
    assert_eq!(r.status, 200, "{}", r.json_body());
    assert_eq!(
        p.texts().last().unwrap(),
        "Thanks Dana! What is your order number?"
    );
    let gone = p.sessions_api(
        &acme_support(),
        &format!("/api/v1/sessions/{}", p.replies()[0].session_id.as_str()),
    );
    assert_problem(&gone, 404, "not-found");
}

fn acme_support() -> Call {
    Call::with(&token("acme", "prod")).team("support")
}

fn a_conversation_runs_acmes_flow_over_several_deliveries(stores: Stores) {
    let p = Platform::on(stores);
    let turn = |id: &str, text: &str| p.say(&p.message("acme", "support", "slack", "U1", id, text));
    assert_eq!(
        turn("E1", "hi"),
        [
            "Welcome to ACME Support! How can I help?",
            "May I have your name?"
        ]
    );
    assert_eq!(
        turn("E2", "Dana"),
        ["Thanks Dana! What is your order number?"]
    );
    assert_eq!(
        turn("E3", "no idea"),
        ["Order numbers are 5 to 10 digits, like 12345. What is yours?"]
    );
    assert_eq!(
        turn("E4", "12345"),
        ["Got it, order 12345. Is it about a refund, a delivery, or something else?"]
    );
    assert_eq!(
        turn("E5", "I want a refund"),
        [
            "Dana, I have opened a refund request for order 12345. You will hear from us within 2 business days."
        ]
    );

    // Replies go to acme's egress subject, addressed to the conversation.
    let replies = p.replies();
    assert!(replies.iter().all(|o| o.tenant.tenant_id() == "acme"));
    let egress = p.bridge.on("greentic.messaging.egress.");
    assert!(
        egress
            .iter()
            .all(|m| m.subject == "greentic.messaging.egress.prod.acme.support.slack")
    );
    // One message per turn carries its replies in order.
    assert_eq!(egress[0].msg_id, "acme:prod:support:slack:event-E1:replies");
    assert_eq!(egress.len(), 5);

    // The session and its state, through the session API.
    let session_id = replies[0].session_id.as_str().to_owned();
    // Each reply is published as its session's, so the bridge sends them in order.
    assert!(
        egress
            .iter()
            .all(|m| m.session.as_deref() == Some(session_id.as_str()))
    );
    let r = p.sessions_api(&acme_support(), &format!("/api/v1/sessions/{session_id}"));
    assert_eq!(r.status, 200, "{}", r.json_body());
    let body = r.json_body();
    assert_eq!(body["state"]["name"], "Dana");
    assert_eq!(body["state"]["order"], "12345");
    assert_eq!(body["status"], "active");
    assert_eq!(body["flow"]["name"], "acme_support_flow");
    // 5 messages in, 6 replies out.
    assert_eq!(body["message_count"], 11);
    // Only acme's keys were written.
    let keys = p.host.store("sessions").snapshot();
    assert!(keys.keys().all(|k| k.contains("acme")), "{:?}", keys.keys());
}

fn the_same_text_for_bigcorp_runs_bigcorps_flow(stores: Stores) {
    let p = Platform::on(stores);
    let bigcorp = p.say(&p.message("bigcorp", "helpdesk", "webchat", "u-1", "a1", "hi"));
    assert_eq!(bigcorp, ["BigCorp Helpdesk here. What's your issue?"]);
    let filed = p.say(&p.message(
        "bigcorp",
        "helpdesk",
        "webchat",
        "u-1",
        "a2",
        "printer on fire",
    ));
    assert!(filed[0].starts_with("I have filed ticket HD-"), "{filed:?}");
    let replies = p.replies();
    assert!(replies.iter().all(|o| o.tenant.tenant_id() == "bigcorp"));
    // The closed session shows as ended; acme's API sees none of it.
    let bigcorp_call = Call::with(&token("bigcorp", "prod")).team("helpdesk");
    let list = p
        .sessions_api(&bigcorp_call, "/api/v1/sessions")
        .json_body();
    assert_eq!(list["sessions"][0]["status"], "ended");
    let acme = p
        .sessions_api(&acme_support(), "/api/v1/sessions")
        .json_body();
    assert_eq!(acme["sessions"], json!([]));
}

fn a_redelivered_message_is_applied_once_and_its_replies_are_not_sent_twice(stores: Stores) {
    let p = Platform::on(stores);
    let hi = p.message("acme", "support", "slack", "U1", "E1", "hi");
    assert_eq!(p.say(&hi).len(), 2);
    let again = p.deliver(&hi);
    assert_eq!(again.status, 200);
    assert_eq!(again.json_body()["duplicate"], true);
    assert_eq!(
        p.texts().len(),
        2,
        "the redelivery re-published under the same ids"
    );
    let name = p.say(&p.message("acme", "support", "slack", "U1", "E2", "Dana"));
    assert_eq!(name, ["Thanks Dana! What is your order number?"]);

    // The executor died after committing but before publishing: the
    // redelivery publishes the replies it remembered.
    p.bridge.set_down(true);
    let order = p.message("acme", "support", "slack", "U1", "E3", "12345");
    assert_problem(&p.deliver(&order), 503, "unavailable");
    p.bridge.set_down(false);
    let retried = p.deliver(&order);
    assert_eq!(retried.json_body()["duplicate"], true);
    assert_eq!(
        p.texts().last().unwrap(),
        "Got it, order 12345. Is it about a refund, a delivery, or something else?"
    );
    let session = p.replies()[0].session_id.clone();
    let body = p
        .sessions_api(&acme_support(), &format!("/api/v1/sessions/{session}"))
        .json_body();
    assert_eq!(body["state"]["order"], "12345");
}

fn concurrent_messages_to_one_session_both_land(stores: Stores) {
    let p = Arc::new(Platform::on(stores));
    p.say(&p.message("acme", "support", "slack", "U1", "E0", "hi"));
    // Eight people-typed answers at once to the same open question: every one
    // is applied exactly once, in some order.
    let handles: Vec<_> = (1..=8)
        .map(|i| {
            let p = p.clone();
            std::thread::spawn(move || {
                let message = p.message(
                    "acme",
                    "support",
                    "slack",
                    "U1",
                    &format!("E{i}"),
                    &format!("name{i}"),
                );
                loop {
                    let r = p.deliver(&message);
                    match r.status {
                        200 => return,
                        503 => std::thread::yield_now(),
                        other => panic!("{other} {}", r.json_body()),
                    }
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    let session = p.replies()[0].session_id.clone();
    let body = p
        .sessions_api(&acme_support(), &format!("/api/v1/sessions/{session}"))
        .json_body();
    // 9 messages in; 2 + 8 replies out (each answer got exactly one reply).
    assert_eq!(body["message_count"], 19);
    assert_eq!(p.texts().len(), 10);
}

fn an_envelope_that_contradicts_its_subject_is_refused_for_the_dead_letter_queue(stores: Stores) {
    let p = Platform::on(stores);
    let acme = p.message("acme", "support", "slack", "U1", "E1", "hi");
    let bigcorp = p.message("bigcorp", "helpdesk", "webchat", "u-1", "a1", "hi");
    // acme's envelope on bigcorp's subject, and the reverse.
    for (subject_of, payload_of) in [(&bigcorp, &acme), (&acme, &bigcorp)] {
        let forged = Published {
            subject: subject_of.subject.clone(),
            ..payload_of.clone()
        };
        assert_problem(&p.deliver(&forged), 422, "unprocessable");
    }
    // Ordered by the bridge as another session's message: it could have
    // overtaken its own conversation's earlier messages.
    let misordered = Published {
        session: bigcorp.session.clone(),
        ..acme.clone()
    };
    assert_problem(&p.deliver(&misordered), 422, "unprocessable");
    // An envelope whose session id was tampered with.
    let mut envelope = Envelope::from_json(&acme.payload).unwrap();
    envelope.session_id =
        greentic::tenancy::ids::SessionId::parse("0123456789abcdef0123456789abcdef")
            .unwrap()
            .unwrap();
    let tampered = Published {
        payload: envelope.to_json(),
        ..acme.clone()
    };
    assert_problem(&p.deliver(&tampered), 422, "unprocessable");
    // Not an envelope at all; a message text is never echoed back.
    let junk = Published {
        payload: br#"{"v": 1, "text": "my secret plan"}"#.to_vec(),
        ..acme.clone()
    };
    let r = p.deliver(&junk);
    assert_problem(&r, 422, "unprocessable");
    assert!(!String::from_utf8_lossy(&r.body).contains("secret plan"));
    assert!(p.host.store("sessions").snapshot().is_empty());
    assert!(p.replies().is_empty());
}

fn only_the_bridge_can_deliver(stores: Stores) {
    let p = Platform::on(stores);
    let hi = p.message("acme", "support", "slack", "U1", "E1", "hi");
    let mut forged = FakeBridge::delivery(&hi, 1);
    forged.headers.retain(|(n, _)| n != "authorization");
    let unsigned = flow_executor::handle(&forged, p.host.as_ref());
    assert_problem(&unsigned, 401, "unauthorized");
    let wrong = forged
        .clone()
        .with_header("authorization", "Bearer not-the-token");
    assert_problem(
        &flow_executor::handle(&wrong, p.host.as_ref()),
        401,
        "unauthorized",
    );
    p.host.set_variable("bridge_delivery_token", "");
    let unconfigured = flow_executor::handle(&FakeBridge::delivery(&hi, 1), p.host.as_ref());
    assert_problem(&unconfigured, 503, "not-configured");
    p.host
        .set_variable("bridge_delivery_token", TEST_DELIVERY_TOKEN);
    let mut no_subject = FakeBridge::delivery(&hi, 1);
    no_subject
        .headers
        .retain(|(n, _)| n != "x-greentic-subject");
    assert_problem(
        &flow_executor::handle(&no_subject, p.host.as_ref()),
        400,
        "bad-request",
    );
    assert!(p.host.store("sessions").snapshot().is_empty());
}

fn usage_is_counted_per_team_and_read_within_the_callers_scope(stores: Stores) {
    let p = Platform::on(stores);
    p.say(&p.message("acme", "support", "slack", "U1", "E1", "hi"));
    // The bridge held this one for acme's rate; its redelivery is not
    // counted again.
    let held = p.message("acme", "support", "slack", "U1", "E2", "Dana");
    for attempt in [1, 2] {
        let delivery = FakeBridge::delivery(&held, attempt)
            .with_header(greentic::messaging::delivery::DELAYED_HEADER, "1500");
        let r = flow_executor::handle(&delivery, p.host.as_ref());
        assert_eq!(r.status, 200, "{}", r.json_body());
    }
    p.say(&p.message("bigcorp", "helpdesk", "webchat", "u-1", "a1", "hi"));
    let counts = |messages_in: i64, replies_out: i64, messages_delayed: i64| {
        json!({
            "messages_in": messages_in,
            "replies_out": replies_out,
            "errors": 0,
            "messages_delayed": messages_delayed,
            "api_requests_refused": 0,
            "webchat_messages_refused": 0,
        })
    };
    let usage = |call: &Call| {
        let r = session_api::handle(&call.request("GET", "/api/v1/usage"), p.host.as_ref());
        assert_eq!(r.status, 200, "{}", r.json_body());
        r.json_body()["totals"].clone()
    };
    assert_eq!(usage(&acme_support()), counts(2, 3, 1));
    assert_eq!(usage(&Call::with(&token("acme", "prod"))), counts(2, 3, 1));
    let sales_only = Call::with(&token("acme", "prod").teams(&["sales"]));
    assert_eq!(usage(&sales_only), counts(0, 0, 0));
    assert_eq!(
        usage(&Call::with(&token("bigcorp", "prod"))),
        counts(1, 1, 0)
    );
    let cross = Call::with(&token("acme", "prod")).tenant("bigcorp");
    let r = session_api::handle(&cross.request("GET", "/api/v1/usage"), p.host.as_ref());
    assert_problem(&r, 403, "forbidden");
    let bad = session_api::handle(
        &acme_support().request("GET", "/api/v1/usage?from=2026-13-01"),
        p.host.as_ref(),
    );
    assert_problem(&bad, 400, "bad-request");

    // `to` defaults to today and `from` to `to`.
    let day = |offset_days: i64| {
        let ms = e2e_tests::NOW_SECS as i64 * 1000 + offset_days * 86_400_000;
        greentic::tenancy::ids::Day::of(ms).as_str().to_owned()
    };
    let days = |query: &str| {
        let path = format!("/api/v1/usage{query}");
        let r = session_api::handle(&acme_support().request("GET", &path), p.host.as_ref());
        assert_eq!(r.status, 200, "{query}: {}", r.json_body());
        let body = r.json_body();
        let dates: Vec<String> = body["days"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["date"].as_str().unwrap().to_owned())
            .collect();
        (dates, body["totals"]["messages_in"].clone())
    };
    assert_eq!(days(""), (vec![day(0)], json!(2)));
    assert_eq!(
        days(&format!("?from={}", day(-1))),
        (vec![day(-1), day(0)], json!(2)),
        "from alone runs to today"
    );
    assert_eq!(
        days(&format!("?to={}", day(-1))),
        (vec![day(-1)], json!(0)),
        "to alone is that day"
    );
    let future = session_api::handle(
        &acme_support().request("GET", &format!("/api/v1/usage?from={}", day(1))),
        p.host.as_ref(),
    );
    assert_problem(&future, 400, "bad-request");
}
