//! Shared helpers for Neuralboard's end-to-end tests: test signals, level and click measurements, and a runner
//! that plays a whole buffer through an [`Engine`] the way an audio callback would.
//!
//! Everything here runs off the audio thread and may allocate freely. The signal generators are deterministic
//! (no global random state), so a failing test fails the same way every time.

pub mod alloc_counter;

use std::f32::consts::TAU;

use neuralboard_engine::param::{db_to_gain, gain_to_db};
use neuralboard_engine::preset::PresetSlot;
use neuralboard_engine::{Engine, Preset};

/// Sample rate every end-to-end test runs at, in Hz.
pub const SAMPLE_RATE: f32 = 48_000.0;

/// Number of samples in `seconds` at [`SAMPLE_RATE`].
pub fn frames(seconds: f32) -> usize {
    (seconds * SAMPLE_RATE).round() as usize
}

/// A sine of `frequency_hz` with peak `amplitude` (linear), `len` samples long, starting at phase 0.
pub fn sine(frequency_hz: f32, amplitude: f32, len: usize) -> Vec<f32> {
    sine_from(frequency_hz, amplitude, 0, len)
}

/// `len` samples of a sine that started at sample 0, beginning at sample `start`: consecutive calls with
/// `start` advancing by `len` join without a discontinuity.
pub fn sine_from(frequency_hz: f32, amplitude: f32, start: usize, len: usize) -> Vec<f32> {
    // The phase is reduced in f64 so a long signal keeps its exact pitch.
    let per_sample = f64::from(frequency_hz) / f64::from(SAMPLE_RATE);
    (start..start + len)
        .map(|i| {
            let cycles = (i as f64 * per_sample).fract();
            amplitude * (TAU * cycles as f32).sin()
        })
        .collect()
}

/// A square wave of `frequency_hz` alternating between `+amplitude` and `-amplitude`, `len` samples long.
pub fn square(frequency_hz: f32, amplitude: f32, len: usize) -> Vec<f32> {
    let per_sample = f64::from(frequency_hz) / f64::from(SAMPLE_RATE);
    (0..len).map(|i| if (i as f64 * per_sample).fract() < 0.5 { amplitude } else { -amplitude }).collect()
}

/// A small deterministic pseudo-random generator (xorshift32) for noise: not for anything but test signals.
#[derive(Debug, Clone)]
pub struct Noise(u32);

impl Noise {
    /// A generator from a seed; a zero seed is replaced, as xorshift would stay at zero forever.
    pub fn new(seed: u32) -> Self {
        Self(if seed == 0 { 0x9E37_79B9 } else { seed })
    }

    /// The next value, uniform in -1..1.
    pub fn next_sample(&mut self) -> f32 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        self.0 = x;
        (x as f32 / u32::MAX as f32) * 2.0 - 1.0
    }
}

/// A guitar-like test signal: plucked notes (a fundamental with decaying harmonics and a fast attack) separated
/// by gaps of low-level hiss, as a player's DI track looks to a noise gate or a tuner.
///
/// Each note lasts `note_seconds`, each gap `gap_seconds`; notes walk up the open strings of a guitar in
/// standard tuning. Peaks stay around -6 dBFS, the hiss around -66 dBFS.
pub fn guitar_like(seconds: f32, note_seconds: f32, gap_seconds: f32, seed: u32) -> Vec<f32> {
    const STRINGS_HZ: [f32; 6] = [82.41, 110.0, 146.83, 196.0, 246.94, 329.63];
    let len = frames(seconds);
    let note_len = frames(note_seconds).max(1);
    let period = note_len + frames(gap_seconds);
    let hiss = db_to_gain(-66.0);
    let mut noise = Noise::new(seed);
    (0..len)
        .map(|i| {
            let mut x = hiss * noise.next_sample();
            let (note, at) = (i / period, i % period);
            if at < note_len {
                let f = STRINGS_HZ[note % STRINGS_HZ.len()];
                let t = at as f32 / SAMPLE_RATE;
                let attack = (t / 0.002).min(1.0);
                let mut tone = 0.0;
                for harmonic in 1..=6 {
                    let h = harmonic as f32;
                    // Higher partials are weaker and die away sooner, as on a real string.
                    let decay = (-t * (2.0 + h) / note_seconds).exp();
                    tone += (TAU * f * h * t).sin() * decay / h;
                }
                x += 0.3 * attack * tone;
            }
            x
        })
        .collect()
}

/// Largest absolute sample (linear).
pub fn peak(signal: &[f32]) -> f32 {
    signal.iter().fold(0.0f32, |m, x| m.max(x.abs()))
}

/// Largest absolute difference between consecutive samples: a click or a hard switch shows up as a step far
/// larger than the signal's own slope.
pub fn max_step(signal: &[f32]) -> f32 {
    signal.windows(2).fold(0.0f32, |m, w| m.max((w[1] - w[0]).abs()))
}

/// Index of the (first) largest step: the sample after it. For failure messages.
pub fn max_step_at(signal: &[f32]) -> usize {
    let mut at = (0, 0.0f32);
    for (i, w) in signal.windows(2).enumerate() {
        let step = (w[1] - w[0]).abs();
        if step > at.1 {
            at = (i + 1, step);
        }
    }
    at.0
}

/// How fast the gain from `input` to `output` changes: the largest change of `output[i] / input[i]` per sample,
/// measured between consecutive samples where the input is above `min_level` (near zero crossings the ratio
/// means nothing). A crossfade over `n` samples between gains `a` and `b` slews at `|a - b| / n`; a hard switch
/// slews by the whole difference at once.
pub fn max_gain_slew(input: &[f32], output: &[f32], min_level: f32) -> f32 {
    let mut previous: Option<(usize, f32)> = None;
    let mut slew = 0.0f32;
    for (i, (&x, &y)) in input.iter().zip(output).enumerate() {
        if x.abs() < min_level {
            continue;
        }
        let gain = y / x;
        if let Some((j, g)) = previous {
            slew = slew.max((gain - g).abs() / (i - j) as f32);
        }
        previous = Some((i, gain));
    }
    slew
}

/// Root-mean-square level in dBFS (a full-scale sine reads about -3 dB; silence reads -200 dB).
pub fn rms_db(signal: &[f32]) -> f32 {
    if signal.is_empty() {
        return gain_to_db(0.0);
    }
    let sum: f64 = signal.iter().map(|&x| f64::from(x) * f64::from(x)).sum();
    gain_to_db((sum / signal.len() as f64).sqrt() as f32)
}

/// Panics unless every sample is finite and within full scale (0 dBFS): what the sound card may be given.
pub fn assert_playable(what: &str, signal: &[f32]) {
    if let Some((i, x)) = signal.iter().enumerate().find(|(_, x)| !x.is_finite() || x.abs() > 1.0) {
        panic!("{what}: sample {i} is {x}, outside 0 dBFS");
    }
}

/// One pedal of a test preset: its kind, whether it starts bypassed, and parameter values by id (the others
/// take their defaults).
pub type PedalEntry<'a> = (&'a str, bool, &'a [(&'a str, f32)]);

/// A preset entry for one pedal (see [`PedalEntry`]).
pub fn preset_slot((kind, bypass, params): PedalEntry) -> PresetSlot {
    PresetSlot { bypass, params: params.iter().map(|&(id, v)| (id.to_owned(), v)).collect(), ..PresetSlot::new(kind) }
}

/// A preset with the given global levels and chain, as a player would save it.
pub fn preset(name: &str, input_gain_db: f32, output_level_db: f32, chain: &[PedalEntry]) -> Preset {
    Preset {
        input_gain_db,
        output_level_db,
        chain: chain.iter().copied().map(preset_slot).collect(),
        ..Preset::empty(name)
    }
}

/// The two output channels of a render.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Stereo {
    pub left: Vec<f32>,
    pub right: Vec<f32>,
}

/// Plays `input` through `engine` in consecutive blocks whose sizes cycle through `block_sizes`, like an audio
/// callback, and returns the whole output. Every output block is checked with [`assert_playable`].
pub fn render(engine: &mut Engine, input: &[f32], block_sizes: &[usize]) -> Stereo {
    render_with(engine, input, block_sizes, |_, _| {})
}

/// Like [`render`], calling `before_block(block_index, first_sample)` before each block: the place to send
/// commands at a known moment of the signal, or to poll the controller.
pub fn render_with(
    engine: &mut Engine,
    input: &[f32],
    block_sizes: &[usize],
    mut before_block: impl FnMut(usize, usize),
) -> Stereo {
    assert!(!block_sizes.is_empty() && block_sizes.iter().all(|&n| n > 0), "block sizes must be positive");
    let mut out = Stereo { left: vec![0.0; input.len()], right: vec![0.0; input.len()] };
    let mut offset = 0;
    for (index, &size) in block_sizes.iter().cycle().enumerate() {
        if offset >= input.len() {
            break;
        }
        let end = (offset + size).min(input.len());
        before_block(index, offset);
        engine.process(&input[offset..end], &mut out.left[offset..end], &mut out.right[offset..end]);
        assert_playable("left output", &out.left[offset..end]);
        assert_playable("right output", &out.right[offset..end]);
        offset = end;
    }
    out
}

/// A model file for a pedal kind that plays one, for tests that need every kind on the board.
///
/// The amp uses the reference project's slimmable A2 capture when `../shared/fixtures/nam` is beside the repository
/// (it exercises the size knob too); otherwise a small WaveNet written here. Files are written under the system
/// temporary folder. `None` for kinds that need no file.
pub fn model_file_for(kind: &str) -> Option<std::path::PathBuf> {
    let dir = std::env::temp_dir().join(format!("neuralboard-test-models-{}", std::process::id()));
    std::fs::create_dir_all(&dir).ok()?;
    match kind {
        "amp" => {
            let shared = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/fixtures/nam/A2.nam");
            if shared.is_file() {
                return Some(shared);
            }
            let path = dir.join("tiny-wavenet.nam");
            std::fs::write(&path, tiny_wavenet_json()).ok()?;
            Some(path)
        }
        "cab" => {
            let path = dir.join("tiny-cab.wav");
            let spec = hound::WavSpec {
                channels: 1,
                sample_rate: 48_000,
                bits_per_sample: 32,
                sample_format: hound::SampleFormat::Float,
            };
            let mut writer = hound::WavWriter::create(&path, spec).ok()?;
            let mut noise = Noise::new(99);
            for i in 0..4800 {
                let decay = (-(i as f32) / 600.0).exp();
                writer.write_sample(if i == 0 { 1.0 } else { 0.3 * decay * noise.next_sample() }).ok()?;
            }
            writer.finalize().ok()?;
            Some(path)
        }
        _ => None,
    }
}

/// A two-layer, two-channel WaveNet in the `.nam` format (50 weights), deterministic.
pub fn tiny_wavenet_json() -> String {
    let weights: Vec<String> = (0..50).map(|i| format!("{:.6}", 0.3 * (i as f32 * 1.7).sin())).collect();
    format!(
        r#"{{"version": "0.5.4", "architecture": "WaveNet", "sample_rate": 48000,
            "config": {{"layers": [{{"input_size": 1, "condition_size": 1, "head_size": 1, "channels": 2,
                "kernel_size": 3, "dilations": [1, 2], "activation": "Tanh", "gated": false, "head_bias": true}}],
                "head": null, "head_scale": 0.02}},
            "weights": [{}]}}"#,
        weights.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sine_has_the_expected_peak_rms_and_slope() {
        let s = sine(1000.0, 0.5, frames(0.1));
        assert!((peak(&s) - 0.5).abs() < 1e-6);
        assert!((rms_db(&s) - (gain_to_db(0.5) - 3.0103)).abs() < 0.01);
        let slope = 0.5 * 2.0 * (std::f32::consts::PI * 1000.0 / SAMPLE_RATE).sin();
        // The sampled sine's steepest step is a little under the continuous slope bound.
        assert!(max_step(&s) <= slope && max_step(&s) > 0.99 * slope, "{} vs {slope}", max_step(&s));
    }

    #[test]
    fn sine_pieces_join_without_a_step() {
        let whole = sine(440.0, 1.0, 1000);
        let mut joined = sine_from(440.0, 1.0, 0, 300);
        joined.extend(sine_from(440.0, 1.0, 300, 700));
        assert!(whole.iter().zip(&joined).all(|(a, b)| (a - b).abs() < 1e-5));
    }

    #[test]
    fn the_guitar_signal_has_notes_and_quiet_gaps() {
        let g = guitar_like(1.0, 0.3, 0.2, 7);
        let note = &g[..frames(0.3)];
        let gap = &g[frames(0.35)..frames(0.5)];
        assert!(peak(note) > 0.2 && peak(note) < 0.6, "note peak {}", peak(note));
        assert!(rms_db(gap) < -60.0, "gap {} dB", rms_db(gap));
        assert_eq!(g, guitar_like(1.0, 0.3, 0.2, 7), "deterministic");
    }

    #[test]
    fn gain_slew_tells_a_ramp_from_a_jump() {
        let input = sine(440.0, 0.5, 2000);
        let ramp: Vec<f32> = input.iter().enumerate().map(|(i, x)| x * (i as f32 / 2000.0)).collect();
        assert!((max_gain_slew(&input, &ramp, 0.05) - 1.0 / 2000.0).abs() < 1e-5);
        let jump: Vec<f32> = input.iter().enumerate().map(|(i, x)| if i < 1000 { *x } else { 2.0 * x }).collect();
        assert!(max_gain_slew(&input, &jump, 0.05) > 0.05);
    }

    #[test]
    fn max_step_finds_a_click() {
        let mut s = vec![0.0; 100];
        s[40] = 0.5;
        assert_eq!(max_step(&s), 0.5);
        assert_eq!(max_step_at(&s), 40);
    }
}
