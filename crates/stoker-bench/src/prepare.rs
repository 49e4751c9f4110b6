//! Prepare throughput and peak memory on a generated PM2.5 CSV of `--prepare-rows` rows, run
//! as a child process (`<this binary> prepare …`) so its memory is its own.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde_json::{Value, json};
use stoker_data::write_pm25_hours;

/// The generated CSV's first year and seed.
const START_YEAR: i32 = 2000;
const SEED: u64 = 1;

/// The synthetic series of `rows` hourly rows at `path`, kept between runs: a sidecar
/// `<path>.rows` names what the file holds, so it is regenerated only when that changes.
fn big_csv(path: &Path, rows: usize) -> Result<()> {
    let stamp = path.with_extension("rows");
    let wanted = format!("{rows} synthetic rows from {START_YEAR}, seed {SEED}");
    if std::fs::metadata(path).is_ok_and(|m| m.len() > 0)
        && std::fs::read_to_string(&stamp).is_ok_and(|s| s.trim() == wanted)
    {
        return Ok(());
    }
    write_pm25_hours(path, START_YEAR, SEED, rows)?;
    std::fs::write(stamp, wanted)?;
    Ok(())
}

/// Peak memory of a running child from `/proc/<pid>/status`, in kB.
#[derive(Default)]
struct Peaks {
    /// VmHWM includes the store's memory-mapped pages, which are page cache the kernel can
    /// reclaim.
    rss_kb: u64,
    /// RssAnon (sampled) is the heap, the memory that must stay bounded.
    anon_kb: u64,
}

impl Peaks {
    fn sample(&mut self, pid: u32) {
        let Ok(s) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
            return;
        };
        let field = |name: &str| -> Option<u64> {
            s.lines()
                .find(|l| l.starts_with(name))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        };
        self.rss_kb = self.rss_kb.max(field("VmHWM:").unwrap_or(0));
        self.anon_kb = self.anon_kb.max(field("RssAnon:").unwrap_or(0));
    }
}

pub(crate) fn bench_prepare(dir: &Path, rows: usize) -> Result<Value> {
    let csv = dir.join("big.csv");
    big_csv(&csv, rows)?;
    let years = (rows / 8766).max(3) as i32;
    let config = dir.join("prepare.toml");
    std::fs::write(
        &config,
        format!(
            "[data]\ninput_len = 24\nsource = {{ kind = \"pm25\", val_start_year = {}, test_start_year = {} }}\n[model]\nkind = \"cnn2d\"\n",
            START_YEAR + years * 8 / 10,
            START_YEAR + years * 9 / 10
        ),
    )?;
    let t = Instant::now();
    let mut child = Command::new(std::env::current_exe()?)
        .arg("prepare")
        .arg("--config")
        .arg(&config)
        .arg("--input")
        .arg(&csv)
        .arg("--artifacts")
        .arg(dir.join("prepare-out"))
        .stdout(Stdio::null())
        .spawn()
        .context("cannot start the prepare child")?;
    let mut peaks = Peaks::default();
    let status = loop {
        peaks.sample(child.id());
        if let Some(status) = child.try_wait()? {
            break status;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    anyhow::ensure!(status.success(), "prepare of the generated CSV failed");
    let seconds = t.elapsed().as_secs_f64();
    let csv_bytes = std::fs::metadata(&csv)?.len() as f64;
    Ok(json!({
        "rows": rows,
        "seconds": seconds,
        "rows_per_s": rows as f64 / seconds,
        "mb_per_s": csv_bytes / seconds / 1e6,
        "csv_mb": csv_bytes / 1e6,
        "peak_rss_mb": peaks.rss_kb as f64 / 1024.0,
        "peak_anon_mb": peaks.anon_kb as f64 / 1024.0,
    }))
}
