//! Egress end to end, natively: replies delivered as the bridge pushes them,
//! sent to local fakes of Slack, Telegram and the Bot Framework with the
//! credentials the broker holds for that tenant/team; web chat replies read
//! back through the webchat component.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use e2e_tests::{Broker, Call, Stores, assert_problem, token};
use greentic::http::{Request, Response};
use greentic::messaging::envelope::{Outbound, ReplyAddress};
use greentic::messaging::providers::Message;
use greentic::tenancy::ids::{Conversation, TenantCtx};
use greentic::testing::{FakeBridge, MemoryHost, Published, envelope_on, message};
use serde_json::{Value, json};

const SLACK: &str = "http://slack.test:9001";
const TELEGRAM: &str = "http://telegram.test:9002";
const LOGIN: &str = "http://login.test:9003";
const SERVICE: &str = "http://smba.test:9004";

/// A provider API in memory: records every request and answers from a
/// script (then with `ok`).
struct FakeApi {
    calls: Mutex<Vec<Request>>,
    script: Mutex<VecDeque<Response>>,
    ok: Response,
    /// Runs with the number of the call being answered (1 for the first).
    on_call: Mutex<Option<CallHook>>,
}

type CallHook = Box<dyn Fn(usize) + Send>;

impl FakeApi {
    fn new(ok: Value) -> Arc<FakeApi> {
        Arc::new(FakeApi {
            calls: Mutex::new(Vec::new()),
            script: Mutex::new(VecDeque::new()),
            ok: Response::json(200, &ok),
            on_call: Mutex::new(None),
        })
    }

    fn on_call(&self, hook: impl Fn(usize) + Send + 'static) {
        *self.on_call.lock().unwrap() = Some(Box::new(hook));
    }

    fn answer(&self, req: &Request) -> Response {
        let n = {
            let mut calls = self.calls.lock().unwrap();
            calls.push(req.clone());
            calls.len()
        };
        if let Some(hook) = self.on_call.lock().unwrap().as_ref() {
            hook(n);
        }
        self.script
            .lock()
            .unwrap()
            .pop_front()
            .unwrap_or_else(|| self.ok.clone())
    }

    fn then(&self, response: Response) {
        self.script.lock().unwrap().push_back(response);
    }

    fn calls(&self) -> Vec<Request> {
        self.calls.lock().unwrap().clone()
    }
}

struct Egress {
    host: MemoryHost,
    broker: Broker,
    slack: Arc<FakeApi>,
    telegram: Arc<FakeApi>,
    login: Arc<FakeApi>,
    service: Arc<FakeApi>,
}

fn admin(tenant: &str, team: Option<&str>) -> Call {
    let call = Call::with(&token(tenant, "prod").roles(&["admin"]));
    match team {
        Some(team) => call.team(team),
        None => call,
    }
}

impl Egress {
    fn new() -> Self {
        Egress::on(Stores::Memory)
    }

    fn on(stores: Stores) -> Self {
        let broker = Broker::new();
        broker.put(&admin("acme", None), "slack_bot_token", "xoxb-acme-tenant");
        broker.put(
            &admin("acme", Some("support")),
            "slack_bot_token",
            "xoxb-acme-support",
        );
        broker.put(
            &admin("acme", Some("support")),
            "telegram_bot_token",
            "123456:ACME-TG",
        );
        broker.put(
            &admin("acme", Some("sales")),
            "teams_app_password",
            "acme-sales-app-password",
        );
        broker.put(&admin("bigcorp", None), "slack_bot_token", "xoxb-bigcorp");
        broker.put(
            &admin("bigcorp", Some("helpdesk")),
            "webchat_token_secret",
            "bigcorp-webchat-secret-0123456789",
        );
        let host = broker.component_host_on(
            &[
                greentic::store::webchat_log::STORE_LABEL,
                greentic::messaging::egress::STORE_LABEL,
            ],
            stores,
        );
        FakeBridge::serve(&host);
        let serve = |url: &str, api: &Arc<FakeApi>| {
            let api = api.clone();
            host.serve_url(url, Arc::new(move |req| api.answer(req)));
        };
        let slack = FakeApi::new(json!({ "ok": true, "ts": "1.2" }));
        let telegram = FakeApi::new(json!({ "ok": true, "result": { "message_id": 9 } }));
        let login = FakeApi::new(json!({ "access_token": "bf-access-token", "expires_in": 3600 }));
        let service = FakeApi::new(json!({ "id": "reply-1" }));
        serve(SLACK, &slack);
        serve(TELEGRAM, &telegram);
        serve(LOGIN, &login);
        serve(SERVICE, &service);
        host.set_variable("slack_api_url", SLACK);
        host.set_variable("telegram_api_url", TELEGRAM);
        host.set_variable("teams_login_url", LOGIN);
        host.set_variable("teams_extra_service_url", SERVICE);
        Egress {
            host,
            broker,
            slack,
            telegram,
            login,
            service,
        }
    }

    /// A reply to a message in `conversation`, as the executor publishes it.
    fn reply(
        &self,
        tenant: &str,
        team: &str,
        channel: &str,
        conversation: Conversation,
        reply: ReplyAddress,
        text: &str,
    ) -> Published {
        let inbound = Message {
            conversation,
            reply,
            ..message(&format!("E{}", text.len()), "U1", "hi")
        };
        let inbound = envelope_on(&self.host, tenant, team, channel, inbound);
        Published::reply(&Outbound::reply_to(&inbound, vec![text.into()]))
    }

    fn deliver(&self, message: &Published) -> Response {
        egress::handle(&FakeBridge::delivery(message, 1), &self.host)
    }

    /// A turn's three replies ("first", "second", "third") to a Slack message.
    fn three_slack_replies(&self) -> Outbound {
        let m = self.reply(
            "acme",
            "support",
            "slack",
            conversation("C1", None),
            ReplyAddress::default(),
            "x",
        );
        let mut out = Outbound::from_json(&m.payload).unwrap();
        out.texts = vec!["first".into(), "second".into(), "third".into()];
        out
    }

    /// The text of every Slack post, in order.
    fn slack_texts(&self) -> Vec<String> {
        self.slack
            .calls()
            .iter()
            .map(|c| body(c)["text"].as_str().unwrap().to_owned())
            .collect()
    }
}

fn conversation(id: &str, thread: Option<&str>) -> Conversation {
    Conversation {
        id: id.into(),
        thread: thread.map(str::to_owned),
    }
}

fn body(req: &Request) -> Value {
    serde_json::from_slice(&req.body).unwrap()
}

#[test]
fn slack_replies_use_the_teams_bot_token_and_stay_in_the_thread() {
    let e = Egress::new();
    let m = e.reply(
        "acme",
        "support",
        "slack",
        conversation("C789012", Some("1700.0001")),
        ReplyAddress::default(),
        "Welcome!",
    );
    let r = e.deliver(&m);
    assert_eq!(r.status, 200, "{}", r.json_body());
    let calls = e.slack.calls();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].path, "/api/chat.postMessage");
    // The team's token shadows the tenant's; bigcorp's is never used.
    assert_eq!(
        calls[0].header("authorization").unwrap(),
        Some("Bearer xoxb-acme-support")
    );
    assert_eq!(
        body(&calls[0]),
        json!({ "channel": "C789012", "text": "Welcome!", "thread_ts": "1700.0001" })
    );
}

#[test]
fn a_turns_replies_go_out_in_the_order_the_flow_wrote_them() {
    let e = Egress::new();
    let out = e.three_slack_replies();
    assert_eq!(e.deliver(&Published::reply(&out)).status, 200);
    assert_eq!(e.slack_texts(), ["first", "second", "third"]);
}

// The stores egress writes (its progress, the web chat log): on Redis as well.
e2e_tests::on_every_store!(
    a_failure_part_way_resends_only_the_replies_not_yet_sent,
    a_store_failure_after_a_send_repeats_that_text_and_loses_none,
    web_chat_replies_are_read_back_by_their_conversation_only,
    two_messages_of_one_session_in_flight_keep_their_own_progress,
    equal_message_ids_in_two_web_chat_conversations_are_both_shown,
    a_session_whose_first_progress_writer_died_is_still_sent,
);

/// The egress that won a session's first progress record died before writing
/// it (its claim is taken, no record exists): later messages of the session
/// are still sent, and recorded, instead of waiting for that record forever.
fn a_session_whose_first_progress_writer_died_is_still_sent(stores: Stores) {
    use greentic::store::kv::KeyValue;
    let e = Egress::on(stores);
    let out = e.three_slack_replies();
    let ctx = TenantCtx::new("acme", "prod", Some("support")).unwrap();
    let claim = greentic::tenancy::keys::egress_progress_claim(&ctx, &out.session_id);
    let kv = e.host.store(greentic::messaging::egress::STORE_LABEL);
    assert_eq!(
        kv.increment(&claim, 1).unwrap(),
        1,
        "{claim} was not taken yet"
    );

    let m = Published::reply(&out);
    let r = e.deliver(&m);
    assert_eq!((r.status, &r.json_body()["repeat"]), (200, &json!(false)));
    let r = e.deliver(&m);
    assert_eq!((r.status, &r.json_body()["repeat"]), (200, &json!(true)));
    assert_eq!(e.slack_texts(), ["first", "second", "third"]);
}

/// Message A fails part-way; message B of the same session is sent in full
/// meanwhile; A's redelivery sends only what Slack had not accepted of A.
fn two_messages_of_one_session_in_flight_keep_their_own_progress(stores: Stores) {
    let e = Egress::on(stores);
    let a = e.three_slack_replies();
    let mut b = a.clone();
    b.id = format!("{}-later", a.id);
    b.texts = vec!["b1".into(), "b2".into()];
    e.slack
        .then(Response::json(200, &json!({ "ok": true, "ts": "1.1" })));
    e.slack.then(Response::json(
        200,
        &json!({ "ok": false, "error": "ratelimited" }),
    ));
    assert_problem(&e.deliver(&Published::reply(&a)), 503, "unavailable");
    assert_eq!(e.deliver(&Published::reply(&b)).status, 200);
    assert_eq!(e.deliver(&Published::reply(&a)).status, 200);
    assert_eq!(
        e.slack_texts(),
        ["first", "second", "b1", "b2", "second", "third"],
        "A's first text is not sent again"
    );
    for again in [&a, &b] {
        let r = e.deliver(&Published::reply(again));
        assert_eq!(r.json_body()["repeat"], true, "{}", again.id);
    }
    assert_eq!(e.slack_texts().len(), 6);
}

/// The same outbound id in two web chat conversations: two replies, each
/// shown in its own conversation (the "already shown" mark is per conversation).
fn equal_message_ids_in_two_web_chat_conversations_are_both_shown(stores: Stores) {
    let e = Egress::on(stores);
    let reply_in = |conv: &str| {
        let m = e.reply(
            "bigcorp",
            "helpdesk",
            "webchat",
            conversation(conv, None),
            ReplyAddress::default(),
            "Hello",
        );
        let mut out = Outbound::from_json(&m.payload).unwrap();
        out.id = "bigcorp:prod:helpdesk:webchat:activity-m1:replies".into();
        out
    };
    for conv in ["wc-a", "wc-b"] {
        let r = e.deliver(&Published::reply(&reply_in(conv)));
        assert_eq!(
            (r.status, &r.json_body()["repeat"]),
            (200, &json!(false)),
            "{conv}"
        );
    }
    let kv = e.host.store(greentic::store::webchat_log::STORE_LABEL);
    let channel = greentic::tenancy::ids::ChannelId::parse("webchat").unwrap();
    let ctx = TenantCtx::new("bigcorp", "prod", Some("helpdesk")).unwrap();
    for conv in ["wc-a", "wc-b"] {
        let conv = greentic::tenancy::ids::ConversationId::parse(conv).unwrap();
        let log = greentic::store::webchat_log::ConversationLog::new(kv, &ctx, &channel, &conv);
        assert_eq!(log.read_after(0).unwrap().0.len(), 1);
    }
}

/// Slack rate-limits the second of three replies: the redelivery sends the
/// second and third, never the first again; a redelivery after success sends
/// nothing; the same message id with other texts (its flow run again) is
/// sent in full.
fn a_failure_part_way_resends_only_the_replies_not_yet_sent(stores: Stores) {
    let e = Egress::on(stores);
    let mut out = e.three_slack_replies();
    let m = Published::reply(&out);

    e.slack
        .then(Response::json(200, &json!({ "ok": true, "ts": "1.1" })));
    e.slack.then(Response::json(
        200,
        &json!({ "ok": false, "error": "ratelimited" }),
    ));
    assert_problem(&e.deliver(&m), 503, "unavailable");
    assert_eq!(e.slack_texts(), ["first", "second"]);

    let r = e.deliver(&m);
    assert_eq!(r.status, 200, "{}", r.json_body());
    assert_eq!(
        e.slack_texts(),
        ["first", "second", "second", "third"],
        "only the texts Slack had not accepted are sent again"
    );

    // The bridge did not see the 200 and delivers again: nothing is resent.
    let r = e.deliver(&m);
    assert_eq!((r.status, &r.json_body()["repeat"]), (200, &json!(true)));
    assert_eq!(e.slack_texts().len(), 4);

    // The same id with other texts is another message: sent in full.
    out.texts = vec!["other".into()];
    assert_eq!(e.deliver(&Published::reply(&out)).status, 200);
    assert_eq!(e.slack_texts()[4..], ["other"]);
}

/// When the store fails while a message is being sent, its progress cannot
/// be recorded: the answer is 503 and the redelivery sends the message's
/// texts again: repeats, never a loss.
fn a_store_failure_after_a_send_repeats_that_text_and_loses_none(stores: Stores) {
    let e = Egress::on(stores);
    let m = Published::reply(&e.three_slack_replies());
    // The store goes down just as Slack accepts the second text.
    let outage = e
        .host
        .store(greentic::messaging::egress::STORE_LABEL)
        .outage();
    e.slack.on_call(move |n| {
        if n == 2 {
            outage.after(0);
        }
    });
    assert_problem(&e.deliver(&m), 503, "unavailable");
    let progress = e.host.store(greentic::messaging::egress::STORE_LABEL);
    assert_eq!(e.slack_texts(), ["first", "second", "third"]);
    progress.recover();
    assert_eq!(e.deliver(&m).status, 200);
    assert_eq!(
        e.slack_texts(),
        ["first", "second", "third", "first", "second", "third"]
    );
    // Once recorded, a redelivery sends nothing.
    assert_eq!(e.deliver(&m).json_body()["repeat"], true);
    assert_eq!(e.slack_texts().len(), 6);
}

#[test]
fn slack_errors_are_retried_or_dead_lettered_and_never_show_the_token() {
    let e = Egress::new();
    let m = e.reply(
        "acme",
        "support",
        "slack",
        conversation("C1", None),
        ReplyAddress::default(),
        "x",
    );
    e.slack.then(
        Response::json(429, &json!({ "ok": false, "error": "ratelimited" }))
            .with_header("retry-after", "30"),
    );
    let r = e.deliver(&m);
    assert_problem(&r, 503, "unavailable");
    assert!(
        r.json_body()["detail"]
            .as_str()
            .unwrap()
            .contains("retry after 30")
    );
    e.slack.then(Response::json(500, &json!({})));
    assert_problem(&e.deliver(&m), 503, "unavailable");
    e.slack.then(Response::json(
        200,
        &json!({ "ok": false, "error": "ratelimited" }),
    ));
    assert_problem(&e.deliver(&m), 503, "unavailable");
    e.slack.then(Response::json(
        200,
        &json!({ "ok": false, "error": "channel_not_found" }),
    ));
    let r = e.deliver(&m);
    assert_problem(&r, 422, "unprocessable");
    assert_eq!(r.json_body()["detail"], "slack: channel_not_found");
    e.slack.then(Response::json(
        200,
        &json!({ "ok": false, "error": "invalid_auth" }),
    ));
    assert_problem(&e.deliver(&m), 422, "unprocessable");
    assert!(!e.host.raw_logs().contains("xoxb"));
}

#[test]
fn telegram_replies_go_to_the_chat_with_the_channels_bot() {
    let e = Egress::new();
    let m = e.reply(
        "acme",
        "support",
        "telegram",
        conversation("-1001234567890", None),
        ReplyAddress::default(),
        "Hello",
    );
    assert_eq!(e.deliver(&m).status, 200);
    let calls = e.telegram.calls();
    assert_eq!(calls[0].path, "/bot123456:ACME-TG/sendMessage");
    assert_eq!(
        body(&calls[0]),
        json!({ "chat_id": -1001234567890_i64, "text": "Hello" })
    );

    // Another message (a delivered one is never sent again).
    let m = e.reply(
        "acme",
        "support",
        "telegram",
        conversation("-1001234567890", None),
        ReplyAddress::default(),
        "Hello again",
    );

    e.telegram.then(Response::json(403, &json!({ "ok": false, "error_code": 403, "description": "Forbidden: bot was blocked by the user" })));
    let r = e.deliver(&m);
    assert_problem(&r, 422, "unprocessable");
    assert_eq!(
        r.json_body()["detail"],
        "telegram: 403 Forbidden: bot was blocked by the user"
    );
    e.telegram.then(Response::json(
        429,
        &json!({ "ok": false, "error_code": 429, "parameters": { "retry_after": 5 } }),
    ));
    assert_problem(&e.deliver(&m), 503, "unavailable");
    // Unreachable: the reason never quotes the URL, which holds the token.
    e.host
        .set_variable("telegram_api_url", "http://nowhere.test:1");
    let r = e.deliver(&m);
    assert_problem(&r, 503, "unavailable");
    assert!(!String::from_utf8_lossy(&r.body).contains("ACME-TG"));
    assert!(!e.host.raw_logs().contains("ACME-TG"));
}

/// Credentials are resolved once per message, not per text: three texts,
/// one chained call to the broker; a redelivery after success sends nothing
/// and asks the broker nothing.
#[test]
fn a_message_of_several_texts_asks_the_broker_once() {
    let e = Egress::new();
    let m = Published::reply(&e.three_slack_replies());
    let before = e.broker.chained_calls();
    assert_eq!(e.deliver(&m).status, 200);
    assert_eq!(e.slack_texts(), ["first", "second", "third"]);
    assert_eq!(e.broker.chained_calls() - before, 1);
    assert_eq!(e.deliver(&m).json_body()["repeat"], true);
    assert_eq!(e.broker.chained_calls() - before, 1);
}

#[test]
fn teams_replies_fetch_a_bot_token_and_answer_the_activity() {
    let e = Egress::new();
    let reply = ReplyAddress {
        message_id: Some("1485983408511".into()),
        service_url: Some(format!("{SERVICE}/amer/")),
    };
    let m = e.reply(
        "acme",
        "sales",
        "teams",
        conversation("19:abc@thread.tacv2;messageid=1", None),
        reply.clone(),
        "On it",
    );
    let r = e.deliver(&m);
    assert_eq!(r.status, 200, "{}", r.json_body());
    let login = &e.login.calls()[0];
    assert_eq!(login.path, "/botframework.com/oauth2/v2.0/token");
    let form: Vec<(String, String)> = form_urlencoded::parse(&login.body).into_owned().collect();
    assert!(form.contains(&(
        "client_id".into(),
        "5f0b3a4e-2d1c-4b8a-9e7f-0a1b2c3d4e5f".into()
    )));
    assert!(form.contains(&("client_secret".into(), "acme-sales-app-password".into())));
    let sent = &e.service.calls()[0];
    assert_eq!(
        sent.path,
        "/amer/v3/conversations/19%3Aabc%40thread%2Etacv2%3Bmessageid%3D1/activities/1485983408511"
    );
    assert_eq!(
        sent.header("authorization").unwrap(),
        Some("Bearer bf-access-token")
    );
    assert_eq!(body(sent)["text"], "On it");

    // Another message (a delivered one is never sent again).
    let m = e.reply(
        "acme",
        "sales",
        "teams",
        conversation("19:abc@thread.tacv2;messageid=1", None),
        reply,
        "On it, again",
    );
    e.service.then(Response::json(
        404,
        &json!({ "error": { "code": "ConversationNotFound" } }),
    ));
    let r = e.deliver(&m);
    assert_problem(&r, 422, "unprocessable");
    assert_eq!(r.json_body()["detail"], "teams: 404 ConversationNotFound");
    assert_eq!(e.login.calls().len(), 1, "the access token is cached");

    // Once the token is within minutes of its expiry, a new one is fetched.
    e.host
        .set_now_ms(greentic::host::Host::now_ms(&e.host) + 56 * 60 * 1000);
    e.login
        .then(Response::json(400, &json!({ "error": "invalid_client" })));
    assert_problem(&e.deliver(&m), 422, "unprocessable");
    assert_eq!(e.login.calls().len(), 2);
    assert!(!e.host.raw_logs().contains("acme-sales-app-password"));
}

#[test]
fn teams_replies_go_only_to_bot_framework_hosts() {
    let e = Egress::new();
    for service_url in [
        "https://evil.trafficmanager.net/amer/",
        "http://smba.trafficmanager.net/amer/",
        "https://smba.trafficmanager.net.evil.example/amer/",
    ] {
        let m = e.reply(
            "acme",
            "sales",
            "teams",
            conversation("19:abc@thread.tacv2", None),
            ReplyAddress {
                message_id: Some("1".into()),
                service_url: Some(service_url.into()),
            },
            "On it",
        );
        let r = e.deliver(&m);
        assert_problem(&r, 422, "unprocessable");
        assert!(
            r.json_body()["detail"]
                .as_str()
                .unwrap()
                .contains("not a Bot Framework host"),
            "{service_url}"
        );
    }
    assert!(e.login.calls().is_empty(), "no credential was used");
    assert!(e.service.calls().is_empty());
}

#[test]
fn a_missing_credential_waits_for_the_operator_instead_of_dropping_the_reply() {
    let e = Egress::new();
    e.broker.call(
        admin("acme", Some("support")).request("DELETE", "/api/v1/secrets/telegram_bot_token"),
    );
    let m = e.reply(
        "acme",
        "support",
        "telegram",
        conversation("42", None),
        ReplyAddress::default(),
        "x",
    );
    let r = e.deliver(&m);
    assert_problem(&r, 503, "not-configured");
    assert!(e.telegram.calls().is_empty());
}

#[test]
fn a_reply_naming_another_tenant_than_its_subject_is_never_sent() {
    let e = Egress::new();
    let acme = e.reply(
        "acme",
        "support",
        "slack",
        conversation("C1", None),
        ReplyAddress::default(),
        "for acme",
    );
    let forged = Published {
        subject: "greentic.messaging.egress.prod.bigcorp.helpdesk.webchat".into(),
        ..acme.clone()
    };
    assert_problem(&e.deliver(&forged), 422, "unprocessable");
    let mut out = Outbound::from_json(&acme.payload).unwrap();
    out.tenant = TenantCtx::new("bigcorp", "prod", Some("support")).unwrap();
    let swapped = Published {
        payload: out.to_json(),
        ..acme.clone()
    };
    assert_problem(&e.deliver(&swapped), 422, "unprocessable");
    let misordered = Published {
        session: Some("0123456789abcdef0123456789abcdef".into()),
        ..acme.clone()
    };
    assert_problem(&e.deliver(&misordered), 422, "unprocessable");
    assert!(e.slack.calls().is_empty());
}

fn web_chat_replies_are_read_back_by_their_conversation_only(stores: Stores) {
    let e = Egress::on(stores);
    // Two visitors of bigcorp's web chat, each with a token from ingress.
    let issue = |name: &str| {
        let req = Request::new("POST", "/webhooks/prod/bigcorp/helpdesk/webchat/tokens")
            .with_header("authorization", "Bearer bigcorp-webchat-secret-0123456789")
            .with_body(json!({ "user_name": name }).to_string());
        let r = ingress::handle(&req, &e.host);
        assert_eq!(r.status, 200, "{}", r.json_body());
        let b = r.json_body();
        (
            b["token"].as_str().unwrap().to_owned(),
            b["conversation_id"].as_str().unwrap().to_owned(),
        )
    };
    let (token_a, conv_a) = issue("A");
    let (token_b, _) = issue("B");
    let m = e.reply(
        "bigcorp",
        "helpdesk",
        "webchat",
        conversation(&conv_a, None),
        ReplyAddress::default(),
        "Hello A",
    );
    assert_eq!(e.deliver(&m).status, 200);
    assert_eq!(
        e.deliver(&m).json_body()["repeat"],
        true,
        "a redelivery is shown once"
    );
    let read = |token: &str, path: &str| {
        let req = Request::new("GET", path).with_header("authorization", format!("Bearer {token}"));
        webchat::handle(&req, &e.host)
    };
    let mine = read(
        &token_a,
        "/webchat/v1/prod/bigcorp/helpdesk/webchat/activities?watermark=0",
    );
    assert_eq!(mine.status, 200, "{}", mine.json_body());
    let activities = mine.json_body()["activities"].clone();
    assert_eq!(activities.as_array().unwrap().len(), 1);
    assert_eq!(activities[0]["text"], "Hello A");
    assert_eq!(mine.json_body()["watermark"], 1);
    // B sees nothing of A's conversation; no token, a forged one, or
    // another tenant's path gets nothing at all.
    let theirs = read(
        &token_b,
        "/webchat/v1/prod/bigcorp/helpdesk/webchat/activities",
    );
    assert_eq!(theirs.json_body()["activities"], json!([]));
    assert_problem(
        &read(
            "forged",
            "/webchat/v1/prod/bigcorp/helpdesk/webchat/activities",
        ),
        401,
        "unauthorized",
    );
    assert_problem(
        &read(&token_a, "/webchat/v1/prod/acme/support/webchat/activities"),
        404,
        "not-found",
    );
    assert_problem(
        &read(&token_a, "/webchat/v1/prod/acme/support/slack/activities"),
        404,
        "not-found",
    );
    assert_problem(
        &read(
            &token_a,
            "/webchat/v1/prod/big.corp/helpdesk/webchat/activities",
        ),
        400,
        "invalid-id",
    );
    let page = webchat::handle(&Request::new("GET", "/webchat"), &e.host);
    assert_eq!(page.status, 200);
    assert!(String::from_utf8_lossy(&page.body).contains("Greentic web chat"));
}
