//! The LSTM kernel on AVX2 + FMA: eight hidden units per register, the activations vectorised.
//!
//! A frame costs the gate sums (one fused multiply-add per weight, a load each: the FMA units and the loads are
//! both nearly saturated) and then a chain of dependent activations, which the next frame has to wait for. So the
//! kernel keeps the instruction count down (constants as memory operands, the lanes' activations interleaved, the
//! cell state in registers) and the chain short (a lone lane sums its columns in two halves).
//!
//! The gate sums are the reference's, in its order, each term a fused multiply-add (one rounding instead of two),
//! except that a lone lane adds its two halves at the end. The exp-based activations use Cephes' polynomial with
//! fused multiply-adds (a few ulp, see the tests); the fast tanh is the reference's formula operation for operation,
//! and so bit for bit; the head is summed in eight partial sums.

use std::arch::x86_64::*;

use super::{GateLanes, Lane, Layer, Lstm, Step, floats};
use crate::nn::activations::{
    EXPM1_MINIMAX, FAST_TANH_A, FAST_TANH_B, FAST_TANH_C, FAST_TANH_D, FAST_TANH_E, LN2_HI, LN2_LO, ROUND_MAGIC,
    SIGMOID_EXP_MAX, SIGMOID_EXP_MIN,
};

/// Processes a block (see [`Dsp::process`](crate::nn::Dsp::process)). Callers must make sure the CPU supports
/// AVX2 and FMA.
#[target_feature(enable = "avx2,fma")]
pub(super) fn run<const FAST: bool>(lstm: &mut Lstm, input: &[f32], output: &mut [f32], n: usize) {
    // One layer of up to 64 units (every amp and pedal model we know of: amps up to 32, the flanger 48) runs on a
    // kernel compiled for its number of lanes; the rest frame by frame and layer by layer, on one compiled for any
    // size.
    let consts = Consts::new();
    let k = consts.opaque();
    if let [layer] = &mut lstm.layers[..] {
        let head = (&lstm.head_weight[..], &lstm.head_bias[..]);
        match layer.cell.len() {
            1 => return single_layer::<1, FAST>(layer, head, input, output, n, k),
            2 => return single_layer::<2, FAST>(layer, head, input, output, n, k),
            3 => return single_layer::<3, FAST>(layer, head, input, output, n, k),
            4 => return single_layer::<4, FAST>(layer, head, input, output, n, k),
            5 => return single_layer::<5, FAST>(layer, head, input, output, n, k),
            6 => return single_layer::<6, FAST>(layer, head, input, output, n, k),
            7 => return single_layer::<7, FAST>(layer, head, input, output, n, k),
            8 => return single_layer::<8, FAST>(layer, head, input, output, n, k),
            _ => {}
        }
    }
    lstm.run_frames(input, output, n, |s| step::<FAST>(s, k), |w, h| head(w, h));
}

/// A block through a one-layer LSTM of `LANES` lanes and its head, the lanes in lockstep: one broadcast of each
/// element of `[x; h]` serves every lane, and the cell state stays in registers for the whole block. The hidden state
/// goes through memory, where the next frame's broadcasts read it.
#[target_feature(enable = "avx2,fma")]
fn single_layer<const LANES: usize, const FAST: bool>(
    layer: &mut Layer,
    (head_weight, head_bias): (&[Lane], &[f32]),
    input: &[f32],
    output: &mut [f32],
    n: usize,
    k: &Consts,
) {
    let hidden = layer.hidden;
    let columns = &layer.weights[..(layer.x.len() + hidden) * LANES];
    let bias = &layer.bias[..LANES];
    let mut cell: [__m256; LANES] = std::array::from_fn(|l| load(&layer.cell[l]));
    let mut current = layer.current;
    for t in 0..n {
        for (c, x) in layer.x.iter_mut().enumerate() {
            *x = input[c * n + t];
        }
        let [a, b] = &mut layer.h;
        let (h, h_out) = if current == 0 { (&*a, b) } else { (&*b, a) };
        let xh = (&layer.x[..], &floats(h)[..hidden]);
        // Two lanes at a time: their eight sums, the broadcast and a load fill the sixteen registers. Every other
        // frame (the hidden state's buffer tells which, across blocks too) takes the pairs in reverse order: where the weights outgrow the L1 cache (48 units and more), a
        // frame then starts on the weights the last one read most recently, still cached, instead of the ones
        // evicted longest ago. Each lane's sums are the same whichever order the lanes come in.
        let mut v = [[_mm256_setzero_ps(); 4]; LANES];
        let pairs = LANES / 2;
        for p in 0..pairs {
            let l = 2 * if current == 0 { p } else { pairs - 1 - p };
            [v[l], v[l + 1]] = gate_sums::<2>(l, LANES, bias, columns, xh);
        }
        if LANES % 2 == 1 {
            let l = LANES - 1;
            [v[l]] = gate_sums::<1>(l, LANES, bias, columns, xh);
        }
        let gate = |q: usize| std::array::from_fn(|l| v[l][q]);
        let (i, f, o) =
            (sig::<FAST, LANES>(gate(0), k), sig::<FAST, LANES>(gate(1), k), sig::<FAST, LANES>(gate(2), k));
        let g = th::<FAST, LANES>(gate(3), k);
        // `f·c + i·g` rounded as the reference rounds it (no fusing).
        cell = std::array::from_fn(|l| _mm256_add_ps(_mm256_mul_ps(f[l], cell[l]), _mm256_mul_ps(i[l], g[l])));
        let h_new = each2(o, th::<FAST, LANES>(cell, k), |o, t| _mm256_mul_ps(o, t));
        let h_out = &mut h_out[..LANES];
        for (h_out, h) in h_out.iter_mut().zip(h_new) {
            store(h_out, h);
        }
        for (o, bias) in head_bias.iter().enumerate() {
            output[o * n + t] = head(&head_weight[o * LANES..][..LANES], h_out) + bias;
        }
        current ^= 1;
    }
    for (lane, c) in layer.cell.iter_mut().zip(cell) {
        store(lane, c);
    }
    layer.current = current;
}

/// The gate sums `b + W·[x; h]` of lanes `first..first + G` of a layer of `lanes` lanes: bias first, then the
/// columns in order (the reference's order). A single lane splits its columns in two halves, summed apart and added
/// at the end: half as long a chain of dependent multiply-adds for a frame to wait for.
#[target_feature(enable = "avx2,fma")]
#[inline]
fn gate_sums<const G: usize>(
    first: usize,
    lanes: usize,
    bias: &[GateLanes],
    columns: &[GateLanes],
    (x, h): (&[f32], &[f32]),
) -> [[__m256; 4]; G] {
    let mut v: [[__m256; 4]; G] = std::array::from_fn(|g| bias[first + g].map(|b| load(&b)));
    let (columns_x, columns_h) = columns.split_at(x.len() * lanes);
    let split = if G == 1 { h.len() / 2 } else { h.len() };
    let ((h_first, h_second), (columns_first, columns_second)) = (h.split_at(split), columns_h.split_at(split * lanes));
    add_columns(&mut v, first, lanes, x, columns_x);
    add_columns(&mut v, first, lanes, h_first, columns_first);
    if G == 1 {
        let mut rest = [[_mm256_setzero_ps(); 4]; G];
        add_columns(&mut rest, first, lanes, h_second, columns_second);
        v = std::array::from_fn(|g| std::array::from_fn(|q| _mm256_add_ps(v[g][q], rest[g][q])));
    }
    v
}

/// `v += Σ values[j] · column j`, for lanes `first..first + G`.
#[target_feature(enable = "avx2,fma")]
#[inline]
fn add_columns<const G: usize>(
    v: &mut [[__m256; 4]; G],
    first: usize,
    lanes: usize,
    values: &[f32],
    columns: &[GateLanes],
) {
    let add = |v: &mut [[__m256; 4]; G], x: f32, column: &[GateLanes]| {
        let x = _mm256_set1_ps(x);
        for (v, w) in v.iter_mut().zip(&column[first..first + G]) {
            for (v, w) in v.iter_mut().zip(w) {
                *v = _mm256_fmadd_ps(x, load(w), *v);
            }
        }
    };
    // Two columns per iteration: less loop overhead per multiply-add.
    let pairs = values.len() / 2;
    let (pair_columns, last_column) = columns[..values.len() * lanes].split_at(pairs * 2 * lanes);
    for (x, columns) in values.chunks_exact(2).zip(pair_columns.chunks_exact(2 * lanes)) {
        let (a, b) = columns.split_at(lanes);
        add(v, x[0], a);
        add(v, x[1], b);
    }
    if let Some(&x) = values.get(2 * pairs) {
        add(v, x, last_column);
    }
}

/// One frame of one layer, in passes over the lanes: the gate sums, then each activation in a loop of its own, then
/// the cells and hidden states. The out-of-order core overlaps the passes lane by lane.
#[target_feature(enable = "avx2,fma")]
#[inline]
fn step<const FAST: bool>(s: Step<'_>, k: &Consts) {
    let lanes = s.cell.len();
    let (cell, h_out, gates) = (&mut s.cell[..lanes], &mut s.h_out[..lanes], &mut s.gates[..4 * lanes]);
    for l in 0..lanes {
        let [v] = gate_sums::<1>(l, lanes, s.bias, s.weights, (s.x, s.h));
        for (q, v) in v.into_iter().enumerate() {
            store(&mut gates[q * lanes + l], v);
        }
    }
    // Gate-major now: i, f, o of every lane, then g.
    let (sigmoids, g) = gates.split_at_mut(3 * lanes);
    for v in sigmoids.iter_mut() {
        store(v, sig::<FAST, 1>([load(v)], k)[0]);
    }
    for v in g.iter_mut() {
        store(v, th::<FAST, 1>([load(v)], k)[0]);
    }
    let (i, rest) = sigmoids.split_at(lanes);
    let (f, o) = rest.split_at(lanes);
    for ((((cell, h_out), i), f), (o, g)) in cell.iter_mut().zip(h_out).zip(i).zip(f).zip(o.iter().zip(&*g)) {
        // `f·c + i·g` rounded as the reference rounds it (no fusing).
        let c = _mm256_add_ps(_mm256_mul_ps(load(f), load(cell)), _mm256_mul_ps(load(i), load(g)));
        store(cell, c);
        store(h_out, _mm256_mul_ps(load(o), th::<FAST, 1>([c], k)[0]));
    }
}

/// `w · h` over whole lanes (the padding of both is zero).
#[target_feature(enable = "avx2,fma")]
#[inline]
pub(super) fn head(w: &[Lane], h: &[Lane]) -> f32 {
    let mut sum = _mm256_setzero_ps();
    for (w, h) in w.iter().zip(h) {
        sum = _mm256_fmadd_ps(load(w), load(h), sum);
    }
    let quad = _mm_add_ps(_mm256_castps256_ps128(sum), _mm256_extractf128_ps::<1>(sum));
    let pair = _mm_add_ps(quad, _mm_movehl_ps(quad, quad));
    _mm_cvtss_f32(_mm_add_ss(pair, _mm_movehdup_ps(pair)))
}

#[target_feature(enable = "avx2,fma")]
#[inline]
fn load(lane: &Lane) -> __m256 {
    // SAFETY: a `Lane` is eight `f32`s aligned to 32 bytes.
    unsafe { _mm256_load_ps(lane.0.as_ptr()) }
}

#[target_feature(enable = "avx2,fma")]
#[inline]
fn store(lane: &mut Lane, v: __m256) {
    // SAFETY: a `Lane` is eight `f32`s aligned to 32 bytes.
    unsafe { _mm256_store_ps(lane.0.as_mut_ptr(), v) }
}

/// The activations' constants, a register's worth each.
///
/// AVX2 has no broadcast operand, and with sixteen registers the compiler re-broadcasts a constant before nearly
/// every use: a third of this kernel's instructions did nothing else. Read from memory whose contents the compiler
/// cannot see ([`Consts::opaque`]), a constant becomes an operand of the instruction that uses it instead.
#[repr(C)]
struct Consts {
    sign: __m256,
    one: __m256,
    two: __m256,
    half: __m256,
    tanh_limit: __m256,
    exp_min: __m256,
    exp_max: __m256,
    log2_e: __m256,
    round_magic: __m256,
    ln2_hi: __m256,
    ln2_lo: __m256,
    poly: [__m256; 6],
    /// `127 − ROUND_MAGIC`'s bits: turns a rounded `k` into the exponent field of `2ⁿ`.
    exponent_bias: __m256i,
    fast_a: __m256,
    fast_b: __m256,
    fast_c: __m256,
    fast_d: __m256,
    fast_e: __m256,
}

impl Consts {
    #[target_feature(enable = "avx2,fma")]
    fn new() -> Self {
        let splat = |x| _mm256_set1_ps(x);
        Self {
            sign: splat(-0.0),
            one: splat(1.0),
            two: splat(2.0),
            half: splat(0.5),
            tanh_limit: splat(9.0),
            exp_min: splat(SIGMOID_EXP_MIN),
            exp_max: splat(SIGMOID_EXP_MAX),
            log2_e: splat(std::f32::consts::LOG2_E),
            round_magic: splat(ROUND_MAGIC),
            ln2_hi: splat(LN2_HI),
            ln2_lo: splat(LN2_LO),
            poly: EXPM1_MINIMAX.map(splat),
            exponent_bias: _mm256_set1_epi32(127 - ROUND_MAGIC.to_bits() as i32),
            fast_a: splat(FAST_TANH_A),
            fast_b: splat(FAST_TANH_B),
            fast_c: splat(FAST_TANH_C),
            fast_d: splat(FAST_TANH_D),
            fast_e: splat(FAST_TANH_E),
        }
    }

    /// `self`, through a reference the optimiser cannot see through (so that it does not fold the constants back
    /// into broadcasts).
    #[inline(always)]
    fn opaque(&self) -> &Self {
        std::hint::black_box(self)
    }
}

// The activations work on arrays of registers, one per lane (`N` of them), written one operation at a time for
// all of them: every closure is tiny, so it is always inlined and its loop unrolled, and the independent dependency
// chains of the lanes sit side by side for the compiler to interleave.

/// `f` on each register.
#[inline(always)]
fn each<const N: usize>(x: [__m256; N], f: impl Fn(__m256) -> __m256) -> [__m256; N] {
    x.map(f)
}

/// `f` on each pair of registers.
#[inline(always)]
fn each2<const N: usize>(a: [__m256; N], b: [__m256; N], f: impl Fn(__m256, __m256) -> __m256) -> [__m256; N] {
    std::array::from_fn(|j| f(a[j], b[j]))
}

/// `(2ⁿ, expm1(r))` with `y = n·ln2 + r`, as `activations::exp_reduced` computes them but with Cephes' polynomial
/// ([`EXPM1_MINIMAX`]) and fused multiply-adds. `y` must lie in [−87, 88].
#[target_feature(enable = "avx2,fma")]
#[inline]
fn exp_reduced<const N: usize>(y: [__m256; N], k: &Consts) -> ([__m256; N], [__m256; N]) {
    let rounded = each(y, |y| _mm256_fmadd_ps(y, k.log2_e, k.round_magic));
    let n = each(rounded, |rounded| _mm256_sub_ps(rounded, k.round_magic));
    let r = each2(n, y, |n, y| _mm256_fnmadd_ps(n, k.ln2_lo, _mm256_fnmadd_ps(n, k.ln2_hi, y)));
    let [c0, c @ ..] = &k.poly;
    let poly = c.iter().fold([*c0; N], |acc, c| each2(acc, r, |acc, r| _mm256_fmadd_ps(acc, r, *c)));
    let p = each2(poly, r, |poly, r| _mm256_fmadd_ps(_mm256_mul_ps(r, r), poly, r));
    // 2ⁿ: the rounded value's mantissa holds n (two's complement) under the magic's bits; n + 127 shifted into the
    // exponent.
    let scale = each(rounded, |rounded| {
        let bits = _mm256_add_epi32(_mm256_castps_si256(rounded), k.exponent_bias);
        _mm256_castsi256_ps(_mm256_slli_epi32::<23>(bits))
    });
    (scale, p)
}

/// [`accurate_sigmoid`](crate::nn::activations::accurate_sigmoid), eight at a time.
#[target_feature(enable = "avx2,fma")]
#[inline]
fn sigmoid<const N: usize>(x: [__m256; N], k: &Consts) -> [__m256; N] {
    let y = each(x, |x| _mm256_min_ps(_mm256_max_ps(_mm256_xor_ps(x, k.sign), k.exp_min), k.exp_max));
    let (scale, p) = exp_reduced(y, k);
    each2(scale, p, |scale, p| _mm256_div_ps(k.one, _mm256_add_ps(k.one, _mm256_fmadd_ps(scale, p, scale))))
}

/// [`accurate_tanh`](crate::nn::activations::accurate_tanh), eight at a time.
#[target_feature(enable = "avx2,fma")]
#[inline]
fn tanh<const N: usize>(x: [__m256; N], k: &Consts) -> [__m256; N] {
    let y = each(x, |x| {
        let y = _mm256_min_ps(_mm256_andnot_ps(k.sign, x), k.tanh_limit);
        _mm256_add_ps(y, y)
    });
    let (scale, p) = exp_reduced(y, k);
    let e = each2(scale, p, |scale, p| _mm256_fmadd_ps(scale, p, _mm256_sub_ps(scale, k.one)));
    each2(e, x, |e, x| _mm256_or_ps(_mm256_div_ps(e, _mm256_add_ps(e, k.two)), _mm256_and_ps(x, k.sign)))
}

/// [`fast_tanh`](crate::nn::activations::fast_tanh), eight at a time, bit for bit.
#[target_feature(enable = "avx2,fma")]
#[inline]
fn fast_tanh<const N: usize>(x: [__m256; N], k: &Consts) -> [__m256; N] {
    each(x, |x| {
        let ax = _mm256_andnot_ps(k.sign, x);
        let x2 = _mm256_mul_ps(x, x);
        let low = _mm256_add_ps(k.fast_a, _mm256_mul_ps(k.fast_a, ax));
        let high = _mm256_mul_ps(_mm256_add_ps(k.fast_b, _mm256_mul_ps(k.fast_c, ax)), x2);
        let numerator = _mm256_mul_ps(x, _mm256_add_ps(low, high));
        let inner = _mm256_add_ps(x, _mm256_mul_ps(_mm256_mul_ps(k.fast_e, x), ax));
        let inner = _mm256_andnot_ps(k.sign, inner);
        let denominator = _mm256_add_ps(k.fast_d, _mm256_mul_ps(_mm256_add_ps(k.fast_d, x2), inner));
        _mm256_div_ps(numerator, denominator)
    })
}

/// [`fast_sigmoid`](crate::nn::activations::fast_sigmoid), eight at a time, bit for bit: `0.5·t + 0.5` in one
/// rounding is `0.5·(t + 1)` in two, because halving is exact (and `t + 1` ≥ 2⁻²⁴ stays far from the subnormals).
#[target_feature(enable = "avx2,fma")]
#[inline]
fn fast_sigmoid<const N: usize>(x: [__m256; N], k: &Consts) -> [__m256; N] {
    let t = fast_tanh(each(x, |x| _mm256_mul_ps(x, k.half)), k);
    each(t, |t| _mm256_fmadd_ps(t, k.half, k.half))
}

/// The cell's sigmoid and tanh in the chosen mode.
#[target_feature(enable = "avx2,fma")]
#[inline]
fn sig<const FAST: bool, const N: usize>(x: [__m256; N], k: &Consts) -> [__m256; N] {
    if FAST { fast_sigmoid(x, k) } else { sigmoid(x, k) }
}

#[target_feature(enable = "avx2,fma")]
#[inline]
fn th<const FAST: bool, const N: usize>(x: [__m256; N], k: &Consts) -> [__m256; N] {
    if FAST { fast_tanh(x, k) } else { tanh(x, k) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::activations::tests::{exact_sigmoid, max_errors};
    use crate::nn::activations::{self, accurate_sigmoid, accurate_tanh};
    use crate::nn::lstm::LANE;

    fn has_avx2_fma() -> bool {
        let ok = is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma");
        if !ok {
            eprintln!("skipping: this CPU has no AVX2/FMA");
        }
        ok
    }

    /// Applies a vector function to `xs` eight at a time (the tail padded with zeros).
    #[target_feature(enable = "avx2,fma")]
    fn map(f: impl Fn(__m256, &Consts) -> __m256, xs: &[f32], ys: &mut [f32]) {
        let consts = Consts::new();
        for (x, y) in xs.chunks(LANE).zip(ys.chunks_mut(LANE)) {
            let mut lane = Lane::default();
            lane.0[..x.len()].copy_from_slice(x);
            let mut out = Lane::default();
            store(&mut out, f(load(&lane), &consts));
            y.copy_from_slice(&out.0[..y.len()]);
        }
    }

    #[test]
    fn vector_activations_are_within_a_few_ulp() {
        if !has_avx2_fma() {
            return;
        }
        // SAFETY: AVX2 and FMA are present (checked above).
        let sig = |xs: &[f32], ys: &mut [f32]| unsafe { map(|x, k| sigmoid([x], k)[0], xs, ys) };
        let (abs, rel) = max_errors(sig, exact_sigmoid);
        eprintln!(
            "AVX2 sigmoid: max abs error {:.3e} at x = {}, max rel error {:.3e} at {}",
            abs.0, abs.1, rel.0, rel.1
        );
        assert!(abs.0 < 1.2e-7 && rel.0 < 3e-7, "sigmoid: abs {abs:?}, rel {rel:?}");
        // SAFETY: as above.
        let th = |xs: &[f32], ys: &mut [f32]| unsafe { map(|x, k| tanh([x], k)[0], xs, ys) };
        let (abs, rel) = max_errors(th, f64::tanh);
        eprintln!("AVX2 tanh: max abs error {:.3e} at x = {}, max rel error {:.3e} at {}", abs.0, abs.1, rel.0, rel.1);
        assert!(abs.0 < 1.2e-7 && rel.0 < 3e-7, "tanh: abs {abs:?}, rel {rel:?}");
        // And within a few ulp of the scalar versions the portable kernel uses.
        let xs: Vec<f32> = (-100_000..=100_000).map(|i| i as f32 * 3e-4).collect();
        let mut ys = vec![0.0; xs.len()];
        let mut ulps_apart = |vector: &dyn Fn(&[f32], &mut [f32]), scalar: fn(f32) -> f32| {
            vector(&xs, &mut ys);
            xs.iter().zip(&ys).map(|(x, y)| y.to_bits().abs_diff(scalar(*x).to_bits())).max()
        };
        let (sig_ulps, tanh_ulps) = (ulps_apart(&sig, accurate_sigmoid), ulps_apart(&th, accurate_tanh));
        eprintln!("AVX2 vs scalar: sigmoid at most {sig_ulps:?} ulp apart, tanh {tanh_ulps:?}");
        assert!(sig_ulps <= Some(4) && tanh_ulps <= Some(4));
    }

    #[test]
    fn vector_fast_tanh_and_sigmoid_are_the_reference_formula_bit_for_bit() {
        if !has_avx2_fma() {
            return;
        }
        let xs: Vec<f32> = (-200_000..=200_000).map(|i| i as f32 * 1.7e-4).chain([0.0, -0.0, 1e-30, 1e20]).collect();
        let mut ys = vec![0.0; xs.len()];
        // SAFETY: AVX2 and FMA are present (checked above).
        unsafe { map(|x, k| fast_tanh([x], k)[0], &xs, &mut ys) };
        for (x, y) in xs.iter().zip(&ys) {
            assert_eq!(y.to_bits(), activations::fast_tanh(*x).to_bits(), "fast_tanh({x})");
        }
        // SAFETY: as above.
        unsafe { map(|x, k| fast_sigmoid([x], k)[0], &xs, &mut ys) };
        for (x, y) in xs.iter().zip(&ys) {
            assert_eq!(y.to_bits(), activations::fast_sigmoid(*x).to_bits(), "fast_sigmoid({x})");
        }
    }
}
