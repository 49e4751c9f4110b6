//! WAV recordings as mono samples in [-1, 1): 16-, 24- and 32-bit integer PCM and 32-bit float.
//! Several channels are averaged to one (with a warning on stderr). Every error names the file.

use std::path::Path;

use crate::error::{Error, Result};
use hound::{SampleFormat, WavReader};
use stoker_artifact::atomic;
use stoker_dsp::wav::{WavFormat, write_mono};

/// A recording, mixed down to mono.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Recording {
    /// Integers scaled by 2^-(bits-1), so in [-1, 1); floats as stored.
    pub samples: Vec<f64>,
    pub sample_rate: u32,
    /// Channels in the file (averaged into `samples`).
    pub channels: u16,
}

/// Reads `path` as mono samples.
pub(crate) fn read_mono(path: &Path) -> Result<Recording> {
    let fail = |message: String| Err(Error::input(path, message));
    let bytes = std::fs::metadata(path)
        .map_err(|e| Error::io(path, "cannot open", e))?
        .len();
    if bytes == 0 {
        return Err(Error::EmptyFile {
            path: path.into(),
            detail: " (0 bytes): expected a WAV recording".into(),
        });
    }
    let reader = WavReader::open(path).map_err(|e| {
        Error::input(
            path,
            format!("not a readable WAV file (truncated or corrupt header?): {e}"),
        )
    })?;
    let spec = reader.spec();
    let channels = usize::from(spec.channels);
    if channels == 0 {
        return fail("the header declares 0 channels".into());
    }
    let interleaved = match (spec.sample_format, spec.bits_per_sample) {
        (SampleFormat::Int, 8) => {
            return fail("8-bit PCM is not supported, convert to 16-bit or float".into());
        }
        (SampleFormat::Int, bits @ (16 | 24 | 32)) => {
            let scale = 1.0 / f64::from(1u32 << (bits - 1));
            collect(path, reader.into_samples::<i32>(), |v| f64::from(v) * scale)?
        }
        (SampleFormat::Float, 32) => collect(path, reader.into_samples::<f32>(), f64::from)?,
        (format, bits) => {
            let format = match format {
                SampleFormat::Int => "integer",
                SampleFormat::Float => "float",
            };
            return fail(format!(
                "{bits}-bit {format} samples are not supported (16-, 24- or 32-bit integer PCM, or 32-bit float)"
            ));
        }
    };
    if interleaved.len() < channels {
        return fail("no samples (the data chunk is empty)".into());
    }
    if let Some(i) = interleaved.iter().position(|v| !v.is_finite()) {
        return fail(format!("sample {i} is not a finite number"));
    }
    let samples = if channels == 1 {
        interleaved
    } else {
        eprintln!(
            "warning: {}: {channels} channels averaged to mono",
            path.display()
        );
        let k = 1.0 / channels as f64;
        interleaved
            .chunks_exact(channels)
            .map(|frame| frame.iter().sum::<f64>() * k)
            .collect()
    };
    Ok(Recording {
        samples,
        sample_rate: spec.sample_rate,
        channels: spec.channels,
    })
}

fn collect<S>(
    path: &Path,
    samples: impl ExactSizeIterator<Item = hound::Result<S>>,
    scale: impl Fn(S) -> f64,
) -> Result<Vec<f64>> {
    let mut out = Vec::with_capacity(samples.len());
    for s in samples {
        match s {
            Ok(v) => out.push(scale(v)),
            Err(e) => {
                return Err(Error::input(
                    path,
                    format!(
                        "truncated or corrupt sample data after {} samples: {e}",
                        out.len()
                    ),
                ));
            }
        }
    }
    Ok(out)
}

/// Writes mono `samples` (clipped to [-1, 1)) as 16-bit PCM, atomically: the inverse of
/// [`read_mono`]'s scaling.
pub(crate) fn write_pcm16(path: &Path, samples: &[f64], sample_rate: u32) -> Result<()> {
    atomic::write_with(path, |out| {
        write_mono(out, WavFormat::Pcm16, sample_rate, samples.iter().copied())
    })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use hound::{WavSpec, WavWriter};

    fn write<S: hound::Sample + Copy>(path: &Path, spec: WavSpec, samples: &[S]) {
        let mut w = WavWriter::create(path, spec).unwrap();
        for &s in samples {
            w.write_sample(s).unwrap();
        }
        w.finalize().unwrap();
    }

    fn spec(channels: u16, bits: u16, format: SampleFormat) -> WavSpec {
        WavSpec {
            channels,
            sample_rate: 16_000,
            bits_per_sample: bits,
            sample_format: format,
        }
    }

    #[test]
    fn stereo_is_averaged_to_mono() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("stereo.wav");
        // Frames (L, R): (16384, 0), (-8192, -8192), (32767, -32768).
        write::<i16>(
            &path,
            spec(2, 16, SampleFormat::Int),
            &[16384, 0, -8192, -8192, 32767, -32768],
        );
        let r = read_mono(&path).unwrap();
        assert_eq!(r.channels, 2);
        assert_eq!(r.sample_rate, 16_000);
        let expected = [0.25, -0.25, -0.5 / 32768.0];
        assert_eq!(r.samples.len(), 3);
        for (a, b) in r.samples.iter().zip(expected) {
            assert!((a - b).abs() < 1e-12, "{a} vs {b}");
        }
    }

    #[test]
    fn pcm24_and_float_read_back_their_values() {
        let dir = tempfile::tempdir().unwrap();
        let p24 = dir.path().join("a24.wav");
        let full = 1 << 23;
        write::<i32>(
            &p24,
            spec(1, 24, SampleFormat::Int),
            &[0, full / 2, -full, full - 1, -3],
        );
        let r = read_mono(&p24).unwrap();
        let expected = [
            0.0,
            0.5,
            -1.0,
            (full - 1) as f64 / full as f64,
            -3.0 / full as f64,
        ];
        assert_eq!(r.samples, expected);

        let pf = dir.path().join("float.wav");
        let values = [0.125f32, -0.7, 1.0, -1.0, 0.333];
        write::<f32>(&pf, spec(1, 32, SampleFormat::Float), &values);
        let r = read_mono(&pf).unwrap();
        assert_eq!(
            r.samples,
            values.map(f64::from).to_vec(),
            "floats are read exactly"
        );

        let p32 = dir.path().join("a32.wav");
        write::<i32>(&p32, spec(1, 32, SampleFormat::Int), &[i32::MIN, 1 << 30]);
        assert_eq!(read_mono(&p32).unwrap().samples, vec![-1.0, 0.5]);
    }

    #[test]
    fn bad_files_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let err = |name: &str| format!("{:#}", read_mono(&dir.path().join(name)).unwrap_err());

        write::<i8>(
            &dir.path().join("eight.wav"),
            spec(1, 8, SampleFormat::Int),
            &[1, 2, 3],
        );
        let msg = err("eight.wav");
        assert!(
            msg.contains("eight.wav: 8-bit PCM is not supported, convert to 16-bit or float"),
            "{msg}"
        );

        std::fs::write(dir.path().join("empty.wav"), b"").unwrap();
        let msg = err("empty.wav");
        assert!(msg.contains("empty.wav: empty file"), "{msg}");

        let good = dir.path().join("good.wav");
        write_pcm16(&good, &[0.1; 100], 16_000).unwrap();
        let bytes = std::fs::read(&good).unwrap();
        std::fs::write(dir.path().join("cut.wav"), &bytes[..30]).unwrap();
        let msg = err("cut.wav");
        assert!(msg.contains("cut.wav: not a readable WAV file"), "{msg}");

        write::<i16>(
            &dir.path().join("nothing.wav"),
            spec(1, 16, SampleFormat::Int),
            &[],
        );
        let msg = err("nothing.wav");
        assert!(msg.contains("nothing.wav: no samples"), "{msg}");

        let msg = err("absent.wav");
        assert!(msg.contains("absent.wav: cannot open"), "{msg}");
    }

    #[test]
    fn pcm16_roundtrip() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rt.wav");
        write_pcm16(&path, &[0.0, 0.5, -0.5, 2.0], 8000).unwrap();
        let r = read_mono(&path).unwrap();
        assert_eq!(r.sample_rate, 8000);
        assert_eq!(r.samples, vec![0.0, 0.5, -0.5, 32767.0 / 32768.0]);
    }
}
