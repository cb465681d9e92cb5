//! MQTT bridges: the latest status record each Runnel bridge wrote to
//! `__runnel_bridge_status` — connection, pending messages, per-rule counters, egress lag,
//! last error, and how old that record is (stale after three status intervals). Other Kafka
//! clusters simply have none.

use crate::app::AdminApp;
use crate::worker::refresh::now_ms;

pub fn show(app: &mut AdminApp, ui: &mut egui::Ui) {
    ui.heading("MQTT bridges");
    let Some(id) = app.current() else {
        return super::no_cluster(ui);
    };
    let model = app.worker.model();
    let Some(view) = model.clusters.get(&id) else {
        return;
    };
    if view.bridges.is_empty() {
        ui.label("No bridge status records (no Runnel MQTT bridge writes to this cluster).");
        return;
    }
    let now_ms = now_ms();
    for (name, record) in &view.bridges {
        let s = &record.value;
        ui.group(|ui| {
            let connected = s["connected"].as_bool().unwrap_or(false);
            ui.strong(format!(
                "Bridge {name}: {} · pending {} · reconnects {}",
                if connected {
                    "connected"
                } else {
                    "disconnected"
                },
                s["pending"].as_i64().unwrap_or(0),
                s["reconnects"].as_u64().unwrap_or(0)
            ));
            let (age, stale) = record.age_label(now_ms);
            if stale {
                ui.colored_label(ui.visuals().warn_fg_color, format!("status {age}"));
            } else {
                ui.label(format!("status {age}"));
            }
            if let Some(e) = s["last_error"].as_str() {
                ui.colored_label(ui.visuals().error_fg_color, format!("last error: {e}"));
            }
            egui::Grid::new(format!("bridge-{name}"))
                .striped(true)
                .show(ui, |ui| {
                    for h in [
                        "Rule",
                        "Topic",
                        "Received",
                        "Written",
                        "Dead-lettered",
                        "Dropped",
                    ] {
                        ui.strong(h);
                    }
                    ui.end_row();
                    for r in s["ingress"].as_array().into_iter().flatten() {
                        ui.label(r["filter"].as_str().unwrap_or("-"));
                        ui.label(r["topic"].as_str().unwrap_or("-"));
                        for k in ["received", "written", "dead_lettered", "dropped"] {
                            ui.label(r[k].as_u64().unwrap_or(0).to_string());
                        }
                        ui.end_row();
                    }
                    for r in s["egress"].as_array().into_iter().flatten() {
                        ui.label(format!("-> {}", r["mqtt_topic"].as_str().unwrap_or("-")));
                        ui.label(r["topic"].as_str().unwrap_or("-"));
                        ui.label(format!(
                            "delivered {}",
                            r["delivered"].as_u64().unwrap_or(0)
                        ));
                        ui.label(format!("lag {}", r["lag"].as_i64().unwrap_or(0)));
                        ui.end_row();
                    }
                });
        });
    }
}
