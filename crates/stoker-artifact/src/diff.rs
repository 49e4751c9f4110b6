//! Setting-by-setting differences between two serialised settings (a config's model spec and a
//! checkpoint's, a run's settings and the state it would resume), so a refusal can name the
//! value that changed instead of saying only that a hash differs.

use std::collections::BTreeSet;

use serde_json::Value;

/// One setting whose value differs: its dotted path (`model.hidden`) and both values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Difference {
    pub field: String,
    pub left: String,
    pub right: String,
}

impl Difference {
    pub fn new(field: impl Into<String>, left: impl ToString, right: impl ToString) -> Self {
        Self {
            field: field.into(),
            left: left.to_string(),
            right: right.to_string(),
        }
    }
}

/// The settings of `left` and `right` (under the dotted path `prefix`) that differ. Objects are
/// compared key by key; arrays and scalars as wholes. Objects whose `kind` tags differ are
/// other enum variants: that is the one difference, their fields do not correspond.
pub fn differences(prefix: &str, left: &Value, right: &Value) -> Vec<Difference> {
    let mut out = Vec::new();
    walk(prefix, left, right, &mut out);
    out
}

/// `field{sep}value, …` of each difference's left (`Side::Left`) or right side.
pub fn describe(diffs: &[Difference], side: Side, sep: &str) -> String {
    diffs
        .iter()
        .map(|d| {
            let value = match side {
                Side::Left => &d.left,
                Side::Right => &d.right,
            };
            format!("{}{sep}{value}", d.field)
        })
        .collect::<Vec<_>>()
        .join(", ")
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Left,
    Right,
}

fn walk(path: &str, left: &Value, right: &Value, out: &mut Vec<Difference>) {
    match (left, right) {
        (Value::Object(l), Value::Object(r)) => {
            if let (Some(a), Some(b)) = (l.get("kind"), r.get("kind"))
                && a != b
            {
                out.push(Difference::new(join(path, "kind"), show(a), show(b)));
                return;
            }
            let keys: BTreeSet<&String> = l.keys().chain(r.keys()).collect();
            for key in keys {
                let (a, b) = (l.get(key), r.get(key));
                walk(
                    &join(path, key),
                    a.unwrap_or(&Value::Null),
                    b.unwrap_or(&Value::Null),
                    out,
                );
            }
        }
        (a, b) if a != b => out.push(Difference::new(path, show(a), show(b))),
        _ => {}
    }
}

fn join(prefix: &str, key: &str) -> String {
    if prefix.is_empty() {
        key.into()
    } else {
        format!("{prefix}.{key}")
    }
}

/// A value as a config file would spell it: strings bare, absent keys said so.
fn show(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "(absent)".into(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn names_each_differing_leaf_by_its_dotted_path() {
        let a = json!({"kind": "cnn2d", "hidden": 16, "channels": [4, 8], "residual": true});
        let b = json!({"kind": "cnn2d", "hidden": 24, "channels": [4, 8], "residual": false});
        let d = differences("model", &a, &b);
        assert_eq!(
            d,
            [
                Difference::new("model.hidden", 16, 24),
                Difference::new("model.residual", true, false),
            ]
        );
        assert_eq!(
            describe(&d, Side::Left, " = "),
            "model.hidden = 16, model.residual = true"
        );
        assert_eq!(
            describe(&d, Side::Right, " "),
            "model.hidden 24, model.residual false"
        );
        assert!(differences("model", &a, &a).is_empty());
    }

    #[test]
    fn another_kind_is_one_difference() {
        let a = json!({"kind": "cnn2d", "hidden": 16});
        let b = json!({"kind": "lstm-attention", "hidden": 16, "layers": 2});
        assert_eq!(
            differences("model", &a, &b),
            [Difference::new("model.kind", "cnn2d", "lstm-attention")]
        );
    }

    #[test]
    fn a_key_on_one_side_only_is_absent_on_the_other() {
        let d = differences("", &json!({"a": {"b": 1}}), &json!({"a": {}}));
        assert_eq!(d, [Difference::new("a.b", 1, "(absent)")]);
    }
}
