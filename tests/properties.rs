//! Properties of every parser of outside input, over generated input: the
//! providers' webhook bodies and headers (verified and not), web chat
//! activities and token requests, webhook paths, the REST APIs' query strings
//! and cursors, secret bodies, bridge deliveries, bundle and flow YAML, and
//! the stored records of every kind (garbage, mutations, future versions).
//!
//! The property each time: no panic; a refusal is a 4xx problem (5xx only for
//! stored data that is corrupt, which is the platform's fault, not the
//! caller's); a refused request writes nothing and publishes nothing.
//!
//! CI runs a bounded number of cases per property; `PROPTEST_CASES=100000
//! cargo test -p e2e-tests --test properties` runs many more.

use std::sync::Arc;

use e2e_tests::{Broker, Call, token};
use greentic::http::{Request, Response};
use greentic::testing::{FakeBridge, MemoryHost, NOW_SECS, TEST_DELIVERY_TOKEN};
use greentic_harness::providers::{slack, teams, telegram};
use proptest::prelude::*;
use serde_json::{Value, json};

const SLACK_SECRET: &str = "properties-slack-signing-secret";
const TELEGRAM_SECRET: &str = "properties-telegram-secret";
const WEBCHAT_SECRET: &str = "properties-webchat-secret-0123456789";

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(128)
}

/// Ingress over the real broker and a recording bridge, the demo channels'
/// secrets stored, Teams' keys pinned.
struct Ingress {
    host: MemoryHost,
    bridge: Arc<FakeBridge>,
    _broker: Broker,
}

fn ingress() -> Ingress {
    let broker = Broker::new();
    let admin =
        |tenant: &str, team: &str| Call::with(&token(tenant, "prod").roles(&["admin"])).team(team);
    broker.put(
        &admin("acme", "support"),
        "slack_signing_secret",
        SLACK_SECRET,
    );
    broker.put(
        &admin("acme", "support"),
        "telegram_webhook_secret",
        TELEGRAM_SECRET,
    );
    broker.put(
        &admin("bigcorp", "helpdesk"),
        "webchat_token_secret",
        WEBCHAT_SECRET,
    );
    let host = broker.component_host(&[
        greentic::messaging::providers::teams_keys::CACHE_STORE,
        greentic::service::limits::STORE_LABEL,
    ]);
    host.set_variable("teams_jwks", &teams::jwks().to_string());
    let bridge = FakeBridge::serve(&host);
    Ingress {
        host,
        bridge,
        _broker: broker,
    }
}

impl Ingress {
    fn post(&self, path: &str, headers: &[(String, String)], body: &[u8]) -> Response {
        let mut req = Request::new("POST", path).with_body(body.to_vec());
        for (name, value) in headers {
            req = req.with_header(name, value);
        }
        ingress::handle(&req, &self.host)
    }

    fn webchat_token(&self) -> String {
        let r = self.post(
            "/webhooks/prod/bigcorp/helpdesk/webchat/tokens",
            &[("authorization".into(), format!("Bearer {WEBCHAT_SECRET}"))],
            b"",
        );
        r.json_body()["token"].as_str().unwrap().to_owned()
    }
}

/// A response is a success or a 4xx problem; never a 5xx, never a panic.
fn no_server_error(r: &Response) -> Result<(), TestCaseError> {
    prop_assert!(r.status < 500, "{} {}", r.status, r.json_body());
    if r.status >= 400 {
        prop_assert_eq!(r.header("content-type"), Some("application/problem+json"));
    }
    Ok(())
}

// ---- generated input ------------------------------------------------------------

/// JSON shaped like provider payloads: objects whose keys come from the
/// fields providers send (so parsers get past their first checks), with
/// values of every JSON kind.
fn json_value() -> impl Strategy<Value = Value> {
    let key = prop_oneof![
        Just("type"),
        Just("event"),
        Just("event_id"),
        Just("team_id"),
        Just("channel"),
        Just("user"),
        Just("text"),
        Just("ts"),
        Just("thread_ts"),
        Just("subtype"),
        Just("bot_id"),
        Just("files"),
        Just("challenge"),
        Just("update_id"),
        Just("message"),
        Just("edited_message"),
        Just("chat"),
        Just("id"),
        Just("from"),
        Just("is_bot"),
        Just("date"),
        Just("message_thread_id"),
        Just("is_topic_message"),
        Just("first_name"),
        Just("photo"),
        Just("document"),
        Just("channelId"),
        Just("serviceUrl"),
        Just("conversation"),
        Just("recipient"),
        Just("timestamp"),
        Just("attachments"),
        Just("contentType"),
        Just("name"),
    ];
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(|f| json!(f)),
        prop_oneof![
            Just("message".to_owned()),
            Just("event_callback".to_owned()),
            Just("url_verification".to_owned()),
            Just("msteams".to_owned()),
            Just("C789012".to_owned()),
            Just("T123456".to_owned()),
            Just("-1001234567890".to_owned()),
            ".{0,24}",
        ]
        .prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 48, 8, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            prop::collection::btree_map(key.clone(), inner, 0..8).prop_map(|m| {
                Value::Object(m.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
            }),
        ]
    })
}

/// A body: generated JSON, a valid payload with one field replaced, or bytes.
fn body(valid: Value) -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        json_value().prop_map(|v| v.to_string().into_bytes()),
        (json_value(), prop::sample::select(paths_of(&valid))).prop_map(move |(v, path)| {
            let mut doc = valid.clone();
            set_at(&mut doc, &path, v);
            doc.to_string().into_bytes()
        }),
        prop::collection::vec(any::<u8>(), 0..64),
    ]
}

/// Every path to a value in `doc`, as keys.
fn paths_of(doc: &Value) -> Vec<Vec<String>> {
    let mut out = vec![Vec::new()];
    if let Value::Object(map) = doc {
        for (k, v) in map {
            for mut rest in paths_of(v) {
                rest.insert(0, k.clone());
                out.push(rest);
            }
        }
    }
    out
}

fn set_at(doc: &mut Value, path: &[String], value: Value) {
    match path.split_first() {
        None => *doc = value,
        Some((first, rest)) => {
            if let Some(child) = doc.get_mut(first) {
                set_at(child, rest, value);
            }
        }
    }
}

fn header_value() -> impl Strategy<Value = String> {
    prop_oneof![
        "[ -~]{0,80}",
        "v0=[0-9a-f]{0,64}",
        "[0-9]{0,12}",
        Just(String::new()),
    ]
}

// ---- properties -------------------------------------------------------------------

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases()))]

    /// Signed, so every body reaches Slack's parser.
    #[test]
    fn a_signed_slack_body_is_published_ignored_or_a_4xx(
        raw in body(slack::message_event("Ev1", "U1", "hi", None))
    ) {
        let i = ingress();
        let headers = slack::signed_headers(SLACK_SECRET, NOW_SECS as i64, &raw);
        let r = i.post("/webhooks/prod/acme/support/slack", &headers, &raw);
        no_server_error(&r)?;
        if r.status != 200 || r.json_body()["status"] != "published" {
            prop_assert!(i.bridge.published().is_empty());
        }
    }

    #[test]
    fn slack_signature_headers_that_do_not_verify_are_401_or_400(
        signature in header_value(),
        timestamp in header_value(),
    ) {
        let i = ingress();
        let raw = slack::message_event("Ev1", "U1", "hi", None).to_string();
        let r = i.post(
            "/webhooks/prod/acme/support/slack",
            &[
                ("x-slack-signature".into(), signature),
                ("x-slack-request-timestamp".into(), timestamp),
            ],
            raw.as_bytes(),
        );
        no_server_error(&r)?;
        prop_assert!(matches!(r.status, 400 | 401), "{}", r.status);
        prop_assert!(i.bridge.published().is_empty());
    }

    #[test]
    fn a_telegram_update_with_its_secret_is_published_ignored_or_a_4xx(
        raw in body(telegram::update(1, 1111111, "hi", None)),
        secret in prop_oneof![Just(TELEGRAM_SECRET.to_owned()), header_value()],
    ) {
        let i = ingress();
        let r = i.post(
            "/webhooks/prod/acme/support/telegram",
            &[(telegram::SECRET_HEADER.into(), secret.clone())],
            &raw,
        );
        no_server_error(&r)?;
        if secret != TELEGRAM_SECRET {
            prop_assert_eq!(r.status, 401);
        }
        if r.status != 200 || r.json_body()["status"] != "published" {
            prop_assert!(i.bridge.published().is_empty());
        }
    }

    #[test]
    fn a_teams_activity_with_a_good_or_bad_token_is_never_a_5xx(
        raw in body(teams::message_activity("1", "29:u", "19:c", "hi")),
        good in any::<bool>(),
        bearer in header_value(),
    ) {
        let i = ingress();
        let bearer = if good { teams::connector_token(teams::SERVICE_URL, NOW_SECS as i64) } else { bearer };
        let r = i.post(
            "/webhooks/prod/acme/sales/teams",
            &[("authorization".into(), format!("Bearer {bearer}"))],
            &raw,
        );
        no_server_error(&r)?;
        if !good {
            prop_assert!(matches!(r.status, 401 | 503), "{}", r.status);
        }
    }

    #[test]
    fn a_web_chat_activity_and_a_token_request_are_never_a_5xx(
        raw in body(json!({"type": "message", "id": "m1", "text": "hi"})),
        token_body in body(json!({"user_name": "Dana", "user_id": "u-1", "conversation_id": "wc-1"})),
    ) {
        let i = ingress();
        let bearer = format!("Bearer {}", i.webchat_token());
        let r = i.post(
            "/webhooks/prod/bigcorp/helpdesk/webchat",
            &[("authorization".into(), bearer)],
            &raw,
        );
        no_server_error(&r)?;
        let r = i.post(
            "/webhooks/prod/bigcorp/helpdesk/webchat/tokens",
            &[("authorization".into(), format!("Bearer {WEBCHAT_SECRET}"))],
            &token_body,
        );
        no_server_error(&r)?;
    }

    #[test]
    fn any_webhook_path_is_a_404_400_or_a_verification_answer(
        segments in prop::collection::vec(prop_oneof!["[a-z0-9%._-]{0,12}", ".{0,8}"], 0..7)
    ) {
        let i = ingress();
        let path = format!("/webhooks/{}", segments.join("/"));
        let r = i.post(&path, &[], b"{}");
        no_server_error(&r)?;
        prop_assert!(i.bridge.published().is_empty());
    }
}

// ---- the REST APIs ------------------------------------------------------------------

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases()))]

    /// Listing, usage and single reads with generated query strings and ids:
    /// 200 or a 4xx, and nothing in the store changes.
    #[test]
    fn session_api_queries_and_ids_are_answered_without_writing(
        query in prop_oneof![
            "(limit|cursor|channel|status|updated_since|from|to|x)=[ -~]{0,30}(&(limit|cursor|status)=[ -~]{0,10})?",
            ".{0,40}",
        ],
        id in "[ -~]{0,40}",
    ) {
        let host = MemoryHost::new(&[session_api::STORE_LABEL, "limits"]);
        greentic::store::sessions::SessionStore::new(host.store(session_api::STORE_LABEL))
            .create(
                &greentic::TenantCtx::new("acme", "prod", Some("support")).unwrap(),
                greentic::testing::new_session("slack", "U1"),
                1,
            )
            .unwrap();
        let before = host.store(session_api::STORE_LABEL).snapshot();
        let call = Call::with(&token("acme", "prod")).team("support");
        let encoded: String = id.bytes().map(|b| format!("%{b:02X}")).collect();
        for path in [
            format!("/api/v1/sessions?{query}"),
            format!("/api/v1/usage?{query}"),
            format!("/api/v1/sessions/{encoded}?{query}"),
        ] {
            let r = session_api::handle(&call.request("GET", &path), &host);
            no_server_error(&r)?;
        }
        prop_assert_eq!(host.store(session_api::STORE_LABEL).snapshot(), before);
    }

    /// Secret puts with generated bodies and names: created, replaced, or a
    /// 4xx that stores nothing.
    #[test]
    fn secret_puts_store_a_value_or_refuse_and_store_nothing(
        raw in body(json!({"value": "a value of sixteen bytes"})),
        name in prop_oneof!["[a-z0-9_-]{1,20}", "[ -~]{0,20}"],
    ) {
        let broker = Broker::new();
        let before = broker.kv().snapshot();
        let encoded: String = name.bytes().map(|b| format!("%{b:02X}")).collect();
        let call = Call::with(&token("acme", "prod").roles(&["admin"])).team("support");
        let r = broker.call(call.request("PUT", &format!("/api/v1/secrets/{encoded}")).with_body(raw));
        no_server_error(&r)?;
        if r.status >= 400 {
            prop_assert_eq!(broker.kv().snapshot(), before);
        }
    }

    /// Deliveries with the bridge's token but generated bodies and headers:
    /// a 4xx the bridge dead-letters (never a 5xx it would retry for ever).
    #[test]
    fn deliveries_of_anything_are_refused_as_4xx(
        raw in body(json!({"v": 1, "id": "x", "text": "hi"})),
        subject in prop_oneof![
            Just("greentic.messaging.ingress.prod.acme.support.slack".to_owned()),
            Just("greentic.messaging.egress.prod.acme.support.slack".to_owned()),
            "[ -~]{0,40}",
        ],
        msg_id in "[ -~]{0,30}",
        attempt in "[0-9a-z]{0,4}",
    ) {
        let host = MemoryHost::new(&["sessions", "webchat", "egress"]);
        FakeBridge::serve(&host);
        for route in ["/internal/v1/deliveries/ingress", "/internal/v1/deliveries/egress"] {
            let req = Request::new("POST", route)
                .with_header("authorization", format!("Bearer {TEST_DELIVERY_TOKEN}"))
                .with_header(greentic::messaging::delivery::SUBJECT_HEADER, &subject)
                .with_header(greentic::messaging::delivery::MSG_ID_HEADER, &msg_id)
                .with_header(greentic::messaging::delivery::ATTEMPT_HEADER, &attempt)
                .with_body(raw.clone());
            let r = if route.ends_with("ingress") {
                flow_executor::handle(&req, &host)
            } else {
                egress::handle(&req, &host)
            };
            no_server_error(&r)?;
        }
        prop_assert!(host.store("sessions").snapshot().is_empty());
    }
}

// ---- documents and stored records ---------------------------------------------------

fn yaml_text() -> impl Strategy<Value = String> {
    let demo = include_str!("../bundles/demo.yaml");
    let flow = include_str!("../bundles/flows/acme_support_flow.yaml");
    prop_oneof![
        ".{0,200}",
        (0..demo.len(), ".{0,20}").prop_map(move |(at, text)| splice(demo, at, &text)),
        (0..flow.len(), ".{0,20}").prop_map(move |(at, text)| splice(flow, at, &text)),
    ]
}

/// `base` with `text` put in at byte `at` (moved back to a char boundary).
fn splice(base: &str, mut at: usize, text: &str) -> String {
    while !base.is_char_boundary(at) {
        at -= 1;
    }
    format!("{}{text}{}", &base[..at], &base[at..])
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases()))]

    #[test]
    fn bundles_and_flows_parse_or_name_their_errors(text in yaml_text()) {
        match greentic::flows::bundle::Bundle::parse("b.yaml", &text) {
            Ok(_) => {}
            Err(errors) => prop_assert!(errors.iter().all(|e| e.to_string().starts_with("b.yaml"))),
        }
        match greentic::flows::flow::Flow::parse("f.yaml", &text) {
            Ok(_) => {}
            Err(errors) => prop_assert!(errors.iter().all(|e| e.to_string().starts_with("f.yaml"))),
        }
    }

    /// Garbage, and valid records with bytes changed or cut, decode or fail
    /// with an error; never a panic.
    #[test]
    fn stored_records_decode_or_fail_cleanly(
        garbage in prop::collection::vec(any::<u8>(), 0..200),
        flip in any::<prop::sample::Index>(),
        byte in any::<u8>(),
        cut in any::<prop::sample::Index>(),
    ) {
        use greentic::store::session::{SessionMemory, SessionRecord};
        let ctx = greentic::TenantCtx::new("acme", "prod", Some("support")).unwrap();
        let record = SessionRecord::new(
            &ctx,
            greentic::testing::new_session("slack", "U1"),
            1,
            1,
        )
        .encode();
        let mut memory = SessionMemory::new();
        memory.remember("m1", "hi", 1, vec!["hello".into()]);
        let memory = memory.encode();
        for valid in [&record, &memory] {
            let mut changed = valid.clone();
            let at = flip.index(changed.len());
            changed[at] = byte;
            let cut = &valid[..cut.index(valid.len())];
            for bytes in [&garbage[..], &changed[..], cut] {
                let _ = SessionRecord::decode(bytes);
                let _ = SessionMemory::decode(bytes);
                let _ = greentic::messaging::envelope::Envelope::from_json(bytes);
                let _ = greentic::messaging::envelope::Outbound::from_json(bytes);
            }
        }
    }

    /// A session record or memory of a later format, or garbage, under a
    /// session's keys: reading the session answers a problem (its own fault,
    /// so 5xx), the listing leaves it out, nothing panics, and reads never
    /// write.
    #[test]
    fn a_stored_session_that_cannot_be_read_is_a_problem_not_a_panic(
        garbage in prop::collection::vec(any::<u8>(), 0..120),
        version in 2u16..1000,
    ) {
        use greentic::store::session::SessionRecord;
        let host = MemoryHost::new(&[session_api::STORE_LABEL, "limits"]);
        let kv = host.store(session_api::STORE_LABEL);
        let ctx = greentic::TenantCtx::new("acme", "prod", Some("support")).unwrap();
        let created = greentic::store::sessions::SessionStore::new(kv)
            .create(&ctx, greentic::testing::new_session("slack", "U1"), 1)
            .unwrap();
        let mut future: ciborium::Value = ciborium::Value::serialized(&created).unwrap();
        for (k, v) in future.as_map_mut().unwrap() {
            if k.as_text() == Some("v") {
                *v = ciborium::Value::Integer(version.into());
            }
        }
        let mut future_bytes = Vec::new();
        ciborium::into_writer(&future, &mut future_bytes).unwrap();
        let call = Call::with(&token("acme", "prod")).team("support");
        for stored in [future_bytes, garbage.clone()] {
            use greentic::store::kv::KeyValue;
            kv.set(&greentic::tenancy::keys::session_record(&ctx, &created.id), &stored).unwrap();
            kv.set(&greentic::tenancy::keys::session_state(&ctx, &created.id), &garbage).unwrap();
            let before = kv.snapshot();
            let read = session_api::handle(&call.request("GET", &format!("/api/v1/sessions/{}", created.id)), &host);
            prop_assert!(read.status >= 500, "{}", read.status);
            prop_assert_eq!(read.header("content-type"), Some("application/problem+json"));
            let listed = session_api::handle(&call.request("GET", "/api/v1/sessions"), &host);
            prop_assert_eq!(listed.status, 200);
            prop_assert_eq!(&listed.json_body()["sessions"], &json!([]));
            prop_assert_eq!(kv.snapshot(), before);
            prop_assert!(SessionRecord::decode(&stored).is_err());
        }
    }
}
