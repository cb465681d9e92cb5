//! Runs the Python client scripts in `tests/compat/` with the interpreter of the virtualenv that
//! `scripts/test-all.sh` creates at `target/pyclients` (kafka-python and confluent-kafka, pinned
//! in `tests/compat/requirements.txt`).
//!
//! A missing interpreter is a test failure naming the setup command, never a silent skip.

use std::ffi::OsStr;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// What creates the virtualenv, for the error message when it is missing.
const SETUP: &str = "bash scripts/test-all.sh (creates it with `python3 -m venv target/pyclients` \
                     and `target/pyclients/bin/pip install -r tests/compat/requirements.txt`)";

fn workspace() -> PathBuf {
    let tests_crate = Path::new(env!("CARGO_MANIFEST_DIR"));
    tests_crate
        .parent()
        .map_or_else(|| tests_crate.join(".."), Path::to_path_buf)
}

/// `$RUNNEL_PYTHON`, else `<workspace>/target/pyclients/bin/python`.
pub fn python_bin() -> Result<PathBuf> {
    if let Some(path) = std::env::var_os("RUNNEL_PYTHON") {
        let path = PathBuf::from(path);
        if path.is_file() {
            return Ok(path);
        }
        bail!("RUNNEL_PYTHON={} does not name a file", path.display());
    }
    let venv = workspace()
        .join("target")
        .join("pyclients")
        .join("bin")
        .join("python");
    if venv.is_file() {
        return Ok(venv);
    }
    bail!(
        "the Python client virtualenv is missing ({} not found): run {SETUP}, or set RUNNEL_PYTHON \
         to a python with kafka-python and confluent-kafka",
        venv.display()
    )
}

/// The path of a script in `tests/compat/`.
pub fn compat_script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("compat")
        .join(name)
}

/// What a finished script printed, and how it exited.
#[derive(Debug)]
pub struct ScriptOutput {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl ScriptOutput {
    /// Both streams, labelled, for failure messages.
    pub fn printed(&self) -> String {
        format!(
            "--- stdout ---\n{}--- stderr ---\n{}--- end ---",
            self.stdout, self.stderr
        )
    }
}

/// Runs `script` with [`python_bin`] and `args` until it exits, killing it (and failing) after
/// `timeout`. The caller checks the exit status.
pub fn run_script(
    script: &Path,
    args: &[impl AsRef<OsStr>],
    timeout: Duration,
) -> Result<ScriptOutput> {
    let python = python_bin()?;
    let mut child = Command::new(&python)
        .arg(script)
        .args(args)
        // A clean interpreter: nothing from the caller's Python setup, unbuffered output.
        .env_remove("PYTHONPATH")
        .env_remove("PYTHONHOME")
        .env("PYTHONUNBUFFERED", "1")
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("spawning {} {}", python.display(), script.display()))?;
    // Each pipe gets a reader thread so neither can fill up and stall the script.
    let stdout = read_in_background(child.stdout.take().context("script stdout")?);
    let stderr = read_in_background(child.stderr.take().context("script stderr")?);
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait().context("waiting for the script")? {
            break Some(status);
        }
        if Instant::now() >= deadline {
            // The run failed anyway; the message below says how.
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        thread::sleep(Duration::from_millis(50));
    };
    let (stdout, stderr) = (join_reader(stdout), join_reader(stderr));
    match status {
        Some(status) => Ok(ScriptOutput {
            status,
            stdout,
            stderr,
        }),
        None => bail!(
            "`{} {}` did not finish within {timeout:?}\n--- stdout ---\n{stdout}--- stderr ---\n{stderr}",
            python.display(),
            script.display()
        ),
    }
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

/// Starts a broker with `options`, runs `tests/compat/<script>` against it and fails with the
/// script's output unless it exits 0. What the script printed is echoed (seen with
/// `--nocapture`: which client versions passed).
pub fn run_compat(script: &str, options: crate::BrokerOptions, timeout: Duration) -> Result<()> {
    // Fails first, with the setup command, when the virtualenv is missing.
    python_bin()?;
    let broker = crate::Broker::start(options)?;
    let script = compat_script(script);
    let output = run_script(&script, &[broker.bootstrap()], timeout)?;
    anyhow::ensure!(
        output.status.success(),
        "{} exited with {}\n{}",
        script.display(),
        output.status,
        output.printed()
    );
    print!("{}", output.stdout);
    Ok(())
}
