use super::*;

fn endpoint(id: i32) -> Vec<(String, Endpoint)> {
    vec![(
        "PLAINTEXT".into(),
        Endpoint {
            host: "127.0.0.1".into(),
            port: 9000 + id,
        },
    )]
}

fn three_brokers_and_topic() -> ClusterState {
    let mut s = ClusterState::default();
    for id in 1..=3 {
        assert!(
            s.apply(&Command::RegisterBroker {
                id,
                endpoints: endpoint(id),
                incarnation: format!("i{id}"),
            })
            .is_ok()
        );
    }
    let created = s.apply(&Command::CreateTopic {
        name: "t".into(),
        id: uuid::Uuid::nil(),
        replicas: vec![vec![1, 2, 3], vec![2, 3, 1]],
        configs: BTreeMap::new(),
    });
    assert!(created.is_ok(), "{created:?}");
    s
}

#[test]
fn new_partitions_are_led_by_their_first_replica_with_a_full_isr() {
    let s = three_brokers_and_topic();
    let p = s.partition("t", 0).cloned().expect("partition");
    assert_eq!((p.leader, p.leader_epoch, p.isr), (1, 0, vec![1, 2, 3]));
    assert_eq!(s.partition("t", 1).map(|p| p.leader), Some(2));
}

#[test]
fn fencing_the_leader_elects_the_next_isr_member_and_bumps_the_epoch() {
    let mut s = three_brokers_and_topic();
    s.apply(&Command::FenceBroker {
        id: 1,
        unclean: false,
    });
    let p = s.partition("t", 0).cloned().expect("partition");
    assert_eq!((p.leader, p.leader_epoch, p.isr), (2, 1, vec![2, 3]));
    // Partition 1 was led by 2; broker 1 only leaves its ISR.
    let q = s.partition("t", 1).cloned().expect("partition");
    assert_eq!((q.leader, q.leader_epoch, q.isr), (2, 0, vec![2, 3]));
    assert_eq!(s.live_brokers(), vec![2, 3]);
}

#[test]
fn the_last_isr_member_going_away_makes_the_partition_offline_until_it_returns() {
    let mut s = three_brokers_and_topic();
    s.apply(&Command::FenceBroker {
        id: 2,
        unclean: false,
    });
    s.apply(&Command::FenceBroker {
        id: 3,
        unclean: false,
    });
    s.apply(&Command::FenceBroker {
        id: 1,
        unclean: false,
    });
    let p = s.partition("t", 0).cloned().expect("partition");
    assert_eq!((p.leader, p.isr.clone()), (-1, vec![1]));
    // Broker 2 is back but was not in the ISR: clean election keeps the partition offline.
    s.apply(&Command::UnfenceBroker { id: 2 });
    assert_eq!(s.partition("t", 0).map(|p| p.leader), Some(-1));
    s.apply(&Command::RegisterBroker {
        id: 1,
        endpoints: endpoint(1),
        incarnation: "again".into(),
    });
    let p = s.partition("t", 0).cloned().expect("partition");
    assert_eq!(p.leader, 1);
    assert!(p.leader_epoch > 1);
}

#[test]
fn unclean_election_picks_a_live_replica_outside_the_isr() {
    let mut s = three_brokers_and_topic();
    s.apply(&Command::FenceBroker {
        id: 2,
        unclean: false,
    });
    s.apply(&Command::FenceBroker {
        id: 3,
        unclean: false,
    });
    s.apply(&Command::UnfenceBroker { id: 3 });
    s.apply(&Command::FenceBroker {
        id: 1,
        unclean: true,
    });
    let p = s.partition("t", 0).cloned().expect("partition");
    assert_eq!((p.leader, p.isr), (3, vec![3]));
}

#[test]
fn alter_isr_needs_the_current_leader_epoch() {
    let mut s = three_brokers_and_topic();
    let stale = s.apply(&Command::AlterIsr {
        topic: "t".into(),
        partition: 0,
        leader: 1,
        leader_epoch: 7,
        isr: vec![1],
    });
    assert_eq!(stale.error_code, E::FencedLeaderEpoch.code());
    let ok = s.apply(&Command::AlterIsr {
        topic: "t".into(),
        partition: 0,
        leader: 1,
        leader_epoch: 0,
        isr: vec![1, 3],
    });
    assert!(ok.is_ok());
    assert_eq!(s.partition("t", 0).map(|p| p.isr.clone()), Some(vec![1, 3]));
}

#[test]
fn reassignment_completes_when_the_new_replica_joins_the_isr() {
    let mut s = ClusterState::default();
    for id in 1..=4 {
        s.apply(&Command::RegisterBroker {
            id,
            endpoints: endpoint(id),
            incarnation: String::new(),
        });
    }
    s.apply(&Command::CreateTopic {
        name: "t".into(),
        id: uuid::Uuid::nil(),
        replicas: vec![vec![1, 2, 3]],
        configs: BTreeMap::new(),
    });
    let r = s.apply(&Command::Reassign {
        topic: "t".into(),
        partition: 0,
        target: Some(vec![2, 3, 4]),
    });
    assert!(r.is_ok(), "{r:?}");
    let p = s.partition("t", 0).cloned().expect("partition");
    assert_eq!(
        (p.replicas, p.adding, p.removing),
        (vec![2, 3, 4, 1], vec![4], vec![1])
    );
    s.apply(&Command::AlterIsr {
        topic: "t".into(),
        partition: 0,
        leader: 1,
        leader_epoch: 0,
        isr: vec![1, 2, 3, 4],
    });
    let p = s.partition("t", 0).cloned().expect("partition");
    assert_eq!((p.replicas, p.isr), (vec![2, 3, 4], vec![2, 3, 4]));
    assert!(p.adding.is_empty() && p.removing.is_empty());
    assert_eq!((p.leader, p.leader_epoch), (2, 1));
}

#[test]
fn assignments_must_name_registered_brokers_once() {
    let mut s = three_brokers_and_topic();
    let bad = s.apply(&Command::CreateTopic {
        name: "u".into(),
        id: uuid::Uuid::nil(),
        replicas: vec![vec![1, 1]],
        configs: BTreeMap::new(),
    });
    assert_eq!(bad.error_code, E::InvalidReplicaAssignment.code());
    let bad = s.apply(&Command::CreateTopic {
        name: "u".into(),
        id: uuid::Uuid::nil(),
        replicas: vec![vec![9]],
        configs: BTreeMap::new(),
    });
    assert_eq!(bad.error_code, E::InvalidReplicaAssignment.code());
    assert!(!s.topics.contains_key("u"));
}
