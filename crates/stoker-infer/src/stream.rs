//! A streaming ANC controller: reference samples in, one block at a time (down to one sample),
//! control samples out, as an audio callback would run it. It owns every history the batched
//! path rebuilds per chunk (the reference for the band filters and the linear FIR, each band's
//! signal for its network) and allocates nothing after construction, on one thread.
//!
//! One sample's work is the band networks' first layer (bands × taps × hidden multiply-adds,
//! nearly all of it), done as products on weights packed for streaming reads
//! ([`stoker_kernels::matvec`]): one pass over the weights per sample when blocks are single
//! samples, one per four samples of a longer block.

use stoker_kernels::activation::tanh_in_place;
use stoker_kernels::bf16;
use stoker_kernels::matvec::{PackedMatrix, dot, matvec_rows};
use stoker_zoo::{AncWeights, DenseWeights};

use crate::error::{Error, Result};

/// The weights' type in the products (sums are f32 either way).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum StreamWeights {
    F32,
    /// Half the bytes per product; each weight rounded to 8 significant bits.
    Bf16,
}

/// Samples a block may hold at most; longer inputs are processed in blocks of this size.
pub const MAX_BLOCK: usize = 1024;

pub struct StreamingController {
    /// The reference's last samples, for the band filters and the linear FIR.
    reference: History,
    /// Each reference sample's filter and FIR windows end at its position in the history.
    reference_keep: usize,
    linear_fir_oldest_first: Vec<f32>,
    bands: Vec<Band>,
    /// The block's band samples, then its hidden activations: [block, widest layer].
    band_samples: Vec<f32>,
    hidden: [Vec<f32>; 2],
}

struct Band {
    filter_oldest_first: Vec<f32>,
    history: History,
    network: BandNetwork,
}

struct BandNetwork {
    layers: Vec<Layer>,
}

/// One dense layer of a band network, its weights in the form its product reads.
struct Layer {
    inputs: usize,
    outputs: usize,
    bias: Vec<f32>,
    product: Product,
}

enum Product {
    /// A one-output layer (the head): a dot product per window, not a 96-wide panel.
    Dot(Vec<f32>),
    F32(PackedMatrix<f32>),
    Bf16(PackedMatrix<bf16>),
}

impl StreamingController {
    /// A controller at rest (silence before the first sample) with the model's weights.
    pub fn new(model: &AncWeights, weights: StreamWeights) -> Result<Self> {
        let filter_len = model.band_filters.iter().map(Vec::len).max().unwrap_or(0);
        let reference_keep = filter_len.max(model.linear_fir.len()).saturating_sub(1);
        let mut widest = 1;
        let mut bands = Vec::with_capacity(model.band_filters.len());
        for (filter, layers) in model.band_filters.iter().zip(&model.band_layers) {
            let layers = layers
                .iter()
                .map(|l| Layer::new(l, weights))
                .collect::<Result<Vec<_>>>()?;
            check_chain(&layers, model.taps)?;
            widest = layers.iter().map(|l| l.outputs).fold(widest, usize::max);
            bands.push(Band {
                filter_oldest_first: filter.iter().rev().copied().collect(),
                history: History::new(model.taps.saturating_sub(1)),
                network: BandNetwork { layers },
            });
        }
        Ok(Self {
            reference: History::new(reference_keep),
            reference_keep,
            linear_fir_oldest_first: model.linear_fir.iter().rev().copied().collect(),
            bands,
            band_samples: vec![0.0; MAX_BLOCK],
            hidden: [vec![0.0; MAX_BLOCK * widest], vec![0.0; MAX_BLOCK * widest]],
        })
    }

    /// Control samples y for the next reference samples x (normalised as the model was
    /// trained); y(n) depends on x(≤ n) only. Panics unless y is as long as x.
    pub fn process(&mut self, x: &[f32], y: &mut [f32]) {
        assert_eq!(
            x.len(),
            y.len(),
            "process: one control sample per reference sample"
        );
        for (x, y) in x.chunks(MAX_BLOCK).zip(y.chunks_mut(MAX_BLOCK)) {
            self.process_block(x, y);
        }
    }

    fn process_block(&mut self, x: &[f32], y: &mut [f32]) {
        let n = x.len();
        let keep = self.reference_keep;
        let xs = self.reference.push(x);
        // Sample i of the block sits at xs[keep + i]; a window of w taps ends there.
        let window = |i: usize, w: usize| &xs[keep + i + 1 - w..keep + i + 1];
        let fir = &self.linear_fir_oldest_first;
        for (i, y) in y.iter_mut().enumerate() {
            *y = if fir.is_empty() {
                0.0
            } else {
                dot(fir, window(i, fir.len()))
            };
        }
        for band in &mut self.bands {
            let samples = &mut self.band_samples[..n];
            let f = &band.filter_oldest_first;
            for (i, s) in samples.iter_mut().enumerate() {
                *s = dot(f, window(i, f.len()));
            }
            let windows = band.history.push(samples);
            band.network.add_outputs(windows, y, &mut self.hidden);
        }
    }
}

impl BandNetwork {
    /// Adds the network's output for each of the block's windows to y: window i is
    /// history[i .. i + taps] (the windows overlap, read in place). Each layer is one pass over
    /// its packed weights for every `ROWS` windows.
    fn add_outputs(&self, history: &[f32], y: &mut [f32], hidden: &mut [Vec<f32>; 2]) {
        let n = y.len();
        let [a, b] = hidden;
        let (mut input, mut output): (&mut [f32], &mut [f32]) = (a, b);
        let last = self.layers.len() - 1;
        for (l, layer) in self.layers.iter().enumerate() {
            let (x, stride) = if l == 0 {
                (history, 1)
            } else {
                (&input[..n * layer.inputs], layer.inputs)
            };
            let h = &mut output[..n * layer.outputs];
            match &layer.product {
                Product::Dot(w) => {
                    for (i, h) in h.iter_mut().enumerate() {
                        *h = dot(w, &x[i * stride..i * stride + layer.inputs]) + layer.bias[0];
                    }
                }
                Product::F32(w) => matvec_rows(w, x, stride, n, &layer.bias, h),
                Product::Bf16(w) => matvec_rows(w, x, stride, n, &layer.bias, h),
            }
            if l < last {
                tanh_in_place(h);
            }
            std::mem::swap(&mut input, &mut output);
        }
        // A last layer of several outputs: the band's share is their sum, as in the model.
        let outputs = self.layers[last].outputs;
        for (y, row) in y.iter_mut().zip(input.chunks_exact(outputs)) {
            *y += row.iter().sum::<f32>();
        }
    }
}

impl Layer {
    fn new(w: &DenseWeights, weights: StreamWeights) -> Result<Self> {
        if w.weight.len() != w.inputs * w.outputs || w.bias.len() != w.outputs || w.outputs == 0 {
            return Err(Error::StreamShape(format!(
                "a band layer of {} × {} has {} weights and {} biases",
                w.inputs,
                w.outputs,
                w.weight.len(),
                w.bias.len()
            )));
        }
        let product = match (w.outputs, weights) {
            (1, StreamWeights::F32) => Product::Dot(w.weight.clone()),
            // bf16 rounds every weight the controller reads, the head's included.
            (1, StreamWeights::Bf16) => Product::Dot(
                w.weight
                    .iter()
                    .map(|&v| bf16::from_f32(v).to_f32())
                    .collect(),
            ),
            (_, StreamWeights::F32) => {
                Product::F32(PackedMatrix::pack(&w.weight, w.inputs, w.outputs))
            }
            (_, StreamWeights::Bf16) => {
                Product::Bf16(PackedMatrix::pack(&w.weight, w.inputs, w.outputs))
            }
        };
        Ok(Self {
            inputs: w.inputs,
            outputs: w.outputs,
            bias: w.bias.clone(),
            product,
        })
    }
}

/// The layers must chain: taps → … → outputs, at least one layer.
fn check_chain(layers: &[Layer], taps: usize) -> Result<()> {
    let mut inputs = taps;
    for layer in layers {
        if layer.inputs != inputs {
            return Err(Error::StreamShape(format!(
                "a band layer takes {} inputs where the previous gives {inputs}",
                layer.inputs
            )));
        }
        inputs = layer.outputs;
    }
    if layers.is_empty() {
        return Err(Error::StreamShape("a band network has no layers".into()));
    }
    Ok(())
}

/// The last `keep` samples of a signal followed by the newest block, contiguous: a sliding
/// copy that moves its `keep` samples back to the front only when the buffer's spare room is
/// used up (every `SPARE` samples at most), so windows are plain slices.
struct History {
    buf: Vec<f32>,
    start: usize,
    keep: usize,
}

/// Room for new samples beyond `keep`: a multiple of the largest block.
const SPARE: usize = 4 * MAX_BLOCK;

impl History {
    fn new(keep: usize) -> Self {
        Self {
            buf: vec![0.0; keep + SPARE],
            start: 0,
            keep,
        }
    }

    /// Appends `new` (at most `MAX_BLOCK` samples) and returns the `keep` samples before it
    /// followed by `new`.
    fn push(&mut self, new: &[f32]) -> &[f32] {
        debug_assert!(new.len() <= MAX_BLOCK);
        if self.start + self.keep + new.len() > self.buf.len() {
            self.buf.copy_within(self.start..self.start + self.keep, 0);
            self.start = 0;
        }
        let end = self.start + self.keep;
        self.buf[end..end + new.len()].copy_from_slice(new);
        let window = &self.buf[self.start..end + new.len()];
        self.start += new.len();
        window
    }
}

impl std::fmt::Display for StreamWeights {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::F32 => "f32",
            Self::Bf16 => "bf16",
        })
    }
}

#[cfg(test)]
mod tests {
    use burn::prelude::Device;
    use stoker_artifact::MultibandAncSpec;
    use stoker_zoo::MultibandAnc;

    use super::*;
    use crate::anc::tests::test_plant;
    use crate::anc::{AncOptions, control_signal};

    /// Random band networks; with `linear_start`, the FIR set and the networks' heads zeroed.
    fn model(spec: MultibandAncSpec, linear_start: bool) -> MultibandAnc {
        let plant = test_plant();
        let controller: Vec<f32> = (0..spec.linear_taps)
            .map(|k| ((k * 13 % 17) as f32 - 8.0) / 40.0)
            .collect();
        let model = MultibandAnc::new(&spec, &plant, &Device::flex()).unwrap();
        if linear_start {
            model.with_linear_start(&controller)
        } else {
            model
        }
    }

    fn signal(n: usize) -> Vec<f32> {
        (0..n)
            .map(|i| ((i * 37 % 101) as f32 / 50.0) - 1.0 + (i as f32 * 0.01).sin())
            .collect()
    }

    fn batched(model: &MultibandAnc, x: &[f32]) -> Vec<f32> {
        let opts = AncOptions {
            batch_size: 4096,
            mode: crate::AncMode::Batched,
            baseline_taps: 16,
            fxnlms_step: 0.1,
        };
        control_signal(model, x, opts).unwrap()
    }

    fn streamed(model: &MultibandAnc, x: &[f32], block: usize, w: StreamWeights) -> Vec<f32> {
        let mut controller = StreamingController::new(&model.weights().unwrap(), w).unwrap();
        let mut y = vec![f32::NAN; x.len()];
        for (x, y) in x.chunks(block).zip(y.chunks_mut(block)) {
            controller.process(x, y);
        }
        y
    }

    #[test]
    fn streaming_equals_the_batched_controller_for_any_block_size() {
        // A linear FIR longer than filter + taps, as in the reference shape.
        let with_fir = MultibandAncSpec {
            filter_taps: 9,
            taps: 16,
            hidden: 100,
            linear_taps: 40,
            ..Default::default()
        };
        let cases = [
            // Two hidden layers, no linear FIR, a filter longer than the windows.
            (
                MultibandAncSpec {
                    filter_taps: 31,
                    taps: 12,
                    hidden: 10,
                    layers: 2,
                    linear_taps: 0,
                    ..Default::default()
                },
                false,
            ),
            // The FIR's start alone, then the networks beside a (zero) FIR that sets the windows.
            (with_fir.clone(), true),
            (with_fir, false),
        ];
        // Longer than the history's spare room, so it slides back more than once.
        let x = signal(3 * SPARE + 777);
        for (spec, linear_start) in cases {
            let model = model(spec.clone(), linear_start);
            let want = batched(&model, &x);
            for block in [1, 7, 64, MAX_BLOCK + 5] {
                let got = streamed(&model, &x, block, StreamWeights::F32);
                for (n, (a, b)) in got.iter().zip(&want).enumerate() {
                    assert!(
                        (a - b).abs() < 1e-5,
                        "{spec:?}, start {linear_start}, block {block}: y({n}) {a} vs {b}"
                    );
                }
            }
        }
    }

    #[test]
    fn bf16_weights_stay_near_f32_and_agree_across_block_sizes() {
        let model = model(
            MultibandAncSpec {
                filter_taps: 9,
                taps: 32,
                hidden: 100,
                linear_taps: 40,
                ..Default::default()
            },
            false,
        );
        let x = signal(2_000);
        let exact = streamed(&model, &x, 1, StreamWeights::F32);
        let one = streamed(&model, &x, 1, StreamWeights::Bf16);
        let block = streamed(&model, &x, 64, StreamWeights::Bf16);
        let scale = exact.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        for (n, ((e, a), b)) in exact.iter().zip(&one).zip(&block).enumerate() {
            assert_eq!(a, b, "bf16 y({n}) differs between blocks of 1 and 64");
            assert!((e - a).abs() < 0.02 * scale, "bf16 y({n}) {a} vs f32 {e}");
        }
        assert_ne!(exact, one, "bf16 weights must be rounded");
    }

    #[test]
    fn layers_that_do_not_chain_are_refused() {
        let mut w = model(
            MultibandAncSpec {
                filter_taps: 9,
                taps: 12,
                hidden: 6,
                ..Default::default()
            },
            false,
        )
        .weights()
        .unwrap();
        w.taps = 13;
        let err = StreamingController::new(&w, StreamWeights::F32)
            .err()
            .unwrap();
        assert!(
            err.to_string()
                .contains("12 inputs where the previous gives 13"),
            "{err}"
        );
    }
}
