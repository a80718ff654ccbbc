//! ConvNet (legacy): blocks of kernel-2 dilated convolution, optional batch norm and an activation, then a per-frame
//! linear head. Batch norm is folded at load time into `x·scale + loc` with `scale = w / √(eps + var)` and
//! `loc = b − scale·mean`, as the reference does.

use super::activations::Activation;
use super::conv1d::Conv1d;
use super::conv1x1::Conv1x1;
use super::{BuildContext, BuildError, Dsp, Weights};
use crate::formats::nam::{CONVNET_KERNEL_SIZE, ConvNetConfig};

struct Block {
    conv: Conv1d,
    /// Folded batch norm `(scale, loc)` per channel.
    batchnorm: Option<(Vec<f32>, Vec<f32>)>,
    /// Block output (channels × block), the next block's input.
    out: Vec<f32>,
}

/// A ConvNet model.
pub struct ConvNet {
    blocks: Vec<Block>,
    head: Conv1x1,
    activation: Activation,
    channels: usize,
    in_channels: usize,
    out_channels: usize,
    prewarm_samples: usize,
    parameters: usize,
}

impl ConvNet {
    pub fn new(config: &ConvNetConfig, w: &mut Weights<'_>, ctx: &BuildContext) -> Result<Self, BuildError> {
        let parameters = w.remaining();
        let c = config.channels;
        let mut blocks = Vec::with_capacity(config.dilations.len());
        for (i, &d) in config.dilations.iter().enumerate() {
            let c_in = if i == 0 { config.in_channels } else { c };
            let conv = Conv1d::new(w, c_in, c, CONVNET_KERNEL_SIZE, d, !config.batchnorm, config.groups, ctx)?;
            let batchnorm = if config.batchnorm {
                let mean = w.take(c)?;
                let var = w.take(c)?;
                let weight = w.take(c)?;
                let bias = w.take(c)?;
                let eps = w.take(1)?[0];
                let scale: Vec<f32> = (0..c).map(|k| weight[k] / (eps + var[k]).sqrt()).collect();
                let loc = (0..c).map(|k| bias[k] - scale[k] * mean[k]).collect();
                Some((scale, loc))
            } else {
                None
            };
            blocks.push(Block { conv, batchnorm, out: ctx.buffer(c)? });
        }
        let head = Conv1x1::new(w, c, config.out_channels, true, 1)?;
        if !w.is_empty() {
            return Err(BuildError::Inconsistent(format!("ConvNet: {} weights left over", w.remaining())));
        }
        Ok(Self {
            blocks,
            head,
            activation: Activation::new(&config.activation, ctx.tanh),
            channels: c,
            in_channels: config.in_channels,
            out_channels: config.out_channels,
            prewarm_samples: 1 + config.dilations.iter().sum::<usize>(),
            parameters,
        })
    }
}

impl Dsp for ConvNet {
    fn in_channels(&self) -> usize {
        self.in_channels
    }

    fn out_channels(&self) -> usize {
        self.out_channels
    }

    fn process(&mut self, input: &[f32], output: &mut [f32], n: usize) {
        let c = self.channels;
        for i in 0..self.blocks.len() {
            let (done, rest) = self.blocks.split_at_mut(i);
            let block = &mut rest[0];
            let x: &[f32] = done.last().map_or(input, |p| &p.out);
            block.conv.process(x, &mut block.out, n);
            if let Some((scale, loc)) = &block.batchnorm {
                for (k, row) in block.out[..c * n].chunks_exact_mut(n).enumerate() {
                    row.iter_mut().for_each(|v| *v = *v * scale[k] + loc[k]);
                }
            }
            self.activation.apply(&mut block.out, c, n, c * n);
        }
        if let Some(last) = self.blocks.last() {
            self.head.process(&last.out, output, n);
        }
    }

    fn prewarm_samples(&self) -> usize {
        self.prewarm_samples
    }

    fn save_state(&mut self) {
        self.blocks.iter_mut().for_each(|b| b.conv.save_state());
    }

    fn restore_state(&mut self) {
        self.blocks.iter_mut().for_each(|b| b.conv.restore_state());
    }

    fn receptive_field(&self) -> usize {
        self.prewarm_samples
    }

    fn parameter_count(&self) -> usize {
        self.parameters
    }
}
