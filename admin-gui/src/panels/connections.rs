//! Saved connection profiles (persisted by eframe), opening several clusters at once, and the
//! fleet overview: each open cluster online, stale (with "last seen") or offline, and what its
//! uplinks still hold (`truck-042 -> central: 12,345 records (3.4 MiB), oldest 2 h`, or
//! `caught up`), so an operator sees at a glance which devices have not shipped their data.

use std::time::Instant;

use crate::app::AdminApp;
use crate::state::{ClusterView, Profile};
use crate::worker::Model;
use crate::worker::refresh::now_ms;

pub fn show(app: &mut AdminApp, ui: &mut egui::Ui, now: Instant) {
    ui.heading("Connections");
    ui.horizontal(|ui| {
        let name = ui.label("Name");
        ui.add(
            egui::TextEdit::singleline(&mut app.forms.new_profile.name)
                .desired_width(120.0)
                .hint_text("edge-1"),
        )
        .labelled_by(name.id);
        let bootstrap = ui.label("Bootstrap servers");
        ui.add(
            egui::TextEdit::singleline(&mut app.forms.new_profile.bootstrap).desired_width(220.0),
        )
        .labelled_by(bootstrap.id);
        let valid = !app.forms.new_profile.name.trim().is_empty()
            && !app.forms.new_profile.bootstrap.trim().is_empty();
        if ui
            .add_enabled(valid, egui::Button::new("Save profile"))
            .clicked()
        {
            let p = Profile {
                name: app.forms.new_profile.name.trim().to_string(),
                bootstrap: app.forms.new_profile.bootstrap.trim().to_string(),
            };
            app.profiles.retain(|q| q.name != p.name);
            app.profiles.push(p);
            app.forms.new_profile.name.clear();
        }
    });
    ui.horizontal(|ui| {
        let mut refresh = app.timing.refresh.as_secs_f64();
        let mut timeout = app.timing.request_timeout.as_secs_f64();
        let l = ui.label("Refresh every (s)");
        ui.add(
            egui::DragValue::new(&mut refresh)
                .range(0.5..=300.0)
                .speed(0.5),
        )
        .labelled_by(l.id);
        let l = ui.label("Request timeout (s)");
        ui.add(
            egui::DragValue::new(&mut timeout)
                .range(1.0..=300.0)
                .speed(0.5),
        )
        .labelled_by(l.id);
        app.timing.refresh = std::time::Duration::from_secs_f64(refresh);
        app.timing.request_timeout = std::time::Duration::from_secs_f64(timeout);
        ui.label("(applies to clusters connected from now on)");
    });
    ui.separator();
    let mut connect = None;
    let mut forget = None;
    egui::Grid::new("profiles").striped(true).show(ui, |ui| {
        ui.strong("Profile");
        ui.strong("Bootstrap");
        ui.end_row();
        for (i, p) in app.profiles.iter().enumerate() {
            ui.label(&p.name);
            ui.label(&p.bootstrap);
            if ui.button(format!("Connect {}", p.name)).clicked() {
                connect = Some(p.clone());
            }
            if ui.button(format!("Forget {}", p.name)).clicked() {
                forget = Some(i);
            }
            ui.end_row();
        }
    });
    if let Some(p) = connect {
        app.connect(p);
    }
    if let Some(i) = forget {
        app.profiles.remove(i);
    }
    ui.separator();
    ui.heading("Fleet");
    let mut close = None;
    {
        let model = app.worker.model();
        let now_ms = now_ms();
        egui::Grid::new("fleet").striped(true).show(ui, |ui| {
            for h in [
                "Cluster",
                "Status",
                "Brokers",
                "Topics",
                "Groups",
                "Last error",
            ] {
                ui.strong(h);
            }
            ui.end_row();
            for (id, profile) in &app.open {
                let view = model.clusters.get(id);
                ui.label(&profile.name);
                ui.label(view.map(|v| v.freshness.label(now)).unwrap_or_default());
                ui.label(
                    view.and_then(|v| v.meta.as_ref())
                        .map_or("-".into(), |m| m.brokers.len().to_string()),
                );
                ui.label(view.map_or("-".into(), |v| v.topics.len().to_string()));
                ui.label(view.map_or("-".into(), |v| v.groups.len().to_string()));
                ui.label(view.and_then(|v| v.last_error.clone()).unwrap_or_default());
                if ui.button(format!("Close {}", profile.name)).clicked() {
                    close = Some(*id);
                }
                ui.end_row();
            }
        });
        uplink_backlogs(ui, app, &model, now_ms);
    }
    if let Some(id) = close {
        app.disconnect(id);
    }
}

/// What each open cluster's uplinks still hold, one line per uplink (in the warning colour
/// while records wait), below the fleet table: in its own grid the lines never wrap.
fn uplink_backlogs(ui: &mut egui::Ui, app: &AdminApp, model: &Model, now_ms: i64) {
    let with_uplinks: Vec<(&str, &ClusterView)> = app
        .open
        .iter()
        .filter_map(|(id, p)| Some((p.name.as_str(), model.clusters.get(id)?)))
        .filter(|(_, v)| !v.uplinks.is_empty())
        .collect();
    if with_uplinks.is_empty() {
        return;
    }
    ui.add_space(8.0);
    egui::Grid::new("fleet-uplinks")
        .striped(true)
        .show(ui, |ui| {
            ui.strong("Cluster");
            ui.strong("Uplink backlog");
            ui.end_row();
            for (name, view) in with_uplinks {
                for record in view.uplinks.values() {
                    ui.label(name);
                    let line = egui::RichText::new(record.fleet_line(now_ms));
                    let line = if record.value.backlog_records > 0 {
                        line.color(ui.visuals().warn_fg_color)
                    } else {
                        line
                    };
                    ui.add(egui::Label::new(line).extend());
                    ui.end_row();
                }
            }
        });
}
