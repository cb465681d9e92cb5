//! Three-node (and learner) quorums over real TCP on 127.0.0.1, with LMDB in temp dirs.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::*;

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_three_voters_when_follower_proposes_should_apply_everywhere_in_order() {
    init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let nodes = start_all(&voter_configs(3, dir.path(), 5000)).await;
    let leader = wait_leader(&nodes.iter().collect::<Vec<_>>()).await;
    let follower = nodes.iter().find(|n| n.cfg.node_id != leader).unwrap();
    assert!(!follower.quorum.is_leader());

    let mut replies = Vec::new();
    for cmd in ["a", "b", "c"] {
        let reply = follower
            .quorum
            .propose(cmd.into(), PROPOSE_TIMEOUT)
            .await
            .unwrap();
        replies.push(String::from_utf8(reply).unwrap());
    }
    for (reply, cmd) in replies.iter().zip(["a", "b", "c"]) {
        assert!(
            reply.starts_with("ok:") && reply.ends_with(&format!(":{cmd}")),
            "{reply}"
        );
    }
    for node in &nodes {
        wait_for("all applied", Duration::from_secs(5), || {
            node.items() == strings(&["a", "b", "c"])
        })
        .await;
        let applied = *node.quorum.applied().borrow();
        assert!(applied >= 4, "applied index {applied}");
    }

    // App RPCs: to a peer, to self, and to the leader.
    let other = nodes
        .iter()
        .find(|n| n.cfg.node_id != follower.cfg.node_id)
        .unwrap();
    let reply = follower
        .quorum
        .call(other.cfg.node_id, b"hi".to_vec(), Duration::from_secs(2))
        .await
        .unwrap();
    assert_eq!(
        reply,
        format!("from:{}:hi", follower.cfg.node_id).into_bytes()
    );
    let reply = follower
        .quorum
        .call_leader(b"hb".to_vec(), Duration::from_secs(2))
        .await
        .unwrap();
    assert_eq!(
        reply,
        format!("from:{}:hb", follower.cfg.node_id).into_bytes()
    );
    assert_eq!(follower.quorum.members().len(), 3);
    assert!(follower.quorum.members().iter().all(|m| m.voter));

    for node in &nodes {
        node.quorum.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_leader_stops_when_others_continue_should_elect_and_old_leader_catches_up() {
    init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let cfgs = voter_configs(3, dir.path(), 5000);
    let mut nodes = start_all(&cfgs).await;
    let leader = wait_leader(&nodes.iter().collect::<Vec<_>>()).await;
    nodes[0]
        .quorum
        .propose(b"x".to_vec(), PROPOSE_TIMEOUT)
        .await
        .unwrap();

    let pos = nodes.iter().position(|n| n.cfg.node_id == leader).unwrap();
    let old = nodes.remove(pos);
    old.quorum.shutdown().await;
    drop(old);

    let rest: Vec<&Node> = nodes.iter().collect();
    wait_for("a new leader", Duration::from_secs(10), || {
        let l = rest[0].quorum.leader();
        l.is_some() && l != Some(leader) && rest.iter().all(|n| n.quorum.leader() == l)
    })
    .await;
    nodes[0]
        .quorum
        .propose(b"y".to_vec(), PROPOSE_TIMEOUT)
        .await
        .unwrap();
    nodes[1]
        .quorum
        .propose(b"z".to_vec(), PROPOSE_TIMEOUT)
        .await
        .unwrap();

    let restarted = start(cfgs[pos].clone()).await;
    assert_eq!(
        restarted.items(),
        strings(&["x"]),
        "state restored from LMDB"
    );
    wait_for("old leader caught up", Duration::from_secs(10), || {
        restarted.items() == strings(&["x", "y", "z"])
    })
    .await;
    for node in nodes.iter().chain([&restarted]) {
        assert_eq!(node.items(), strings(&["x", "y", "z"]));
        node.quorum.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_all_restart_should_restore_state_from_disk() {
    init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let cfgs = voter_configs(3, dir.path(), 5000);
    let nodes = start_all(&cfgs).await;
    wait_leader(&nodes.iter().collect::<Vec<_>>()).await;
    for cmd in ["1", "2", "3"] {
        nodes[2]
            .quorum
            .propose(cmd.into(), PROPOSE_TIMEOUT)
            .await
            .unwrap();
    }
    for node in &nodes {
        wait_for("applied", Duration::from_secs(5), || {
            node.items().len() == 3
        })
        .await;
    }
    for node in &nodes {
        node.quorum.shutdown().await;
    }
    drop(nodes);

    let nodes = start_all(&cfgs).await;
    for node in &nodes {
        assert_eq!(node.items(), strings(&["1", "2", "3"]));
    }
    wait_leader(&nodes.iter().collect::<Vec<_>>()).await;
    nodes[0]
        .quorum
        .propose(b"4".to_vec(), PROPOSE_TIMEOUT)
        .await
        .unwrap();
    for node in &nodes {
        wait_for("applied after restart", Duration::from_secs(5), || {
            node.items() == strings(&["1", "2", "3", "4"])
        })
        .await;
    }
    for node in &nodes {
        node.quorum.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_learner_when_it_joins_should_receive_state_and_forward_proposals() {
    init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let cfgs = voter_configs(3, dir.path(), 5000);
    let nodes = start_all(&cfgs).await;
    wait_leader(&nodes.iter().collect::<Vec<_>>()).await;
    nodes[0]
        .quorum
        .propose(b"a".to_vec(), PROPOSE_TIMEOUT)
        .await
        .unwrap();

    let learner = start(learner_config(4, &cfgs[0], dir.path())).await;
    wait_for("learner caught up", Duration::from_secs(10), || {
        learner.items() == strings(&["a"])
    })
    .await;
    let members = nodes[0].quorum.members();
    let me = members.iter().find(|m| m.id == 4).unwrap();
    assert!(!me.voter);
    assert_eq!(me.addr, learner.cfg.advertised);

    let reply = learner
        .quorum
        .propose(b"b".to_vec(), PROPOSE_TIMEOUT)
        .await
        .unwrap();
    assert!(String::from_utf8(reply).unwrap().ends_with(":b"));
    for node in nodes.iter().chain([&learner]) {
        wait_for("b applied", Duration::from_secs(5), || {
            node.items() == strings(&["a", "b"])
        })
        .await;
    }
    for node in nodes.iter().chain([&learner]) {
        node.quorum.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_purged_log_when_node_restarts_should_catch_up_by_snapshot() {
    init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let cfgs = voter_configs(3, dir.path(), 10);
    let mut nodes = start_all(&cfgs).await;
    let leader = wait_leader(&nodes.iter().collect::<Vec<_>>()).await;
    let pos = nodes.iter().position(|n| n.cfg.node_id != leader).unwrap();
    let stopped = nodes.remove(pos);
    stopped.quorum.shutdown().await;
    drop(stopped);

    let expected: Vec<String> = (0..60).map(|i| format!("e{i}")).collect();
    for cmd in &expected {
        nodes[0]
            .quorum
            .propose(cmd.clone().into_bytes(), PROPOSE_TIMEOUT)
            .await
            .unwrap();
    }
    // The log below the latest snapshot is purged on the leader.
    let leader_dir = cfgs
        .iter()
        .find(|c| c.node_id == leader)
        .unwrap()
        .dir
        .clone();
    assert!(leader_dir.exists());

    let restarted = start(cfgs[pos].clone()).await;
    wait_for("snapshot catch-up", Duration::from_secs(10), || {
        restarted.items() == expected
    })
    .await;
    for node in nodes.iter().chain([&restarted]) {
        node.quorum.shutdown().await;
    }
}
