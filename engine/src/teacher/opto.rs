//! Opto compressor teacher, after the LA-2A: one "peak reduction" knob, make-up gain, a compress/limit switch, and
//! the optical cell's slow, program-dependent timing that gives the unit its smoothness.
//!
//! Signal flow: a short RMS detector (`DETECTOR_MS`) feeds a soft-knee static curve (threshold from peak reduction;
//! 3:1 with a wide knee in compress mode, 20:1 with a narrow knee in limit mode) that gives the *target* gain
//! reduction in dB. The cell then follows the target with two envelope states:
//!
//! - `fast`: rises with the attack (`ATTACK_MS` for small steps, quicker for big jumps, as the cell's light
//!   saturates) and falls with `FAST_RELEASE_MS` — the first, quick part of the release.
//! - `slow`: the cell's memory. It charges toward `SLOW_SHARE` of the target over `SLOW_CHARGE_MS` while the unit
//!   compresses, and falls with a time constant between `SLOW_RELEASE_MIN_MS` and `SLOW_RELEASE_MAX_MS` set by a
//!   `stress` state (0..1) that builds up over `STRESS_CHARGE_MS` of compression and fades over `STRESS_FADE_MS`.
//!
//! The gain reduction applied is the larger of the two, so after a note stops the reduction first drops quickly to
//! what the memory holds and then fades slowly, and the fade is longer after a long, hard passage than after a short
//! one — the LA-2A's two-stage release.

use super::Teacher;

pub const PARAMS: &[&str] = &["peak_reduction", "gain", "limit"];

/// RMS detector time constant: smooths a low E's ripple without adding much to the attack.
const DETECTOR_MS: f32 = 3.0;
/// Threshold at peak reduction 0 (above any real input: no compression) and its fall per unit of peak reduction
/// (100 → −40 dBFS).
const THRESHOLD_AT_ZERO_DB: f32 = 10.0;
const THRESHOLD_PER_UNIT_DB: f32 = 0.5;
const COMPRESS_RATIO: f32 = 3.0;
const COMPRESS_KNEE_DB: f32 = 10.0;
const LIMIT_RATIO: f32 = 20.0;
const LIMIT_KNEE_DB: f32 = 4.0;
/// Attack time constant for small gain-reduction steps; a step of `ATTACK_SPEEDUP_DB` halves it.
const ATTACK_MS: f32 = 10.0;
const ATTACK_SPEEDUP_DB: f32 = 30.0;
const FAST_RELEASE_MS: f32 = 60.0;
/// Share of the gain reduction the slow state (the cell's memory) can hold.
const SLOW_SHARE: f32 = 0.5;
const SLOW_CHARGE_MS: f32 = 300.0;
const SLOW_RELEASE_MIN_MS: f32 = 500.0;
const SLOW_RELEASE_MAX_MS: f32 = 5000.0;
const STRESS_CHARGE_MS: f32 = 2000.0;
const STRESS_FADE_MS: f32 = 10_000.0;
/// Gain reduction (dB) that counts as "fully compressing" for the stress state.
const STRESS_FULL_DB: f32 = 10.0;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OptoSettings {
    /// Peak reduction 0..100.
    pub peak_reduction: f32,
    /// Make-up gain, dB.
    pub gain: f32,
    /// 0 compress, 1 limit.
    pub limit: f32,
}

impl Default for OptoSettings {
    fn default() -> Self {
        Self { peak_reduction: 50.0, gain: 0.0, limit: 0.0 }
    }
}

impl OptoSettings {
    pub fn set(&mut self, name: &str, v: f32) -> bool {
        match name {
            "peak_reduction" => self.peak_reduction = v,
            "gain" => self.gain = v,
            "limit" => self.limit = v,
            _ => return false,
        }
        true
    }
}

/// One-pole smoothing coefficient for a time constant.
fn pole(sample_rate: f32, ms: f32) -> f32 {
    1.0 - (-1000.0 / (ms * sample_rate)).exp()
}

pub struct Opto {
    sample_rate: f32,
    threshold_db: f32,
    ratio: f32,
    knee_db: f32,
    makeup: f32,
    detector_pole: f32,
    fast_release_pole: f32,
    slow_charge_pole: f32,
    stress_charge_pole: f32,
    stress_fade_pole: f32,
    // Signal state.
    mean_square: f32,
    fast: f32,
    slow: f32,
    stress: f32,
}

impl Opto {
    pub fn new(sample_rate: f32, s: OptoSettings) -> Self {
        let limit = s.limit >= 0.5;
        Self {
            sample_rate,
            threshold_db: THRESHOLD_AT_ZERO_DB - THRESHOLD_PER_UNIT_DB * s.peak_reduction.clamp(0.0, 100.0),
            ratio: if limit { LIMIT_RATIO } else { COMPRESS_RATIO },
            knee_db: if limit { LIMIT_KNEE_DB } else { COMPRESS_KNEE_DB },
            makeup: 10f32.powf(s.gain / 20.0),
            detector_pole: pole(sample_rate, DETECTOR_MS),
            fast_release_pole: pole(sample_rate, FAST_RELEASE_MS),
            slow_charge_pole: pole(sample_rate, SLOW_CHARGE_MS),
            stress_charge_pole: pole(sample_rate, STRESS_CHARGE_MS),
            stress_fade_pole: pole(sample_rate, STRESS_FADE_MS),
            mean_square: 0.0,
            fast: 0.0,
            slow: 0.0,
            stress: 0.0,
        }
    }

    /// Static curve: target gain reduction (dB, ≥ 0) for a detector level in dBFS.
    pub fn static_reduction_db(&self, level_db: f32) -> f32 {
        let over = level_db - self.threshold_db;
        let slope = 1.0 - 1.0 / self.ratio;
        let half = 0.5 * self.knee_db;
        if over <= -half {
            0.0
        } else if over < half {
            slope * (over + half).powi(2) / (2.0 * self.knee_db)
        } else {
            slope * over
        }
    }

    /// The gain reduction (dB, ≥ 0) applied to the sample just ticked.
    pub fn gain_reduction_db(&self) -> f32 {
        self.fast.max(self.slow)
    }
}

impl Teacher for Opto {
    fn tick(&mut self, x: f32) -> f32 {
        self.mean_square += self.detector_pole * (x * x - self.mean_square);
        let level_db = 10.0 * self.mean_square.max(1e-12).log10();
        let target = self.static_reduction_db(level_db);

        if target > self.fast {
            let step = target - self.fast;
            let ms = ATTACK_MS / (1.0 + step / ATTACK_SPEEDUP_DB);
            self.fast += pole(self.sample_rate, ms) * step;
        } else {
            self.fast += self.fast_release_pole * (target - self.fast);
        }

        let memory_target = SLOW_SHARE * target;
        if memory_target > self.slow {
            self.slow += self.slow_charge_pole * (memory_target - self.slow);
        } else {
            let ms = SLOW_RELEASE_MIN_MS + (SLOW_RELEASE_MAX_MS - SLOW_RELEASE_MIN_MS) * self.stress;
            self.slow += pole(self.sample_rate, ms) * (memory_target - self.slow);
        }

        let pressure = (self.fast / STRESS_FULL_DB).min(1.0);
        if pressure > self.stress {
            self.stress += self.stress_charge_pole * (pressure - self.stress);
        } else {
            self.stress += self.stress_fade_pole * (pressure - self.stress);
        }

        x * 10f32.powf(-self.gain_reduction_db() / 20.0) * self.makeup
    }

    fn envelopes_db(&self) -> Option<[f32; 2]> {
        Some([self.fast, self.slow])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::teacher::testing::sine;

    const SR: f32 = 48_000.0;

    fn opto(peak_reduction: f32, limit: bool) -> Opto {
        Opto::new(SR, OptoSettings { peak_reduction, limit: if limit { 1.0 } else { 0.0 }, gain: 0.0 })
    }

    /// Settled gain reduction for a 1 kHz tone at `level_db` dBFS peak.
    fn steady_reduction(o: &mut Opto, level_db: f32) -> f32 {
        let tone = sine(SR, 1000.0, 10f32.powf(level_db / 20.0), SR as usize * 2);
        let mut gr = Vec::new();
        for &x in &tone {
            o.tick(x);
            gr.push(o.gain_reduction_db());
        }
        gr[gr.len() - 4800..].iter().sum::<f32>() / 4800.0
    }

    #[test]
    fn opto_static_curve_is_monotonic_and_harder_in_limit_mode() {
        let levels: Vec<f32> = (0..=8).map(|k| -40.0 + 5.0 * k as f32).collect();
        let curve = |pr: f32, limit: bool| -> Vec<f32> {
            levels.iter().map(|&l| steady_reduction(&mut opto(pr, limit), l)).collect()
        };
        let (half, full, limit) = (curve(50.0, false), curve(100.0, false), curve(100.0, true));
        for c in [&half, &full, &limit] {
            assert!(c.windows(2).all(|w| w[1] >= w[0] - 0.05), "not monotonic: {c:?}");
        }
        assert!(half.iter().zip(&full).all(|(h, f)| f >= &(h - 0.05)), "{half:?} vs {full:?}");
        assert!(full[8] > half[8] + 10.0, "peak reduction 100 vs 50 at 0 dBFS: {} vs {}", full[8], half[8]);
        // From the threshold up (−40 dBFS at peak reduction 100; below it only the wider compress knee acts).
        assert!(limit.iter().zip(&full).skip(1).all(|(l, c)| l >= &(c - 0.05)), "{limit:?} vs {full:?}");
        assert!(limit[8] > full[8] + 10.0, "limit {} vs compress {} dB at 0 dBFS", limit[8], full[8]);
        assert!(half[0] < 0.1, "−40 dBFS should pass untouched at peak reduction 50: {}", half[0]);
        let mut none = opto(0.0, false);
        assert!(steady_reduction(&mut none, 0.0) < 0.1, "peak reduction 0 should not compress");
    }

    #[test]
    fn opto_attack_reaches_63_percent_in_about_10_ms() {
        let mut o = opto(100.0, false);
        let tone = sine(SR, 1000.0, 0.3, SR as usize / 2);
        let gr: Vec<f32> = tone
            .iter()
            .map(|&x| {
                o.tick(x);
                o.gain_reduction_db()
            })
            .collect();
        let settled = gr[12_000]; // 250 ms: the fast state has settled, the slow one is still below it
        let t63 = gr.iter().position(|&g| g >= 0.632 * settled).unwrap() as f32 / SR * 1000.0;
        // Documented: 10 ms for small steps, quicker for large ones (this is a ~18 dB step → ~6 ms), plus the RMS
        // detector's ~3 ms.
        assert!((5.0..=14.0).contains(&t63), "63 % of {settled:.1} dB after {t63:.1} ms");
    }

    /// Gain reduction over the 3 s after a `loud_ms` burst of loud tone.
    fn release_after(loud_ms: usize) -> (f32, Vec<f32>) {
        let mut o = opto(100.0, false);
        for &x in &sine(SR, 1000.0, 0.5, loud_ms * 48) {
            o.tick(x);
        }
        let start = o.gain_reduction_db();
        let gr = (0..SR as usize * 3)
            .map(|_| {
                o.tick(0.0);
                o.gain_reduction_db()
            })
            .collect();
        (start, gr)
    }

    #[test]
    fn opto_release_is_fast_then_slow_and_longer_after_long_compression() {
        let (start, gr) = release_after(3000);
        let at = |ms: usize| gr[ms * 48];
        // First stage: a big share gone in 100 ms.
        assert!(at(100) < 0.7 * start, "start {start:.1} dB, after 100 ms {:.1} dB", at(100));
        // Second stage: the next 100 ms (from 500 ms) release far more slowly, in dB/s.
        let fast_rate = (start - at(100)) / 0.1;
        let slow_rate = (at(500) - at(600)) / 0.1;
        assert!(slow_rate < 0.2 * fast_rate && slow_rate > 0.0, "fast {fast_rate:.1} dB/s, slow {slow_rate:.1} dB/s");
        // Memory: reduction lingers much longer after 3 s of compression than after 100 ms of it.
        let time_below = |gr: &[f32]| gr.iter().position(|&g| g < 1.0).unwrap_or(gr.len()) as f32 / SR;
        let (_, short) = release_after(100);
        let (long_t, short_t) = (time_below(&gr), time_below(&short));
        assert!(long_t > 2.0 * short_t, "below 1 dB after {long_t:.2} s (long) vs {short_t:.2} s (short)");
    }

    #[test]
    fn opto_envelopes_are_the_fast_and_slow_states_whose_larger_is_applied() {
        // A loud burst, then a quiet tone: the fast envelope leads the attack and the start of the release, the
        // slow memory the rest of it, and the output is the input times the larger's gain all along.
        let mut input = sine(SR, 1000.0, 0.5, SR as usize);
        input.extend(sine(SR, 1000.0, 0.03, SR as usize));
        let rendered = crate::teacher::render(&mut opto(70.0, false), &input);
        assert_eq!(rendered.envelopes.len(), input.len());
        let (mut fast_leads, mut slow_leads) = (0, 0);
        for ((&x, &y), &[fast, slow]) in input.iter().zip(&rendered.output).zip(&rendered.envelopes) {
            let expected = x * 10f32.powf(-fast.max(slow) / 20.0);
            assert!((y - expected).abs() <= 1e-6, "{y} against {expected}");
            if fast > slow + 0.1 {
                fast_leads += 1;
            } else if slow > fast + 0.1 {
                slow_leads += 1;
            }
        }
        assert!(fast_leads > 10_000 && slow_leads > 10_000, "fast leads {fast_leads}, slow leads {slow_leads} samples");
    }
}
