//! Provider webhooks end to end: the ingress handler with the real secrets
//! broker behind service chaining and a recording bridge. Payload shapes are
//! the providers' documented ones.

use std::sync::Arc;

use e2e_tests::{Broker, Call, assert_problem};
use greentic::host::Host;
use greentic::http::{Request, Response};
use greentic::messaging::envelope::Envelope;
use greentic::tenancy::limits::LimitsSpec;
use greentic::testing::{FakeBridge, MemoryHost, NOW_SECS, Published, UNSAFE_IDS, keys, token};
use greentic_harness::providers;
use serde_json::{Value, json};

const SLACK_SECRET: &str = "8f742231b10e8888abcd99yyyzzz85a5";
const TELEGRAM_SECRET: &str = "tg-webhook-secret-1";
const WEBCHAT_SECRET: &str = "webchat-site-secret-0123456789";
const SERVICE_URL: &str = providers::teams::SERVICE_URL;

/// Ingress on a memory host that reaches the real broker and a fake bridge,
/// with the demo channels' secrets stored.
struct Ingress {
    host: MemoryHost,
    bridge: Arc<FakeBridge>,
    broker: Broker,
}

impl Ingress {
    fn new() -> Self {
        let broker = Broker::new();
        let admin = |tenant: &str, team: &str| {
            Call::with(&token(tenant, "prod").roles(&["admin"])).team(team)
        };
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
        let bridge = FakeBridge::serve(&host);
        host.set_variable("teams_jwks", &providers::teams::jwks().to_string());
        Ingress {
            host,
            bridge,
            broker,
        }
    }

    fn post(&self, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Response {
        let mut req = Request::new("POST", path).with_body(body.to_vec());
        for (name, value) in headers {
            req = req.with_header(name, value);
        }
        ingress::handle(&req, &self.host)
    }

    fn now(&self) -> i64 {
        self.host.now_ms() / 1000
    }

    fn slack(&self, body: &Value) -> Response {
        self.slack_signed(body, self.now(), SLACK_SECRET)
    }

    fn slack_signed(&self, body: &Value, timestamp: i64, secret: &str) -> Response {
        let raw = body.to_string();
        let signature = providers::slack::signature(secret, timestamp, raw.as_bytes());
        self.post(
            "/webhooks/prod/acme/support/slack",
            &[
                ("x-slack-request-timestamp", &timestamp.to_string()),
                ("x-slack-signature", &signature),
                ("content-type", "application/json"),
            ],
            raw.as_bytes(),
        )
    }

    fn telegram(&self, secret: Option<&str>, body: &[u8]) -> Response {
        let headers: Vec<(&str, &str)> = secret
            .map(|s| ("x-telegram-bot-api-secret-token", s))
            .into_iter()
            .collect();
        self.post("/webhooks/prod/acme/support/telegram", &headers, body)
    }

    fn teams(&self, bearer: &str, activity: &Value) -> Response {
        self.post(
            "/webhooks/prod/acme/sales/teams",
            &[("authorization", &format!("Bearer {bearer}"))],
            activity.to_string().as_bytes(),
        )
    }

    fn webchat_token(&self, path: &str, secret: &str) -> Response {
        self.post(
            &format!("{path}/tokens"),
            &[("authorization", &format!("Bearer {secret}"))],
            br#"{"user_name": "Dana"}"#,
        )
    }
}

fn envelope(published: &Published) -> Envelope {
    Envelope::from_json(&published.payload).expect("ingress publishes envelopes")
}

/// A channel message from the Events API (the demo's workspace and channel).
fn slack_message(event_id: &str, text: &str) -> Value {
    providers::slack::message_event(event_id, "U2147483697", text, None)
}

/// A Telegram update with a text message from user 1111111, as raw bytes.
fn telegram_update(update_id: i64, text: &str) -> Vec<u8> {
    providers::telegram::update(update_id, 1111111, text, None)
        .to_string()
        .into_bytes()
}

fn teams_activity(id: &str) -> Value {
    providers::teams::message_activity(
        id,
        "29:1XJKJMvc5GBtc2JwZq0oj8tHZmzrQgFmB25ATiQWA85g",
        "19:abc@thread.tacv2;messageid=1485983408511",
        "where is my order?",
    )
}

/// A Bot Framework connector token at the test clock; `tweak` edits the
/// claims before signing.
fn teams_token(key_pem: &str, tweak: impl FnOnce(&mut Value)) -> String {
    let mut claims = providers::teams::connector_claims(NOW_SECS as i64);
    tweak(&mut claims);
    providers::teams::sign(&claims, key_pem)
}

#[test]
fn a_signed_slack_message_is_published_to_its_channel_subject() {
    let ingress = Ingress::new();
    let r = ingress.slack(&slack_message("Ev08MFMKH6", "Hello world"));
    assert_eq!(r.status, 200, "{}", r.json_body());
    assert_eq!(r.json_body()["status"], "published");
    let published = ingress.bridge.published();
    assert_eq!(published.len(), 1);
    let p = &published[0];
    assert_eq!(
        p.subject,
        "greentic.messaging.ingress.prod.acme.support.slack"
    );
    assert_eq!(p.msg_id, "acme:prod:support:slack:event-Ev08MFMKH6");
    let e = &envelope(p);
    assert_eq!(e.id, p.msg_id);
    // The bridge orders deliveries by it (bridge/README.md, Deliveries).
    assert_eq!(p.session.as_deref(), Some(e.session_id.as_str()));
    assert_eq!(
        (e.tenant.tenant_id(), e.tenant.env_id(), e.tenant.team_id()),
        ("acme", "prod", Some("support"))
    );
    assert_eq!(
        (e.channel.as_str(), e.provider.as_str()),
        ("slack", "messaging-slack")
    );
    assert_eq!(e.conversation.id, "C789012");
    assert_eq!(e.sender.id, "U2147483697");
    assert_eq!(e.text, "Hello world");
    assert_eq!(e.timestamp, "2012-12-14T20:38:43.000Z");
    assert_eq!(e.reply.message_id.as_deref(), Some("1355517523.000005"));
    // The session is the one the executor will derive for this person here.
    let again = ingress.slack(&slack_message("Ev08MFMKH7", "second"));
    assert_eq!(again.status, 200);
    assert_eq!(
        envelope(&ingress.bridge.published()[1]).session_id,
        e.session_id
    );
}

#[test]
fn a_signed_slack_body_of_the_largest_size_ingress_accepts_is_published() {
    let ingress = Ingress::new();
    // Rich messages are large through their blocks, which envelopes drop;
    // pad there to exactly one byte under the limit, text included.
    let mut body = slack_message("EvLARGEST1", &"é".repeat(40_000));
    body["event"]["blocks"] = json!([{"type": "rich_text", "padding": ""}]);
    let size = body.to_string().len();
    let pad = ingress::BODY_LIMIT - 1 - size;
    body["event"]["blocks"][0]["padding"] = json!("p".repeat(pad));
    assert_eq!(body.to_string().len(), ingress::BODY_LIMIT - 1);
    let r = ingress.slack(&body);
    assert_eq!(r.status, 200, "{}", r.json_body());
    let e = envelope(&ingress.bridge.published()[0]);
    assert_eq!(e.text.len(), greentic::messaging::providers::MAX_TEXT_BYTES);
    assert!(
        e.to_json().len() < 64 * 1024,
        "the envelope fits a NATS message"
    );
}

#[test]
fn web_chat_visitors_and_teams_conversations_may_reuse_an_activity_id() {
    let ingress = Ingress::new();
    // Two visitors of the same web chat, each saying hi as activity `m1`.
    for visitor in ["A", "B"] {
        let token =
            ingress.webchat_token("/webhooks/prod/bigcorp/helpdesk/webchat", WEBCHAT_SECRET);
        assert_eq!(token.status, 200, "{}", token.json_body());
        let bearer = format!("Bearer {}", token.json_body()["token"].as_str().unwrap());
        let r = ingress.post(
            "/webhooks/prod/bigcorp/helpdesk/webchat",
            &[("authorization", &bearer)],
            br#"{"type":"message","id":"m1","text":"hi"}"#,
        );
        assert_eq!(r.json_body()["duplicate"], false, "visitor {visitor}");
    }
    // Two Teams conversations whose activities have the same id.
    let token = teams_token(keys::RSA_PRIVATE, |_| {});
    for conversation in ["19:one@thread.tacv2", "19:two@thread.tacv2"] {
        let mut activity = teams_activity("1485983408511");
        activity["conversation"]["id"] = json!(conversation);
        assert_eq!(ingress.teams(&token, &activity).status, 200);
    }
    let ids: std::collections::BTreeSet<String> = ingress
        .bridge
        .published()
        .into_iter()
        .map(|p| p.msg_id)
        .collect();
    assert_eq!(ids.len(), 4, "four messages, four dedupe ids: {ids:?}");
}

/// One rule for every path: segments are percent-decoded before ids are
/// read, as the session and secrets APIs do.
#[test]
fn percent_encoded_ids_in_webhook_paths_are_the_ids_they_encode() {
    let ingress = Ingress::new();
    let body = slack_message("EvENCODED", "hi").to_string();
    let now = ingress.now();
    let signature = providers::slack::signature(SLACK_SECRET, now, body.as_bytes());
    let post = |path: &str| {
        ingress.post(
            path,
            &[
                ("x-slack-request-timestamp", &now.to_string()),
                ("x-slack-signature", &signature),
            ],
            body.as_bytes(),
        )
    };
    let r = post("/webhooks/prod/%61cme/support/%73lack");
    assert_eq!(r.status, 200, "{}", r.json_body());
    assert_eq!(
        ingress.bridge.published()[0].subject,
        "greentic.messaging.ingress.prod.acme.support.slack"
    );
    assert_problem(
        &post("/webhooks/prod/ac%2Fme/support/slack"),
        400,
        "invalid-id",
    );
    assert_problem(
        &post("/webhooks/prod/ac%FFme/support/slack"),
        400,
        "invalid-id",
    );
}

/// Slack's own example from "Verifying requests from Slack" (also the test
/// vector of python-slack-sdk): our check accepts Slack's signature of Slack's
/// body at Slack's timestamp. The body is a slash command, not an Events API
/// callback, so once verified it is a 400, not a 401.
#[test]
fn slacks_documented_signing_example_verifies() {
    let ingress = Ingress::new();
    ingress.host.set_now_ms(1_531_420_618_000);
    let body = "token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c";
    let post = |signature: &str| {
        ingress.post(
            "/webhooks/prod/acme/support/slack",
            &[
                ("x-slack-request-timestamp", "1531420618"),
                ("x-slack-signature", signature),
            ],
            body.as_bytes(),
        )
    };
    let documented = "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503";
    assert_eq!(
        providers::slack::signature(SLACK_SECRET, 1_531_420_618, body.as_bytes()),
        documented
    );
    assert_problem(&post(documented), 400, "bad-request");
    let altered = documented.replace("a2114", "a2115");
    assert_problem(&post(&altered), 401, "unauthorized");
}

#[test]
fn a_slack_retry_of_the_same_event_is_one_message() {
    let ingress = Ingress::new();
    let event = slack_message("Ev0RETRY01", "once");
    assert_eq!(ingress.slack(&event).json_body()["duplicate"], false);
    let retry = ingress.slack(&event);
    assert_eq!(retry.status, 200);
    assert_eq!(retry.json_body()["duplicate"], true);
    assert_eq!(ingress.bridge.published().len(), 1);
}

#[test]
fn slack_refusals_publish_nothing() {
    let ingress = Ingress::new();
    let event = slack_message("Ev1", "hi");
    let now = ingress.now();
    assert_problem(
        &ingress.slack_signed(&event, now, "wrong-secret"),
        401,
        "unauthorized",
    );
    assert_problem(
        &ingress.slack_signed(&event, now - 301, SLACK_SECRET),
        401,
        "unauthorized",
    );
    assert_problem(
        &ingress.slack_signed(&event, now + 301, SLACK_SECRET),
        401,
        "unauthorized",
    );
    let unsigned = ingress.post(
        "/webhooks/prod/acme/support/slack",
        &[],
        event.to_string().as_bytes(),
    );
    assert_problem(&unsigned, 401, "unauthorized");
    // A signature over one body does not cover another.
    let signature = providers::slack::signature(SLACK_SECRET, now, b"{}");
    let swapped = ingress.post(
        "/webhooks/prod/acme/support/slack",
        &[
            ("x-slack-request-timestamp", &now.to_string()),
            ("x-slack-signature", &signature),
        ],
        event.to_string().as_bytes(),
    );
    assert_problem(&swapped, 401, "unauthorized");
    // Correctly signed, but not JSON.
    let raw = b"{not json";
    let malformed = ingress.post(
        "/webhooks/prod/acme/support/slack",
        &[
            ("x-slack-request-timestamp", &now.to_string()),
            (
                "x-slack-signature",
                &providers::slack::signature(SLACK_SECRET, now, raw),
            ),
        ],
        raw,
    );
    assert_problem(&malformed, 400, "bad-request");
    let oversize = ingress.post(
        "/webhooks/prod/acme/support/slack",
        &[],
        &vec![b' '; ingress::BODY_LIMIT + 1],
    );
    assert_problem(&oversize, 413, "payload-too-large");
    assert!(ingress.bridge.published().is_empty());
}

#[test]
fn slack_url_verification_is_answered_only_when_signed() {
    let ingress = Ingress::new();
    let challenge = json!({
        "token": "Jhj5dZrVaK7ZwHHjRyZWjbDl",
        "challenge": "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P",
        "type": "url_verification"
    });
    let r = ingress.slack(&challenge);
    assert_eq!(r.status, 200);
    assert_eq!(
        r.json_body()["challenge"],
        "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"
    );
    let forged = ingress.slack_signed(&challenge, ingress.now(), "not-the-secret");
    assert_problem(&forged, 401, "unauthorized");
    assert!(ingress.bridge.published().is_empty());
}

#[test]
fn bot_messages_other_events_and_other_workspaces_are_acknowledged_not_published() {
    let ingress = Ingress::new();
    let mut bot = slack_message("EvBOT", "I am a bot");
    bot["event"]["bot_id"] = json!("B01");
    bot["event"]["subtype"] = json!("bot_message");
    let mut edited = slack_message("EvEDIT", "edited");
    edited["event"]["subtype"] = json!("message_changed");
    let mut reaction = slack_message("EvREACT", "");
    reaction["event"] = json!({"type": "reaction_added", "user": "U1", "reaction": "thumbsup"});
    let mut foreign = slack_message("EvOTHER", "hi");
    foreign["team_id"] = json!("T999999");
    let mut unnamed_workspace = slack_message("EvNOTEAM", "hi");
    unnamed_workspace.as_object_mut().unwrap().remove("team_id");
    // The bundle names the Slack channel too (acme/support/slack: C789012).
    let mut other_channel = slack_message("EvOTHERCH", "hi");
    other_channel["event"]["channel"] = json!("C999999");
    for body in [
        bot,
        edited,
        reaction,
        foreign,
        unnamed_workspace,
        other_channel,
    ] {
        let r = ingress.slack(&body);
        assert_eq!(r.status, 200, "{body}");
        assert_eq!(r.json_body()["status"], "ignored", "{body}");
    }
    let mut from_bot: Value = serde_json::from_slice(&telegram_update(1, "hi")).unwrap();
    from_bot["message"]["from"]["is_bot"] = json!(true);
    let r = ingress.telegram(Some(TELEGRAM_SECRET), from_bot.to_string().as_bytes());
    assert_eq!(r.json_body()["status"], "ignored");
    let mut own = teams_activity("1");
    own["from"]["id"] = own["recipient"]["id"].clone();
    let token = teams_token(keys::RSA_PRIVATE, |_| {});
    assert_eq!(ingress.teams(&token, &own).json_body()["status"], "ignored");
    let mut typing = teams_activity("2");
    typing["type"] = json!("typing");
    assert_eq!(
        ingress.teams(&token, &typing).json_body()["status"],
        "ignored"
    );
    assert!(ingress.bridge.published().is_empty());
}

#[test]
fn telegram_messages_are_verified_by_the_secret_token() {
    let ingress = Ingress::new();
    let r = ingress.telegram(Some(TELEGRAM_SECRET), &telegram_update(10000, "/start"));
    assert_eq!(r.status, 200, "{}", r.json_body());
    let p = &ingress.bridge.published()[0];
    assert_eq!(
        p.subject,
        "greentic.messaging.ingress.prod.acme.support.telegram"
    );
    assert_eq!(p.msg_id, "acme:prod:support:telegram:update-10000");
    let e = &envelope(p);
    assert_eq!(e.conversation.id, "-1001234567890");
    assert_eq!(e.sender.id, "1111111");
    assert_eq!(e.sender.name.as_deref(), Some("Test User"));
    assert_eq!(e.text, "/start");
    assert_eq!(e.timestamp, "2015-09-07T17:05:32.000Z");
    assert_eq!(e.reply.message_id.as_deref(), Some("1365"));

    assert_problem(
        &ingress.telegram(None, &telegram_update(2, "x")),
        401,
        "unauthorized",
    );
    assert_problem(
        &ingress.telegram(Some("tg-webhook-secret-2"), &telegram_update(2, "x")),
        401,
        "unauthorized",
    );
    assert_problem(
        &ingress.telegram(Some(TELEGRAM_SECRET), b"[1,2"),
        400,
        "bad-request",
    );
    assert_problem(
        &ingress.telegram(Some(TELEGRAM_SECRET), br#"{"message": {}}"#),
        400,
        "bad-request",
    );
    assert_eq!(ingress.bridge.published().len(), 1);
}

#[test]
fn a_channel_without_its_secret_is_refused_never_accepted_unchecked() {
    let ingress = Ingress::new();
    let staff = Call::with(&token("acme", "prod").roles(&["admin"])).team("support");
    let r = ingress
        .broker
        .call(staff.request("DELETE", "/api/v1/secrets/telegram_webhook_secret"));
    assert_eq!(r.status, 204);
    let r = ingress.telegram(Some(TELEGRAM_SECRET), &telegram_update(3, "hi"));
    assert_problem(&r, 503, "not-configured");
    assert!(
        r.json_body()["detail"]
            .as_str()
            .unwrap()
            .contains("telegram_webhook_secret")
    );
    // A Slack secret stored for another team does not serve this one.
    let sales = Call::with(&token("acme", "prod").roles(&["admin"])).team("sales");
    ingress
        .broker
        .put(&sales, "telegram_webhook_secret", TELEGRAM_SECRET);
    let r = ingress.telegram(Some(TELEGRAM_SECRET), &telegram_update(3, "hi"));
    assert_problem(&r, 503, "not-configured");
    assert!(ingress.bridge.published().is_empty());
}

#[test]
fn teams_activities_are_verified_against_the_jwks_audience_and_service_url() {
    let ingress = Ingress::new();
    let good = teams_token(keys::RSA_PRIVATE, |_| {});
    let r = ingress.teams(&good, &teams_activity("1485983408511"));
    assert_eq!(r.status, 200, "{}", r.json_body());
    let p = &ingress.bridge.published()[0];
    assert_eq!(
        p.subject,
        "greentic.messaging.ingress.prod.acme.sales.teams"
    );
    // Activity ids are unique within a conversation: the id names it too.
    assert_eq!(
        p.msg_id,
        format!(
            "acme:prod:sales:teams:activity-{}",
            greentic::tenancy::subjects::within_conversation(
                "19:abc@thread.tacv2;messageid=1485983408511",
                "1485983408511"
            )
        )
    );
    assert!(p.msg_id.ends_with("-1485983408511"));
    let e = &envelope(p);
    assert_eq!(e.text, "where is my order?");
    assert_eq!(e.sender.name.as_deref(), Some("Megan Bowen"));
    assert_eq!(
        e.conversation.id,
        "19:abc@thread.tacv2;messageid=1485983408511"
    );
    assert_eq!(e.reply.service_url.as_deref(), Some(SERVICE_URL));
    assert_eq!(e.timestamp, "2026-11-29T10:00:00.123Z");

    let refused = [
        teams_token(keys::RSA_PRIVATE, |c| c["aud"] = json!("some-other-bot")),
        teams_token(keys::RSA_PRIVATE, |c| {
            c["exp"] = json!(NOW_SECS as i64 - 600)
        }),
        teams_token(keys::RSA_PRIVATE, |c| {
            c["iss"] = json!("https://evil.example")
        }),
        teams_token(keys::RSA_PRIVATE, |c| {
            c["serviceurl"] = json!("https://evil.example/")
        }),
        // The claim is `serviceurl`: without it the token vouches for no
        // service URL, whatever else it carries.
        teams_token(keys::RSA_PRIVATE, |c| {
            let url = c.as_object_mut().unwrap().remove("serviceurl").unwrap();
            c["serviceUrl"] = url;
        }),
        teams_token(keys::RSA_OTHER_PRIVATE, |_| {}),
        "not-a-jwt".to_owned(),
    ];
    for bad in &refused {
        assert_problem(
            &ingress.teams(bad, &teams_activity("2")),
            401,
            "unauthorized",
        );
    }
    let mut other_channel = teams_activity("3");
    other_channel["channelId"] = json!("skype");
    assert_problem(&ingress.teams(&good, &other_channel), 401, "unauthorized");
    let no_token = ingress.post(
        "/webhooks/prod/acme/sales/teams",
        &[],
        teams_activity("4").to_string().as_bytes(),
    );
    assert_problem(&no_token, 401, "unauthorized");
    assert_eq!(ingress.bridge.published().len(), 1);
}

/// Bot Framework as ingress sees it: the OpenID metadata and the keys
/// document it names, on the default host; counts the requests.
fn serve_bot_framework(
    ingress: &Ingress,
    keys: Arc<std::sync::Mutex<Value>>,
) -> Arc<std::sync::atomic::AtomicUsize> {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let base = greentic::messaging::providers::teams_keys::DEFAULT_OPENID_HOST;
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = calls.clone();
    ingress.host.serve_url(
        base,
        Arc::new(move |req: &Request| {
            counted.fetch_add(1, Ordering::SeqCst);
            match req.path.as_str() {
                "/v1/.well-known/openidconfiguration" => {
                    Response::json(200, &providers::teams::openid_metadata(base))
                }
                "/v1/.well-known/keys" => Response::json(200, &*keys.lock().unwrap()),
                _ => Response::json(404, &json!({})),
            }
        }),
    );
    calls
}

#[test]
fn teams_keys_are_fetched_from_bot_framework_cached_and_refreshed_when_rotated() {
    use std::sync::atomic::Ordering;
    let ingress = Ingress::new();
    ingress.host.set_variable("teams_jwks", "");
    let published = Arc::new(std::sync::Mutex::new(providers::teams::jwks()));
    let calls = serve_bot_framework(&ingress, published.clone());
    let good = teams_token(keys::RSA_PRIVATE, |_| {});
    assert_eq!(ingress.teams(&good, &teams_activity("1")).status, 200);
    assert_eq!(calls.load(Ordering::SeqCst), 2, "metadata, then keys");
    assert_eq!(ingress.teams(&good, &teams_activity("2")).status, 200);
    assert_eq!(
        calls.load(Ordering::SeqCst),
        2,
        "the second request uses the cache"
    );

    // A token naming a key Bot Framework does not publish, just after the
    // keys were fetched: 401 without fetching again (a stream of forged kids
    // costs nothing).
    let claims = providers::teams::connector_claims(NOW_SECS as i64);
    let forged = providers::teams::sign_as(&claims, keys::RSA_OTHER_PRIVATE, "forged-kid");
    assert_problem(
        &ingress.teams(&forged, &teams_activity("3")),
        401,
        "unauthorized",
    );
    assert_eq!(calls.load(Ordering::SeqCst), 2);

    // Microsoft rotates: a token with the new key makes ingress fetch again,
    // once the refresh interval has passed, and verifies.
    *published.lock().unwrap() = providers::teams::jwks_of(&[
        ("bf-test-key", keys::RSA_PRIVATE),
        ("bf-rotated", keys::RSA_OTHER_PRIVATE),
    ]);
    ingress
        .host
        .set_now_ms(ingress.host.now_ms() + 6 * 60 * 1000);
    let claims = providers::teams::connector_claims(ingress.now());
    let rotated = providers::teams::sign_as(&claims, keys::RSA_OTHER_PRIVATE, "bf-rotated");
    let r = ingress.teams(&rotated, &teams_activity("5"));
    assert_eq!(r.status, 200, "{}", r.json_body());
    assert_eq!(calls.load(Ordering::SeqCst), 4);
    let forged = providers::teams::sign_as(&claims, keys::RSA_OTHER_PRIVATE, "forged-kid");
    assert_problem(
        &ingress.teams(&forged, &teams_activity("6")),
        401,
        "unauthorized",
    );
    assert_eq!(
        calls.load(Ordering::SeqCst),
        4,
        "no fetch within the interval"
    );
    // Only public keys are cached, under a key of no tenant.
    let cached = ingress
        .host
        .store(greentic::messaging::providers::teams_keys::CACHE_STORE)
        .snapshot();
    assert_eq!(
        cached.keys().collect::<Vec<_>>(),
        ["providers/teams/signing-keys"]
    );
}

#[test]
fn teams_is_unavailable_while_bot_framework_cannot_give_its_keys() {
    let ingress = Ingress::new();
    ingress.host.set_variable("teams_jwks", "");
    ingress.host.serve_url(
        greentic::messaging::providers::teams_keys::DEFAULT_OPENID_HOST,
        Arc::new(|_: &Request| Response::json(502, &json!({}))),
    );
    let good = teams_token(keys::RSA_PRIVATE, |_| {});
    assert_problem(
        &ingress.teams(&good, &teams_activity("1")),
        503,
        "unavailable",
    );
    assert!(ingress.bridge.published().is_empty());
}

#[test]
fn teams_checks_the_token_before_the_body() {
    let ingress = Ingress::new();
    let post = |bearer: &str, body: &[u8]| {
        ingress.post(
            "/webhooks/prod/acme/sales/teams",
            &[("authorization", &format!("Bearer {bearer}"))],
            body,
        )
    };
    assert_problem(&post("not-a-jwt", b"{not json"), 401, "unauthorized");
    let good = teams_token(keys::RSA_PRIVATE, |_| {});
    assert_problem(&post(&good, b"{not json"), 400, "bad-request");
}

#[test]
fn web_chat_tokens_are_bound_to_their_channel_and_conversation() {
    let ingress = Ingress::new();
    let channel = "/webhooks/prod/bigcorp/helpdesk/webchat";
    let issued = ingress.webchat_token(channel, WEBCHAT_SECRET);
    assert_eq!(issued.status, 200, "{}", issued.json_body());
    let body = issued.json_body();
    let token = body["token"].as_str().unwrap();
    let conversation = body["conversation_id"].as_str().unwrap();
    let post = |path: &str, bearer: &str, activity: Value| {
        ingress.post(
            path,
            &[("authorization", &format!("Bearer {bearer}"))],
            activity.to_string().as_bytes(),
        )
    };
    let r = post(
        channel,
        token,
        json!({"type": "message", "id": "a1", "text": "hi"}),
    );
    assert_eq!(r.status, 200, "{}", r.json_body());
    let p = &ingress.bridge.published()[0];
    assert_eq!(
        p.subject,
        "greentic.messaging.ingress.prod.bigcorp.helpdesk.webchat"
    );
    assert_eq!(envelope(p).conversation.id, conversation);
    assert_eq!(envelope(p).sender.name.as_deref(), Some("Dana"));

    // The wrong secret gets no token; a token works nowhere else.
    assert_problem(
        &ingress.webchat_token(channel, "guess"),
        401,
        "unauthorized",
    );
    assert_problem(
        &ingress.webchat_token("/webhooks/prod/acme/support/slack", WEBCHAT_SECRET),
        404,
        "not-found",
    );
    let acme_path = "/webhooks/prod/acme/support/telegram";
    let r = post(
        acme_path,
        token,
        json!({"type": "message", "id": "a2", "text": "x"}),
    );
    assert_problem(&r, 401, "unauthorized");
    assert_problem(
        &post(
            channel,
            "forged.token.value",
            json!({"type": "message", "id": "a3", "text": "x"}),
        ),
        401,
        "unauthorized",
    );
    assert_problem(
        &post(
            channel,
            token,
            json!({"type": "message", "id": "bad id!", "text": "x"}),
        ),
        400,
        "bad-request",
    );
    ingress.host.set_now_ms((NOW_SECS as i64 + 31 * 60) * 1000);
    assert_problem(
        &post(
            channel,
            token,
            json!({"type": "message", "id": "a4", "text": "late"}),
        ),
        401,
        "unauthorized",
    );
    assert_eq!(ingress.bridge.published().len(), 1);
}

/// Changes a tenant's limits, as its admin would with a new configuration version.
fn set_limits(ingress: &Ingress, tenant: &str, change: impl FnOnce(&mut LimitsSpec)) {
    ingress
        .host
        .update_tenant(tenant, |document| change(&mut document.tenant.limits));
}

#[test]
fn every_message_is_published_with_its_tenants_rate() {
    let ingress = Ingress::new();
    set_limits(&ingress, "acme", |l| l.messages_per_minute = Some(90));
    assert_eq!(ingress.slack(&slack_message("Ev1", "hi")).status, 200);
    assert_eq!(
        ingress
            .telegram(Some(TELEGRAM_SECRET), &telegram_update(1, "hi"))
            .status,
        200
    );
    let rates: Vec<Option<u32>> = ingress.bridge.published().iter().map(|p| p.rate).collect();
    assert_eq!(rates, [Some(90), Some(90)]);
}

#[test]
fn web_chat_messages_over_a_conversations_or_channels_rate_are_429_and_not_published() {
    let ingress = Ingress::new();
    set_limits(&ingress, "bigcorp", |l| {
        l.webchat_messages_per_minute_per_conversation = Some(3);
        l.webchat_messages_per_minute_per_channel = Some(5);
    });
    let channel = "/webhooks/prod/bigcorp/helpdesk/webchat";
    let visitor = || {
        let issued = ingress.webchat_token(channel, WEBCHAT_SECRET);
        assert_eq!(issued.status, 200, "{}", issued.json_body());
        issued.json_body()["token"].as_str().unwrap().to_owned()
    };
    let post = |token: &str, id: &str| {
        ingress.post(
            channel,
            &[("authorization", &format!("Bearer {token}"))],
            json!({"type": "message", "id": id, "text": "hello"})
                .to_string()
                .as_bytes(),
        )
    };
    let (first, second) = (visitor(), visitor());
    for i in 0..3 {
        let r = post(&first, &format!("a{i}"));
        assert_eq!(r.status, 200, "{}", r.json_body());
    }
    let published = ingress.bridge.published().len();
    let over = post(&first, "a3");
    assert_problem(&over, 429, "too-many-requests");
    assert_eq!(over.header("retry-after"), Some("60"));
    assert_eq!(
        over.header("ratelimit-policy"),
        Some("\"conversation\";q=3;w=60, \"channel\";q=5;w=60")
    );
    assert_eq!(
        over.header("ratelimit"),
        Some("\"conversation\";r=0;t=60, \"channel\";r=1;t=60")
    );
    assert_eq!(
        ingress.bridge.published().len(),
        published,
        "nothing published"
    );

    // Another visitor has a conversation of its own, until the channel is full.
    assert_eq!(post(&second, "b0").status, 200);
    let channel_full = post(&second, "b1");
    assert_problem(&channel_full, 429, "too-many-requests");
    assert!(
        channel_full
            .header("ratelimit")
            .unwrap()
            .ends_with("\"channel\";r=0;t=60")
    );

    // acme's channels are not bigcorp's: its Slack channel is untouched.
    assert_eq!(ingress.slack(&slack_message("Ev1", "hi")).status, 200);
    // The next minute, the visitor may post again.
    ingress.host.set_now_ms((NOW_SECS as i64 + 60) * 1000);
    assert_eq!(post(&first, "a4").status, 200);

    // Refusals are bigcorp's helpdesk team's usage, in the limits store.
    let limits_kv = ingress.host.store(greentic::service::limits::STORE_LABEL);
    let counted = |tenant: &str, team: &str| {
        greentic::store::usage::read(
            &greentic::store::kv::TestKv::new(),
            limits_kv,
            &greentic::TenantCtx::new(tenant, "prod", Some(team)).unwrap(),
            &greentic::store::usage::Teams::All,
            &greentic::tenancy::ids::Day::of(NOW_SECS as i64 * 1000),
        )
        .unwrap()
        .webchat_messages_refused
    };
    assert_eq!(counted("bigcorp", "helpdesk"), 2);
    assert_eq!(counted("acme", "support"), 0);
}

#[test]
fn unknown_scopes_are_one_404_and_unsafe_ids_never_reach_a_publish() {
    let ingress = Ingress::new();
    let event = slack_message("Ev9", "hi");
    let unknown = [
        "/webhooks/dev/acme/support/slack",
        "/webhooks/prod/nobody/support/slack",
        "/webhooks/prod/acme/nobody/slack",
        "/webhooks/prod/acme/support/nobody",
        "/webhooks/prod/acme/sales/slack",
        "/webhooks/prod/bigcorp/support/slack",
    ];
    let bodies: Vec<Value> = unknown
        .iter()
        .map(|path| {
            let r = ingress.post(path, &[], event.to_string().as_bytes());
            assert_problem(&r, 404, "not-found");
            let mut body = r.json_body();
            body.as_object_mut().unwrap().remove("request_id");
            body
        })
        .collect();
    assert!(bodies.windows(2).all(|w| w[0] == w[1]), "{bodies:?}");

    for bad in UNSAFE_IDS
        .iter()
        .filter(|s| !s.is_empty() && !s.contains('/'))
    {
        let enc: String = bad.bytes().map(|c| format!("%{c:02X}")).collect();
        for path in [
            format!("/webhooks/{enc}/acme/support/slack"),
            format!("/webhooks/prod/{enc}/support/slack"),
            format!("/webhooks/prod/acme/{enc}/slack"),
            format!("/webhooks/prod/acme/support/{enc}"),
            format!("/webhooks/prod/acme/support/{bad}"),
        ] {
            let r = ingress.slack_at(&path, &event);
            assert!(matches!(r.status, 400 | 404), "{path}: {}", r.status);
        }
    }
    assert_problem(
        &ingress.slack_at("/webhooks/prod/acme.x/support/slack", &event),
        400,
        "invalid-id",
    );
    assert_problem(
        &ingress.slack_at("/webhooks/prod/acme/support/sl>ack", &event),
        400,
        "invalid-id",
    );
    let get = ingress::handle(
        &Request::new("GET", "/webhooks/prod/acme/support/slack"),
        &ingress.host,
    );
    assert_problem(&get, 405, "method-not-allowed");
    assert!(ingress.bridge.published().is_empty());
}

#[test]
fn a_bridge_that_cannot_store_the_message_makes_the_provider_retry() {
    let ingress = Ingress::new();
    ingress.bridge.set_down(true);
    let r = ingress.slack(&slack_message("EvDOWN", "hi"));
    assert_problem(&r, 503, "unavailable");
    assert!(r.header("retry-after").is_some());
    ingress.bridge.set_down(false);
    assert_eq!(ingress.slack(&slack_message("EvDOWN", "hi")).status, 200);

    ingress.host.set_variable("bridge_publish_token", "");
    assert_problem(
        &ingress.slack(&slack_message("EvX", "hi")),
        503,
        "not-configured",
    );
    ingress
        .host
        .set_variable("bridge_publish_token", "wrong-token-0123456789abcdef0123");
    assert_problem(
        &ingress.slack(&slack_message("EvY", "hi")),
        503,
        "unavailable",
    );
    assert_eq!(ingress.bridge.published().len(), 1);
}

#[test]
fn logs_carry_the_scope_and_never_a_secret_token_or_message_text() {
    let ingress = Ingress::new();
    ingress.slack(&slack_message("EvLOG", "my card number is 4111"));
    ingress.telegram(Some("tg-webhook-secret-2"), &telegram_update(5, "x"));
    let issued = ingress.webchat_token("/webhooks/prod/bigcorp/helpdesk/webchat", WEBCHAT_SECRET);
    let token = issued.json_body()["token"].as_str().unwrap().to_owned();
    let logs = ingress.host.raw_logs();
    for forbidden in [
        SLACK_SECRET,
        TELEGRAM_SECRET,
        WEBCHAT_SECRET,
        "tg-webhook-secret-2",
        "4111",
        &token,
    ] {
        assert!(!logs.contains(forbidden), "{forbidden} reached the log");
    }
    let lines = ingress.host.logs();
    let published = lines
        .iter()
        .find(|l| l["event"] == "message.published")
        .unwrap();
    assert_eq!(
        (&published["tenant"], &published["env"], &published["team"]),
        (&json!("acme"), &json!("prod"), &json!("support"))
    );
    assert!(
        lines
            .iter()
            .any(|l| l["event"] == "webhook.refused" && l["tenant"] == "acme")
    );
}

impl Ingress {
    fn slack_at(&self, path: &str, body: &Value) -> Response {
        let raw = body.to_string();
        let now = self.now();
        self.post(
            path,
            &[
                ("x-slack-request-timestamp", &now.to_string()),
                (
                    "x-slack-signature",
                    &providers::slack::signature(SLACK_SECRET, now, raw.as_bytes()),
                ),
            ],
            raw.as_bytes(),
        )
    }
}
