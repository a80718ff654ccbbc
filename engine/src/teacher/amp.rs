//! Tube-amp teacher: a high-gain preamp, a passive-style tone stack and a sagging power amp, the classic recipe.
//!
//! Signal flow (48 kHz figures):
//! 1. Input high-pass at `INPUT_HP_HZ` (the coupling capacitor) and a bright bell at `BRIGHT_HZ` (the bright cap).
//! 2. ×4 oversampling, then three gain stages. Each stage is `shape(g·(x + b)) − shape(g·b)`: the bias moves the
//!    operating point off the curve's centre, so the swing is asymmetric and even harmonics appear, and `shape` clips
//!    its positive and negative halves at different levels (grid conduction versus cut-off). A DC blocker follows
//!    each stage (the bias and asymmetry make DC), then interstage high-pass (coupling caps; the second one "tight",
//!    trimming the low end that would make the next stage fart out) and low-pass filters (Miller capacitance),
//!    which also keep the next stage from multiplying the previous stage's top harmonics into aliases.
//! 3. Back to the base rate, then the tone stack: bell filters for bass/mid/treble, with a fixed mid scoop
//!    (`MID_SCOOP_DB`) like the loss a passive Fender/Marshall stack has at its default settings.
//! 4. ×4 oversampling again for the power amp: a symmetric (push-pull) soft clipper whose small-signal gain and
//!    ceiling both drop as an envelope of its input (attack `SAG_ATTACK_MS`, release `SAG_RELEASE_MS`) rises — the
//!    power supply sagging under sustained loud playing.
//! 5. Master level.
//!
//! Oversampling uses one windowed-sinc low-pass FIR (`FIR_TAPS` taps, odd so its delay is a whole number of base
//! samples) for both interpolation and decimation; its delay is reported by [`Teacher::latency`].

use crate::dsp::biquad::{Biquad, Coefficients};

use super::Teacher;

pub const PARAMS: &[&str] = &["gain", "bass", "mid", "treble", "master"];

const OVERSAMPLE: usize = 4;
/// Odd, so each filter's delay ((taps − 1)/2 = 64 oversampled samples) is exactly 16 base samples.
const FIR_TAPS: usize = 129;
/// Anti-imaging/anti-aliasing cut-off as a fraction of the base sample rate (0.375 → 18 kHz at 48 kHz): low enough
/// that the window's transition band is done before the base Nyquist frequency.
const FIR_CUTOFF: f64 = 0.375;

const INPUT_HP_HZ: f32 = 70.0;
const BRIGHT_HZ: f32 = 3000.0;
const BRIGHT_DB: f32 = 3.0;

/// Per gain-knob unit, the dB of drive each preamp stage gets (gain 10 → 24 + 20 + 10 = 54 dB in all).
const STAGE_DRIVE_DB_PER_UNIT: [f32; 3] = [2.4, 2.0, 1.0];
/// Each stage: (positive clip level, negative clip level, bias). The bias is referred to the stage's *input*
/// (`shape(g·(x + bias))`), as a grid bias is: a loud signal swamps it and clips nearly square but with its zero
/// crossings moved off centre (so the duty cycle, and with it the even harmonics, survive heavy clipping), a quiet
/// one rides on a curved part of the characteristic.
const STAGE_SHAPES: [(f32, f32, f32); 3] = [(1.0, 0.6, 0.04), (0.8, 1.2, -0.06), (1.0, 0.7, 0.05)];
/// Interstage (high-pass, low-pass) corner frequencies after each stage.
const STAGE_FILTERS_HZ: [(f32, f32); 3] = [(40.0, 10_000.0), (110.0, 7_000.0), (30.0, 6_000.0)];
const DC_BLOCK_HZ: f32 = 10.0;

const BASS_HZ: f32 = 100.0;
const MID_HZ: f32 = 650.0;
const TREBLE_HZ: f32 = 3200.0;
/// dB of boost or cut per knob unit away from 5.
const TONE_DB_PER_UNIT: f32 = 2.4;
const MID_SCOOP_DB: f32 = -4.0;

/// Power-amp small-signal gain.
const POWER_DRIVE: f32 = 1.5;
const SAG_ATTACK_MS: f32 = 10.0;
const SAG_RELEASE_MS: f32 = 150.0;
/// How far the envelope (mean |x| at the power amp's input) lowers gain and ceiling: 1 / (1 + depth · envelope).
const SAG_DEPTH: f32 = 0.8;
/// Brings the power amp's ceiling (±1) to peaks around −3 dBFS before the master.
const OUTPUT_TRIM: f32 = 0.75;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AmpSettings {
    /// Preamp gain 0..10.
    pub gain: f32,
    /// Tone stack 0..10 (5 = flat apart from the fixed mid scoop).
    pub bass: f32,
    pub mid: f32,
    pub treble: f32,
    /// Output level, dB.
    pub master: f32,
}

impl Default for AmpSettings {
    fn default() -> Self {
        Self { gain: 5.0, bass: 5.0, mid: 5.0, treble: 5.0, master: 0.0 }
    }
}

impl AmpSettings {
    pub fn set(&mut self, name: &str, v: f32) -> bool {
        match name {
            "gain" => self.gain = v,
            "bass" => self.bass = v,
            "mid" => self.mid = v,
            "treble" => self.treble = v,
            "master" => self.master = v,
            _ => return false,
        }
        true
    }
}

/// Windowed-sinc (Blackman) low-pass at `FIR_CUTOFF` of the base rate, designed at the oversampled rate, unity DC
/// gain.
fn design_fir() -> Vec<f32> {
    let centre = (FIR_TAPS - 1) as f64 / 2.0;
    let fc = FIR_CUTOFF / OVERSAMPLE as f64; // cycles per oversampled sample
    let taps: Vec<f64> = (0..FIR_TAPS)
        .map(|n| {
            let t = n as f64 - centre;
            let sinc =
                if t == 0.0 { 2.0 * fc } else { (std::f64::consts::TAU * fc * t).sin() / (std::f64::consts::PI * t) };
            let phase = std::f64::consts::TAU * n as f64 / (FIR_TAPS - 1) as f64;
            sinc * (0.42 - 0.5 * phase.cos() + 0.08 * (2.0 * phase).cos())
        })
        .collect();
    let sum: f64 = taps.iter().sum();
    taps.iter().map(|t| (t / sum) as f32).collect()
}

/// ×4 interpolator and decimator around a nonlinear section.
struct Oversampler {
    taps: Vec<f32>,
    /// Base-rate input history, newest first, for the polyphase interpolator.
    up_history: Vec<f32>,
    /// Oversampled history, newest first, for the decimator.
    down_history: Vec<f32>,
}

impl Oversampler {
    fn new() -> Self {
        Self {
            taps: design_fir(),
            up_history: vec![0.0; FIR_TAPS.div_ceil(OVERSAMPLE)],
            down_history: vec![0.0; FIR_TAPS],
        }
    }

    /// Zero-stuffs `x` to four samples and low-passes them (gain ×4 restores the level the zeros took away).
    fn up(&mut self, x: f32) -> [f32; OVERSAMPLE] {
        self.up_history.rotate_right(1);
        self.up_history[0] = x;
        let mut out = [0.0; OVERSAMPLE];
        for (phase, y) in out.iter_mut().enumerate() {
            let sum: f32 =
                self.taps.iter().skip(phase).step_by(OVERSAMPLE).zip(&self.up_history).map(|(h, x)| h * x).sum();
            *y = OVERSAMPLE as f32 * sum;
        }
        out
    }

    /// Low-passes four oversampled samples and keeps one.
    fn down(&mut self, block: [f32; OVERSAMPLE]) -> f32 {
        self.down_history.rotate_right(OVERSAMPLE);
        for (k, &v) in block.iter().enumerate() {
            self.down_history[OVERSAMPLE - 1 - k] = v;
        }
        self.taps.iter().zip(&self.down_history).map(|(h, x)| h * x).sum()
    }
}

/// One preamp triode stage.
struct Stage {
    drive: f32,
    positive: f32,
    negative: f32,
    bias: f32,
    rest: f32,
    dc_pole: f32,
    dc_x: f32,
    dc_y: f32,
    high_pass: Biquad,
    low_pass: Biquad,
}

impl Stage {
    fn shape(&self, v: f32) -> f32 {
        if v >= 0.0 { self.positive * (v / self.positive).tanh() } else { self.negative * (v / self.negative).tanh() }
    }

    fn tick(&mut self, x: f32) -> f32 {
        let y = self.shape(self.drive * (x + self.bias)) - self.rest;
        // One-pole DC blocker.
        let blocked = y - self.dc_x + self.dc_pole * self.dc_y;
        self.dc_x = y;
        self.dc_y = blocked;
        self.low_pass.tick(self.high_pass.tick(blocked))
    }
}

pub struct Amp {
    input_hp: Biquad,
    bright: Biquad,
    pre_oversampler: Oversampler,
    stages: Vec<Stage>,
    tone: [Biquad; 3],
    power_oversampler: Oversampler,
    sag_attack: f32,
    sag_release: f32,
    sag_envelope: f32,
    master: f32,
}

impl Amp {
    pub fn new(sample_rate: f32, s: AmpSettings) -> Self {
        let os_rate = sample_rate * OVERSAMPLE as f32;
        let q = std::f32::consts::FRAC_1_SQRT_2;
        let gain = s.gain.clamp(0.0, 10.0);
        let stages = (0..3)
            .map(|k| {
                let (positive, negative, bias) = STAGE_SHAPES[k];
                let (hp, lp) = STAGE_FILTERS_HZ[k];
                let mut stage = Stage {
                    drive: 10f32.powf(gain * STAGE_DRIVE_DB_PER_UNIT[k] / 20.0),
                    positive,
                    negative,
                    bias,
                    rest: 0.0,
                    dc_pole: 1.0 - std::f32::consts::TAU * DC_BLOCK_HZ / os_rate,
                    dc_x: 0.0,
                    dc_y: 0.0,
                    high_pass: Biquad::new(Coefficients::highpass(os_rate, hp, q)),
                    low_pass: Biquad::new(Coefficients::lowpass(os_rate, lp, q)),
                };
                stage.rest = stage.shape(stage.drive * bias);
                stage
            })
            .collect();
        let knob = |v: f32| (v.clamp(0.0, 10.0) - 5.0) * TONE_DB_PER_UNIT;
        let os_pole = |ms: f32| 1.0 - (-1000.0 / (ms * os_rate)).exp();
        Self {
            input_hp: Biquad::new(Coefficients::highpass(sample_rate, INPUT_HP_HZ, q)),
            bright: Biquad::new(Coefficients::peaking(sample_rate, BRIGHT_HZ, 0.7, BRIGHT_DB)),
            pre_oversampler: Oversampler::new(),
            stages,
            tone: [
                Biquad::new(Coefficients::peaking(sample_rate, BASS_HZ, 0.7, knob(s.bass))),
                Biquad::new(Coefficients::peaking(sample_rate, MID_HZ, 0.8, knob(s.mid) + MID_SCOOP_DB)),
                Biquad::new(Coefficients::peaking(sample_rate, TREBLE_HZ, 0.7, knob(s.treble))),
            ],
            power_oversampler: Oversampler::new(),
            sag_attack: os_pole(SAG_ATTACK_MS),
            sag_release: os_pole(SAG_RELEASE_MS),
            sag_envelope: 0.0,
            master: 10f32.powf(s.master / 20.0) * OUTPUT_TRIM,
        }
    }

    /// The current sag envelope (mean |x| at the power amp's input).
    pub fn sag_envelope(&self) -> f32 {
        self.sag_envelope
    }
}

impl Teacher for Amp {
    fn tick(&mut self, x: f32) -> f32 {
        let x = self.bright.tick(self.input_hp.tick(x));
        let mut block = self.pre_oversampler.up(x);
        for v in &mut block {
            for stage in &mut self.stages {
                *v = stage.tick(*v);
            }
        }
        let mut y = self.pre_oversampler.down(block);
        for filter in &mut self.tone {
            y = filter.tick(y);
        }
        let mut block = self.power_oversampler.up(y);
        for v in &mut block {
            let level = v.abs();
            let pole = if level > self.sag_envelope { self.sag_attack } else { self.sag_release };
            self.sag_envelope += pole * (level - self.sag_envelope);
            let headroom = 1.0 / (1.0 + SAG_DEPTH * self.sag_envelope);
            *v = headroom * (POWER_DRIVE * *v).tanh();
        }
        self.power_oversampler.down(block) * self.master
    }

    fn latency(&self) -> usize {
        2 * (FIR_TAPS - 1) / OVERSAMPLE
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::teacher::testing::{db, sine, tone_amplitude};

    const SR: f32 = 48_000.0;

    fn amp(gain: f32) -> Amp {
        Amp::new(SR, AmpSettings { gain, ..Default::default() })
    }

    fn run(a: &mut Amp, input: &[f32]) -> Vec<f32> {
        input.iter().map(|&x| a.tick(x)).collect()
    }

    #[test]
    fn amp_quiet_sine_passes_nearly_linearly_at_gain_zero() {
        let out = run(&mut amp(0.0), &sine(SR, 1000.0, 0.01, 96_000));
        let steady = &out[48_000..];
        let fundamental = tone_amplitude(steady, SR, 1000.0);
        for h in 2..=5 {
            let level = db(tone_amplitude(steady, SR, 1000.0 * h as f32) / fundamental);
            assert!(level < -50.0, "harmonic {h} at {level:.1} dB");
        }
    }

    #[test]
    fn amp_high_gain_makes_strong_odd_and_even_harmonics_and_stays_bounded() {
        let out = run(&mut amp(10.0), &sine(SR, 500.0, 0.5, 96_000));
        assert!(out.iter().all(|y| y.abs() < 1.0), "output exceeds full scale");
        let steady = &out[48_000..];
        let fundamental = tone_amplitude(steady, SR, 500.0);
        let h2 = db(tone_amplitude(steady, SR, 1000.0) / fundamental);
        let h3 = db(tone_amplitude(steady, SR, 1500.0) / fundamental);
        assert!(h2 > -30.0, "2nd harmonic {h2:.1} dB");
        assert!(h3 > -20.0, "3rd harmonic {h3:.1} dB");
    }

    #[test]
    fn amp_tone_stack_treble_and_bass_move_their_bands_by_several_db() {
        let level = |s: AmpSettings, f: f32| {
            let out = run(&mut Amp::new(SR, AmpSettings { gain: 0.0, ..s }), &sine(SR, f, 0.01, 48_000));
            db(tone_amplitude(&out[24_000..], SR, f))
        };
        let d = AmpSettings::default();
        let treble = level(AmpSettings { treble: 10.0, ..d }, 3000.0) - level(AmpSettings { treble: 0.0, ..d }, 3000.0);
        let bass = level(AmpSettings { bass: 10.0, ..d }, 100.0) - level(AmpSettings { bass: 0.0, ..d }, 100.0);
        assert!(treble > 12.0, "treble 10 vs 0 at 3 kHz: {treble:.1} dB");
        assert!(bass > 12.0, "bass 10 vs 0 at 100 Hz: {bass:.1} dB");
    }

    #[test]
    fn amp_aliasing_of_a_5khz_sine_at_high_gain_stays_40db_down() {
        // 5 kHz at 48 kHz repeats every 48 samples, so everything in the output sits on multiples of 1 kHz:
        // multiples of 5 kHz are harmonics, the rest can only be aliases.
        let out = run(&mut amp(10.0), &sine(SR, 5000.0, 0.5, 96_000));
        let steady = &out[48_000..];
        let fundamental = tone_amplitude(steady, SR, 5000.0);
        for k in (1..24).filter(|k| k % 5 != 0) {
            let alias = db(tone_amplitude(steady, SR, 1000.0 * k as f32) / fundamental);
            assert!(alias < -40.0, "alias at {k} kHz: {alias:.1} dB");
        }
    }

    #[test]
    fn amp_sag_lowers_the_level_of_a_long_loud_tone() {
        let out = run(&mut amp(8.0), &sine(SR, 220.0, 0.5, 96_000));
        let peak = |range: std::ops::Range<usize>| out[range].iter().fold(0.0f32, |m, y| m.max(y.abs()));
        let onset = peak(64..64 + 240); // the first 5 ms after the oversampling delay
        let steady = peak(72_000..96_000);
        let drop = db(onset) - db(steady);
        assert!((1.5..=8.0).contains(&drop), "sag drop {drop:.1} dB");
    }
}
