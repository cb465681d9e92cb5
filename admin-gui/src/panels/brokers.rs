//! The brokers of the shown cluster: id, address, rack, which one is the controller, and the
//! replication health of its partitions.

use crate::app::AdminApp;

pub fn show(app: &mut AdminApp, ui: &mut egui::Ui) {
    ui.heading("Brokers");
    let Some(id) = app.current() else {
        return super::no_cluster(ui);
    };
    let model = app.worker.model();
    let Some(view) = model.clusters.get(&id) else {
        return;
    };
    let Some(meta) = &view.meta else {
        ui.label("Waiting for the cluster's metadata…");
        return;
    };
    ui.label(format!(
        "Cluster id {} · controller {}",
        meta.cluster_id.as_deref().unwrap_or("-"),
        meta.controller
    ));
    egui::Grid::new("brokers").striped(true).show(ui, |ui| {
        for h in [
            "Id",
            "Address",
            "Rack",
            "Role",
            "Leads partitions",
            "Reachable",
            "Version",
            "Uptime",
            "Disk used / budget",
            "RSS",
        ] {
            ui.strong(h);
        }
        ui.end_row();
        for b in &meta.brokers {
            let status = view.brokers.get(&b.node_id);
            let stat = |k: &str| status.and_then(|s| s.stats.get(k)).cloned();
            let mib = |k: &str| {
                stat(k)
                    .and_then(|v| v.parse::<u64>().ok())
                    .map(|v| format!("{:.1} MiB", v as f64 / 1048576.0))
            };
            let leads: usize = meta
                .topics
                .iter()
                .flat_map(|t| t.partitions.iter())
                .filter(|p| p.leader == b.node_id)
                .count();
            ui.label(b.node_id.to_string());
            ui.label(format!("{}:{}", b.host, b.port));
            ui.label(b.rack.as_deref().unwrap_or("-"));
            ui.label(if b.node_id == meta.controller {
                "controller"
            } else {
                "broker"
            });
            ui.label(leads.to_string());
            match status {
                Some(s) if s.reachable => ui.label("yes"),
                Some(s) => ui.colored_label(
                    ui.visuals().error_fg_color,
                    format!("no: {}", s.error.clone().unwrap_or_default()),
                ),
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
            ui.end_row();
        }
    });
    let under: usize = view.topics.iter().map(|t| t.under_replicated).sum();
    ui.label(format!("Under-replicated partitions: {under}"));
}
