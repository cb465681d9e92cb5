//! Idempotent-producer state per (partition, producer id): the producer's epoch and the
//! sequence ranges and offsets of its last [`MAX_BATCHES`] batches, as Kafka keeps them.
//!
//! The check is pure; the store's writer runs it for every batch carrying a producer id and
//! persists the updated state in the same transaction as the batch, so a retry of a batch
//! whose response was lost is recognised — with its original offset — also after a restart.
//!
//! Rules (Kafka's): an older epoch is fenced; a newer epoch must start at sequence 0; in the
//! same epoch a batch equal to a remembered one is a duplicate, otherwise its first sequence
//! must follow the last one (wrapping after `i32::MAX`). A producer with no state here (new,
//! or expired) may start at any sequence.

/// Batches remembered per producer and partition (Kafka's `max.in.flight` bound for
/// idempotence).
pub const MAX_BATCHES: usize = 5;

/// What the producer's batch header says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProducerBatch {
    pub producer_id: i64,
    pub epoch: i16,
    pub first_seq: i32,
    pub last_seq: i32,
}

/// A batch already appended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Remembered {
    pub first_seq: i32,
    pub last_seq: i32,
    pub base_offset: i64,
}

/// State of one producer on one partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProducerState {
    pub epoch: i16,
    /// Wall-clock ms of the last append, for expiry.
    pub last_append_ms: i64,
    /// Oldest first.
    pub batches: Vec<Remembered>,
}

/// Outcome of checking a batch against the state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Append it.
    Append,
    /// Already appended at this base offset: answer with it, append nothing.
    Duplicate(i64),
    OutOfOrder {
        expected: i32,
        got: i32,
    },
    Fenced {
        current: i16,
        got: i16,
    },
}

fn next_seq(seq: i32) -> i32 {
    increment_seq(seq, 1)
}

/// `seq + by` in Kafka's sequence space, which wraps from `i32::MAX` to 0.
pub fn increment_seq(seq: i32, by: i32) -> i32 {
    if seq > i32::MAX - by {
        by - (i32::MAX - seq) - 1
    } else {
        seq + by
    }
}

/// Decides what to do with `batch` given the producer's `state` on this partition.
pub fn check(state: Option<&ProducerState>, batch: &ProducerBatch) -> Verdict {
    let Some(state) = state else {
        return Verdict::Append;
    };
    if batch.epoch < state.epoch {
        return Verdict::Fenced {
            current: state.epoch,
            got: batch.epoch,
        };
    }
    if batch.epoch > state.epoch {
        return if batch.first_seq == 0 {
            Verdict::Append
        } else {
            Verdict::OutOfOrder {
                expected: 0,
                got: batch.first_seq,
            }
        };
    }
    if let Some(dup) = state
        .batches
        .iter()
        .find(|b| b.first_seq == batch.first_seq && b.last_seq == batch.last_seq)
    {
        return Verdict::Duplicate(dup.base_offset);
    }
    match state.batches.last() {
        Some(last) if batch.first_seq != next_seq(last.last_seq) => Verdict::OutOfOrder {
            expected: next_seq(last.last_seq),
            got: batch.first_seq,
        },
        _ => Verdict::Append,
    }
}

/// The state after appending `batch` at `base_offset` (call only after [`Verdict::Append`]).
pub fn appended(
    state: Option<ProducerState>,
    batch: &ProducerBatch,
    base_offset: i64,
    now_ms: i64,
) -> ProducerState {
    let mut state = match state {
        Some(s) if s.epoch == batch.epoch => s,
        _ => ProducerState {
            epoch: batch.epoch,
            last_append_ms: now_ms,
            batches: Vec::with_capacity(MAX_BATCHES),
        },
    };
    if state.batches.len() == MAX_BATCHES {
        state.batches.remove(0);
    }
    state.batches.push(Remembered {
        first_seq: batch.first_seq,
        last_seq: batch.last_seq,
        base_offset,
    });
    state.last_append_ms = now_ms;
    state
}

const REMEMBERED_LEN: usize = 16;
const HEADER_LEN: usize = 11;

impl ProducerState {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER_LEN + REMEMBERED_LEN * self.batches.len());
        out.extend_from_slice(&self.epoch.to_be_bytes());
        out.extend_from_slice(&self.last_append_ms.to_be_bytes());
        out.push(self.batches.len() as u8);
        for b in &self.batches {
            out.extend_from_slice(&b.first_seq.to_be_bytes());
            out.extend_from_slice(&b.last_seq.to_be_bytes());
            out.extend_from_slice(&b.base_offset.to_be_bytes());
        }
        out
    }

    pub fn decode(b: &[u8]) -> Option<ProducerState> {
        let header = b.get(..HEADER_LEN)?;
        let count = usize::from(header[10]);
        let body = b.get(HEADER_LEN..)?;
        if count > MAX_BATCHES || body.len() != count * REMEMBERED_LEN {
            return None;
        }
        let i32_at = |s: &[u8], at: usize| -> Option<i32> {
            Some(i32::from_be_bytes(s.get(at..at + 4)?.try_into().ok()?))
        };
        let i64_at = |s: &[u8], at: usize| -> Option<i64> {
            Some(i64::from_be_bytes(s.get(at..at + 8)?.try_into().ok()?))
        };
        let batches = body
            .chunks_exact(REMEMBERED_LEN)
            .map(|c| {
                Some(Remembered {
                    first_seq: i32_at(c, 0)?,
                    last_seq: i32_at(c, 4)?,
                    base_offset: i64_at(c, 8)?,
                })
            })
            .collect::<Option<Vec<_>>>()?;
        Some(ProducerState {
            epoch: i16::from_be_bytes([header[0], header[1]]),
            last_append_ms: i64_at(header, 2)?,
            batches,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(epoch: i16, first_seq: i32, n: i32) -> ProducerBatch {
        ProducerBatch {
            producer_id: 7,
            epoch,
            first_seq,
            last_seq: increment_seq(first_seq, n - 1),
        }
    }

    #[test]
    fn sequences_must_follow_and_retries_are_duplicates() {
        let b0 = batch(0, 0, 3);
        assert_eq!(check(None, &b0), Verdict::Append);
        let s = appended(None, &b0, 100, 1);
        assert_eq!(check(Some(&s), &b0), Verdict::Duplicate(100));
        assert_eq!(
            check(Some(&s), &batch(0, 4, 1)),
            Verdict::OutOfOrder {
                expected: 3,
                got: 4
            }
        );
        let b1 = batch(0, 3, 2);
        assert_eq!(check(Some(&s), &b1), Verdict::Append);
        let s = appended(Some(s), &b1, 103, 2);
        assert_eq!(
            check(Some(&s), &b0),
            Verdict::Duplicate(100),
            "older batch still known"
        );
    }

    #[test]
    fn epochs_fence_and_reset() {
        let s = appended(None, &batch(3, 0, 1), 0, 1);
        assert_eq!(
            check(Some(&s), &batch(2, 1, 1)),
            Verdict::Fenced { current: 3, got: 2 }
        );
        assert_eq!(check(Some(&s), &batch(4, 0, 1)), Verdict::Append);
        assert!(matches!(
            check(Some(&s), &batch(4, 5, 1)),
            Verdict::OutOfOrder { .. }
        ));
    }

    #[test]
    fn only_the_last_five_batches_are_remembered_and_state_round_trips() {
        let mut s = None;
        for i in 0..7 {
            s = Some(appended(s, &batch(0, i, 1), i64::from(i) * 10, 5));
        }
        let s = s.expect("state");
        assert_eq!(s.batches.len(), MAX_BATCHES);
        assert_eq!(s.batches[0].first_seq, 2);
        assert_eq!(ProducerState::decode(&s.encode()), Some(s));
        assert_eq!(ProducerState::decode(&[1, 2, 3]), None);
    }

    #[test]
    fn sequence_wraps_after_max() {
        let s = appended(None, &batch(0, i32::MAX, 1), 0, 1);
        assert_eq!(check(Some(&s), &batch(0, 0, 1)), Verdict::Append);
    }
}
