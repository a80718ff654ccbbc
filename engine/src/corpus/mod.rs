//! A guitar DI corpus made without downloads: physically modelled strings played like a guitarist would.
//!
//! Training data for every neural pedal, and the demo loop when a player has no input device. A seed fully
//! determines the audio, so train/validation/test splits are simply disjoint seeds. What it contains, in phrases
//! of a few seconds: single-note melodies in a key, sustained chords, strummed rhythms, palm-muted riffs, bends
//! and vibrato, dynamics from pp to ff, silences with the small hum and hiss of a real DI, and test signals (log
//! sweeps and noise bursts) so models also see the whole spectrum.
//!
//! The instrument: six [`string::GuitarString`] waveguides in standard tuning, a pickup (its position per
//! "guitar", and the resonant low-pass of a magnetic pickup loaded by a cable), and a hint of body resonance.

pub mod rng;
pub mod string;

use rng::Rng;
use string::{GuitarString, PitchMotion, Pluck};

use crate::dsp::biquad::{Biquad, Coefficients};

/// Open strings of standard tuning, low to high (MIDI notes E2 A2 D3 G3 B3 E4).
pub const STANDARD_TUNING: [u8; 6] = [40, 45, 50, 55, 59, 64];
/// Peak level the corpus is normalised below, leaving headroom like a sensible interface gain.
const PEAK_CEILING: f32 = 0.89;
/// DI noise floor: hiss and mains hum, peak dBFS.
const HISS_DB: f32 = -84.0;
const HUM_DB: f32 = -78.0;

/// What to generate.
#[derive(Debug, Clone, PartialEq)]
pub struct CorpusSpec {
    pub seed: u64,
    pub seconds: f32,
    pub sample_rate: f32,
    /// Include log sweeps and noise bursts among the phrases.
    pub test_signals: bool,
}

impl CorpusSpec {
    pub fn new(seed: u64, seconds: f32) -> Self {
        Self { seed, seconds, sample_rate: 48_000.0, test_signals: true }
    }
}

/// The kinds of phrase a corpus is made of (for the phrase log and the tests).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PhraseKind {
    Melody,
    Chords,
    Strumming,
    PalmMutes,
    Lead,
    Silence,
    Sweep,
    NoiseBurst,
}

/// One phrase as placed in the corpus.
#[derive(Debug, Clone, PartialEq)]
pub struct Phrase {
    pub kind: PhraseKind,
    pub start_s: f32,
    pub end_s: f32,
    /// 0..1, pianissimo to fortissimo.
    pub dynamics: f32,
}

/// A generated corpus.
#[derive(Debug, Clone)]
pub struct Corpus {
    pub samples: Vec<f32>,
    pub sample_rate: f32,
    pub phrases: Vec<Phrase>,
}

/// A note event on one string.
#[derive(Debug, Clone, Copy)]
struct NoteEvent {
    at: usize,
    string: usize,
    fret: u8,
    velocity: f32,
    t60_s: f32,
    damping: f32,
    motion: PitchMotion,
    /// Sample at which the fretting hand lets go (None: rings until the next note on that string).
    release_at: Option<usize>,
}

/// Scales as semitone offsets from the root.
const SCALES: [&[u8]; 5] = [
    &[0, 3, 5, 7, 10],       // minor pentatonic
    &[0, 2, 4, 7, 9],        // major pentatonic
    &[0, 2, 4, 5, 7, 9, 11], // major
    &[0, 2, 3, 5, 7, 8, 10], // natural minor
    &[0, 3, 5, 6, 7, 10],    // blues
];

/// Chord shapes: fret per string, low E to high E (-1 = not played), moved up the neck by an offset.
const CHORD_SHAPES: [[i8; 6]; 9] = [
    [0, 2, 2, 1, 0, 0],    // E major (barre shape)
    [0, 2, 2, 0, 0, 0],    // E minor
    [-1, 0, 2, 2, 2, 0],   // A major
    [-1, 0, 2, 2, 1, 0],   // A minor
    [-1, -1, 0, 2, 3, 2],  // D major
    [3, 2, 0, 0, 0, 3],    // G major
    [-1, 3, 2, 0, 1, 0],   // C major
    [0, 2, 2, -1, -1, -1], // E5 power chord
    [-1, 0, 2, 2, -1, -1], // A5 power chord
];

fn midi_to_hz(note: f32) -> f32 {
    440.0 * 2f32.powf((note - 69.0) / 12.0)
}

/// Generates a corpus. Deterministic: the same spec gives the same samples on every platform.
pub fn generate(spec: &CorpusSpec) -> Corpus {
    let sr = spec.sample_rate;
    let total = (spec.seconds.max(0.0) * sr) as usize;
    let mut rng = Rng::new(spec.seed);
    let mut events = Vec::new();
    let mut phrases = Vec::new();
    let mut extra = vec![0.0f32; total]; // test signals, added after the instrument
    let mut t = 0usize;
    // Start with a short silence: models (and the trainer) want pre-roll.
    let lead_in = (0.5 * sr) as usize;
    phrases.push(Phrase { kind: PhraseKind::Silence, start_s: 0.0, end_s: lead_in as f32 / sr, dynamics: 0.0 });
    t += lead_in;

    while t < total {
        let weights = if spec.test_signals {
            [3.0, 2.0, 2.5, 2.0, 2.0, 1.0, 0.5, 0.4]
        } else {
            [3.0, 2.0, 2.5, 2.0, 2.0, 1.0, 0.0, 0.0]
        };
        let kind = [
            PhraseKind::Melody,
            PhraseKind::Chords,
            PhraseKind::Strumming,
            PhraseKind::PalmMutes,
            PhraseKind::Lead,
            PhraseKind::Silence,
            PhraseKind::Sweep,
            PhraseKind::NoiseBurst,
        ][rng.weighted(&weights)];
        let dynamics = rng.unit();
        let length = match kind {
            PhraseKind::Silence => rng.uniform(0.3, 2.0),
            PhraseKind::Sweep => rng.uniform(2.0, 4.0),
            PhraseKind::NoiseBurst => rng.uniform(0.5, 1.5),
            _ => rng.uniform(3.0, 8.0),
        };
        let len = ((length * sr) as usize).min(total - t);
        let end = t + len;
        match kind {
            PhraseKind::Melody => melody(&mut rng, &mut events, t, end, sr, dynamics, false),
            PhraseKind::Lead => melody(&mut rng, &mut events, t, end, sr, dynamics, true),
            PhraseKind::Chords => chords(&mut rng, &mut events, t, end, sr, dynamics, false),
            PhraseKind::Strumming => chords(&mut rng, &mut events, t, end, sr, dynamics, true),
            PhraseKind::PalmMutes => palm_mutes(&mut rng, &mut events, t, end, sr, dynamics),
            PhraseKind::Silence => {}
            PhraseKind::Sweep => sweep(&mut rng, &mut extra[t..end], sr, dynamics),
            PhraseKind::NoiseBurst => noise_bursts(&mut rng, &mut extra[t..end], sr, dynamics),
        }
        // Every phrase ends with the strings let go, so phrases do not bleed into silences and test signals.
        for string in 0..6 {
            events.push(NoteEvent {
                at: end.saturating_sub(1),
                string,
                fret: 0,
                velocity: 0.0,
                t60_s: 0.0,
                damping: 0.0,
                motion: PitchMotion::default(),
                release_at: Some(end.saturating_sub(1)),
            });
        }
        phrases.push(Phrase { kind, start_s: t as f32 / sr, end_s: end as f32 / sr, dynamics });
        t = end;
    }

    let mut samples = perform(&mut rng, &events, total, sr);
    for (s, e) in samples.iter_mut().zip(&extra) {
        *s += e;
    }
    add_noise_floor(&mut rng, &mut samples, sr);
    let peak = samples.iter().fold(0.0f32, |m, x| m.max(x.abs()));
    if peak > PEAK_CEILING {
        let g = PEAK_CEILING / peak;
        samples.iter_mut().for_each(|x| *x *= g);
    }
    Corpus { samples, sample_rate: sr, phrases }
}

/// Plays the note events on six strings, then through pickup and body.
fn perform(rng: &mut Rng, events: &[NoteEvent], total: usize, sr: f32) -> Vec<f32> {
    let mut events: Vec<NoteEvent> = events.to_vec();
    events.sort_by_key(|e| e.at);
    // One "guitar" per corpus: pickup position and its electrical resonance, body modes.
    let pickup_position = rng.uniform(0.08, 0.25);
    let mut strings: Vec<GuitarString> = (0..6).map(|_| GuitarString::new(sr, pickup_position)).collect();
    let mut pickup = Biquad::new(Coefficients::lowpass(sr, rng.uniform(2500.0, 5500.0), rng.uniform(0.9, 2.0)));
    let mut body1 = Biquad::new(Coefficients::peaking(sr, rng.uniform(90.0, 250.0), 2.0, rng.uniform(1.0, 3.0)));
    let mut body2 = Biquad::new(Coefficients::peaking(sr, rng.uniform(400.0, 800.0), 1.5, rng.uniform(-2.0, 2.0)));
    let mut dc = Biquad::new(Coefficients::highpass(sr, 30.0, std::f32::consts::FRAC_1_SQRT_2));

    let mut releases: Vec<(usize, usize)> = Vec::new(); // (sample, string)
    let mut next = 0;
    let mut out = vec![0.0f32; total];
    for (i, sample) in out.iter_mut().enumerate() {
        while next < events.len() && events[next].at <= i {
            let e = events[next];
            next += 1;
            if e.velocity <= 0.0 {
                strings[e.string].release();
                continue;
            }
            let note = STANDARD_TUNING[e.string] as f32 + e.fret as f32;
            let pluck = Pluck {
                frequency_hz: midi_to_hz(note),
                velocity: e.velocity,
                pick_position: rng.uniform(0.06, 0.3),
                t60_s: e.t60_s,
                damping: e.damping,
            };
            strings[e.string].pluck(pluck, e.motion, rng);
            if let Some(at) = e.release_at {
                releases.push((at, e.string));
            }
        }
        releases.retain(|&(at, string)| {
            if at <= i {
                strings[string].release();
                false
            } else {
                true
            }
        });
        let mix: f32 = strings.iter_mut().map(GuitarString::tick).sum();
        *sample = dc.tick(body2.tick(body1.tick(pickup.tick(mix * 0.5))));
    }
    out
}

fn beat_samples(rng: &mut Rng, sr: f32) -> f32 {
    let bpm = rng.uniform(70.0, 180.0);
    60.0 / bpm * sr
}

/// Fret on `string` that plays `note`, if reachable (0..=19).
fn fret_for(note: i32, string: usize) -> Option<u8> {
    let fret = note - STANDARD_TUNING[string] as i32;
    (0..=19).contains(&fret).then_some(fret as u8)
}

fn melody(rng: &mut Rng, events: &mut Vec<NoteEvent>, start: usize, end: usize, sr: f32, dynamics: f32, lead: bool) {
    let root = 40 + rng.range(0, 12) as i32;
    let scale = *rng.pick(&SCALES);
    let beat = beat_samples(rng, sr);
    let position = rng.range(0, 12) as i32; // hand position on the neck
    let mut at = start as f32;
    while (at as usize) < end {
        let division = *rng.pick(&[1.0, 0.5, 0.5, 0.25, 1.0 / 3.0, 2.0]);
        let step = beat * division;
        if rng.chance(0.15) {
            at += step; // a rest
            continue;
        }
        // A note of the scale near the hand position, on a string that can reach it.
        let string = rng.range(0, 6);
        let fret_guess = position + rng.range(0, 5) as i32;
        let wanted = STANDARD_TUNING[string] as i32 + fret_guess;
        let degree = (wanted - root).rem_euclid(12);
        let snapped = scale.iter().map(|&s| s as i32).min_by_key(|s| (s - degree).abs()).unwrap_or(0);
        let note = wanted - degree + snapped;
        let Some(fret) = fret_for(note, string) else {
            at += step;
            continue;
        };
        let velocity = (dynamics + rng.uniform(-0.1, 0.1)).clamp(0.05, 1.0);
        let mut motion = PitchMotion::default();
        if lead && rng.chance(0.35) {
            motion.bend_semitones = *rng.pick(&[1.0, 2.0, 2.0, 3.0]);
            motion.bend_start_s = rng.uniform(0.02, 0.2);
            motion.bend_time_s = rng.uniform(0.08, 0.3);
        }
        if lead && rng.chance(0.5) {
            motion.vibrato_semitones = rng.uniform(0.1, 0.5);
            motion.vibrato_hz = rng.uniform(4.5, 7.0);
            motion.vibrato_start_s = rng.uniform(0.1, 0.4);
        }
        let legato = rng.uniform(0.6, 1.0);
        events.push(NoteEvent {
            at: at as usize,
            string,
            fret,
            velocity,
            t60_s: rng.uniform(1.5, 5.0),
            damping: rng.uniform(0.1, 0.5),
            motion,
            release_at: Some(((at + step * legato * if lead { 2.0 } else { 1.0 }) as usize).min(end)),
        });
        at += step;
    }
}

fn chords(rng: &mut Rng, events: &mut Vec<NoteEvent>, start: usize, end: usize, sr: f32, dynamics: f32, strum: bool) {
    let beat = beat_samples(rng, sr);
    let mut at = start as f32;
    let mut down = true;
    let mut shape = *rng.pick(&CHORD_SHAPES);
    let mut offset = rng.range(0, 8) as i8;
    while (at as usize) < end {
        if !strum || rng.chance(0.3) {
            shape = *rng.pick(&CHORD_SHAPES);
            offset = rng.range(0, 8) as i8;
        }
        let division = if strum { *rng.pick(&[0.5, 0.5, 0.25, 1.0]) } else { *rng.pick(&[2.0, 4.0]) };
        let step = beat * division;
        let spread = rng.uniform(0.004, 0.03) * sr; // time between strings in a strum
        let velocity = (dynamics + rng.uniform(-0.1, 0.1) - if down { 0.0 } else { 0.1 }).clamp(0.05, 1.0);
        let order: Vec<usize> = if down { (0..6).collect() } else { (0..6).rev().collect() };
        for (k, &string) in order.iter().enumerate() {
            if shape[string] < 0 {
                continue;
            }
            events.push(NoteEvent {
                at: (at + k as f32 * spread) as usize,
                string,
                fret: (shape[string] + offset) as u8,
                velocity: (velocity - 0.02 * k as f32).clamp(0.05, 1.0),
                t60_s: rng.uniform(2.0, 6.0),
                damping: rng.uniform(0.15, 0.45),
                motion: PitchMotion::default(),
                release_at: Some(((at + step * rng.uniform(0.7, 1.0)) as usize).min(end)),
            });
        }
        down = if strum { !down } else { true };
        at += step;
    }
}

fn palm_mutes(rng: &mut Rng, events: &mut Vec<NoteEvent>, start: usize, end: usize, sr: f32, dynamics: f32) {
    let beat = beat_samples(rng, sr);
    let mut at = start as f32;
    let power_chord = rng.chance(0.5);
    let root_fret = rng.range(0, 8) as u8;
    while (at as usize) < end {
        let step = beat * *rng.pick(&[0.25, 0.25, 0.5]);
        let velocity = (dynamics + rng.uniform(-0.15, 0.1)).clamp(0.05, 1.0);
        let strings: &[usize] = if power_chord { &[0, 1] } else { &[0] };
        for &string in strings {
            events.push(NoteEvent {
                at: at as usize,
                string,
                fret: root_fret + if string == 1 { 2 } else { 0 },
                velocity,
                t60_s: rng.uniform(0.08, 0.3),
                damping: rng.uniform(0.7, 1.0),
                motion: PitchMotion::default(),
                release_at: Some(((at + step * 0.9) as usize).min(end)),
            });
        }
        at += step;
    }
}

/// A logarithmic sine sweep across the audio band, faded in and out.
fn sweep(rng: &mut Rng, out: &mut [f32], sr: f32, dynamics: f32) {
    let n = out.len();
    if n < 2 {
        return;
    }
    let level = 10f32.powf((-30.0 + 24.0 * dynamics) / 20.0);
    let (f0, f1) = (20.0f32, rng.uniform(16_000.0, 20_000.0).min(sr * 0.45));
    let duration = n as f32 / sr;
    let k = (f1 / f0).ln();
    let fade = (0.05 * sr) as usize;
    for (i, x) in out.iter_mut().enumerate() {
        let t = i as f32 / sr;
        let phase = std::f32::consts::TAU * f0 * duration / k * ((t / duration * k).exp() - 1.0);
        let envelope = (i.min(n - 1 - i) as f32 / fade as f32).min(1.0);
        *x += level * envelope * phase.sin();
    }
}

/// Short bursts of white or pink-ish noise at varied levels.
fn noise_bursts(rng: &mut Rng, out: &mut [f32], sr: f32, dynamics: f32) {
    let mut at = 0;
    while at < out.len() {
        let len = ((rng.uniform(0.05, 0.4) * sr) as usize).min(out.len() - at);
        let level = 10f32.powf((-36.0 + 24.0 * dynamics + rng.uniform(-6.0, 6.0)) / 20.0);
        let pink = rng.chance(0.5);
        let mut state = 0.0f32;
        for (i, x) in out[at..at + len].iter_mut().enumerate() {
            let white = rng.uniform(-1.0, 1.0);
            state = if pink { 0.95 * state + 0.3 * white } else { white };
            let envelope = (i.min(len - 1 - i) as f32 / (0.005 * sr)).min(1.0);
            *x += level * envelope * state;
        }
        at += len + (rng.uniform(0.05, 0.3) * sr) as usize;
    }
}

/// The hiss and mains hum every real DI recording has.
fn add_noise_floor(rng: &mut Rng, samples: &mut [f32], sr: f32) {
    let mains = if rng.chance(0.5) { 50.0 } else { 60.0 };
    let hiss = 10f32.powf(HISS_DB / 20.0);
    let hum = 10f32.powf(HUM_DB / 20.0);
    for (i, x) in samples.iter_mut().enumerate() {
        let t = i as f32 / sr;
        let w = std::f32::consts::TAU * mains * t;
        *x += hiss * rng.uniform(-1.0, 1.0) + hum * (w.sin() + 0.5 * (3.0 * w).sin() + 0.25 * (5.0 * w).sin()) / 1.75;
    }
}

/// Writes a corpus as 32-bit float mono WAV.
pub fn write_wav(corpus: &Corpus, path: &std::path::Path) -> Result<(), hound::Error> {
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: corpus.sample_rate as u32,
        bits_per_sample: 32,
        sample_format: hound::SampleFormat::Float,
    };
    let mut writer = hound::WavWriter::create(path, spec)?;
    for &s in &corpus.samples {
        writer.write_sample(s)?;
    }
    writer.finalize()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rms_db(x: &[f32]) -> f32 {
        10.0 * (x.iter().map(|v| v * v).sum::<f32>() / x.len().max(1) as f32).max(1e-20).log10()
    }

    #[test]
    fn the_same_seed_gives_identical_audio_and_other_seeds_differ() {
        let a = generate(&CorpusSpec::new(11, 6.0));
        let b = generate(&CorpusSpec::new(11, 6.0));
        let c = generate(&CorpusSpec::new(12, 6.0));
        assert_eq!(a.samples, b.samples);
        assert_ne!(a.samples, c.samples);
        assert_eq!(a.samples.len(), 6 * 48_000);
    }

    #[test]
    fn a_corpus_sounds_like_a_di_guitar_levels_dynamics_and_silences() {
        let corpus = generate(&CorpusSpec::new(3, 60.0));
        let x = &corpus.samples;
        let peak = x.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        assert!(peak <= PEAK_CEILING + 1e-6 && peak > 0.1, "peak {peak}");
        // Loudness varies phrase to phrase (pp..ff) and silences sit near the noise floor.
        let sr = corpus.sample_rate;
        let mut loud = f32::MIN;
        let mut quiet = f32::MAX;
        for p in corpus.phrases.iter().filter(|p| p.end_s - p.start_s > 1.0) {
            let seg = &x[(p.start_s * sr) as usize + 4800..(p.end_s * sr) as usize];
            let level = rms_db(seg);
            match p.kind {
                PhraseKind::Silence => assert!(level < -70.0, "silence at {level:.1} dB"),
                PhraseKind::Sweep | PhraseKind::NoiseBurst => {}
                _ => {
                    loud = loud.max(level);
                    quiet = quiet.min(level);
                }
            }
        }
        assert!(loud - quiet > 12.0, "dynamic range between phrases only {:.1} dB", loud - quiet);
        let kinds: std::collections::HashSet<_> = corpus.phrases.iter().map(|p| format!("{:?}", p.kind)).collect();
        assert!(kinds.len() >= 5, "varied phrases: {kinds:?}");
        assert!(x.iter().all(|v| v.is_finite()));
    }

    #[test]
    fn most_guitar_energy_lies_between_70_hz_and_5_khz() {
        let corpus = generate(&CorpusSpec { test_signals: false, ..CorpusSpec::new(5, 20.0) });
        let sr = corpus.sample_rate;
        let band = |x: &[f32], lo: f32, hi: f32| {
            let mut hp = Biquad::new(Coefficients::highpass(sr, lo, 0.707));
            let mut hp2 = Biquad::new(Coefficients::highpass(sr, lo, 0.707));
            let mut lp = Biquad::new(Coefficients::lowpass(sr, hi, 0.707));
            let mut lp2 = Biquad::new(Coefficients::lowpass(sr, hi, 0.707));
            x.iter().map(|&v| lp2.tick(lp.tick(hp2.tick(hp.tick(v))))).map(|v| v * v).sum::<f32>()
        };
        let total: f32 = corpus.samples.iter().map(|v| v * v).sum();
        let inside = band(&corpus.samples, 70.0, 5000.0);
        assert!(inside / total > 0.8, "only {:.0} % of the energy in 70 Hz-5 kHz", 100.0 * inside / total);
    }
}
