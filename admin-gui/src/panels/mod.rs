//! One file per screen. Panels read the worker's model, draw, and send commands; they never
//! touch the network. Long lists draw only their visible rows.

pub mod access;
pub mod bridges;
pub mod brokers;
pub mod connections;
pub mod groups;
pub mod messages;
pub mod profile_form;
pub mod results;
pub mod topics;
pub mod uplinks;

/// Shown when a screen needs a cluster and none is open.
pub fn no_cluster(ui: &mut egui::Ui) {
    ui.label("No cluster open: connect to one on the Connections screen.");
}
