//! `runnel user add|remove|list`: SCRAM users written straight into the data directory, for
//! provisioning a device before the broker first starts (or while it is stopped). A running
//! broker holds the directory's lock; then the command says to stop it or to use
//! AlterUserScramCredentials (`kafka-configs.sh --alter --entity-type users …`, or any admin
//! client) instead, which also updates the running broker's cache.
//!
//! The password comes from `--password-file` (its first line) or from stdin: typed at a
//! terminal with echo off and asked twice, or the first line of a pipe. It is never a flag
//! value (which `ps` and shell histories would show) and never printed.

use std::io::{BufRead as _, IsTerminal as _};
use std::num::NonZeroU32;
use std::path::{Path, PathBuf};

use clap::{Subcommand, ValueEnum};

use super::{DEFAULT_ITERATIONS, SALT_BYTES, random_bytes, scram};
use crate::config::Config;
use crate::log::lmdb::LmdbStore;
use crate::log::{ScramMechanism, SecurityStore, StoreError};

/// Longest user name accepted (it is part of an LMDB key, at most 511 bytes).
pub const MAX_USER_BYTES: usize = 255;

/// `runnel user …`.
#[derive(Debug, Clone, Subcommand)]
pub enum UserCommand {
    /// Adds a SCRAM user, or sets a new password for an existing one. The password is read
    /// from --password-file or from stdin (asked twice, without echo, at a terminal).
    Add {
        /// The user name (the principal is `User:<name>`).
        name: String,
        /// File whose first line is the password.
        #[arg(long)]
        password_file: Option<PathBuf>,
        /// PBKDF2 iterations, 4096..=16384 like Kafka.
        #[arg(long, default_value_t = DEFAULT_ITERATIONS)]
        iterations: u32,
        /// Mechanisms to store a credential for; repeat for several (default both). PLAIN
        /// logins are checked against the SCRAM-SHA-512 credential, else SCRAM-SHA-256.
        #[arg(long = "mechanism", value_enum)]
        mechanisms: Vec<Mechanism>,
    },
    /// Removes a user's credentials (all mechanisms unless --mechanism is given).
    Remove {
        name: String,
        #[arg(long = "mechanism", value_enum)]
        mechanisms: Vec<Mechanism>,
    },
    /// Lists users with their mechanisms and iteration counts.
    List,
}

/// A SCRAM mechanism on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Mechanism {
    #[value(name = "SCRAM-SHA-256")]
    ScramSha256,
    #[value(name = "SCRAM-SHA-512")]
    ScramSha512,
}

impl Mechanism {
    fn stored(self) -> ScramMechanism {
        match self {
            Mechanism::ScramSha256 => ScramMechanism::Sha256,
            Mechanism::ScramSha512 => ScramMechanism::Sha512,
        }
    }
}

/// Why a `runnel user` command failed.
#[derive(Debug, thiserror::Error)]
pub enum UserError {
    #[error(
        "{0}: stop the broker first, or change users while it runs with \
         AlterUserScramCredentials (e.g. kafka-configs.sh --alter --entity-type users)"
    )]
    BrokerRunning(String),
    #[error("cannot open data directory {dir}: {source}")]
    Store { dir: PathBuf, source: StoreError },
    #[error("{0}")]
    Invalid(String),
    #[error("cannot read the password: {0}")]
    Password(String),
}

/// Runs `command` on the data directory of `config`; returns what to print.
pub fn run(command: &UserCommand, config: &Config) -> Result<String, UserError> {
    // Checked before the password prompt and before the store is opened.
    match command {
        UserCommand::Add {
            name, iterations, ..
        } => {
            check_name(name)?;
            check_iterations(*iterations)?;
        }
        UserCommand::Remove { name, .. } => check_name(name)?,
        UserCommand::List => {}
    }
    let dir = &config.storage.data_dir;
    let store =
        LmdbStore::open(dir, config.storage.max_disk_bytes).map_err(|source| match &source {
            StoreError::Io(message) if message.contains(crate::log::lmdb::IN_USE) => {
                UserError::BrokerRunning(message.clone())
            }
            _ => UserError::Store {
                dir: dir.clone(),
                source,
            },
        })?;
    // Asked only once the directory is known to be ours.
    let password = match command {
        UserCommand::Add {
            name,
            password_file,
            ..
        } => match read_password(name, password_file.as_deref()) {
            Ok(p) => Some(p),
            Err(e) => {
                store.close();
                return Err(e);
            }
        },
        _ => None,
    };
    let result = apply(&store, command, password);
    store.close();
    result
}

fn mechanisms(chosen: &[Mechanism]) -> Vec<ScramMechanism> {
    if chosen.is_empty() {
        vec![ScramMechanism::Sha256, ScramMechanism::Sha512]
    } else {
        let mut all: Vec<_> = chosen.iter().map(|m| m.stored()).collect();
        all.sort();
        all.dedup();
        all
    }
}

fn apply(
    store: &LmdbStore,
    command: &UserCommand,
    password: Option<String>,
) -> Result<String, UserError> {
    let store_err = |source| UserError::Store {
        dir: PathBuf::new(),
        source,
    };
    let existing = store.scram_credentials().map_err(store_err)?;
    let write = |upserts, deletions| {
        store
            .alter_scram_credentials(upserts, deletions)
            .blocking_recv()
            .map_err(|_| store_err(StoreError::Closed))?
            .map_err(store_err)
    };
    match command {
        UserCommand::Add {
            name,
            iterations,
            mechanisms: chosen,
            ..
        } => {
            let password = password.unwrap_or_default();
            let iterations = NonZeroU32::new(*iterations)
                .ok_or_else(|| UserError::Invalid("iterations must be > 0".into()))?;
            let mut upserts = Vec::new();
            let mut names = Vec::new();
            for mechanism in mechanisms(chosen) {
                let salt = random_bytes(SALT_BYTES).map_err(store_err)?;
                upserts.push(scram::credential_from_password(
                    name,
                    mechanism,
                    password.as_bytes(),
                    salt,
                    iterations,
                ));
                names.push(mechanism.name());
            }
            let replaced = existing.iter().any(|c| &c.user == name);
            write(upserts, Vec::new())?;
            Ok(format!(
                "{} user {name:?} ({}, {iterations} iterations)",
                if replaced { "updated" } else { "added" },
                names.join(", ")
            ))
        }
        UserCommand::Remove {
            name,
            mechanisms: chosen,
        } => {
            let deletions: Vec<_> = mechanisms(chosen)
                .into_iter()
                .filter(|m| {
                    existing
                        .iter()
                        .any(|c| &c.user == name && c.mechanism == *m)
                })
                .map(|m| (name.clone(), m))
                .collect();
            if deletions.is_empty() {
                return Err(UserError::Invalid(format!(
                    "user {name:?} has no credential to remove"
                )));
            }
            let names: Vec<_> = deletions.iter().map(|(_, m)| m.name()).collect();
            write(Vec::new(), deletions)?;
            Ok(format!("removed user {name:?} ({})", names.join(", ")))
        }
        UserCommand::List => {
            let mut rows: Vec<_> = existing
                .iter()
                .map(|c| (c.user.clone(), c.mechanism, c.iterations))
                .collect();
            rows.sort();
            if rows.is_empty() {
                return Ok("no users".into());
            }
            Ok(rows
                .iter()
                .map(|(user, m, i)| format!("{user}\t{}\t{i} iterations", m.name()))
                .collect::<Vec<_>>()
                .join("\n"))
        }
    }
}

/// Kafka's rules for a user name, plus what the store can key.
pub fn check_name(name: &str) -> Result<(), UserError> {
    if name.is_empty() {
        return Err(UserError::Invalid("the user name must not be empty".into()));
    }
    if name.len() > MAX_USER_BYTES || name.contains('\0') {
        return Err(UserError::Invalid(format!(
            "the user name must be at most {MAX_USER_BYTES} bytes without NUL characters"
        )));
    }
    Ok(())
}

fn check_iterations(iterations: u32) -> Result<(), UserError> {
    use runnel_client::security::scram::{MAX_ITERATIONS, MIN_ITERATIONS};
    if (MIN_ITERATIONS..=MAX_ITERATIONS).contains(&iterations) {
        Ok(())
    } else {
        Err(UserError::Invalid(format!(
            "--iterations {iterations} is outside {MIN_ITERATIONS}..={MAX_ITERATIONS} (Kafka's bounds)"
        )))
    }
}

/// The password from the file's first line, or from stdin.
fn read_password(name: &str, file: Option<&Path>) -> Result<String, UserError> {
    let password = match file {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| UserError::Password(format!("{}: {e}", path.display())))?;
            first_line(&text).to_string()
        }
        None if std::io::stdin().is_terminal() => {
            let first = read_hidden(&format!("Password for {name}: "))?;
            let again = read_hidden("Again: ")?;
            if first != again {
                return Err(UserError::Password("the two passwords differ".into()));
            }
            first
        }
        None => {
            let mut line = String::new();
            std::io::stdin()
                .lock()
                .read_line(&mut line)
                .map_err(|e| UserError::Password(format!("stdin: {e}")))?;
            first_line(&line).to_string()
        }
    };
    if password.is_empty() {
        return Err(UserError::Password(
            "it is empty (give --password-file or a line on stdin)".into(),
        ));
    }
    Ok(password)
}

fn first_line(text: &str) -> &str {
    let line = text.split('\n').next().unwrap_or_default();
    line.strip_suffix('\r').unwrap_or(line)
}

/// Reads a line from the terminal on stdin with echo off.
fn read_hidden(prompt: &str) -> Result<String, UserError> {
    let fail = |e: std::io::Error| UserError::Password(format!("terminal: {e}"));
    let fd = libc::STDIN_FILENO;
    // SAFETY: termios is plain data; tcgetattr fills it for a valid descriptor.
    let mut term: libc::termios = unsafe { std::mem::zeroed() };
    // SAFETY: `fd` is stdin, `term` a valid termios to write into.
    if unsafe { libc::tcgetattr(fd, &mut term) } != 0 {
        return Err(fail(std::io::Error::last_os_error()));
    }
    let original = term;
    term.c_lflag &= !libc::ECHO;
    term.c_lflag |= libc::ECHONL;
    // SAFETY: as above; `term` is a modified copy of the current settings.
    if unsafe { libc::tcsetattr(fd, libc::TCSANOW, &term) } != 0 {
        return Err(fail(std::io::Error::last_os_error()));
    }
    eprint!("{prompt}");
    let mut line = String::new();
    let read = std::io::stdin().lock().read_line(&mut line);
    // SAFETY: restores the settings read above.
    unsafe { libc::tcsetattr(fd, libc::TCSANOW, &original) };
    read.map_err(fail)?;
    Ok(first_line(&line).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(dir: &Path) -> Config {
        let mut config = Config::default();
        config.storage.data_dir = dir.to_path_buf();
        config
    }

    #[test]
    fn given_a_password_file_when_adding_listing_and_removing_should_store_credentials() {
        let dir = tempfile::tempdir().expect("tempdir");
        let password = dir.path().join("pw");
        std::fs::write(&password, "hunter2\nignored\n").expect("write");
        let data = dir.path().join("data");
        let add = UserCommand::Add {
            name: "alice".into(),
            password_file: Some(password.clone()),
            iterations: 4096,
            mechanisms: Vec::new(),
        };
        let added = run(&add, &config(&data)).expect("added");
        assert!(added.contains("added user \"alice\""), "{added}");
        assert!(!added.contains("hunter2"));
        let listed = run(&UserCommand::List, &config(&data)).expect("listed");
        assert_eq!(
            listed,
            "alice\tSCRAM-SHA-256\t4096 iterations\nalice\tSCRAM-SHA-512\t4096 iterations"
        );
        {
            let store = LmdbStore::open(&data, None).expect("opens");
            let auth = super::super::Auth::load(std::sync::Arc::new(store)).expect("loads");
            let lookup = auth.plain_lookup("alice");
            assert_eq!(
                super::super::plain::check(b"\0alice\0hunter2", &lookup),
                Ok("alice".into())
            );
        }
        let remove = UserCommand::Remove {
            name: "alice".into(),
            mechanisms: vec![Mechanism::ScramSha256],
        };
        run(&remove, &config(&data)).expect("removed");
        let listed = run(&UserCommand::List, &config(&data)).expect("listed");
        assert_eq!(listed, "alice\tSCRAM-SHA-512\t4096 iterations");
        let again = run(&remove, &config(&data)).expect_err("nothing left to remove");
        assert!(again.to_string().contains("no credential"), "{again}");
    }

    #[test]
    fn given_a_locked_directory_or_bad_values_should_say_what_to_do() {
        let dir = tempfile::tempdir().expect("tempdir");
        let _running = LmdbStore::open(dir.path(), None).expect("opens");
        let error = run(&UserCommand::List, &config(dir.path())).expect_err("locked");
        assert!(matches!(error, UserError::BrokerRunning(_)), "{error}");
        assert!(error.to_string().contains("stop the broker"), "{error}");
        let bad = UserCommand::Add {
            name: "alice".into(),
            password_file: None,
            iterations: 100,
            mechanisms: Vec::new(),
        };
        let error = run(&bad, &config(dir.path())).expect_err("iterations");
        assert!(error.to_string().contains("4096"), "{error}");
        assert!(check_name("").is_err());
        assert!(check_name("a\0b").is_err());
    }
}
