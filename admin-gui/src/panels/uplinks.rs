//! Store-and-forward uplinks: the latest status record each Runnel uplink wrote to
//! `__runnel_uplink_status`. One row per uplink — device, upstream, link, backlog (records and
//! estimated bytes), how long its oldest unforwarded record has waited, forwarded records and
//! rate, losses (highlighted when non-zero), the record's age (stale after three status
//! intervals) and the last error with its age — and, for the uplinks the user expands, their
//! partitions below the table (inline rows would widen the table's columns past the window).
//! Other Kafka clusters have none.

use std::collections::BTreeSet;

use crate::app::AdminApp;
use crate::state::count_label;
use crate::status::{StatusRecord, UplinkStatus, backlog_label};
use crate::worker::refresh::now_ms;

/// Column titles, and what they mean (on hover).
const COLUMNS: [(&str, &str); 13] = [
    ("Uplink", "click to show its partitions"),
    ("Device", "this broker's device id, as upstream sees it"),
    ("Upstream", "the upstream's bootstrap servers"),
    ("Link", "whether the last upstream request succeeded"),
    ("Backlog", "records not yet forwarded (size estimated)"),
    ("Oldest", "how long the oldest of them has waited"),
    ("Forwarded", "records (bytes) acknowledged upstream"),
    ("Rate", "records forwarded per second, last interval"),
    ("Dropped", "deleted for the disk budget before forwarding"),
    ("Rejected", "refused by the upstream for good"),
    ("Dupl.?", "possibly duplicated: re-sent, new producer id"),
    ("Status", "age of its status record (stale: 3 intervals)"),
    ("Last error", "the last failed upstream attempt"),
];
/// The last error shows its age and last characters (where the cause is), the whole text on
/// hover: a label that wraps would make the grid's rows change height from frame to frame.
const ERROR_CHARS: usize = 24;
const PARTITION_COLUMNS: [&str; 6] = [
    "Partition",
    "Upstream partition",
    "Next offset",
    "End offset",
    "Backlog",
    "Oldest",
];

pub fn show(app: &mut AdminApp, ui: &mut egui::Ui) {
    ui.heading("Uplinks");
    let Some(id) = app.current() else {
        return super::no_cluster(ui);
    };
    let model = app.worker.model();
    let Some(view) = model.clusters.get(&id) else {
        return;
    };
    if view.uplinks.is_empty() {
        ui.label(
            "No uplink status records (no [[uplink]] in this broker's config, or not a Runnel \
             broker).",
        );
        return;
    }
    let now_ms = now_ms();
    let expanded = &mut app.forms.expanded_uplinks;
    egui::ScrollArea::vertical()
        .auto_shrink(false)
        .show(ui, |ui| {
            egui::Grid::new("uplinks").striped(true).show(ui, |ui| {
                for (title, meaning) in COLUMNS {
                    ui.strong(title).on_hover_text(meaning);
                }
                ui.end_row();
                for (name, record) in &view.uplinks {
                    uplink_row(ui, name, record, now_ms, expanded);
                }
            });
            for (name, record) in view.uplinks.iter().filter(|(n, _)| expanded.contains(*n)) {
                ui.add_space(8.0);
                partitions(ui, name, &record.value, now_ms);
            }
        });
}

fn uplink_row(
    ui: &mut egui::Ui,
    name: &str,
    record: &StatusRecord<UplinkStatus>,
    now_ms: i64,
    expanded: &mut BTreeSet<String>,
) {
    let s = &record.value;
    let warn = ui.visuals().warn_fg_color;
    let error = ui.visuals().error_fg_color;
    let open = expanded.contains(name);
    let sign = if open { "[-]" } else { "[+]" };
    if ui
        .selectable_label(open, format!("{sign} {name}"))
        .on_hover_text(format!("{} partitions", s.partitions.len()))
        .clicked()
        && !expanded.remove(name)
    {
        expanded.insert(name.to_string());
    }
    ui.label(&s.device_id);
    ui.label(&s.upstream);
    let (link, problem) = s.link_label();
    marked(ui, link, problem.then_some(error));
    ui.label(s.backlog_summary());
    ui.label(s.oldest_label(now_ms).unwrap_or_else(|| "-".into()));
    ui.label(s.forwarded_label());
    ui.label(s.rate_label());
    for n in [s.dropped_records, s.rejected_records, s.possible_duplicates] {
        let count = count_label(i64::try_from(n).unwrap_or(i64::MAX));
        marked(ui, &count, (n > 0).then_some(warn));
    }
    let (age, stale) = record.age_label(now_ms);
    marked(ui, &age, stale.then_some(warn));
    match &s.last_error {
        Some(e) => {
            let ago = s.last_error_ago(now_ms).unwrap_or_default();
            let text = format!("{ago}: {}", tail(e, ERROR_CHARS));
            // Kept after the link recovered: red only while it is down.
            marked(ui, &text, (!s.connected).then_some(error))
                .on_hover_text(format!("{e}\n{ago}; {} failed attempts in all", s.errors));
        }
        None => {
            ui.label("-");
        }
    }
    ui.end_row();
}

/// One uplink's partitions: local and upstream partition, the offsets, and each one's share of
/// the backlog.
fn partitions(ui: &mut egui::Ui, name: &str, s: &UplinkStatus, now_ms: i64) {
    ui.strong(format!("Partitions of {name}"));
    egui::Grid::new(format!("uplink-partitions-{name}"))
        .striped(true)
        .show(ui, |ui| {
            for h in PARTITION_COLUMNS {
                ui.strong(h);
            }
            ui.end_row();
            for p in &s.partitions {
                ui.label(format!("{}/{}", p.topic, p.partition));
                // Known once the upstream topic was seen.
                let remote = match p.remote_partition {
                    r if r >= 0 => r.to_string(),
                    _ => "?".into(),
                };
                ui.label(format!("{}/{remote}", p.remote_topic));
                ui.label(count_label(p.next_offset));
                ui.label(count_label(p.end_offset));
                ui.label(if p.backlog_records == 0 {
                    "caught up".into()
                } else {
                    backlog_label(p.backlog_records, p.backlog_bytes)
                });
                ui.label(
                    s.partition_oldest_label(p, now_ms)
                        .unwrap_or_else(|| "-".into()),
                );
                ui.end_row();
            }
        });
}

/// A label, in `colour` when given.
fn marked(ui: &mut egui::Ui, text: &str, colour: Option<egui::Color32>) -> egui::Response {
    match colour {
        Some(c) => ui.colored_label(c, text),
        None => ui.label(text),
    }
}

/// The last `chars` characters of `text`, after `…` when cut.
fn tail(text: &str, chars: usize) -> String {
    let count = text.chars().count();
    if count <= chars {
        return text.to_string();
    }
    let kept: String = text.chars().skip(count - chars + 1).collect();
    format!("…{}", kept.trim_start())
}

#[cfg(test)]
mod tests {
    #[test]
    fn given_a_long_error_when_cutting_should_keep_its_end() {
        assert_eq!(super::tail("short", 10), "short");
        assert_eq!(super::tail("0123456789", 10), "0123456789");
        assert_eq!(super::tail("cannot connect: refused", 8), "…refused");
        assert_eq!(super::tail("cannot connect: refused", 9), "…refused");
    }
}
