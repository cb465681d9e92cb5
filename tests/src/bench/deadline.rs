//! A wall-clock budget for one scenario, so that a stuck broker fails the bench with a message
//! instead of hanging it.

use std::time::{Duration, Instant};

use anyhow::bail;

#[derive(Debug, Clone, Copy)]
pub struct Deadline {
    scenario: &'static str,
    budget: Duration,
    at: Instant,
}

impl Deadline {
    pub fn after(scenario: &'static str, budget: Duration) -> Self {
        Self {
            scenario,
            budget,
            at: Instant::now() + budget,
        }
    }

    /// Time left before the scenario has to give up (zero once exceeded).
    pub fn remaining(&self) -> Duration {
        self.at.saturating_duration_since(Instant::now())
    }

    /// Fails with a message naming the scenario, its budget and what it was doing (`doing` is
    /// only evaluated on failure, so callers can describe their progress cheaply).
    pub fn check(&self, doing: impl FnOnce() -> String) -> anyhow::Result<()> {
        if Instant::now() >= self.at {
            bail!(
                "scenario `{}` exceeded its {}s timeout while {} (raise --timeout-secs if the \
                 broker is just slow)",
                self.scenario,
                self.budget.as_secs(),
                doing()
            );
        }
        Ok(())
    }
}
