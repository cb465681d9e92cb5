//! ACLs against a real broker. Principals come from mTLS client certificates on an SSL listener
//! (`User:CN=<name>`), plus `User:ANONYMOUS` on a PLAINTEXT listener of the same broker; the
//! SSL listener makes `allow_everyone_if_no_acl_found` false by default, and `User:CN=admin`
//! is the only super user.
//!
//! - produce and consume are allowed by ACLs and refused without them (runnel-client over TLS,
//!   rdkafka as ANONYMOUS with a consumer group: join, fetch, commit);
//! - Metadata lists only the topics a principal may DESCRIBE;
//! - PREFIXED ACLs, and a DENY overriding an ALLOW;
//! - topic creation (CreateTopics and auto-creation) needs CREATE;
//! - super users bypass ACLs; idempotent producers need WRITE somewhere (InitProducerId);
//! - Create/Describe/DeleteAcls through runnel-client, with Kafka's validation and filters, and
//!   through the admin clients of kafka-python and confluent-kafka (`tests/compat/python_acls.py`);
//! - ACLs survive a broker restart;
//! - SCRAM users on a SASL_PLAINTEXT listener (`User:<name>`), with kcat: produce, a refused
//!   produce, a consumer group that commits, and a listing without any topic.

use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use bytes::Bytes;
use runnel_client::{
    AclBinding, AclFilter, AclOperation, AclPatternType, AclPermission, AclResourceType, Client,
    ClientConfig, ClientError, FetchOptions, NewTopic, OutRecord, PartitionBatch, Producer,
    ProducerConfig, ResponseError, SecurityConfig, TlsSettings,
};
use runnel_tests::harness::binary::add_scram_user;
use runnel_tests::harness::mosquitto::free_port;
use runnel_tests::harness::pki::TestPki;
use runnel_tests::{Broker, groups};

const TOPIC: AclResourceType = AclResourceType::Topic;
const GROUP: AclResourceType = AclResourceType::Group;
const ALLOW: AclPermission = AclPermission::Allow;
const DENY: AclPermission = AclPermission::Deny;

/// `User:<subject DN>` of a test client certificate.
fn principal(name: &str) -> String {
    format!("User:CN={name}")
}

struct Secured {
    broker: Broker,
    pki: TestPki,
    plain_port: u16,
    tls_port: u16,
    _dir: tempfile::TempDir,
}

impl Secured {
    fn start() -> Result<Secured> {
        let dir = tempfile::tempdir()?;
        let pki = TestPki::generate(&dir.path().join("pki"))?;
        let (plain_port, tls_port) = (free_port()?, free_port()?);
        let config = format!(
            r#"
[authorization]
super_users = ["{admin}"]

[[listener]]
name = "INTERNAL"
protocol = "PLAINTEXT"
listen = "127.0.0.1:{plain_port}"

[[listener]]
name = "SECURE"
protocol = "SSL"
listen = "127.0.0.1:{tls_port}"
advertised = "localhost:{tls_port}"
[listener.tls]
cert_file = "{cert}"
key_file = "{key}"
client_auth = "required"
client_ca_file = "{ca}"
"#,
            admin = principal("admin"),
            cert = pki.server_cert.display(),
            key = pki.server_key.display(),
            ca = pki.ca.display(),
        );
        let path = dir.path().join("runnel.toml");
        std::fs::write(&path, config)?;
        let broker = Broker::start(groups::broker_options().arg("--config").arg(&path))?;
        Ok(Secured {
            broker,
            pki,
            plain_port,
            tls_port,
            _dir: dir,
        })
    }

    /// A runnel-client authenticated by the certificate of `name`.
    fn client(&self, name: &str) -> Result<Client> {
        let (cert, key) = self.pki.client_cert(name)?;
        let mut config = ClientConfig::new(format!("localhost:{}", self.tls_port), name);
        config.connect_timeout = Duration::from_secs(5);
        config.request_timeout = Duration::from_secs(10);
        config.security = SecurityConfig {
            tls: Some(TlsSettings {
                ca_file: Some(self.pki.ca.clone()),
                cert_file: Some(cert),
                key_file: Some(key),
                server_name: None,
            }),
            sasl: None,
        };
        Ok(Client::try_new(config)?)
    }

    /// The PLAINTEXT listener, where every client is `User:ANONYMOUS`.
    fn plain_bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.plain_port)
    }
}

async fn grant(admin: &Client, bindings: &[AclBinding]) -> Result<()> {
    for (b, outcome) in bindings.iter().zip(admin.create_acls(bindings).await?) {
        outcome.with_context(|| format!("creating {b:?}"))?;
    }
    Ok(())
}

fn acl(
    rt: AclResourceType,
    name: &str,
    who: &str,
    op: AclOperation,
    permission: AclPermission,
) -> AclBinding {
    AclBinding::new(rt, name, who, op, permission)
}

async fn create_topic(client: &Client, name: &str) -> Result<(), ClientError> {
    client
        .create_topic(&NewTopic {
            name: name.into(),
            partitions: 1,
            replication_factor: -1,
            configs: Vec::new(),
        })
        .await
        .map(|_| ())
}

/// Writes `value` to partition 0 of `topic` (idempotent or not), answering the first error.
async fn produce(
    client: &Client,
    topic: &str,
    value: &str,
    idempotent: bool,
) -> Result<i64, ClientError> {
    let producer = Producer::new(
        client.clone(),
        ProducerConfig {
            idempotent,
            delivery_timeout: Duration::from_secs(5),
            ..ProducerConfig::default()
        },
    );
    let batch = PartitionBatch {
        topic: topic.into(),
        partition: 0,
        records: vec![OutRecord {
            key: None,
            value: Some(Bytes::copy_from_slice(value.as_bytes())),
            headers: Vec::new(),
            timestamp_ms: 1_700_000_000_000,
        }],
    };
    let mut results = producer.send(vec![batch]).await;
    results.pop().unwrap_or(Ok(-1))
}

async fn values(client: &Client, topic: &str) -> Result<Vec<String>, ClientError> {
    let fetched = client.fetch(topic, 0, 0, FetchOptions::default()).await?;
    Ok(fetched
        .records
        .iter()
        .map(|r| String::from_utf8_lossy(r.value.as_deref().unwrap_or_default()).into_owned())
        .collect())
}

/// The Kafka error of a result that must have failed.
fn refused<T: std::fmt::Debug>(result: Result<T, ClientError>) -> Result<ResponseError> {
    match result {
        Ok(v) => bail!("expected a refusal, got {v:?}"),
        Err(e) => e.code().with_context(|| format!("not a Kafka error: {e}")),
    }
}

async fn topic_names(client: &Client) -> Result<Vec<String>> {
    let mut names: Vec<String> = client
        .metadata(&[], false)
        .await?
        .topics
        .into_iter()
        .map(|t| t.name)
        .collect();
    names.sort();
    Ok(names)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_acls_when_producing_and_consuming_should_allow_exactly_what_they_grant() -> Result<()>
{
    let s = Secured::start()?;
    let admin = s.client("admin")?;
    // The super user needs no ACL for anything.
    create_topic(&admin, "gps").await?;
    produce(&admin, "gps", "from admin", true).await?;
    let anonymous = "User:ANONYMOUS";
    grant(
        &admin,
        &[
            acl(
                TOPIC,
                "gps",
                &principal("alice"),
                AclOperation::Write,
                ALLOW,
            ),
            acl(TOPIC, "gps", &principal("alice"), AclOperation::Read, ALLOW),
            acl(
                GROUP,
                "alice-app",
                &principal("alice"),
                AclOperation::Read,
                ALLOW,
            ),
            acl(TOPIC, "gps", anonymous, AclOperation::Read, ALLOW),
            acl(GROUP, "anon-app", anonymous, AclOperation::Read, ALLOW),
        ],
    )
    .await?;
    let alice = s.client("alice")?;
    let bob = s.client("bob")?;
    // Produce: alice (idempotent: InitProducerId is allowed by her WRITE on a topic) may, bob
    // may not — neither the producer id nor the write.
    produce(&alice, "gps", "from alice", true).await?;
    let code = refused(produce(&bob, "gps", "from bob", true).await)?;
    ensure!(
        code == ResponseError::ClusterAuthorizationFailed,
        "{code:?}"
    );
    let code = refused(produce(&bob, "gps", "from bob", false).await)?;
    ensure!(code == ResponseError::TopicAuthorizationFailed, "{code:?}");
    // Fetch.
    ensure!(values(&alice, "gps").await? == ["from admin", "from alice"]);
    let code = refused(values(&bob, "gps").await)?;
    ensure!(code == ResponseError::TopicAuthorizationFailed, "{code:?}");
    // Offset commits need READ on the group and on the topic.
    alice
        .commit_offsets("alice-app", &[("gps".into(), 0, 2)])
        .await?;
    let code = refused(
        alice
            .commit_offsets("other-app", &[("gps".into(), 0, 2)])
            .await,
    )?;
    ensure!(code == ResponseError::GroupAuthorizationFailed, "{code:?}");
    // A consumer group as User:ANONYMOUS (rdkafka over PLAINTEXT): join, fetch, commit.
    let bootstrap = s.plain_bootstrap();
    let consumer = groups::subscribed(&bootstrap, "anon-app", "gps", &[])?;
    let mut seen = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while seen.len() < 2 && std::time::Instant::now() < deadline {
        if let Some(r) = groups::poll_record(&consumer, Duration::from_millis(200))? {
            seen.push(String::from_utf8_lossy(r.value.as_deref().unwrap_or_default()).into_owned());
        }
    }
    ensure!(seen == ["from admin", "from alice"], "consumed {seen:?}");
    groups::commit(&consumer, "gps", &[(0, 2)].into())?;
    let committed = groups::committed(&bootstrap, "anon-app", "gps", 1)?;
    ensure!(committed == [(0, Some(2))].into(), "{committed:?}");
    drop(consumer);
    // … and a group it has no READ on is refused.
    let denied = groups::subscribed(&bootstrap, "other-app", "gps", &[])?;
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let error = loop {
        match groups::poll_record(&denied, Duration::from_millis(200)) {
            Err(e) => break e.to_string(),
            Ok(Some(r)) => bail!("a group without READ consumed {r:?}"),
            Ok(None) if std::time::Instant::now() > deadline => bail!("no error within 20 s"),
            Ok(None) => {}
        }
    };
    ensure!(
        error.to_lowercase().contains("group authorization failed"),
        "{error}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_prefixed_and_deny_acls_should_show_and_allow_only_the_granted_topics() -> Result<()>
{
    let s = Secured::start()?;
    let admin = s.client("admin")?;
    for t in ["sensors.gps", "sensors.secret", "other"] {
        create_topic(&admin, t).await?;
    }
    let alice_p = principal("alice");
    grant(
        &admin,
        &[
            acl(TOPIC, "sensors.", &alice_p, AclOperation::Write, ALLOW)
                .with_pattern(AclPatternType::Prefixed),
            acl(TOPIC, "sensors.secret", &alice_p, AclOperation::Write, DENY),
        ],
    )
    .await?;
    let alice = s.client("alice")?;
    produce(&alice, "sensors.gps", "fix", false).await?;
    let code = refused(produce(&alice, "sensors.secret", "leak", false).await)?;
    ensure!(
        code == ResponseError::TopicAuthorizationFailed,
        "DENY wins: {code:?}"
    );
    let code = refused(produce(&alice, "other", "x", false).await)?;
    ensure!(code == ResponseError::TopicAuthorizationFailed, "{code:?}");
    // WRITE implies DESCRIBE (the DENY is of WRITE only): alice sees both sensors topics.
    ensure!(topic_names(&alice).await? == ["sensors.gps", "sensors.secret"]);
    // A client without any ACL sees no topic at all, and is refused the ones it names.
    let bob = s.client("bob")?;
    ensure!(topic_names(&bob).await?.is_empty());
    let meta = bob.metadata(&["other", "missing"], false).await?;
    let codes: Vec<(String, i16)> = meta
        .topics
        .iter()
        .map(|t| (t.name.clone(), t.error_code))
        .collect();
    let denied = ResponseError::TopicAuthorizationFailed.code();
    ensure!(
        codes == [("other".into(), denied), ("missing".into(), denied)],
        "existing or not, both are refused alike: {codes:?}"
    );
    // So does User:ANONYMOUS on the PLAINTEXT listener (rdkafka).
    let anonymous = runnel_tests::clients::consumer(&s.plain_bootstrap(), &[])?;
    let listed = {
        use rdkafka::consumer::Consumer;
        anonymous.fetch_metadata(None, Duration::from_secs(10))?
    };
    ensure!(
        listed.topics().is_empty(),
        "{} topics",
        listed.topics().len()
    );
    // The super user sees everything.
    ensure!(topic_names(&admin).await? == ["other", "sensors.gps", "sensors.secret"]);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_create_acls_when_creating_topics_should_allow_only_granted_names() -> Result<()> {
    let s = Secured::start()?;
    let admin = s.client("admin")?;
    let alice_p = principal("alice");
    grant(
        &admin,
        &[acl(TOPIC, "alice.", &alice_p, AclOperation::All, ALLOW)
            .with_pattern(AclPatternType::Prefixed)],
    )
    .await?;
    let alice = s.client("alice")?;
    create_topic(&alice, "alice.made").await?;
    let code = refused(create_topic(&alice, "bob.made").await)?;
    ensure!(code == ResponseError::TopicAuthorizationFailed, "{code:?}");
    // Auto-creation through Metadata: the same rule.
    let meta = alice.metadata(&["alice.auto", "nope.auto"], true).await?;
    let codes: Vec<i16> = meta.topics.iter().map(|t| t.error_code).collect();
    ensure!(
        codes == [0, ResponseError::TopicAuthorizationFailed.code()],
        "{codes:?}"
    );
    ensure!(topic_names(&admin).await? == ["alice.auto", "alice.made"]);
    // CREATE on the cluster allows any name.
    let bob_p = principal("bob");
    let cluster = AclBinding::new(
        AclResourceType::Cluster,
        "kafka-cluster",
        &bob_p,
        AclOperation::Create,
        ALLOW,
    );
    grant(&admin, &[cluster]).await?;
    create_topic(&s.client("bob")?, "anything").await?;
    // Deleting needs DELETE: alice has ALL on her prefix only.
    alice.delete_topic("alice.made").await?;
    let code = refused(alice.delete_topic("anything").await)?;
    ensure!(code == ResponseError::TopicAuthorizationFailed, "{code:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_the_acl_apis_should_validate_filter_and_delete_like_kafka() -> Result<()> {
    let s = Secured::start()?;
    let admin = s.client("admin")?;
    let alice_p = principal("alice");
    let read = acl(TOPIC, "gps", &alice_p, AclOperation::Read, ALLOW);
    let prefixed = acl(TOPIC, "gp", &alice_p, AclOperation::Write, ALLOW)
        .with_pattern(AclPatternType::Prefixed);
    let star = acl(TOPIC, "*", "User:*", AclOperation::Describe, ALLOW);
    let group = acl(GROUP, "gps", &alice_p, AclOperation::Read, ALLOW);
    let bad_principal = acl(TOPIC, "gps", "alice", AclOperation::Read, ALLOW);
    let bad_cluster = acl(
        AclResourceType::Cluster,
        "mine",
        &alice_p,
        AclOperation::Alter,
        ALLOW,
    );
    let filter_only =
        acl(TOPIC, "gps", &alice_p, AclOperation::Read, ALLOW).with_pattern(AclPatternType::Match);
    let outcomes = admin
        .create_acls(&[
            read.clone(),
            prefixed.clone(),
            star.clone(),
            group.clone(),
            bad_principal,
            bad_cluster,
            filter_only,
        ])
        .await?;
    let codes: Vec<Option<ResponseError>> = outcomes
        .iter()
        .map(|o| o.as_ref().err().and_then(ClientError::code))
        .collect();
    let invalid = Some(ResponseError::InvalidRequest);
    ensure!(
        codes == [None, None, None, None, invalid, invalid, invalid],
        "{codes:?}"
    );
    let mut all = admin.describe_acls(&AclFilter::any()).await?;
    all.sort();
    let mut expected = vec![read.clone(), prefixed.clone(), star.clone(), group.clone()];
    expected.sort();
    ensure!(all == expected, "{all:#?}");
    // MATCH: what applies to topic "gps" — its literal ACL, the prefix and the wildcard.
    let matching = AclFilter {
        resource_type: TOPIC,
        resource_name: Some("gps".into()),
        pattern_type: AclPatternType::Match,
        ..AclFilter::any()
    };
    let mut applies = admin.describe_acls(&matching).await?;
    applies.sort();
    let mut want = vec![read.clone(), prefixed.clone(), star.clone()];
    want.sort();
    ensure!(applies == want, "{applies:#?}");
    // Only the cluster's ALTER / DESCRIBE holders may manage ACLs.
    let alice = s.client("alice")?;
    let code = refused(alice.describe_acls(&AclFilter::any()).await)?;
    ensure!(
        code == ResponseError::ClusterAuthorizationFailed,
        "{code:?}"
    );
    let created = alice.create_acls(std::slice::from_ref(&read)).await?;
    let code = refused(created.into_iter().next().context("one outcome")?)?;
    ensure!(
        code == ResponseError::ClusterAuthorizationFailed,
        "{code:?}"
    );
    // DeleteAcls answers what each filter matched; a binding can match two filters.
    let by_principal = AclFilter {
        principal: Some(alice_p.clone()),
        resource_type: TOPIC,
        ..AclFilter::any()
    };
    let deleted = admin.delete_acls(&[by_principal, read.to_filter()]).await?;
    let mut first = deleted[0]
        .as_ref()
        .map_err(|e| anyhow::anyhow!("{e}"))?
        .clone();
    first.sort();
    let mut want = vec![read.clone(), prefixed];
    want.sort();
    ensure!(first == want, "{first:#?}");
    ensure!(
        deleted[1].as_ref().map_err(|e| anyhow::anyhow!("{e}"))? == &vec![read],
        "{deleted:#?}"
    );
    let mut left = admin.describe_acls(&AclFilter::any()).await?;
    left.sort();
    let mut want = vec![star, group];
    want.sort();
    ensure!(left == want, "{left:#?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_acls_when_the_broker_restarts_should_keep_them() -> Result<()> {
    let mut s = Secured::start()?;
    let admin = s.client("admin")?;
    create_topic(&admin, "kept").await?;
    let alice_p = principal("alice");
    let bindings = [
        acl(TOPIC, "kept", &alice_p, AclOperation::Write, ALLOW),
        acl(TOPIC, "kept", &principal("bob"), AclOperation::Write, DENY),
    ];
    grant(&admin, &bindings).await?;
    drop(admin);
    s.broker.restart()?;
    let admin = s.client("admin")?;
    let mut after = admin.describe_acls(&AclFilter::any()).await?;
    after.sort();
    let mut want = bindings.to_vec();
    want.sort();
    ensure!(after == want, "{after:#?}");
    produce(&s.client("alice")?, "kept", "after restart", false).await?;
    let code = refused(produce(&s.client("bob")?, "kept", "x", false).await)?;
    ensure!(code == ResponseError::TopicAuthorizationFailed, "{code:?}");
    Ok(())
}

#[test]
fn given_kafka_python_and_confluent_kafka_admins_should_create_describe_and_delete_acls()
-> Result<()> {
    // PLAINTEXT only, closed, and the anonymous client is the super user that manages ACLs.
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("runnel.toml");
    std::fs::write(
        &path,
        "[authorization]\nsuper_users = [\"User:ANONYMOUS\"]\nallow_everyone_if_no_acl_found = false\n",
    )?;
    let options = runnel_tests::BrokerOptions::new()
        .arg("--config")
        .arg(&path);
    runnel_tests::python::run_compat("python_acls.py", options, Duration::from_secs(120))
}

fn password(user: &str) -> String {
    format!("{user}-Secret-4711")
}

/// kcat over SASL_PLAINTEXT with SCRAM-SHA-256 as `user`: the `-b` and `-X` arguments.
fn kcat_as(bootstrap: &str, user: &str) -> Vec<String> {
    [
        "-b",
        bootstrap,
        "-X",
        "security.protocol=sasl_plaintext",
        "-X",
        "sasl.mechanisms=SCRAM-SHA-256",
        "-X",
        &format!("sasl.username={user}"),
        "-X",
        &format!("sasl.password={}", password(user)),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

fn kcat(base: &[String], args: &[&str], stdin: &str) -> Result<runnel_tests::kcat::KcatOutput> {
    let all: Vec<&str> = base
        .iter()
        .map(String::as_str)
        .chain(args.iter().copied())
        .collect();
    runnel_tests::kcat::run(&all, stdin.as_bytes(), Duration::from_secs(30))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_scram_users_when_kcat_produces_and_consumes_should_follow_their_acls() -> Result<()>
{
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data)?;
    for user in ["admin", "alice", "bob"] {
        add_scram_user(&data, user, &password(user), &[])?;
    }
    let port = free_port()?;
    let config = format!(
        r#"
[authorization]
super_users = ["User:admin"]

[[listener]]
name = "SASL"
protocol = "SASL_PLAINTEXT"
listen = "127.0.0.1:{port}"
"#
    );
    let path = dir.path().join("runnel.toml");
    std::fs::write(&path, config)?;
    let _broker = Broker::start(
        groups::broker_options()
            .data_dir(&data)
            .arg("--config")
            .arg(&path),
    )?;
    let bootstrap = format!("127.0.0.1:{port}");
    let mut config = ClientConfig::new(bootstrap.clone(), "acl-admin");
    config.security = SecurityConfig {
        tls: None,
        sasl: Some(runnel_client::SaslSettings {
            mechanism: runnel_client::SaslMechanism::ScramSha512,
            username: "admin".into(),
            password: password("admin"),
        }),
    };
    let admin = Client::try_new(config)?;
    create_topic(&admin, "telemetry").await?;
    grant(
        &admin,
        &[
            acl(TOPIC, "telemetry", "User:alice", AclOperation::Write, ALLOW),
            acl(TOPIC, "telemetry", "User:alice", AclOperation::Read, ALLOW),
            acl(GROUP, "alice-app", "User:alice", AclOperation::Read, ALLOW),
        ],
    )
    .await?;
    let alice = kcat_as(&bootstrap, "alice");
    let bob = kcat_as(&bootstrap, "bob");
    kcat(&alice, &["-P", "-t", "telemetry"], "one\ntwo\n")?;
    let denied = kcat(&bob, &["-P", "-t", "telemetry"], "three\n")
        .err()
        .context("bob produced without WRITE")?;
    ensure!(
        format!("{denied:#}").contains("Topic authorization failed"),
        "{denied:#}"
    );
    // A consumer group: join, fetch, commit (kcat commits its offsets when it exits).
    let consumed = kcat(
        &alice,
        &[
            "-X",
            "auto.offset.reset=earliest",
            "-G",
            "alice-app",
            "-e",
            "-f",
            "%s\\n",
            "telemetry",
        ],
        "",
    )?;
    ensure!(
        consumed.stdout.lines().collect::<Vec<_>>() == ["one", "two"],
        "{consumed:?}"
    );
    let committed = admin
        .committed_offsets("alice-app", "telemetry", &[0])
        .await?;
    ensure!(committed == [Some(2)], "{committed:?}");
    let listed = kcat(&bob, &["-L"], "")?;
    ensure!(
        listed.stdout.contains("0 topics"),
        "bob sees topics: {}",
        listed.stdout
    );
    Ok(())
}
