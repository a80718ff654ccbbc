//! Per-frame matrix multiply (1×1 convolution), optionally grouped, and FiLM built on it.
//!
//! Blocks are planar: `rows × n` with each row's `n` frames contiguous. An output row is then a weighted sum of input
//! rows (`y_o = Σ_j w_oj · x_j`), vectorised over frames whatever the channel count — small channel counts (3, 8, 16)
//! are the norm in amp models, where per-frame dot products would not vectorise.

#[cfg(target_arch = "x86_64")]
use super::simd::Fused;
use super::simd::{Isa, MulAdd, Separate};
use super::{BuildError, Weights};

/// Frames accumulated together in registers by the baseline kernel: 16 `f32` are four SSE registers.
const CHUNK: usize = 16;

/// Several output rows over the same terms, on the best kernel for `isa`: row `r` of `out` (`n` frames each) is
/// `Σ_i weights[r·terms + i] · data[offset(i) + t] + bias[r]` (bias 0 where there is none).
///
/// The work is register-blocked in tiles of a few rows × a few vectors of frames: the tile's sums stay in registers
/// while every term is added, and each input vector loaded serves every row of the tile. Every frame of every row
/// sees the same additions in the same order whatever the tile, the block length or the frame's position in the
/// block, so output never depends on how a signal is cut into blocks, and the AVX2 and AVX-512 kernels agree bit
/// for bit. The bias is added last, to the finished sum (as the reference does), while the sum is still in
/// registers.
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
                weighted_sum_with::<Separate, CHUNK>(row, &weights[r * terms..][..terms], bias_of(r), data, &offset);
            }
        }
        // SAFETY: `Isa::Avx2Fma` is only ever the result of `Isa::detect` on a CPU with AVX2 and FMA.
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2Fma => unsafe { weighted_sums_avx2(out, n, weights, terms, &bias_of, data, &offset) },
        // SAFETY: `Isa::Avx512` is only ever the result of `Isa::detect` on a CPU with AVX-512F, AVX2 and FMA.
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => unsafe { weighted_sums_avx512(out, n, weights, terms, &bias_of, data, &offset) },
    }
}

// The vector kernels: the same generic code ([`fused_tiles`]) compiled inside a `#[target_feature]` function per ISA,
// with the tiles that ISA's registers hold. A tile of R rows × C frames keeps R·C/lanes sums in registers, and at
// least eight of them keep both FMA units busy through the FMA's latency.
// - AVX2 has sixteen 8-lane registers: 2 rows × 32 frames (eight sums; a third row spills, since the registers must
//   also hold the input vector and a weight per row).
// - AVX-512 has thirty-two 16-lane registers: 4 rows × 64 frames (sixteen sums), 2 rows × 128.
// Shorter blocks take narrower tiles (fewer sums); a block shorter than one vector goes frame by frame. On AVX-512
// the 3- and 4-row tiles narrow straight to one register a row: at 4 rows × 32 frames the compiler kept the sums on
// the stack (A1 standard at block 32: 21× against 58× with 4 × 16).

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn weighted_sums_avx2(
    out: &mut [f32],
    n: usize,
    weights: &[f32],
    terms: usize,
    bias_of: &impl Fn(usize) -> f32,
    data: &[f32],
    offset: &impl Fn(usize) -> usize,
) {
    let args = (out, n, weights, terms, bias_of, data, offset);
    if args.0.len() / n >= 2 { fused_tiles::<2, 32, 16, 8>(args) } else { fused_tiles::<1, 64, 32, 8>(args) }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
fn weighted_sums_avx512(
    out: &mut [f32],
    n: usize,
    weights: &[f32],
    terms: usize,
    bias_of: &impl Fn(usize) -> f32,
    data: &[f32],
    offset: &impl Fn(usize) -> usize,
) {
    let args = (out, n, weights, terms, bias_of, data, offset);
    match args.0.len() / n {
        1 => fused_tiles::<1, 128, 64, 16>(args),
        2 => fused_tiles::<2, 128, 64, 16>(args),
        3 => fused_tiles::<3, 64, 16, 16>(args),
        _ => fused_tiles::<4, 64, 16, 16>(args),
    }
}

/// The arguments of [`weighted_sums`] on to the vector kernels: out, n, weights, terms, bias of a row, data, offset.
#[cfg(target_arch = "x86_64")]
type SumArgs<'a, B, O> = (&'a mut [f32], usize, &'a [f32], usize, &'a B, &'a [f32], &'a O);

/// Tiles of `R` rows (at most the rows there are) × the widest of `C1 ≥ C2 ≥ C3` frames the block holds, with
/// fused multiply-adds; a block shorter than `C3` frame by frame.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn fused_tiles<const R: usize, const C1: usize, const C2: usize, const C3: usize>(
    args: SumArgs<'_, impl Fn(usize) -> f32, impl Fn(usize) -> usize>,
) {
    let n = args.1;
    if n >= C1 {
        tiles::<Fused, R, C1>(args);
    } else if n >= C2 {
        tiles::<Fused, R, C2>(args);
    } else if n >= C3 {
        tiles::<Fused, R, C3>(args);
    } else {
        tiles::<Fused, 1, 1>(args);
    }
}

/// Every row and frame of `out` in tiles of `R` rows × `C` frames (there must be at least `R` rows and `C`
/// frames). Where `R` or `C` does not divide, the last tile overlaps the one before it: those rows or frames are
/// computed again, to the same bits (the same terms in the same order), which costs less than a narrower tile.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn tiles<M: MulAdd, const R: usize, const C: usize>(
    (out, n, weights, terms, bias_of, data, offset): SumArgs<'_, impl Fn(usize) -> f32, impl Fn(usize) -> usize>,
) {
    let rows = out.len() / n;
    debug_assert!(rows >= R && n >= C);
    let mut next_row = 0;
    loop {
        let r0 = next_row.min(rows - R);
        let w: [&[f32]; R] = std::array::from_fn(|r| &weights[(r0 + r) * terms..][..terms]);
        let bias: [f32; R] = std::array::from_fn(|r| bias_of(r0 + r));
        let mut next_frame = 0;
        loop {
            let t0 = next_frame.min(n - C);
            let mut acc = [[0.0f32; C]; R];
            for i in 0..terms {
                let x: &[f32; C] = data[offset(i) + t0..][..C].try_into().expect("C frames");
                for (acc, w) in acc.iter_mut().zip(&w) {
                    let w = w[i];
                    for (a, x) in acc.iter_mut().zip(x) {
                        *a = M::mul_add(*a, w, *x);
                    }
                }
            }
            for (r, (acc, bias)) in acc.iter().zip(bias).enumerate() {
                for (y, a) in out[(r0 + r) * n + t0..][..C].iter_mut().zip(acc) {
                    *y = a + bias;
                }
            }
            next_frame = t0 + C;
            if next_frame >= n {
                break;
            }
        }
        next_row = r0 + R;
        if next_row >= rows {
            break;
        }
    }
}

/// One row on the baseline: chunks of `C` frames, then single frames.
#[inline(always)]
fn weighted_sum_with<M: MulAdd, const C: usize>(
    out: &mut [f32],
    weights: &[f32],
    bias: f32,
    data: &[f32],
    offset: impl Fn(usize) -> usize,
) {
    let mut chunks = out.chunks_exact_mut(C);
    let mut t0 = 0;
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

    /// `out[t] = Σ_i weights[i] · data[offset(i) + t] + bias` for `t < out.len()`: [`weighted_sums`] for one row.
    fn weighted_sum(
        isa: Isa,
        out: &mut [f32],
        weights: &[f32],
        bias: f32,
        data: &[f32],
        offset: impl Fn(usize) -> usize,
    ) {
        weighted_sums(isa, out, out.len(), weights, Some(std::slice::from_ref(&bias)), data, offset);
    }

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
        // 48 terms over 150 frames (wide chunks of 64 or 128, one-register chunks and single frames), on each kernel
        // this CPU runs; the vector kernels (all fused, the terms in the same order) agree bit for bit.
        let frames = 150;
        let data: Vec<f32> = (0..48 * 200).map(|i| ((i * 37 % 101) as f32 - 50.0) * 0.013).collect();
        let weights: Vec<f32> = (0..48).map(|i| ((i * 13 % 17) as f32 - 8.0) * 0.07).collect();
        let offset = |i: usize| i * 200 + 3;
        let exact: Vec<f64> = (0..frames)
            .map(|t| {
                0.5 + weights
                    .iter()
                    .enumerate()
                    .map(|(i, &w)| f64::from(w) * f64::from(data[offset(i) + t]))
                    .sum::<f64>()
            })
            .collect();
        let mut fused: Option<Vec<f32>> = None;
        for isa in Isa::available() {
            let mut out = vec![0.0; frames];
            weighted_sum(isa, &mut out, &weights, 0.5, &data, offset);
            for (t, (y, e)) in out.iter().zip(&exact).enumerate() {
                assert!((f64::from(*y) - e).abs() < 1e-5, "{isa:?} frame {t}: {y} vs {e}");
            }
            // Frame t's sum does not depend on where the block starts.
            let mut late = vec![0.0; frames - 7];
            weighted_sum(isa, &mut late, &weights, 0.5, &data, |i| offset(i) + 7);
            assert_eq!(late[..], out[7..], "{isa:?}");
            if isa.has_avx2_fma() {
                assert_eq!(fused.get_or_insert_with(|| out.clone())[..], out[..], "{isa:?} against AVX2");
            }
        }
    }

    #[test]
    fn several_rows_at_once_are_each_row_bit_for_bit() {
        // Row counts around the blocking (2 rows on AVX2, 4 on AVX-512), frame counts around its chunks (32, 64
        // frames) and the wide ones (64, 128).
        let terms = 19;
        let data: Vec<f32> = (0..terms * 200).map(|i| ((i * 37 % 101) as f32 - 50.0) * 0.013).collect();
        let offset = |i: usize| i * 200 + 5;
        for isa in Isa::available() {
            for rows in [1, 2, 3, 4, 5, 7, 8, 9, 16] {
                let weights: Vec<f32> = (0..rows * terms).map(|i| ((i * 13 % 17) as f32 - 8.0) * 0.07).collect();
                let bias: Vec<f32> = (0..rows).map(|r| r as f32 * 0.25 - 0.5).collect();
                for n in [1, 8, 13, 16, 32, 64, 77, 100, 128, 150, 192] {
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
