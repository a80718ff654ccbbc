//! Stacked LSTM with a linear head, as NAM's LSTM architecture computes it (PyTorch gate order i, f, g, o).
//!
//! Per frame and layer: `v = W·[x; h] + b`, `i = σ(v₀) f = σ(v₁) g = tanh(v₂) o = σ(v₃)`, `c = f⊙c + i⊙g`,
//! `h = o⊙tanh(c)`; the next layer's input is `h`; `y = W_o·h_last + b_o`. The initial `h0`, `c0` come from the file
//! (the trainer exports the state after settling on silence).
//!
//! A frame depends on the previous one through `h`, so nothing can be vectorised over time: the kernels vectorise
//! over hidden units instead. The hidden units are cut into *lanes* of eight (one AVX register), and the weights are
//! stored so that one column of `W` (the weights of one element of `[x; h]`) holds, lane after lane, the eight rows
//! of gate i, then f, o and g for those units (the sigmoid gates first). `v` is then accumulated column by column
//! (bias first, then the columns in file order, the reference's order) in four registers per lane, and the lane's
//! activations, cell and new hidden state follow in registers with no shuffling. Sizes that are not a multiple of
//! eight are padded with zero weights; a padded unit's cell and hidden state stay exactly zero.
//!
//! Three kernels compute this (chosen once, when the model is built, by [`Isa::detect`]): a portable one written on
//! fixed-size arrays that the compiler vectorises for any target; an AVX2/FMA one with explicit intrinsics
//! ([`avx2`]), compiled for each number of lanes up to eight (one layer of up to 64 units) and once for any size; and
//! an AVX-512 one ([`avx512`]) for one layer of 9 to 64 units, sixteen units a register, on a second copy of the
//! weights stored sixteen units wide. They differ from each other and from the plain formulas (`f32::tanh`, `exp`)
//! only by the few-ulp errors of the exp-based activations ([`accurate_tanh`], [`accurate_sigmoid`]), fused
//! multiply-adds and summation order; in fast-tanh mode the activations are the reference's formula, operation for
//! operation. The portable kernel computes the gate sums and the head exactly as the reference does, rounding for
//! rounding; the AVX-512 kernel computes every unit exactly as the AVX2 kernel does.

use super::activations::{TanhMode, accurate_sigmoid, accurate_tanh, fast_sigmoid, fast_tanh};
use super::simd::Isa;
use super::{BuildError, Dsp, Weights};
use crate::formats::nam::LstmConfig;

#[cfg(target_arch = "x86_64")]
mod avx2;
#[cfg(target_arch = "x86_64")]
mod avx512;

/// Seconds of silence the reference runs through an LSTM after a reset (at the model's own sample rate).
const PREWARM_SECONDS: f64 = 0.5;

/// Hidden units per lane: eight `f32`, one AVX register.
const LANE: usize = 8;

/// Eight floats aligned to an AVX register, so that the kernels' loads never straddle a cache line.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
#[repr(C, align(32))]
struct Lane([f32; LANE]);

/// The four gates of one lane, in one column of `W` (or in the bias), in the order i, f, o, g: the three sigmoid
/// gates first (the file's order is i, f, g, o).
type GateLanes = [Lane; 4];

/// Sixteen floats aligned to an AVX-512 register: the AVX-512 kernel's *wide lane*, sixteen hidden units.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
#[repr(C, align(64))]
struct Wide([f32; 2 * LANE]);

impl AsMut<[f32; LANE]> for Lane {
    fn as_mut(&mut self) -> &mut [f32; LANE] {
        &mut self.0
    }
}

impl AsMut<[f32; 2 * LANE]> for Wide {
    fn as_mut(&mut self) -> &mut [f32; 2 * LANE] {
        &mut self.0
    }
}

/// The four gates of one wide lane, as [`GateLanes`].
type WideGates = [Wide; 4];

/// Where the file's gate `q` (i, f, g, o) goes in a [`GateLanes`].
const GATE_SLOT: [usize; 4] = [0, 1, 3, 2];

/// The floats of whole lanes, in order.
fn floats(lanes: &[Lane]) -> &[f32] {
    // SAFETY: `Lane` is `repr(C)` around `[f32; LANE]` and its size (32 bytes) equals its alignment, so `lanes` is
    // `LANE · lanes.len()` contiguous, initialised `f32`s, borrowed for as long as `lanes` is.
    unsafe { std::slice::from_raw_parts(lanes.as_ptr().cast::<f32>(), lanes.len() * LANE) }
}

fn floats_mut(lanes: &mut [Lane]) -> &mut [f32] {
    // SAFETY: as in `floats`, and the borrow is exclusive.
    unsafe { std::slice::from_raw_parts_mut(lanes.as_mut_ptr().cast::<f32>(), lanes.len() * LANE) }
}

#[derive(Debug, Clone)]
struct Layer {
    hidden: usize,
    /// `(I + H) × lanes`, column-major: column `j` of `W` (the weights of `[x; h][j]`) is
    /// `weights[j * lanes..][..lanes]`, gate `q` of hidden unit `LANE·l + k` in `[l][GATE_SLOT[q]].0[k]` of it.
    /// Padded units have zero weights.
    weights: Vec<GateLanes>,
    /// One entry per lane, the same way.
    bias: Vec<GateLanes>,
    /// The same weights and bias sixteen units wide ([`Wide`]), for the AVX-512 kernel: built only where it runs.
    wide: Vec<WideGates>,
    wide_bias: Vec<WideGates>,
    /// This frame's input `x`.
    x: Vec<f32>,
    /// Two hidden states, `hidden` rounded up to whole lanes: a frame reads `h[current]` and writes the other one,
    /// so that no lane overwrites an `h` another lane still reads. The padding stays zero.
    h: [Vec<Lane>; 2],
    current: usize,
    /// The cell state, padding zero.
    cell: Vec<Lane>,
    /// Scratch for the AVX2 kernel's any-size path: the gate sums, `4 × lanes`, gate-major.
    gates: Vec<Lane>,
    saved_h: Vec<f32>,
    saved_c: Vec<f32>,
}

/// What one step of one layer reads and writes, borrowed apart.
struct Step<'a> {
    /// As [`Layer::weights`] and [`Layer::bias`].
    weights: &'a [GateLanes],
    bias: &'a [GateLanes],
    x: &'a [f32],
    /// The previous hidden state, unpadded.
    h: &'a [f32],
    h_out: &'a mut [Lane],
    cell: &'a mut [Lane],
    /// Scratch (see [`Layer::gates`]).
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    gates: &'a mut [Lane],
}

/// Lane `l`'s weights, column after column, out of a layer's `weights` (see [`Layer::weights`]).
#[inline(always)]
fn lane_weights(weights: &[GateLanes], lanes: usize, l: usize) -> impl Iterator<Item = &GateLanes> {
    weights[l..].iter().step_by(lanes)
}

impl Layer {
    /// `wide`: also store the weights sixteen units wide, for the AVX-512 kernel.
    fn new(w: &mut Weights<'_>, input_size: usize, hidden: usize, wide: bool) -> Result<Self, BuildError> {
        let cols = input_size + hidden;
        let lanes = hidden.div_ceil(LANE);
        // Row `q·H + u` of the file's row-major `4H × (I + H)` matrix goes to gate `q` of unit `u`.
        fn blocked<const W: usize, T: Default + Copy + AsMut<[f32; W]>>(
            data: &[f32],
            hidden: usize,
            cols: usize,
        ) -> Vec<[T; 4]> {
            let lanes = hidden.div_ceil(W);
            let mut out = vec![[T::default(); 4]; lanes * cols];
            for (q, slot) in GATE_SLOT.into_iter().enumerate() {
                for u in 0..hidden {
                    for j in 0..cols {
                        out[j * lanes + u / W][slot].as_mut()[u % W] = data[(q * hidden + u) * cols + j];
                    }
                }
            }
            out
        }
        let (weights, bias) = (w.take(4 * hidden * cols)?, w.take(4 * hidden)?);
        let (wide, wide_bias) = if wide {
            (blocked::<{ 2 * LANE }, Wide>(weights, hidden, cols), blocked::<{ 2 * LANE }, Wide>(bias, hidden, 1))
        } else {
            (Vec::new(), Vec::new())
        };
        let (weights, bias) = (blocked::<LANE, Lane>(weights, hidden, cols), blocked::<LANE, Lane>(bias, hidden, 1));
        let h0 = w.take(hidden)?;
        let c0 = w.take(hidden)?;
        let mut h = vec![Lane::default(); lanes];
        floats_mut(&mut h)[..hidden].copy_from_slice(h0);
        let mut cell = vec![Lane::default(); lanes];
        floats_mut(&mut cell)[..hidden].copy_from_slice(c0);
        Ok(Self {
            hidden,
            weights,
            bias,
            wide,
            wide_bias,
            x: vec![0.0; input_size],
            h: [h.clone(), h],
            current: 0,
            cell,
            gates: vec![Lane::default(); 4 * lanes],
            saved_h: h0.to_vec(),
            saved_c: c0.to_vec(),
        })
    }

    /// The hidden state after the last step (padded to whole lanes with zeros).
    #[inline(always)]
    fn hidden_state(&self) -> &[Lane] {
        &self.h[self.current]
    }

    /// Advances by one frame: `kernel` computes the new hidden state into `Step::h_out`, which then becomes
    /// [`Layer::hidden_state`].
    #[inline(always)]
    fn step(&mut self, kernel: impl FnOnce(Step<'_>)) {
        let [a, b] = &mut self.h;
        let (h, h_out) = if self.current == 0 { (&*a, b) } else { (&*b, a) };
        kernel(Step {
            weights: &self.weights,
            bias: &self.bias,
            x: &self.x,
            h: &floats(h)[..self.hidden],
            h_out,
            cell: &mut self.cell,
            gates: &mut self.gates,
        });
        self.current ^= 1;
    }
}

/// One frame of one layer on the portable kernel.
#[inline(always)]
fn step_portable<const FAST: bool>(s: Step<'_>) {
    let lanes = s.cell.len();
    for l in 0..lanes {
        // Bias first, then the columns in order: the reference's sums, rounding for rounding.
        let mut v = s.bias[l].map(|lane| lane.0);
        for (&x, w) in s.x.iter().chain(s.h).zip(lane_weights(s.weights, lanes, l)) {
            for (v, w) in v.iter_mut().zip(w) {
                for (v, w) in v.iter_mut().zip(&w.0) {
                    *v += x * w;
                }
            }
        }
        let [vi, vf, vo, vg] = v;
        let (cell, h_out) = (&mut s.cell[l].0, &mut s.h_out[l].0);
        for k in 0..LANE {
            let c = sig::<FAST>(vf[k]) * cell[k] + sig::<FAST>(vi[k]) * tanh::<FAST>(vg[k]);
            cell[k] = c;
            h_out[k] = sig::<FAST>(vo[k]) * tanh::<FAST>(c);
        }
    }
    // Padded units: σ(0)·0 + σ(0)·tanh(0) = 0, so their cell and hidden state stay zero.
}

/// The cell's sigmoid on the portable kernel: exact to a few ulp, or built on the fast tanh in fast mode (as the
/// reference's LSTM does).
#[inline(always)]
fn sig<const FAST: bool>(x: f32) -> f32 {
    if FAST { fast_sigmoid(x) } else { accurate_sigmoid(x) }
}

#[inline(always)]
fn tanh<const FAST: bool>(x: f32) -> f32 {
    if FAST { fast_tanh(x) } else { accurate_tanh(x) }
}

/// An LSTM model.
pub struct Lstm {
    layers: Vec<Layer>,
    /// `out × lanes` of the last layer: output `o`'s weights are `head_weight[o * lanes..][..lanes]` (padding zero).
    head_weight: Vec<Lane>,
    head_bias: Vec<f32>,
    in_channels: usize,
    out_channels: usize,
    fast: bool,
    isa: Isa,
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
        if config.input_size != config.in_channels {
            return Err(BuildError::Inconsistent("LSTM input_size must equal in_channels".into()));
        }
        let isa = Isa::detect();
        // The AVX-512 kernel runs one layer of 9 to 64 units; anything else runs on the AVX2 kernel. (Eight units or
        // fewer fill half a register at most, and ran 14 % slower in it: `bench --nam lstm.nam`, 3 units.)
        #[cfg(target_arch = "x86_64")]
        let wide = isa == Isa::Avx512 && config.num_layers == 1 && (LANE + 1..=8 * LANE).contains(&config.hidden_size);
        #[cfg(not(target_arch = "x86_64"))]
        let wide = false;
        let mut layers = Vec::with_capacity(config.num_layers);
        for l in 0..config.num_layers {
            let input = if l == 0 { config.input_size } else { config.hidden_size };
            layers.push(Layer::new(w, input, config.hidden_size, wide)?);
        }
        let hidden = config.hidden_size;
        let lanes = hidden.div_ceil(LANE);
        let mut head_weight = vec![Lane::default(); config.out_channels * lanes];
        for (o, row) in w.take(config.out_channels * hidden)?.chunks_exact(hidden).enumerate() {
            for (u, &x) in row.iter().enumerate() {
                head_weight[o * lanes + u / LANE].0[u % LANE] = x;
            }
        }
        let head_bias = w.take(config.out_channels)?.to_vec();
        if !w.is_empty() {
            return Err(BuildError::Inconsistent(format!("LSTM: {} weights left over", w.remaining())));
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
            isa,
            prewarm_samples,
            parameters,
        })
    }

    /// The frame loop shared by the kernels: `step` advances one layer by one frame, `head` is the dot product of
    /// one output's weights with the last hidden state. Both are inlined into the caller, which may be compiled
    /// with more CPU features than the crate's baseline.
    #[inline(always)]
    fn run_frames(
        &mut self,
        input: &[f32],
        output: &mut [f32],
        n: usize,
        step: impl Fn(Step<'_>),
        head: impl Fn(&[Lane], &[Lane]) -> f32,
    ) {
        let lanes = self.layers[0].cell.len();
        for t in 0..n {
            for (c, x) in self.layers[0].x.iter_mut().enumerate() {
                *x = input[c * n + t];
            }
            for l in 0..self.layers.len() {
                let (done, rest) = self.layers.split_at_mut(l);
                if let Some(previous) = done.last() {
                    rest[0].x.copy_from_slice(&floats(previous.hidden_state())[..previous.hidden]);
                }
                rest[0].step(&step);
            }
            let h = self.layers[self.layers.len() - 1].hidden_state();
            for (o, bias) in self.head_bias.iter().enumerate() {
                output[o * n + t] = head(&self.head_weight[o * lanes..][..lanes], h) + bias;
            }
        }
    }

    fn run_portable<const FAST: bool>(&mut self, input: &[f32], output: &mut [f32], n: usize) {
        self.run_frames(input, output, n, step_portable::<FAST>, |w, h| {
            // In order from the first unit, as the reference sums.
            floats(w).iter().zip(floats(h)).fold(0.0f32, |acc, (w, h)| acc + w * h)
        });
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
        if n == 0 {
            return;
        }
        let (input, output) = (&input[..self.in_channels * n], &mut output[..self.out_channels * n]);
        match (self.isa, self.fast) {
            (Isa::Baseline, false) => self.run_portable::<false>(input, output, n),
            (Isa::Baseline, true) => self.run_portable::<true>(input, output, n),
            #[cfg(target_arch = "x86_64")]
            // SAFETY: `Isa::Avx2Fma` only ever comes from `Isa::detect` on a CPU with AVX2 and FMA.
            (Isa::Avx2Fma, false) => unsafe { avx2::run::<false>(self, input, output, n) },
            #[cfg(target_arch = "x86_64")]
            // SAFETY: as above.
            (Isa::Avx2Fma, true) => unsafe { avx2::run::<true>(self, input, output, n) },
            #[cfg(target_arch = "x86_64")]
            // SAFETY: `Isa::Avx512` only ever comes from `Isa::detect` on a CPU with AVX-512F, AVX2 and FMA.
            (Isa::Avx512, false) => unsafe { avx512::run::<false>(self, input, output, n) },
            #[cfg(target_arch = "x86_64")]
            // SAFETY: as above.
            (Isa::Avx512, true) => unsafe { avx512::run::<true>(self, input, output, n) },
        }
    }

    fn prewarm_samples(&self) -> usize {
        self.prewarm_samples
    }

    fn save_state(&mut self) {
        for l in &mut self.layers {
            let hidden = l.hidden;
            l.saved_h.copy_from_slice(&floats(&l.h[l.current])[..hidden]);
            l.saved_c.copy_from_slice(&floats(&l.cell)[..hidden]);
        }
    }

    fn restore_state(&mut self) {
        for l in &mut self.layers {
            let hidden = l.hidden;
            floats_mut(&mut l.h[l.current])[..hidden].copy_from_slice(&l.saved_h);
            floats_mut(&mut l.cell)[..hidden].copy_from_slice(&l.saved_c);
        }
    }

    fn receptive_field(&self) -> usize {
        1
    }

    fn parameter_count(&self) -> usize {
        self.parameters
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::activations::sigmoid;

    /// One layer of [`Reference`]: row-major `4H × (I + H)`, bias, state.
    struct ReferenceLayer {
        w: Vec<f32>,
        b: Vec<f32>,
        h: Vec<f32>,
        c: Vec<f32>,
    }

    /// The formulas as written, one scalar at a time, with libm's `tanh` and `exp`: what every kernel must match.
    struct Reference {
        layers: Vec<ReferenceLayer>,
        head: Vec<f32>,
        head_bias: Vec<f32>,
        fast: bool,
    }

    impl Reference {
        fn new(config: &LstmConfig, weights: &[f32], fast: bool) -> Self {
            let mut w = Weights::new(weights);
            let h = config.hidden_size;
            let layers = (0..config.num_layers)
                .map(|l| {
                    let i = if l == 0 { config.input_size } else { h };
                    let mut take = |n| w.take(n).unwrap().to_vec();
                    ReferenceLayer { w: take(4 * h * (i + h)), b: take(4 * h), h: take(h), c: take(h) }
                })
                .collect();
            let head = w.take(config.out_channels * h).unwrap().to_vec();
            let head_bias = w.take(config.out_channels).unwrap().to_vec();
            Self { layers, head, head_bias, fast }
        }

        fn frame(&mut self, x: &[f32]) -> Vec<f32> {
            type Activation = fn(f32) -> f32;
            let (sig, tanh): (Activation, Activation) =
                if self.fast { (fast_sigmoid, fast_tanh) } else { (sigmoid, f32::tanh) };
            let mut input = x.to_vec();
            for ReferenceLayer { w: m, b, h, c } in &mut self.layers {
                let xh: Vec<f32> = input.iter().chain(h.iter()).copied().collect();
                let hidden = h.len();
                let v: Vec<f32> = (0..4 * hidden)
                    .map(|r| xh.iter().enumerate().fold(b[r], |acc, (j, x)| acc + x * m[r * xh.len() + j]))
                    .collect();
                for k in 0..hidden {
                    c[k] = sig(v[hidden + k]) * c[k] + sig(v[k]) * tanh(v[2 * hidden + k]);
                    h[k] = sig(v[3 * hidden + k]) * tanh(c[k]);
                }
                input = h.clone();
            }
            let hidden = input.len();
            self.head
                .chunks_exact(hidden)
                .zip(&self.head_bias)
                .map(|(w, b)| w.iter().zip(&input).fold(0.0f32, |acc, (w, h)| acc + w * h) + b)
                .collect()
        }
    }

    /// Deterministic weights in ±`scale` (xorshift), so that gates reach well into saturation.
    fn random(len: usize, seed: u64, scale: f32) -> Vec<f32> {
        let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        (0..len)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                ((s >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0) * scale
            })
            .collect()
    }

    fn config(input_size: usize, hidden_size: usize, num_layers: usize, out_channels: usize) -> LstmConfig {
        LstmConfig { input_size, hidden_size, num_layers, in_channels: input_size, out_channels }
    }

    fn weight_count(c: &LstmConfig) -> usize {
        let h = c.hidden_size;
        (0..c.num_layers).map(|l| 4 * h * ((if l == 0 { c.input_size } else { h }) + h) + 6 * h).sum::<usize>()
            + c.out_channels * (h + 1)
    }

    /// Every kernel this CPU runs (the portable one always).
    fn kernels() -> Vec<Isa> {
        Isa::available()
    }

    #[test]
    fn every_kernel_matches_the_scalar_formulas() {
        let shapes = [(1, 1, 1), (1, 3, 1), (1, 8, 1), (2, 13, 1), (1, 16, 1), (2, 16, 1), (1, 24, 1), (2, 24, 1)]
            .into_iter()
            .chain([(2, 32, 1), (1, 32, 1), (1, 40, 1), (2, 48, 1), (1, 64, 1), (1, 72, 1), (2, 5, 2), (1, 16, 3)]);
        for (inputs, hidden, layers) in shapes {
            for out in [1, 2] {
                let c = config(inputs, hidden, layers, out);
                // Weights large enough to saturate gates and cells now and then; small enough to stay musical.
                let weights = random(weight_count(&c), (inputs * 1000 + hidden * 10 + layers) as u64, 0.6);
                let frames = 700;
                let input = random(inputs * frames, 7, 1.5);
                for fast in [false, true] {
                    let mut reference = Reference::new(&c, &weights, fast);
                    let mut want = vec![0.0; out * frames];
                    for t in 0..frames {
                        let x: Vec<f32> = (0..inputs).map(|ch| input[ch * frames + t]).collect();
                        for (o, y) in reference.frame(&x).into_iter().enumerate() {
                            want[o * frames + t] = y;
                        }
                    }
                    let tanh = if fast { TanhMode::Fast } else { TanhMode::Accurate };
                    let mut outputs = Vec::new();
                    for isa in kernels() {
                        let mut lstm = Lstm::new(&c, &mut Weights::new(&weights), None, tanh).unwrap();
                        lstm.isa = isa;
                        // Uneven blocks, so that the state carries over block boundaries.
                        let mut got = vec![0.0; out * frames];
                        let mut t0 = 0;
                        for block in [1, 64, 5, 130].into_iter().cycle() {
                            let n = block.min(frames - t0);
                            let x: Vec<f32> =
                                (0..inputs).flat_map(|ch| &input[ch * frames + t0..][..n]).copied().collect();
                            let mut y = vec![0.0; out * n];
                            lstm.process(&x, &mut y, n);
                            for o in 0..out {
                                got[o * frames + t0..][..n].copy_from_slice(&y[o * n..][..n]);
                            }
                            t0 += n;
                            if t0 == frames {
                                break;
                            }
                        }
                        let worst = got.iter().zip(&want).map(|(g, w)| (g - w).abs()).fold(0.0f32, f32::max);
                        let peak = want.iter().fold(0.0f32, |m, w| m.max(w.abs()));
                        let shape = format!("{inputs}×{hidden}×{layers} → {out}, fast {fast}, {isa:?}");
                        assert!(peak > 0.05, "{shape}: the test signal is too quiet to test anything");
                        // Summed in other orders, the gate sums' rounding grows as the square root of their terms:
                        // 2e-6 for 32 terms, scaled from there.
                        let terms = (inputs + hidden + 1) as f32;
                        let tolerance = 2e-6 * peak.max(1.0) * (terms / 32.0).sqrt().max(1.0);
                        assert!(worst <= tolerance, "{shape}: off by {worst:e} (peak {peak})");
                        outputs.push((isa, got));
                    }
                    // The AVX-512 kernel computes each unit as the AVX2 kernel does, to the bit.
                    let bits = |isa| {
                        outputs.iter().find(|(i, _)| *i == isa).map(|(_, y)| y.iter().map(|y| y.to_bits()).collect())
                    };
                    #[cfg(target_arch = "x86_64")]
                    if let (Some(avx2), Some(avx512)) = (bits(Isa::Avx2Fma), bits(Isa::Avx512)) {
                        let avx2: Vec<u32> = avx2;
                        assert!(avx2 == avx512, "{inputs}×{hidden}×{layers} → {out}, fast {fast}: AVX-512 ≠ AVX2");
                    }
                }
            }
        }
    }

    #[test]
    fn reset_returns_to_the_state_after_prewarming() {
        let c = config(2, 13, 2, 1);
        let weights = random(weight_count(&c), 3, 0.5);
        for isa in kernels() {
            let mut lstm = Lstm::new(&c, &mut Weights::new(&weights), Some(200.0), TanhMode::Accurate).unwrap();
            lstm.isa = isa;
            lstm.prewarm(16);
            let x = random(2 * 50, 9, 1.0);
            let mut first = vec![0.0; 50];
            lstm.process(&x, &mut first, 50);
            lstm.restore_state();
            let mut again = vec![0.0; 50];
            lstm.process(&x, &mut again, 50);
            assert_eq!(first, again, "{isa:?}");
        }
    }
}
