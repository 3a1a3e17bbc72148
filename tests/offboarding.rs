//! Deleting a tenant (`DELETE /api/v1/tenants/{tenant}`, platform admins) as
//! an operator meets it: calls answer 202 until the tenant is gone (200),
//! then 404. Afterwards no key naming the tenant is left in any store, the
//! secrets broker's included, and the bridge holds none of its messages;
//! nothing of another tenant changed; the tenant's old tokens reach nothing
//! and write nothing. While the deletion runs, the tenant's traffic is
//! refused and its deliveries are dropped. The stores are scanned by the
//! test (never by the product). On memory stores and on redis-server.

use std::sync::Arc;

use e2e_tests::{Broker, Call, Stores, assert_problem, operator, token};
use greentic::flows::control::ControlPlane;
use greentic::http::{Request, Response};
use greentic::messaging::bridge::BridgeClient;
use greentic::store::kv::{KeyValue, TestKv};
use greentic::store::lifecycle::Stores as DataStores;
use greentic::store::offboard::TenantStores;
use greentic::tenancy::ids::{SessionId, TenantId};
use greentic::testing::{
    FakeBridge, MemoryHost, NOW_SECS, Published, envelope_on, message, platform_author,
};
use serde_json::json;

e2e_tests::on_every_store!(
    deleting_a_tenant_leaves_nothing_of_it_and_changes_nothing_of_another,
    a_tenant_being_deleted_takes_no_traffic_and_its_deliveries_are_dropped,
    only_a_platform_admin_deletes_and_bad_or_unknown_tenants_change_nothing,
);

const LABELS: &[&str] = &["config", "limits", "sessions", "webchat", "egress", "cache"];
const NOW: i64 = NOW_SECS as i64 * 1000;

/// The tenant API with every store a tenant's data is in, the broker it
/// chains to and a bridge in memory; the demo's tenants configured.
struct Deployment {
    broker: Broker,
    host: MemoryHost,
    bridge: Arc<FakeBridge>,
}

impl Deployment {
    fn on(stores: Stores) -> Deployment {
        let broker = Broker::new();
        let host = broker.component_host_on(LABELS, stores);
        let bridge = FakeBridge::serve(&host);
        greentic::testing::apply_demo(host.store("config"));
        Deployment {
            broker,
            host,
            bridge,
        }
    }

    fn call(&self, req: Request) -> Response {
        if req.path.starts_with("/api/v1/tenants") {
            tenant_api::handle(&req, &self.host)
        } else {
            session_api::handle(&req, &self.host)
        }
    }

    fn delete(&self, call: &Call, tenant: &str) -> Response {
        self.call(call.request("DELETE", &format!("/api/v1/tenants/{tenant}")))
    }

    /// What a tenant leaves behind as it is used: data in every store,
    /// secrets (tenant and team), REST calls' rate windows, messages in the
    /// streams.
    fn use_tenant(&self, tenant: &str) {
        let stores = TenantStores {
            data: DataStores {
                sessions: self.host.store("sessions"),
                webchat: self.host.store("webchat"),
                egress: self.host.store("egress"),
            },
            limits: self.host.store("limits"),
            config: self.host.store("config"),
        };
        greentic::testing::use_tenant(&stores, tenant, NOW);
        let admin = Call::with(&token(tenant, "prod").roles(&["admin"]));
        self.broker.put(&admin, "api_key", "s3cret-tenant");
        self.broker.put(
            &admin.clone().team("support"),
            "slack_signing_secret",
            "s3cret-team-0123456789",
        );
        let r = self.call(admin.request("GET", "/api/v1/usage"));
        assert_eq!(r.status, 200, "{}", r.json_body());
        let team = if tenant == "acme" {
            "support"
        } else {
            "helpdesk"
        };
        let channel = if tenant == "acme" { "slack" } else { "webchat" };
        let envelope = envelope_on(&self.host, tenant, team, channel, message("m1", "U1", "hi"));
        let session = SessionId::parse(envelope.session_id.as_str())
            .unwrap()
            .unwrap();
        let subject = greentic::tenancy::subjects::ingress(&envelope.tenant, &envelope.channel);
        BridgeClient::new(&self.host)
            .publish(&subject, &envelope.id, &session, None, envelope.to_json())
            .unwrap();
    }

    fn stores(&self) -> Vec<(&'static str, &TestKv)> {
        let mut stores: Vec<(&'static str, &TestKv)> =
            LABELS.iter().map(|l| (*l, self.host.store(l))).collect();
        stores.push(("secrets", self.broker.kv()));
        stores
    }

    /// Every key of every store whose key names `tenant`, with its value.
    fn keys_of(&self, tenant: &str) -> Vec<(String, Vec<u8>)> {
        let mut found: Vec<(String, Vec<u8>)> = self
            .stores()
            .into_iter()
            .flat_map(|(label, kv)| {
                kv.snapshot()
                    .into_iter()
                    .filter(|(k, _)| k.contains(tenant))
                    .map(move |(k, v)| (format!("{label}: {k}"), v))
            })
            .collect();
        found.sort();
        found
    }

    /// Every key and value of every store.
    fn everything(&self) -> Vec<(String, Vec<u8>)> {
        self.keys_of("")
    }
}

fn deleting_a_tenant_leaves_nothing_of_it_and_changes_nothing_of_another(stores: Stores) {
    let d = Deployment::on(stores);
    d.use_tenant("acme");
    d.use_tenant("bigcorp");
    assert!(d.keys_of("acme").len() > 300, "the fixture uses acme");
    let bigcorp = d.keys_of("bigcorp");
    // Secrets stored before the broker kept its registry of the teams with
    // secrets: found through the teams the configuration names.
    for key in d.broker.kv().snapshot().into_keys() {
        if key.starts_with("secrets-index/acme/team-registry") {
            d.broker.kv().delete(&key).unwrap();
        }
    }
    let bigcorp_messages = d.bridge.on("greentic.messaging.ingress.prod.bigcorp.");
    assert_eq!(bigcorp_messages.len(), 1);

    let mut answers = Vec::new();
    loop {
        let r = d.delete(&operator(), "acme");
        answers.push(r.status);
        match r.status {
            202 => assert_eq!(r.json_body()["state"], "deleting"),
            200 => {
                let body = r.json_body();
                assert_eq!(body["state"], "deleted", "{body}");
                assert_eq!(body["removed"]["secrets"], 2, "{body}");
                assert_eq!(body["removed"]["stream_messages"], 1, "{body}");
                // 3 envs x 3 teams x 4 people, less Dana, erased before,
                // and in each env one session whose record is unreadable.
                assert_eq!(body["removed"]["sessions"], 30, "{body}");
                break;
            }
            _ => panic!("{} {}", r.status, r.json_body()),
        }
        assert!(
            answers.len() < 100,
            "the deletion does not end: {answers:?}"
        );
    }

    let left: Vec<String> = d.keys_of("acme").into_iter().map(|(k, _)| k).collect();
    assert!(left.is_empty(), "left behind: {left:#?}");
    assert!(
        d.bridge
            .on("greentic.messaging.ingress.prod.acme.")
            .is_empty()
    );
    assert_eq!(d.keys_of("bigcorp"), bigcorp);
    assert_eq!(
        d.bridge.on("greentic.messaging.ingress.prod.bigcorp."),
        bigcorp_messages
    );
    // One audit line per call, with counts and who asked, nobody's data.
    let audit: Vec<_> = d
        .host
        .logs()
        .into_iter()
        .filter(|l| l["event"] == "tenant.offboarding")
        .collect();
    assert_eq!(audit.len(), answers.len());
    assert!(audit.iter().all(|l| l["tenant"] == "ops"));
    assert!(!d.host.raw_logs().contains("U-DANA"));

    // Gone: the tenant is unknown, deleting again finds nothing, and its
    // old tokens reach nothing and leave nothing behind.
    assert_problem(
        &d.call(operator().request("GET", "/api/v1/tenants/acme")),
        404,
        "not-found",
    );
    let before = d.everything();
    assert_problem(&d.delete(&operator(), "acme"), 404, "not-found");
    // (The broker admits as the session API does, `service::admit`; here
    // it reads a config store of its own, so it is not asked.)
    let old_admin = Call::with(&token("acme", "prod").roles(&["admin"]));
    for path in ["/api/v1/sessions", "/api/v1/usage"] {
        assert_problem(&d.call(old_admin.request("GET", path)), 403, "forbidden");
    }
    let after: Vec<(String, Vec<u8>)> = d
        .everything()
        .into_iter()
        .filter(|(k, _)| !k.contains("/ops/") && !k.contains("rate-scopes/ops"))
        .collect();
    let before: Vec<(String, Vec<u8>)> = before
        .into_iter()
        .filter(|(k, _)| !k.contains("/ops/") && !k.contains("rate-scopes/ops"))
        .collect();
    assert_eq!(after, before, "only the operator's own rate windows moved");

    // The tenant can be created again, from nothing.
    let demo = greentic::testing::demo_bundle();
    let document = greentic::flows::control::TenantDocument::from_bundle(demo, "acme").unwrap();
    let created = ControlPlane::new(d.host.store("config"))
        .apply(
            &TenantId::parse("acme").unwrap(),
            document,
            &platform_author(),
        )
        .unwrap();
    assert_eq!(created.version().version, 1);
}

fn a_tenant_being_deleted_takes_no_traffic_and_its_deliveries_are_dropped(stores: Stores) {
    let d = Deployment::on(stores);
    let hi = envelope_on(
        &d.host,
        "acme",
        "support",
        "slack",
        message("m1", "U1", "hi"),
    );
    // The deletion has begun (its first step) but not gone further: the
    // bridge is down, so the call stops at the purge with 503.
    d.bridge.set_down(true);
    let r = d.delete(&operator(), "acme");
    assert_problem(&r, 503, "unavailable");
    let head = ControlPlane::new(d.host.store("config"))
        .store()
        .current::<serde_json::Value>(&TenantId::parse("acme").unwrap())
        .unwrap()
        .unwrap();
    assert_eq!(head.status, greentic::store::config::Status::Offboarding);

    // A delivery of a message accepted before is dropped, writing nothing.
    let sessions = d.host.store("sessions").snapshot();
    let r = flow_executor::handle(&FakeBridge::delivery(&Published::inbound(&hi), 1), &d.host);
    assert_eq!(r.status, 200, "{}", r.json_body());
    assert_eq!(d.host.store("sessions").snapshot(), sessions);
    assert!(
        d.host.logs().iter().any(
            |l| l["event"] == "message.dropped" && l["reason"] == "its tenant is being deleted"
        )
    );

    // Its REST calls are refused as a suspended tenant's; no change leads
    // back to active.
    let admin = Call::with(&token("acme", "prod").roles(&["admin"]));
    assert_problem(
        &d.call(admin.request("GET", "/api/v1/sessions")),
        403,
        "tenant-suspended",
    );
    let resume = d.call(
        operator()
            .request("PUT", "/api/v1/tenants/acme/status")
            .with_body(json!({ "status": "active" }).to_string()),
    );
    assert_problem(&resume, 409, "conflict");

    // One call at a time: while another holds this minute's lease, 409.
    let acme = TenantId::parse("acme").unwrap();
    let lease = greentic::tenancy::keys::offboarding_lease(&acme, NOW as u64 / 60_000);
    d.host.store("config").increment(&lease, 1).unwrap();
    d.bridge.set_down(false);
    assert_problem(&d.delete(&operator(), "acme"), 409, "conflict");
    d.host.store("config").delete(&lease).unwrap();

    // The bridge is back: the next call goes on from there to the end.
    let mut status = 202;
    for _ in 0..100 {
        status = d.delete(&operator(), "acme").status;
        if status != 202 {
            break;
        }
    }
    assert_eq!(status, 200);
    assert!(d.keys_of("acme").is_empty());
}

fn only_a_platform_admin_deletes_and_bad_or_unknown_tenants_change_nothing(stores: Stores) {
    let d = Deployment::on(stores);
    d.use_tenant("acme");
    let acme_admin = Call::with(&token("acme", "prod").roles(&["admin"]));
    let before = d.everything();
    // The operator's calls count in its own rate windows; nothing else moves.
    let unchanged = |d: &Deployment| {
        let strip = |all: Vec<(String, Vec<u8>)>| -> Vec<(String, Vec<u8>)> {
            all.into_iter()
                .filter(|(k, _)| !k.contains("/ops/") && !k.contains("rate-scopes/ops"))
                .filter(|(k, _)| !k.starts_with("limits: rate-") || !k.contains("/acme/"))
                .filter(|(k, _)| !k.starts_with("limits: rate-scopes/acme"))
                .collect()
        };
        assert_eq!(strip(d.everything()), strip(before.clone()));
    };
    assert_problem(&d.delete(&acme_admin, "acme"), 403, "forbidden");
    assert_problem(&d.delete(&acme_admin, "bigcorp"), 403, "forbidden");
    let no_token = Request::new("DELETE", "/api/v1/tenants/acme")
        .with_header("x-tenant-id", "ops")
        .with_header("x-env-id", "prod");
    assert_problem(&d.call(no_token), 401, "unauthorized");
    assert_problem(&d.delete(&operator(), "nobody"), 404, "not-found");
    assert_problem(&d.delete(&operator(), "Not_A_Tenant"), 400, "invalid-id");
    assert_problem(&d.delete(&operator(), "global"), 400, "invalid-id");
    unchanged(&d);
    assert!(d.bridge.on("greentic.messaging.ingress.prod.acme.").len() == 1);
}
