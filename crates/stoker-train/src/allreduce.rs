//! Gradients averaged over the team's ranks, as PyTorch's DDP does: each rank's gradients,
//! weighted by its share of the global batch, are summed by all-reduce in buckets, so every rank
//! steps with the gradient of the whole global batch — the one a single process would compute.
//! Also the weights' checksum that shows the ranks still hold one model.

use burn::module::{Module, ModuleVisitor, Param};
use burn::optim::GradientsParams;
use burn::prelude::*;
use burn::tensor::TensorData;
use stoker_zoo::Model;

use crate::team::Team;

/// Values per all-reduce call: DDP's default bucket of 25 MiB of f32. Small models send one.
const BUCKET_VALUES: usize = (25 << 20) / 4;

/// Replaces `grads` (this rank's, for its `weight` = its windows / the global batch's) by the
/// global batch's gradients, and returns the global batch's mean loss from this rank's `loss`
/// (its own windows' mean). Every rank must call it at the same step, with the same model.
pub(crate) fn average_gradients(
    team: &Team,
    model: &Model,
    grads: &mut GradientsParams,
    weight: f32,
    loss: f32,
) -> f32 {
    // Per parameter: a flag (has a gradient here) and its values; a rank with no windows in this
    // batch sends zeros, and a parameter no rank has a gradient for stays without one (as in a
    // single process, where Adam and weight decay then leave it alone).
    struct Flatten<'a> {
        grads: &'a mut GradientsParams,
        weight: f32,
        flat: Vec<f32>,
    }
    impl ModuleVisitor for Flatten<'_> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            match self.grads.remove::<D>(param.id) {
                Some(g) => {
                    self.flat.push(1.0);
                    let values = g
                        .into_data()
                        .try_into_vec_as::<f32>()
                        .expect("gradients are floats");
                    self.flat.extend(values.iter().map(|v| v * self.weight));
                }
                None => {
                    self.flat.push(0.0);
                    let n = param.val().shape().num_elements();
                    self.flat.extend(std::iter::repeat_n(0.0, n));
                }
            }
        }
    }
    let mut f = Flatten {
        grads,
        weight,
        flat: Vec::new(),
    };
    model.visit(&mut f);
    let mut flat = f.flat;
    flat.push(loss * weight);
    for bucket in flat.chunks_mut(BUCKET_VALUES) {
        team.sum_f32(bucket);
    }
    let global_loss = flat.pop().expect("the loss was pushed last");

    struct Unflatten<'a> {
        grads: &'a mut GradientsParams,
        flat: &'a [f32],
        at: usize,
    }
    impl ModuleVisitor for Unflatten<'_> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            let value = param.val();
            let n = value.shape().num_elements();
            let (flag, values) = (self.flat[self.at], &self.flat[self.at + 1..self.at + 1 + n]);
            self.at += 1 + n;
            if flag > 0.0 {
                let data = TensorData::new(values.to_vec(), value.dims());
                let device = value.device().inner();
                self.grads
                    .register::<D>(param.id, Tensor::from_data(data, &device));
            }
        }
    }
    model.visit(&mut Unflatten {
        grads,
        flat: &flat,
        at: 0,
    });
    global_loss
}

/// FNV-1a over every weight's bits, in visiting order: equal on two ranks exactly when their
/// weights are (up to a 2⁻⁶⁴ chance).
pub(crate) fn weights_checksum(model: &Model) -> u64 {
    struct Hash(u64);
    impl ModuleVisitor for Hash {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            let values = param
                .val()
                .into_data()
                .try_into_vec_as::<f32>()
                .expect("weights are floats");
            for v in values {
                for byte in v.to_bits().to_le_bytes() {
                    self.0 = (self.0 ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3);
                }
            }
        }
    }
    let mut h = Hash(0xcbf2_9ce4_8422_2325);
    model.visit(&mut h);
    h.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use stoker_artifact::{Cnn2dSpec, ModelSpec};

    use crate::loader::HostBatch;
    use crate::testing::{one_target_of_two, plain_gradients};

    /// A solo team's average is its own gradient and loss; the checksum sees one changed bit.
    #[test]
    fn a_solo_average_keeps_the_gradients_and_the_checksum_sees_a_change() {
        let device = Device::flex().autodiff();
        let shape = one_target_of_two(4);
        let spec = ModelSpec::Cnn2d(Cnn2dSpec {
            channels: vec![2],
            hidden: 4,
            ..Default::default()
        });
        let model = Model::new(&spec, &shape, &device).unwrap();
        let batch = HostBatch {
            inputs: (0..16).map(|i| i as f32 / 16.0).collect(),
            targets: vec![1.0, -1.0],
            len: 2,
        };
        let grads = || plain_gradients(&model, &batch, &shape, &device);
        let (mut averaged, loss) = grads();
        let loss = loss.into_scalar::<f32>();
        let (plain, _) = grads();
        assert_eq!(
            average_gradients(&Team::solo(), &model, &mut averaged, 1.0, loss),
            loss
        );
        let flat = |g: &GradientsParams| crate::step::flat_gradients(&model, g);
        assert_eq!(flat(&averaged), flat(&plain));
        assert!(!flat(&plain).is_empty());

        let before = weights_checksum(&model);
        assert_eq!(before, weights_checksum(&model.clone()));
        let changed = crate::optimizer(&Default::default()).step(1e-3, model.clone(), plain);
        assert_ne!(before, weights_checksum(&changed));
    }
}
