//! The layout's promises, as `cargo metadata` and the sources show them: stages never depend on
//! one another, and each layer knows only the layers below it.
//!
//! ```text
//! stages (data, train, infer) ─▶ zoo (models) ─▶ runtime (fused ops, precision, device) ─▶ kernels
//!              │                    │                                                 (no burn)
//!              └───────────▶ artifact (formats), dsp (signal processing): no model code
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;

/// Every workspace crate with the names of everything it depends on, directly or through other
/// workspace crates. Outside crates enter only as some workspace crate's declared dependency,
/// so the declared (normal) dependencies of the members are the whole picture, and no registry
/// needs to be asked.
fn dependency_closure() -> BTreeMap<String, BTreeSet<String>> {
    let out = Command::new(env!("CARGO"))
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo metadata runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let direct: BTreeMap<String, Vec<String>> = meta["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            let deps = p["dependencies"]
                .as_array()
                .unwrap()
                .iter()
                // Dev and build dependencies say nothing of what a library links.
                .filter(|d| d["kind"].is_null())
                .map(|d| d["name"].as_str().unwrap().to_string())
                .collect();
            (p["name"].as_str().unwrap().to_string(), deps)
        })
        .collect();
    let mut closure = BTreeMap::new();
    for member in direct.keys() {
        let mut seen = BTreeSet::new();
        let mut todo = vec![member.clone()];
        while let Some(name) = todo.pop() {
            for dep in direct.get(&name).into_iter().flatten() {
                if seen.insert(dep.clone()) {
                    todo.push(dep.clone());
                }
            }
        }
        closure.insert(member.clone(), seen);
    }
    closure
}

/// Fails naming every (crate, forbidden dependency) pair found.
fn assert_knows_none(
    closure: &BTreeMap<String, BTreeSet<String>>,
    krate: &str,
    forbidden: &[&str],
) {
    let deps = closure
        .get(krate)
        .unwrap_or_else(|| panic!("{krate} is not a workspace member"));
    let found: Vec<_> = forbidden.iter().filter(|f| deps.contains(**f)).collect();
    assert!(found.is_empty(), "{krate} depends on {found:?}");
}

const STAGES: [&str; 3] = ["stoker-data", "stoker-train", "stoker-infer"];

#[test]
fn no_stage_crate_depends_on_another_stage_crate() {
    let closure = dependency_closure();
    for stage in STAGES {
        let others: Vec<&str> = STAGES.into_iter().filter(|s| *s != stage).collect();
        assert_knows_none(&closure, stage, &others);
    }
}

#[test]
fn contracts_and_signal_processing_know_no_model_code() {
    let closure = dependency_closure();
    let model_code = ["stoker-zoo", "stoker-runtime", "stoker-kernels", "burn"];
    for krate in ["stoker-artifact", "stoker-dsp"] {
        assert_knows_none(&closure, krate, &model_code);
        assert_knows_none(&closure, krate, &STAGES);
    }
}

#[test]
fn prepare_knows_no_model() {
    let closure = dependency_closure();
    assert_knows_none(
        &closure,
        "stoker-data",
        &["stoker-zoo", "stoker-runtime", "stoker-kernels", "burn"],
    );
}

#[test]
fn models_know_no_training_loop_and_the_runtime_knows_no_model() {
    let closure = dependency_closure();
    assert_knows_none(&closure, "stoker-zoo", &STAGES);
    assert_knows_none(&closure, "stoker-runtime", &["stoker-zoo"]);
    assert_knows_none(&closure, "stoker-runtime", &STAGES);
}

#[test]
fn kernels_know_no_burn_and_no_stoker_crate() {
    let closure = dependency_closure();
    let deps = &closure["stoker-kernels"];
    let found: Vec<_> = deps
        .iter()
        .filter(|d| d.starts_with("burn") || d.starts_with("stoker-") || *d == "cubecl")
        .collect();
    assert!(found.is_empty(), "stoker-kernels depends on {found:?}");
}

/// `unsafe` lives in the kernels and the memory-mapped store only, where each block has a
/// SAFETY comment; anywhere else it is a design change to discuss, not a local fix.
#[test]
fn unsafe_code_only_in_the_kernels_and_the_store() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let allowed = [
        Path::new("crates/stoker-kernels"),
        Path::new("crates/stoker-artifact/src/window_store.rs"),
    ];
    let mut offenders = Vec::new();
    for dir in ["crates", "xtask", "tests"] {
        visit(&root.join(dir), &mut |file| {
            let rel = file.strip_prefix(&root).unwrap();
            if file.extension().is_some_and(|e| e == "rs")
                && !allowed.iter().any(|a| rel.starts_with(a))
                && std::fs::read_to_string(file)
                    .unwrap()
                    .lines()
                    .any(|l| !l.trim_start().starts_with("//") && has_unsafe_keyword(l))
            {
                offenders.push(rel.display().to_string());
            }
        });
    }
    assert!(
        offenders.is_empty(),
        "the keyword is used outside the kernels and the store: {offenders:?}"
    );
}

fn has_unsafe_keyword(line: &str) -> bool {
    // The needle is split so that this file does not match itself.
    let keyword = ["un", "safe"].concat();
    line.split(|c: char| !c.is_alphanumeric() && c != '_')
        .any(|word| word == keyword)
}

fn visit(dir: &Path, f: &mut dyn FnMut(&Path)) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            if path.file_name().is_some_and(|n| n != "target") {
                visit(&path, f);
            }
        } else {
            f(&path);
        }
    }
}
