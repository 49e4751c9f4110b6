//! A synthetic hourly air-quality series in the PM2.5 CSV format, deterministic by seed, so the
//! default job runs without downloading anything.
//!
//! The process mimics the real drivers: temperature and dew point with yearly and daily cycles,
//! slow pressure systems, a persistent wind-direction Markov chain with cumulated wind speed
//! (`Iws`), rain and snow spells (`Ir`, `Is`), and log-PM2.5 that builds up under calm or
//! southerly air, is swept out by strong north-westerlies and washed out by rain, with a
//! morning/evening traffic cycle, a weekday effect and winter heating. About 3 % of PM2.5 values
//! are missing in short and long runs, as in the real file.

use std::io::Write;
use std::path::Path;

use anyhow::Result;
use chrono::{Datelike, Duration, NaiveDate, Timelike};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use stoker_artifact::atomic;

use crate::pm25::WIND;

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

/// Writes the series to `path` (atomically) and returns the number of rows.
pub fn write_pm25_csv(path: &Path, spec: &SyntheticSpec) -> Result<usize> {
    let mut rng = StdRng::seed_from_u64(spec.seed);
    let start = NaiveDate::from_ymd_opt(spec.start_year, 1, 1)
        .expect("valid year")
        .and_hms_opt(0, 0, 0)
        .expect("midnight");
    let end = NaiveDate::from_ymd_opt(spec.start_year + spec.years as i32, 1, 1)
        .expect("valid year")
        .and_hms_opt(0, 0, 0)
        .expect("midnight");
    let hours = (end - start).num_hours() as usize;
    let tau = std::f64::consts::TAU;

    let mut lines = Vec::with_capacity(hours);
    let (mut log_pm, mut pressure_anom, mut temp_anom, mut humid) =
        (4.0f64, 0.0f64, 0.0f64, 0.0f64);
    let (mut wind, mut iws, mut rain_left, mut is_cum, mut ir_cum) =
        (1usize, 0.0f64, 0u32, 0u32, 0u32);
    let mut missing_left = 0u32;
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
        let ventilation = match wind {
            1 => 0.012 * (iws.min(120.0) / 10.0),
            0 => 0.004 * (iws.min(80.0) / 10.0),
            2 => -0.004,
            _ => -0.008,
        };
        let washout = if precipitating { 0.06 } else { 0.0 };
        let humidity_growth = 0.01 * (dewp - temp + 8.0).max(0.0) / 8.0;
        log_pm += emission + humidity_growth - ventilation - washout - 0.02 * (log_pm - 4.2)
            + 0.07 * normal(&mut rng);
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
        lines.push(format!(
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
        ));
    }
    atomic::write_with(path, |out| {
        writeln!(
            out,
            "No,year,month,day,hour,pm2.5,DEWP,TEMP,PRES,cbwd,Iws,Is,Ir"
        )?;
        for line in &lines {
            writeln!(out, "{line}")?;
        }
        Ok(())
    })?;
    Ok(hours)
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
}
