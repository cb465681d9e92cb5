//! A real `runnel` process for a test: started on a free loopback port with its own data
//! directory, its stdout and stderr kept in a log file, and killed when the test is done.
//!
//! Invariants:
//! - at most one process per [`Broker`] at a time; [`Broker::restart`] starts a new one on the
//!   same data directory (on a new port: clients must be rebuilt with the new
//!   [`Broker::bootstrap`]);
//! - a `Broker` never outlives its process: `Drop` kills it (SIGKILL) and reaps it;
//! - the log file collects every process of this `Broker` in order, each start preceded by a
//!   `=== harness: start #n ===` line, and its tail is printed to the (captured) test output when
//!   the `Broker` is dropped, so libtest shows it exactly for the tests that fail.

use std::ffi::{OsStr, OsString};
use std::fmt::Write as _;
use std::fs::{self, OpenOptions};
use std::io::{self, Write as _};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use tempfile::TempDir;

use super::binary::{read_from, runnel_bin, strip_ansi};

/// How long a broker may take to print its `listening on` line.
const DEFAULT_STARTUP_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a graceful shutdown (SIGTERM) may take before the test fails.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(20);
/// How many log lines to print when a `Broker` is dropped.
const LOG_TAIL_LINES: usize = 60;
/// What the broker logs once its listener is bound; the bound address follows.
const LISTENING_MARKER: &str = "listening on ";

/// How to start a broker. Every field has a default that suits most tests.
#[derive(Debug, Clone)]
pub struct BrokerOptions {
    data_dir: Option<PathBuf>,
    listen: String,
    args: Vec<OsString>,
    envs: Vec<(OsString, OsString)>,
    startup_timeout: Duration,
    /// The broker executable; `None`: [`runnel_bin`].
    binary: Option<PathBuf>,
    /// A program and its arguments that run the executable (e.g. qemu-user); empty: none.
    launcher: Vec<OsString>,
}

impl Default for BrokerOptions {
    fn default() -> Self {
        Self {
            data_dir: None,
            listen: "127.0.0.1:0".to_owned(),
            args: Vec::new(),
            envs: Vec::new(),
            startup_timeout: DEFAULT_STARTUP_TIMEOUT,
            binary: None,
            launcher: Vec::new(),
        }
    }
}

impl BrokerOptions {
    /// Free port, fresh temporary data directory, the broker's own defaults for the rest.
    pub fn new() -> Self {
        Self::default()
    }

    /// Uses `dir` as the data directory instead of a fresh temporary one. The caller owns it.
    pub fn data_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.data_dir = Some(dir.into());
        self
    }

    /// Passes `--listen ADDR` (default `127.0.0.1:0`, a free port).
    pub fn listen(mut self, addr: impl Into<String>) -> Self {
        self.listen = addr.into();
        self
    }

    /// Adds a flag and its value, e.g. `.flag("--retention-check-interval-ms", 200)`.
    pub fn flag(mut self, name: &str, value: impl ToString) -> Self {
        self.args.push(name.into());
        self.args.push(value.to_string().into());
        self
    }

    /// Adds one raw command-line argument.
    pub fn arg(mut self, arg: impl AsRef<OsStr>) -> Self {
        self.args.push(arg.as_ref().to_owned());
        self
    }

    /// Sets an environment variable for the broker process. The harness removes every inherited
    /// `RUNNEL_*` variable first, so only the ones set here reach the broker.
    pub fn env(mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Self {
        self.envs
            .push((key.as_ref().to_owned(), value.as_ref().to_owned()));
        self
    }

    /// How long to wait for the `listening on` line (default 20 s).
    pub fn startup_timeout(mut self, timeout: Duration) -> Self {
        self.startup_timeout = timeout;
        self
    }

    /// Starts `path` instead of the binary [`runnel_bin`] finds (e.g. a cross-built one).
    pub fn binary(mut self, path: impl Into<PathBuf>) -> Self {
        self.binary = Some(path.into());
        self
    }

    /// Runs the broker as `program args… BINARY FLAGS…`, e.g.
    /// `.launcher("qemu-arm", ["-L", "/usr/arm-linux-gnueabihf"])`. Signals reach the broker
    /// through launchers that forward them, as qemu-user does.
    pub fn launcher<I, S>(mut self, program: impl AsRef<OsStr>, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.launcher = std::iter::once(program.as_ref().to_owned())
            .chain(args.into_iter().map(|arg| arg.as_ref().to_owned()))
            .collect();
        self
    }
}

/// A running (or stopped, between [`Broker::kill9`] and [`Broker::restart`]) `runnel` process.
#[derive(Debug)]
pub struct Broker {
    options: BrokerOptions,
    data_dir: PathBuf,
    /// Keeps a temporary data directory alive across restarts; `None` when the caller gave one.
    _owned_data_dir: Option<TempDir>,
    log_dir: TempDir,
    log_path: PathBuf,
    child: Option<Child>,
    addr: SocketAddr,
    starts: u32,
}

impl Broker {
    /// Starts a broker and waits until it listens. Blocks for as long as that takes (bounded by
    /// the startup timeout); on failure the error carries the tail of the broker's log.
    pub fn start(options: BrokerOptions) -> Result<Broker> {
        let (data_dir, owned_data_dir) = match &options.data_dir {
            Some(dir) => (dir.clone(), None),
            None => {
                let dir = tempfile::Builder::new()
                    .prefix("runnel-data-")
                    .tempdir()
                    .context("creating a temporary data directory")?;
                (dir.path().to_owned(), Some(dir))
            }
        };
        let log_dir = tempfile::Builder::new()
            .prefix("runnel-log-")
            .tempdir()
            .context("creating a temporary log directory")?;
        let log_path = log_dir.path().join("runnel.log");
        let mut broker = Broker {
            options,
            data_dir,
            _owned_data_dir: owned_data_dir,
            log_dir,
            log_path,
            child: None,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            starts: 0,
        };
        broker.spawn()?;
        Ok(broker)
    }

    /// The address clients should bootstrap from, `127.0.0.1:PORT`.
    pub fn bootstrap(&self) -> String {
        self.addr.to_string()
    }

    /// The address the current (or last) process listened on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The data directory, the same for every process of this `Broker`.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// Where the log of every process of this `Broker` is collected.
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// Whether the process is still alive (reaps it if it has exited).
    pub fn is_running(&mut self) -> Result<bool> {
        match self.child.as_mut() {
            None => Ok(false),
            Some(child) => Ok(child.try_wait().context("polling the broker")?.is_none()),
        }
    }

    /// Kills the process with SIGKILL (no chance to flush anything) and reaps it.
    pub fn kill9(&mut self) -> Result<ExitStatus> {
        let mut child = self
            .child
            .take()
            .context("kill9: the broker is not running")?;
        child.kill().context("sending SIGKILL to the broker")?;
        child.wait().context("reaping the killed broker")
    }

    /// Sends SIGTERM and waits for the process to exit. Fails (after SIGKILL) if it does not
    /// exit within 20 s. Returns the exit status, which the caller should check.
    pub fn terminate(&mut self) -> Result<ExitStatus> {
        self.signal_and_wait(libc::SIGTERM)
    }

    /// Sends SIGINT and waits for the process to exit, like [`Broker::terminate`].
    pub fn interrupt(&mut self) -> Result<ExitStatus> {
        self.signal_and_wait(libc::SIGINT)
    }

    /// Sends SIGHUP (the broker reloads its TLS certificates) without waiting for anything.
    pub fn hangup(&self) -> Result<()> {
        let child = self
            .child
            .as_ref()
            .context("hangup: the broker is not running")?;
        send_signal(child, libc::SIGHUP).context("sending SIGHUP to the broker")
    }

    /// Starts a new process on the same data directory with the same options (stopping the
    /// current one gracefully first if it is still running). The port may change.
    pub fn restart(&mut self) -> Result<()> {
        if self.is_running()? {
            let status = self.terminate()?;
            if !status.success() {
                bail!("restart: the broker exited with {status} on SIGTERM");
            }
        }
        self.child = None;
        self.spawn()
    }

    /// The whole log of every process of this `Broker`.
    pub fn log(&self) -> String {
        fs::read(&self.log_path)
            .map(|bytes| strip_ansi(&String::from_utf8_lossy(&bytes)))
            .unwrap_or_else(|error| format!("<cannot read {}: {error}>", self.log_path.display()))
    }

    /// The last `lines` lines of the log.
    pub fn log_tail(&self, lines: usize) -> String {
        let log = self.log();
        let all: Vec<&str> = log.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    fn signal_and_wait(&mut self, signal: libc::c_int) -> Result<ExitStatus> {
        let mut child = self.child.take().context("the broker is not running")?;
        send_signal(&child, signal).context("signalling the broker")?;
        let deadline = Instant::now() + SHUTDOWN_TIMEOUT;
        loop {
            if let Some(status) = child.try_wait().context("waiting for the broker")? {
                return Ok(status);
            }
            if Instant::now() >= deadline {
                // Best effort: the error below is what matters.
                let _ = child.kill();
                let _ = child.wait();
                bail!(
                    "the broker did not exit within {SHUTDOWN_TIMEOUT:?} of signal {signal}; log tail:\n{}",
                    self.log_tail(LOG_TAIL_LINES)
                );
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    fn spawn(&mut self) -> Result<()> {
        let bin = match &self.options.binary {
            Some(path) => path.clone(),
            None => runnel_bin()?,
        };
        self.starts += 1;
        let mut log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .with_context(|| format!("opening {}", self.log_path.display()))?;
        let mut command = match self.options.launcher.split_first() {
            Some((program, args)) => {
                let mut command = Command::new(program);
                command.args(args).arg(&bin);
                command
            }
            None => Command::new(&bin),
        };
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("RUNNEL_") {
                command.env_remove(&key);
            }
        }
        command
            .env("NO_COLOR", "1")
            .arg("--listen")
            .arg(&self.options.listen)
            .arg("--data-dir")
            .arg(&self.data_dir)
            .args(&self.options.args)
            .envs(self.options.envs.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null());
        writeln!(
            log,
            "=== harness: start #{}: {:?} ===",
            self.starts,
            command_line(&command)
        )?;
        let start_offset = log.metadata()?.len();
        command
            .stdout(log.try_clone().context("duplicating the log file handle")?)
            .stderr(log);
        let child = command
            .spawn()
            .with_context(|| format!("spawning {}", command.get_program().display()))?;
        self.child = Some(child);
        self.addr = self.wait_for_listening(start_offset)?;
        Ok(())
    }

    /// Reads the log from `offset` until the `listening on ADDR` line shows up.
    fn wait_for_listening(&mut self, offset: u64) -> Result<SocketAddr> {
        let deadline = Instant::now() + self.options.startup_timeout;
        loop {
            let text = read_from(&self.log_path, offset)?;
            if let Some(addr) = parse_listening(&text) {
                return addr;
            }
            let child = self.child.as_mut().context("the broker is not running")?;
            if let Some(status) = child.try_wait().context("polling the starting broker")? {
                self.child = None;
                bail!(
                    "the broker exited with {status} before listening; log tail:\n{}",
                    self.log_tail(LOG_TAIL_LINES)
                );
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                self.child = None;
                bail!(
                    "the broker printed no `{LISTENING_MARKER}ADDR` line within {:?}; log tail:\n{}",
                    self.options.startup_timeout,
                    self.log_tail(LOG_TAIL_LINES)
                );
            }
            thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // Nothing useful can be done about a failure here.
            let _ = child.kill();
            let _ = child.wait();
        }
        let mut report = String::new();
        let _ = writeln!(
            report,
            "--- tail of the runnel log ({}) ---\n{}\n--- end of the runnel log ---",
            self.log_path.display(),
            self.log_tail(LOG_TAIL_LINES)
        );
        if thread::panicking() || std::env::var_os("RUNNEL_KEEP_LOGS").is_some() {
            self.log_dir.disable_cleanup(true);
            let _ = writeln!(report, "(log kept at {})", self.log_path.display());
        }
        // libtest captures this and shows it only for tests that fail.
        eprint!("{report}");
    }
}

/// Sends `signal` to the child, which we have not reaped yet, so its pid is still ours.
pub(crate) fn send_signal(child: &Child, signal: libc::c_int) -> io::Result<()> {
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

/// Finds `listening on A.B.C.D:PORT` and parses the address.
fn parse_listening(text: &str) -> Option<Result<SocketAddr>> {
    let start = text.find(LISTENING_MARKER)? + LISTENING_MARKER.len();
    let rest = &text[start..];
    let end = rest
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == ':'))
        .unwrap_or(rest.len());
    let addr = &rest[..end];
    // A line still being written may end mid-address; wait for the rest of it.
    if end == rest.len() {
        return None;
    }
    Some(
        addr.parse()
            .with_context(|| format!("cannot parse the listening address {addr:?}")),
    )
}

fn command_line(command: &Command) -> String {
    std::iter::once(command.get_program())
        .chain(command.get_args())
        .map(|part| part.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn given_a_fmt_line_when_parsing_should_find_the_address() {
        let line = "2025-01-01T00:00:00Z  INFO runnel::server: listening on 127.0.0.1:40123\n";
        let addr = parse_listening(line).and_then(Result::ok);
        assert_eq!(addr, Some(SocketAddr::from(([127, 0, 0, 1], 40123))));
    }

    #[test]
    fn given_a_half_written_line_when_parsing_should_wait() {
        assert!(parse_listening("INFO listening on 127.0.0.1:401").is_none());
    }
}
