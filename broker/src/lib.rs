//! Runnel: a Kafka-compatible event-streaming broker small enough for edge devices.
//!
//! [`run`] is the whole broker: it opens the LMDB store, loads topics, binds the listener,
//! serves connections and retention until `shutdown` is cancelled, then drains in-flight
//! requests, flushes and closes the store. `main.rs` only parses flags and config.

pub mod acl;
pub mod alloc;
pub mod auth;
pub mod bridge;
pub mod cluster;
pub mod config;
pub mod group;
pub mod handlers;
pub mod log;
pub mod protocol;
pub mod retention;
pub mod server;
pub mod topics;
pub mod uplink;

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::Config;
use crate::handlers::Ctx;
use crate::log::lmdb::LmdbStore;
use crate::log::{LogStore, MetaStore, OffsetStore, StoreError};
use crate::topics::TopicRegistry;

/// Unit tests decode hostile frames too; they need the same allocator as the binary.
#[cfg(test)]
#[global_allocator]
static TEST_ALLOCATOR: alloc::LazyHugeAlloc = alloc::LazyHugeAlloc;

/// How long shutdown waits for in-flight requests before closing the store anyway.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Why the broker could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error(transparent)]
    Bridge(#[from] runnel_bridge::BridgeError),
    #[error(transparent)]
    Uplink(#[from] uplink::UplinkStartError),
    #[error("listener {listener}: {message}")]
    Tls { listener: String, message: String },
    #[error("cluster: {0}")]
    Cluster(String),
    #[error("cannot serve metrics on {addr}: {source}")]
    Metrics {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot open data directory {dir}: {source}")]
    Store {
        dir: std::path::PathBuf,
        source: StoreError,
    },
}

/// Runs the broker until `shutdown` is cancelled.
pub async fn run(mut config: Config, shutdown: CancellationToken) -> Result<(), StartError> {
    if let Some(c) = &config.cluster {
        config.topics.min_insync_replicas = c.min_insync_replicas;
    }
    let dir = config.storage.data_dir.clone();
    let store_err = |source| StartError::Store {
        dir: dir.clone(),
        source,
    };
    // Bind first: a taken port should not cost a store open (and its directory lock).
    let listeners = bind_listeners(&config).await?;
    let store = Arc::new(LmdbStore::open(&dir, config.storage.max_disk_bytes).map_err(store_err)?);
    let log: Arc<dyn LogStore> = store.clone();
    let meta: Arc<dyn MetaStore> = store.clone();
    let topics =
        TopicRegistry::load(meta.clone(), log.clone(), config.topics.clone()).map_err(store_err)?;
    let budget = log.disk_usage();
    let quorum_stop = CancellationToken::new();
    let (cluster, offsets): (_, Arc<dyn OffsetStore>) = match &config.cluster {
        Some(c) => {
            let (cluster, heartbeats) =
                cluster::start(config.server.node_id, c.clone(), &dir, quorum_stop.clone())
                    .await
                    .map_err(StartError::Cluster)?;
            let offsets = Arc::new(cluster::offsets::ClusterOffsets::new(
                cluster.quorum().clone(),
                cluster.watch_state(),
            ));
            (Some((cluster, heartbeats)), offsets)
        }
        None => (None, store.clone()),
    };
    // Groups known only from their committed offsets are listed (state Empty) after a restart.
    let known_groups = offsets.offset_groups().map_err(store_err)?;
    let groups = group::GroupCoordinator::new(
        group::GroupLimits {
            min_session_timeout_ms: config.groups.min_session_timeout_ms,
            max_session_timeout_ms: config.groups.max_session_timeout_ms,
            initial_rebalance_delay_ms: config.groups.initial_rebalance_delay_ms,
        },
        known_groups,
    );
    let security: Arc<dyn log::SecurityStore> = store.clone();
    let auth = Arc::new(auth::Auth::load(security.clone()).map_err(store_err)?);
    let acl = acl::Authorizer::load(security, config.authorization.settings(&config.listener))
        .map_err(store_err)?;
    let cluster_id = match &ctx_cluster_id(&config) {
        Some(id) => id.clone(),
        None => meta.cluster_id(),
    };
    let ctx = Arc::new(Ctx {
        changes: store.changes(),
        cluster_id,
        node_id: config.server.node_id,
        config: Arc::new(config),
        log,
        meta: meta.clone(),
        offsets,
        topics: Arc::new(topics),
        groups: Arc::new(groups),
        shutdown: shutdown.clone(),
        started_at_ms: log::now_ms(),
        holds: Arc::new(uplink::Holds::default()),
        disk_pressure: Arc::new(tokio::sync::Notify::new()),
        acl: Arc::new(acl),
        auth,
        cluster: cluster.as_ref().map(|(c, _)| c.clone()),
    });
    for (i, l) in listeners.iter().enumerate() {
        if i == 0 {
            // The first line's format is what scripts and the test harness look for.
            tracing::info!(
                topics = ctx.topics.list().len(),
                disk_budget_bytes = budget.budget,
                disk_used_bytes = budget.used,
                listener = %l.session.listener,
                protocol = l.protocol.name(),
                "listening on {}, data in {}",
                l.bound,
                dir.display()
            );
        } else {
            tracing::info!(listener = %l.session.listener, protocol = l.protocol.name(), "also listening on {}", l.bound);
        }
    }
    let bound = listeners.first().map(|l| l.bound);
    let tls: Vec<_> = listeners.iter().filter_map(|l| l.tls.clone()).collect();
    let tracker = TaskTracker::new();
    if let Some((cl, heartbeats)) = cluster {
        let endpoints = listeners
            .iter()
            .map(|l| {
                let (host, port) = &*l.session.advertised;
                (
                    l.session.listener.to_string(),
                    cluster::state::Endpoint {
                        host: host.clone(),
                        port: *port,
                    },
                )
            })
            .collect();
        cluster::spawn_tasks(&ctx, &cl, heartbeats, endpoints, &tracker);
    }
    if !tls.is_empty() {
        tracker.spawn(reload_on_sighup(tls, shutdown.clone()));
    }
    // Bridges stop with the broker but before the store closes: they get their own token,
    // cancelled once the listener has stopped, and are awaited before the drain.
    let bridges_stop = CancellationToken::new();
    let bridges = if ctx.config.bridge.is_empty() {
        None
    } else {
        Some(bridge::start(ctx.clone(), ctx.config.bridge.clone(), bridges_stop.clone()).await?)
    };
    // Uplinks register their retention holds before retention first runs.
    let uplinks_stop = CancellationToken::new();
    let uplinks = if ctx.config.uplink.is_empty() {
        None
    } else {
        let store: Arc<dyn log::UplinkStore> = store.clone();
        Some(
            uplink::start(
                ctx.clone(),
                store,
                ctx.config.uplink.clone(),
                uplinks_stop.clone(),
            )
            .await?,
        )
    };
    if let Some(addr) = ctx.config.server.metrics_listen {
        let bridge_stats = bridges.as_ref().map(|b| b.stats()).unwrap_or_default();
        let uplink_stats = uplinks
            .as_ref()
            .map(|u| u.stats().to_vec())
            .unwrap_or_default();
        let auth_stats = ctx.auth.metrics();
        let render = move || {
            let mut text = runnel_bridge::status::render_metrics(
                &bridge_stats
                    .iter()
                    .map(|s| s.snapshot())
                    .collect::<Vec<_>>(),
            );
            text.push_str(&uplink::status::render_metrics(
                &uplink_stats
                    .iter()
                    .map(|s| s.snapshot())
                    .collect::<Vec<_>>(),
            ));
            text.push_str(&auth::render_metrics(&auth_stats));
            text
        };
        let (bound, serving) =
            runnel_bridge::metrics::serve(addr, Arc::new(render), shutdown.clone())
                .await
                .map_err(|source| StartError::Metrics { addr, source })?;
        tracing::info!("serving Prometheus metrics on http://{bound}/metrics");
        tracker.spawn(serving);
    }
    tracker.spawn(retention::run(ctx.clone()));
    tracker.spawn(alloc::trim_periodically(shutdown.clone()));
    tracker.spawn(runnel_bridge::service::watchdog(shutdown.clone()));
    runnel_bridge::service::ready(&format!(
        "serving Kafka on {}",
        bound.map(|b| b.to_string()).unwrap_or_default()
    ));
    tracker.spawn(ctx.groups.clone().sweep(shutdown.clone()));
    server::serve_listeners(ctx.clone(), listeners, tracker.clone()).await;
    tracing::info!("shutting down: draining in-flight requests");
    if let Some(cl) = &ctx.cluster {
        cl.leave().await;
    }
    runnel_bridge::service::stopping();
    bridges_stop.cancel();
    uplinks_stop.cancel();
    if let Some(running) = bridges {
        running.wait().await;
    }
    if let Some(running) = uplinks {
        running.wait().await;
    }
    tracker.close();
    if tokio::time::timeout(DRAIN_TIMEOUT, tracker.wait())
        .await
        .is_err()
    {
        tracing::warn!("some connections did not finish within {DRAIN_TIMEOUT:?}");
    }
    if let Some(cl) = &ctx.cluster {
        cl.quorum().shutdown().await;
    }
    quorum_stop.cancel();
    drop(ctx);
    let closing = store.clone();
    let _ = tokio::task::spawn_blocking(move || closing.close()).await;
    tracing::info!("stopped");
    Ok(())
}

/// In cluster mode every node must report the same cluster id without a round through the
/// quorum: it is derived from the voters list, which every node is configured with.
fn ctx_cluster_id(config: &Config) -> Option<String> {
    let cluster = config.cluster.as_ref()?;
    let mut voters: Vec<&str> = cluster.voters.iter().map(|v| v.trim()).collect();
    voters.sort_unstable();
    let text = voters.join(",");
    Some(format!(
        "{:016x}{:016x}",
        cluster::fnv1a(cluster::FNV_OFFSET, text.as_bytes()),
        cluster::fnv1a(0x8422_2325_cbf2_9ce4, text.as_bytes())
    ))
}

/// Binds every configured listener (or the default PLAINTEXT one on `server.listen`) and
/// loads TLS certificates.
async fn bind_listeners(config: &Config) -> Result<Vec<server::BoundListener>, StartError> {
    use config::listeners::{ListenerConfig, SecurityProtocol};
    let configured = if config.listener.is_empty() {
        vec![ListenerConfig {
            name: "PLAINTEXT".into(),
            protocol: SecurityProtocol::Plaintext,
            listen: config.server.listen,
            advertised: config.server.advertised_listener.clone(),
            tls: None,
            sasl_mechanisms: None,
        }]
    } else {
        config.listener.clone()
    };
    let mut bound = Vec::with_capacity(configured.len());
    for l in configured {
        let bind_err = |source| StartError::Bind {
            addr: l.listen,
            source,
        };
        let tcp = TcpListener::bind(l.listen).await.map_err(bind_err)?;
        let addr = tcp.local_addr().map_err(bind_err)?;
        let advertised = match &l.advertised {
            Some(a) => server::parse_host_port(a)
                .map(|(h, p)| (h, i32::from(p)))
                .unwrap_or_else(|_| (addr.ip().to_string(), i32::from(addr.port()))),
            None => (addr.ip().to_string(), i32::from(addr.port())),
        };
        let tls = match &l.tls {
            Some(t) => Some(Arc::new(server::tls::ServerTls::load(&l.name, t).map_err(
                |e| StartError::Tls {
                    listener: l.name.clone(),
                    message: e.to_string(),
                },
            )?)),
            None => None,
        };
        bound.push(server::BoundListener {
            tcp,
            bound: addr,
            protocol: l.protocol,
            session: handlers::Session {
                listener: Arc::from(l.name.as_str()),
                advertised: Arc::new(advertised),
                peer: None,
                principal: Arc::from(handlers::ANONYMOUS),
            },
            tls,
            sasl: l.enabled_sasl_mechanisms().map(Arc::from),
        });
    }
    Ok(bound)
}

/// Re-reads every TLS listener's certificate, key and client CAs on SIGHUP.
async fn reload_on_sighup(tls: Vec<Arc<server::tls::ServerTls>>, shutdown: CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut hup) = signal(SignalKind::hangup()) else {
        tracing::warn!("cannot install the SIGHUP handler; certificates reload only on restart");
        return;
    };
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            got = hup.recv() => if got.is_none() { return },
        }
        for t in &tls {
            match t.reload() {
                Ok(()) => tracing::info!(listener = t.listener(), "reloaded TLS certificate"),
                Err(e) => {
                    tracing::error!(listener = t.listener(), error = %e, "TLS reload failed; keeping the previous certificate")
                }
            }
        }
    }
}
