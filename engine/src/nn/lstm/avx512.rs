//! The LSTM kernel on AVX-512: sixteen hidden units per register, every lane's gate sums in one pass.
//!
//! The AVX2 kernel ([`super::avx2`]) holds eight units a register and, with sixteen registers, sums two lanes at a
//! time, reading the columns once per pair. Here a *wide lane* of sixteen units takes four registers (its gates),
//! and thirty-two registers hold the sums of up to four wide lanes (64 units: every amp and pedal model we know of)
//! at once, so each column is read once a frame and each broadcast of `[x; h][j]` serves all of them. The
//! activations, cell and hidden state run sixteen units an instruction.
//!
//! The weights are stored a second time for it, sixteen units wide ([`Wide`], built by [`Layer::new`] on CPUs with
//! AVX-512). Each unit's arithmetic is the AVX2 kernel's, operation for operation — the gate sums in the same order
//! (bias, then the columns in file order, fused multiply-adds; where the AVX2 kernel has a lone lane of eight it
//! sums that lane's hidden columns in two halves, and so does the wide lane holding it), the same activations, the
//! same head — so the two render byte-identical output (see the tests).

use std::arch::x86_64::*;

use super::{Lane, Layer, Lstm, Wide, avx2, floats, floats_mut};
use crate::nn::activations::{
    EXPM1_MINIMAX, FAST_TANH_A, FAST_TANH_B, FAST_TANH_C, FAST_TANH_D, FAST_TANH_E, LN2_HI, LN2_LO, ROUND_MAGIC,
    SIGMOID_EXP_MAX, SIGMOID_EXP_MIN,
};

/// Processes a block (see [`Dsp::process`](crate::nn::Dsp::process)). Callers must make sure the CPU supports
/// AVX-512F, AVX2 and FMA.
#[target_feature(enable = "avx512f,avx2,fma")]
pub(super) fn run<const FAST: bool>(lstm: &mut Lstm, input: &[f32], output: &mut [f32], n: usize) {
    if let [layer] = &mut lstm.layers[..] {
        let head = (&lstm.head_weight[..], &lstm.head_bias[..]);
        // A wide lane that holds a single lane of eight (`hidden` rounded up to eights is an odd number of them).
        let odd = layer.cell.len() % 2 == 1;
        match (layer.wide_bias.len(), odd) {
            (1, false) => return single_layer::<1, false, FAST>(layer, head, input, output, n),
            (2, false) => return single_layer::<2, false, FAST>(layer, head, input, output, n),
            (2, true) => return single_layer::<2, true, FAST>(layer, head, input, output, n),
            (3, false) => return single_layer::<3, false, FAST>(layer, head, input, output, n),
            (3, true) => return single_layer::<3, true, FAST>(layer, head, input, output, n),
            (4, false) => return single_layer::<4, false, FAST>(layer, head, input, output, n),
            (4, true) => return single_layer::<4, true, FAST>(layer, head, input, output, n),
            _ => {}
        }
    }
    // Stacked layers, up to 8 or over 64 units (no wide weights): the AVX2 kernel.
    avx2::run::<FAST>(lstm, input, output, n);
}

/// A block through a one-layer LSTM of `L` wide lanes (the last one half empty if `ODD`) and its head. The cell
/// state stays in registers for the whole block; the hidden state goes through memory (the AVX2 kernel's lanes), where
/// the next frame's broadcasts read it.
#[target_feature(enable = "avx512f,avx2,fma")]
fn single_layer<const L: usize, const ODD: bool, const FAST: bool>(
    layer: &mut Layer,
    (head_weight, head_bias): (&[Lane], &[f32]),
    input: &[f32],
    output: &mut [f32],
    n: usize,
) {
    let hidden = layer.hidden;
    let lanes = layer.cell.len();
    let inputs = layer.x.len();
    let columns = &layer.wide[..(inputs + hidden) * L];
    let bias = &layer.wide_bias[..L];
    // The AVX2 kernel's lone lane sums the first half of the hidden columns, then the second half apart.
    let split = if ODD { hidden / 2 } else { hidden };
    let (columns_x, columns_h) = columns.split_at(inputs * L);
    let (columns_first, columns_second) = columns_h.split_at(split * L);
    let mut cell: [__m512; L] = std::array::from_fn(|l| load_units::<ODD>(floats(&layer.cell), l, L));
    let mut current = layer.current;
    for t in 0..n {
        for (c, x) in layer.x.iter_mut().enumerate() {
            *x = input[c * n + t];
        }
        let [a, b] = &mut layer.h;
        let (h, h_out) = if current == 0 { (&*a, b) } else { (&*b, a) };
        let h = &floats(h)[..hidden];
        let mut v: [[__m512; 4]; L] = std::array::from_fn(|l| bias[l].map(|b| load(&b)));
        let mut rest = [_mm512_setzero_ps(); 4];
        for (&x, column) in
            layer.x.iter().chain(&h[..split]).zip(columns_x.chunks_exact(L).chain(columns_first.chunks_exact(L)))
        {
            let x = _mm512_set1_ps(x);
            for (v, w) in v.iter_mut().zip(column) {
                for (v, w) in v.iter_mut().zip(w) {
                    *v = _mm512_fmadd_ps(x, load(w), *v);
                }
            }
        }
        if ODD {
            for (&x, column) in h[split..].iter().zip(columns_second.chunks_exact(L)) {
                let x = _mm512_set1_ps(x);
                for (v, w) in v[..L - 1].iter_mut().zip(column) {
                    for (v, w) in v.iter_mut().zip(w) {
                        *v = _mm512_fmadd_ps(x, load(w), *v);
                    }
                }
                for (r, w) in rest.iter_mut().zip(&column[L - 1]) {
                    *r = _mm512_fmadd_ps(x, load(w), *r);
                }
            }
            v[L - 1] = std::array::from_fn(|q| _mm512_add_ps(v[L - 1][q], rest[q]));
        }
        let gate = |q: usize| std::array::from_fn(|l| v[l][q]);
        let (i, f, o) = (sig::<FAST, L>(gate(0)), sig::<FAST, L>(gate(1)), sig::<FAST, L>(gate(2)));
        let g = th::<FAST, L>(gate(3));
        // `f·c + i·g` rounded as the reference rounds it (no fusing).
        cell = std::array::from_fn(|l| _mm512_add_ps(_mm512_mul_ps(f[l], cell[l]), _mm512_mul_ps(i[l], g[l])));
        let tanh_cell = th::<FAST, L>(cell);
        let h_out = &mut h_out[..lanes];
        for l in 0..L {
            store_units::<ODD>(floats_mut(h_out), l, L, _mm512_mul_ps(o[l], tanh_cell[l]));
        }
        for (o, bias) in head_bias.iter().enumerate() {
            output[o * n + t] = avx2::head(&head_weight[o * lanes..][..lanes], h_out) + bias;
        }
        current ^= 1;
    }
    for (l, c) in cell.into_iter().enumerate() {
        store_units::<ODD>(floats_mut(&mut layer.cell), l, L, c);
    }
    layer.current = current;
}

/// Wide lane `l` (of `count`) of a state vector stored in lanes of eight: sixteen units, or eight and zeros for the
/// last one if `ODD`.
#[target_feature(enable = "avx512f,avx2,fma")]
#[inline]
fn load_units<const ODD: bool>(units: &[f32], l: usize, count: usize) -> __m512 {
    let (units, mask) =
        if ODD && l == count - 1 { (&units[16 * l..][..8], 0x00ff) } else { (&units[16 * l..][..16], 0xffff) };
    // SAFETY: the mask reads only the lanes `units` holds.
    unsafe { _mm512_maskz_loadu_ps(mask, units.as_ptr()) }
}

/// Stores wide lane `l` (of `count`) into a state vector stored in lanes of eight, as [`load_units`] reads it.
#[target_feature(enable = "avx512f,avx2,fma")]
#[inline]
fn store_units<const ODD: bool>(units: &mut [f32], l: usize, count: usize, v: __m512) {
    let (units, mask) =
        if ODD && l == count - 1 { (&mut units[16 * l..][..8], 0x00ff) } else { (&mut units[16 * l..][..16], 0xffff) };
    // SAFETY: the mask writes only the lanes `units` holds.
    unsafe { _mm512_mask_storeu_ps(units.as_mut_ptr(), mask, v) }
}

#[target_feature(enable = "avx512f,avx2,fma")]
#[inline]
fn load(wide: &Wide) -> __m512 {
    // SAFETY: a `Wide` is sixteen `f32`s aligned to 64 bytes.
    unsafe { _mm512_load_ps(wide.0.as_ptr()) }
}

// The activations, as the AVX2 kernel computes them (see there), sixteen units a register. AVX-512F has no
// floating-point logic operations (those are AVX-512DQ's), so the sign masks go through the integer ones.

#[target_feature(enable = "avx512f,avx2,fma")]
#[inline]
fn splat(x: f32) -> __m512 {
    _mm512_set1_ps(x)
}

#[target_feature(enable = "avx512f,avx2,fma")]
#[inline]
fn sign_bits(x: __m512) -> __m512i {
    _mm512_and_si512(_mm512_castps_si512(x), _mm512_set1_epi32(i32::MIN))
}

/// `(2ⁿ, expm1(r))` with `y = n·ln2 + r`, as the AVX2 kernel's `exp_reduced`.
#[target_feature(enable = "avx512f,avx2,fma")]
#[inline]
fn exp_reduced<const N: usize>(y: [__m512; N]) -> ([__m512; N], [__m512; N]) {
    let magic = splat(ROUND_MAGIC);
    let rounded = y.map(|y| _mm512_fmadd_ps(y, splat(std::f32::consts::LOG2_E), magic));
    let n = rounded.map(|rounded| _mm512_sub_ps(rounded, magic));
    let r: [__m512; N] =
        std::array::from_fn(|j| _mm512_fnmadd_ps(n[j], splat(LN2_LO), _mm512_fnmadd_ps(n[j], splat(LN2_HI), y[j])));
    let [c0, c @ ..] = EXPM1_MINIMAX;
    let poly =
        c.iter().fold([splat(c0); N], |acc, &c| std::array::from_fn(|j| _mm512_fmadd_ps(acc[j], r[j], splat(c))));
    let p = std::array::from_fn(|j| _mm512_fmadd_ps(_mm512_mul_ps(r[j], r[j]), poly[j], r[j]));
    let bias = _mm512_set1_epi32(127 - ROUND_MAGIC.to_bits() as i32);
    let scale = rounded.map(|rounded| {
        _mm512_castsi512_ps(_mm512_slli_epi32::<23>(_mm512_add_epi32(_mm512_castps_si512(rounded), bias)))
    });
    (scale, p)
}

/// [`accurate_sigmoid`](crate::nn::activations::accurate_sigmoid), sixteen at a time.
#[target_feature(enable = "avx512f,avx2,fma")]
#[inline]
fn sigmoid<const N: usize>(x: [__m512; N]) -> [__m512; N] {
    let y = x.map(|x| {
        let minus_x = _mm512_castsi512_ps(_mm512_xor_si512(_mm512_castps_si512(x), _mm512_set1_epi32(i32::MIN)));
        _mm512_min_ps(_mm512_max_ps(minus_x, splat(SIGMOID_EXP_MIN)), splat(SIGMOID_EXP_MAX))
    });
    let (scale, p) = exp_reduced(y);
    let one = splat(1.0);
    std::array::from_fn(|j| _mm512_div_ps(one, _mm512_add_ps(one, _mm512_fmadd_ps(scale[j], p[j], scale[j]))))
}

/// [`accurate_tanh`](crate::nn::activations::accurate_tanh), sixteen at a time.
#[target_feature(enable = "avx512f,avx2,fma")]
#[inline]
fn tanh<const N: usize>(x: [__m512; N]) -> [__m512; N] {
    let y = x.map(|x| {
        let y = _mm512_min_ps(_mm512_abs_ps(x), splat(9.0));
        _mm512_add_ps(y, y)
    });
    let (scale, p) = exp_reduced(y);
    let e: [__m512; N] = std::array::from_fn(|j| _mm512_fmadd_ps(scale[j], p[j], _mm512_sub_ps(scale[j], splat(1.0))));
    std::array::from_fn(|j| {
        let magnitude = _mm512_div_ps(e[j], _mm512_add_ps(e[j], splat(2.0)));
        _mm512_castsi512_ps(_mm512_or_si512(_mm512_castps_si512(magnitude), sign_bits(x[j])))
    })
}

/// [`fast_tanh`](crate::nn::activations::fast_tanh), sixteen at a time, bit for bit.
#[target_feature(enable = "avx512f,avx2,fma")]
#[inline]
fn fast_tanh<const N: usize>(x: [__m512; N]) -> [__m512; N] {
    x.map(|x| {
        let ax = _mm512_abs_ps(x);
        let x2 = _mm512_mul_ps(x, x);
        let a = splat(FAST_TANH_A);
        let low = _mm512_add_ps(a, _mm512_mul_ps(a, ax));
        let high = _mm512_mul_ps(_mm512_add_ps(splat(FAST_TANH_B), _mm512_mul_ps(splat(FAST_TANH_C), ax)), x2);
        let numerator = _mm512_mul_ps(x, _mm512_add_ps(low, high));
        let inner = _mm512_abs_ps(_mm512_add_ps(x, _mm512_mul_ps(_mm512_mul_ps(splat(FAST_TANH_E), x), ax)));
        let d = splat(FAST_TANH_D);
        _mm512_div_ps(numerator, _mm512_add_ps(d, _mm512_mul_ps(_mm512_add_ps(d, x2), inner)))
    })
}

/// [`fast_sigmoid`](crate::nn::activations::fast_sigmoid), sixteen at a time, bit for bit (see the AVX2 kernel's).
#[target_feature(enable = "avx512f,avx2,fma")]
#[inline]
fn fast_sigmoid<const N: usize>(x: [__m512; N]) -> [__m512; N] {
    let half = splat(0.5);
    fast_tanh(x.map(|x| _mm512_mul_ps(x, half))).map(|t| _mm512_fmadd_ps(t, half, half))
}

/// The cell's sigmoid and tanh in the chosen mode.
#[target_feature(enable = "avx512f,avx2,fma")]
#[inline]
fn sig<const FAST: bool, const N: usize>(x: [__m512; N]) -> [__m512; N] {
    if FAST { fast_sigmoid(x) } else { sigmoid(x) }
}

#[target_feature(enable = "avx512f,avx2,fma")]
#[inline]
fn th<const FAST: bool, const N: usize>(x: [__m512; N]) -> [__m512; N] {
    if FAST { fast_tanh(x) } else { tanh(x) }
}
