//! The bandwidth cap of an uplink (`max_bytes_per_sec`): a token bucket shared by its lanes.
//! A send takes its bytes first and waits until the bucket has paid for them, so the average
//! rate stays at the cap while a single batch larger than one second's budget still goes.

use std::time::Duration;

use tokio::sync::Mutex;
use tokio::time::Instant;

#[derive(Debug)]
pub struct Throttle {
    rate: Option<f64>,
    state: Mutex<Bucket>,
}

#[derive(Debug)]
struct Bucket {
    /// Bytes that may be sent now; negative while a large send is being paid off.
    tokens: f64,
    at: Instant,
}

impl Throttle {
    /// `None`: no cap.
    pub fn new(bytes_per_sec: Option<u64>) -> Self {
        let rate = bytes_per_sec.map(|r| r as f64);
        Throttle {
            rate,
            state: Mutex::new(Bucket {
                tokens: rate.unwrap_or(0.0),
                at: Instant::now(),
            }),
        }
    }

    /// Waits until `bytes` may be sent.
    pub async fn take(&self, bytes: usize) {
        let Some(rate) = self.rate else {
            return;
        };
        let wait = {
            let mut b = self.state.lock().await;
            let now = Instant::now();
            // At most one second's worth accumulates while idle.
            b.tokens = (b.tokens + now.duration_since(b.at).as_secs_f64() * rate).min(rate);
            b.at = now;
            b.tokens -= bytes as f64;
            if b.tokens >= 0.0 {
                Duration::ZERO
            } else {
                Duration::from_secs_f64(-b.tokens / rate)
            }
        };
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn sends_at_the_cap_on_average() {
        let t = Throttle::new(Some(1000));
        let started = tokio::time::Instant::now();
        for _ in 0..5 {
            t.take(1000).await;
        }
        // The first second's budget is there at start; four more seconds are paid for.
        let took = started.elapsed();
        assert!(
            took >= Duration::from_millis(3990) && took <= Duration::from_millis(4100),
            "{took:?}"
        );
        let free = Throttle::new(None);
        free.take(usize::MAX).await;
    }
}
