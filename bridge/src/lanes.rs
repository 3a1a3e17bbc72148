//! Which fetched message a delivery starts next.
//!
//! Two rules, both about messages the bridge has already pulled:
//! - **One session at a time, in stream order.** A person who answers "Dana"
//!   then "12345" must not have the answers applied the other way round, so a
//!   session's next message starts only when its previous one is finished
//!   (acked or dead-lettered), including while that one waits to be retried.
//!   Different sessions still run in parallel.
//! - **Tenants take turns.** Sessions ready to go are queued per tenant, and
//!   the next start goes to the tenant with the fewest messages in flight
//!   (ties in turn order): a tenant with a thousand messages fetched gets no
//!   more than one with one, so a burst of one tenant does not sit in front of
//!   another's message, and a quiet tenant's message takes the first free slot.
//! - **A group out of its rate is closed.** The caller may refuse a group's
//!   next message (its tenant has no token: [`crate::rate`]); the group is
//!   then passed over until the time the caller named, and the others take
//!   the slots. Its messages stay where they are, so its sessions keep their
//!   order.
//!
//! Pure bookkeeping (no NATS, no clock), so the rules are tested here directly.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

/// How long a tenant counts as active after its last message was pulled:
/// while another tenant is active, a tenant is held to its cap. Longer than
/// the gaps between a conversation's messages, so a quiet tenant writing
/// every few seconds does not meet the flood at full width each time.
pub const ACTIVE_FOR: Duration = Duration::from_secs(5);

/// The scope that takes turns (a tenant: `env.tenant`).
pub type Group = String;
/// A session within its group; messages without a session get a key of
/// their own, so they are ordered against nothing.
pub type LaneKey = String;

pub struct Lanes<T> {
    lanes: HashMap<LaneKey, Lane<T>>,
    /// Per group, the lanes whose head may start now, oldest first.
    ready: HashMap<Group, VecDeque<LaneKey>>,
    /// Groups with a ready lane, in turn order.
    turns: VecDeque<Group>,
    /// Started messages per group (not those waiting for a retry).
    in_flight: HashMap<Group, usize>,
    /// Most started messages of one group at once while another group is
    /// active; a group alone uses every slot.
    group_cap: usize,
    /// When each group last had a message pulled (pruned after [`ACTIVE_FOR`]).
    active: HashMap<Group, Instant>,
    /// Groups whose next start was refused, until when (see [`Lanes::start_next_with`]).
    closed: HashMap<Group, Instant>,
    queued: usize,
}

struct Lane<T> {
    group: Group,
    queue: VecDeque<T>,
    /// One of its messages is started or waiting to be retried.
    busy: bool,
}

impl<T> Lanes<T> {
    /// Lanes whose groups may each have at most `group_cap` messages started.
    pub fn new(group_cap: usize) -> Self {
        Lanes {
            lanes: HashMap::new(),
            ready: HashMap::new(),
            turns: VecDeque::new(),
            in_flight: HashMap::new(),
            group_cap: group_cap.max(1),
            active: HashMap::new(),
            closed: HashMap::new(),
            queued: 0,
        }
    }

    /// Messages waiting to start (not those started or waiting for a retry).
    pub fn queued(&self) -> usize {
        self.queued
    }

    /// Tenants with a message pulled within [`ACTIVE_FOR`] of `now`.
    pub fn active(&self, now: Instant) -> usize {
        self.active
            .values()
            .filter(|at| now.duration_since(**at) < ACTIVE_FOR)
            .count()
    }

    /// Queues a message, pulled at `now`, behind every earlier message of its lane.
    pub fn push(&mut self, group: &str, key: &str, item: T, now: Instant) {
        if self.active.len() > 64 {
            self.active
                .retain(|_, at| now.duration_since(*at) < ACTIVE_FOR);
        }
        self.active.insert(group.to_string(), now);
        let lane = self.lane(group, key);
        lane.queue.push_back(item);
        let first_to_go = !lane.busy && lane.queue.len() == 1;
        self.queued += 1;
        if first_to_go {
            self.make_ready(key);
        }
    }

    /// The next message to start at `now`: of the tenant with the fewest in
    /// flight, the first in turn among equals, leaving out tenants at their
    /// cap while another tenant is active. Its lane is busy until
    /// [`Lanes::finish`], or [`Lanes::pause`] then [`Lanes::resume`].
    pub fn start_next(&mut self, now: Instant) -> Option<(LaneKey, T)> {
        self.start_next_with(now, |_, _| Ok(()))
    }

    /// Like [`Lanes::start_next`], but the chosen message starts only if
    /// `admit(group, message)` says so; if it answers `Err(until)`, its group
    /// is closed until then (passed over, its messages left in place) and the
    /// next group is tried. `admit` is asked only about the message that
    /// would start, so it may take what starting costs (a token).
    pub fn start_next_with(
        &mut self,
        now: Instant,
        mut admit: impl FnMut(&Group, &T) -> Result<(), Instant>,
    ) -> Option<(LaneKey, T)> {
        self.closed.retain(|_, until| *until > now);
        let turn = loop {
            let in_flight = |g: &Group| self.in_flight.get(g).copied().unwrap_or(0);
            let others_active = |g: &Group| {
                self.active
                    .iter()
                    .any(|(other, at)| other != g && now.duration_since(*at) < ACTIVE_FOR)
            };
            let (turn, group) = self
                .turns
                .iter()
                .enumerate()
                .filter(|(_, g)| !self.closed.contains_key(*g))
                .filter(|(_, g)| in_flight(g) < self.group_cap || !others_active(g))
                .min_by_key(|(i, g)| (in_flight(g), *i))?;
            let key = self.ready[group]
                .front()
                .expect("a group in turn has ready lanes");
            let head = self.lanes[key]
                .queue
                .front()
                .expect("a ready lane has a message");
            match admit(group, head) {
                Ok(()) => break turn,
                Err(until) => {
                    self.closed.insert(group.clone(), until);
                }
            }
        };
        let group = self.turns.remove(turn).expect("an index of turns");
        let ready = self
            .ready
            .get_mut(&group)
            .expect("a group in turn has ready lanes");
        let key = ready.pop_front().expect("a group in turn has ready lanes");
        if ready.is_empty() {
            self.ready.remove(&group);
        } else {
            self.turns.push_back(group);
        }
        let lane = self.lanes.get_mut(&key).expect("a ready lane exists");
        let item = lane.queue.pop_front().expect("a ready lane has a message");
        lane.busy = true;
        *self.in_flight.entry(lane.group.clone()).or_default() += 1;
        self.queued -= 1;
        Some((key, item))
    }

    /// The lane's started message waits for a retry: it no longer counts as
    /// in flight, and its lane stays busy until [`Lanes::resume`].
    pub fn pause(&mut self, key: &str) {
        if let Some(lane) = self.lanes.get(key) {
            self.not_in_flight(&lane.group.clone());
        }
    }

    /// The lane's started message is done with (acked or dead-lettered): its
    /// next message may start.
    pub fn finish(&mut self, key: &str) {
        let Some(lane) = self.lanes.get_mut(key) else {
            return;
        };
        lane.busy = false;
        let group = lane.group.clone();
        let empty = lane.queue.is_empty();
        self.not_in_flight(&group);
        if empty {
            self.lanes.remove(key);
        } else {
            self.make_ready(key);
        }
    }

    /// A message that waited for its retry goes first in its lane again.
    pub fn resume(&mut self, key: &str, group: &str, item: T) {
        let lane = self.lane(group, key);
        lane.queue.push_front(item);
        lane.busy = false;
        self.queued += 1;
        self.make_ready(key);
    }

    /// Whether `group` is closed at `now` (its last start was refused).
    pub fn is_closed(&self, group: &str, now: Instant) -> bool {
        self.closed.get(group).is_some_and(|until| *until > now)
    }

    /// Opens a closed group now (what it waited for has changed).
    pub fn open(&mut self, group: &str) {
        self.closed.remove(group);
    }

    /// The earliest time after `now` a closed group opens again, if any
    /// (forgetting the groups already open).
    pub fn reopens_at(&mut self, now: Instant) -> Option<Instant> {
        self.closed.retain(|_, until| *until > now);
        self.closed.values().min().copied()
    }

    /// The queued messages of one group. Walks every lane: meant for the
    /// moment a group is closed, not for every start.
    pub fn group_mut<'a>(&'a mut self, group: &'a str) -> impl Iterator<Item = &'a mut T> {
        self.lanes
            .values_mut()
            .filter(move |lane| lane.group == group)
            .flat_map(|lane| lane.queue.iter_mut())
    }

    /// Every queued message, lanes emptied (on shutdown).
    pub fn drain(&mut self) -> Vec<T> {
        self.ready.clear();
        self.turns.clear();
        self.in_flight.clear();
        self.active.clear();
        self.closed.clear();
        self.queued = 0;
        self.lanes
            .drain()
            .flat_map(|(_, lane)| lane.queue)
            .collect()
    }

    /// Every queued message (to keep JetStream from redelivering one that
    /// waits longer than its `ack_wait`).
    pub fn iter_mut(&mut self) -> impl Iterator<Item = &mut T> {
        self.lanes
            .values_mut()
            .flat_map(|lane| lane.queue.iter_mut())
    }

    fn lane(&mut self, group: &str, key: &str) -> &mut Lane<T> {
        self.lanes.entry(key.to_string()).or_insert_with(|| Lane {
            group: group.to_string(),
            queue: VecDeque::new(),
            busy: false,
        })
    }

    fn not_in_flight(&mut self, group: &str) {
        if let Some(n) = self.in_flight.get_mut(group) {
            *n -= 1;
            if *n == 0 {
                self.in_flight.remove(group);
            }
        }
    }

    fn make_ready(&mut self, key: &str) {
        let group = &self.lanes[key].group;
        match self.ready.get_mut(group) {
            Some(ready) => ready.push_back(key.to_string()),
            None => {
                self.ready
                    .insert(group.clone(), VecDeque::from([key.to_string()]));
                self.turns.push_back(group.clone());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn start_all(lanes: &mut Lanes<u32>) -> Vec<(LaneKey, u32)> {
        std::iter::from_fn(|| lanes.start_next(Instant::now())).collect()
    }

    #[test]
    fn a_session_runs_one_message_at_a_time_in_order() {
        let mut lanes = Lanes::new(usize::MAX);
        for n in 1..=3 {
            lanes.push("acme", "s1", n, Instant::now());
        }
        assert_eq!(start_all(&mut lanes), [("s1".to_string(), 1)]);
        lanes.finish("s1");
        assert_eq!(start_all(&mut lanes), [("s1".to_string(), 2)]);
        lanes.finish("s1");
        assert_eq!(start_all(&mut lanes), [("s1".to_string(), 3)]);
        lanes.finish("s1");
        assert!(lanes.start_next(Instant::now()).is_none());
        assert!(lanes.lanes.is_empty(), "finished lanes are forgotten");
    }

    #[test]
    fn different_sessions_start_together() {
        let mut lanes = Lanes::new(usize::MAX);
        lanes.push("acme", "s1", 1, Instant::now());
        lanes.push("acme", "s2", 2, Instant::now());
        lanes.push("acme", "s1", 3, Instant::now());
        let started: Vec<u32> = start_all(&mut lanes).into_iter().map(|(_, n)| n).collect();
        assert_eq!(started, [1, 2]);
        assert_eq!(lanes.queued(), 1);
    }

    #[test]
    fn a_message_waiting_for_its_retry_holds_its_session_and_goes_first() {
        let mut lanes = Lanes::new(usize::MAX);
        lanes.push("acme", "s1", 1, Instant::now());
        let (key, first) = lanes.start_next(Instant::now()).unwrap();
        lanes.push("acme", "s1", 2, Instant::now());
        // Attempt failed: the message waits outside the lanes for its backoff.
        assert!(
            lanes.start_next(Instant::now()).is_none(),
            "message 2 must not overtake 1"
        );
        lanes.resume(&key, "acme", first);
        assert_eq!(
            lanes.start_next(Instant::now()),
            Some(("s1".to_string(), 1))
        );
        assert!(lanes.start_next(Instant::now()).is_none());
        lanes.finish("s1");
        assert_eq!(
            lanes.start_next(Instant::now()),
            Some(("s1".to_string(), 2))
        );
    }

    #[test]
    fn tenants_take_turns_whatever_their_backlog() {
        let mut lanes = Lanes::new(usize::MAX);
        for n in 0..100 {
            lanes.push("flood", &format!("f{n}"), n, Instant::now());
        }
        lanes.push("quiet", "q", 1000, Instant::now());
        let first_two: Vec<u32> = (0..2)
            .map(|_| lanes.start_next(Instant::now()).unwrap().1)
            .collect();
        assert_eq!(
            first_two,
            [0, 1000],
            "the quiet tenant's message is second, not 101st"
        );
    }

    #[test]
    fn the_tenant_with_fewest_in_flight_goes_first() {
        let mut lanes = Lanes::new(usize::MAX);
        for n in 0..4 {
            lanes.push("flood", &format!("f{n}"), n, Instant::now());
        }
        // Two of the flood start (all slots), then a quiet message arrives.
        let (f0, _) = lanes.start_next(Instant::now()).unwrap();
        let _f1 = lanes.start_next(Instant::now()).unwrap();
        lanes.push("quiet", "q", 1000, Instant::now());
        lanes.finish(&f0);
        // The flood was first in turn, but has one in flight to the quiet's none.
        assert_eq!(lanes.start_next(Instant::now()).map(|(_, n)| n), Some(1000));
        assert_eq!(lanes.start_next(Instant::now()).map(|(_, n)| n), Some(2));
    }

    #[test]
    fn a_tenant_alone_uses_every_slot_and_its_cap_only_beside_another() {
        let t0 = Instant::now();
        let mut lanes = Lanes::new(2);
        for n in 0..6 {
            lanes.push("flood", &format!("f{n}"), n, t0);
        }
        let started: Vec<u32> = (0..5).map(|_| lanes.start_next(t0).unwrap().1).collect();
        assert_eq!(started, [0, 1, 2, 3, 4], "alone, the flood is not capped");
        lanes.push("quiet", "q", 1000, t0);
        assert_eq!(lanes.start_next(t0).map(|(_, n)| n), Some(1000));
        lanes.finish("q");
        lanes.finish("f0");
        // The quiet tenant is still active: the flood (4 in flight) stays
        // at its cap of 2 until it has been quiet for ACTIVE_FOR.
        assert!(lanes.start_next(t0 + ACTIVE_FOR / 2).is_none());
        assert_eq!(lanes.start_next(t0 + ACTIVE_FOR).map(|(_, n)| n), Some(5));
    }

    #[test]
    fn a_refused_group_is_passed_over_until_it_opens_and_keeps_its_order() {
        let t0 = Instant::now();
        let reopen = t0 + Duration::from_secs(1);
        let mut lanes = Lanes::new(usize::MAX);
        lanes.push("limited", "s1", 1, t0);
        lanes.push("limited", "s1", 2, t0);
        lanes.push("limited", "s2", 3, t0);
        lanes.push("free", "f", 100, t0);
        let mut asked = Vec::new();
        let mut refuse_limited = |group: &Group, n: &u32| {
            asked.push(*n);
            if group == "limited" {
                Err(reopen)
            } else {
                Ok(())
            }
        };
        // The limited group goes first in turn, is refused, and the free one
        // takes the slot; the limited group is asked once, about its head.
        assert_eq!(
            lanes
                .start_next_with(t0, &mut refuse_limited)
                .map(|(_, n)| n),
            Some(100)
        );
        assert!(lanes.start_next_with(t0, &mut refuse_limited).is_none());
        assert_eq!(asked, [1, 100]);
        assert!(lanes.is_closed("limited", t0));
        assert_eq!(lanes.reopens_at(t0), Some(reopen));
        assert_eq!(lanes.queued(), 3, "nothing of the refused group is lost");
        let mut held: Vec<u32> = lanes.group_mut("limited").map(|n| *n).collect();
        held.sort();
        assert_eq!(held, [1, 2, 3]);
        // Open again: the session's messages start in their order.
        assert!(!lanes.is_closed("limited", reopen));
        let admit_all = |_: &Group, _: &u32| Ok(());
        let started: Vec<u32> = std::iter::from_fn(|| lanes.start_next_with(reopen, admit_all))
            .map(|(_, n)| n)
            .collect();
        assert_eq!(started, [1, 3]);
        lanes.finish("s1");
        assert_eq!(lanes.start_next(reopen).map(|(_, n)| n), Some(2));
        assert_eq!(lanes.reopens_at(reopen), None);
    }

    #[test]
    fn a_closed_group_can_be_opened_early() {
        let t0 = Instant::now();
        let mut lanes = Lanes::new(usize::MAX);
        lanes.push("limited", "s1", 1, t0);
        let refuse = |_: &Group, _: &u32| Err(t0 + Duration::from_secs(60));
        assert!(lanes.start_next_with(t0, refuse).is_none());
        lanes.open("limited");
        assert!(!lanes.is_closed("limited", t0));
        assert_eq!(lanes.start_next(t0).map(|(_, n)| n), Some(1));
    }

    #[test]
    fn drain_returns_every_queued_message() {
        let mut lanes = Lanes::new(usize::MAX);
        lanes.push("a", "s1", 1, Instant::now());
        lanes.push("a", "s1", 2, Instant::now());
        lanes.push("b", "s2", 3, Instant::now());
        let _started = lanes.start_next(Instant::now()).unwrap();
        let mut left = lanes.drain();
        left.sort();
        assert_eq!(left.len(), 2);
        assert_eq!(lanes.queued(), 0);
        assert!(lanes.start_next(Instant::now()).is_none());
    }
}
