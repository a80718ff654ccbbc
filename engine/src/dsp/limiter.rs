//! The output safety limiter: the last thing before the sound card. It guarantees the output never exceeds its
//! ceiling, whatever a model does, without adding latency.
//!
//! Attack is instantaneous (the gain drops to exactly what keeps the peak at the ceiling), then holds briefly and
//! recovers smoothly. Instant attack distorts a little while it works, which is the right trade for a safety
//! device: it should rarely act, and when it acts it must win. A final clamp catches rounding.

/// Default ceiling, −0.3 dBFS: below full scale so inter-sample peaks after the converter stay under 0 dBFS.
pub const DEFAULT_CEILING: f32 = 0.966_051;

const HOLD_MS: f32 = 10.0;
const RELEASE_MS: f32 = 150.0;

#[derive(Debug, Clone)]
pub struct SafetyLimiter {
    ceiling: f32,
    gain: f32,
    hold_samples: u32,
    hold_left: u32,
    release_coeff: f32,
    /// Lowest gain applied since the last [`Self::take_reduction`], for a meter.
    min_gain: f32,
}

impl SafetyLimiter {
    pub fn new(sample_rate: f32) -> Self {
        Self {
            ceiling: DEFAULT_CEILING,
            gain: 1.0,
            hold_samples: (HOLD_MS * 1e-3 * sample_rate) as u32,
            hold_left: 0,
            release_coeff: 1.0 - (-1.0 / (RELEASE_MS * 1e-3 * sample_rate)).exp(),
            min_gain: 1.0,
        }
    }

    pub fn ceiling(&self) -> f32 {
        self.ceiling
    }

    /// Limits a stereo pair in place (linked: the same gain on both, so the image does not shift).
    /// Non-finite samples become silence.
    pub fn process(&mut self, left: &mut [f32], right: &mut [f32]) {
        for (l, r) in left.iter_mut().zip(right.iter_mut()) {
            if !l.is_finite() {
                *l = 0.0;
            }
            if !r.is_finite() {
                *r = 0.0;
            }
            let peak = l.abs().max(r.abs());
            let needed = if peak * self.gain > self.ceiling { self.ceiling / peak } else { f32::INFINITY };
            if needed < self.gain {
                self.gain = needed;
                self.hold_left = self.hold_samples;
            } else if self.hold_left > 0 {
                self.hold_left -= 1;
            } else if self.gain < 1.0 {
                // Recover towards unity, but never so far that this sample would exceed the ceiling.
                let next = self.gain + (1.0 - self.gain) * self.release_coeff;
                self.gain = next.min(needed).min(1.0);
            }
            self.min_gain = self.min_gain.min(self.gain);
            *l = (*l * self.gain).clamp(-self.ceiling, self.ceiling);
            *r = (*r * self.gain).clamp(-self.ceiling, self.ceiling);
        }
    }

    /// Deepest gain reduction (linear gain, 1 = none) since the last call, then starts a new window.
    pub fn take_reduction(&mut self) -> f32 {
        std::mem::replace(&mut self.min_gain, self.gain)
    }

    pub fn reset(&mut self) {
        self.gain = 1.0;
        self.hold_left = 0;
        self.min_gain = 1.0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_never_exceeds_the_ceiling_even_for_absurd_input() {
        let mut lim = SafetyLimiter::new(48_000.0);
        let mut l: Vec<f32> = (0..4800).map(|i| 1e6 * ((i as f32) * 0.05).sin()).collect();
        let mut r = l.clone();
        l[100] = f32::NAN;
        r[200] = f32::INFINITY;
        lim.process(&mut l, &mut r);
        assert!(l.iter().chain(&r).all(|x| x.is_finite() && x.abs() <= DEFAULT_CEILING));
        assert!(lim.take_reduction() < 1e-5);
    }

    #[test]
    fn quiet_signals_pass_bit_exact() {
        let mut lim = SafetyLimiter::new(48_000.0);
        let mut l: Vec<f32> = (0..4800).map(|i| 0.5 * ((i as f32) * 0.05).sin()).collect();
        let reference = l.clone();
        let mut r = l.clone();
        lim.process(&mut l, &mut r);
        assert_eq!(l, reference);
    }

    #[test]
    fn gain_recovers_after_a_transient() {
        let mut lim = SafetyLimiter::new(48_000.0);
        let mut l = vec![0.5f32; 48_000];
        l[0] = 4.0;
        let mut r = l.clone();
        lim.process(&mut l, &mut r);
        assert!((l[47_999] - 0.5).abs() < 1e-3, "recovered to {}", l[47_999]);
    }
}
