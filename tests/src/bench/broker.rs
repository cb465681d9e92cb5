//! Starts the real `runnel` binary for a bench run and reads its memory from `/proc`.
//!
//! The broker listens on a free port (`--listen 127.0.0.1:0`, unless a caller names one) and
//! announces it on stderr with a line containing `listening on IP:PORT`; we wait for that
//! line, keep the last lines of its output for error messages, and kill it in `Drop` so a
//! failed run never leaks a process. The output plumbing ([`forward`], [`tail_text`]) and
//! [`read_memory`] also serve the bridge scenario's `runnel-bridge` process.

use std::collections::VecDeque;
use std::fs;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread;
use std::time::Duration;

use anyhow::{Context, bail};
use tempfile::TempDir;

/// How many of the broker's last output lines are kept for error messages.
pub const TAIL_LINES: usize = 40;
const LISTEN_MARKER: &str = "listening on ";

/// How to start a broker.
#[derive(Debug, Clone)]
pub struct BrokerSpec {
    pub bin: PathBuf,
    pub log_level: String,
    pub partitions: i32,
    /// Parent directory of the temporary data dir (`None`: the system temp dir).
    pub work_dir: Option<PathBuf>,
    pub startup_timeout: Duration,
}

/// Resident memory of a process, in KiB, as reported by `/proc/<pid>/status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Memory {
    /// `VmRSS`: resident now.
    pub rss_kb: u64,
    /// `VmHWM`: the peak resident size since the process started.
    pub hwm_kb: u64,
    /// `RssAnon`: the resident heap and stacks, i.e. what the broker itself allocated.
    pub anon_kb: u64,
    /// `RssFile`: resident file-backed pages, mostly the memory-mapped LMDB file, which the
    /// kernel can drop under memory pressure.
    pub file_kb: u64,
}

/// A running broker, killed when dropped.
pub struct Broker {
    child: Child,
    addr: String,
    tail: Arc<Mutex<VecDeque<String>>>,
    _data_dir: TempDir,
}

impl Broker {
    pub fn start(spec: &BrokerSpec) -> anyhow::Result<Broker> {
        Self::start_with_config(spec, None)
    }

    /// [`Broker::start`] with `--config FILE` (e.g. `[[bridge]]` tables); the flags the bench
    /// passes override the file.
    pub fn start_with_config(spec: &BrokerSpec, config: Option<&Path>) -> anyhow::Result<Broker> {
        Self::start_on(spec, config, "127.0.0.1:0")
    }

    /// [`Broker::start_with_config`] listening on `listen` (`IP:PORT`), e.g. a fixed port that
    /// another broker's `[[uplink]]` already points at.
    pub fn start_on(
        spec: &BrokerSpec,
        config: Option<&Path>,
        listen: &str,
    ) -> anyhow::Result<Broker> {
        Self::start_prepared(spec, config, listen, |_| Ok(()))
    }

    /// [`Broker::start_on`] after `prepare` ran on the fresh data dir, e.g. to add SCRAM
    /// users with `runnel user add`, which refuses while the broker runs.
    pub fn start_prepared(
        spec: &BrokerSpec,
        config: Option<&Path>,
        listen: &str,
        prepare: impl FnOnce(&Path) -> anyhow::Result<()>,
    ) -> anyhow::Result<Broker> {
        if !spec.bin.is_file() {
            bail!(
                "broker binary {} not found: build it with `cargo build --release -p \
                 runnel-broker`, or pass --broker-bin / RUNNEL_BIN, or --bootstrap",
                spec.bin.display()
            );
        }
        let data_dir = match &spec.work_dir {
            Some(parent) => tempfile::Builder::new()
                .prefix("runnel-bench-")
                .tempdir_in(parent),
            None => tempfile::Builder::new().prefix("runnel-bench-").tempdir(),
        }
        .context("creating the broker data dir")?;
        prepare(data_dir.path()).context("preparing the broker data dir")?;
        let mut command = Command::new(&spec.bin);
        if let Some(config) = config {
            command.arg("--config").arg(config);
        }
        let mut child = command
            .arg("--listen")
            .arg(listen)
            .arg("--data-dir")
            .arg(data_dir.path())
            .args(["--auto-create-topics", "true"])
            .arg("--default-partitions")
            .arg(spec.partitions.to_string())
            .arg("--log-level")
            .arg(&spec.log_level)
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting {}", spec.bin.display()))?;

        let tail = Arc::new(Mutex::new(VecDeque::with_capacity(TAIL_LINES)));
        let (addr_tx, addr_rx) = mpsc::channel();
        if let Some(out) = child.stdout.take() {
            forward(
                out,
                "broker stdout",
                Arc::clone(&tail),
                parse_listen_addr,
                addr_tx.clone(),
            );
        }
        if let Some(err) = child.stderr.take() {
            forward(
                err,
                "broker stderr",
                Arc::clone(&tail),
                parse_listen_addr,
                addr_tx,
            );
        }
        let mut broker = Broker {
            child,
            addr: String::new(),
            tail,
            _data_dir: data_dir,
        };
        match addr_rx.recv_timeout(spec.startup_timeout) {
            Ok(addr) => broker.addr = addr,
            Err(RecvTimeoutError::Timeout) => bail!(
                "broker did not log `{LISTEN_MARKER}IP:PORT` within {}s; its last output:\n{}",
                spec.startup_timeout.as_secs(),
                broker.tail_text()
            ),
            Err(RecvTimeoutError::Disconnected) => {
                let status = broker.child.wait().context("waiting for the broker")?;
                bail!(
                    "broker exited ({status}) before listening; its last output:\n{}",
                    broker.tail_text()
                )
            }
        }
        Ok(broker)
    }

    /// The `host:port` the broker announced.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    pub fn memory(&self) -> anyhow::Result<Memory> {
        read_memory(self.child.id())
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Fails, with the broker's last output, if the process has exited.
    pub fn ensure_running(&mut self, after: &str) -> anyhow::Result<()> {
        if let Some(status) = self
            .child
            .try_wait()
            .context("polling the broker process")?
        {
            bail!(
                "broker died ({}) during {after}; its last output:\n{}",
                describe(status),
                self.tail_text()
            );
        }
        Ok(())
    }

    fn tail_text(&self) -> String {
        tail_text(&self.tail)
    }
}

/// The kept last lines of a process's output, indented, for error messages.
pub fn tail_text(tail: &Mutex<VecDeque<String>>) -> String {
    let tail = tail.lock().unwrap_or_else(PoisonError::into_inner);
    if tail.is_empty() {
        return "  (nothing)".to_owned();
    }
    tail.iter().map(|l| format!("  {l}\n")).collect()
}

/// Resident memory of process `pid`, from `/proc/<pid>/status`.
pub fn read_memory(pid: u32) -> anyhow::Result<Memory> {
    let path = format!("/proc/{pid}/status");
    let status = fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    parse_memory(&status).with_context(|| format!("no VmRSS/VmHWM/RssAnon/RssFile in {path}"))
}

impl Drop for Broker {
    fn drop(&mut self) {
        // Ignore errors: the process may already be gone, and Drop cannot report them.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Echoes one output stream of a started process to our stderr (each line prefixed with
/// `[label]`), keeps its last [`TAIL_LINES`] lines in `tail`, and sends what `announce` finds
/// in the first line it accepts (for the broker: its listen address) once.
pub fn forward(
    stream: impl Read + Send + 'static,
    label: &'static str,
    tail: Arc<Mutex<VecDeque<String>>>,
    announce: fn(&str) -> Option<String>,
    addr_tx: Sender<String>,
) {
    thread::spawn(move || {
        let mut addr_tx = Some(addr_tx);
        for line in BufReader::new(stream).lines() {
            let Ok(line) = line else { break };
            let line = strip_ansi(&line);
            eprintln!("[{label}] {line}");
            if let Some(addr) = announce(&line)
                && let Some(tx) = addr_tx.take()
            {
                let _ = tx.send(addr);
            }
            let mut tail = tail.lock().unwrap_or_else(PoisonError::into_inner);
            if tail.len() == TAIL_LINES {
                tail.pop_front();
            }
            tail.push_back(line);
        }
    });
}

/// Extracts `IP:PORT` from a line containing `listening on IP:PORT`.
fn parse_listen_addr(line: &str) -> Option<String> {
    let (_, rest) = line.split_once(LISTEN_MARKER)?;
    let addr: String = rest
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.' || *c == ':')
        .collect();
    let (host, port) = addr.rsplit_once(':')?;
    (!host.is_empty() && port.parse::<u16>().is_ok()).then_some(addr)
}

/// Removes ANSI escape sequences (`ESC [ … letter`), in case the broker colours its logs.
fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn parse_memory(status: &str) -> Option<Memory> {
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
    };
    Some(Memory {
        rss_kb: field("VmRSS:")?,
        hwm_kb: field("VmHWM:")?,
        anon_kb: field("RssAnon:")?,
        file_kb: field("RssFile:")?,
    })
}

pub fn describe(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit code {code}"),
        (None, Some(signal)) => format!("killed by signal {signal}"),
        _ => status.to_string(),
    }
}

/// A binary to use when none is given: `<workspace>/target/release/<name>` (`runnel`,
/// `runnel-bridge`).
pub fn default_bin(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("target")
        .join("release")
        .join(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn given_tracing_line_when_parse_listen_addr_should_extract_address() {
        let line = "2026-01-01T00:00:00Z  INFO runnel: listening on 127.0.0.1:40123 (kafka)";
        assert_eq!(parse_listen_addr(line).as_deref(), Some("127.0.0.1:40123"));
    }

    #[test]
    fn given_line_without_port_when_parse_listen_addr_should_be_none() {
        assert_eq!(parse_listen_addr("listening on 127.0.0.1"), None);
        assert_eq!(parse_listen_addr("starting up"), None);
    }

    #[test]
    fn given_coloured_line_when_strip_ansi_should_leave_text() {
        let line = "\u{1b}[32m INFO\u{1b}[0m listening on \u{1b}[3m127.0.0.1:9\u{1b}[0m";
        assert_eq!(strip_ansi(line), " INFO listening on 127.0.0.1:9");
    }

    #[test]
    fn given_proc_status_when_parse_memory_should_read_kib() {
        let status = "Name:\trunnel\nVmHWM:\t   20480 kB\nVmRSS:\t   10240 kB\n\
                      RssAnon:\t    6144 kB\nRssFile:\t    4096 kB\nRssShmem:\t       0 kB\n";
        assert_eq!(
            parse_memory(status),
            Some(Memory {
                rss_kb: 10240,
                hwm_kb: 20480,
                anon_kb: 6144,
                file_kb: 4096,
            })
        );
    }
}
