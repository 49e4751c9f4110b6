//! One optimisation step's loss and gradients, optionally accumulated over micro-batches:
//! K micro-batches of b/K give the gradients of one batch of b, with the memory of b/K.

use burn::module::{Module, ModuleVisitor, Param};
use burn::nn::loss::{HuberLossConfig, MseLoss, Reduction};
use burn::optim::{GradientsAccumulator, GradientsParams};
use burn::prelude::*;
use stoker_artifact::{LossKind, WindowSpec};
use stoker_zoo::Model;
use stoker_zoo::batch::{inputs_tensor, targets_tensor};

use crate::loader::HostBatch;

/// Gradients and the (detached) mean loss of `batch`, computed as `accumulate` micro-batches.
/// Each micro-batch's mean loss is weighted by its share of the batch, so the sum is the
/// batch's mean loss whatever the split.
pub fn batch_gradients(
    model: &Model,
    batch: &HostBatch,
    window: WindowSpec,
    features: usize,
    accumulate: usize,
    loss_kind: LossKind,
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
        let pred = model.forward(x);
        let loss = match loss_kind {
            LossKind::Mse => MseLoss::new().forward(pred, y, Reduction::Mean),
            LossKind::Huber => HuberLossConfig::new(1.0)
                .init()
                .forward(pred, y, Reduction::Mean),
        } * (n as f32 / batch.len as f32);
        loss_sum = loss_sum + loss.clone().detach();
        accumulator.accumulate(model, GradientsParams::from_grads(loss.backward(), model));
    }
    (accumulator.grads(), loss_sum)
}

/// Every parameter's gradient, flattened, in visiting order (for tests and diagnostics).
pub fn flat_gradients(model: &Model, grads: &GradientsParams) -> Vec<Vec<f32>> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use stoker_artifact::{Cnn2dSpec, ModelSpec};
    use stoker_zoo::InputShape;

    #[test]
    fn accumulated_micro_batches_give_the_full_batch_gradients() {
        let device = Device::flex().autodiff();
        device.seed(5);
        let window = WindowSpec {
            input_len: 8,
            horizon: 1,
            output_len: 2,
        };
        let shape = InputShape {
            window,
            features: 4,
            targets: vec![0, 1],
        };
        let spec = ModelSpec::Cnn2d(Cnn2dSpec {
            channels: vec![4, 8],
            hidden: 16,
            ..Default::default()
        });
        let model = Model::new(&spec, &shape, &device);
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
        let (full, full_loss) =
            batch_gradients(&model, &batch, window, 4, 1, LossKind::Mse, &device);
        let full = flat_gradients(&model, &full);
        assert!(!full.is_empty());
        for k in [2, 4, 5] {
            let (acc, acc_loss) =
                batch_gradients(&model, &batch, window, 4, k, LossKind::Mse, &device);
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
}
