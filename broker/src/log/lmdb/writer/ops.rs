//! The operations the writer executes, what each produces before commit, and how each is
//! answered (or failed) afterwards.

use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::oneshot;

use crate::log::{
    AclBinding, AppendItem, Appended, OffsetCommit, PartitionId, PartitionLog, ProgressEntry,
    ScramCredential, ScramMechanism, StoreError, TopicPartition, TopicRecord, Truncated,
};

pub type Reply<T> = oneshot::Sender<T>;

pub enum Op {
    Append {
        items: Vec<AppendItem>,
        reply: Reply<Vec<Result<Appended, StoreError>>>,
    },
    Truncate {
        id: PartitionId,
        new_start: i64,
        limit: usize,
        reply: Reply<Result<Truncated, StoreError>>,
    },
    NextTopicNum {
        reply: Reply<Result<u32, StoreError>>,
    },
    NextProducerId {
        reply: Reply<Result<i64, StoreError>>,
    },
    ExpireProducers {
        before_ms: i64,
        reply: Reply<Result<usize, StoreError>>,
    },
    AppendReplica {
        partition: Arc<PartitionLog>,
        batches: Bytes,
        reply: Reply<Result<i64, StoreError>>,
    },
    TruncateBack {
        id: PartitionId,
        offset: i64,
        reply: Reply<Result<i64, StoreError>>,
    },
    ResetTo {
        id: PartitionId,
        start: i64,
        reply: Reply<Result<(), StoreError>>,
    },
    PutTopic {
        topic: TopicRecord,
        reply: Reply<Result<(), StoreError>>,
    },
    DeleteTopic {
        topic: TopicRecord,
        reply: Reply<Result<(), StoreError>>,
    },
    CommitOffsets {
        commits: Vec<OffsetCommit>,
        reply: Reply<Result<(), StoreError>>,
    },
    DeleteOffsets {
        group: String,
        only: Option<Vec<TopicPartition>>,
        reply: Reply<Result<usize, StoreError>>,
    },
    ExpireOffsets {
        groups: Vec<String>,
        before_ms: i64,
        reply: Reply<Result<Vec<String>, StoreError>>,
    },
    SaveUplinkProgress {
        entries: Vec<ProgressEntry>,
        reply: Reply<Result<(), StoreError>>,
    },
    AlterScram {
        upserts: Vec<ScramCredential>,
        deletions: Vec<(String, ScramMechanism)>,
        reply: Reply<Result<(), StoreError>>,
    },
    AlterAcls {
        create: Vec<AclBinding>,
        delete: Vec<AclBinding>,
        reply: Reply<Result<(), StoreError>>,
    },
    Shutdown {
        reply: Reply<()>,
    },
}

/// What applying one op produced, before commit.
pub enum Outcome {
    Append(Vec<Result<Appended, StoreError>>),
    Truncate(Result<Truncated, StoreError>),
    /// A new next offset (replica append, back truncation).
    Offset(Result<i64, StoreError>),
    TopicNum(u32),
    ProducerId(i64),
    Expired(usize),
    Committed(Result<(), StoreError>),
    Deleted(usize),
    Groups(Vec<String>),
    Done,
}

pub fn is_append(op: &Op) -> bool {
    matches!(
        op,
        Op::Append { .. } | Op::AppendReplica { .. } | Op::CommitOffsets { .. }
    )
}

pub fn answer(op: Op, outcome: Outcome) {
    match (op, outcome) {
        (Op::Append { reply, .. }, Outcome::Append(results)) => {
            let _ = reply.send(results);
        }
        (Op::Truncate { reply, .. }, Outcome::Truncate(result)) => {
            let _ = reply.send(result);
        }
        (Op::AppendReplica { reply, .. }, Outcome::Offset(result))
        | (Op::TruncateBack { reply, .. }, Outcome::Offset(result)) => {
            let _ = reply.send(result);
        }
        (Op::NextTopicNum { reply }, Outcome::TopicNum(n)) => {
            let _ = reply.send(Ok(n));
        }
        (Op::NextProducerId { reply }, Outcome::ProducerId(id)) => {
            let _ = reply.send(Ok(id));
        }
        (Op::ExpireProducers { reply, .. }, Outcome::Expired(n)) => {
            let _ = reply.send(Ok(n));
        }
        (Op::PutTopic { reply, .. }, _)
        | (Op::DeleteTopic { reply, .. }, _)
        | (Op::SaveUplinkProgress { reply, .. }, _) => {
            let _ = reply.send(Ok(()));
        }
        (Op::ResetTo { reply, .. }, Outcome::Committed(result))
        | (Op::AlterScram { reply, .. }, Outcome::Committed(result))
        | (Op::AlterAcls { reply, .. }, Outcome::Committed(result))
        | (Op::CommitOffsets { reply, .. }, Outcome::Committed(result)) => {
            let _ = reply.send(result);
        }
        (Op::DeleteOffsets { reply, .. }, Outcome::Deleted(n)) => {
            let _ = reply.send(Ok(n));
        }
        (Op::ExpireOffsets { reply, .. }, Outcome::Groups(groups)) => {
            let _ = reply.send(Ok(groups));
        }
        (Op::Shutdown { reply }, _) => {
            let _ = reply.send(());
        }
        (op, _) => fail(op, StoreError::Io("internal: mismatched outcome".into())),
    }
}

pub fn fail(op: Op, err: StoreError) {
    match op {
        Op::Append { items, reply } => {
            let _ = reply.send(items.iter().map(|_| Err(err.clone())).collect());
        }
        Op::Truncate { reply, .. } => {
            let _ = reply.send(Err(err));
        }
        Op::AppendReplica { reply, .. } | Op::TruncateBack { reply, .. } => {
            let _ = reply.send(Err(err));
        }
        Op::NextTopicNum { reply } => {
            let _ = reply.send(Err(err));
        }
        Op::NextProducerId { reply } => {
            let _ = reply.send(Err(err));
        }
        Op::ExpireProducers { reply, .. } => {
            let _ = reply.send(Err(err));
        }
        Op::PutTopic { reply, .. }
        | Op::DeleteTopic { reply, .. }
        | Op::SaveUplinkProgress { reply, .. } => {
            let _ = reply.send(Err(err));
        }
        Op::CommitOffsets { reply, .. }
        | Op::ResetTo { reply, .. }
        | Op::AlterScram { reply, .. }
        | Op::AlterAcls { reply, .. } => {
            let _ = reply.send(Err(err));
        }
        Op::DeleteOffsets { reply, .. } => {
            let _ = reply.send(Err(err));
        }
        Op::ExpireOffsets { reply, .. } => {
            let _ = reply.send(Err(err));
        }
        Op::Shutdown { reply } => {
            let _ = reply.send(());
        }
    }
}
