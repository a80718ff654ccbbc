//! Neural phaser and flanger: an LSTM fed the dry audio and the LFO, the "grey-box" modulation models of Wright &
//! Välimäki. The network never learned the oscillator — it is given the LFO value of every sample — so the rate
//! stays a live knob after training.
//!
//! The models were trained by `training/modulation/train.py` on the engine's phaser and flanger teachers over rates
//! of 0.1–5 Hz, sine and triangle; they are built into the binary (the `.nam` files and their manifests sit in
//! `assets/models/modulation/`). Each is a two-input `.nam` LSTM (channel 0 audio, channel 1 LFO) whose output is
//! added to the dry input.
//!
//! The pedal generates the LFO exactly as the teachers did ([`Lfo`]: same phase accumulator, same shapes), at the
//! model's rate. The knobs then act on what the network is fed:
//! - **Rate** changes the LFO's increment, keeping its phase: the sweep speeds up or slows down without a jump.
//!   With **Sync** on, the rate follows **Tempo** and **Note** (one sweep per note value) instead.
//! - **Depth** scales the LFO fed to the network. Both teachers sweep linearly in the LFO value (the phaser's
//!   break frequency in octaves, the flanger's delay in samples), so `k · LFO` is the teacher at `k ×` its trained
//!   depth — in the training range of input values, and measured by `neuralboard eval` at depth 50 % and 25 %.
//! - **Triangle** morphs the LFO from sine to triangle over 50 ms (both shapes share peaks and zero crossings).
//! - **Mix** scales the network's contribution: `y = x + mix · net(x, LFO)`.
//!
//! A phaser or flanger is linear in its input: silence in, silence out. The networks are not quite: fed silence,
//! they put out the LFO faintly (the flanger up to −53 dBFS peak at 5 Hz, a tick at each turn of the sweep), which
//! an amp with gain after the pedal would make audible between notes. So the network's contribution is keyed by
//! the input ([`SilenceKey`]): untouched while the input's peak envelope is above −60 dBFS, scaled down in
//! proportion to it below (as a linear effect's output would be), and gone in silence.
//!
//! Depth and mix are smoothed per sample; nothing zips. At device rates other than the model's the pedal runs the
//! network at its own rate inside a [`RateAdapter`], the LFO generated at the model's rate too.

use crate::dsp::resample::RateAdapter;
use crate::formats::nam::{self, NamFile};
use crate::nn::{self, BuildOptions, Dsp, TanhMode};
use crate::param::{Curve, ParamId, ParamSpec, Smoothed, Unit, division_beats};
use crate::pedal::{Channels, ModelInfo, Pedal, PedalInfo};
use crate::teacher::{Lfo, Waveform};

pub const PHASER: &str = "phaser";
pub const FLANGER: &str = "flanger";

const RATE: ParamId = ParamId(0);
const DEPTH: ParamId = ParamId(1);
const MIX: ParamId = ParamId(2);
const TEMPO: ParamId = ParamId(3);
const NOTE: ParamId = ParamId(4);
const SYNC: ParamId = ParamId(5);
const TRIANGLE: ParamId = ParamId(6);

/// The LFO rates the models were trained over; the rate knob (and a synced rate) stays inside them.
pub const MIN_RATE_HZ: f32 = 0.1;
pub const MAX_RATE_HZ: f32 = 5.0;
/// Sine ↔ triangle morph time.
const SHAPE_MORPH_MS: f32 = 50.0;

/// One of the two effects: its registry key, name, built-in model and defaults.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Effect {
    pub kind: &'static str,
    pub name: &'static str,
    /// The `.nam` text built into the binary.
    model: &'static str,
    default_rate_hz: f32,
    default_triangle: bool,
}

pub const PHASER_EFFECT: Effect = Effect {
    kind: PHASER,
    name: "Neural Phaser",
    model: include_str!("../../../assets/models/modulation/phaser.nam"),
    default_rate_hz: 0.5,
    default_triangle: false,
};

pub const FLANGER_EFFECT: Effect = Effect {
    kind: FLANGER,
    name: "Neural Flanger",
    model: include_str!("../../../assets/models/modulation/flanger.nam"),
    default_rate_hz: 0.25,
    default_triangle: true,
};

impl Effect {
    pub fn params(&self) -> Vec<ParamSpec> {
        vec![
            ParamSpec::new("rate_hz", "Rate", Unit::Hertz, MIN_RATE_HZ, MAX_RATE_HZ, self.default_rate_hz)
                .curve(Curve::Logarithmic)
                .smoothing(0.0),
            ParamSpec::new("depth", "Depth", Unit::Percent, 0.0, 100.0, 100.0),
            ParamSpec::new("mix", "Mix", Unit::Percent, 0.0, 100.0, 100.0),
            ParamSpec::new("tempo_bpm", "Tempo", Unit::None, 40.0, 240.0, 120.0).smoothing(0.0),
            ParamSpec::new("note", "Note", Unit::NoteDivision, 0.0, 8.0, 2.0).curve(Curve::Stepped).smoothing(0.0),
            ParamSpec::toggle("sync", "Sync", false),
            ParamSpec::toggle("triangle", "Triangle", self.default_triangle),
        ]
    }

    /// The built-in model, parsed and checked to be a modulation model of this effect.
    pub fn file(&self) -> Result<NamFile, String> {
        let file = nam::parse(self.model).map_err(|e| format!("{}: built-in model: {e}", self.name))?;
        check_model(self.model, self.kind).map_err(|e| format!("{}: built-in model: {e}", self.name))?;
        Ok(file)
    }
}

/// Checks the `metadata.neuralboard` block the trainer writes: the effect, the inputs and the residual.
pub fn check_model(text: &str, kind: &str) -> Result<(), String> {
    let value: serde_json::Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
    let block = &value["metadata"]["neuralboard"];
    if block["effect"].as_str() != Some(kind) {
        return Err(format!("metadata.neuralboard.effect is {}, not \"{kind}\"", block["effect"]));
    }
    if block["inputs"] != serde_json::json!(["audio", "lfo"]) || block["residual"] != serde_json::json!(true) {
        return Err("metadata.neuralboard must say inputs [\"audio\", \"lfo\"] and residual true".into());
    }
    Ok(())
}

/// How the network's contribution follows the input level (see the module doc): a peak envelope of the input,
/// instant up and falling with [`SilenceKey::RELEASE_MS`], and the gain `min(1, envelope / KEY_LEVEL)`.
#[derive(Debug, Clone, Copy)]
struct SilenceKey {
    envelope: f32,
    release: f32,
}

impl SilenceKey {
    /// The input peak level (−60 dBFS) above which the network plays untouched: above the networks' own leakage of
    /// the LFO (−53 to −73 dBFS peak in silence), below any playing.
    const KEY_LEVEL: f32 = 1e-3;
    /// Longer than what the teachers ring for after their input stops (the flanger's 1.2 ms of delay with 0.3
    /// feedback, the phaser's all-passes: a few milliseconds), so notes keep their tails.
    const RELEASE_MS: f32 = 20.0;

    fn new(sample_rate: f32) -> Self {
        Self { envelope: 0.0, release: (-1000.0 / (Self::RELEASE_MS * sample_rate)).exp() }
    }

    /// The gain for the network's contribution at input sample `x`.
    #[inline]
    fn next(&mut self, x: f32) -> f32 {
        self.envelope = x.abs().max(self.envelope * self.release);
        (self.envelope / Self::KEY_LEVEL).min(1.0)
    }
}

/// Everything that runs at the model's rate.
struct Core {
    model: Box<dyn Dsp>,
    model_rate: f32,
    lfo: Lfo,
    /// 0 = sine, 1 = triangle.
    shape: Smoothed,
    depth: Smoothed,
    mix: Smoothed,
    key: SilenceKey,
    /// Planar `[audio; LFO]` for the network.
    planar: Vec<f32>,
    net: Vec<f32>,
    max_inner: usize,
}

impl Core {
    fn run(&mut self, input: &[f32], output: &mut [f32]) {
        for (input, output) in input.chunks(self.max_inner).zip(output.chunks_mut(self.max_inner)) {
            let n = input.len();
            let (audio, lfo) = self.planar[..2 * n].split_at_mut(n);
            audio.copy_from_slice(input);
            for value in lfo.iter_mut() {
                let phase = self.lfo.phase();
                let t = self.shape.next_value();
                let shape = if t <= 0.0 {
                    Lfo::shape(Waveform::Sine, phase)
                } else if t >= 1.0 {
                    Lfo::shape(Waveform::Triangle, phase)
                } else {
                    (1.0 - t) * Lfo::shape(Waveform::Sine, phase) + t * Lfo::shape(Waveform::Triangle, phase)
                };
                self.lfo.advance();
                *value = self.depth.next_value() * shape;
            }
            self.model.process(&self.planar[..2 * n], &mut self.net[..n], n);
            for ((y, &x), &net) in output.iter_mut().zip(input).zip(&self.net[..n]) {
                *y = x + self.mix.next_value() * self.key.next(x) * net;
            }
        }
    }
}

pub struct Modulation {
    info: PedalInfo,
    effect: Effect,
    file: NamFile,
    values: [f32; 7],
    core: Option<Core>,
    adapter: Option<RateAdapter>,
    scratch: Vec<f32>,
    built_for: Option<(f32, usize)>,
}

impl Modulation {
    /// Parses the built-in model and builds it for 48 kHz and 64-frame blocks (allocates).
    pub fn new(effect: Effect) -> Result<Self, String> {
        let file = effect.file()?;
        let params = effect.params();
        let values = std::array::from_fn(|i| params[i].default);
        let m = &file.metadata;
        let mut details = Vec::new();
        if let Some(gear) = &m.gear_model {
            details.push(("Trained on".into(), gear.clone()));
        }
        details.push(("Inputs".into(), "audio + LFO".into()));
        details.push(("LFO rates".into(), format!("{MIN_RATE_HZ}–{MAX_RATE_HZ} Hz, sine and triangle")));
        let info = PedalInfo {
            pad: None,
            kind: effect.kind.into(),
            name: effect.name.into(),
            params,
            channels: Channels::Mono,
            model: Some(ModelInfo {
                name: m.name.clone().unwrap_or_else(|| effect.name.into()),
                architecture: file.architecture.name().to_owned(),
                sample_rate: file.sample_rate.map(|r| r as f32),
                parameters: file.architecture.weight_count() as usize,
                details,
            }),
        };
        let mut pedal =
            Self { info, effect, file, values, core: None, adapter: None, scratch: Vec::new(), built_for: None };
        pedal.build(48_000.0, 64)?;
        Ok(pedal)
    }

    /// Builds the network and the rate adapter for the engine's settings (allocates; off the audio thread).
    fn build(&mut self, sample_rate: f32, max_block: usize) -> Result<(), String> {
        if self.built_for == Some((sample_rate, max_block)) {
            return Ok(());
        }
        let model_rate = self.file.sample_rate.unwrap_or(48_000.0) as f32;
        let adapter = RateAdapter::new(sample_rate, model_rate, max_block).map_err(|e| e.to_string())?;
        let max_inner = adapter.max_inner_block();
        let options = BuildOptions { tanh: TanhMode::Accurate, max_block: max_inner, prewarm_block: max_inner };
        let model = nn::build_conditioned(&self.file, &options).map_err(|e| format!("{}: {e}", self.effect.name))?;
        if model.in_channels() != 2 {
            return Err(format!("{}: the model has {} inputs, not 2", self.effect.name, model.in_channels()));
        }
        let ramp = |ms| {
            let mut s = Smoothed::new(0.0);
            s.set_ramp(model_rate, ms);
            s
        };
        let mut core = Core {
            model,
            model_rate,
            lfo: Lfo::new(model_rate, self.effect.default_rate_hz, Waveform::Sine, 0.0),
            shape: ramp(SHAPE_MORPH_MS),
            depth: ramp(ParamSpec::DEFAULT_SMOOTHING_MS),
            mix: ramp(ParamSpec::DEFAULT_SMOOTHING_MS),
            key: SilenceKey::new(model_rate),
            planar: vec![0.0; 2 * max_inner],
            net: vec![0.0; max_inner],
            max_inner,
        };
        // A rebuild (new device rate) keeps the sweep where it was.
        if let Some(old) = &self.core {
            core.lfo = Lfo::new(model_rate, 0.0, Waveform::Sine, old.lfo.phase());
        }
        self.core = Some(core);
        self.adapter = Some(adapter);
        self.scratch = vec![0.0; max_block];
        self.built_for = Some((sample_rate, max_block));
        self.apply_rate();
        self.settle();
        Ok(())
    }

    /// The LFO rate the knobs ask for: the rate knob, or with sync on one cycle per note value at the tempo.
    pub fn rate_hz(&self) -> f32 {
        let v = |id: ParamId| self.values[id.0 as usize];
        let rate = if v(SYNC) >= 0.5 { v(TEMPO) / 60.0 / division_beats(v(NOTE)) } else { v(RATE) };
        rate.clamp(MIN_RATE_HZ, MAX_RATE_HZ)
    }

    fn apply_rate(&mut self) {
        let rate = self.rate_hz();
        if let Some(core) = &mut self.core {
            core.lfo.set_rate(core.model_rate, rate);
        }
    }

    /// Sets the smoothed values' targets from the knobs.
    fn apply_targets(&mut self) {
        let v = self.values;
        if let Some(core) = &mut self.core {
            core.depth.set_target(v[DEPTH.0 as usize] / 100.0);
            core.mix.set_target(v[MIX.0 as usize] / 100.0);
            core.shape.set_target(if v[TRIANGLE.0 as usize] >= 0.5 { 1.0 } else { 0.0 });
        }
    }

    /// Jumps every smoothed value to its target.
    fn settle(&mut self) {
        self.apply_targets();
        if let Some(core) = &mut self.core {
            for s in [&mut core.depth, &mut core.mix, &mut core.shape] {
                s.set_immediate(s.target());
            }
        }
    }

    /// The LFO's phase (0..1), for tests and displays.
    pub fn lfo_phase(&self) -> Option<f64> {
        self.core.as_ref().map(|c| c.lfo.phase())
    }
}

impl Pedal for Modulation {
    fn info(&self) -> &PedalInfo {
        &self.info
    }

    fn prepare(&mut self, sample_rate: f32, max_block: usize) {
        // The registry built the model at 48 kHz; a rate the adapter cannot convert leaves the pedal passing audio
        // through (as the amp does).
        if self.build(sample_rate, max_block).is_err() {
            self.core = None;
            self.adapter = None;
            self.built_for = None;
        }
    }

    fn set_param(&mut self, id: ParamId, value: f32) {
        let Some(spec) = self.info.params.get(id.0 as usize) else { return };
        self.values[id.0 as usize] = spec.clamp(value);
        match id {
            RATE | TEMPO | NOTE | SYNC => self.apply_rate(),
            _ => self.apply_targets(),
        }
    }

    fn process(&mut self, block: &mut [f32]) {
        let (Some(adapter), Some(core)) = (self.adapter.as_mut(), self.core.as_mut()) else { return };
        let out = &mut self.scratch[..block.len()];
        adapter.process(block, out, &mut |input, output| core.run(input, output));
        block.copy_from_slice(out);
    }

    fn reset(&mut self) {
        // The network goes back to its prewarmed state, which saw the LFO at 0, so the LFO starts again from 0 too:
        // a network whose LFO input jumps (here, from 0 to wherever the sweep was) rings.
        if let Some(core) = &mut self.core {
            core.model.restore_state();
            core.lfo.restart();
            core.key = SilenceKey::new(core.model_rate);
        }
        if let Some(adapter) = &mut self.adapter {
            adapter.reset();
        }
        self.settle();
    }

    fn latency(&self) -> usize {
        self.adapter.as_ref().map_or(0, RateAdapter::latency)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pedal(effect: Effect) -> Modulation {
        let mut p = Modulation::new(effect).unwrap_or_else(|e| panic!("{e}"));
        p.prepare(48_000.0, 64);
        p
    }

    /// Plays `audio` through the pedal in place, in 64-frame blocks.
    fn play(p: &mut Modulation, audio: &mut [f32]) {
        for block in audio.chunks_mut(64) {
            p.process(block);
        }
    }

    /// `n` samples of white noise at 0.3 peak.
    fn noise(n: usize, seed: u64) -> Vec<f32> {
        crate::teacher::testing::noise(n, seed).iter().map(|x| 0.3 * x).collect()
    }

    fn peak(x: &[f32]) -> f32 {
        x.iter().fold(0.0f32, |m, x| m.max(x.abs()))
    }

    #[test]
    fn modulation_builtin_models_load_as_two_input_modulation_models() {
        for effect in [PHASER_EFFECT, FLANGER_EFFECT] {
            let p = pedal(effect);
            let model = p.info().model.as_ref().unwrap();
            assert_eq!(model.architecture, "LSTM");
            assert_eq!(model.sample_rate, Some(48_000.0));
            assert!(check_model(effect.model, if effect.kind == PHASER { FLANGER } else { PHASER }).is_err());
        }
    }

    #[test]
    fn modulation_sync_follows_tempo_and_note_and_stays_in_the_trained_range() {
        let mut p = pedal(PHASER_EFFECT);
        p.set_param(RATE, 2.0);
        assert_eq!(p.rate_hz(), 2.0);
        p.set_param(SYNC, 1.0);
        p.set_param(TEMPO, 120.0);
        p.set_param(NOTE, 2.0); // one bar at 120 BPM: 2 s
        assert!((p.rate_hz() - 0.5).abs() < 1e-6);
        p.set_param(NOTE, 8.0); // 1/16 at 120 BPM would be 8 Hz
        assert_eq!(p.rate_hz(), MAX_RATE_HZ);
        assert_eq!(p.info().params[NOTE.0 as usize].format(5.0), "1/4");
    }

    #[test]
    fn modulation_changing_the_rate_keeps_the_lfo_phase() {
        let mut p = pedal(FLANGER_EFFECT);
        let mut block = vec![0.0f32; 64];
        for _ in 0..100 {
            p.process(&mut block);
        }
        let before = p.lfo_phase().unwrap();
        p.set_param(RATE, 4.0);
        assert_eq!(p.lfo_phase().unwrap(), before);
        p.process(&mut block);
        let step = p.lfo_phase().unwrap() - before;
        assert!((step - 64.0 * 4.0 / 48_000.0).abs() < 1e-9, "{step}");
    }

    #[test]
    fn modulation_mix_zero_is_the_dry_signal_and_reset_restores_the_prewarmed_model() {
        let input: Vec<f32> = (0..4800).map(|i| 0.3 * (i as f32 * 0.05).sin()).collect();
        let mut p = pedal(PHASER_EFFECT);
        p.set_param(MIX, 0.0);
        p.reset();
        let mut dry = input.clone();
        play(&mut p, &mut dry);
        assert_eq!(dry, input);

        let run = |p: &mut Modulation| {
            let mut out = input.clone();
            play(p, &mut out);
            out
        };
        let mut a = pedal(PHASER_EFFECT);
        let first = run(&mut a);
        assert!(crate::eval::esr(&input, &first) > 1e-3, "the phaser changes the signal");
        let mut b = pedal(PHASER_EFFECT);
        b.set_param(RATE, 0.5);
        assert_eq!(run(&mut b), first, "same knobs, same output");
    }

    #[test]
    fn modulation_reset_mid_sweep_restarts_the_lfo_so_the_network_does_not_ring() {
        for effect in [PHASER_EFFECT, FLANGER_EFFECT] {
            let mut p = pedal(effect);
            p.set_param(RATE, 1.0);
            // A quarter second of noise takes a 1 Hz sine LFO to its peak.
            play(&mut p, &mut noise(12_000, 7));
            assert!((p.lfo_phase().unwrap() - 0.25).abs() < 1e-3);
            p.reset();
            assert_eq!(p.lfo_phase(), Some(0.0));
            // Silence after the reset must stay (near) silent: the prewarmed network with the LFO it was prewarmed
            // with. (Before the LFO restarted, the flanger rang at 0.25 peak here.)
            let mut silence = vec![0.0f32; 4800];
            play(&mut p, &mut silence);
            let loudest = peak(&silence);
            assert!(loudest < 0.01, "{}: {loudest} peak after a reset", effect.kind);
        }
    }

    #[test]
    fn modulation_silence_after_playing_is_silent() {
        // The flanger at 5 Hz leaks its LFO most (−53 dBFS peak, fed silence without the key). After half a second
        // of noise, a second of silence: the leak fades with the key's envelope (from the note's −10 dBFS peak, under
        // the key level after about 0.1 s) and is gone, where the network alone would go on ticking.
        for effect in [PHASER_EFFECT, FLANGER_EFFECT] {
            let mut p = pedal(effect);
            p.set_param(RATE, 5.0);
            let mut audio = noise(24_000, 3);
            audio.resize(72_000, 0.0);
            play(&mut p, &mut audio);
            let (late, end) = (peak(&audio[48_000..]), peak(&audio[67_200..]));
            assert!(late < 1e-7, "{}: {} dBFS peak 0.5 s into the silence", effect.kind, 20.0 * late.log10());
            assert!(end < 1e-9, "{}: {} dBFS peak 0.9 s into the silence", effect.kind, 20.0 * end.log10());
            // The note itself was played: the effect is there while the noise plays.
            assert!(audio[..24_000].iter().any(|x| x.abs() > 0.1));
        }
    }

    #[test]
    fn modulation_the_silence_key_leaves_playing_alone_and_scales_below_minus_60_dbfs() {
        let mut key = SilenceKey::new(48_000.0);
        assert_eq!(key.next(0.02), 1.0, "instant on a note");
        // Steady at −80 dBFS: a tenth, as a linear effect's output would be scaled from −60 dBFS.
        let mut quiet = SilenceKey::new(48_000.0);
        assert!((quiet.next(1e-4) - 0.1).abs() < 1e-6);
        // After a note (−34 dBFS) the envelope falls by e every 20 ms: the network stays whole for 20 ms and more.
        for _ in 0..(0.02 * 48_000.0) as usize {
            key.next(0.0);
        }
        assert_eq!(key.next(0.0), 1.0, "a note's tail keeps the network for tens of milliseconds");
        for _ in 0..48_000 {
            key.next(0.0);
        }
        assert!(key.next(0.0) < 1e-6);
    }

    #[test]
    fn modulation_plays_at_44_1_and_96_khz() {
        for rate in [44_100.0, 96_000.0] {
            let mut p = Modulation::new(PHASER_EFFECT).unwrap();
            p.prepare(rate, 128);
            let mut block: Vec<f32> = (0..128).map(|i| 0.2 * (i as f32 * 0.1).sin()).collect();
            for _ in 0..50 {
                p.process(&mut block);
            }
            assert!(block.iter().all(|x| x.is_finite()) && block.iter().any(|&x| x != 0.0));
            assert!(p.latency() > 0, "resampling adds latency at {rate}");
        }
    }

    /// The pedal's response in each spectrogram frame: for every bin between 150 Hz and 6 kHz, |Y|²/|X|² summed over
    /// ±4 bins (white noise in, so the ratio is the response), in dB. The notches are its deep minima.
    fn response_frames(input: &[f32], output: &[f32]) -> Vec<Vec<f32>> {
        use realfft::RealFftPlanner;
        const FRAME: usize = 1024;
        const HOP: usize = 256;
        let fft = RealFftPlanner::<f32>::new().plan_fft_forward(FRAME);
        let window: Vec<f32> =
            (0..FRAME).map(|i| 0.5 - 0.5 * (std::f32::consts::TAU * i as f32 / FRAME as f32).cos()).collect();
        let bin_hz = 48_000.0 / FRAME as f32;
        let (lo, hi) = (((150.0 / bin_hz) as usize).max(4), (6_000.0 / bin_hz) as usize);
        let power = |signal: &[f32]| {
            let mut frame: Vec<f32> = signal.iter().zip(&window).map(|(x, w)| x * w).collect();
            let mut spectrum = fft.make_output_vec();
            fft.process(&mut frame, &mut spectrum).unwrap();
            spectrum.iter().map(|c| c.norm_sqr()).collect::<Vec<f32>>()
        };
        (0..(input.len() - FRAME) / HOP)
            .map(|f| {
                let (x, y) = (power(&input[f * HOP..][..FRAME]), power(&output[f * HOP..][..FRAME]));
                (lo..hi)
                    .map(|k| {
                        10.0 * (y[k - 4..=k + 4].iter().sum::<f32>() / x[k - 4..=k + 4].iter().sum::<f32>()).log10()
                    })
                    .collect()
            })
            .collect()
    }

    /// The period (s) of the notch pattern's sweep: the lag between `min_s` and `max_s` at which the response
    /// frames (mean removed per bin) correlate best with themselves — where the notches are back where they were.
    fn sweep_period(frames: &[Vec<f32>], min_s: f32, max_s: f32) -> f32 {
        let frames_per_s = 48_000.0 / 256.0;
        let bins = frames[0].len();
        let mean: Vec<f32> =
            (0..bins).map(|k| frames.iter().map(|f| f[k]).sum::<f32>() / frames.len() as f32).collect();
        let centred: Vec<Vec<f32>> = frames.iter().map(|f| f.iter().zip(&mean).map(|(v, m)| v - m).collect()).collect();
        let correlation = |lag: usize| -> f32 {
            let n = centred.len() - lag;
            let dot = |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(x, y)| x * y).sum::<f32>();
            (0..n).map(|i| dot(&centred[i], &centred[i + lag])).sum::<f32>() / n as f32
        };
        let lags = (min_s * frames_per_s) as usize..(max_s * frames_per_s) as usize;
        let best = lags.max_by(|&a, &b| correlation(a).total_cmp(&correlation(b))).unwrap();
        best as f32 / frames_per_s
    }

    #[test]
    fn modulation_the_notch_sweep_follows_the_rate_knob_moved_while_playing() {
        for effect in [PHASER_EFFECT, FLANGER_EFFECT] {
            let mut p = pedal(effect);
            p.set_param(TRIANGLE, 0.0);
            p.set_param(RATE, 0.5);
            p.reset();
            let seconds = 6;
            let input = noise(2 * seconds * 48_000, 11);
            let mut output = input.clone();
            let (slow, fast) = output.split_at_mut(seconds * 48_000);
            play(&mut p, slow);
            p.set_param(RATE, 2.0); // while it plays: no reset, the LFO keeps its phase
            play(&mut p, fast);
            let half = seconds * 48_000;
            let before = sweep_period(&response_frames(&input[..half], &output[..half]), 1.2, 3.0);
            // Skip the first half second after the change: frames there straddle both rates.
            let skip = 24_000;
            let after = sweep_period(&response_frames(&input[half + skip..], &output[half + skip..]), 0.3, 0.75);
            println!("{}: notches sweep with a period of {before:.3} s at 0.5 Hz, {after:.3} s at 2 Hz", effect.name);
            assert!((before - 2.0).abs() < 0.1, "{}: period {before} s at 0.5 Hz", effect.name);
            assert!((after - 0.5).abs() < 0.03, "{}: period {after} s at 2 Hz", effect.name);
        }
    }
}
