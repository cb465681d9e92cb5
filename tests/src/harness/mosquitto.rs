//! A real Mosquitto broker for the MQTT tests: `/usr/sbin/mosquitto -c <conf>` on free loopback
//! ports, with its configuration, persistence file, log and (optionally) a throw-away TLS CA all
//! in one temporary directory, and killed when the test is done.
//!
//! Invariants:
//! - at most one process per [`Mosquitto`] at a time; [`Mosquitto::restart`] starts a new one on
//!   the SAME ports and the same persistence directory, so clients keep their address and
//!   persistent sessions (with their queued QoS 1 messages) survive a graceful restart;
//! - the configuration never limits the per-client queue (`max_queued_messages 0`,
//!   `max_queued_bytes 0`): a test that loses messages found a bug, not a full queue;
//! - "started" means the process accepts TCP connections on every listener (Mosquitto loads its
//!   persistence file before it opens them);
//! - a `Mosquitto` never outlives its process: `Drop` kills it (SIGKILL) and reaps it, then prints
//!   the tail of the log to the (captured) test output, so libtest shows it for failing tests;
//! - it never touches the system's Mosquitto service: own config (`-c`), own ports, own files.
//!
//! Blocking: starting, stopping and restarting block the calling thread for up to ~10 s. From an
//! async test use a multi-thread runtime or `tokio::task::spawn_blocking`.
//!
//! Environment knob: `MOSQUITTO_BIN` (path of the broker, default `/usr/sbin/mosquitto`).

use std::fmt::Write as _;
use std::fs::{self, OpenOptions};
use std::io::{self, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use tempfile::TempDir;

use super::pki::TestPki;

/// Where Debian's `mosquitto` package installs the broker.
const DEFAULT_MOSQUITTO_BIN: &str = "/usr/sbin/mosquitto";
/// How long Mosquitto may take to accept connections on every listener.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a graceful shutdown (SIGTERM, then writing the persistence file) may take.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(10);
/// How often to probe a starting or stopping process.
const PROBE_INTERVAL: Duration = Duration::from_millis(20);
/// How many log lines to show in errors and when a `Mosquitto` is dropped.
const LOG_TAIL_LINES: usize = 60;
/// How many times the first start may pick new ports because another process took them between
/// the harness finding them free and Mosquitto binding them.
const PORT_ATTEMPTS: u32 = 3;

/// How to start Mosquitto.
#[derive(Debug, Clone)]
pub struct MosquittoOptions {
    /// Adds a second, TLS listener with a server certificate for `localhost` / `127.0.0.1`
    /// signed by a test CA generated for this broker (see [`Mosquitto::ca_file`]).
    pub tls: bool,
    /// Mosquitto's `max_inflight_messages`: unacknowledged QoS 1/2 messages it sends to one
    /// client at a time (its default, 20, would throttle a subscriber that acks after fsync).
    pub max_inflight_messages: u16,
}

impl Default for MosquittoOptions {
    fn default() -> Self {
        Self {
            tls: false,
            max_inflight_messages: 1000,
        }
    }
}

/// The test PKI of a TLS-enabled broker: files in the broker's temporary directory.
#[derive(Debug)]
struct TlsFiles {
    port: u16,
    ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
}

/// A running (or stopped, between [`Mosquitto::stop`]/[`Mosquitto::kill9`] and
/// [`Mosquitto::restart`]) Mosquitto process.
#[derive(Debug)]
pub struct Mosquitto {
    options: MosquittoOptions,
    dir: TempDir,
    log_path: PathBuf,
    port: u16,
    tls: Option<TlsFiles>,
    child: Option<Child>,
    starts: u32,
}

impl Mosquitto {
    /// Starts a plain-TCP broker with the default options and waits until it accepts connections.
    pub fn start() -> Result<Mosquitto> {
        Self::start_with(MosquittoOptions::default())
    }

    /// Starts a broker and waits until every listener accepts connections; on failure the error
    /// carries the tail of the Mosquitto log.
    pub fn start_with(options: MosquittoOptions) -> Result<Mosquitto> {
        let dir = tempfile::Builder::new()
            .prefix("runnel-mosquitto-")
            .tempdir()
            .context("creating a temporary directory for mosquitto")?;
        let tls = if options.tls {
            let pki = TestPki::generate(dir.path())?;
            Some(TlsFiles {
                port: 0,
                ca: pki.ca,
                cert: pki.server_cert,
                key: pki.server_key,
            })
        } else {
            None
        };
        let log_path = dir.path().join("mosquitto.log");
        let mut mosquitto = Mosquitto {
            options,
            dir,
            log_path,
            port: 0,
            tls,
            child: None,
            starts: 0,
        };
        let mut attempt = 1;
        loop {
            mosquitto.pick_ports()?;
            match mosquitto.spawn() {
                Ok(()) => return Ok(mosquitto),
                Err(error) if attempt < PORT_ATTEMPTS && mosquitto.lost_a_port_race() => {
                    attempt += 1;
                    eprintln!("mosquitto harness: a port was taken, retrying: {error:#}");
                }
                Err(error) => return Err(error),
            }
        }
    }

    /// The plain MQTT port on 127.0.0.1; the same across restarts.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The TLS MQTT port on 127.0.0.1 (server name `localhost`), when started with `tls`.
    pub fn tls_port(&self) -> Option<u16> {
        self.tls.as_ref().map(|tls| tls.port)
    }

    /// The PEM certificate of the test CA that signed the TLS listener's certificate.
    pub fn ca_file(&self) -> Option<&Path> {
        self.tls.as_ref().map(|tls| tls.ca.as_path())
    }

    /// The directory holding the config, the persistence file and the log.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Where the log of every process of this `Mosquitto` is collected.
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// The whole log: Mosquitto's own `log_dest file` lines and its stdout/stderr, each start
    /// preceded by a `=== harness: start #n ===` line.
    pub fn log(&self) -> String {
        fs::read(&self.log_path)
            .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
            .unwrap_or_else(|error| format!("<cannot read {}: {error}>", self.log_path.display()))
    }

    /// The last `lines` lines of the log.
    pub fn log_tail(&self, lines: usize) -> String {
        let log = self.log();
        let all: Vec<&str> = log.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// Whether the process is still alive (reaps it if it has exited).
    pub fn is_running(&mut self) -> Result<bool> {
        match self.child.as_mut() {
            None => Ok(false),
            Some(child) => Ok(child.try_wait().context("polling mosquitto")?.is_none()),
        }
    }

    /// Sends SIGTERM and waits until the process has exited, which it does after writing its
    /// persistence file. Fails if it does not exit cleanly within 10 s.
    pub fn stop(&mut self) -> Result<()> {
        let mut child = self
            .child
            .take()
            .context("stop: mosquitto is not running")?;
        send_signal(&child, libc::SIGTERM).context("sending SIGTERM to mosquitto")?;
        let deadline = Instant::now() + SHUTDOWN_TIMEOUT;
        let status = loop {
            if let Some(status) = child.try_wait().context("waiting for mosquitto")? {
                break status;
            }
            if Instant::now() >= deadline {
                // Best effort: the error below is what matters.
                let _ = child.kill();
                let _ = child.wait();
                bail!(
                    "mosquitto did not exit within {SHUTDOWN_TIMEOUT:?} of SIGTERM; log tail:\n{}",
                    self.log_tail(LOG_TAIL_LINES)
                );
            }
            thread::sleep(PROBE_INTERVAL);
        };
        if !status.success() {
            bail!(
                "mosquitto exited with {status} on SIGTERM; log tail:\n{}",
                self.log_tail(LOG_TAIL_LINES)
            );
        }
        Ok(())
    }

    /// Kills the process with SIGKILL (no chance to save its persistence file) and reaps it.
    pub fn kill9(&mut self) -> Result<ExitStatus> {
        let mut child = self
            .child
            .take()
            .context("kill9: mosquitto is not running")?;
        child.kill().context("sending SIGKILL to mosquitto")?;
        child.wait().context("reaping the killed mosquitto")
    }

    /// Stops the process gracefully if it is running, then starts a new one on the same ports
    /// and persistence directory and waits until it accepts connections.
    pub fn restart(&mut self) -> Result<()> {
        if self.is_running()? {
            self.stop()?;
        }
        self.child = None;
        self.spawn()
    }

    /// Picks free loopback ports for the listeners. Another process may take one before
    /// Mosquitto binds it; [`Mosquitto::start_with`] retries then.
    fn pick_ports(&mut self) -> Result<()> {
        self.port = free_port()?;
        if let Some(tls) = self.tls.as_mut() {
            tls.port = free_port()?;
        }
        Ok(())
    }

    /// Whether the last process failed because a listener's port was in use.
    fn lost_a_port_race(&self) -> bool {
        self.log_tail(LOG_TAIL_LINES)
            .contains("Address already in use")
    }

    /// Writes the configuration for the current ports.
    fn write_config(&self) -> Result<PathBuf> {
        let dir = self.dir.path();
        let mut conf = String::new();
        // Global settings first: with `per_listener_settings false` (the default, written out
        // for clarity) `allow_anonymous` applies to every listener.
        let _ = writeln!(conf, "per_listener_settings false");
        let _ = writeln!(conf, "allow_anonymous true");
        // Started as root, Mosquitto would switch to the `mosquitto` user, which cannot read
        // our temporary directory. Run as non-root, `user` has no effect.
        if is_root() {
            let _ = writeln!(conf, "user root");
        }
        let _ = writeln!(conf, "persistence true");
        // Mosquitto 1.x concatenated location and file name; 2.0 adds a `/` (harmless twice).
        let _ = writeln!(conf, "persistence_location {}/", dir.display());
        let _ = writeln!(conf, "persistence_file mosquitto.db");
        let _ = writeln!(conf, "max_queued_messages 0");
        let _ = writeln!(conf, "max_queued_bytes 0");
        let _ = writeln!(
            conf,
            "max_inflight_messages {}",
            self.options.max_inflight_messages
        );
        let _ = writeln!(conf, "log_dest file {}", self.log_path.display());
        for log_type in ["error", "warning", "notice", "information", "subscribe"] {
            let _ = writeln!(conf, "log_type {log_type}");
        }
        let _ = writeln!(conf, "log_timestamp_format %Y-%m-%dT%H:%M:%S");
        // Listener settings follow their `listener` line.
        let _ = writeln!(conf, "listener {} 127.0.0.1", self.port);
        if let Some(tls) = &self.tls {
            let _ = writeln!(conf, "listener {} 127.0.0.1", tls.port);
            let _ = writeln!(conf, "cafile {}", tls.ca.display());
            let _ = writeln!(conf, "certfile {}", tls.cert.display());
            let _ = writeln!(conf, "keyfile {}", tls.key.display());
        }
        let path = dir.join("mosquitto.conf");
        fs::write(&path, conf).with_context(|| format!("writing {}", path.display()))?;
        Ok(path)
    }

    fn spawn(&mut self) -> Result<()> {
        let conf = self.write_config()?;
        let bin = mosquitto_bin();
        self.starts += 1;
        let mut log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .with_context(|| format!("opening {}", self.log_path.display()))?;
        writeln!(
            log,
            "=== harness: start #{}: {} -c {} ===",
            self.starts,
            bin.display(),
            conf.display()
        )?;
        // Errors before Mosquitto opens its log file (a bad config) go to stderr: keep them too.
        let child = Command::new(&bin)
            .arg("-c")
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(log.try_clone().context("duplicating the log file handle")?)
            .stderr(log)
            .spawn()
            .with_context(|| {
                format!(
                    "spawning {} (install it with `apt-get install mosquitto`)",
                    bin.display()
                )
            })?;
        self.child = Some(child);
        self.wait_until_accepting()
    }

    /// Waits until a TCP connect succeeds on every listener.
    fn wait_until_accepting(&mut self) -> Result<()> {
        let mut ports = vec![self.port];
        ports.extend(self.tls_port());
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        loop {
            let child = self.child.as_mut().context("mosquitto is not running")?;
            if let Some(status) = child.try_wait().context("polling the starting mosquitto")? {
                self.child = None;
                bail!(
                    "mosquitto exited with {status} before accepting connections; log tail:\n{}",
                    self.log_tail(LOG_TAIL_LINES)
                );
            }
            if ports.iter().all(|&port| accepts_connections(port)) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                self.child = None;
                bail!(
                    "mosquitto did not accept connections on 127.0.0.1 ports {ports:?} within \
                     {STARTUP_TIMEOUT:?}; log tail:\n{}",
                    self.log_tail(LOG_TAIL_LINES)
                );
            }
            thread::sleep(PROBE_INTERVAL);
        }
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // Nothing useful can be done about a failure here.
            let _ = child.kill();
            let _ = child.wait();
        }
        let mut report = String::new();
        let _ = writeln!(
            report,
            "--- tail of the mosquitto log ({}) ---\n{}\n--- end of the mosquitto log ---",
            self.log_path.display(),
            self.log_tail(LOG_TAIL_LINES)
        );
        if thread::panicking() {
            self.dir.disable_cleanup(true);
            let _ = writeln!(
                report,
                "(mosquitto directory kept at {})",
                self.dir.path().display()
            );
        }
        // libtest captures this and shows it only for tests that fail.
        eprint!("{report}");
    }
}

fn mosquitto_bin() -> PathBuf {
    std::env::var_os("MOSQUITTO_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_MOSQUITTO_BIN))
}

/// A loopback port that was free a moment ago (another process may take it before it is bound).
pub fn free_port() -> Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").context("finding a free loopback port")?;
    Ok(listener.local_addr()?.port())
}

fn accepts_connections(port: u16) -> bool {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
}

fn is_root() -> bool {
    // SAFETY: geteuid(2) has no arguments, cannot fail and touches no memory of ours.
    unsafe { libc::geteuid() == 0 }
}

/// Sends `signal` to the child, which we have not reaped yet, so its pid is still ours.
fn send_signal(child: &Child, signal: libc::c_int) -> io::Result<()> {
    let pid = libc::pid_t::try_from(child.id())
        .map_err(|_| io::Error::other("the child's pid does not fit in pid_t"))?;
    // SAFETY: kill(2) only reads its two integer arguments. The pid names our own child, which
    // has not been waited for, so it cannot have been recycled for another process.
    let rc = unsafe { libc::kill(pid, signal) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}
