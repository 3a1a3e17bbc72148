//! Listing one page of 50 sessions of one team when the store also holds
//! 100,000 sessions of 100 other tenants, against the same team alone.
//!
//! `TestKv::get_keys` returns the whole store, as Spin's does, so a listing
//! that scanned would grow with the store; reading through the per-scope index
//! should keep the ratio of the two close to 1.

use criterion::{Criterion, criterion_group, criterion_main};
use greentic::TenantCtx;
use greentic::store::kv::TestKv;
use greentic::store::session::NewSession;
use greentic::store::sessions::{ListQuery, ListScope, SessionStore};
use greentic::tenancy::ids::{ChannelId, Conversation};
use std::hint::black_box;

const TEAM_SESSIONS: usize = 1_000;
const OTHER_TENANTS: usize = 100;
const PER_OTHER_TENANT: usize = 1_000;

fn fill(kv: &TestKv, ctx: &TenantCtx, count: usize) {
    let store = SessionStore::new(kv);
    for i in 0..count {
        let new = NewSession {
            channel: ChannelId::parse("slack").unwrap(),
            provider: "messaging-slack".into(),
            conversation: Conversation {
                id: format!("C{}", i % 17),
                thread: None,
            },
            user_id: format!("U{i}"),
            flow: None,
        };
        store.create(ctx, new, i as i64).unwrap();
    }
}

fn bench(c: &mut Criterion) {
    let team = TenantCtx::new("acme", "prod", Some("support")).unwrap();
    let alone = TestKv::new();
    fill(&alone, &team, TEAM_SESSIONS);
    let crowded = TestKv::new();
    fill(&crowded, &team, TEAM_SESSIONS);
    for t in 0..OTHER_TENANTS {
        fill(
            &crowded,
            &TenantCtx::new(&format!("tenant-{t}"), "prod", Some("support")).unwrap(),
            PER_OTHER_TENANT,
        );
    }
    let query = ListQuery {
        limit: 50,
        ..ListQuery::default()
    };
    let scope = ListScope::Team(team);
    let mut group = c.benchmark_group("list_50_of_one_team");
    for (name, kv) in [
        ("team_alone", &alone),
        ("among_100k_of_100_tenants", &crowded),
    ] {
        let store = SessionStore::new(kv);
        group.bench_function(name, |b| {
            b.iter(|| black_box(store.list(&scope, &query).unwrap()))
        });
    }
    group.finish();
    assert_eq!(crowded.full_scans(), 0, "listing must never scan the store");
}

criterion_group!(benches, bench);
criterion_main!(benches);
