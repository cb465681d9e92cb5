//! Replication operations against a real LMDB environment: replica appends, the leader-epoch
//! index, back truncation and reset.

use bytes::{Bytes, BytesMut};
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};

use super::tests::{id, item, open, topic};
use super::*;
use crate::log::producers::ProducerBatch;
use crate::protocol::batch;

fn put(store: &LmdbStore, num: u32, partitions: u32) {
    store
        .put_topic(topic(num, partitions))
        .blocking_recv()
        .expect("reply")
        .expect("put");
}

/// `n` records with timestamps from `ts0`, stamped with leader epoch `epoch`.
fn at_epoch(part: &Arc<PartitionLog>, n: i32, ts0: i64, epoch: i32) -> AppendItem {
    AppendItem {
        leader_epoch: epoch,
        ..item(part, n, ts0)
    }
}

/// `n` records of idempotent producer `pid` (epoch 0) from sequence `seq`.
fn idempotent(
    part: &Arc<PartitionLog>,
    n: i32,
    ts0: i64,
    epoch: i32,
    pid: i64,
    seq: i32,
) -> AppendItem {
    let records: Vec<Record> = (0..n)
        .map(|i| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id: pid,
            producer_epoch: 0,
            timestamp_type: TimestampType::Creation,
            offset: i64::from(i),
            sequence: seq + i,
            timestamp: ts0 + i64::from(i),
            key: None,
            value: Some(Bytes::from(format!("v{i}"))),
            headers: Default::default(),
        })
        .collect();
    let mut buf = BytesMut::new();
    let options = RecordEncodeOptions {
        version: 2,
        compression: Compression::None,
    };
    RecordBatchEncoder::encode(&mut buf, records.iter(), &options).expect("encode");
    let valid = batch::validate(buf.freeze()).expect("valid");
    assert_eq!(valid.producer_id, pid);
    AppendItem {
        partition: part.clone(),
        batch: valid.bytes,
        record_count: n,
        max_timestamp: valid.max_timestamp,
        leader_epoch: epoch,
        producer: Some(ProducerBatch {
            producer_id: pid,
            epoch: 0,
            first_seq: seq,
            last_seq: seq + n - 1,
        }),
    }
}

fn append(store: &LmdbStore, it: AppendItem) -> Result<Appended, StoreError> {
    store
        .append(vec![it])
        .blocking_recv()
        .expect("reply")
        .remove(0)
}

fn replicate(store: &LmdbStore, part: &Arc<PartitionLog>, data: Bytes) -> Result<i64, StoreError> {
    store
        .append_replica(part.clone(), data)
        .blocking_recv()
        .expect("reply")
}

fn truncate_back(store: &LmdbStore, pid: PartitionId, offset: i64) -> i64 {
    store
        .truncate_back(pid, offset)
        .blocking_recv()
        .expect("reply")
        .expect("truncate_back")
}

fn all(store: &LmdbStore, pid: PartitionId, from: i64) -> Bytes {
    store.read(pid, from, 1 << 20, true).expect("read").records
}

fn end(store: &LmdbStore, pid: PartitionId, epoch: i32) -> Option<(i32, i64)> {
    store
        .epoch_end_offset(pid, epoch)
        .expect("epoch_end_offset")
        .map(|e| (e.epoch, e.end_offset))
}

fn latest(store: &LmdbStore, pid: PartitionId) -> Option<(i32, i64)> {
    store
        .latest_epoch(pid)
        .expect("latest_epoch")
        .map(|e| (e.epoch, e.start_offset))
}

#[test]
fn replica_append_keeps_batches_byte_for_byte_skips_overlap_and_refuses_gaps() {
    let (ldir, fdir) = (
        tempfile::tempdir().expect("dir"),
        tempfile::tempdir().expect("dir"),
    );
    let leader = open(ldir.path());
    put(&leader, 1, 1);
    let lp = leader.partition(id(1, 0)).expect("partition");
    for (n, ts, epoch) in [(3, 100, 0), (2, 200, 2), (4, 300, 2)] {
        append(&leader, at_epoch(&lp, n, ts, epoch)).expect("append");
    }
    append(&leader, idempotent(&lp, 2, 400, 2, 42, 0)).expect("append");
    let data = all(&leader, id(1, 0), 0);
    {
        let follower = open(fdir.path());
        put(&follower, 1, 1);
        let fp = follower.partition(id(1, 0)).expect("partition");
        assert_eq!(
            replicate(&follower, &fp, data.clone()).expect("replicate"),
            11
        );
        assert_eq!(
            all(&follower, id(1, 0), 0),
            data,
            "byte for byte, offsets and epochs included"
        );
        assert_eq!(fp.size_bytes(), lp.size_bytes());
        assert_eq!(latest(&follower, id(1, 0)), Some((2, 3)));
        assert_eq!(end(&follower, id(1, 0), 1), Some((0, 3)));
        assert_eq!(
            follower
                .offset_for_timestamp(id(1, 0), 301)
                .expect("lookup")
                .map(|t| t.offset),
            Some(6)
        );
        // Everything again: all of it is below next_offset and skipped.
        assert_eq!(
            replicate(&follower, &fp, data.clone()).expect("replicate"),
            11
        );
        assert_eq!(fp.size_bytes(), lp.size_bytes());

        // Overlap with what we have, then new batches.
        append(&leader, at_epoch(&lp, 1, 500, 4)).expect("append");
        assert_eq!(
            replicate(&follower, &fp, all(&leader, id(1, 0), 4)).expect("replicate"),
            12
        );
        assert_eq!(latest(&follower, id(1, 0)), Some((4, 11)));

        // A gap is refused, and nothing of it is appended.
        append(&leader, at_epoch(&lp, 2, 600, 4)).expect("append"); // 12..13
        append(&leader, at_epoch(&lp, 2, 700, 4)).expect("append"); // 14..15
        let gap = replicate(&follower, &fp, all(&leader, id(1, 0), 14));
        assert!(
            matches!(
                gap,
                Err(StoreError::OffsetOutOfRange {
                    offset: 14,
                    next: 12,
                    ..
                })
            ),
            "{gap:?}"
        );
        assert_eq!(fp.next_offset(), 12);

        // A corrupt batch anywhere appends none of them.
        let tail = all(&leader, id(1, 0), 12);
        let mut bad = BytesMut::from(&tail[..]);
        let last = bad.len() - 1;
        bad[last] ^= 0xff;
        assert!(matches!(
            replicate(&follower, &fp, bad.freeze()),
            Err(StoreError::Io(_))
        ));
        assert_eq!(fp.next_offset(), 12);

        // A fetch cut inside the last batch: the whole ones are appended.
        assert_eq!(
            replicate(&follower, &fp, tail.slice(..tail.len() - 1)).expect("replicate"),
            14
        );
        assert_eq!(
            replicate(&follower, &fp, tail.clone()).expect("replicate"),
            16
        );
        assert_eq!(
            replicate(&follower, &fp, Bytes::new()).expect("replicate"),
            16
        );
    }
    let follower = open(fdir.path());
    let fp = follower.partition(id(1, 0)).expect("reopened");
    assert_eq!(fp.next_offset(), 16);
    assert_eq!(all(&follower, id(1, 0), 0), all(&leader, id(1, 0), 0));
    assert_eq!(latest(&follower, id(1, 0)), Some((4, 11)));
    // The producer state came with the batches: a retry is a duplicate on the follower too.
    let retry = append(&follower, idempotent(&fp, 2, 400, 5, 42, 0)).expect("duplicate");
    assert_eq!(retry.base_offset, 9);
    assert_eq!(fp.next_offset(), 16);
    assert_eq!(
        replicate(&follower, &fp, Bytes::new()).expect("replicate"),
        16
    );
}

#[test]
fn epoch_index_answers_offsets_for_leader_epoch() {
    let dir = tempfile::tempdir().expect("dir");
    {
        let store = open(dir.path());
        put(&store, 1, 2);
        let p = store.partition(id(1, 0)).expect("partition");
        assert_eq!(latest(&store, id(1, 0)), None);
        assert_eq!(end(&store, id(1, 0), 0), None);
        for (i, epoch) in [0, 0, 3, 3, 5].into_iter().enumerate() {
            let base = append(&store, at_epoch(&p, 2, i as i64, epoch)).expect("append");
            assert_eq!(base.base_offset, 2 * i as i64);
        }
        // An older epoch (a stale leader's batch) is not recorded.
        append(
            &store,
            at_epoch(&store.partition(id(1, 1)).expect("p1"), 1, 0, 3),
        )
        .expect("append");
        append(
            &store,
            at_epoch(&store.partition(id(1, 1)).expect("p1"), 1, 0, 1),
        )
        .expect("append");
    }
    let store = open(dir.path());
    let pid = id(1, 0);
    assert_eq!(latest(&store, pid), Some((5, 8)));
    assert_eq!(end(&store, pid, 0), Some((0, 4)));
    assert_eq!(end(&store, pid, 1), Some((0, 4)));
    assert_eq!(end(&store, pid, 2), Some((0, 4)));
    assert_eq!(end(&store, pid, 3), Some((3, 8)));
    assert_eq!(end(&store, pid, 4), Some((3, 8)));
    assert_eq!(end(&store, pid, 5), Some((5, 10)));
    assert_eq!(end(&store, pid, 9), Some((5, 10)));
    assert_eq!(end(&store, pid, -1), None);
    // The stored batches carry the epochs they were appended in.
    let data = all(&store, pid, 4);
    assert_eq!(batch::leader_epoch(&data), Some(3));
    // Partition 1 recorded only epoch 3; nothing is <= 2.
    assert_eq!(latest(&store, id(1, 1)), Some((3, 0)));
    assert_eq!(end(&store, id(1, 1), 2), None);
    assert_eq!(end(&store, id(1, 1), 7), Some((3, 2)));
    assert!(matches!(
        store.latest_epoch(id(9, 0)),
        Err(StoreError::UnknownPartition(_))
    ));
}

#[test]
fn truncate_back_removes_whole_batches_and_repairs_indexes_and_producers() {
    let dir = tempfile::tempdir().expect("dir");
    let pid = id(1, 0);
    {
        let store = open(dir.path());
        put(&store, 1, 1);
        let p = store.partition(pid).expect("partition");
        append(&store, idempotent(&p, 2, 1000, 0, 42, 0)).expect("b0"); // 0..1
        append(&store, at_epoch(&p, 2, 2000, 0)).expect("b1"); // 2..3
        let size = p.size_bytes();
        append(&store, idempotent(&p, 2, 3000, 3, 42, 2)).expect("b2"); // 4..5
        append(&store, idempotent(&p, 2, 4000, 3, 7, 0)).expect("b3"); // 6..7
        append(&store, at_epoch(&p, 2, 5000, 5)).expect("b4"); // 8..9
        assert_eq!(
            truncate_back(&store, pid, 100),
            10,
            "at or past the end: nothing"
        );
        assert_eq!(
            truncate_back(&store, pid, 5),
            4,
            "the batch holding 5 goes whole"
        );
        assert_eq!(p.next_offset(), 4);
        assert_eq!(p.size_bytes(), size);
        assert_eq!(latest(&store, pid), Some((0, 0)));
        assert_eq!(end(&store, pid, 3), Some((0, 4)));
        assert_eq!(
            store
                .max_timestamp(pid)
                .expect("max")
                .map(|t| (t.offset, t.timestamp)),
            Some((3, 2001))
        );
        assert_eq!(store.offset_for_timestamp(pid, 2002).expect("lookup"), None);
        assert!(matches!(
            store.read(pid, 5, 1 << 20, true),
            Err(StoreError::OffsetOutOfRange { .. })
        ));
    }
    let store = open(dir.path());
    let p = store.partition(pid).expect("reopened");
    assert_eq!((p.next_offset(), p.log_start()), (4, 0));
    assert_eq!(latest(&store, pid), Some((0, 0)));
    // Producer 42 keeps its batch at 0 (a retry of it is a duplicate); the one at 4 is
    // forgotten, so its retry is appended anew.
    assert_eq!(
        append(&store, idempotent(&p, 2, 1000, 6, 42, 0))
            .expect("dup")
            .base_offset,
        0
    );
    append(&store, at_epoch(&p, 1, 6000, 6)).expect("plain"); // 4
    assert_eq!(
        append(&store, idempotent(&p, 2, 3000, 6, 42, 2))
            .expect("new")
            .base_offset,
        5
    );
    // Producer 7 lost its only batch and with it its state: any sequence is accepted.
    assert_eq!(
        append(&store, idempotent(&p, 1, 0, 6, 7, 9))
            .expect("fresh")
            .base_offset,
        7
    );
    assert_eq!(latest(&store, pid), Some((6, 4)));
    assert_eq!(end(&store, pid, 5), Some((0, 4)));
    // The time index continues from the truncated log: the first record at or after 2500 is
    // the plain batch's (6000) at 4.
    assert_eq!(
        store
            .offset_for_timestamp(pid, 2500)
            .expect("lookup")
            .map(|t| t.offset),
        Some(4)
    );

    // Below the log start: truncates to the log start, even inside a batch straddling it.
    let t = store
        .truncate_front(pid, 3, 100)
        .blocking_recv()
        .expect("reply")
        .expect("front");
    assert_eq!(t.log_start, 3);
    assert_eq!(truncate_back(&store, pid, 1), 3);
    assert_eq!((p.log_start(), p.next_offset(), p.size_bytes()), (3, 3, 0));
    assert!(all(&store, pid, 3).is_empty());
    assert_eq!(store.max_timestamp(pid).expect("max"), None);
    assert_eq!(
        append(&store, at_epoch(&p, 1, 0, 6))
            .expect("append")
            .base_offset,
        3
    );
}

#[test]
fn reset_to_restarts_the_partition_empty_at_an_offset() {
    let dir = tempfile::tempdir().expect("dir");
    let pid = id(1, 0);
    {
        let store = open(dir.path());
        put(&store, 1, 1);
        let p = store.partition(pid).expect("partition");
        append(&store, idempotent(&p, 2, 1000, 1, 42, 0)).expect("append");
        append(&store, at_epoch(&p, 3, 2000, 2)).expect("append");
        store
            .reset_to(pid, 50)
            .blocking_recv()
            .expect("reply")
            .expect("reset");
        assert_eq!(
            (p.log_start(), p.next_offset(), p.size_bytes()),
            (50, 50, 0)
        );
        assert_eq!(latest(&store, pid), None);
        assert_eq!(store.max_timestamp(pid).expect("max"), None);
        assert_eq!(store.offset_for_timestamp(pid, 0).expect("lookup"), None);
        assert!(all(&store, pid, 50).is_empty());
        assert!(matches!(
            store.read(pid, 0, 100, true),
            Err(StoreError::OffsetOutOfRange { .. })
        ));
        // A leader's batch at 50 follows.
        let from_leader = batch::with_offset(&item(&p, 2, 3000).batch, 50, 7).freeze();
        assert_eq!(replicate(&store, &p, from_leader).expect("replicate"), 52);
        assert!(matches!(
            store.reset_to(pid, -1).blocking_recv().expect("reply"),
            Err(StoreError::OffsetOutOfRange { .. })
        ));
    }
    let store = open(dir.path());
    let p = store.partition(pid).expect("reopened");
    assert_eq!((p.log_start(), p.next_offset()), (50, 52));
    assert_eq!(latest(&store, pid), Some((7, 50)));
    // Producer 42's state went with the reset: a sequence it could not have continued is fine.
    assert_eq!(
        append(&store, idempotent(&p, 1, 0, 8, 42, 5))
            .expect("fresh")
            .base_offset,
        52
    );
    // Down again, below the old log start.
    store
        .reset_to(pid, 10)
        .blocking_recv()
        .expect("reply")
        .expect("reset");
    assert_eq!((p.log_start(), p.next_offset()), (10, 10));
    assert_eq!(
        append(&store, at_epoch(&p, 1, 0, 8))
            .expect("append")
            .base_offset,
        10
    );
    assert_eq!(latest(&store, pid), Some((8, 10)));
}
