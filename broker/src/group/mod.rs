//! The group coordinator (classic protocol): membership, rebalances and the relay of the
//! leader's assignment. Committed offsets live in the log store; this module only says who
//! may commit.
//!
//! Every group lives in memory behind one mutex; handlers call the coordinator's methods and
//! await the oneshot answers of JoinGroup/SyncGroup, which complete when the rebalance does.
//! A sweeper task expires members whose session lapsed and completes rebalances whose
//! deadline passed.

mod state;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use kafka_protocol::ResponseError;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

pub use state::{Group, GroupState, JoinOutcome, JoinRequest, SyncOutcome};

/// How often member sessions and phase deadlines are checked.
const SWEEP_EVERY: Duration = Duration::from_millis(200);

/// A member as DescribeGroups shows it.
#[derive(Debug, Clone)]
pub struct MemberView {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub metadata: Bytes,
    pub assignment: Bytes,
}

/// A group as ListGroups/DescribeGroups show it.
#[derive(Debug, Clone)]
pub struct GroupView {
    pub group_id: String,
    pub state: GroupState,
    pub protocol_type: String,
    pub protocol_name: String,
    pub members: Vec<MemberView>,
}

/// Coordinator settings (Kafka's `group.*` broker configs).
#[derive(Debug, Clone, Copy)]
pub struct GroupLimits {
    pub min_session_timeout_ms: i32,
    pub max_session_timeout_ms: i32,
    /// `group.initial.rebalance.delay.ms`: how long a first rebalance of an empty group
    /// waits for more members.
    pub initial_rebalance_delay_ms: u64,
}

pub struct GroupCoordinator {
    limits: GroupLimits,
    groups: Mutex<HashMap<String, Group>>,
}

impl GroupCoordinator {
    pub fn new(limits: GroupLimits, known: impl IntoIterator<Item = String>) -> Self {
        let groups = known
            .into_iter()
            .map(|id| (id.clone(), Group::new(id)))
            .collect();
        GroupCoordinator {
            limits,
            groups: Mutex::new(groups),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Group>> {
        self.groups.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// JoinGroup: resolves when the join phase completes (or at once with an error).
    pub async fn join(&self, group: &str, req: JoinRequest) -> JoinOutcome {
        if group.is_empty() {
            return JoinOutcome::error(ResponseError::InvalidGroupId, &req.member_id);
        }
        let timeout = req.session_timeout.as_millis();
        let limits = &self.limits;
        if timeout < limits.min_session_timeout_ms as u128
            || timeout > limits.max_session_timeout_ms as u128
        {
            return JoinOutcome::error(ResponseError::InvalidSessionTimeout, &req.member_id);
        }
        let member_id = req.member_id.clone();
        let (tx, rx) = oneshot::channel();
        {
            let mut groups = self.lock();
            let g = groups
                .entry(group.to_owned())
                .or_insert_with(|| Group::new(group.to_owned()));
            let delay = Duration::from_millis(self.limits.initial_rebalance_delay_ms);
            g.join(req, Instant::now(), delay, tx);
        }
        rx.await
            .unwrap_or_else(|_| JoinOutcome::error(ResponseError::UnknownMemberId, &member_id))
    }

    /// SyncGroup: resolves with the member's assignment once the leader sent it.
    pub async fn sync(
        &self,
        group: &str,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
        assignments: Vec<(String, Bytes)>,
    ) -> SyncOutcome {
        let (tx, rx) = oneshot::channel();
        {
            let mut groups = self.lock();
            let Some(g) = groups.get_mut(group) else {
                return Err(ResponseError::UnknownMemberId);
            };
            g.sync(member_id, instance_id, generation, assignments, tx);
        }
        rx.await.unwrap_or(Err(ResponseError::UnknownMemberId))
    }

    pub fn heartbeat(
        &self,
        group: &str,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
    ) -> Result<(), ResponseError> {
        let mut groups = self.lock();
        let g = groups
            .get_mut(group)
            .ok_or(ResponseError::UnknownMemberId)?;
        g.heartbeat(member_id, instance_id, generation, Instant::now())
    }

    pub fn leave(
        &self,
        group: &str,
        member_id: &str,
        instance_id: Option<&str>,
    ) -> Result<(), ResponseError> {
        let mut groups = self.lock();
        let g = groups
            .get_mut(group)
            .ok_or(ResponseError::UnknownMemberId)?;
        g.leave(member_id, instance_id, Instant::now())
    }

    /// Every known group (including those that only have committed offsets).
    pub fn list(&self) -> Vec<GroupView> {
        let groups = self.lock();
        let mut out: Vec<GroupView> = groups.values().map(view).collect();
        out.sort_by(|a, b| a.group_id.cmp(&b.group_id));
        out
    }

    pub fn describe(&self, group: &str) -> Option<GroupView> {
        self.lock().get(group).map(view)
    }

    /// DeleteGroups: only empty groups may go. The caller deletes their offsets.
    pub fn delete(&self, group: &str) -> Result<(), ResponseError> {
        let mut groups = self.lock();
        let g = groups
            .get_mut(group)
            .ok_or(ResponseError::GroupIdNotFound)?;
        g.delete()?;
        groups.remove(group);
        Ok(())
    }

    /// Registers a group known from committed offsets (state Empty).
    pub fn ensure(&self, group: &str) {
        self.lock()
            .entry(group.to_owned())
            .or_insert_with(|| Group::new(group.to_owned()));
    }

    /// Expires sessions and completes overdue phases until `shutdown`.
    pub async fn sweep(self: Arc<Self>, shutdown: CancellationToken) {
        let mut tick = tokio::time::interval(SWEEP_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tick.tick() => {
                    let now = Instant::now();
                    for g in self.lock().values_mut() {
                        g.tick(now);
                    }
                }
            }
        }
    }

    /// Whether a member with this generation may commit offsets for `group`. A commit with
    /// generation -1 and no member id (a consumer that assigns partitions itself) is allowed
    /// while the group has no members; it creates the group if needed.
    pub fn check_commit(
        &self,
        group: &str,
        generation: i32,
        member_id: &str,
        instance_id: Option<&str>,
    ) -> Result<(), ResponseError> {
        let mut groups = self.lock();
        let g = groups
            .entry(group.to_owned())
            .or_insert_with(|| Group::new(group.to_owned()));
        g.check_commit(generation, member_id, instance_id)
    }

    /// Whether the group has no members (unknown groups have none).
    pub fn is_empty(&self, group: &str) -> bool {
        self.lock().get(group).is_none_or(|g| g.members.is_empty())
    }

    /// Topics the group's members subscribe to (decoded from consumer-protocol metadata).
    pub fn subscribed_topics(&self, group: &str) -> HashSet<String> {
        self.lock()
            .get(group)
            .map(Group::subscribed_topics)
            .unwrap_or_default()
    }

    /// Forgets a group that has neither members nor offsets any more.
    pub fn forget_if_empty(&self, group: &str) {
        let mut groups = self.lock();
        if groups.get(group).is_some_and(|g| g.members.is_empty()) {
            groups.remove(group);
        }
    }
}

fn view(g: &Group) -> GroupView {
    let chosen = g.protocol_name.clone().unwrap_or_default();
    GroupView {
        group_id: g.id.clone(),
        state: g.state,
        protocol_type: g.protocol_type.clone().unwrap_or_default(),
        protocol_name: chosen.clone(),
        members: g
            .members
            .values()
            .map(|m| MemberView {
                member_id: m.id.clone(),
                instance_id: m.instance_id.clone(),
                client_id: m.client_id.clone(),
                client_host: m.client_host.clone(),
                metadata: m
                    .protocols
                    .iter()
                    .find(|(n, _)| *n == chosen)
                    .map(|(_, md)| md.clone())
                    .unwrap_or_default(),
                assignment: m.assignment.clone(),
            })
            .collect(),
    }
}
