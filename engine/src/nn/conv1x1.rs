//! Per-frame matrix multiply (1×1 convolution), optionally grouped, and FiLM built on it.
//!
//! Blocks are planar: `rows × n` with each row's `n` frames contiguous. An output row is then a weighted sum of input
//! rows (`y_o = Σ_j w_oj · x_j`), vectorised over frames whatever the channel count — small channel counts (3, 8, 16)
//! are the norm in amp models, where per-frame dot products would not vectorise.

#[cfg(target_arch = "x86_64")]
use super::simd::Fused;
use super::simd::{Isa, MulAdd, Separate};
use super::{BuildError, Weights};

/// Frames accumulated together in registers by the baseline [`weighted_sum`]: 16 `f32` are four SSE registers.
const CHUNK: usize = 16;
/// The same on the AVX2/FMA path: eight AVX registers, enough independent sums to hide the FMA latency.
#[cfg(target_arch = "x86_64")]
const WIDE_CHUNK: usize = 64;
/// Output rows computed together by [`weighted_sums`] on the AVX2/FMA path, and the frames per chunk: two rows of
/// four registers are eight independent sums, and each loaded input vector serves two of them. (Three rows, twelve
/// sums, spill: the sixteen AVX registers must also hold the input vector and a weight per row.)
#[cfg(target_arch = "x86_64")]
const ROWS: usize = 2;
#[cfg(target_arch = "x86_64")]
const ROW_CHUNK: usize = 32;

/// `out[t] = Σ_i weights[i] · data[offset(i) + t] + bias` for `t < out.len()`, on the best kernel for `isa`.
///
/// The frames are register-blocked: a chunk of accumulators stays in registers while every term is added, so each
/// multiply-add costs one load. Each frame sees the same additions in the same order whatever the block length or
/// its position in a chunk, so output never depends on how a signal is cut into blocks. The bias is added last, to
/// the finished sum (as the reference does), while the sum is still in registers.
#[inline(always)]
pub(crate) fn weighted_sum(
    isa: Isa,
    out: &mut [f32],
    weights: &[f32],
    bias: f32,
    data: &[f32],
    offset: impl Fn(usize) -> usize,
) {
    match isa {
        Isa::Baseline => weighted_sum_with::<Separate, CHUNK>(out, weights, bias, data, offset, 0),
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `Isa::Avx2Fma` is only ever the result of `Isa::detect` on a CPU with AVX2 and FMA.
        Isa::Avx2Fma => unsafe { weighted_sum_avx2_fma(out, weights, bias, data, offset, 0) },
    }
}

/// [`weighted_sum`] on AVX2/FMA, the first output frame being frame `t0` of the data.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn weighted_sum_avx2_fma(
    out: &mut [f32],
    weights: &[f32],
    bias: f32,
    data: &[f32],
    offset: impl Fn(usize) -> usize,
    t0: usize,
) {
    // Wide chunks, then 8-frame chunks (one register), then single frames: the same sums for every frame.
    let wide = out.len() / WIDE_CHUNK * WIDE_CHUNK;
    let (head, tail) = out.split_at_mut(wide);
    weighted_sum_with::<Fused, WIDE_CHUNK>(head, weights, bias, data, &offset, t0);
    weighted_sum_with::<Fused, 8>(tail, weights, bias, data, &offset, t0 + wide);
}

/// [`weighted_sum`] for several output rows over the same terms: row `r` of `out` (`n` frames each) is
/// `Σ_i weights[r·terms + i] · data[offset(i) + t] + bias[r]` (bias 0 where there is none).
///
/// Every frame of every row sees the same additions in the same order as [`weighted_sum`] gives it, so the result
/// is bit for bit the same; rows are only blocked so that each input vector loaded serves several of them.
#[inline(always)]
pub(crate) fn weighted_sums(
    isa: Isa,
    out: &mut [f32],
    n: usize,
    weights: &[f32],
    bias: Option<&[f32]>,
    data: &[f32],
    offset: impl Fn(usize) -> usize,
) {
    if n == 0 || out.is_empty() {
        return;
    }
    let rows = out.len() / n;
    let terms = weights.len() / rows;
    let bias_of = |r: usize| bias.map_or(0.0, |b| b[r]);
    match isa {
        Isa::Baseline => {
            for (r, row) in out.chunks_exact_mut(n).enumerate() {
                weighted_sum(isa, row, &weights[r * terms..][..terms], bias_of(r), data, &offset);
            }
        }
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `Isa::Avx2Fma` is only ever the result of `Isa::detect` on a CPU with AVX2 and FMA.
        Isa::Avx2Fma => unsafe { weighted_sums_avx2_fma(out, n, weights, terms, &bias_of, data, &offset) },
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn weighted_sums_avx2_fma(
    out: &mut [f32],
    n: usize,
    weights: &[f32],
    terms: usize,
    bias_of: &impl Fn(usize) -> f32,
    data: &[f32],
    offset: &impl Fn(usize) -> usize,
) {
    // Whole chunks of ROWS rows × ROW_CHUNK frames; the rest (the last rows, the last frames) row by row.
    let rows = out.len() / n;
    let blocked_rows = rows / ROWS * ROWS;
    let blocked_frames = n / ROW_CHUNK * ROW_CHUNK;
    for r in (0..blocked_rows).step_by(ROWS) {
        let bias = std::array::from_fn(|k| bias_of(r + k));
        rows_with::<Fused, ROWS, ROW_CHUNK>(
            &mut out[r * n..][..ROWS * n],
            n,
            &weights[r * terms..],
            terms,
            bias,
            data,
            offset,
            blocked_frames,
        );
    }
    for (r, row) in out.chunks_exact_mut(n).enumerate() {
        let done = if r < blocked_rows { blocked_frames } else { 0 };
        weighted_sum_avx2_fma(&mut row[done..], &weights[r * terms..][..terms], bias_of(r), data, offset, done);
    }
}

/// `R` rows × chunks of `C` frames, for the first `frames` frames of each row of `out` (`n` frames a row).
#[cfg(target_arch = "x86_64")]
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn rows_with<M: MulAdd, const R: usize, const C: usize>(
    out: &mut [f32],
    n: usize,
    weights: &[f32],
    terms: usize,
    bias: [f32; R],
    data: &[f32],
    offset: &impl Fn(usize) -> usize,
    frames: usize,
) {
    let rows: [&[f32]; R] = std::array::from_fn(|r| &weights[r * terms..][..terms]);
    for t0 in (0..frames).step_by(C) {
        let mut acc = [[0.0f32; C]; R];
        for i in 0..terms {
            let x: &[f32; C] = data[offset(i) + t0..][..C].try_into().expect("C frames");
            let w: [f32; R] = std::array::from_fn(|r| rows[r][i]);
            for (acc, w) in acc.iter_mut().zip(w) {
                for (a, x) in acc.iter_mut().zip(x) {
                    *a = M::mul_add(*a, w, *x);
                }
            }
        }
        for (r, (acc, bias)) in acc.iter().zip(bias).enumerate() {
            for (y, a) in out[r * n + t0..][..C].iter_mut().zip(acc) {
                *y = a + bias;
            }
        }
    }
}

/// [`weighted_sum`] with chunks of `C` frames, the first output frame being frame `t0` of the data.
#[inline(always)]
fn weighted_sum_with<M: MulAdd, const C: usize>(
    out: &mut [f32],
    weights: &[f32],
    bias: f32,
    data: &[f32],
    offset: impl Fn(usize) -> usize,
    t0: usize,
) {
    let mut chunks = out.chunks_exact_mut(C);
    let mut t0 = t0;
    for chunk in &mut chunks {
        let mut acc = [0.0f32; C];
        for (i, &w) in weights.iter().enumerate() {
            let x = &data[offset(i) + t0..][..C];
            for (a, x) in acc.iter_mut().zip(x) {
                *a = M::mul_add(*a, w, *x);
            }
        }
        for (y, a) in chunk.iter_mut().zip(acc) {
            *y = a + bias;
        }
        t0 += C;
    }
    for (t, y) in chunks.into_remainder().iter_mut().enumerate() {
        let t = t0 + t;
        let mut acc = 0.0f32;
        for (i, &w) in weights.iter().enumerate() {
            acc = M::mul_add(acc, w, data[offset(i) + t]);
        }
        *y = acc + bias;
    }
}

/// `y = W x (+ b)` per frame, with `groups` independent diagonal blocks.
#[derive(Debug, Clone)]
pub struct Conv1x1 {
    in_channels: usize,
    out_channels: usize,
    groups: usize,
    /// Row-major `out × in/groups`: row `o` multiplies the inputs of group `o / (out/groups)`. This is the file order.
    weight: Vec<f32>,
    bias: Option<Vec<f32>>,
    isa: Isa,
}

impl Conv1x1 {
    /// Reads the weights in file order: per group, per output, per input of the group; then the biases.
    pub fn new(
        w: &mut Weights<'_>,
        in_channels: usize,
        out_channels: usize,
        bias: bool,
        groups: usize,
    ) -> Result<Self, BuildError> {
        if groups == 0 || !in_channels.is_multiple_of(groups) || !out_channels.is_multiple_of(groups) {
            return Err(BuildError::Inconsistent(format!(
                "1x1 conv: {groups} groups do not divide {in_channels} → {out_channels} channels"
            )));
        }
        let weight = w.take(out_channels * (in_channels / groups))?.to_vec();
        let bias = if bias { Some(w.take(out_channels)?.to_vec()) } else { None };
        Ok(Self { in_channels, out_channels, groups, weight, bias, isa: Isa::detect() })
    }

    pub fn in_channels(&self) -> usize {
        self.in_channels
    }

    pub fn out_channels(&self) -> usize {
        self.out_channels
    }

    pub fn parameter_count(&self) -> usize {
        self.weight.len() + self.bias.as_ref().map_or(0, Vec::len)
    }

    /// `output[..out × n] = W · input[..in × n] (+ b)`.
    pub fn process(&self, input: &[f32], output: &mut [f32], n: usize) {
        let in_g = self.in_channels / self.groups;
        let out_g = self.out_channels / self.groups;
        for (g, rows) in output[..self.out_channels * n].chunks_exact_mut(out_g * n).enumerate() {
            let first = g * in_g * n;
            let weights = &self.weight[g * out_g * in_g..][..out_g * in_g];
            let bias = self.bias.as_ref().map(|b| &b[g * out_g..][..out_g]);
            weighted_sums(self.isa, rows, n, weights, bias, input, |j| first + j * n);
        }
    }
}

/// Feature-wise linear modulation: `x ⊙ scale(c) (+ shift(c))`, with `[scale; shift] = Conv1x1(c)`.
#[derive(Debug, Clone)]
pub struct Film {
    conv: Conv1x1,
    dim: usize,
    shift: bool,
}

impl Film {
    pub fn new(
        w: &mut Weights<'_>,
        condition_size: usize,
        dim: usize,
        shift: bool,
        groups: usize,
    ) -> Result<Self, BuildError> {
        let conv = Conv1x1::new(w, condition_size, if shift { 2 * dim } else { dim }, true, groups)?;
        Ok(Self { conv, dim, shift })
    }

    /// Rows of scratch [`Film::apply`] needs.
    pub fn scratch_rows(&self) -> usize {
        self.conv.out_channels()
    }

    pub fn parameter_count(&self) -> usize {
        self.conv.parameter_count()
    }

    /// Modulates `x[..dim × n]` in place by the condition `c`; `scratch` holds the scale/shift rows.
    pub fn apply(&self, x: &mut [f32], condition: &[f32], scratch: &mut [f32], n: usize) {
        self.conv.process(condition, scratch, n);
        let (scale, shift) = scratch[..self.conv.out_channels() * n].split_at(self.dim * n);
        let x = &mut x[..self.dim * n];
        if self.shift {
            for ((x, s), b) in x.iter_mut().zip(scale).zip(shift) {
                *x = *x * s + b;
            }
        } else {
            for (x, s) in x.iter_mut().zip(scale) {
                *x *= s;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grouped_1x1_is_block_diagonal_in_file_order() {
        // 4 → 2 channels, 2 groups: out0 = 1·x0 + 2·x1 + 10, out1 = 3·x2 + 4·x3 + 20.
        let data = [1.0, 2.0, 3.0, 4.0, 10.0, 20.0];
        let mut w = Weights::new(&data);
        let conv = Conv1x1::new(&mut w, 4, 2, true, 2).unwrap();
        assert!(w.is_empty());
        let x = [1.0, 0.0, /* row 1 */ 0.0, 1.0, /* row 2 */ 1.0, 1.0, /* row 3 */ 2.0, 0.0];
        let mut y = [0.0; 4];
        conv.process(&x, &mut y, 2);
        assert_eq!(y, [11.0, 12.0, 31.0, 23.0]);
    }

    #[test]
    fn every_kernel_computes_the_same_weighted_sum() {
        // 48 terms over 64 + 13 frames (wide chunks, 8-frame chunks and single frames), on each kernel this CPU runs.
        let data: Vec<f32> = (0..48 * 100).map(|i| ((i * 37 % 101) as f32 - 50.0) * 0.013).collect();
        let weights: Vec<f32> = (0..48).map(|i| ((i * 13 % 17) as f32 - 8.0) * 0.07).collect();
        let offset = |i: usize| i * 100 + 3;
        let exact: Vec<f64> = (0..77)
            .map(|t| {
                0.5 + weights
                    .iter()
                    .enumerate()
                    .map(|(i, &w)| f64::from(w) * f64::from(data[offset(i) + t]))
                    .sum::<f64>()
            })
            .collect();
        let mut isas = vec![Isa::Baseline];
        if Isa::detect() != Isa::Baseline {
            isas.push(Isa::detect());
        }
        for isa in isas {
            let mut out = vec![0.0; 77];
            weighted_sum(isa, &mut out, &weights, 0.5, &data, offset);
            for (t, (y, e)) in out.iter().zip(&exact).enumerate() {
                assert!((f64::from(*y) - e).abs() < 1e-5, "{isa:?} frame {t}: {y} vs {e}");
            }
            // Frame t's sum does not depend on where the block starts.
            let mut late = vec![0.0; 70];
            weighted_sum(isa, &mut late, &weights, 0.5, &data, |i| offset(i) + 7);
            assert_eq!(late[..], out[7..]);
        }
    }

    #[test]
    fn several_rows_at_once_are_each_row_bit_for_bit() {
        // Row counts around the blocking (2 rows), frame counts around its chunks (32 frames) and the wide ones (64).
        let terms = 19;
        let data: Vec<f32> = (0..terms * 150).map(|i| ((i * 37 % 101) as f32 - 50.0) * 0.013).collect();
        let offset = |i: usize| i * 150 + 5;
        let mut isas = vec![Isa::Baseline];
        if Isa::detect() != Isa::Baseline {
            isas.push(Isa::detect());
        }
        for isa in isas {
            for rows in [1, 2, 3, 4, 7] {
                let weights: Vec<f32> = (0..rows * terms).map(|i| ((i * 13 % 17) as f32 - 8.0) * 0.07).collect();
                let bias: Vec<f32> = (0..rows).map(|r| r as f32 * 0.25 - 0.5).collect();
                for n in [1, 8, 13, 32, 64, 77, 100, 128] {
                    let mut together = vec![0.0; rows * n];
                    weighted_sums(isa, &mut together, n, &weights, Some(&bias), &data, offset);
                    for r in 0..rows {
                        let mut alone = vec![0.0; n];
                        weighted_sum(isa, &mut alone, &weights[r * terms..][..terms], bias[r], &data, offset);
                        assert_eq!(together[r * n..][..n], alone[..], "{isa:?}, {rows} rows, {n} frames, row {r}");
                    }
                }
            }
        }
    }

    #[test]
    fn film_scales_then_shifts() {
        // condition 1 channel; dim 1; scale = 2c + 1, shift = -c + 0.5
        let data = [2.0, -1.0, 1.0, 0.5];
        let film = Film::new(&mut Weights::new(&data), 1, 1, true, 1).unwrap();
        let mut x = [3.0, 3.0];
        let mut scratch = [0.0; 4];
        film.apply(&mut x, &[0.0, 1.0], &mut scratch, 2);
        assert_eq!(x, [3.0 * 1.0 + 0.5, 3.0 * 3.0 - 0.5]);
    }
}
