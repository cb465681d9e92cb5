//! A real TLS terminator in front of a plain-TCP server, for the client's TLS tests while the
//! broker has no TLS listener: `socat OPENSSL-LISTEN:<port>,fork,… TCP:127.0.0.1:<target>`
//! (OpenSSL on the server side, so rustls meets a TLS stack other than its own).
//!
//! Invariants:
//! - socat runs in a process group of its own (it forks one child per connection), and `Drop`
//!   kills exactly that group and reaps the parent, then prints the tail of socat's log to the
//!   (captured) test output;
//! - "started" means socat logged that it listens, so no probe connection shows up in its log.
//!
//! Environment knob: `SOCAT_BIN` (default `socat` on the `PATH`).

use std::fmt::Write as _;
use std::fs::{self, File};
use std::os::unix::process::CommandExt as _;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use tempfile::TempDir;

use super::pki::TestPki;

/// How long socat may take to listen.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(10);
const PROBE_INTERVAL: Duration = Duration::from_millis(20);
const LOG_TAIL_LINES: usize = 40;

/// What socat terminates and where it forwards.
#[derive(Debug, Clone)]
pub struct TlsTerminatorOptions {
    /// The TLS port on 127.0.0.1 (pick it with [`super::mosquitto::free_port`]).
    pub port: u16,
    /// The plain-TCP port on 127.0.0.1 it forwards to.
    pub target_port: u16,
    /// Server certificate, key and the CA that client certificates must chain to.
    pub pki: TestPki,
    /// `verify=1`: refuse clients without a certificate signed by the CA (mutual TLS).
    pub require_client_cert: bool,
}

/// A running `socat` TLS terminator.
#[derive(Debug)]
pub struct TlsTerminator {
    options: TlsTerminatorOptions,
    child: Option<Child>,
    log_path: PathBuf,
    _dir: TempDir,
}

impl TlsTerminator {
    /// Starts socat and waits until it listens; on failure the error carries its log.
    pub fn start(options: TlsTerminatorOptions) -> Result<TlsTerminator> {
        let dir = tempfile::Builder::new()
            .prefix("runnel-socat-")
            .tempdir()
            .context("creating a temporary directory for socat")?;
        let log_path = dir.path().join("socat.log");
        let log =
            File::create(&log_path).with_context(|| format!("creating {}", log_path.display()))?;
        let pki = &options.pki;
        let listen = format!(
            "OPENSSL-LISTEN:{},bind=127.0.0.1,reuseaddr,fork,cert={},key={},cafile={},verify={}",
            options.port,
            pki.server_cert.display(),
            pki.server_key.display(),
            pki.ca.display(),
            u8::from(options.require_client_cert),
        );
        let bin = std::env::var_os("SOCAT_BIN").unwrap_or_else(|| "socat".into());
        let child = Command::new(&bin)
            .args(["-d", "-d"])
            .arg(listen)
            .arg(format!("TCP:127.0.0.1:{}", options.target_port))
            .stdin(Stdio::null())
            .stdout(log.try_clone().context("duplicating the log file handle")?)
            .stderr(log)
            .process_group(0)
            .spawn()
            .with_context(|| {
                format!("spawning {bin:?} (install it with `apt-get install socat`)")
            })?;
        let mut terminator = TlsTerminator {
            options,
            child: Some(child),
            log_path,
            _dir: dir,
        };
        terminator.wait_until_listening()?;
        Ok(terminator)
    }

    /// The TLS port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.options.port
    }

    /// `127.0.0.1:<port>`, a bootstrap address for TLS clients.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.options.port)
    }

    /// socat's log (`-d -d`: connections, OpenSSL errors).
    pub fn log(&self) -> String {
        fs::read(&self.log_path)
            .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
            .unwrap_or_else(|error| format!("<cannot read {}: {error}>", self.log_path.display()))
    }

    fn log_tail(&self) -> String {
        let log = self.log();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(LOG_TAIL_LINES)..].join("\n")
    }

    fn wait_until_listening(&mut self) -> Result<()> {
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        let marker = format!("listening on AF=2 127.0.0.1:{}", self.options.port);
        loop {
            let child = self.child.as_mut().context("socat is not running")?;
            if let Some(status) = child.try_wait().context("polling socat")? {
                self.child = None;
                bail!(
                    "socat exited with {status} before listening; log:\n{}",
                    self.log_tail()
                );
            }
            if self.log().contains(&marker) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                bail!(
                    "socat did not listen on 127.0.0.1:{} within {STARTUP_TIMEOUT:?}; log:\n{}",
                    self.options.port,
                    self.log_tail()
                );
            }
            thread::sleep(PROBE_INTERVAL);
        }
    }
}

impl Drop for TlsTerminator {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            if let Ok(pgid) = libc::pid_t::try_from(child.id()) {
                // SAFETY: kill(2) only reads its two integer arguments. The group id is our own
                // unreaped child's pid, which it leads (process_group(0)), so the group holds
                // only socat and the children it forked.
                unsafe {
                    libc::kill(-pgid, libc::SIGKILL);
                }
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        let mut report = String::new();
        let _ = writeln!(
            report,
            "--- tail of the socat log ({}) ---\n{}\n--- end of the socat log ---",
            self.log_path.display(),
            self.log_tail()
        );
        // libtest captures this and shows it only for tests that fail.
        eprint!("{report}");
    }
}
