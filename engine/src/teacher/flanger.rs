//! Flanger teacher: the input plus a copy of itself delayed by a few milliseconds, the delay swept by an LFO, so a
//! comb of notches at odd multiples of 1/(2·delay) glides up and down.
//!
//! The delay is `delay_ms + depth · swing · lfo`, where `swing` is as far as the centre can move each way and stay
//! inside 0.1..10 ms; depth 1 uses all of it. Reads between samples use 4-point cubic Hermite interpolation, which
//! keeps the top octave from dulling and zippering as a linear read would. Feedback sends the delayed signal back
//! into the line, sharpening the comb; it is clamped to ±0.95, where the loop gain stays below one.
//!
//! `lowpass_hz` (0, the default: off) band-limits what enters the line, the input and the feedback together, with a
//! fourth-order Butterworth low-pass: the wet path of a bucket-brigade (BBD) flanger, whose anti-aliasing filter
//! does the same. Above the cutoff the output is then the dry signal alone, and the comb and its feedback
//! resonances live below it. The filter's own delay (its group delay at low frequencies, about 4 samples at 5 kHz
//! and 48 kHz) is taken off the line's, so that the comb below the cutoff stays where `delay_ms` puts it.

use super::{Lfo, Teacher, Waveform};
use crate::dsp::biquad::{Biquad, Coefficients};

pub const PARAMS: &[&str] = &["delay_ms", "depth", "rate", "feedback", "mix", "waveform", "phase", "lowpass_hz"];

/// The two sections' Q of a fourth-order Butterworth low-pass: 1 / (2 cos(π/8)) and 1 / (2 cos(3π/8)).
const BUTTERWORTH_4_Q: [f32; 2] = [0.541_196_1, 1.306_563];

const MIN_DELAY_MS: f32 = 0.1;
const MAX_DELAY_MS: f32 = 10.0;
const MAX_FEEDBACK: f32 = 0.95;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FlangerSettings {
    /// Centre delay, ms (0.1..10).
    pub delay_ms: f32,
    /// Sweep depth 0..1.
    pub depth: f32,
    /// LFO rate, Hz (0 freezes the delay at `phase`).
    pub rate: f32,
    /// Feedback −0.95..0.95.
    pub feedback: f32,
    /// Wet share 0..1.
    pub mix: f32,
    /// 0 sine, 1 triangle.
    pub waveform: f32,
    /// LFO start phase 0..1.
    pub phase: f32,
    /// Cutoff of the wet path's low-pass, Hz (0: full band).
    pub lowpass_hz: f32,
}

impl Default for FlangerSettings {
    fn default() -> Self {
        Self {
            delay_ms: 3.0,
            depth: 0.7,
            rate: 0.25,
            feedback: 0.5,
            mix: 0.5,
            waveform: 1.0,
            phase: 0.0,
            lowpass_hz: 0.0,
        }
    }
}

impl FlangerSettings {
    pub fn set(&mut self, name: &str, v: f32) -> bool {
        match name {
            "delay_ms" => self.delay_ms = v,
            "depth" => self.depth = v,
            "rate" => self.rate = v,
            "feedback" => self.feedback = v,
            "mix" => self.mix = v,
            "waveform" => self.waveform = v,
            "phase" => self.phase = v,
            "lowpass_hz" => self.lowpass_hz = v,
            _ => return false,
        }
        true
    }
}

pub struct Flanger {
    line: Vec<f32>,
    write: usize,
    lfo: Lfo,
    last_lfo: f32,
    centre_samples: f32,
    swing_samples: f32,
    feedback: f32,
    mix: f32,
    /// The wet path's low-pass, when `lowpass_hz` > 0.
    lowpass: Option<[Biquad; 2]>,
    /// Its group delay at low frequencies, samples (0 without one), taken off every read.
    lowpass_delay: f32,
}

impl Flanger {
    pub fn new(sample_rate: f32, s: FlangerSettings) -> Self {
        let centre = s.delay_ms.clamp(MIN_DELAY_MS, MAX_DELAY_MS);
        let swing = s.depth.clamp(0.0, 1.0) * (centre - MIN_DELAY_MS).min(MAX_DELAY_MS - centre);
        let ms = sample_rate / 1000.0;
        let lowpass = (s.lowpass_hz > 0.0)
            .then(|| BUTTERWORTH_4_Q.map(|q| Biquad::new(Coefficients::lowpass(sample_rate, s.lowpass_hz, q))));
        let lowpass_delay =
            lowpass.map_or(0.0, |sections| sections.iter().map(|b| dc_group_delay(&b.coefficients)).sum());
        // Room for the longest delay plus the interpolator's two extra taps, rounded to a power of two for masking.
        let len = ((MAX_DELAY_MS * ms) as usize + 4).next_power_of_two();
        Self {
            line: vec![0.0; len],
            write: 0,
            lfo: Lfo::new(sample_rate, s.rate.max(0.0), Waveform::from_number(s.waveform), f64::from(s.phase)),
            last_lfo: 0.0,
            centre_samples: centre * ms,
            swing_samples: swing * ms,
            feedback: s.feedback.clamp(-MAX_FEEDBACK, MAX_FEEDBACK),
            mix: s.mix.clamp(0.0, 1.0),
            lowpass,
            lowpass_delay,
        }
    }

    /// The delay in samples for an LFO value.
    pub fn delay_samples(&self, lfo: f32) -> f32 {
        self.centre_samples + self.swing_samples * lfo
    }

    /// Cubic Hermite read `delay` samples behind the sample about to be written (delay ≥ 2, which the 0.1 ms
    /// minimum guarantees at any rate above 20 kHz).
    fn read(&self, delay: f32) -> f32 {
        let mask = self.line.len() - 1;
        let whole = delay.floor();
        let frac = delay - whole;
        let i = self.write.wrapping_sub(whole as usize);
        // y1 is `whole` samples back, y0 one newer, y2/y3 older.
        let y0 = self.line[i.wrapping_add(1) & mask];
        let y1 = self.line[i & mask];
        let y2 = self.line[i.wrapping_sub(1) & mask];
        let y3 = self.line[i.wrapping_sub(2) & mask];
        let c1 = 0.5 * (y2 - y0);
        let c2 = y0 - 2.5 * y1 + 2.0 * y2 - 0.5 * y3;
        let c3 = 0.5 * (y3 - y0) + 1.5 * (y1 - y2);
        ((c3 * frac + c2) * frac + c1) * frac + y1
    }
}

/// A biquad's group delay at 0 Hz, samples: for H = B/A, sum(n b_n) / sum(b_n) - sum(n a_n) / sum(a_n), a_0 = 1.
fn dc_group_delay(c: &Coefficients) -> f32 {
    (c.b1 + 2.0 * c.b2) / (c.b0 + c.b1 + c.b2) - (c.a1 + 2.0 * c.a2) / (1.0 + c.a1 + c.a2)
}

impl Teacher for Flanger {
    fn tick(&mut self, x: f32) -> f32 {
        self.last_lfo = self.lfo.value();
        self.lfo.advance();
        // The read stays ≥ 2 samples behind (the interpolator's need), even at a 0.1 ms delay less the filter's.
        let delayed = self.read((self.delay_samples(self.last_lfo) - self.lowpass_delay).max(2.0));
        let mask = self.line.len() - 1;
        let mut into_line = x + self.feedback * delayed;
        if let Some(sections) = &mut self.lowpass {
            into_line = sections.iter_mut().fold(into_line, |v, section| section.tick(v));
        }
        self.line[self.write & mask] = into_line;
        self.write = self.write.wrapping_add(1);
        (1.0 - self.mix) * x + self.mix * delayed
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

    fn frozen(delay_ms: f32, lfo_phase: f32, feedback: f32, mix: f32) -> Flanger {
        Flanger::new(
            SR,
            FlangerSettings { delay_ms, rate: 0.0, phase: lfo_phase, feedback, mix, depth: 1.0, ..Default::default() },
        )
    }

    fn correlation_peak_lag(input: &[f32], output: &[f32], max_lag: usize) -> usize {
        (0..max_lag)
            .max_by(|&a, &b| {
                let c = |lag: usize| input.iter().zip(&output[lag..]).map(|(x, y)| f64::from(x * y)).sum::<f64>();
                c(a).total_cmp(&c(b))
            })
            .unwrap()
    }

    #[test]
    fn flanger_delay_follows_the_lfo_between_min_and_max() {
        let input = noise(24_000, 5);
        // Centre 3 ms, depth 1: 0.1 ms at the LFO's bottom, 5.9 ms at its top.
        for (phase, expected_ms) in [(0.75, 0.1), (0.0, 3.0), (0.25, 5.9)] {
            let mut f = frozen(3.0, phase, 0.0, 1.0);
            let out: Vec<f32> = input.iter().map(|&x| f.tick(x)).collect();
            let lag = correlation_peak_lag(&input[..20_000], &out, 400);
            let expected = (expected_ms * SR / 1000.0).round() as usize;
            assert!(lag.abs_diff(expected) <= 1, "LFO phase {phase}: peak at {lag}, expected {expected}");
        }
        // And a running LFO visits both ends: the lag of short windows spans most of the range.
        let mut f =
            Flanger::new(SR, FlangerSettings { rate: 1.0, depth: 1.0, feedback: 0.0, mix: 1.0, ..Default::default() });
        let long = noise(48_000, 9);
        let out: Vec<f32> = long.iter().map(|&x| f.tick(x)).collect();
        let lags: Vec<usize> =
            (0..8).map(|k| k * 6000 + 2500).map(|s| correlation_peak_lag(&long[s..s + 1000], &out[s..], 300)).collect();
        let (lo, hi) = (lags.iter().min().unwrap(), lags.iter().max().unwrap());
        assert!(*lo < 40 && *hi > 240, "window lags {lags:?}");
    }

    #[test]
    fn flanger_feedback_below_one_stays_stable() {
        for feedback in [0.95, -0.95] {
            let mut f = Flanger::new(SR, FlangerSettings { feedback, rate: 3.0, depth: 1.0, ..Default::default() });
            let mut input = noise(48_000, 11);
            input.extend(std::iter::repeat_n(0.0, 96_000));
            let out: Vec<f32> = input.iter().map(|&x| f.tick(x)).collect();
            assert!(out.iter().all(|y| y.is_finite() && y.abs() < 20.0), "feedback {feedback} blew up");
            let tail = out[out.len() - 4800..].iter().fold(0.0f32, |m, y| m.max(y.abs()));
            assert!(tail < 1e-3, "feedback {feedback}: still ringing at {tail} after 2 s of silence");
        }
    }

    #[test]
    fn flanger_comb_notch_spacing_is_one_over_delay() {
        // 2.5 ms → notches at 200, 600, 1000 … Hz: spacing 400 Hz = 1 / 2.5 ms.
        let mut f = frozen(2.5, 0.0, 0.0, 0.5);
        let ir: Vec<f32> = (0..4096).map(|n| f.tick(if n == 0 { 1.0 } else { 0.0 })).collect();
        let mut notches = Vec::new();
        let mut previous = (f64::MAX, f64::MAX);
        for hz in (20..2000).map(|h| h as f32) {
            let m = response_magnitude(&ir, SR, hz);
            if previous.1 < previous.0 && previous.1 < m && previous.1 < 0.05 {
                notches.push(hz - 1.0);
            }
            previous = (previous.1, m);
        }
        assert!(notches.len() >= 4, "notches {notches:?}");
        for pair in notches.windows(2) {
            assert!((pair[1] - pair[0] - 400.0).abs() <= 2.0, "notches {notches:?}");
        }
        assert!((notches[0] - 200.0).abs() <= 2.0, "notches {notches:?}");
    }

    #[test]
    fn flanger_lowpass_keeps_the_delay_where_delay_ms_puts_it() {
        let input = noise(24_000, 5);
        for delay_ms in [0.25, 1.0] {
            let mut f = Flanger::new(
                SR,
                FlangerSettings {
                    delay_ms,
                    rate: 0.0,
                    depth: 0.0,
                    feedback: 0.0,
                    mix: 1.0,
                    lowpass_hz: 5000.0,
                    ..Default::default()
                },
            );
            let out: Vec<f32> = input.iter().map(|&x| f.tick(x)).collect();
            let lag = correlation_peak_lag(&input[..20_000], &out, 200);
            let expected = (delay_ms * SR / 1000.0).round() as usize;
            assert!(lag.abs_diff(expected) <= 1, "{delay_ms} ms: peak at {lag}, expected {expected}");
        }
    }

    #[test]
    fn flanger_lowpass_leaves_the_dry_signal_above_its_cutoff() {
        let settings = |lowpass_hz| FlangerSettings {
            delay_ms: 1.0,
            rate: 0.0,
            depth: 0.0,
            feedback: 0.5,
            mix: 0.5,
            lowpass_hz,
            ..Default::default()
        };
        let impulse_response = |lowpass_hz| {
            let mut f = Flanger::new(SR, settings(lowpass_hz));
            (0..8192).map(|n| f.tick(if n == 0 { 1.0 } else { 0.0 })).collect::<Vec<f32>>()
        };
        let (full, dark) = (impulse_response(0.0), impulse_response(5000.0));
        // The smallest and largest magnitude over a band, scanned every 25 Hz.
        let range = |ir: &[f32], from: u32, to: u32| {
            (from / 25..=to / 25)
                .map(|k| response_magnitude(ir, SR, (k * 25) as f32))
                .fold((f64::MAX, 0.0f64), |m, v| (m.0.min(v), m.1.max(v)))
        };
        // 1 ms with feedback 0.5: peaks of 1.5 and notches of 0.17 every kHz. Below the cutoff the low-passed comb
        // still swings as deep (the filter's phase only moves its teeth)...
        let (low, high) = range(&dark, 200, 2500);
        assert!(low < 0.25 && high > 1.3, "low-passed, 0.2-2.5 kHz: {low}..{high}");
        // ... and two octaves above it only the dry half is left, where the full-band comb swings as it does below.
        let (low, high) = range(&dark, 20_000, 22_000);
        assert!(low > 0.49 && high < 0.51, "low-passed, 20-22 kHz: {low}..{high}, expected the dry 0.5");
        let (low, high) = range(&full, 20_000, 22_000);
        assert!(low < 0.25 && high > 1.3, "full band, 20-22 kHz: {low}..{high}");
    }
}
