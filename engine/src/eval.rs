//! Model manifests, and the evaluation `neuralboard eval` runs on a shipped model.
//!
//! Every model the project ships sits beside a manifest (`NAME.manifest.json` next to `NAME.nam`) that says how it
//! was made: the teacher and its settings, the corpus seeds of the train/validation/test splits, and the ESR the
//! training recipe measured on the test split with the trainer's own forward pass. [`evaluate`] regenerates that
//! test split here (same corpus seed, same teacher, same settings), runs the engine's inference over it and measures
//! the ESR again: the two agree when the trainer's and the engine's forward passes agree, and the recipe is
//! reproducible.
//!
//! ESR (error-to-signal ratio) is `Σ(teacher − model)² / Σ teacher²` over the whole split, the model starting from
//! its prewarmed (silent) state, with no pre-emphasis.
//!
//! Two kinds of manifest: an amp model's ([`Manifest`], `training/amp`) has one test split; a modulation model's
//! ([`ModulationManifest`], `training/modulation`, teacher kind phaser or flanger) has several — held-out audio at
//! the training rates, at rates between them, and at reduced depth — each a list of chunks with their own LFO
//! settings, and the model is fed the teacher's LFO beside the audio.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

pub mod compressor;
pub mod decay;
pub mod dynamics;
pub mod reverb;

use crate::corpus::{self, CorpusSpec, PhraseKind};
use crate::formats::nam;
use crate::nn::{self, TanhMode};
use crate::teacher::{self, Teacher};

/// The manifest format this build reads.
pub const MANIFEST_VERSION: u32 = 1;
/// Longest test split a manifest may ask for, seconds.
const MAX_SPLIT_SECONDS: f32 = 600.0;
/// The longest `lfo_pre_roll_s` a modulation manifest may ask for.
const MAX_PRE_ROLL_S: f32 = 10.0;
/// Block length the evaluation runs the model in (what a live engine typically uses).
const EVAL_BLOCK: usize = 64;

/// What the manifest beside a shipped model records (fields this build does not use are ignored).
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct Manifest {
    pub manifest_version: u32,
    pub name: String,
    /// The model file, relative to the manifest's folder.
    pub file: String,
    pub architecture: String,
    pub sample_rate: u32,
    pub teacher: TeacherSpec,
    pub splits: Splits,
    /// ESR on the test split measured by the training recipe.
    pub test_esr: f64,
    /// The ESR the model had to reach to ship.
    pub target_esr: Option<f64>,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct TeacherSpec {
    pub kind: String,
    #[serde(default)]
    pub params: BTreeMap<String, f64>,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct Splits {
    pub train: Split,
    pub validation: Split,
    pub test: Split,
}

/// One corpus split: `neuralboard corpus --seed SEED --seconds SECONDS`.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq)]
pub struct Split {
    pub seed: u64,
    pub seconds: f32,
}

#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    #[error("{}: cannot read: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{}: not a valid manifest: {message}", path.display())]
    BadManifest { path: PathBuf, message: String },
    #[error("{}: {message}", path.display())]
    Model { path: PathBuf, message: String },
}

impl Manifest {
    /// Reads and checks a manifest.
    pub fn load(path: &Path) -> Result<Self, EvalError> {
        let text = std::fs::read_to_string(path).map_err(|source| EvalError::Io { path: path.to_owned(), source })?;
        Self::parse(&text).map_err(|message| EvalError::BadManifest { path: path.to_owned(), message })
    }

    /// Parses and checks manifest text; the error says what is wrong.
    pub fn parse(text: &str) -> Result<Self, String> {
        let manifest: Manifest = serde_json::from_str(text).map_err(|e| e.to_string())?;
        manifest.check()?;
        Ok(manifest)
    }

    fn check(&self) -> Result<(), String> {
        if self.manifest_version != MANIFEST_VERSION {
            return Err(format!(
                "manifest_version {} is not supported (this build reads {MANIFEST_VERSION})",
                self.manifest_version
            ));
        }
        if !(8_000..=384_000).contains(&self.sample_rate) {
            return Err(format!("sample_rate {} is outside 8000..=384000", self.sample_rate));
        }
        for (name, split) in
            [("train", self.splits.train), ("validation", self.splits.validation), ("test", self.splits.test)]
        {
            if !(split.seconds > 0.0 && split.seconds <= MAX_SPLIT_SECONDS) {
                return Err(format!("splits.{name}.seconds must be in (0, {MAX_SPLIT_SECONDS}]"));
            }
        }
        let seeds = [self.splits.train.seed, self.splits.validation.seed, self.splits.test.seed];
        if seeds[0] == seeds[1] || seeds[0] == seeds[2] || seeds[1] == seeds[2] {
            return Err("the train, validation and test splits must use different corpus seeds".into());
        }
        if !(self.test_esr.is_finite() && self.test_esr >= 0.0) {
            return Err(format!("test_esr {} is not a non-negative number", self.test_esr));
        }
        if self.file.is_empty() || Path::new(&self.file).components().count() != 1 {
            return Err(format!("file '{}' must be a file name beside the manifest", self.file));
        }
        // The teacher and its settings must be ones this build knows.
        self.build_teacher().map_err(|e| format!("teacher: {e}"))?;
        Ok(())
    }

    fn build_teacher(&self) -> Result<Box<dyn Teacher>, teacher::TeacherError> {
        let params: Vec<(String, String)> =
            self.teacher.params.iter().map(|(k, v)| (k.clone(), v.to_string())).collect();
        teacher::build(&self.teacher.kind, self.sample_rate as f32, &params)
    }
}

/// The manifest that belongs beside a model file: `NAME.nam` → `NAME.manifest.json`.
pub fn manifest_path_for(model: &Path) -> PathBuf {
    // `opto.s4d.json` → `opto.manifest.json`, `rooms.reverb.json` → `rooms.manifest.json`: the format's double
    // extension goes too.
    let name = model.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    match name.strip_suffix(".s4d.json").or_else(|| name.strip_suffix(".reverb.json")) {
        Some(stem) => model.with_file_name(format!("{stem}.manifest.json")),
        None => model.with_extension("manifest.json"),
    }
}

/// The test split of a manifest: the corpus input and the teacher's output, sample-aligned.
pub fn test_split(manifest: &Manifest) -> Result<(Vec<f32>, Vec<f32>), String> {
    let spec = CorpusSpec::new(manifest.splits.test.seed, manifest.splits.test.seconds);
    let spec = CorpusSpec { sample_rate: manifest.sample_rate as f32, ..spec };
    let input = corpus::generate(&spec).samples;
    let mut teacher = manifest.build_teacher().map_err(|e| format!("teacher: {e}"))?;
    let output = teacher::render(teacher.as_mut(), &input).output;
    Ok((input, output))
}

/// What [`evaluate`] measured: one line per test split.
#[derive(Debug, Clone)]
pub struct Evaluation {
    pub manifest_path: PathBuf,
    pub name: String,
    pub architecture: String,
    pub sample_rate: u32,
    pub splits: Vec<SplitEvaluation>,
    /// For a compressor: its static curves and timings against the teacher's.
    pub dynamics: Vec<compressor::DynamicsComparison>,
}

/// One test split, measured again here.
#[derive(Debug, Clone)]
pub struct SplitEvaluation {
    /// `"test"`, `"test_unseen_rates"`, ...
    pub split: String,
    /// What the split holds, for people ("corpus seed 4203, 30 s through teacher amp gain=1.5 ...").
    pub description: String,
    /// ESR of the engine's inference against the teacher.
    pub esr: f64,
    /// ESR the training recipe recorded.
    pub recorded_esr: f64,
    /// The ESR the model is meant to reach.
    pub target: Option<f64>,
    /// The manifest records that the model misses `target` on this split (it ships as the best its recipe reached).
    pub target_missed: bool,
    pub seconds: f64,
    /// For a split made of corpus chunks with test signals in them (modulation models): how the error divides
    /// between the guitar and the test signals.
    pub breakdown: Option<TestSignalBreakdown>,
}

/// A split's error with the corpus's test signals (sweeps, noise bursts) set apart from the guitar.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TestSignalBreakdown {
    /// The ESR over the samples outside the test signals.
    pub esr_without: f64,
    /// The test signals' share of the split's squared error, and of its signal energy.
    pub error_share: f64,
    pub signal_share: f64,
}

impl SplitEvaluation {
    /// `esr / recorded_esr − 1`: how far this measurement is from the recorded one, as a fraction.
    pub fn relative_difference(&self) -> f64 {
        self.esr / self.recorded_esr.max(f64::MIN_POSITIVE) - 1.0
    }
}

/// Regenerates the test splits named by the manifest beside `model_path`, runs the model over them with the engine's
/// inference (accurate tanh, prewarmed, blocks of 64) and returns the ESR of each against the teacher.
///
/// Amp manifests ([`Manifest`]) have one test split; modulation manifests ([`ModulationManifest`], teacher kind
/// phaser or flanger) have several, each a list of chunks with their own LFO settings.
pub fn evaluate(model_path: &Path) -> Result<Evaluation, EvalError> {
    let manifest_path = manifest_path_for(model_path);
    if !manifest_path.is_file() {
        return Err(EvalError::Model {
            path: model_path.to_owned(),
            message: format!("no manifest beside it (expected {})", manifest_path.display()),
        });
    }
    let text = std::fs::read_to_string(&manifest_path)
        .map_err(|source| EvalError::Io { path: manifest_path.clone(), source })?;
    let bad_manifest = |message: String| EvalError::BadManifest { path: manifest_path.clone(), message };
    let kind =
        serde_json::from_str::<serde_json::Value>(&text).map_err(|e| bad_manifest(e.to_string()))?["teacher"]["kind"]
            .as_str()
            .map(str::to_owned);
    let model_error = |message: String| EvalError::Model { path: model_path.to_owned(), message };
    let check_file = |file: &str, sample_rate: u32| -> Result<nam::NamFile, EvalError> {
        let named = model_path.file_name().map(|n| n.to_string_lossy().into_owned());
        if named.as_deref() != Some(file) {
            return Err(model_error(format!("its manifest describes '{file}', not this file")));
        }
        let nam_file = nam::load(model_path).map_err(|e| model_error(e.to_string()))?;
        if let Some(rate) = nam_file.sample_rate
            && (rate - f64::from(sample_rate)).abs() > 0.5
        {
            return Err(model_error(format!("model rate {rate} Hz, manifest says {sample_rate} Hz")));
        }
        Ok(nam_file)
    };

    if kind.as_deref() == Some("opto") {
        let manifest = compressor::CompressorManifest::parse(&text).map_err(bad_manifest)?;
        let file = compressor::load_model(model_path, &manifest)?;
        let splits = compressor::evaluate_splits(&manifest, &file).map_err(bad_manifest)?;
        return Ok(Evaluation {
            manifest_path,
            name: manifest.name,
            architecture: manifest.architecture,
            sample_rate: manifest.sample_rate,
            splits,
            dynamics: compressor::compare_dynamics(&file),
        });
    }

    if matches!(kind.as_deref(), Some("phaser" | "flanger")) {
        let manifest = ModulationManifest::parse(&text).map_err(bad_manifest)?;
        let file = check_file(&manifest.file, manifest.sample_rate)?;
        let options = nn::BuildOptions::new(TanhMode::Accurate, EVAL_BLOCK);
        let mut model = nn::build_conditioned(&file, &options).map_err(|e| model_error(e.to_string()))?;
        if model.in_channels() != 2 {
            return Err(model_error(format!("{} input channels; a modulation model has 2", model.in_channels())));
        }
        let mut splits = Vec::new();
        for (split, chunks) in &manifest.chunks {
            let (mut err, mut sig, mut samples) = (0.0f64, 0.0f64, 0usize);
            let (mut test_err, mut test_sig) = (0.0f64, 0.0f64);
            for chunk in chunks {
                let audio = manifest.chunk(chunk).map_err(bad_manifest)?;
                model.restore_state();
                let output = run_modulation(model.as_mut(), &audio.input, &audio.lfo);
                let (e, s) = error_and_signal(&audio.target[audio.skip..], &output[audio.skip..]);
                err += e;
                sig += s;
                samples += audio.input.len() - audio.skip;
                for range in &audio.test_signals {
                    let (e, s) = error_and_signal(&audio.target[range.clone()], &output[range.clone()]);
                    test_err += e;
                    test_sig += s;
                }
            }
            let guitar_sig = sig - test_sig;
            splits.push(SplitEvaluation {
                split: split.clone(),
                description: manifest.describe(split),
                esr: if sig > 0.0 { err / sig } else { f64::INFINITY },
                recorded_esr: manifest.results[split].esr,
                target: manifest.target_esr.get(split).copied(),
                target_missed: manifest.targets_missed.contains(split),
                seconds: samples as f64 / f64::from(manifest.sample_rate),
                breakdown: (test_sig > 0.0 && guitar_sig > 0.0).then(|| TestSignalBreakdown {
                    esr_without: (err - test_err) / guitar_sig,
                    error_share: test_err / err.max(f64::MIN_POSITIVE),
                    signal_share: test_sig / sig,
                }),
            });
        }
        return Ok(Evaluation {
            manifest_path,
            name: manifest.name,
            architecture: manifest.architecture,
            sample_rate: manifest.sample_rate,
            splits,
            dynamics: Vec::new(),
        });
    }

    let manifest = Manifest::parse(&text).map_err(bad_manifest)?;
    let file = check_file(&manifest.file, manifest.sample_rate)?;
    let mut model = nn::build(&file, TanhMode::Accurate, EVAL_BLOCK).map_err(|e| model_error(e.to_string()))?;
    let (input, target) = test_split(&manifest).map_err(bad_manifest)?;
    let mut output = vec![0.0f32; input.len()];
    for (x, y) in input.chunks(EVAL_BLOCK).zip(output.chunks_mut(EVAL_BLOCK)) {
        model.process(x, y);
    }
    let settings: Vec<String> = manifest.teacher.params.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let split = SplitEvaluation {
        split: "test".into(),
        description: format!(
            "corpus seed {}, {} s through teacher {} {}",
            manifest.splits.test.seed,
            manifest.splits.test.seconds,
            manifest.teacher.kind,
            settings.join(" ")
        ),
        esr: esr(&target, &output),
        recorded_esr: manifest.test_esr,
        target: manifest.target_esr,
        target_missed: false,
        seconds: input.len() as f64 / f64::from(manifest.sample_rate),
        breakdown: None,
    };
    Ok(Evaluation {
        manifest_path,
        name: manifest.name,
        architecture: manifest.architecture,
        sample_rate: manifest.sample_rate,
        splits: vec![split],
        dynamics: Vec::new(),
    })
}

/// Runs a two-input modulation model over `input` with `lfo` in blocks of [`EVAL_BLOCK`], as the pedal does:
/// output = input + network.
fn run_modulation(model: &mut dyn nn::Dsp, input: &[f32], lfo: &[f32]) -> Vec<f32> {
    let mut planar = vec![0.0f32; 2 * EVAL_BLOCK];
    let mut net = vec![0.0f32; EVAL_BLOCK];
    let mut output = Vec::with_capacity(input.len());
    for (x, l) in input.chunks(EVAL_BLOCK).zip(lfo.chunks(EVAL_BLOCK)) {
        let n = x.len();
        planar[..n].copy_from_slice(x);
        planar[n..2 * n].copy_from_slice(l);
        model.process(&planar[..2 * n], &mut net[..n], n);
        output.extend(x.iter().zip(&net[..n]).map(|(x, y)| x + y));
    }
    output
}

/// A modulation model's manifest (`training/modulation/train.py`): test splits made of chunks, each a corpus seed
/// through the teacher at its own LFO rate, waveform, start phase and depth scale.
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct ModulationManifest {
    pub manifest_version: u32,
    pub name: String,
    pub file: String,
    pub architecture: String,
    pub sample_rate: u32,
    pub teacher: TeacherSpec,
    /// Split name → its chunks.
    pub chunks: BTreeMap<String, Vec<Chunk>>,
    /// Split name → what the recipe measured.
    pub results: BTreeMap<String, RecordedSplit>,
    /// Split name → the ESR it had to reach.
    pub target_esr: BTreeMap<String, f64>,
    /// Splits whose recorded ESR is above their target: the model ships as the best its recipe reached, and says so.
    #[serde(default)]
    pub targets_missed: Vec<String>,
    /// Seconds of silence before each chunk during which the LFO already runs, not scored: the chunk's audio meets
    /// the LFO at the chunk's phase without a step, as in the pedal, whose LFO never jumps. (0 in manifests
    /// written before 2026-11-27: the LFO stepped from the prewarm's 0 to the chunk's phase at its first sample.)
    #[serde(default)]
    pub lfo_pre_roll_s: f32,
}

/// A modulation chunk's audio: the input, the LFO as the model is fed it, and the teacher's output, each starting
/// with `skip` samples of pre-roll that are not scored.
pub struct ChunkAudio {
    pub input: Vec<f32>,
    pub lfo: Vec<f32>,
    pub target: Vec<f32>,
    pub skip: usize,
    /// Where the corpus plays its test signals (log sweeps to 16–20 kHz, noise bursts), as sample ranges of `input`
    /// each extended by [`TEST_SIGNAL_TAIL_S`] for the effect's tail.
    pub test_signals: Vec<std::ops::Range<usize>>,
}

/// How long after a test signal the effect's output still carries it (the flanger's longest delay is 1.2 ms, its
/// feedback echoes fade within a few more).
const TEST_SIGNAL_TAIL_S: f32 = 0.01;

/// One piece of a modulation test split.
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct Chunk {
    pub seed: u64,
    pub seconds: f32,
    pub rate: f32,
    pub waveform: String,
    pub phase: f32,
    /// The teacher runs at `depth_scale ×` its depth, and the model is fed `depth_scale × LFO`.
    pub depth_scale: f32,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct RecordedSplit {
    pub esr: f64,
}

impl ModulationManifest {
    pub fn parse(text: &str) -> Result<Self, String> {
        let manifest: Self = serde_json::from_str(text).map_err(|e| e.to_string())?;
        if manifest.manifest_version != MANIFEST_VERSION {
            return Err(format!("manifest_version {} is not supported", manifest.manifest_version));
        }
        if !(8_000..=384_000).contains(&manifest.sample_rate) {
            return Err(format!("sample_rate {} is outside 8000..=384000", manifest.sample_rate));
        }
        if manifest.file.is_empty() || Path::new(&manifest.file).components().count() != 1 {
            return Err(format!("file '{}' must be a file name beside the manifest", manifest.file));
        }
        if !manifest.chunks.contains_key("test") {
            return Err("chunks has no \"test\" split".into());
        }
        if !(0.0..=MAX_PRE_ROLL_S).contains(&manifest.lfo_pre_roll_s) {
            return Err(format!("lfo_pre_roll_s must be in 0..={MAX_PRE_ROLL_S}"));
        }
        for split in &manifest.targets_missed {
            let (Some(target), Some(recorded)) = (manifest.target_esr.get(split), manifest.results.get(split)) else {
                return Err(format!("targets_missed names '{split}', which has no target or result"));
            };
            if recorded.esr <= *target {
                return Err(format!("targets_missed names '{split}', but its ESR {} meets {target}", recorded.esr));
            }
        }
        for (split, chunks) in &manifest.chunks {
            let recorded = manifest.results.get(split).ok_or_else(|| format!("results has no \"{split}\""))?;
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
                if !(0.0..=1.0).contains(&c.depth_scale) {
                    return Err(format!("{at}.depth_scale must be in 0..=1"));
                }
                manifest.build_teacher(c).map_err(|e| format!("{at}: teacher: {e}"))?;
            }
        }
        Ok(manifest)
    }

    /// The teacher for a chunk, its LFO started `lfo_pre_roll_s` before the chunk's phase.
    fn build_teacher(&self, chunk: &Chunk) -> Result<Box<dyn Teacher>, teacher::TeacherError> {
        let phase =
            (f64::from(chunk.phase) - f64::from(chunk.rate) * f64::from(self.lfo_pre_roll_s)).rem_euclid(1.0) as f32;
        let mut params: Vec<(String, String)> = Vec::new();
        for (k, v) in &self.teacher.params {
            let v = if k == "depth" { v * f64::from(chunk.depth_scale) } else { *v };
            params.push((k.clone(), v.to_string()));
        }
        params.push(("rate".into(), chunk.rate.to_string()));
        params.push(("waveform".into(), chunk.waveform.clone()));
        params.push(("phase".into(), phase.to_string()));
        teacher::build(&self.teacher.kind, self.sample_rate as f32, &params)
    }

    /// A chunk's audio, regenerated, after its pre-roll.
    pub fn chunk(&self, chunk: &Chunk) -> Result<ChunkAudio, String> {
        let spec = CorpusSpec { sample_rate: self.sample_rate as f32, ..CorpusSpec::new(chunk.seed, chunk.seconds) };
        let skip = (f64::from(self.lfo_pre_roll_s) * f64::from(self.sample_rate)) as usize;
        let mut input = vec![0.0; skip];
        let corpus = corpus::generate(&spec);
        input.extend(corpus.samples);
        let at = |seconds: f32| (skip + (seconds * spec.sample_rate) as usize).min(input.len());
        // In time order; a test signal right after another (its start inside the other's tail) joins it, so that no
        // sample counts twice.
        let mut test_signals: Vec<std::ops::Range<usize>> = Vec::new();
        for p in corpus.phrases.iter().filter(|p| matches!(p.kind, PhraseKind::Sweep | PhraseKind::NoiseBurst)) {
            let range = at(p.start_s)..at(p.end_s + TEST_SIGNAL_TAIL_S);
            match test_signals.last_mut() {
                Some(last) if range.start <= last.end => last.end = last.end.max(range.end),
                _ => test_signals.push(range),
            }
        }
        let mut teacher = self.build_teacher(chunk).map_err(|e| format!("teacher: {e}"))?;
        let teacher::Rendered { output, lfo, .. } = teacher::render(teacher.as_mut(), &input);
        let lfo = lfo.iter().map(|v| v * chunk.depth_scale).collect();
        Ok(ChunkAudio { input, lfo, target: output, skip, test_signals })
    }

    fn describe(&self, split: &str) -> String {
        let chunks = &self.chunks[split];
        let list = |f: &dyn Fn(&Chunk) -> String| {
            let mut v: Vec<String> = chunks.iter().map(f).collect();
            v.dedup();
            v.join(", ")
        };
        let seconds: f32 = chunks.iter().map(|c| c.seconds).sum();
        format!(
            "{} chunks, {seconds} s: rates {} Hz; {}; depth ×{}",
            chunks.len(),
            list(&|c| c.rate.to_string()),
            list(&|c| c.waveform.clone()),
            list(&|c| c.depth_scale.to_string()),
        )
    }
}

/// Error-to-signal ratio `Σ(target − output)² / Σ target²` (0 for a silent target matched exactly).
pub fn esr(target: &[f32], output: &[f32]) -> f64 {
    let (err, sig) = error_and_signal(target, output);
    if sig == 0.0 { if err == 0.0 { 0.0 } else { f64::INFINITY } } else { err / sig }
}

/// `(Σ(target − output)², Σ target²)`, to sum over several pieces before dividing.
fn error_and_signal(target: &[f32], output: &[f32]) -> (f64, f64) {
    assert_eq!(target.len(), output.len());
    let (mut err, mut sig) = (0.0f64, 0.0f64);
    for (&t, &o) in target.iter().zip(output) {
        let d = f64::from(t) - f64::from(o);
        err += d * d;
        sig += f64::from(t) * f64::from(t);
    }
    (err, sig)
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"{
        "manifest_version": 1, "name": "m", "file": "m.nam", "architecture": "WaveNet", "sample_rate": 48000,
        "teacher": {"kind": "amp", "params": {"gain": 4.0}},
        "splits": {"train": {"seed": 1, "seconds": 150}, "validation": {"seed": 2, "seconds": 30},
                   "test": {"seed": 3, "seconds": 2}},
        "test_esr": 0.004, "target_esr": 0.005, "training": {"anything": "kept out of the way"}
    }"#;

    #[test]
    fn a_good_manifest_parses() {
        let m = Manifest::parse(GOOD).unwrap();
        assert_eq!(m.teacher.params["gain"], 4.0);
        assert_eq!(m.splits.test, Split { seed: 3, seconds: 2.0 });
    }

    #[test]
    fn bad_manifests_say_what_is_wrong() {
        let cases = [
            (GOOD.replace("\"manifest_version\": 1", "\"manifest_version\": 9"), "manifest_version 9"),
            (GOOD.replace("\"seed\": 3", "\"seed\": 2"), "different corpus seeds"),
            (GOOD.replace("\"kind\": \"amp\"", "\"kind\": \"tuba\""), "unknown teacher 'tuba'"),
            (GOOD.replace("\"gain\"", "\"drive\""), "unknown parameter 'drive'"),
            (GOOD.replace("\"seconds\": 2", "\"seconds\": -1"), "splits.test.seconds"),
            (GOOD.replace("0.004", "-1"), "test_esr"),
            (GOOD.replace("\"m.nam\"", "\"../x.nam\""), "beside the manifest"),
            (GOOD.replace("\"sample_rate\": 48000,", ""), "missing field `sample_rate`"),
            (GOOD[..40].to_owned(), "EOF"),
        ];
        for (text, expected) in cases {
            let err = Manifest::parse(&text).unwrap_err();
            assert!(err.contains(expected), "expected '{expected}' in '{err}'");
        }
    }

    #[test]
    fn esr_is_relative_error_energy() {
        assert_eq!(esr(&[1.0, -1.0], &[1.0, -1.0]), 0.0);
        assert!((esr(&[1.0, 1.0], &[0.5, 1.5]) - 0.25).abs() < 1e-12);
        assert_eq!(esr(&[0.0], &[0.0]), 0.0);
        assert!(esr(&[0.0], &[0.1]).is_infinite());
    }

    #[test]
    fn the_test_split_is_the_teacher_over_the_seeded_corpus() {
        let m = Manifest::parse(GOOD).unwrap();
        let (x, y) = test_split(&m).unwrap();
        assert_eq!(x.len(), 96_000);
        assert_eq!(y.len(), x.len());
        assert_eq!(test_split(&m).unwrap().1, y, "deterministic");
        assert!(esr(&y, &x) > 0.01, "the teacher changes the signal");
    }

    const MODULATION: &str = r#"{
        "manifest_version": 1, "name": "p", "file": "p.nam", "architecture": "LSTM", "sample_rate": 48000,
        "teacher": {"kind": "phaser", "params": {"stages": 4, "depth": 0.7}},
        "chunks": {"test": [{"seed": 9, "seconds": 0.5, "rate": 2.0, "waveform": "triangle", "phase": 0.25,
                             "depth_scale": 0.5}]},
        "results": {"test": {"esr": 0.03}},
        "target_esr": {"test": 0.005},
        "targets_missed": ["test"]
    }"#;

    #[test]
    fn a_modulation_chunk_is_the_teacher_at_its_rate_shape_phase_and_scaled_depth() {
        let m = ModulationManifest::parse(MODULATION).unwrap();
        let audio = m.chunk(&m.chunks["test"][0]).unwrap();
        assert_eq!((audio.input.len(), audio.lfo.len(), audio.target.len()), (24_000, 24_000, 24_000));
        // Triangle from a quarter phase: starts at the top, scaled by the depth scale.
        assert!((audio.lfo[0] - 0.5).abs() < 1e-6, "{}", audio.lfo[0]);
        assert!(audio.lfo.iter().all(|v| v.abs() <= 0.5 + 1e-6));
        // At 2 Hz a quarter second (12 000 samples) is half a cycle: the bottom.
        assert!((audio.lfo[12_000] + 0.5).abs() < 1e-3, "{}", audio.lfo[12_000]);
        assert!(esr(&audio.target, &audio.input) > 0.01, "the teacher changes the signal");
    }

    #[test]
    fn a_chunk_knows_where_the_corpus_plays_its_test_signals() {
        // Seed 5242's six seconds hold a log sweep (the flanger's unseen-rate test chunk whose error is mostly there).
        let text = MODULATION
            .replace("\"seed\": 9, \"seconds\": 0.5", "\"seed\": 5242, \"seconds\": 6")
            .replace("\"targets_missed\"", "\"lfo_pre_roll_s\": 0.1, \"targets_missed\"");
        let m = ModulationManifest::parse(&text).unwrap();
        let audio = m.chunk(&m.chunks["test"][0]).unwrap();
        assert!(!audio.test_signals.is_empty());
        assert!(
            audio.test_signals.iter().all(|r| audio.skip <= r.start && r.start < r.end && r.end <= audio.input.len())
        );
        assert!(audio.test_signals.windows(2).all(|w| w[0].end < w[1].start), "in order, apart");
        // Zero crossings a second in 10 ms windows louder than -80 dBFS RMS (the DI's hiss in silences is quieter).
        let window = 480;
        let rates = |range: std::ops::Range<usize>| -> Vec<f64> {
            audio.input[range]
                .chunks_exact(window)
                .filter(|w| w.iter().map(|x| x * x).sum::<f32>() / window as f32 > 1e-8)
                .map(|w| w.windows(2).filter(|p| (p[0] < 0.0) != (p[1] < 0.0)).count() as f64 * 100.0)
                .collect()
        };
        let inside = audio.test_signals.iter().flat_map(|r| rates(r.clone())).fold(0.0, f64::max);
        let mut outside = Vec::new();
        let mut from = audio.skip;
        for r in &audio.test_signals {
            outside.extend(rates(from..r.start));
            from = r.end;
        }
        outside.extend(rates(from..audio.input.len()));
        let outside = outside.into_iter().fold(0.0, f64::max);
        // The sweep reaches 16-20 kHz; what the ranges leave out is guitar.
        assert!(inside > 25_000.0, "inside {inside}");
        assert!(outside < 10_000.0, "outside {outside}");
    }

    #[test]
    fn a_pre_rolled_chunk_meets_its_lfo_at_the_chunk_phase_after_silence() {
        let plain = ModulationManifest::parse(MODULATION).unwrap();
        let text = MODULATION.replace("\"targets_missed\"", "\"lfo_pre_roll_s\": 0.1, \"targets_missed\"");
        let m = ModulationManifest::parse(&text).unwrap();
        let (before, audio) = (plain.chunk(&plain.chunks["test"][0]).unwrap(), m.chunk(&m.chunks["test"][0]).unwrap());
        assert_eq!(audio.skip, 4_800);
        assert_eq!(audio.input.len(), 24_000 + 4_800);
        assert!(audio.input[..4_800].iter().all(|x| *x == 0.0) && audio.input[4_800..] == before.input[..]);
        // The LFO runs through the silence (at 2 Hz a fifth of a cycle: from phase 0.05, a fifth of the way up to
        // the top, 0.2 × 0.5), and meets the audio at the chunk's phase.
        assert!((audio.lfo[0] - 0.1).abs() < 1e-4, "{}", audio.lfo[0]);
        let worst = |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
        assert!(worst(&audio.lfo[4_800..], &before.lfo) < 1e-5);
        // The teacher is silent in silence, and then the same as without the pre-roll.
        assert!(audio.target[..4_800].iter().all(|y| *y == 0.0));
        assert!(worst(&audio.target[4_800..], &before.target) < 1e-4);
        let bad = MODULATION.replace("\"targets_missed\"", "\"lfo_pre_roll_s\": -1, \"targets_missed\"");
        assert!(ModulationManifest::parse(&bad).unwrap_err().contains("lfo_pre_roll_s"));
    }

    #[test]
    fn bad_modulation_manifests_say_what_is_wrong() {
        let cases = [
            (MODULATION.replace("\"esr\": 0.03", "\"esr\": 0.001"), "meets 0.005"),
            (MODULATION.replace("\"results\": {\"test\"", "\"results\": {\"other\""), "no target or result"),
            (MODULATION.replace("\"depth_scale\": 0.5", "\"depth_scale\": 2"), "depth_scale"),
            (MODULATION.replace("\"triangle\"", "\"square\""), "chunks.test[0]: teacher"),
            (MODULATION.replace("\"chunks\": {\"test\"", "\"chunks\": {\"t\""), "no \"test\" split"),
        ];
        for (text, expected) in cases {
            let err = ModulationManifest::parse(&text).unwrap_err();
            assert!(err.contains(expected), "expected '{expected}' in '{err}'");
        }
    }

    #[test]
    fn a_model_without_a_manifest_is_refused_by_name() {
        let err = evaluate(Path::new("/nonexistent/amp.nam")).unwrap_err().to_string();
        assert!(err.contains("amp.nam") && err.contains("no manifest"), "{err}");
    }
}
