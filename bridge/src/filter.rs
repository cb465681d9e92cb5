//! MQTT topic syntax: topic filters (what the bridge subscribes to) and topic names (what it
//! publishes to), following MQTT 3.1.1 §4.7 and MQTT 5 §4.7.
//!
//! A [`TopicFilter`] is parsed once at start-up into its levels, so [`TopicFilter::matches`]
//! walks the topic with `split('/')` and compares slices: no allocation per message.
//!
//! Invariants of a parsed filter:
//! - its text is 1..=65535 bytes and contains no NUL;
//! - `+` and `#` only ever stand alone in a level, and `#` only as the last level;
//! - `levels` has one entry per `/`-separated level of the text (so at least one).
//!
//! Matching follows the spec, including its two corner cases: `a/#` also matches `a` (the
//! `#` matches zero levels), and a filter starting with a wildcard does not match a topic
//! starting with `$` (`#` does not match `$SYS/uptime`).

use std::fmt;
use std::str::FromStr;

/// Longest topic filter or topic name: MQTT encodes them with a 16-bit length prefix.
pub const MAX_TOPIC_BYTES: usize = 65_535;

/// Why a topic filter is not valid MQTT.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FilterError {
    #[error("MQTT topic filter is empty")]
    Empty,
    #[error("MQTT topic filter {start:?}… is {len} bytes long; the limit is {MAX_TOPIC_BYTES}")]
    TooLong { start: String, len: usize },
    #[error("MQTT topic filter {filter:?} contains a NUL character")]
    Nul { filter: String },
    #[error(
        "MQTT topic filter {filter:?}: `{wildcard}` in level {level} ({text:?}) must be the whole level"
    )]
    WildcardNotWholeLevel {
        filter: String,
        wildcard: char,
        level: usize,
        text: String,
    },
    #[error("MQTT topic filter {filter:?}: `#` must be the last level")]
    MultiLevelNotLast { filter: String },
}

/// Why a string is not a valid MQTT topic name (the topic of a PUBLISH).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TopicNameError {
    #[error("MQTT topic name is empty")]
    Empty,
    #[error("MQTT topic name {start:?}… is {len} bytes long; the limit is {MAX_TOPIC_BYTES}")]
    TooLong { start: String, len: usize },
    #[error("MQTT topic name {name:?} contains a NUL character")]
    Nul { name: String },
    #[error(
        "MQTT topic name {name:?} contains the wildcard `{wildcard}`; wildcards are only allowed in filters"
    )]
    Wildcard { name: String, wildcard: char },
}

/// One level of a filter.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Level {
    /// Matches exactly this text (possibly empty).
    Literal(Box<str>),
    /// `+`: any one level, including an empty one.
    Single,
    /// `#`: zero or more levels; always the last level.
    Multi,
}

impl Level {
    fn is_wildcard(&self) -> bool {
        !matches!(self, Level::Literal(_))
    }

    fn as_str(&self) -> &str {
        match self {
            Level::Literal(text) => text,
            Level::Single => "+",
            Level::Multi => "#",
        }
    }
}

/// A parsed MQTT topic filter such as `trucks/+/gps` or `sensors/#`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicFilter {
    text: Box<str>,
    levels: Box<[Level]>,
}

impl TopicFilter {
    /// Parses `filter`, rejecting anything an MQTT 3.1.1 or 5 server would refuse.
    pub fn parse(filter: &str) -> Result<Self, FilterError> {
        if filter.is_empty() {
            return Err(FilterError::Empty);
        }
        if filter.len() > MAX_TOPIC_BYTES {
            return Err(FilterError::TooLong {
                start: prefix(filter),
                len: filter.len(),
            });
        }
        if filter.contains('\0') {
            return Err(FilterError::Nul {
                filter: filter.to_owned(),
            });
        }
        let count = filter.split('/').count();
        let mut levels = Vec::with_capacity(count);
        for (index, text) in filter.split('/').enumerate() {
            let level = match text {
                "+" => Level::Single,
                "#" if index + 1 == count => Level::Multi,
                "#" => {
                    return Err(FilterError::MultiLevelNotLast {
                        filter: filter.to_owned(),
                    });
                }
                _ => {
                    if let Some(wildcard) = text.chars().find(|c| matches!(c, '+' | '#')) {
                        return Err(FilterError::WildcardNotWholeLevel {
                            filter: filter.to_owned(),
                            wildcard,
                            level: index,
                            text: text.to_owned(),
                        });
                    }
                    Level::Literal(text.into())
                }
            };
            levels.push(level);
        }
        Ok(TopicFilter {
            text: filter.into(),
            levels: levels.into(),
        })
    }

    /// The filter as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Number of `/`-separated levels (at least 1).
    pub fn level_count(&self) -> usize {
        self.levels.len()
    }

    /// Level `index` (0-based) as written: a literal, `+` or `#`.
    pub fn level(&self, index: usize) -> Option<&str> {
        self.levels.get(index).map(Level::as_str)
    }

    /// Whether level `index` is the multi-level wildcard `#`.
    pub fn is_multi_level(&self, index: usize) -> bool {
        matches!(self.levels.get(index), Some(Level::Multi))
    }

    /// Whether this filter matches the topic name `topic` (assumed valid: the broker only
    /// delivers valid names). Does not allocate.
    pub fn matches(&self, topic: &str) -> bool {
        if topic.starts_with('$') && self.levels[0].is_wildcard() {
            return false;
        }
        let mut names = topic.split('/');
        for level in self.levels.iter() {
            match level {
                Level::Multi => return true,
                Level::Single => {
                    if names.next().is_none() {
                        return false;
                    }
                }
                Level::Literal(text) => {
                    if names.next() != Some(&**text) {
                        return false;
                    }
                }
            }
        }
        names.next().is_none()
    }

    /// Whether some valid topic name is matched by both filters. A broker delivers a message
    /// on such a topic once per matching subscription.
    pub fn overlaps(&self, other: &TopicFilter) -> bool {
        self.overlap_example(other).is_some()
    }

    /// A topic name matched by both filters, if there is one (for error messages).
    pub fn overlap_example(&self, other: &TopicFilter) -> Option<String> {
        let (a, b) = (&*self.levels, &*other.levels);
        if dollar_excludes(a, b) || dollar_excludes(b, a) {
            return None;
        }
        let mut example: Vec<&str> = Vec::with_capacity(a.len().max(b.len()) + 1);
        let mut index = 0;
        loop {
            match (a.get(index), b.get(index)) {
                (Some(Level::Multi), _) => return finish(example, b.get(index..)),
                (_, Some(Level::Multi)) => return finish(example, a.get(index..)),
                (None, None) => return finish(example, None),
                (None, Some(_)) | (Some(_), None) => return None,
                (Some(x), Some(y)) => {
                    let text = match (x, y) {
                        (Level::Literal(x), Level::Literal(y)) if x == y => &**x,
                        (Level::Literal(_), Level::Literal(_)) => return None,
                        (Level::Literal(text), _) | (_, Level::Literal(text)) => &**text,
                        _ => "x",
                    };
                    example.push(text);
                }
            }
            index += 1;
        }
    }
}

/// `$`-topics are invisible to filters starting with a wildcard: if `a` starts with one and
/// every topic `b` matches starts with `$`, nothing matches both.
fn dollar_excludes(a: &[Level], b: &[Level]) -> bool {
    a[0].is_wildcard() && matches!(&b[0], Level::Literal(text) if text.starts_with('$'))
}

/// Completes an overlap example: the levels agreed so far, then `rest` (what the side not
/// at `#` still requires; the `#` absorbs it). `+` and `#` in `rest` become one level `x`.
fn finish<'a>(mut example: Vec<&'a str>, rest: Option<&'a [Level]>) -> Option<String> {
    for level in rest.unwrap_or_default() {
        example.push(match level {
            Level::Literal(text) => &**text,
            Level::Single | Level::Multi => "x",
        });
    }
    if example.is_empty() {
        example.push("x");
    }
    // A single empty level is the empty string, which is not a topic name.
    if example == [""] {
        return None;
    }
    Some(example.join("/"))
}

impl fmt::Display for TopicFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl FromStr for TopicFilter {
    type Err = FilterError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        TopicFilter::parse(s)
    }
}

/// Checks that `name` can be the topic of a PUBLISH: non-empty, at most 65535 bytes, no NUL,
/// no wildcard.
pub fn validate_topic_name(name: &str) -> Result<(), TopicNameError> {
    if name.is_empty() {
        return Err(TopicNameError::Empty);
    }
    if name.len() > MAX_TOPIC_BYTES {
        return Err(TopicNameError::TooLong {
            start: prefix(name),
            len: name.len(),
        });
    }
    if let Some(c) = name.chars().find(|c| matches!(c, '\0' | '+' | '#')) {
        return Err(if c == '\0' {
            TopicNameError::Nul {
                name: name.to_owned(),
            }
        } else {
            TopicNameError::Wildcard {
                name: name.to_owned(),
                wildcard: c,
            }
        });
    }
    Ok(())
}

/// The first few characters of an over-long string, for an error message.
fn prefix(text: &str) -> String {
    text.chars().take(32).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filter(text: &str) -> TopicFilter {
        TopicFilter::parse(text).expect("test filter is valid")
    }

    #[test]
    fn given_valid_filters_when_parsed_should_keep_text_and_levels() {
        for (text, levels) in [
            ("a", &["a"][..]),
            ("a/b/c", &["a", "b", "c"]),
            ("#", &["#"]),
            ("+", &["+"]),
            ("a/+/c/#", &["a", "+", "c", "#"]),
            ("/", &["", ""]),
            ("/a/", &["", "a", ""]),
            ("+/+", &["+", "+"]),
            ("$SYS/#", &["$SYS", "#"]),
            ("a b/ü/€", &["a b", "ü", "€"]),
        ] {
            let f = filter(text);
            assert_eq!(f.as_str(), text);
            assert_eq!(f.to_string(), text);
            assert_eq!(f.level_count(), levels.len(), "{text}");
            for (i, level) in levels.iter().enumerate() {
                assert_eq!(f.level(i), Some(*level), "{text} level {i}");
            }
            assert_eq!(f.level(levels.len()), None);
        }
    }

    #[test]
    fn given_invalid_filters_when_parsed_should_name_the_problem() {
        for (text, expected) in [
            ("", "empty"),
            ("a\0b", "NUL"),
            ("a/#/b", "`#` must be the last level"),
            ("#/a", "`#` must be the last level"),
            ("a#", "`#` in level 0"),
            ("a/b#", "`#` in level 1"),
            ("a/#b", "`#` in level 1"),
            ("a+", "`+` in level 0"),
            ("a/+b/c", "`+` in level 1"),
            ("++", "`+` in level 0"),
            ("##", "`#` in level 0"),
        ] {
            let err = TopicFilter::parse(text).expect_err(text).to_string();
            assert!(err.contains(expected), "{text:?}: {err}");
            if !text.is_empty() {
                assert!(err.contains(&format!("{text:?}")), "{text:?}: {err}");
            }
        }
    }

    #[test]
    fn given_filter_at_length_limit_when_parsed_should_accept_and_one_more_byte_should_reject() {
        let max = "a".repeat(MAX_TOPIC_BYTES);
        assert!(TopicFilter::parse(&max).is_ok());
        let err = TopicFilter::parse(&format!("{max}a")).expect_err("too long");
        assert!(err.to_string().contains("65536 bytes"), "{err}");
    }

    #[test]
    fn given_filter_when_parsed_via_from_str_should_equal_parse() {
        let parsed: TopicFilter = "a/+".parse().expect("valid");
        assert_eq!(parsed, filter("a/+"));
        assert!(filter("a/#").is_multi_level(1));
        assert!(!filter("a/+").is_multi_level(1));
    }

    #[test]
    fn given_filters_and_topics_when_matched_should_follow_mqtt_rules() {
        for (f, topic, expected) in [
            ("a", "a", true),
            ("a", "b", false),
            ("a", "a/b", false),
            ("a/b", "a", false),
            ("a/#", "a", true),
            ("a/#", "a/", true),
            ("a/#", "a/b/c", true),
            ("a/#", "ab", false),
            ("a/#", "b/a", false),
            ("#", "a", true),
            ("#", "/", true),
            ("#", "a/b/c", true),
            ("+", "a", true),
            ("+", "a/b", false),
            ("+", "/", false),
            ("+/+", "/", true),
            ("/+", "/", true),
            ("/+", "/a", true),
            ("/+", "a", false),
            ("a/+", "a/", true),
            ("a/+", "a", false),
            ("a/+/c", "a/b/c", true),
            ("a/+/c", "a/b/d", false),
            ("a/+/#", "a/b", true),
            ("a/+/#", "a", false),
            ("+/#", "a", true),
            ("trucks/+/gps", "trucks/42/gps", true),
            ("trucks/+/gps", "trucks/42/gps/x", false),
            ("#", "$SYS/uptime", false),
            ("+/uptime", "$SYS/uptime", false),
            ("+/#", "$SYS", false),
            ("$SYS/#", "$SYS/uptime", true),
            ("$SYS/#", "$SYS", true),
            ("$SYS/+", "$SYS/uptime", true),
            ("a/$x", "a/$x", true),
            ("+/$x", "a/$x", true),
            ("A", "a", false),
        ] {
            assert_eq!(filter(f).matches(topic), expected, "{f:?} vs {topic:?}");
        }
    }

    #[test]
    fn given_filter_pairs_when_overlaps_checked_should_be_symmetric_and_correct() {
        for (a, b, expected) in [
            ("a", "a", true),
            ("a", "b", false),
            ("a/b", "a/+", true),
            ("a/b", "+/b", true),
            ("a/b", "+/c", false),
            ("a/#", "a", true),
            ("a/#", "a/b/c", true),
            ("a/#", "b/#", false),
            ("a/#", "+/b", true),
            ("a/+", "a", false),
            ("a/+", "a/+/+", false),
            ("a/+/#", "a", false),
            ("a/+/#", "a/b", true),
            ("#", "a/b", true),
            ("#", "#", true),
            ("+", "+", true),
            ("+", "#", true),
            ("+", "a/b", false),
            ("+/+", "#", true),
            ("trucks/+/gps", "trucks/7/#", true),
            ("trucks/+/gps", "trucks/+/temp", false),
            ("#", "$SYS/#", false),
            ("+/x", "$SYS/x", false),
            ("$SYS/#", "$SYS/+", true),
            ("$SYS/#", "$OTHER/#", false),
            ("+", "/", false),
            ("+/+", "/", true),
            ("/#", "+", false),
            ("/#", "#", true),
            ("/#", "/", true),
            ("/#", "+/#", true),
            ("/+", "/#", true),
        ] {
            let (fa, fb) = (filter(a), filter(b));
            assert_eq!(fa.overlaps(&fb), expected, "{a:?} vs {b:?}");
            assert_eq!(fb.overlaps(&fa), expected, "{b:?} vs {a:?}");
            if let Some(example) = fa.overlap_example(&fb) {
                assert!(validate_topic_name(&example).is_ok(), "{example:?}");
                assert!(fa.matches(&example) && fb.matches(&example), "{example:?}");
            }
        }
    }

    /// Every level sequence of length 1..=max over `alphabet`, joined with `/`.
    fn all_joined(alphabet: &[&str], max: usize) -> Vec<String> {
        let mut out = Vec::new();
        let mut current: Vec<Vec<&str>> = vec![vec![]];
        for _ in 0..max {
            let mut next = Vec::new();
            for prefix in &current {
                for level in alphabet {
                    let mut levels = prefix.clone();
                    levels.push(level);
                    out.push(levels.join("/"));
                    next.push(levels);
                }
            }
            current = next;
        }
        out
    }

    #[test]
    fn given_small_universe_when_overlaps_checked_should_agree_with_brute_force() {
        let filters: Vec<TopicFilter> = all_joined(&["a", "", "$s", "+", "#"], 3)
            .iter()
            .filter_map(|text| TopicFilter::parse(text).ok())
            .collect();
        // "b" is a level no filter names, standing for "any other text".
        let topics: Vec<String> = all_joined(&["a", "b", "", "$s"], 4)
            .into_iter()
            .filter(|t| validate_topic_name(t).is_ok())
            .collect();
        for fa in &filters {
            for fb in &filters {
                let brute = topics.iter().any(|t| fa.matches(t) && fb.matches(t));
                assert_eq!(fa.overlaps(fb), brute, "{fa} vs {fb}");
            }
        }
    }

    #[test]
    fn given_topic_names_when_validated_should_reject_wildcards_nul_and_empty() {
        for ok in ["a", "/", "a/b", "$SYS/x", "a b"] {
            assert!(validate_topic_name(ok).is_ok(), "{ok:?}");
        }
        for (bad, expected) in [
            ("", "empty"),
            ("a/+", "wildcard `+`"),
            ("a/#", "wildcard `#`"),
            ("a#b", "wildcard `#`"),
            ("a\0", "NUL"),
        ] {
            let err = validate_topic_name(bad).expect_err(bad).to_string();
            assert!(err.contains(expected), "{bad:?}: {err}");
        }
        let long = "a".repeat(MAX_TOPIC_BYTES + 1);
        assert!(matches!(
            validate_topic_name(&long),
            Err(TopicNameError::TooLong { len: 65_536, .. })
        ));
    }
}
