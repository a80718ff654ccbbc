//! Messages between the real-time engine and everything else.
//!
//! [`Command`]s flow to the engine over one single-producer queue per producer (GUI, MIDI, loader): rtrb is SPSC,
//! and separate queues mean a flood from one source cannot starve another. [`Event`]s flow back on one queue.
//! Levels, CPU load and the tuner are *latest-value* telemetry: atomics in [`Telemetry`], read whenever the GUI
//! repaints. Objects the engine lets go of travel back as [`Garbage`] to be dropped off the audio thread.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};

use crate::chain::{Chain, MAX_SLOTS, Slot, SlotId};
use crate::dsp::meter::Levels;
use crate::dsp::tuner::TunerReading;
use crate::param::ParamId;

/// Who sends a command: each has its own queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Ui = 0,
    Midi = 1,
    Loader = 2,
}

pub(crate) const SOURCES: usize = 3;

/// Capacity of each command queue. A person cannot turn knobs faster than this many changes per audio block.
pub const COMMAND_QUEUE: usize = 1024;
pub const EVENT_QUEUE: usize = 1024;
pub const GARBAGE_QUEUE: usize = 256;

/// Everything the engine can be told. Small and `Send`; anything that allocates arrives prepared, boxed.
#[derive(strum::EnumDiscriminants)]
#[strum_discriminants(name(CommandKind), derive(strum::EnumIter, Hash))]
pub enum Command {
    /// A parameter in plain units; the pedal smooths it.
    SetParam {
        slot: SlotId,
        param: ParamId,
        value: f32,
    },
    SetBypass {
        slot: SlotId,
        bypassed: bool,
    },
    /// For footswitches, which know only "pressed". The engine reports the resulting state.
    ToggleBypass {
        slot: SlotId,
    },
    /// Dry/wet, 0..=1.
    SetMix {
        slot: SlotId,
        mix: f32,
    },
    SetInputGain {
        db: f32,
    },
    SetOutputLevel {
        db: f32,
    },
    /// Moves a slot to a position (clamped to the end).
    MoveSlot {
        slot: SlotId,
        to: usize,
    },
    /// A slot built and prepared off the audio thread.
    InsertSlot {
        index: usize,
        slot: Box<Slot>,
    },
    RemoveSlot {
        slot: SlotId,
    },
    /// Puts a prepared pedal in place of another (same slot id, so MIDI mappings and the board keep pointing at it),
    /// faded through silence like a preset switch: loading a new amp model or cabinet while playing.
    ReplaceSlot {
        slot: Box<Slot>,
    },
    /// A whole new chain (preset switch), crossfaded in through silence.
    LoadChain(Box<ChainSwap>),
    SetTuner {
        enabled: bool,
        mute: bool,
    },
    /// Clears every pedal's signal state (a panic button).
    ResetAll,
}

impl Command {
    pub fn kind(&self) -> CommandKind {
        CommandKind::from(self)
    }
}

/// A prepared chain and the global levels that go with it.
pub struct ChainSwap {
    pub chain: Chain,
    pub input_gain_db: f32,
    pub output_level_db: f32,
}

/// Why a pedal was reset by the engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// NaN, infinity or a runaway level (> +60 dBFS) in its output: the block was replaced by the dry signal.
    BadOutput,
}

/// What the engine tells the rest of the app.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    PedalFault {
        slot: SlotId,
        fault: Fault,
    },
    /// A bypass changed by a command the GUI did not send itself (a footswitch).
    BypassChanged {
        slot: SlotId,
        bypassed: bool,
    },
    /// A parameter changed by a command the GUI did not send itself (a MIDI controller).
    ParamChanged {
        slot: SlotId,
        param: ParamId,
        value: f32,
    },
    MixChanged {
        slot: SlotId,
        mix: f32,
    },
    InputGainChanged {
        db: f32,
    },
    OutputLevelChanged {
        db: f32,
    },
    /// A command that could not be carried out (unknown slot, full chain).
    Rejected {
        command: CommandKind,
        reason: &'static str,
    },
    /// A preset's chain is now playing.
    ChainLoaded,
}

/// What the engine hands back to be dropped elsewhere.
pub enum Garbage {
    Slot(Box<Slot>),
    Chain(Box<ChainSwap>),
}

/// A float in an atomic, for latest-value telemetry.
#[derive(Debug, Default)]
pub(crate) struct AtomicF32(AtomicU32);

impl AtomicF32 {
    pub fn store(&self, v: f32) {
        self.0.store(v.to_bits(), Ordering::Relaxed);
    }
    pub fn load(&self) -> f32 {
        f32::from_bits(self.0.load(Ordering::Relaxed))
    }
    /// Keeps the larger of the stored and the given value. Valid for non-negative values, whose bit patterns sort
    /// like the numbers.
    pub fn fetch_max(&self, v: f32) {
        self.0.fetch_max(v.max(0.0).to_bits(), Ordering::Relaxed);
    }
    pub fn take(&self) -> f32 {
        f32::from_bits(self.0.swap(0, Ordering::Relaxed))
    }
}

/// Latest values published by the engine. Peaks and clip flags accumulate until read, so a meter that repaints
/// slower than the engine publishes still sees every peak.
#[derive(Debug, Default)]
pub struct Telemetry {
    pub(crate) input_peak: AtomicF32,
    pub(crate) input_rms: AtomicF32,
    pub(crate) input_clipped: AtomicBool,
    pub(crate) output_peak: AtomicF32,
    pub(crate) output_rms: AtomicF32,
    pub(crate) output_clipped: AtomicBool,
    pub(crate) limiter_gain: AtomicF32,
    pub(crate) cpu_load: AtomicF32,
    pub(crate) cpu_peak: AtomicF32,
    pub(crate) tuner_valid: AtomicBool,
    pub(crate) tuner_hz: AtomicF32,
    pub(crate) tuner_note: AtomicU32,
    pub(crate) tuner_cents: AtomicF32,
    pub(crate) tuner_clarity: AtomicF32,
    pub(crate) latency_samples: AtomicU32,
    /// Gain reduction of the dynamics pedals, by chain position, packed by [`GainReductions::pack`] so that a
    /// reader never pairs one slot's id with another's value. 0 = no reading.
    pub(crate) gain_reduction: [AtomicU64; MAX_SLOTS],
    pub(crate) frames: AtomicU64,
    pub(crate) dropped_events: AtomicU64,
    pub(crate) leaked_garbage: AtomicU64,
}

/// One reading of [`Telemetry`].
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct TelemetrySnapshot {
    /// Input before the input gain: what the interface delivers.
    pub input: Levels,
    /// Output after the limiter: what the speakers get.
    pub output: Levels,
    /// Gain the safety limiter applied (1 = not acting).
    pub limiter_gain: f32,
    /// Share of the block's duration spent processing it (1.0 = a whole core's real-time budget), smoothed.
    pub cpu_load: f32,
    /// Highest single-block load since the last reading.
    pub cpu_peak: f32,
    pub tuner: Option<TunerReading>,
    /// Latency the engaged pedals add, in samples.
    pub latency_samples: u32,
    /// Gain reduction (dB) of each pedal that meters it (compressors).
    pub gain_reduction: GainReductions,
    /// Frames processed since the engine started.
    pub frames: u64,
    /// Events lost because nobody drained the queue; should stay 0.
    pub dropped_events: u64,
    /// Objects leaked (not freed) because the garbage queue was full; should stay 0.
    pub leaked_garbage: u64,
}

impl Telemetry {
    pub(crate) fn shared() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Reads the latest values, clearing accumulated peaks and clip flags.
    pub fn take(&self) -> TelemetrySnapshot {
        let tuner = self.tuner_valid.load(Ordering::Relaxed).then(|| TunerReading {
            frequency_hz: self.tuner_hz.load(),
            note: self.tuner_note.load(Ordering::Relaxed) as u8,
            cents: self.tuner_cents.load(),
            clarity: self.tuner_clarity.load(),
        });
        TelemetrySnapshot {
            input: Levels {
                peak: self.input_peak.take(),
                rms: self.input_rms.load(),
                clipped: self.input_clipped.swap(false, Ordering::Relaxed),
            },
            output: Levels {
                peak: self.output_peak.take(),
                rms: self.output_rms.load(),
                clipped: self.output_clipped.swap(false, Ordering::Relaxed),
            },
            limiter_gain: self.limiter_gain.load(),
            cpu_load: self.cpu_load.load(),
            cpu_peak: self.cpu_peak.take(),
            tuner,
            latency_samples: self.latency_samples.load(Ordering::Relaxed),
            gain_reduction: GainReductions(std::array::from_fn(|i| {
                GainReductions::unpack(self.gain_reduction[i].load(Ordering::Relaxed))
            })),
            frames: self.frames.load(Ordering::Relaxed),
            dropped_events: self.dropped_events.load(Ordering::Relaxed),
            leaked_garbage: self.leaked_garbage.load(Ordering::Relaxed),
        }
    }
}

/// The sign bit of a packed gain-reduction reading: set when the word holds one.
const PRESENT: u32 = 1 << 31;

/// The gain reduction readings of one [`TelemetrySnapshot`], by slot.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GainReductions(pub(crate) [Option<(SlotId, f32)>; MAX_SLOTS]);

impl Default for GainReductions {
    fn default() -> Self {
        Self([None; MAX_SLOTS])
    }
}

impl GainReductions {
    /// The gain reduction (dB) the pedal in `slot` applies, if it meters one.
    pub fn get(&self, slot: SlotId) -> Option<f32> {
        self.0.iter().flatten().find(|(id, _)| *id == slot).map(|&(_, db)| db)
    }

    /// Packs one reading into a word: the slot id in the high 32 bits, the value (≥ 0, so its sign bit is free) in
    /// the low ones with the sign bit set to mark a reading; 0 is "no reading".
    pub(crate) fn pack(slot: SlotId, db: f32) -> u64 {
        (u64::from(slot.0) << 32) | u64::from(db.max(0.0).to_bits() | PRESENT)
    }

    fn unpack(word: u64) -> Option<(SlotId, f32)> {
        let low = word as u32;
        (low & PRESENT != 0).then(|| (SlotId((word >> 32) as u32), f32::from_bits(low & !PRESENT)))
    }
}

/// A queue into the engine for one producer thread (MIDI, loader). Cheap to move to that thread.
pub struct CommandSender {
    source: Source,
    producer: rtrb::Producer<Command>,
}

/// The engine's queue for this source is full: the command was not sent (and is dropped here, off the audio
/// thread).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the audio engine is not keeping up: its {0:?} command queue is full")]
pub struct QueueFull(pub Source);

impl CommandSender {
    pub(crate) fn new(source: Source, producer: rtrb::Producer<Command>) -> Self {
        Self { source, producer }
    }

    pub fn source(&self) -> Source {
        self.source
    }

    pub fn send(&mut self, command: Command) -> Result<(), QueueFull> {
        self.producer.push(command).map_err(|_| QueueFull(self.source))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gain_reduction_readings_round_trip_with_their_slot() {
        for (slot, db) in [(0, 0.0), (0, 12.5), (7, 0.0), (u32::MAX, 40.0)] {
            assert_eq!(GainReductions::unpack(GainReductions::pack(SlotId(slot), db)), Some((SlotId(slot), db)));
        }
        assert_eq!(GainReductions::unpack(0), None);
        assert_eq!(GainReductions::unpack(GainReductions::pack(SlotId(3), -2.0)), Some((SlotId(3), 0.0)));
    }
}
