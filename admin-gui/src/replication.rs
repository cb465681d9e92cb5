//! What the Brokers screen shows, computed once per refresh from the Metadata answer and, where
//! the cluster serves it, DescribeCluster: one row per broker (online or fenced, partitions it
//! leads and replicates) and the partitions that need attention. Pure: no I/O, no egui.
//!
//! A partition is *offline* when it has no leader (leader -1), and *under-replicated* when it
//! has a leader but fewer in-sync replicas than replicas; an offline partition is listed only
//! as offline.

use std::collections::BTreeMap;

use runnel_client::{ClusterDescription, ClusterMeta};

/// Whether a broker takes part in the cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BrokerState {
    /// Listed by Metadata or as unfenced by DescribeCluster.
    Online,
    /// Registered, but fenced by the controller (DescribeCluster v2).
    Fenced,
    /// Named as a replica, but listed by neither answer.
    Unknown,
}

impl BrokerState {
    pub fn label(self) -> &'static str {
        match self {
            BrokerState::Online => "online",
            BrokerState::Fenced => "fenced",
            BrokerState::Unknown => "not registered",
        }
    }
}

/// One broker's row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerRow {
    pub id: i32,
    /// `host:port`, or `-` for a broker known only as a replica.
    pub address: String,
    pub rack: Option<String>,
    pub state: BrokerState,
    /// Partitions whose leader it is.
    pub leads: usize,
    /// Partitions it holds a replica of (leading or following).
    pub replicates: usize,
}

/// A partition that needs attention.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionIssue {
    pub topic: String,
    pub partition: i32,
    pub leader: i32,
    pub leader_epoch: i32,
    pub replicas: Vec<i32>,
    pub isr: Vec<i32>,
}

/// The whole Brokers screen.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BrokersView {
    pub cluster_id: Option<String>,
    /// -1 when unknown.
    pub controller: i32,
    /// Sorted by id.
    pub brokers: Vec<BrokerRow>,
    pub under_replicated: Vec<PartitionIssue>,
    pub offline: Vec<PartitionIssue>,
}

/// The screen from a Metadata answer and, when the cluster served it, a DescribeCluster
/// answer (which knows about fenced brokers and is preferred for the id and controller).
pub fn brokers_view(meta: &ClusterMeta, described: Option<&ClusterDescription>) -> BrokersView {
    let mut rows: BTreeMap<i32, BrokerRow> = BTreeMap::new();
    let row = |id, address, rack, state| BrokerRow {
        id,
        address,
        rack,
        state,
        leads: 0,
        replicates: 0,
    };
    for b in &meta.brokers {
        let address = format!("{}:{}", b.host, b.port);
        rows.insert(
            b.node_id,
            row(b.node_id, address, b.rack.clone(), BrokerState::Online),
        );
    }
    for b in described.map_or(&[][..], |d| &d.brokers) {
        let state = match b.fenced {
            true => BrokerState::Fenced,
            false => BrokerState::Online,
        };
        let address = format!("{}:{}", b.host, b.port);
        rows.insert(b.id, row(b.id, address, b.rack.clone(), state));
    }
    let (mut under_replicated, mut offline) = (Vec::new(), Vec::new());
    for t in meta.topics.iter().filter(|t| t.error_code == 0) {
        for p in &t.partitions {
            for r in &p.replicas {
                let entry = rows
                    .entry(*r)
                    .or_insert_with(|| row(*r, "-".into(), None, BrokerState::Unknown));
                entry.replicates += 1;
            }
            if let Some(leader) = rows.get_mut(&p.leader) {
                leader.leads += 1;
            }
            let issue = || PartitionIssue {
                topic: t.name.clone(),
                partition: p.partition,
                leader: p.leader,
                leader_epoch: p.leader_epoch,
                replicas: p.replicas.clone(),
                isr: p.isr.clone(),
            };
            if p.leader < 0 {
                offline.push(issue());
            } else if p.isr.len() < p.replicas.len() {
                under_replicated.push(issue());
            }
        }
    }
    let (cluster_id, controller) = match described {
        Some(d) => (Some(d.cluster_id.clone()), d.controller_id),
        None => (meta.cluster_id.clone(), meta.controller),
    };
    BrokersView {
        cluster_id,
        controller,
        brokers: rows.into_values().collect(),
        under_replicated,
        offline,
    }
}

/// `[1, 2, 3]` as `1, 2, 3`.
pub fn ids_label(ids: &[i32]) -> String {
    let ids: Vec<String> = ids.iter().map(i32::to_string).collect();
    ids.join(", ")
}

#[cfg(test)]
mod tests {
    use runnel_client::{BrokerMeta, ClusterBroker, PartitionMeta, TopicMeta};

    use super::*;

    fn partition(partition: i32, leader: i32, replicas: &[i32], isr: &[i32]) -> PartitionMeta {
        PartitionMeta {
            partition,
            leader,
            replicas: replicas.to_vec(),
            isr: isr.to_vec(),
            leader_epoch: 4,
            error_code: 0,
        }
    }

    /// Brokers 1 and 2 alive (3 is down), `gps` with three partitions on all three brokers.
    fn meta() -> ClusterMeta {
        let broker = |id: i32| BrokerMeta {
            node_id: id,
            host: "127.0.0.1".into(),
            port: 9090 + id,
            rack: None,
        };
        ClusterMeta {
            cluster_id: Some("from-metadata".into()),
            controller: 1,
            brokers: vec![broker(2), broker(1)],
            topics: vec![
                TopicMeta {
                    name: "gps".into(),
                    error_code: 0,
                    partitions: vec![
                        partition(0, 1, &[1, 2, 3], &[1, 2]),
                        partition(1, 2, &[2, 3, 1], &[2, 3, 1]),
                        partition(2, -1, &[3], &[]),
                    ],
                },
                TopicMeta {
                    name: "denied".into(),
                    error_code: 29,
                    partitions: vec![partition(0, -1, &[1], &[])],
                },
            ],
        }
    }

    #[test]
    fn given_a_lagging_and_a_leaderless_partition_should_list_each_once() {
        let view = brokers_view(&meta(), None);
        let keys = |issues: &[PartitionIssue]| -> Vec<(String, i32)> {
            issues
                .iter()
                .map(|i| (i.topic.clone(), i.partition))
                .collect()
        };
        assert_eq!(keys(&view.under_replicated), vec![("gps".into(), 0)]);
        assert_eq!(view.under_replicated[0].isr, vec![1, 2]);
        assert_eq!(view.under_replicated[0].replicas, vec![1, 2, 3]);
        assert_eq!(view.under_replicated[0].leader_epoch, 4);
        assert_eq!(keys(&view.offline), vec![("gps".into(), 2)]);
    }

    #[test]
    fn given_metadata_only_should_count_leaders_and_replicas_per_broker() {
        let view = brokers_view(&meta(), None);
        assert_eq!(view.cluster_id.as_deref(), Some("from-metadata"));
        assert_eq!(view.controller, 1);
        let rows: Vec<(i32, &str, BrokerState, usize, usize)> = view
            .brokers
            .iter()
            .map(|b| (b.id, b.address.as_str(), b.state, b.leads, b.replicates))
            .collect();
        assert_eq!(
            rows,
            vec![
                (1, "127.0.0.1:9091", BrokerState::Online, 1, 2),
                (2, "127.0.0.1:9092", BrokerState::Online, 1, 2),
                // Down and not listed: known only as a replica.
                (3, "-", BrokerState::Unknown, 0, 3),
            ]
        );
    }

    #[test]
    fn given_a_fenced_broker_in_describe_cluster_should_show_it_fenced() {
        let described = ClusterDescription {
            cluster_id: "c-1".into(),
            controller_id: 2,
            brokers: vec![ClusterBroker {
                id: 3,
                host: "10.0.0.3".into(),
                port: 9092,
                rack: Some("r3".into()),
                fenced: true,
            }],
        };
        let view = brokers_view(&meta(), Some(&described));
        assert_eq!(view.cluster_id.as_deref(), Some("c-1"));
        assert_eq!(view.controller, 2);
        let three = view.brokers.iter().find(|b| b.id == 3).expect("broker 3");
        assert_eq!(three.state, BrokerState::Fenced);
        assert_eq!(three.address, "10.0.0.3:9092");
        assert_eq!(three.rack.as_deref(), Some("r3"));
        assert_eq!(three.replicates, 3);
        assert_eq!(view.brokers.len(), 3);
    }

    #[test]
    fn given_a_healthy_cluster_should_have_nothing_to_list() {
        let mut healthy = meta();
        healthy.topics.truncate(1);
        healthy.topics[0].partitions = vec![partition(0, 1, &[1, 2], &[2, 1])];
        let view = brokers_view(&healthy, None);
        assert!(view.under_replicated.is_empty());
        assert!(view.offline.is_empty());
        assert_eq!(ids_label(&[1, 2, 3]), "1, 2, 3");
    }
}
