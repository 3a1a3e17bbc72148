//! What a component pays the broker to resolve one secret, native: parse the
//! master keys (every Spin request is a fresh instance, so nothing is cached),
//! then read the team's record, fall back to the tenant's (two KV reads in the
//! worst case) and decrypt. The store holds 1,000 tenants' secrets so a cost
//! that grew with the store would show.

use criterion::{Criterion, criterion_group, criterion_main};
use greentic::secrets::crypto::MasterKeys;
use greentic::secrets::store::SecretStore;
use greentic::store::kv::TestKv;
use greentic::tenancy::ids::{SecretName, SecretScope, TenantCtx};
use std::hint::black_box;

const MASTER_KEY: &str = "k1:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

fn nonce() -> [u8; 24] {
    [7; 24]
}

fn filled_store() -> TestKv {
    let kv = TestKv::new();
    let store = SecretStore::new(&kv);
    let keys = MasterKeys::parse(MASTER_KEY, "").unwrap();
    let put = |scope: SecretScope, name: &str| {
        let name = SecretName::parse(name).unwrap();
        store
            .put(&keys, &scope, &name, &[b'x'; 40], "bench", 0, &nonce)
            .unwrap();
    };
    for t in 0..1_000 {
        let ctx = TenantCtx::new(&format!("tenant{t}"), "prod", Some("support")).unwrap();
        put(SecretScope::team_of(&ctx).unwrap(), "slack_signing_secret");
        put(SecretScope::tenant_of(&ctx), "telegram_bot_token");
    }
    kv
}

fn bench(c: &mut Criterion) {
    let kv = filled_store();
    let store = SecretStore::new(&kv);
    let ctx = TenantCtx::new("tenant500", "prod", Some("support")).unwrap();
    for (label, name) in [
        (
            "resolve team secret (1 read + decrypt)",
            "slack_signing_secret",
        ),
        (
            "resolve via tenant fallback (2 reads + decrypt)",
            "telegram_bot_token",
        ),
    ] {
        let name = SecretName::parse(name).unwrap();
        c.bench_function(label, |b| {
            b.iter(|| {
                let keys = MasterKeys::parse(black_box(MASTER_KEY), "").unwrap();
                let found = store.resolve(&keys, &ctx, &name, &[], &nonce).unwrap();
                black_box(found.expect("present"))
            })
        });
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
