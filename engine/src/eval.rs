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

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::corpus::{self, CorpusSpec};
use crate::formats::nam;
use crate::nn::{self, TanhMode};
use crate::teacher::{self, Teacher};

/// The manifest format this build reads.
pub const MANIFEST_VERSION: u32 = 1;
/// Longest test split a manifest may ask for, seconds.
const MAX_SPLIT_SECONDS: f32 = 600.0;
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
    model.with_extension("manifest.json")
}

/// The test split of a manifest: the corpus input and the teacher's output, sample-aligned.
pub fn test_split(manifest: &Manifest) -> Result<(Vec<f32>, Vec<f32>), String> {
    let spec = CorpusSpec::new(manifest.splits.test.seed, manifest.splits.test.seconds);
    let spec = CorpusSpec { sample_rate: manifest.sample_rate as f32, ..spec };
    let input = corpus::generate(&spec).samples;
    let mut teacher = manifest.build_teacher().map_err(|e| format!("teacher: {e}"))?;
    let output = teacher::render(teacher.as_mut(), &input).0;
    Ok((input, output))
}

/// What [`evaluate`] measured.
#[derive(Debug, Clone)]
pub struct Evaluation {
    pub manifest: Manifest,
    pub manifest_path: PathBuf,
    /// ESR of the engine's inference against the teacher on the regenerated test split.
    pub esr: f64,
    pub seconds: f64,
}

impl Evaluation {
    /// `esr / manifest.test_esr − 1`: how far this measurement is from the recorded one, as a fraction.
    pub fn relative_difference(&self) -> f64 {
        self.esr / self.manifest.test_esr.max(f64::MIN_POSITIVE) - 1.0
    }
}

/// Regenerates the test split named by the manifest beside `model_path`, runs the model over it with the engine's
/// inference (accurate tanh, prewarmed, blocks of 64) and returns the ESR against the teacher.
pub fn evaluate(model_path: &Path) -> Result<Evaluation, EvalError> {
    let manifest_path = manifest_path_for(model_path);
    if !manifest_path.is_file() {
        return Err(EvalError::Model {
            path: model_path.to_owned(),
            message: format!("no manifest beside it (expected {})", manifest_path.display()),
        });
    }
    let manifest = Manifest::load(&manifest_path)?;
    let model_error = |message: String| EvalError::Model { path: model_path.to_owned(), message };
    let named = model_path.file_name().map(|n| n.to_string_lossy().into_owned());
    if named.as_deref() != Some(manifest.file.as_str()) {
        return Err(model_error(format!("its manifest describes '{}', not this file", manifest.file)));
    }
    let file = nam::load(model_path).map_err(|e| model_error(e.to_string()))?;
    if let Some(rate) = file.sample_rate
        && (rate - f64::from(manifest.sample_rate)).abs() > 0.5
    {
        return Err(model_error(format!("model rate {rate} Hz, manifest says {} Hz", manifest.sample_rate)));
    }
    let mut model = nn::build(&file, TanhMode::Accurate, EVAL_BLOCK).map_err(|e| model_error(e.to_string()))?;
    let (input, target) =
        test_split(&manifest).map_err(|message| EvalError::BadManifest { path: manifest_path.clone(), message })?;
    let mut output = vec![0.0f32; input.len()];
    for (x, y) in input.chunks(EVAL_BLOCK).zip(output.chunks_mut(EVAL_BLOCK)) {
        model.process(x, y);
    }
    Ok(Evaluation {
        esr: esr(&target, &output),
        seconds: input.len() as f64 / f64::from(manifest.sample_rate),
        manifest,
        manifest_path,
    })
}

/// Error-to-signal ratio `Σ(target − output)² / Σ target²` (0 for a silent target matched exactly).
pub fn esr(target: &[f32], output: &[f32]) -> f64 {
    assert_eq!(target.len(), output.len());
    let (mut err, mut sig) = (0.0f64, 0.0f64);
    for (&t, &o) in target.iter().zip(output) {
        let d = f64::from(t) - f64::from(o);
        err += d * d;
        sig += f64::from(t) * f64::from(t);
    }
    if sig == 0.0 { if err == 0.0 { 0.0 } else { f64::INFINITY } } else { err / sig }
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

    #[test]
    fn a_model_without_a_manifest_is_refused_by_name() {
        let err = evaluate(Path::new("/nonexistent/amp.nam")).unwrap_err().to_string();
        assert!(err.contains("amp.nam") && err.contains("no manifest"), "{err}");
    }
}
