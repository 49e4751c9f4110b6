//! One StepLstm as layer k of the peer's `nn.LSTM`: `weight_ih_l{k}` [4H, in] and
//! `weight_hh_l{k}` [4H, H] are the transposed input and hidden matmuls (the gates i, f, g, o
//! are stacked in PyTorch's order already). stoker has one bias per layer; PyTorch has b_ih and
//! b_hh, which only ever appear as their sum: the export writes the bias as b_ih and a zero
//! b_hh (the peer keeps b_hh zero and frozen), and loading adds the two.

use super::StepLstm;
use crate::export::{ExportError, Result, Tensors, host, transpose};

impl StepLstm {
    pub(crate) fn pytorch_tensors(&self, prefix: &str, k: usize, out: &mut Tensors) -> Result<()> {
        for (kind, linear) in [("ih", &self.input), ("hh", &self.hidden)] {
            let name = format!("{prefix}.weight_{kind}_l{k}");
            let [inputs, gates] = linear.weight.val().dims();
            let w = host(&name, linear.weight.val())?;
            out.put(name, vec![gates, inputs], transpose(&w, inputs, gates));
        }
        let gates = 4 * self.hidden_size;
        let name = format!("{prefix}.bias_ih_l{k}");
        let bias = match &self.input.bias {
            Some(b) => host(&name, b.val())?,
            None => vec![0.0; gates],
        };
        out.put(name, vec![gates], bias);
        out.put(
            format!("{prefix}.bias_hh_l{k}"),
            vec![gates],
            vec![0.0; gates],
        );
        Ok(())
    }

    pub(crate) fn load_pytorch(
        mut self,
        prefix: &str,
        k: usize,
        src: &mut Tensors,
    ) -> Result<Self> {
        self.input = load_weight(src, &format!("{prefix}.weight_ih_l{k}"), self.input)?;
        self.hidden = load_weight(src, &format!("{prefix}.weight_hh_l{k}"), self.hidden)?;
        let gates = 4 * self.hidden_size;
        let ih = src.take(&format!("{prefix}.bias_ih_l{k}"), &[gates])?;
        let hh = src.take(&format!("{prefix}.bias_hh_l{k}"), &[gates])?;
        let sum: Vec<f32> = ih.iter().zip(&hh).map(|(a, b)| a + b).collect();
        let name = format!("{prefix}.bias_ih_l{k}");
        let bias = self
            .input
            .bias
            .take()
            .ok_or(ExportError::Unexpected { name })?;
        self.input.bias = Some(bias.map(|t| crate::export::tensor(sum, [gates], &t.device())));
        Ok(self)
    }
}

/// A gate matmul's weight from PyTorch's [4H, in] (no bias: that is handled above).
fn load_weight(
    src: &mut Tensors,
    name: &str,
    mut linear: burn::nn::Linear,
) -> Result<burn::nn::Linear> {
    let [inputs, gates] = linear.weight.val().dims();
    let w = transpose(&src.take(name, &[gates, inputs])?, gates, inputs);
    linear.weight = linear
        .weight
        .map(|t| crate::export::tensor(w, [inputs, gates], &t.device()));
    Ok(linear)
}
