//! LSTM-attention under the peer's names: the stack as `lstm` (an `nn.LSTM`, see
//! `recurrent::export`), `score_w`, `score_v` (no bias) and `head` as `nn.Linear`s, and the
//! optional linear skip as `skip` (the peer builds it when `linear_skip` is set) and the
//! optional per-lag score bias as `position_bias` [1, T] (`position_bias`), and the segment
//! embedding as `embed` (`segment`). Instance
//! normalisation and the recurrent length have no parameters: the peer takes them as flags.

use super::LstmAttention;
use crate::export::{Result, Tensors};

impl LstmAttention {
    pub(crate) fn pytorch_tensors(&self, out: &mut Tensors) -> Result<()> {
        if let Some(embed) = &self.embed {
            out.put_linear("embed", embed)?;
        }
        for (k, layer) in self.layers.iter().enumerate() {
            layer.pytorch_tensors("lstm", k, out)?;
        }
        out.put_linear("score_w", &self.score_w)?;
        out.put_linear("score_v", &self.score_v)?;
        if let Some(bias) = &self.position {
            out.put_tensor("position_bias", bias.val())?;
        }
        out.put_linear("head", &self.head)?;
        if let Some(skip) = &self.skip {
            out.put_linear("skip", skip)?;
        }
        Ok(())
    }

    pub(crate) fn load_pytorch(mut self, src: &mut Tensors) -> Result<Self> {
        if let Some(embed) = self.embed.take() {
            self.embed = Some(src.take_linear("embed", embed)?);
        }
        self.layers = std::mem::take(&mut self.layers)
            .into_iter()
            .enumerate()
            .map(|(k, layer)| layer.load_pytorch("lstm", k, src))
            .collect::<Result<_>>()?;
        self.score_w = src.take_linear("score_w", self.score_w)?;
        self.score_v = src.take_linear("score_v", self.score_v)?;
        if let Some(bias) = self.position.take() {
            self.position = Some(src.take_param("position_bias", bias)?);
        }
        self.head = src.take_linear("head", self.head)?;
        if let Some(skip) = self.skip.take() {
            self.skip = Some(src.take_linear("skip", skip)?);
        }
        Ok(self)
    }
}
