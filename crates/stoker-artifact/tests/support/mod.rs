//! What the fuzz-style tests share: a seeded generator, hostile values, and damaged variants of
//! a JSON artifact. (Also included by other crates' fuzz tests through `#[path]`.)

#![allow(dead_code)]

use std::panic::{AssertUnwindSafe, catch_unwind};

use serde_json::{Value, json};

/// xorshift64*: deterministic, so a failing case is reproduced by its seed.
pub struct Rng(pub u64);

impl Rng {
    /// The generator of fuzz case `case`.
    pub fn for_case(case: u64) -> Self {
        Self(case.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    /// A size field value: small, near a power of two, or all ones, the values that wrap.
    pub fn size(&mut self) -> u64 {
        match self.below(4) {
            0 => self.next() % 256,
            1 => 1u64 << self.below(64),
            2 => (1u64 << self.below(64)).wrapping_add(self.next() % 16),
            _ => u64::MAX - self.next() % 16,
        }
    }

    /// A value a numeric field should not hold, or one at the edge of what it may: wrapping
    /// sizes, negatives, huge and tiny floats, off-by-one neighbours of `current`, other types.
    pub fn hostile(&mut self, current: &Value) -> Value {
        let n = current.as_f64().unwrap_or(1.0);
        match self.below(11) {
            0 | 1 => json!(self.size()),
            // The few largest values: one more row or step and they wrap.
            10 => json!(u64::MAX - self.next() % 4),
            2 => json!(-(self.size() as i64).abs().max(1)),
            3 => json!([1e308, -1e308, 5e-324, -0.0, 0.5, 1.5, 1e19, -1.0][self.below(8)]),
            4 => json!(n + 1.0),
            5 => json!(n - 1.0),
            6 => json!(n * 2.0),
            7 => json!(["NaN", "inf", "-1", ""][self.below(4)]),
            8 => [Value::Null, json!(true), json!([]), json!({})][self.below(4)].clone(),
            _ => json!((0..self.below(64)).map(|_| self.size()).collect::<Vec<_>>()),
        }
    }
}

/// JSON pointers (`/features/3/mean`) of every value inside `v`, `v` itself excluded.
fn pointers(v: &Value, at: &str, out: &mut Vec<String>) {
    let children: Vec<(String, &Value)> = match v {
        Value::Object(map) => map
            .iter()
            .map(|(k, c)| (k.replace('~', "~0").replace('/', "~1"), c))
            .collect(),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .map(|(i, c)| (i.to_string(), c))
            .collect(),
        _ => Vec::new(),
    };
    for (key, child) in children {
        let path = format!("{at}/{key}");
        out.push(path.clone());
        pointers(child, &path, out);
    }
}

/// One damaged variant of the JSON document `valid`: one to three edits among hostile values
/// in random places (mostly numbers), removed keys and array items, unknown keys, then maybe
/// byte-level damage (a flipped byte, a cut, a `NaN` or `1e999` spliced in).
pub fn mutate_json(valid: &Value, rng: &mut Rng) -> Vec<u8> {
    let mut doc = valid.clone();
    for _ in 0..1 + rng.below(3) {
        let mut all = Vec::new();
        pointers(&doc, "", &mut all);
        let numbers: Vec<&String> = all
            .iter()
            .filter(|p| doc.pointer(p).is_some_and(Value::is_number))
            .collect();
        let kind = rng.below(10);
        let target = if kind < 6 && !numbers.is_empty() {
            numbers[rng.below(numbers.len())].clone()
        } else if !all.is_empty() {
            all[rng.below(all.len())].clone()
        } else {
            continue;
        };
        let (parent, key) = target.rsplit_once('/').unwrap_or(("", ""));
        let parent_key = key.replace("~1", "/").replace("~0", "~");
        match kind {
            // A number, or any value, replaced by a hostile one.
            0..=7 => {
                let current = doc.pointer(&target).cloned().unwrap_or(Value::Null);
                let value = rng.hostile(&current);
                if let Some(slot) = doc.pointer_mut(&target) {
                    *slot = value;
                }
            }
            // Removed: a key (a missing field) or an array item (a shorter list).
            8 => match doc.pointer_mut(parent) {
                Some(Value::Object(map)) => {
                    map.remove(&parent_key);
                }
                Some(Value::Array(items)) => {
                    if let Ok(i) = parent_key.parse::<usize>() {
                        items.remove(i);
                    }
                }
                _ => {}
            },
            // An unknown key beside a known one.
            _ => {
                if let Some(Value::Object(map)) = doc.pointer_mut(parent) {
                    map.insert("unexpected".into(), json!(rng.size()));
                }
            }
        }
    }
    let mut bytes = serde_json::to_vec_pretty(&doc).expect("a JSON value serialises");
    match rng.below(8) {
        0 => {
            let at = rng.below(bytes.len());
            bytes[at] = rng.next() as u8;
        }
        1 => bytes.truncate(rng.below(bytes.len() + 1)),
        2 => {
            let at = rng.below(bytes.len() + 1);
            let junk: &[u8] = [&b"NaN"[..], b"1e999", b"-", b"\"", b"}", b"\xff"][rng.below(6)];
            bytes.splice(at..at, junk.iter().copied());
        }
        _ => {}
    }
    bytes
}

/// Runs `case`: Ok(true) if it opened the damaged file, Ok(false) if it refused it with an
/// acceptable error, Err with the problem (a panic's message, or an unacceptable error).
pub fn outcome(case: impl FnOnce() -> Result<bool, String>) -> Result<bool, String> {
    catch_unwind(AssertUnwindSafe(case)).unwrap_or_else(|panic| {
        let text = panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_default();
        Err(format!("panicked: {text}"))
    })
}
