//! Teachers: classic DSP effects whose output the neural pedals are trained to imitate.
//!
//! They run offline over the guitar corpus (allocation is allowed when they are built), but each one is a streaming
//! per-sample processor ([`Teacher::tick`]) so it can run over files of any length and double as a real-time
//! reference effect. Every teacher is deterministic: the same input and settings give bit-identical output.
//!
//! Settings are plain `name=value` pairs (see [`build`]); [`KINDS`] and each kind's parameter list are what the
//! command line offers.

pub mod amp;
pub mod flanger;
pub mod opto;
pub mod phaser;

use std::f64::consts::TAU;

/// The teacher kinds [`build`] knows.
pub const KINDS: &[&str] = &["amp", "phaser", "flanger", "opto"];

/// A streaming teacher effect.
pub trait Teacher: Send {
    /// Processes one input sample and returns one output sample.
    fn tick(&mut self, x: f32) -> f32;

    /// The modulation value (−1..1) used for the sample just ticked, for teachers that have an LFO. The neural
    /// model of a modulation effect is fed this signal alongside the audio.
    fn lfo(&self) -> Option<f32> {
        None
    }

    /// The gain-reduction envelopes (dB, ≥ 0) behind the sample just ticked, for teachers whose gain is the larger
    /// of two (the opto's fast envelope and its slow memory). A neural model built the same way can be taught each
    /// one ([`Rendered::envelopes`]).
    fn envelopes_db(&self) -> Option<[f32; 2]> {
        None
    }

    /// Samples by which the output lags the input (oversampling filters); callers that need sample-aligned
    /// input/output pairs drop this many leading output samples.
    fn latency(&self) -> usize {
        0
    }
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum TeacherError {
    #[error("unknown teacher '{kind}' (valid: {})", KINDS.join(", "))]
    UnknownKind { kind: String },
    #[error("unknown parameter '{name}' for {kind} (valid: {})", valid.join(", "))]
    UnknownParam { kind: &'static str, name: String, valid: &'static [&'static str] },
    #[error("parameter '{name}': '{value}' is not a number{hint}")]
    BadValue { name: String, value: String, hint: &'static str },
}

/// What [`render`] gives: the output, and the side signals the teacher reports, one per input sample (empty for
/// teachers without them).
pub struct Rendered {
    pub output: Vec<f32>,
    /// The LFO value used for each sample (−1..1).
    pub lfo: Vec<f32>,
    /// The gain-reduction envelopes behind each sample (dB; [`Teacher::envelopes_db`]).
    pub envelopes: Vec<[f32; 2]>,
}

/// Runs `input` through `teacher`, latency compensated: output sample n answers input sample n, and the output has
/// the input's length. Also returns the side signals the teacher reports for each sample ([`Rendered`]).
pub fn render(teacher: &mut dyn Teacher, input: &[f32]) -> Rendered {
    let latency = teacher.latency();
    let mut output = Vec::with_capacity(input.len());
    // Teachers with side signals report them from the first sample on.
    let mut lfo = Vec::with_capacity(if teacher.lfo().is_some() { input.len() } else { 0 });
    let mut envelopes = Vec::with_capacity(if teacher.envelopes_db().is_some() { input.len() } else { 0 });
    // Feed `latency` extra zeros and drop as many leading outputs.
    for (n, &x) in input.iter().chain(std::iter::repeat_n(&0.0, latency)).enumerate() {
        let y = teacher.tick(x);
        if n >= latency {
            output.push(y);
        }
        if n < input.len() {
            if let Some(value) = teacher.lfo() {
                lfo.push(value);
            }
            if let Some(value) = teacher.envelopes_db() {
                envelopes.push(value);
            }
        }
    }
    Rendered { output, lfo, envelopes }
}

/// Builds a teacher of `kind` at `sample_rate` with `params` (name, value) applied over the defaults.
///
/// Values are numbers, except that `waveform` also accepts `sine` and `triangle`.
pub fn build(kind: &str, sample_rate: f32, params: &[(String, String)]) -> Result<Box<dyn Teacher>, TeacherError> {
    fn apply<S>(
        kind: &'static str,
        valid: &'static [&'static str],
        params: &[(String, String)],
        mut settings: S,
        set: fn(&mut S, &str, f32) -> bool,
    ) -> Result<S, TeacherError> {
        for (name, value) in params {
            let number = parse_value(name, value)?;
            if !set(&mut settings, name, number) {
                return Err(TeacherError::UnknownParam { kind, name: name.clone(), valid });
            }
        }
        Ok(settings)
    }
    Ok(match kind {
        "amp" => {
            let s = apply("amp", amp::PARAMS, params, amp::AmpSettings::default(), amp::AmpSettings::set)?;
            Box::new(amp::Amp::new(sample_rate, s))
        }
        "phaser" => {
            let s = apply(
                "phaser",
                phaser::PARAMS,
                params,
                phaser::PhaserSettings::default(),
                phaser::PhaserSettings::set,
            )?;
            Box::new(phaser::Phaser::new(sample_rate, s))
        }
        "flanger" => {
            let s = apply(
                "flanger",
                flanger::PARAMS,
                params,
                flanger::FlangerSettings::default(),
                flanger::FlangerSettings::set,
            )?;
            Box::new(flanger::Flanger::new(sample_rate, s))
        }
        "opto" => {
            let s = apply("opto", opto::PARAMS, params, opto::OptoSettings::default(), opto::OptoSettings::set)?;
            Box::new(opto::Opto::new(sample_rate, s))
        }
        _ => return Err(TeacherError::UnknownKind { kind: kind.to_owned() }),
    })
}

fn parse_value(name: &str, value: &str) -> Result<f32, TeacherError> {
    if name == "waveform" {
        match value {
            "sine" => return Ok(0.0),
            "triangle" => return Ok(1.0),
            _ => {}
        }
    }
    match value.trim().parse::<f32>() {
        Ok(v) if v.is_finite() => Ok(v),
        _ => Err(TeacherError::BadValue {
            name: name.to_owned(),
            value: value.to_owned(),
            hint: if name == "waveform" { " (use sine, triangle, 0 or 1)" } else { "" },
        }),
    }
}

/// LFO wave shapes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Waveform {
    Sine,
    Triangle,
}

impl Waveform {
    /// 0 → sine, anything else → triangle (the numeric form the `waveform` parameter takes).
    pub fn from_number(v: f32) -> Self {
        if v < 0.5 { Self::Sine } else { Self::Triangle }
    }
}

/// The low-frequency oscillator shared by the modulation teachers — and to be shared by the engine's modulation
/// pedals, so that the LFO a neural model was trained with is the LFO it is played with.
///
/// Definition (reproduce exactly): the phase `p` is an `f64` in `[0, 1)`, starting at `start_phase`, advanced by
/// `rate / sample_rate` per sample and wrapped by subtracting 1. The value is `sin(2π p)` for the sine and, for the
/// triangle, `4p` below ¼, `2 − 4p` up to ¾ and `4p − 4` after — the same zero crossings and peaks as the sine.
/// A sample uses [`Lfo::value`] first and then calls [`Lfo::advance`]. The phase is `f64` because an `f32` phase
/// accumulator drifts audibly over the hours of corpus it runs for.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Lfo {
    phase: f64,
    increment: f64,
    waveform: Waveform,
}

impl Lfo {
    pub fn new(sample_rate: f32, rate_hz: f32, waveform: Waveform, start_phase: f64) -> Self {
        Self { phase: start_phase.rem_euclid(1.0), increment: f64::from(rate_hz) / f64::from(sample_rate), waveform }
    }

    /// The current value, −1..1.
    pub fn value(&self) -> f32 {
        Self::shape(self.waveform, self.phase)
    }

    /// The value of `waveform` at `phase` (0..1), as [`Lfo::value`] computes it.
    pub fn shape(waveform: Waveform, phase: f64) -> f32 {
        let p = phase;
        let v = match waveform {
            Waveform::Sine => (TAU * p).sin(),
            Waveform::Triangle if p < 0.25 => 4.0 * p,
            Waveform::Triangle if p < 0.75 => 2.0 - 4.0 * p,
            Waveform::Triangle => 4.0 * p - 4.0,
        };
        v as f32
    }

    /// Changes the rate from the next [`Lfo::advance`] on, keeping the phase (no jump in the value).
    pub fn set_rate(&mut self, sample_rate: f32, rate_hz: f32) {
        self.increment = f64::from(rate_hz) / f64::from(sample_rate);
    }

    /// Goes back to phase 0, where both waveforms are 0: the LFO value a prewarmed model has seen.
    pub fn restart(&mut self) {
        self.phase = 0.0;
    }

    /// Moves on by one sample.
    pub fn advance(&mut self) {
        self.phase += self.increment;
        if self.phase >= 1.0 {
            self.phase -= 1.0;
        }
    }

    pub fn phase(&self) -> f64 {
        self.phase
    }
}

/// Test helpers shared by the teachers' and the cabinet model's tests.
#[cfg(test)]
pub(crate) mod testing {
    /// Amplitude of the component at `frequency` in `signal`, by a single-bin DFT (exact when the signal holds a
    /// whole number of its periods).
    pub fn tone_amplitude(signal: &[f32], sample_rate: f32, frequency: f32) -> f32 {
        let w = std::f64::consts::TAU * f64::from(frequency) / f64::from(sample_rate);
        let (mut re, mut im) = (0.0f64, 0.0f64);
        for (n, &x) in signal.iter().enumerate() {
            let phase = w * n as f64;
            re += f64::from(x) * phase.cos();
            im -= f64::from(x) * phase.sin();
        }
        (2.0 * (re * re + im * im).sqrt() / signal.len() as f64) as f32
    }

    /// Magnitude of the frequency response at `frequency` of an impulse response.
    pub fn response_magnitude(impulse_response: &[f32], sample_rate: f32, frequency: f32) -> f64 {
        let w = std::f64::consts::TAU * f64::from(frequency) / f64::from(sample_rate);
        let (mut re, mut im) = (0.0f64, 0.0f64);
        for (n, &x) in impulse_response.iter().enumerate() {
            re += f64::from(x) * (w * n as f64).cos();
            im -= f64::from(x) * (w * n as f64).sin();
        }
        (re * re + im * im).sqrt()
    }

    pub fn sine(sample_rate: f32, frequency: f32, amplitude: f32, samples: usize) -> Vec<f32> {
        let w = std::f64::consts::TAU * f64::from(frequency) / f64::from(sample_rate);
        (0..samples).map(|n| (amplitude as f64 * (w * n as f64).sin()) as f32).collect()
    }

    /// Deterministic white noise in −1..1 (xorshift).
    pub fn noise(samples: usize, seed: u64) -> Vec<f32> {
        let mut state = seed.max(1);
        (0..samples)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                (state >> 40) as f32 / (1u64 << 23) as f32 - 1.0
            })
            .collect()
    }

    pub fn db(x: f32) -> f32 {
        20.0 * x.max(1e-12).log10()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn teacher_same_input_and_params_give_identical_output() {
        let input: Vec<f32> = testing::noise(48_000, 7).iter().map(|x| x * 0.5).collect();
        for kind in KINDS {
            let run = || {
                let mut t = build(kind, 48_000.0, &[]).unwrap();
                input.iter().map(|&x| t.tick(x).to_bits()).collect::<Vec<u32>>()
            };
            assert_eq!(run(), run(), "{kind} is not deterministic");
        }
    }

    #[test]
    fn teacher_unknown_kind_or_param_lists_the_valid_ones() {
        let e = build("wah", 48_000.0, &[]).err().unwrap().to_string();
        assert!(e.contains("amp, phaser, flanger, opto"), "{e}");
        let e = build("phaser", 48_000.0, &[("colour".into(), "1".into())]).err().unwrap().to_string();
        assert!(e.contains("stages") && e.contains("colour"), "{e}");
        assert!(build("phaser", 48_000.0, &[("waveform".into(), "triangle".into())]).is_ok());
    }

    #[test]
    fn teacher_lfo_triangle_and_sine_share_peaks_and_zero_crossings() {
        for (phase, expected) in [(0.0, 0.0), (0.25, 1.0), (0.5, 0.0), (0.75, -1.0)] {
            for waveform in [Waveform::Sine, Waveform::Triangle] {
                let lfo = Lfo::new(48_000.0, 1.0, waveform, phase);
                assert!((lfo.value() - expected).abs() < 1e-6, "{waveform:?} at {phase}");
            }
        }
    }
}
