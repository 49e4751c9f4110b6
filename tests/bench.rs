//! `cargo xtask bench --quick`: the harness runs end to end and writes the documented JSON keys.
//! (The figures themselves come from the full run, never from tests.)

mod common;

use common::*;

#[test]
fn quick_bench_writes_every_documented_key() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("bench.json");
    let o = xtask(
        &["bench", "--quick", "--json", json.to_str().unwrap()],
        dir.path(),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    for model in ["cnn2d", "lstm_attention", "multiband_anc"] {
        for precision in ["f32", "bf16-mixed"] {
            for key in ["train_samples_per_s", "infer_samples_per_s"] {
                let x = v[model][precision][key].as_f64().unwrap_or(0.0);
                assert!(x > 0.0, "{model}/{precision}/{key} = {x}");
            }
        }
    }
    assert!(v["anc_predict"]["speedup"].as_f64().unwrap() > 0.0);
    let stream = &v["anc_stream"];
    let rows = stream["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 6, "f32 and bf16 × blocks of 1, 16, 64");
    for row in rows {
        assert!(row["samples_per_s"].as_f64().unwrap() > 0.0, "{row}");
        assert!(row["real_time_factor"].as_f64().unwrap() > 0.0, "{row}");
        let p = &row["latency_us"];
        let (p50, p99, max) = (
            p["p50"].as_f64().unwrap(),
            p["p99"].as_f64().unwrap(),
            p["max"].as_f64().unwrap(),
        );
        assert!(0.0 < p50 && p50 <= p99 && p99 <= max, "{row}");
    }
    assert!(stream["batched_samples_per_s"].as_f64().unwrap() > 0.0);
    assert!(v["loader"]["windows_per_s"].as_f64().unwrap() > 0.0);
    assert!(v["prepare"]["peak_rss_mb"].as_f64().unwrap() > 0.0);
}
