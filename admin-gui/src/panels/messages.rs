//! Messages: browse a partition from an offset, a timestamp or its last records (at most
//! [`crate::worker::actions::MAX_BROWSE`] held), with key, value, headers and timestamp; a
//! value that parses as JSON is shown pretty-printed, else as text, else as hex. A live tail
//! re-reads the end every refresh until paused. Produce a message with key, headers and an
//! optional partition.

use crate::app::AdminApp;
use crate::worker::{BrowseFrom, Command};

/// The browse form.
#[derive(Debug, Clone)]
pub struct BrowseForm {
    pub topic: String,
    pub partition: i32,
    /// 0 offset, 1 timestamp, 2 latest.
    pub from: usize,
    pub offset: i64,
    pub timestamp_ms: i64,
    pub last: i64,
    pub tail: bool,
    pub last_tail: Option<std::time::Instant>,
}

impl Default for BrowseForm {
    fn default() -> Self {
        BrowseForm {
            topic: String::new(),
            partition: 0,
            from: 2,
            offset: 0,
            timestamp_ms: 0,
            last: 50,
            tail: false,
            last_tail: None,
        }
    }
}

/// The produce form.
#[derive(Debug, Clone, Default)]
pub struct ProduceForm {
    pub topic: String,
    pub partition: String,
    pub key: String,
    pub value: String,
    /// `key=value` per line.
    pub headers: String,
}

/// How a value is shown: pretty JSON, text, or hex.
pub fn render_value(bytes: &[u8]) -> String {
    if let Ok(json) = serde_json::from_slice::<serde_json::Value>(bytes)
        && (json.is_object() || json.is_array())
        && let Ok(pretty) = serde_json::to_string_pretty(&json)
    {
        return pretty;
    }
    match std::str::from_utf8(bytes) {
        Ok(text)
            if !text
                .chars()
                .any(|c| c.is_control() && c != '\n' && c != '\t') =>
        {
            text.to_string()
        }
        _ => bytes
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<Vec<_>>()
            .join(" "),
    }
}

pub fn show(app: &mut AdminApp, ui: &mut egui::Ui) {
    ui.heading("Messages");
    let Some(id) = app.current() else {
        return super::no_cluster(ui);
    };
    let f = &mut app.forms.browse;
    let mut commands = Vec::new();
    ui.horizontal(|ui| {
        let l = ui.label("Topic");
        ui.add(
            egui::TextEdit::singleline(&mut f.topic)
                .desired_width(160.0)
                .hint_text("topic"),
        )
        .labelled_by(l.id);
        let l = ui.label("Partition");
        ui.add(egui::DragValue::new(&mut f.partition).range(0..=100_000))
            .labelled_by(l.id);
        let r = ui.radio_value(&mut f.from, 0, "from offset");
        ui.add(egui::DragValue::new(&mut f.offset))
            .labelled_by(r.id);
        let r = ui.radio_value(&mut f.from, 1, "from time (ms)");
        ui.add(egui::DragValue::new(&mut f.timestamp_ms))
            .labelled_by(r.id);
        let r = ui.radio_value(&mut f.from, 2, "last");
        ui.add(egui::DragValue::new(&mut f.last).range(1..=500))
            .labelled_by(r.id);
    });
    let from = match f.from {
        0 => BrowseFrom::Offset(f.offset),
        1 => BrowseFrom::Timestamp(f.timestamp_ms),
        _ => BrowseFrom::Latest(f.last),
    };
    let browse = Command::Browse {
        id,
        topic: f.topic.trim().to_string(),
        partition: f.partition,
        from,
        max: 500,
    };
    ui.horizontal(|ui| {
        if ui
            .add_enabled(!f.topic.trim().is_empty(), egui::Button::new("Browse"))
            .clicked()
        {
            commands.push(browse.clone());
        }
        ui.checkbox(&mut f.tail, "Live tail (pause by unticking)");
    });
    if f.tail && !f.topic.trim().is_empty() {
        let due = f
            .last_tail
            .is_none_or(|t| t.elapsed() >= std::time::Duration::from_secs(1));
        if due {
            f.last_tail = Some(std::time::Instant::now());
            commands.push(Command::Browse {
                id,
                topic: f.topic.trim().to_string(),
                partition: f.partition,
                from: BrowseFrom::Latest(f.last),
                max: 500,
            });
        }
        ui.ctx()
            .request_repaint_after(std::time::Duration::from_secs(1));
    }
    {
        let model = app.worker.model();
        if let Some(view) = model.clusters.get(&id) {
            egui::ScrollArea::vertical()
                .id_salt("messages")
                .max_height(ui.available_height() * 0.6)
                .show_rows(ui, 64.0, view.messages.len(), |ui, range| {
                    for m in &view.messages[range] {
                        ui.group(|ui| {
                            ui.label(format!(
                                "partition {} · offset {} · timestamp {}",
                                m.partition, m.offset, m.timestamp_ms
                            ));
                            ui.label(format!(
                                "key: {}",
                                m.key.as_deref().map_or("(null)".into(), render_value)
                            ));
                            for (k, v) in &m.headers {
                                ui.label(format!(
                                    "header {k}: {}",
                                    v.as_deref().map_or("(null)".into(), render_value)
                                ));
                            }
                            ui.monospace(m.value.as_deref().map_or("(null)".into(), render_value));
                        });
                    }
                });
        }
    }
    ui.separator();
    let p = &mut app.forms.produce;
    ui.collapsing("Produce a message", |ui| {
        egui::Grid::new("produce").show(ui, |ui| {
            let l = ui.label("Topic");
            ui.add(egui::TextEdit::singleline(&mut p.topic).hint_text("produce topic"))
                .labelled_by(l.id);
            ui.end_row();
            let l = ui.label("Partition (empty: by key)");
            ui.add(egui::TextEdit::singleline(&mut p.partition))
                .labelled_by(l.id);
            ui.end_row();
            let l = ui.label("Key");
            ui.add(egui::TextEdit::singleline(&mut p.key).hint_text("key"))
                .labelled_by(l.id);
            ui.end_row();
            let l = ui.label("Value");
            ui.add(
                egui::TextEdit::multiline(&mut p.value)
                    .desired_rows(3)
                    .hint_text("value"),
            )
            .labelled_by(l.id);
            ui.end_row();
            let l = ui.label("Headers (key=value per line)");
            ui.add(egui::TextEdit::multiline(&mut p.headers).desired_rows(2))
                .labelled_by(l.id);
            ui.end_row();
        });
        if ui
            .add_enabled(!p.topic.trim().is_empty(), egui::Button::new("Send"))
            .clicked()
        {
            commands.push(Command::Produce {
                id,
                topic: p.topic.trim().to_string(),
                partition: p.partition.trim().parse().ok(),
                key: (!p.key.is_empty()).then(|| p.key.clone()),
                value: p.value.clone(),
                headers: p
                    .headers
                    .lines()
                    .filter_map(|l| l.split_once('='))
                    .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
                    .collect(),
            });
        }
    });
    for c in commands {
        app.worker.send(c);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn given_values_when_rendering_should_pick_json_text_or_hex() {
        assert_eq!(render_value(br#"{"a":1}"#), "{\n  \"a\": 1\n}");
        assert_eq!(render_value(b"plain text"), "plain text");
        assert_eq!(render_value(&[0, 255, 16]), "00 ff 10");
    }
}
