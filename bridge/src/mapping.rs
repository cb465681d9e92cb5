//! MQTT message → Kafka record, and Kafka record → MQTT topic: pure functions, no I/O.
//!
//! [`Router`] compiles the ingress rules once (filters, JSON field paths, topic names as
//! `Arc<str>`) and [`Router::route`] turns one [`Inbound`] message into a [`Routed`]:
//! - the record value is the payload `Bytes` itself (a reference-count increment, no copy);
//! - the payload is parsed as JSON at most once, and only when the matching rule reads JSON;
//! - a message that fails the rule's JSON checks becomes a [`Routed::DeadLetter`] for the
//!   rule's `dead_letter_topic` (which validation guarantees exists), never nothing.
//!
//! Rules must not overlap ([`crate::config::BridgeConfig::validate`] checks), so the first
//! matching rule is the only one. [`FieldPath`] and [`TopicTemplate`] are the syntax of
//! `key_json`/`timestamp_json`/`require` and of the egress `mqtt_topic`; the config
//! validation uses their parsers.

use std::fmt::{self, Write as _};
use std::sync::Arc;

use bytes::Bytes;
use serde_json::Value;

use crate::config::{ConfigError, IngressRule, InvalidKey, TimestampUnit};
use crate::filter::{TopicFilter, TopicNameError, validate_topic_name};

/// Record header names.
pub mod header {
    /// The MQTT topic the message was published to.
    pub const MQTT_TOPIC: &str = "mqtt.topic";
    /// `0`, `1` or `2`: the QoS the message was delivered with.
    pub const MQTT_QOS: &str = "mqtt.qos";
    /// `true` or `false`.
    pub const MQTT_RETAIN: &str = "mqtt.retain";
    /// `true` or `false`: the server marked it as a possible redelivery.
    pub const MQTT_DUP: &str = "mqtt.dup";
    /// Decimal milliseconds since the Unix epoch when the bridge received it.
    pub const RECEIVED_MS: &str = "mqtt.received_ms";
    /// Dead letters only: why the message failed its rule.
    pub const DLQ_REASON: &str = "runnel.dlq.reason";
    /// Dead letters only: the filter of the rule it failed.
    pub const DLQ_RULE: &str = "runnel.dlq.rule";
}

/// Latest accepted record timestamp: 9999-12-31T23:59:59.999Z.
pub const MAX_TIMESTAMP_MS: i64 = 253_402_300_799_999;

/// One MQTT message as received.
#[derive(Debug, Clone, Copy)]
pub struct Inbound<'a> {
    pub topic: &'a str,
    pub payload: &'a Bytes,
    pub qos: u8,
    pub retain: bool,
    pub dup: bool,
    /// Milliseconds since the Unix epoch.
    pub received_ms: i64,
}

/// A record to append to a Kafka topic.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    pub topic: Arc<str>,
    pub key: Option<Bytes>,
    pub value: Bytes,
    pub timestamp_ms: i64,
    pub headers: Vec<(String, Bytes)>,
}

/// What to do with one message. `rule` is the 0-based index into the ingress rules.
#[derive(Debug, Clone, PartialEq)]
pub enum Routed {
    Record {
        rule: usize,
        record: Record,
    },
    DeadLetter {
        rule: usize,
        record: Record,
        reason: String,
    },
    /// No rule's filter matches (e.g. a retained message from an old subscription).
    Unmatched,
}

/// The compiled ingress rules of one bridge.
#[derive(Debug, Clone)]
pub struct Router {
    rules: Box<[CompiledRule]>,
}

#[derive(Debug, Clone)]
struct CompiledRule {
    filter: TopicFilter,
    qos: u8,
    topic: Arc<str>,
    key_level: Option<usize>,
    /// The filter as a header value, for dead letters.
    rule_header: Bytes,
    /// Present exactly when the rule reads JSON.
    json: Option<JsonRule>,
}

#[derive(Debug, Clone)]
struct JsonRule {
    dead_letter_topic: Arc<str>,
    key: Option<FieldPath>,
    timestamp: Option<(FieldPath, TimestampUnit)>,
    require: Box<[FieldPath]>,
}

impl Router {
    /// Checks and compiles `rules` (see [`IngressRule::check`]). Errors number rules from 1.
    pub fn new(rules: &[IngressRule]) -> Result<Self, ConfigError> {
        let rules = rules
            .iter()
            .enumerate()
            .map(|(index, rule)| {
                CompiledRule::new(rule).map_err(|e| ConfigError::Rule {
                    number: index + 1,
                    filter: rule.filter.clone(),
                    key: e.key,
                    reason: e.reason,
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(Router { rules })
    }

    /// Routes one message by the first rule whose filter matches its topic.
    pub fn route(&self, msg: &Inbound<'_>) -> Routed {
        let Some((index, rule)) = self
            .rules
            .iter()
            .enumerate()
            .find(|(_, rule)| rule.filter.matches(msg.topic))
        else {
            return Routed::Unmatched;
        };
        rule.route(index, msg)
    }

    /// `(filter, qos)` of every rule, to subscribe to.
    pub fn subscriptions(&self) -> Vec<(String, u8)> {
        self.rules
            .iter()
            .map(|rule| (rule.filter.to_string(), rule.qos))
            .collect()
    }

    pub fn rule_count(&self) -> usize {
        self.rules.len()
    }
}

/// What the JSON checks of a valid message produce.
struct Extracted {
    key: Option<Bytes>,
    timestamp_ms: i64,
}

impl CompiledRule {
    fn new(rule: &IngressRule) -> Result<Self, InvalidKey> {
        rule.check()?;
        // `check` has parsed all of these already; the errors cannot happen.
        let bad = |key: &'static str, e: &dyn fmt::Display| InvalidKey {
            key,
            reason: e.to_string(),
        };
        let path = |key, text: &str| FieldPath::parse(text).map_err(|e| bad(key, &e));
        let filter = TopicFilter::parse(&rule.filter).map_err(|e| bad("filter", &e))?;
        let json = match &rule.dead_letter_topic {
            Some(dlq) if rule.reads_json() => Some(JsonRule {
                dead_letter_topic: dlq.as_str().into(),
                key: rule
                    .key_json
                    .as_deref()
                    .map(|text| path("key_json", text))
                    .transpose()?,
                timestamp: match &rule.timestamp_json {
                    Some(text) => Some((path("timestamp_json", text)?, rule.timestamp_unit)),
                    None => None,
                },
                require: rule
                    .require
                    .iter()
                    .map(|text| path("require", text))
                    .collect::<Result<_, _>>()?,
            }),
            // `check` rejects a rule that reads JSON without a dead letter topic.
            _ => None,
        };
        Ok(CompiledRule {
            rule_header: Bytes::copy_from_slice(rule.filter.as_bytes()),
            filter,
            qos: rule.qos,
            topic: rule.topic.as_str().into(),
            key_level: rule.key_level,
            json,
        })
    }

    fn route(&self, index: usize, msg: &Inbound<'_>) -> Routed {
        let level_key = self.key_level.and_then(|level| {
            msg.topic
                .split('/')
                .nth(level)
                .map(|text| Bytes::copy_from_slice(text.as_bytes()))
        });
        let Some(json) = &self.json else {
            return Routed::Record {
                rule: index,
                record: record(
                    &self.topic,
                    level_key,
                    msg,
                    msg.received_ms,
                    mqtt_headers(msg, 0),
                ),
            };
        };
        match json.extract(msg.payload, msg.received_ms) {
            Ok(extracted) => Routed::Record {
                rule: index,
                record: record(
                    &self.topic,
                    level_key.or(extracted.key),
                    msg,
                    extracted.timestamp_ms,
                    mqtt_headers(msg, 0),
                ),
            },
            Err(reason) => {
                let mut headers = mqtt_headers(msg, 2);
                headers.push((header::DLQ_REASON.to_owned(), Bytes::from(reason.clone())));
                headers.push((header::DLQ_RULE.to_owned(), self.rule_header.clone()));
                Routed::DeadLetter {
                    rule: index,
                    record: record(
                        &json.dead_letter_topic,
                        level_key,
                        msg,
                        msg.received_ms,
                        headers,
                    ),
                    reason,
                }
            }
        }
    }
}

impl JsonRule {
    /// Parses the payload once and applies `require`, `timestamp_json` and `key_json`.
    /// `Err` is the dead-letter reason.
    fn extract(&self, payload: &Bytes, received_ms: i64) -> Result<Extracted, String> {
        let mut value: Value = serde_json::from_slice(payload)
            .map_err(|e| format!("payload is not valid JSON: {e}"))?;
        if let Some(path) = self.require.iter().find(|p| p.lookup(&value).is_none()) {
            return Err(format!("required field `{path}` is missing"));
        }
        let timestamp_ms = match &self.timestamp {
            Some((path, unit)) => timestamp(path, *unit, &value)?,
            None => received_ms,
        };
        let key = match &self.key {
            Some(path) => Some(json_key(path, &mut value)?),
            None => None,
        };
        Ok(Extracted { key, timestamp_ms })
    }
}

/// The record key from a JSON scalar: a string's UTF-8 bytes (no quotes), or the JSON text
/// of a number or bool. Takes the string out of `value` to avoid a copy.
fn json_key(path: &FieldPath, value: &mut Value) -> Result<Bytes, String> {
    match path.lookup_mut(value) {
        None => Err(format!("key field `{path}` is missing")),
        Some(Value::String(text)) => Ok(Bytes::from(std::mem::take(text))),
        Some(Value::Number(n)) => Ok(Bytes::from(n.to_string())),
        Some(Value::Bool(b)) => Ok(Bytes::from_static(bool_text(*b))),
        Some(other) => Err(format!(
            "key field `{path}` is not a scalar (found {}); a key must be a string, number or bool",
            kind(other)
        )),
    }
}

/// The record timestamp from a JSON number in `unit`, rounded to the nearest millisecond.
fn timestamp(path: &FieldPath, unit: TimestampUnit, value: &Value) -> Result<i64, String> {
    let field = path
        .lookup(value)
        .ok_or_else(|| format!("timestamp field `{path}` is missing"))?;
    let Value::Number(n) = field else {
        return Err(format!(
            "timestamp field `{path}` is not a number (found {})",
            kind(field)
        ));
    };
    // Integers stay exact; anything else goes through f64 (exact for whole ms up to 2^53).
    let ms = match (n.as_i64(), unit) {
        (Some(ms), TimestampUnit::Millis) => Some(ms),
        (Some(s), TimestampUnit::Seconds) => s.checked_mul(1000),
        (None, unit) => n.as_f64().and_then(|v| {
            let ms = match unit {
                TimestampUnit::Millis => v,
                TimestampUnit::Seconds => v * 1000.0,
            }
            .round();
            // The range check below rejects NaN and the infinities too.
            (0.0..=MAX_TIMESTAMP_MS as f64)
                .contains(&ms)
                .then_some(ms as i64)
        }),
    };
    match ms {
        Some(ms) if (0..=MAX_TIMESTAMP_MS).contains(&ms) => Ok(ms),
        _ => Err(format!(
            "timestamp field `{path}` is {n}, outside 0 to the year 9999 in {}",
            match unit {
                TimestampUnit::Millis => "milliseconds",
                TimestampUnit::Seconds => "seconds",
            }
        )),
    }
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a bool",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn record(
    topic: &Arc<str>,
    key: Option<Bytes>,
    msg: &Inbound<'_>,
    timestamp_ms: i64,
    headers: Vec<(String, Bytes)>,
) -> Record {
    Record {
        topic: Arc::clone(topic),
        key,
        value: msg.payload.clone(),
        timestamp_ms,
        headers,
    }
}

/// The headers every record carries, with room for `extra` more.
fn mqtt_headers(msg: &Inbound<'_>, extra: usize) -> Vec<(String, Bytes)> {
    let qos = match msg.qos {
        0 => Bytes::from_static(b"0"),
        1 => Bytes::from_static(b"1"),
        2 => Bytes::from_static(b"2"),
        other => Bytes::from(other.to_string()),
    };
    let mut headers = Vec::with_capacity(5 + extra);
    headers.push((
        header::MQTT_TOPIC.to_owned(),
        Bytes::copy_from_slice(msg.topic.as_bytes()),
    ));
    headers.push((header::MQTT_QOS.to_owned(), qos));
    headers.push((
        header::MQTT_RETAIN.to_owned(),
        Bytes::from_static(bool_text(msg.retain)),
    ));
    headers.push((
        header::MQTT_DUP.to_owned(),
        Bytes::from_static(bool_text(msg.dup)),
    ));
    headers.push((
        header::RECEIVED_MS.to_owned(),
        Bytes::from(msg.received_ms.to_string()),
    ));
    headers
}

fn bool_text(value: bool) -> &'static [u8] {
    if value { b"true" } else { b"false" }
}

/// Why a JSON field path does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    #[error("JSON field path is empty")]
    Empty,
    #[error(
        "JSON field path {path:?}: segment {segment} is empty (paths are dot-separated names \
         such as `truck.id` or `fixes.0.lat`)"
    )]
    EmptySegment { path: String, segment: usize },
}

/// A dot-separated JSON field path such as `truck.id` or `fixes.0.lat`. A segment of only
/// digits reads an array element or, in an object, the member of that name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldPath {
    text: Box<str>,
    segments: Box<[Segment]>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Segment {
    name: Box<str>,
    index: Option<usize>,
}

impl FieldPath {
    pub fn parse(path: &str) -> Result<Self, PathError> {
        if path.is_empty() {
            return Err(PathError::Empty);
        }
        let segments = path
            .split('.')
            .enumerate()
            .map(|(i, name)| {
                if name.is_empty() {
                    return Err(PathError::EmptySegment {
                        path: path.to_owned(),
                        segment: i,
                    });
                }
                let digits = name.bytes().all(|b| b.is_ascii_digit());
                Ok(Segment {
                    name: name.into(),
                    index: if digits { name.parse().ok() } else { None },
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(FieldPath {
            text: path.into(),
            segments,
        })
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The value at this path, if every segment exists.
    pub fn lookup<'v>(&self, mut value: &'v Value) -> Option<&'v Value> {
        for segment in self.segments.iter() {
            value = match value {
                Value::Object(map) => map.get(&*segment.name)?,
                Value::Array(items) => items.get(segment.index?)?,
                _ => return None,
            };
        }
        Some(value)
    }

    fn lookup_mut<'v>(&self, mut value: &'v mut Value) -> Option<&'v mut Value> {
        for segment in self.segments.iter() {
            value = match value {
                Value::Object(map) => map.get_mut(&*segment.name)?,
                Value::Array(items) => items.get_mut(segment.index?)?,
                _ => return None,
            };
        }
        Some(value)
    }
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// Why an egress `mqtt_topic` template does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    #[error("MQTT topic template is empty")]
    Empty,
    #[error("MQTT topic template {template:?} is longer than 65535 bytes")]
    TooLong { template: String },
    #[error(
        "MQTT topic template {template:?}: unknown placeholder `{{{name}}}`; use {{key}}, \
         {{topic}} or {{partition}}"
    )]
    UnknownPlaceholder { template: String, name: String },
    #[error("MQTT topic template {template:?}: the `{{` at byte {at} is not closed by a `}}`")]
    Unclosed { template: String, at: usize },
    #[error("MQTT topic template {template:?}: the `}}` at byte {at} has no matching `{{`")]
    Unopened { template: String, at: usize },
    #[error(
        "MQTT topic template {template:?} contains `{character}` outside a placeholder; \
         a topic name cannot hold wildcards or NUL"
    )]
    BadCharacter { template: String, character: char },
}

/// Why a record cannot be published with an egress template.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RenderError {
    #[error(transparent)]
    Template(#[from] TemplateError),
    #[error("MQTT topic template {template:?} uses {{key}} but the record has no key")]
    MissingKey { template: String },
    #[error("MQTT topic template {template:?} uses {{key}} but the record key is empty")]
    EmptyKey { template: String },
    #[error("MQTT topic template {template:?} uses {{key}} but the record key is not UTF-8")]
    KeyNotUtf8 { template: String },
    #[error(
        "MQTT topic template {template:?} uses {{key}} but the record key {key:?} contains \
         {character:?}, which a topic name cannot hold"
    )]
    BadKey {
        template: String,
        key: String,
        character: char,
    },
    #[error("MQTT topic template {template:?} rendered an invalid topic: {error}")]
    Name {
        template: String,
        error: TopicNameError,
    },
}

/// A parsed egress `mqtt_topic`, rendered once per record without re-parsing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicTemplate {
    text: Box<str>,
    parts: Box<[Part]>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Literal(Box<str>),
    Key,
    Topic,
    Partition,
}

impl TopicTemplate {
    /// Parses `template`: literal text and the placeholders `{key}`, `{topic}` and
    /// `{partition}`. Braces cannot be escaped; the literal text may not hold `+`, `#` or NUL.
    pub fn parse(template: &str) -> Result<Self, TemplateError> {
        if template.is_empty() {
            return Err(TemplateError::Empty);
        }
        if template.len() > crate::filter::MAX_TOPIC_BYTES {
            return Err(TemplateError::TooLong {
                template: template.chars().take(32).collect(),
            });
        }
        let owned = || template.to_owned();
        if let Some(character) = template.chars().find(|c| matches!(c, '+' | '#' | '\0')) {
            return Err(TemplateError::BadCharacter {
                template: owned(),
                character,
            });
        }
        let mut parts = Vec::new();
        let mut rest = template;
        while !rest.is_empty() {
            let at = template.len() - rest.len();
            let Some(open) = rest.find(['{', '}']) else {
                parts.push(Part::Literal(rest.into()));
                break;
            };
            if rest.as_bytes()[open] == b'}' {
                return Err(TemplateError::Unopened {
                    template: owned(),
                    at: at + open,
                });
            }
            if open > 0 {
                parts.push(Part::Literal(rest[..open].into()));
            }
            let after = &rest[open + 1..];
            let close = match after.find(['{', '}']) {
                Some(close) if after.as_bytes()[close] == b'}' => close,
                _ => {
                    return Err(TemplateError::Unclosed {
                        template: owned(),
                        at: at + open,
                    });
                }
            };
            parts.push(match &after[..close] {
                "key" => Part::Key,
                "topic" => Part::Topic,
                "partition" => Part::Partition,
                name => {
                    return Err(TemplateError::UnknownPlaceholder {
                        template: owned(),
                        name: name.to_owned(),
                    });
                }
            });
            rest = &after[close + 1..];
        }
        Ok(TopicTemplate {
            text: template.into(),
            parts: parts.into(),
        })
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether rendering needs a record key.
    pub fn uses_key(&self) -> bool {
        self.parts.contains(&Part::Key)
    }

    /// The MQTT topic for one record of `topic`/`partition` with `key`.
    pub fn render(
        &self,
        key: Option<&[u8]>,
        topic: &str,
        partition: i32,
    ) -> Result<String, RenderError> {
        let template = || self.text.to_string();
        let key = if self.uses_key() {
            let key = key.ok_or_else(|| RenderError::MissingKey {
                template: template(),
            })?;
            let key = std::str::from_utf8(key).map_err(|_| RenderError::KeyNotUtf8 {
                template: template(),
            })?;
            if key.is_empty() {
                return Err(RenderError::EmptyKey {
                    template: template(),
                });
            }
            if let Some(character) = key.chars().find(|c| matches!(c, '+' | '#' | '\0')) {
                return Err(RenderError::BadKey {
                    template: template(),
                    key: key.to_owned(),
                    character,
                });
            }
            key
        } else {
            ""
        };
        let mut out = String::with_capacity(self.text.len() + key.len() + topic.len());
        for part in self.parts.iter() {
            match part {
                Part::Literal(text) => out.push_str(text),
                Part::Key => out.push_str(key),
                Part::Topic => out.push_str(topic),
                // Writing to a String cannot fail.
                Part::Partition => {
                    let _ = write!(out, "{partition}");
                }
            }
        }
        validate_topic_name(&out).map_err(|error| RenderError::Name {
            template: template(),
            error,
        })?;
        Ok(out)
    }
}

/// Parses `template` and renders it for one record; use [`TopicTemplate`] to parse once.
pub fn render_egress_topic(
    template: &str,
    key: Option<&[u8]>,
    topic: &str,
    partition: i32,
) -> Result<String, RenderError> {
    TopicTemplate::parse(template)?.render(key, topic, partition)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Validation;

    const RECEIVED: i64 = 1_700_000_000_000;

    fn rule(filter: &str, topic: &str) -> IngressRule {
        IngressRule {
            filter: filter.into(),
            topic: topic.into(),
            qos: 1,
            key_level: None,
            key_json: None,
            timestamp_json: None,
            timestamp_unit: TimestampUnit::Millis,
            validate: Validation::None,
            require: Vec::new(),
            dead_letter_topic: None,
        }
    }

    /// A rule reading JSON from `trucks/+/gps` into `gps`, dead letters to `gps-dlq`.
    fn json_rule(edit: impl FnOnce(&mut IngressRule)) -> IngressRule {
        let mut r = rule("trucks/+/gps", "gps");
        r.validate = Validation::Json;
        r.dead_letter_topic = Some("gps-dlq".into());
        edit(&mut r);
        r
    }

    fn router(rules: &[IngressRule]) -> Router {
        Router::new(rules).expect("test rules are valid")
    }

    fn route(router: &Router, topic: &str, payload: &Bytes) -> Routed {
        router.route(&Inbound {
            topic,
            payload,
            qos: 1,
            retain: false,
            dup: false,
            received_ms: RECEIVED,
        })
    }

    fn record_of(routed: Routed) -> (usize, Record) {
        match routed {
            Routed::Record { rule, record } => (rule, record),
            other => panic!("expected a record, got {other:?}"),
        }
    }

    fn dead_letter_of(routed: Routed) -> (Record, String) {
        match routed {
            Routed::DeadLetter { record, reason, .. } => (record, reason),
            other => panic!("expected a dead letter, got {other:?}"),
        }
    }

    fn header<'r>(record: &'r Record, name: &str) -> Option<&'r [u8]> {
        record
            .headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_ref())
    }

    #[test]
    fn given_plain_rule_when_routed_should_keep_payload_bytes_and_set_mqtt_headers() {
        let r = router(&[rule("a/b", "ab"), rule("sensors/#", "sensors")]);
        let payload = Bytes::from_static(b"\x00\xffnot json at all");
        let msg = Inbound {
            topic: "sensors/x/temp",
            payload: &payload,
            qos: 2,
            retain: true,
            dup: true,
            received_ms: RECEIVED,
        };
        let (index, record) = record_of(r.route(&msg));
        assert_eq!(index, 1);
        assert_eq!(&*record.topic, "sensors");
        assert_eq!(record.value, payload);
        // Zero copy: the record value shares the payload's buffer.
        assert_eq!(record.value.as_ptr(), payload.as_ptr());
        assert_eq!(record.key, None);
        assert_eq!(record.timestamp_ms, RECEIVED);
        let expected: Vec<(String, Bytes)> = [
            (header::MQTT_TOPIC, "sensors/x/temp"),
            (header::MQTT_QOS, "2"),
            (header::MQTT_RETAIN, "true"),
            (header::MQTT_DUP, "true"),
            (header::RECEIVED_MS, "1700000000000"),
        ]
        .into_iter()
        .map(|(n, v)| (n.to_owned(), Bytes::from(v)))
        .collect();
        assert_eq!(record.headers, expected);
    }

    #[test]
    fn given_qos_and_flags_when_routed_should_render_header_text() {
        let r = router(&[rule("a", "t")]);
        let payload = Bytes::new();
        for (qos, flag) in [(0, false), (1, true), (2, false)] {
            let (_, record) = record_of(r.route(&Inbound {
                topic: "a",
                payload: &payload,
                qos,
                retain: flag,
                dup: !flag,
                received_ms: -5,
            }));
            assert_eq!(
                header(&record, header::MQTT_QOS),
                Some(qos.to_string().as_bytes())
            );
            assert_eq!(
                header(&record, header::MQTT_RETAIN),
                Some(flag.to_string().as_bytes())
            );
            assert_eq!(
                header(&record, header::MQTT_DUP),
                Some((!flag).to_string().as_bytes())
            );
            assert_eq!(header(&record, header::RECEIVED_MS), Some(&b"-5"[..]));
        }
    }

    #[test]
    fn given_no_matching_rule_when_routed_should_be_unmatched() {
        let r = router(&[rule("a/+", "t")]);
        let payload = Bytes::from_static(b"x");
        assert_eq!(route(&r, "a/b/c", &payload), Routed::Unmatched);
        assert_eq!(route(&r, "$SYS/x", &payload), Routed::Unmatched);
        assert_eq!(
            route(&router(&[rule("#", "t")]), "$SYS/x", &payload),
            Routed::Unmatched
        );
    }

    #[test]
    fn given_rules_when_compiled_should_list_subscriptions_and_count() {
        let mut zero = rule("b/#", "t2");
        zero.qos = 0;
        let r = router(&[rule("a/+", "t"), zero]);
        assert_eq!(r.rule_count(), 2);
        assert_eq!(
            r.subscriptions(),
            vec![("a/+".into(), 1), ("b/#".into(), 0)]
        );
        assert_eq!(router(&[]).rule_count(), 0);
    }

    #[test]
    fn given_invalid_rules_when_compiled_should_name_rule_and_key() {
        let mut no_dlq = rule("a", "t");
        no_dlq.key_json = Some("id".into());
        for (rules, expected) in [
            (
                vec![rule("a", "t"), rule("a/#/b", "t")],
                "ingress rule 2 (filter \"a/#/b\"): invalid `filter`",
            ),
            (
                vec![no_dlq],
                "ingress rule 1 (filter \"a\"): invalid `dead_letter_topic`",
            ),
        ] {
            let err = Router::new(&rules).expect_err(expected).to_string();
            assert!(err.contains(expected), "{err}");
        }
    }

    #[test]
    fn given_key_level_when_routed_should_key_by_that_topic_level() {
        let mut r = rule("trucks/+/gps", "gps");
        r.key_level = Some(1);
        let payload = Bytes::from_static(b"raw");
        let (_, record) = record_of(route(&router(&[r]), "trucks/T-42/gps", &payload));
        assert_eq!(record.key, Some(Bytes::from_static(b"T-42")));
        let mut empty = rule("trucks/+/gps", "gps");
        empty.key_level = Some(1);
        let (_, record) = record_of(route(&router(&[empty]), "trucks//gps", &payload));
        assert_eq!(record.key, Some(Bytes::new()));
    }

    #[test]
    fn given_key_json_when_routed_should_key_by_scalar_text() {
        let r = router(&[json_rule(|r| r.key_json = Some("truck.id".into()))]);
        for (payload, key) in [
            (r#"{"truck":{"id":"T-42"}}"#, "T-42"),
            (r#"{"truck":{"id":"é\"x"}}"#, "é\"x"),
            (r#"{"truck":{"id":42}}"#, "42"),
            (r#"{"truck":{"id":-1.5}}"#, "-1.5"),
            (r#"{"truck":{"id":true}}"#, "true"),
        ] {
            let payload = Bytes::from(payload);
            let (_, record) = record_of(route(&r, "trucks/1/gps", &payload));
            assert_eq!(record.key, Some(Bytes::from(key)), "{payload:?}");
            assert_eq!(record.value.as_ptr(), payload.as_ptr());
        }
    }

    #[test]
    fn given_nested_and_array_paths_when_routed_should_find_the_fields() {
        let r = router(&[json_rule(|r| {
            r.key_json = Some("fixes.1.id".into());
            r.timestamp_json = Some("fixes.0.ts".into());
            r.require = vec![
                "fixes.0.lat".into(),
                "meta.0".into(),
                "fixes.1.nothing".into(),
            ];
        })]);
        let payload = Bytes::from(
            r#"{"fixes":[{"ts":1000,"lat":null},{"id":"b","nothing":[]}],"meta":{"0":"x"}}"#,
        );
        let (_, record) = record_of(route(&r, "trucks/1/gps", &payload));
        assert_eq!(record.key, Some(Bytes::from_static(b"b")));
        assert_eq!(record.timestamp_ms, 1000);
    }

    #[test]
    fn given_timestamp_json_when_routed_should_convert_by_unit() {
        for (unit, value, expected) in [
            (TimestampUnit::Millis, "1700000000123", 1_700_000_000_123),
            (TimestampUnit::Millis, "0", 0),
            (TimestampUnit::Millis, "1.6", 2),
            (TimestampUnit::Millis, "253402300799999", MAX_TIMESTAMP_MS),
            (TimestampUnit::Seconds, "1700000000", 1_700_000_000_000),
            (TimestampUnit::Seconds, "1700000000.123", 1_700_000_000_123),
            (TimestampUnit::Seconds, "1.5e3", 1_500_000),
        ] {
            let r = router(&[json_rule(|r| {
                r.timestamp_json = Some("ts".into());
                r.timestamp_unit = unit;
            })]);
            let payload = Bytes::from(format!(r#"{{"ts":{value}}}"#));
            let (_, record) = record_of(route(&r, "trucks/1/gps", &payload));
            assert_eq!(record.timestamp_ms, expected, "{value} {unit:?}");
        }
    }

    #[test]
    fn given_bad_messages_when_routed_should_dead_letter_with_reason() {
        let with = |edit: fn(&mut IngressRule)| router(&[json_rule(edit)]);
        let cases: [(Router, &str, &str); 14] = [
            (
                with(|_| {}),
                "{\"a\":",
                "payload is not valid JSON: EOF while parsing",
            ),
            (with(|_| {}), "", "payload is not valid JSON"),
            (
                with(|r| r.require = vec!["a.b".into()]),
                r#"{"a":{}}"#,
                "required field `a.b` is missing",
            ),
            (
                with(|r| r.require = vec!["a.1".into()]),
                r#"{"a":[0]}"#,
                "required field `a.1` is missing",
            ),
            (
                with(|r| r.key_json = Some("id".into())),
                "{}",
                "key field `id` is missing",
            ),
            (
                with(|r| r.key_json = Some("id".into())),
                r#"{"id":null}"#,
                "key field `id` is not a scalar (found null)",
            ),
            (
                with(|r| r.key_json = Some("id".into())),
                r#"{"id":{}}"#,
                "not a scalar (found an object)",
            ),
            (
                with(|r| r.key_json = Some("id".into())),
                r#"{"id":[1]}"#,
                "not a scalar (found an array)",
            ),
            (
                with(|r| r.key_json = Some("id.x".into())),
                r#"{"id":"s"}"#,
                "key field `id.x` is missing",
            ),
            (
                with(|r| r.timestamp_json = Some("ts".into())),
                "{}",
                "timestamp field `ts` is missing",
            ),
            (
                with(|r| r.timestamp_json = Some("ts".into())),
                r#"{"ts":"2024-01-01"}"#,
                "not a number (found a string)",
            ),
            (
                with(|r| r.timestamp_json = Some("ts".into())),
                r#"{"ts":-1}"#,
                "timestamp field `ts` is -1, outside 0 to the year 9999",
            ),
            (
                with(|r| r.timestamp_json = Some("ts".into())),
                r#"{"ts":253402300800000}"#,
                "outside 0 to the year 9999 in milliseconds",
            ),
            (
                with(|r| {
                    r.timestamp_json = Some("ts".into());
                    r.timestamp_unit = TimestampUnit::Seconds;
                }),
                r#"{"ts":1e300}"#,
                "outside 0 to the year 9999 in seconds",
            ),
        ];
        for (r, payload, expected) in cases {
            let payload = Bytes::from(payload);
            let (record, reason) = dead_letter_of(route(&r, "trucks/7/gps", &payload));
            assert!(reason.contains(expected), "{payload:?}: {reason}");
            assert_eq!(&*record.topic, "gps-dlq");
            assert_eq!(record.value.as_ptr(), payload.as_ptr());
            assert_eq!(record.value, payload);
            assert_eq!(record.timestamp_ms, RECEIVED);
            assert_eq!(record.key, None);
            assert_eq!(header(&record, header::DLQ_REASON), Some(reason.as_bytes()));
            assert_eq!(
                header(&record, header::DLQ_RULE),
                Some(&b"trucks/+/gps"[..])
            );
            assert_eq!(
                header(&record, header::MQTT_TOPIC),
                Some(&b"trucks/7/gps"[..])
            );
            assert_eq!(record.headers.len(), 7);
        }
    }

    #[test]
    fn given_key_level_and_bad_json_when_routed_should_keep_level_key_in_dead_letter() {
        let r = router(&[json_rule(|r| r.key_level = Some(1))]);
        let payload = Bytes::from_static(b"nope");
        let routed = route(&r, "trucks/T-9/gps", &payload);
        let Routed::DeadLetter { rule, record, .. } = routed else {
            panic!("expected a dead letter, got {routed:?}");
        };
        assert_eq!(rule, 0);
        assert_eq!(record.key, Some(Bytes::from_static(b"T-9")));
        let payload = Bytes::from_static(b"[1,2]");
        let (_, record) = record_of(route(&r, "trucks/T-9/gps", &payload));
        assert_eq!(record.key, Some(Bytes::from_static(b"T-9")));
        assert_eq!(&*record.topic, "gps");
    }

    #[test]
    fn given_rule_without_json_when_payload_is_not_json_should_still_write_record() {
        let mut r = rule("a", "t");
        r.dead_letter_topic = Some("dlq".into());
        let payload = Bytes::from_static(b"{broken");
        let (_, record) = record_of(route(&router(&[r]), "a", &payload));
        assert_eq!(&*record.topic, "t");
    }

    #[test]
    fn given_field_paths_when_parsed_should_accept_dotted_names_and_reject_empty_segments() {
        for ok in ["a", "truck.id", "fixes.0.lat", "a b.ü", "0"] {
            assert_eq!(FieldPath::parse(ok).expect(ok).as_str(), ok);
        }
        for (bad, expected) in [
            ("", "empty"),
            (".a", "segment 0 is empty"),
            ("a.", "segment 1 is empty"),
            ("a..b", "segment 1 is empty"),
        ] {
            let err = FieldPath::parse(bad).expect_err(bad).to_string();
            assert!(err.contains(expected), "{bad:?}: {err}");
        }
        let value: Value =
            serde_json::from_str(r#"{"a":[{"b":1}],"99999999999999999999":2}"#).expect("json");
        let lookup = |p: &str| FieldPath::parse(p).expect(p).lookup(&value).cloned();
        assert_eq!(lookup("a.0.b"), Some(Value::from(1)));
        assert_eq!(lookup("a.b"), None);
        assert_eq!(lookup("a.0.b.c"), None);
        assert_eq!(lookup("99999999999999999999"), Some(Value::from(2)));
    }

    #[test]
    fn given_templates_when_rendered_should_substitute_placeholders() {
        for (template, key, expected) in [
            ("trucks/{key}/cmd", Some(&b"T-1"[..]), "trucks/T-1/cmd"),
            ("{topic}/{partition}", None, "commands/3"),
            ("{topic}/{partition}/{key}", Some(b"a/b"), "commands/3/a/b"),
            ("fixed", None, "fixed"),
            ("fixed", Some(b"\xff"), "fixed"),
            ("x{key}y{key}", Some(b"k"), "xkyk"),
            ("$share-less/{key}", Some(b" "), "$share-less/ "),
        ] {
            let rendered = render_egress_topic(template, key, "commands", 3).expect(template);
            assert_eq!(rendered, expected);
        }
        let t = TopicTemplate::parse("a/{key}").expect("valid");
        assert!(t.uses_key() && t.as_str() == "a/{key}");
        assert!(!TopicTemplate::parse("a").expect("valid").uses_key());
    }

    #[test]
    fn given_bad_templates_when_parsed_should_explain() {
        for (template, expected) in [
            ("", "empty"),
            ("a/{name}", "unknown placeholder `{name}`"),
            ("a/{}", "unknown placeholder `{}`"),
            ("a/{key", "the `{` at byte 2 is not closed"),
            ("a/{{key}}", "the `{` at byte 2 is not closed"),
            ("a/key}", "the `}` at byte 5 has no matching `{`"),
            ("a/+/{key}", "contains `+`"),
            ("a/#", "contains `#`"),
            ("a\0", "contains `\0`"),
        ] {
            let err = TopicTemplate::parse(template)
                .expect_err(template)
                .to_string();
            assert!(err.contains(expected), "{template:?}: {err}");
        }
        let long = "a".repeat(crate::filter::MAX_TOPIC_BYTES + 1);
        assert!(matches!(
            TopicTemplate::parse(&long),
            Err(TemplateError::TooLong { .. })
        ));
    }

    #[test]
    fn given_bad_keys_when_rendered_should_fail_naming_the_template() {
        for (key, expected) in [
            (None, "has no key"),
            (Some(&b""[..]), "key is empty"),
            (Some(b"\xff\xfe"), "not UTF-8"),
            (Some(b"a+b"), "contains '+'"),
            (Some(b"a/#"), "contains '#'"),
            (Some(b"a\0"), "contains '\\0'"),
        ] {
            let err = render_egress_topic("t/{key}", key, "x", 0)
                .expect_err(expected)
                .to_string();
            assert!(
                err.contains(expected) && err.contains("\"t/{key}\""),
                "{key:?}: {err}"
            );
        }
        let err = render_egress_topic("t/{nope}", Some(b"k"), "x", 0).expect_err("template");
        assert!(matches!(err, RenderError::Template(_)), "{err}");
        let long_key = "k".repeat(crate::filter::MAX_TOPIC_BYTES);
        let err = render_egress_topic("t/{key}", Some(long_key.as_bytes()), "x", 0)
            .expect_err("too long")
            .to_string();
        assert!(
            err.contains("rendered an invalid topic") && err.contains("65537 bytes"),
            "{err}"
        );
    }
}
