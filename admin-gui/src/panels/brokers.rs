//! The brokers of the shown cluster: its id and controller, one row per broker (online or
//! fenced, partitions it leads and replicates, and Runnel's live state where it tells it), and
//! the partitions that need attention — offline (no leader) and under-replicated (fewer in-sync
//! replicas than replicas) — with their counts up front. The rows come from
//! [`crate::replication`], computed once per refresh; the two partition lists draw only their
//! visible rows.

use egui::{Color32, RichText};
use egui_extras::{Column, TableBuilder};

use crate::app::AdminApp;
use crate::replication::{BrokerRow, BrokerState, BrokersView, PartitionIssue, ids_label};
use crate::state::{BrokerStatus, ClusterView};

const ROW_HEIGHT: f32 = 20.0;
/// Readable on the dark and the light theme.
const HEALTHY: Color32 = Color32::from_rgb(60, 170, 60);

pub fn show(app: &mut AdminApp, ui: &mut egui::Ui) {
    ui.heading("Brokers");
    let Some(id) = app.current() else {
        return super::no_cluster(ui);
    };
    let model = app.worker.model();
    let Some(view) = model.clusters.get(&id) else {
        return;
    };
    let Some(brokers) = &view.brokers_view else {
        ui.label("Waiting for the cluster's metadata…");
        return;
    };
    summary(ui, brokers);
    ui.separator();
    broker_grid(ui, view, brokers);
    ui.separator();
    let height = ((ui.available_height() - 4.0 * ROW_HEIGHT) / 2.0).max(3.0 * ROW_HEIGHT);
    ui.strong(format!("Offline partitions ({})", brokers.offline.len()));
    if !brokers.offline.is_empty() {
        issues(ui, "offline", &brokers.offline, height);
    }
    ui.strong(format!(
        "Under-replicated partitions ({})",
        brokers.under_replicated.len()
    ));
    if !brokers.under_replicated.is_empty() {
        issues(ui, "under-replicated", &brokers.under_replicated, height);
    }
}

/// Cluster id, controller, and the two counts in large type: green at zero, red otherwise.
fn summary(ui: &mut egui::Ui, brokers: &BrokersView) {
    let controller = brokers.brokers.iter().find(|b| b.id == brokers.controller);
    ui.label(format!(
        "Cluster id {} · controller {}",
        brokers.cluster_id.as_deref().unwrap_or("-"),
        match controller {
            Some(b) if brokers.controller >= 0 => format!("{} ({})", b.id, b.address),
            _ if brokers.controller >= 0 => brokers.controller.to_string(),
            _ => "none".into(),
        }
    ));
    ui.horizontal(|ui| {
        let error = ui.visuals().error_fg_color;
        for (n, what) in [
            (brokers.under_replicated.len(), "under-replicated"),
            (brokers.offline.len(), "offline"),
        ] {
            let colour = if n == 0 { HEALTHY } else { error };
            ui.label(
                RichText::new(format!("{n} {what}"))
                    .size(22.0)
                    .strong()
                    .color(colour),
            );
            ui.add_space(16.0);
        }
    });
}

fn broker_grid(ui: &mut egui::Ui, view: &ClusterView, brokers: &BrokersView) {
    egui::Grid::new("brokers").striped(true).show(ui, |ui| {
        for h in [
            "Id",
            "Address",
            "Rack",
            "Role",
            "Status",
            "Leads",
            "Replicates",
            "Reachable",
            "Version",
            "Uptime",
            "Disk used / budget",
            "RSS",
        ] {
            ui.strong(h);
        }
        ui.end_row();
        for b in &brokers.brokers {
            broker_row(ui, b, b.id == brokers.controller, view.brokers.get(&b.id));
            ui.end_row();
        }
    });
}

fn broker_row(ui: &mut egui::Ui, b: &BrokerRow, controller: bool, status: Option<&BrokerStatus>) {
    let stat = |k: &str| status.and_then(|s| s.stats.get(k)).cloned();
    let mib = |k: &str| {
        stat(k)
            .and_then(|v| v.parse::<u64>().ok())
            .map(|v| format!("{:.1} MiB", v as f64 / 1048576.0))
    };
    ui.label(b.id.to_string());
    ui.label(&b.address);
    ui.label(b.rack.as_deref().unwrap_or("-"));
    ui.label(if controller { "controller" } else { "broker" });
    match b.state {
        BrokerState::Online => ui.colored_label(HEALTHY, b.state.label()),
        BrokerState::Fenced => ui.colored_label(ui.visuals().error_fg_color, b.state.label()),
        BrokerState::Unknown => ui.colored_label(ui.visuals().warn_fg_color, b.state.label()),
    };
    ui.label(b.leads.to_string());
    ui.label(b.replicates.to_string());
    match status {
        Some(s) if s.reachable => ui.label("yes"),
        Some(s) => ui.colored_label(
            ui.visuals().error_fg_color,
            format!("no: {}", s.error.clone().unwrap_or_default()),
        ),
        // Fenced brokers are not in the metadata, so nobody asked them.
        None if b.state != BrokerState::Online => ui.label("-"),
        None => ui.label("…"),
    };
    ui.label(stat("runnel.version").unwrap_or_else(|| "-".into()));
    ui.label(
        stat("runnel.uptime.ms")
            .and_then(|v| v.parse::<u64>().ok())
            .map_or("-".into(), |ms| {
                crate::state::age(std::time::Duration::from_millis(ms))
            }),
    );
    ui.label(format!(
        "{} / {}",
        mib("runnel.disk.used.bytes").unwrap_or_else(|| "-".into()),
        mib("log.max.disk.bytes").unwrap_or_else(|| "-".into())
    ));
    ui.label(mib("runnel.rss.bytes").unwrap_or_else(|| "-".into()));
}

/// A virtualised table of partitions: topic, partition, leader (epoch), replicas, ISR.
fn issues(ui: &mut egui::Ui, salt: &str, rows: &[PartitionIssue], height: f32) {
    ui.push_id(salt, |ui| {
        TableBuilder::new(ui)
            .id_salt(salt)
            .striped(true)
            .max_scroll_height(height)
            .column(Column::remainder().at_least(160.0))
            .columns(Column::auto().at_least(80.0), 4)
            .header(ROW_HEIGHT, |mut h| {
                for title in ["Topic", "Partition", "Leader (epoch)", "Replicas", "ISR"] {
                    h.col(|ui| {
                        ui.strong(title);
                    });
                }
            })
            .body(|body| {
                body.rows(ROW_HEIGHT, rows.len(), |mut row| {
                    let p = &rows[row.index()];
                    let leader = match (p.leader, p.leader_epoch) {
                        (l, _) if l < 0 => "none".to_string(),
                        (l, e) if e < 0 => l.to_string(),
                        (l, e) => format!("{l} ({e})"),
                    };
                    for text in [
                        p.topic.clone(),
                        p.partition.to_string(),
                        leader,
                        ids_label(&p.replicas),
                        ids_label(&p.isr),
                    ] {
                        row.col(|ui| {
                            ui.label(text);
                        });
                    }
                });
            });
    });
}
