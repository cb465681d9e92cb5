//! The MQTT link of one bridge: a rumqttc connection (3.1.1 or 5) behind one small interface,
//! so the rest of the bridge never sees which protocol version is spoken.
//!
//! - [`connect`] builds the options every at-least-once bridge needs: a fixed client id, a
//!   persistent session (`clean_session = false`; for MQTT 5 `clean_start = false` and a
//!   session that never expires) and manual acks;
//! - [`MqttDriver::next`] polls the event loop and turns it into [`MqttEvent`]s; after a
//!   connection error it waits an exponential backoff with jitter before polling again
//!   (rumqttc itself would reconnect at once, in a tight loop);
//! - [`MqttHandle`] acks received messages (only once they are durable) and publishes.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use rumqttc::v5;

use crate::config::{BridgeConfig, MqttProtocol};
use crate::error::BridgeError;
use crate::tls;

/// A message received from the MQTT broker, with what is needed to acknowledge it.
#[derive(Debug, Clone)]
pub struct Message {
    pub topic: String,
    pub payload: Bytes,
    pub qos: u8,
    pub retain: bool,
    pub dup: bool,
    pub received_ms: i64,
    token: AckToken,
}

/// What acknowledging a message needs (its packet id and QoS), without its payload, so
/// acks waiting to be sent do not hold message bodies.
#[derive(Debug, Clone)]
pub struct AckToken(AckInner);

#[derive(Debug, Clone)]
enum AckInner {
    V4(rumqttc::Publish),
    V5(v5::mqttbytes::v5::Publish),
}

impl Message {
    pub fn ack_token(&self) -> AckToken {
        self.token.clone()
    }
}

/// What the event loop reports.
#[derive(Debug)]
pub enum MqttEvent {
    Connected {
        session_present: bool,
    },
    Message(Box<Message>),
    /// The broker acknowledged one of our QoS 1 publishes.
    PubAck,
    Disconnected(String),
    /// Nothing of interest happened (pings, outgoing packets).
    Other,
}

/// Sends acks and publishes; cheap to clone.
#[derive(Debug, Clone)]
pub enum MqttHandle {
    V4(rumqttc::AsyncClient),
    V5(v5::AsyncClient),
}

/// Owns the event loop.
pub struct MqttDriver {
    inner: DriverInner,
    backoff: Backoff,
    failed: bool,
}

enum DriverInner {
    V4(Box<rumqttc::EventLoop>),
    V5(Box<v5::EventLoop>),
}

/// How many requests (acks, publishes) may wait for the event loop.
const REQUEST_CAPACITY: usize = 10_000;

/// Builds the MQTT client of `config`; nothing is sent until the driver is polled.
pub fn connect(config: &BridgeConfig) -> Result<(MqttHandle, MqttDriver), BridgeError> {
    let m = &config.mqtt;
    let transport = match &m.tls {
        Some(t) => Some(rumqttc::Transport::tls_with_config(
            rumqttc::TlsConfiguration::Rustls(tls::client_config(&config.name, t)?),
        )),
        None => None,
    };
    let keep_alive = Duration::from_secs(m.keep_alive_secs);
    let backoff = Backoff::new(
        Duration::from_millis(m.reconnect_min_ms),
        Duration::from_millis(m.reconnect_max_ms),
    );
    let (handle, inner) = match m.protocol {
        MqttProtocol::V311 => {
            let mut o = rumqttc::MqttOptions::new(config.client_id(), m.host.clone(), m.port);
            o.set_clean_session(false)
                .set_manual_acks(true)
                .set_keep_alive(keep_alive)
                .set_inflight(m.max_inflight)
                .set_max_packet_size(m.max_packet_bytes, m.max_packet_bytes)
                .set_request_channel_capacity(REQUEST_CAPACITY);
            if let (Some(u), Some(p)) = (&m.username, &m.password) {
                o.set_credentials(u.clone(), p.clone());
            } else if let Some(u) = &m.username {
                o.set_credentials(u.clone(), "");
            }
            if let Some(t) = transport {
                o.set_transport(t);
            }
            let (client, eventloop) = rumqttc::AsyncClient::new(o, REQUEST_CAPACITY);
            (MqttHandle::V4(client), DriverInner::V4(Box::new(eventloop)))
        }
        MqttProtocol::V5 => {
            let mut o = v5::MqttOptions::new(config.client_id(), m.host.clone(), m.port);
            o.set_clean_start(false)
                // u32::MAX: the session never expires, like a 3.1.1 persistent session.
                .set_session_expiry_interval(Some(u32::MAX))
                .set_manual_acks(true)
                .set_keep_alive(keep_alive)
                .set_outgoing_inflight_upper_limit(m.max_inflight)
                .set_max_packet_size(u32::try_from(m.max_packet_bytes).ok())
                .set_request_channel_capacity(REQUEST_CAPACITY);
            if let Some(u) = &m.username {
                o.set_credentials(u.clone(), m.password.clone().unwrap_or_default());
            }
            if let Some(t) = transport {
                o.set_transport(t);
            }
            let (client, eventloop) = v5::AsyncClient::new(o, REQUEST_CAPACITY);
            (MqttHandle::V5(client), DriverInner::V5(Box::new(eventloop)))
        }
    };
    Ok((
        handle,
        MqttDriver {
            inner,
            backoff,
            failed: false,
        },
    ))
}

impl MqttHandle {
    /// Queues the acknowledgement of a message (PUBACK for QoS 1, PUBREC for QoS 2; nothing
    /// for QoS 0) without waiting: false when the event loop's request queue is full (or
    /// gone), so the caller keeps the token and tries again. Acks must never wait for the
    /// event loop, because the event loop may itself be waiting for the acker's queue.
    pub fn try_ack(&self, token: &AckToken) -> bool {
        match (self, &token.0) {
            (MqttHandle::V4(c), AckInner::V4(p)) => c.try_ack(p).is_ok(),
            (MqttHandle::V5(c), AckInner::V5(p)) => c.try_ack(p).is_ok(),
            // Cannot happen (one handle per connection); dropping it only means redelivery.
            _ => true,
        }
    }

    /// Queues a publish; its PUBACK (QoS 1) arrives as [`MqttEvent::PubAck`].
    pub async fn publish(
        &self,
        topic: String,
        payload: Bytes,
        qos: u8,
        retain: bool,
    ) -> Result<(), String> {
        match self {
            MqttHandle::V4(c) => c
                .publish_bytes(topic, v4_qos(qos), retain, payload)
                .await
                .map_err(|e| e.to_string()),
            MqttHandle::V5(c) => c
                .publish_bytes(topic, v5_qos(qos), retain, payload)
                .await
                .map_err(|e| e.to_string()),
        }
    }

    pub async fn subscribe(&self, filter: String, qos: u8) -> Result<(), String> {
        match self {
            MqttHandle::V4(c) => c
                .subscribe(filter, v4_qos(qos))
                .await
                .map_err(|e| e.to_string()),
            MqttHandle::V5(c) => c
                .subscribe(filter, v5_qos(qos))
                .await
                .map_err(|e| e.to_string()),
        }
    }

    pub async fn disconnect(&self) {
        let _ = match self {
            MqttHandle::V4(c) => c.disconnect().await.map_err(|e| e.to_string()),
            MqttHandle::V5(c) => c.disconnect().await.map_err(|e| e.to_string()),
        };
    }
}

impl MqttDriver {
    /// The next event; sleeps the reconnect backoff first when the last poll failed.
    pub async fn next(&mut self) -> MqttEvent {
        if self.failed {
            tokio::time::sleep(self.backoff.next_delay()).await;
        }
        let event = match &mut self.inner {
            DriverInner::V4(el) => match el.poll().await {
                Ok(e) => v4_event(e),
                Err(e) => MqttEvent::Disconnected(e.to_string()),
            },
            DriverInner::V5(el) => match el.poll().await {
                Ok(e) => v5_event(e),
                Err(e) => MqttEvent::Disconnected(e.to_string()),
            },
        };
        match &event {
            MqttEvent::Disconnected(_) => self.failed = true,
            MqttEvent::Connected { .. } => {
                self.failed = false;
                self.backoff.reset();
            }
            _ => self.failed = false,
        }
        event
    }
}

fn v4_event(event: rumqttc::Event) -> MqttEvent {
    use rumqttc::{ConnectReturnCode, Event, Packet};
    match event {
        Event::Incoming(Packet::ConnAck(ack)) if ack.code == ConnectReturnCode::Success => {
            MqttEvent::Connected {
                session_present: ack.session_present,
            }
        }
        Event::Incoming(Packet::ConnAck(ack)) => {
            MqttEvent::Disconnected(format!("connection refused: {:?}", ack.code))
        }
        Event::Incoming(Packet::Publish(p)) => MqttEvent::Message(Box::new(Message {
            topic: p.topic.clone(),
            payload: p.payload.clone(),
            qos: p.qos as u8,
            retain: p.retain,
            dup: p.dup,
            received_ms: now_ms(),
            token: AckToken(AckInner::V4(rumqttc::Publish {
                topic: String::new(),
                payload: Bytes::new(),
                ..p
            })),
        })),
        Event::Incoming(Packet::PubAck(_)) => MqttEvent::PubAck,
        _ => MqttEvent::Other,
    }
}

fn v5_event(event: v5::Event) -> MqttEvent {
    use v5::Event;
    use v5::mqttbytes::v5::{ConnectReturnCode, Packet};
    match event {
        Event::Incoming(Packet::ConnAck(ack)) if ack.code == ConnectReturnCode::Success => {
            MqttEvent::Connected {
                session_present: ack.session_present,
            }
        }
        Event::Incoming(Packet::ConnAck(ack)) => {
            MqttEvent::Disconnected(format!("connection refused: {:?}", ack.code))
        }
        Event::Incoming(Packet::Publish(p)) => MqttEvent::Message(Box::new(Message {
            topic: String::from_utf8_lossy(&p.topic).into_owned(),
            payload: p.payload.clone(),
            qos: p.qos as u8,
            retain: p.retain,
            dup: p.dup,
            received_ms: now_ms(),
            token: AckToken(AckInner::V5(v5::mqttbytes::v5::Publish {
                topic: Bytes::new(),
                payload: Bytes::new(),
                properties: None,
                ..p
            })),
        })),
        Event::Incoming(Packet::PubAck(_)) => MqttEvent::PubAck,
        _ => MqttEvent::Other,
    }
}

fn v4_qos(qos: u8) -> rumqttc::QoS {
    match qos {
        0 => rumqttc::QoS::AtMostOnce,
        1 => rumqttc::QoS::AtLeastOnce,
        _ => rumqttc::QoS::ExactlyOnce,
    }
}

fn v5_qos(qos: u8) -> v5::mqttbytes::QoS {
    match qos {
        0 => v5::mqttbytes::QoS::AtMostOnce,
        1 => v5::mqttbytes::QoS::AtLeastOnce,
        _ => v5::mqttbytes::QoS::ExactlyOnce,
    }
}

/// Milliseconds since the epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Exponential backoff with "full jitter": a random delay in [min, current], where current
/// doubles after every failure up to max. Jitter spreads a fleet of bridges that lost the
/// same broker so they do not reconnect in lock-step.
#[derive(Debug)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    current: Duration,
    seed: u64,
}

impl Backoff {
    pub fn new(min: Duration, max: Duration) -> Self {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0x9e37_79b9)
            ^ u64::from(std::process::id()).rotate_left(32);
        Backoff {
            min,
            max: max.max(min),
            current: min,
            seed: seed | 1,
        }
    }

    pub fn reset(&mut self) {
        self.current = self.min;
    }

    pub fn next_delay(&mut self) -> Duration {
        // xorshift64: good enough to spread reconnects.
        self.seed ^= self.seed << 13;
        self.seed ^= self.seed >> 7;
        self.seed ^= self.seed << 17;
        let span = self.current.saturating_sub(self.min).as_millis() as u64;
        let delay =
            self.min + Duration::from_millis(if span == 0 { 0 } else { self.seed % (span + 1) });
        self.current = (self.current * 2).min(self.max);
        delay
    }
}

/// Shared by the ingest and egress halves of a bridge.
pub type SharedHandle = Arc<MqttHandle>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn given_failures_when_backing_off_should_grow_to_the_cap_and_stay_within_bounds() {
        let min = Duration::from_millis(100);
        let max = Duration::from_millis(1600);
        let mut b = Backoff::new(min, max);
        let mut ceilings = Vec::new();
        for _ in 0..8 {
            let ceiling = b.current;
            let d = b.next_delay();
            assert!(
                d >= min && d <= ceiling,
                "{d:?} outside [{min:?}, {ceiling:?}]"
            );
            ceilings.push(ceiling.as_millis());
        }
        assert_eq!(ceilings, vec![100, 200, 400, 800, 1600, 1600, 1600, 1600]);
        b.reset();
        assert_eq!(b.next_delay(), min);
    }
}
