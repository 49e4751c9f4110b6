//! The stage boundary, as `cargo metadata` sees it: no stage crate depends on another.

use std::process::Command;

#[test]
fn no_stage_crate_depends_on_another_stage_crate() {
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
    let stages = ["stoker-data", "stoker-train", "stoker-infer"];
    let mut seen = 0;
    for package in meta["packages"].as_array().unwrap() {
        let name = package["name"].as_str().unwrap();
        if !stages.contains(&name) {
            continue;
        }
        seen += 1;
        for dep in package["dependencies"].as_array().unwrap() {
            let dep = dep["name"].as_str().unwrap();
            assert!(
                !stages.contains(&dep),
                "stage {name} depends on stage {dep}"
            );
        }
    }
    assert_eq!(seen, stages.len(), "every stage crate is in the workspace");
}
