//! The replicated cluster metadata (Kafka's KRaft metadata image) and the one function that
//! changes it, [`ClusterState::apply`].
//!
//! Every node holds the same `ClusterState`: the Raft log feeds the same [`Command`]s in the
//! same order to `apply`, which is pure and deterministic (no clock, no randomness: ids and
//! assignments are chosen by the proposer and only validated here).
//!
//! Invariants `apply` keeps for every partition:
//! - `isr` is a non-empty subset of `replicas`; the leader, when there is one, is in `isr`;
//! - `leader_epoch` grows by one whenever the leader changes (including to and from -1);
//!   `partition_epoch` grows on every change of the partition;
//! - a leader is never a fenced broker; with no eligible ISR member the partition is offline
//!   (`leader = -1`) and keeps its last ISR, so the unclean choice stays explicit;
//! - during a reassignment `replicas = target ∪ removing` and `adding ⊆ target`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A listener's address as clients are told.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endpoint {
    pub host: String,
    pub port: i32,
}

/// A registered broker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrokerInfo {
    /// Listener name -> advertised address; the first listener also carries replication.
    pub endpoints: Vec<(String, Endpoint)>,
    /// Fenced brokers lead nothing and are left out of Metadata.
    pub fenced: bool,
    /// Changes on every process start (a restarted broker registers again).
    pub incarnation: String,
}

impl BrokerInfo {
    /// The address of listener `name`, or the first listener's.
    pub fn endpoint(&self, name: &str) -> Option<&Endpoint> {
        self.endpoints
            .iter()
            .find(|(n, _)| n == name)
            .or_else(|| self.endpoints.first())
            .map(|(_, e)| e)
    }

    /// The replication (inter-broker) address.
    pub fn replication_endpoint(&self) -> Option<&Endpoint> {
        self.endpoints.first().map(|(_, e)| e)
    }
}

/// One partition's replica placement and leadership.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionInfo {
    pub replicas: Vec<i32>,
    pub isr: Vec<i32>,
    /// -1: offline.
    pub leader: i32,
    pub leader_epoch: i32,
    pub partition_epoch: i32,
    /// Replicas a reassignment is adding (not yet in the ISR when listed).
    #[serde(default)]
    pub adding: Vec<i32>,
    /// Replicas a reassignment will remove once the added ones caught up.
    #[serde(default)]
    pub removing: Vec<i32>,
}

impl PartitionInfo {
    fn new(replicas: Vec<i32>, brokers: &BTreeMap<i32, BrokerInfo>) -> Self {
        let isr: Vec<i32> = replicas.clone();
        let leader = replicas
            .iter()
            .copied()
            .find(|r| brokers.get(r).is_some_and(|b| !b.fenced))
            .unwrap_or(-1);
        PartitionInfo {
            replicas,
            isr,
            leader,
            leader_epoch: 0,
            partition_epoch: 0,
            adding: Vec::new(),
            removing: Vec::new(),
        }
    }

    /// The replicas a completed reassignment keeps.
    pub fn target(&self) -> Vec<i32> {
        self.replicas
            .iter()
            .copied()
            .filter(|r| !self.removing.contains(r))
            .collect()
    }

    fn set_leader(&mut self, leader: i32) {
        if self.leader != leader {
            self.leader = leader;
            self.leader_epoch += 1;
        }
        self.partition_epoch += 1;
    }
}

/// A topic as the cluster knows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicInfo {
    pub id: uuid::Uuid,
    pub configs: BTreeMap<String, String>,
    pub partitions: Vec<PartitionInfo>,
}

/// The whole replicated metadata.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterState {
    pub brokers: BTreeMap<i32, BrokerInfo>,
    pub topics: BTreeMap<String, TopicInfo>,
    /// Committed group offsets: group id -> one entry per (topic, partition).
    #[serde(default)]
    pub offsets: BTreeMap<String, Vec<CommitEntry>>,
}

/// One committed offset, carried through the Raft log to every node's offset store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommitEntry {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: String,
    pub commit_timestamp_ms: i64,
}

/// A change to the metadata (a Raft log entry).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// A broker starts (or comes back after being fenced): endpoints are replaced and it is
    /// unfenced. A new incarnation of a live broker is fenced first.
    RegisterBroker {
        id: i32,
        endpoints: Vec<(String, Endpoint)>,
        incarnation: String,
    },
    /// The controller stopped hearing from a broker.
    FenceBroker {
        id: i32,
        unclean: bool,
    },
    /// A fenced broker heartbeats again.
    UnfenceBroker {
        id: i32,
    },
    CreateTopic {
        name: String,
        id: uuid::Uuid,
        replicas: Vec<Vec<i32>>,
        configs: BTreeMap<String, String>,
    },
    DeleteTopic {
        name: String,
    },
    /// Appends partitions with these replica lists.
    CreatePartitions {
        name: String,
        replicas: Vec<Vec<i32>>,
    },
    /// Replaces the topic's config overrides.
    AlterConfigs {
        name: String,
        configs: BTreeMap<String, String>,
    },
    /// The partition leader changes the ISR (Kafka's AlterPartition). Refused unless
    /// `leader`/`leader_epoch` are current.
    AlterIsr {
        topic: String,
        partition: i32,
        leader: i32,
        leader_epoch: i32,
        isr: Vec<i32>,
    },
    /// Moves a partition to `target` replicas; `None` cancels an ongoing reassignment.
    Reassign {
        topic: String,
        partition: i32,
        target: Option<Vec<i32>>,
    },
    /// Stores group offsets (overwriting older commits of the same partitions).
    CommitOffsets {
        group: String,
        commits: Vec<CommitEntry>,
    },
    /// Deletes a group's offsets (all, or of the listed partitions).
    DeleteOffsets {
        group: String,
        only: Option<Vec<(String, i32)>>,
    },
}

/// What applying a command answered: Kafka error code 0 or a refusal with its reason.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outcome {
    pub error_code: i16,
    pub message: String,
}

impl Outcome {
    pub fn ok() -> Self {
        Outcome {
            error_code: 0,
            message: String::new(),
        }
    }

    fn err(code: kafka_protocol::ResponseError, message: impl Into<String>) -> Self {
        Outcome {
            error_code: code.code(),
            message: message.into(),
        }
    }

    pub fn is_ok(&self) -> bool {
        self.error_code == 0
    }
}

use kafka_protocol::ResponseError as E;

impl ClusterState {
    pub fn partition(&self, topic: &str, partition: i32) -> Option<&PartitionInfo> {
        self.topics.get(topic).and_then(|t| {
            usize::try_from(partition)
                .ok()
                .and_then(|p| t.partitions.get(p))
        })
    }

    fn partition_mut(&mut self, topic: &str, partition: i32) -> Option<&mut PartitionInfo> {
        self.topics.get_mut(topic).and_then(|t| {
            usize::try_from(partition)
                .ok()
                .and_then(|p| t.partitions.get_mut(p))
        })
    }

    /// Unfenced broker ids, sorted.
    pub fn live_brokers(&self) -> Vec<i32> {
        self.brokers
            .iter()
            .filter(|(_, b)| !b.fenced)
            .map(|(id, _)| *id)
            .collect()
    }

    /// Applies one command. Refusals leave the state unchanged.
    pub fn apply(&mut self, cmd: &Command) -> Outcome {
        match cmd {
            Command::RegisterBroker {
                id,
                endpoints,
                incarnation,
            } => {
                // A restarted process lost its in-memory replica state: its leaderships move
                // away first (as when it was fenced), and it rejoins ISRs by catching up.
                if self
                    .brokers
                    .get(id)
                    .is_some_and(|b| !b.fenced && b.incarnation != *incarnation)
                {
                    self.fence(*id, false);
                }
                self.brokers.insert(
                    *id,
                    BrokerInfo {
                        endpoints: endpoints.clone(),
                        fenced: true,
                        incarnation: incarnation.clone(),
                    },
                );
                self.unfence(*id);
                Outcome::ok()
            }
            Command::FenceBroker { id, unclean } => {
                self.fence(*id, *unclean);
                Outcome::ok()
            }
            Command::UnfenceBroker { id } => {
                if !self.brokers.contains_key(id) {
                    return Outcome::err(
                        E::BrokerNotAvailable,
                        format!("broker {id} is not registered"),
                    );
                }
                self.unfence(*id);
                Outcome::ok()
            }
            Command::CreateTopic {
                name,
                id,
                replicas,
                configs,
            } => {
                if self.topics.contains_key(name) {
                    return Outcome::err(
                        E::TopicAlreadyExists,
                        format!("topic {name:?} already exists"),
                    );
                }
                if let Err(o) = self.check_assignment(replicas) {
                    return o;
                }
                let partitions = replicas
                    .iter()
                    .map(|r| PartitionInfo::new(r.clone(), &self.brokers))
                    .collect();
                self.topics.insert(
                    name.clone(),
                    TopicInfo {
                        id: *id,
                        configs: configs.clone(),
                        partitions,
                    },
                );
                Outcome::ok()
            }
            Command::DeleteTopic { name } => match self.topics.remove(name) {
                Some(_) => {
                    for entries in self.offsets.values_mut() {
                        entries.retain(|e| e.topic != *name);
                    }
                    self.offsets.retain(|_, e| !e.is_empty());
                    Outcome::ok()
                }
                None => Outcome::err(
                    E::UnknownTopicOrPartition,
                    format!("topic {name:?} does not exist"),
                ),
            },
            Command::CreatePartitions { name, replicas } => {
                if let Err(o) = self.check_assignment(replicas) {
                    return o;
                }
                let brokers = self.brokers.clone();
                match self.topics.get_mut(name) {
                    Some(t) => {
                        t.partitions.extend(
                            replicas
                                .iter()
                                .map(|r| PartitionInfo::new(r.clone(), &brokers)),
                        );
                        Outcome::ok()
                    }
                    None => Outcome::err(
                        E::UnknownTopicOrPartition,
                        format!("topic {name:?} does not exist"),
                    ),
                }
            }
            Command::AlterConfigs { name, configs } => match self.topics.get_mut(name) {
                Some(t) => {
                    t.configs = configs.clone();
                    Outcome::ok()
                }
                None => Outcome::err(
                    E::UnknownTopicOrPartition,
                    format!("topic {name:?} does not exist"),
                ),
            },
            Command::AlterIsr {
                topic,
                partition,
                leader,
                leader_epoch,
                isr,
            } => self.alter_isr(topic, *partition, *leader, *leader_epoch, isr),
            Command::Reassign {
                topic,
                partition,
                target,
            } => self.reassign(topic, *partition, target.as_deref()),
            Command::CommitOffsets { group, commits } => {
                let entries = self.offsets.entry(group.clone()).or_default();
                for c in commits {
                    match entries
                        .iter_mut()
                        .find(|e| e.topic == c.topic && e.partition == c.partition)
                    {
                        Some(e) => *e = c.clone(),
                        None => entries.push(c.clone()),
                    }
                }
                Outcome::ok()
            }
            Command::DeleteOffsets { group, only } => {
                if let Some(entries) = self.offsets.get_mut(group) {
                    match only {
                        Some(only) => entries.retain(|e| {
                            !only.iter().any(|(t, p)| *t == e.topic && *p == e.partition)
                        }),
                        None => entries.clear(),
                    }
                    if entries.is_empty() {
                        self.offsets.remove(group);
                    }
                }
                Outcome::ok()
            }
        }
    }

    fn check_assignment(&self, replicas: &[Vec<i32>]) -> Result<(), Outcome> {
        for r in replicas {
            if r.is_empty() {
                return Err(Outcome::err(
                    E::InvalidReplicaAssignment,
                    "a partition needs at least one replica",
                ));
            }
            for (i, b) in r.iter().enumerate() {
                if !self.brokers.contains_key(b) {
                    return Err(Outcome::err(
                        E::InvalidReplicaAssignment,
                        format!("broker {b} is not registered"),
                    ));
                }
                if r[..i].contains(b) {
                    return Err(Outcome::err(
                        E::InvalidReplicaAssignment,
                        format!("broker {b} is listed twice"),
                    ));
                }
            }
        }
        Ok(())
    }

    fn fence(&mut self, id: i32, unclean: bool) {
        let Some(b) = self.brokers.get_mut(&id) else {
            return;
        };
        b.fenced = true;
        let live: Vec<i32> = self.live_brokers();
        for t in self.topics.values_mut() {
            for p in &mut t.partitions {
                if p.leader == id {
                    let next = p.isr.iter().copied().find(|r| *r != id && live.contains(r));
                    match next {
                        Some(n) => {
                            p.isr.retain(|r| *r != id);
                            p.set_leader(n);
                        }
                        None if unclean => {
                            match p.replicas.iter().copied().find(|r| live.contains(r)) {
                                Some(n) => {
                                    p.isr = vec![n];
                                    p.set_leader(n);
                                }
                                None => p.set_leader(-1),
                            }
                        }
                        // Kafka keeps the last ISR member: only it may lead again (clean).
                        None => p.set_leader(-1),
                    }
                } else if p.isr.contains(&id) && p.isr.len() > 1 {
                    p.isr.retain(|r| *r != id);
                    p.partition_epoch += 1;
                }
            }
        }
    }

    fn unfence(&mut self, id: i32) {
        let Some(b) = self.brokers.get_mut(&id) else {
            return;
        };
        b.fenced = false;
        for t in self.topics.values_mut() {
            for p in &mut t.partitions {
                if p.leader == -1 && p.isr.contains(&id) {
                    p.set_leader(id);
                }
            }
        }
    }

    fn alter_isr(
        &mut self,
        topic: &str,
        partition: i32,
        leader: i32,
        leader_epoch: i32,
        isr: &[i32],
    ) -> Outcome {
        let live: Vec<i32> = self.live_brokers();
        let Some(p) = self.partition_mut(topic, partition) else {
            return Outcome::err(
                E::UnknownTopicOrPartition,
                format!("{topic}-{partition} does not exist"),
            );
        };
        if p.leader != leader || p.leader_epoch != leader_epoch {
            return Outcome::err(
                E::FencedLeaderEpoch,
                format!(
                    "{topic}-{partition}: leader {leader} epoch {leader_epoch} is not current (leader {} epoch {})",
                    p.leader, p.leader_epoch
                ),
            );
        }
        if !isr.contains(&leader) || isr.iter().any(|r| !p.replicas.contains(r)) {
            return Outcome::err(
                E::InvalidRequest,
                format!(
                    "{topic}-{partition}: ISR {isr:?} must contain the leader and only replicas"
                ),
            );
        }
        if isr.iter().any(|r| !p.isr.contains(r) && !live.contains(r)) {
            return Outcome::err(
                E::IneligibleReplica,
                format!("{topic}-{partition}: a fenced broker cannot join the ISR"),
            );
        }
        p.isr = isr.to_vec();
        p.partition_epoch += 1;
        complete_reassignment(p);
        Outcome::ok()
    }

    fn reassign(&mut self, topic: &str, partition: i32, target: Option<&[i32]>) -> Outcome {
        if let Some(t) = target
            && let Err(o) = self.check_assignment(&[t.to_vec()])
        {
            return o;
        }
        let Some(p) = self.partition_mut(topic, partition) else {
            return Outcome::err(
                E::UnknownTopicOrPartition,
                format!("{topic}-{partition} does not exist"),
            );
        };
        match target {
            None => {
                if p.adding.is_empty() && p.removing.is_empty() {
                    return Outcome::err(
                        E::NoReassignmentInProgress,
                        format!("{topic}-{partition} is not being reassigned"),
                    );
                }
                // Back to the original replicas: drop what was being added.
                let adding = std::mem::take(&mut p.adding);
                p.removing.clear();
                p.replicas.retain(|r| !adding.contains(r));
                p.isr.retain(|r| !adding.contains(r));
                p.partition_epoch += 1;
                Outcome::ok()
            }
            Some(target) => {
                let original: Vec<i32> = p
                    .replicas
                    .iter()
                    .copied()
                    .filter(|r| !p.adding.contains(r))
                    .collect();
                p.adding = target
                    .iter()
                    .copied()
                    .filter(|r| !original.contains(r))
                    .collect();
                p.removing = original
                    .iter()
                    .copied()
                    .filter(|r| !target.contains(r))
                    .collect();
                let mut replicas = target.to_vec();
                replicas.extend(p.removing.iter().copied());
                p.replicas = replicas;
                p.isr.retain(|r| p.replicas.contains(r));
                p.partition_epoch += 1;
                complete_reassignment(p);
                Outcome::ok()
            }
        }
    }
}

/// Finishes a reassignment whose added replicas are all in the ISR: the removed replicas go,
/// and leadership moves into the target if the leader is being removed.
fn complete_reassignment(p: &mut PartitionInfo) {
    if p.adding.is_empty() && p.removing.is_empty() {
        return;
    }
    if p.adding.iter().any(|r| !p.isr.contains(r)) {
        return;
    }
    let target = p.target();
    if !target.iter().any(|r| p.isr.contains(r)) {
        return;
    }
    p.isr.retain(|r| target.contains(r));
    p.replicas = target;
    p.adding.clear();
    p.removing.clear();
    p.partition_epoch += 1;
    if !p.isr.contains(&p.leader) {
        let next = p.isr.first().copied().unwrap_or(-1);
        p.set_leader(next);
    }
}

#[cfg(test)]
#[path = "state_tests.rs"]
mod tests;
