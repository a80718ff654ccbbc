//! The real-time engine: owns the chain, applies commands, runs the audio, publishes telemetry.
//!
//! The same `Engine` runs in the live app's audio callback, in the offline renderer and in the tests, so every
//! sound the app makes can be reproduced from a preset and a WAV file.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use crate::chain::{Chain, FaultLog};
use crate::control::{
    COMMAND_QUEUE, ChainSwap, Command, CommandKind, CommandSender, EVENT_QUEUE, Event, Fault, GARBAGE_QUEUE,
    GainReductions, Garbage, SOURCES, Source, Telemetry,
};
use crate::controller::Controller;
use crate::dsp::denormal::DenormalGuard;
use crate::dsp::limiter::SafetyLimiter;
use crate::dsp::meter::LevelMeter;
use crate::dsp::tuner::Tuner;
use crate::param::{Smoothed, db_to_gain};

/// Range of the global input gain and output level, in dB.
pub const GLOBAL_GAIN_RANGE_DB: (f32, f32) = (-60.0, 24.0);

/// How often levels and RMS are published: about a screen refresh.
const PUBLISH_INTERVAL_S: f32 = 1.0 / 60.0;
/// Fade out before and in after a preset switch, so the switch never clicks.
pub const SWITCH_FADE_MS: f32 = 10.0;
/// Smoothing of the published CPU load (time constant in seconds).
const CPU_LOAD_SMOOTHING_S: f32 = 0.3;

/// Fixed at construction: a different rate or block size means a new engine.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EngineConfig {
    pub sample_rate: f32,
    /// Largest block the pedals are prepared for; longer calls to [`Engine::process`] are split.
    pub max_block: usize,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self { sample_rate: 48_000.0, max_block: 256 }
    }
}

/// The real-time half. Lives on the audio thread after construction; every method on it is real-time safe.
pub struct Engine {
    config: EngineConfig,
    chain: Chain,
    commands: [rtrb::Consumer<Command>; SOURCES],
    events: rtrb::Producer<Event>,
    garbage: rtrb::Producer<Garbage>,
    telemetry: Arc<Telemetry>,
    faults: FaultLog,

    input_gain: Smoothed,
    output_gain: Smoothed,
    /// Preset-switch fade (0..1); the pending chain swaps in when it reaches 0.
    switch_fade: Smoothed,
    pending_chain: Option<Box<ChainSwap>>,
    /// A replacement pedal waiting for the fade-out, like a pending chain.
    pending_slot: Option<Box<crate::chain::Slot>>,
    /// Tuner mute fade (0..1).
    mute_fade: Smoothed,
    tuner: Tuner,
    tuner_enabled: bool,

    limiter: SafetyLimiter,
    limiter_enabled: bool,
    input_meter: LevelMeter,
    output_meter: LevelMeter,
    frames_since_publish: usize,
    publish_interval: usize,
    cpu_load: f32,
    frames: u64,
    gain_scratch: Vec<f32>,
}

impl Engine {
    /// Builds the engine and its non-real-time [`Controller`]. Allocates everything the engine will ever need.
    pub fn new(config: EngineConfig) -> (Engine, Controller) {
        assert!(config.sample_rate > 0.0 && config.max_block > 0, "invalid engine config {config:?}");
        let sr = config.sample_rate;
        let (ui_tx, ui_rx) = rtrb::RingBuffer::new(COMMAND_QUEUE);
        let (midi_tx, midi_rx) = rtrb::RingBuffer::new(COMMAND_QUEUE);
        let (loader_tx, loader_rx) = rtrb::RingBuffer::new(COMMAND_QUEUE);
        let (event_tx, event_rx) = rtrb::RingBuffer::new(EVENT_QUEUE);
        let (garbage_tx, garbage_rx) = rtrb::RingBuffer::new(GARBAGE_QUEUE);
        let telemetry = Telemetry::shared();

        let ramp = |initial: f32, ms: f32| {
            let mut s = Smoothed::new(initial);
            s.set_ramp(sr, ms);
            s
        };
        let engine = Engine {
            config,
            chain: Chain::new(),
            commands: [ui_rx, midi_rx, loader_rx],
            events: event_tx,
            garbage: garbage_tx,
            telemetry: telemetry.clone(),
            faults: FaultLog::default(),
            input_gain: ramp(1.0, crate::param::ParamSpec::DEFAULT_SMOOTHING_MS),
            output_gain: ramp(1.0, crate::param::ParamSpec::DEFAULT_SMOOTHING_MS),
            switch_fade: ramp(1.0, SWITCH_FADE_MS),
            pending_chain: None,
            pending_slot: None,
            mute_fade: ramp(1.0, SWITCH_FADE_MS),
            tuner: Tuner::new(sr),
            tuner_enabled: false,
            limiter: SafetyLimiter::new(sr),
            limiter_enabled: true,
            input_meter: LevelMeter::default(),
            output_meter: LevelMeter::default(),
            frames_since_publish: 0,
            publish_interval: ((sr * PUBLISH_INTERVAL_S) as usize).max(1),
            cpu_load: 0.0,
            frames: 0,
            gain_scratch: vec![0.0; config.max_block],
        };
        let controller = Controller::new(
            config,
            CommandSender::new(Source::Ui, ui_tx),
            CommandSender::new(Source::Midi, midi_tx),
            CommandSender::new(Source::Loader, loader_tx),
            event_rx,
            garbage_rx,
            telemetry,
        );
        (engine, controller)
    }

    pub fn config(&self) -> EngineConfig {
        self.config
    }

    /// Puts a prepared chain in place at once, without the switch fade. For use before audio starts (the
    /// offline renderer, the app's start-up); returns the previous chain to be dropped by the caller.
    pub fn install_chain(&mut self, mut swap: Box<ChainSwap>) -> Box<ChainSwap> {
        self.chain.swap(&mut swap.chain);
        self.input_gain.set_immediate(db_to_gain(clamp_global_db(swap.input_gain_db)));
        self.output_gain.set_immediate(db_to_gain(clamp_global_db(swap.output_level_db)));
        self.telemetry.latency_samples.store(self.chain.latency() as u32, Ordering::Relaxed);
        swap
    }

    /// Turns the output safety limiter off, for offline renders that must reproduce a model's raw output (a
    /// float WAV can hold levels above full scale; speakers cannot, so the live app never calls this).
    pub fn disable_safety_limiter_for_offline_render(&mut self) {
        self.limiter_enabled = false;
    }

    /// The pedals in processing order: what the audio actually runs through (tests and diagnostics compare it
    /// with the controller's mirror).
    pub fn slot_ids(&self) -> impl Iterator<Item = crate::chain::SlotId> + '_ {
        self.chain.ids()
    }

    /// Whether the chain currently ends in stereo (some engaged pedal makes stereo).
    pub fn is_stereo(&self) -> bool {
        self.chain.slots().any(|s| s.pedal().info().channels == crate::pedal::Channels::MakesStereo)
    }

    /// Processes one callback's worth of audio: mono `input` in, stereo out. Any length; blocks longer than the
    /// prepared size are split. If the slices differ in length, the shortest decides and the rest of the output
    /// is silenced.
    pub fn process(&mut self, input: &[f32], left: &mut [f32], right: &mut [f32]) {
        let started = Instant::now();
        let _flush_denormals = DenormalGuard::new();
        self.drain_commands();

        let n = input.len().min(left.len()).min(right.len());
        left[n..].fill(0.0);
        right[n..].fill(0.0);
        let mut offset = 0;
        while offset < n {
            let end = (offset + self.config.max_block).min(n);
            self.process_block(&input[offset..end], &mut left[offset..end], &mut right[offset..end]);
            offset = end;
        }
        self.frames += n as u64;
        self.account_time(started, n);
    }

    fn process_block(&mut self, input: &[f32], left: &mut [f32], right: &mut [f32]) {
        let n = input.len();
        self.input_meter.add(input);
        if self.tuner_enabled {
            self.tuner.push(input);
        }

        // Input gain.
        left.copy_from_slice(input);
        apply_gain(&mut self.input_gain, left, &mut self.gain_scratch[..n]);

        // The chain, mono until a pedal makes stereo.
        self.faults.clear();
        let stereo = self.chain.process(left, right, false, &mut self.faults);
        if !stereo {
            right.copy_from_slice(left);
        }
        for slot in self.faults.iter() {
            push_event(&mut self.events, &self.telemetry, Event::PedalFault { slot, fault: Fault::BadOutput });
        }

        // Output level, preset-switch and tuner-mute fades: one gain curve for both channels.
        let gains = &mut self.gain_scratch[..n];
        self.output_gain.fill(gains);
        if self.switch_fade.is_smoothing() || self.switch_fade.current() != 1.0 {
            gains.iter_mut().for_each(|g| *g *= self.switch_fade.next_value());
        }
        if self.mute_fade.is_smoothing() || self.mute_fade.current() != 1.0 {
            gains.iter_mut().for_each(|g| *g *= self.mute_fade.next_value());
        }
        for ((l, r), g) in left.iter_mut().zip(right.iter_mut()).zip(gains.iter()) {
            *l *= g;
            *r *= g;
        }
        if self.limiter_enabled {
            self.limiter.process(left, right);
        }
        self.output_meter.add(left);
        self.output_meter.add(right);

        // A pending preset or pedal swaps in once the old one has faded out.
        if self.switch_fade.current() == 0.0 {
            if self.pending_chain.is_some() {
                self.swap_pending_chain();
            }
            if let Some(slot) = self.pending_slot.take() {
                self.replace_slot(slot);
            }
        }

        self.frames_since_publish += n;
        if self.frames_since_publish >= self.publish_interval {
            self.publish_levels();
        }
    }

    fn drain_commands(&mut self) {
        for source in 0..SOURCES {
            // Bounded: at most one queue's capacity per source per callback.
            while let Ok(command) = self.commands[source].pop() {
                self.apply(command, source != Source::Ui as usize);
            }
        }
    }

    /// The chain that slot commands address: once a preset switch has been asked for, the controller's board
    /// is the new chain, even while the old one is still fading out.
    fn target_chain(&mut self) -> &mut Chain {
        match &mut self.pending_chain {
            Some(pending) => &mut pending.chain,
            None => &mut self.chain,
        }
    }

    /// Applies one command. `echo` reports state changes back, for commands the GUI did not send itself.
    fn apply(&mut self, command: Command, echo: bool) {
        let kind = command.kind();
        let report = |engine: &mut Engine, event: Event| {
            if echo {
                push_event(&mut engine.events, &engine.telemetry, event);
            }
        };
        match command {
            Command::SetParam { slot, param, value } => match self.target_chain().get_mut(slot) {
                Some(s) => {
                    let Some(value) = s.pedal().info().param(param).map(|spec| spec.clamp(value)) else {
                        return self.reject(kind, "no such parameter");
                    };
                    s.pedal_mut().set_param(param, value);
                    report(self, Event::ParamChanged { slot, param, value });
                }
                None => self.reject(kind, "no such slot"),
            },
            Command::SetBypass { slot, bypassed } => match self.target_chain().get_mut(slot) {
                Some(s) => {
                    s.set_bypassed(bypassed);
                    report(self, Event::BypassChanged { slot, bypassed });
                }
                None => self.reject(kind, "no such slot"),
            },
            Command::ToggleBypass { slot } => match self.target_chain().get_mut(slot) {
                Some(s) => {
                    let bypassed = !s.is_bypassed();
                    s.set_bypassed(bypassed);
                    // Always reported: the sender cannot know the resulting state.
                    push_event(&mut self.events, &self.telemetry, Event::BypassChanged { slot, bypassed });
                }
                None => self.reject(kind, "no such slot"),
            },
            Command::SetMix { slot, mix } => match self.target_chain().get_mut(slot) {
                Some(s) => {
                    s.set_mix(mix);
                    report(self, Event::MixChanged { slot, mix });
                }
                None => self.reject(kind, "no such slot"),
            },
            Command::SetInputGain { db } => {
                let db = clamp_global_db(db);
                self.input_gain.set_target(db_to_gain(db));
                if let Some(pending) = &mut self.pending_chain {
                    pending.input_gain_db = db;
                }
                report(self, Event::InputGainChanged { db });
            }
            Command::SetOutputLevel { db } => {
                let db = clamp_global_db(db);
                self.output_gain.set_target(db_to_gain(db));
                if let Some(pending) = &mut self.pending_chain {
                    pending.output_level_db = db;
                }
                report(self, Event::OutputLevelChanged { db });
            }
            Command::MoveSlot { slot, to } => {
                if !self.target_chain().move_slot(slot, to) {
                    self.reject(kind, "no such slot");
                }
            }
            Command::InsertSlot { index, slot } => {
                let chain = self.target_chain();
                let reason =
                    if chain.position(slot.id()).is_some() { "duplicate slot id" } else { "the chain is full" };
                if let Err(slot) = chain.insert(index, slot) {
                    self.discard(Garbage::Slot(slot));
                    self.reject(kind, reason);
                }
            }
            Command::RemoveSlot { slot } => match self.target_chain().remove(slot) {
                Some(removed) => self.discard(Garbage::Slot(removed)),
                None => self.reject(kind, "no such slot"),
            },
            Command::ReplaceSlot { slot } => {
                if let Some(superseded) = self.pending_slot.take() {
                    // Two replacements in a row: the newer wins; the earlier one is applied first so ids stay valid.
                    self.replace_slot(superseded);
                }
                if self.target_chain().position(slot.id()).is_some() {
                    self.pending_slot = Some(slot);
                    self.switch_fade.set_target(0.0);
                } else {
                    self.discard(Garbage::Slot(slot));
                    self.reject(kind, "no such slot");
                }
            }
            Command::LoadChain(swap) => {
                if let Some(superseded) = self.pending_chain.replace(swap) {
                    self.discard(Garbage::Chain(superseded));
                }
                self.switch_fade.set_target(0.0);
            }
            Command::SetTuner { enabled, mute } => {
                if enabled && !self.tuner_enabled {
                    self.tuner.reset();
                }
                self.tuner_enabled = enabled;
                self.mute_fade.set_target(if enabled && mute { 0.0 } else { 1.0 });
                if !enabled {
                    self.telemetry.tuner_valid.store(false, Ordering::Relaxed);
                }
            }
            Command::ResetAll => {
                self.chain.reset();
                if let Some(pending) = &mut self.pending_chain {
                    pending.chain.reset();
                }
                self.limiter.reset();
                self.tuner.reset();
            }
        }
    }

    fn replace_slot(&mut self, slot: Box<crate::chain::Slot>) {
        match self.target_chain().replace(slot) {
            Ok(old) => self.discard(Garbage::Slot(old)),
            Err(slot) => self.discard(Garbage::Slot(slot)),
        }
        self.switch_fade.set_target(1.0);
        self.telemetry.latency_samples.store(self.chain.latency() as u32, Ordering::Relaxed);
    }

    fn swap_pending_chain(&mut self) {
        let Some(mut swap) = self.pending_chain.take() else { return };
        self.chain.swap(&mut swap.chain);
        self.input_gain.set_immediate(db_to_gain(clamp_global_db(swap.input_gain_db)));
        self.output_gain.set_immediate(db_to_gain(clamp_global_db(swap.output_level_db)));
        self.discard(Garbage::Chain(swap));
        self.switch_fade.set_target(1.0);
        self.telemetry.latency_samples.store(self.chain.latency() as u32, Ordering::Relaxed);
        push_event(&mut self.events, &self.telemetry, Event::ChainLoaded);
    }

    fn reject(&mut self, command: CommandKind, reason: &'static str) {
        push_event(&mut self.events, &self.telemetry, Event::Rejected { command, reason });
    }

    /// Sends an object to be dropped off the audio thread. If that queue is full, leaks it rather than freeing
    /// here (and counts the leak): a little memory is a better loss than an audio dropout.
    fn discard(&mut self, garbage: Garbage) {
        if let Err(rtrb::PushError::Full(garbage)) = self.garbage.push(garbage) {
            std::mem::forget(garbage);
            self.telemetry.leaked_garbage.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn publish_levels(&mut self) {
        self.frames_since_publish = 0;
        let t = &self.telemetry;
        let input = self.input_meter.take();
        t.input_peak.fetch_max(input.peak);
        t.input_rms.store(input.rms);
        if input.clipped {
            t.input_clipped.store(true, Ordering::Relaxed);
        }
        let output = self.output_meter.take();
        t.output_peak.fetch_max(output.peak);
        t.output_rms.store(output.rms);
        if output.clipped {
            t.output_clipped.store(true, Ordering::Relaxed);
        }
        t.limiter_gain.store(self.limiter.take_reduction());
        t.latency_samples.store(self.chain.latency() as u32, Ordering::Relaxed);
        let mut meters = self.chain.slots().filter_map(|slot| {
            let db = slot.pedal().gain_reduction_db().filter(|db| db.is_finite())?;
            Some(GainReductions::pack(slot.id(), if slot.is_bypassed() { 0.0 } else { db }))
        });
        for cell in &t.gain_reduction {
            cell.store(meters.next().unwrap_or(0), Ordering::Relaxed);
        }
        if self.tuner_enabled {
            match self.tuner.reading() {
                Some(r) => {
                    t.tuner_hz.store(r.frequency_hz);
                    t.tuner_note.store(u32::from(r.note), Ordering::Relaxed);
                    t.tuner_cents.store(r.cents);
                    t.tuner_clarity.store(r.clarity);
                    t.tuner_valid.store(true, Ordering::Relaxed);
                }
                None => t.tuner_valid.store(false, Ordering::Relaxed),
            }
        }
    }

    fn account_time(&mut self, started: Instant, frames: usize) {
        if frames == 0 {
            return;
        }
        let budget = frames as f32 / self.config.sample_rate;
        let load = started.elapsed().as_secs_f32() / budget;
        let alpha = (budget / CPU_LOAD_SMOOTHING_S).min(1.0);
        self.cpu_load += (load - self.cpu_load) * alpha;
        self.telemetry.cpu_load.store(self.cpu_load);
        self.telemetry.cpu_peak.fetch_max(load);
        self.telemetry.frames.store(self.frames, Ordering::Relaxed);
    }
}

/// Clamps a global level into [`GLOBAL_GAIN_RANGE_DB`]; a non-finite value becomes 0 dB.
pub fn clamp_global_db(db: f32) -> f32 {
    if db.is_finite() { db.clamp(GLOBAL_GAIN_RANGE_DB.0, GLOBAL_GAIN_RANGE_DB.1) } else { 0.0 }
}

fn apply_gain(gain: &mut Smoothed, block: &mut [f32], scratch: &mut [f32]) {
    if gain.is_smoothing() {
        gain.fill(scratch);
        block.iter_mut().zip(scratch.iter()).for_each(|(x, g)| *x *= g);
    } else {
        let g = gain.current();
        if g != 1.0 {
            block.iter_mut().for_each(|x| *x *= g);
        }
    }
}

fn push_event(events: &mut rtrb::Producer<Event>, telemetry: &Telemetry, event: Event) {
    if events.push(event).is_err() {
        telemetry.dropped_events.fetch_add(1, Ordering::Relaxed);
    }
}
