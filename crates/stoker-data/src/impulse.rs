//! Impulse responses of acoustic paths: a text file with one coefficient per line (blank lines
//! and `#` comments skipped), or a WAV (by extension) already at the ANC sample rate.

use std::path::Path;

use crate::error::{Error, Result};
use crate::wav;

/// Reads the impulse response at `path`; a WAV must be recorded at `sample_rate`.
pub fn read_impulse_response(path: &Path, sample_rate: u32) -> Result<Vec<f64>> {
    let is_wav = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("wav"));
    if is_wav {
        let r = wav::read_mono(path)?;
        if r.sample_rate != sample_rate {
            return Err(Error::input(
                path,
                format!(
                    "impulse response at {} Hz, the ANC sample rate is {sample_rate} Hz: resample it first (impulse responses are not resampled)",
                    r.sample_rate
                ),
            ));
        }
        return Ok(r.samples);
    }
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, "cannot read", e))?;
    parse_impulse_text(&text, path)
}

/// Parses one coefficient per line; errors name `path` and the line.
pub(crate) fn parse_impulse_text(text: &str, path: &Path) -> Result<Vec<f64>> {
    let mut taps = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let cell = line.trim();
        if cell.is_empty() || cell.starts_with('#') {
            continue;
        }
        match cell.parse::<f64>() {
            Ok(v) if v.is_finite() => taps.push(v),
            _ => {
                return Err(Error::input(
                    path,
                    format!(
                        "line {}: `{cell}` is not a number (one coefficient per line, `#` for comments)",
                        i + 1
                    ),
                ));
            }
        }
    }
    if taps.is_empty() {
        return Err(Error::input(
            path,
            "no coefficients: an impulse response needs at least one tap",
        ));
    }
    Ok(taps)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comments_and_blank_lines_are_skipped() {
        let text = "# path, 3 taps\n0.5\n\n  -1e-3 \n# note\n2\n";
        assert_eq!(
            parse_impulse_text(text, Path::new("p.csv")).unwrap(),
            vec![0.5, -1e-3, 2.0]
        );
    }

    #[test]
    fn bad_line_reports_file_and_line_number() {
        let text = "# header\n0.1\n0.2\n0,3\n0.4\n";
        let msg = format!(
            "{:#}",
            parse_impulse_text(text, Path::new("primary.csv")).unwrap_err()
        );
        assert!(
            msg.contains("primary.csv: line 4: `0,3` is not a number"),
            "{msg}"
        );
        let msg = format!(
            "{:#}",
            parse_impulse_text("1\nNaN\n", Path::new("s.csv")).unwrap_err()
        );
        assert!(msg.contains("s.csv: line 2"), "{msg}");
    }

    #[test]
    fn empty_response_is_an_error() {
        let msg = format!(
            "{:#}",
            parse_impulse_text("# only a header\n\n", Path::new("e.csv")).unwrap_err()
        );
        assert!(msg.contains("e.csv: no coefficients"), "{msg}");
    }

    #[test]
    fn wav_response_must_be_at_the_anc_rate() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.WAV");
        wav::write_pcm16(&path, &[0.5, 0.25, -0.125], 16_000).unwrap();
        assert_eq!(
            read_impulse_response(&path, 16_000).unwrap(),
            vec![0.5, 0.25, -0.125]
        );
        let msg = format!("{:#}", read_impulse_response(&path, 8000).unwrap_err());
        assert!(
            msg.contains("s.WAV") && msg.contains("16000 Hz") && msg.contains("8000 Hz"),
            "{msg}"
        );
    }
}
