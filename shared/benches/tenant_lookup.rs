//! The channel lookup every component does at its boundary
//! (`TenantConfig::find_channel`: one read of the tenant's current
//! configuration version) with 10 and with 10,000 tenants configured in the
//! `config` store. A request reads only its own tenant's key, so the ratio of
//! the two should stay close to 1 (issue 17 asks for at most 1.2).

use criterion::{Criterion, criterion_group, criterion_main};
use greentic::flows::control::{ControlPlane, TenantDocument};
use greentic::flows::tenant_config::TenantConfig;
use greentic::store::config;
use greentic::tenancy::ids::{ChannelId, TenantCtx, TenantId};
use greentic::testing::{MemoryHost, demo_bundle};
use std::hint::black_box;

/// A host whose config store holds the demo's tenants and `count` more,
/// each a copy of the demo's acme.
fn host_with(count: usize) -> MemoryHost {
    let host = MemoryHost::new(&[]);
    let plane = ControlPlane::new(host.store(config::STORE_LABEL));
    let document = TenantDocument::from_bundle(demo_bundle(), "acme").unwrap();
    let author = greentic::testing::platform_author();
    for i in 0..count {
        let tenant = TenantId::parse(&format!("tenant{i:05}")).unwrap();
        plane.apply(&tenant, document.clone(), &author).unwrap();
    }
    host
}

fn bench(c: &mut Criterion) {
    let slack = ChannelId::parse("slack").unwrap();
    let mut group = c.benchmark_group("channel lookup");
    for count in [10, 10_000] {
        let host = host_with(count);
        let scopes: Vec<TenantCtx> = (0..count)
            .step_by((count / 10).max(1))
            .map(|i| TenantCtx::new(&format!("tenant{i:05}"), "prod", Some("support")).unwrap())
            .collect();
        let mut next = 0;
        group.bench_function(format!("{count} tenants"), |b| {
            b.iter(|| {
                next = (next + 1) % scopes.len();
                let found = TenantConfig::find_channel(&host, &scopes[next], &slack).unwrap();
                black_box(found.expect("the channel is configured"))
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
