//! The outcomes of the user's actions on the shown cluster, newest first, and the cluster's
//! last refresh error, in plain words.

use crate::app::AdminApp;
use crate::worker::Command;

pub fn show(app: &mut AdminApp, ui: &mut egui::Ui) {
    let Some(id) = app.current() else {
        ui.label("Not connected.");
        return;
    };
    let model = app.worker.model();
    let Some(view) = model.clusters.get(&id) else {
        return;
    };
    let mut cancel = false;
    ui.horizontal(|ui| {
        if let Some(e) = &view.last_error {
            ui.colored_label(ui.visuals().error_fg_color, format!("Refresh failed: {e}"));
        } else {
            ui.label("Refresh OK");
        }
        if ui.button("Cancel requests").clicked() {
            cancel = true;
        }
    });
    for r in view.results.iter().take(3) {
        let text = format!("{}: {}", r.action, r.message);
        if r.ok {
            ui.label(text);
        } else {
            ui.colored_label(ui.visuals().error_fg_color, text);
        }
    }
    drop(model);
    if cancel {
        app.worker.send(Command::Cancel { id });
    }
}
