//! A synthetic hourly air-quality series in the PM2.5 CSV format, deterministic by seed, so the
//! default job runs without downloading anything.
//!
//! The process mimics the real drivers: temperature and dew point with yearly and daily cycles,
//! slow pressure systems, a persistent wind-direction Markov chain with cumulated wind speed
//! (`Iws`), rain and snow spells (`Ir`, `Is`), and log-PM2.5 that builds up under calm or
//! southerly air, is swept out by strong north-westerlies and washed out by rain (3 hours after
//! the wind and rain are recorded, as a front reaches the city from upwind), with a
//! morning/evening traffic cycle, a weekday effect and winter heating. About 3 % of PM2.5 values
//! are missing in short and long runs, as in the real file.
//!
//! [`write_synthetic_anc`] writes a small active-noise-control setup in the formats of the real
//! one (a noise WAV and two impulse responses as text), for tests and demos.

use std::io::Write;
use std::path::{Path, PathBuf};

use chrono::{Datelike, Duration, NaiveDate, NaiveDateTime, Timelike};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use stoker_artifact::atomic;

use crate::error::{Error, Result};

/// Hours between the wind and rain in a row and their effect on that row's PM2.5.
const VENTILATION_LAG: usize = 3;
use crate::pm25::WIND;

/// The series [`write_pm25_csv`] writes: whole years from `start_year`, random by `seed`.
pub struct SyntheticSpec {
    pub start_year: i32,
    pub years: u32,
    pub seed: u64,
}

fn normal(rng: &mut StdRng) -> f64 {
    // Box–Muller: two uniforms give one standard normal.
    let u = rng.random::<f64>().max(1e-12);
    let v = rng.random::<f64>();
    (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
}

/// Midnight of 1 January of `year`.
fn new_year(year: Option<i32>) -> Result<NaiveDateTime> {
    year.and_then(|y| NaiveDate::from_ymd_opt(y, 1, 1))
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .ok_or_else(|| Error::Request(format!("synthetic series: year {year:?} is out of range")))
}

/// Writes the series to `path` (atomically) and returns the number of rows.
pub fn write_pm25_csv(path: &Path, spec: &SyntheticSpec) -> Result<usize> {
    let start = new_year(Some(spec.start_year))?;
    let end_year = i32::try_from(spec.years)
        .ok()
        .and_then(|years| spec.start_year.checked_add(years));
    let hours = (new_year(end_year)? - start).num_hours() as usize;
    write_pm25_hours(path, spec.start_year, spec.seed, hours)
}

/// Writes `hours` rows of the series from 1 January of `start_year` to `path` (atomically),
/// streaming: memory does not grow with `hours`. The first rows are those
/// [`write_pm25_csv`] writes for the same start year and seed. Returns `hours`.
pub fn write_pm25_hours(path: &Path, start_year: i32, seed: u64, hours: usize) -> Result<usize> {
    let start = new_year(Some(start_year))?;
    let mut rng = StdRng::seed_from_u64(seed);
    let tau = std::f64::consts::TAU;
    atomic::write_with(path, |out| {
        writeln!(
            out,
            "No,year,month,day,hour,pm2.5,DEWP,TEMP,PRES,cbwd,Iws,Is,Ir"
        )?;
        let (mut log_pm, mut pressure_anom, mut temp_anom, mut humid) =
            (4.0f64, 0.0f64, 0.0f64, 0.0f64);
        let (mut wind, mut iws, mut rain_left, mut is_cum, mut ir_cum) =
            (1usize, 0.0f64, 0u32, 0u32, 0u32);
        let mut missing_left = 0u32;
        // What the air mass did VENTILATION_LAG hours ago: (regime, Iws, precipitating).
        let mut upwind = [(1usize, 0.0f64, false); VENTILATION_LAG];
        for h in 0..hours {
            let t = start + Duration::hours(h as i64);
            let season = tau * (f64::from(t.ordinal0()) / 365.25);
            let daily = tau * f64::from(t.hour()) / 24.0;
            let winter = season.cos(); // +1 in January, −1 in July
            // Weather: slow anomalies (AR(1)) on top of the cycles.
            pressure_anom = 0.985 * pressure_anom + 0.9 * normal(&mut rng);
            temp_anom = 0.97 * temp_anom + 0.5 * normal(&mut rng);
            humid = 0.95 * humid + 0.4 * normal(&mut rng);
            let temp = 12.5 - 15.0 * winter + 5.0 * (daily - 2.6).cos() + temp_anom;
            let dewp = temp - 8.0 - 4.0 * winter + 3.0 * humid;
            let pres = 1016.0 + 10.0 * winter + pressure_anom;
            // Wind regime: persistent, high pressure favours north-westerlies.
            if rng.random::<f64>() < 0.06 {
                let nw_bias = (0.35 + 0.03 * pressure_anom + 0.1 * winter).clamp(0.05, 0.8);
                let u: f64 = rng.random();
                let next = if u < nw_bias {
                    1
                } else {
                    [0, 2, 3][rng.random_range(0..3usize)]
                };
                if next != wind {
                    iws = 0.0;
                }
                wind = next;
            }
            let speed = match wind {
                1 => 3.0 + 2.5 * rng.random::<f64>(),
                0 => 2.0 + 1.5 * rng.random::<f64>(),
                2 => 1.5 + 1.5 * rng.random::<f64>(),
                _ => 0.4 + 0.5 * rng.random::<f64>(),
            };
            iws += speed;
            // Precipitation spells, snow when cold.
            if rain_left == 0 && rng.random::<f64>() < 0.006 + 0.004 * humid.max(0.0) {
                rain_left = rng.random_range(2..12);
            }
            let precipitating = rain_left > 0;
            rain_left = rain_left.saturating_sub(1);
            let (snow, rain) = (precipitating && temp < 0.5, precipitating && temp >= 0.5);
            is_cum = if snow { is_cum + 1 } else { 0 };
            ir_cum = if rain { ir_cum + 1 } else { 0 };
            // PM2.5: accumulation vs. ventilation, plus human cycles.
            let weekday = f64::from(u8::from(t.weekday().num_days_from_monday() < 5));
            let emission = 0.035
                + 0.02 * winter.max(0.0)
                + 0.012 * ((daily - 2.2).cos() + 0.8 * (2.0 * daily - 0.5).cos())
                + 0.006 * weekday;
            // The wind and rain act on the city's air after they were measured upwind: a front
            // seen in cbwd / Iws / Ir now clears the air VENTILATION_LAG hours later, which a
            // model reading the window can foresee and persistence cannot.
            let (lagged_wind, lagged_iws, lagged_rain) = upwind[h % VENTILATION_LAG];
            upwind[h % VENTILATION_LAG] = (wind, iws, precipitating);
            let ventilation = match lagged_wind {
                1 => 0.03 * (lagged_iws.min(120.0) / 10.0),
                0 => 0.01 * (lagged_iws.min(80.0) / 10.0),
                2 => -0.006,
                _ => -0.012,
            };
            let washout = if lagged_rain { 0.12 } else { 0.0 };
            let humidity_growth = 0.01 * (dewp - temp + 8.0).max(0.0) / 8.0;
            log_pm += emission + humidity_growth - ventilation - washout - 0.02 * (log_pm - 4.2)
                + 0.035 * normal(&mut rng);
            log_pm = log_pm.clamp(1.0, 6.8);
            let pm = log_pm.exp().round();
            if missing_left == 0 && rng.random::<f64>() < 0.004 {
                missing_left = if rng.random::<f64>() < 0.8 {
                    rng.random_range(1..4)
                } else {
                    rng.random_range(6..30)
                };
            }
            let pm_cell = if missing_left > 0 {
                missing_left -= 1;
                "NA".to_string()
            } else {
                format!("{pm}")
            };
            writeln!(
                out,
                "{},{},{},{},{},{},{:.0},{:.0},{:.0},{},{:.2},{},{}",
                h + 1,
                t.year(),
                t.month(),
                t.day(),
                t.hour(),
                pm_cell,
                dewp,
                temp,
                pres,
                WIND[wind],
                iws,
                is_cum,
                ir_cum
            )?;
        }
        Ok(())
    })?;
    Ok(hours)
}

/// File names [`write_synthetic_anc`] writes into its directory.
pub const ANC_NOISE_WAV: &str = "noise.wav";
pub const ANC_PRIMARY_CSV: &str = "primary_path.csv";
pub const ANC_SECONDARY_CSV: &str = "secondary_path.csv";

/// Writes a synthetic ANC setup into `dir` (created if needed), deterministic by `seed`:
/// - `noise.wav`: `seconds` of 16-bit mono PCM at `rate`: low-passed (coloured) noise, a
///   little white noise and two tones (180 Hz and 560 Hz, dropped above 0.45·`rate`), peak 0.5;
/// - `primary_path.csv`: 128 taps, a delayed decaying oscillation peaking at tap 40 plus a few
///   weak late reflections;
/// - `secondary_path.csv`: 32 taps peaking at tap 8.
///
/// The paths are text files (one coefficient per line after a `#` header) defined in taps, so
/// they hold at whatever rate the ANC task runs. Returns the three paths (wav, primary,
/// secondary).
pub fn write_synthetic_anc(
    dir: &Path,
    seconds: f64,
    rate: u32,
    seed: u64,
) -> Result<(PathBuf, PathBuf, PathBuf)> {
    if rate == 0 {
        return Err(Error::Request(
            "synthetic ANC: the sample rate must be > 0".into(),
        ));
    }
    let n = (seconds * f64::from(rate)).round();
    if !(seconds.is_finite() && n >= 1.0) {
        return Err(Error::Request(format!(
            "synthetic ANC: {seconds} s at {rate} Hz is not a single sample"
        )));
    }
    let n = n as usize;
    let mut rng = StdRng::seed_from_u64(seed);
    let tau = std::f64::consts::TAU;
    let rate_hz = f64::from(rate);
    let tones: Vec<(f64, f64, f64)> = [(180.0, 0.6), (560.0, 0.35)]
        .into_iter()
        .filter(|&(f, _)| f < 0.45 * rate_hz)
        .map(|(f, a)| (f, a, tau * rng.random::<f64>()))
        .collect();
    // Two one-pole low-passes in cascade: most energy below a few hundred Hz, as engine and
    // road noise have.
    let pole = (-tau * 300.0 / rate_hz).exp();
    let (mut lp1, mut lp2) = (0.0f64, 0.0f64);
    let mut noise = Vec::with_capacity(n);
    for i in 0..n {
        let t = i as f64 / rate_hz;
        lp1 = pole * lp1 + (1.0 - pole) * normal(&mut rng);
        lp2 = pole * lp2 + (1.0 - pole) * lp1;
        let tonal: f64 = tones
            .iter()
            .map(|&(f, a, phase)| a * (tau * f * t + phase).sin())
            .sum();
        noise.push(12.0 * lp2 + 0.03 * normal(&mut rng) + tonal);
    }
    let peak = noise.iter().fold(0.0f64, |m, v| m.max(v.abs())).max(1e-12);
    for v in &mut noise {
        *v *= 0.5 / peak;
    }

    let shaped = |taps: usize, peak_at: usize, rise: f64, decay: f64, omega: f64, gain: f64| {
        (0..taps)
            .map(|k| {
                let t = k as f64 - peak_at as f64;
                let envelope = if t < 0.0 {
                    (-(t / rise).powi(2)).exp()
                } else {
                    (-t / decay).exp()
                };
                gain * envelope * (omega * t).cos()
            })
            .collect::<Vec<f64>>()
    };
    let mut primary = shaped(128, 40, 3.0, 12.0, 0.35, 0.8);
    for _ in 0..3 {
        let at = rng.random_range(64..124usize);
        let amplitude = 0.05 + 0.1 * rng.random::<f64>();
        let sign = if rng.random::<bool>() { 1.0 } else { -1.0 };
        for (j, w) in [0.5, 1.0, 0.5].iter().enumerate() {
            primary[at + j - 1] += sign * amplitude * w;
        }
    }
    let secondary = shaped(32, 8, 2.0, 4.0, 0.6, 0.6);

    let wav = dir.join(ANC_NOISE_WAV);
    let primary_csv = dir.join(ANC_PRIMARY_CSV);
    let secondary_csv = dir.join(ANC_SECONDARY_CSV);
    crate::wav::write_pcm16(&wav, &noise, rate)?;
    for (path, taps, what) in [
        (
            &primary_csv,
            &primary,
            "primary path (noise source → error microphone)",
        ),
        (
            &secondary_csv,
            &secondary,
            "secondary path (loudspeaker → error microphone)",
        ),
    ] {
        atomic::write_with(path, |out| {
            writeln!(
                out,
                "# synthetic {what} impulse response, {} taps (seed {seed})",
                taps.len()
            )?;
            for v in taps {
                writeln!(out, "{v:.9e}")?;
            }
            Ok(())
        })?;
    }
    Ok((wav, primary_csv, secondary_csv))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pm25::Pm25Reader;

    #[test]
    fn deterministic_by_seed_and_readable() {
        let dir = tempfile::tempdir().unwrap();
        let spec = |seed| SyntheticSpec {
            start_year: 2010,
            years: 1,
            seed,
        };
        let (a, b, c) = (
            dir.path().join("a.csv"),
            dir.path().join("b.csv"),
            dir.path().join("c.csv"),
        );
        assert_eq!(write_pm25_csv(&a, &spec(1)).unwrap(), 8760);
        write_pm25_csv(&b, &spec(1)).unwrap();
        write_pm25_csv(&c, &spec(2)).unwrap();
        assert_eq!(std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());
        assert_ne!(std::fs::read(&a).unwrap(), std::fs::read(&c).unwrap());

        let rows: Vec<_> = Pm25Reader::open(&a)
            .unwrap()
            .collect::<Result<_>>()
            .unwrap();
        assert_eq!(rows.len(), 8760);
        let missing = rows.iter().filter(|r| !r.targets_observed).count();
        assert!(missing > 20 && missing < 1000, "missing = {missing}");
        // PM2.5 must vary over a realistic range, not sit at a clamp.
        let pm: Vec<f32> = rows
            .iter()
            .map(|r| r.numeric[0])
            .filter(|v| !v.is_nan())
            .collect();
        let mean = pm.iter().sum::<f32>() / pm.len() as f32;
        assert!(mean > 20.0 && mean < 300.0, "mean pm = {mean}");
    }

    #[test]
    fn synthetic_anc_is_deterministic_and_shaped() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        let (wav, primary, secondary) = write_synthetic_anc(&a, 0.5, 16_000, 5).unwrap();
        write_synthetic_anc(&b, 0.5, 16_000, 5).unwrap();
        for name in [ANC_NOISE_WAV, ANC_PRIMARY_CSV, ANC_SECONDARY_CSV] {
            assert_eq!(
                std::fs::read(a.join(name)).unwrap(),
                std::fs::read(b.join(name)).unwrap()
            );
        }
        let other = dir.path().join("c");
        write_synthetic_anc(&other, 0.5, 16_000, 6).unwrap();
        assert_ne!(
            std::fs::read(&wav).unwrap(),
            std::fs::read(other.join(ANC_NOISE_WAV)).unwrap()
        );

        let rec = crate::wav::read_mono(&wav).unwrap();
        assert_eq!(
            (rec.sample_rate, rec.channels, rec.samples.len()),
            (16_000, 1, 8000)
        );
        let peak = rec.samples.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        assert!((peak - 0.5).abs() < 1e-3, "peak {peak}");

        let argmax = |taps: &[f64]| {
            (0..taps.len())
                .max_by(|&i, &j| taps[i].abs().total_cmp(&taps[j].abs()))
                .unwrap()
        };
        let p = crate::impulse::read_impulse_response(&primary, 16_000).unwrap();
        let s = crate::impulse::read_impulse_response(&secondary, 16_000).unwrap();
        assert_eq!((p.len(), s.len()), (128, 32));
        assert_eq!((argmax(&p), argmax(&s)), (40, 8));
        let header = std::fs::read_to_string(&primary).unwrap();
        assert!(header.starts_with("# synthetic primary path"), "{header}");
    }
}
