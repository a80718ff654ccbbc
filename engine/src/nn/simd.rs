//! Runtime CPU-feature dispatch for the hot kernels, in one place.
//!
//! The crate is built for baseline x86-64 (SSE2), where the frame loops vectorise four lanes wide. On a CPU with
//! AVX2 and FMA the same loops are compiled a second time, eight lanes wide, inside a `#[target_feature]` function;
//! [`Isa::detect`] picks one when a layer is built. Only the multiply-adds of the convolutions are fused (one rounding
//! instead of two, far below the accuracy the reference renders demand); the activations compute exactly the same
//! operations either way, so they give bit-identical results on both paths.

/// Which compiled variant of the hot kernels runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Isa {
    /// Portable code: whatever the build target allows (SSE2 on x86-64).
    Baseline,
    /// AVX2 + FMA: eight-lane vectors and fused multiply-adds.
    #[cfg(target_arch = "x86_64")]
    Avx2Fma,
}

impl Isa {
    /// The best variant this CPU runs (the standard library caches the detection: cheap enough to call per block).
    #[inline]
    pub fn detect() -> Self {
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
            return Isa::Avx2Fma;
        }
        Isa::Baseline
    }
}

/// How a term is added to an accumulator: `acc + w·x` rounded twice, or fused.
pub(crate) trait MulAdd {
    fn mul_add(acc: f32, w: f32, x: f32) -> f32;
}

pub(crate) struct Separate;
impl MulAdd for Separate {
    #[inline(always)]
    fn mul_add(acc: f32, w: f32, x: f32) -> f32 {
        acc + w * x
    }
}

#[cfg(target_arch = "x86_64")]
pub(crate) struct Fused;
#[cfg(target_arch = "x86_64")]
impl MulAdd for Fused {
    #[inline(always)]
    fn mul_add(acc: f32, w: f32, x: f32) -> f32 {
        w.mul_add(x, acc)
    }
}

/// Runs `f` over `data`, compiled for the best available ISA. `f` must be `#[inline(always)]`-friendly (a closure or a
/// small `#[inline]` function) so that its body is compiled inside the feature-enabled function.
#[inline(always)]
pub(crate) fn map_in_place(data: &mut [f32], f: impl Fn(f32) -> f32) {
    #[cfg(target_arch = "x86_64")]
    if Isa::detect() == Isa::Avx2Fma {
        // SAFETY: the CPU supports AVX2 and FMA (just detected).
        unsafe { map_in_place_avx2(data, f) };
        return;
    }
    data.iter_mut().for_each(|x| *x = f(*x));
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn map_in_place_avx2(data: &mut [f32], f: impl Fn(f32) -> f32) {
    data.iter_mut().for_each(|x| *x = f(*x));
}
