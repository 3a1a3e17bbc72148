//! Deleting a tenant from the stores: every key it has in the sessions, web
//! chat, egress, limits and config stores, in calls of a bounded budget,
//! each resuming where the last one stopped. (Its secrets go through the
//! broker, the only component with the secrets store; its messages in the
//! streams through the bridge: `functions/tenant-api` runs those steps.)
//!
//! Nothing here scans a store (Spin's `get_keys` returns every tenant's
//! keys). Every key is found from something that names it:
//! - the tenant's configuration versions name its envs, teams and channels
//!   (the channels' Bot Framework tokens are found from them);
//! - the env registries (`store/teams.rs`) name the envs with data, tokens
//!   naming envs no version had included; each env's team registries name
//!   its teams;
//! - each team's session index names its sessions, and a session names
//!   its memory, claim, locator, person index, send progress and web chat
//!   log (`lifecycle::forget_session`); each team's erased index names its
//!   erased markers;
//! - usage counters are one key per day, from the tenant's first version to
//!   today;
//! - the tenant's rate scopes name their windows (`store/rate.rs`).
//!
//! Indexes are drained newest first, their counters going down with them
//! (`SlotIndex::drain`), so a call cut off by its budget or a crash resumes
//! at the entry it was at; the rest of the progress (which versions were
//! read, which teams are done, the usage day reached) is kept in
//! `config/{tenant}/offboarding`. The configuration goes last, its head
//! after everything else: while the head is there the tenant is known to be
//! being deleted (`Status::Offboarding`), and running the deletion again
//! goes on with it.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::http::error::ApiError;
use crate::store::budget::Budget;
use crate::store::config::{Status, Version};
use crate::store::index::SlotIndex;
use crate::store::kv::{KeyValue, KvError, read_counter};
use crate::store::lifecycle::{Stores, forget_send_progress, forget_session};
use crate::store::rate;
use crate::store::sessions::{SessionStore, StoreError};
use crate::store::teams::TeamRegistry;
use crate::tenancy::ids::{ChannelId, Counter, DEFAULT_TEAM, Day, SessionId, TenantCtx, TenantId};
use crate::tenancy::keys;

/// Units of work one call spends at most (roughly a key read or deleted each).
pub const OFFBOARD_BUDGET: usize = 1_000;

const DAY_MS: i64 = 24 * 60 * 60 * 1000;

/// Every store of a tenant's data except the secrets store.
pub struct TenantStores<'a> {
    pub data: Stores<'a>,
    pub limits: &'a dyn KeyValue,
    pub config: &'a dyn KeyValue,
}

/// What was removed so far, for the answer and the audit line.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Removed {
    pub sessions: u64,
    pub webchat_activities: u64,
    pub egress_records: u64,
    pub secrets: u64,
    pub stream_messages: u64,
    pub configuration_versions: u64,
}

/// How far a tenant's deletion got (`config/{tenant}/offboarding`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Progress {
    /// The write id of the `offboarding` version this deletion belongs to:
    /// progress left by a deletion of an earlier tenant of the same id
    /// (a crash after its head went) is not this one's.
    head: u64,
    /// The minutes whose lease a call took: deleted with the configuration.
    leases: BTreeSet<u64>,
    pub started_at_ms: i64,
    /// The token subject that asked for the deletion.
    pub by: String,
    /// The configuration versions read so far for `scopes` (from 1).
    versions_read: u64,
    /// The configuration versions deleted so far (from the newest).
    versions_deleted: u64,
    /// When the tenant's first version was made: usage days start there.
    first_ms: i64,
    /// Every env, team and channel any version configured.
    envs: BTreeSet<String>,
    channels: BTreeSet<(String, String, String)>,
    /// `{env}/{team}` of the teams whose data is gone, `{env}/` of the envs.
    done: BTreeSet<String>,
    /// The usage day (from `first_ms`) the team in progress goes on with.
    usage_day: u32,
    /// Set once the bridge purged the tenant's messages from the streams
    /// (before the data goes, and again before the configuration goes).
    pub streams_purged: bool,
    pub secrets_done: bool,
    pub data_done: bool,
    pub final_purge_done: bool,
    pub removed: Removed,
}

impl Progress {
    fn new(head: u64, by: &str, now_ms: i64) -> Progress {
        Progress {
            head,
            leases: BTreeSet::new(),
            started_at_ms: now_ms,
            by: by.to_owned(),
            versions_read: 0,
            versions_deleted: 0,
            first_ms: now_ms,
            envs: BTreeSet::new(),
            channels: BTreeSet::new(),
            done: BTreeSet::new(),
            usage_day: 0,
            streams_purged: false,
            secrets_done: false,
            data_done: false,
            final_purge_done: false,
            removed: Removed::default(),
        }
    }

    /// The teams any configuration version named (for the broker, which
    /// also walks its own registry of the teams with secrets).
    pub fn configured_teams(&self) -> BTreeSet<String> {
        self.channels.iter().map(|(_, t, _)| t.clone()).collect()
    }
}

/// The write id of the tenant's head when it is being deleted (status
/// `offboarding`); `None` when there is no head or it is another status.
pub fn offboarding_head(config: &dyn KeyValue, tenant: &TenantId) -> Result<Option<u64>, ApiError> {
    Ok(head_of(config, tenant)?
        .filter(|v| v.status == Status::Offboarding)
        .map(|v| v.write_id))
}

/// The tenant's head as the deletion reads it: its version's bookkeeping,
/// the document unparsed; `None` when there is none it can read.
fn head_of(
    config: &dyn KeyValue,
    tenant: &TenantId,
) -> Result<Option<Version<serde::de::IgnoredAny>>, KvError> {
    Ok(config
        .get(&keys::config_head(tenant))?
        .and_then(|b| serde_json::from_slice(&b).ok()))
}

/// The deletion under way for the tenant whose `offboarding` head has
/// write id `head`, or a new one.
pub fn progress(
    config: &dyn KeyValue,
    tenant: &TenantId,
    head: u64,
    by: &str,
    now_ms: i64,
) -> Result<Progress, ApiError> {
    Ok(config
        .get(&keys::offboarding(tenant))?
        .and_then(|bytes| serde_json::from_slice::<Progress>(&bytes).ok())
        .filter(|p| p.head == head)
        .unwrap_or_else(|| Progress::new(head, by, now_ms)))
}

/// Takes the lease of the current minute for one call of the tenant's
/// deletion: `None` while another call holds it (this minute's, or the
/// last minute's, which a call that died keeps for up to two minutes).
/// Two calls at once would each drain the same index slot and count the
/// index down twice, skipping a slot.
pub fn take_lease(
    config: &dyn KeyValue,
    tenant: &TenantId,
    now_ms: i64,
) -> Result<Option<u64>, ApiError> {
    let minute = u64::try_from(now_ms).unwrap_or(0) / 60_000;
    if read_counter(
        config,
        &keys::offboarding_lease(tenant, minute.saturating_sub(1)),
    )? > 0
    {
        return Ok(None);
    }
    Ok((config.increment(&keys::offboarding_lease(tenant, minute), 1)? == 1).then_some(minute))
}

/// Gives the lease of `minute` back (and any later call's count on it).
pub fn release_lease(
    config: &dyn KeyValue,
    tenant: &TenantId,
    minute: u64,
) -> Result<(), ApiError> {
    Ok(config.delete(&keys::offboarding_lease(tenant, minute))?)
}

impl Progress {
    /// Notes a lease taken, so the configuration's deletion removes it
    /// even if the call that took it dies.
    pub fn leased(&mut self, minute: u64) {
        self.leases.insert(minute);
    }
}

pub fn save(config: &dyn KeyValue, tenant: &TenantId, progress: &Progress) -> Result<(), ApiError> {
    let json = serde_json::to_vec(progress).expect("progress always serialises");
    Ok(config.set(&keys::offboarding(tenant), &json)?)
}

/// What a deletion reads of a configuration version.
#[derive(Deserialize)]
struct Document {
    tenant: DocumentTenant,
}

#[derive(Deserialize)]
struct DocumentTenant {
    environments: Vec<DocumentEnv>,
    #[serde(default)]
    teams: BTreeMap<String, DocumentTeam>,
}

#[derive(Deserialize)]
struct DocumentEnv {
    id: String,
}

#[derive(Deserialize)]
struct DocumentTeam {
    #[serde(default)]
    channels: BTreeMap<String, serde::de::IgnoredAny>,
}

/// Deletes the tenant's data (everything but its secrets and its
/// configuration) while `budget` lasts. Returns whether all of it is gone.
pub fn delete_data(
    stores: &TenantStores<'_>,
    tenant: &TenantId,
    progress: &mut Progress,
    now_ms: i64,
    budget: &mut Budget,
) -> Result<bool, ApiError> {
    if !read_versions(stores.config, tenant, progress, budget)? {
        return Ok(false);
    }
    let sessions_registry = TeamRegistry::new(stores.data.sessions);
    let limits_registry = TeamRegistry::new(stores.limits);
    let mut envs = progress.envs.clone();
    envs.extend(sessions_registry.environments(tenant)?);
    envs.extend(limits_registry.environments(tenant)?);
    for env in &envs {
        if progress.done.contains(&format!("{env}/")) {
            continue;
        }
        let Ok(env_ctx) = TenantCtx::new(tenant.as_str(), env, None) else {
            continue;
        };
        let mut teams: Vec<TenantCtx> = vec![env_ctx.clone()];
        for team in progress.configured_teams() {
            if let Ok(t) = env_ctx.with_team((team != DEFAULT_TEAM).then_some(team.as_str())) {
                teams.push(t);
            }
        }
        teams.extend(sessions_registry.teams(&env_ctx)?);
        teams.extend(limits_registry.teams(&env_ctx)?);
        for team in &teams {
            let name = format!("{env}/{}", team.team_token());
            if progress.done.contains(&name) {
                continue;
            }
            if !delete_team(stores, team, progress, now_ms, budget)? {
                return Ok(false);
            }
            progress.done.insert(name);
            progress.usage_day = 0;
        }
        for kv in [stores.data.sessions, stores.limits] {
            if !SlotIndex::new(kv, keys::team_registry(&env_ctx))
                .drain(budget, |_, _| Ok::<_, KvError>(0))?
            {
                return Ok(false);
            }
            kv.delete(&keys::env_registered(&env_ctx))?;
        }
        progress.done.insert(format!("{env}/"));
    }
    for kv in [stores.data.sessions, stores.limits] {
        if !SlotIndex::new(kv, keys::env_registry(tenant))
            .drain(budget, |_, _| Ok::<_, KvError>(0))?
        {
            return Ok(false);
        }
    }
    Ok(rate::forget_scopes(stores.limits, tenant, budget)?)
}

/// Reads the configuration versions not read yet for the envs, teams and
/// channels they name. Returns whether all were read.
pub fn read_versions(
    config: &dyn KeyValue,
    tenant: &TenantId,
    progress: &mut Progress,
    budget: &mut Budget,
) -> Result<bool, ApiError> {
    let Some(head) = config.get(&keys::config_head(tenant))? else {
        return Ok(true);
    };
    let newest = serde_json::from_slice::<Version<serde::de::IgnoredAny>>(&head)
        .map(|v| v.version)
        .unwrap_or(0);
    while progress.versions_read < newest {
        if budget.spent() {
            return Ok(false);
        }
        // A version is up to a megabyte: it costs more than a key.
        budget.examine();
        budget.spend(9);
        let n = progress.versions_read + 1;
        let bytes = match config.get(&keys::config_version(tenant, n))? {
            Some(bytes) => Some(bytes),
            // The newest version may be only in the head (store/config.rs).
            None if n == newest => Some(head.clone()),
            None => None,
        };
        if let Some(version) =
            bytes.and_then(|b| serde_json::from_slice::<Version<Document>>(&b).ok())
        {
            progress.first_ms = progress.first_ms.min(version.at_ms);
            for env in &version.document.tenant.environments {
                progress.envs.insert(env.id.clone());
                for (team, spec) in &version.document.tenant.teams {
                    for channel in spec.channels.keys() {
                        progress
                            .channels
                            .insert((env.id.clone(), team.clone(), channel.clone()));
                    }
                }
            }
        }
        progress.versions_read = n;
    }
    Ok(true)
}

/// Deletes one team's data in one env. Returns whether it is all gone.
fn delete_team(
    stores: &TenantStores<'_>,
    team: &TenantCtx,
    progress: &mut Progress,
    now_ms: i64,
    budget: &mut Budget,
) -> Result<bool, ApiError> {
    let sessions = SessionStore::new(stores.data.sessions);
    let removed = &mut progress.removed;
    let index = SlotIndex::new(stores.data.sessions, keys::session_index(team));
    let drained = index.drain(budget, |slot, entry| {
        // The person index this slot's session began, if it did: found so
        // even after every session of the person is gone.
        let started = keys::person_started_at(team, slot);
        let mut cost = 1;
        if let Some(person) = stores
            .data
            .sessions
            .get(&started)?
            .and_then(|d| keys::person_index_of_digest(team, std::str::from_utf8(&d).ok()?))
        {
            cost += drop_person_index(stores.data.sessions, person)?;
            stores.data.sessions.delete(&started)?;
        }
        let Some(id) = entry
            .as_deref()
            .and_then(|id| std::str::from_utf8(id).ok())
            .and_then(|id| SessionId::parse(id).ok().flatten())
        else {
            return Ok::<usize, ApiError>(cost);
        };
        let record = match sessions.get(team, &id) {
            Ok(Some(record)) => record,
            Ok(None) => return Ok(cost),
            // A record this version cannot read still goes, by its keys.
            Err(StoreError::Record(_)) => {
                forget_unreadable(&stores.data, team, &id)?;
                removed.sessions += 1;
                return Ok(cost + 2);
            }
            Err(e) => return Err(e.into()),
        };
        let Some(forgotten) = forget_session(&stores.data, team, &id)? else {
            return Ok(cost);
        };
        cost += drop_person_index(
            stores.data.sessions,
            keys::person_index(team, &record.channel, &record.user_id),
        )?;
        removed.sessions += 1;
        removed.webchat_activities += forgotten.webchat_activities;
        removed.egress_records += u64::try_from(forgotten.egress_records).unwrap_or(0);
        Ok(cost + 3 + usize::try_from(forgotten.webchat_activities).unwrap_or(usize::MAX))
    })?;
    if !drained {
        return Ok(false);
    }
    let erased = SlotIndex::new(stores.data.sessions, keys::erased_index(team));
    let drained = erased.drain(budget, |_, entry| {
        if let Some(marker) = entry
            .as_deref()
            .and_then(|e| std::str::from_utf8(e).ok())
            .and_then(|e| keys::erased_marker_from_entry(team, e))
        {
            stores.data.sessions.delete(&marker)?;
        }
        Ok::<usize, KvError>(1)
    })?;
    if !drained {
        return Ok(false);
    }
    if !delete_usage(stores, team, progress, now_ms, budget)? {
        return Ok(false);
    }
    // Any channel id any version configured, in this team: a channel may
    // have moved between teams or envs from one version to the next.
    let channels: BTreeSet<&String> = progress.channels.iter().map(|(_, _, c)| c).collect();
    for channel in channels {
        if let Ok(channel) = ChannelId::parse(channel) {
            stores
                .data
                .egress
                .delete(&keys::teams_access_token(team, &channel))?;
        }
    }
    stores.data.sessions.delete(&keys::sweep_cursor(team))?;
    for kv in [stores.data.sessions, stores.limits] {
        kv.delete(&keys::team_registered(team))?;
    }
    budget.spend(4);
    Ok(true)
}

/// Removes a person's index whole, every slot and then its counter, and
/// answers what that cost. Whichever of the person's sessions the deletion
/// meets first (or the slot where their index began) removes all of it: a
/// counter removed before every slot would leave the slots of sessions that
/// cannot unregister themselves (records it cannot read) beyond reach.
fn drop_person_index(kv: &dyn KeyValue, person: keys::IndexKeys) -> Result<usize, KvError> {
    let person = SlotIndex::new(kv, person);
    let slots = person.newest_stored()?;
    for slot in 1..=slots {
        person.remove(slot)?;
    }
    person.forget()?;
    Ok(usize::try_from(slots).unwrap_or(usize::MAX))
}

/// Deletes the keys of a session whose record this version cannot read
/// (its web chat log, if any, is beyond reach without it).
fn forget_unreadable(
    stores: &Stores<'_>,
    team: &TenantCtx,
    id: &SessionId,
) -> Result<(), StoreError> {
    SessionStore::new(stores.sessions).forget_keys(team, id)?;
    forget_send_progress(stores.egress, team, id)?;
    Ok(())
}

/// Deletes the team's usage counters of every day from the tenant's first
/// version (less a day, for clocks that differ) to today, in both stores
/// that keep them.
fn delete_usage(
    stores: &TenantStores<'_>,
    team: &TenantCtx,
    progress: &mut Progress,
    now_ms: i64,
    budget: &mut Budget,
) -> Result<bool, ApiError> {
    let first = progress.first_ms - DAY_MS;
    let days = u32::try_from((now_ms - first).max(0) / DAY_MS + 1).unwrap_or(u32::MAX);
    while progress.usage_day < days {
        if budget.spent() {
            return Ok(false);
        }
        budget.examine();
        budget.spend(1);
        let day = Day::of(first + i64::from(progress.usage_day) * DAY_MS);
        stores.data.sessions.delete_many(&[
            keys::usage(team, &day, Counter::Traffic),
            keys::usage(team, &day, Counter::Errors),
            keys::usage(team, &day, Counter::Delayed),
        ])?;
        stores.limits.delete_many(&[
            keys::usage(team, &day, Counter::ApiRefused),
            keys::usage(team, &day, Counter::WebchatRefused),
        ])?;
        progress.usage_day += 1;
    }
    Ok(true)
}

/// Deletes the tenant's configuration, the head last, while `budget`
/// lasts. Returns whether the tenant is gone.
pub fn delete_configuration(
    config: &dyn KeyValue,
    tenant: &TenantId,
    progress: &mut Progress,
    budget: &mut Budget,
) -> Result<bool, ApiError> {
    let (newest, slot) = head_of(config, tenant)?
        .map(|v| (v.version, v.slot))
        .unwrap_or((0, 0));
    // Versions go newest first (the head, deleted last, holds the newest).
    while progress.versions_deleted < newest {
        if budget.spent() {
            return Ok(false);
        }
        budget.examine();
        let n = newest - progress.versions_deleted;
        config.delete(&keys::config_version(tenant, n))?;
        progress.removed.configuration_versions += 1;
        progress.versions_deleted += 1;
    }
    if slot > 0
        && config
            .get(&keys::tenant_index().slot(slot))?
            .is_some_and(|entry| entry == tenant.as_str().as_bytes())
    {
        config.delete(&keys::tenant_index().slot(slot))?;
    }
    let leases: Vec<String> = progress
        .leases
        .iter()
        .flat_map(|m| [*m, m + 1])
        .map(|m| keys::offboarding_lease(tenant, m))
        .collect();
    config.delete_many(&leases)?;
    config.delete_many(&[keys::config_claim(tenant), keys::offboarding(tenant)])?;
    config.delete(&keys::config_head(tenant))?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = crate::testing::NOW_SECS as i64 * 1000;

    use crate::testing::TenantWorld as World;

    impl World {
        fn use_tenant(&self, tenant: &str) {
            crate::testing::use_tenant(&self.stores(), tenant, NOW);
        }

        fn keys_of(&self, tenant: &str) -> Vec<(String, Vec<u8>)> {
            self.keys_naming(tenant)
        }

        /// Deletes `tenant` in calls of `units`, as the tenant API does
        /// (streams and secrets aside). Returns how many calls it took.
        fn delete(&self, tenant: &str, units: usize, now_ms: i64) -> usize {
            crate::testing::begin_offboarding(&self.config, tenant);
            let tenant = TenantId::parse(tenant).unwrap();
            let head = offboarding_head(&self.config, &tenant).unwrap().unwrap();
            for call in 1..=10_000 {
                let mut progress = progress(&self.config, &tenant, head, "ops", now_ms).unwrap();
                let mut budget = Budget::new(units);
                let gone = delete_data(&self.stores(), &tenant, &mut progress, now_ms, &mut budget)
                    .unwrap()
                    && delete_configuration(&self.config, &tenant, &mut progress, &mut budget)
                        .unwrap();
                if gone {
                    return call;
                }
                save(&self.config, &tenant, &progress).unwrap();
                // The retention sweep runs meanwhile: it leaves a tenant
                // being deleted alone (its reads would bring counters back).
                crate::store::lifecycle::sweep(&self.data(), &self.config, now_ms, 50).unwrap();
            }
            panic!("the deletion of {tenant} did not end");
        }
    }

    #[test]
    fn deleting_a_tenant_leaves_no_key_of_it_and_changes_nothing_of_another() {
        let world = World::new();
        world.use_tenant("acme");
        world.use_tenant("bigcorp");
        assert!(world.keys_of("acme").len() > 300, "the fixture uses acme");
        let bigcorp = world.keys_of("bigcorp");

        // Tiny budgets: every step is cut off and resumed many times over.
        let calls = world.delete("acme", 7, NOW + DAY_MS);
        assert!(calls > 20, "{calls} calls");
        let left: Vec<String> = world.keys_of("acme").into_iter().map(|(k, _)| k).collect();
        assert!(left.is_empty(), "left behind: {left:#?}");
        assert_eq!(world.keys_of("bigcorp"), bigcorp);
        // The tenant index slot went with it; bigcorp's is there.
        let (page, _) = crate::store::config::ConfigStore::new(&world.config)
            .tenants(None, 10)
            .unwrap();
        let listed: Vec<&str> = page.iter().map(|v| v.tenant.as_str()).collect();
        assert_eq!(listed, ["bigcorp"]);
    }

    #[test]
    fn a_persons_index_goes_whole_whichever_of_their_sessions_is_met_first() {
        // U-HALF began in sales (where their index's start is noted), came
        // back there in another conversation, and has a session in support
        // whose record cannot be read: only the index's counter still
        // reaches that slot, whichever session the deletion meets first.
        let world = World::new();
        world.use_tenant("acme");
        let stores = world.stores();
        let sessions = SessionStore::new(stores.data.sessions);
        for env in ["prod", "staging"] {
            let sales = TenantCtx::new("acme", env, Some("sales")).unwrap();
            let support = TenantCtx::new("acme", env, Some("support")).unwrap();
            for conversation in ["C1", "C2"] {
                let mut new = crate::testing::new_session("slack", "U-HALF");
                new.conversation.id = conversation.into();
                sessions.create(&sales, new, NOW).unwrap();
            }
            let odd = sessions
                .create(
                    &support,
                    crate::testing::new_session("slack", "U-HALF"),
                    NOW,
                )
                .unwrap()
                .id;
            stores
                .data
                .sessions
                .set(&keys::session_record(&support, &odd), b"not a record")
                .unwrap();
        }
        world.delete("acme", 1_000, NOW + DAY_MS);
        let left: Vec<String> = world.keys_of("acme").into_iter().map(|(k, _)| k).collect();
        assert!(left.is_empty(), "left behind: {left:#?}");
    }

    #[test]
    fn a_deletion_cut_off_anywhere_is_finished_by_running_it_again() {
        // Every budget from 1 to 40 stops the calls at different places.
        for units in 1..=40 {
            let world = World::new();
            world.use_tenant("acme");
            world.delete("acme", units, NOW + DAY_MS);
            let left: Vec<String> = world.keys_of("acme").into_iter().map(|(k, _)| k).collect();
            assert!(left.is_empty(), "budget {units} left: {left:#?}");
        }
    }

    #[test]
    fn a_call_spends_at_most_about_its_budget() {
        let world = World::new();
        world.use_tenant("acme");
        let tenant = TenantId::parse("acme").unwrap();
        let mut progress = progress(&world.config, &tenant, 0, "ops", NOW).unwrap();
        let ops: u64 = world.all().iter().map(|(_, kv)| kv.ops()).sum();
        let mut budget = Budget::new(50);
        assert!(!delete_data(&world.stores(), &tenant, &mut progress, NOW, &mut budget).unwrap());
        let spent: u64 = world.all().iter().map(|(_, kv)| kv.ops()).sum::<u64>() - ops;
        // A unit is about a key read or deleted; a session forgotten costs
        // a dozen operations for its three units, a version read one for ten.
        assert!(spent < 50 * 6, "{spent} operations for 50 units");
    }
}
