//! Runtime CPU-feature dispatch for the hot kernels, in one place.
//!
//! The crate is built for baseline x86-64 (SSE2), where the frame loops vectorise four lanes wide. On a CPU with
//! AVX2 and FMA the same loops are compiled a second time, eight lanes wide, inside a `#[target_feature]` function,
//! and on a CPU with AVX-512 a third time, sixteen lanes wide with thirty-two registers; [`Isa::detect`] picks one
//! when a layer is built. Only the multiply-adds of the convolutions are fused (one rounding instead of two, far
//! below the accuracy the reference renders demand), and the AVX2 and AVX-512 kernels add the same terms in the same
//! order, so those two give bit-identical results; the activations compute exactly the same operations on every
//! path. The kernels written with AVX2 intrinsics (LSTM, S4D) run their AVX2 code on an AVX-512 CPU.

use std::sync::atomic::{AtomicU8, Ordering};

/// Which compiled variant of the hot kernels runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Isa {
    /// Portable code: whatever the build target allows (SSE2 on x86-64).
    Baseline,
    /// AVX2 + FMA: eight-lane vectors and fused multiply-adds.
    #[cfg(target_arch = "x86_64")]
    Avx2Fma,
    /// AVX-512F (with AVX2 and FMA): sixteen-lane vectors, thirty-two of them.
    #[cfg(target_arch = "x86_64")]
    Avx512,
}

/// The best [`Isa`] [`Isa::detect`] may return, as its rank (`u8::MAX`: no limit). See [`Isa::limit`].
static CEILING: AtomicU8 = AtomicU8::new(u8::MAX);

impl Isa {
    /// Every variant, worst first.
    const ALL: &[Isa] = &[
        Isa::Baseline,
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2Fma,
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512,
    ];

    /// The best variant this CPU runs, within the [`Isa::limit`] (the standard library caches the detection, and the
    /// limit is one atomic load: cheap enough to call per block).
    #[inline]
    pub fn detect() -> Self {
        let ceiling = CEILING.load(Ordering::Relaxed);
        Self::ALL.iter().rev().copied().find(|isa| isa.rank() <= ceiling && isa.supported()).unwrap_or(Isa::Baseline)
    }

    /// Whether this CPU runs the variant.
    pub fn supported(self) -> bool {
        match self {
            Isa::Baseline => true,
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2Fma => std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma"),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => Isa::Avx2Fma.supported() && std::arch::is_x86_feature_detected!("avx512f"),
        }
    }

    /// Every variant this CPU runs, worst first: for tests that compare them.
    pub fn available() -> Vec<Isa> {
        Self::ALL.iter().copied().filter(|isa| isa.supported()).collect()
    }

    /// From now on [`Isa::detect`] returns at most `isa` (`None`: the best the CPU runs again). Models built before
    /// keep the kernels they chose. For comparing one kernel with another on the same CPU (`neuralboard render
    /// --isa`, `bench --isa`); the engine never calls it.
    pub fn limit(isa: Option<Isa>) {
        CEILING.store(isa.map_or(u8::MAX, Isa::rank), Ordering::Relaxed);
    }

    /// The name `neuralboard render --isa` and `bench --isa` take.
    pub fn name(self) -> &'static str {
        match self {
            Isa::Baseline => "baseline",
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2Fma => "avx2",
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => "avx512",
        }
    }

    /// The variant of that [`Isa::name`], if this build has it.
    pub fn from_name(name: &str) -> Option<Isa> {
        Self::ALL.iter().copied().find(|isa| isa.name() == name)
    }

    /// Whether the kernels written for AVX2 and FMA run (on AVX2 and on AVX-512 CPUs).
    #[inline]
    pub fn has_avx2_fma(self) -> bool {
        self != Isa::Baseline
    }

    fn rank(self) -> u8 {
        self as u8
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
    match Isa::detect() {
        Isa::Baseline => data.iter_mut().for_each(|x| *x = f(*x)),
        // SAFETY: the CPU supports AVX2 and FMA (just detected).
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2Fma => unsafe { map_in_place_avx2(data, f) },
        // SAFETY: the CPU supports AVX-512F, AVX2 and FMA (just detected).
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => unsafe { map_in_place_avx512(data, f) },
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn map_in_place_avx2(data: &mut [f32], f: impl Fn(f32) -> f32) {
    data.iter_mut().for_each(|x| *x = f(*x));
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
fn map_in_place_avx512(data: &mut [f32], f: impl Fn(f32) -> f32) {
    data.iter_mut().for_each(|x| *x = f(*x));
}

#[cfg(test)]
mod tests {
    use super::*;

    // `Isa::limit` is global: it is tested through `neuralboard bench --isa` in its own process, so that no other
    // test's models change kernels under it.
    #[test]
    fn detection_picks_the_best_available_and_names_round_trip() {
        assert_eq!(Isa::available().first(), Some(&Isa::Baseline));
        assert_eq!(Isa::available().last(), Some(&Isa::detect()));
        for &isa in Isa::ALL {
            assert_eq!(Isa::from_name(isa.name()), Some(isa));
        }
    }
}
