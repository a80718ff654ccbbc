//! Stacked LSTM with a linear head, as NAM's LSTM architecture computes it (PyTorch gate order i, f, g, o).
//!
//! Per frame and layer: `v = W·[x; h] + b`, `i = σ(v₀) f = σ(v₁) g = tanh(v₂) o = σ(v₃)`, `c = f⊙c + i⊙g`,
//! `h = o⊙tanh(c)`; the next layer's input is `h`; `y = W_o·h_last + b_o`. The initial `h0`, `c0` come from the file
//! (the trainer exports the state after settling on silence).

use super::activations::{TanhMode, fast_sigmoid, fast_tanh, sigmoid};
use super::conv1x1::axpy;
use super::{BuildError, Dsp, Weights};
use crate::formats::nam::LstmConfig;

/// Seconds of silence the reference runs through an LSTM after a reset (at the model's own sample rate).
const PREWARM_SECONDS: f64 = 0.5;

/// The cell's sigmoid: exact, or built on the fast tanh in fast mode (as the reference's LSTM does).
#[inline]
fn sig<const FAST: bool>(x: f32) -> f32 {
    if FAST { fast_sigmoid(x) } else { sigmoid(x) }
}

#[inline]
fn tanh<const FAST: bool>(x: f32) -> f32 {
    if FAST { fast_tanh(x) } else { x.tanh() }
}

#[derive(Debug, Clone)]
struct Layer {
    input_size: usize,
    hidden: usize,
    /// Column-major `4H × (I + H)`: column `j` (the weights of `[x; h][j]`) is contiguous.
    w_columns: Vec<f32>,
    bias: Vec<f32>,
    /// `[x; h]`: the input of this frame followed by the previous hidden state.
    xh: Vec<f32>,
    cell: Vec<f32>,
    gates: Vec<f32>,
    saved_h: Vec<f32>,
    saved_c: Vec<f32>,
}

impl Layer {
    fn new(w: &mut Weights<'_>, input_size: usize, hidden: usize) -> Result<Self, BuildError> {
        let cols = input_size + hidden;
        let rows = 4 * hidden;
        let row_major = w.take(rows * cols)?;
        let mut w_columns = vec![0.0; rows * cols];
        for r in 0..rows {
            for j in 0..cols {
                w_columns[j * rows + r] = row_major[r * cols + j];
            }
        }
        let bias = w.take(rows)?.to_vec();
        let h0 = w.take(hidden)?;
        let c0 = w.take(hidden)?.to_vec();
        let mut xh = vec![0.0; cols];
        xh[input_size..].copy_from_slice(h0);
        Ok(Self {
            input_size,
            hidden,
            w_columns,
            bias,
            xh,
            saved_h: h0.to_vec(),
            saved_c: c0.clone(),
            cell: c0,
            gates: vec![0.0; rows],
        })
    }

    /// One frame; the new hidden state is left in `self.xh[input_size..]`.
    #[inline]
    fn step<const FAST: bool>(&mut self) {
        let rows = 4 * self.hidden;
        self.gates.copy_from_slice(&self.bias);
        for (j, &x) in self.xh.iter().enumerate() {
            axpy(&mut self.gates, x, &self.w_columns[j * rows..(j + 1) * rows]);
        }
        let h = self.hidden;
        let (i_g, rest) = self.gates.split_at(h);
        let (f_g, rest) = rest.split_at(h);
        let (g_g, o_g) = rest.split_at(h);
        let hidden = &mut self.xh[self.input_size..];
        for k in 0..h {
            let c = sig::<FAST>(f_g[k]) * self.cell[k] + sig::<FAST>(i_g[k]) * tanh::<FAST>(g_g[k]);
            self.cell[k] = c;
            hidden[k] = sig::<FAST>(o_g[k]) * tanh::<FAST>(c);
        }
    }
}

/// An LSTM model.
pub struct Lstm {
    layers: Vec<Layer>,
    /// Row-major `out × H`.
    head_weight: Vec<f32>,
    head_bias: Vec<f32>,
    in_channels: usize,
    out_channels: usize,
    fast: bool,
    prewarm_samples: usize,
    parameters: usize,
}

impl Lstm {
    /// `sample_rate`: the model's own rate (`None` = unknown), which sets the prewarm length.
    pub fn new(
        config: &LstmConfig,
        w: &mut Weights<'_>,
        sample_rate: Option<f64>,
        tanh: TanhMode,
    ) -> Result<Self, BuildError> {
        let parameters = w.remaining();
        let mut layers = Vec::with_capacity(config.num_layers);
        for l in 0..config.num_layers {
            let input = if l == 0 { config.input_size } else { config.hidden_size };
            layers.push(Layer::new(w, input, config.hidden_size)?);
        }
        let head_weight = w.take(config.out_channels * config.hidden_size)?.to_vec();
        let head_bias = w.take(config.out_channels)?.to_vec();
        if !w.is_empty() {
            return Err(BuildError::Inconsistent(format!("LSTM: {} weights left over", w.remaining())));
        }
        if config.input_size != config.in_channels {
            return Err(BuildError::Inconsistent("LSTM input_size must equal in_channels".into()));
        }
        // The reference: int(0.5 · rate), or a single sample (so: one block) when the rate is unknown.
        let prewarm_samples = sample_rate.map_or(1, |sr| (PREWARM_SECONDS * sr) as usize);
        Ok(Self {
            layers,
            head_weight,
            head_bias,
            in_channels: config.in_channels,
            out_channels: config.out_channels,
            fast: tanh == TanhMode::Fast,
            prewarm_samples,
            parameters,
        })
    }

    fn run<const FAST: bool>(&mut self, input: &[f32], output: &mut [f32], n: usize) {
        let hidden = self.layers.first().map_or(0, |l| l.hidden);
        for t in 0..n {
            for c in 0..self.in_channels {
                self.layers[0].xh[c] = input[c * n + t];
            }
            for l in 0..self.layers.len() {
                if l > 0 {
                    let (done, rest) = self.layers.split_at_mut(l);
                    let prev = &done[l - 1];
                    rest[0].xh[..hidden].copy_from_slice(&prev.xh[prev.input_size..]);
                }
                self.layers[l].step::<FAST>();
            }
            let last = &self.layers[self.layers.len() - 1];
            let h = &last.xh[last.input_size..];
            for o in 0..self.out_channels {
                let w = &self.head_weight[o * hidden..(o + 1) * hidden];
                let dot = w.iter().zip(h).fold(0.0f32, |acc, (w, h)| acc + w * h);
                output[o * n + t] = dot + self.head_bias[o];
            }
        }
    }
}

impl Dsp for Lstm {
    fn in_channels(&self) -> usize {
        self.in_channels
    }

    fn out_channels(&self) -> usize {
        self.out_channels
    }

    fn process(&mut self, input: &[f32], output: &mut [f32], n: usize) {
        if self.fast { self.run::<true>(input, output, n) } else { self.run::<false>(input, output, n) }
    }

    fn prewarm_samples(&self) -> usize {
        self.prewarm_samples
    }

    fn save_state(&mut self) {
        for l in &mut self.layers {
            l.saved_h.copy_from_slice(&l.xh[l.input_size..]);
            l.saved_c.copy_from_slice(&l.cell);
        }
    }

    fn restore_state(&mut self) {
        for l in &mut self.layers {
            let input_size = l.input_size;
            l.xh[input_size..].copy_from_slice(&l.saved_h);
            l.cell.copy_from_slice(&l.saved_c);
        }
    }

    fn receptive_field(&self) -> usize {
        1
    }

    fn parameter_count(&self) -> usize {
        self.parameters
    }
}
