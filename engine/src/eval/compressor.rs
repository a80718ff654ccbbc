//! A compressor model's manifest (`training/compressor/train.py`) and its evaluation: held-out ESR per split, plus
//! the dynamics against the teacher ([`super::dynamics`]): the static gain-reduction curve and attack/release times.
//!
//! Each chunk is `neuralboard corpus --seed SEED --seconds S`, times a piecewise-constant gain (one value per
//! `segment_samples`, `null` = silence: the note-offs after which the release shows), through the opto teacher at
//! the chunk's peak reduction and limit. The model runs over the whole chunk from the manifest's `initial_state`:
//! the zero state, or the state silence settles it to (the pedal's after a reset); the ESR leaves out the first
//! `esr_warmup_seconds` of each chunk, over which a zero state's slow modes settle.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

use super::dynamics::{self, Processor, Timing};
use super::{EvalError, MANIFEST_VERSION, MAX_SPLIT_SECONDS, RecordedSplit, SplitEvaluation, TeacherSpec};
use crate::corpus::{self, CorpusSpec};
use crate::formats::s4d::{self, S4dFile};
use crate::nn::s4d::S4dNetwork;
use crate::teacher::{self, Teacher};

/// Block length the model runs in.
const BLOCK: usize = 64;
/// Knob settings the dynamics are compared at: (peak reduction, limit).
pub const DYNAMICS_SETTINGS: [(f32, f32); 4] = [(40.0, 0.0), (70.0, 0.0), (100.0, 0.0), (70.0, 1.0)];

#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct CompressorManifest {
    pub manifest_version: u32,
    pub name: String,
    pub file: String,
    pub architecture: String,
    pub sample_rate: u32,
    pub teacher: TeacherSpec,
    pub chunks: BTreeMap<String, Vec<CompressorChunk>>,
    pub results: BTreeMap<String, RecordedSplit>,
    pub target_esr: BTreeMap<String, f64>,
    #[serde(default)]
    pub targets_missed: Vec<String>,
    pub esr_warmup_seconds: f32,
    /// Where the model starts each chunk (manifests before it was recorded: the zero state).
    #[serde(default)]
    pub initial_state: InitialState,
}

/// The state a model starts a chunk from.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum InitialState {
    /// Every state zero (what a training framework computes from by default).
    #[default]
    Zero,
    /// The state silence settles the network to ([`S4dNetwork::settle`]).
    Settled,
}

/// One piece of a compressor test split.
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct CompressorChunk {
    pub seed: u64,
    pub seconds: f32,
    pub segment_samples: usize,
    /// Gain of each segment in dB; `None` = silent.
    pub gains_db: Vec<Option<f64>>,
    pub peak_reduction: f32,
    pub limit: f32,
}

/// The dynamics at one knob setting, teacher against model.
#[derive(Debug, Clone, PartialEq)]
pub struct DynamicsComparison {
    pub peak_reduction: f32,
    pub limit: f32,
    /// Largest difference between the two static curves, dB.
    pub static_max_difference_db: f64,
    pub teacher: Option<Timing>,
    pub model: Option<Timing>,
    /// Gain ripple on a held low E (dB, max − min): the teacher's and the model's.
    pub ripple_db: (f64, f64),
    /// Largest difference between the two gain reductions over the attack and over the release of the step (dB;
    /// [`dynamics::step_curve_differences`]).
    pub step_curves_db: (f64, f64),
}

impl DynamicsComparison {
    /// `model / teacher − 1` for the attack and the release times, when both compress; the release's `None` when
    /// either does not release within the measurement.
    pub fn timing_errors(&self) -> Option<(f64, Option<f64>)> {
        let (t, m) = (self.teacher?, self.model?);
        Some((m.attack_s / t.attack_s - 1.0, m.release_s.zip(t.release_s).map(|(m, t)| m / t - 1.0)))
    }
}

impl CompressorManifest {
    pub fn parse(text: &str) -> Result<Self, String> {
        let m: Self = serde_json::from_str(text).map_err(|e| e.to_string())?;
        if m.manifest_version != MANIFEST_VERSION {
            return Err(format!("manifest_version {} is not supported", m.manifest_version));
        }
        if !(8_000..=384_000).contains(&m.sample_rate) {
            return Err(format!("sample_rate {} is outside 8000..=384000", m.sample_rate));
        }
        if m.file.is_empty() || Path::new(&m.file).components().count() != 1 {
            return Err(format!("file '{}' must be a file name beside the manifest", m.file));
        }
        if !(0.0..=10.0).contains(&m.esr_warmup_seconds) {
            return Err("esr_warmup_seconds must be in 0..=10".into());
        }
        if !m.chunks.contains_key("test") {
            return Err("chunks has no \"test\" split".into());
        }
        for (split, chunks) in &m.chunks {
            let recorded = m.results.get(split).ok_or_else(|| format!("results has no \"{split}\""))?;
            if !(recorded.esr.is_finite() && recorded.esr >= 0.0) {
                return Err(format!("results.{split}.esr is not a non-negative number"));
            }
            if chunks.is_empty() {
                return Err(format!("chunks.{split} is empty"));
            }
            for (i, c) in chunks.iter().enumerate() {
                let at = format!("chunks.{split}[{i}]");
                if !(c.seconds > 0.0 && c.seconds <= MAX_SPLIT_SECONDS) {
                    return Err(format!("{at}.seconds must be in (0, {MAX_SPLIT_SECONDS}]"));
                }
                let samples = (f64::from(c.seconds) * f64::from(m.sample_rate)).round() as usize;
                if c.segment_samples == 0 || c.gains_db.len() * c.segment_samples < samples {
                    return Err(format!("{at}: the gains do not cover the chunk"));
                }
                if c.gains_db.iter().flatten().any(|g| !(g.is_finite() && (-120.0..=40.0).contains(g))) {
                    return Err(format!("{at}.gains_db must be in −120..=40 dB"));
                }
                m.build_teacher(c).map_err(|e| format!("{at}: teacher: {e}"))?;
            }
        }
        for split in &m.targets_missed {
            let (Some(target), Some(recorded)) = (m.target_esr.get(split), m.results.get(split)) else {
                return Err(format!("targets_missed names '{split}', which has no target or result"));
            };
            if recorded.esr <= *target {
                return Err(format!("targets_missed names '{split}', but its ESR {} meets {target}", recorded.esr));
            }
        }
        Ok(m)
    }

    fn build_teacher(&self, chunk: &CompressorChunk) -> Result<Box<dyn Teacher>, teacher::TeacherError> {
        let mut params: Vec<(String, String)> =
            self.teacher.params.iter().map(|(k, v)| (k.clone(), v.to_string())).collect();
        params.push(("peak_reduction".into(), chunk.peak_reduction.to_string()));
        params.push(("limit".into(), chunk.limit.to_string()));
        teacher::build(&self.teacher.kind, self.sample_rate as f32, &params)
    }

    /// A chunk's input (the corpus with its segment gains) and the teacher's output.
    pub fn chunk(&self, chunk: &CompressorChunk) -> Result<(Vec<f32>, Vec<f32>), String> {
        let spec = CorpusSpec { sample_rate: self.sample_rate as f32, ..CorpusSpec::new(chunk.seed, chunk.seconds) };
        let mut input = corpus::generate(&spec).samples;
        for (segment, gain) in input.chunks_mut(chunk.segment_samples).zip(&chunk.gains_db) {
            let g = gain.map_or(0.0, |db| 10f64.powf(db / 20.0));
            for x in segment {
                *x = (f64::from(*x) * g) as f32;
            }
        }
        let mut teacher = self.build_teacher(chunk).map_err(|e| format!("teacher: {e}"))?;
        let target = teacher::render(teacher.as_mut(), &input).output;
        Ok((input, target))
    }

    fn describe(&self, split: &str) -> String {
        let chunks = &self.chunks[split];
        let seconds: f32 = chunks.iter().map(|c| c.seconds).sum();
        let mut settings: Vec<String> =
            chunks.iter().map(|c| format!("{}{}", c.peak_reduction, if c.limit >= 0.5 { "L" } else { "" })).collect();
        settings.dedup();
        format!("{} chunks, {seconds} s, peak reduction {} (L = limit)", chunks.len(), settings.join(" "))
    }
}

/// Runs the network over `input` in blocks from `initial`.
fn run_from(net: &mut S4dNetwork, initial: InitialState, input: &[f32]) -> Vec<f32> {
    match initial {
        InitialState::Zero => net.clear(),
        InitialState::Settled => net.settle(),
    }
    let mut out = vec![0.0; input.len()];
    for (x, y) in input.chunks(BLOCK).zip(out.chunks_mut(BLOCK)) {
        net.process(x, y);
    }
    out
}

/// The held-out ESR of every split of `manifest` for the model in `file`.
pub fn evaluate_splits(manifest: &CompressorManifest, file: &S4dFile) -> Result<Vec<SplitEvaluation>, String> {
    let mut net = S4dNetwork::new(file, BLOCK);
    let warmup = (manifest.esr_warmup_seconds * manifest.sample_rate as f32) as usize;
    let mut splits = Vec::new();
    for (split, chunks) in &manifest.chunks {
        let (mut err, mut sig, mut samples) = (0.0f64, 0.0f64, 0usize);
        for chunk in chunks {
            let (input, target) = manifest.chunk(chunk)?;
            net.set_controls(&[chunk.peak_reduction, chunk.limit]);
            let output = run_from(&mut net, manifest.initial_state, &input);
            let from = warmup.min(input.len());
            let (e, s) = super::error_and_signal(&target[from..], &output[from..]);
            err += e;
            sig += s;
            samples += input.len();
        }
        splits.push(SplitEvaluation {
            split: split.clone(),
            description: manifest.describe(split),
            esr: if sig > 0.0 { err / sig } else { f64::INFINITY },
            recorded_esr: manifest.results[split].esr,
            target: manifest.target_esr.get(split).copied(),
            target_missed: manifest.targets_missed.contains(split),
            seconds: samples as f64 / f64::from(manifest.sample_rate),
            breakdown: None,
        });
    }
    Ok(splits)
}

/// Static curves and attack/release of the model against the opto teacher at [`DYNAMICS_SETTINGS`]. The model
/// starts each measurement in the state of silence (as the pedal does after a reset).
pub fn compare_dynamics(file: &S4dFile) -> Vec<DynamicsComparison> {
    let rate = file.sample_rate;
    let teacher = |peak_reduction: f32, limit: f32| -> Box<Processor<'static>> {
        let settings = teacher::opto::OptoSettings { peak_reduction, gain: 0.0, limit };
        let mut t = teacher::opto::Opto::new(rate, settings);
        Box::new(move |input: &[f32], output: &mut [f32]| {
            for (y, &x) in output.iter_mut().zip(input) {
                *y = t.tick(x);
            }
        })
    };
    let model = |peak_reduction: f32, limit: f32| -> Box<Processor<'static>> {
        let mut net = S4dNetwork::new(file, BLOCK);
        net.set_controls(&[peak_reduction, limit]);
        net.settle();
        Box::new(move |input: &[f32], output: &mut [f32]| net.process(input, output))
    };
    DYNAMICS_SETTINGS
        .iter()
        .map(|&(p, l)| {
            let of_teacher = dynamics::static_curve(rate, &mut || teacher(p, l));
            let of_model = dynamics::static_curve(rate, &mut || model(p, l));
            let static_max_difference_db =
                of_teacher.iter().zip(&of_model).map(|(t, m)| (t.1 - m.1).abs()).fold(0.0, f64::max);
            let step_teacher = dynamics::StepResponse::measure(rate, &mut *teacher(p, l));
            let step_model = dynamics::StepResponse::measure(rate, &mut *model(p, l));
            DynamicsComparison {
                peak_reduction: p,
                limit: l,
                static_max_difference_db,
                teacher: dynamics::timing_of(rate, &step_teacher),
                model: dynamics::timing_of(rate, &step_model),
                step_curves_db: dynamics::step_curve_differences(rate, &step_teacher, &step_model),
                ripple_db: (
                    dynamics::ripple_db(rate, &mut *teacher(p, l)),
                    dynamics::ripple_db(rate, &mut *model(p, l)),
                ),
            }
        })
        .collect()
}

/// Loads a compressor model named by its manifest and checks it is the file the manifest describes.
pub fn load_model(model_path: &Path, manifest: &CompressorManifest) -> Result<S4dFile, EvalError> {
    let model_error = |message: String| EvalError::Model { path: model_path.to_owned(), message };
    let named = model_path.file_name().map(|n| n.to_string_lossy().into_owned());
    if named.as_deref() != Some(manifest.file.as_str()) {
        return Err(model_error(format!("its manifest describes '{}', not this file", manifest.file)));
    }
    let file = s4d::load(model_path).map_err(|e| model_error(e.to_string()))?;
    if (file.sample_rate - manifest.sample_rate as f32).abs() > 0.5 {
        return Err(model_error(format!(
            "model rate {} Hz, manifest says {} Hz",
            file.sample_rate, manifest.sample_rate
        )));
    }
    Ok(file)
}
