//! One retention sweep batch (1,000 index slots of acme's sessions, none
//! expired) with acme alone, and with 100,000 sessions of 100 other tenants
//! in the same stores. A batch reads only the tenant it sweeps, so the two
//! should cost the same (issue 19: must not grow with other tenants' data).

use criterion::{Criterion, criterion_group, criterion_main};
use greentic::flows::control::{ControlPlane, TenantDocument};
use greentic::store::kv::{KeyValue, TestKv};
use greentic::store::lifecycle::{self, Stores, Swept};
use greentic::store::sessions::SessionStore;
use greentic::tenancy::ids::{TenantCtx, TenantId};
use greentic::tenancy::keys;
use greentic::testing::{apply_demo, demo_bundle, new_session};
use std::hint::black_box;

const NOW: i64 = 1_800_000_000_000;

struct World {
    sessions: TestKv,
    webchat: TestKv,
    egress: TestKv,
    config: TestKv,
}

fn world(other_tenants: usize, per_tenant: usize) -> World {
    let world = World {
        sessions: TestKv::new(),
        webchat: TestKv::new(),
        egress: TestKv::new(),
        config: TestKv::new(),
    };
    apply_demo(&world.config);
    let store = SessionStore::new(&world.sessions);
    let acme = TenantCtx::new("acme", "prod", Some("support")).unwrap();
    for i in 0..1_000 {
        store
            .create(&acme, new_session("slack", &format!("U{i}")), NOW)
            .unwrap();
    }
    let plane = ControlPlane::new(&world.config);
    let document = TenantDocument::from_bundle(demo_bundle(), "acme").unwrap();
    let author = greentic::testing::platform_author();
    for t in 0..other_tenants {
        let id = format!("other{t:03}");
        plane
            .apply(&TenantId::parse(&id).unwrap(), document.clone(), &author)
            .unwrap();
        let ctx = TenantCtx::new(&id, "prod", Some("support")).unwrap();
        for i in 0..per_tenant {
            store
                .create(&ctx, new_session("slack", &format!("U{i}")), NOW)
                .unwrap();
        }
    }
    world
}

fn batch(world: &World) -> Swept {
    // Every iteration starts the cycle afresh: acme's first 1,000 slots.
    for key in [
        keys::sweep_tenant_cursor(),
        keys::sweep_cursor(&TenantCtx::new("acme", "prod", Some("support")).unwrap()),
    ] {
        world.sessions.delete(&key).unwrap();
    }
    let stores = Stores {
        sessions: &world.sessions,
        webchat: &world.webchat,
        egress: &world.egress,
    };
    lifecycle::sweep(&stores, &world.config, NOW, lifecycle::SWEEP_BUDGET).unwrap()
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("retention sweep batch");
    for (name, others, per) in [
        ("acme alone", 0, 0),
        ("with 100k sessions of 100 other tenants", 100, 1_000),
    ] {
        let world = world(others, per);
        let swept = batch(&world);
        assert_eq!((swept.examined, swept.deleted), (1_000, 0));
        group.bench_function(name, |b| b.iter(|| black_box(batch(&world))));
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
