//! Activation functions, applied in place to a block.
//!
//! Blocks are planar (`rows × frames`, each row contiguous), but the reference applies activations to column-major
//! Eigen blocks, and PReLU picks its per-channel slope by the *flat column-major index* mod the slope count. With as
//! many slopes as rows that is simply the row; [`Activation::apply`] reproduces the general rule so that every file
//! sounds as it does in the reference, however odd its slope count.

use super::simd::map_in_place;
use crate::formats::nam::ActivationConfig;

/// Which `tanh` the "Tanh" activation object (and the LSTM cell) uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TanhMode {
    /// `tanh` to a few ulp ([`accurate_tanh`]): what the training framework computes, to `f32` precision.
    #[default]
    Accurate,
    /// NeuralAmpModelerCore's rational approximation, which its plugin enables at start-up (so most users have
    /// heard their captures through it). Only "Tanh" switches; "Sigmoid" and "SiLU" stay exact.
    Fast,
}

// NeuralAmpModelerCore's fast tanh constants, written exactly as in the reference so that they round to the same
// `f32`s: `x·(A + A|x| + (B + C|x|)x²) / (D + (D + x²)·|x + E·x·|x||)`.
#[allow(clippy::excessive_precision)]
pub(crate) const FAST_TANH_A: f32 = 2.45550750702956;
#[allow(clippy::excessive_precision)]
pub(crate) const FAST_TANH_B: f32 = 0.893229853513558;
#[allow(clippy::excessive_precision)]
pub(crate) const FAST_TANH_C: f32 = 0.821226666969744;
#[allow(clippy::excessive_precision)]
pub(crate) const FAST_TANH_D: f32 = 2.44506634652299;
#[allow(clippy::excessive_precision)]
pub(crate) const FAST_TANH_E: f32 = 0.814642734961073;

/// NeuralAmpModelerCore's fast tanh (a rational approximation, |error| < 1e-3), in the same operation order.
#[inline]
pub fn fast_tanh(x: f32) -> f32 {
    let ax = x.abs();
    let x2 = x * x;
    (x * (FAST_TANH_A + FAST_TANH_A * ax + (FAST_TANH_B + FAST_TANH_C * ax) * x2))
        / (FAST_TANH_D + (FAST_TANH_D + x2) * (x + FAST_TANH_E * x * ax).abs())
}

pub(crate) const LN2_HI: f32 = 0.693_145_75; // ln 2 to 16 bits: n·LN2_HI is exact for |n| < 2⁸
pub(crate) const LN2_LO: f32 = 1.428_606_8e-6; // ln 2 − LN2_HI
/// 1.5·2²³: adding and subtracting it rounds an `f32` in (−2²², 2²²) to the nearest integer, without a libm call.
pub(crate) const ROUND_MAGIC: f32 = 12_582_912.0;
/// Taylor coefficients of `expm1(r)/r = Σ rᵐ/(m+1)!`, m = 0..7 (remainder < 3e-10 relative for |r| ≤ ln2/2).
pub(crate) const EXPM1_TAYLOR: [f32; 8] =
    [1.0, 1.0 / 2.0, 1.0 / 6.0, 1.0 / 24.0, 1.0 / 120.0, 1.0 / 720.0, 1.0 / 5040.0, 1.0 / 40320.0];
/// Cephes' `expf` polynomial: `expm1(r) ≈ r + r²·P(r)` on |r| ≤ ln2/2, P of degree 5 (highest coefficient first; the
/// last, 0.50000001201, rounds to ½ in `f32`). As accurate as [`EXPM1_TAYLOR`] for the activations (see the AVX2
/// LSTM kernel's tests) with two operations fewer.
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
pub(crate) const EXPM1_MINIMAX: [f32; 6] =
    [1.987_569_1e-4, 1.398_199_9e-3, 8.333_452e-3, 4.166_579_6e-2, 1.666_666_5e-1, 0.5];
/// [`accurate_sigmoid`] clamps `−x` to this range, where `2ⁿ` of the reduction stays a normal `f32`. Beyond it the
/// sigmoid is 1 to within an ulp, or below 1e-38.
pub(crate) const SIGMOID_EXP_MIN: f32 = -87.0;
pub(crate) const SIGMOID_EXP_MAX: f32 = 88.0;

/// The reduction behind the exp-based activations: `y = n·ln2 + r` with |r| ≤ ln2/2; returns `(2ⁿ, expm1(r))`, so
/// that `exp(y) = 2ⁿ·expm1(r) + 2ⁿ` and `expm1(y) = 2ⁿ·expm1(r) + (2ⁿ − 1)`. `y` must lie in [−87, 88] (2ⁿ normal).
/// Branch-free and call-free, so that loops over it vectorise.
#[inline(always)]
fn exp_reduced(y: f32) -> (f32, f32) {
    let k = y * std::f32::consts::LOG2_E + ROUND_MAGIC;
    let n = k - ROUND_MAGIC;
    let r = (y - n * LN2_HI) - n * LN2_LO;
    let c = EXPM1_TAYLOR;
    let p = r * (c[0] + r * (c[1] + r * (c[2] + r * (c[3] + r * (c[4] + r * (c[5] + r * (c[6] + r * c[7])))))));
    // 2ⁿ, built from n's bits: k's mantissa holds n (two's complement) under the magic's bits.
    let scale = f32::from_bits(k.to_bits().wrapping_sub(ROUND_MAGIC.to_bits()).wrapping_add(127) << 23);
    (scale, p)
}

/// `tanh` to within a few ulp (max relative error < 3e-7 against `f64::tanh`, see the tests), written without
/// branches or calls so that a loop over a block vectorises: `f32::tanh` is a libm call per sample and cost as much
/// as all the multiply-adds of a WaveNet.
///
/// `tanh|x| = e / (e + 2)` with `e = expm1(2|x|)`, which keeps full relative accuracy near zero. `expm1` reduces
/// `y = n·ln2 + r` (|r| ≤ ln2/2) and evaluates `expm1(r)` by its Taylor series to `r⁸` (remainder < 3e-10 relative),
/// then `e = 2ⁿ·expm1(r) + (2ⁿ − 1)`. Beyond |x| = 9, tanh is 1 to within half an ulp. NaN gives ±1.
#[inline(always)]
pub fn accurate_tanh(x: f32) -> f32 {
    let (scale, p) = exp_reduced(2.0 * x.abs().min(9.0));
    let e = scale * p + (scale - 1.0);
    (e / (e + 2.0)).copysign(x)
}

/// The logistic sigmoid `1 / (1 + e⁻ˣ)` to within a few ulp (see the tests), branch-free like [`accurate_tanh`]:
/// `e⁻ˣ = 2ⁿ·expm1(r) + 2ⁿ` from the same reduction. Below x = −88 it returns σ(−88) ≈ 6e-39 instead of a smaller
/// number.
#[inline(always)]
// max/min, not clamp: NaN gives 1 rather than NaN, as the vector kernel's max/min instructions do.
#[allow(clippy::manual_clamp)]
pub fn accurate_sigmoid(x: f32) -> f32 {
    let (scale, p) = exp_reduced((-x).max(SIGMOID_EXP_MIN).min(SIGMOID_EXP_MAX));
    let e = scale * p + scale;
    1.0 / (1.0 + e)
}

/// Sigmoid built on [`fast_tanh`]: what the LSTM cell uses in fast mode.
#[inline]
pub fn fast_sigmoid(x: f32) -> f32 {
    0.5 * (fast_tanh(x * 0.5) + 1.0)
}

#[inline]
pub fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

#[inline]
fn leaky(x: f32, slope: f32) -> f32 {
    if x > 0.0 { x } else { slope * x }
}

#[inline]
fn hardswish(x: f32) -> f32 {
    if x <= -3.0 {
        0.0
    } else if x >= 3.0 {
        x
    } else {
        x * (x + 3.0) / 6.0
    }
}

#[inline]
fn leaky_hardtanh(x: f32, min_val: f32, max_val: f32, min_slope: f32, max_slope: f32) -> f32 {
    if x < min_val {
        (x - min_val) * min_slope + min_val
    } else if x > max_val {
        (x - max_val) * max_slope + max_val
    } else {
        x
    }
}

/// A resolved activation: the tanh mode is already decided.
#[derive(Debug, Clone, PartialEq)]
pub enum Activation {
    Tanh,
    FastTanh,
    Hardtanh,
    Relu,
    LeakyRelu(f32),
    Prelu(Vec<f32>),
    Sigmoid,
    Silu,
    Hardswish,
    LeakyHardtanh { min_val: f32, max_val: f32, min_slope: f32, max_slope: f32 },
    Softsign,
}

impl Activation {
    pub fn new(config: &ActivationConfig, tanh: TanhMode) -> Self {
        match config {
            ActivationConfig::Tanh => match tanh {
                TanhMode::Accurate => Activation::Tanh,
                TanhMode::Fast => Activation::FastTanh,
            },
            ActivationConfig::FastTanh => Activation::FastTanh,
            ActivationConfig::Hardtanh => Activation::Hardtanh,
            ActivationConfig::Relu => Activation::Relu,
            ActivationConfig::LeakyRelu { negative_slope } => Activation::LeakyRelu(*negative_slope),
            ActivationConfig::Prelu { negative_slopes } => Activation::Prelu(negative_slopes.clone()),
            ActivationConfig::Sigmoid => Activation::Sigmoid,
            ActivationConfig::Silu => Activation::Silu,
            ActivationConfig::Hardswish => Activation::Hardswish,
            &ActivationConfig::LeakyHardtanh { min_val, max_val, min_slope, max_slope } => {
                Activation::LeakyHardtanh { min_val, max_val, min_slope, max_slope }
            }
            ActivationConfig::Softsign => Activation::Softsign,
        }
    }

    /// The function at one point (for tests and the scalar paths). PReLU uses its first slope.
    pub fn eval(&self, x: f32) -> f32 {
        let mut v = [x];
        self.apply(&mut v, 1, 1, 1);
        v[0]
    }

    /// Applies the activation in place to a planar block of `rows × n` (`data[r * n + t]`).
    ///
    /// `period` only matters to PReLU: the reference counts its flat column-major index from the start of what it was
    /// handed, which is the whole block (`period = rows * n`) for plain layers and the post-stack head, but a single
    /// column (`period = rows`) inside the gating/blending code, which activates frame by frame.
    pub fn apply(&self, data: &mut [f32], rows: usize, n: usize, period: usize) {
        let data = &mut data[..rows * n];
        match self {
            Activation::Tanh => map_in_place(data, accurate_tanh),
            Activation::FastTanh => map_in_place(data, fast_tanh),
            Activation::Hardtanh => data.iter_mut().for_each(|x| *x = x.clamp(-1.0, 1.0)),
            Activation::Relu => data.iter_mut().for_each(|x| *x = if *x > 0.0 { *x } else { 0.0 }),
            &Activation::LeakyRelu(slope) => data.iter_mut().for_each(|x| *x = leaky(*x, slope)),
            Activation::Sigmoid => data.iter_mut().for_each(|x| *x = sigmoid(*x)),
            Activation::Silu => data.iter_mut().for_each(|x| *x *= sigmoid(*x)),
            Activation::Hardswish => data.iter_mut().for_each(|x| *x = hardswish(*x)),
            &Activation::LeakyHardtanh { min_val, max_val, min_slope, max_slope } => {
                data.iter_mut().for_each(|x| *x = leaky_hardtanh(*x, min_val, max_val, min_slope, max_slope))
            }
            Activation::Softsign => data.iter_mut().for_each(|x| *x /= 1.0 + x.abs()),
            Activation::Prelu(slopes) => prelu(data, rows, n, period, slopes),
        }
    }
}

/// PReLU with the reference's indexing: element (row r, frame t) of a column-major block whose flat index restarts
/// every `period` elements gets slope `((t·rows + r) mod period) mod slopes.len()`.
fn prelu(data: &mut [f32], rows: usize, n: usize, period: usize, slopes: &[f32]) {
    let count = slopes.len();
    if period.is_multiple_of(count) && rows.is_multiple_of(count) {
        // The usual case (one slope per channel): the slope depends on the row only.
        for (r, row) in data.chunks_exact_mut(n).enumerate() {
            let slope = slopes[r % count];
            row.iter_mut().for_each(|x| *x = leaky(*x, slope));
        }
        return;
    }
    for (r, row) in data.chunks_exact_mut(n).enumerate() {
        for (t, x) in row.iter_mut().enumerate() {
            let flat = (t * rows + r) % period;
            *x = leaky(*x, slopes[flat % count]);
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    #[test]
    fn fast_tanh_is_within_a_thousandth_of_tanh_and_odd() {
        for i in -1000..=1000 {
            let x = i as f32 * 0.01;
            assert!((fast_tanh(x) - x.tanh()).abs() < 1e-3, "{x}");
            assert_eq!(fast_tanh(-x), -fast_tanh(x));
        }
        assert!((fast_sigmoid(0.0) - 0.5).abs() < 1e-7);
    }

    #[test]
    fn accurate_tanh_is_within_a_few_ulp_of_tanh_everywhere() {
        // Dense sweep of [-20, 20] (4M points) plus tiny and subnormal inputs; relative error against f64.
        let mut worst = (0.0f64, 0.0f32);
        let points = (-2_000_000..=2_000_000)
            .map(|i| i as f32 * 1e-5)
            .chain((-40..=40).map(|e| 2f32.powi(e) * 1.2345))
            .chain([1e-40, -1e-40, f32::MIN_POSITIVE, 0.0, -0.0, 1e30, -1e30, f32::INFINITY, f32::NEG_INFINITY]);
        for x in points {
            let exact = (x as f64).tanh();
            let got = accurate_tanh(x) as f64;
            let rel = if exact == 0.0 { got.abs() } else { ((got - exact) / exact).abs() };
            if rel > worst.0 {
                worst = (rel, x);
            }
        }
        eprintln!("accurate_tanh: max relative error {:.3e} at x = {}", worst.0, worst.1);
        assert!(worst.0 < 3e-7, "max relative error {:.3e} at x = {}", worst.0, worst.1);
        assert_eq!(accurate_tanh(-0.0).to_bits(), (-0.0f32).to_bits());
        for i in 0..1000 {
            let x = i as f32 * 0.013;
            assert_eq!(accurate_tanh(-x), -accurate_tanh(x));
        }
        // The block path (vectorised, possibly AVX2) gives the same bits as the scalar function.
        let xs: Vec<f32> = (0..1003).map(|i| (i as f32 - 500.0) * 0.0137).collect();
        let mut block = xs.clone();
        Activation::Tanh.apply(&mut block, 1, xs.len(), xs.len());
        for (x, y) in xs.iter().zip(&block) {
            assert_eq!(y.to_bits(), accurate_tanh(*x).to_bits(), "{x}");
        }
    }

    /// Max absolute and relative error of `f` against `exact` (in f64) over a dense sweep of [−30, 30] plus
    /// far-out, tiny and special inputs.
    pub(crate) fn max_errors(f: impl Fn(&[f32], &mut [f32]), exact: impl Fn(f64) -> f64) -> ((f64, f32), (f64, f32)) {
        let xs: Vec<f32> = (-3_000_000..=3_000_000)
            .map(|i| i as f32 * 1e-5)
            .chain((-40..=40).map(|e| 2f32.powi(e) * 1.2345))
            .chain((-40..=40).map(|e| -(2f32.powi(e) * 1.2345)))
            .chain([1e-40, -1e-40, f32::MIN_POSITIVE, 0.0, -0.0, 87.5, -87.5, 88.5, -88.5, 1e30, -1e30])
            .chain([f32::INFINITY, f32::NEG_INFINITY])
            .collect();
        let mut ys = vec![0.0; xs.len()];
        f(&xs, &mut ys);
        let (mut abs, mut rel) = ((0.0f64, 0.0f32), (0.0f64, 0.0f32));
        for (&x, &y) in xs.iter().zip(&ys) {
            let want = exact(f64::from(x));
            let err = (f64::from(y) - want).abs();
            if err > abs.0 {
                abs = (err, x);
            }
            // Relative error where the result is a normal f32 (below that, the absolute error is what counts).
            if want.abs() >= f64::from(f32::MIN_POSITIVE) && err / want.abs() > rel.0 {
                rel = (err / want.abs(), x);
            }
        }
        (abs, rel)
    }

    pub(crate) fn exact_sigmoid(x: f64) -> f64 {
        1.0 / (1.0 + (-x).exp())
    }

    #[test]
    fn accurate_sigmoid_is_within_a_few_ulp_of_the_exact_sigmoid() {
        let map = |xs: &[f32], ys: &mut [f32]| xs.iter().zip(ys).for_each(|(x, y)| *y = accurate_sigmoid(*x));
        let (abs, rel) = max_errors(map, exact_sigmoid);
        eprintln!(
            "accurate_sigmoid: max abs error {:.3e} at x = {}, max rel error {:.3e} at {}",
            abs.0, abs.1, rel.0, rel.1
        );
        // An ulp of 1 is 6e-8 (for outputs near 1 that is the best f32 can do); relative 3e-7 is a few ulp anywhere.
        assert!(abs.0 < 1.2e-7, "max abs error {:.3e} at x = {}", abs.0, abs.1);
        assert!(rel.0 < 3e-7, "max relative error {:.3e} at x = {}", rel.0, rel.1);
        assert_eq!(accurate_sigmoid(0.0), 0.5);
        assert_eq!(accurate_sigmoid(f32::INFINITY), 1.0);
        assert!(accurate_sigmoid(f32::NEG_INFINITY) < 1e-38);
    }

    #[test]
    fn tanh_switches_with_the_mode_but_sigmoid_does_not() {
        assert_eq!(Activation::new(&ActivationConfig::Tanh, TanhMode::Fast), Activation::FastTanh);
        assert_eq!(Activation::new(&ActivationConfig::Tanh, TanhMode::Accurate), Activation::Tanh);
        assert_eq!(Activation::new(&ActivationConfig::Sigmoid, TanhMode::Fast), Activation::Sigmoid);
        assert_eq!(Activation::new(&ActivationConfig::Silu, TanhMode::Fast), Activation::Silu);
    }

    #[test]
    fn activations_match_their_formulas() {
        let lht = Activation::LeakyHardtanh { min_val: 0.0, max_val: 0.9, min_slope: 0.0, max_slope: 0.02 };
        assert_eq!(lht.eval(-2.0), 0.0);
        assert!((lht.eval(1.9) - (0.9 + 0.02)).abs() < 1e-7);
        assert_eq!(lht.eval(0.5), 0.5);
        assert_eq!(Activation::Hardswish.eval(1.0), 1.0 * 4.0 / 6.0);
        assert_eq!(Activation::Hardswish.eval(-4.0), 0.0);
        assert_eq!(Activation::Softsign.eval(3.0), 0.75);
        assert_eq!(Activation::LeakyRelu(0.1).eval(-2.0), -0.2);
        assert_eq!(Activation::Hardtanh.eval(-3.0), -1.0);
        assert!((Activation::Silu.eval(1.0) - 1.0 / (1.0 + (-1.0f32).exp())).abs() < 1e-7);
    }

    #[test]
    fn prelu_slope_follows_the_column_major_flat_index() {
        // 2 rows × 3 frames, 3 slopes: flat index t*2 + r → slopes 0,1 | 2,0 | 1,2 (frame by frame).
        let p = Activation::Prelu(vec![1.0, 2.0, 3.0]);
        let mut d = [-1.0; 6]; // planar: row 0 = d[0..3], row 1 = d[3..6]
        p.apply(&mut d, 2, 3, 6);
        assert_eq!(d, [-1.0, -3.0, -2.0, -2.0, -1.0, -3.0]);
        // Per-column application restarts the index at each frame: row r always gets slope r.
        let mut d = [-1.0; 6];
        p.apply(&mut d, 2, 3, 2);
        assert_eq!(d, [-1.0, -1.0, -1.0, -2.0, -2.0, -2.0]);
    }
}
