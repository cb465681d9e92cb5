//! Runs `kcat` (Debian package `kcat`; it bundles its own librdkafka, an older one than the
//! rdkafka crate's, which is the point of testing with it).
//!
//! A missing `kcat` is a test failure with an install hint, never a silent skip.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// How long one kcat run may take.
pub const KCAT_TIMEOUT: Duration = Duration::from_secs(30);

/// `$KCAT_BIN`, else `kcat` or `kafkacat` on `PATH`.
pub fn kcat_bin() -> Result<PathBuf> {
    if let Some(path) = std::env::var_os("KCAT_BIN") {
        return Ok(PathBuf::from(path));
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path) {
        for name in ["kcat", "kafkacat"] {
            let candidate = dir.join(name);
            if candidate.is_file() {
                return Ok(candidate);
            }
        }
    }
    bail!(
        "kcat is not installed (looked for kcat and kafkacat on PATH): `apt-get install kcat`, or set KCAT_BIN"
    )
}

/// What a finished kcat run printed.
#[derive(Debug)]
pub struct KcatOutput {
    pub stdout: String,
    pub stderr: String,
}

/// Runs kcat with `args`, feeding `stdin`, and fails unless it exits 0 within `timeout`.
pub fn run(args: &[&str], stdin: &[u8], timeout: Duration) -> Result<KcatOutput> {
    let bin = kcat_bin()?;
    let mut child = Command::new(&bin)
        .args(args)
        // `cargo test` puts rdkafka-sys's own librdkafka.so (built without OpenSSL) on
        // LD_LIBRARY_PATH; kcat must load the system's.
        .env_remove("LD_LIBRARY_PATH")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("spawning {}", bin.display()))?;
    let mut input = child.stdin.take().context("kcat stdin")?;
    let stdin = stdin.to_vec();
    // Writing, reading stdout and reading stderr each get a thread so no pipe can fill up.
    let writer = thread::spawn(move || input.write_all(&stdin));
    let stdout = read_in_background(child.stdout.take().context("kcat stdout")?);
    let stderr = read_in_background(child.stderr.take().context("kcat stderr")?);
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait().context("waiting for kcat")? {
            break Some(status);
        }
        if Instant::now() >= deadline {
            // The run failed anyway; the message below says how.
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        thread::sleep(Duration::from_millis(20));
    };
    let write_result = writer.join();
    let output = KcatOutput {
        stdout: join_reader(stdout),
        stderr: join_reader(stderr),
    };
    let shown = show(&bin, args);
    match status {
        None => bail!(
            "`{shown}` did not finish within {timeout:?}\nstdout:\n{}\nstderr:\n{}",
            output.stdout,
            output.stderr
        ),
        Some(status) if !status.success() => bail!(
            "`{shown}` exited with {status}\nstdout:\n{}\nstderr:\n{}",
            output.stdout,
            output.stderr
        ),
        Some(_) => {}
    }
    match write_result {
        Ok(Ok(())) => {}
        Ok(Err(error)) => bail!("`{shown}`: writing its stdin failed: {error}"),
        Err(_) => bail!("`{shown}`: the stdin writer panicked"),
    }
    Ok(output)
}

/// Produces `input` (one record per line; `key:value` lines when `extra` has `-K:`).
pub fn produce(
    bootstrap: &str,
    topic: &str,
    partition: Option<i32>,
    input: &str,
    extra: &[&str],
) -> Result<KcatOutput> {
    let partition = partition.map(|p| p.to_string());
    let mut args = vec![
        "-P",
        "-b",
        bootstrap,
        "-t",
        topic,
        "-X",
        "broker.address.family=v4",
    ];
    if let Some(partition) = &partition {
        args.extend(["-p", partition.as_str()]);
    }
    args.extend_from_slice(extra);
    run(&args, input.as_bytes(), KCAT_TIMEOUT)
}

/// Consumes one partition from the beginning to its end (`-o beginning -e`), printing each
/// record with `format` (kcat's `-f`, e.g. `"%o %k %s\n"`), and returns what it printed.
pub fn consume(bootstrap: &str, topic: &str, partition: i32, format: &str) -> Result<String> {
    let partition = partition.to_string();
    let args = [
        "-C",
        "-b",
        bootstrap,
        "-t",
        topic,
        "-p",
        partition.as_str(),
        "-o",
        "beginning",
        "-e",
        "-q",
        "-f",
        format,
        "-X",
        "broker.address.family=v4",
    ];
    Ok(run(&args, b"", KCAT_TIMEOUT)?.stdout)
}

fn read_in_background(mut pipe: impl Read + Send + 'static) -> thread::JoinHandle<String> {
    thread::spawn(move || {
        let mut bytes = Vec::new();
        // A read error just truncates what is shown.
        let _ = pipe.read_to_end(&mut bytes);
        String::from_utf8_lossy(&bytes).into_owned()
    })
}

fn join_reader(handle: thread::JoinHandle<String>) -> String {
    handle
        .join()
        .unwrap_or_else(|_| "<reader thread panicked>".to_owned())
}

fn show(bin: &Path, args: &[&str]) -> String {
    std::iter::once(bin.display().to_string())
        .chain(args.iter().map(|a| (*a).to_owned()))
        .collect::<Vec<_>>()
        .join(" ")
}

/// A kcat process left running (a `-G` group member, say). Its stdout is discarded and its
/// stderr collected; `Drop` kills (SIGKILL) and reaps it if it still runs.
#[derive(Debug)]
pub struct KcatProcess {
    child: std::process::Child,
    stderr: std::sync::Arc<std::sync::Mutex<String>>,
}

/// Starts kcat with `args` and leaves it running.
pub fn spawn(args: &[&str]) -> Result<KcatProcess> {
    let bin = kcat_bin()?;
    let mut child = Command::new(&bin)
        .args(args)
        // `cargo test` puts rdkafka-sys's own librdkafka.so (built without OpenSSL) on
        // LD_LIBRARY_PATH; kcat must load the system's.
        .env_remove("LD_LIBRARY_PATH")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("spawning `{}`", show(&bin, args)))?;
    let stderr = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let mut pipe = child.stderr.take().context("kcat stderr")?;
    let sink = std::sync::Arc::clone(&stderr);
    thread::spawn(move || {
        let mut buf = [0_u8; 4096];
        // Ends at EOF, i.e. when kcat exits; a read error just truncates what is shown.
        while let Ok(n @ 1..) = pipe.read(&mut buf) {
            sink.lock()
                .unwrap_or_else(|p| p.into_inner())
                .push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    });
    Ok(KcatProcess { child, stderr })
}

impl KcatProcess {
    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// What kcat printed on stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Whether the process still runs (reaps it if it has exited).
    pub fn is_running(&mut self) -> Result<bool> {
        Ok(self.child.try_wait().context("polling kcat")?.is_none())
    }

    /// Sends SIGKILL to the process (by its pid) and reaps it: no chance to leave a group.
    pub fn kill9(&mut self) -> Result<std::process::ExitStatus> {
        self.child.kill().context("sending SIGKILL to kcat")?;
        self.child.wait().context("reaping the killed kcat")
    }
}

impl Drop for KcatProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            // Nothing useful can be done about a failure here.
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
