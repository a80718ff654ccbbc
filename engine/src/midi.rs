//! MIDI input: a streaming byte parser, and the mapping from controllers to what they do on the board.
//!
//! Everything here is a pure function of the bytes that arrive, so it is tested with real byte streams; the live
//! adaptor only feeds [`MidiParser`] and hands each [`MidiMessage`] to [`MidiRouter::handle`]. The module knows
//! nothing of the engine: a [`MidiAction`] names pedals by chain position and parameters by id, with values as
//! normalised knob positions, and the app turns it into engine commands.
//!
//! [`MidiParser::feed`] and [`MidiRouter::handle`] never allocate, lock or block, so they can run in a MIDI
//! callback: runtime state lives in fixed arrays, and actions borrow their strings from the map.
//!
//! Mappings are plain data kept as RON in presets and settings. Channels are numbered as on the wire, 0..=15
//! (MIDI channel 1 is `0`); only the `Display` texts count from 1 as people do.
//!
//! ```ron
//! (
//!     mappings: [
//!         (source: (channel: Some(0), kind: Cc(11)),
//!          target: Param(slot: 2, param: "gain_db", min: 0.1, max: 0.9, curve: Log)),
//!         (source: (channel: None, kind: Note(36)), target: Bypass(slot: 0, mode: Toggle)),
//!         (source: (channel: None, kind: Cc(80)), target: NextPreset),
//!     ],
//!     program_change_channel: None,
//! )
//! ```

use std::fmt;

use serde::{Deserialize, Serialize};

/// MIDI's convention for switches (CC 64 sustain, nearly every footswitch): 0..=63 is off, 64..=127 is on.
const SWITCH_ON: u8 = 64;

/// Base of the [`Curve::Log`] taper. Half travel gives a quarter of the range ((9^0.5 - 1) / 8 = 0.25): the low
/// end gets finer control, like a volume pedal, without the top half doing almost nothing as a steep audio taper.
const LOG_TAPER_BASE: f32 = 9.0;

/// A controller whose value has not arrived since start-up (real values are 0..=127).
const UNSEEN: u8 = 0xFF;

/// A channel message. Channels are 0..=15 as on the wire (MIDI channel 1 is 0); data values are 0..=127.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MidiMessage {
    /// Velocity is never 0: a Note On with velocity 0 is reported as the [`MidiMessage::NoteOff`] it means.
    NoteOn {
        channel: u8,
        note: u8,
        velocity: u8,
    },
    /// `velocity` is the release velocity, 0 when the note was ended by a Note On with velocity 0.
    NoteOff {
        channel: u8,
        note: u8,
        velocity: u8,
    },
    ControlChange {
        channel: u8,
        controller: u8,
        value: u8,
    },
    ProgramChange {
        channel: u8,
        program: u8,
    },
    /// -8192..=8191, 0 at rest.
    PitchBend {
        channel: u8,
        value: i16,
    },
    ChannelPressure {
        channel: u8,
        pressure: u8,
    },
    PolyPressure {
        channel: u8,
        note: u8,
        pressure: u8,
    },
}

/// For the incoming-MIDI monitor: `ch 1 CC 7 = 100`, channels counted from 1, everything else as on the wire.
impl fmt::Display for MidiMessage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use MidiMessage::*;
        let (NoteOn { channel, .. }
        | NoteOff { channel, .. }
        | ControlChange { channel, .. }
        | ProgramChange { channel, .. }
        | PitchBend { channel, .. }
        | ChannelPressure { channel, .. }
        | PolyPressure { channel, .. }) = *self;
        write!(f, "ch {} ", u16::from(channel) + 1)?;
        match *self {
            NoteOn { note, velocity, .. } => write!(f, "note on {note} vel {velocity}"),
            NoteOff { note, velocity, .. } => write!(f, "note off {note} vel {velocity}"),
            ControlChange { controller, value, .. } => write!(f, "CC {controller} = {value}"),
            ProgramChange { program, .. } => write!(f, "program {program}"),
            PitchBend { value, .. } => write!(f, "pitch bend {value}"),
            ChannelPressure { pressure, .. } => write!(f, "channel pressure {pressure}"),
            PolyPressure { note, pressure, .. } => write!(f, "poly pressure {note} = {pressure}"),
        }
    }
}

/// Turns a MIDI 1.0 byte stream into [`MidiMessage`]s one byte at a time, so a message may be split across reads
/// (serial ports, some drivers) and one read may hold several.
///
/// - Running status: data bytes after a complete channel message repeat its status.
/// - System real-time bytes (0xF8..=0xFF: clock, start, stop, active sensing, reset) may come between any two
///   bytes, even inside a message; they are ignored and leave the message being read untouched.
/// - SysEx (0xF0 … 0xF7) is skipped as it streams past, never buffered, so its length does not matter. Any status
///   byte other than real-time also ends it, as the spec allows.
/// - System common messages (MTC quarter frame, song position, song select, tune request) are consumed with their
///   data bytes and not reported. They and SysEx cancel running status, as the spec says.
/// - Malformed input is dropped and counted in [`MidiParser::malformed`]: one for each data byte with no status to
///   belong to, each message cut short by a new status byte, and each 0xF7 outside a SysEx. Parsing carries on
///   with the next status byte.
#[derive(Debug, Clone, Default)]
pub struct MidiParser {
    /// Status of the message being read; a channel status stays as running status. 0 when there is none.
    status: u8,
    data: [u8; 2],
    /// Data bytes of the current message read so far.
    received: u8,
    /// A message has begun (status or first data byte) and is not complete: a new status byte cuts it short.
    pending: bool,
    in_sysex: bool,
    malformed: u64,
}

impl MidiParser {
    pub fn new() -> Self {
        Self::default()
    }

    /// Parses `bytes`, calling `f` for each complete message. Never allocates.
    pub fn feed(&mut self, bytes: &[u8], mut f: impl FnMut(MidiMessage)) {
        for &byte in bytes {
            if let Some(message) = self.push(byte) {
                f(message);
            }
        }
    }

    /// Parses one byte; returns the message it completes, if any.
    pub fn push(&mut self, byte: u8) -> Option<MidiMessage> {
        match byte {
            0xF8..=0xFF => None,
            0x80..=0xF7 => {
                self.start(byte);
                None
            }
            _ => self.data_byte(byte),
        }
    }

    /// How many bytes or messages have been dropped as malformed since construction.
    pub fn malformed(&self) -> u64 {
        self.malformed
    }

    /// Forgets any message in progress and the running status (a device was reconnected); keeps the count.
    pub fn reset(&mut self) {
        *self = Self { malformed: self.malformed, ..Self::default() };
    }

    fn start(&mut self, status: u8) {
        if self.pending {
            self.malformed += 1;
        }
        self.pending = false;
        self.received = 0;
        self.status = 0;
        match status {
            0xF0 => self.in_sysex = true,
            0xF7 => {
                if !self.in_sysex {
                    self.malformed += 1;
                }
                self.in_sysex = false;
            }
            _ => {
                self.in_sysex = false;
                if data_len(status) > 0 {
                    self.status = status;
                    self.pending = true;
                }
            }
        }
    }

    fn data_byte(&mut self, byte: u8) -> Option<MidiMessage> {
        if self.in_sysex {
            return None;
        }
        if self.status == 0 {
            self.malformed += 1;
            return None;
        }
        // `received` is below `data_len(status)` <= 2 here: it is reset as soon as it reaches it.
        self.data[usize::from(self.received)] = byte;
        self.received += 1;
        self.pending = true;
        if self.received < data_len(self.status) {
            return None;
        }
        self.received = 0;
        self.pending = false;
        if self.status >= 0xF0 {
            self.status = 0;
            return None;
        }
        Some(decode(self.status, self.data))
    }
}

/// Data bytes that follow a status byte. Undefined system common statuses (0xF4, 0xF5) have none.
fn data_len(status: u8) -> u8 {
    match status {
        0x80..=0xBF | 0xE0..=0xEF | 0xF2 => 2,
        0xC0..=0xDF | 0xF1 | 0xF3 => 1,
        _ => 0,
    }
}

fn decode(status: u8, [a, b]: [u8; 2]) -> MidiMessage {
    let channel = status & 0x0F;
    match status & 0xF0 {
        0x80 => MidiMessage::NoteOff { channel, note: a, velocity: b },
        0x90 if b == 0 => MidiMessage::NoteOff { channel, note: a, velocity: 0 },
        0x90 => MidiMessage::NoteOn { channel, note: a, velocity: b },
        0xA0 => MidiMessage::PolyPressure { channel, note: a, pressure: b },
        0xB0 => MidiMessage::ControlChange { channel, controller: a, value: b },
        0xC0 => MidiMessage::ProgramChange { channel, program: a },
        0xD0 => MidiMessage::ChannelPressure { channel, pressure: a },
        _ => MidiMessage::PitchBend { channel, value: (i16::from(b) << 7 | i16::from(a)) - 8192 },
    }
}

/// Every controller-to-target mapping, plus which channel may change presets.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MidiMap {
    #[serde(default)]
    pub mappings: Vec<Mapping>,
    /// Program changes on this channel (0..=15) select presets; `None` takes them from every channel.
    #[serde(default)]
    pub program_change_channel: Option<u8>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Mapping {
    pub source: Source,
    pub target: Target,
}

/// A control on a MIDI device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Source {
    /// 0..=15; `None` (omni) listens on every channel.
    #[serde(default)]
    pub channel: Option<u8>,
    pub kind: SourceKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum SourceKind {
    /// A 7-bit controller, 0..=127.
    Cc(u8),
    /// A 14-bit controller pair: this controller (0..=31) carries the MSB, controller + 32 the LSB. The value is
    /// `(msb << 7 | lsb) / 16383`. Each MSB resets the LSB to 0 and an LSB refines the last MSB, so a device that
    /// sends only MSBs still works, in steps of 128/16383 (its top is 16256/16383, not 1).
    Cc14(u8),
    /// A note, 0..=127: Note On (velocity above 0) is a press, Note Off a release.
    Note(u8),
}

/// `ch 1 CC 7`, `omni CC 1/33 (14-bit)`, `ch 10 note 36`: for the GUI's mapping list.
impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.channel {
            Some(channel) => write!(f, "ch {} ", u16::from(channel) + 1)?,
            None => f.write_str("omni ")?,
        }
        match self.kind {
            SourceKind::Cc(controller) => write!(f, "CC {controller}"),
            SourceKind::Cc14(controller) => write!(f, "CC {controller}/{} (14-bit)", u16::from(controller) + 32),
            SourceKind::Note(note) => write!(f, "note {note}"),
        }
    }
}

/// What a control drives. Pedals are addressed by chain position, as presets have no stable pedal ids.
///
/// Continuous targets take a range of knob positions: `min` at the bottom of the control's travel, `max` at the
/// top, both 0..=1 (`min > max` inverts), shaped by `curve`. The parameter's own curve (dB, Hz) is applied on top
/// by the app, so a knob moved by MIDI behaves as the same knob moved by the mouse.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Target {
    Param {
        slot: usize,
        /// The parameter's id in presets, e.g. `"gain_db"`.
        param: String,
        #[serde(default)]
        min: f32,
        #[serde(default = "full_travel")]
        max: f32,
        #[serde(default)]
        curve: Curve,
    },
    Bypass {
        slot: usize,
        #[serde(default)]
        mode: SwitchMode,
    },
    InputGain {
        #[serde(default)]
        min: f32,
        #[serde(default = "full_travel")]
        max: f32,
        #[serde(default)]
        curve: Curve,
    },
    OutputLevel {
        #[serde(default)]
        min: f32,
        #[serde(default = "full_travel")]
        max: f32,
        #[serde(default)]
        curve: Curve,
    },
    Tuner {
        #[serde(default)]
        mode: SwitchMode,
    },
    /// On each press.
    NextPreset,
    /// On each press.
    PreviousPreset,
}

fn full_travel() -> f32 {
    1.0
}

impl Target {
    /// Whether two targets drive the same thing, whatever their range, curve or mode. Learning a control for a
    /// target replaces the control it had.
    pub fn same_control(&self, other: &Target) -> bool {
        match (self, other) {
            (Target::Param { slot: a, param: p, .. }, Target::Param { slot: b, param: q, .. }) => a == b && p == q,
            (Target::Bypass { slot: a, .. }, Target::Bypass { slot: b, .. }) => a == b,
            _ => std::mem::discriminant(self) == std::mem::discriminant(other),
        }
    }
}

/// How a control's travel is shaped before it is spread over `min..max`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Curve {
    #[default]
    Linear,
    /// A gentle volume-pedal taper: half travel reaches a quarter of the range.
    Log,
}

impl Curve {
    /// The knob position for a control position `t` (0..=1); `None` for a range that is not a number, so a broken
    /// mapping does nothing rather than send NaN to a pedal.
    fn position(self, min: f32, max: f32, t: f32) -> Option<f32> {
        let shaped = match self {
            Curve::Linear => t,
            Curve::Log => (LOG_TAPER_BASE.powf(t) - 1.0) / (LOG_TAPER_BASE - 1.0),
        };
        let position = min + (max - min) * shaped;
        position.is_finite().then(|| position.clamp(0.0, 1.0))
    }
}

/// How a switch target follows a control. Values 64..=127 (and Note On) are "on", 0..=63 (and Note Off) "off".
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum SwitchMode {
    /// Each press flips the state. A press is an "on" value that follows an "off" value, or is the first from its
    /// control, or repeats the previous value exactly. So a momentary footswitch (127 on press, 0 on release) and
    /// a switch that only ever sends 127 both flip once per press, while an expression pedal swept upwards flips
    /// once as it crosses the middle rather than on every step. A latching switch (127 and 0 on alternate
    /// presses) would flip on every other press: use [`SwitchMode::Latch`] for it.
    #[default]
    Toggle,
    /// Engaged while held, bypassed when released; acts when the control changes between on and off.
    Momentary,
    /// The control's value is the state (on = engaged), restated on every message: for latching footswitches.
    Latch,
}

/// What the board should do, as the app will translate it into engine commands. Borrows from the router's map,
/// so producing one never allocates.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum MidiAction<'a> {
    /// A knob position, 0..=1, for the parameter with this id on the pedal at this chain position.
    SetParam {
        slot: usize,
        param: &'a str,
        normalized: f32,
    },
    SetBypass {
        slot: usize,
        bypassed: bool,
    },
    ToggleBypass {
        slot: usize,
    },
    /// A position, 0..=1, of the input gain's range.
    SetInputGain {
        normalized: f32,
    },
    SetOutputLevel {
        normalized: f32,
    },
    SetTuner(bool),
    ToggleTuner,
    NextPreset,
    PreviousPreset,
    /// From every Program Change that passes [`MidiMap::program_change_channel`]. `bank` is the 14-bit Bank Select
    /// last seen on that channel (`CC 0 << 7 | CC 32`; 0 if none): a device sending only CC 0 = n gives n * 128.
    SelectPreset {
        bank: u16,
        program: u8,
    },
    /// MIDI learn made (or, for a 14-bit pair, upgraded) this mapping; it is now in [`MidiRouter::map`].
    Learned {
        source: Source,
        target: &'a Target,
    },
}

/// What one message means to the mappings of one kind of source, after the router's state has been consulted.
#[derive(Debug, Clone, Copy)]
struct Drive {
    /// Control position, 0..=1.
    value: f32,
    /// `None` for a 14-bit LSB: it refines the position but is not a new press.
    switch: Option<Switch>,
}

#[derive(Debug, Clone, Copy)]
struct Switch {
    on: bool,
    /// A press for [`SwitchMode::Toggle`] and the preset steps.
    press: bool,
    /// Differs from the previous on/off state (or there was none).
    changed: bool,
}

impl Switch {
    fn from_cc(previous: u8, value: u8) -> Self {
        let on = value >= SWITCH_ON;
        let was_on = previous != UNSEEN && previous >= SWITCH_ON;
        Switch { on, press: on && (!was_on || previous == value), changed: previous == UNSEEN || was_on != on }
    }

    fn apply(self, mode: SwitchMode) -> Option<Flip> {
        match mode {
            SwitchMode::Toggle => self.press.then_some(Flip::Toggle),
            SwitchMode::Momentary => self.changed.then_some(Flip::Set(self.on)),
            SwitchMode::Latch => Some(Flip::Set(self.on)),
        }
    }
}

/// What a switch target does with one message.
#[derive(Debug, Clone, Copy)]
enum Flip {
    Toggle,
    /// Engaged (pedal on, tuner on) or not.
    Set(bool),
}

/// A CC or note message, with what it means for each kind of source it can drive.
#[derive(Debug, Clone, Copy)]
enum Incoming {
    Cc {
        controller: u8,
        seven: Drive,
        /// The base controller (0..=31) of the 14-bit pair this message belongs to, and its drive.
        fourteen: Option<(u8, Drive)>,
    },
    Note {
        note: u8,
        drive: Drive,
    },
}

impl Source {
    /// Whether one message can drive both sources: their channels overlap (omni overlaps every channel) and they
    /// name the same controller or note. A 14-bit pair overlaps the 7-bit controllers of both its halves.
    pub fn overlaps(&self, other: &Source) -> bool {
        let channels = match (self.channel, other.channel) {
            (Some(a), Some(b)) => a == b,
            _ => true,
        };
        let pair = |base: u8, controller: u8| controller == base || u16::from(controller) == u16::from(base) + 32;
        channels
            && match (self.kind, other.kind) {
                (SourceKind::Cc(a), SourceKind::Cc(b))
                | (SourceKind::Cc14(a), SourceKind::Cc14(b))
                | (SourceKind::Note(a), SourceKind::Note(b)) => a == b,
                (SourceKind::Cc14(base), SourceKind::Cc(controller))
                | (SourceKind::Cc(controller), SourceKind::Cc14(base)) => pair(base, controller),
                _ => false,
            }
    }

    fn drive(&self, channel: u8, incoming: &Incoming) -> Option<Drive> {
        if self.channel.is_some_and(|c| c != channel) {
            return None;
        }
        match (self.kind, *incoming) {
            (SourceKind::Cc(c), Incoming::Cc { controller, seven, .. }) if c == controller => Some(seven),
            (SourceKind::Cc14(c), Incoming::Cc { fourteen: Some((base, drive)), .. }) if c == base => Some(drive),
            (SourceKind::Note(n), Incoming::Note { note, drive }) if n == note => Some(drive),
            _ => None,
        }
    }
}

fn fourteen_bit(msb: u8, lsb: u8) -> f32 {
    f32::from(u16::from(msb) << 7 | u16::from(lsb)) / 16383.0
}

/// Applies a [`MidiMap`] to incoming messages, and runs MIDI learn.
///
/// Keeps what the mappings need to remember about each control (last CC values for switch edges, 14-bit halves,
/// Bank Select) in fixed arrays, so [`MidiRouter::handle`] never allocates, even when it completes a learn.
#[derive(Clone)]
pub struct MidiRouter {
    map: MidiMap,
    /// Last value of every controller on every channel, [`UNSEEN`] until one arrives.
    cc: [[u8; 128]; 16],
    /// LSB of each 14-bit pair (controllers 32..=63), reset to 0 by its MSB.
    lsb: [[u8; 32]; 16],
    learning: Option<Target>,
    /// After a CC 0..=31 was learned: its channel and controller, in case the next message from that channel is its
    /// LSB partner and the mapping should become [`SourceKind::Cc14`].
    upgrade: Option<(u8, u8)>,
}

impl fmt::Debug for MidiRouter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MidiRouter")
            .field("map", &self.map)
            .field("learning", &self.learning)
            .field("upgrade", &self.upgrade)
            .finish_non_exhaustive()
    }
}

impl Default for MidiRouter {
    fn default() -> Self {
        Self::new(MidiMap::default())
    }
}

impl MidiRouter {
    pub fn new(map: MidiMap) -> Self {
        Self { map, cc: [[UNSEEN; 128]; 16], lsb: [[0; 32]; 16], learning: None, upgrade: None }
    }

    /// The mappings, including learned ones: what the settings should save.
    pub fn map(&self) -> &MidiMap {
        &self.map
    }

    /// Replaces the mappings (another preset, edited settings). What the controls last sent is kept: the hardware
    /// has not moved. A learn in progress stays armed.
    pub fn set_map(&mut self, mut map: MidiMap) {
        if self.learning.is_some() {
            map.mappings.reserve(1);
        }
        self.map = map;
        self.upgrade = None;
    }

    /// Arms MIDI learn: the next CC or Note On, from any channel, is mapped to `target` (on the channel it came
    /// from), replacing every mapping that message would have driven and any other mapping for the same control
    /// (see [`Target::same_control`]). The learning message drives nothing else, and `handle` reports
    /// [`MidiAction::Learned`].
    ///
    /// 14-bit controllers are recognised by one rule: if a CC 0..=31 was learned and the very next message from the
    /// same channel is its partner (controller + 32), the mapping becomes [`SourceKind::Cc14`], a second `Learned`
    /// reports it, and that message too drives nothing else. Devices send the MSB first, so this catches every
    /// 14-bit pair unless learn is armed between the two halves of one value.
    pub fn learn(&mut self, target: Target) {
        // Room for the learned mapping now, so that completing the learn inside `handle` does not allocate.
        self.map.mappings.reserve(1);
        self.learning = Some(target);
    }

    /// Disarms learn. A 14-bit upgrade of a mapping already learned can still happen.
    pub fn cancel_learn(&mut self) {
        self.learning = None;
    }

    /// The target waiting for a control, while learn is armed.
    pub fn learning(&self) -> Option<&Target> {
        self.learning.as_ref()
    }

    /// Applies one message: calls `f` for each action, in the order of the mappings (several may share a
    /// control). Messages with fields out of range (only possible when built by hand) are ignored. Never allocates.
    pub fn handle<'a>(&'a mut self, message: &MidiMessage, mut f: impl FnMut(MidiAction<'a>)) {
        let (channel, incoming) = match *message {
            MidiMessage::ProgramChange { channel, program } if channel < 16 && program < 128 => {
                if self.map.program_change_channel.is_none_or(|c| c == channel) {
                    let ch = usize::from(channel);
                    let msb = if self.cc[ch][0] == UNSEEN { 0 } else { self.cc[ch][0] };
                    f(MidiAction::SelectPreset { bank: u16::from(msb) << 7 | u16::from(self.lsb[ch][0]), program });
                }
                return;
            }
            MidiMessage::ControlChange { channel, controller, value }
                if channel < 16 && controller < 128 && value < 128 =>
            {
                (channel, self.observe_cc(channel, controller, value))
            }
            MidiMessage::NoteOn { channel, note, velocity }
                if channel < 16 && note < 128 && (1..128).contains(&velocity) =>
            {
                let switch = Switch { on: true, press: true, changed: true };
                (
                    channel,
                    Incoming::Note { note, drive: Drive { value: f32::from(velocity) / 127.0, switch: Some(switch) } },
                )
            }
            MidiMessage::NoteOn { channel, note, .. } | MidiMessage::NoteOff { channel, note, .. }
                if channel < 16 && note < 128 =>
            {
                let switch = Switch { on: false, press: false, changed: true };
                (channel, Incoming::Note { note, drive: Drive { value: 0.0, switch: Some(switch) } })
            }
            _ => return,
        };
        if self.finish_upgrade(channel, &incoming) || self.finish_learn(channel, &incoming) {
            let map: &'a MidiMap = &self.map;
            if let Some(learned) = map.mappings.last() {
                f(MidiAction::Learned { source: learned.source, target: &learned.target });
            }
            return;
        }
        let map: &'a MidiMap = &self.map;
        for mapping in &map.mappings {
            if let Some(drive) = mapping.source.drive(channel, &incoming) {
                act(&mapping.target, drive, &mut f);
            }
        }
    }

    /// Updates the state of one controller and says what its new value means.
    fn observe_cc(&mut self, channel: u8, controller: u8, value: u8) -> Incoming {
        let (ch, c) = (usize::from(channel), usize::from(controller));
        let switch = Switch::from_cc(self.cc[ch][c], value);
        let seven = Drive { value: f32::from(value) / 127.0, switch: Some(switch) };
        let fourteen = match c {
            0..32 => {
                self.lsb[ch][c] = 0;
                Some((controller, Drive { value: fourteen_bit(value, 0), switch: Some(switch) }))
            }
            32..64 => {
                self.lsb[ch][c - 32] = value;
                let msb = self.cc[ch][c - 32];
                // An LSB before any MSB means nothing yet; taking the MSB as 0 would jump the knob to the bottom.
                (msb != UNSEEN).then(|| (controller - 32, Drive { value: fourteen_bit(msb, value), switch: None }))
            }
            _ => None,
        };
        self.cc[ch][c] = value;
        Incoming::Cc { controller, seven, fourteen }
    }

    /// Completes an armed learn with this message, if it is a CC or a Note On.
    fn finish_learn(&mut self, channel: u8, incoming: &Incoming) -> bool {
        let kind = match *incoming {
            Incoming::Cc { controller, .. } => SourceKind::Cc(controller),
            // A Note Off may be the release of a key pressed before learn was armed.
            Incoming::Note { note, drive } if drive.switch.is_some_and(|s| s.on) => SourceKind::Note(note),
            Incoming::Note { .. } => return false,
        };
        let Some(target) = self.learning.take() else { return false };
        let mappings = &mut self.map.mappings;
        mappings.retain(|m| m.source.drive(channel, incoming).is_none() && !m.target.same_control(&target));
        mappings.push(Mapping { source: Source { channel: Some(channel), kind }, target });
        self.upgrade = match kind {
            SourceKind::Cc(controller) if controller < 32 => Some((channel, controller)),
            _ => None,
        };
        true
    }

    /// Turns the mapping just learned from a CC 0..=31 into a 14-bit one if this message is its LSB partner.
    fn finish_upgrade(&mut self, channel: u8, incoming: &Incoming) -> bool {
        let Some((learned_channel, learned)) = self.upgrade else { return false };
        if channel != learned_channel {
            return false;
        }
        self.upgrade = None;
        if !matches!(*incoming, Incoming::Cc { controller, .. } if controller == learned + 32) {
            return false;
        }
        let source = Source { channel: Some(channel), kind: SourceKind::Cc(learned) };
        let mappings = &mut self.map.mappings;
        let Some(index) = mappings.iter().rposition(|m| m.source == source) else { return false };
        // Removed and pushed back rather than edited in place so it stays last for the report; no allocation, as
        // the vector is never longer than before.
        let mut mapping = mappings.remove(index);
        mapping.source.kind = SourceKind::Cc14(learned);
        mappings.retain(|m| m.source.drive(channel, incoming).is_none());
        mappings.push(mapping);
        true
    }
}

fn act<'a>(target: &'a Target, drive: Drive, f: &mut impl FnMut(MidiAction<'a>)) {
    match target {
        Target::Param { slot, param, min, max, curve } => {
            if let Some(normalized) = curve.position(*min, *max, drive.value) {
                f(MidiAction::SetParam { slot: *slot, param, normalized });
            }
        }
        Target::InputGain { min, max, curve } => {
            if let Some(normalized) = curve.position(*min, *max, drive.value) {
                f(MidiAction::SetInputGain { normalized });
            }
        }
        Target::OutputLevel { min, max, curve } => {
            if let Some(normalized) = curve.position(*min, *max, drive.value) {
                f(MidiAction::SetOutputLevel { normalized });
            }
        }
        Target::Bypass { slot, mode } => match drive.switch.and_then(|s| s.apply(*mode)) {
            Some(Flip::Toggle) => f(MidiAction::ToggleBypass { slot: *slot }),
            Some(Flip::Set(on)) => f(MidiAction::SetBypass { slot: *slot, bypassed: !on }),
            None => {}
        },
        Target::Tuner { mode } => match drive.switch.and_then(|s| s.apply(*mode)) {
            Some(Flip::Toggle) => f(MidiAction::ToggleTuner),
            Some(Flip::Set(on)) => f(MidiAction::SetTuner(on)),
            None => {}
        },
        Target::NextPreset if drive.switch.is_some_and(|s| s.press) => f(MidiAction::NextPreset),
        Target::PreviousPreset if drive.switch.is_some_and(|s| s.press) => f(MidiAction::PreviousPreset),
        Target::NextPreset | Target::PreviousPreset => {}
    }
}

/// Why a [`MidiMap`] from a file cannot be used. The router tolerates all of these (the mapping never matches or
/// does nothing); checking when the file is loaded tells the player what to fix.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum MidiMapError {
    #[error("program_change_channel = {0} is not a MIDI channel: use 0..=15 (0 is channel 1) or None for all")]
    ProgramChangeChannel(u8),
    #[error("mappings[{index}].source.channel = {channel} is not a MIDI channel: use 0..=15 (0 is channel 1) or None")]
    Channel { index: usize, channel: u8 },
    #[error(
        "mappings[{index}].source.kind = {kind}({number}) is out of range: use 0..={max} (a 14-bit pair is named by its MSB)"
    )]
    Number { index: usize, kind: &'static str, number: u8, max: u8 },
    #[error("mappings[{index}].target.{field} = {value} is not a knob position: use 0.0..=1.0")]
    Position { index: usize, field: &'static str, value: f32 },
    #[error("mappings[{index}].target.param is empty: name the parameter's id, such as \"gain_db\"")]
    EmptyParam { index: usize },
}

impl MidiMap {
    /// No mappings and no program change channel: nothing worth writing into a preset.
    pub fn is_empty(&self) -> bool {
        self.mappings.is_empty() && self.program_change_channel.is_none()
    }

    /// The map in force while a preset plays: the global mappings (from the settings) that no mapping of the
    /// preset overlaps (see [`Source::overlaps`]), then the preset's. So a preset can give a footswitch another job
    /// for one song without the global job firing too, and the global mappings it does not mention keep working.
    /// A preset that sets a program change channel overrides the global one.
    pub fn merged(global: &MidiMap, preset: &MidiMap) -> MidiMap {
        let shadowed = |m: &Mapping| preset.mappings.iter().any(|p| p.source.overlaps(&m.source));
        let mappings =
            global.mappings.iter().filter(|m| !shadowed(m)).chain(&preset.mappings).cloned().collect::<Vec<_>>();
        MidiMap { mappings, program_change_channel: preset.program_change_channel.or(global.program_change_channel) }
    }

    /// Records a mapping made by MIDI learn (a [`MidiAction::Learned`]) the way the router made it: every mapping
    /// whose source overlaps the new one, and every other mapping for the same control, is replaced. For keeping a
    /// learned mapping in the settings or a preset.
    pub fn insert_learned(&mut self, mapping: Mapping) {
        self.mappings.retain(|m| !m.source.overlaps(&mapping.source) && !m.target.same_control(&mapping.target));
        self.mappings.push(mapping);
    }

    /// Checks a map read from a file. Pedal positions and parameter ids are left to the app, which knows the chain.
    pub fn validate(&self) -> Result<(), MidiMapError> {
        if let Some(channel) = self.program_change_channel.filter(|&c| c > 15) {
            return Err(MidiMapError::ProgramChangeChannel(channel));
        }
        for (index, Mapping { source, target }) in self.mappings.iter().enumerate() {
            if let Some(channel) = source.channel.filter(|&c| c > 15) {
                return Err(MidiMapError::Channel { index, channel });
            }
            let (kind, number, max) = match source.kind {
                SourceKind::Cc(n) => ("Cc", n, 127),
                SourceKind::Cc14(n) => ("Cc14", n, 31),
                SourceKind::Note(n) => ("Note", n, 127),
            };
            if number > max {
                return Err(MidiMapError::Number { index, kind, number, max });
            }
            let (min, max) = match target {
                Target::Param { param, .. } if param.is_empty() => return Err(MidiMapError::EmptyParam { index }),
                Target::Param { min, max, .. }
                | Target::InputGain { min, max, .. }
                | Target::OutputLevel { min, max, .. } => (*min, *max),
                _ => continue,
            };
            for (field, value) in [("min", min), ("max", max)] {
                if !(0.0..=1.0).contains(&value) {
                    return Err(MidiMapError::Position { index, field, value });
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cc(channel: Option<u8>, controller: u8) -> Source {
        Source { channel, kind: SourceKind::Cc(controller) }
    }

    fn param(slot: usize, id: &str) -> Target {
        Target::Param { slot, param: id.into(), min: 0.0, max: 1.0, curve: Curve::Linear }
    }

    fn bypass(slot: usize, mode: SwitchMode) -> Target {
        Target::Bypass { slot, mode }
    }

    /// A parser and a router, fed the way the live adaptor will feed them.
    struct Rig {
        parser: MidiParser,
        router: MidiRouter,
    }

    impl Rig {
        fn new(mappings: impl IntoIterator<Item = (Source, Target)>) -> Self {
            let mappings = mappings.into_iter().map(|(source, target)| Mapping { source, target }).collect();
            Rig {
                parser: MidiParser::new(),
                router: MidiRouter::new(MidiMap { mappings, program_change_channel: None }),
            }
        }

        /// The actions the bytes cause, written short so tests read like the board's behaviour.
        fn send(&mut self, bytes: &[u8]) -> Vec<String> {
            let mut out = Vec::new();
            let router = &mut self.router;
            self.parser.feed(bytes, |message| router.handle(&message, |action| out.push(describe(&action))));
            out
        }

        /// The knob positions the bytes set, exactly.
        fn positions(&mut self, bytes: &[u8]) -> Vec<f32> {
            let mut out = Vec::new();
            let router = &mut self.router;
            self.parser.feed(bytes, |message| {
                router.handle(&message, |action| {
                    if let MidiAction::SetParam { normalized, .. } = action {
                        out.push(normalized);
                    }
                })
            });
            out
        }
    }

    fn describe(action: &MidiAction<'_>) -> String {
        match *action {
            MidiAction::SetParam { slot, param, normalized } => format!("param {slot} {param} {normalized:.3}"),
            MidiAction::SetBypass { slot, bypassed } => format!("bypass {slot} {bypassed}"),
            MidiAction::ToggleBypass { slot } => format!("toggle {slot}"),
            MidiAction::SetInputGain { normalized } => format!("input {normalized:.3}"),
            MidiAction::SetOutputLevel { normalized } => format!("output {normalized:.3}"),
            MidiAction::SetTuner(on) => format!("tuner {on}"),
            MidiAction::ToggleTuner => "toggle tuner".into(),
            MidiAction::NextPreset => "next".into(),
            MidiAction::PreviousPreset => "previous".into(),
            MidiAction::SelectPreset { bank, program } => format!("preset {bank}:{program}"),
            MidiAction::Learned { source, .. } => format!("learned {source}"),
        }
    }

    fn parse(parser: &mut MidiParser, bytes: &[u8]) -> Vec<MidiMessage> {
        let mut out = Vec::new();
        parser.feed(bytes, |m| out.push(m));
        out
    }

    use MidiMessage::*;

    #[test]
    fn running_status_carries_across_ccs_and_notes() {
        let mut p = MidiParser::new();
        let bytes = [0xB0, 7, 100, 8, 50, 0x91, 60, 100, 62, 0, 0xC2, 5, 6];
        assert_eq!(
            parse(&mut p, &bytes),
            [
                ControlChange { channel: 0, controller: 7, value: 100 },
                ControlChange { channel: 0, controller: 8, value: 50 },
                NoteOn { channel: 1, note: 60, velocity: 100 },
                NoteOff { channel: 1, note: 62, velocity: 0 },
                ProgramChange { channel: 2, program: 5 },
                ProgramChange { channel: 2, program: 6 },
            ]
        );
        assert_eq!(p.malformed(), 0);
    }

    #[test]
    fn every_channel_message_decodes_even_when_split_across_reads() {
        let mut p = MidiParser::new();
        assert!(parse(&mut p, &[0xE3, 0x00]).is_empty(), "half a message waits for the rest");
        assert_eq!(parse(&mut p, &[0x40]), [PitchBend { channel: 3, value: 0 }]);
        assert_eq!(
            parse(&mut p, &[0xE0, 0, 0, 0x7F, 0x7F, 0x8F, 60, 30, 0xAE, 61, 40, 0xD4, 90]),
            [
                PitchBend { channel: 0, value: -8192 },
                PitchBend { channel: 0, value: 8191 },
                NoteOff { channel: 15, note: 60, velocity: 30 },
                PolyPressure { channel: 14, note: 61, pressure: 40 },
                ChannelPressure { channel: 4, pressure: 90 },
            ]
        );
    }

    #[test]
    fn real_time_bytes_inside_a_message_do_not_disturb_it() {
        let mut p = MidiParser::new();
        let bytes = [0xF8, 0xB0, 0xF8, 7, 0xFE, 100, 0xFA, 8, 0xFF, 9, 0xF8];
        assert_eq!(
            parse(&mut p, &bytes),
            [
                ControlChange { channel: 0, controller: 7, value: 100 },
                ControlChange { channel: 0, controller: 8, value: 9 }
            ]
        );
        assert_eq!(p.malformed(), 0);
    }

    #[test]
    fn sysex_and_system_common_messages_are_skipped_without_losing_what_follows() {
        let mut p = MidiParser::new();
        let sysex = [0xF0, 0x7E, 0x7F, 0xF8, 0x06, 0x01, 0xF7];
        let common = [0xF2, 0x10, 0x20, 0xF1, 0x33, 0xF3, 5, 0xF6];
        let bytes = [&[0xB0, 7, 1][..], &sysex, &common, &[0xB0, 7, 2], &[0xF0, 1, 2, 0x90, 60, 1]].concat();
        assert_eq!(
            parse(&mut p, &bytes),
            [
                ControlChange { channel: 0, controller: 7, value: 1 },
                ControlChange { channel: 0, controller: 7, value: 2 },
                NoteOn { channel: 0, note: 60, velocity: 1 },
            ]
        );
        assert_eq!(p.malformed(), 0, "a status byte may end a SysEx in place of 0xF7");
        // SysEx cancels running status: data bytes after it have nothing to belong to.
        assert!(parse(&mut p, &[0xB0, 7, 3, 0xF0, 0xF7, 7, 4]).len() == 1);
        assert_eq!(p.malformed(), 2);
    }

    #[test]
    fn malformed_bytes_are_counted_and_parsing_recovers() {
        let mut p = MidiParser::new();
        assert!(parse(&mut p, &[0x05, 0x06]).is_empty());
        assert_eq!(p.malformed(), 2, "data bytes with no status");
        assert_eq!(parse(&mut p, &[0x90, 60, 0xB0, 7, 1]), [ControlChange { channel: 0, controller: 7, value: 1 }]);
        assert_eq!(p.malformed(), 3, "a note cut short by a new status");
        assert!(parse(&mut p, &[0xF7]).is_empty());
        assert_eq!(p.malformed(), 4, "a stray end of SysEx");
        assert!(parse(&mut p, &[0xF2, 1, 0xC0, 9]).len() == 1);
        assert_eq!(p.malformed(), 5, "a song position cut short");
        assert_eq!(parse(&mut p, &[0xB0, 7, 9]), [ControlChange { channel: 0, controller: 7, value: 9 }]);
        assert_eq!(p.malformed(), 5);
    }

    #[test]
    fn random_bytes_never_panic_and_only_produce_valid_messages() {
        let mut rig = Rig::new([
            (Source { channel: None, kind: SourceKind::Cc14(1) }, param(0, "a")),
            (cc(Some(3), 64), bypass(1, SwitchMode::Toggle)),
            (Source { channel: None, kind: SourceKind::Note(40) }, Target::Tuner { mode: SwitchMode::Momentary }),
        ]);
        let mut seed = 0x2545_F491_4F6C_DD1Du64;
        let mut bytes = vec![0u8; 100_000];
        for byte in &mut bytes {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            *byte = (seed >> 56) as u8;
        }
        let mut count = 0;
        let router = &mut rig.router;
        rig.parser.feed(&bytes, |message| {
            let text = message.to_string();
            assert!(text.starts_with("ch ") && !text.contains("ch 0 ") && !text.contains("ch 17"), "{text}");
            count += 1;
            router.handle(&message, |action| {
                if let MidiAction::SetParam { normalized, .. } = action {
                    assert!((0.0..=1.0).contains(&normalized));
                }
            });
        });
        assert!(
            count > 1000 && rig.parser.malformed() > 1000,
            "{count} messages, {} malformed",
            rig.parser.malformed()
        );
        // Messages built by hand with impossible fields are ignored, not indexed with.
        for message in [
            ControlChange { channel: 200, controller: 1, value: 1 },
            ControlChange { channel: 0, controller: 200, value: 255 },
            NoteOn { channel: 0, note: 255, velocity: 1 },
            ProgramChange { channel: 99, program: 1 },
        ] {
            rig.router.handle(&message, |action| panic!("{action:?} from {message:?}"));
        }
    }

    #[test]
    fn channel_filters_separate_omni_from_one_channel() {
        let mut rig = Rig::new([(cc(None, 7), param(0, "any")), (cc(Some(2), 7), param(1, "third"))]);
        assert_eq!(rig.send(&[0xB0, 7, 127]), ["param 0 any 1.000"]);
        assert_eq!(rig.send(&[0xB2, 7, 0]), ["param 0 any 0.000", "param 1 third 0.000"]);
        assert!(rig.send(&[0xB2, 8, 0, 0x92, 7, 100]).is_empty(), "other controllers and notes do nothing");
    }

    #[test]
    fn fourteen_bit_controllers_combine_msb_and_lsb_and_work_with_msb_alone() {
        let mut rig = Rig::new([(Source { channel: Some(0), kind: SourceKind::Cc14(1) }, param(0, "wah"))]);
        assert!(rig.positions(&[0xB0, 33, 5]).is_empty(), "an LSB before any MSB means nothing yet");
        assert_eq!(rig.positions(&[0xB0, 1, 64, 33, 0]), [8192.0 / 16383.0, 8192.0 / 16383.0]);
        assert_eq!(rig.positions(&[0xB0, 1, 127, 33, 127]), [16256.0 / 16383.0, 1.0]);
        // An MSB alone resets the LSB, so a device that sends only MSBs lands on its 128 steps.
        assert_eq!(rig.positions(&[0xB0, 1, 0, 33, 100, 1, 32]), [0.0, 100.0 / 16383.0, 4096.0 / 16383.0]);
        assert!(rig.positions(&[0xB1, 1, 64, 33, 64]).is_empty(), "other channel");
    }

    #[test]
    fn cc_to_param_spreads_over_min_max_inverts_and_tapers() {
        let range = |min, max, curve| Target::Param { slot: 3, param: "gain_db".into(), min, max, curve };
        let mut rig = Rig::new([(cc(None, 1), range(0.2, 0.8, Curve::Linear))]);
        assert_eq!(
            rig.send(&[0xB0, 1, 0, 1, 64, 1, 127])[..],
            ["param 3 gain_db 0.200", "param 3 gain_db 0.502", "param 3 gain_db 0.800"]
        );
        let mut rig = Rig::new([(cc(None, 1), range(1.0, 0.0, Curve::Linear))]);
        assert_eq!(rig.send(&[0xB0, 1, 0, 1, 127]), ["param 3 gain_db 1.000", "param 3 gain_db 0.000"]);
        let mut rig = Rig::new([(cc(None, 1), range(0.0, 1.0, Curve::Log))]);
        let sweep: Vec<u8> = (0..=127).flat_map(|v| [0xB0, 1, v]).collect();
        let positions = rig.positions(&sweep);
        assert_eq!((positions[0], positions[127]), (0.0, 1.0));
        assert!((positions[64] - 0.253).abs() < 0.001, "half travel gives about a quarter: {}", positions[64]);
        assert!(positions.windows(2).all(|w| w[1] > w[0]), "the taper rises all the way");
        let mut rig = Rig::new([(cc(None, 2), Target::OutputLevel { min: 0.5, max: f32::NAN, curve: Curve::Linear })]);
        assert!(rig.send(&[0xB0, 2, 64]).is_empty(), "a broken range does nothing rather than send NaN");
    }

    #[test]
    fn toggle_flips_once_per_press_for_momentary_and_127_only_switches() {
        let mut rig = Rig::new([(cc(None, 80), bypass(2, SwitchMode::Toggle))]);
        assert_eq!(rig.send(&[0xB0, 80, 127, 80, 0, 80, 127, 80, 0]), ["toggle 2", "toggle 2"]);
        let mut rig = Rig::new([(cc(None, 81), bypass(2, SwitchMode::Toggle))]);
        assert_eq!(rig.send(&[0xB0, 81, 127, 81, 127]), ["toggle 2", "toggle 2"]);
        let sweep: Vec<u8> = (0..=127).flat_map(|v| [0xB0, 81, v]).collect();
        assert_eq!(rig.send(&sweep), ["toggle 2"], "an expression pedal flips once as it crosses the middle");
    }

    #[test]
    fn momentary_engages_while_held_and_latch_follows_the_switch() {
        let mut rig = Rig::new([(cc(None, 80), bypass(0, SwitchMode::Momentary))]);
        assert_eq!(rig.send(&[0xB0, 80, 127, 80, 127, 80, 0]), ["bypass 0 false", "bypass 0 true"]);
        let mut rig = Rig::new([(cc(None, 80), bypass(0, SwitchMode::Latch))]);
        assert_eq!(rig.send(&[0xB0, 80, 127, 80, 0, 80, 127]), ["bypass 0 false", "bypass 0 true", "bypass 0 false"]);
        let mut rig = Rig::new([(cc(None, 69), Target::Tuner { mode: SwitchMode::Momentary })]);
        assert_eq!(rig.send(&[0xB0, 69, 127, 69, 0]), ["tuner true", "tuner false"]);
    }

    #[test]
    fn notes_press_and_release_switches_and_velocity_sets_knobs() {
        let note = |n| Source { channel: Some(9), kind: SourceKind::Note(n) };
        let mut rig = Rig::new([
            (note(36), bypass(1, SwitchMode::Toggle)),
            (note(38), Target::Tuner { mode: SwitchMode::Toggle }),
            (note(40), param(0, "mix")),
        ]);
        assert_eq!(rig.send(&[0x99, 36, 100, 36, 0, 36, 1, 0x89, 36, 64]), ["toggle 1", "toggle 1"]);
        assert_eq!(rig.send(&[0x99, 38, 127]), ["toggle tuner"]);
        assert_eq!(rig.send(&[0x99, 40, 127, 0x89, 40, 0]), ["param 0 mix 1.000", "param 0 mix 0.000"]);
        assert!(rig.send(&[0x90, 36, 100]).is_empty(), "channel 1 is not channel 10");
    }

    #[test]
    fn program_change_selects_a_preset_in_the_last_bank_of_its_channel() {
        let mut rig = Rig::new([]);
        assert_eq!(rig.send(&[0xC0, 5]), ["preset 0:5"]);
        assert_eq!(rig.send(&[0xB0, 0, 1, 32, 2, 0xC0, 3]), ["preset 130:3"]);
        assert_eq!(rig.send(&[0xC0, 4]), ["preset 130:4"], "the bank stays until changed");
        assert_eq!(rig.send(&[0xB0, 0, 2, 0xC0, 4]), ["preset 256:4"], "a bank MSB alone resets the LSB");
        assert_eq!(rig.send(&[0xC1, 4]), ["preset 0:4"], "banks are per channel");
        rig.router.set_map(MidiMap { program_change_channel: Some(1), ..MidiMap::default() });
        assert!(rig.send(&[0xC0, 7]).is_empty());
        assert_eq!(rig.send(&[0xC1, 7]), ["preset 0:7"]);
    }

    #[test]
    fn next_and_previous_step_on_each_press() {
        let mut rig = Rig::new([
            (cc(None, 90), Target::NextPreset),
            (Source { channel: None, kind: SourceKind::Note(60) }, Target::PreviousPreset),
        ]);
        assert_eq!(rig.send(&[0xB0, 90, 127, 90, 0, 90, 127]), ["next", "next"]);
        assert_eq!(rig.send(&[0x90, 60, 90, 60, 0]), ["previous"]);
    }

    #[test]
    fn a_fan_out_control_drives_every_mapping_in_order() {
        let mut rig = Rig::new([
            (cc(None, 4), param(0, "drive")),
            (cc(None, 4), Target::InputGain { min: 0.0, max: 0.5, curve: Curve::Linear }),
            (cc(Some(0), 4), bypass(1, SwitchMode::Latch)),
        ]);
        assert_eq!(rig.send(&[0xB0, 4, 127]), ["param 0 drive 1.000", "input 0.500", "bypass 1 false"]);
    }

    #[test]
    fn learn_maps_the_next_cc_on_its_channel_and_drives_nothing_else() {
        let mut rig = Rig::new([(cc(None, 20), bypass(0, SwitchMode::Toggle)), (cc(None, 21), param(1, "gain"))]);
        rig.router.learn(param(1, "level"));
        assert_eq!(rig.router.learning(), Some(&param(1, "level")));
        assert!(rig.send(&[0x90, 60, 0]).is_empty(), "a Note Off does not learn");
        assert_eq!(rig.send(&[0xB3, 20, 127]), ["learned ch 4 CC 20"], "neither the old nor the new mapping acts");
        assert_eq!(rig.router.learning(), None);
        assert_eq!(rig.send(&[0xB3, 20, 64, 21, 0]), ["param 1 level 0.504", "param 1 gain 0.000"]);
        assert!(rig.send(&[0xB0, 20, 127]).is_empty(), "the old omni mapping was replaced; the new one is channel 4");
        // The learning press counts as the switch's last value, so a 127-only switch toggles on its next press.
        rig.router.learn(bypass(3, SwitchMode::Toggle));
        assert_eq!(rig.send(&[0xB0, 64, 127, 64, 127]), ["learned ch 1 CC 64", "toggle 3"]);
    }

    #[test]
    fn learn_maps_a_note_and_replaces_the_old_control_of_the_target() {
        let mut rig =
            Rig::new([(cc(None, 20), bypass(0, SwitchMode::Toggle)), (cc(None, 21), bypass(2, SwitchMode::Toggle))]);
        rig.router.learn(bypass(2, SwitchMode::Momentary));
        assert_eq!(rig.send(&[0x99, 36, 100]), ["learned ch 10 note 36"]);
        let sources: Vec<_> = rig.router.map().mappings.iter().map(|m| m.source.to_string()).collect();
        assert_eq!(sources, ["omni CC 20", "ch 10 note 36"]);
        assert_eq!(rig.send(&[0x89, 36, 0, 0xB0, 21, 127, 20, 127]), ["bypass 2 true", "toggle 0"]);
    }

    #[test]
    fn learn_upgrades_to_fourteen_bit_when_the_lsb_follows_at_once() {
        let mut rig = Rig::new([(cc(None, 39), param(5, "old"))]);
        rig.router.learn(param(0, "wah"));
        // A message on another channel between the halves does not stop the upgrade.
        assert_eq!(
            rig.send(&[0xB0, 7, 64, 0xB1, 50, 1, 0xB0, 39, 0]),
            ["learned ch 1 CC 7", "learned ch 1 CC 7/39 (14-bit)"]
        );
        assert_eq!(rig.router.map().mappings.len(), 1, "the old CC 39 mapping answered to the learned pair");
        assert_eq!(rig.positions(&[0xB0, 7, 127, 39, 127]), [16256.0 / 16383.0, 1.0]);
        // Not upgraded when the next message from the channel is not the partner.
        rig.router.learn(param(1, "tone"));
        assert_eq!(rig.send(&[0xB2, 8, 10, 9, 127]), ["learned ch 3 CC 8"]);
        assert_eq!(rig.send(&[0xB2, 40, 127, 8, 127]), ["param 1 tone 1.000"]);
    }

    #[test]
    fn cancelled_learn_leaves_the_map_alone() {
        let mut rig = Rig::new([(cc(None, 20), param(0, "gain"))]);
        rig.router.learn(param(1, "level"));
        rig.router.cancel_learn();
        assert_eq!(rig.router.learning(), None);
        assert_eq!(rig.send(&[0xB0, 20, 127, 21, 127]), ["param 0 gain 1.000"]);
        assert_eq!(rig.router.map().mappings.len(), 1);
    }

    #[test]
    fn maps_round_trip_through_ron_and_may_leave_out_defaults() {
        let map = MidiMap {
            mappings: vec![
                Mapping {
                    source: cc(Some(0), 11),
                    target: Target::Param { slot: 2, param: "gain_db".into(), min: 0.9, max: 0.1, curve: Curve::Log },
                },
                Mapping {
                    source: Source { channel: None, kind: SourceKind::Cc14(1) },
                    target: Target::InputGain { min: 0.0, max: 0.75, curve: Curve::Linear },
                },
                Mapping {
                    source: Source { channel: Some(9), kind: SourceKind::Note(36) },
                    target: bypass(0, SwitchMode::Latch),
                },
                Mapping { source: cc(None, 69), target: Target::Tuner { mode: SwitchMode::Momentary } },
                Mapping { source: cc(None, 80), target: Target::NextPreset },
                Mapping { source: cc(None, 81), target: Target::PreviousPreset },
                Mapping { source: cc(None, 7), target: Target::OutputLevel { min: 0.0, max: 1.0, curve: Curve::Log } },
            ],
            program_change_channel: Some(15),
        };
        let text = ron::ser::to_string_pretty(&map, ron::ser::PrettyConfig::new()).unwrap();
        assert_eq!(ron::from_str::<MidiMap>(&text).unwrap(), map, "{text}");
        assert_eq!(map.validate(), Ok(()));

        let short: MidiMap = ron::from_str(
            r#"(mappings: [(source: (kind: Cc(7)), target: Param(slot: 1, param: "gain_db")),
                           (source: (channel: Some(9), kind: Note(36)), target: Bypass(slot: 0))])"#,
        )
        .unwrap();
        assert_eq!(short.mappings[0].target, param(1, "gain_db"));
        assert_eq!(short.mappings[0].source.channel, None);
        assert_eq!(short.mappings[1].target, bypass(0, SwitchMode::Toggle));
    }

    #[test]
    fn sources_overlap_when_one_message_drives_both() {
        let note = |channel, n| Source { channel, kind: SourceKind::Note(n) };
        let pair = |channel, n| Source { channel, kind: SourceKind::Cc14(n) };
        assert!(cc(None, 7).overlaps(&cc(Some(3), 7)), "omni hears channel 4");
        assert!(cc(Some(3), 7).overlaps(&cc(Some(3), 7)));
        assert!(!cc(Some(3), 7).overlaps(&cc(Some(4), 7)));
        assert!(!cc(None, 7).overlaps(&cc(None, 8)));
        assert!(!cc(None, 36).overlaps(&note(None, 36)), "CC 36 and note 36 are different controls");
        assert!(pair(None, 1).overlaps(&cc(None, 1)) && pair(None, 1).overlaps(&cc(None, 33)));
        assert!(cc(Some(0), 33).overlaps(&pair(None, 1)));
        assert!(!pair(None, 1).overlaps(&cc(None, 2)) && !pair(None, 1).overlaps(&pair(None, 2)));
    }

    #[test]
    fn a_preset_map_overrides_the_global_map_for_the_controls_it_maps() {
        let global = MidiMap {
            mappings: vec![
                Mapping { source: cc(None, 80), target: bypass(0, SwitchMode::Toggle) },
                Mapping { source: cc(None, 81), target: Target::NextPreset },
                Mapping {
                    source: cc(Some(0), 7),
                    target: Target::OutputLevel { min: 0.0, max: 1.0, curve: Curve::Log },
                },
            ],
            program_change_channel: Some(0),
        };
        let preset = MidiMap {
            mappings: vec![
                Mapping { source: cc(Some(0), 80), target: bypass(3, SwitchMode::Momentary) },
                Mapping { source: Source { channel: None, kind: SourceKind::Cc14(7) }, target: param(1, "gain_db") },
            ],
            program_change_channel: None,
        };
        let merged = MidiMap::merged(&global, &preset);
        assert_eq!(
            merged.mappings.iter().map(|m| m.source.to_string()).collect::<Vec<_>>(),
            ["omni CC 81", "ch 1 CC 80", "omni CC 7/39 (14-bit)"]
        );
        assert_eq!(merged.program_change_channel, Some(0), "the preset does not set one");
        let mut rig = Rig::new([]);
        rig.router.set_map(merged);
        assert_eq!(rig.send(&[0xB0, 80, 127, 81, 127]), ["bypass 3 false", "next"], "the preset's job, not both");
        assert_eq!(MidiMap::merged(&global, &MidiMap::default()), global, "a preset without mappings changes nothing");
        let own_channel = MidiMap { program_change_channel: Some(5), ..MidiMap::default() };
        assert_eq!(MidiMap::merged(&global, &own_channel).program_change_channel, Some(5));
    }

    #[test]
    fn a_learned_mapping_replaces_what_its_control_and_its_target_had() {
        let mut map = MidiMap {
            mappings: vec![
                Mapping { source: cc(None, 20), target: bypass(0, SwitchMode::Toggle) },
                Mapping { source: cc(None, 21), target: param(1, "level") },
                Mapping { source: cc(None, 22), target: Target::NextPreset },
            ],
            program_change_channel: None,
        };
        map.insert_learned(Mapping { source: cc(Some(2), 20), target: param(1, "level") });
        assert_eq!(map.mappings.iter().map(|m| m.source.to_string()).collect::<Vec<_>>(), ["omni CC 22", "ch 3 CC 20"]);
        assert_eq!(map.mappings[1].target, param(1, "level"));
    }

    #[test]
    fn validation_names_the_mapping_and_what_is_wrong() {
        let check = |text: &str| ron::from_str::<MidiMap>(text).unwrap().validate().unwrap_err().to_string();
        let message = check(
            "(mappings: [(source: (kind: Cc(1)), target: NextPreset), (source: (kind: Cc14(40)), target: NextPreset)])",
        );
        assert!(message.starts_with("mappings[1].source.kind = Cc14(40)") && message.contains("0..=31"), "{message}");
        let message = check("(mappings: [(source: (channel: Some(16), kind: Note(1)), target: NextPreset)])");
        assert!(message.contains("channel = 16 is not a MIDI channel"), "{message}");
        let message = check(r#"(mappings: [(source: (kind: Cc(1)), target: Param(slot: 0, param: "x", min: NaN))])"#);
        assert!(message.starts_with("mappings[0].target.min = NaN"), "{message}");
        assert!(check(r#"(mappings: [(source: (kind: Cc(1)), target: Param(slot: 0, param: ""))])"#).contains("empty"));
        assert!(check("(program_change_channel: Some(20))").starts_with("program_change_channel = 20"));
    }

    #[test]
    fn the_monitor_shows_channels_from_one() {
        let texts: Vec<_> = [
            ControlChange { channel: 0, controller: 7, value: 100 },
            NoteOn { channel: 9, note: 36, velocity: 90 },
            NoteOff { channel: 15, note: 36, velocity: 0 },
            ProgramChange { channel: 1, program: 4 },
            PitchBend { channel: 0, value: -8192 },
            ChannelPressure { channel: 0, pressure: 3 },
            PolyPressure { channel: 0, note: 60, pressure: 3 },
        ]
        .iter()
        .map(ToString::to_string)
        .collect();
        assert_eq!(
            texts,
            [
                "ch 1 CC 7 = 100",
                "ch 10 note on 36 vel 90",
                "ch 16 note off 36 vel 0",
                "ch 2 program 4",
                "ch 1 pitch bend -8192",
                "ch 1 channel pressure 3",
                "ch 1 poly pressure 60 = 3",
            ]
        );
    }
}
