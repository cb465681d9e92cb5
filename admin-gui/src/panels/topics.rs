//! Topics: a filtered, virtualised list (only visible rows are drawn, so thousands stay
//! smooth) with size and retention, the create form, and the selected topic's detail —
//! partitions with leader, replicas, ISR, watermarks and size, configs that differ from the
//! defaults, edit and delete (with confirmation).

use egui_extras::{Column, TableBuilder};
use runnel_client::ConfigChange;

use crate::app::AdminApp;
use crate::state::bytes_label;
use crate::worker::Command;

/// The create-topic form.
#[derive(Debug, Clone)]
pub struct NewTopicForm {
    pub name: String,
    pub partitions: u32,
    pub replication: i16,
    /// `key=value` per line.
    pub configs: String,
}

impl Default for NewTopicForm {
    fn default() -> Self {
        NewTopicForm {
            name: String::new(),
            partitions: 1,
            replication: -1,
            configs: String::new(),
        }
    }
}

const ROW_HEIGHT: f32 = 20.0;

pub fn show(app: &mut AdminApp, ui: &mut egui::Ui) {
    ui.heading("Topics");
    let Some(id) = app.current() else {
        return super::no_cluster(ui);
    };
    create_form(app, ui, id);
    ui.separator();
    ui.horizontal(|ui| {
        let l = ui.label("Filter");
        ui.add(egui::TextEdit::singleline(&mut app.forms.topic_filter).hint_text("name contains…"))
            .labelled_by(l.id);
    });
    let filter = app.forms.topic_filter.to_lowercase();
    let mut select = None;
    {
        let model = app.worker.model();
        let Some(view) = model.clusters.get(&id) else {
            return;
        };
        let rows: Vec<_> = view
            .topics
            .iter()
            .filter(|t| filter.is_empty() || t.name.to_lowercase().contains(&filter))
            .collect();
        ui.label(format!("{} of {} topics", rows.len(), view.topics.len()));
        let height = (ui.available_height() * 0.45).max(120.0);
        TableBuilder::new(ui)
            .id_salt("topics")
            .striped(true)
            .max_scroll_height(height)
            .column(Column::remainder().at_least(160.0))
            .columns(Column::auto().at_least(70.0), 6)
            .header(ROW_HEIGHT, |mut h| {
                for (title, hint) in [
                    ("Topic", None),
                    ("Partitions", None),
                    ("Replication", None),
                    ("Records", None),
                    (
                        "Size",
                        Some("bytes stored, all partitions (DescribeLogDirs)"),
                    ),
                    (
                        "Retention",
                        Some("retention.ms / retention.bytes (per partition)"),
                    ),
                    ("Msgs/s", None),
                ] {
                    h.col(|ui| {
                        let title = ui.strong(title);
                        if let Some(hint) = hint {
                            title.on_hover_text(hint);
                        }
                    });
                }
            })
            .body(|body| {
                body.rows(ROW_HEIGHT, rows.len(), |mut row| {
                    let t = rows[row.index()];
                    row.col(|ui| {
                        if ui
                            .selectable_label(
                                app.forms.selected_topic.as_deref() == Some(&t.name),
                                &t.name,
                            )
                            .clicked()
                        {
                            select = Some(t.name.clone());
                        }
                    });
                    row.col(|ui| {
                        ui.label(t.partitions.to_string());
                    });
                    row.col(|ui| {
                        ui.label(t.replication.to_string());
                    });
                    row.col(|ui| {
                        ui.label(t.records.to_string());
                    });
                    row.col(|ui| {
                        ui.label(t.size.map_or("-".into(), bytes_label));
                    });
                    row.col(|ui| {
                        ui.label(t.retention.label());
                    });
                    row.col(|ui| {
                        ui.label(t.rate.map_or("-".into(), |r| format!("{r:.1}")));
                    });
                });
            });
    }
    if let Some(name) = select {
        app.forms.selected_topic = Some(name.clone());
        app.forms.config_edits.clear();
        app.worker.send(Command::LoadTopic { id, name });
    }
    ui.separator();
    detail(app, ui, id);
}

fn create_form(app: &mut AdminApp, ui: &mut egui::Ui, id: usize) {
    let form = &mut app.forms.new_topic;
    let mut create = false;
    ui.collapsing("Create topic", |ui| {
        egui::Grid::new("create-topic").show(ui, |ui| {
            let l = ui.label("Name");
            ui.add(egui::TextEdit::singleline(&mut form.name).hint_text("topic name"))
                .labelled_by(l.id);
            ui.end_row();
            let l = ui.label("Partitions");
            ui.add(egui::DragValue::new(&mut form.partitions).range(1..=10_000))
                .labelled_by(l.id);
            ui.end_row();
            let l = ui.label("Replication (-1: broker default)");
            ui.add(egui::DragValue::new(&mut form.replication).range(-1..=16))
                .labelled_by(l.id);
            ui.end_row();
            let l = ui.label("Configs (key=value per line)");
            ui.add(egui::TextEdit::multiline(&mut form.configs).desired_rows(2))
                .labelled_by(l.id);
            ui.end_row();
        });
        create = ui
            .add_enabled(!form.name.trim().is_empty(), egui::Button::new("Create"))
            .clicked();
    });
    if create {
        let configs = form
            .configs
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
            .collect();
        app.worker.send(Command::CreateTopic {
            id,
            name: form.name.trim().to_string(),
            partitions: form.partitions as i32,
            replication: form.replication,
            configs,
        });
        form.name.clear();
    }
}

fn detail(app: &mut AdminApp, ui: &mut egui::Ui, id: usize) {
    let Some(selected) = app.forms.selected_topic.clone() else {
        ui.label("Select a topic to see its partitions and configs.");
        return;
    };
    let mut commands = Vec::new();
    {
        let model = app.worker.model();
        let Some(d) = model
            .clusters
            .get(&id)
            .and_then(|v| v.topic_detail.as_ref())
            .filter(|d| d.name == selected)
        else {
            ui.label(format!("Loading {selected}…"));
            return;
        };
        ui.horizontal(|ui| {
            ui.strong(format!("Topic {}", d.name));
            if app.forms.confirm_delete.as_deref() == Some(&d.name) {
                ui.label("Delete this topic and all its records?");
                if ui.button("Yes, delete").clicked() {
                    commands.push(Command::DeleteTopic {
                        id,
                        name: d.name.clone(),
                    });
                    app.forms.confirm_delete = None;
                }
                if ui.button("Keep it").clicked() {
                    app.forms.confirm_delete = None;
                }
            } else if ui.button("Delete topic").clicked() {
                app.forms.confirm_delete = Some(d.name.clone());
            }
        });
        egui::Grid::new("partitions").striped(true).show(ui, |ui| {
            for h in [
                "Partition",
                "Leader",
                "Replicas",
                "ISR",
                "Low",
                "High",
                "Records",
                "Size",
            ] {
                ui.strong(h);
            }
            ui.end_row();
            for p in &d.partitions {
                ui.label(p.partition.to_string());
                ui.label(p.leader.to_string());
                ui.label(format!("{:?}", p.replicas));
                ui.label(format!("{:?}", p.isr));
                ui.label(p.low.to_string());
                ui.label(p.high.to_string());
                ui.label((p.high - p.low).to_string());
                ui.label(p.size.map_or("-".into(), bytes_label));
                ui.end_row();
            }
        });
        ui.add_space(6.0);
        ui.strong("Configs (overrides first; bold = differs from the default)");
        let mut configs: Vec<_> = d.configs.iter().collect();
        configs.sort_by_key(|c| (!c.is_override(), c.name.clone()));
        egui::ScrollArea::vertical()
            .id_salt("configs")
            .max_height(160.0)
            .show(ui, |ui| {
                egui::Grid::new("configs").striped(true).show(ui, |ui| {
                    for c in configs {
                        let value = if c.sensitive {
                            "(sensitive)".to_string()
                        } else {
                            c.value.clone().unwrap_or_default()
                        };
                        let name = if c.is_override() {
                            ui.strong(&c.name)
                        } else {
                            ui.label(&c.name)
                        };
                        if c.read_only {
                            ui.label(value);
                        } else {
                            let edit = app
                                .forms
                                .config_edits
                                .entry(c.name.clone())
                                .or_insert(value);
                            ui.add(egui::TextEdit::singleline(edit).desired_width(180.0))
                                .labelled_by(name.id);
                        }
                        ui.end_row();
                    }
                });
            });
        let changes: Vec<ConfigChange> = d
            .configs
            .iter()
            .filter(|c| !c.read_only && !c.sensitive)
            .filter_map(|c| {
                let edited = app.forms.config_edits.get(&c.name)?;
                (Some(edited) != c.value.as_ref())
                    .then(|| ConfigChange::Set(c.name.clone(), edited.clone()))
            })
            .collect();
        if ui
            .add_enabled(
                !changes.is_empty(),
                egui::Button::new(format!("Apply {} config change(s)", changes.len())),
            )
            .clicked()
        {
            commands.push(Command::AlterConfigs {
                id,
                topic: d.name.clone(),
                changes,
            });
        }
    }
    for c in commands {
        app.worker.send(c);
    }
}
