//! Saved connection profiles (persisted by eframe), opening several clusters at once, and the
//! fleet overview: each open cluster online, stale (with "last seen") or offline, and what its
//! uplinks still hold (`truck-042 -> central: 12,345 records (3.4 MiB), oldest 2 h`, or
//! `caught up`), so an operator sees at a glance which devices have not shipped their data.
//!
//! Each profile row says how its open cluster is doing, and why it failed in the client's own
//! words (a missing CA file, a refused certificate, failed authentication — never the
//! password). A SASL profile whose password is not remembered has a password field in its row.

use std::time::Instant;

use crate::app::AdminApp;
use crate::state::{ClusterView, Freshness, Profile};
use crate::worker::Model;
use crate::worker::access::Secret;
use crate::worker::refresh::now_ms;

pub fn show(app: &mut AdminApp, ui: &mut egui::Ui, now: Instant) {
    ui.heading("Connections");
    super::profile_form::show(app, ui);
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
    profiles(app, ui, now);
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

/// The saved profiles, with a password field where one is needed, and the state of each
/// profile's open cluster next to it.
fn profiles(app: &mut AdminApp, ui: &mut egui::Ui, now: Instant) {
    let mut connect = None;
    let mut edit = None;
    let mut forget = None;
    {
        let model = app.worker.model();
        let passwords = &mut app.forms.connect_passwords;
        let open = &app.open;
        egui::Grid::new("profiles").striped(true).show(ui, |ui| {
            for h in [
                "Profile",
                "Bootstrap",
                "Security",
                "Password",
                "",
                "",
                "",
                "State",
            ] {
                ui.strong(h);
            }
            ui.end_row();
            for (i, p) in app.profiles.iter().enumerate() {
                ui.label(&p.name);
                ui.label(&p.bootstrap);
                ui.label(p.security_label());
                let asks = p.sasl.as_ref().is_some_and(|s| !s.remember_password);
                if asks {
                    let typed = passwords.entry(p.name.clone()).or_default();
                    let hint = if p.needs_password() {
                        "required"
                    } else {
                        "(known)"
                    };
                    let label = format!("Password for {}", p.name);
                    let field = ui.add(
                        egui::TextEdit::singleline(&mut typed.0)
                            .password(true)
                            .desired_width(120.0)
                            .hint_text(hint),
                    );
                    field.widget_info(|| {
                        egui::WidgetInfo::labeled(egui::Role::TextInput, true, &label)
                    });
                } else {
                    ui.label("");
                }
                let ready =
                    !p.needs_password() || passwords.get(&p.name).is_some_and(|t| !t.0.is_empty());
                if ui
                    .add_enabled(ready, egui::Button::new(format!("Connect {}", p.name)))
                    .clicked()
                {
                    connect = Some(i);
                }
                if ui.button(format!("Edit {}", p.name)).clicked() {
                    edit = Some(i);
                }
                if ui.button(format!("Forget {}", p.name)).clicked() {
                    forget = Some(i);
                }
                state(ui, open, &model, &p.name, now);
                ui.end_row();
            }
        });
    }
    if let Some(i) = connect {
        let typed = app.forms.connect_passwords.remove(&app.profiles[i].name);
        let profile = &mut app.profiles[i];
        if let (Some(sasl), Some(Secret(password))) = (profile.sasl.as_mut(), typed)
            && !password.is_empty()
        {
            // Kept for this session; saved only if the profile remembers passwords.
            sasl.password = password;
        }
        let profile: Profile = profile.clone();
        app.connect(profile);
    }
    if let Some(i) = edit {
        app.forms.new_profile = crate::profile::ProfileForm::from_profile(&app.profiles[i]);
    }
    if let Some(i) = forget {
        app.profiles.remove(i);
    }
}

/// The state of the open cluster of profile `name`: online, or why not, in the error colour.
fn state(
    ui: &mut egui::Ui,
    open: &std::collections::BTreeMap<usize, Profile>,
    model: &Model,
    name: &str,
    now: Instant,
) {
    let view = open
        .iter()
        .rev()
        .find(|(_, p)| p.name == name)
        .and_then(|(id, _)| model.clusters.get(id));
    let Some(view) = view else {
        ui.label("not connected");
        return;
    };
    match (&view.freshness, &view.last_error) {
        (Freshness::Online | Freshness::Connecting, _) | (_, None) => {
            ui.label(view.freshness.label(now));
        }
        (_, Some(e)) => {
            ui.add(
                egui::Label::new(
                    egui::RichText::new(format!("{}: {e}", view.freshness.label(now)))
                        .color(ui.visuals().error_fg_color),
                )
                .wrap(),
            );
        }
    }
}
