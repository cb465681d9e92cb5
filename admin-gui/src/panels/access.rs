//! Access: the cluster's ACL bindings (filtered by principal and resource; create one, delete
//! one after confirming) and its SCRAM users (mechanisms and iterations; add one with the
//! password typed twice, change a password, delete one after confirming). Opening the screen
//! makes the cluster's refresh load both lists ([`crate::worker::access`]); a cluster that
//! refuses says so in plain words above the list, which keeps its last known rows.

use std::collections::BTreeSet;

use egui_extras::{Column, TableBuilder};
use runnel_client::security::scram::{MAX_ITERATIONS, MIN_ITERATIONS, ScramAlgorithm};
use runnel_client::{
    AclBinding, AclOperation, AclPatternType, AclPermission, AclResourceType,
    admin::acls::CLUSTER_RESOURCE_NAME, admin::users::DEFAULT_ITERATIONS,
};

use crate::app::AdminApp;
use crate::state::{AccessView, Listing};
use crate::worker::Command;
use crate::worker::access::{AccessAction, Secret, binding_label};

const ROW_HEIGHT: f32 = 20.0;

const RESOURCE_TYPES: [AclResourceType; 4] = [
    AclResourceType::Topic,
    AclResourceType::Group,
    AclResourceType::Cluster,
    AclResourceType::TransactionalId,
];
const PATTERN_TYPES: [AclPatternType; 2] = [AclPatternType::Literal, AclPatternType::Prefixed];
const OPERATIONS: [AclOperation; 12] = [
    AclOperation::All,
    AclOperation::Read,
    AclOperation::Write,
    AclOperation::Create,
    AclOperation::Delete,
    AclOperation::Alter,
    AclOperation::Describe,
    AclOperation::ClusterAction,
    AclOperation::DescribeConfigs,
    AclOperation::AlterConfigs,
    AclOperation::IdempotentWrite,
    AclOperation::DescribeTokens,
];

/// The Access screen's forms and confirmations.
#[derive(Debug, Default)]
pub struct AccessForms {
    /// Clusters whose refresh already loads ACLs and users.
    pub watched: BTreeSet<usize>,
    pub principal_filter: String,
    pub resource_filter: String,
    pub new_acl: AclForm,
    pub confirm_delete_acl: Option<AclBinding>,
    pub user: UserForm,
    /// A user and the mechanisms it has.
    pub confirm_delete_user: Option<(String, Vec<ScramAlgorithm>)>,
}

/// The create-binding form.
#[derive(Debug, Clone)]
pub struct AclForm {
    pub resource_type: AclResourceType,
    pub pattern_type: AclPatternType,
    /// Ignored for CLUSTER (always `kafka-cluster`).
    pub name: String,
    /// `User:alice`, `User:*`.
    pub principal: String,
    /// An IP address, or `*`.
    pub host: String,
    pub operation: AclOperation,
    pub permission: AclPermission,
}

impl Default for AclForm {
    fn default() -> Self {
        AclForm {
            resource_type: AclResourceType::Topic,
            pattern_type: AclPatternType::Literal,
            name: String::new(),
            principal: "User:".into(),
            host: "*".into(),
            operation: AclOperation::Read,
            permission: AclPermission::Allow,
        }
    }
}

impl AclForm {
    /// The binding, or why the form is not complete.
    pub fn binding(&self) -> Result<AclBinding, &'static str> {
        let name = match self.resource_type {
            AclResourceType::Cluster => CLUSTER_RESOURCE_NAME.to_string(),
            _ => self.name.trim().to_string(),
        };
        if name.is_empty() {
            return Err("the resource needs a name (or * for all)");
        }
        let principal = self.principal.trim();
        match principal.split_once(':') {
            Some((kind, who)) if !kind.is_empty() && !who.is_empty() => {}
            _ => return Err("the principal is TYPE:NAME, e.g. User:alice or User:*"),
        }
        if self.host.trim().is_empty() {
            return Err("the host is an IP address, or * for any");
        }
        Ok(AclBinding {
            resource_type: self.resource_type,
            resource_name: name,
            pattern_type: self.pattern_type,
            principal: principal.to_string(),
            host: self.host.trim().to_string(),
            operation: self.operation,
            permission: self.permission,
        })
    }
}

/// The add-user / change-password form.
#[derive(Debug, Clone)]
pub struct UserForm {
    pub name: String,
    pub password: Secret,
    pub repeat: Secret,
    pub iterations: u32,
    pub sha256: bool,
    pub sha512: bool,
}

impl Default for UserForm {
    fn default() -> Self {
        UserForm {
            name: String::new(),
            password: Secret(String::new()),
            repeat: Secret(String::new()),
            iterations: DEFAULT_ITERATIONS,
            sha256: true,
            sha512: true,
        }
    }
}

impl UserForm {
    pub fn mechanisms(&self) -> Vec<ScramAlgorithm> {
        [
            (self.sha256, ScramAlgorithm::Sha256),
            (self.sha512, ScramAlgorithm::Sha512),
        ]
        .into_iter()
        .filter_map(|(on, m)| on.then_some(m))
        .collect()
    }

    /// Why the user cannot be saved yet; `None` when it can.
    pub fn problem(&self) -> Option<&'static str> {
        if self.name.trim().is_empty() {
            return Some("the user needs a name");
        }
        if self.password.0.is_empty() {
            return Some("type the password twice");
        }
        if self.password != self.repeat {
            return Some("the two passwords differ");
        }
        if self.mechanisms().is_empty() {
            return Some("pick at least one mechanism");
        }
        None
    }
}

pub fn show(app: &mut AdminApp, ui: &mut egui::Ui) {
    ui.heading("Access");
    let Some(id) = app.current() else {
        return super::no_cluster(ui);
    };
    if app.forms.access.watched.insert(id) {
        app.worker.send(Command::WatchAccess { id });
    }
    let access = {
        let model = app.worker.model();
        match model.clusters.get(&id) {
            Some(view) => view.access.clone(),
            None => return,
        }
    };
    let height = (ui.available_height() * 0.3).max(100.0);
    ui.strong("ACL bindings");
    acl_filters(ui, &mut app.forms.access);
    acl_table(app, ui, &access, height);
    if let Some(action) = confirm_acl(ui, &mut app.forms.access) {
        app.worker.send(Command::Access { id, action });
    }
    if let Some(action) = acl_form(ui, &mut app.forms.access.new_acl) {
        app.worker.send(Command::Access { id, action });
    }
    ui.separator();
    ui.strong("SCRAM users");
    users_table(app, ui, &access, height);
    if let Some(action) = confirm_user(ui, &mut app.forms.access) {
        app.worker.send(Command::Access { id, action });
    }
    if let Some(action) = user_form(ui, &mut app.forms.access.user) {
        app.worker.send(Command::Access { id, action });
    }
}

/// `loading…`, or why the cluster refused, above a list.
fn listing_state<T>(ui: &mut egui::Ui, listing: &Listing<T>, noun: &str) -> bool {
    if let Some(e) = &listing.error {
        ui.add(egui::Label::new(egui::RichText::new(e).color(ui.visuals().error_fg_color)).wrap());
    }
    match &listing.items {
        None if listing.error.is_none() => {
            ui.label(format!("loading {noun}…"));
            false
        }
        None => false,
        Some(_) => true,
    }
}

fn acl_filters(ui: &mut egui::Ui, forms: &mut AccessForms) {
    ui.horizontal(|ui| {
        let l = ui.label("Principal filter");
        ui.add(
            egui::TextEdit::singleline(&mut forms.principal_filter)
                .desired_width(160.0)
                .hint_text("contains…"),
        )
        .labelled_by(l.id);
        let l = ui.label("Resource filter");
        ui.add(
            egui::TextEdit::singleline(&mut forms.resource_filter)
                .desired_width(160.0)
                .hint_text("type or name contains…"),
        )
        .labelled_by(l.id);
    });
}

fn acl_table(app: &mut AdminApp, ui: &mut egui::Ui, access: &AccessView, height: f32) {
    if !listing_state(ui, &access.acls, "ACLs") {
        return;
    }
    let forms = &mut app.forms.access;
    let principal = forms.principal_filter.to_lowercase();
    let resource = forms.resource_filter.to_lowercase();
    let all = access.acls.items.as_deref().unwrap_or_default();
    let rows: Vec<&AclBinding> = all
        .iter()
        .filter(|b| principal.is_empty() || b.principal.to_lowercase().contains(&principal))
        .filter(|b| {
            resource.is_empty()
                || b.resource_name.to_lowercase().contains(&resource)
                || b.resource_type.name().to_lowercase().contains(&resource)
        })
        .collect();
    ui.label(format!("{} of {} bindings", rows.len(), all.len()));
    let mut delete = None;
    ui.push_id("acl-table", |ui| {
        TableBuilder::new(ui)
            .id_salt("acls")
            .striped(true)
            .max_scroll_height(height)
            .column(Column::auto().at_least(140.0))
            .columns(Column::auto().at_least(70.0), 6)
            .column(Column::remainder())
            .header(ROW_HEIGHT, |mut h| {
                for title in [
                    "Principal",
                    "Permission",
                    "Operation",
                    "Resource",
                    "Name",
                    "Pattern",
                    "Host",
                    "",
                ] {
                    h.col(|ui| {
                        ui.strong(title);
                    });
                }
            })
            .body(|body| {
                body.rows(ROW_HEIGHT, rows.len(), |mut row| {
                    let b = rows[row.index()];
                    for text in [
                        b.principal.clone(),
                        b.permission.name(),
                        b.operation.name(),
                        b.resource_type.name(),
                        b.resource_name.clone(),
                        b.pattern_type.name(),
                        b.host.clone(),
                    ] {
                        row.col(|ui| {
                            ui.label(text);
                        });
                    }
                    row.col(|ui| {
                        if ui.button("Delete ACL").clicked() {
                            delete = Some(b.clone());
                        }
                    });
                });
            });
    });
    if delete.is_some() {
        forms.confirm_delete_acl = delete;
    }
}

fn confirm_acl(ui: &mut egui::Ui, forms: &mut AccessForms) -> Option<AccessAction> {
    let binding = forms.confirm_delete_acl.clone()?;
    let mut action = None;
    ui.horizontal(|ui| {
        ui.colored_label(
            ui.visuals().warn_fg_color,
            format!("Delete the ACL {}?", binding_label(&binding)),
        );
        if ui.button("Yes, delete the ACL").clicked() {
            action = Some(AccessAction::DeleteAcl(binding.clone()));
            forms.confirm_delete_acl = None;
        }
        if ui.button("Keep it").clicked() {
            forms.confirm_delete_acl = None;
        }
    });
    action
}

fn combo<T: Copy + PartialEq>(
    ui: &mut egui::Ui,
    label: &str,
    value: &mut T,
    choices: &[T],
    name: impl Fn(T) -> String,
) {
    let l = ui.label(label);
    egui::ComboBox::from_id_salt(label)
        .selected_text(name(*value))
        .show_ui(ui, |ui| {
            for c in choices {
                ui.selectable_value(value, *c, name(*c));
            }
        })
        .response
        .labelled_by(l.id);
}

fn acl_form(ui: &mut egui::Ui, form: &mut AclForm) -> Option<AccessAction> {
    let mut create = None;
    ui.collapsing("Create ACL binding", |ui| {
        ui.horizontal(|ui| {
            combo(
                ui,
                "Resource type",
                &mut form.resource_type,
                &RESOURCE_TYPES,
                |t| t.name(),
            );
            combo(ui, "Pattern", &mut form.pattern_type, &PATTERN_TYPES, |t| {
                t.name()
            });
            if form.resource_type != AclResourceType::Cluster {
                let l = ui.label("Resource name");
                ui.add(
                    egui::TextEdit::singleline(&mut form.name)
                        .desired_width(140.0)
                        .hint_text("orders, or * for all"),
                )
                .labelled_by(l.id);
            }
        });
        ui.horizontal(|ui| {
            let l = ui.label("Principal");
            ui.add(egui::TextEdit::singleline(&mut form.principal).desired_width(140.0))
                .labelled_by(l.id);
            let l = ui.label("Host");
            ui.add(egui::TextEdit::singleline(&mut form.host).desired_width(100.0))
                .labelled_by(l.id);
            combo(ui, "Operation", &mut form.operation, &OPERATIONS, |o| {
                o.name()
            });
            ui.radio_value(&mut form.permission, AclPermission::Allow, "Allow");
            ui.radio_value(&mut form.permission, AclPermission::Deny, "Deny");
        });
        let binding = form.binding();
        ui.horizontal(|ui| {
            if ui
                .add_enabled(binding.is_ok(), egui::Button::new("Create ACL"))
                .clicked()
                && let Ok(b) = &binding
            {
                create = Some(AccessAction::CreateAcl(b.clone()));
            }
            if let Err(why) = &binding {
                ui.label(*why);
            }
        });
    });
    create
}

fn users_table(app: &mut AdminApp, ui: &mut egui::Ui, access: &AccessView, height: f32) {
    if !listing_state(ui, &access.users, "users") {
        return;
    }
    let users = access.users.items.as_deref().unwrap_or_default();
    ui.label(format!("{} users", users.len()));
    let forms = &mut app.forms.access;
    let (mut change, mut delete) = (None, None);
    ui.push_id("user-table", |ui| {
        TableBuilder::new(ui)
            .id_salt("users")
            .striped(true)
            .max_scroll_height(height)
            .column(Column::auto().at_least(140.0))
            .column(Column::auto().at_least(320.0))
            .columns(Column::auto(), 2)
            .header(ROW_HEIGHT, |mut h| {
                for title in ["User", "Credentials", "", ""] {
                    h.col(|ui| {
                        ui.strong(title);
                    });
                }
            })
            .body(|body| {
                body.rows(ROW_HEIGHT, users.len(), |mut row| {
                    let u = &users[row.index()];
                    row.col(|ui| {
                        ui.label(&u.name);
                    });
                    row.col(|ui| {
                        let labels: Vec<String> = u.credentials.iter().map(|c| c.label()).collect();
                        ui.label(labels.join(", "));
                    });
                    row.col(|ui| {
                        if ui
                            .button(format!("Change password of {}", u.name))
                            .clicked()
                        {
                            change = Some(u);
                        }
                    });
                    row.col(|ui| {
                        if ui.button(format!("Delete user {}", u.name)).clicked() {
                            delete = Some(u);
                        }
                    });
                });
            });
    });
    if let Some(u) = change {
        let mechanisms: Vec<_> = u.credentials.iter().filter_map(|c| c.mechanism).collect();
        forms.user = UserForm {
            name: u.name.clone(),
            sha256: mechanisms.contains(&ScramAlgorithm::Sha256),
            sha512: mechanisms.contains(&ScramAlgorithm::Sha512),
            ..UserForm::default()
        };
    }
    if let Some(u) = delete {
        let mechanisms = u.credentials.iter().filter_map(|c| c.mechanism).collect();
        forms.confirm_delete_user = Some((u.name.clone(), mechanisms));
    }
}

fn confirm_user(ui: &mut egui::Ui, forms: &mut AccessForms) -> Option<AccessAction> {
    let (name, mechanisms) = forms.confirm_delete_user.clone()?;
    let mut action = None;
    ui.horizontal(|ui| {
        ui.colored_label(
            ui.visuals().warn_fg_color,
            format!("Delete user {name} and all its credentials?"),
        );
        if ui.button("Yes, delete the user").clicked() {
            action = Some(AccessAction::DeleteUser {
                name: name.clone(),
                mechanisms: mechanisms.clone(),
            });
            forms.confirm_delete_user = None;
        }
        if ui.button("Keep the user").clicked() {
            forms.confirm_delete_user = None;
        }
    });
    action
}

fn user_form(ui: &mut egui::Ui, form: &mut UserForm) -> Option<AccessAction> {
    let mut save = None;
    ui.label(
        "Add a user, or set a new password (the password is salted and hashed here, never sent):",
    );
    ui.horizontal(|ui| {
        let l = ui.label("User name");
        ui.add(egui::TextEdit::singleline(&mut form.name).desired_width(120.0))
            .labelled_by(l.id);
        let l = ui.label("New password");
        ui.add(
            egui::TextEdit::singleline(&mut form.password.0)
                .password(true)
                .desired_width(120.0),
        )
        .labelled_by(l.id);
        let l = ui.label("Repeat password");
        ui.add(
            egui::TextEdit::singleline(&mut form.repeat.0)
                .password(true)
                .desired_width(120.0),
        )
        .labelled_by(l.id);
    });
    ui.horizontal(|ui| {
        let l = ui.label("Iterations");
        ui.add(egui::DragValue::new(&mut form.iterations).range(MIN_ITERATIONS..=MAX_ITERATIONS))
            .labelled_by(l.id);
        ui.checkbox(&mut form.sha256, "SCRAM-SHA-256");
        ui.checkbox(&mut form.sha512, "SCRAM-SHA-512");
        let problem = form.problem();
        if ui
            .add_enabled(problem.is_none(), egui::Button::new("Save user"))
            .clicked()
        {
            save = Some(AccessAction::UpsertUser {
                name: form.name.trim().to_string(),
                password: form.password.clone(),
                mechanisms: form.mechanisms(),
                iterations: form.iterations,
            });
            *form = UserForm::default();
        }
        if let Some(p) = problem.filter(|_| !form.name.is_empty()) {
            ui.label(p);
        }
    });
    save
}
