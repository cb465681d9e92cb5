//! Lag over time for each consumer group, kept across GUI restarts (eframe storage), and the
//! group status judged from it: a group is *lagging* when its lag grew over the window,
//! *stalled* when it has lag but its committed offsets did not move over the window, *OK*
//! otherwise — never from a single sample.

use std::collections::{BTreeMap, VecDeque};

use serde::{Deserialize, Serialize};

use crate::state::GroupStatus;

/// Samples kept per group (at a 5 s refresh: a little over 2 hours).
pub const MAX_SAMPLES: usize = 1_500;
/// How far back the status looks.
pub const WINDOW_MS: i64 = 60_000;
/// Samples needed inside the window before judging.
const MIN_SAMPLES: usize = 3;

/// One observation of a group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sample {
    pub at_ms: i64,
    pub lag: i64,
    /// Sum of committed offsets: moves whenever the group makes progress.
    pub committed: i64,
}

/// Cluster name → group id → samples, oldest first.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LagHistory {
    groups: BTreeMap<String, BTreeMap<String, VecDeque<Sample>>>,
}

impl LagHistory {
    pub fn record(&mut self, cluster: &str, group: &str, sample: Sample) {
        let samples = self
            .groups
            .entry(cluster.to_string())
            .or_default()
            .entry(group.to_string())
            .or_default();
        if samples.back().is_some_and(|s| s.at_ms >= sample.at_ms) {
            return;
        }
        samples.push_back(sample);
        while samples.len() > MAX_SAMPLES {
            samples.pop_front();
        }
    }

    pub fn samples(&self, cluster: &str, group: &str) -> Option<&VecDeque<Sample>> {
        self.groups.get(cluster)?.get(group)
    }

    /// The status of a group with `members` members, judged at `now_ms`.
    pub fn status(&self, cluster: &str, group: &str, members: usize, now_ms: i64) -> GroupStatus {
        if members == 0 {
            return GroupStatus::Empty;
        }
        let Some(samples) = self.samples(cluster, group) else {
            return GroupStatus::Unknown;
        };
        judge(samples.iter().filter(|s| s.at_ms >= now_ms - WINDOW_MS))
    }
}

fn judge<'a>(window: impl Iterator<Item = &'a Sample>) -> GroupStatus {
    let window: Vec<&Sample> = window.collect();
    if window.len() < MIN_SAMPLES {
        return GroupStatus::Unknown;
    }
    let (first, last) = (window[0], window[window.len() - 1]);
    if last.lag == 0 {
        GroupStatus::Ok
    } else if last.committed == first.committed {
        GroupStatus::Stalled
    } else if last.lag > first.lag && window.windows(2).all(|w| w[1].lag >= w[0].lag) {
        GroupStatus::Lagging
    } else {
        GroupStatus::Ok
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn history(points: &[(i64, i64)]) -> LagHistory {
        let mut h = LagHistory::default();
        for (i, (lag, committed)) in points.iter().enumerate() {
            h.record(
                "c",
                "g",
                Sample {
                    at_ms: i as i64 * 5_000,
                    lag: *lag,
                    committed: *committed,
                },
            );
        }
        h
    }

    #[test]
    fn given_samples_when_judging_should_tell_ok_lagging_stalled_and_unknown() {
        let now = 4 * 5_000;
        assert_eq!(
            history(&[(5, 10), (3, 12), (0, 15)]).status("c", "g", 1, now),
            GroupStatus::Ok
        );
        assert_eq!(
            history(&[(5, 10), (8, 12), (12, 14), (20, 15)]).status("c", "g", 1, now),
            GroupStatus::Lagging
        );
        assert_eq!(
            history(&[(5, 10), (7, 10), (9, 10)]).status("c", "g", 1, now),
            GroupStatus::Stalled
        );
        assert_eq!(
            history(&[(5, 10), (7, 11)]).status("c", "g", 1, now),
            GroupStatus::Unknown
        );
        assert_eq!(
            history(&[(5, 10), (7, 11), (9, 12)]).status("c", "g", 0, now),
            GroupStatus::Empty
        );
        // One spike is not "lagging": the lag went down again inside the window.
        assert_eq!(
            history(&[(5, 10), (50, 11), (6, 60)]).status("c", "g", 1, now),
            GroupStatus::Ok
        );
    }

    #[test]
    fn given_old_samples_when_judging_should_only_look_at_the_window() {
        let mut points = vec![(1, 1); 3];
        points.extend([(0, 1); 13]);
        let h = history(&points);
        assert_eq!(h.status("c", "g", 1, 15 * 5_000), GroupStatus::Ok);
    }

    #[test]
    fn given_many_samples_when_recording_should_keep_the_newest_and_serialize() {
        let mut h = LagHistory::default();
        for i in 0..(MAX_SAMPLES as i64 + 10) {
            h.record(
                "c",
                "g",
                Sample {
                    at_ms: i,
                    lag: i,
                    committed: 0,
                },
            );
        }
        let s = h.samples("c", "g").expect("samples");
        assert_eq!(s.len(), MAX_SAMPLES);
        assert_eq!(s.front().map(|x| x.at_ms), Some(10));
        let json = serde_json::to_string(&h).expect("serializes");
        let back: LagHistory = serde_json::from_str(&json).expect("parses");
        assert_eq!(back, h);
    }
}
