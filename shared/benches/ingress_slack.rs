//! What ingress does per Slack message before publishing, native: read the
//! tenant's compiled config, verify the signature (HMAC-SHA256 as the broker
//! computes it, here through the test double instead of a chained call),
//! normalise the event into an envelope and encode it.

use criterion::{Criterion, criterion_group, criterion_main};
use greentic::flows::tenant_config::TenantConfig;
use greentic::host::Host;
use greentic::http::Request;
use greentic::messaging::providers::{self, Inbound, Webhook};
use greentic::tenancy::ids::{ChannelId, TenantCtx};
use greentic::testing::{FakeSecrets, MemoryHost};
use hmac::{KeyInit, Mac};
use std::hint::black_box;

const SECRET: &[u8] = b"8f742231b10e8888abcd99yyyzzz85a5";

fn bench(c: &mut Criterion) {
    let host = MemoryHost::new(&[]);
    let ctx = TenantCtx::new("acme", "prod", Some("support")).unwrap();
    let channel = ChannelId::parse("slack").unwrap();
    let secrets = FakeSecrets::default();
    secrets.set(&ctx, "slack_signing_secret", SECRET);
    let now = host.now_ms() / 1000;
    let body = serde_json::json!({
        "token": "XXYYZZ", "team_id": "T123456", "api_app_id": "A0KRD7HC3",
        "event": {"type": "message", "channel": "C789012", "user": "U2147483697",
                  "text": "Hello world, where is my order 12345?", "ts": "1355517523.000005",
                  "event_ts": "1355517523.000005", "channel_type": "channel"},
        "type": "event_callback", "event_id": "Ev08MFMKH6", "event_time": 1355517523
    })
    .to_string();
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(SECRET).unwrap();
    mac.update(format!("v0:{now}:{body}").as_bytes());
    let signature = format!("v0={}", hex::encode(mac.finalize().into_bytes()));
    let req = Request::new("POST", "/webhooks/prod/acme/support/slack")
        .with_header("x-slack-request-timestamp", now.to_string())
        .with_header("x-slack-signature", signature)
        .with_body(body);

    // The channel lookup alone, as ingress does it (flows skipped), and as
    // the whole tenant file with its flows parsed and their patterns compiled.
    c.bench_function("channel lookup: routing only", |b| {
        b.iter(|| black_box(TenantConfig::find_channel(&host, &ctx, &channel).unwrap()))
    });
    c.bench_function("channel lookup: whole tenant file", |b| {
        b.iter(|| {
            let config = TenantConfig::load(&host, "acme").unwrap().unwrap();
            black_box(config.channel(&ctx, &channel))
        })
    });

    c.bench_function("ingress slack: config + verify + normalise + encode", |b| {
        b.iter(|| {
            let channel = TenantConfig::find_channel(&host, &ctx, &channel)
                .unwrap()
                .unwrap();
            let hook = Webhook {
                channel: &channel,
                req: &req,
                now_ms: host.now_ms(),
                secrets: &secrets,
                host: &host,
            };
            match providers::receive(&hook).unwrap() {
                Inbound::Message(envelope) => black_box(envelope.to_json()),
                other => panic!("{other:?}"),
            }
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
