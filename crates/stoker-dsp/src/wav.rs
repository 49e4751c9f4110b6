//! Mono WAV writing, for prepare's synthetic recordings and prediction's audio outputs.

use std::io::{Seek, Write};

use hound::{SampleFormat, WavSpec, WavWriter};

/// How samples are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WavFormat {
    /// 16-bit integer PCM: a sample v becomes round(v·32768), clipped to the i16 range
    /// (the inverse of reading PCM scaled by 2⁻¹⁵).
    Pcm16,
    /// 32-bit float, each sample rounded to `f32`.
    Float32,
}

/// Writes `samples` as a one-channel WAV at `sample_rate` into `out` (which must be seekable:
/// the header's sizes are filled in at the end).
pub fn write_mono<W: Write + Seek>(
    out: W,
    format: WavFormat,
    sample_rate: u32,
    samples: impl IntoIterator<Item = f64>,
) -> std::io::Result<()> {
    let (bits_per_sample, sample_format) = match format {
        WavFormat::Pcm16 => (16, SampleFormat::Int),
        WavFormat::Float32 => (32, SampleFormat::Float),
    };
    let spec = WavSpec {
        channels: 1,
        sample_rate,
        bits_per_sample,
        sample_format,
    };
    let mut writer = WavWriter::new(out, spec).map_err(std::io::Error::other)?;
    for v in samples {
        let written = match format {
            WavFormat::Pcm16 => {
                writer.write_sample((v * 32768.0).round().clamp(-32768.0, 32767.0) as i16)
            }
            WavFormat::Float32 => writer.write_sample(v as f32),
        };
        written.map_err(std::io::Error::other)?;
    }
    writer.finalize().map_err(std::io::Error::other)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    fn read_back(bytes: Vec<u8>) -> (WavSpec, Vec<f64>) {
        let reader = hound::WavReader::new(Cursor::new(bytes)).unwrap();
        let spec = reader.spec();
        let samples = match spec.sample_format {
            SampleFormat::Int => reader
                .into_samples::<i32>()
                .map(|s| f64::from(s.unwrap()) / 32768.0)
                .collect(),
            SampleFormat::Float => reader
                .into_samples::<f32>()
                .map(|s| f64::from(s.unwrap()))
                .collect(),
        };
        (spec, samples)
    }

    #[test]
    fn pcm16_quantises_and_clips() {
        let mut out = Cursor::new(Vec::new());
        write_mono(
            &mut out,
            WavFormat::Pcm16,
            8000,
            [0.0, 0.5, -0.5, 2.0, -2.0],
        )
        .unwrap();
        let (spec, samples) = read_back(out.into_inner());
        assert_eq!(
            (spec.channels, spec.sample_rate, spec.bits_per_sample),
            (1, 8000, 16)
        );
        assert_eq!(samples, vec![0.0, 0.5, -0.5, 32767.0 / 32768.0, -1.0]);
    }

    #[test]
    fn float32_keeps_the_values() {
        let mut out = Cursor::new(Vec::new());
        let values = [0.125f32, -0.7, 3.0];
        write_mono(&mut out, WavFormat::Float32, 16_000, values.map(f64::from)).unwrap();
        let (spec, samples) = read_back(out.into_inner());
        assert_eq!(
            (spec.bits_per_sample, spec.sample_format),
            (32, SampleFormat::Float)
        );
        assert_eq!(samples, values.map(f64::from).to_vec());
    }
}
