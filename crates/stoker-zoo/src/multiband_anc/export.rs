//! The multiband ANC controller under the peer's names. Band layer k (hidden layers first,
//! the head last) is `w{k}` [bands, in, out] and `b{k}` [bands, 1, out], k from 1: stoker's
//! BandDense layout, so nothing is transposed (the peer's default one hidden layer gives
//! w1, b1, w2, b2). The fixed filterbank and the secondary path are the peer's buffers
//! `filters` [bands, 1, filter_taps] and `secondary` [1, 1, |S|], both time-reversed for
//! `conv1d` as stoker holds them; the linear FIR, when the spec has one, is `linear`
//! [linear_taps], oldest sample first. Loading replaces the buffers too, so a loaded model
//! computes exactly what the file describes.

use super::MultibandAnc;
use crate::export::{Result, Tensors};

impl MultibandAnc {
    pub(crate) fn pytorch_tensors(&self, out: &mut Tensors) -> Result<()> {
        for (k, layer) in self.hidden.iter().chain([&self.head]).enumerate() {
            out.put_tensor(&format!("w{}", k + 1), layer.weight.val())?;
            out.put_tensor(&format!("b{}", k + 1), layer.bias.val())?;
        }
        out.put(
            "filters",
            vec![self.bands, 1, self.filter_taps],
            self.filterbank.clone(),
        );
        out.put(
            "secondary",
            vec![1, 1, self.secondary.len()],
            self.secondary.clone(),
        );
        if let Some(linear) = &self.linear {
            let data = crate::export::host("linear", linear.val())?;
            out.put("linear", vec![self.linear_taps], data);
        }
        Ok(())
    }

    pub(crate) fn load_pytorch(mut self, src: &mut Tensors) -> Result<Self> {
        let layers = self.hidden.len();
        for k in 0..=layers {
            let layer = if k < layers {
                &mut self.hidden[k]
            } else {
                &mut self.head
            };
            layer.weight = src.take_param(&format!("w{}", k + 1), layer.weight.clone())?;
            layer.bias = src.take_param(&format!("b{}", k + 1), layer.bias.clone())?;
        }
        self.filterbank = src.take("filters", &[self.bands, 1, self.filter_taps])?;
        self.secondary = src.take("secondary", &[1, 1, self.secondary.len()])?;
        if let Some(linear) = self.linear.take() {
            let data = src.take("linear", &[self.linear_taps])?;
            let taps = self.linear_taps;
            self.linear = Some(linear.map(|t| crate::export::tensor(data, [taps, 1], &t.device())));
        }
        Ok(self)
    }
}
