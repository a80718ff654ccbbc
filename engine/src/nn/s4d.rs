//! The S4D stack: diagonal state-space layers with FiLM-conditioned controls, in recurrent form.
//!
//! Per block (Yin et al., "S4 dynamic range compressor"):
//! `v = PReLU(W h + b)`, `s = S4D(v)` per channel, `s = FiLM(BatchNorm(s))`, `s = PReLU(s)`, `h = s + r ⊙ h`;
//! in front `h = w_e x + b_e` (plus `w_l l` where the file has a level input, `l` the sample's level in decibels
//! scaled to 0..1), at the end `o = w_c · h + b_c` and `y = tanh(o)`, or for a gain computer `y = x / (1 + e^{o})`
//! (see `formats::s4d`). The controls go through a small ReLU MLP to an embedding that each block's FiLM layer turns
//! into a per-channel scale γ and shift β.
//!
//! A file with a `block` size is a control-rate gain computer: the stack steps once per block of samples, on the
//! block's RMS and level, and the log-gain it gives is ramped over the next block ([`ControlRate`]).
//!
//! Training computes each state-space layer as a causal FFT convolution with the kernel
//! `K[l] = 2 Re Σₙ Cₙ (e^{dt·Aₙ} − 1)/Aₙ · e^{dt·Aₙ·l}`; here the same layer runs one sample at a time:
//! `xₙ[t] = Āₙ xₙ[t−1] + B̄ₙ u[t]`, `y[t] = 2 Re Σₙ Cₙ xₙ[t] + D u[t]`, with `Ā = e^{dt·A}` and
//! `B̄ = (e^{dt·A} − 1)/A` (zero-order hold) computed once, in `f64`, when the model is built. Unrolled from a zero
//! state the recurrence is that convolution exactly (`formats::s4d` checks `Re A < 0`, so it decays).
//!
//! At inference batch-norm and FiLM fold into one affine per channel, `α s + β`, recomputed (MLP included) only
//! when a control moves: [`S4dNetwork::set_controls`]. [`S4dNetwork::process`] never allocates.
//!
//! Layout: a block of frames is frame-major (`h[t·H + c]`), so every step is a loop over the `H` channels of one
//! frame, which the compiler vectorises; the state-space layer keeps its modes mode-major (`n·H + c`) for the same
//! reason.

#[cfg(target_arch = "x86_64")]
use super::simd::Fused;
use super::simd::{Isa, MulAdd, Separate};
use crate::formats::s4d::{Dense, Output, S4dFile};

/// The level input `l = 1 + max(20 log₁₀|x|, floor) / −floor`: 0 in silence and at the floor, 1 at full scale.
#[inline]
fn level(x: f32, floor_db: f32) -> f32 {
    1.0 + (20.0 * x.abs().log10()).max(floor_db) / -floor_db
}

/// The level input of a control-rate block: `1 + max(10 log₁₀ m, floor) / −floor` for its mean square `m` (the
/// per-sample [`level`] of a sample whose square is `m`).
#[inline]
fn block_level(mean_square: f32, floor_db: f32) -> f32 {
    1.0 + (10.0 * mean_square.log10()).max(floor_db) / -floor_db
}

/// The output layer: `o = w · h + b` for one frame `h`.
#[inline]
fn contract(frame: &[f32], weight: &[f32], bias: f32) -> f32 {
    frame.iter().zip(weight).map(|(h, w)| h * w).sum::<f32>() + bias
}

/// The output layer of the file: one readout, or two whose larger output is `o` (a version-2 file's two
/// envelopes: see `formats::s4d`).
#[derive(Debug, Clone)]
struct Readout {
    weight: Vec<f32>,
    bias: f32,
    memory: Option<(Vec<f32>, f32)>,
}

impl Readout {
    #[inline]
    fn apply(&self, frame: &[f32]) -> f32 {
        let o = contract(frame, &self.weight, self.bias);
        match &self.memory {
            Some((weight, bias)) => o.max(contract(frame, weight, *bias)),
            None => o,
        }
    }
}

/// `−softplus(o) = −ln(1 + e^{o})`, the gain computer's log-gain in nepers, without overflow for large `o`.
#[inline]
fn neg_softplus(o: f32) -> f32 {
    -(o.max(0.0) + (-o.abs()).exp().ln_1p())
}

/// The control-rate form's running state: the block being gathered and the ramp it plays (see `formats::s4d`).
#[derive(Debug, Clone, Copy)]
struct ControlRate {
    /// Samples per block.
    size: usize,
    /// Samples of the current block seen so far, and the sum of their squares.
    filled: usize,
    sum_sq: f32,
    /// The ramp this block plays, from `L[k−2]` to `L[k−1]` (log-gains, nepers).
    from: f32,
    to: f32,
}

impl ControlRate {
    fn new(size: usize) -> Self {
        Self { size, filled: 0, sum_sq: 0.0, from: 0.0, to: 0.0 }
    }

    /// A block boundary with the ramp held at `log_gain`.
    fn hold(&mut self, log_gain: f32) {
        *self = Self { from: log_gain, to: log_gain, ..Self::new(self.size) };
    }

    /// The log-gain the last sample got: its place on the ramp (at a block boundary the ramp's start, where the
    /// last block's ramp ended).
    fn applied(&self) -> f32 {
        self.from + (self.to - self.from) * self.filled as f32 / self.size as f32
    }
}

/// A dense layer, weights row-major (`out × in`).
#[derive(Debug, Clone)]
struct Layer {
    weight: Vec<f32>,
    bias: Vec<f32>,
    inputs: usize,
}

impl Layer {
    fn from(d: &Dense) -> Self {
        Self { weight: d.weight.iter().flatten().copied().collect(), bias: d.bias.clone(), inputs: d.weight[0].len() }
    }

    fn outputs(&self) -> usize {
        self.bias.len()
    }

    /// `out = W x + b`.
    fn apply(&self, x: &[f32], out: &mut [f32]) {
        for ((o, row), b) in out.iter_mut().zip(self.weight.chunks_exact(self.inputs)).zip(&self.bias) {
            *o = b + row.iter().zip(x).map(|(w, x)| w * x).sum::<f32>();
        }
    }
}

/// One block's weights in the order the loops read them, and its recurrent state.
#[derive(Debug, Clone)]
struct Block {
    /// `W` transposed (column `k` contiguous), so `v += W[:, k] · h[k]` runs over channels.
    linear_t: Vec<f32>,
    linear_b: Vec<f32>,
    prelu1: f32,
    prelu2: f32,
    /// Discretised state space, mode-major (`n·H + c`); `c2` is `2C` (the readout's factor 2 folded in).
    a_re: Vec<f32>,
    a_im: Vec<f32>,
    b_re: Vec<f32>,
    b_im: Vec<f32>,
    c2_re: Vec<f32>,
    c2_im: Vec<f32>,
    d: Vec<f32>,
    /// Batch norm: `(s − mean) · inv_std`.
    mean: Vec<f32>,
    inv_std: Vec<f32>,
    film: Layer,
    residual: Vec<f32>,
    /// The folded batch-norm + FiLM affine for the current controls.
    alpha: Vec<f32>,
    beta: Vec<f32>,
    x_re: Vec<f32>,
    x_im: Vec<f32>,
    /// The kernel variant this CPU runs (detected once, when the block is built).
    isa: Isa,
}

impl Block {
    fn new(b: &crate::formats::s4d::Block, modes: usize) -> Self {
        let h = b.residual.len();
        let mut linear_t = vec![0.0; h * h];
        for (c, row) in b.linear.weight.iter().enumerate() {
            for (k, &w) in row.iter().enumerate() {
                linear_t[k * h + c] = w;
            }
        }
        let mode_major = |m: &Vec<Vec<f32>>, f: &dyn Fn(usize, usize, f32) -> f32| {
            let mut out = vec![0.0; modes * h];
            for (c, row) in m.iter().enumerate() {
                for (n, &v) in row.iter().enumerate() {
                    out[n * h + c] = f(c, n, v);
                }
            }
            out
        };
        let s = &b.ssm;
        // Ā = e^{dt·A}, B̄ = (Ā − 1)/A, in f64: for slow modes Ā is within 1e-5 of 1, where f32 arithmetic on the
        // way would lose the time constant.
        let discretise = |c: usize, n: usize| {
            let (ar, ai, dt) = (f64::from(s.a_re[c][n]), f64::from(s.a_im[c][n]), f64::from(s.dt[c]));
            let magnitude = (dt * ar).exp();
            let (sin, cos) = (dt * ai).sin_cos();
            let (abar_re, abar_im) = (magnitude * cos, magnitude * sin);
            // (Ā − 1)/A = (Ā − 1)·conj(A)/|A|², with e^{z} − 1 taken as expm1 for the real part's accuracy.
            let (num_re, num_im) = ((dt * ar).exp_m1() * cos - 2.0 * (0.5 * dt * ai).sin().powi(2), abar_im);
            let norm = ar * ar + ai * ai;
            let bbar = ((num_re * ar + num_im * ai) / norm, (num_im * ar - num_re * ai) / norm);
            ((abar_re, abar_im), bbar)
        };
        Self {
            linear_t,
            linear_b: b.linear.bias.clone(),
            prelu1: b.prelu1,
            prelu2: b.prelu2,
            a_re: mode_major(&s.a_re, &|c, n, _| discretise(c, n).0.0 as f32),
            a_im: mode_major(&s.a_re, &|c, n, _| discretise(c, n).0.1 as f32),
            b_re: mode_major(&s.a_re, &|c, n, _| discretise(c, n).1.0 as f32),
            b_im: mode_major(&s.a_re, &|c, n, _| discretise(c, n).1.1 as f32),
            c2_re: mode_major(&s.c_re, &|_, _, v| 2.0 * v),
            c2_im: mode_major(&s.c_im, &|_, _, v| 2.0 * v),
            d: s.d.clone(),
            mean: b.norm.mean.clone(),
            inv_std: b.norm.var.iter().map(|&v| (1.0 / (f64::from(v) + f64::from(b.norm.eps)).sqrt()) as f32).collect(),
            film: Layer::from(&b.film),
            residual: b.residual.clone(),
            alpha: vec![1.0; h],
            beta: vec![0.0; h],
            x_re: vec![0.0; modes * h],
            x_im: vec![0.0; modes * h],
            isa: Isa::detect(),
        }
    }

    /// Folds batch norm and the FiLM of `embedding` into `alpha`, `beta`. `film_out` holds `2H` floats.
    fn condition(&mut self, embedding: &[f32], film_out: &mut [f32]) {
        let h = self.alpha.len();
        self.film.apply(embedding, film_out);
        let (gamma, shift) = film_out.split_at(h);
        for c in 0..h {
            self.alpha[c] = gamma[c] * self.inv_std[c];
            self.beta[c] = shift[c] - gamma[c] * self.mean[c] * self.inv_std[c];
        }
    }

    /// Runs the block over `frames` (frame-major, `H` per frame) in place; `v` is `H` floats of scratch. The common
    /// widths get their own copy of the loop with `H` a constant (fully unrolled, no bounds checks).
    fn process(&mut self, frames: &mut [f32], v: &mut [f32]) {
        #[cfg(target_arch = "x86_64")]
        if self.isa.has_avx2_fma() {
            // SAFETY: `isa` is `Avx2Fma` or `Avx512` only on a CPU with AVX2 and FMA (`Isa::detect` when the block
            // was built).
            unsafe { self.process_avx2(frames, v) };
            return;
        }
        self.process_with::<Separate>(frames, v);
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    fn process_avx2(&mut self, frames: &mut [f32], v: &mut [f32]) {
        self.process_with::<Fused>(frames, v);
    }

    #[inline(always)]
    fn process_with<M: MulAdd>(&mut self, frames: &mut [f32], v: &mut [f32]) {
        match self.alpha.len() {
            8 => self.process_fixed::<M, 8>(frames),
            16 => self.process_fixed::<M, 16>(frames),
            32 => self.process_fixed::<M, 32>(frames),
            h => self.process_width(h, frames, v),
        }
    }

    /// [`Block::process`] for `H` channels known at compile time: every per-channel loop is over a `[f32; H]`, which
    /// the compiler keeps in vector registers (two AVX registers for 16 channels).
    #[inline(always)]
    fn process_fixed<M: MulAdd, const H: usize>(&mut self, frames: &mut [f32]) {
        fn fixed<const H: usize>(s: &[f32]) -> &[f32; H] {
            s.try_into().expect("H floats")
        }
        let prelu = |x: f32, a: f32| if x >= 0.0 { x } else { a * x };
        let (bias, d, alpha, beta, residual) = (
            fixed::<H>(&self.linear_b),
            fixed::<H>(&self.d),
            fixed::<H>(&self.alpha),
            fixed::<H>(&self.beta),
            fixed::<H>(&self.residual),
        );
        let (prelu1, prelu2) = (self.prelu1, self.prelu2);
        for frame in frames.chunks_exact_mut(H) {
            let frame: &mut [f32; H] = frame.try_into().expect("H floats");
            // v = W h + b, eight channels at a time (one AVX register each): the compiler keeps `acc` in registers.
            let mut v = *bias;
            let linear = &self.linear_t[..H * H];
            for lane in (0..H).step_by(8) {
                let mut acc: [f32; 8] = v[lane..lane + 8].try_into().expect("8 floats");
                for k in 0..H {
                    let hk = frame[k];
                    let w: &[f32; 8] = linear[k * H + lane..k * H + lane + 8].try_into().expect("8 floats");
                    for j in 0..8 {
                        acc[j] = M::mul_add(acc[j], w[j], hk);
                    }
                }
                v[lane..lane + 8].copy_from_slice(&acc);
            }
            let mut y = [0.0f32; H];
            for c in 0..H {
                v[c] = prelu(v[c], prelu1);
                y[c] = d[c] * v[c];
            }
            let modes = self
                .a_re
                .chunks_exact(H)
                .zip(self.a_im.chunks_exact(H))
                .zip(self.b_re.chunks_exact(H).zip(self.b_im.chunks_exact(H)))
                .zip(self.c2_re.chunks_exact(H).zip(self.c2_im.chunks_exact(H)))
                .zip(self.x_re.chunks_exact_mut(H).zip(self.x_im.chunks_exact_mut(H)));
            for ((((ar, ai), (br, bi)), (cr, ci)), (xr, xi)) in modes {
                let (ar, ai, br, bi, cr, ci) =
                    (fixed::<H>(ar), fixed::<H>(ai), fixed::<H>(br), fixed::<H>(bi), fixed::<H>(cr), fixed::<H>(ci));
                let xr: &mut [f32; H] = xr.try_into().expect("H floats");
                let xi: &mut [f32; H] = xi.try_into().expect("H floats");
                for c in 0..H {
                    let (r, i) = (xr[c], xi[c]);
                    let nr = M::mul_add(M::mul_add(ar[c] * r, -ai[c], i), br[c], v[c]);
                    let ni = M::mul_add(M::mul_add(ar[c] * i, ai[c], r), bi[c], v[c]);
                    xr[c] = nr;
                    xi[c] = ni;
                    y[c] = M::mul_add(M::mul_add(y[c], cr[c], nr), -ci[c], ni);
                }
            }
            for c in 0..H {
                frame[c] = M::mul_add(prelu(M::mul_add(beta[c], alpha[c], y[c]), prelu2), residual[c], frame[c]);
            }
        }
    }

    /// [`Block::process`] for any width.
    fn process_width(&mut self, h: usize, frames: &mut [f32], v: &mut [f32]) {
        let prelu = |x: f32, a: f32| if x >= 0.0 { x } else { a * x };
        let v = &mut v[..h];
        let (d, alpha, beta, residual) = (&self.d[..h], &self.alpha[..h], &self.beta[..h], &self.residual[..h]);
        let modes = self.x_re.len() / h;
        let mut y = [0.0f32; 64];
        for frame in frames.chunks_exact_mut(h) {
            // v = PReLU(W h + b)
            v.copy_from_slice(&self.linear_b[..h]);
            for (column, &hk) in self.linear_t.chunks_exact(h).zip(frame.iter()) {
                for (v, w) in v.iter_mut().zip(&column[..h]) {
                    *v += w * hk;
                }
            }
            for v in v.iter_mut() {
                *v = prelu(*v, self.prelu1);
            }
            // x = Ā x + B̄ v and y = 2 Re Σ C x + D v, one mode at a time over all channels; channels beyond the
            // 64 the scratch holds go through the same loop in slices.
            for start in (0..h).step_by(y.len()) {
                let width = (h - start).min(y.len());
                let y = &mut y[..width];
                let u = &v[start..start + width];
                for ((y, d), u) in y.iter_mut().zip(&d[start..start + width]).zip(u) {
                    *y = d * u;
                }
                for n in 0..modes {
                    let at = n * h + start..n * h + start + width;
                    let (ar, ai) = (&self.a_re[at.clone()], &self.a_im[at.clone()]);
                    let (br, bi) = (&self.b_re[at.clone()], &self.b_im[at.clone()]);
                    let (cr, ci) = (&self.c2_re[at.clone()], &self.c2_im[at.clone()]);
                    let (xr, xi) = (&mut self.x_re[at.clone()], &mut self.x_im[at]);
                    for c in 0..width {
                        let (r, i) = (xr[c], xi[c]);
                        let nr = ar[c] * r - ai[c] * i + br[c] * u[c];
                        let ni = ar[c] * i + ai[c] * r + bi[c] * u[c];
                        xr[c] = nr;
                        xi[c] = ni;
                        y[c] += cr[c] * nr - ci[c] * ni;
                    }
                }
                // α y + β (batch norm and FiLM), PReLU, residual.
                let out = &mut frame[start..start + width];
                for c in 0..width {
                    let s = prelu(alpha[start + c] * y[c] + beta[start + c], self.prelu2);
                    out[c] = s + residual[start + c] * out[c];
                }
            }
        }
    }

    /// The state after silence has played forever: for a constant input `u` each mode settles at
    /// `x = B̄ u / (1 − Ā)`. Transforms `frame` (one frame: this block's constant input) into its constant output.
    fn settle(&mut self, frame: &mut [f32], v: &mut [f32]) {
        let h = self.alpha.len();
        let modes = self.x_re.len() / h;
        v.copy_from_slice(&self.linear_b);
        for (column, &hk) in self.linear_t.chunks_exact(h).zip(frame.iter()) {
            for (v, w) in v.iter_mut().zip(column) {
                *v += w * hk;
            }
        }
        for (c, v) in v.iter_mut().enumerate() {
            let u = if *v >= 0.0 { *v } else { self.prelu1 * *v };
            for n in 0..modes {
                let i = n * h + c;
                // (B̄ u)/(1 − Ā), complex, in f64.
                let (br, bi) = (f64::from(self.b_re[i]) * f64::from(u), f64::from(self.b_im[i]) * f64::from(u));
                let (dr, di) = (1.0 - f64::from(self.a_re[i]), -f64::from(self.a_im[i]));
                let norm = dr * dr + di * di;
                self.x_re[i] = ((br * dr + bi * di) / norm) as f32;
                self.x_im[i] = ((bi * dr - br * di) / norm) as f32;
            }
            *v = u;
        }
        // The readout at the settled state is the block's constant output.
        for c in 0..h {
            let u = v[c];
            let mut sum = self.d[c] * u;
            for n in 0..modes {
                let i = n * h + c;
                sum += self.c2_re[i] * self.x_re[i] - self.c2_im[i] * self.x_im[i];
            }
            let s = sum * self.alpha[c] + self.beta[c];
            let s = if s >= 0.0 { s } else { self.prelu2 * s };
            frame[c] = s + self.residual[c] * frame[c];
        }
    }

    fn clear(&mut self) {
        self.x_re.fill(0.0);
        self.x_im.fill(0.0);
    }
}

/// A built S4D network: mono in, mono out, conditioned on the file's controls.
#[derive(Debug, Clone)]
pub struct S4dNetwork {
    channels: usize,
    sample_rate: f32,
    /// `(min, max)` of each control: the MLP sees `(value − min)/(max − min)`.
    ranges: Vec<(f32, f32)>,
    mlp: Vec<Layer>,
    expand_w: Vec<f32>,
    expand_b: Vec<f32>,
    /// The level input's weights and floor (dB), where the file has one.
    level: Option<(Vec<f32>, f32)>,
    output: Output,
    /// The control-rate form's state, for a file with a `block` size.
    control_rate: Option<ControlRate>,
    /// The per-sample gain computer's log-gain at the last sample (nepers), for [`S4dNetwork::applied_gain_db`].
    last_log_gain: f32,
    blocks: Vec<Block>,
    readout: Readout,
    parameters: usize,
    max_block: usize,
    /// Working memory, sized at build time.
    frames: Vec<f32>,
    scratch: Vec<f32>,
    mlp_a: Vec<f32>,
    mlp_b: Vec<f32>,
    film_out: Vec<f32>,
}

impl S4dNetwork {
    /// Builds the network for blocks of up to `max_block` frames, with every control at its minimum and the state
    /// of silence (see [`S4dNetwork::settle`]). Allocates.
    pub fn new(file: &S4dFile, max_block: usize) -> Self {
        let h = file.config.channels;
        let w = &file.weights;
        let mlp: Vec<Layer> = w.mlp.iter().map(Layer::from).collect();
        let widest = mlp.iter().map(Layer::outputs).chain([file.config.controls.len()]).max().unwrap_or(1);
        let max_block = max_block.max(1);
        let mut network = Self {
            channels: h,
            sample_rate: file.sample_rate,
            ranges: file.config.controls.iter().map(|c| (c.min, c.max)).collect(),
            mlp,
            expand_w: w.expand.weight.clone(),
            expand_b: w.expand.bias.clone(),
            level: file.config.level_floor_db.zip(w.expand.level_weight.clone()).map(|(floor, w)| (w, floor)),
            output: file.output_kind(),
            control_rate: file.config.block.map(ControlRate::new),
            last_log_gain: 0.0,
            blocks: w.blocks.iter().map(|b| Block::new(b, file.config.modes)).collect(),
            readout: Readout {
                weight: w.contract.weight.clone(),
                bias: w.contract.bias,
                memory: w.memory.as_ref().map(|m| (m.weight.clone(), m.bias)),
            },
            parameters: file.parameter_count(),
            max_block,
            frames: vec![0.0; max_block * h],
            scratch: vec![0.0; h],
            mlp_a: vec![0.0; widest],
            mlp_b: vec![0.0; widest],
            film_out: vec![0.0; 2 * h],
        };
        let minimum: Vec<f32> = network.ranges.iter().map(|r| r.0).collect();
        network.set_controls(&minimum);
        network.settle();
        network
    }

    pub fn sample_rate(&self) -> f32 {
        self.sample_rate
    }

    pub fn parameter_count(&self) -> usize {
        self.parameters
    }

    pub fn max_block(&self) -> usize {
        self.max_block
    }

    /// The gain a gain computer (`"output": "gain"`) applied to the last sample, in dB (≤ 0): what a compressor's
    /// gain-reduction meter shows, read from the network itself rather than estimated from levels. `None` for a
    /// network whose output is the signal (tanh).
    pub fn applied_gain_db(&self) -> Option<f32> {
        let log_gain = match (self.output, &self.control_rate) {
            (Output::Tanh, _) => return None,
            (Output::Gain, Some(rate)) => rate.applied(),
            (Output::Gain, None) => self.last_log_gain,
        };
        Some(log_gain * (20.0 / std::f32::consts::LN_10))
    }

    /// Sets the controls (plain values, in the file's order; missing ones keep the minimum): runs the MLP and
    /// refolds every block's affine. Real-time safe (no allocation; a few thousand multiply-adds), so call it when a
    /// control moves, not every sample.
    pub fn set_controls(&mut self, values: &[f32]) {
        let n = self.ranges.len();
        for (i, &(min, max)) in self.ranges.iter().enumerate() {
            let v = values.get(i).copied().unwrap_or(min);
            self.mlp_a[i] = (v - min) / (max - min);
        }
        let mut width = n;
        for layer in &self.mlp {
            layer.apply(&self.mlp_a[..width], &mut self.mlp_b[..layer.outputs()]);
            width = layer.outputs();
            for (a, &b) in self.mlp_a[..width].iter_mut().zip(&self.mlp_b[..width]) {
                *a = b.max(0.0);
            }
        }
        for block in &mut self.blocks {
            block.condition(&self.mlp_a[..width], &mut self.film_out);
        }
    }

    /// Puts every state where endless silence leaves it, for the current controls: what a player hears after a
    /// reset is the model's response to silence, with no start-up transient. Real-time safe.
    pub fn settle(&mut self) {
        let h = self.channels;
        let frame = &mut self.frames[..h];
        // The input layer's response to x = 0 (whose level input is 0 too).
        frame.copy_from_slice(&self.expand_b);
        for block in &mut self.blocks {
            block.settle(frame, &mut self.scratch);
        }
        // Silence's gain: the output at the settled state (the control-rate form holds it on both ramp ends).
        self.last_log_gain = neg_softplus(self.readout.apply(frame));
        if let Some(rate) = &mut self.control_rate {
            rate.hold(self.last_log_gain);
        }
    }

    /// Zeroes every state (where training starts unless its recipe says `initial_state: settled`); evaluation uses
    /// it for a manifest that starts from zero, the pedal uses [`S4dNetwork::settle`].
    pub fn clear(&mut self) {
        for block in &mut self.blocks {
            block.clear();
        }
        self.last_log_gain = 0.0;
        if let Some(rate) = &mut self.control_rate {
            rate.hold(0.0);
        }
    }

    /// Runs the portable kernels even where AVX2 is available (tests compare the two).
    #[cfg(test)]
    fn force_portable(&mut self) {
        for block in &mut self.blocks {
            block.isa = Isa::Baseline;
        }
    }

    /// Processes one block. `input.len() == output.len()`; longer than `max_block` is processed in pieces.
    pub fn process(&mut self, input: &[f32], output: &mut [f32]) {
        if let Some(rate) = self.control_rate {
            self.process_control_rate(rate, input, output);
            return;
        }
        let h = self.channels;
        for (input, output) in input.chunks(self.max_block).zip(output.chunks_mut(self.max_block)) {
            let frames = &mut self.frames[..input.len() * h];
            for (frame, &x) in frames.chunks_exact_mut(h).zip(input) {
                for ((f, w), b) in frame.iter_mut().zip(&self.expand_w).zip(&self.expand_b) {
                    *f = w * x + b;
                }
                if let Some((weights, floor)) = &self.level {
                    let l = level(x, *floor);
                    for (f, w) in frame.iter_mut().zip(weights) {
                        *f += w * l;
                    }
                }
            }
            for block in &mut self.blocks {
                block.process(frames, &mut self.scratch);
            }
            let mut o = 0.0;
            for ((y, &x), frame) in output.iter_mut().zip(input).zip(frames.chunks_exact(h)) {
                o = self.readout.apply(frame);
                *y = match self.output {
                    Output::Tanh => o.tanh(),
                    // e^{−softplus(o)} = 1 / (1 + e^{o}), which stays in 0..=1 for every o (e^{o} = ∞ gives 0).
                    Output::Gain => x / (1.0 + o.exp()),
                };
            }
            if self.output == Output::Gain {
                // The last sample's `o` (the chunk is never empty).
                self.last_log_gain = neg_softplus(o);
            }
        }
    }

    /// [`S4dNetwork::process`] for the control-rate form: each sample gets its place on the current ramp and adds to
    /// its block's mean square; a full block steps the stack once and starts the ramp to its log-gain.
    fn process_control_rate(&mut self, mut rate: ControlRate, input: &[f32], output: &mut [f32]) {
        let inverse = 1.0 / rate.size as f32;
        for (y, &x) in output.iter_mut().zip(input) {
            rate.filled += 1;
            let along = rate.filled as f32 * inverse;
            *y = x * (rate.from + (rate.to - rate.from) * along).exp();
            rate.sum_sq += x * x;
            if rate.filled == rate.size {
                let mean_square = rate.sum_sq * inverse;
                let log_gain = neg_softplus(self.step(mean_square));
                rate.from = rate.to;
                rate.to = log_gain;
                rate.filled = 0;
                rate.sum_sq = 0.0;
            }
        }
        self.control_rate = Some(rate);
    }

    /// One frame of the stack for a block of mean square `mean_square`: its RMS in the audio's place and its level;
    /// returns the contraction's output `o`.
    fn step(&mut self, mean_square: f32) -> f32 {
        let h = self.channels;
        let frame = &mut self.frames[..h];
        let rms = mean_square.sqrt();
        for ((f, w), b) in frame.iter_mut().zip(&self.expand_w).zip(&self.expand_b) {
            *f = w * rms + b;
        }
        if let Some((weights, floor)) = &self.level {
            let l = block_level(mean_square, *floor);
            for (f, w) in frame.iter_mut().zip(weights) {
                *f += w * l;
            }
        }
        for block in &mut self.blocks {
            block.process(frame, &mut self.scratch);
        }
        self.readout.apply(frame)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::formats::s4d::{
        self,
        tests::{tiny, tiny_control_rate, tiny_envelopes, tiny_gain},
    };

    /// The network in the training framework's form, in f64: every state-space layer a causal convolution with its
    /// kernel `K[l] = 2 Re Σ C (e^{dt·A} − 1)/A · e^{dt·A·l}` from a zero state, batch norm and FiLM unfolded.
    fn convolution_form(file: &S4dFile, controls: &[f64], x: &[f32]) -> Vec<f32> {
        let w = &file.weights;
        let relu_mlp = w.mlp.iter().fold(
            controls
                .iter()
                .zip(&file.config.controls)
                .map(|(v, c)| (v - f64::from(c.min)) / f64::from(c.max - c.min))
                .collect::<Vec<f64>>(),
            |e, layer| {
                (0..layer.bias.len())
                    .map(|o| {
                        let sum: f64 = layer.weight[o].iter().zip(&e).map(|(w, e)| f64::from(*w) * e).sum();
                        (sum + f64::from(layer.bias[o])).max(0.0)
                    })
                    .collect()
            },
        );
        let h = file.config.channels;
        let prelu = |v: f64, a: f32| if v >= 0.0 { v } else { f64::from(a) * v };
        // The level input of a mean square (a sample's square, or a control-rate block's mean).
        let level_in = |mean_square: f64| match (file.config.level_floor_db, &w.expand.level_weight) {
            (Some(floor), Some(_)) => {
                let floor = f64::from(floor);
                1.0 + (10.0 * mean_square.log10()).max(floor) / -floor
            }
            _ => 0.0,
        };
        // The stack's input frames (audio, level): every sample, or each control-rate block's RMS and level.
        let inputs: Vec<(f64, f64)> = match file.config.block {
            None => x.iter().map(|&x| (f64::from(x), level_in(f64::from(x).powi(2)))).collect(),
            Some(d) => x
                .chunks_exact(d)
                .map(|b| {
                    let mean_square = b.iter().map(|&v| f64::from(v).powi(2)).sum::<f64>() / d as f64;
                    (mean_square.sqrt(), level_in(mean_square))
                })
                .collect(),
        };
        let t_len = inputs.len();
        let level_w = |c: usize| w.expand.level_weight.as_ref().map_or(0.0, |l| f64::from(l[c]));
        // hs[c][t]
        let mut hs: Vec<Vec<f64>> = (0..h)
            .map(|c| {
                inputs
                    .iter()
                    .map(|&(a, l)| f64::from(w.expand.weight[c]) * a + level_w(c) * l + f64::from(w.expand.bias[c]))
                    .collect()
            })
            .collect();
        for b in &w.blocks {
            let v: Vec<Vec<f64>> = (0..h)
                .map(|c| {
                    (0..t_len)
                        .map(|t| {
                            let sum: f64 = (0..h).map(|k| f64::from(b.linear.weight[c][k]) * hs[k][t]).sum();
                            prelu(sum + f64::from(b.linear.bias[c]), b.prelu1)
                        })
                        .collect()
                })
                .collect();
            for c in 0..h {
                let film = |row: usize| {
                    let sum: f64 = b.film.weight[row].iter().zip(&relu_mlp).map(|(w, e)| f64::from(*w) * e).sum();
                    sum + f64::from(b.film.bias[row])
                };
                let (gamma, beta) = (film(c), film(h + c));
                let dt = f64::from(b.ssm.dt[c]);
                let kernel: Vec<f64> = (0..t_len)
                    .map(|l| {
                        (0..file.config.modes)
                            .map(|n| {
                                let (ar, ai) = (f64::from(b.ssm.a_re[c][n]), f64::from(b.ssm.a_im[c][n]));
                                let (cr, ci) = (f64::from(b.ssm.c_re[c][n]), f64::from(b.ssm.c_im[c][n]));
                                // C (e^{dtA} − 1)/A e^{dtA l}
                                let e = |k: f64| {
                                    let m = (dt * ar * k).exp();
                                    (m * (dt * ai * k).cos(), m * (dt * ai * k).sin())
                                };
                                let (e1r, e1i) = e(1.0);
                                let (nr, ni) = (e1r - 1.0, e1i);
                                let norm = ar * ar + ai * ai;
                                let (qr, qi) = ((nr * ar + ni * ai) / norm, (ni * ar - nr * ai) / norm);
                                let (elr, eli) = e(l as f64);
                                let (pr, pi) = (qr * elr - qi * eli, qr * eli + qi * elr);
                                2.0 * (cr * pr - ci * pi)
                            })
                            .sum()
                    })
                    .collect();
                let inv_std = 1.0 / (f64::from(b.norm.var[c]) + f64::from(b.norm.eps)).sqrt();
                for t in 0..t_len {
                    let conv: f64 =
                        (0..=t).map(|k| kernel[t - k] * v[c][k]).sum::<f64>() + f64::from(b.ssm.d[c]) * v[c][t];
                    let s = (conv - f64::from(b.norm.mean[c])) * inv_std * gamma + beta;
                    hs[c][t] = prelu(s, b.prelu2) + f64::from(b.residual[c]) * hs[c][t];
                }
            }
        }
        // The readout, or the larger of two (version 2).
        let read = |r: &s4d::Contract, t: usize| {
            (0..h).map(|c| f64::from(r.weight[c]) * hs[c][t]).sum::<f64>() + f64::from(r.bias)
        };
        let o: Vec<f64> = (0..t_len)
            .map(|t| w.memory.as_ref().map_or(read(&w.contract, t), |m| read(&w.contract, t).max(read(m, t))))
            .collect();
        if let Some(d) = file.config.block {
            // L[k] = −softplus(o[k]); block k ramps from L[k−2] to L[k−1], both 0 before the first outputs.
            // `ramp_end(k)` is L[k−1].
            let ramp_end = |k: usize| k.checked_sub(1).and_then(|k| o.get(k)).map_or(0.0, |o| -(1.0 + o.exp()).ln());
            return x
                .iter()
                .enumerate()
                .map(|(n, &x)| {
                    let (k, j) = (n / d, n % d);
                    let (from, to) = (ramp_end(k.saturating_sub(1)), ramp_end(k));
                    (f64::from(x) * (from + (to - from) * (j + 1) as f64 / d as f64).exp()) as f32
                })
                .collect();
        }
        (0..t_len)
            .map(|t| match file.output_kind() {
                Output::Tanh => o[t].tanh() as f32,
                Output::Gain => (f64::from(x[t]) * (-(1.0 + o[t].exp()).ln()).exp()) as f32,
            })
            .collect()
    }

    fn signal(n: usize) -> Vec<f32> {
        (0..n).map(|i| 0.6 * (i as f32 * 0.07).sin() * if i < n / 2 { 1.0 } else { 0.1 }).collect()
    }

    /// ln(y / x) per sample (NaN where x = 0).
    fn got_log_gain(y: &[f32], x: &[f32]) -> Vec<f64> {
        y.iter().zip(x).map(|(y, x)| (f64::from(*y) / f64::from(*x)).ln()).collect()
    }

    /// `file`'s network from the zero state at `controls`, over `x` given in pieces of `piece` samples.
    fn run_in_pieces(file: &S4dFile, controls: &[f32], x: &[f32], piece: usize) -> Vec<f32> {
        let mut net = S4dNetwork::new(file, 64);
        net.set_controls(controls);
        net.clear();
        let mut got = vec![1.0; x.len()];
        for (i, o) in x.chunks(piece).zip(got.chunks_mut(piece)) {
            net.process(i, o);
        }
        got
    }

    fn worst_difference(a: &[f32], b: &[f32]) -> f32 {
        a.iter().zip(b).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max)
    }

    fn tiny_file(h: usize) -> S4dFile {
        s4d::parse(&tiny(h).to_string()).unwrap()
    }

    #[test]
    fn s4d_the_recurrence_is_the_training_convolution() {
        // 5 channels run the generic loop, 8 and 16 the fixed-width ones.
        for (h, controls) in [(5, [0.0, 0.0]), (5, [70.0, 1.0]), (8, [35.0, 0.5]), (16, [100.0, 1.0])] {
            let file = tiny_file(h);
            let x = signal(600);
            let want = convolution_form(&file, &[f64::from(controls[0]), f64::from(controls[1])], &x);
            let got = run_in_pieces(&file, &controls, &x, x.len());
            let worst = worst_difference(&got, &want);
            assert!(worst < 2e-5, "{h} channels, controls {controls:?}: worst difference {worst}");
            assert!(crate::eval::esr(&want, &x[..]) > 1e-2, "the network changes the signal");
        }
    }

    #[test]
    fn s4d_a_gain_computer_with_a_level_input_is_the_training_form_too() {
        for (h, controls) in [(5, [30.0, 0.0]), (16, [90.0, 1.0])] {
            let file = s4d::parse(&tiny_gain(h).to_string()).unwrap();
            // Loud, quiet, then silent: the level input crosses its floor.
            let mut x = signal(600);
            x[450..].fill(0.0);
            let want = convolution_form(&file, &[f64::from(controls[0]), f64::from(controls[1])], &x);
            let got = run_in_pieces(&file, &controls, &x, x.len());
            let worst = worst_difference(&got, &want);
            assert!(worst < 2e-5, "{h} channels, controls {controls:?}: worst difference {worst}");
            assert!(got.iter().zip(&x).all(|(y, x)| y.abs() <= x.abs()), "a gain computer never adds level");
            assert!(got[450..].iter().all(|&y| y == 0.0), "silence in, silence out");
            assert!(crate::eval::esr(&want, &x[..]) > 1e-3, "the network changes the signal");
        }
    }

    #[test]
    fn s4d_a_control_rate_gain_computer_is_the_training_form_too() {
        // Blocks of 8 and 32 samples; 600 samples end in a partial block (its samples play, its step is not taken).
        for (h, block, controls) in [(5, 8, [30.0, 0.0]), (16, 32, [90.0, 1.0])] {
            let file = s4d::parse(&tiny_control_rate(h, block).to_string()).unwrap();
            let mut x = signal(600);
            x[450..].fill(0.0);
            let want = convolution_form(&file, &[f64::from(controls[0]), f64::from(controls[1])], &x);
            // Any block size of the caller: whole buffers, single samples, pieces that straddle the control blocks.
            for piece in [600, 1, 7, 64] {
                let got = run_in_pieces(&file, &controls, &x, piece);
                let worst = worst_difference(&got, &want);
                assert!(worst < 2e-5, "{h} channels, blocks of {block}, pieces of {piece}: worst difference {worst}");
                assert!(got.iter().zip(&x).all(|(y, x)| y.abs() <= x.abs()), "a gain computer never adds level");
                assert!(got[450..].iter().all(|&y| y == 0.0), "silence in, silence out");
            }
            assert!(crate::eval::esr(&want, &x[..]) > 1e-3, "the network changes the signal");
            // No steps: the log-gain is continuous and straight within a block, so the change across a block boundary
            // is the next block's slope (the first sample, x = 0, is left out).
            let log_gain: Vec<f64> = got_log_gain(&want, &x);
            for boundary in (block..440 - block).step_by(block) {
                let across = log_gain[boundary] - log_gain[boundary - 1];
                let slope = log_gain[boundary + 1] - log_gain[boundary];
                assert!((across - slope).abs() < 1e-4, "a step at sample {boundary}: {across} against {slope}");
            }
        }
    }

    #[test]
    fn s4d_a_gain_computer_of_two_envelopes_applies_the_larger_and_is_the_training_form() {
        let (h, block, controls) = (6, 16, [60.0, 0.0]);
        let file = s4d::parse(&tiny_envelopes(h, block).to_string()).unwrap();
        let one = s4d::parse(&tiny_control_rate(h, block).to_string()).unwrap();
        let mut x = signal(800);
        x[600..].fill(0.0);
        let c = [f64::from(controls[0]), f64::from(controls[1])];
        let want = convolution_form(&file, &c, &x);
        for piece in [800, 5, 64] {
            let got = run_in_pieces(&file, &controls, &x, piece);
            let worst = worst_difference(&got, &want);
            assert!(worst < 2e-5, "pieces of {piece}: worst difference {worst}");
            assert!(got.iter().zip(&x).all(|(y, x)| y.abs() <= x.abs()), "a gain computer never adds level");
        }
        // The memory's readout leads somewhere: the larger reduction is never less than the first readout's
        // alone, and more in places.
        let first = convolution_form(&one, &c, &x);
        let more = want.iter().zip(&first).filter(|(w, f)| w.abs() < f.abs() - 1e-6).count();
        assert!(want.iter().zip(&first).all(|(w, f)| w.abs() <= f.abs() + 1e-6), "the larger reduction of two");
        assert!(more > 50, "the memory leads on only {more} samples");
    }

    #[test]
    fn s4d_a_control_rate_network_settles_to_silence_gain() {
        let file = s4d::parse(&tiny_control_rate(4, 16).to_string()).unwrap();
        let mut net = S4dNetwork::new(&file, 64);
        net.set_controls(&[70.0, 0.0]);
        net.settle();
        // After settling, a held tone starts from silence's gain: no ramp from unity at the first samples.
        let tone = vec![0.25f32; 48];
        let mut out = vec![0.0; 48];
        net.process(&tone, &mut out);
        assert!(out[..16].windows(2).all(|w| w[0] == w[1]), "the first block holds silence's gain: {out:?}");
        assert!(out[0] < 0.25 && out[0] > 0.0);
    }

    #[test]
    fn s4d_a_gain_computer_reports_the_gain_it_applied() {
        // Per sample and at a control rate, after pieces that end anywhere in a control block: the reported gain is
        // the last output over the last input.
        for file in [tiny_gain(6), tiny_control_rate(6, 16)] {
            let file = s4d::parse(&file.to_string()).unwrap();
            let x = signal(600);
            let mut net = S4dNetwork::new(&file, 64);
            net.set_controls(&[80.0, 0.0]);
            net.clear();
            assert_eq!(net.applied_gain_db(), Some(0.0), "a cleared network is at unity gain");
            let mut y = vec![0.0; x.len()];
            let mut at = 0;
            for piece in [2, 7, 16, 40, 100, 3, 200] {
                let end = (at + piece).min(x.len());
                net.process(&x[at..end], &mut y[at..end]);
                at = end;
                let got = net.applied_gain_db().unwrap();
                let want = 20.0 * (y[at - 1] / x[at - 1]).log10();
                assert!((got - want).abs() < 1e-3, "after sample {at}: reported {got} dB, applied {want} dB");
            }
            assert!(y.iter().zip(&x).any(|(y, x)| (y / x - 1.0).abs() > 1e-3), "the network changes the gain");
            net.settle();
            let silence = net.applied_gain_db().unwrap();
            let mut out = [0.0; 1];
            net.process(&[0.1], &mut out);
            if file.config.block.is_some() {
                assert!((20.0 * (out[0] / 0.1).log10() - silence).abs() < 1e-3, "settled: silence's gain");
            }
        }
        assert_eq!(S4dNetwork::new(&tiny_file(4), 64).applied_gain_db(), None, "a tanh output has no gain");
    }

    #[test]
    fn s4d_the_portable_and_the_vector_kernels_agree() {
        for h in [8, 16, 32] {
            let file = tiny_file(h);
            let x = signal(800);
            let run = |portable: bool| {
                let mut net = S4dNetwork::new(&file, 64);
                if portable {
                    net.force_portable();
                }
                net.set_controls(&[50.0, 1.0]);
                let mut out = vec![0.0; x.len()];
                net.process(&x, &mut out);
                out
            };
            let (portable, best) = (run(true), run(false));
            let worst = portable.iter().zip(&best).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
            assert!(worst < 1e-5, "{h} channels: {worst}");
        }
    }

    #[test]
    fn s4d_block_size_does_not_change_the_output() {
        let file = tiny_file(4);
        let x = signal(1000);
        let run = |block: usize| {
            let mut net = S4dNetwork::new(&file, block);
            net.set_controls(&[60.0, 0.0]);
            net.settle();
            let mut out = vec![0.0; x.len()];
            for (i, o) in x.chunks(block).zip(out.chunks_mut(block)) {
                net.process(i, o);
            }
            out
        };
        let one = run(1);
        assert_eq!(run(64), one);
        assert_eq!(run(1000), one);
    }

    #[test]
    fn s4d_settle_is_the_state_silence_leaves() {
        let file = tiny_file(4);
        let mut net = S4dNetwork::new(&file, 256);
        net.set_controls(&[80.0, 1.0]);
        net.settle();
        let mut out = vec![1.0; 256];
        net.process(&[0.0; 256], &mut out);
        let first = out[0];
        assert!(out.iter().all(|&y| (y - first).abs() < 1e-5), "silence gives a constant output: {out:?}");
        // From a zero state the same silence needs time to get there (the slow modes decay over ~1000 samples).
        net.clear();
        net.process(&[0.0; 256], &mut out);
        assert!((out[0] - first).abs() > 1e-4);
    }

    #[test]
    fn s4d_controls_condition_the_output() {
        let file = tiny_file(4);
        let x = signal(512);
        let run = |controls: &[f32]| {
            let mut net = S4dNetwork::new(&file, 512);
            net.set_controls(controls);
            net.clear();
            let mut out = vec![0.0; x.len()];
            net.process(&x, &mut out);
            out
        };
        assert_ne!(run(&[0.0, 0.0]), run(&[100.0, 0.0]));
        assert_eq!(run(&[0.0]), run(&[0.0, 0.0]), "a missing control is at its minimum");
    }
}
