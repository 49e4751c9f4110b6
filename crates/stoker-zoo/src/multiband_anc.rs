//! Multiband active noise control: a fixed causal filterbank splits the reference x into bands,
//! one MLP per band maps the band's last `taps` samples to its share of the control sample, and
//! the shares sum to y(n). The per-band networks run as one batched matmul over the stacked
//! band weights, so three bands cost one kernel launch, not three.
//!
//! The loss is what the error microphone hears: e = d − S * g(y), with S the secondary path as
//! a causal convolution over each chunk of y and g the optional loudspeaker saturation.

use burn::module::Param;
use burn::optim::GradientsParams;
use burn::prelude::*;
use burn::tensor::{Distribution, TensorData};
use stoker_artifact::{AncSignals, MultibandAncSpec};

use stoker_dsp::{DesignError, design_filterbank};
use stoker_runtime::Autocast;
use stoker_runtime::batch::try_to_host;
use stoker_runtime::fused::{Activation, band_dense, band_dense_head, fir};

mod export;

/// One dense layer of every band at once: weights [bands, in, out], bias [bands, 1, out].
#[derive(Module, Debug)]
pub struct BandDense {
    weight: Param<Tensor<3>>,
    bias: Param<Tensor<3>>,
}

impl BandDense {
    /// PyTorch's `nn.Linear` initialisation, U(±1/√in), per band.
    fn new(bands: usize, inputs: usize, outputs: usize, device: &Device) -> Self {
        let bound = 1.0 / (inputs as f64).sqrt();
        let uniform = Distribution::Uniform(-bound, bound);
        Self {
            weight: Param::from_tensor(Tensor::random([bands, inputs, outputs], uniform, device)),
            bias: Param::from_tensor(Tensor::random([bands, 1, outputs], uniform, device)),
        }
    }

    /// [bands, N, in] → act([bands, N, out]), one fused op on the CPU.
    fn forward(&self, x: Tensor<3>, act: Activation) -> Tensor<3> {
        band_dense(x, self.weight.val(), self.bias.val(), act)
    }
}

/// One band network's dense layer on the host: `weight` [inputs, outputs] row-major.
#[derive(Debug, Clone)]
pub struct DenseWeights {
    pub inputs: usize,
    pub outputs: usize,
    pub weight: Vec<f32>,
    pub bias: Vec<f32>,
}

/// A controller's parameters on the host, for code that runs it outside burn (the streaming
/// controller): per band, its filter (forward order) and its network's layers (tanh between
/// them, the last one linear), and the linear FIR (w(k) multiplies x(n − k)).
#[derive(Debug, Clone)]
pub struct AncWeights {
    pub band_filters: Vec<Vec<f32>>,
    pub band_layers: Vec<Vec<DenseWeights>>,
    pub taps: usize,
    pub linear_fir: Vec<f32>,
}

#[derive(Module, Debug)]
pub struct MultibandAnc {
    hidden: Vec<BandDense>,
    head: BandDense,
    /// Linear FIR on the full-band reference, beside the band networks: [linear_taps, 1],
    /// oldest sample first (it multiplies the window x(n − taps + 1) … x(n)).
    linear: Option<Param<Tensor<2>>>,
    /// Band filters, time-reversed for `conv1d` (a cross-correlation): [bands × filter_taps].
    filterbank: Vec<f32>,
    /// Secondary path, time-reversed likewise.
    secondary: Vec<f32>,
    saturation: f64,
    bands: usize,
    filter_taps: usize,
    taps: usize,
    linear_taps: usize,
}

impl MultibandAnc {
    /// The controller for `plant`; the band split must be designable at the plant's rate
    /// (configs are validated, checkpoints need not be).
    pub fn new(
        spec: &MultibandAncSpec,
        plant: &AncSignals,
        device: &Device,
    ) -> Result<Self, DesignError> {
        let bands = spec.bands();
        let filters =
            design_filterbank(&spec.band_edges, spec.filter_taps, plant.sample_rate.into())?;
        let mut hidden = Vec::with_capacity(spec.layers);
        let mut inputs = spec.taps;
        for _ in 0..spec.layers {
            hidden.push(BandDense::new(bands, inputs, spec.hidden, device));
            inputs = spec.hidden;
        }
        Ok(Self {
            hidden,
            head: BandDense::new(bands, inputs, 1, device),
            linear: (spec.linear_taps > 0)
                .then(|| Param::from_tensor(Tensor::zeros([spec.linear_taps, 1], device))),
            filterbank: filters
                .iter()
                .flat_map(|f| f.iter().rev().copied())
                .collect(),
            secondary: plant.secondary_path.iter().rev().copied().collect(),
            saturation: plant.saturation,
            bands,
            filter_taps: spec.filter_taps,
            taps: spec.taps,
            linear_taps: spec.linear_taps,
        })
    }

    /// Reference samples each output depends on.
    pub fn receptive_field(&self) -> usize {
        (self.taps + self.filter_taps - 1).max(self.linear_taps)
    }

    /// [B, I, F] windows (column 0 is the reference x; the others are never read) →
    /// [B, I − receptive_field + 1] control samples, the j-th from x(j) … x(j + rf − 1).
    pub fn forward(&self, x: Tensor<3>, ac: &Autocast) -> Tensor<2> {
        let [batch, len, _] = x.dims();
        let reference = x.slice([0..batch, 0..len, 0..1]).reshape([batch, len]);
        let outputs = len + 1 - self.receptive_field();
        let mut y = self.bands_forward(reference.clone(), outputs, ac);
        if let Some(linear) = &self.linear {
            let windows = reference
                .slice([0..batch, len + 1 - outputs - self.linear_taps..len])
                .unfold::<3, _>(1, self.linear_taps, 1);
            y = y + ac
                .full(ac.low(windows).matmul(linear.val().unsqueeze::<3>()))
                .reshape([batch, outputs]);
        }
        y
    }

    /// The band networks' share of the `outputs` last control samples of each row.
    fn bands_forward(&self, reference: Tensor<2>, outputs: usize, ac: &Autocast) -> Tensor<2> {
        let [batch, len] = reference.dims();
        let device = reference.device();
        let needed = outputs + self.taps + self.filter_taps - 2;
        let reference = reference
            .slice([0..batch, len - needed..len])
            .reshape([batch, 1, needed]);
        let filters = Tensor::<3>::from_data(
            TensorData::new(self.filterbank.clone(), [self.bands, 1, self.filter_taps]),
            &device,
        );
        // The filterbank is fixed: no gradient flows into or through it. The bands are cast
        // before the windows are copied out: one copy, of the low type, instead of an f32 copy
        // and a cast pass over taps × more values.
        let bands = ac.low(fir(reference, filters));
        let mut h = bands
            .unfold::<4, _>(2, self.taps, 1)
            .swap_dims(0, 1)
            .reshape([self.bands, batch * outputs, self.taps]);
        // The last hidden layer and the head run as one op: the hidden activations and their
        // gradient stay in cache between the two.
        let Some((last, first)) = self.hidden.split_last() else {
            return ac
                .full(self.head.forward(h, Activation::Identity))
                .sum_dim(0)
                .reshape([batch, outputs]);
        };
        for layer in first {
            h = layer.forward(h, Activation::Tanh);
        }
        let out = band_dense_head(
            h,
            [last.weight.val(), last.bias.val()],
            [self.head.weight.val(), self.head.bias.val()],
            Activation::Tanh,
        );
        ac.full(out).sum_dim(0).reshape([batch, outputs])
    }

    /// What the error microphone hears: e = d − S * g(y). `y` [B, L + |S| − 1] holds each
    /// chunk's control samples with the secondary path's history; `d` [B, L] the disturbance at
    /// the last L of them.
    pub fn residual(&self, y: Tensor<2>, d: Tensor<2>) -> Tensor<2> {
        let [batch, len] = y.dims();
        let taps = self.secondary.len();
        let eta = self.saturation;
        let heard = if eta > 0.0 { (y * eta).tanh() / eta } else { y };
        let path = Tensor::<3>::from_data(
            TensorData::new(self.secondary.clone(), [1, 1, taps]),
            &heard.device(),
        );
        let anti = fir(heard.reshape([batch, 1, len]), path);
        d - anti.reshape([batch, len + 1 - taps])
    }

    /// Starts the linear FIR at `controller` (w(0) … w(taps − 1), w(k) multiplying x(n − k):
    /// the least-squares controller) and the band networks' output layers at zero, so training
    /// begins at linear control and learns what it misses.
    pub fn with_linear_start(mut self, controller: &[f32]) -> Self {
        let device = self.head.weight.val().device();
        if self.linear.is_some() {
            let oldest_first: Vec<f32> = controller.iter().rev().copied().collect();
            self.linear = Some(Param::from_tensor(Tensor::from_data(
                TensorData::new(oldest_first, [self.linear_taps, 1]),
                &device,
            )));
            self.head.weight = Param::from_tensor(self.head.weight.val().zeros_like());
            self.head.bias = Param::from_tensor(self.head.bias.val().zeros_like());
        }
        self
    }

    /// Moves the linear FIR's gradient out of `grads` into its own set (empty without one), for
    /// the optimizer to step it at its own learning rate.
    pub fn take_linear_grads(&self, grads: &mut GradientsParams) -> GradientsParams {
        let mut taken = GradientsParams::new();
        if let Some(linear) = &self.linear {
            crate::move_grad(linear, grads, &mut taken);
        }
        taken
    }

    /// The secondary path S the loss simulates (forward order).
    pub fn secondary_path(&self) -> Vec<f32> {
        self.secondary.iter().rev().copied().collect()
    }

    /// The parameters as plain host arrays (f32).
    pub fn weights(&self) -> Result<AncWeights, stoker_runtime::Error> {
        let mut band_layers = vec![Vec::new(); self.bands];
        for layer in self.hidden.iter().chain([&self.head]) {
            let [bands, inputs, outputs] = layer.weight.val().dims();
            let weight = try_to_host(layer.weight.val())?;
            let bias = try_to_host(layer.bias.val())?;
            for (b, layers) in band_layers.iter_mut().enumerate().take(bands) {
                layers.push(DenseWeights {
                    inputs,
                    outputs,
                    weight: weight[b * inputs * outputs..(b + 1) * inputs * outputs].to_vec(),
                    bias: bias[b * outputs..(b + 1) * outputs].to_vec(),
                });
            }
        }
        let linear_fir = match &self.linear {
            Some(w) => {
                let mut fir = try_to_host(w.val())?;
                fir.reverse();
                fir
            }
            None => Vec::new(),
        };
        Ok(AncWeights {
            band_filters: self.band_filters(),
            band_layers,
            taps: self.taps,
            linear_fir,
        })
    }

    /// The band filters (forward order), for the predictor's per-band figures.
    pub fn band_filters(&self) -> Vec<Vec<f32>> {
        self.filterbank
            .chunks(self.filter_taps)
            .map(|f| f.iter().rev().copied().collect())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plant(saturation: f64) -> AncSignals {
        AncSignals {
            sample_rate: 16_000,
            source_rate: 16_000,
            secondary_path: vec![0.0, 0.5, 0.25, -0.1],
            primary_taps: 8,
            saturation,
            reference_rms: 1.0,
            disturbance_rms: 1.0,
        }
    }

    fn small() -> MultibandAncSpec {
        MultibandAncSpec {
            filter_taps: 9,
            taps: 16,
            hidden: 8,
            ..Default::default()
        }
    }

    #[test]
    fn control_is_strictly_causal() {
        let device = Device::flex();
        let bands_only = MultibandAnc::new(&small(), &plant(0.0), &device).unwrap();
        let controller: Vec<f32> = (0..40)
            .map(|k| ((k * 7 % 11) as f32 - 5.0) / 10.0)
            .collect();
        let with_linear = MultibandAnc::new(
            &MultibandAncSpec {
                linear_taps: 40,
                ..small()
            },
            &plant(0.0),
            &device,
        )
        .unwrap()
        .with_linear_start(&controller);
        for model in [bands_only, with_linear] {
            assert_causal(&model, &device);
        }
    }

    fn assert_causal(model: &MultibandAnc, device: &Device) {
        let rf = model.receptive_field();
        let len = rf + 40;
        let x = Tensor::<3>::random([1, len, 2], Distribution::Default, device);
        let y = crate::test_host(model.forward(x.clone(), &Autocast::F32));
        assert_eq!(y.len(), len + 1 - rf);
        for changed in [rf + 5, rf + 20, len - 1] {
            let mut data = x.to_data().try_to_vec::<f32>().unwrap();
            data[changed * 2] += 3.0;
            // The disturbance column must never matter.
            data[(changed - 7) * 2 + 1] -= 5.0;
            let moved = Tensor::<3>::from_data(TensorData::new(data, [1, len, 2]), device);
            let z = crate::test_host(model.forward(moved, &Autocast::F32));
            // Output j reads x(j) … x(j + rf − 1): those ending before `changed` are untouched.
            let untouched = changed + 1 - rf;
            assert_eq!(
                y[..untouched],
                z[..untouched],
                "x({changed}) leaked into the past"
            );
            assert_ne!(y[untouched], z[untouched], "x({changed}) must reach y");
        }
    }

    #[test]
    fn residual_is_disturbance_minus_secondary_path_of_control() {
        let device = Device::flex();
        for eta in [0.0, 0.7] {
            let model = MultibandAnc::new(&small(), &plant(eta), &device).unwrap();
            let y: Vec<f32> = (0..10).map(|i| (i as f32 * 0.37).sin()).collect();
            let d: Vec<f32> = (0..7).map(|i| i as f32 * 0.1).collect();
            let e = crate::test_host(model.residual(
                Tensor::from_data(TensorData::new(y.clone(), [1, 10]), &device),
                Tensor::from_data(TensorData::new(d.clone(), [1, 7]), &device),
            ));
            let s = &plant(eta).secondary_path;
            let g = |v: f32| {
                if eta > 0.0 {
                    (v * eta as f32).tanh() / eta as f32
                } else {
                    v
                }
            };
            for (n, (&e, &d)) in e.iter().zip(&d).enumerate() {
                let t = n + 3; // output n sits at y index n + |S| − 1
                let anti: f32 = (0..4).map(|k| s[k] * g(y[t - k])).sum();
                assert!(
                    (e - (d - anti)).abs() < 1e-5,
                    "e({n}) = {e}, want {}",
                    d - anti
                );
            }
        }
    }
}
