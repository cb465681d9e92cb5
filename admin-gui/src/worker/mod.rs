//! The background side of the GUI: a tokio runtime on its own thread owns every connection.
//! The UI sends [`Command`]s (never waits) and draws the shared [`Model`], which the worker
//! updates in short critical sections, calling `request_repaint` after each change.
//!
//! Per open cluster there is one task: it refreshes the overview every `refresh` interval
//! ([`refresh`]) and runs the cluster's actions ([`actions`]) as they come, each with the
//! configured timeout and cancellable with [`Command::Cancel`]. Once the Access screen was
//! opened for a cluster ([`Command::WatchAccess`]), its refresh also loads ACLs and SCRAM users
//! ([`access`]).
//!
//! A profile's TLS files are read when the cluster is opened: a missing or bad file is the
//! cluster's error at once (shown next to the profile), not a refresh that fails later.

pub mod access;
pub mod actions;
pub mod refresh;
pub mod status_topic;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use runnel_client::{Client, ClientConfig, ConfigChange};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken as CancelToken;

use crate::history::LagHistory;
use crate::state::{ActionResult, ClusterView, Profile};

/// What the UI draws: every open cluster, and lag history.
#[derive(Debug, Default)]
pub struct Model {
    pub clusters: BTreeMap<usize, ClusterView>,
    pub history: LagHistory,
}

/// Where an offset reset moves a group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResetTarget {
    Earliest,
    Latest,
    /// The first offset at or after this time (ms since the epoch).
    Timestamp(i64),
    /// This exact offset on every partition (clamped to the partition's range).
    Offset(i64),
}

/// Where the message browser starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BrowseFrom {
    Offset(i64),
    Timestamp(i64),
    /// The last `n` records.
    Latest(i64),
}

/// Requests from the UI.
#[derive(Debug, Clone)]
pub enum Command {
    /// Opens a cluster with these timings.
    Connect {
        id: usize,
        profile: Profile,
        timing: Timing,
    },
    Disconnect {
        id: usize,
    },
    RefreshNow {
        id: usize,
    },
    CreateTopic {
        id: usize,
        name: String,
        partitions: i32,
        replication: i16,
        configs: Vec<(String, String)>,
    },
    DeleteTopic {
        id: usize,
        name: String,
    },
    LoadTopic {
        id: usize,
        name: String,
    },
    AlterConfigs {
        id: usize,
        topic: String,
        changes: Vec<ConfigChange>,
    },
    LoadGroup {
        id: usize,
        group: String,
    },
    PreviewReset {
        id: usize,
        group: String,
        target: ResetTarget,
    },
    ApplyReset {
        id: usize,
        group: String,
        offsets: BTreeMap<(String, i32), i64>,
    },
    Browse {
        id: usize,
        topic: String,
        partition: i32,
        from: BrowseFrom,
        max: usize,
    },
    Produce {
        id: usize,
        topic: String,
        partition: Option<i32>,
        key: Option<String>,
        value: String,
        headers: Vec<(String, String)>,
    },
    /// Cancels the actions in flight for the cluster.
    Cancel {
        id: usize,
    },
    /// From now on, each refresh of the cluster also loads ACLs and SCRAM users; refreshes now.
    WatchAccess {
        id: usize,
    },
    /// An action of the Access screen.
    Access {
        id: usize,
        action: access::AccessAction,
    },
}

impl Command {
    fn cluster(&self) -> usize {
        match self {
            Command::Connect { id, .. }
            | Command::Disconnect { id }
            | Command::RefreshNow { id }
            | Command::CreateTopic { id, .. }
            | Command::DeleteTopic { id, .. }
            | Command::LoadTopic { id, .. }
            | Command::AlterConfigs { id, .. }
            | Command::LoadGroup { id, .. }
            | Command::PreviewReset { id, .. }
            | Command::ApplyReset { id, .. }
            | Command::Browse { id, .. }
            | Command::Produce { id, .. }
            | Command::Cancel { id }
            | Command::WatchAccess { id }
            | Command::Access { id, .. } => *id,
        }
    }
}

/// Timing the user can configure.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Timing {
    pub refresh: Duration,
    pub request_timeout: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            refresh: Duration::from_secs(5),
            request_timeout: Duration::from_secs(10),
        }
    }
}

/// The handle the UI holds.
#[derive(Debug, Clone)]
pub struct Worker {
    tx: mpsc::UnboundedSender<Command>,
    model: Arc<Mutex<Model>>,
}

/// Something that can be asked to repaint (the egui context, or nothing in tests).
pub type Repaint = Arc<dyn Fn() + Send + Sync>;

/// What a cluster task needs.
#[derive(Clone)]
pub struct ClusterCtx {
    pub id: usize,
    pub client: Client,
    pub model: Arc<Mutex<Model>>,
    pub repaint: Repaint,
    pub timing: Timing,
    /// The cluster task's own queue, for a refresh after an action changed something.
    again: mpsc::UnboundedSender<Command>,
}

impl ClusterCtx {
    /// Runs `f` on this cluster's view (if still open) and asks for a repaint.
    pub fn update(&self, f: impl FnOnce(&mut ClusterView, &mut LagHistory)) {
        {
            let mut model = lock(&self.model);
            let Model { clusters, history } = &mut *model;
            if let Some(view) = clusters.get_mut(&self.id) {
                f(view, history);
            }
        }
        (self.repaint)();
    }

    /// Asks the cluster task for a refresh (after a create, delete, reset, produce).
    pub fn refresh_soon(&self) {
        let _ = self.again.send(Command::RefreshNow { id: self.id });
    }

    pub fn result(&self, action: String, outcome: Result<String, String>) {
        self.update(|view, _| {
            let (ok, message) = match outcome {
                Ok(m) => (true, m),
                Err(m) => (false, m),
            };
            view.push_result(ActionResult {
                action,
                ok,
                message,
            });
        });
    }
}

/// Locks the model; a panic elsewhere while holding it does not make the data unusable.
pub fn lock(model: &Mutex<Model>) -> MutexGuard<'_, Model> {
    model.lock().unwrap_or_else(|p| p.into_inner())
}

impl Worker {
    /// Starts the background runtime; `history` is the persisted lag history.
    pub fn start(repaint: Repaint, history: LagHistory) -> std::io::Result<Worker> {
        let (tx, rx) = mpsc::unbounded_channel();
        let model = Arc::new(Mutex::new(Model {
            clusters: BTreeMap::new(),
            history,
        }));
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .thread_name("runnel-admin-net")
            .build()?;
        let shared = model.clone();
        std::thread::Builder::new()
            .name("runnel-admin-worker".into())
            .spawn(move || runtime.block_on(route(rx, shared, repaint)))?;
        Ok(Worker { tx, model })
    }

    /// Queues a command; never blocks.
    pub fn send(&self, command: Command) {
        if let Command::Connect { id, profile, .. } = &command {
            lock(&self.model)
                .clusters
                .insert(*id, ClusterView::new(profile.clone()));
        }
        if let Command::Disconnect { id } = &command {
            lock(&self.model).clusters.remove(id);
        }
        let _ = self.tx.send(command);
    }

    pub fn model(&self) -> MutexGuard<'_, Model> {
        lock(&self.model)
    }
}

/// Hands each command to its cluster's task, starting and stopping tasks.
async fn route(
    mut rx: mpsc::UnboundedReceiver<Command>,
    model: Arc<Mutex<Model>>,
    repaint: Repaint,
) {
    let mut clusters: BTreeMap<usize, (mpsc::UnboundedSender<Command>, CancelToken)> =
        BTreeMap::new();
    while let Some(command) = rx.recv().await {
        let id = command.cluster();
        match command {
            Command::Connect {
                id,
                profile,
                timing,
            } => {
                if let Some((_, stop)) = clusters.remove(&id) {
                    stop.cancel();
                }
                let mut config = ClientConfig::new(profile.bootstrap.clone(), "runnel-admin");
                config.request_timeout = timing.request_timeout;
                config.connect_timeout = timing.request_timeout.min(Duration::from_secs(5));
                config.security = profile.security();
                let client = match Client::try_new(config) {
                    Ok(client) => client,
                    Err(e) => {
                        let now = std::time::Instant::now();
                        if let Some(view) = lock(&model).clusters.get_mut(&id) {
                            view.mark(Err(e.to_string()), now);
                        }
                        repaint();
                        continue;
                    }
                };
                let (ctx_tx, ctx_rx) = mpsc::unbounded_channel();
                let ctx = ClusterCtx {
                    id,
                    client,
                    model: model.clone(),
                    repaint: repaint.clone(),
                    timing,
                    again: ctx_tx.clone(),
                };
                let stop = CancelToken::default();
                tokio::spawn(cluster_task(ctx, ctx_rx, stop.clone()));
                clusters.insert(id, (ctx_tx, stop));
            }
            Command::Disconnect { id } => {
                if let Some((_, stop)) = clusters.remove(&id) {
                    stop.cancel();
                }
            }
            other => {
                if let Some((tx, _)) = clusters.get(&id) {
                    let _ = tx.send(other);
                }
            }
        }
    }
}

/// One cluster: periodic refresh plus actions.
async fn cluster_task(
    ctx: ClusterCtx,
    mut rx: mpsc::UnboundedReceiver<Command>,
    stop: CancelToken,
) {
    let mut actions = CancelToken::default();
    let mut refresher = refresh::Refresher::default();
    let mut tick = tokio::time::interval(ctx.timing.refresh);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => {
                actions.cancel();
                return;
            }
            _ = tick.tick() => refresher.refresh(&ctx).await,
            command = rx.recv() => match command {
                None => return,
                Some(Command::RefreshNow { .. }) => refresher.refresh(&ctx).await,
                Some(Command::WatchAccess { .. }) => {
                    refresher.watch_access = true;
                    refresher.refresh(&ctx).await;
                }
                Some(Command::Cancel { .. }) => {
                    actions.cancel();
                    actions = CancelToken::default();
                    ctx.result("cancel".into(), Ok("requests in flight cancelled".into()));
                }
                Some(command) => {
                    let ctx = ctx.clone();
                    let cancel = actions.clone();
                    tokio::spawn(async move { actions::run(ctx, command, cancel).await });
                }
            },
        }
    }
}
