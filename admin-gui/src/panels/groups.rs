//! Consumer groups: the list with state, members, total lag and a status judged over a
//! window; the selected group's partitions (committed, end, lag, owner), members, a lag
//! chart from the persisted history, and offset reset with a preview — allowed only while
//! the group has no members.

use egui_extras::{Column, TableBuilder};
use egui_plot::{Line, Plot, PlotPoints};

use crate::app::AdminApp;
use crate::state::GroupStatus;
use crate::worker::{Command, ResetTarget};

/// The reset form.
#[derive(Debug, Clone, Default)]
pub struct ResetForm {
    /// 0 earliest, 1 latest, 2 timestamp, 3 offset.
    pub target: usize,
    pub timestamp_ms: i64,
    pub offset: i64,
}

impl ResetForm {
    fn target(&self) -> ResetTarget {
        match self.target {
            0 => ResetTarget::Earliest,
            1 => ResetTarget::Latest,
            2 => ResetTarget::Timestamp(self.timestamp_ms),
            _ => ResetTarget::Offset(self.offset),
        }
    }
}

const ROW_HEIGHT: f32 = 20.0;

pub fn status_label(s: GroupStatus) -> &'static str {
    match s {
        GroupStatus::Ok => "OK",
        GroupStatus::Lagging => "lagging",
        GroupStatus::Stalled => "stalled",
        GroupStatus::Empty => "empty",
        GroupStatus::Unknown => "…",
    }
}

pub fn show(app: &mut AdminApp, ui: &mut egui::Ui) {
    ui.heading("Consumer groups");
    let Some(id) = app.current() else {
        return super::no_cluster(ui);
    };
    ui.horizontal(|ui| {
        let l = ui.label("Filter");
        ui.add(
            egui::TextEdit::singleline(&mut app.forms.group_filter).hint_text("group id contains…"),
        )
        .labelled_by(l.id);
    });
    let filter = app.forms.group_filter.to_lowercase();
    let mut select = None;
    {
        let model = app.worker.model();
        let Some(view) = model.clusters.get(&id) else {
            return;
        };
        let rows: Vec<_> = view
            .groups
            .iter()
            .filter(|g| filter.is_empty() || g.group_id.to_lowercase().contains(&filter))
            .collect();
        let height = (ui.available_height() * 0.4).max(120.0);
        TableBuilder::new(ui)
            .id_salt("groups")
            .striped(true)
            .max_scroll_height(height)
            .column(Column::remainder().at_least(160.0))
            .columns(Column::auto().at_least(70.0), 4)
            .header(ROW_HEIGHT, |mut h| {
                for title in ["Group", "State", "Members", "Lag", "Status"] {
                    h.col(|ui| {
                        ui.strong(title);
                    });
                }
            })
            .body(|body| {
                body.rows(ROW_HEIGHT, rows.len(), |mut row| {
                    let g = rows[row.index()];
                    row.col(|ui| {
                        if ui
                            .selectable_label(
                                app.forms.selected_group.as_deref() == Some(&g.group_id),
                                &g.group_id,
                            )
                            .clicked()
                        {
                            select = Some(g.group_id.clone());
                        }
                    });
                    row.col(|ui| {
                        ui.label(&g.state);
                    });
                    row.col(|ui| {
                        ui.label(g.members.to_string());
                    });
                    row.col(|ui| {
                        ui.label(format!("lag {}", g.lag));
                    });
                    row.col(|ui| {
                        ui.label(status_label(g.status));
                    });
                });
            });
    }
    if let Some(group) = select {
        app.forms.selected_group = Some(group.clone());
        app.worker.send(Command::LoadGroup { id, group });
    }
    ui.separator();
    detail(app, ui, id);
}

fn detail(app: &mut AdminApp, ui: &mut egui::Ui, id: usize) {
    let Some(group) = app.forms.selected_group.clone() else {
        ui.label("Select a group to see its partitions, members and lag over time.");
        return;
    };
    let mut commands = Vec::new();
    {
        let model = app.worker.model();
        let Some(view) = model.clusters.get(&id) else {
            return;
        };
        let Some(d) = view
            .group_detail
            .as_ref()
            .filter(|d| d.description.group_id == group)
        else {
            ui.label(format!("Loading {group}…"));
            return;
        };
        ui.horizontal(|ui| {
            ui.strong(format!("Group {group}"));
            ui.label(format!(
                "state {} · {} member(s)",
                d.description.state,
                d.description.members.len()
            ));
            if ui.button("Reload").clicked() {
                commands.push(Command::LoadGroup {
                    id,
                    group: group.clone(),
                });
            }
        });
        egui::Grid::new("group-partitions")
            .striped(true)
            .show(ui, |ui| {
                for h in ["Topic", "Partition", "Committed", "End", "Lag", "Owner"] {
                    ui.strong(h);
                }
                ui.end_row();
                for p in &d.partitions {
                    ui.label(&p.topic);
                    ui.label(p.partition.to_string());
                    ui.label(if p.committed >= 0 {
                        p.committed.to_string()
                    } else {
                        "-".into()
                    });
                    ui.label(p.end.to_string());
                    ui.label(p.lag.to_string());
                    ui.label(p.owner.as_deref().unwrap_or("-"));
                    ui.end_row();
                }
            });
        for m in &d.description.members {
            ui.label(format!(
                "member {} (client {}, host {}): {} partition(s)",
                m.member_id,
                m.client_id,
                m.client_host,
                m.assignment.len()
            ));
        }
        if let Some(samples) = model.history.samples(&view.profile.name, &group) {
            let t0 = samples.front().map_or(0, |s| s.at_ms);
            let points: PlotPoints = samples
                .iter()
                .map(|s| [(s.at_ms - t0) as f64 / 1000.0, s.lag as f64])
                .collect();
            Plot::new("lag-chart")
                .height(140.0)
                .x_axis_label("seconds")
                .y_axis_label("lag")
                .show(ui, |plot| plot.line(Line::new("lag", points)));
        }
        ui.add_space(6.0);
        ui.strong("Reset offsets (only while the group has no members)");
        let form = &mut app.forms.reset;
        ui.horizontal(|ui| {
            ui.radio_value(&mut form.target, 0, "earliest");
            ui.radio_value(&mut form.target, 1, "latest");
            let r = ui.radio_value(&mut form.target, 2, "timestamp (ms)");
            ui.add(egui::DragValue::new(&mut form.timestamp_ms))
                .labelled_by(r.id);
            let r = ui.radio_value(&mut form.target, 3, "offset");
            ui.add(egui::DragValue::new(&mut form.offset))
                .labelled_by(r.id);
        });
        let empty = d.description.members.is_empty();
        ui.horizontal(|ui| {
            if ui
                .add_enabled(empty, egui::Button::new("Preview reset"))
                .clicked()
            {
                commands.push(Command::PreviewReset {
                    id,
                    group: group.clone(),
                    target: form.target(),
                });
            }
            if !empty {
                ui.label("Stop the group's consumers first.");
            }
        });
        if let Some((g, offsets)) = view.reset_preview.as_ref().filter(|(g, _)| *g == group) {
            egui::Grid::new("reset-preview")
                .striped(true)
                .show(ui, |ui| {
                    for h in ["Topic", "Partition", "New offset"] {
                        ui.strong(h);
                    }
                    ui.end_row();
                    for ((t, p), o) in offsets {
                        ui.label(t);
                        ui.label(p.to_string());
                        ui.label(o.to_string());
                        ui.end_row();
                    }
                });
            if ui
                .add_enabled(empty, egui::Button::new("Apply reset"))
                .clicked()
            {
                commands.push(Command::ApplyReset {
                    id,
                    group: g.clone(),
                    offsets: offsets.clone(),
                });
            }
        }
    }
    for c in commands {
        app.worker.send(c);
    }
}
