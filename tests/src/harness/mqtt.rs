//! MQTT 3.1.1 test clients on rumqttc: a [`Publisher`] that pushes a batch of messages through
//! broker restarts and reports what the broker acknowledged, a [`Subscriber`] that records what
//! it receives, and the client options for plain TCP and for TLS with the test CA of
//! [`super::mosquitto::Mosquitto`].
//!
//! Invariants:
//! - a message counts as acknowledged only once its PUBACK arrived (QoS 1), or once it was
//!   written to the socket (QoS 0), and it is counted once however often it was sent;
//! - the publisher hands rumqttc one request at a time and keeps at most `window` QoS 1 messages
//!   in flight, so memory stays bounded whatever the batch size and every packet id maps to
//!   exactly one message;
//! - after a reconnect that lost the session (`session_present = false`, when rumqttc drops its
//!   retransmissions) the publisher sends the unacknowledged messages again: delivery is
//!   at-least-once, duplicates are possible, losses are not;
//! - both clients reconnect after an error with a backoff (rumqttc's `poll()` retries at once)
//!   until they are done, stopped or dropped.

use std::collections::{HashMap, VecDeque};
use std::fs;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use rumqttc::{
    AsyncClient, Event, EventLoop, MqttOptions, Outgoing, Packet, QoS, SubscribeReasonCode,
    TlsConfiguration, Transport,
};
use tokio::task::JoinHandle;
use tokio::time::{self, Instant};

/// Keep-alive of the test clients; a broker restart closes the socket, so this only matters
/// for connections that die silently.
const KEEP_ALIVE: Duration = Duration::from_secs(30);
/// Largest MQTT packet the test clients send or accept (rumqttc's default is 10 KiB).
const MAX_PACKET_SIZE: usize = 8 * 1024 * 1024;
/// QoS 1 messages the publisher keeps in flight by default.
const DEFAULT_WINDOW: u16 = 100;
/// How long [`Publisher::publish_all`] may take by default before it gives up.
const DEFAULT_PUBLISH_TIMEOUT: Duration = Duration::from_secs(300);
/// How long [`Subscriber::connect`] waits for its SUBACK.
const SUBSCRIBE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a client waits for its DISCONNECT to be written when it is done.
const DISCONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Bounds of the reconnect backoff, doubled after every consecutive error.
const BACKOFF_MIN: Duration = Duration::from_millis(50);
const BACKOFF_MAX: Duration = Duration::from_secs(1);
/// How often [`Subscriber::wait_for`] looks at what arrived.
const PROBE_INTERVAL: Duration = Duration::from_millis(20);
/// Capacity of the channel between an `AsyncClient` and its `EventLoop`.
const REQUEST_CHANNEL_CAPACITY: usize = 16;

/// One message: topic and payload.
pub type Message = (String, Vec<u8>);

/// Options for a client of `127.0.0.1:port` over plain TCP: clean session (change it with
/// `set_clean_session(false)`), 30 s keep-alive, packets up to 8 MiB.
pub fn mqtt_options(port: u16, client_id: &str) -> MqttOptions {
    let mut options = MqttOptions::new(client_id, "127.0.0.1", port);
    options
        .set_keep_alive(KEEP_ALIVE)
        .set_max_packet_size(MAX_PACKET_SIZE, MAX_PACKET_SIZE);
    options
}

/// Like [`mqtt_options`], but over TLS to `localhost:port`, trusting only the CA in `ca_file`.
pub fn mqtt_tls_options(port: u16, client_id: &str, ca_file: &Path) -> Result<MqttOptions> {
    let mut options = MqttOptions::new(client_id, "localhost", port);
    options
        .set_keep_alive(KEEP_ALIVE)
        .set_max_packet_size(MAX_PACKET_SIZE, MAX_PACKET_SIZE)
        .set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(
            tls_client_config(ca_file)?,
        )));
    Ok(options)
}

/// A rustls client configuration (ring provider, safe default protocol versions) that trusts
/// only the PEM certificates in `ca_file`.
pub fn tls_client_config(ca_file: &Path) -> Result<Arc<rustls::ClientConfig>> {
    let pem = fs::read(ca_file).with_context(|| format!("reading {}", ca_file.display()))?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
        let cert = cert.with_context(|| format!("parsing {}", ca_file.display()))?;
        roots
            .add(cert)
            .with_context(|| format!("adding a CA of {} to the trust store", ca_file.display()))?;
    }
    if roots.is_empty() {
        bail!("{} holds no PEM certificate", ca_file.display());
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .context("choosing TLS protocol versions")?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(Arc::new(config))
}

/// What [`Publisher::publish_all`] achieved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishReport {
    /// How many messages were handed in.
    pub total: usize,
    /// Distinct messages acknowledged (QoS 1: PUBACK received; QoS 0: written).
    pub acked: usize,
    /// PUBLISH packets written for the first time in their session (a message sent again
    /// after a lost session counts again).
    pub sent: usize,
    /// PUBLISH packets rumqttc retransmitted after a reconnect that kept the session.
    pub retransmitted: usize,
    /// Messages handed to rumqttc again because a reconnect lost the session (rumqttc drops
    /// its retransmissions and queued requests then).
    pub resent: usize,
    /// Errors of the connection (each followed by a reconnect attempt).
    pub connection_errors: usize,
}

/// Publishes a batch of messages under a persistent session (`clean_session(false)`, fixed
/// client id), riding out broker restarts, until each one is acknowledged.
#[derive(Debug, Clone)]
pub struct Publisher {
    options: MqttOptions,
    window: u16,
    timeout: Duration,
}

impl Publisher {
    /// A publisher to `127.0.0.1:port` over plain TCP.
    pub fn new(port: u16, client_id: &str) -> Publisher {
        Self::with_options(mqtt_options(port, client_id))
    }

    /// A publisher with the caller's options (e.g. [`mqtt_tls_options`]); the session is made
    /// persistent and the in-flight limit set to the window.
    pub fn with_options(mut options: MqttOptions) -> Publisher {
        options.set_clean_session(false);
        Publisher {
            options,
            window: DEFAULT_WINDOW,
            timeout: DEFAULT_PUBLISH_TIMEOUT,
        }
    }

    /// How many QoS 1 messages may await their PUBACK at once (default 100, at least 1).
    pub fn window(mut self, window: u16) -> Self {
        self.window = window.max(1);
        self
    }

    /// How long [`Publisher::publish_all`] may take before it fails (default 300 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Publishes every message (not retained) and returns once each one is acknowledged, then
    /// disconnects. Fails with the counts so far when the timeout passes first. QoS 2 is not
    /// supported.
    pub async fn publish_all(&self, messages: Vec<Message>, qos: QoS) -> Result<PublishReport> {
        if qos == QoS::ExactlyOnce {
            bail!("the test publisher supports QoS 0 and 1, not 2");
        }
        let mut options = self.options.clone();
        options.set_inflight(self.window);
        let (client, mut eventloop) = AsyncClient::new(options, REQUEST_CHANNEL_CAPACITY);
        let started = Instant::now();
        let deadline = started + self.timeout;
        let mut tracker = Tracker::new(messages.len(), qos, usize::from(self.window));
        let mut backoff = Backoff::default();
        let mut last_error = String::from("none");
        while !tracker.is_done() {
            if let Some(index) = tracker.next_submission() {
                let (topic, payload) = &messages[index];
                client
                    .try_publish(topic.as_str(), qos, false, payload.clone())
                    .with_context(|| format!("queueing message {index} for {topic:?}"))?;
            }
            let polled = time::timeout_at(deadline, eventloop.poll()).await;
            match polled {
                Ok(Ok(event)) => {
                    backoff.reset();
                    tracker.on_event(&event);
                }
                Ok(Err(error)) => {
                    tracker.on_connection_error();
                    last_error = error.to_string();
                    time::sleep(backoff.next_delay()).await;
                }
                Err(_elapsed) => {
                    let report = tracker.report();
                    bail!(
                        "publishing {} messages at {qos:?}: only {} acknowledged after {:?} \
                         ({} in flight; {report:?}; last connection error: {last_error})",
                        report.total,
                        report.acked,
                        started.elapsed(),
                        tracker.in_flight.len()
                    );
                }
            }
        }
        disconnect(&client, &mut eventloop).await;
        Ok(tracker.report())
    }
}

/// [`Publisher::new`]`(port, client_id).publish_all(messages, qos)`.
pub async fn publish_all(
    port: u16,
    client_id: &str,
    messages: Vec<Message>,
    qos: QoS,
) -> Result<PublishReport> {
    Publisher::new(port, client_id)
        .publish_all(messages, qos)
        .await
}

/// Sends DISCONNECT and polls until it is written; best effort, bounded.
async fn disconnect(client: &AsyncClient, eventloop: &mut EventLoop) {
    if client.try_disconnect().is_err() {
        return;
    }
    let _ = time::timeout(DISCONNECT_TIMEOUT, async {
        while let Ok(event) = eventloop.poll().await {
            if event == Event::Outgoing(Outgoing::Disconnect) {
                break;
            }
        }
    })
    .await;
}

/// Which message each packet belongs to, and which messages still need sending: the pure
/// bookkeeping of [`Publisher::publish_all`], fed with rumqttc events.
#[derive(Debug)]
struct Tracker {
    qos: QoS,
    window: usize,
    acked: Vec<bool>,
    acked_count: usize,
    /// The next message never handed to rumqttc.
    next_fresh: usize,
    /// Messages to hand to rumqttc again (their session was lost), before fresh ones.
    retry: VecDeque<usize>,
    /// The message handed to rumqttc whose `Outgoing::Publish` has not been seen yet.
    unsent: Option<usize>,
    /// Packet id → message, for QoS 1 messages written and not acknowledged yet.
    in_flight: HashMap<u16, usize>,
    connected: bool,
    report: PublishReport,
}

impl Tracker {
    fn new(total: usize, qos: QoS, window: usize) -> Tracker {
        Tracker {
            qos,
            window,
            acked: vec![false; total],
            acked_count: 0,
            next_fresh: 0,
            retry: VecDeque::new(),
            unsent: None,
            in_flight: HashMap::new(),
            connected: false,
            report: PublishReport {
                total,
                acked: 0,
                sent: 0,
                retransmitted: 0,
                resent: 0,
                connection_errors: 0,
            },
        }
    }

    fn is_done(&self) -> bool {
        self.acked_count == self.acked.len()
    }

    fn report(&self) -> PublishReport {
        PublishReport {
            acked: self.acked_count,
            ..self.report.clone()
        }
    }

    /// The message to hand to rumqttc now, if any: one at a time, only while connected and
    /// while the window has room.
    fn next_submission(&mut self) -> Option<usize> {
        if !self.connected || self.unsent.is_some() || self.in_flight.len() >= self.window {
            return None;
        }
        let index = loop {
            match self.retry.pop_front() {
                Some(index) if self.acked[index] => continue,
                Some(index) => break index,
                None if self.next_fresh < self.acked.len() => {
                    self.next_fresh += 1;
                    break self.next_fresh - 1;
                }
                None => return None,
            }
        };
        self.unsent = Some(index);
        Some(index)
    }

    fn on_event(&mut self, event: &Event) {
        match event {
            Event::Incoming(Packet::ConnAck(connack)) => self.on_connack(connack.session_present),
            Event::Incoming(Packet::PubAck(puback)) => self.on_puback(puback.pkid),
            Event::Outgoing(Outgoing::Publish(pkid)) => self.on_outgoing_publish(*pkid),
            _ => {}
        }
    }

    fn on_connack(&mut self, session_present: bool) {
        self.connected = true;
        if session_present {
            // rumqttc retransmits what was in flight and sends what was queued.
            return;
        }
        // rumqttc dropped its retransmissions and queued requests: send them again, in order.
        let mut lost: Vec<usize> = self.in_flight.drain().map(|(_, index)| index).collect();
        lost.extend(self.unsent.take());
        lost.retain(|&index| !self.acked[index]);
        lost.sort_unstable();
        self.report.resent += lost.len();
        for index in lost.into_iter().rev() {
            self.retry.push_front(index);
        }
    }

    fn on_connection_error(&mut self) {
        self.connected = false;
        self.report.connection_errors += 1;
    }

    fn on_outgoing_publish(&mut self, pkid: u16) {
        if self.qos == QoS::AtMostOnce || pkid == 0 {
            if let Some(index) = self.unsent.take() {
                self.report.sent += 1;
                self.mark_acked(index);
            }
        } else if self.in_flight.contains_key(&pkid) {
            // A retransmission: packet ids are reused only after their PUBACK.
            self.report.retransmitted += 1;
        } else if let Some(index) = self.unsent.take() {
            self.report.sent += 1;
            self.in_flight.insert(pkid, index);
        }
    }

    fn on_puback(&mut self, pkid: u16) {
        if let Some(index) = self.in_flight.remove(&pkid) {
            self.mark_acked(index);
        }
    }

    fn mark_acked(&mut self, index: usize) {
        if !std::mem::replace(&mut self.acked[index], true) {
            self.acked_count += 1;
        }
    }
}

/// Reconnect delay: doubles after every consecutive error, reset by any successful poll.
#[derive(Debug)]
struct Backoff {
    next: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self { next: BACKOFF_MIN }
    }
}

impl Backoff {
    fn next_delay(&mut self) -> Duration {
        let delay = self.next;
        self.next = (self.next * 2).min(BACKOFF_MAX);
        delay
    }

    fn reset(&mut self) {
        self.next = BACKOFF_MIN;
    }
}

/// What a subscriber's event loop shares with the test.
#[derive(Debug, Default)]
struct Received {
    messages: Vec<Message>,
    subacks: usize,
    last_error: Option<String>,
}

/// A client that subscribes to one filter and records every message it receives, in order of
/// arrival (duplicates included). It acknowledges QoS 1 messages as they arrive, reconnects
/// after errors and subscribes again after every CONNACK (harmless when the session kept the
/// subscription). Dropping it aborts its event loop without a DISCONNECT.
#[derive(Debug)]
pub struct Subscriber {
    client: AsyncClient,
    shared: Arc<Mutex<Received>>,
    task: JoinHandle<()>,
}

impl Subscriber {
    /// Subscribes to `filter` on `127.0.0.1:port` over plain TCP with a clean session.
    pub async fn start(port: u16, client_id: &str, filter: &str, qos: QoS) -> Result<Subscriber> {
        Self::connect(mqtt_options(port, client_id), filter, qos).await
    }

    /// Connects with the caller's options (e.g. `clean_session(false)` for a persistent
    /// session, or [`mqtt_tls_options`]) and returns once the broker acknowledged the
    /// subscription (within 10 s).
    pub async fn connect(options: MqttOptions, filter: &str, qos: QoS) -> Result<Subscriber> {
        let client_id = options.client_id();
        let (client, eventloop) = AsyncClient::new(options, REQUEST_CHANNEL_CAPACITY);
        let shared = Arc::new(Mutex::new(Received::default()));
        let task = tokio::spawn(run_subscriber(
            client.clone(),
            eventloop,
            filter.to_owned(),
            qos,
            Arc::clone(&shared),
        ));
        let subscriber = Subscriber {
            client,
            shared,
            task,
        };
        let deadline = Instant::now() + SUBSCRIBE_TIMEOUT;
        while subscriber.lock().subacks == 0 {
            if Instant::now() >= deadline {
                bail!(
                    "subscriber {client_id:?} got no SUBACK for {filter:?} within \
                     {SUBSCRIBE_TIMEOUT:?}; last error: {}",
                    subscriber.last_error().as_deref().unwrap_or("none")
                );
            }
            time::sleep(PROBE_INTERVAL).await;
        }
        Ok(subscriber)
    }

    /// Everything received so far, in order of arrival.
    pub fn received(&self) -> Vec<Message> {
        self.lock().messages.clone()
    }

    /// How many messages arrived so far (duplicates included).
    pub fn count(&self) -> usize {
        self.lock().messages.len()
    }

    /// How many SUBACKs arrived: one per (re)connection once it is subscribed again.
    pub fn subscriptions(&self) -> usize {
        self.lock().subacks
    }

    /// The last connection or subscription error, if any.
    pub fn last_error(&self) -> Option<String> {
        self.lock().last_error.clone()
    }

    /// Waits until at least `n` messages arrived and returns everything received; fails with the
    /// count when `timeout` passes first.
    pub async fn wait_for(&self, n: usize, timeout: Duration) -> Result<Vec<Message>> {
        let deadline = Instant::now() + timeout;
        loop {
            let count = self.count();
            if count >= n {
                return Ok(self.received());
            }
            if Instant::now() >= deadline {
                bail!(
                    "waited {timeout:?} for {n} messages, received {count}; last error: {}",
                    self.last_error().as_deref().unwrap_or("none")
                );
            }
            time::sleep(PROBE_INTERVAL).await;
        }
    }

    /// Sends DISCONNECT (a persistent session then queues what arrives while offline), stops the
    /// event loop and returns everything received.
    pub async fn stop(mut self) -> Result<Vec<Message>> {
        self.client
            .try_disconnect()
            .context("asking the subscriber to disconnect")?;
        match time::timeout(DISCONNECT_TIMEOUT, &mut self.task).await {
            Ok(joined) => joined.context("the subscriber's event loop failed")?,
            Err(_elapsed) => {
                bail!("the subscriber did not disconnect within {DISCONNECT_TIMEOUT:?}")
            }
        }
        Ok(self.received())
    }

    fn lock(&self) -> MutexGuard<'_, Received> {
        lock(&self.shared)
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A poisoned lock only means another test thread panicked; the data is still usable.
fn lock(shared: &Mutex<Received>) -> MutexGuard<'_, Received> {
    shared
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The subscriber's event loop: runs until its DISCONNECT is written.
async fn run_subscriber(
    client: AsyncClient,
    mut eventloop: EventLoop,
    filter: String,
    qos: QoS,
    shared: Arc<Mutex<Received>>,
) {
    let mut backoff = Backoff::default();
    loop {
        match eventloop.poll().await {
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                backoff.reset();
                if let Err(error) = client.try_subscribe(filter.as_str(), qos) {
                    lock(&shared).last_error = Some(format!("subscribing to {filter:?}: {error}"));
                }
            }
            Ok(Event::Incoming(Packet::SubAck(suback))) => {
                let mut shared = lock(&shared);
                if suback.return_codes.contains(&SubscribeReasonCode::Failure) {
                    shared.last_error = Some(format!("the broker refused {filter:?}"));
                } else {
                    shared.subacks += 1;
                }
            }
            Ok(Event::Incoming(Packet::Publish(publish))) => {
                lock(&shared)
                    .messages
                    .push((publish.topic.clone(), publish.payload.to_vec()));
            }
            Ok(Event::Outgoing(Outgoing::Disconnect)) => return,
            Ok(_) => {}
            Err(error) => {
                lock(&shared).last_error = Some(error.to_string());
                time::sleep(backoff.next_delay()).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn connected(total: usize, qos: QoS, window: usize) -> Tracker {
        let mut tracker = Tracker::new(total, qos, window);
        tracker.on_connack(false);
        tracker
    }

    /// Hands the next message to "rumqttc", which writes it under `pkid`.
    fn send(tracker: &mut Tracker, pkid: u16) -> usize {
        let index = tracker.next_submission().expect("a message to send");
        tracker.on_outgoing_publish(pkid);
        index
    }

    #[test]
    fn given_in_order_pubacks_when_tracking_should_count_each_message_once() {
        let mut tracker = connected(3, QoS::AtLeastOnce, 10);
        assert_eq!(send(&mut tracker, 1), 0);
        assert_eq!(send(&mut tracker, 2), 1);
        tracker.on_puback(1);
        assert_eq!(send(&mut tracker, 3), 2);
        tracker.on_puback(2);
        tracker.on_puback(2);
        assert!(!tracker.is_done());
        tracker.on_puback(3);
        assert!(tracker.is_done());
        assert_eq!(tracker.report().acked, 3);
        assert_eq!(tracker.report().sent, 3);
    }

    #[test]
    fn given_a_full_window_when_asking_should_wait_for_a_puback() {
        let mut tracker = connected(5, QoS::AtLeastOnce, 2);
        send(&mut tracker, 1);
        send(&mut tracker, 2);
        assert_eq!(tracker.next_submission(), None);
        tracker.on_puback(1);
        assert_eq!(tracker.next_submission(), Some(2));
    }

    #[test]
    fn given_a_kept_session_when_reconnecting_should_count_retransmissions_not_new_sends() {
        let mut tracker = connected(2, QoS::AtLeastOnce, 10);
        send(&mut tracker, 1);
        assert_eq!(tracker.next_submission(), Some(1));
        tracker.on_connection_error();
        assert_eq!(tracker.next_submission(), None, "disconnected");
        tracker.on_connack(true);
        tracker.on_outgoing_publish(1); // retransmitted
        tracker.on_outgoing_publish(2); // the queued request, now written
        tracker.on_puback(1);
        tracker.on_puback(2);
        assert!(tracker.is_done());
        let report = tracker.report();
        assert_eq!(
            (report.sent, report.retransmitted, report.resent),
            (2, 1, 0)
        );
    }

    #[test]
    fn given_a_lost_session_when_reconnecting_should_resend_unacked_messages_first() {
        let mut tracker = connected(4, QoS::AtLeastOnce, 10);
        send(&mut tracker, 1);
        send(&mut tracker, 2);
        tracker.on_puback(1);
        assert_eq!(tracker.next_submission(), Some(2));
        tracker.on_connection_error();
        tracker.on_connack(false);
        assert_eq!(send(&mut tracker, 1), 1);
        assert_eq!(send(&mut tracker, 2), 2);
        assert_eq!(send(&mut tracker, 3), 3);
        for pkid in 1..=3 {
            tracker.on_puback(pkid);
        }
        assert!(tracker.is_done());
        assert_eq!(tracker.report().resent, 2);
    }

    #[test]
    fn given_qos0_when_written_should_count_as_acked() {
        let mut tracker = connected(2, QoS::AtMostOnce, 1);
        send(&mut tracker, 0);
        send(&mut tracker, 0);
        assert!(tracker.is_done());
    }

    #[test]
    fn given_consecutive_errors_when_backing_off_should_double_up_to_the_cap() {
        let mut backoff = Backoff::default();
        let delays: Vec<Duration> = (0..7).map(|_| backoff.next_delay()).collect();
        assert_eq!(delays[0], BACKOFF_MIN);
        assert_eq!(delays[1], BACKOFF_MIN * 2);
        assert_eq!(delays[6], BACKOFF_MAX);
        backoff.reset();
        assert_eq!(backoff.next_delay(), BACKOFF_MIN);
    }
}
