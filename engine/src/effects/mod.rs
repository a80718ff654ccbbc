//! The pedals, one file each, and the registry that builds them by kind.
//!
//! Adding a pedal: write its file, then add one [`PedalKind`] entry to [`KINDS`].

pub mod amp;
pub mod cab;
pub mod compressor;
pub mod gain;
pub mod gate;
pub mod missing;
pub mod modulation;
pub mod reverb;

use std::path::{Path, PathBuf};

use crate::param::ParamSpec;
use crate::pedal::Pedal;

/// What a pedal is built for: its resolved model file, if it plays one, and the engine's settings (so models and
/// impulse responses are prepared once, for the rate they will play at).
#[derive(Debug, Clone, Copy)]
pub struct BuildContext<'a> {
    pub model: Option<&'a Path>,
    pub sample_rate: f32,
    pub max_block: usize,
}

/// Builds a pedal for a context.
pub type BuildFn = fn(&BuildContext) -> Result<Box<dyn Pedal>, BuildError>;

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
        build: |ctx| {
            let path = ctx.model.ok_or_else(|| BuildError::NoModel(amp::KIND.into()))?;
            let mut amp = amp::Amp::load(path).map_err(|e| BuildError::Model(e.to_string()))?;
            // Built here, for the engine's settings, so a file the models cannot be built from is refused with its
            // reason instead of becoming a silent pedal; `prepare` then finds nothing to rebuild.
            amp.build(ctx.sample_rate, ctx.max_block).map_err(|e| BuildError::Model(e.to_string()))?;
            Ok(Box::new(amp))
        },
    },
    PedalKind {
        kind: cab::KIND,
        name: "Cab IR",
        description: "Plays a speaker cabinet impulse response (a WAV file); put it after the amp.",
        needs_model: true,
        params: cab::Cab::params,
        build: |ctx| {
            let path = ctx.model.ok_or_else(|| BuildError::NoModel(cab::KIND.into()))?;
            let cab = cab::Cab::load(path, ctx.sample_rate, ctx.max_block)
                .map_err(|e| BuildError::BadModel { path: e.path, message: e.problem.to_string() })?;
            Ok(Box::new(cab))
        },
    },
    PedalKind {
        kind: modulation::PHASER,
        name: "Neural Phaser",
        description: "A phaser learned by an LSTM that is fed the LFO, so rate, depth and sync stay live knobs.",
        needs_model: false,
        params: || modulation::PHASER_EFFECT.params(),
        build: |_| Ok(Box::new(modulation::Modulation::new(modulation::PHASER_EFFECT).map_err(BuildError::Model)?)),
    },
    PedalKind {
        kind: modulation::FLANGER,
        name: "Neural Flanger",
        description: "A flanger learned by an LSTM that is fed the LFO: the jet sweep, with rate, depth and sync.",
        needs_model: false,
        params: || modulation::FLANGER_EFFECT.params(),
        build: |_| Ok(Box::new(modulation::Modulation::new(modulation::FLANGER_EFFECT).map_err(BuildError::Model)?)),
    },
    PedalKind {
        kind: compressor::KIND,
        name: "Neural Compressor",
        description: "An LA-2A-style opto compressor learned by an S4D state-space network: peak reduction, limit, gain.",
        needs_model: false,
        params: compressor::Compressor::params,
        build: |_| Ok(Box::new(compressor::Compressor::new().map_err(BuildError::Model)?)),
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
    PedalKind {
        kind: reverb::KIND,
        name: "Neural Reverb",
        description: "Rooms from a learned space: move through it and the decoder builds the room, from a booth to a hall.",
        needs_model: false,
        params: || reverb::builtin().map(|file| reverb::Reverb::params(&file)).unwrap_or_default(),
        build: |ctx| {
            Ok(Box::new(reverb::Reverb::new(
                reverb::builtin().map_err(BuildError::Model)?,
                ctx.sample_rate,
                ctx.max_block,
            )))
        },
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

/// Builds a pedal at 48 kHz with 64-frame blocks (allocates: call off the audio thread); `prepare` adapts it to
/// other settings. `model` is an already-resolved path.
pub fn build(kind: &str, model: Option<&Path>) -> Result<Box<dyn Pedal>, BuildError> {
    build_for(kind, &BuildContext { model, sample_rate: 48_000.0, max_block: 64 })
}

/// Builds a pedal for the engine's settings (allocates: call off the audio thread).
pub fn build_for(kind: &str, ctx: &BuildContext) -> Result<Box<dyn Pedal>, BuildError> {
    let entry = find(kind).ok_or_else(|| BuildError::UnknownKind(kind.to_owned()))?;
    if entry.needs_model {
        let path = ctx.model.ok_or_else(|| BuildError::NoModel(kind.to_owned()))?;
        if !path.is_file() {
            return Err(BuildError::ModelNotFound(path.to_owned()));
        }
    }
    (entry.build)(ctx)
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
