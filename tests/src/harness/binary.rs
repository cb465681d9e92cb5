//! The `runnel` and `runnel-bridge` executables: where to find them, how to run them to
//! completion, and how to read what they printed.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// Finds the broker binary: `$RUNNEL_BIN`, else `runnel` next to the directory holding this test
/// executable (`<target>/<profile>/deps/..`, which honours `CARGO_TARGET_DIR`), else
/// `$CARGO_TARGET_DIR/debug/runnel`, else `<workspace>/target/debug/runnel`.
pub fn runnel_bin() -> Result<PathBuf> {
    find_binary("runnel", "RUNNEL_BIN", "runnel-broker")
}

/// Finds the MQTT bridge binary like [`runnel_bin`]: `$RUNNEL_BRIDGE_BIN`, else `runnel-bridge`
/// in the same places.
pub fn runnel_bridge_bin() -> Result<PathBuf> {
    find_binary("runnel-bridge", "RUNNEL_BRIDGE_BIN", "runnel-bridge")
}

/// `$env_var`, else `name` in the places [`runnel_bin`] lists; `package` is named in the error.
fn find_binary(name: &str, env_var: &str, package: &str) -> Result<PathBuf> {
    if let Some(path) = std::env::var_os(env_var) {
        let path = PathBuf::from(path);
        if path.is_file() {
            return Ok(path);
        }
        bail!("{env_var}={} does not name a file", path.display());
    }
    let mut candidates = Vec::new();
    if let Ok(exe) = std::env::current_exe()
        && let Some(profile_dir) = exe.parent().and_then(Path::parent)
    {
        candidates.push(profile_dir.join(name));
    }
    if let Some(target) = std::env::var_os("CARGO_TARGET_DIR") {
        candidates.push(PathBuf::from(target).join("debug").join(name));
    }
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    candidates.push(workspace.join("target").join("debug").join(name));
    if let Some(found) = candidates.iter().find(|path| path.is_file()) {
        return Ok(found.clone());
    }
    bail!(
        "the {name} binary was not found (looked at {}); run `cargo build -p {package}` first, \
         or set {env_var}",
        candidates
            .iter()
            .map(|path| path.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    )
}

/// Runs the broker binary with exactly `args` and `envs` (no harness defaults, inherited
/// `RUNNEL_*` variables removed) until it exits, for tests of startup failures. Returns the exit
/// status and everything it printed (stdout then stderr). Fails if it is still running after
/// `timeout`.
pub fn run_to_exit(
    args: &[&str],
    envs: &[(&str, &str)],
    timeout: Duration,
) -> Result<(ExitStatus, String)> {
    run_binary_to_exit(&runnel_bin()?, args, envs, timeout)
}

/// `runnel --data-dir DATA user add NAME --password-file …` (+ `extra`, e.g. `--mechanism`),
/// run before the broker starts; fails unless it succeeds without printing the password.
/// The password file is written beside `data`. Returns what the command printed.
pub fn add_scram_user(data: &Path, name: &str, password: &str, extra: &[&str]) -> Result<String> {
    let file = data.with_extension(format!("{name}.pw"));
    std::fs::write(&file, format!("{password}\n"))
        .with_context(|| format!("writing {}", file.display()))?;
    let data = data.display().to_string();
    let file_arg = file.display().to_string();
    let args = [
        &[
            "--data-dir",
            data.as_str(),
            "user",
            "add",
            name,
            "--password-file",
            &file_arg,
        ][..],
        extra,
    ]
    .concat();
    let (status, output) = run_to_exit(&args, &[], Duration::from_secs(30))?;
    anyhow::ensure!(
        status.success(),
        "runnel user add {name}: {status}: {output}"
    );
    anyhow::ensure!(
        !output.contains(password),
        "the password was printed: {output}"
    );
    Ok(output)
}

/// [`run_to_exit`] for any executable `bin` (e.g. [`runnel_bridge_bin`]).
pub fn run_binary_to_exit(
    bin: &Path,
    args: &[&str],
    envs: &[(&str, &str)],
    timeout: Duration,
) -> Result<(ExitStatus, String)> {
    let dir = tempfile::Builder::new().prefix("runnel-run-").tempdir()?;
    let out_path = dir.path().join("out.log");
    let out = File::create(&out_path)?;
    let mut command = Command::new(bin);
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("RUNNEL_") {
            command.env_remove(&key);
        }
    }
    let mut child = command
        .env("NO_COLOR", "1")
        .current_dir(dir.path())
        .args(args)
        .envs(envs.iter().copied())
        .stdin(Stdio::null())
        .stdout(out.try_clone()?)
        .stderr(out)
        .spawn()
        .with_context(|| format!("spawning {}", bin.display()))?;
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!(
                "`{} {}` was still running after {timeout:?}; output:\n{}",
                bin.display(),
                args.join(" "),
                read_from(&out_path, 0)?
            );
        }
        thread::sleep(Duration::from_millis(20));
    };
    Ok((status, read_from(&out_path, 0)?))
}

/// The text of `path` from byte `offset` on, ANSI colours removed.
pub(crate) fn read_from(path: &Path, offset: u64) -> Result<String> {
    let mut file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    file.seek(SeekFrom::Start(offset))?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)?;
    Ok(strip_ansi(&String::from_utf8_lossy(&bytes)))
}

/// Removes ANSI escape sequences (`ESC [ ... letter`), in case the broker colours its log.
pub(crate) fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for next in chars.by_ref() {
                if next.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn given_ansi_colours_when_stripping_should_keep_the_text() {
        assert_eq!(
            strip_ansi("\u{1b}[32m INFO\u{1b}[0m listening"),
            " INFO listening"
        );
    }
}
