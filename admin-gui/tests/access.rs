//! TLS, SASL and the Access screen against a real `runnel` with a SASL_SSL listener (test CA
//! from `runnel_tests::harness::pki`, `alice` added with `runnel user add` and the only super
//! user), driven with `egui_kittest` and checked with a real client (runnel-client over
//! SASL_SSL):
//! - a profile with the CA file and SCRAM-SHA-512 credentials sees the topics; a wrong password
//!   and a missing CA file are shown next to the profile, never the password;
//! - as alice, the Access screen adds a SCRAM user who can then authenticate, creates an ACL
//!   binding that lets that user produce, and deletes it after confirmation; connected as the
//!   restricted user, the screen says in plain words that the cluster refuses, while the
//!   cluster stays online.

mod support;

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use bytes::Bytes;
use egui_kittest::Harness;
use egui_kittest::kittest::Queryable;
use runnel_admin::app::{AdminApp, Screen};
use runnel_admin::panels::access::{AclForm, UserForm};
use runnel_admin::profile::ProfileForm;
use runnel_admin::worker::access::Secret;
use runnel_client::{
    AclFilter, AclOperation, AclPermission, AclResourceType, Client, ClientConfig, NewTopic,
    OutRecord, PartitionBatch, Producer, ProducerConfig, SaslMechanism, SaslSettings,
    SecurityConfig, TlsSettings,
};
use runnel_tests::harness::binary::add_scram_user;
use runnel_tests::harness::mosquitto::free_port;
use runnel_tests::harness::pki::TestPki;
use runnel_tests::{Broker, BrokerOptions};
use support::{TEST_TIMING, TEST_WINDOW, has_label};

const ANSWER: Duration = Duration::from_secs(20);
const ALICE: &str = "alice";
const ALICE_PASSWORD: &str = "alice-Pencil-7781";
const WRONG_PASSWORD: &str = "wrong-Crayon-5512";
const BOB: &str = "bob";
const BOB_PASSWORD: &str = "bob-Marker-3317";
const TOPIC: &str = "secured-topic";

/// A broker with a PLAINTEXT and a SASL_SSL listener; `alice` is its only super user.
struct Secured {
    _broker: Broker,
    pki: TestPki,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Secured {
    fn start() -> Result<Secured> {
        let dir = tempfile::tempdir()?;
        let pki = TestPki::generate(&dir.path().join("pki"))?;
        let data = dir.path().join("data");
        add_scram_user(&data, ALICE, ALICE_PASSWORD, &[])?;
        let (plain_port, port) = (free_port()?, free_port()?);
        let config = format!(
            r#"
[authorization]
super_users = ["User:{ALICE}"]

[[listener]]
name = "INTERNAL"
protocol = "PLAINTEXT"
listen = "127.0.0.1:{plain_port}"

[[listener]]
name = "SECURE"
protocol = "SASL_SSL"
listen = "127.0.0.1:{port}"
advertised = "localhost:{port}"
[listener.tls]
cert_file = "{}"
key_file = "{}"
"#,
            pki.server_cert.display(),
            pki.server_key.display()
        );
        let path = dir.path().join("runnel.toml");
        std::fs::write(&path, config)?;
        let broker = Broker::start(
            BrokerOptions::new()
                .data_dir(&data)
                .arg("--config")
                .arg(&path),
        )?;
        Ok(Secured {
            _broker: broker,
            pki,
            port,
            _dir: dir,
        })
    }

    fn bootstrap(&self) -> String {
        format!("localhost:{}", self.port)
    }

    /// The profile form for `user` with SCRAM-SHA-512 and the test CA.
    fn form(&self, name: &str, user: &str, password: &str) -> ProfileForm {
        ProfileForm {
            name: name.into(),
            bootstrap: self.bootstrap(),
            tls: true,
            ca_file: self.pki.ca.display().to_string(),
            sasl: true,
            mechanism: SaslMechanism::ScramSha512,
            username: user.into(),
            password: password.into(),
            ..ProfileForm::default()
        }
    }

    /// A runnel-client for `user` over SASL_SSL.
    fn client(&self, mechanism: SaslMechanism, user: &str, password: &str) -> Result<Client> {
        let mut config = ClientConfig::new(self.bootstrap(), "access-test");
        config.connect_timeout = Duration::from_secs(5);
        config.request_timeout = Duration::from_secs(10);
        config.security = SecurityConfig {
            tls: Some(TlsSettings {
                ca_file: Some(self.pki.ca.clone()),
                ..TlsSettings::default()
            }),
            sasl: Some(SaslSettings {
                mechanism,
                username: user.into(),
                password: password.into(),
            }),
        };
        Ok(Client::try_new(config)?)
    }

    fn alice(&self) -> Result<Client> {
        self.client(SaslMechanism::ScramSha512, ALICE, ALICE_PASSWORD)
    }
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}

async fn create_topic(client: &Client, name: &str) -> Result<()> {
    client
        .create_topic(&NewTopic {
            name: name.into(),
            partitions: 1,
            replication_factor: -1,
            configs: Vec::new(),
        })
        .await?;
    Ok(())
}

/// Produces one record to partition 0 of `topic` (not idempotently: WRITE on the topic is
/// all it needs).
async fn produce(client: &Client, topic: &str) -> Result<()> {
    let config = ProducerConfig {
        idempotent: false,
        ..ProducerConfig::default()
    };
    let batch = PartitionBatch {
        topic: topic.into(),
        partition: 0,
        records: vec![OutRecord {
            key: None,
            value: Some(Bytes::from_static(b"from bob")),
            headers: Vec::new(),
            timestamp_ms: 1_700_000_000_000,
        }],
    };
    for r in Producer::new(client.clone(), config)
        .send(vec![batch])
        .await
    {
        r?;
    }
    Ok(())
}

fn harness() -> Result<Harness<'static, AdminApp>> {
    Ok(support::harness(support::app(TEST_TIMING)?, TEST_WINDOW))
}

fn wait_for(
    harness: &mut Harness<'_, AdminApp>,
    what: &str,
    probe: impl FnMut(&Harness<'_, AdminApp>) -> bool,
) -> Result<()> {
    support::wait_for(harness, what, ANSWER, probe)
}

/// Clicks the widget labelled `label` once the layout has settled (a grid or table sizes its
/// columns from the frame before), and draws the next frame.
fn click(h: &mut Harness<'_, AdminApp>, label: &str) {
    h.step();
    h.get_by_label(label).click();
    h.step();
}

/// No widget shows any of these passwords.
fn shows_no_password(h: &Harness<'_, AdminApp>) -> bool {
    [ALICE_PASSWORD, WRONG_PASSWORD, BOB_PASSWORD]
        .iter()
        .all(|p| !has_label(h, p))
}

#[test]
fn given_a_sasl_ssl_profile_when_connecting_should_see_topics_and_show_a_wrong_password_next_to_it()
-> Result<()> {
    let s = Secured::start()?;
    runtime()?.block_on(create_topic(&s.alice()?, TOPIC))?;
    let mut h = harness()?;

    support::connect_with(&mut h, s.form("secure", ALICE, WRONG_PASSWORD));
    h.state_mut().screen = Screen::Connections;
    wait_for(
        &mut h,
        "the authentication error next to the profile",
        |h| has_label(h, "authentication failed for user alice"),
    )?;
    ensure!(shows_no_password(&h), "a password is shown");

    // Fixed in the profile (Edit, new password, Save), then connected again.
    click(&mut h, "Edit secure");
    ensure!(
        h.state().forms.new_profile.username == ALICE,
        "Edit loads the profile"
    );
    h.state_mut().forms.new_profile.password = ALICE_PASSWORD.into();
    h.step();
    click(&mut h, "Save profile");
    click(&mut h, "Connect secure");
    wait_for(&mut h, "the cluster to be online", |h| {
        has_label(h, "secure · online")
    })?;
    h.state_mut().screen = Screen::Topics;
    wait_for(&mut h, "the topic in the list", |h| has_label(h, TOPIC))?;
    ensure!(shows_no_password(&h), "a password is shown");

    // A CA file that does not exist is named next to its profile.
    let mut broken = s.form("broken", ALICE, ALICE_PASSWORD);
    broken.ca_file = "/nonexistent/runnel-ca.pem".into();
    support::connect_with(&mut h, broken);
    h.state_mut().screen = Screen::Connections;
    wait_for(&mut h, "the CA file error next to the profile", |h| {
        has_label(h, "/nonexistent/runnel-ca.pem")
    })?;

    // The password is not saved unless remembered.
    let saved: Vec<_> = h.state().profiles.iter().map(|p| p.persisted()).collect();
    ensure!(
        saved.iter().all(|p| p.needs_password()),
        "a password would be saved: {saved:?}"
    );
    Ok(())
}

#[test]
fn given_a_super_user_on_the_access_screen_should_add_a_user_and_create_and_delete_an_acl()
-> Result<()> {
    let s = Secured::start()?;
    let rt = runtime()?;
    let alice = s.alice()?;
    rt.block_on(create_topic(&alice, TOPIC))?;
    let mut h = harness()?;
    support::connect_with(&mut h, s.form("admin", ALICE, ALICE_PASSWORD));
    wait_for(&mut h, "the cluster to be online", |h| {
        has_label(h, "admin · online")
    })?;
    let admin = h.state().current().context("a cluster is shown")?;
    h.state_mut().screen = Screen::Access;
    wait_for(&mut h, "the lists", |h| {
        has_label(h, "0 of 0 bindings") && has_label(h, "1 users")
    })?;

    // A user, added through the form (password typed twice, both mechanisms by default).
    h.state_mut().forms.access.user = UserForm {
        name: BOB.into(),
        password: Secret(BOB_PASSWORD.into()),
        repeat: Secret(BOB_PASSWORD.into()),
        ..UserForm::default()
    };
    h.step();
    click(&mut h, "Save user");
    wait_for(&mut h, "bob in the list", |h| {
        has_label(h, "Delete user bob")
    })?;
    ensure!(
        has_label(
            &h,
            "SCRAM-SHA-256 (8192 iterations), SCRAM-SHA-512 (8192 iterations)"
        ),
        "bob's credentials are listed"
    );
    for mechanism in [SaslMechanism::ScramSha256, SaslMechanism::ScramSha512] {
        rt.block_on(s.client(mechanism, BOB, BOB_PASSWORD)?.metadata(&[], false))
            .with_context(|| format!("bob authenticates with {mechanism}"))?;
    }
    let bob = s.client(SaslMechanism::ScramSha256, BOB, BOB_PASSWORD)?;
    ensure!(
        rt.block_on(produce(&bob, TOPIC)).is_err(),
        "bob produces without an ACL"
    );

    // Connected as bob, the Access screen says the cluster refuses, and stays online.
    support::connect_with(&mut h, s.form("as-bob", BOB, BOB_PASSWORD));
    h.state_mut().screen = Screen::Access;
    wait_for(&mut h, "the refusal in plain words", |h| {
        has_label(h, "CLUSTER_AUTHORIZATION_FAILED") && has_label(h, "as-bob · online")
    })?;
    h.state_mut().selected = Some(admin);

    // An ACL binding letting bob write to the topic.
    h.state_mut().forms.access.new_acl = AclForm {
        name: TOPIC.into(),
        principal: format!("User:{BOB}"),
        operation: AclOperation::Write,
        ..AclForm::default()
    };
    h.step();
    click(&mut h, "Create ACL binding");
    click(&mut h, "Create ACL");
    wait_for(&mut h, "the binding in the list", |h| {
        has_label(h, "1 of 1 bindings") && has_label(h, "User:bob")
    })?;
    let bindings = rt.block_on(alice.describe_acls(&AclFilter::any()))?;
    ensure!(
        bindings.len() == 1
            && bindings[0].principal == "User:bob"
            && bindings[0].resource_type == AclResourceType::Topic
            && bindings[0].resource_name == TOPIC
            && bindings[0].operation == AclOperation::Write
            && bindings[0].permission == AclPermission::Allow,
        "the broker has {bindings:?}"
    );
    rt.block_on(produce(&bob, TOPIC))
        .context("bob produces with the ACL")?;

    // Deleted after confirmation.
    click(&mut h, "Delete ACL");
    click(&mut h, "Yes, delete the ACL");
    wait_for(&mut h, "the binding gone", |h| {
        has_label(h, "0 of 0 bindings")
    })?;
    let bindings = rt.block_on(alice.describe_acls(&AclFilter::any()))?;
    ensure!(bindings.is_empty(), "the broker still has {bindings:?}");

    // And the user, deleted after confirmation, can no longer authenticate.
    click(&mut h, "Delete user bob");
    click(&mut h, "Yes, delete the user");
    wait_for(&mut h, "bob gone", |h| has_label(h, "1 users"))?;
    let fresh = s.client(SaslMechanism::ScramSha512, BOB, BOB_PASSWORD)?;
    ensure!(
        rt.block_on(fresh.metadata(&[], false)).is_err(),
        "bob still authenticates"
    );
    ensure!(shows_no_password(&h), "a password is shown");
    Ok(())
}
