//! The files of `deploy/` that the `.deb` installs, checked with the tools that will read them:
//! - the systemd units pass `systemd-analyze verify` without a word, and start the binaries
//!   where the package puts them (`/usr/bin`);
//! - the packaged broker config, the truck example and the cluster example pass
//!   `runnel --check-config`;
//! - the standalone bridge config holds only `[[bridge]]` tables, passes the same validation in
//!   `runnel --check-config`, and `runnel-bridge` started on it with the unit's flags gets past
//!   its config to connecting (where it fails: nothing listens);
//! - the maintainer scripts are valid `sh` and keep the `#DEBHELPER#` token cargo-deb fills in.
//!
//! `systemd-analyze` comes from the `systemd` package, which `scripts/test-all.sh` installs;
//! without it the unit check is skipped with the reason printed, except under `CI=true`.

use std::fs::{self, File};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use runnel_tests::harness::binary::{run_binary_to_exit, runnel_bridge_bin};
use runnel_tests::{run_to_exit, runnel_bin};

const EXIT_TIMEOUT: Duration = Duration::from_secs(20);
/// How long `runnel-bridge` may take to get from its config to its first connection attempt.
const BRIDGE_CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

fn deploy(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../deploy")
        .join(path)
}

fn read(path: &Path) -> Result<String> {
    fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
}

/// `unit` as shipped, with `ExecStart=/usr/bin/<name> ` pointing at `bin` instead: verify checks
/// that the executable exists. Fails if the unit does not start `/usr/bin/<name>`, where the
/// package installs it.
fn with_exec_start(unit: &str, name: &str, bin: &Path) -> Result<String> {
    let packaged = format!("ExecStart=/usr/bin/{name} ");
    ensure!(
        unit.lines()
            .filter(|line| line.starts_with("ExecStart="))
            .count()
            == 1
            && unit.lines().any(|line| line.starts_with(&packaged)),
        "the unit should have one ExecStart, starting `/usr/bin/{name} ` (the package's path)"
    );
    Ok(unit.replacen(&packaged, &format!("ExecStart={} ", bin.display()), 1))
}

fn systemd_analyze_available() -> Result<bool> {
    if Command::new("systemd-analyze")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
    {
        return Ok(true);
    }
    let reason =
        "systemd-analyze not found (apt package `systemd`; scripts/test-all.sh installs it)";
    if std::env::var("CI").is_ok_and(|ci| ci == "true") {
        bail!("{reason}");
    }
    // Straight to stderr, past libtest's capture, so the skip shows in the test output.
    let _ = writeln!(
        std::io::stderr().lock(),
        "SKIPPED unit verification: {reason}"
    );
    Ok(false)
}

#[test]
fn given_the_systemd_units_when_verified_should_report_nothing() -> Result<()> {
    if !systemd_analyze_available()? {
        return Ok(());
    }
    let dir = tempfile::Builder::new().prefix("runnel-units-").tempdir()?;
    for (name, bin) in [
        ("runnel", runnel_bin()?),
        ("runnel-bridge", runnel_bridge_bin()?),
    ] {
        let bin = bin
            .canonicalize()
            .with_context(|| format!("resolving {}", bin.display()))?;
        let file_name = format!("{name}.service");
        let unit = read(&deploy("systemd").join(&file_name))?;
        let path = dir.path().join(&file_name);
        fs::write(&path, with_exec_start(&unit, name, &bin)?)?;
        let output = Command::new("systemd-analyze")
            .arg("verify")
            .arg(&path)
            .env("SYSTEMD_LOG_COLOR", "0")
            .output()
            .context("running systemd-analyze verify")?;
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        // verify also loads the units ours pull in (network-online.target …) from the system;
        // what it says about those is this machine's business. Every line about ours counts:
        // unknown keys and bad values are only warnings, with exit status 0.
        let ours: Vec<&str> = text
            .lines()
            .filter(|line| line.contains("runnel"))
            .collect();
        ensure!(
            output.status.success() && ours.is_empty(),
            "systemd-analyze verify {file_name}: {}\n{text}",
            output.status
        );
        if !text.trim().is_empty() {
            eprintln!("systemd-analyze verify {file_name} (about other units):\n{text}");
        }
    }
    Ok(())
}

#[test]
fn given_a_unit_with_an_unknown_key_when_verified_should_warn() -> Result<()> {
    // The check above relies on verify's warnings going to its output: make sure they do.
    if !systemd_analyze_available()? {
        return Ok(());
    }
    let dir = tempfile::Builder::new().prefix("runnel-units-").tempdir()?;
    let bin = runnel_bin()?.canonicalize()?;
    let unit = read(&deploy("systemd/runnel.service"))?;
    let broken = with_exec_start(&unit, "runnel", &bin)?.replacen(
        "Restart=on-failure",
        "Restart=on-failure\nRestartt=2",
        1,
    );
    let path = dir.path().join("runnel.service");
    fs::write(&path, broken)?;
    let output = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    ensure!(
        stderr.contains("Restartt"),
        "verify did not report the unknown key: {}\n{stderr}",
        output.status
    );
    Ok(())
}

fn check_config(path: &Path) -> Result<String> {
    let path_arg = path.to_string_lossy().into_owned();
    let (status, output) = run_to_exit(
        &["--check-config", "--config", &path_arg],
        &[],
        EXIT_TIMEOUT,
    )?;
    ensure!(
        status.success() && output.contains("configuration OK"),
        "runnel --check-config --config {path_arg}: {status}\n{output}"
    );
    Ok(output)
}

#[test]
fn given_the_packaged_broker_config_when_checked_should_be_accepted() -> Result<()> {
    check_config(&deploy("config/runnel.toml"))?;
    Ok(())
}

#[test]
fn given_the_truck_example_when_checked_should_be_accepted_with_its_bridge_and_uplink() -> Result<()>
{
    let output = check_config(&deploy("examples/truck-gps.toml"))?;
    ensure!(
        output.contains("(1 bridge(s), 1 uplink(s))"),
        "the example's [[bridge]] and [[uplink]] were not seen:\n{output}"
    );
    Ok(())
}

#[test]
fn given_the_cluster_example_when_checked_should_be_accepted() -> Result<()> {
    let output = check_config(&deploy("examples/cluster-node-1.toml"))?;
    ensure!(
        output.contains("node 1 of a cluster of 3 voter(s)"),
        "the example's [cluster] table was not seen:\n{output}"
    );
    Ok(())
}

#[test]
fn given_the_packaged_bridge_config_when_checked_by_runnel_should_be_accepted() -> Result<()> {
    // runnel-bridge reads only `[[bridge]]` tables (it refuses anything else); runnel reads the
    // same tables with the same types and the same validation, and has --check-config.
    let path = deploy("config/bridge.toml");
    let text = read(&path)?;
    for line in text.lines().map(str::trim) {
        if line.starts_with('[') {
            ensure!(
                line == "[[bridge]]"
                    || line.starts_with("[bridge.")
                    || line.starts_with("[[bridge."),
                "{}: `{line}` is not part of a [[bridge]] table, which is all runnel-bridge reads",
                path.display()
            );
        }
    }
    let output = check_config(&path)?;
    ensure!(
        output.contains("(1 bridge(s), 0 uplink(s))"),
        "the [[bridge]] table was not seen:\n{output}"
    );
    Ok(())
}

/// Kills the child if the test ends early.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn given_the_packaged_bridge_config_when_runnel_bridge_starts_should_fail_only_on_connecting()
-> Result<()> {
    // The unit's flags, with a bootstrap address where nothing listens (and that appears
    // nowhere in the config, so it can only show up in the bridge's connection errors).
    let dir = tempfile::Builder::new()
        .prefix("runnel-bridge-run-")
        .tempdir()?;
    let out_path = dir.path().join("out.log");
    let out = File::create(&out_path)?;
    let bootstrap = "127.0.0.2:1";
    let bin = runnel_bridge_bin()?;
    let mut command = Command::new(&bin);
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("RUNNEL_") {
            command.env_remove(&key);
        }
    }
    let mut child = KillOnDrop(
        command
            .arg("--config")
            .arg(deploy("config/bridge.toml"))
            .args(["--bootstrap", bootstrap])
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()
            .with_context(|| format!("spawning {}", bin.display()))?,
    );
    let deadline = Instant::now() + BRIDGE_CONNECT_TIMEOUT;
    loop {
        let output = read(&out_path)?;
        if output.contains(bootstrap) {
            return Ok(());
        }
        if let Some(status) = child.0.try_wait()? {
            bail!("runnel-bridge exited ({status}) before connecting:\n{output}");
        }
        if Instant::now() >= deadline {
            bail!(
                "runnel-bridge did not try {bootstrap} within {BRIDGE_CONNECT_TIMEOUT:?}:\n{output}"
            );
        }
        thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn given_a_broken_bridge_config_when_runnel_bridge_starts_should_exit_2() -> Result<()> {
    // The counterpart of the test above: a config error stops runnel-bridge before it connects.
    let dir = tempfile::Builder::new()
        .prefix("runnel-bridge-bad-")
        .tempdir()?;
    let path = dir.path().join("bridge.toml");
    let text = read(&deploy("config/bridge.toml"))?;
    fs::write(&path, text.replacen("port = 1883", "port = \"mqtt\"", 1))?;
    let path_arg = path.to_string_lossy().into_owned();
    let (status, output) = run_binary_to_exit(
        &runnel_bridge_bin()?,
        &["--config", &path_arg, "--bootstrap", "127.0.0.1:1"],
        &[],
        EXIT_TIMEOUT,
    )?;
    ensure!(
        status.code() == Some(2) && output.contains("port"),
        "expected exit 2 naming `port`: {status}\n{output}"
    );
    Ok(())
}

#[test]
fn given_the_maintainer_scripts_when_parsed_by_sh_should_be_valid() -> Result<()> {
    for name in ["postinst", "postrm"] {
        let path = deploy("debian").join(name);
        let output = Command::new("sh")
            .arg("-n")
            .arg(&path)
            .output()
            .context("running sh -n")?;
        ensure!(
            output.status.success(),
            "sh -n {}: {}\n{}",
            path.display(),
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        let text = read(&path)?;
        ensure!(
            text.starts_with("#!/bin/sh\n") && text.contains("set -e"),
            "{name} should be a `#!/bin/sh` script with `set -e`"
        );
        ensure!(
            text.lines().any(|line| line.trim() == "#DEBHELPER#"),
            "{name} lacks the #DEBHELPER# line where cargo-deb adds the systemd unit handling"
        );
    }
    Ok(())
}
