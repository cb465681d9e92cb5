//! The matching rules of [`super::Authorizer`], one test per rule, against an in-memory store.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use super::*;
use crate::log::{Pending, ScramCredential, ScramMechanism};

#[derive(Default)]
struct MemStore {
    acls: Mutex<BTreeSet<AclBinding>>,
    fail: std::sync::atomic::AtomicBool,
}

fn ready<T>(value: T) -> Pending<T> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let _ = tx.send(value);
    rx
}

impl SecurityStore for MemStore {
    fn scram_credentials(&self) -> Result<Vec<ScramCredential>, StoreError> {
        Ok(Vec::new())
    }
    fn alter_scram_credentials(
        &self,
        _: Vec<ScramCredential>,
        _: Vec<(String, ScramMechanism)>,
    ) -> Pending<Result<(), StoreError>> {
        ready(Ok(()))
    }
    fn acls(&self) -> Result<Vec<AclBinding>, StoreError> {
        Ok(self.acls.lock().expect("lock").iter().cloned().collect())
    }
    fn alter_acls(
        &self,
        create: Vec<AclBinding>,
        delete: Vec<AclBinding>,
    ) -> Pending<Result<(), StoreError>> {
        if self.fail.load(Ordering::Relaxed) {
            return ready(Err(StoreError::Io("disk on fire".into())));
        }
        let mut acls = self.acls.lock().expect("lock");
        for b in delete {
            acls.remove(&b);
        }
        acls.extend(create);
        ready(Ok(()))
    }
}

const TOPIC: i8 = 2;
const GROUP: i8 = 3;
const CLUSTER: i8 = 4;
const LITERAL: i8 = 3;
const PREFIXED: i8 = 4;
const DENY: i8 = 2;
const ALLOW: i8 = 3;

fn binding(
    rt: i8,
    name: &str,
    pattern: i8,
    principal: &str,
    op: Operation,
    perm: i8,
) -> AclBinding {
    AclBinding {
        resource_type: rt,
        resource_name: name.into(),
        pattern_type: pattern,
        principal: principal.into(),
        host: "*".into(),
        operation: op.code(),
        permission_type: perm,
    }
}

fn allow(rt: i8, name: &str, principal: &str, op: Operation) -> AclBinding {
    binding(rt, name, LITERAL, principal, op, ALLOW)
}

fn authorizer(bindings: Vec<AclBinding>, settings: Settings) -> (Authorizer, Arc<MemStore>) {
    let store = Arc::new(MemStore::default());
    store.acls.lock().expect("lock").extend(bindings);
    let a = Authorizer::load(store.clone(), settings).expect("load");
    (a, store)
}

fn closed(bindings: Vec<AclBinding>) -> Authorizer {
    authorizer(bindings, Settings::default()).0
}

fn session(principal: &str, peer: &str) -> Session {
    Session {
        listener: Arc::from("TEST"),
        advertised: Arc::new(("localhost".into(), 9092)),
        peer: Some(peer.parse::<SocketAddr>().expect("addr")),
        principal: Arc::from(principal),
    }
}

fn alice() -> Session {
    session("User:alice", "10.0.0.1:5000")
}

#[test]
fn no_acls_follow_allow_everyone() {
    let (open, _) = authorizer(
        Vec::new(),
        Settings {
            allow_everyone_if_no_acl_found: true,
            ..Settings::default()
        },
    );
    assert!(open.is_open());
    assert!(open.allows(&alice(), Operation::Write, ResourceType::Topic, "t"));
    let shut = closed(Vec::new());
    assert!(!shut.is_open());
    assert!(!shut.allows(&alice(), Operation::Write, ResourceType::Topic, "t"));
}

#[test]
fn allow_everyone_only_covers_resources_without_any_binding() {
    let (a, _) = authorizer(
        vec![allow(TOPIC, "secret", "User:bob", Operation::Read)],
        Settings {
            allow_everyone_if_no_acl_found: true,
            ..Settings::default()
        },
    );
    assert!(!a.is_open());
    assert!(a.allows(&alice(), Operation::Read, ResourceType::Topic, "public"));
    assert!(!a.allows(&alice(), Operation::Read, ResourceType::Topic, "secret"));
    // Other resource types have no binding at all.
    assert!(a.allows(&alice(), Operation::Read, ResourceType::Group, "secret"));
}

#[test]
fn literal_matches_exactly_and_star_matches_all() {
    let a = closed(vec![
        allow(TOPIC, "gps", "User:alice", Operation::Write),
        allow(TOPIC, "*", "User:alice", Operation::Read),
    ]);
    assert!(a.allows(&alice(), Operation::Write, ResourceType::Topic, "gps"));
    assert!(!a.allows(&alice(), Operation::Write, ResourceType::Topic, "gps2"));
    assert!(a.allows(&alice(), Operation::Read, ResourceType::Topic, "anything"));
    // The same name of another resource type is another resource.
    assert!(!a.allows(&alice(), Operation::Write, ResourceType::Group, "gps"));
}

#[test]
fn prefixed_matches_names_that_start_with_it() {
    let a = closed(vec![binding(
        TOPIC,
        "sensors.",
        PREFIXED,
        "User:alice",
        Operation::Write,
        ALLOW,
    )]);
    assert!(a.allows(
        &alice(),
        Operation::Write,
        ResourceType::Topic,
        "sensors.gps"
    ));
    assert!(a.allows(&alice(), Operation::Write, ResourceType::Topic, "sensors."));
    assert!(!a.allows(&alice(), Operation::Write, ResourceType::Topic, "sensors"));
    assert!(!a.allows(
        &alice(),
        Operation::Write,
        ResourceType::Topic,
        "x.sensors.gps"
    ));
}

#[test]
fn deny_wins_over_allow() {
    let a = closed(vec![
        binding(TOPIC, "*", LITERAL, "User:*", Operation::All, ALLOW),
        binding(
            TOPIC,
            "private.",
            PREFIXED,
            "User:alice",
            Operation::Read,
            DENY,
        ),
    ]);
    assert!(a.allows(&alice(), Operation::Read, ResourceType::Topic, "public"));
    assert!(!a.allows(&alice(), Operation::Read, ResourceType::Topic, "private.x"));
    // A deny of READ does not deny other operations (Kafka: deny matches the operation or ALL).
    assert!(a.allows(&alice(), Operation::Write, ResourceType::Topic, "private.x"));
    let all = closed(vec![
        allow(TOPIC, "t", "User:alice", Operation::Write),
        binding(TOPIC, "t", LITERAL, "User:*", Operation::All, DENY),
    ]);
    assert!(!all.allows(&alice(), Operation::Write, ResourceType::Topic, "t"));
}

#[test]
fn implied_operations() {
    let a = closed(vec![
        allow(TOPIC, "r", "User:alice", Operation::Read),
        allow(TOPIC, "w", "User:alice", Operation::Write),
        allow(TOPIC, "d", "User:alice", Operation::Delete),
        allow(TOPIC, "a", "User:alice", Operation::Alter),
        allow(TOPIC, "c", "User:alice", Operation::Create),
        allow(TOPIC, "ac", "User:alice", Operation::AlterConfigs),
        allow(TOPIC, "all", "User:alice", Operation::All),
    ]);
    for t in ["r", "w", "d", "a", "all"] {
        assert!(
            a.allows(&alice(), Operation::Describe, ResourceType::Topic, t),
            "{t}"
        );
    }
    assert!(!a.allows(&alice(), Operation::Describe, ResourceType::Topic, "c"));
    assert!(!a.allows(&alice(), Operation::Write, ResourceType::Topic, "r"));
    assert!(a.allows(
        &alice(),
        Operation::DescribeConfigs,
        ResourceType::Topic,
        "ac"
    ));
    assert!(!a.allows(&alice(), Operation::AlterConfigs, ResourceType::Topic, "r"));
    for op in ResourceType::Topic.operations() {
        assert!(
            a.allows(&alice(), *op, ResourceType::Topic, "all"),
            "{op:?}"
        );
    }
}

#[test]
fn principal_and_host_wildcards() {
    let mut from_host = allow(GROUP, "g", "User:*", Operation::Read);
    from_host.host = "10.0.0.1".into();
    let a = closed(vec![from_host]);
    assert!(a.allows(&alice(), Operation::Read, ResourceType::Group, "g"));
    let bob_same_host = session("User:bob", "10.0.0.1:6000");
    assert!(a.allows(&bob_same_host, Operation::Read, ResourceType::Group, "g"));
    let alice_elsewhere = session("User:alice", "10.0.0.2:5000");
    assert!(!a.allows(&alice_elsewhere, Operation::Read, ResourceType::Group, "g"));
    // IPv4-mapped IPv6 peers match their IPv4 binding.
    let mapped = session("User:alice", "[::ffff:10.0.0.1]:5000");
    assert!(a.allows(&mapped, Operation::Read, ResourceType::Group, "g"));
    // Requests without a peer match only host `*`.
    let mut internal = alice();
    internal.peer = None;
    assert!(!a.allows(&internal, Operation::Read, ResourceType::Group, "g"));
}

#[test]
fn super_users_bypass_even_deny() {
    let (a, _) = authorizer(
        vec![binding(TOPIC, "*", LITERAL, "User:*", Operation::All, DENY)],
        Settings {
            super_users: vec!["User:admin".into()],
            allow_everyone_if_no_acl_found: false,
        },
    );
    let admin = session("User:admin", "127.0.0.1:1");
    assert!(a.allows(&admin, Operation::Delete, ResourceType::Topic, "t"));
    assert!(a.allows_cluster(&admin, Operation::Alter));
    assert!(!a.allows(&alice(), Operation::Read, ResourceType::Topic, "t"));
}

#[test]
fn allows_some_follows_kip_679() {
    // An allowed literal or prefix that no deny dominates.
    let a = closed(vec![allow(TOPIC, "t", "User:alice", Operation::Write)]);
    assert!(a.allows_some(&alice(), Operation::Write, ResourceType::Topic));
    assert!(!a.allows_some(&alice(), Operation::Read, ResourceType::Topic));
    let bob = session("User:bob", "10.0.0.1:1");
    assert!(!a.allows_some(&bob, Operation::Write, ResourceType::Topic));
    let dominated = closed(vec![
        binding(
            TOPIC,
            "sensors.gps",
            PREFIXED,
            "User:alice",
            Operation::Write,
            ALLOW,
        ),
        binding(
            TOPIC,
            "sensors.",
            PREFIXED,
            "User:alice",
            Operation::Write,
            DENY,
        ),
    ]);
    assert!(!dominated.allows_some(&alice(), Operation::Write, ResourceType::Topic));
    let literal_denied = closed(vec![
        allow(TOPIC, "t", "User:alice", Operation::Write),
        binding(TOPIC, "t", LITERAL, "User:alice", Operation::Write, DENY),
    ]);
    assert!(!literal_denied.allows_some(&alice(), Operation::Write, ResourceType::Topic));
    let wildcard_denied = closed(vec![
        allow(TOPIC, "t", "User:alice", Operation::Write),
        binding(TOPIC, "*", LITERAL, "User:*", Operation::All, DENY),
    ]);
    assert!(!wildcard_denied.allows_some(&alice(), Operation::Write, ResourceType::Topic));
    let wildcard = closed(vec![allow(TOPIC, "*", "User:*", Operation::Write)]);
    assert!(wildcard.allows_some(&alice(), Operation::Write, ResourceType::Topic));
}

#[test]
fn authorized_operations_bits() {
    let a = closed(vec![
        allow(TOPIC, "t", "User:alice", Operation::Read),
        allow(CLUSTER, CLUSTER_NAME, "User:alice", Operation::Create),
    ]);
    let bits = a.authorized_operations(&alice(), ResourceType::Topic, "t");
    assert_eq!(
        bits,
        (1 << 3) | (1 << 8),
        "READ and the DESCRIBE it implies"
    );
    assert_eq!(
        a.authorized_operations(&alice(), ResourceType::Cluster, CLUSTER_NAME),
        1 << 5
    );
}

#[test]
fn filters_match_like_kafka() {
    let literal = allow(TOPIC, "gps", "User:alice", Operation::Read);
    let star = allow(TOPIC, "*", "User:bob", Operation::Write);
    let prefix = binding(TOPIC, "gp", PREFIXED, "User:alice", Operation::Read, DENY);
    let group = allow(GROUP, "gps", "User:alice", Operation::Read);
    let any = AclFilter {
        resource_type: codes::ANY,
        resource_name: None,
        pattern_type: codes::ANY,
        principal: None,
        host: None,
        operation: codes::ANY,
        permission_type: codes::ANY,
    };
    let all = [&literal, &star, &prefix, &group];
    assert!(all.iter().all(|b| any.matches(b)));
    let exact = AclFilter {
        resource_type: TOPIC,
        resource_name: Some("gps".into()),
        ..any.clone()
    };
    let hits: Vec<bool> = all.iter().map(|b| exact.matches(b)).collect();
    assert_eq!(
        hits,
        [true, false, false, false],
        "ANY pattern: exact names only"
    );
    let matching = AclFilter {
        pattern_type: codes::MATCH,
        ..exact.clone()
    };
    let hits: Vec<bool> = all.iter().map(|b| matching.matches(b)).collect();
    assert_eq!(
        hits,
        [true, true, true, false],
        "MATCH: literal, * and prefixes"
    );
    let prefixed_only = AclFilter {
        pattern_type: PREFIXED,
        resource_name: Some("gp".into()),
        ..exact.clone()
    };
    let hits: Vec<bool> = all.iter().map(|b| prefixed_only.matches(b)).collect();
    assert_eq!(hits, [false, false, true, false]);
    let entry = AclFilter {
        principal: Some("User:alice".into()),
        operation: Operation::Read.code(),
        permission_type: ALLOW,
        ..any.clone()
    };
    let hits: Vec<bool> = all.iter().map(|b| entry.matches(b)).collect();
    assert_eq!(hits, [true, false, false, true]);
    assert!(
        AclFilter {
            operation: 0,
            ..any.clone()
        }
        .validate()
        .is_err()
    );
    assert!(
        AclFilter {
            resource_type: 9,
            ..any.clone()
        }
        .validate()
        .is_err()
    );
    assert!(
        AclFilter {
            pattern_type: 5,
            ..any.clone()
        }
        .validate()
        .is_err()
    );
    assert!(
        AclFilter {
            permission_type: 0,
            ..any
        }
        .validate()
        .is_err()
    );
}

#[test]
fn bindings_are_validated_like_kafka() {
    let ok = allow(TOPIC, "t", "User:alice", Operation::Read);
    assert_eq!(binding::validate(&ok), Ok(()));
    let bad = |f: &dyn Fn(&mut AclBinding)| {
        let mut b = ok.clone();
        f(&mut b);
        binding::validate(&b).expect_err("must be refused")
    };
    assert!(bad(&|b| b.principal = "alice".into()).contains("Type:name"));
    assert!(bad(&|b| b.principal = "User:".into()).contains("Type:name"));
    assert!(bad(&|b| b.resource_name.clear()).contains("empty"));
    assert!(bad(&|b| b.pattern_type = codes::MATCH).contains("MATCH"));
    assert!(bad(&|b| b.pattern_type = codes::ANY).contains("ANY"));
    assert!(bad(&|b| b.pattern_type = 0).contains("pattern type"));
    assert!(bad(&|b| b.resource_type = codes::ANY).contains("resource type"));
    assert!(bad(&|b| b.operation = codes::ANY).contains("operation"));
    assert!(bad(&|b| b.permission_type = codes::ANY).contains("permission"));
    assert!(bad(&|b| b.host = "example.com".into()).contains("IP address"));
    assert!(
        bad(&|b| {
            b.resource_type = CLUSTER;
            b.resource_name = "mine".into();
        })
        .contains(CLUSTER_NAME)
    );
    let mut v6 = ok.clone();
    v6.host = "::1".into();
    assert_eq!(binding::validate(&v6), Ok(()));
}

#[tokio::test]
async fn changes_are_durable_before_they_apply() {
    let (a, store) = authorizer(Vec::new(), Settings::default());
    let b = allow(TOPIC, "t", "User:alice", Operation::Write);
    a.create(vec![b.clone(), b.clone()]).await.expect("create");
    assert!(a.allows(&alice(), Operation::Write, ResourceType::Topic, "t"));
    assert_eq!(store.acls().expect("acls"), vec![b.clone()]);
    // A failed write changes nothing.
    store.fail.store(true, Ordering::Relaxed);
    let other = allow(TOPIC, "u", "User:alice", Operation::Write);
    assert!(a.create(vec![other]).await.is_err());
    assert!(!a.allows(&alice(), Operation::Write, ResourceType::Topic, "u"));
    store.fail.store(false, Ordering::Relaxed);
    let filter = AclFilter {
        resource_type: TOPIC,
        resource_name: Some("t".into()),
        pattern_type: codes::MATCH,
        principal: None,
        host: None,
        operation: codes::ANY,
        permission_type: codes::ANY,
    };
    let deleted = a.delete(&[filter.clone(), filter]).await.expect("delete");
    assert_eq!(deleted, vec![vec![b.clone()], vec![b]]);
    assert!(!a.allows(&alice(), Operation::Write, ResourceType::Topic, "t"));
    assert!(store.acls().expect("acls").is_empty());
}

#[tokio::test]
async fn the_fast_path_closes_with_the_first_binding_and_reopens() {
    let (a, _) = authorizer(
        Vec::new(),
        Settings {
            allow_everyone_if_no_acl_found: true,
            ..Settings::default()
        },
    );
    assert!(a.is_open());
    let b = binding(TOPIC, "*", LITERAL, "User:*", Operation::Write, DENY);
    a.create(vec![b]).await.expect("create");
    assert!(!a.is_open());
    assert!(!a.allows(&alice(), Operation::Write, ResourceType::Topic, "t"));
    let any = AclFilter {
        resource_type: codes::ANY,
        resource_name: None,
        pattern_type: codes::ANY,
        principal: None,
        host: None,
        operation: codes::ANY,
        permission_type: codes::ANY,
    };
    a.delete(&[any]).await.expect("delete");
    assert!(a.is_open());
}
