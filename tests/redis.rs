//! The stores on a real redis-server, as SpinKube runs them: the key-value
//! contract (increment is INCRBY, compare-and-swap is WATCH/MULTI/EXEC, as in
//! Spin's Redis backend), and the session, secret and usage stores on top of
//! it, with concurrent writers. The end-to-end suites run on Redis as well
//! (their `wasm_on_redis` tests); the server is `greentic_harness::redis`'s.

use std::collections::BTreeSet;

use greentic::secrets::crypto::MasterKeys;
use greentic::secrets::store::SecretStore;
use greentic::store::kv::{Cas, KeyValue};
use greentic::store::session::Direction;
use greentic::store::sessions::{ListQuery, ListScope, SessionStore, StoreError};
use greentic::store::usage::{self, Teams};
use greentic::tenancy::ids::{Day, SecretName, SecretScope, TenantCtx};
use greentic::testing::{TEST_MASTER_KEY, TEST_MASTER_KEY_2, new_session};
use greentic_harness::redis::fresh_kv;

fn ctx(tenant: &str, team: Option<&str>) -> TenantCtx {
    TenantCtx::new(tenant, "prod", team).unwrap()
}

#[test]
fn the_contract_holds_on_redis() {
    let kv = fresh_kv();
    assert_eq!(kv.get("a").unwrap(), None);
    kv.set("a", b"1").unwrap();
    assert!(kv.exists("a").unwrap());
    assert_eq!(kv.compare_and_swap("a", b"0", b"2").unwrap(), Cas::Conflict);
    assert_eq!(kv.compare_and_swap("a", b"1", b"2").unwrap(), Cas::Swapped);
    assert_eq!(kv.get("a").unwrap().as_deref(), Some(&b"2"[..]));
    assert_eq!(kv.increment("n", 5).unwrap(), 5);
    assert_eq!(kv.increment("n", 0).unwrap(), 5);
    // Redis keeps counters as text, SQLite as 8 bytes: read_counter reads both.
    assert_eq!(kv.get("n").unwrap().as_deref(), Some(&b"5"[..]));
    assert_eq!(greentic::store::kv::read_counter(&kv, "n").unwrap(), 5);
    assert_eq!(greentic::store::kv::read_counter(&kv, "absent").unwrap(), 0);
    assert!(
        !kv.exists("absent").unwrap(),
        "reading a counter created it"
    );
    kv.delete("a").unwrap();
    kv.delete("a").unwrap();
    assert!(!kv.exists("a").unwrap());
}

#[test]
fn concurrent_creators_and_updaters_lose_nothing_on_redis() {
    let kv = fresh_kv();
    let support = ctx("acme", Some("support"));
    let created: BTreeSet<_> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..6)
            .map(|t| {
                let (kv, support) = (&kv, &support);
                s.spawn(move || {
                    (0..20)
                        .map(|i| {
                            SessionStore::new(kv)
                                .create(support, new_session("slack", &format!("U{t}-{i}")), 1)
                                .unwrap()
                                .id
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    let store = SessionStore::new(&kv);
    let mut listed = BTreeSet::new();
    let mut query = ListQuery {
        limit: 50,
        ..ListQuery::default()
    };
    loop {
        let page = store
            .list(&ListScope::Team(support.clone()), &query)
            .unwrap();
        listed.extend(page.sessions.into_iter().map(|s| s.id));
        match page.next_cursor {
            Some(c) => query.cursor = Some(c),
            None => break,
        }
    }
    assert_eq!(listed, created);
    assert_eq!(listed.len(), 120);

    // Another tenant's listing on the same Redis sees none of them.
    let bigcorp = store
        .list(
            &ListScope::Team(ctx("bigcorp", Some("support"))),
            &ListQuery::default(),
        )
        .unwrap();
    assert!(bigcorp.sessions.is_empty());

    let id = created.iter().next().unwrap().clone();
    std::thread::scope(|s| {
        for t in 0..4 {
            let (kv, support, id) = (&kv, &support, &id);
            s.spawn(move || {
                for i in 0..15 {
                    loop {
                        match SessionStore::new(kv).update(support, id, 2, |r| {
                            r.record_message(Direction::Inbound, &format!("{t}-{i}"), 2)
                        }) {
                            Ok(_) => break,
                            Err(StoreError::Conflict) => std::thread::yield_now(),
                            Err(e) => panic!("{e}"),
                        }
                    }
                }
            });
        }
    });
    let record = store.get(&support, &id).unwrap().unwrap();
    assert_eq!(record.message_count, 60);
}

#[test]
fn usage_counters_rate_windows_and_secrets_work_on_redis() {
    let kv = fresh_kv();
    let now = 1_795_867_200_000;
    let support = ctx("acme", Some("support"));
    greentic::store::teams::TeamRegistry::new(&kv)
        .ensure(&support)
        .unwrap();
    std::thread::scope(|s| {
        for _ in 0..4 {
            let (kv, support) = (&kv, &support);
            s.spawn(move || {
                for _ in 0..25 {
                    usage::record_traffic(kv, support, 1, 2, now).unwrap();
                }
            });
        }
    });
    let limits = fresh_kv();
    let counts = usage::read(&kv, &limits, &support, &Teams::All, &Day::of(now)).unwrap();
    assert_eq!(counts.messages_in, 100);
    assert_eq!(counts.replies_out, 200);

    // A rate window on Redis: 100 requests from 4 writers against a quota of
    // 60 admit exactly 60, however they interleave.
    let admitted = std::sync::atomic::AtomicU32::new(0);
    let window = greentic::tenancy::keys::rate_api(&support);
    std::thread::scope(|s| {
        for _ in 0..4 {
            let (limits, window, admitted) = (&limits, &window, &admitted);
            s.spawn(move || {
                for _ in 0..25 {
                    let counted =
                        greentic::store::rate::count(limits, window, "tenant", 60, now).unwrap();
                    if !counted.exceeded() {
                        admitted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                }
            });
        }
    });
    assert_eq!(admitted.into_inner(), 60);

    let store = SecretStore::new(&kv);
    let keys = MasterKeys::parse(TEST_MASTER_KEY, "").unwrap();
    let name = SecretName::parse("slack_bot_token").unwrap();
    let nonce = || [7u8; 24];
    let team = SecretScope::team_of(&support).unwrap();
    store
        .put(&keys, &team, &name, b"xoxb-1", "test", now, &nonce)
        .unwrap();
    let found = store
        .resolve(&keys, &support, &name, &[], &nonce)
        .unwrap()
        .unwrap();
    assert_eq!(found.value, b"xoxb-1");
    assert!(
        store
            .resolve(&keys, &ctx("bigcorp", Some("support")), &name, &[], &nonce)
            .unwrap()
            .is_none()
    );
    // Rotation re-seals on read with compare-and-swap, on Redis too.
    let rotated = MasterKeys::parse(TEST_MASTER_KEY_2, TEST_MASTER_KEY).unwrap();
    store
        .resolve(&rotated, &support, &name, &[], &nonce)
        .unwrap()
        .unwrap();
    let only_new = MasterKeys::parse(TEST_MASTER_KEY_2, "").unwrap();
    let again = store
        .resolve(&only_new, &support, &name, &[], &nonce)
        .unwrap()
        .unwrap();
    assert_eq!(again.value, b"xoxb-1");
}

#[test]
fn the_end_to_end_fixtures_keep_their_data_in_redis() {
    // Redis keeps counters as decimal text, the memory store as 8 LE bytes:
    // the text proves a `Stores::Redis` store really is on the server.
    let kv = e2e_tests::Stores::Redis.open("sessions");
    kv.increment("n", 3).unwrap();
    assert_eq!(kv.get("n").unwrap().as_deref(), Some(&b"3"[..]));
    let app = e2e_tests::wasm::app_on(e2e_tests::Target::WasmOnRedis);
    app.store("sessions").increment("n", 3).unwrap();
    assert_eq!(
        app.store("sessions").get("n").unwrap().as_deref(),
        Some(&b"3"[..])
    );
}
