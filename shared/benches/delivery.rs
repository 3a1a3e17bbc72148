//! One flow-executor delivery, native with in-memory KV: check the envelope,
//! read the tenant's configuration, load the session record and memory, run
//! a five-node flow turn, commit by compare-and-swap, encode and publish the
//! replies (to a bridge stub that only acknowledges), update the record and
//! the usage counters. Prints the CBOR sizes of the record and memory.

use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use greentic::flows::bundle::{Bundle, LoadedBundle};
use greentic::flows::control::{ControlPlane, TenantDocument};
use greentic::flows::flow::Flow;
use greentic::flows::tenant_config::TenantConfig;
use greentic::host::Host;
use greentic::http::Response;
use greentic::messaging::delivery::Delivery;
use greentic::messaging::envelope::{ReplyAddress, Sender};
use greentic::messaging::providers::{self, Message};
use greentic::service::log::RequestLog;
use greentic::store::config;
use greentic::store::sessions::SessionStore;
use greentic::tenancy::ids::{ChannelId, Conversation, TenantCtx, TenantId};
use greentic::testing::{MemoryHost, TEST_BRIDGE_URL};
use std::hint::black_box;

const BUNDLE: &str = "tenants:\n  acme:\n    name: ACME\n    environments: [{ id: prod }]\n    flow: five\n    teams:\n      support:\n        channels:\n          slack: { provider: messaging-slack }\n";

const FLOW: &str = r#"name: five
version: "1"
nodes:
  - id: seen
    type: set
    config: { key: last, value: "{{ message.text }}" }
    next: route
  - id: route
    type: branch
    config:
      cases:
        - { contains: refund, next: refund }
      default: other
  - id: refund
    type: reply
    config: { message: "Refund for {{ state.last }} noted, {{ message.sender.name }}." }
    next: count
  - id: other
    type: reply
    config: { message: "Noted." }
    next: count
  - id: count
    type: set
    config: { key: turns, value: "{{ session.message_count }}" }
    next: bye
  - id: bye
    type: reply
    config: { message: "Anything else for {{ tenant.name }}?" }
"#;

fn bench(c: &mut Criterion) {
    let host = MemoryHost::new(&[greentic::messaging::executor::STORE_LABEL]);
    let loaded = LoadedBundle {
        bundle: Bundle::parse("bench.yaml", BUNDLE).unwrap(),
        flows: [("five".to_owned(), Flow::parse("five.yaml", FLOW).unwrap())].into(),
    };
    let plane = ControlPlane::new(host.store(config::STORE_LABEL));
    let author = greentic::testing::platform_author();
    let document = TenantDocument::from_bundle(&loaded, "acme").unwrap();
    let acme = TenantId::parse("acme").unwrap();
    plane.apply(&acme, document, &author).unwrap();
    host.serve_url(
        TEST_BRIDGE_URL,
        Arc::new(|_| {
            Response::json(
                200,
                &serde_json::json!({ "stream": "S", "seq": 1, "duplicate": false }),
            )
        }),
    );
    host.set_variable("bridge_url", TEST_BRIDGE_URL);
    host.set_variable(
        "bridge_publish_token",
        "bench-token-0123456789abcdef0123456789",
    );

    let ctx = TenantCtx::new("acme", "prod", Some("support")).unwrap();
    let slack = ChannelId::parse("slack").unwrap();
    let config = TenantConfig::load(&host, "acme").unwrap().unwrap();
    let channel = config.channel(&ctx, &slack).unwrap();
    let subject = greentic::tenancy::subjects::ingress(&ctx, &slack).to_string();
    let message = |n: u64| {
        providers::envelope(
            &channel,
            Message {
                id_kind: "event",
                provider_id: format!("Ev{n}"),
                conversation: Conversation {
                    id: "C1".into(),
                    thread: None,
                },
                sender: Sender {
                    id: "U1".into(),
                    name: Some("Dana".into()),
                },
                text: "I want a refund for order 12345".into(),
                sent_at_ms: 0,
                attachments: vec![],
                reply: ReplyAddress::default(),
            },
        )
    };

    let mut n = 0u64;
    let mut deliver = || {
        n += 1;
        let envelope = message(n);
        let body = envelope.to_json();
        let delivery = Delivery {
            subject: &subject,
            msg_id: &envelope.id,
            attempt: 1,
            session: Some(envelope.session_id.as_str()),
            delayed_ms: None,
            body: &body,
        };
        let mut log = RequestLog::new(&host, "bench", "r".into());
        black_box(
            greentic::messaging::executor::deliver_ingress(&host, &delivery, &mut log).unwrap(),
        )
    };
    // Warm the session to its steady size (bounded transcript and memory).
    for _ in 0..64 {
        deliver();
    }
    {
        let kv = host.open_store("sessions").unwrap();
        let store = SessionStore::new(kv.as_ref());
        let id = message(0).session_id;
        let record = store.get(&ctx, &id).unwrap().unwrap();
        let (memory, _) = store.memory(&ctx, &id).unwrap().unwrap();
        eprintln!(
            "steady state: session record {} bytes CBOR, session memory {} bytes CBOR",
            record.encode().len(),
            memory.len()
        );
    }
    c.bench_function("flow-executor delivery (5-node turn, 2 replies)", |b| {
        b.iter(&mut deliver)
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
