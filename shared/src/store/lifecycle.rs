//! The end of a session's data: forgetting one session everywhere it is
//! kept, and the retention sweep that forgets the sessions idle beyond
//! their tenant's `session_retention_days`.
//!
//! Spin has no timers, so the sweep runs when asked: the bridge calls the
//! session API's internal sweep route on a schedule (bridge/README.md,
//! "Schedules"), and each call spends at most a budget of work (tenants and
//! teams visited, index slots examined, sessions forgotten) and answers
//! whether more is left. A call's cost is bounded by its budget, and what it
//! reads of a tenant is that tenant's own indexes and records: other
//! tenants' sessions cost it nothing. The sweep walks the tenant index and
//! each team's session index from its oldest slot, keeping its place in
//! cursor keys (a team done for the cycle keeps a cursor past its newest
//! slot until its whole tenant is done), so calls resume where the last one
//! stopped and every session is examined once per cycle. A cycle ends when
//! the last tenant is done; the call that ends it answers `more: false`.
//!
//! Slots are in creation order, not activity order, so a sweep examines
//! every slot (a session created long ago may still be active), and the
//! slots of sessions forgotten before are read again each cycle (an index's
//! counter never goes back): a cycle costs one read per session a team ever
//! had, spread over calls by the budget.

use serde::Deserialize;

use crate::store::budget::Budget;
use crate::store::config::{Status, Version};
use crate::store::index::SlotIndex;
use crate::store::kv::{KeyValue, KvError, read_counter};
use crate::store::sessions::{SessionStore, StoreError};
use crate::store::teams::TeamRegistry;
use crate::store::webchat_log::ConversationLog;
use crate::tenancy::ids::{ConversationId, SessionId, TenantCtx, TenantId};
use crate::tenancy::keys;

/// Units of work one sweep call spends at most: roughly a key-value read
/// each (a tenant, a team, an index slot with its record, a session
/// forgotten, a web chat log entry erased).
pub const SWEEP_BUDGET: usize = 1_000;

const DAY_MS: i64 = 24 * 60 * 60 * 1000;

/// The stores a session's data is in.
pub struct Stores<'a> {
    pub sessions: &'a dyn KeyValue,
    pub webchat: &'a dyn KeyValue,
    pub egress: &'a dyn KeyValue,
}

/// What forgetting sessions removed besides the sessions themselves.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Forgotten {
    pub webchat_activities: u64,
    pub egress_records: usize,
}

/// Forgets session `id` of `ctx` everywhere: the record and its transcript,
/// the memory, its index entries and locator, egress's send progress and,
/// for the web chat, its conversation's log. `None` when there was no such
/// session.
pub fn forget_session(
    stores: &Stores<'_>,
    ctx: &TenantCtx,
    id: &SessionId,
) -> Result<Option<Forgotten>, StoreError> {
    let sessions = SessionStore::new(stores.sessions);
    let Some(record) = sessions.get(ctx, id)? else {
        return Ok(None);
    };
    let mut forgotten = Forgotten::default();
    if record.provider == "messaging-webchat"
        && let Ok(conversation) = ConversationId::parse(&record.conversation.id)
    {
        let log = ConversationLog::new(stores.webchat, ctx, &record.channel, &conversation);
        forgotten.webchat_activities = log.erase()?;
    }
    if forget_send_progress(stores.egress, ctx, id)? {
        forgotten.egress_records = 1;
    }
    sessions.delete(ctx, id)?;
    Ok(Some(forgotten))
}

/// Removes egress's record of how far it sent a session's replies, and its
/// claim. Whether there was such a record.
pub fn forget_send_progress(
    egress: &dyn KeyValue,
    ctx: &TenantCtx,
    id: &SessionId,
) -> Result<bool, KvError> {
    let progress = keys::egress_progress(ctx, id);
    let existed = egress.exists(&progress)?;
    if existed {
        egress.delete(&progress)?;
    }
    egress.delete(&keys::egress_progress_claim(ctx, id))?;
    Ok(existed)
}

/// What one sweep call did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Swept {
    /// Index slots examined (at most the budget).
    pub examined: usize,
    /// Sessions forgotten for being idle beyond their tenant's retention.
    pub deleted: usize,
    /// Whether the cycle over every tenant goes on: call again.
    pub more: bool,
}

/// What the sweep reads of a tenant's current version: its environments
/// (whose session indexes it walks) and its retention; the rest unparsed.
#[derive(Deserialize)]
struct Environments {
    tenant: EnvironmentList,
}

#[derive(Deserialize)]
struct EnvironmentList {
    environments: Vec<EnvironmentId>,
}

#[derive(Deserialize)]
struct EnvironmentId {
    id: String,
}

/// One sweep call: spends at most `budget` units of work (see [`Budget`]),
/// from where the last call stopped, forgetting the sessions idle beyond
/// their tenant's retention at `now_ms`.
pub fn sweep(
    stores: &Stores<'_>,
    config_kv: &dyn KeyValue,
    now_ms: i64,
    budget: usize,
) -> Result<Swept, StoreError> {
    let tenants = SlotIndex::new(config_kv, keys::tenant_index());
    let newest = u64::try_from(read_counter(config_kv, &keys::tenant_index().seq())?).unwrap_or(0);
    let mut swept = Swept::default();
    let mut budget = Budget::new(budget);
    let mut slot = read_cursor(stores.sessions, &keys::sweep_tenant_cursor())?;
    while slot <= newest {
        if budget.spent() {
            write_cursor(stores.sessions, &keys::sweep_tenant_cursor(), slot)?;
            swept.more = true;
            return Ok(swept);
        }
        budget.spend(1);
        if let Some(tenant) = tenants
            .get(slot)?
            .and_then(|t| TenantId::parse(std::str::from_utf8(&t).ok()?).ok())
            && let Some(version) = tenant_to_sweep(config_kv, &tenant, slot)?
            && !sweep_tenant(stores, &tenant, &version, now_ms, &mut budget, &mut swept)?
        {
            // Out of budget inside this tenant: its team cursors keep the
            // place, and the next call starts with it again.
            write_cursor(stores.sessions, &keys::sweep_tenant_cursor(), slot)?;
            swept.more = true;
            return Ok(swept);
        }
        slot += 1;
    }
    // Every tenant is done: the next call starts a new cycle.
    delete_if_present(stores.sessions, &keys::sweep_tenant_cursor())?;
    Ok(swept)
}

/// The tenant's current version, if slot `slot` of the tenant index is its
/// own (a slot left by an interrupted creation is skipped).
fn tenant_to_sweep(
    config_kv: &dyn KeyValue,
    tenant: &TenantId,
    slot: u64,
) -> Result<Option<Version<Environments>>, StoreError> {
    let Some(bytes) = config_kv.get(&keys::config_head(tenant))? else {
        return Ok(None);
    };
    // A tenant being deleted is not swept: its deletion removes its
    // indexes, which the sweep's reads would bring back.
    Ok(serde_json::from_slice::<Version<Environments>>(&bytes)
        .ok()
        .filter(|v| v.slot == slot && v.tenant == tenant.as_str())
        .filter(|v| v.status != Status::Offboarding))
}

/// The team contexts of the tenant's environments with data.
fn teams_of(
    stores: &Stores<'_>,
    tenant: &TenantId,
    version: &Version<Environments>,
) -> Result<Vec<TenantCtx>, StoreError> {
    let registry = TeamRegistry::new(stores.sessions);
    let mut teams = Vec::new();
    for env in &version.document.tenant.environments {
        if let Ok(env) = TenantCtx::new(tenant.as_str(), &env.id, None) {
            teams.extend(registry.teams(&env)?);
        }
    }
    Ok(teams)
}

/// Sweeps every team index of the tenant's environments until the budget
/// runs out. Returns whether the tenant is done for this cycle; then its
/// teams' cursors are cleared for the next one.
fn sweep_tenant(
    stores: &Stores<'_>,
    tenant: &TenantId,
    version: &Version<Environments>,
    now_ms: i64,
    budget: &mut Budget,
    swept: &mut Swept,
) -> Result<bool, StoreError> {
    let cutoff = now_ms - i64::from(version.limits.session_retention_days) * DAY_MS;
    let teams = teams_of(stores, tenant, version)?;
    for team in &teams {
        if !sweep_team(stores, team, cutoff, budget, swept)? {
            return Ok(false);
        }
    }
    for team in &teams {
        delete_if_present(stores.sessions, &keys::sweep_cursor(team))?;
    }
    Ok(true)
}

/// Examines the team's session index from its cursor on. Returns whether
/// the index is done for this cycle: its cursor then stays past the newest
/// slot, so the tenant's next call goes on with its next team.
fn sweep_team(
    stores: &Stores<'_>,
    team: &TenantCtx,
    cutoff_ms: i64,
    budget: &mut Budget,
    swept: &mut Swept,
) -> Result<bool, StoreError> {
    let cursor_key = keys::sweep_cursor(team);
    let index = SlotIndex::new(stores.sessions, keys::session_index(team));
    let newest = u64::try_from(read_counter(
        stores.sessions,
        &keys::session_index(team).seq(),
    )?)
    .unwrap_or(0);
    let start = read_cursor(stores.sessions, &cursor_key)?;
    if start > newest {
        return Ok(true);
    }
    budget.spend(1);
    let sessions = SessionStore::new(stores.sessions);
    let mut slot = start;
    while slot <= newest {
        if budget.spent() {
            write_cursor(stores.sessions, &cursor_key, slot)?;
            return Ok(false);
        }
        budget.examine();
        swept.examined += 1;
        if let Some(id) = index
            .get(slot)?
            .and_then(|id| SessionId::parse(std::str::from_utf8(&id).ok()?).ok()?)
            && let Some(record) = sessions.get_readable(team, &id)?
            && record.updated_at_ms < cutoff_ms
            && let Some(forgotten) = forget_session(stores, team, &id)?
        {
            swept.deleted += 1;
            budget.spend(1 + usize::try_from(forgotten.webchat_activities).unwrap_or(usize::MAX));
        }
        slot += 1;
    }
    write_cursor(stores.sessions, &cursor_key, newest + 1)?;
    Ok(true)
}

fn delete_if_present(kv: &dyn KeyValue, key: &str) -> Result<(), KvError> {
    if kv.exists(key)? {
        kv.delete(key)?;
    }
    Ok(())
}

/// A cursor: the next slot to examine, 1 when none is kept.
fn read_cursor(kv: &dyn KeyValue, key: &str) -> Result<u64, KvError> {
    Ok(kv
        .get(key)?
        .and_then(|b| String::from_utf8(b).ok()?.parse().ok())
        .unwrap_or(1))
}

fn write_cursor(kv: &dyn KeyValue, key: &str, slot: u64) -> Result<(), KvError> {
    kv.set(key, slot.to_string().as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::testing::TenantWorld as World;

    impl World {
        /// A session of `user`, last active at `at_ms`.
        fn session(&self, ctx: &TenantCtx, user: &str, at_ms: i64) -> SessionId {
            let store = SessionStore::new(&self.sessions);
            store
                .create(ctx, crate::testing::new_session("slack", user), at_ms)
                .unwrap()
                .id
        }

        fn exists(&self, ctx: &TenantCtx, id: &SessionId) -> bool {
            SessionStore::new(&self.sessions)
                .get(ctx, id)
                .unwrap()
                .is_some()
        }

        fn sweep_all(&self, now_ms: i64, budget: usize) -> (Swept, usize) {
            let mut calls = 0;
            let mut total = Swept::default();
            loop {
                let swept = sweep(&self.data(), &self.config, now_ms, budget).unwrap();
                calls += 1;
                total.examined += swept.examined;
                total.deleted += swept.deleted;
                if !swept.more {
                    return (total, calls);
                }
                assert!(calls < 1000, "the sweep never ends its cycle");
            }
        }
    }

    fn ctx(tenant: &str, env: &str, team: &str) -> TenantCtx {
        TenantCtx::new(tenant, env, Some(team)).unwrap()
    }

    const NOW: i64 = 400 * DAY_MS;

    #[test]
    fn sessions_idle_beyond_their_tenants_retention_are_forgotten_and_no_others() {
        let world = World::new();
        // acme keeps 30 days; bigcorp the default year.
        crate::testing::update_tenant(&world.config, "acme", |acme| {
            acme.tenant.limits.session_retention_days = Some(30);
        });

        let support = ctx("acme", "prod", "support");
        let staging = ctx("acme", "staging", "support");
        let helpdesk = ctx("bigcorp", "prod", "helpdesk");
        let old = world.session(&support, "U1", NOW - 31 * DAY_MS);
        let recent = world.session(&support, "U2", NOW - 29 * DAY_MS);
        let old_staging = world.session(&staging, "U3", NOW - 40 * DAY_MS);
        let bigcorp_month = world.session(&helpdesk, "U4", NOW - 40 * DAY_MS);
        let bigcorp_old = world.session(&helpdesk, "U5", NOW - 366 * DAY_MS);

        let (swept, calls) = world.sweep_all(NOW, SWEEP_BUDGET);
        assert_eq!((swept.examined, swept.deleted, calls), (5, 3, 1));
        assert!(!world.exists(&support, &old));
        assert!(world.exists(&support, &recent));
        assert!(!world.exists(&staging, &old_staging));
        assert!(
            world.exists(&helpdesk, &bigcorp_month),
            "bigcorp keeps a year"
        );
        assert!(!world.exists(&helpdesk, &bigcorp_old));
        // The next cycle forgets nothing more; it reads the slots of the
        // forgotten sessions again (an index's counter never goes back).
        assert_eq!(
            world.sweep_all(NOW, SWEEP_BUDGET).0,
            Swept {
                examined: 5,
                deleted: 0,
                more: false
            }
        );
    }

    #[test]
    fn a_small_budget_spreads_a_cycle_over_calls_and_misses_nothing() {
        let world = World::new();
        let support = ctx("acme", "prod", "support");
        let helpdesk = ctx("bigcorp", "prod", "helpdesk");
        let ids: Vec<(TenantCtx, SessionId)> = (0..7)
            .map(|i| {
                let c = if i % 2 == 0 { &support } else { &helpdesk };
                (
                    c.clone(),
                    world.session(c, &format!("U{i}"), NOW - 400 * DAY_MS),
                )
            })
            .collect();
        let (swept, calls) = world.sweep_all(NOW, 2);
        assert_eq!((swept.examined, swept.deleted), (7, 7));
        // Visiting a tenant or team and forgetting a session spend budget
        // too; every call still examines at least one slot.
        assert!((2..=7).contains(&calls), "{calls} calls");
        assert!(ids.iter().all(|(c, id)| !world.exists(c, id)));
    }

    #[test]
    fn a_tenant_with_several_teams_is_swept_once_per_cycle_and_the_next_tenant_too() {
        let world = World::new();
        let support = ctx("acme", "prod", "support");
        let sales = ctx("acme", "prod", "sales");
        let helpdesk = ctx("bigcorp", "prod", "helpdesk");
        for i in 0..6 {
            world.session(&support, &format!("U{i}"), NOW);
        }
        for i in 0..3 {
            world.session(&sales, &format!("S{i}"), NOW);
        }
        let old = world.session(&helpdesk, "V1", NOW - 400 * DAY_MS);
        // A budget smaller than the first team: the cycle still reaches
        // the second team and the next tenant, each slot once.
        // Both cycles read all ten slots (the forgotten session's too).
        for deleted in [1, 0] {
            let (swept, calls) = world.sweep_all(NOW, 4);
            assert_eq!((swept.examined, swept.deleted), (10, deleted));
            assert!(calls > 1);
        }
        assert!(!world.exists(&helpdesk, &old), "bigcorp was reached");
    }

    #[test]
    fn a_sweep_calls_cost_does_not_grow_with_other_tenants_data() {
        let world = World::new();
        let support = ctx("acme", "prod", "support");
        for i in 0..10 {
            world.session(&support, &format!("U{i}"), NOW);
        }
        // A call that ends inside acme's index: what it reads is acme's.
        let cost = |world: &World| {
            let ops = world.sessions.ops();
            let swept = sweep(&world.data(), &world.config, NOW, 5).unwrap();
            assert!(swept.more);
            world.sessions.ops() - ops
        };
        let alone = cost(&world);
        // 2,000 sessions of bigcorp, swept in later calls of the cycle.
        let helpdesk = ctx("bigcorp", "prod", "helpdesk");
        for i in 0..2_000 {
            world.session(&helpdesk, &format!("V{i}"), NOW);
        }
        world.sessions.delete(&keys::sweep_tenant_cursor()).unwrap();
        world
            .sessions
            .delete(&keys::sweep_cursor(&support))
            .unwrap();
        assert_eq!(cost(&world), alone);
        assert_eq!(world.sessions.full_scans(), 0);
    }
}
