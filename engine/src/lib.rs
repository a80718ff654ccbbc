//! Neuralboard's engine: everything that makes or moves sound, with no GUI dependency.
//!
//! - [`Engine`] runs on the audio thread; [`Controller`] is its non-real-time handle (GUI, renderer, tests).
//! - [`pedal::Pedal`] is what every effect implements; [`effects`] holds them and the registry.
//! - [`preset`] reads and writes presets; [`render`] runs the engine offline over WAV files.
//!
//! The real-time rules: nothing reached from [`Engine::process`] allocates, locks, blocks or does I/O.

pub mod cabsim;
pub mod chain;
pub mod control;
pub mod controller;
pub mod corpus;
pub mod dsp;
pub mod effects;
pub mod engine;
pub mod eval;
pub mod formats;
pub mod midi;
pub mod nn;
pub mod param;
pub mod paths;
pub mod pedal;
pub mod preset;
pub mod render;
pub mod ronfile;
pub mod settings;
pub mod takes;
pub mod teacher;

pub use chain::SlotId;
pub use control::{Command, CommandKind, Event, GainReductions, Telemetry, TelemetrySnapshot};
pub use controller::{Controller, SlotState, SlotStatus};
pub use engine::{Engine, EngineConfig};
pub use param::{ParamId, ParamSpec};
pub use pedal::{Pedal, PedalInfo};
pub use preset::Preset;
