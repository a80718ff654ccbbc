//! Neural Opto Compressor: an S4D network (diagonal state-space layers, FiLM-conditioned on the knobs) trained on
//! the engine's LA-2A-like opto teacher (`teacher::opto`) by `training/compressor/train.py`.
//!
//! The network is conditioned on **Peak Reduction** (0–100) and the **Limit** switch: they go through its control
//! MLP into every block's FiLM scale and shift, so they are live knobs over the whole trained range. Make-up
//! **Gain** and **Mix** (parallel compression) act on the network's output and need no training. The controls are
//! glided (30 ms) and the network re-conditioned once per block while they move — a few thousand multiply-adds, off
//! the per-sample path; gain and mix glide per sample.
//!
//! The shipped network is a gain computer at a control rate: it steps once per 32 samples on the block's level and
//! its gain is ramped over the next block (`formats::s4d`): one network step per 32 samples instead of 32. Its gain
//! reduction is the larger of two readouts, a fast envelope and a slow memory, as the opto cell's is.
//!
//! The model's time constants are in samples at its own rate (48 kHz), so at other device rates it runs inside a
//! [`RateAdapter`], dry signal included (mix stays phase-aligned). After a reset the network holds the state that
//! endless silence leaves ([`S4dNetwork::settle`]), so it starts without a transient.
//!
//! The pedal publishes its gain reduction ([`Pedal::gain_reduction_db`]), what a player reads on a compressor's
//! meter. A gain computer (the shipped model) reports the gain it applies, so the meter reads it exactly, release
//! included after the playing stops; for a network whose output is the signal, the meter estimates it from the
//! input's and the output's levels, both followed with the same 5 ms attack / 150 ms release envelope.

use crate::dsp::resample::RateAdapter;
use crate::formats::s4d::{self, S4dFile};
use crate::nn::s4d::S4dNetwork;
use crate::param::{ParamId, ParamSpec, Smoothed, Unit};
use crate::pedal::{Channels, ModelInfo, Pedal, PedalInfo};

pub const KIND: &str = "compressor";

const PEAK_REDUCTION: ParamId = ParamId(0);
const GAIN: ParamId = ParamId(1);
const LIMIT: ParamId = ParamId(2);
const MIX: ParamId = ParamId(3);
const PARAM_COUNT: usize = 4;

/// The trained model, built into the binary (`assets/models/compressor/`, with its manifest).
pub const MODEL: &str = include_str!("../../../assets/models/compressor/opto.s4d.json");
/// The controls the model must be conditioned on, in order.
const CONTROLS: [&str; 2] = ["peak_reduction", "limit"];
/// Glide of the conditioning controls.
const CONTROL_GLIDE_MS: f32 = 30.0;
/// Ballistics of the estimated gain-reduction meter (networks that do not report their gain).
const METER_ATTACK_MS: f32 = 5.0;
const METER_RELEASE_MS: f32 = 150.0;
/// Below this input level (−60 dBFS, as mean square) the meter falls back to 0 dB instead of reading noise.
const METER_FLOOR: f32 = 1e-6;

/// Everything that runs at the model's rate.
struct Core {
    net: S4dNetwork,
    /// Peak reduction and limit, glided; the network is re-conditioned when they move.
    controls: [Smoothed; 2],
    conditioned: [f32; 2],
    gain: Smoothed,
    mix: Smoothed,
    wet: Vec<f32>,
    /// Mean-square envelopes of the network's input and output, for the estimated meter; `None` where the network
    /// reports its gain.
    meter: Option<[f32; 2]>,
    meter_attack: f32,
    meter_release: f32,
}

impl Core {
    fn condition(&mut self) {
        let now = [self.controls[0].current(), self.controls[1].current()];
        if now != self.conditioned {
            self.net.set_controls(&now);
            self.conditioned = now;
        }
    }

    fn run(&mut self, input: &[f32], output: &mut [f32]) {
        for (input, output) in input.chunks(self.net.max_block()).zip(output.chunks_mut(self.net.max_block())) {
            let n = input.len();
            for control in &mut self.controls {
                control.skip(n);
            }
            self.condition();
            let wet = &mut self.wet[..n];
            self.net.process(input, wet);
            for ((y, &x), &w) in output.iter_mut().zip(input).zip(wet.iter()) {
                if let Some(meter) = &mut self.meter {
                    for (env, v) in meter.iter_mut().zip([x, w]) {
                        let p = v * v;
                        *env += if p > *env { self.meter_attack } else { self.meter_release } * (p - *env);
                    }
                }
                let mix = self.mix.next_value();
                *y = (1.0 - mix) * x + mix * self.gain.next_value() * w;
            }
        }
    }

    /// The network in the state of silence, the estimated meter at rest.
    fn settle(&mut self) {
        self.net.settle();
        if let Some(meter) = &mut self.meter {
            *meter = [0.0; 2];
        }
    }

    fn gain_reduction_db(&self) -> f32 {
        if let Some(gain_db) = self.net.applied_gain_db() {
            return (-gain_db).max(0.0);
        }
        let Some([input, output]) = self.meter else { return 0.0 };
        if input < METER_FLOOR || !input.is_finite() || !output.is_finite() {
            return 0.0;
        }
        (10.0 * (input / output.max(1e-12)).log10()).max(0.0)
    }
}

pub struct Compressor {
    info: PedalInfo,
    file: S4dFile,
    values: [f32; PARAM_COUNT],
    core: Option<Core>,
    adapter: Option<RateAdapter>,
    scratch: Vec<f32>,
    built_for: Option<(f32, usize)>,
}

impl Compressor {
    pub fn params() -> Vec<ParamSpec> {
        vec![
            ParamSpec::new("peak_reduction", "Peak Reduction", Unit::None, 0.0, 100.0, 40.0).smoothing(0.0),
            ParamSpec::new("gain", "Gain", Unit::Decibels, 0.0, 30.0, 6.0),
            ParamSpec::toggle("limit", "Limit", false),
            ParamSpec::new("mix", "Mix", Unit::Percent, 0.0, 100.0, 100.0),
        ]
    }

    /// The built-in model, parsed and built for 48 kHz and 64-frame blocks (allocates).
    pub fn new() -> Result<Self, String> {
        let file = s4d::parse(MODEL).map_err(|e| format!("Neural Compressor: built-in model: {e}"))?;
        Self::with_model(file)
    }

    /// A compressor playing `file`, which must be conditioned on peak reduction and limit (allocates).
    pub fn with_model(file: S4dFile) -> Result<Self, String> {
        let names: Vec<&str> = file.config.controls.iter().map(|c| c.name.as_str()).collect();
        if names != CONTROLS {
            return Err(format!("the model's controls are {names:?}, not {CONTROLS:?}"));
        }
        let params = Self::params();
        let values = std::array::from_fn(|i| params[i].default);
        let mut details = vec![("Controls".to_owned(), "peak reduction 0–100, compress/limit".to_owned())];
        if let Some(teacher) = file.metadata.get("modeled_by").and_then(|v| v.as_str()) {
            details.push(("Trained by".into(), teacher.to_owned()));
        }
        let c = &file.config;
        let info = PedalInfo {
            pad: None,
            kind: KIND.into(),
            name: "Neural Compressor".into(),
            params,
            channels: Channels::Mono,
            model: Some(ModelInfo {
                name: file.name().unwrap_or("S4D compressor").to_owned(),
                architecture: format!("S4D, {} blocks × {} channels × {} modes", c.depth, c.channels, c.modes),
                sample_rate: Some(file.sample_rate),
                parameters: file.parameter_count(),
                details,
            }),
        };
        let mut pedal = Self { info, file, values, core: None, adapter: None, scratch: Vec::new(), built_for: None };
        pedal.build(48_000.0, 64)?;
        Ok(pedal)
    }

    /// Builds the network and the rate adapter for the engine's settings (allocates; off the audio thread).
    fn build(&mut self, sample_rate: f32, max_block: usize) -> Result<(), String> {
        if self.built_for == Some((sample_rate, max_block)) {
            return Ok(());
        }
        let model_rate = self.file.sample_rate;
        let adapter = RateAdapter::new(sample_rate, model_rate, max_block).map_err(|e| e.to_string())?;
        let max_inner = adapter.max_inner_block();
        let ramp = |ms| {
            let mut s = Smoothed::new(0.0);
            s.set_ramp(model_rate, ms);
            s
        };
        let pole = |ms: f32| 1.0 - (-1000.0 / (ms * model_rate)).exp();
        let net = S4dNetwork::new(&self.file, max_inner);
        self.core = Some(Core {
            meter: net.applied_gain_db().is_none().then_some([0.0; 2]),
            net,
            controls: [ramp(CONTROL_GLIDE_MS), ramp(CONTROL_GLIDE_MS)],
            conditioned: [f32::NAN; 2],
            gain: ramp(ParamSpec::DEFAULT_SMOOTHING_MS),
            mix: ramp(ParamSpec::DEFAULT_SMOOTHING_MS),
            wet: vec![0.0; max_inner],
            meter_attack: pole(METER_ATTACK_MS),
            meter_release: pole(METER_RELEASE_MS),
        });
        self.adapter = Some(adapter);
        self.scratch = vec![0.0; max_block];
        self.built_for = Some((sample_rate, max_block));
        self.settle();
        Ok(())
    }

    fn apply_targets(&mut self) {
        let v = self.values;
        if let Some(core) = &mut self.core {
            core.controls[0].set_target(v[PEAK_REDUCTION.0 as usize]);
            core.controls[1].set_target(if v[LIMIT.0 as usize] >= 0.5 { 1.0 } else { 0.0 });
            core.gain.set_target(10f32.powf(v[GAIN.0 as usize] / 20.0));
            core.mix.set_target(v[MIX.0 as usize] / 100.0);
        }
    }

    /// Every glide at its target, the network conditioned on it and in the state of silence.
    fn settle(&mut self) {
        self.apply_targets();
        if let Some(core) = &mut self.core {
            for s in core.controls.iter_mut().chain([&mut core.gain, &mut core.mix]) {
                s.set_immediate(s.target());
            }
            core.condition();
            core.settle();
        }
    }
}

impl Pedal for Compressor {
    fn info(&self) -> &PedalInfo {
        &self.info
    }

    fn prepare(&mut self, sample_rate: f32, max_block: usize) {
        // A rate the adapter cannot convert leaves the pedal passing audio through (as the amp does).
        if self.build(sample_rate, max_block).is_err() {
            self.core = None;
            self.adapter = None;
            self.built_for = None;
        }
    }

    fn set_param(&mut self, id: ParamId, value: f32) {
        if let Some(v) = self.values.get_mut(id.0 as usize) {
            *v = value;
            self.apply_targets();
        }
    }

    fn process(&mut self, block: &mut [f32]) {
        let (Some(adapter), Some(core)) = (self.adapter.as_mut(), self.core.as_mut()) else { return };
        let out = &mut self.scratch[..block.len()];
        adapter.process(block, out, &mut |input, output| core.run(input, output));
        block.copy_from_slice(out);
    }

    fn reset(&mut self) {
        if let Some(adapter) = &mut self.adapter {
            adapter.reset();
        }
        if let Some(core) = &mut self.core {
            core.settle();
        }
    }

    fn latency(&self) -> usize {
        self.adapter.as_ref().map_or(0, RateAdapter::latency)
    }

    fn gain_reduction_db(&self) -> Option<f32> {
        self.core.as_ref().map(Core::gain_reduction_db)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::formats::s4d::tests::tiny;

    fn pedal() -> Compressor {
        let mut p = Compressor::new().unwrap_or_else(|e| panic!("{e}"));
        p.prepare(48_000.0, 64);
        p
    }

    fn play(p: &mut Compressor, input: &[f32]) -> Vec<f32> {
        let mut out = input.to_vec();
        for chunk in out.chunks_mut(64) {
            p.process(chunk);
        }
        out
    }

    fn guitar(seconds: f32, level: f32) -> Vec<f32> {
        let n = (seconds * 48_000.0) as usize;
        (0..n).map(|i| level * (i as f32 * 2.0 * std::f32::consts::PI * 110.0 / 48_000.0).sin()).collect()
    }

    #[test]
    fn compressor_refuses_a_model_with_other_controls() {
        let mut v = tiny(3);
        v["config"]["controls"][1]["name"] = serde_json::json!("attack");
        let file = s4d::parse(&v.to_string()).unwrap();
        let e = Compressor::with_model(file).err().unwrap();
        assert!(e.contains("attack"), "{e}");
    }

    #[test]
    fn compressor_mix_zero_is_the_dry_signal_and_gain_scales_the_wet() {
        let input = guitar(0.2, 0.3);
        let mut p = pedal();
        p.set_param(MIX, 0.0);
        p.reset();
        p.settle();
        assert_eq!(play(&mut p, &input), input);

        let run = |gain_db: f32| {
            let mut p = pedal();
            p.set_param(GAIN, gain_db);
            p.settle();
            play(&mut p, &input)
        };
        let (unity, plus6) = (run(0.0), run(6.0));
        let ratio = 10f32.powf(6.0 / 20.0);
        assert!(unity.iter().zip(&plus6).all(|(a, b)| (a * ratio - b).abs() < 1e-5));
    }

    #[test]
    fn compressor_same_knobs_same_output_and_reset_starts_from_silence() {
        let input = guitar(0.3, 0.5);
        let mut a = pedal();
        let first = play(&mut a, &input);
        a.reset();
        assert_eq!(play(&mut a, &input), first, "a reset goes back to the state of silence");
        let mut b = pedal();
        b.set_param(PEAK_REDUCTION, 80.0);
        b.set_param(PEAK_REDUCTION, 40.0);
        b.settle();
        assert_eq!(play(&mut b, &input), first);
    }

    #[test]
    fn compressor_peak_reduction_moves_while_playing_without_clicks() {
        let input = guitar(1.0, 0.5);
        let mut p = pedal();
        let mut out = input.clone();
        for (i, chunk) in out.chunks_mut(64).enumerate() {
            if i == 300 {
                p.set_param(PEAK_REDUCTION, 100.0);
                p.set_param(LIMIT, 1.0);
            }
            p.process(chunk);
        }
        assert!(out.iter().all(|x| x.is_finite()));
        // The largest sample-to-sample step stays that of a 110 Hz tone at the output's level: no jump.
        let peak = out.iter().fold(0.0f32, |m, x| m.max(x.abs()));
        let step = out.windows(2).map(|w| (w[1] - w[0]).abs()).fold(0.0f32, f32::max);
        assert!(step < 4.0 * peak * 2.0 * std::f32::consts::PI * 110.0 / 48_000.0 + 1e-3, "{step} vs peak {peak}");
    }

    #[test]
    fn compressor_meter_reads_the_gain_the_network_applies_and_its_release() {
        let mut p = pedal();
        p.set_param(PEAK_REDUCTION, 70.0);
        p.set_param(GAIN, 0.0);
        p.settle();
        assert!(p.gain_reduction_db().is_some_and(|gr| gr < 0.5), "at rest, no reduction");
        // A 110 Hz tone held at −6 dBFS: the meter reads what the pedal does to it (over the last 20 ms, as dB).
        let input = guitar(1.0, 0.5);
        let out = play(&mut p, &input);
        let held = p.gain_reduction_db().unwrap();
        let tail = input.len() - 960;
        let rms = |x: &[f32]| (x.iter().map(|v| v * v).sum::<f32>() / x.len() as f32).sqrt();
        let measured = 20.0 * (rms(&input[tail..]) / rms(&out[tail..])).log10();
        assert!(held > 3.0 && (held - measured).abs() < 0.3, "meter {held} dB, measured {measured} dB");
        // Silence: the meter shows the release instead of dropping to 0.
        play(&mut p, &vec![0.0; 4_800]);
        let releasing = p.gain_reduction_db().unwrap();
        assert!(releasing > 1.0 && releasing < held, "100 ms after the tone: {releasing} dB (held {held} dB)");

        // A network whose output is the signal gets the estimated meter.
        let mut estimated = Compressor::with_model(s4d::parse(&tiny(3).to_string()).unwrap()).unwrap();
        estimated.prepare(48_000.0, 64);
        play(&mut estimated, &input);
        assert!(estimated.gain_reduction_db().is_some_and(|gr| gr.is_finite() && gr >= 0.0));
    }

    #[test]
    fn compressor_plays_at_44_1_and_96_khz() {
        for rate in [44_100.0, 96_000.0] {
            let mut p = Compressor::new().unwrap();
            p.prepare(rate, 128);
            let mut block: Vec<f32> = (0..128).map(|i| 0.2 * (i as f32 * 0.1).sin()).collect();
            for _ in 0..50 {
                p.process(&mut block);
            }
            assert!(block.iter().all(|x| x.is_finite()) && block.iter().any(|&x| x != 0.0));
            assert!(p.latency() > 0, "resampling adds latency at {rate}");
            assert!(p.gain_reduction_db().is_some_and(|gr| gr.is_finite() && gr >= 0.0));
        }
    }
}

#[cfg(test)]
mod check {
    use super::*;

    /// The trainer's check file: the shipped model's output in the training framework's FFT-convolution form (f64,
    /// from a zero state), which the engine's recurrent form must reproduce.
    #[test]
    fn compressor_the_shipped_model_matches_its_training_form() {
        let check: serde_json::Value =
            serde_json::from_str(include_str!("../../../assets/models/compressor/opto.check.json")).unwrap();
        let file = s4d::parse(MODEL).unwrap();
        let cases = check["cases"].as_array().unwrap();
        assert!(cases.len() >= 3);
        for case in cases {
            let floats = |v: &serde_json::Value| -> Vec<f32> {
                v.as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect()
            };
            let (input, want) = (floats(&case["input"]), floats(&case["output"]));
            let controls = [
                case["controls"]["peak_reduction"].as_f64().unwrap() as f32,
                case["controls"]["limit"].as_f64().unwrap() as f32,
            ];
            let mut net = S4dNetwork::new(&file, 64);
            net.set_controls(&controls);
            net.clear();
            let mut got = vec![0.0; input.len()];
            for (x, y) in input.chunks(64).zip(got.chunks_mut(64)) {
                net.process(x, y);
            }
            let worst = got.iter().zip(&want).map(|(g, w)| (g - w).abs()).fold(0.0f32, f32::max);
            let peak = want.iter().fold(0.0f32, |m, w| m.max(w.abs()));
            assert!(worst < 1e-4 * peak.max(0.1), "controls {controls:?}: worst difference {worst} (peak {peak})");
        }
    }
}
