//! The parties of one bridge case, started fresh and killed when dropped: Mosquitto (through
//! the test harness), the broker (started like the bench's own, with a config file when the
//! bridge is embedded), `runnel-bridge` (standalone), and where arrivals are counted (the
//! topic's high watermarks, or the baseline's MQTT subscriber).
//!
//! "Started" means the bridge is subscribed: Mosquitto logged its subscription (the harness
//! turns on `log_type subscribe`), so nothing published afterwards can miss it.

use std::collections::VecDeque;
use std::fs;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use anyhow::{Context, bail};
use runnel_tests::clients;
use runnel_tests::harness::mosquitto::{Mosquitto, MosquittoOptions};
use runnel_tests::harness::mqtt::Subscriber;
use tempfile::TempDir;

use super::super::broker::{self, Broker, BrokerSpec, Memory};
use super::super::deadline::Deadline;
use super::super::proc_stat;
use super::super::watermarks::Watermarks;
use super::{BridgeSpec, Case, Kafka, Mode};

/// The MQTT filter of the bridge rule; publishers use `trucks/t<i>/gps`.
const FILTER: &str = "trucks/+/gps";
/// Partitions of the bridge's topic.
const PARTITIONS: i32 = 3;
/// The bridge's name; its MQTT client id is `runnel-bridge-<name>`.
const BRIDGE_NAME: &str = "bench";
/// What `runnel-bridge` logs once every bridge started (its topics were found).
const RUNNING_MARKER: &str = "runnel-bridge running";

/// The running parties of one case.
pub struct Setup {
    pub mosquitto: Mosquitto,
    mosquitto_pid: Option<u32>,
    broker: Option<Broker>,
    bridge: Option<BridgeProcess>,
    pub sink: Sink,
    mode: Mode,
    /// Holds the config file the broker or bridge reads.
    _dir: TempDir,
}

/// CPU time used so far: per party (in a fixed order), and by the whole machine.
pub struct CpuTimes {
    pub parties: Vec<(&'static str, Duration)>,
    pub machine: Duration,
}

impl Setup {
    /// Mosquitto, then the Kafka side and the bridge, until the bridge is subscribed.
    pub fn start(case: &Case<'_>, kafka: &Kafka<'_>, deadline: &Deadline) -> anyhow::Result<Self> {
        let mosquitto = Mosquitto::start_with(MosquittoOptions {
            tls: false,
            max_inflight_messages: 1000,
        })?;
        let conf = mosquitto.dir().join("mosquitto.conf");
        let mosquitto_pid = proc_stat::find_pid_with_arg(&conf.to_string_lossy());
        if mosquitto_pid.is_none() {
            eprintln!("warning: mosquitto's pid not found in /proc; its CPU is not reported");
        }
        let dir = tempfile::Builder::new()
            .prefix("runnel-bench-bridge-")
            .tempdir()
            .context("creating a temporary directory for the bridge config")?;
        let toml = bridge_toml(mosquitto.port(), &case.topic);
        let (broker, bridge, sink) = match case.mode {
            Mode::MqttOnly => {
                let subscribing =
                    Subscriber::start(mosquitto.port(), "bench-sub", FILTER, case.qos);
                let subscriber = case.subscriber.block_on(subscribing)?;
                (None, None, Sink::Subscriber(subscriber))
            }
            Mode::Standalone => {
                let (broker, bootstrap) = start_broker(kafka, None)?;
                let admin = clients::admin(&bootstrap)?;
                let creating = clients::create_topic(&admin, &case.topic, PARTITIONS, &[]);
                case.subscriber.block_on(creating)?;
                let sink = topic_sink(&bootstrap, &case.topic, deadline)?;
                let path = dir.path().join("bridge.toml");
                fs::write(&path, &toml).with_context(|| format!("writing {}", path.display()))?;
                let bridge = BridgeProcess::start(case.spec, &path, &bootstrap)?;
                (broker, Some(bridge), Sink::Topic(sink))
            }
            Mode::Embedded => {
                let path = dir.path().join("runnel.toml");
                fs::write(&path, &toml).with_context(|| format!("writing {}", path.display()))?;
                let (broker, bootstrap) = start_broker(kafka, Some(&path))?;
                let sink = topic_sink(&bootstrap, &case.topic, deadline)?;
                (broker, None, Sink::Topic(sink))
            }
        };
        if case.mode != Mode::MqttOnly {
            let client_id = format!("runnel-bridge-{BRIDGE_NAME}");
            wait_for_subscription(&mosquitto, &client_id, deadline)?;
        }
        Ok(Setup {
            mosquitto,
            mosquitto_pid,
            broker,
            bridge,
            sink,
            mode: case.mode,
            _dir: dir,
        })
    }

    /// Fails, with its last output, if the bridge or the broker has exited.
    pub fn ensure_running(&mut self) -> anyhow::Result<()> {
        if let Some(broker) = self.broker.as_mut() {
            broker.ensure_running("the bridge case")?;
        }
        if let Some(bridge) = self.bridge.as_mut() {
            bridge.ensure_running()?;
        }
        Ok(())
    }

    /// The memory of what runs the bridge: `("bridge", …)` standalone, `("broker", …)`
    /// embedded, `None` for the MQTT-only baseline.
    pub fn receiver_memory(&self) -> anyhow::Result<Option<(&'static str, Memory)>> {
        match (&self.bridge, &self.broker, self.mode) {
            (Some(bridge), _, _) => Ok(Some(("bridge", bridge.memory()?))),
            (None, Some(broker), Mode::Embedded) => Ok(Some(("broker", broker.memory()?))),
            _ => Ok(None),
        }
    }

    /// Mosquitto's memory, when its process was found.
    pub fn mosquitto_memory(&self) -> Option<Memory> {
        self.mosquitto_pid
            .and_then(|pid| broker::read_memory(pid).ok())
    }

    /// CPU time so far of the publisher threads, the baseline's subscriber threads, Mosquitto,
    /// the bridge and the broker (those present), and of the whole machine.
    pub fn cpu(&self) -> anyhow::Result<CpuTimes> {
        let mut parties = vec![("publishers", proc_stat::threads_cpu("mqtt-pub")?)];
        if self.mode == Mode::MqttOnly {
            parties.push(("subscriber", proc_stat::threads_cpu("mqtt-sub")?));
        }
        if let Some(pid) = self.mosquitto_pid {
            parties.push(("mosquitto", proc_stat::process_cpu(pid)?));
        }
        if let Some(bridge) = &self.bridge {
            parties.push(("bridge", proc_stat::process_cpu(bridge.pid())?));
        }
        if let Some(broker) = &self.broker {
            parties.push(("broker", proc_stat::process_cpu(broker.pid())?));
        }
        Ok(CpuTimes {
            parties,
            machine: proc_stat::machine_busy()?,
        })
    }
}

/// Where arrivals are counted.
pub enum Sink {
    Subscriber(Subscriber),
    Topic(Watermarks),
}

impl Sink {
    pub fn count(&self) -> anyhow::Result<u64> {
        match self {
            Sink::Subscriber(s) => Ok(s.count() as u64),
            Sink::Topic(w) => Ok(w.highs()?.iter().map(|h| *h as u64).sum()),
        }
    }

    pub fn per_partition(&self) -> anyhow::Result<Vec<i64>> {
        match self {
            Sink::Subscriber(_) => Ok(Vec::new()),
            Sink::Topic(w) => w.highs(),
        }
    }
}

/// Counts the bridge's topic once it exists, warning when it has not [`PARTITIONS`].
fn topic_sink(bootstrap: &str, topic: &str, deadline: &Deadline) -> anyhow::Result<Watermarks> {
    let sink = Watermarks::new(bootstrap, topic, deadline)?;
    if sink.partitions() != PARTITIONS {
        eprintln!(
            "warning: {topic} has {} partitions, not {PARTITIONS}",
            sink.partitions()
        );
    }
    Ok(sink)
}

/// A fresh broker whose auto-created topics get [`PARTITIONS`] partitions (and `config`, if
/// any), or the external one; returns it (when started) and its address.
fn start_broker(
    kafka: &Kafka<'_>,
    config: Option<&Path>,
) -> anyhow::Result<(Option<Broker>, String)> {
    match kafka {
        Kafka::Spawn(spec) => {
            let spec = BrokerSpec {
                partitions: PARTITIONS,
                ..(*spec).clone()
            };
            let broker = Broker::start_with_config(&spec, config)?;
            let addr = broker.addr().to_owned();
            Ok((Some(broker), addr))
        }
        Kafka::External(addr) => Ok((None, (*addr).to_owned())),
    }
}

/// The `[[bridge]]` table, for `runnel-bridge --config` and for the broker's `--config` alike;
/// everything not named here keeps the bridge's defaults. The rule subscribes at QoS 1:
/// Mosquitto delivers at the lower of the publish and the subscription QoS, so QoS 0
/// publishes arrive at QoS 0.
fn bridge_toml(mqtt_port: u16, topic: &str) -> String {
    format!(
        "[[bridge]]\nname = \"{BRIDGE_NAME}\"\n\n[bridge.mqtt]\nhost = \"127.0.0.1\"\n\
         port = {mqtt_port}\nreconnect_min_ms = 100\nreconnect_max_ms = 1000\n\n\
         [[bridge.ingress]]\nfilter = \"{FILTER}\"\ntopic = \"{topic}\"\nqos = 1\nkey_level = 1\n"
    )
}

/// Waits until Mosquitto logged that `client_id` subscribed to [`FILTER`].
fn wait_for_subscription(
    mosquitto: &Mosquitto,
    client_id: &str,
    deadline: &Deadline,
) -> anyhow::Result<()> {
    let (who, filter) = (format!(": {client_id} "), format!(" {FILTER}"));
    loop {
        let log = mosquitto.log();
        if log
            .lines()
            .any(|line| line.contains(&who) && line.ends_with(&filter))
        {
            return Ok(());
        }
        deadline.check(|| {
            format!(
                "waiting for {client_id} to subscribe to {FILTER}; mosquitto log:\n{}",
                mosquitto.log_tail(20)
            )
        })?;
        thread::sleep(Duration::from_millis(20));
    }
}

/// A running `runnel-bridge`, its output echoed to stderr, killed when dropped.
struct BridgeProcess {
    child: Child,
    tail: Arc<Mutex<VecDeque<String>>>,
}

impl BridgeProcess {
    fn start(spec: &BridgeSpec, config: &Path, bootstrap: &str) -> anyhow::Result<Self> {
        let mut child = Command::new(&spec.bin)
            .arg("--config")
            .arg(config)
            .args(["--bootstrap", bootstrap, "--log-level", "info"])
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting {}", spec.bin.display()))?;
        let tail = Arc::new(Mutex::new(VecDeque::with_capacity(broker::TAIL_LINES)));
        let (tx, rx) = mpsc::channel();
        let running: fn(&str) -> Option<String> =
            |line| line.contains(RUNNING_MARKER).then(String::new);
        if let Some(out) = child.stdout.take() {
            broker::forward(out, "bridge stdout", Arc::clone(&tail), running, tx.clone());
        }
        if let Some(err) = child.stderr.take() {
            broker::forward(err, "bridge stderr", Arc::clone(&tail), running, tx);
        }
        let mut bridge = BridgeProcess { child, tail };
        match rx.recv_timeout(spec.startup_timeout) {
            Ok(_) => Ok(bridge),
            Err(RecvTimeoutError::Timeout) => bail!(
                "runnel-bridge did not log `{RUNNING_MARKER}` within {}s; its last output:\n{}",
                spec.startup_timeout.as_secs(),
                broker::tail_text(&bridge.tail)
            ),
            Err(RecvTimeoutError::Disconnected) => {
                let status = bridge.child.wait().context("waiting for runnel-bridge")?;
                bail!(
                    "runnel-bridge exited ({status}) before running; its last output:\n{}",
                    broker::tail_text(&bridge.tail)
                )
            }
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn memory(&self) -> anyhow::Result<Memory> {
        broker::read_memory(self.child.id())
    }

    fn ensure_running(&mut self) -> anyhow::Result<()> {
        if let Some(status) = self.child.try_wait().context("polling runnel-bridge")? {
            bail!(
                "runnel-bridge died ({}); its last output:\n{}",
                broker::describe(status),
                broker::tail_text(&self.tail)
            );
        }
        Ok(())
    }
}

impl Drop for BridgeProcess {
    fn drop(&mut self) {
        // Ignore errors: the process may already be gone, and Drop cannot report them.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn given_a_topic_when_writing_the_toml_should_name_the_rule() {
        let toml = bridge_toml(1883, "gps");
        assert!(toml.starts_with("[[bridge]]\nname = \"bench\"\n"), "{toml}");
        assert!(toml.contains("port = 1883\n"), "{toml}");
        assert!(
            toml.contains("filter = \"trucks/+/gps\"\ntopic = \"gps\"\nqos = 1\nkey_level = 1\n"),
            "{toml}"
        );
    }
}
