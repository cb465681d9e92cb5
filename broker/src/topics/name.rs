//! Topic name rules, as Kafka enforces them: 1–249 characters of `[a-zA-Z0-9._-]`, not `.`
//! or `..`; and since `.` and `_` map to the same metric name, two topics may not differ
//! only in those characters.

/// Longest legal topic name.
pub const MAX_LEN: usize = 249;

/// Checks a topic name; the error says what is wrong with it.
pub fn validate(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("topic name is empty".into());
    }
    if name == "." || name == ".." {
        return Err(format!("topic name cannot be {name:?}"));
    }
    if name.len() > MAX_LEN {
        return Err(format!(
            "topic name is {} characters, the maximum is {MAX_LEN}",
            name.len()
        ));
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(format!(
            "topic name {name:?} contains {bad:?}; legal characters are ASCII letters, digits, '.', '_' and '-'"
        ));
    }
    Ok(())
}

/// The form under which names collide (`.` and `_` are the same).
pub fn collision_key(name: &str) -> String {
    name.replace('.', "_")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kafka_rules_are_enforced() {
        for ok in ["a", "trucks.gps", "x_y-z.9", &"a".repeat(249)] {
            assert!(validate(ok).is_ok(), "{ok}");
        }
        for bad in ["", ".", "..", "a/b", "a b", "ü", &"a".repeat(250)] {
            assert!(validate(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn dot_and_underscore_collide() {
        assert_eq!(collision_key("a.b"), collision_key("a_b"));
        assert_ne!(collision_key("a.b"), collision_key("a-b"));
    }
}
