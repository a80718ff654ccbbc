//! Causal dilated 1-D convolution with its own input history.
//!
//! `y[:, t] = Σ_k W_k · x[:, t − d·(K−1−k)] (+ b)`: tap `K−1` is the current frame, tap 0 the oldest. Before the
//! first frame the history is zero. Each channel's history is a contiguous line of frames, so every tap reads the
//! block as one contiguous slice. A line holds `keep + max(keep, max_block)` frames (`keep = d·(K−1)`); when the next
//! block does not fit, the last `keep` frames are copied back to its start. That happens at most once per `keep`
//! frames written, so the copying costs at most one float per float written, whatever the dilation.

use super::conv1x1::weighted_sums;
use super::simd::Isa;
use super::{BuildContext, BuildError, Weights};

/// Per-channel line of past input frames.
#[derive(Debug, Clone)]
pub struct History {
    channels: usize,
    /// Frames the convolution needs before the current block: `d·(K−1)`.
    keep: usize,
    /// Frames per channel line.
    capacity: usize,
    /// Where the next block is written (frames before it are the history).
    pos: usize,
    data: Vec<f32>,
    /// The last `keep` frames per channel, as saved by [`History::save`].
    saved: Vec<f32>,
}

impl History {
    pub fn new(channels: usize, keep: usize, ctx: &BuildContext) -> Result<Self, BuildError> {
        let capacity = keep + keep.max(ctx.max_block);
        ctx.reserve(channels as u64 * (capacity + keep) as u64)?;
        Ok(Self {
            channels,
            keep,
            capacity,
            pos: keep,
            data: vec![0.0; channels * capacity],
            saved: vec![0.0; channels * keep],
        })
    }

    /// Appends a planar block (`channels × n`) and returns where it starts in each line.
    fn push(&mut self, input: &[f32], n: usize) -> usize {
        if self.pos + n > self.capacity {
            let (keep, pos, capacity) = (self.keep, self.pos, self.capacity);
            for line in self.data.chunks_exact_mut(capacity) {
                line.copy_within(pos - keep..pos, 0);
            }
            self.pos = keep;
        }
        let start = self.pos;
        for (c, line) in self.data.chunks_exact_mut(self.capacity).enumerate() {
            line[start..start + n].copy_from_slice(&input[c * n..(c + 1) * n]);
        }
        self.pos += n;
        start
    }

    /// Index in `data` of channel `c`'s first frame.
    #[inline]
    fn line_start(&self, c: usize) -> usize {
        c * self.capacity
    }

    /// Remembers the current history so that [`History::restore`] can return to it.
    pub fn save(&mut self) {
        let (keep, pos) = (self.keep, self.pos);
        for (line, saved) in self.data.chunks_exact(self.capacity).zip(self.saved.chunks_exact_mut(keep.max(1))) {
            saved[..keep].copy_from_slice(&line[pos - keep..pos]);
        }
    }

    /// Returns to the history saved by [`History::save`] (zeros if never saved). No allocation.
    pub fn restore(&mut self) {
        let keep = self.keep;
        for (line, saved) in self.data.chunks_exact_mut(self.capacity).zip(self.saved.chunks_exact(keep.max(1))) {
            line[..keep].copy_from_slice(&saved[..keep]);
        }
        self.pos = keep;
    }

    pub fn channels(&self) -> usize {
        self.channels
    }
}

/// A causal, dilated, optionally grouped 1-D convolution.
#[derive(Debug, Clone)]
pub struct Conv1d {
    in_channels: usize,
    out_channels: usize,
    kernel_size: usize,
    dilation: usize,
    groups: usize,
    /// `[out][tap][in/groups]`: the terms of one output row in the order they are summed.
    weight: Vec<f32>,
    bias: Option<Vec<f32>>,
    history: History,
    /// Per group, `[tap][in/groups]`: where each term's frames start in the history (refreshed every block).
    offsets: Vec<usize>,
    isa: Isa,
}

impl Conv1d {
    /// Reads weights in PyTorch order, `weight (out, in/groups, K)` flattened row-major, then `out` biases.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        w: &mut Weights<'_>,
        in_channels: usize,
        out_channels: usize,
        kernel_size: usize,
        dilation: usize,
        bias: bool,
        groups: usize,
        ctx: &BuildContext,
    ) -> Result<Self, BuildError> {
        if groups == 0
            || !in_channels.is_multiple_of(groups)
            || !out_channels.is_multiple_of(groups)
            || kernel_size == 0
        {
            return Err(BuildError::Inconsistent(format!(
                "conv: {groups} groups do not divide {in_channels} → {out_channels} channels (kernel {kernel_size})"
            )));
        }
        let in_g = in_channels / groups;
        let file = w.take(out_channels * in_g * kernel_size)?;
        let mut weight = vec![0.0; file.len()];
        for o in 0..out_channels {
            for j in 0..in_g {
                for k in 0..kernel_size {
                    weight[(o * kernel_size + k) * in_g + j] = file[(o * in_g + j) * kernel_size + k];
                }
            }
        }
        let bias = if bias { Some(w.take(out_channels)?.to_vec()) } else { None };
        let history = History::new(in_channels, dilation * (kernel_size - 1), ctx)?;
        let offsets = vec![0; kernel_size * in_channels];
        Ok(Self {
            in_channels,
            out_channels,
            kernel_size,
            dilation,
            groups,
            weight,
            bias,
            history,
            offsets,
            isa: Isa::detect(),
        })
    }

    pub fn in_channels(&self) -> usize {
        self.in_channels
    }

    pub fn out_channels(&self) -> usize {
        self.out_channels
    }

    /// Past frames the output depends on: `d·(K−1)`.
    pub fn receptive_field(&self) -> usize {
        self.dilation * (self.kernel_size - 1)
    }

    pub fn parameter_count(&self) -> usize {
        self.weight.len() + self.bias.as_ref().map_or(0, Vec::len)
    }

    /// `output[..out × n]` from `input[..in × n]`, both planar; `n` ≤ the `max_block` it was built for.
    pub fn process(&mut self, input: &[f32], output: &mut [f32], n: usize) {
        let start = self.history.push(input, n);
        let in_g = self.in_channels / self.groups;
        let out_g = self.out_channels / self.groups;
        let taps = self.kernel_size;
        let terms = taps * in_g;
        for (g, offsets) in self.offsets.chunks_exact_mut(terms).enumerate() {
            for k in 0..taps {
                let delay = self.dilation * (taps - 1 - k);
                for j in 0..in_g {
                    offsets[k * in_g + j] = self.history.line_start(g * in_g + j) + start - delay;
                }
            }
        }
        let data = &self.history.data;
        for (g, rows) in output[..self.out_channels * n].chunks_exact_mut(out_g * n).enumerate() {
            let offsets = &self.offsets[g * terms..][..terms];
            let bias = self.bias.as_ref().map(|b| &b[g * out_g..][..out_g]);
            let weights = &self.weight[g * out_g * terms..][..out_g * terms];
            weighted_sums(self.isa, rows, n, weights, bias, data, |i| offsets[i]);
        }
    }

    pub fn save_state(&mut self) {
        self.history.save();
    }

    pub fn restore_state(&mut self) {
        self.history.restore();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::{BuildOptions, TanhMode};

    fn conv(data: &[f32], c_in: usize, c_out: usize, k: usize, d: usize, bias: bool, groups: usize) -> Conv1d {
        let mut w = Weights::new(data);
        let ctx = BuildContext::new(BuildOptions::new(TanhMode::Accurate, 4));
        let conv = Conv1d::new(&mut w, c_in, c_out, k, d, bias, groups, &ctx).unwrap();
        assert!(w.is_empty());
        conv
    }

    #[test]
    fn tap_k_minus_1_is_the_current_sample_and_tap_0_the_oldest() {
        // K=3, d=2: y[t] = 1·x[t−4] + 10·x[t−2] + 100·x[t] + 0.5
        let mut c = conv(&[1.0, 10.0, 100.0, 0.5], 1, 1, 3, 2, true, 1);
        let x = [1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0];
        let mut y = vec![];
        for chunk in x.chunks(3) {
            let mut out = vec![0.0; chunk.len()];
            c.process(chunk, &mut out, chunk.len());
            y.extend(out);
        }
        assert_eq!(y, [100.5, 0.5, 10.5, 0.5, 1.5, 0.5, 0.5]);
    }

    #[test]
    fn history_survives_many_rewinds_unchanged() {
        // A pure delay of 5 frames (K=2, d=5, weights [1, 0]) must delay any signal exactly, across rewinds.
        let mut c = conv(&[1.0, 0.0], 1, 1, 2, 5, false, 1);
        let x: Vec<f32> = (0..500).map(|i| i as f32).collect();
        let mut y = vec![0.0; 500];
        let mut t = 0;
        for n in [1, 3, 4, 2].iter().cycle() {
            if t >= 500 {
                break;
            }
            let n = (*n).min(500 - t);
            c.process(&x[t..t + n], &mut y[t..t + n], n);
            t += n;
        }
        for t in 5..500 {
            assert_eq!(y[t], x[t - 5]);
        }
    }

    #[test]
    fn depthwise_conv_filters_each_channel_with_its_own_taps() {
        // 2 channels, groups 2, K=2, d=1: ch0 = 2·x0[t−1] + 3·x0[t], ch1 = 5·x1[t−1] + 7·x1[t]
        let mut c = conv(&[2.0, 3.0, 5.0, 7.0], 2, 2, 2, 1, false, 2);
        let x = [1.0, 1.0, /* ch1 */ 1.0, 0.0];
        let mut y = [0.0; 4];
        c.process(&x, &mut y, 2);
        assert_eq!(y, [3.0, 5.0, 7.0, 5.0]);
    }

    #[test]
    fn restore_returns_to_the_saved_history() {
        let mut c = conv(&[1.0, 0.0], 1, 1, 2, 1, false, 1);
        let mut y = [0.0];
        c.process(&[4.0], &mut y, 1);
        c.save_state();
        c.process(&[9.0], &mut y, 1);
        c.restore_state();
        c.process(&[0.0], &mut y, 1);
        assert_eq!(y, [4.0]);
    }
}
