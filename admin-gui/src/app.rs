//! The eframe app: which clusters are open, which screen is shown, and the forms' contents.
//! It only draws and sends commands; all data comes from the worker's model, locked for the
//! length of one frame's drawing (the worker holds that lock only to store answers).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use crate::history::LagHistory;
use crate::panels;
use crate::profile::{Profile, ProfileForm};
use crate::worker::access::Secret;
use crate::worker::{Command, Repaint, Timing, Worker};

/// eframe storage keys.
const PROFILES_KEY: &str = "runnel-admin.profiles";
const HISTORY_KEY: &str = "runnel-admin.lag-history";

/// The screens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Screen {
    Connections,
    Brokers,
    Topics,
    Groups,
    Messages,
    Bridges,
    Uplinks,
    Access,
}

impl Screen {
    pub const ALL: [Screen; 8] = [
        Screen::Connections,
        Screen::Brokers,
        Screen::Topics,
        Screen::Groups,
        Screen::Messages,
        Screen::Bridges,
        Screen::Uplinks,
        Screen::Access,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Screen::Connections => "Connections",
            Screen::Brokers => "Brokers",
            Screen::Topics => "Topics",
            Screen::Groups => "Consumer groups",
            Screen::Messages => "Messages",
            Screen::Bridges => "Bridges",
            Screen::Uplinks => "Uplinks",
            Screen::Access => "Access",
        }
    }
}

/// The contents of the forms and selections, per screen.
#[derive(Debug, Default)]
pub struct Forms {
    pub new_profile: ProfileForm,
    /// Passwords typed next to saved profiles that do not remember theirs, by profile name.
    pub connect_passwords: BTreeMap<String, Secret>,
    pub topic_filter: String,
    pub new_topic: panels::topics::NewTopicForm,
    pub selected_topic: Option<String>,
    pub confirm_delete: Option<String>,
    pub config_edits: BTreeMap<String, String>,
    pub group_filter: String,
    pub selected_group: Option<String>,
    pub reset: panels::groups::ResetForm,
    pub browse: panels::messages::BrowseForm,
    pub produce: panels::messages::ProduceForm,
    /// Uplinks whose partitions are shown.
    pub expanded_uplinks: BTreeSet<String>,
    pub access: panels::access::AccessForms,
}

/// The application.
pub struct AdminApp {
    pub worker: Worker,
    pub profiles: Vec<Profile>,
    /// Open clusters: id → profile.
    pub open: BTreeMap<usize, Profile>,
    pub next_id: usize,
    pub selected: Option<usize>,
    pub screen: Screen,
    pub forms: Forms,
    /// Refresh interval and request timeout for clusters opened from now on.
    pub timing: Timing,
}

impl AdminApp {
    /// An app with these saved profiles and lag history; `repaint` wakes the UI.
    pub fn new(
        profiles: Vec<Profile>,
        history: LagHistory,
        timing: Timing,
        repaint: Repaint,
    ) -> std::io::Result<Self> {
        Ok(AdminApp {
            worker: Worker::start(repaint, history)?,
            profiles,
            open: BTreeMap::new(),
            next_id: 0,
            selected: None,
            screen: Screen::Connections,
            forms: Forms::default(),
            timing,
        })
    }

    /// The app as eframe creates it, with what the last session saved.
    pub fn from_eframe(cc: &eframe::CreationContext<'_>) -> std::io::Result<Self> {
        let (profiles, history) = match cc.storage {
            Some(s) => (
                eframe::get_value(s, PROFILES_KEY).unwrap_or_default(),
                eframe::get_value(s, HISTORY_KEY).unwrap_or_default(),
            ),
            None => (Vec::new(), LagHistory::default()),
        };
        let ctx = cc.egui_ctx.clone();
        Self::new(
            profiles,
            history,
            Timing::default(),
            std::sync::Arc::new(move || ctx.request_repaint()),
        )
    }

    /// Opens a cluster (a new view and its background task) and shows it; a cluster open
    /// with the same profile name is closed first (connecting again after fixing a profile).
    pub fn connect(&mut self, profile: Profile) -> usize {
        let same: Vec<usize> = (self.open.iter())
            .filter(|(_, p)| p.name == profile.name)
            .map(|(id, _)| *id)
            .collect();
        for id in same {
            self.disconnect(id);
        }
        let id = self.next_id;
        self.next_id += 1;
        self.open.insert(id, profile.clone());
        self.worker.send(Command::Connect {
            id,
            profile,
            timing: self.timing,
        });
        self.selected = Some(id);
        if self.screen == Screen::Connections {
            self.screen = Screen::Topics;
        }
        id
    }

    pub fn disconnect(&mut self, id: usize) {
        self.open.remove(&id);
        self.worker.send(Command::Disconnect { id });
        if self.selected == Some(id) {
            self.selected = self.open.keys().next().copied();
        }
    }

    /// Draws one frame.
    pub fn show(&mut self, ui: &mut egui::Ui) {
        let now = Instant::now();
        egui::Panel::top("clusters").show(ui, |ui| self.cluster_bar(ui, now));
        egui::Panel::left("screens")
            .resizable(false)
            .show(ui, |ui| {
                for screen in Screen::ALL {
                    ui.selectable_value(&mut self.screen, screen, screen.label());
                }
            });
        egui::Panel::bottom("results").show(ui, |ui| panels::results::show(self, ui));
        egui::CentralPanel::default().show(ui, |ui| match self.screen {
            Screen::Connections => panels::connections::show(self, ui, now),
            Screen::Brokers => panels::brokers::show(self, ui),
            Screen::Topics => panels::topics::show(self, ui),
            Screen::Groups => panels::groups::show(self, ui),
            Screen::Messages => panels::messages::show(self, ui),
            Screen::Bridges => panels::bridges::show(self, ui),
            Screen::Uplinks => panels::uplinks::show(self, ui),
            Screen::Access => panels::access::show(self, ui),
        });
    }

    fn cluster_bar(&mut self, ui: &mut egui::Ui, now: Instant) {
        ui.horizontal(|ui| {
            ui.heading("Runnel admin");
            ui.separator();
            let model = self.worker.model();
            for (id, profile) in &self.open {
                let freshness = model
                    .clusters
                    .get(id)
                    .map(|v| v.freshness.label(now))
                    .unwrap_or_default();
                let label = format!("{} · {freshness}", profile.name);
                if ui
                    .selectable_label(self.selected == Some(*id), label)
                    .clicked()
                {
                    self.selected = Some(*id);
                }
            }
        });
    }

    /// The id of the shown cluster, if any.
    pub fn current(&self) -> Option<usize> {
        self.selected.filter(|id| self.open.contains_key(id))
    }
}

impl eframe::App for AdminApp {
    fn ui(&mut self, ui: &mut egui::Ui, _frame: &mut eframe::Frame) {
        self.show(ui);
    }

    fn save(&mut self, storage: &mut dyn eframe::Storage) {
        // Passwords only where the user asked to remember them (see `crate::profile`).
        let profiles: Vec<Profile> = self.profiles.iter().map(Profile::persisted).collect();
        eframe::set_value(storage, PROFILES_KEY, &profiles);
        let history = self.worker.model().history.clone();
        eframe::set_value(storage, HISTORY_KEY, &history);
    }
}
