//! One consumer group's state machine, without I/O: Empty → PreparingRebalance →
//! CompletingRebalance → Stable (→ Dead when deleted). Methods change the state and hand
//! back the answers for waiting JoinGroup/SyncGroup requests through their oneshot senders.
//!
//! Invariants: `generation` grows by one per completed join phase; `leader` is a member
//! while there are members; in CompletingRebalance and Stable every member joined the
//! current generation; a static member (`group.instance.id`) maps to exactly one member id,
//! and a newer join with the same instance id fences the older member id.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

use bytes::Bytes;
use kafka_protocol::ResponseError;
use tokio::sync::oneshot;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupState {
    Empty,
    PreparingRebalance,
    CompletingRebalance,
    Stable,
    Dead,
}

impl GroupState {
    /// The name Kafka uses in ListGroups/DescribeGroups.
    pub fn name(self) -> &'static str {
        match self {
            GroupState::Empty => "Empty",
            GroupState::PreparingRebalance => "PreparingRebalance",
            GroupState::CompletingRebalance => "CompletingRebalance",
            GroupState::Stable => "Stable",
            GroupState::Dead => "Dead",
        }
    }
}

/// What a JoinGroup request is answered with.
#[derive(Debug, Clone)]
pub struct JoinOutcome {
    pub error: Option<ResponseError>,
    pub generation: i32,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub leader: String,
    pub member_id: String,
    /// Only for the leader: every member with its metadata for the chosen protocol.
    pub members: Vec<(String, Option<String>, Bytes)>,
}

impl JoinOutcome {
    pub fn error(error: ResponseError, member_id: &str) -> Self {
        JoinOutcome {
            error: Some(error),
            generation: -1,
            protocol_type: None,
            protocol_name: None,
            leader: String::new(),
            member_id: member_id.to_owned(),
            members: Vec::new(),
        }
    }
}

/// What a SyncGroup request is answered with.
pub type SyncOutcome = Result<Bytes, ResponseError>;

#[derive(Debug)]
pub struct Member {
    pub id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout: Duration,
    pub rebalance_timeout: Duration,
    /// (protocol name, metadata) in the member's order of preference.
    pub protocols: Vec<(String, Bytes)>,
    pub assignment: Bytes,
    pub last_heartbeat: Instant,
    join_waiter: Option<oneshot::Sender<JoinOutcome>>,
    sync_waiter: Option<oneshot::Sender<SyncOutcome>>,
}

/// A JoinGroup request, as the state machine needs it.
#[derive(Debug)]
pub struct JoinRequest {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout: Duration,
    pub rebalance_timeout: Duration,
    pub protocol_type: String,
    pub protocols: Vec<(String, Bytes)>,
    /// JoinGroup v4+: unknown members first get an id and MEMBER_ID_REQUIRED.
    pub require_known_member_id: bool,
}

#[derive(Debug)]
pub struct Group {
    pub id: String,
    pub state: GroupState,
    pub generation: i32,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub leader: Option<String>,
    pub members: BTreeMap<String, Member>,
    /// instance id → member id.
    pub static_members: HashMap<String, String>,
    /// Member ids handed out with MEMBER_ID_REQUIRED, and until when they may join.
    pending: HashMap<String, Instant>,
    /// When the current join or sync phase gives up on members that have not answered.
    deadline: Option<Instant>,
    /// A first rebalance of an empty group waits until then for more members.
    initial_delay_until: Option<Instant>,
}

impl Group {
    pub fn new(id: String) -> Self {
        Group {
            id,
            state: GroupState::Empty,
            generation: 0,
            protocol_type: None,
            protocol_name: None,
            leader: None,
            members: BTreeMap::new(),
            static_members: HashMap::new(),
            pending: HashMap::new(),
            deadline: None,
            initial_delay_until: None,
        }
    }

    fn new_member_id(&self, client_id: &str, instance_id: Option<&str>) -> String {
        let base = instance_id.unwrap_or(client_id);
        format!("{base}-{}", uuid::Uuid::new_v4().simple())
    }

    /// Handles a JoinGroup; the answer arrives on `reply` (at once for errors and
    /// MEMBER_ID_REQUIRED, when the join phase completes otherwise).
    pub fn join(
        &mut self,
        req: JoinRequest,
        now: Instant,
        initial_delay: Duration,
        reply: oneshot::Sender<JoinOutcome>,
    ) {
        let fail = |reply: oneshot::Sender<JoinOutcome>, e, id: &str| {
            let _ = reply.send(JoinOutcome::error(e, id));
        };
        if self.state == GroupState::Dead {
            return fail(
                reply,
                ResponseError::CoordinatorNotAvailable,
                &req.member_id,
            );
        }
        if let Some(t) = &self.protocol_type
            && !self.members.is_empty()
            && (*t != req.protocol_type || !self.supports_any(&req.protocols))
        {
            return fail(
                reply,
                ResponseError::InconsistentGroupProtocol,
                &req.member_id,
            );
        }
        if req.protocols.is_empty() {
            return fail(
                reply,
                ResponseError::InconsistentGroupProtocol,
                &req.member_id,
            );
        }
        let member_id = if req.member_id.is_empty() {
            match &req.instance_id {
                Some(instance) => {
                    let id = self.new_member_id(&req.client_id, Some(instance));
                    if let Some(old) = self.static_members.get(instance).cloned()
                        && self.replace_static(&old, &id, &req)
                    {
                        // Same subscription on a stable group: no rebalance (KIP-345).
                        return self.answer_static_rejoin(&id, reply);
                    }
                    self.static_members.insert(instance.clone(), id.clone());
                    id
                }
                None if req.require_known_member_id => {
                    let id = self.new_member_id(&req.client_id, None);
                    self.pending.insert(id.clone(), now + req.session_timeout);
                    return fail(reply, ResponseError::MemberIdRequired, &id);
                }
                None => self.new_member_id(&req.client_id, None),
            }
        } else {
            let known = self.members.contains_key(&req.member_id)
                || self.pending.remove(&req.member_id).is_some();
            if !known {
                return fail(reply, ResponseError::UnknownMemberId, &req.member_id);
            }
            if let Some(instance) = &req.instance_id
                && self.static_members.get(instance) != Some(&req.member_id)
            {
                return fail(reply, ResponseError::FencedInstanceId, &req.member_id);
            }
            req.member_id.clone()
        };
        let member = self
            .members
            .entry(member_id.clone())
            .or_insert_with(|| Member {
                id: member_id.clone(),
                instance_id: req.instance_id.clone(),
                client_id: req.client_id.clone(),
                client_host: req.client_host.clone(),
                session_timeout: req.session_timeout,
                rebalance_timeout: req.rebalance_timeout,
                protocols: Vec::new(),
                assignment: Bytes::new(),
                last_heartbeat: now,
                join_waiter: None,
                sync_waiter: None,
            });
        member.protocols = req.protocols;
        member.session_timeout = req.session_timeout;
        member.rebalance_timeout = req.rebalance_timeout;
        member.last_heartbeat = now;
        if let Some(old) = member.join_waiter.replace(reply) {
            let _ = old.send(JoinOutcome::error(
                ResponseError::UnknownMemberId,
                &member_id,
            ));
        }
        if self.protocol_type.is_none() {
            self.protocol_type = Some(req.protocol_type);
        }
        match self.state {
            GroupState::PreparingRebalance => {}
            GroupState::Empty => {
                self.prepare_rebalance(now, initial_delay);
            }
            _ => self.prepare_rebalance(now, Duration::ZERO),
        }
        self.maybe_complete_join(now);
    }

    /// Swaps a static member's id; true if the group can keep its assignment.
    fn replace_static(&mut self, old: &str, new: &str, req: &JoinRequest) -> bool {
        let Some(mut member) = self.members.remove(old) else {
            return false;
        };
        if let Some(w) = member.join_waiter.take() {
            let _ = w.send(JoinOutcome::error(ResponseError::FencedInstanceId, old));
        }
        if let Some(w) = member.sync_waiter.take() {
            let _ = w.send(Err(ResponseError::FencedInstanceId));
        }
        let unchanged = member.protocols == req.protocols && self.state == GroupState::Stable;
        member.id = new.to_owned();
        member.client_id.clone_from(&req.client_id);
        member.client_host.clone_from(&req.client_host);
        member.session_timeout = req.session_timeout;
        member.rebalance_timeout = req.rebalance_timeout;
        member.protocols.clone_from(&req.protocols);
        member.last_heartbeat = Instant::now();
        if self.leader.as_deref() == Some(old) {
            self.leader = Some(new.to_owned());
        }
        if let Some(instance) = &req.instance_id {
            self.static_members.insert(instance.clone(), new.to_owned());
        }
        self.members.insert(new.to_owned(), member);
        unchanged
    }

    fn answer_static_rejoin(&mut self, id: &str, reply: oneshot::Sender<JoinOutcome>) {
        let leader = self.leader.clone().unwrap_or_default();
        let members = if leader == id {
            self.member_list()
        } else {
            Vec::new()
        };
        let _ = reply.send(JoinOutcome {
            error: None,
            generation: self.generation,
            protocol_type: self.protocol_type.clone(),
            protocol_name: self.protocol_name.clone(),
            leader,
            member_id: id.to_owned(),
            members,
        });
    }

    fn supports_any(&self, protocols: &[(String, Bytes)]) -> bool {
        self.candidates()
            .iter()
            .any(|c| protocols.iter().any(|(name, _)| name == c))
    }

    /// Protocols every member supports.
    fn candidates(&self) -> Vec<String> {
        let mut members = self.members.values();
        let Some(first) = members.next() else {
            return Vec::new();
        };
        let mut names: Vec<String> = first.protocols.iter().map(|(n, _)| n.clone()).collect();
        for m in members {
            names.retain(|n| m.protocols.iter().any(|(p, _)| p == n));
        }
        names
    }

    /// Kafka's vote: each member votes for its most preferred candidate; most votes wins.
    fn select_protocol(&self) -> Option<String> {
        let candidates = self.candidates();
        let mut votes: Vec<(usize, &String)> = candidates.iter().map(|c| (0, c)).collect();
        for m in self.members.values() {
            if let Some((name, _)) = m.protocols.iter().find(|(n, _)| candidates.contains(n))
                && let Some(v) = votes.iter_mut().find(|(_, c)| *c == name)
            {
                v.0 += 1;
            }
        }
        votes
            .iter()
            .max_by_key(|(n, _)| *n)
            .map(|(_, c)| (*c).clone())
    }

    fn prepare_rebalance(&mut self, now: Instant, initial_delay: Duration) {
        for m in self.members.values_mut() {
            if let Some(w) = m.sync_waiter.take() {
                let _ = w.send(Err(ResponseError::RebalanceInProgress));
            }
        }
        let timeout = self
            .members
            .values()
            .map(|m| m.rebalance_timeout)
            .max()
            .unwrap_or_default();
        self.state = GroupState::PreparingRebalance;
        self.deadline = Some(now + timeout.max(initial_delay));
        self.initial_delay_until = (initial_delay > Duration::ZERO).then(|| now + initial_delay);
    }

    /// Completes the join phase once every member rejoined (and any initial delay passed),
    /// or when the deadline passed (members that did not rejoin are removed).
    pub fn maybe_complete_join(&mut self, now: Instant) {
        if self.state != GroupState::PreparingRebalance {
            return;
        }
        let all_joined = self.members.values().all(|m| m.join_waiter.is_some());
        let delayed = self.initial_delay_until.is_some_and(|t| now < t);
        let expired = self.deadline.is_some_and(|d| now >= d);
        if !(expired || (all_joined && !delayed)) {
            return;
        }
        let gone: Vec<String> = self
            .members
            .values()
            .filter(|m| m.join_waiter.is_none())
            .map(|m| m.id.clone())
            .collect();
        for id in gone {
            self.remove_member(&id);
        }
        self.initial_delay_until = None;
        self.generation += 1;
        if self.members.is_empty() {
            self.state = GroupState::Empty;
            self.protocol_name = None;
            self.protocol_type = None;
            self.leader = None;
            self.deadline = None;
            return;
        }
        self.protocol_name = self.select_protocol();
        if self
            .leader
            .as_ref()
            .is_none_or(|l| !self.members.contains_key(l))
        {
            self.leader = self.members.keys().next().cloned();
        }
        self.state = GroupState::CompletingRebalance;
        tracing::info!(
            group = %self.id,
            generation = self.generation,
            members = self.members.len(),
            protocol = self.protocol_name.as_deref().unwrap_or(""),
            "rebalance: join phase complete"
        );
        let sync_timeout = self
            .members
            .values()
            .map(|m| m.rebalance_timeout)
            .max()
            .unwrap_or_default();
        self.deadline = Some(now + sync_timeout);
        let leader = self.leader.clone().unwrap_or_default();
        let members = self.member_list();
        let (generation, pt, pn) = (
            self.generation,
            self.protocol_type.clone(),
            self.protocol_name.clone(),
        );
        for m in self.members.values_mut() {
            m.last_heartbeat = now;
            m.assignment = Bytes::new();
            if let Some(w) = m.join_waiter.take() {
                let _ = w.send(JoinOutcome {
                    error: None,
                    generation,
                    protocol_type: pt.clone(),
                    protocol_name: pn.clone(),
                    leader: leader.clone(),
                    member_id: m.id.clone(),
                    members: if m.id == leader {
                        members.clone()
                    } else {
                        Vec::new()
                    },
                });
            }
        }
    }

    fn member_list(&self) -> Vec<(String, Option<String>, Bytes)> {
        let chosen = self.protocol_name.as_deref().unwrap_or_default();
        self.members
            .values()
            .map(|m| {
                let metadata = m
                    .protocols
                    .iter()
                    .find(|(n, _)| n == chosen)
                    .map(|(_, md)| md.clone())
                    .unwrap_or_default();
                (m.id.clone(), m.instance_id.clone(), metadata)
            })
            .collect()
    }

    /// Checks member id, instance id and generation of a request from a member.
    fn check_member(
        &self,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
    ) -> Result<(), ResponseError> {
        if let Some(instance) = instance_id
            && let Some(current) = self.static_members.get(instance)
            && current != member_id
        {
            return Err(ResponseError::FencedInstanceId);
        }
        if !self.members.contains_key(member_id) {
            return Err(ResponseError::UnknownMemberId);
        }
        if generation != self.generation {
            return Err(ResponseError::IllegalGeneration);
        }
        Ok(())
    }

    /// Handles a SyncGroup; the answer arrives on `reply`.
    pub fn sync(
        &mut self,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
        assignments: Vec<(String, Bytes)>,
        reply: oneshot::Sender<SyncOutcome>,
    ) {
        if let Err(e) = self.check_member(member_id, instance_id, generation) {
            let _ = reply.send(Err(e));
            return;
        }
        match self.state {
            GroupState::PreparingRebalance | GroupState::Empty | GroupState::Dead => {
                let _ = reply.send(Err(ResponseError::RebalanceInProgress));
            }
            GroupState::Stable => {
                let assignment = self.members.get(member_id).map(|m| m.assignment.clone());
                let _ = reply.send(assignment.ok_or(ResponseError::UnknownMemberId));
            }
            GroupState::CompletingRebalance => {
                if let Some(m) = self.members.get_mut(member_id) {
                    m.sync_waiter = Some(reply);
                }
                if self.leader.as_deref() == Some(member_id) {
                    let mut given: HashMap<String, Bytes> = assignments.into_iter().collect();
                    for m in self.members.values_mut() {
                        m.assignment = given.remove(&m.id).unwrap_or_default();
                    }
                    self.state = GroupState::Stable;
                    self.deadline = None;
                }
                if self.state == GroupState::Stable {
                    for m in self.members.values_mut() {
                        if let Some(w) = m.sync_waiter.take() {
                            let _ = w.send(Ok(m.assignment.clone()));
                        }
                    }
                }
            }
        }
    }

    pub fn heartbeat(
        &mut self,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
        now: Instant,
    ) -> Result<(), ResponseError> {
        if self.state == GroupState::Dead {
            return Err(ResponseError::CoordinatorNotAvailable);
        }
        if let Err(e) = self.check_member(member_id, instance_id, generation) {
            // A member that must rejoin learns it from REBALANCE_IN_PROGRESS, not from the
            // generation it has not seen yet.
            if e == ResponseError::IllegalGeneration && self.state == GroupState::PreparingRebalance
            {
                self.touch(member_id, now);
                return Err(ResponseError::RebalanceInProgress);
            }
            return Err(e);
        }
        self.touch(member_id, now);
        match self.state {
            GroupState::PreparingRebalance => Err(ResponseError::RebalanceInProgress),
            _ => Ok(()),
        }
    }

    fn touch(&mut self, member_id: &str, now: Instant) {
        if let Some(m) = self.members.get_mut(member_id) {
            m.last_heartbeat = now;
        }
    }

    /// Removes a member that leaves; rebalances the rest.
    pub fn leave(
        &mut self,
        member_id: &str,
        instance_id: Option<&str>,
        now: Instant,
    ) -> Result<(), ResponseError> {
        let id = match (member_id.is_empty(), instance_id) {
            (true, Some(instance)) => self
                .static_members
                .get(instance)
                .cloned()
                .ok_or(ResponseError::UnknownMemberId)?,
            _ => {
                if let Some(instance) = instance_id
                    && self
                        .static_members
                        .get(instance)
                        .is_some_and(|m| m != member_id)
                {
                    return Err(ResponseError::FencedInstanceId);
                }
                member_id.to_owned()
            }
        };
        if self.pending.remove(&id).is_some() {
            return Ok(());
        }
        if !self.members.contains_key(&id) {
            return Err(ResponseError::UnknownMemberId);
        }
        self.remove_member(&id);
        self.after_departure(now);
        Ok(())
    }

    fn remove_member(&mut self, id: &str) {
        if let Some(mut m) = self.members.remove(id) {
            if let Some(w) = m.join_waiter.take() {
                let _ = w.send(JoinOutcome::error(ResponseError::UnknownMemberId, id));
            }
            if let Some(w) = m.sync_waiter.take() {
                let _ = w.send(Err(ResponseError::UnknownMemberId));
            }
            if let Some(instance) = &m.instance_id
                && self.static_members.get(instance).map(String::as_str) == Some(id)
            {
                self.static_members.remove(instance);
            }
        }
        if self.leader.as_deref() == Some(id) {
            self.leader = self.members.keys().next().cloned();
        }
    }

    /// After members left or expired: rebalance the rest, or become Empty.
    fn after_departure(&mut self, now: Instant) {
        match self.state {
            GroupState::Stable | GroupState::CompletingRebalance => {
                if self.members.is_empty() {
                    self.become_empty();
                } else {
                    self.prepare_rebalance(now, Duration::ZERO);
                }
            }
            GroupState::PreparingRebalance => self.maybe_complete_join(now),
            GroupState::Empty | GroupState::Dead => {}
        }
    }

    fn become_empty(&mut self) {
        self.state = GroupState::Empty;
        self.generation += 1;
        self.protocol_name = None;
        self.protocol_type = None;
        self.leader = None;
        self.deadline = None;
    }

    /// Expires members whose session lapsed and phases whose deadline passed.
    pub fn tick(&mut self, now: Instant) {
        self.pending.retain(|_, until| *until > now);
        let expired: Vec<String> = self
            .members
            .values()
            .filter(|m| {
                // A member parked in JoinGroup or SyncGroup is alive by definition (Kafka's
                // "satisfied heartbeat"); every other member must keep heartbeating, also
                // during a rebalance, or a dead one would stall it until the rebalance timeout.
                let parked = m.join_waiter.is_some() || m.sync_waiter.is_some();
                !parked && now >= m.last_heartbeat + m.session_timeout
            })
            .map(|m| m.id.clone())
            .collect();
        let any = !expired.is_empty();
        for id in &expired {
            tracing::info!(group = %self.id, member_id = %id, "member session expired");
            self.remove_member(id);
        }
        if any {
            self.after_departure(now);
        }
        match self.state {
            GroupState::PreparingRebalance => self.maybe_complete_join(now),
            GroupState::CompletingRebalance if self.deadline.is_some_and(|d| now >= d) => {
                // The leader never sent the assignment: drop members that did not sync.
                let silent: Vec<String> = self
                    .members
                    .values()
                    .filter(|m| m.sync_waiter.is_none())
                    .map(|m| m.id.clone())
                    .collect();
                for id in &silent {
                    self.remove_member(id);
                }
                self.after_departure(now);
                if self.state == GroupState::CompletingRebalance {
                    self.prepare_rebalance(now, Duration::ZERO);
                }
            }
            _ => {}
        }
    }

    pub fn check_commit(
        &self,
        generation: i32,
        member_id: &str,
        instance_id: Option<&str>,
    ) -> Result<(), ResponseError> {
        if generation < 0 && member_id.is_empty() {
            return if self.members.is_empty() {
                Ok(())
            } else {
                Err(ResponseError::UnknownMemberId)
            };
        }
        self.check_member(member_id, instance_id, generation)?;
        if self.state == GroupState::CompletingRebalance {
            return Err(ResponseError::RebalanceInProgress);
        }
        Ok(())
    }

    /// Topics named in the members' consumer-protocol subscriptions.
    pub fn subscribed_topics(&self) -> HashSet<String> {
        use kafka_protocol::messages::ConsumerProtocolSubscription;
        use kafka_protocol::protocol::Decodable;
        if self.protocol_type.as_deref() != Some("consumer") {
            return HashSet::new();
        }
        let mut topics = HashSet::new();
        for (_, _, metadata) in self.member_list() {
            let mut buf = metadata.clone();
            if buf.len() < 2 {
                continue;
            }
            let version = i16::from_be_bytes([buf[0], buf[1]]);
            bytes::Buf::advance(&mut buf, 2);
            if let Ok(sub) = ConsumerProtocolSubscription::decode(&mut buf, version.min(3)) {
                topics.extend(sub.topics.iter().map(|t| t.to_string()));
            }
        }
        topics
    }

    /// Marks a group deleted; it must be empty.
    pub fn delete(&mut self) -> Result<(), ResponseError> {
        if !self.members.is_empty() {
            return Err(ResponseError::NonEmptyGroup);
        }
        self.state = GroupState::Dead;
        Ok(())
    }
}

#[cfg(test)]
#[path = "state_tests.rs"]
mod tests;
