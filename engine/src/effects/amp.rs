//! The neural amp: plays a Neural Amp Modeler `.nam` capture exactly as the reference computes it.
//!
//! Around the model, what the reference plugin does and players expect: input and output gain, loudness
//! normalisation to −18 dB from the file's `metadata.loudness` (on by default, so captures of quiet and loud amps sit
//! at the same level), input calibration from `input_level_dbu` against the player's interface level, a size knob
//! for slimmable models, and the choice of tanh (accurate, or the reference plugin's fast approximation). When the
//! engine runs at another rate than the model was trained at, the model runs at its own rate inside a
//! [`RateAdapter`], and the pedal reports the added latency.
//!
//! Both tanh variants are built and prewarmed when the pedal is prepared, so flipping the switch is a real-time
//! crossfade, not a rebuild.

use std::path::Path;

use crate::dsp::resample::RateAdapter;
use crate::formats::nam::{self, Architecture, NamFile};
use crate::nn::{self, BuildOptions, NeuralModel, TanhMode};
use crate::param::{ParamId, ParamSpec, Smoothed, Unit, db_to_gain};
use crate::pedal::{Channels, ModelInfo, Pedal, PedalInfo};

pub const KIND: &str = "amp";

/// Loudness the reference plugin normalises captures to.
pub const NORMALISED_LOUDNESS_DB: f64 = -18.0;
/// Rate assumed for files that do not say (old captures were all made at 48 kHz).
pub const DEFAULT_MODEL_RATE: f64 = 48_000.0;
/// Crossfade when switching between the tanh variants.
const SWITCH_FADE_MS: f32 = 10.0;

const INPUT: ParamId = ParamId(0);
const OUTPUT: ParamId = ParamId(1);
const NORMALIZE: ParamId = ParamId(2);
const CALIBRATE: ParamId = ParamId(3);
const INTERFACE_DBU: ParamId = ParamId(4);
const FAST_TANH: ParamId = ParamId(5);
const SIZE: ParamId = ParamId(6);

/// Why an amp could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum AmpError {
    #[error(transparent)]
    File(#[from] nam::NamError),
    #[error("{}: {source}", path.display())]
    Build { path: std::path::PathBuf, source: nn::BuildError },
}

pub struct Amp {
    info: PedalInfo,
    file: NamFile,
    path: std::path::PathBuf,
    /// [accurate, fast]; built in `prepare`.
    models: Vec<Box<dyn NeuralModel>>,
    adapter: Option<RateAdapter>,
    active: usize,
    /// Crossfade from the other model to `active` (1 → 0 means fully on `active`).
    fade: Smoothed,
    /// Device-rate output of the adapter.
    scratch: Vec<f32>,
    /// Model-rate output of the variant being faded out.
    model_scratch: Vec<f32>,
    input_gain: Smoothed,
    output_gain: Smoothed,
    values: [f32; 7],
    /// Every parameter the amp understands, allocated once (set_param runs on the audio thread).
    all_params: Vec<ParamSpec>,
    /// (sample rate, max block) the models were built for.
    built_for: Option<(f32, usize)>,
}

impl Amp {
    pub fn params() -> Vec<ParamSpec> {
        vec![
            ParamSpec::new("input_db", "Input", Unit::Decibels, -24.0, 24.0, 0.0),
            ParamSpec::new("output_db", "Output", Unit::Decibels, -40.0, 24.0, 0.0),
            ParamSpec::toggle("normalize", "Normalise", true),
            ParamSpec::toggle("calibrate", "Calibrate", false),
            ParamSpec::new("interface_dbu", "Interface", Unit::Decibels, -10.0, 30.0, 12.2).smoothing(0.0),
            ParamSpec::toggle("fast_tanh", "Fast tanh", false),
            ParamSpec::new("size", "Size", Unit::Percent, 0.0, 100.0, 100.0).smoothing(0.0),
        ]
    }

    /// Reads and checks the file. The model itself is built in [`Pedal::prepare`], for the engine's rate and block.
    pub fn load(path: &Path) -> Result<Self, AmpError> {
        let file = nam::load(path)?;
        Ok(Self::from_file(file, path))
    }

    pub fn from_file(file: NamFile, path: &Path) -> Self {
        let mut params = Self::params();
        let slimmable = is_slimmable(&file.architecture);
        if !slimmable {
            params.truncate(SIZE.0 as usize); // the size knob only exists for models that can change size
        }
        let values = std::array::from_fn(|i| Self::params()[i].default);
        let info = PedalInfo {
            pad: None,
            kind: KIND.into(),
            name: "Neural Amp".into(),
            params,
            channels: Channels::Mono,
            model: Some(model_info(&file, path)),
        };
        Self {
            info,
            file,
            path: path.to_owned(),
            models: Vec::new(),
            adapter: None,
            active: 0,
            fade: Smoothed::new(0.0),
            scratch: Vec::new(),
            model_scratch: Vec::new(),
            input_gain: Smoothed::new(1.0),
            output_gain: Smoothed::new(1.0),
            values,
            all_params: Self::params(),
            built_for: None,
        }
    }

    /// The model's rate (48 kHz when the file does not say).
    pub fn model_rate(&self) -> f64 {
        self.file.sample_rate.unwrap_or(DEFAULT_MODEL_RATE)
    }

    /// Things about the file worth telling the player (newer format version, odd metadata).
    pub fn warnings(&self) -> &[String] {
        &self.file.warnings
    }

    /// Builds the models for the engine's rate and block. Off the audio thread; errors name the file.
    pub fn build(&mut self, sample_rate: f32, max_block: usize) -> Result<(), AmpError> {
        if self.built_for == Some((sample_rate, max_block)) {
            return Ok(());
        }
        let build_error = |source| AmpError::Build { path: self.path.clone(), source };
        let adapter = RateAdapter::new(sample_rate, self.model_rate() as f32, max_block)
            .map_err(|e| build_error(nn::BuildError::Inconsistent(format!("cannot play at {sample_rate} Hz: {e}"))))?;
        let inner_block = adapter.max_inner_block();
        // The reference prewarms in blocks of its maximum block; recurrent models depend on that length.
        let options = |tanh| BuildOptions { tanh, max_block: inner_block, prewarm_block: inner_block };
        let accurate = nn::build_with(&self.file, &options(TanhMode::Accurate)).map_err(build_error)?;
        let fast = nn::build_with(&self.file, &options(TanhMode::Fast)).map_err(build_error)?;
        self.models = vec![accurate, fast];
        self.scratch = vec![0.0; max_block];
        self.model_scratch = vec![0.0; inner_block];
        self.adapter = Some(adapter);
        if let Some(model) = self.info.model.as_mut() {
            model.parameters = self.models[0].parameter_count();
        }
        let ms = crate::param::ParamSpec::DEFAULT_SMOOTHING_MS;
        self.input_gain.set_ramp(sample_rate, ms);
        self.output_gain.set_ramp(sample_rate, ms);
        self.fade.set_ramp(sample_rate, SWITCH_FADE_MS);
        self.built_for = Some((sample_rate, max_block));
        self.apply_size();
        self.update_gains();
        self.input_gain.set_immediate(self.input_gain.target());
        self.output_gain.set_immediate(self.output_gain.target());
        Ok(())
    }

    /// Input gain in dB: the knob, plus the calibration offset when enabled and the file knows its input level.
    pub fn effective_input_db(&self) -> f32 {
        let mut db = self.values[INPUT.0 as usize];
        if self.values[CALIBRATE.0 as usize] >= 0.5
            && let Some(level) = self.file.metadata.input_level_dbu
        {
            db += self.values[INTERFACE_DBU.0 as usize] - level as f32;
        }
        db
    }

    /// Output gain in dB: the knob, plus loudness normalisation when enabled and the file knows its loudness.
    pub fn effective_output_db(&self) -> f32 {
        let mut db = self.values[OUTPUT.0 as usize];
        if self.values[NORMALIZE.0 as usize] >= 0.5
            && let Some(loudness) = self.file.metadata.loudness
        {
            db += (NORMALISED_LOUDNESS_DB - loudness) as f32;
        }
        db
    }

    fn update_gains(&mut self) {
        self.input_gain.set_target(db_to_gain(self.effective_input_db()));
        self.output_gain.set_target(db_to_gain(self.effective_output_db()));
    }

    fn apply_size(&mut self) {
        let ratio = self.values[SIZE.0 as usize] / 100.0;
        for model in &mut self.models {
            model.set_slim(ratio);
        }
    }
}

fn is_slimmable(architecture: &Architecture) -> bool {
    match architecture {
        Architecture::SlimmableContainer(_) => true,
        Architecture::WaveNet(config) => config.layer_arrays.iter().any(|l| l.slimmable.is_some()),
        _ => false,
    }
}

fn model_info(file: &NamFile, path: &Path) -> ModelInfo {
    let m = &file.metadata;
    let name = m.name.clone().filter(|n| !n.trim().is_empty()).unwrap_or_else(|| {
        path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "Unnamed capture".into())
    });
    let mut details = Vec::new();
    let gear = [m.gear_make.as_deref(), m.gear_model.as_deref()].into_iter().flatten().collect::<Vec<_>>().join(" ");
    if !gear.is_empty() {
        details.push(("Gear".into(), gear));
    }
    for (label, value) in [("Type", &m.gear_type), ("Tone", &m.tone_type), ("Modelled by", &m.modeled_by)] {
        if let Some(v) = value.as_ref().filter(|v| !v.is_empty()) {
            details.push((label.into(), v.clone()));
        }
    }
    if let Some(l) = m.loudness {
        details.push(("Loudness".into(), format!("{l:.1} dB")));
    }
    if let Some(l) = m.input_level_dbu {
        details.push(("Input level".into(), format!("{l:.1} dBu")));
    }
    details.push(("Format".into(), format!("{} {}", file.architecture.name(), file.version)));
    ModelInfo {
        name,
        architecture: file.architecture.name().to_owned(),
        sample_rate: file.sample_rate.map(|r| r as f32),
        parameters: file.architecture.weight_count() as usize,
        details,
    }
}

impl Pedal for Amp {
    fn info(&self) -> &PedalInfo {
        &self.info
    }

    fn prepare(&mut self, sample_rate: f32, max_block: usize) {
        // The registry checked the file builds at the default configuration; a failure here (an unsupported rate
        // pair) leaves the pedal silent-safe: `process` passes audio through when no model is built.
        if self.build(sample_rate, max_block).is_err() {
            self.models.clear();
            self.adapter = None;
            self.built_for = None;
        }
    }

    fn set_param(&mut self, id: ParamId, value: f32) {
        // `all_params`, not `info.params`: a model without a size knob still accepts the id (from an old preset).
        let Some(spec) = self.all_params.get(id.0 as usize) else { return };
        let value = spec.clamp(value);
        let previous = std::mem::replace(&mut self.values[id.0 as usize], value);
        match id {
            INPUT | OUTPUT | NORMALIZE | CALIBRATE | INTERFACE_DBU => self.update_gains(),
            FAST_TANH => {
                let wanted = usize::from(value >= 0.5);
                if wanted != self.active && !self.models.is_empty() {
                    // Start the newly chosen model from its prewarmed state and fade over to it.
                    self.models[wanted].reset();
                    self.active = wanted;
                    self.fade.set_immediate(1.0);
                    self.fade.set_target(0.0);
                }
            }
            SIZE if previous != value => self.apply_size(),
            _ => {}
        }
    }

    fn process(&mut self, block: &mut [f32]) {
        let (Some(adapter), false) = (self.adapter.as_mut(), self.models.is_empty()) else { return };
        let n = block.len();
        if self.input_gain.is_smoothing() || self.input_gain.current() != 1.0 {
            for x in block.iter_mut() {
                *x *= self.input_gain.next_value();
            }
        }
        let active = self.active;
        let fading = self.fade.is_smoothing();
        let (models, fade, other_out) = (&mut self.models, &mut self.fade, &mut self.model_scratch);
        let out = &mut self.scratch[..n];
        adapter.process(block, out, &mut |input, output| {
            models[active].process(input, output);
            if fading {
                // During the short tanh-switch crossfade the previous variant runs too, at the model's rate.
                let other = &mut other_out[..input.len()];
                models[1 - active].process(input, other);
                for (o, previous) in output.iter_mut().zip(other.iter()) {
                    let t = fade.next_value();
                    *o += (previous - *o) * t;
                }
            }
        });
        block.copy_from_slice(out);
        if self.output_gain.is_smoothing() || self.output_gain.current() != 1.0 {
            for x in block.iter_mut() {
                *x *= self.output_gain.next_value();
            }
        }
    }

    fn reset(&mut self) {
        for model in &mut self.models {
            model.reset();
        }
        if let Some(adapter) = self.adapter.as_mut() {
            adapter.reset();
        }
        self.fade.set_immediate(0.0);
        self.input_gain.set_immediate(self.input_gain.target());
        self.output_gain.set_immediate(self.output_gain.target());
    }

    fn latency(&self) -> usize {
        self.adapter.as_ref().map_or(0, RateAdapter::latency)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::param::gain_to_db;

    /// A Linear .nam that multiplies by `gain`: the simplest real model, with a known output.
    fn linear_model(gain: f32, rate: Option<f64>, loudness: Option<f64>, input_dbu: Option<f64>) -> Amp {
        let mut json = serde_json::json!({
            "version": "0.5.4", "architecture": "Linear",
            "config": {"receptive_field": 1, "bias": false}, "weights": [gain],
            "metadata": {"loudness": loudness, "input_level_dbu": input_dbu, "name": "Identity", "gear_make": "Test"},
        });
        if let Some(rate) = rate {
            json["sample_rate"] = rate.into();
        }
        let file = nam::parse(&json.to_string()).unwrap();
        Amp::from_file(file, Path::new("identity.nam"))
    }

    /// Computed in f64 so the test tone itself is pure to far below -90 dB.
    fn sine(frequency: f32, rate: f32, n: usize) -> Vec<f32> {
        let w = std::f64::consts::TAU * f64::from(frequency) / f64::from(rate);
        (0..n).map(|i| (0.5 * (w * i as f64).sin()) as f32).collect()
    }

    fn run(amp: &mut Amp, input: &[f32], block: usize) -> Vec<f32> {
        let mut out = input.to_vec();
        for chunk in out.chunks_mut(block) {
            amp.process(chunk);
        }
        out
    }

    fn peak(x: &[f32]) -> f32 {
        x.iter().fold(0.0f32, |m, v| m.max(v.abs()))
    }

    #[test]
    fn loudness_normalisation_brings_a_capture_to_minus_18_db_and_can_be_turned_off() {
        let mut amp = linear_model(1.0, Some(48_000.0), Some(-8.0), None);
        amp.prepare(48_000.0, 64);
        assert_eq!(amp.effective_output_db(), -10.0);
        let out = run(&mut amp, &sine(440.0, 48_000.0, 4800), 64);
        assert!((gain_to_db(peak(&out[2400..]) / 0.5) + 10.0).abs() < 0.01);
        amp.set_param(NORMALIZE, 0.0);
        assert_eq!(amp.effective_output_db(), 0.0);
        // A capture without a loudness figure is left alone.
        let amp = linear_model(1.0, Some(48_000.0), None, None);
        assert_eq!(amp.effective_output_db(), 0.0);
    }

    #[test]
    fn input_calibration_uses_the_interface_level_against_the_capture_level() {
        let mut amp = linear_model(1.0, Some(48_000.0), None, Some(10.0));
        amp.prepare(48_000.0, 64);
        assert_eq!(amp.effective_input_db(), 0.0, "off by default");
        amp.set_param(CALIBRATE, 1.0);
        amp.set_param(INTERFACE_DBU, 16.0);
        assert_eq!(amp.effective_input_db(), 6.0);
        amp.set_param(INPUT, -2.0);
        assert_eq!(amp.effective_input_db(), 4.0);
    }

    #[test]
    fn model_facts_are_exposed_for_the_gui_and_the_size_knob_only_for_slimmable_models() {
        let amp = linear_model(1.0, Some(44_100.0), Some(-20.0), None);
        let model = amp.info().model.as_ref().unwrap();
        assert_eq!(model.name, "Identity");
        assert_eq!(model.architecture, "Linear");
        assert_eq!(model.sample_rate, Some(44_100.0));
        assert!(model.details.iter().any(|(k, v)| k == "Gear" && v == "Test"));
        assert!(amp.info().param_id("size").is_none());
        assert!(amp.info().param_id("fast_tanh").is_some());
    }

    /// Largest spectral component away from `frequency`, in dB relative to it (Blackman-Harris window).
    fn worst_spur_db(signal: &[f32], rate: f32, frequency: f32) -> f32 {
        let n = signal.len();
        let mut planner = realfft::RealFftPlanner::<f64>::new();
        let fft = planner.plan_fft_forward(n);
        let mut input: Vec<f64> = signal
            .iter()
            .enumerate()
            .map(|(i, &x)| {
                let t = std::f64::consts::TAU * i as f64 / n as f64;
                let w = 0.35875 - 0.48829 * t.cos() + 0.14128 * (2.0 * t).cos() - 0.01168 * (3.0 * t).cos();
                f64::from(x) * w
            })
            .collect();
        let mut spectrum = fft.make_output_vec();
        fft.process(&mut input, &mut spectrum).unwrap();
        let bin = (frequency as f64 * n as f64 / rate as f64).round() as usize;
        let mags: Vec<f64> = spectrum.iter().map(|c| c.norm()).collect();
        let tone = mags[bin - 2..=bin + 2].iter().cloned().fold(0.0, f64::max);
        let spur = mags.iter().enumerate().filter(|(i, _)| i.abs_diff(bin) > 8).map(|(_, m)| *m).fold(0.0, f64::max);
        (20.0 * (spur / tone).log10()) as f32
    }

    #[test]
    fn a_48k_model_plays_at_44k1_and_96k_without_aliasing_or_imaging_above_minus_90_db() {
        for device_rate in [44_100.0f32, 96_000.0] {
            let mut amp = linear_model(1.0, Some(48_000.0), None, None);
            amp.prepare(device_rate, 64);
            assert!(amp.latency() > 0 && amp.latency() < (device_rate * 0.002) as usize, "latency {}", amp.latency());
            for frequency in [1_000.0f32, 7_000.0, 15_000.0] {
                amp.reset();
                let n = 1 << 16;
                let input = sine(frequency, device_rate, n + 4096);
                let out = run(&mut amp, &input, 64);
                let spur = worst_spur_db(&out[4096..], device_rate, frequency);
                assert!(spur < -90.0, "{frequency} Hz at {device_rate} Hz: spurious component at {spur:.1} dB");
            }
        }
    }

    #[test]
    fn switching_to_fast_tanh_crossfades_without_a_click() {
        let json = r#"{"version":"0.5.4","architecture":"LSTM","config":{"input_size":1,"hidden_size":2,"num_layers":1},
            "weights":[0.5,0.1,0.2, 0.3,0.4,0.1, 0.9,0.2,0.1, 0.1,0.3,0.2, 0.8,0.6,0.3, 0.2,0.5,0.7, 0.4,0.1,0.9, 0.3,0.3,0.3,
                       0.1,0.2,0.3,0.4,0.5,0.6,0.7,0.8, 0.0,0.0, 0.0,0.0, 1.0,0.5, 0.0],
            "sample_rate": 48000}"#;
        let mut amp = Amp::from_file(nam::parse(json).unwrap(), Path::new("tiny.nam"));
        amp.prepare(48_000.0, 64);
        let input = sine(220.0, 48_000.0, 9600);
        let mut out = input.clone();
        let mut max_step = 0.0f32;
        for (k, chunk) in out.chunks_mut(64).enumerate() {
            if k == 75 {
                amp.set_param(FAST_TANH, 1.0);
            }
            amp.process(chunk);
        }
        for w in out[64..].windows(2) {
            max_step = max_step.max((w[1] - w[0]).abs());
        }
        let natural = out[64..4800].windows(2).fold(0.0f32, |m, w| m.max((w[1] - w[0]).abs()));
        assert!(max_step <= natural * 1.05 + 1e-4, "step {max_step} vs the signal's own {natural}");
    }
}
