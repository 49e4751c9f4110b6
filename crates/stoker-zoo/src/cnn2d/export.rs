//! CNN2D under the names of the peer's `nn.Sequential` (`Cnn2d.net`): conv k at index 2k (its
//! ReLU at 2k + 1), then MaxPool, Flatten, the hidden Linear at 2n + 2 (ReLU) and the head at
//! 2n + 4. Conv weights are [out, in, kh, kw] in both frameworks; burn flattens [C, H, W] in
//! PyTorch's order, so only the Linear weights are transposed. Dropout (the identity at
//! inference) has no parameters and no index in the peer; the persistence skip is the peer's
//! `residual` flag.

use super::Cnn2d;
use crate::export::{Result, Tensors};

impl Cnn2d {
    fn indices(&self) -> (usize, usize) {
        let n = self.convs.len();
        (2 * n + 2, 2 * n + 4)
    }

    pub(crate) fn pytorch_tensors(&self, out: &mut Tensors) -> Result<()> {
        for (k, conv) in self.convs.iter().enumerate() {
            out.put_tensor(&format!("net.{}.weight", 2 * k), conv.weight.val())?;
            if let Some(bias) = &conv.bias {
                out.put_tensor(&format!("net.{}.bias", 2 * k), bias.val())?;
            }
        }
        let (hidden, head) = self.indices();
        out.put_linear(&format!("net.{hidden}"), &self.hidden)?;
        out.put_linear(&format!("net.{head}"), &self.head)
    }

    pub(crate) fn load_pytorch(mut self, src: &mut Tensors) -> Result<Self> {
        let (hidden, head) = self.indices();
        for (k, conv) in self.convs.iter_mut().enumerate() {
            conv.weight = src.take_param(&format!("net.{}.weight", 2 * k), conv.weight.clone())?;
            if let Some(bias) = conv.bias.take() {
                conv.bias = Some(src.take_param(&format!("net.{}.bias", 2 * k), bias)?);
            }
        }
        self.hidden = src.take_linear(&format!("net.{hidden}"), self.hidden)?;
        self.head = src.take_linear(&format!("net.{head}"), self.head)?;
        Ok(self)
    }
}
