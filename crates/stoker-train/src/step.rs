//! One optimisation step: the [`Learner`] (model, optimizer, precision policy, loss scaler)
//! takes a batch's gradients — optionally accumulated over micro-batches: K micro-batches of
//! b/K give the gradients of one batch of b, with the memory of b/K — and applies them.

use burn::module::{Module, ModuleVisitor, Param};
use burn::optim::{GradientsAccumulator, GradientsParams, ModuleOptimizer};
use burn::prelude::*;
use stoker_artifact::run::LossScaleState;
use stoker_artifact::{LossKind, Precision, TrainConfig, WindowSpec};
use stoker_runtime::Autocast;
use stoker_runtime::batch::{inputs_tensor, targets_tensor};
use stoker_zoo::{InputShape, Model};

use crate::allreduce::average_gradients;
use crate::clock::Lap;
use crate::error::Result;
use crate::loader::HostBatch;
use crate::team::Team;

/// The model being trained and what changes it: the optimizer, the precision policy and, for
/// f16, the loss scaler (hidden here: a step whose scaled gradients overflowed is skipped).
pub(crate) struct Learner {
    pub model: Model,
    pub optim: ModuleOptimizer,
    autocast: Autocast,
    scaler: Option<LossScaler>,
    /// The autodiff device the model lives on.
    device: Device,
    window: WindowSpec,
    features: usize,
    accumulate: usize,
    loss: LossKind,
    linear_lr_scale: f64,
}

impl Learner {
    /// `device`: the run's device (not its autodiff view); `loss_scale`: a resumed run's scale.
    pub fn new(
        model: Model,
        optim: ModuleOptimizer,
        t: &TrainConfig,
        shape: &InputShape,
        device: &Device,
        loss_scale: Option<LossScaleState>,
    ) -> Self {
        // f16 needs loss scaling; bf16 has f32's exponent range and does not.
        let scaler = (t.precision == Precision::F16Mixed).then(|| LossScaler {
            state: loss_scale.unwrap_or_default(),
        });
        Self {
            model,
            optim,
            autocast: Autocast::for_device(t.precision, device),
            scaler,
            device: device.clone().autodiff(),
            window: shape.window,
            features: shape.features,
            accumulate: t.accumulate,
            loss: t.loss,
            linear_lr_scale: t.linear_lr_scale,
        }
    }

    /// One step at learning rate `lr`, timed by `lap`, on `batch`: this rank's share of a global
    /// batch of `global_len` windows (the whole of it for a solo team). Returns the global
    /// batch's mean loss (detached, on the device: for a solo team, reading it would wait for
    /// the step; a team has read it already, to average it).
    pub fn step(
        &mut self,
        batch: &HostBatch,
        global_len: usize,
        lr: f64,
        mut lap: Lap,
        team: &Team,
    ) -> Result<Tensor<1>> {
        let scale = self.scaler.as_ref().map_or(1.0, |s| s.state.scale);
        let (mut grads, mut loss) = if batch.len == 0 {
            // A rank with no window in a short last batch still takes part in the average.
            (
                GradientsParams::new(),
                Tensor::zeros([1], &self.device.clone().inner()),
            )
        } else {
            batch_gradients(
                &self.model,
                batch,
                self.window,
                self.features,
                self.accumulate,
                self.loss,
                &self.autocast,
                scale,
                &self.device,
            )
        };
        lap.computed()?;
        if !team.is_solo() {
            let weight = batch.len as f32 / global_len.max(1) as f32;
            let local = loss.clone().into_scalar::<f32>();
            let global = average_gradients(team, &self.model, &mut grads, weight, local);
            loss = Tensor::from_floats([global], &loss.device());
            lap.reduced();
        }
        let finite = self
            .scaler
            .as_mut()
            .is_none_or(|s| s.unscale(&self.model, &mut grads));
        if finite {
            self.model = apply_gradients(
                &mut self.optim,
                self.model.clone(),
                grads,
                lr,
                self.linear_lr_scale,
            );
        }
        lap.finish()?;
        Ok(loss)
    }

    /// The f16 loss scale to keep in a resumable checkpoint (None for other precisions).
    pub fn loss_scale(&self) -> Option<LossScaleState> {
        self.scaler.as_ref().map(|s| s.state)
    }

    pub fn is_mixed(&self) -> bool {
        self.autocast.is_mixed()
    }
}

/// An epoch's training loss: the sum of (batch mean loss × batch size), kept on the device so
/// that no step waits to read it; checkpoints move it to the host (`TrainState::epoch_loss_sum`).
pub(crate) struct EpochLoss {
    pending: Tensor<1>,
    device: Device,
}

impl EpochLoss {
    pub fn new(device: &Device) -> Self {
        Self {
            pending: Tensor::zeros([1], device),
            device: device.clone(),
        }
    }

    pub fn add(&mut self, batch_loss: Tensor<1>, batch_len: usize) {
        self.pending = self.pending.clone() + batch_loss * batch_len as f32;
    }

    /// The sum not yet moved to the host, read and reset.
    pub fn flush(&mut self) -> f64 {
        let zero = Tensor::zeros([1], &self.device);
        f64::from(std::mem::replace(&mut self.pending, zero).into_scalar::<f32>())
    }

    /// The epoch's sum: `flushed` (what checkpoints moved to the host) plus the pending part.
    pub fn total(&self, flushed: f64) -> f64 {
        flushed + f64::from(self.pending.clone().into_scalar::<f32>())
    }
}

/// One optimizer step on `grads` at `lr`, the model's linear part at `lr × linear_lr_scale`
/// (left as it is at 0).
pub(crate) fn apply_gradients(
    optim: &mut ModuleOptimizer,
    mut model: Model,
    mut grads: GradientsParams,
    lr: f64,
    linear_lr_scale: f64,
) -> Model {
    if linear_lr_scale != 1.0 {
        let linear = model.take_linear_grads(&mut grads);
        if linear_lr_scale > 0.0 && !linear.is_empty() {
            model = optim.step(lr * linear_lr_scale, model, linear);
        }
    }
    optim.step(lr, model, grads)
}

/// Gradients and the (detached) mean loss of `batch`, computed as `accumulate` micro-batches
/// (the step without its optimizer: benchmarks and device comparisons call it directly).
/// Each micro-batch's mean loss is weighted by its share of the batch, so the sum is the
/// batch's mean loss whatever the split.
#[allow(clippy::too_many_arguments)]
pub fn batch_gradients(
    model: &Model,
    batch: &HostBatch,
    window: WindowSpec,
    features: usize,
    accumulate: usize,
    loss_kind: LossKind,
    ac: &Autocast,
    loss_scale: f32,
    device: &Device,
) -> (GradientsParams, Tensor<1>) {
    let micro = batch.len.div_ceil(accumulate.max(1));
    let (x_stride, y_stride) = (
        batch.inputs.len() / batch.len,
        batch.targets.len() / batch.len,
    );
    let mut accumulator = GradientsAccumulator::<Model>::new();
    let mut loss_sum = Tensor::<1>::zeros([1], device);
    for (xs, ys) in batch
        .inputs
        .chunks(micro * x_stride)
        .zip(batch.targets.chunks(micro * y_stride))
    {
        let n = ys.len() / y_stride;
        let x = inputs_tensor(xs.to_vec(), [n, window.input_len, features], device);
        let y = targets_tensor(ys.to_vec(), n, device);
        let loss = model.loss(x, y, loss_kind, ac) * (n as f32 / batch.len as f32);
        loss_sum = loss_sum + loss.clone().detach();
        let scaled = if loss_scale == 1.0 {
            loss
        } else {
            loss * loss_scale
        };
        accumulator.accumulate(model, GradientsParams::from_grads(scaled.backward(), model));
    }
    (accumulator.grads(), loss_sum)
}

/// Dynamic loss scaling for f16: the loss is multiplied by `scale` before backward so small
/// gradients survive f16; gradients are divided back before the step. A non-finite gradient
/// skips the step and halves the scale; 2 000 clean steps in a row double it.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct LossScaler {
    /// Kept in the resume state as is.
    pub state: LossScaleState,
}

const GROWTH_INTERVAL: usize = 2_000;

impl LossScaler {
    /// Unscales `grads` in place; false when a gradient is not finite (skip this step).
    pub fn unscale(&mut self, model: &Model, grads: &mut GradientsParams) -> bool {
        struct Unscale<'a> {
            grads: &'a mut GradientsParams,
            inv: f32,
            finite: Option<Tensor<1, Bool>>,
        }
        impl ModuleVisitor for Unscale<'_> {
            fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
                if let Some(g) = self.grads.remove::<D>(param.id) {
                    let g = g * self.inv;
                    let ok = g.clone().is_finite().all();
                    self.finite = Some(match self.finite.take() {
                        Some(all) => all.bool_and(ok),
                        None => ok,
                    });
                    self.grads.register(param.id, g);
                }
            }
        }
        let mut v = Unscale {
            grads,
            inv: 1.0 / self.state.scale,
            finite: None,
        };
        model.visit(&mut v);
        let finite = v.finite.is_none_or(|f| f.into_scalar::<bool>());
        let s = &mut self.state;
        if finite {
            s.clean_steps += 1;
            if s.clean_steps == GROWTH_INTERVAL {
                (s.scale, s.clean_steps) = (s.scale * 2.0, 0);
            }
        } else {
            (s.scale, s.clean_steps) = (s.scale * 0.5, 0);
            s.skipped += 1;
        }
        finite
    }
}

/// Every parameter's gradient, flattened, in visiting order.
#[cfg(test)]
pub(crate) fn flat_gradients(model: &Model, grads: &GradientsParams) -> Vec<Vec<f32>> {
    struct Collect<'a>(&'a GradientsParams, Vec<Vec<f32>>);
    impl ModuleVisitor for Collect<'_> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            if let Some(g) = self.0.get::<D>(param.id) {
                self.1.push(
                    g.into_data()
                        .try_into_vec_as::<f32>()
                        .expect("f32 gradient"),
                );
            }
        }
    }
    let mut c = Collect(grads, Vec::new());
    model.visit(&mut c);
    c.1
}

/// Every parameter's values, flattened, in visiting order.
#[cfg(test)]
fn flat_params(model: &Model) -> Vec<Vec<f32>> {
    struct Collect(Vec<Vec<f32>>);
    impl ModuleVisitor for Collect {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            let values = param.val().into_data().try_into_vec_as::<f32>();
            self.0.push(values.expect("f32 parameter"));
        }
    }
    let mut c = Collect(Vec::new());
    model.visit(&mut c);
    c.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use stoker_artifact::{Cnn2dSpec, LstmAttentionSpec, ModelSpec, TrainConfig};
    use stoker_zoo::InputShape;

    use crate::testing::{one_target_of_two, plain_gradients};

    #[test]
    fn accumulated_micro_batches_give_the_full_batch_gradients() {
        let device = Device::flex().autodiff();
        device.seed(5);
        let window = WindowSpec {
            input_len: 8,
            horizon: 1,
            output_len: 2,
            stride: 1,
        };
        let shape = InputShape {
            window,
            features: 4,
            targets: vec![0, 1],
            anc: None,
        };
        let spec = ModelSpec::Cnn2d(Cnn2dSpec {
            channels: vec![4, 8],
            hidden: 16,
            ..Default::default()
        });
        let model = Model::new(&spec, &shape, &device).unwrap();
        let len = 12;
        let batch = HostBatch {
            inputs: (0..len * 8 * 4)
                .map(|i| ((i * 37 % 101) as f32 / 50.0) - 1.0)
                .collect(),
            targets: (0..len * 4)
                .map(|i| ((i * 13 % 17) as f32 / 8.0) - 1.0)
                .collect(),
            len,
        };
        let f32 = Autocast::F32;
        let in_micro_batches = |k| {
            batch_gradients(
                &model,
                &batch,
                window,
                4,
                k,
                LossKind::Mse,
                &f32,
                1.0,
                &device,
            )
        };
        let (full, full_loss) = in_micro_batches(1);
        let full = flat_gradients(&model, &full);
        assert!(!full.is_empty());
        for k in [2, 4, 5] {
            let (acc, acc_loss) = in_micro_batches(k);
            let acc = flat_gradients(&model, &acc);
            assert_eq!(acc.len(), full.len());
            for (a, f) in acc.iter().zip(&full) {
                let scale = f.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-12);
                let worst = a.iter().zip(f).fold(0f32, |m, (x, y)| m.max((x - y).abs()));
                assert!(
                    worst <= 1e-5 * scale,
                    "K={k}: max diff {worst} vs scale {scale}"
                );
            }
            let (l1, l2) = (
                full_loss.clone().into_scalar::<f32>(),
                acc_loss.into_scalar::<f32>(),
            );
            assert!((l1 - l2).abs() <= 1e-5 * l1.abs(), "loss {l1} vs {l2}");
        }
    }

    #[test]
    fn loss_scaler_unscales_skips_overflow_and_grows() {
        let device = Device::flex().autodiff();
        let shape = one_target_of_two(4);
        let window = shape.window;
        let spec = ModelSpec::Cnn2d(Cnn2dSpec {
            channels: vec![2],
            hidden: 4,
            ..Default::default()
        });
        let model = Model::new(&spec, &shape, &device).unwrap();
        let batch = || HostBatch {
            inputs: (0..16).map(|i| i as f32 / 16.0).collect(),
            targets: vec![1.0, -1.0],
            len: 2,
        };
        let f32 = Autocast::F32;
        let (plain, _) = batch_gradients(
            &model,
            &batch(),
            window,
            2,
            1,
            LossKind::Mse,
            &f32,
            1.0,
            &device,
        );
        let mut scaler = LossScaler::default();
        let (mut scaled, _) = batch_gradients(
            &model,
            &batch(),
            window,
            2,
            1,
            LossKind::Mse,
            &f32,
            scaler.state.scale,
            &device,
        );
        assert!(scaler.unscale(&model, &mut scaled));
        for (a, b) in flat_gradients(&model, &plain)
            .iter()
            .zip(flat_gradients(&model, &scaled))
        {
            for (x, y) in a.iter().zip(&b) {
                assert!((x - y).abs() <= 1e-4 * x.abs().max(1e-3), "{x} vs {y}");
            }
        }
        // A scale that overflows f32 gives infinite gradients: the step is skipped, scale halves.
        let mut huge = LossScaler {
            state: LossScaleState {
                scale: f32::MAX,
                ..LossScaleState::default()
            },
        };
        let (mut inf, _) = batch_gradients(
            &model,
            &batch(),
            window,
            2,
            1,
            LossKind::Mse,
            &f32,
            huge.state.scale,
            &device,
        );
        assert!(!huge.unscale(&model, &mut inf));
        assert_eq!((huge.state.skipped, huge.state.scale), (1, f32::MAX / 2.0));
        let mut growing = LossScaler::default();
        for _ in 0..GROWTH_INTERVAL {
            let (mut g, _) = batch_gradients(
                &model,
                &batch(),
                window,
                2,
                1,
                LossKind::Mse,
                &f32,
                growing.state.scale,
                &device,
            );
            assert!(growing.unscale(&model, &mut g));
        }
        assert_eq!(growing.state.scale, 131_072.0);
    }

    #[test]
    fn linear_part_steps_at_its_own_scale_and_stays_put_at_zero() {
        let device = Device::flex().autodiff();
        device.seed(3);
        let mut shape = one_target_of_two(8);
        shape.window.output_len = 2;
        let spec = ModelSpec::LstmAttention(LstmAttentionSpec {
            hidden: 4,
            layers: 1,
            attention: 4,
            linear_skip: true,
            ..Default::default()
        });
        let model = Model::new(&spec, &shape, &device).unwrap();
        let batch = HostBatch {
            inputs: (0..3 * 8 * 2)
                .map(|i| ((i * 29 % 31) as f32 / 15.0) - 1.0)
                .collect(),
            targets: vec![0.5, -0.25, 1.0, 0.0, -1.0, 0.75],
            len: 3,
        };
        let stepped = |scale| {
            let (grads, _) = plain_gradients(&model, &batch, &shape, &device);
            let mut optim = crate::adam::optimizer(&TrainConfig::default());
            flat_params(&apply_gradients(
                &mut optim,
                model.clone(),
                grads,
                1e-2,
                scale,
            ))
        };
        let start = flat_params(&model);
        let (full, half, frozen) = (stepped(1.0), stepped(0.5), stepped(0.0));
        let moved = |after: &[f32], before: &[f32]| {
            after
                .iter()
                .zip(before)
                .fold(0f32, |m, (a, b)| m.max((a - b).abs()))
        };
        let mut linear = 0;
        for i in 0..start.len() {
            let step = moved(&full[i], &start[i]);
            assert!(step > 0.0, "parameter {i} did not move");
            if moved(&frozen[i], &start[i]) == 0.0 {
                // The skip: Adam's first step is lr × sign(gradient), so half the rate is half
                // the move.
                linear += 1;
                let ratio = moved(&half[i], &start[i]) / step;
                assert!((ratio - 0.5).abs() < 1e-3, "parameter {i}: ratio {ratio}");
            } else {
                assert_eq!(half[i], full[i], "parameter {i} is not linear");
                assert_eq!(frozen[i], full[i], "parameter {i} is not linear");
            }
        }
        // The skip's weight and bias.
        assert_eq!(linear, 2);
    }
}
