//! LMDB storage of the quorum: one environment in `cfg.dir`, owned by a dedicated thread.
//!
//! heed 0.23 databases borrow their `Env`, so the environment, its databases and every
//! transaction live on one thread ([`Db`]); async callers send it closures and await the result.
//! That also serialises writes (LMDB allows one write transaction at a time) and keeps blocking
//! fsyncs off the tokio workers. Invariants:
//! - every write closure commits its own transaction before replying, so a reply means durable;
//! - the environment is closed (and the directory reusable in this process) once
//!   [`Db::close`] returns.

pub(crate) mod log;
pub(crate) mod state;

use std::path::{Path, PathBuf};

use heed::byteorder::BigEndian;
use heed::types::{Bytes, U64};
use heed::{CommitOrAbort, Database, Env, EnvOpenOptions};
use tokio::sync::oneshot;

use crate::error::QuorumError;

/// LMDB map size: metadata only; the log is purged after each snapshot.
const MAP_SIZE: usize = 256 << 20;

/// Keys of the `raft` database.
pub(crate) const KEY_VOTE: &[u8] = b"vote";
pub(crate) const KEY_COMMITTED: &[u8] = b"committed";
pub(crate) const KEY_PURGED: &[u8] = b"last_purged";
/// Keys of the `sm` database.
pub(crate) const KEY_APPLIED: &[u8] = b"last_applied";
pub(crate) const KEY_MEMBERSHIP: &[u8] = b"last_membership";
pub(crate) const KEY_SNAPSHOT: &[u8] = b"snapshot";

/// The databases, valid while the environment they borrow is open.
pub(crate) struct Dbs<'e> {
    pub env: &'e Env,
    /// Raft log: big-endian index -> JSON of the openraft entry.
    pub log: Database<'e, U64<BigEndian>, Bytes>,
    /// Vote, committed log id, last purged log id (JSON).
    pub raft: Database<'e, Bytes, Bytes>,
    /// State machine: last applied log id, last membership (JSON), snapshot bytes.
    pub sm: Database<'e, Bytes, Bytes>,
}

type Job = Box<dyn for<'e> FnOnce(&Dbs<'e>) + Send>;

enum Msg {
    Job(Job),
    Close(oneshot::Sender<()>),
}

/// Handle to the storage thread; cheap to clone.
#[derive(Clone)]
pub(crate) struct Db {
    tx: std::sync::mpsc::Sender<Msg>,
    dir: PathBuf,
}

/// A storage operation failed (LMDB, encoding, or the thread is gone).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(crate) struct StoreError(pub String);

impl From<heed::Error> for StoreError {
    fn from(e: heed::Error) -> Self {
        StoreError(format!("lmdb: {e}"))
    }
}

impl From<serde_json::Error> for StoreError {
    fn from(e: serde_json::Error) -> Self {
        StoreError(format!("encoding: {e}"))
    }
}

impl Db {
    /// Opens (creating if missing) the environment in `dir` on a new thread.
    pub(crate) async fn open(dir: &Path) -> Result<Db, QuorumError> {
        let storage_err = |message: String| QuorumError::Storage {
            dir: dir.to_path_buf(),
            message,
        };
        std::fs::create_dir_all(dir).map_err(|e| storage_err(format!("cannot create: {e}")))?;
        let (tx, rx) = std::sync::mpsc::channel::<Msg>();
        let (ready_tx, ready_rx) = oneshot::channel::<Result<(), String>>();
        let path = dir.to_path_buf();
        std::thread::Builder::new()
            .name("quorum-lmdb".into())
            .spawn(move || run(&path, rx, ready_tx))
            .map_err(|e| storage_err(format!("cannot spawn storage thread: {e}")))?;
        match ready_rx.await {
            Ok(Ok(())) => Ok(Db {
                tx,
                dir: dir.to_path_buf(),
            }),
            Ok(Err(message)) => Err(storage_err(message)),
            Err(_) => Err(storage_err("storage thread exited".into())),
        }
    }

    /// Runs `f` on the storage thread and returns its result.
    pub(crate) async fn run<R, F>(&self, f: F) -> Result<R, StoreError>
    where
        R: Send + 'static,
        F: for<'e> FnOnce(&Dbs<'e>) -> Result<R, StoreError> + Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let job: Job = Box::new(move |dbs| {
            let _ = tx.send(f(dbs));
        });
        self.tx.send(Msg::Job(job)).map_err(|_| self.closed())?;
        rx.await.map_err(|_| self.closed())?
    }

    /// Closes the environment after the queued jobs; later jobs fail.
    pub(crate) async fn close(&self) {
        let (tx, rx) = oneshot::channel();
        if self.tx.send(Msg::Close(tx)).is_ok() {
            let _ = rx.await;
        }
    }

    fn closed(&self) -> StoreError {
        StoreError(format!("storage in {} is closed", self.dir.display()))
    }
}

/// The storage thread: opens the env, reports readiness, then runs jobs until closed.
fn run(dir: &Path, rx: std::sync::mpsc::Receiver<Msg>, ready: oneshot::Sender<Result<(), String>>) {
    let mut options = EnvOpenOptions::new();
    options.map_size(MAP_SIZE).max_dbs(4);
    // SAFETY: the environment is opened once per directory in this process (heed refuses a
    // second open with EnvAlreadyOpened) and never with WRITE_MAP.
    let env = match unsafe { options.open(dir) } {
        Ok(env) => env,
        Err(e) => {
            let _ = ready.send(Err(format!("cannot open LMDB: {e}")));
            return;
        }
    };
    let closed_by = {
        let dbs = match open_databases(&env) {
            Ok(dbs) => dbs,
            Err(e) => {
                let _ = ready.send(Err(format!("cannot create databases: {e}")));
                return;
            }
        };
        let _ = ready.send(Ok(()));
        let mut closed_by = None;
        while let Ok(msg) = rx.recv() {
            match msg {
                Msg::Job(job) => job(&dbs),
                Msg::Close(done) => {
                    closed_by = Some(done);
                    break;
                }
            }
        }
        closed_by
    };
    // Dropping the last handle closes the environment synchronously.
    drop(env);
    if let Some(done) = closed_by {
        let _ = done.send(());
    }
}

fn open_databases(env: &Env) -> Result<Dbs<'_>, heed::Error> {
    let wtxn = env.write_txn()?;
    let created = env.create_databases_and_commit(wtxn, |opener, wtxn| {
        let log = opener.create_database::<U64<BigEndian>, Bytes>(wtxn, Some("log"))?;
        let raft = opener.create_database::<Bytes, Bytes>(wtxn, Some("raft"))?;
        let sm = opener.create_database::<Bytes, Bytes>(wtxn, Some("sm"))?;
        Ok::<_, heed::Error>(CommitOrAbort::<_, ()>::Commit((log, raft, sm)))
    })?;
    match created {
        CommitOrAbort::Commit((log, raft, sm)) => Ok(Dbs { env, log, raft, sm }),
        CommitOrAbort::Abort(()) => Err(heed::Error::Io(std::io::Error::other("aborted"))),
    }
}

/// Reads a JSON value stored under `key`.
pub(crate) fn get_json<T: serde::de::DeserializeOwned>(
    db: &Database<'_, Bytes, Bytes>,
    txn: &heed::RoTxn<'_>,
    key: &[u8],
) -> Result<Option<T>, StoreError> {
    match db.get(txn, key)? {
        Some(bytes) => Ok(Some(serde_json::from_slice(bytes)?)),
        None => Ok(None),
    }
}

/// Writes `value` as JSON under `key`.
pub(crate) fn put_json<T: serde::Serialize>(
    db: &Database<'_, Bytes, Bytes>,
    txn: &mut heed::RwTxn<'_>,
    key: &[u8],
    value: &T,
) -> Result<(), StoreError> {
    db.put(txn, key, &serde_json::to_vec(value)?)?;
    Ok(())
}
