//! The profile form of the Connections screen: name and bootstrap servers, then TLS (CA file,
//! client certificate and key, server name override) and SASL (mechanism, user name, password
//! and "Remember password", see [`crate::profile`]) when ticked.

use runnel_client::SaslMechanism;

use crate::app::AdminApp;
use crate::profile::ProfileForm;

const MECHANISMS: [SaslMechanism; 3] = [
    SaslMechanism::Plain,
    SaslMechanism::ScramSha256,
    SaslMechanism::ScramSha512,
];

/// A labelled single-line field.
fn field(ui: &mut egui::Ui, label: &str, text: &mut String, width: f32, hint: &str) {
    let l = ui.label(label);
    ui.add(
        egui::TextEdit::singleline(text)
            .desired_width(width)
            .hint_text(hint),
    )
    .labelled_by(l.id);
}

pub fn show(app: &mut AdminApp, ui: &mut egui::Ui) {
    let form = &mut app.forms.new_profile;
    ui.horizontal(|ui| {
        field(ui, "Name", &mut form.name, 120.0, "edge-1");
        field(ui, "Bootstrap servers", &mut form.bootstrap, 220.0, "");
        ui.checkbox(&mut form.tls, "TLS");
        ui.checkbox(&mut form.sasl, "SASL");
    });
    if form.tls {
        tls_fields(ui, form);
    }
    if form.sasl {
        sasl_fields(ui, form);
    }
    let problem = form.problem();
    let mut save = false;
    ui.horizontal(|ui| {
        save = ui
            .add_enabled(problem.is_none(), egui::Button::new("Save profile"))
            .clicked();
        ui.label(format!("({})", form.to_profile().protocol()));
        if let Some(p) = problem.filter(|_| !form.name.is_empty()) {
            ui.colored_label(ui.visuals().warn_fg_color, p);
        }
    });
    if save {
        let p = form.to_profile();
        app.forms.connect_passwords.remove(&p.name);
        app.profiles.retain(|q| q.name != p.name);
        app.profiles.push(p);
        app.forms.new_profile = ProfileForm::default();
    }
}

fn tls_fields(ui: &mut egui::Ui, form: &mut ProfileForm) {
    ui.horizontal(|ui| {
        ui.label("TLS:");
        field(
            ui,
            "CA file",
            &mut form.ca_file,
            200.0,
            "empty: system trust store",
        );
        field(
            ui,
            "Client certificate",
            &mut form.cert_file,
            160.0,
            "for mutual TLS",
        );
        field(ui, "Client key", &mut form.key_file, 160.0, "");
        field(
            ui,
            "Server name",
            &mut form.server_name,
            120.0,
            "empty: from the address",
        );
    });
}

fn sasl_fields(ui: &mut egui::Ui, form: &mut ProfileForm) {
    ui.horizontal(|ui| {
        ui.label("SASL:");
        let l = ui.label("Mechanism");
        egui::ComboBox::from_id_salt("sasl-mechanism")
            .selected_text(form.mechanism.name())
            .show_ui(ui, |ui| {
                for m in MECHANISMS {
                    ui.selectable_value(&mut form.mechanism, m, m.name());
                }
            })
            .response
            .labelled_by(l.id);
        field(ui, "User", &mut form.username, 120.0, "");
        let l = ui.label("Password");
        ui.add(
            egui::TextEdit::singleline(&mut form.password)
                .password(true)
                .desired_width(140.0)
                .hint_text("empty: asked on connect"),
        )
        .labelled_by(l.id);
        ui.checkbox(&mut form.remember_password, "Remember password")
            .on_hover_text(
                "Saves the password in plain text in runnel-admin's settings file. \
                 Unticked, it is kept only until the app closes.",
            );
        if form.remember_password {
            ui.colored_label(
                ui.visuals().warn_fg_color,
                "stored unencrypted on this computer",
            );
        }
    });
}
