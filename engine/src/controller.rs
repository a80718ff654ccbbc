//! The non-real-time handle on the engine: what the GUI, the renderer and the tests hold.
//!
//! It keeps a mirror of the board (slots, parameter values, bypass, levels) that is the source of truth for
//! drawing and for saving presets, builds pedals off the audio thread, sends commands, and drops what the engine
//! hands back.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use crate::chain::{Chain, MAX_SLOTS, Slot, SlotId};
use crate::control::{ChainSwap, Command, CommandSender, Event, Garbage, QueueFull, Telemetry, TelemetrySnapshot};
use crate::effects::{self, missing::Missing};
use crate::engine::{EngineConfig, clamp_global_db};
use crate::midi::MidiMap;
use crate::param::ParamId;
use crate::pedal::{Pedal, PedalInfo};
use crate::preset::{Preset, PresetSlot, resolve_model_path};

/// Whether a slot holds the pedal its preset asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SlotStatus {
    Ready,
    /// The pedal could not be built (unknown kind, missing or broken model file); a pass-through holds its place.
    Missing {
        reason: String,
    },
}

/// The controller's view of one slot.
#[derive(Debug, Clone)]
pub struct SlotState {
    pub id: SlotId,
    /// The pedal's description; for a missing pedal, the stand-in's (no parameters).
    pub info: PedalInfo,
    /// Current values, one per `info.params`, in plain units.
    pub values: Vec<f32>,
    pub bypassed: bool,
    pub mix: f32,
    /// The model file as the preset names it.
    pub model: Option<String>,
    pub status: SlotStatus,
    /// Parameters from the preset that the pedal does not use (all of them, for a missing pedal): written back
    /// unchanged on save so nothing the player had is lost.
    pub kept_params: BTreeMap<String, f32>,
}

impl SlotState {
    pub fn kind(&self) -> &str {
        &self.info.kind
    }

    pub fn value(&self, param: ParamId) -> Option<f32> {
        self.values.get(param.0 as usize).copied()
    }
}

/// What went wrong with a request to the engine.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error(transparent)]
    QueueFull(#[from] QueueFull),
    #[error("the board is full ({MAX_SLOTS} pedals)")]
    ChainFull,
    #[error("no pedal with id {0:?} on the board")]
    NoSuchSlot(SlotId),
    #[error("pedal has no parameter {0:?}")]
    NoSuchParam(ParamId),
    #[error(transparent)]
    Build(#[from] effects::BuildError),
}

/// The non-real-time half of [`crate::Engine`].
pub struct Controller {
    config: EngineConfig,
    ui: CommandSender,
    midi: Option<CommandSender>,
    loader: Option<CommandSender>,
    events: rtrb::Consumer<Event>,
    garbage: rtrb::Consumer<Garbage>,
    telemetry: Arc<Telemetry>,
    name: String,
    input_gain_db: f32,
    output_level_db: f32,
    slots: Vec<SlotState>,
    /// The preset's own MIDI mappings, kept so that saving the board writes them back. The MIDI service plays them
    /// merged with the global ones (see [`MidiMap::merged`]).
    midi_map: MidiMap,
    next_id: u32,
    modified: bool,
}

impl Controller {
    pub(crate) fn new(
        config: EngineConfig,
        ui: CommandSender,
        midi: CommandSender,
        loader: CommandSender,
        events: rtrb::Consumer<Event>,
        garbage: rtrb::Consumer<Garbage>,
        telemetry: Arc<Telemetry>,
    ) -> Self {
        Self {
            config,
            ui,
            midi: Some(midi),
            loader: Some(loader),
            events,
            garbage,
            telemetry,
            name: String::new(),
            input_gain_db: 0.0,
            output_level_db: 0.0,
            slots: Vec::new(),
            midi_map: MidiMap::default(),
            next_id: 1,
            modified: false,
        }
    }

    pub fn config(&self) -> EngineConfig {
        self.config
    }

    /// The MIDI thread's own queue into the engine (once).
    pub fn take_midi_sender(&mut self) -> Option<CommandSender> {
        self.midi.take()
    }

    /// The model loader thread's own queue into the engine (once).
    pub fn take_loader_sender(&mut self) -> Option<CommandSender> {
        self.loader.take()
    }

    pub fn slots(&self) -> &[SlotState] {
        &self.slots
    }

    pub fn slot(&self, id: SlotId) -> Option<&SlotState> {
        self.slots.iter().find(|s| s.id == id)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn input_gain_db(&self) -> f32 {
        self.input_gain_db
    }

    pub fn output_level_db(&self) -> f32 {
        self.output_level_db
    }

    /// The MIDI mappings of the preset on the board (not the global ones).
    pub fn midi_map(&self) -> &MidiMap {
        &self.midi_map
    }

    /// Replaces the preset's MIDI mappings (edited, or learned for this preset). The engine does not hold mappings:
    /// hand the merged map to the MIDI service too.
    pub fn set_midi_map(&mut self, map: MidiMap) {
        self.midi_map = map;
        self.modified = true;
    }

    /// Whether the board differs from the last preset loaded or marked saved.
    pub fn is_modified(&self) -> bool {
        self.modified
    }

    /// Marks the board as differing from its preset (after it was rebuilt from itself, e.g. for a new device).
    pub fn mark_modified(&mut self) {
        self.modified = true;
    }

    pub fn mark_saved(&mut self, name: &str) {
        self.name = name.to_owned();
        self.modified = false;
    }

    /// Latest levels, CPU load and tuner reading. Reading clears the accumulated peaks and clip flags, so one
    /// place (the GUI's meter tick) should read it.
    pub fn telemetry(&self) -> TelemetrySnapshot {
        self.telemetry.take()
    }

    /// Drains the engine's events (updating the board mirror from them) and drops what the engine handed back.
    /// Call regularly from the GUI tick, or any non-real-time loop.
    pub fn poll(&mut self) -> Vec<Event> {
        self.collect_garbage();
        let mut events = Vec::new();
        while let Ok(event) = self.events.pop() {
            self.follow(&event);
            events.push(event);
        }
        events
    }

    /// Drops objects the engine no longer uses.
    pub fn collect_garbage(&mut self) {
        while let Ok(garbage) = self.garbage.pop() {
            drop(garbage);
        }
    }

    fn follow(&mut self, event: &Event) {
        match *event {
            Event::BypassChanged { slot, bypassed } => {
                if let Some(s) = self.slot_mut(slot) {
                    s.bypassed = bypassed;
                }
            }
            Event::ParamChanged { slot, param, value } => {
                if let Some(v) = self.slot_mut(slot).and_then(|s| s.values.get_mut(param.0 as usize)) {
                    *v = value;
                }
            }
            Event::MixChanged { slot, mix } => {
                if let Some(s) = self.slot_mut(slot) {
                    s.mix = mix;
                }
            }
            Event::InputGainChanged { db } => self.input_gain_db = db,
            Event::OutputLevelChanged { db } => self.output_level_db = db,
            Event::PedalFault { .. } | Event::Rejected { .. } | Event::ChainLoaded => return,
        }
        self.modified = true;
    }

    fn slot_mut(&mut self, id: SlotId) -> Option<&mut SlotState> {
        self.slots.iter_mut().find(|s| s.id == id)
    }

    fn allocate_id(&mut self) -> SlotId {
        let id = SlotId(self.next_id);
        self.next_id += 1;
        id
    }

    /// Builds a preset's chain off the audio thread and updates the mirror to it. Pedals that cannot be built
    /// become pass-through stand-ins marked [`SlotStatus::Missing`]. The result goes to the engine with
    /// [`Command::LoadChain`] (see [`Self::load_preset`]) or, before audio starts, [`crate::Engine::install_chain`].
    pub fn prepare_preset(&mut self, preset: &Preset, base_dir: Option<&Path>) -> Box<ChainSwap> {
        let (swap, states) = self.build_preset(preset, base_dir);
        self.show_preset(preset, states);
        swap
    }

    /// Switches the board to a preset (crossfaded through silence by the engine). If the engine cannot take it,
    /// the board stays as it was.
    pub fn load_preset(&mut self, preset: &Preset, base_dir: Option<&Path>) -> Result<(), ControlError> {
        let (swap, states) = self.build_preset(preset, base_dir);
        self.ui.send(Command::LoadChain(swap))?;
        self.show_preset(preset, states);
        Ok(())
    }

    fn build_preset(&mut self, preset: &Preset, base_dir: Option<&Path>) -> (Box<ChainSwap>, Vec<SlotState>) {
        let mut slots = Vec::with_capacity(preset.chain.len());
        let mut states = Vec::with_capacity(preset.chain.len());
        for entry in preset.chain.iter().take(MAX_SLOTS) {
            let id = self.allocate_id();
            let (slot, state) = self.build_slot(id, entry, base_dir);
            slots.push(slot);
            states.push(state);
        }
        let swap = Box::new(ChainSwap {
            chain: Chain::from_slots(slots),
            input_gain_db: clamp_global_db(preset.input_gain_db),
            output_level_db: clamp_global_db(preset.output_level_db),
        });
        (swap, states)
    }

    fn show_preset(&mut self, preset: &Preset, states: Vec<SlotState>) {
        self.slots = states;
        self.name = preset.name.clone();
        self.input_gain_db = clamp_global_db(preset.input_gain_db);
        self.output_level_db = clamp_global_db(preset.output_level_db);
        self.midi_map = preset.midi.clone();
        self.modified = false;
    }

    /// The board as a preset, ready to save.
    pub fn to_preset(&self) -> Preset {
        let chain = self
            .slots
            .iter()
            .map(|s| {
                let mut params = s.kept_params.clone();
                for (spec, value) in s.info.params.iter().zip(&s.values) {
                    params.insert(spec.id.to_owned(), *value);
                }
                PresetSlot { kind: s.kind().to_owned(), model: s.model.clone(), bypass: s.bypassed, mix: s.mix, params }
            })
            .collect();
        Preset {
            version: crate::preset::PRESET_VERSION,
            name: self.name.clone(),
            input_gain_db: self.input_gain_db,
            output_level_db: self.output_level_db,
            chain,
            midi: self.midi_map.clone(),
        }
    }

    fn build_slot(&self, id: SlotId, entry: &PresetSlot, base_dir: Option<&Path>) -> (Box<Slot>, SlotState) {
        let model_path = entry.model.as_deref().map(|m| resolve_model_path(m, base_dir));
        let ctx = effects::BuildContext {
            model: model_path.as_deref(),
            sample_rate: self.config.sample_rate,
            max_block: self.config.max_block,
        };
        let (pedal, status): (Box<dyn Pedal>, _) = match effects::build_for(&entry.kind, &ctx) {
            Ok(pedal) => (pedal, SlotStatus::Ready),
            Err(e) => (Box::new(Missing::new(&entry.kind)), SlotStatus::Missing { reason: e.to_string() }),
        };
        let mut slot = Slot::new(id, pedal, self.config.sample_rate, self.config.max_block);
        let info = slot.pedal().info().clone();
        let mut values = Vec::with_capacity(info.params.len());
        for (i, spec) in info.params.iter().enumerate() {
            let value = spec.clamp(entry.params.get(spec.id).copied().unwrap_or(spec.default));
            slot.pedal_mut().set_param(ParamId(i as u16), value);
            values.push(value);
        }
        // A preset starts where it is, not with a glide from the defaults: background work done, smoothers settled.
        slot.pedal_mut().settle();
        slot.pedal_mut().reset();
        let kept_params =
            entry.params.iter().filter(|(id, _)| info.param_id(id).is_none()).map(|(k, v)| (k.clone(), *v)).collect();
        let slot = slot.with_state(entry.bypass, entry.mix);
        let state = SlotState {
            id,
            info,
            values,
            bypassed: entry.bypass,
            mix: entry.mix.clamp(0.0, 1.0),
            model: entry.model.clone(),
            status,
            kept_params,
        };
        (slot, state)
    }

    /// Adds a new pedal of `kind` with default settings at `index` (clamped to the end).
    pub fn insert_pedal(&mut self, index: usize, kind: &str) -> Result<SlotId, ControlError> {
        let mut entry = PresetSlot::new(kind);
        entry.params.clear();
        self.insert_slot(index, &entry, None)
    }

    /// Adds a pedal described like a preset entry (for pasting, or a model-bearing pedal with its file).
    pub fn insert_slot(
        &mut self,
        index: usize,
        entry: &PresetSlot,
        base_dir: Option<&Path>,
    ) -> Result<SlotId, ControlError> {
        if self.slots.len() >= MAX_SLOTS {
            return Err(ControlError::ChainFull);
        }
        effects::find(&entry.kind).ok_or_else(|| effects::BuildError::UnknownKind(entry.kind.clone()))?;
        let id = self.allocate_id();
        let (slot, state) = self.build_slot(id, entry, base_dir);
        if let SlotStatus::Missing { reason } = &state.status {
            // Inserting by hand must not silently add a dead pedal.
            return Err(ControlError::Build(effects::BuildError::BadModel {
                path: entry.model.clone().unwrap_or_default().into(),
                message: reason.clone(),
            }));
        }
        self.ui.send(Command::InsertSlot { index, slot })?;
        let index = index.min(self.slots.len());
        self.slots.insert(index, state);
        self.modified = true;
        Ok(id)
    }

    /// Replaces a pedal with one built from `entry` (a new model or IR file, typically), keeping its place and id.
    /// The new pedal is built here, off the audio thread; if that fails the board and the sound stay as they were
    /// and the error says why.
    pub fn replace_pedal(
        &mut self,
        slot: SlotId,
        entry: &PresetSlot,
        base_dir: Option<&Path>,
    ) -> Result<(), ControlError> {
        let index = self.index_of(slot)?;
        effects::find(&entry.kind).ok_or_else(|| effects::BuildError::UnknownKind(entry.kind.clone()))?;
        let (new, state) = self.build_slot(slot, entry, base_dir);
        if let SlotStatus::Missing { reason } = &state.status {
            // Nothing has changed yet: the board and the sound stay as they were.
            return Err(ControlError::Build(effects::BuildError::Model(reason.clone())));
        }
        self.ui.send(Command::ReplaceSlot { slot: new })?;
        self.slots[index] = state;
        self.modified = true;
        Ok(())
    }

    pub fn remove_pedal(&mut self, slot: SlotId) -> Result<(), ControlError> {
        let index = self.index_of(slot)?;
        self.ui.send(Command::RemoveSlot { slot })?;
        self.slots.remove(index);
        self.modified = true;
        Ok(())
    }

    /// Moves a pedal to position `to` (clamped to the end).
    pub fn move_pedal(&mut self, slot: SlotId, to: usize) -> Result<(), ControlError> {
        let from = self.index_of(slot)?;
        self.ui.send(Command::MoveSlot { slot, to })?;
        let state = self.slots.remove(from);
        let to = to.min(self.slots.len());
        self.slots.insert(to, state);
        self.modified = true;
        Ok(())
    }

    /// Sets a parameter in plain units (clamped into its range).
    pub fn set_param(&mut self, slot: SlotId, param: ParamId, value: f32) -> Result<f32, ControlError> {
        let index = self.index_of(slot)?;
        let spec = self.slots[index].info.param(param).ok_or(ControlError::NoSuchParam(param))?;
        let value = spec.clamp(value);
        self.ui.send(Command::SetParam { slot, param, value })?;
        self.slots[index].values[param.0 as usize] = value;
        self.modified = true;
        Ok(value)
    }

    /// Sets a parameter from a knob position (0..=1).
    pub fn set_param_normalized(&mut self, slot: SlotId, param: ParamId, t: f32) -> Result<f32, ControlError> {
        let index = self.index_of(slot)?;
        let spec = self.slots[index].info.param(param).ok_or(ControlError::NoSuchParam(param))?;
        let value = spec.from_normalized(t);
        self.set_param(slot, param, value)
    }

    pub fn set_bypass(&mut self, slot: SlotId, bypassed: bool) -> Result<(), ControlError> {
        let index = self.index_of(slot)?;
        self.ui.send(Command::SetBypass { slot, bypassed })?;
        self.slots[index].bypassed = bypassed;
        self.modified = true;
        Ok(())
    }

    pub fn set_mix(&mut self, slot: SlotId, mix: f32) -> Result<(), ControlError> {
        let index = self.index_of(slot)?;
        let mix = if mix.is_finite() { mix.clamp(0.0, 1.0) } else { 1.0 };
        self.ui.send(Command::SetMix { slot, mix })?;
        self.slots[index].mix = mix;
        self.modified = true;
        Ok(())
    }

    /// Sets the global input gain (clamped to [`crate::engine::GLOBAL_GAIN_RANGE_DB`]); returns the value used.
    pub fn set_input_gain_db(&mut self, db: f32) -> Result<f32, ControlError> {
        let db = clamp_global_db(db);
        self.ui.send(Command::SetInputGain { db })?;
        self.input_gain_db = db;
        self.modified = true;
        Ok(db)
    }

    /// Sets the global output level (clamped to [`crate::engine::GLOBAL_GAIN_RANGE_DB`]); returns the value used.
    pub fn set_output_level_db(&mut self, db: f32) -> Result<f32, ControlError> {
        let db = clamp_global_db(db);
        self.ui.send(Command::SetOutputLevel { db })?;
        self.output_level_db = db;
        self.modified = true;
        Ok(db)
    }

    /// Turns the tuner analysis on or off; `mute` silences the output while tuning.
    pub fn set_tuner(&mut self, enabled: bool, mute: bool) -> Result<(), ControlError> {
        Ok(self.ui.send(Command::SetTuner { enabled, mute })?)
    }

    /// Clears every pedal's signal state.
    pub fn reset_all(&mut self) -> Result<(), ControlError> {
        Ok(self.ui.send(Command::ResetAll)?)
    }

    /// Sends a raw command on the GUI's queue (without updating the mirror).
    pub fn send(&mut self, command: Command) -> Result<(), QueueFull> {
        self.ui.send(command)
    }

    fn index_of(&self, slot: SlotId) -> Result<usize, ControlError> {
        self.slots.iter().position(|s| s.id == slot).ok_or(ControlError::NoSuchSlot(slot))
    }
}
