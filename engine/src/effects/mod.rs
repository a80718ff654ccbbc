//! The pedals, one file each, and the registry that builds them by kind.
//!
//! Adding a pedal: write its file, then add one [`PedalKind`] entry to [`KINDS`].

pub mod amp;
pub mod cab;
pub mod gain;
pub mod gate;
pub mod missing;

use std::path::{Path, PathBuf};

use crate::param::ParamSpec;
use crate::pedal::Pedal;

/// Builds a pedal, given its resolved model file if it plays one.
pub type BuildFn = fn(Option<&Path>) -> Result<Box<dyn Pedal>, BuildError>;

/// What the palette and preset loader know about a pedal kind before building one.
pub struct PedalKind {
    /// Stored in presets.
    pub kind: &'static str,
    pub name: &'static str,
    pub description: &'static str,
    /// Whether the pedal plays a file (a `.nam` model, an impulse response) named in the preset.
    pub needs_model: bool,
    pub params: fn() -> Vec<ParamSpec>,
    build: BuildFn,
}

/// Every pedal Neuralboard can build, in palette order.
pub static KINDS: &[PedalKind] = &[
    PedalKind {
        kind: amp::KIND,
        name: "Neural Amp",
        description: "Plays a Neural Amp Modeler capture (.nam) of an amp, pedal or full rig.",
        needs_model: true,
        params: amp::Amp::params,
        build: |path| {
            let path = path.ok_or_else(|| BuildError::NoModel(amp::KIND.into()))?;
            let mut amp = amp::Amp::load(path).map_err(|e| BuildError::Model(e.to_string()))?;
            // Build once at a common configuration so a file the models cannot be built from is refused here,
            // with its reason, instead of becoming a silent pedal; `prepare` rebuilds for the engine's settings.
            amp.build(48_000.0, 64).map_err(|e| BuildError::Model(e.to_string()))?;
            Ok(Box::new(amp))
        },
    },
    PedalKind {
        kind: cab::KIND,
        name: "Cab IR",
        description: "Plays a speaker cabinet impulse response (a WAV file); put it after the amp.",
        needs_model: true,
        params: cab::Cab::params,
        build: |path| {
            let path = path.ok_or_else(|| BuildError::NoModel(cab::KIND.into()))?;
            // The registry does not know the engine's rate: build at a common one, `prepare` re-prepares.
            let cab = cab::Cab::load(path, cab::BUILD_SAMPLE_RATE, cab::BUILD_MAX_BLOCK)
                .map_err(|e| BuildError::BadModel { path: e.path, message: e.problem.to_string() })?;
            Ok(Box::new(cab))
        },
    },
    PedalKind {
        kind: gate::KIND,
        name: "Noise Gate",
        description: "Silences hum and hiss between notes; put it before a high-gain amp.",
        needs_model: false,
        params: gate::Gate::params,
        build: |_| Ok(Box::new(gate::Gate::new())),
    },
    PedalKind {
        kind: gain::KIND,
        name: "Volume",
        description: "Clean gain or cut, to level the chain or boost a solo.",
        needs_model: false,
        params: gain::Gain::params,
        build: |_| Ok(Box::new(gain::Gain::new())),
    },
];

/// Why a pedal could not be built. The slot then holds a [`missing::Missing`] stand-in.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("unknown pedal kind '{0}' (made by a newer Neuralboard?)")]
    UnknownKind(String),
    #[error("pedal '{0}' needs a model file, and none is set")]
    NoModel(String),
    #[error("model file {} not found", .0.display())]
    ModelNotFound(PathBuf),
    #[error("{}: {message}", path.display())]
    BadModel { path: PathBuf, message: String },
    /// A model file that could not be used; the message names the file.
    #[error("{0}")]
    Model(String),
}

pub fn find(kind: &str) -> Option<&'static PedalKind> {
    KINDS.iter().find(|k| k.kind == kind)
}

/// Builds a pedal (allocates: call off the audio thread). `model` is an already-resolved path.
pub fn build(kind: &str, model: Option<&Path>) -> Result<Box<dyn Pedal>, BuildError> {
    let entry = find(kind).ok_or_else(|| BuildError::UnknownKind(kind.to_owned()))?;
    if entry.needs_model {
        let path = model.ok_or_else(|| BuildError::NoModel(kind.to_owned()))?;
        if !path.is_file() {
            return Err(BuildError::ModelNotFound(path.to_owned()));
        }
    }
    (entry.build)(model)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_registered_kind_builds_and_describes_its_declared_parameters() {
        for entry in KINDS {
            if entry.needs_model {
                continue;
            }
            let pedal = build(entry.kind, None).unwrap();
            assert_eq!(pedal.info().kind, entry.kind);
            assert_eq!(pedal.info().params, (entry.params)());
            for spec in &pedal.info().params {
                assert!(spec.min <= spec.default && spec.default <= spec.max, "{}.{}", entry.kind, spec.id);
            }
        }
    }

    #[test]
    fn an_unknown_kind_is_a_clear_error() {
        let err = build("wah-from-the-future", None).err().unwrap();
        assert!(err.to_string().contains("wah-from-the-future"));
    }
}
