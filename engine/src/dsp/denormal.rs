//! Flush-to-zero for the duration of a processing call.
//!
//! Recursive filters and decaying envelopes drift into subnormal numbers as a note dies away, and subnormal
//! arithmetic can be a hundred times slower on x86: a quiet passage would then cost more CPU than a loud one.
//! The guard sets FTZ/DAZ (x86-64) or FZ (AArch64) and restores the caller's mode when dropped, so the setting
//! never leaks into code that did not ask for it.

/// Sets flush-to-zero while alive.
pub struct DenormalGuard {
    #[allow(dead_code)] // unused on targets without a flush-to-zero control
    saved: u64,
}

impl DenormalGuard {
    #[cfg(target_arch = "x86_64")]
    pub fn new() -> Self {
        const FTZ: u32 = 1 << 15;
        const DAZ: u32 = 1 << 6;
        let mut csr: u32 = 0;
        // SAFETY: stmxcsr/ldmxcsr only read and write the SSE control register and the local we point them at.
        unsafe {
            std::arch::asm!("stmxcsr [{}]", in(reg) &mut csr, options(nostack, preserves_flags));
            let flushed = csr | FTZ | DAZ;
            std::arch::asm!("ldmxcsr [{}]", in(reg) &flushed, options(nostack, preserves_flags, readonly));
        }
        Self { saved: u64::from(csr) }
    }

    #[cfg(target_arch = "aarch64")]
    pub fn new() -> Self {
        const FZ: u64 = 1 << 24;
        let fpcr: u64;
        // SAFETY: reading and writing FPCR only changes floating-point behaviour of this thread.
        unsafe {
            std::arch::asm!("mrs {}, fpcr", out(reg) fpcr, options(nomem, nostack, preserves_flags));
            std::arch::asm!("msr fpcr, {}", in(reg) fpcr | FZ, options(nomem, nostack, preserves_flags));
        }
        Self { saved: fpcr }
    }

    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    pub fn new() -> Self {
        Self { saved: 0 }
    }
}

impl Default for DenormalGuard {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for DenormalGuard {
    fn drop(&mut self) {
        #[cfg(target_arch = "x86_64")]
        {
            let csr = self.saved as u32;
            // SAFETY: restores the value read in `new`.
            unsafe { std::arch::asm!("ldmxcsr [{}]", in(reg) &csr, options(nostack, preserves_flags, readonly)) };
        }
        #[cfg(target_arch = "aarch64")]
        // SAFETY: restores the value read in `new`.
        unsafe {
            std::arch::asm!("msr fpcr, {}", in(reg) self.saved, options(nomem, nostack, preserves_flags))
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
    fn subnormal_results_flush_to_zero_inside_the_guard_only() {
        let tiny = std::hint::black_box(f32::MIN_POSITIVE);
        let half = std::hint::black_box(0.5f32);
        {
            let _guard = DenormalGuard::new();
            assert_eq!(std::hint::black_box(tiny * half), 0.0);
        }
        assert!(std::hint::black_box(tiny * half) > 0.0, "mode restored after the guard");
    }
}
