//! Saved connection profiles: a name, the bootstrap servers, and optionally TLS (CA file,
//! client certificate and key for mutual TLS, a server name override) and SASL (mechanism,
//! user name, password). Profiles are persisted with eframe's storage.
//!
//! Passwords: eframe's storage is a plain RON file in the user's config directory, readable
//! by anything running as the user and copied along with backups. So a SASL password is not
//! saved by default: the app keeps it in memory for the session and asks for it, next to the
//! profile, when a saved profile without one is connected. A user who prefers convenience
//! ticks "Remember password", which the form labels with a warning that the password is
//! stored in plain text; only then does [`Profile::persisted`] keep it. The password is never
//! shown in `Debug` output, errors or the profile list.

use std::fmt;
use std::path::PathBuf;

use runnel_client::{SaslMechanism, SaslSettings, SecurityConfig, TlsSettings};
use serde::{Deserialize, Serialize};

/// A saved connection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Profile {
    pub name: String,
    /// `host:port[,host:port…]`.
    pub bootstrap: String,
    /// TLS to the brokers (SSL, or SASL_SSL with `sasl`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsSettings>,
    /// SASL authentication (SASL_PLAINTEXT, or SASL_SSL with `tls`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sasl: Option<SaslProfile>,
}

/// A profile's SASL settings. `Debug` never shows the password.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SaslProfile {
    pub mechanism: SaslMechanism,
    pub username: String,
    /// Empty when not known: asked for on connect. Saved only with `remember_password`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub password: String,
    /// Whether the password is saved, in plain text, with the profile.
    #[serde(default)]
    pub remember_password: bool,
}

impl fmt::Debug for SaslProfile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SaslProfile")
            .field("mechanism", &self.mechanism)
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .field("remember_password", &self.remember_password)
            .finish()
    }
}

impl Default for Profile {
    fn default() -> Self {
        Profile::new("", "127.0.0.1:9092")
    }
}

impl Profile {
    /// A PLAINTEXT profile.
    pub fn new(name: impl Into<String>, bootstrap: impl Into<String>) -> Self {
        Profile {
            name: name.into(),
            bootstrap: bootstrap.into(),
            tls: None,
            sasl: None,
        }
    }

    /// Kafka's `security.protocol` of this profile.
    pub fn protocol(&self) -> &'static str {
        self.security().protocol()
    }

    /// The client's security settings.
    pub fn security(&self) -> SecurityConfig {
        SecurityConfig {
            tls: self.tls.clone(),
            sasl: self.sasl.as_ref().map(|s| SaslSettings {
                mechanism: s.mechanism,
                username: s.username.clone(),
                password: s.password.clone(),
            }),
        }
    }

    /// Whether connecting needs a password that is not known yet.
    pub fn needs_password(&self) -> bool {
        self.sasl.as_ref().is_some_and(|s| s.password.is_empty())
    }

    /// The profile as it is written to eframe's storage: without the password unless the
    /// user asked to remember it.
    pub fn persisted(&self) -> Profile {
        let mut p = self.clone();
        if let Some(s) = p.sasl.as_mut().filter(|s| !s.remember_password) {
            s.password.clear();
        }
        p
    }

    /// `SASL_SSL · SCRAM-SHA-512 as alice`, `SSL`, `PLAINTEXT`.
    pub fn security_label(&self) -> String {
        match &self.sasl {
            Some(s) => format!("{} · {} as {}", self.protocol(), s.mechanism, s.username),
            None => self.protocol().to_string(),
        }
    }
}

/// The profile form: text fields for everything, turned into a [`Profile`] when saved.
#[derive(Clone, PartialEq, Eq)]
pub struct ProfileForm {
    pub name: String,
    pub bootstrap: String,
    pub tls: bool,
    /// Empty: the system's trust store.
    pub ca_file: String,
    pub cert_file: String,
    pub key_file: String,
    pub server_name: String,
    pub sasl: bool,
    pub mechanism: SaslMechanism,
    pub username: String,
    pub password: String,
    pub remember_password: bool,
}

impl fmt::Debug for ProfileForm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProfileForm")
            .field("name", &self.name)
            .field("bootstrap", &self.bootstrap)
            .field("sasl", &self.sasl)
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

impl Default for ProfileForm {
    fn default() -> Self {
        ProfileForm::from_profile(&Profile::default())
    }
}

fn path_text(p: &Option<PathBuf>) -> String {
    p.as_ref()
        .map(|p| p.display().to_string())
        .unwrap_or_default()
}

fn non_empty(s: &str) -> Option<String> {
    let s = s.trim();
    (!s.is_empty()).then(|| s.to_string())
}

impl ProfileForm {
    /// The form filled with `profile` (to edit it).
    pub fn from_profile(profile: &Profile) -> Self {
        let tls = profile.tls.clone().unwrap_or_default();
        let sasl = profile.sasl.clone();
        ProfileForm {
            name: profile.name.clone(),
            bootstrap: profile.bootstrap.clone(),
            tls: profile.tls.is_some(),
            ca_file: path_text(&tls.ca_file),
            cert_file: path_text(&tls.cert_file),
            key_file: path_text(&tls.key_file),
            server_name: tls.server_name.unwrap_or_default(),
            sasl: sasl.is_some(),
            mechanism: sasl
                .as_ref()
                .map_or(SaslMechanism::ScramSha512, |s| s.mechanism),
            username: sasl
                .as_ref()
                .map(|s| s.username.clone())
                .unwrap_or_default(),
            password: sasl
                .as_ref()
                .map(|s| s.password.clone())
                .unwrap_or_default(),
            remember_password: sasl.is_some_and(|s| s.remember_password),
        }
    }

    /// Why the form cannot be saved yet, in plain words; `None` when it can.
    pub fn problem(&self) -> Option<&'static str> {
        if self.name.trim().is_empty() {
            return Some("the profile needs a name");
        }
        if self.bootstrap.trim().is_empty() {
            return Some("the profile needs bootstrap servers");
        }
        if self.tls && (self.cert_file.trim().is_empty() != self.key_file.trim().is_empty()) {
            return Some("a client certificate needs its key file, and a key its certificate");
        }
        if self.sasl && self.username.trim().is_empty() {
            return Some("SASL needs a user name");
        }
        None
    }

    /// The profile the form describes.
    pub fn to_profile(&self) -> Profile {
        Profile {
            name: self.name.trim().to_string(),
            bootstrap: self.bootstrap.trim().to_string(),
            tls: self.tls.then(|| TlsSettings {
                ca_file: non_empty(&self.ca_file).map(PathBuf::from),
                cert_file: non_empty(&self.cert_file).map(PathBuf::from),
                key_file: non_empty(&self.key_file).map(PathBuf::from),
                server_name: non_empty(&self.server_name),
            }),
            sasl: self.sasl.then(|| SaslProfile {
                mechanism: self.mechanism,
                username: self.username.trim().to_string(),
                password: self.password.clone(),
                remember_password: self.remember_password,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secured(remember: bool) -> Profile {
        let mut form = ProfileForm {
            name: "edge".into(),
            bootstrap: "localhost:9093".into(),
            tls: true,
            ca_file: " /etc/ca.pem ".into(),
            sasl: true,
            username: "alice".into(),
            password: "hunter2-secret".into(),
            remember_password: remember,
            ..ProfileForm::default()
        };
        assert_eq!(form.problem(), None);
        form.cert_file = "/etc/client.pem".into();
        assert!(form.problem().is_some(), "a certificate without its key");
        form.cert_file.clear();
        form.to_profile()
    }

    #[test]
    fn given_a_sasl_ssl_form_when_saved_should_build_the_client_settings() {
        let p = secured(false);
        assert_eq!(p.protocol(), "SASL_SSL");
        assert_eq!(p.security_label(), "SASL_SSL · SCRAM-SHA-512 as alice");
        let security = p.security();
        let tls = security.tls.expect("tls");
        assert_eq!(tls.ca_file, Some(PathBuf::from("/etc/ca.pem")));
        assert_eq!(tls.cert_file, None);
        assert_eq!(security.sasl.expect("sasl").password, "hunter2-secret");
        assert_eq!(ProfileForm::from_profile(&p).to_profile(), p);
    }

    #[test]
    fn given_a_password_when_persisting_should_keep_it_only_if_remembered() {
        let forgotten = serde_json::to_string(&secured(false).persisted()).expect("json");
        assert!(!forgotten.contains("hunter2"), "{forgotten}");
        let back: Profile = serde_json::from_str(&forgotten).expect("parses");
        assert!(back.needs_password());
        let remembered = serde_json::to_string(&secured(true).persisted()).expect("json");
        assert!(remembered.contains("hunter2"), "{remembered}");
        let shown = format!(
            "{:?} {:?}",
            secured(true),
            ProfileForm::from_profile(&secured(true))
        );
        assert!(!shown.contains("hunter2"), "{shown}");
    }

    #[test]
    fn given_a_profile_saved_before_security_existed_when_loaded_should_be_plaintext() {
        let p: Profile =
            serde_json::from_str(r#"{"name":"old","bootstrap":"10.0.0.1:9092"}"#).expect("old");
        assert_eq!(p, Profile::new("old", "10.0.0.1:9092"));
        assert_eq!(p.protocol(), "PLAINTEXT");
    }
}
