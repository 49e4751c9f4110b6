//! `cargo xtask export` on a tiny trained model: both files appear, model.json describes the
//! safetensors file, and its weights are the checkpoint's.

mod common;

use burn::prelude::*;
use common::*;
use stoker_artifact::export::read_safetensors;
use stoker_artifact::{ArtifactLayout, CheckpointMeta, ExportMeta, ModelSpec};

#[test]
fn export_writes_the_checkpoint_under_pytorch_names() {
    let dir = tempfile::tempdir().unwrap();
    let csv = synthetic_csv(dir.path(), 3);
    let config = tiny_config(dir.path(), &csv, 2011, 2012);
    let art = dir.path().join("art");
    let (config, art_s) = (config.to_str().unwrap(), art.to_str().unwrap());
    let layout = ArtifactLayout::new(&art);
    let export = ["export", "--config", config, "--artifacts", art_s];

    run_stages(dir.path(), config, art_s, &["prepare"], &[]);
    // No checkpoint yet: one line naming the missing file, nothing written.
    let o = xtask(&export, dir.path());
    assert!(!o.status.success());
    let err = stderr(&o);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(
        err.contains("best.json") && err.contains("not found"),
        "{err}"
    );
    assert!(!layout.export_dir().exists());

    run_stages(dir.path(), config, art_s, &["train"], &[]);
    // A checkpoint of other prepared data (its manifest hash differs) is refused, naming it.
    let best_json = layout.train_dir().join("best.json");
    let original = std::fs::read_to_string(&best_json).unwrap();
    let mut stale: serde_json::Value = serde_json::from_str(&original).unwrap();
    stale["manifest_sha256"] = "0".repeat(64).into();
    std::fs::write(&best_json, stale.to_string()).unwrap();
    let o = xtask(&export, dir.path());
    assert!(!o.status.success());
    let err = stderr(&o);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(
        err.contains("best.json") && err.contains("manifest hash"),
        "{err}"
    );
    assert!(!layout.export_dir().exists());
    std::fs::write(&best_json, original).unwrap();

    let o = xtask(&export, dir.path());
    assert!(o.status.success(), "{}", stderr(&o));
    let meta_path = layout.export_dir().join("model.json");
    let weights = layout.export_dir().join("model.safetensors");
    assert_eq!(
        stdout(&o).lines().last().unwrap(),
        meta_path.to_str().unwrap()
    );
    let meta = ExportMeta::load(&meta_path).unwrap();
    let best = CheckpointMeta::load(&layout.train_dir().join("best.json")).unwrap();
    assert_eq!(meta.weights, "model.safetensors");
    assert_eq!(meta.model, best.model);
    assert!(matches!(meta.model, ModelSpec::Cnn2d(ref s) if s.residual));
    assert_eq!(meta.window, best.window);
    assert_eq!(meta.features.len(), 11);
    assert!(
        meta.features
            .iter()
            .all(|f| f.std > 0.0 && f.mean.is_finite())
    );
    assert_eq!(meta.targets, vec![0]);
    assert_eq!(meta.checkpoint.name, "best");
    assert_eq!(meta.checkpoint.epoch, best.epoch);
    assert_eq!(meta.checkpoint.manifest_sha256, best.manifest_sha256);

    // The tensor list is the file's; the names are the peer's nn.Sequential indices.
    let tensors = read_safetensors(&weights).unwrap();
    let listed: Vec<(String, Vec<usize>)> = meta
        .tensors
        .iter()
        .map(|t| (t.name.clone(), t.shape.clone()))
        .collect();
    let stored: Vec<(String, Vec<usize>)> = tensors
        .iter()
        .map(|t| (t.name.clone(), t.shape.clone()))
        .collect();
    assert_eq!(listed, stored);
    let names: Vec<&str> = listed.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "net.0.bias",
            "net.0.weight",
            "net.2.bias",
            "net.2.weight",
            "net.6.bias",
            "net.6.weight",
            "net.8.bias",
            "net.8.weight"
        ]
    );

    // The exported weights, loaded back, compute what the checkpoint computes.
    let device = Device::flex();
    let (model, _) = stoker_zoo::checkpoint::load(&layout.train_dir(), "best", &device).unwrap();
    let (fresh, _) = stoker_zoo::checkpoint::load(&layout.train_dir(), "best", &device).unwrap();
    let loaded = fresh.load_pytorch_file(&weights).unwrap();
    let x = Tensor::<3>::random(
        [4, best.window.input_len, 11],
        burn::tensor::Distribution::Default,
        &device,
    );
    assert_eq!(
        model
            .forward(x.clone())
            .into_data()
            .try_to_vec::<f32>()
            .unwrap(),
        loaded.forward(x).into_data().try_to_vec::<f32>().unwrap()
    );

    // --last exports the last checkpoint, replacing the directory whole.
    let mut last = export.to_vec();
    last.push("--last");
    let o = xtask(&last, dir.path());
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        ExportMeta::load(&meta_path).unwrap().checkpoint.name,
        "last"
    );
    let leftovers: Vec<_> = std::fs::read_dir(layout.root())
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("tmp") || n.contains(".old-"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}
