//! The cluster metadata as the quorum's state machine.
//!
//! Entries are JSON [`Command`]s; answers are JSON [`Outcome`]s; snapshots are the JSON
//! [`ClusterState`]. Applying is pure (group offsets live in the state too), so replaying
//! entries after a crash or installing a snapshot needs no side effects. After every batch
//! the new state is published on a watch channel for reconciliation and handlers.

use std::sync::Arc;

use tokio::sync::watch;

use super::state::{ClusterState, Command, Outcome};

pub struct Machine {
    state: ClusterState,
    publish: watch::Sender<Arc<ClusterState>>,
}

impl Machine {
    pub fn new() -> (Self, watch::Receiver<Arc<ClusterState>>) {
        let (publish, rx) = watch::channel(Arc::new(ClusterState::default()));
        (
            Machine {
                state: ClusterState::default(),
                publish,
            },
            rx,
        )
    }
}

impl runnel_quorum::StateMachine for Machine {
    async fn apply(&mut self, entries: Vec<runnel_quorum::Entry>) -> Vec<Vec<u8>> {
        let mut answers = Vec::with_capacity(entries.len());
        for entry in entries {
            let outcome = match serde_json::from_slice::<Command>(&entry.data) {
                Ok(cmd) => self.state.apply(&cmd),
                // An entry this version cannot read (written by a newer one): refused, not
                // fatal, so the rest of the log still applies.
                Err(e) => Outcome {
                    error_code: kafka_protocol::ResponseError::UnsupportedVersion.code(),
                    message: format!("cannot decode metadata entry {}: {e}", entry.index),
                },
            };
            answers.push(serde_json::to_vec(&outcome).unwrap_or_default());
        }
        self.publish.send_replace(Arc::new(self.state.clone()));
        answers
    }
    fn snapshot(&self) -> Vec<u8> {
        serde_json::to_vec(&self.state).unwrap_or_default()
    }

    fn restore(&mut self, snapshot: &[u8]) -> Result<(), String> {
        self.state = if snapshot.is_empty() {
            ClusterState::default()
        } else {
            serde_json::from_slice(snapshot).map_err(|e| format!("bad cluster snapshot: {e}"))?
        };
        self.publish.send_replace(Arc::new(self.state.clone()));
        Ok(())
    }
}
