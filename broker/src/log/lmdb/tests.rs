//! Store tests against a real LMDB environment in a temporary directory.

use std::collections::BTreeMap;

use kafka_protocol::records::Compression;

use super::*;
use crate::log::{CommittedOffset, OffsetCommit, OffsetStore, TopicPartition};
use crate::protocol::batch;

pub(super) fn topic(num: u32, partitions: u32) -> TopicRecord {
    TopicRecord {
        name: format!("t{num}"),
        id: uuid::Uuid::new_v4(),
        num,
        partitions,
        configs: BTreeMap::new(),
    }
}

pub(super) fn item(part: &Arc<PartitionLog>, n: i32, ts0: i64) -> AppendItem {
    let valid = batch::validate(batch::tests::encode(n, ts0, Compression::None)).expect("valid");
    AppendItem {
        partition: part.clone(),
        batch: valid.bytes,
        record_count: valid.record_count,
        max_timestamp: valid.max_timestamp,
        leader_epoch: 0,
        producer: None,
    }
}

pub(super) fn open(dir: &Path) -> LmdbStore {
    LmdbStore::open(dir, Some(64 * 1024 * 1024)).expect("open")
}

pub(super) fn id(topic: u32, partition: u32) -> PartitionId {
    PartitionId { topic, partition }
}

#[test]
fn appended_batches_get_dense_offsets_and_survive_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let store = open(dir.path());
        store
            .put_topic(topic(1, 2))
            .blocking_recv()
            .expect("reply")
            .expect("put");
        let p0 = store.partition(id(1, 0)).expect("partition");
        let results = store
            .append(vec![item(&p0, 3, 100), item(&p0, 2, 200)])
            .blocking_recv()
            .expect("reply");
        let bases: Vec<i64> = results
            .into_iter()
            .map(|r| r.expect("ok").base_offset)
            .collect();
        assert_eq!(bases, vec![0, 3]);
        assert_eq!(p0.next_offset(), 5);
    }
    let store = open(dir.path());
    let p0 = store.partition(id(1, 0)).expect("reloaded");
    assert_eq!(p0.next_offset(), 5);
    let chunk = store.read(id(1, 0), 4, 1 << 20, true).expect("read");
    // The batch containing offset 4 starts at 3: whole batches are returned.
    assert_eq!(
        batch::stored_header(&chunk.records)
            .expect("header")
            .base_offset,
        3
    );
    assert_eq!(store.load_topics().expect("topics").len(), 1);
}

#[test]
fn read_respects_bounds_and_max_bytes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path());
    store
        .put_topic(topic(1, 1))
        .blocking_recv()
        .expect("reply")
        .expect("put");
    let p = store.partition(id(1, 0)).expect("partition");
    for i in 0..4 {
        store
            .append(vec![item(&p, 1, i)])
            .blocking_recv()
            .expect("reply")[0]
            .as_ref()
            .expect("ok");
    }
    let one = store.read(id(1, 0), 0, 1, true).expect("read");
    assert!(!one.records.is_empty(), "at least one batch");
    let none = store.read(id(1, 0), 0, 1, false).expect("read");
    assert!(none.records.is_empty());
    let all = store.read(id(1, 0), 0, 1 << 20, true).expect("read");
    assert_eq!(all.records.len(), 4 * one.records.len());
    assert!(
        store
            .read(id(1, 0), 4, 100, true)
            .expect("at end")
            .records
            .is_empty()
    );
    assert!(matches!(
        store.read(id(1, 0), 5, 100, true),
        Err(StoreError::OffsetOutOfRange { .. })
    ));
}

#[test]
fn timestamps_find_offsets_and_truncation_keeps_lookups_right() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path());
    store
        .put_topic(topic(1, 1))
        .blocking_recv()
        .expect("reply")
        .expect("put");
    let p = store.partition(id(1, 0)).expect("partition");
    // Batches of 10 records with timestamps 1000.., 2000.., 3000.. then an older one.
    for ts in [1000, 2000, 3000, 500] {
        store
            .append(vec![item(&p, 10, ts)])
            .blocking_recv()
            .expect("reply")[0]
            .as_ref()
            .expect("ok");
    }
    let at = |ts| store.offset_for_timestamp(id(1, 0), ts).expect("lookup");
    assert_eq!(at(0).map(|f| f.offset), Some(0));
    assert_eq!(at(2005).map(|f| f.offset), Some(15));
    assert_eq!(at(3009).map(|f| f.offset), Some(29));
    assert_eq!(at(3010), None);
    assert_eq!(
        store
            .max_timestamp(id(1, 0))
            .expect("max")
            .map(|f| f.offset),
        Some(29)
    );

    let t = store
        .truncate_front(id(1, 0), 12, 100)
        .blocking_recv()
        .expect("reply")
        .expect("truncate");
    assert_eq!(t.log_start, 12);
    assert_eq!(p.log_start(), 12);
    assert_eq!(
        at(0).map(|f| f.offset),
        Some(12),
        "never below the log start"
    );
    assert!(matches!(
        store.read(id(1, 0), 5, 100, true),
        Err(StoreError::OffsetOutOfRange { .. })
    ));
    let policy = Retention {
        before_timestamp: Some(3000),
        max_bytes: None,
    };
    assert_eq!(
        store.retention_point(id(1, 0), policy).expect("retention"),
        20
    );
}

#[test]
fn full_budget_refuses_appends_but_deletes_still_work() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = LmdbStore::open(dir.path(), Some(8 * 1024 * 1024)).expect("open");
    store
        .put_topic(topic(1, 1))
        .blocking_recv()
        .expect("reply")
        .expect("put");
    let p = store.partition(id(1, 0)).expect("partition");
    let mut refused = None;
    for i in 0..10_000 {
        let r = store
            .append(vec![item(&p, 200, i)])
            .blocking_recv()
            .expect("reply");
        if let Err(e) = &r[0] {
            refused = Some(e.clone());
            break;
        }
    }
    assert!(
        matches!(refused, Some(StoreError::DiskFull { .. })),
        "{refused:?}"
    );
    let before = p.next_offset();
    let t = store
        .truncate_front(id(1, 0), before, usize::MAX)
        .blocking_recv()
        .expect("reply")
        .expect("delete on a full disk");
    assert_eq!(t.log_start, before);
    let again = store
        .append(vec![item(&p, 200, 0)])
        .blocking_recv()
        .expect("reply");
    assert!(
        again[0].is_ok(),
        "space is reused after deletion: {:?}",
        again[0]
    );
}

#[test]
fn idempotent_retries_get_their_original_offset_even_after_reopen() {
    use crate::log::producers::ProducerBatch;
    let dir = tempfile::tempdir().expect("tempdir");
    let producer = |first_seq| {
        Some(ProducerBatch {
            producer_id: 42,
            epoch: 0,
            first_seq,
            last_seq: first_seq + 2,
        })
    };
    let with = |part: &Arc<PartitionLog>, first_seq| AppendItem {
        producer: producer(first_seq),
        ..item(part, 3, 0)
    };
    {
        let store = open(dir.path());
        store
            .put_topic(topic(1, 1))
            .blocking_recv()
            .expect("reply")
            .expect("put");
        let p = store.partition(id(1, 0)).expect("partition");
        let first = store
            .append(vec![with(&p, 0), with(&p, 3)])
            .blocking_recv()
            .expect("reply");
        assert_eq!(first[1].as_ref().expect("ok").base_offset, 3);
        // The same batch again in one group: a duplicate, not a new append.
        let again = store
            .append(vec![with(&p, 0)])
            .blocking_recv()
            .expect("reply");
        assert_eq!(again[0].as_ref().expect("dup").base_offset, 0);
        assert_eq!(p.next_offset(), 6);
    }
    let store = open(dir.path());
    let p = store.partition(id(1, 0)).expect("partition");
    let retry = store
        .append(vec![with(&p, 3)])
        .blocking_recv()
        .expect("reply");
    assert_eq!(retry[0].as_ref().expect("dup after reopen").base_offset, 3);
    let gap = store
        .append(vec![with(&p, 9)])
        .blocking_recv()
        .expect("reply");
    assert!(matches!(
        gap[0],
        Err(StoreError::OutOfOrderSequence {
            expected: 6,
            got: 9
        })
    ));
    let stale = AppendItem {
        producer: Some(ProducerBatch {
            epoch: -1,
            ..producer(6).expect("batch")
        }),
        ..item(&p, 3, 0)
    };
    let fenced = store.append(vec![stale]).blocking_recv().expect("reply");
    assert!(matches!(fenced[0], Err(StoreError::ProducerFenced { .. })));
    assert_eq!(p.next_offset(), 6, "nothing appended by refused batches");
    let expired = store
        .expire_producers(i64::MAX)
        .blocking_recv()
        .expect("reply")
        .expect("expire");
    assert_eq!(expired, 1);
    let fresh = store
        .append(vec![with(&p, 9)])
        .blocking_recv()
        .expect("reply");
    assert!(
        fresh[0].is_ok(),
        "a producer without state may start anywhere"
    );
}

fn tp(topic: &str, partition: i32) -> TopicPartition {
    TopicPartition {
        topic: topic.into(),
        partition,
    }
}

fn commit_of(group: &str, topic: &str, partition: i32, offset: i64, ts: i64) -> OffsetCommit {
    OffsetCommit {
        group: group.into(),
        partition: tp(topic, partition),
        offset: CommittedOffset {
            offset,
            leader_epoch: 3,
            metadata: format!("m{offset}"),
            commit_timestamp_ms: ts,
        },
    }
}

fn commit_all(store: &LmdbStore, commits: Vec<OffsetCommit>) {
    store
        .commit_offsets(commits)
        .blocking_recv()
        .expect("reply")
        .expect("commit");
}

#[test]
fn committed_offsets_survive_reopen_and_fetch_by_partition() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let store = open(dir.path());
        commit_all(
            &store,
            vec![
                commit_of("g1", "a", 0, 10, 1),
                commit_of("g1", "a", 1, 11, 1),
                commit_of("g1", "b", 0, 12, 1),
                commit_of("g2", "a", 0, 20, 1),
            ],
        );
        // A later commit overwrites.
        commit_all(&store, vec![commit_of("g1", "a", 0, 15, 2)]);
    }
    let store = open(dir.path());
    let all = store.fetch_offsets("g1", None).expect("fetch");
    let offsets: Vec<_> = all.iter().map(|(k, v)| (k.clone(), v.offset)).collect();
    assert_eq!(
        offsets,
        vec![(tp("a", 0), 15), (tp("a", 1), 11), (tp("b", 0), 12)]
    );
    let first = &all[&tp("a", 0)];
    assert_eq!(first.metadata, "m15");
    assert_eq!((first.leader_epoch, first.commit_timestamp_ms), (3, 2));
    let some = store
        .fetch_offsets("g1", Some(&[tp("b", 0), tp("c", 0)]))
        .expect("fetch");
    assert_eq!(some.keys().cloned().collect::<Vec<_>>(), vec![tp("b", 0)]);
    assert!(
        store
            .fetch_offsets("nobody", None)
            .expect("fetch")
            .is_empty()
    );
    assert_eq!(store.offset_groups().expect("groups"), vec!["g1", "g2"]);
}

#[test]
fn group_ids_that_prefix_each_other_stay_apart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path());
    commit_all(
        &store,
        vec![
            commit_of("g", "t", 0, 1, 1),
            commit_of("g\0", "t", 0, 2, 1),
            commit_of("gg", "t", 0, 3, 1),
            commit_of("", "t", 0, 4, 1),
        ],
    );
    let g = store.fetch_offsets("g", None).expect("fetch");
    assert_eq!(g.values().map(|o| o.offset).collect::<Vec<_>>(), vec![1]);
    assert_eq!(
        store.offset_groups().expect("groups"),
        vec!["", "g", "g\0", "gg"]
    );
    let deleted = store
        .delete_offsets("g".into(), None)
        .blocking_recv()
        .expect("reply")
        .expect("delete");
    assert_eq!(deleted, 1);
    assert_eq!(
        store.offset_groups().expect("groups"),
        vec!["", "g\0", "gg"]
    );
}

#[test]
fn a_batch_with_an_unstorable_key_writes_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path());
    let result = store
        .commit_offsets(vec![
            commit_of("g", "t", 0, 1, 1),
            commit_of(&"x".repeat(600), "t", 0, 1, 1),
        ])
        .blocking_recv()
        .expect("reply");
    assert!(result.is_err());
    assert!(store.offset_groups().expect("groups").is_empty());
}

#[test]
fn deleting_partitions_expiry_and_topic_deletion_remove_offsets() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path());
    let mut t = topic(1, 1);
    t.name = "a".into();
    store
        .put_topic(t.clone())
        .blocking_recv()
        .expect("reply")
        .expect("put");
    commit_all(
        &store,
        vec![
            commit_of("old", "a", 0, 1, 100),
            commit_of("old", "b", 0, 1, 100),
            commit_of("fresh", "a", 0, 1, 100),
            commit_of("fresh", "b", 0, 1, 900),
            commit_of("busy", "b", 0, 1, 100),
        ],
    );
    let deleted = store
        .delete_offsets("fresh".into(), Some(vec![tp("a", 0), tp("zz", 9)]))
        .blocking_recv()
        .expect("reply")
        .expect("delete");
    assert_eq!(deleted, 1);
    // "busy" is not offered for expiry (the coordinator says it has members).
    let expired = store
        .expire_offsets(vec!["old".into(), "fresh".into(), "none".into()], 500)
        .blocking_recv()
        .expect("reply")
        .expect("expire");
    assert_eq!(expired, vec!["old"]);
    assert_eq!(
        store.offset_groups().expect("groups"),
        vec!["busy", "fresh"]
    );
    commit_all(&store, vec![commit_of("busy", "a", 0, 7, 100)]);
    store
        .delete_topic(t)
        .blocking_recv()
        .expect("reply")
        .expect("delete topic");
    let busy = store.fetch_offsets("busy", None).expect("fetch");
    assert_eq!(busy.keys().cloned().collect::<Vec<_>>(), vec![tp("b", 0)]);
}

#[test]
fn timestamp_lookup_inside_compressed_batches() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path());
    store
        .put_topic(topic(1, 1))
        .blocking_recv()
        .expect("reply")
        .expect("put");
    let p = store.partition(id(1, 0)).expect("partition");
    for (i, compression) in [
        Compression::Gzip,
        Compression::Zstd,
        Compression::Lz4,
        Compression::Snappy,
    ]
    .into_iter()
    .enumerate()
    {
        let valid = batch::validate(batch::tests::encode(10, 1000 * (i as i64 + 1), compression))
            .expect("valid");
        let appended = AppendItem {
            max_timestamp: valid.max_timestamp,
            batch: valid.bytes,
            ..item(&p, 10, 0)
        };
        store.append(vec![appended]).blocking_recv().expect("reply")[0]
            .as_ref()
            .expect("ok");
    }
    let at = |ts| {
        store
            .offset_for_timestamp(id(1, 0), ts)
            .expect("lookup")
            .map(|f| f.offset)
    };
    assert_eq!(at(1005), Some(5));
    assert_eq!(at(2003), Some(13));
    assert_eq!(at(3009), Some(29));
    assert_eq!(at(4001), Some(31));
}

#[tokio::test]
async fn scram_credentials_and_acls_survive_reopen_and_alter_exactly() {
    use crate::log::{AclBinding, ScramCredential, ScramMechanism, SecurityStore, wait};
    let dir = tempfile::tempdir().expect("tempdir");
    let cred = |user: &str, mechanism| ScramCredential {
        user: user.into(),
        mechanism,
        salt: vec![1, 2, 3],
        iterations: 4096,
        stored_key: vec![4; 32],
        server_key: vec![5; 32],
    };
    let acl = |name: &str, op: i8| AclBinding {
        resource_type: 2,
        resource_name: name.into(),
        pattern_type: 3,
        principal: "User:alice".into(),
        host: "*".into(),
        operation: op,
        permission_type: 3,
    };
    {
        let store = open(dir.path());
        wait(store.alter_scram_credentials(
            vec![
                cred("alice", ScramMechanism::Sha256),
                cred("alice", ScramMechanism::Sha512),
                cred("bob", ScramMechanism::Sha256),
            ],
            Vec::new(),
        ))
        .await
        .expect("writer")
        .expect("stored");
        wait(
            store.alter_scram_credentials(
                Vec::new(),
                vec![("alice".into(), ScramMechanism::Sha512)],
            ),
        )
        .await
        .expect("writer")
        .expect("deleted");
        wait(store.alter_acls(
            vec![acl("gps", 3), acl("gps", 4), acl("can", 3)],
            Vec::new(),
        ))
        .await
        .expect("writer")
        .expect("stored");
        wait(store.alter_acls(Vec::new(), vec![acl("gps", 4)]))
            .await
            .expect("writer")
            .expect("deleted");
        store.close();
    }
    let store = open(dir.path());
    let mut creds: Vec<_> = store
        .scram_credentials()
        .expect("read")
        .into_iter()
        .map(|c| (c.user, c.mechanism))
        .collect();
    creds.sort();
    assert_eq!(
        creds,
        vec![
            ("alice".to_string(), ScramMechanism::Sha256),
            ("bob".to_string(), ScramMechanism::Sha256)
        ]
    );
    let mut acls = store.acls().expect("read");
    acls.sort();
    assert_eq!(acls, vec![acl("can", 3), acl("gps", 3)]);
}
