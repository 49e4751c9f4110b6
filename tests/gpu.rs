//! The GPU path on wgpu (in CI: Mesa's lavapipe, a real Vulkan implementation on the CPU).
//! Built only with `--features wgpu`; skipped with a message when no adapter is found.

#![cfg(feature = "wgpu")]

mod common;

use std::path::{Path, PathBuf};

use burn::prelude::*;
use common::*;
use stoker_artifact::{Cnn2dSpec, LossKind, LstmAttentionSpec, ModelSpec, WindowSpec};
use stoker_runtime::Autocast;
use stoker_train::{HostBatch, batch_gradients, optimizer};
use stoker_zoo::{InputShape, Model};

fn wgpu() -> Option<Device> {
    let probe = std::panic::catch_unwind(|| {
        let device = stoker_runtime::device::parse_device("wgpu").ok()?;
        Tensor::<1>::ones([4], &device)
            .sum()
            .into_scalar::<f32>()
            .eq(&4.0)
            .then_some(device)
    });
    match probe {
        Ok(Some(device)) => Some(device),
        _ => {
            eprintln!("skipped: no wgpu adapter (install mesa-vulkan-drivers for a software one)");
            None
        }
    }
}

/// A temporary directory holding an ETT-format series of `rows` rows, for a test that needs a
/// wgpu adapter; None (the test is skipped) without one.
fn ett_series_for_wgpu(rows: usize) -> Option<(tempfile::TempDir, PathBuf)> {
    wgpu()?;
    let dir = tempfile::tempdir().unwrap();
    let csv = ett_csv(dir.path(), rows);
    Some((dir, csv))
}

/// Prepare has no device; train and predict run on wgpu.
fn prepare_then_train_and_predict_on_wgpu(cwd: &Path, config: &Path, art: &Path) {
    let (c, a) = (config.to_str().unwrap(), art.to_str().unwrap());
    run_stages(cwd, c, a, &["prepare"], &[]);
    run_stages(cwd, c, a, &["train", "predict"], &["--device", "wgpu"]);
}

#[test]
fn every_zoo_model_runs_end_to_end_on_wgpu() {
    // A short ETT-format series keeps lavapipe (a CPU emulating a GPU) quick.
    let Some((dir, csv)) = ett_series_for_wgpu(700) else {
        return;
    };
    let config = |name: &str, model: &str| {
        let path = dir.path().join(format!("{name}.toml"));
        std::fs::write(
            &path,
            format!(
                "[data]\ninput = \"{}\"\ninput_len = 24\noutput_len = 12\n\
                 source = {{ kind = \"ett\", train_rows = 400, val_rows = 150, test_rows = 150 }}\n\
                 [model]\n{model}\n[train]\nepochs = 1\nbatch_size = 64\n",
                csv.display()
            ),
        )
        .unwrap();
        path
    };
    let cnn = config("cnn2d", "kind = \"cnn2d\"\nchannels = [4, 8]\nhidden = 16");
    let lstm = config(
        "lstm",
        "kind = \"lstm-attention\"\nhidden = 8\nlayers = 1\nattention = 4\ninstance_norm = true\nlinear_skip = true",
    );
    for (name, config) in [("cnn2d", cnn), ("lstm-attention", lstm)] {
        let art = dir.path().join(name);
        prepare_then_train_and_predict_on_wgpu(dir.path(), &config, &art);
        let metrics =
            stoker_artifact::ForecastMetrics::load(&art.join("predict/metrics.json")).unwrap();
        assert!(metrics.mse.is_finite(), "{name}: {metrics:?}");
    }
    // Multiband ANC: filterbank conv, unfolded band windows, batched band matmuls and the
    // secondary-path conv in the loss, all on the device.
    let config = synthetic_anc_task(
        dir.path(),
        "filter_taps = 33\ntaps = 32\nhidden = 16\n[train]\nepochs = 1\nbatch_size = 4\n\
         [predict]\nbatch_size = 2048\nfxnlms_taps = 64",
    );
    let art = dir.path().join("anc");
    prepare_then_train_and_predict_on_wgpu(dir.path(), &config, &art);
    let metrics = stoker_artifact::AncMetrics::load(&art.join("predict/metrics.json")).unwrap();
    assert!(metrics.nr_db.is_finite(), "anc: {metrics:?}");
}

/// burn's kernel fusion on (the default) and off (`--no-fusion`) train to the same losses, and
/// fusion really ran in one and not the other (burn-fusion's log names each strategy it picks).
#[test]
fn fused_and_unfused_training_agree() {
    let Some((dir, csv)) = ett_series_for_wgpu(600) else {
        return;
    };
    let config = dir.path().join("lstm.toml");
    std::fs::write(
        &config,
        format!(
            "seed = 3\n[data]\ninput = \"{}\"\ninput_len = 24\noutput_len = 12\n\
             source = {{ kind = \"ett\", train_rows = 400, val_rows = 100, test_rows = 100 }}\n\
             [model]\nkind = \"lstm-attention\"\nhidden = 8\nlayers = 1\nattention = 4\n\
             [train]\nepochs = 1\nbatch_size = 64\n",
            csv.display()
        ),
    )
    .unwrap();
    let c = config.to_str().unwrap();
    let train = |art: &str, extra: &[&str]| {
        run_stages(dir.path(), c, art, &["prepare"], &[]);
        let mut args = vec![
            "train",
            "--config",
            c,
            "--artifacts",
            art,
            "--device",
            "wgpu",
        ];
        args.extend(extra);
        let o = std::process::Command::new(env!("CARGO_BIN_EXE_xtask"))
            .args(&args)
            .current_dir(dir.path())
            .env("BURN_FUSION_LOG", "basic")
            .output()
            .unwrap();
        assert!(o.status.success(), "train {extra:?}: {}", stderr(&o));
        let summary =
            stoker_artifact::RunSummary::load(&dir.path().join(art).join("train/summary.json"))
                .unwrap();
        (summary, stderr(&o).matches("selected").count())
    };
    let (fused, fused_plans) = train("fused", &[]);
    let (unfused, unfused_plans) = train("unfused", &["--no-fusion"]);
    assert!(fused.fusion && !unfused.fusion, "summary flags");
    assert!(fused_plans > 0, "fusion never ran with fusion on");
    assert_eq!(unfused_plans, 0, "fusion ran under --no-fusion");
    for (what, a, b) in [
        (
            "train loss",
            fused.final_train_loss,
            unfused.final_train_loss,
        ),
        (
            "validation loss",
            fused.best_val_loss,
            unfused.best_val_loss,
        ),
    ] {
        assert!(
            (a - b).abs() <= 1e-3 * a.abs(),
            "{what}: fused {a} vs unfused {b}"
        );
    }
}

/// Initialised once on the CPU, moved to wgpu: the first training losses agree.
#[test]
fn first_training_losses_match_the_cpu_from_the_same_weights() {
    let Some(gpu) = wgpu() else { return };
    let window = |input_len, output_len| WindowSpec {
        input_len,
        horizon: 1,
        output_len,
        stride: 1,
    };
    let cases = [
        (
            ModelSpec::Cnn2d(Cnn2dSpec {
                channels: vec![8, 16],
                hidden: 32,
                ..Default::default()
            }),
            InputShape {
                window: window(24, 1),
                features: 11,
                targets: vec![0],
                anc: None,
            },
        ),
        (
            ModelSpec::LstmAttention(LstmAttentionSpec {
                hidden: 16,
                layers: 2,
                attention: 8,
                ..Default::default()
            }),
            InputShape {
                window: window(32, 8),
                features: 3,
                targets: vec![0, 1, 2],
                anc: None,
            },
        ),
    ];
    for (spec, shape) in cases {
        let (cpu, gpu) = (Device::flex().autodiff(), gpu.clone().autodiff());
        let mut on_cpu = Model::new(&spec, &shape, &cpu).unwrap();
        // Initialised once: the CPU model's weights, loaded into a model on the GPU.
        let mut on_gpu = Model::new(&spec, &shape, &gpu)
            .unwrap()
            .load_record(on_cpu.clone().into_record());
        let (mut opt_cpu, mut opt_gpu) = (
            optimizer(&Default::default()),
            optimizer(&Default::default()),
        );
        let n = 32;
        let batch = |k: usize| HostBatch {
            inputs: (0..n * shape.window.input_len * shape.features)
                .map(|i| (((i + k) * 7919 % 211) as f32 / 105.0) - 1.0)
                .collect(),
            targets: (0..n * shape.outputs())
                .map(|i| (((i + k) * 104_729 % 97) as f32 / 48.0) - 1.0)
                .collect(),
            len: n,
        };
        for k in 0..3 {
            let f32 = Autocast::F32;
            let gradients_on = |model: &Model, device: &Device| {
                batch_gradients(
                    model,
                    &batch(k),
                    shape.window,
                    shape.features,
                    1,
                    LossKind::Mse,
                    &f32,
                    1.0,
                    device,
                )
            };
            let (g_cpu, l_cpu) = gradients_on(&on_cpu, &cpu);
            let (g_gpu, l_gpu) = gradients_on(&on_gpu, &gpu);
            let (a, b) = (l_cpu.into_scalar::<f32>(), l_gpu.into_scalar::<f32>());
            assert!(
                (a - b).abs() <= 1e-3 * a.abs().max(1e-6),
                "{} step {k}: cpu {a} vs wgpu {b}",
                spec.kind()
            );
            on_cpu = opt_cpu.step(1e-3, on_cpu, g_cpu);
            on_gpu = opt_gpu.step(1e-3, on_gpu, g_gpu);
        }
    }
}

/// burn's autotune results and compiled kernels persist on disk (cubecl's environment store,
/// `target/environment` of the workspace the run starts in), so a second run does not tune again.
#[test]
fn autotune_results_are_kept_on_disk() {
    if wgpu().is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // cubecl keeps its store in the outermost Cargo workspace above the working directory.
    std::fs::write(dir.path().join("Cargo.toml"), "[workspace]\n").unwrap();
    let config = synthetic_anc_task(
        dir.path(),
        "filter_taps = 33\ntaps = 32\nhidden = 16\n[train]\nepochs = 1\nbatch_size = 4",
    );
    let (c, a) = (config.to_str().unwrap(), "art");
    run_stages(dir.path(), c, a, &["prepare"], &[]);
    run_stages(dir.path(), c, a, &["train"], &["--device", "wgpu"]);
    let store = dir.path().join("target/environment");
    let entries: Vec<String> = std::fs::read_dir(&store)
        .unwrap_or_else(|e| panic!("{}: {e}", store.display()))
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        entries.iter().any(|name| name.starts_with("default.db")),
        "no autotune store in {}: {entries:?}",
        store.display()
    );
}
