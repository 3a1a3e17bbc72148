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
//!
//! Pure bookkeeping (no NATS, no clock), so the rules are tested here directly.

use std::collections::{HashMap, VecDeque};

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
    /// Most started messages of one group at once.
    group_cap: usize,
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
            queued: 0,
        }
    }

    /// Messages waiting to start (not those started or waiting for a retry).
    pub fn queued(&self) -> usize {
        self.queued
    }

    /// Queues a message behind every earlier message of its lane.
    pub fn push(&mut self, group: &str, key: &str, item: T) {
        let lane = self.lane(group, key);
        lane.queue.push_back(item);
        let first_to_go = !lane.busy && lane.queue.len() == 1;
        self.queued += 1;
        if first_to_go {
            self.make_ready(key);
        }
    }

    /// The next message to start: of the tenant with the fewest in flight,
    /// the first in turn among equals, unless every tenant with a message
    /// ready has its cap in flight. Its lane is busy until
    /// [`Lanes::finish`], or [`Lanes::pause`] then [`Lanes::resume`].
    pub fn start_next(&mut self) -> Option<(LaneKey, T)> {
        let in_flight = |g: &Group| self.in_flight.get(g).copied().unwrap_or(0);
        let (turn, _) = self
            .turns
            .iter()
            .enumerate()
            .filter(|(_, g)| in_flight(g) < self.group_cap)
            .min_by_key(|(i, g)| (in_flight(g), *i))?;
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

    /// Every queued message, lanes emptied (on shutdown).
    pub fn drain(&mut self) -> Vec<T> {
        self.ready.clear();
        self.turns.clear();
        self.in_flight.clear();
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
        std::iter::from_fn(|| lanes.start_next()).collect()
    }

    #[test]
    fn a_session_runs_one_message_at_a_time_in_order() {
        let mut lanes = Lanes::new(usize::MAX);
        for n in 1..=3 {
            lanes.push("acme", "s1", n);
        }
        assert_eq!(start_all(&mut lanes), [("s1".to_string(), 1)]);
        lanes.finish("s1");
        assert_eq!(start_all(&mut lanes), [("s1".to_string(), 2)]);
        lanes.finish("s1");
        assert_eq!(start_all(&mut lanes), [("s1".to_string(), 3)]);
        lanes.finish("s1");
        assert!(lanes.start_next().is_none());
        assert!(lanes.lanes.is_empty(), "finished lanes are forgotten");
    }

    #[test]
    fn different_sessions_start_together() {
        let mut lanes = Lanes::new(usize::MAX);
        lanes.push("acme", "s1", 1);
        lanes.push("acme", "s2", 2);
        lanes.push("acme", "s1", 3);
        let started: Vec<u32> = start_all(&mut lanes).into_iter().map(|(_, n)| n).collect();
        assert_eq!(started, [1, 2]);
        assert_eq!(lanes.queued(), 1);
    }

    #[test]
    fn a_message_waiting_for_its_retry_holds_its_session_and_goes_first() {
        let mut lanes = Lanes::new(usize::MAX);
        lanes.push("acme", "s1", 1);
        let (key, first) = lanes.start_next().unwrap();
        lanes.push("acme", "s1", 2);
        // Attempt failed: the message waits outside the lanes for its backoff.
        assert!(
            lanes.start_next().is_none(),
            "message 2 must not overtake 1"
        );
        lanes.resume(&key, "acme", first);
        assert_eq!(lanes.start_next(), Some(("s1".to_string(), 1)));
        assert!(lanes.start_next().is_none());
        lanes.finish("s1");
        assert_eq!(lanes.start_next(), Some(("s1".to_string(), 2)));
    }

    #[test]
    fn tenants_take_turns_whatever_their_backlog() {
        let mut lanes = Lanes::new(usize::MAX);
        for n in 0..100 {
            lanes.push("flood", &format!("f{n}"), n);
        }
        lanes.push("quiet", "q", 1000);
        let first_two: Vec<u32> = (0..2).map(|_| lanes.start_next().unwrap().1).collect();
        assert_eq!(
            first_two,
            [0, 1000],
            "the quiet tenant's message is second, not 101st"
        );
    }

    #[test]
    fn a_tenant_at_its_cap_waits_while_slots_stay_free_for_others() {
        let mut lanes = Lanes::new(2);
        for n in 0..5 {
            lanes.push("flood", &format!("f{n}"), n);
        }
        let started: Vec<u32> = std::iter::from_fn(|| lanes.start_next())
            .map(|(_, n)| n)
            .collect();
        assert_eq!(started, [0, 1], "the flood stops at its cap");
        lanes.push("quiet", "q", 1000);
        assert_eq!(lanes.start_next().map(|(_, n)| n), Some(1000));
        lanes.finish("f0");
        assert_eq!(lanes.start_next().map(|(_, n)| n), Some(2));
    }

    #[test]
    fn drain_returns_every_queued_message() {
        let mut lanes = Lanes::new(usize::MAX);
        lanes.push("a", "s1", 1);
        lanes.push("a", "s1", 2);
        lanes.push("b", "s2", 3);
        let _started = lanes.start_next().unwrap();
        let mut left = lanes.drain();
        left.sort();
        assert_eq!(left.len(), 2);
        assert_eq!(lanes.queued(), 0);
        assert!(lanes.start_next().is_none());
    }
}
