//! The trainer's Adam: burn's `Adam` (same hyper-parameters, same per-parameter state, so
//! checkpoints and resume are unchanged), with the update as one fused pass per parameter on
//! the CPU backend instead of about a dozen tensor ops. Other devices run burn's `Adam`.

use burn::grad_clipping::GradientClippingConfig;
use burn::optim::decay::WeightDecayConfig;
use burn::optim::{
    Adam, AdamConfig, AdamState, AdaptiveMomentumState, LearningRate, ModuleOptimizer, Optimizer,
};
use burn::prelude::*;
use stoker_artifact::TrainConfig;
use stoker_runtime::fused::{AdamStep, adam_applies, adam_step};

/// The trainer's optimizer for `t`: Adam with `t.weight_decay` and `t.grad_clip` (0: off).
pub fn optimizer(t: &TrainConfig) -> ModuleOptimizer {
    FusedAdam::module_optimizer(t.weight_decay as f32, t.grad_clip as f32)
}

/// burn's `AdamConfig` defaults, which the fused path must repeat (burn keeps them private).
const BETA_1: f32 = 0.9;
const BETA_2: f32 = 0.999;
const EPSILON: f32 = 1e-5;

#[derive(Clone)]
pub(crate) struct FusedAdam {
    composed: Adam,
    weight_decay: f32,
}

impl FusedAdam {
    /// Adam with an optional L2 penalty (0: none) and gradient-norm clipping (0: none).
    pub fn module_optimizer(weight_decay: f32, grad_clip: f32) -> ModuleOptimizer {
        let config = AdamConfig::new()
            .with_beta_1(BETA_1)
            .with_beta_2(BETA_2)
            .with_epsilon(EPSILON)
            .with_weight_decay((weight_decay > 0.0).then(|| WeightDecayConfig::new(weight_decay)));
        let optim = ModuleOptimizer::from(Self {
            composed: config.build(),
            weight_decay: weight_decay.max(0.0),
        });
        if grad_clip > 0.0 {
            optim.with_grad_clipping(GradientClippingConfig::Norm(grad_clip).init())
        } else {
            optim
        }
    }
}

impl Optimizer for FusedAdam {
    type State<const D: usize> = AdamState<D>;

    fn step<const D: usize>(
        &self,
        lr: LearningRate,
        tensor: Tensor<D>,
        grad: Tensor<D>,
        state: Option<Self::State<D>>,
    ) -> (Tensor<D>, Option<Self::State<D>>) {
        let (time, moment_1, moment_2) = match state {
            Some(s) if s.momentum.max_moment_2.is_none() => (
                s.momentum.time + 1,
                s.momentum.moment_1,
                s.momentum.moment_2,
            ),
            None => (1, tensor.zeros_like(), tensor.zeros_like()),
            state => return self.composed.step(lr, tensor, grad, state),
        };
        if !adam_applies([&tensor, &grad, &moment_1, &moment_2]) {
            let state = (time > 1).then(|| adam_state(time - 1, moment_1, moment_2));
            return self.composed.step(lr, tensor, grad, state);
        }
        let step = AdamStep {
            lr: lr as f32,
            beta_1: BETA_1,
            beta_2: BETA_2,
            epsilon: EPSILON,
            weight_decay: self.weight_decay,
            time: time as i32,
        };
        // Moved in whole: the moments (and the parameter, unless the caller still holds the
        // old module) are updated in place.
        let (tensor, moment_1, moment_2) = adam_step(tensor, grad, moment_1, moment_2, step);
        (tensor, Some(adam_state(time, moment_1, moment_2)))
    }

    fn to_device<const D: usize>(state: Self::State<D>, device: &Device) -> Self::State<D> {
        <Adam as Optimizer>::to_device(state, device)
    }
}

fn adam_state<const D: usize>(
    time: usize,
    moment_1: Tensor<D>,
    moment_2: Tensor<D>,
) -> AdamState<D> {
    AdamState::new(AdaptiveMomentumState {
        time,
        moment_1,
        moment_2,
        max_moment_2: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::nn::{Linear, LinearConfig};
    use burn::optim::GradientsParams;
    use burn::tensor::Distribution;

    /// On the CPU the fused op serves f32 parameters (so the test below compares it).
    #[test]
    fn fused_op_applies_on_the_cpu() {
        let t = Tensor::<1>::zeros([4], &Device::flex());
        assert!(adam_applies([&t, &t, &t, &t]));
    }

    /// Three steps of a small model, fused against burn's own Adam: the same bits.
    #[test]
    fn matches_burns_adam_bit_for_bit() {
        let device = Device::flex().autodiff();
        for weight_decay in [0.0, 1e-3] {
            let model: Linear = LinearConfig::new(37, 5).init(&device);
            let mut fused_model = model.clone();
            let mut burn_model = model;
            let mut fused = FusedAdam::module_optimizer(weight_decay, 0.0);
            let mut reference = AdamConfig::new()
                .with_epsilon(EPSILON)
                .with_weight_decay(
                    (weight_decay > 0.0).then(|| WeightDecayConfig::new(weight_decay)),
                )
                .init();
            for step in 0..3 {
                let x = Tensor::<2>::random([8, 37], Distribution::Default, &device);
                let loss = |m: &Linear| m.forward(x.clone()).powi_scalar(2).sum();
                let g = GradientsParams::from_grads(loss(&fused_model).backward(), &fused_model);
                fused_model = fused.step(1e-2, fused_model, g);
                let g = GradientsParams::from_grads(loss(&burn_model).backward(), &burn_model);
                burn_model = reference.step(1e-2, burn_model, g);
                let bits = |p: Tensor<2>| p.into_data().try_to_vec::<f32>().unwrap();
                assert_eq!(
                    bits(fused_model.weight.val()),
                    bits(burn_model.weight.val()),
                    "step {step}, weight decay {weight_decay}"
                );
                let bias = |m: &Linear| m.bias.as_ref().unwrap().val().unsqueeze();
                assert_eq!(bits(bias(&fused_model)), bits(bias(&burn_model)));
            }
        }
    }
}
