//! `[authorization]`: who bypasses ACLs and what happens to resources without any ACL
//! (Kafka's `super.users` and `allow.everyone.if.no.acl.found`). The ACL bindings themselves
//! are not configuration: they are managed with CreateAcls/DeleteAcls and kept in the store.

use serde::Deserialize;

use super::listeners::{ListenerConfig, SecurityProtocol};

/// The `[authorization]` section.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AuthorizationConfig {
    /// Principals (`User:alice`, or `User:<certificate subject>` for mTLS clients) allowed
    /// everything regardless of ACLs (`super.users`).
    pub super_users: Vec<String>,
    /// Whether a resource no ACL names is open to everyone (`allow.everyone.if.no.acl.found`).
    /// Unset: true when every listener is PLAINTEXT (a zero-config broker stays open), false as
    /// soon as one listener uses SSL or SASL.
    pub allow_everyone_if_no_acl_found: Option<bool>,
}

impl AuthorizationConfig {
    /// `allow.everyone.if.no.acl.found` in effect for these listeners (none: the default
    /// PLAINTEXT listener).
    pub fn allow_everyone(&self, listeners: &[ListenerConfig]) -> bool {
        self.allow_everyone_if_no_acl_found.unwrap_or_else(|| {
            listeners
                .iter()
                .all(|l| l.protocol == SecurityProtocol::Plaintext)
        })
    }

    /// The authorizer's settings.
    pub fn settings(&self, listeners: &[ListenerConfig]) -> crate::acl::Settings {
        crate::acl::Settings {
            super_users: self.super_users.clone(),
            allow_everyone_if_no_acl_found: self.allow_everyone(listeners),
        }
    }

    /// Checks the principals; `Err` is (key, reason).
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        for p in &self.super_users {
            if !crate::acl::binding::valid_principal(p) {
                return Err((
                    "authorization.super_users",
                    format!("{p:?} is not a principal of the form Type:name (e.g. User:alice)"),
                ));
            }
            if p.ends_with(":*") {
                return Err((
                    "authorization.super_users",
                    format!(
                        "{p:?} would only match a principal literally named '*'; to open the \
                         broker use allow_everyone_if_no_acl_found or an ALLOW ACL for User:*"
                    ),
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listener(protocol: &str) -> ListenerConfig {
        toml::from_str(&format!(
            "name = \"L\"\nprotocol = \"{protocol}\"\nlisten = \"127.0.0.1:0\"\n"
        ))
        .expect("listener parses")
    }

    #[test]
    fn allow_everyone_defaults_to_open_only_for_plaintext() {
        let c = AuthorizationConfig::default();
        assert!(c.allow_everyone(&[]));
        assert!(c.allow_everyone(&[listener("PLAINTEXT")]));
        assert!(!c.allow_everyone(&[listener("PLAINTEXT"), listener("SSL")]));
        assert!(!c.allow_everyone(&[listener("SASL_PLAINTEXT")]));
        let set = AuthorizationConfig {
            allow_everyone_if_no_acl_found: Some(true),
            ..AuthorizationConfig::default()
        };
        assert!(set.allow_everyone(&[listener("SSL")]));
        let unset = AuthorizationConfig {
            allow_everyone_if_no_acl_found: Some(false),
            ..AuthorizationConfig::default()
        };
        assert!(!unset.allow_everyone(&[]));
    }

    #[test]
    fn super_users_must_be_principals() {
        let c = |p: &str| AuthorizationConfig {
            super_users: vec![p.into()],
            ..AuthorizationConfig::default()
        };
        assert!(c("User:admin").validate().is_ok());
        assert!(c("User:CN=admin,O=Runnel").validate().is_ok());
        assert!(c("admin").validate().is_err());
        assert!(c("User:*").validate().is_err());
    }
}
