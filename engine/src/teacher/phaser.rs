//! Phaser teacher: a chain of first-order all-pass stages whose break frequency an LFO sweeps, mixed with the dry
//! signal so that the frequencies where the chain's phase reaches odd multiples of π cancel into moving notches.
//!
//! Each stage is `H(z) = (a + z⁻¹) / (1 + a z⁻¹)`, flat in magnitude by construction, with
//! `a = (tan(π f/fs) − 1) / (tan(π f/fs) + 1)` putting its 90° point at `f`. The break frequency moves exponentially:
//! `f = centre · 2^(SWEEP_OCTAVES · depth · lfo)`, so the sweep sounds even (equal musical distance up and down).
//! Feedback takes the previous sample's wet output back to the chain's input; the one-sample delay keeps the loop
//! well defined, and since the chain is all-pass the loop is stable for |feedback| < 1.

use super::{Lfo, Teacher, Waveform};

pub const PARAMS: &[&str] = &["stages", "rate", "depth", "centre", "feedback", "mix", "waveform", "phase"];

/// Octaves the break frequency moves each way from the centre at depth 1.
const SWEEP_OCTAVES: f32 = 2.0;
/// Stage-count limits: fewer than 4 barely notches, more than 12 is no classic pedal.
const MIN_STAGES: usize = 4;
const MAX_STAGES: usize = 12;
/// Feedback beyond this rings like a filter, not a phaser.
const MAX_FEEDBACK: f32 = 0.95;
/// Break frequencies are kept inside this range whatever the centre and depth.
const MIN_BREAK_HZ: f32 = 20.0;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PhaserSettings {
    /// Number of all-pass stages, 4..=12 (rounded).
    pub stages: f32,
    /// LFO rate, Hz (0 freezes the sweep at `phase`).
    pub rate: f32,
    /// Sweep depth 0..1.
    pub depth: f32,
    /// Centre break frequency, Hz.
    pub centre: f32,
    /// Feedback −0.95..0.95.
    pub feedback: f32,
    /// Wet share 0..1; 0.5 gives the deepest notches.
    pub mix: f32,
    /// 0 sine, 1 triangle.
    pub waveform: f32,
    /// LFO start phase 0..1 (¼ = top of the sweep).
    pub phase: f32,
}

impl Default for PhaserSettings {
    fn default() -> Self {
        Self { stages: 6.0, rate: 0.5, depth: 0.7, centre: 800.0, feedback: 0.3, mix: 0.5, waveform: 0.0, phase: 0.0 }
    }
}

impl PhaserSettings {
    pub fn set(&mut self, name: &str, v: f32) -> bool {
        match name {
            "stages" => self.stages = v,
            "rate" => self.rate = v,
            "depth" => self.depth = v,
            "centre" => self.centre = v,
            "feedback" => self.feedback = v,
            "mix" => self.mix = v,
            "waveform" => self.waveform = v,
            "phase" => self.phase = v,
            _ => return false,
        }
        true
    }
}

/// One first-order all-pass section (transposed direct form: one state).
#[derive(Debug, Clone, Copy, Default)]
pub struct AllPass {
    state: f32,
}

impl AllPass {
    /// The coefficient that puts the 90° phase point at `frequency`.
    pub fn coefficient(sample_rate: f32, frequency: f32) -> f32 {
        let t = (std::f32::consts::PI * frequency / sample_rate).tan();
        (t - 1.0) / (t + 1.0)
    }

    #[inline]
    pub fn tick(&mut self, x: f32, a: f32) -> f32 {
        let y = a * x + self.state;
        self.state = x - a * y;
        y
    }
}

pub struct Phaser {
    sample_rate: f32,
    stages: Vec<AllPass>,
    lfo: Lfo,
    last_lfo: f32,
    depth: f32,
    centre: f32,
    feedback: f32,
    mix: f32,
    last_wet: f32,
}

impl Phaser {
    pub fn new(sample_rate: f32, s: PhaserSettings) -> Self {
        let count = (s.stages.round() as usize).clamp(MIN_STAGES, MAX_STAGES);
        Self {
            sample_rate,
            stages: vec![AllPass::default(); count],
            lfo: Lfo::new(sample_rate, s.rate.max(0.0), Waveform::from_number(s.waveform), f64::from(s.phase)),
            last_lfo: 0.0,
            depth: s.depth.clamp(0.0, 1.0),
            centre: s.centre.clamp(MIN_BREAK_HZ, 0.45 * sample_rate),
            feedback: s.feedback.clamp(-MAX_FEEDBACK, MAX_FEEDBACK),
            mix: s.mix.clamp(0.0, 1.0),
            last_wet: 0.0,
        }
    }

    /// The all-pass break frequency for an LFO value.
    pub fn break_frequency(&self, lfo: f32) -> f32 {
        (self.centre * (SWEEP_OCTAVES * self.depth * lfo).exp2()).clamp(MIN_BREAK_HZ, 0.45 * self.sample_rate)
    }
}

impl Teacher for Phaser {
    fn tick(&mut self, x: f32) -> f32 {
        self.last_lfo = self.lfo.value();
        self.lfo.advance();
        let a = AllPass::coefficient(self.sample_rate, self.break_frequency(self.last_lfo));
        let mut v = x + self.feedback * self.last_wet;
        for stage in &mut self.stages {
            v = stage.tick(v, a);
        }
        self.last_wet = v;
        (1.0 - self.mix) * x + self.mix * v
    }

    fn lfo(&self) -> Option<f32> {
        Some(self.last_lfo)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::teacher::testing::{noise, response_magnitude};

    const SR: f32 = 48_000.0;

    fn impulse_response(t: &mut dyn Teacher, samples: usize) -> Vec<f32> {
        (0..samples).map(|n| t.tick(if n == 0 { 1.0 } else { 0.0 })).collect()
    }

    fn frozen(lfo_phase: f32, feedback: f32, mix: f32) -> Phaser {
        Phaser::new(SR, PhaserSettings { rate: 0.0, phase: lfo_phase, feedback, mix, ..Default::default() })
    }

    #[test]
    fn phaser_allpass_stage_is_flat_in_magnitude() {
        for break_hz in [100.0, 800.0, 5000.0] {
            let a = AllPass::coefficient(SR, break_hz);
            let mut stage = AllPass::default();
            let ir: Vec<f32> = (0..16_384).map(|n| stage.tick(if n == 0 { 1.0 } else { 0.0 }, a)).collect();
            for f in [20.0, 100.0, 440.0, 1000.0, 3000.0, 10_000.0, 20_000.0] {
                let m = response_magnitude(&ir, SR, f);
                assert!((m - 1.0).abs() < 1e-4, "break {break_hz} Hz: |H({f} Hz)| = {m}");
            }
        }
    }

    #[test]
    fn phaser_wet_path_without_feedback_is_flat() {
        let mut p = frozen(0.25, 0.0, 1.0);
        let ir = impulse_response(&mut p, 16_384);
        for f in [30.0, 200.0, 800.0, 2500.0, 9000.0, 18_000.0] {
            let m = response_magnitude(&ir, SR, f);
            assert!((m - 1.0).abs() < 1e-3, "|H({f} Hz)| = {m}");
        }
    }

    /// Lowest notch (local minimum under −20 dB) of a frozen phaser, from the spectrum of its response to white
    /// noise divided by the noise's own spectrum (a cross-spectral estimate, averaged over blocks).
    fn lowest_notch(lfo_phase: f32) -> f32 {
        let input = noise(SR as usize * 2, 3);
        let mut p = frozen(lfo_phase, 0.0, 0.5);
        let output: Vec<f32> = input.iter().map(|&x| p.tick(x)).collect();
        let mut previous = (f32::MAX, 0.0);
        let mut f = 40.0f32;
        while f < 15_000.0 {
            // Least-squares gain at f: |Σ Y X*| / Σ |X|², from single-bin DFTs over 4096-sample blocks.
            let (mut cross, mut power) = ((0.0f64, 0.0f64), 0.0f64);
            for block in 1..20 {
                let range = block * 4096..(block + 1) * 4096;
                let (xr, xi) = bin(&input[range.clone()], f);
                let (yr, yi) = bin(&output[range], f);
                cross.0 += yr * xr + yi * xi;
                cross.1 += yi * xr - yr * xi;
                power += xr * xr + xi * xi;
            }
            let gain = ((cross.0 * cross.0 + cross.1 * cross.1).sqrt() / power) as f32;
            if gain > previous.0 && previous.0 < 0.1 {
                return previous.1;
            }
            previous = (gain, f);
            f *= 1.02;
        }
        panic!("no notch found");
    }

    fn bin(x: &[f32], f: f32) -> (f64, f64) {
        let w = std::f64::consts::TAU * f64::from(f) / f64::from(SR);
        let (mut re, mut im) = (0.0, 0.0);
        for (n, &v) in x.iter().enumerate() {
            // Hann window so neighbouring frequencies do not leak into the notch.
            let hann = 0.5 - 0.5 * (std::f64::consts::TAU * n as f64 / x.len() as f64).cos();
            re += hann * f64::from(v) * (w * n as f64).cos();
            im -= hann * f64::from(v) * (w * n as f64).sin();
        }
        (re, im)
    }

    #[test]
    fn phaser_notches_move_up_with_the_lfo() {
        let low = lowest_notch(0.75); // LFO at −1
        let high = lowest_notch(0.25); // LFO at +1
        // Default depth 0.7 → the break frequency moves 2^(2·2·0.7) ≈ 7× between the extremes.
        assert!(high > low * 4.0 && high < low * 12.0, "notch {low} Hz → {high} Hz");
    }

    #[test]
    fn phaser_lfo_out_has_the_requested_rate() {
        let mut p = Phaser::new(SR, PhaserSettings { rate: 2.0, ..Default::default() });
        let lfo: Vec<f32> = (0..SR as usize * 10)
            .map(|_| {
                p.tick(0.0);
                p.lfo().unwrap()
            })
            .collect();
        let rising = lfo.windows(2).filter(|w| w[0] < 0.0 && w[1] >= 0.0).count();
        assert!((19..=21).contains(&rising), "{rising} cycles in 10 s at 2 Hz");
        assert!(lfo.iter().all(|v| (-1.0..=1.0).contains(v)));
    }
}
