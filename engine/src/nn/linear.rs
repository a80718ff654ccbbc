//! Linear (FIR) model: `y[t] = b + Σ_j w[j]·x[t − j]`, each input channel filtered to the output channel of the same
//! index (extra output channels are silent), as the reference's `Linear` does.

use super::conv1d::Conv1d;
use super::{BuildContext, BuildError, Dsp, Weights};
use crate::formats::nam::LinearConfig;

/// A Linear model: one depthwise convolution sharing the file's taps across channels.
pub struct Linear {
    conv: Conv1d,
    in_channels: usize,
    out_channels: usize,
    receptive_field: usize,
    parameters: usize,
}

impl Linear {
    pub fn new(config: &LinearConfig, w: &mut Weights<'_>, ctx: &BuildContext) -> Result<Self, BuildError> {
        let k = config.receptive_field;
        let taps = w.take(k)?;
        let bias = if config.bias { Some(w.take(1)?[0]) } else { None };
        if !w.is_empty() {
            return Err(BuildError::Inconsistent(format!("Linear: {} weights left over", w.remaining())));
        }
        // File tap j multiplies x[t − j]; conv tap k multiplies x[t − (K−1−k)], so conv tap k = file tap K−1−k.
        let channels = config.in_channels.min(config.out_channels);
        let mut stream = Vec::with_capacity(channels * (k + 1));
        for _ in 0..channels {
            stream.extend((0..k).map(|tap| taps[k - 1 - tap]));
        }
        if let Some(b) = bias {
            stream.extend(std::iter::repeat_n(b, channels));
        }
        let conv = Conv1d::new(&mut Weights::new(&stream), channels, channels, k, 1, bias.is_some(), channels, ctx)?;
        Ok(Self {
            conv,
            in_channels: config.in_channels,
            out_channels: config.out_channels,
            receptive_field: k,
            parameters: k + usize::from(config.bias),
        })
    }
}

impl Dsp for Linear {
    fn in_channels(&self) -> usize {
        self.in_channels
    }

    fn out_channels(&self) -> usize {
        self.out_channels
    }

    fn process(&mut self, input: &[f32], output: &mut [f32], n: usize) {
        let channels = self.conv.in_channels();
        // Only the first `channels` input rows are filtered; the conv takes exactly those.
        self.conv.process(&input[..channels * n], output, n);
        output[channels * n..self.out_channels * n].fill(0.0);
    }

    fn prewarm_samples(&self) -> usize {
        0
    }

    fn save_state(&mut self) {
        self.conv.save_state();
    }

    fn restore_state(&mut self) {
        self.conv.restore_state();
    }

    fn receptive_field(&self) -> usize {
        self.receptive_field
    }

    fn parameter_count(&self) -> usize {
        self.parameters
    }
}
