//! Live MIDI: every MIDI input port drives the board through the mappings.
//!
//! Three kinds of thread, none of them the audio thread:
//! - The port watcher ([`ports`]) polls the list of input ports about once a second and connects to each new one,
//!   dropping those that went away: devices are hot-pluggable. Where MIDI cannot be opened at all (no ALSA
//!   sequencer), it says so once and tries again every few seconds, so a sequencer that appears later is used.
//! - Each connected port's midir callback parses its bytes with the port's own
//!   [`MidiParser`](neuralboard_engine::midi::MidiParser) (running status belongs to a port) and forwards the
//!   messages.
//! - The MIDI service thread owns the [`MidiRouter`] and the engine's MIDI command queue. It turns each action into
//!   an engine [`Command`] through a [`BoardView`] (which pedal is at which chain position, what its parameters
//!   are), and tells the app everything else as [`MidiNotice`]s: preset changes, learned mappings, port changes,
//!   and a monitor line for every message.
//!
//! The engine reports parameter, bypass and level changes from its MIDI queue back as events, which
//! [`neuralboard_engine::Controller::poll`] applies to the board the player sees, so the service never touches the
//! controller: the app sends it a new [`BoardView`] whenever the chain changes, and a new map whenever the preset or
//! the mappings change.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, mpsc};
use std::thread::JoinHandle;

use neuralboard_engine::control::CommandSender;
use neuralboard_engine::engine::{GLOBAL_GAIN_RANGE_DB, clamp_global_db};
use neuralboard_engine::midi::{Mapping, MidiAction, MidiMap, MidiMessage, MidiRouter, Target};
use neuralboard_engine::{Command, Controller, ParamId, ParamSpec, SlotId};

pub(crate) mod ports;

pub use ports::list_ports;

/// What the service needs to know of the board to address its pedals: mappings name pedals by chain position and
/// parameters by id, the engine wants slot ids and parameter indices in plain units. An owned copy, sent to the
/// service whenever the chain changes, so the service never shares the controller with the GUI.
#[derive(Debug, Clone, Default)]
pub struct BoardView {
    /// In chain order: `slots[i]` is `chain[i]` of the preset.
    pub slots: Vec<SlotView>,
}

/// One pedal of a [`BoardView`].
#[derive(Debug, Clone)]
pub struct SlotView {
    pub id: SlotId,
    /// The pedal kind, for monitor lines.
    pub kind: String,
    /// Its display name ("Noise Gate"), for people.
    pub name: String,
    /// Indexed by [`ParamId`].
    pub params: Vec<ParamSpec>,
}

/// The tuner as the MIDI service knows it, for toggling it. The engine does not report the tuner back, so a GUI
/// that switches the tuner itself tells the service ([`MidiService::set_tuner`]), and learns of switches made by
/// MIDI from [`MidiNotice::Tuner`]. Kept apart from the [`BoardView`]: a new preset does not switch the tuner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TunerState {
    pub enabled: bool,
    /// Silence the output while tuning.
    pub mute: bool,
}

impl Default for TunerState {
    /// Off, and muting when a footswitch turns it on, as pedal tuners do.
    fn default() -> Self {
        Self { enabled: false, mute: true }
    }
}

impl BoardView {
    /// The board as the controller shows it.
    pub fn of(controller: &Controller) -> Self {
        let slots = controller
            .slots()
            .iter()
            .map(|s| SlotView {
                id: s.id,
                kind: s.kind().to_owned(),
                name: s.info.name.clone(),
                params: s.info.params.clone(),
            })
            .collect();
        Self { slots }
    }

    fn position(&self, id: SlotId) -> Option<(usize, &SlotView)> {
        self.slots.iter().enumerate().find(|(_, s)| s.id == id)
    }
}

/// Why a [`MidiAction`] did not become an engine command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotACommand {
    /// Preset changes and learned mappings are for the app ([`MidiNotice`]).
    ForTheApp,
    /// The mapping names a chain position the board does not have.
    NoPedal { slot: usize },
    /// The pedal at that position has no parameter with that id.
    NoParam { slot: usize, kind: String, param: String },
}

impl fmt::Display for NotACommand {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NotACommand::ForTheApp => f.write_str("for the app"),
            NotACommand::NoPedal { slot } => write!(f, "nothing: no pedal at chain[{slot}]"),
            NotACommand::NoParam { slot, kind, param } => {
                write!(f, "nothing: '{kind}' at chain[{slot}] has no parameter '{param}'")
            }
        }
    }
}

/// A level in dB for a position (0..=1) of a global level control: linear in dB over the engine's range,
/// [`GLOBAL_GAIN_RANGE_DB`] (-60..=24 dB, so 0 dB sits at 71 % of the travel). A mapping's `min` and `max` narrow
/// the travel, e.g. 0.5..=0.8 for -18..=7.2 dB.
pub fn level_db(normalized: f32) -> f32 {
    let (min, max) = GLOBAL_GAIN_RANGE_DB;
    let t = if normalized.is_finite() { normalized.clamp(0.0, 1.0) } else { 0.0 };
    clamp_global_db(min + (max - min) * t)
}

/// The engine command for a MIDI action on this board, with the tuner as it is. Knob positions become plain values
/// through the parameter's own curve ([`ParamSpec::from_normalized`]), so a knob moved by MIDI behaves as the same
/// knob moved by the mouse.
pub fn action_to_command(
    board: &BoardView,
    tuner: TunerState,
    action: &MidiAction<'_>,
) -> Result<Command, NotACommand> {
    let slot_at = |slot: usize| board.slots.get(slot).ok_or(NotACommand::NoPedal { slot });
    Ok(match *action {
        MidiAction::SetParam { slot, param, normalized } => {
            let view = slot_at(slot)?;
            let (index, spec) = view
                .params
                .iter()
                .enumerate()
                .find(|(_, s)| s.id == param)
                .ok_or_else(|| NotACommand::NoParam { slot, kind: view.kind.clone(), param: param.to_owned() })?;
            Command::SetParam { slot: view.id, param: ParamId(index as u16), value: spec.from_normalized(normalized) }
        }
        MidiAction::SetBypass { slot, bypassed } => Command::SetBypass { slot: slot_at(slot)?.id, bypassed },
        MidiAction::ToggleBypass { slot } => Command::ToggleBypass { slot: slot_at(slot)?.id },
        MidiAction::SetInputGain { normalized } => Command::SetInputGain { db: level_db(normalized) },
        MidiAction::SetOutputLevel { normalized } => Command::SetOutputLevel { db: level_db(normalized) },
        MidiAction::SetTuner(enabled) => Command::SetTuner { enabled, mute: tuner.mute },
        MidiAction::ToggleTuner => Command::SetTuner { enabled: !tuner.enabled, mute: tuner.mute },
        MidiAction::NextPreset
        | MidiAction::PreviousPreset
        | MidiAction::SelectPreset { .. }
        | MidiAction::Learned { .. } => return Err(NotACommand::ForTheApp),
    })
}

/// What the MIDI service tells the app.
#[derive(Debug, Clone, PartialEq)]
pub enum MidiNotice {
    PortConnected {
        port: String,
    },
    PortDisconnected {
        port: String,
    },
    /// A port is listed but could not be opened (another program holds it exclusively, say). Tried again on every
    /// poll; reported once until it goes away.
    PortFailed {
        port: String,
        reason: String,
    },
    /// MIDI cannot be used at all (no ALSA sequencer, say). Reported once; the service keeps trying and reports
    /// [`MidiNotice::Available`] when it can.
    Unavailable {
        reason: String,
    },
    /// MIDI works again after [`MidiNotice::Unavailable`].
    Available,
    /// For the MIDI monitor: every message from every port, and what it did (empty: nothing is mapped to it).
    /// Comes after the other notices the message caused.
    Message {
        port: Arc<str>,
        message: MidiMessage,
        effects: Vec<String>,
    },
    NextPreset,
    PreviousPreset,
    /// A Program Change: `bank` from Bank Select (0 when none was sent), `program` 0..=127.
    SelectPreset {
        bank: u16,
        program: u8,
    },
    /// MIDI learn mapped a control; the service already plays it. Keep it with
    /// [`MidiMap::insert_learned`] in the settings or the preset, whichever the player learned it for.
    Learned {
        mapping: Mapping,
    },
    /// The tuner was switched by MIDI (the engine does not report this itself).
    Tuner {
        enabled: bool,
    },
}

impl fmt::Display for MidiNotice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MidiNotice::PortConnected { port } => write!(f, "MIDI port connected: {port}"),
            MidiNotice::PortDisconnected { port } => write!(f, "MIDI port disconnected: {port}"),
            MidiNotice::PortFailed { port, reason } => write!(f, "MIDI port {port} cannot be opened: {reason}"),
            MidiNotice::Unavailable { reason } => write!(f, "MIDI unavailable: {reason}"),
            MidiNotice::Available => f.write_str("MIDI available"),
            MidiNotice::Message { port, message, effects } => {
                write!(f, "[{port}] {message}")?;
                for effect in effects {
                    write!(f, " → {effect}")?;
                }
                Ok(())
            }
            MidiNotice::NextPreset => f.write_str("MIDI: next preset"),
            MidiNotice::PreviousPreset => f.write_str("MIDI: previous preset"),
            MidiNotice::SelectPreset { bank, program } => write!(f, "MIDI: preset bank {bank} program {program}"),
            MidiNotice::Learned { mapping } => {
                write!(
                    f,
                    "MIDI learn: {} → {}",
                    mapping.source,
                    describe_target(&mapping.target, &BoardView::default())
                )
            }
            MidiNotice::Tuner { enabled } => write!(f, "MIDI: tuner {}", if *enabled { "on" } else { "off" }),
        }
    }
}

/// Counters the service's threads update; read them from any thread.
#[derive(Debug, Default)]
pub struct MidiStats {
    /// Messages the service has handled.
    pub messages: AtomicU64,
    /// Bytes or messages dropped by the ports' parsers as malformed (see
    /// [`MidiParser::malformed`](neuralboard_engine::midi::MidiParser::malformed)).
    pub malformed: AtomicU64,
}

/// Where notices go: called on the service thread, one notice at a time. A GUI forwards them into its own channel
/// and wakes itself up; it must not block for long, as MIDI waits meanwhile.
pub type NoticeSink = Box<dyn FnMut(MidiNotice) + Send>;

/// What the service starts with.
#[derive(Default)]
pub struct MidiSetup {
    /// The mappings in force: the settings' merged with the preset's ([`MidiMap::merged`]).
    pub map: MidiMap,
    pub board: BoardView,
    /// The engine's MIDI queue ([`Controller::take_midi_sender`]). Without one (`neuralboard midi monitor`), the
    /// monitor lines say what the mappings ask for and nothing is played.
    pub engine: Option<CommandSender>,
}

/// Everything that reaches the service thread, in arrival order.
enum Input {
    Message { port: Arc<str>, message: MidiMessage },
    Notice(MidiNotice),
    Board(BoardView),
    Tuner(TunerState),
    Map(MidiMap),
    Engine(Option<CommandSender>),
    Learn(Target),
    CancelLearn,
    Shutdown,
}

/// The running MIDI service. Dropping it stops the service and the port watcher and closes every port.
pub struct MidiService {
    inputs: mpsc::Sender<Input>,
    thread: Option<JoinHandle<()>>,
    stats: Arc<MidiStats>,
}

impl MidiService {
    /// Starts the service and the port watcher on the system's MIDI (ALSA sequencer on Linux). Never fails: where
    /// MIDI cannot be opened, `sink` gets [`MidiNotice::Unavailable`] and the rest of the app carries on.
    pub fn start(setup: MidiSetup, sink: NoticeSink) -> Self {
        Self::spawn(setup, sink, Some((Box::new(ports::MidirBackend::default()), ports::Timing::LIVE)))
    }

    /// The service with ports that `backend` provides instead of midir's; `None` for no ports at all (tests feed
    /// bytes through [`MidiService::port_feed`]).
    fn spawn(
        setup: MidiSetup,
        sink: NoticeSink,
        backend: Option<(Box<dyn ports::PortBackend>, ports::Timing)>,
    ) -> Self {
        let (inputs, receiver) = mpsc::channel();
        let stats = Arc::new(MidiStats::default());
        let watcher = backend.map(|(backend, timing)| ports::Watcher::spawn(backend, timing, &inputs, &stats));
        let service = Service {
            router: MidiRouter::new(setup.map),
            board: setup.board,
            tuner: TunerState::default(),
            engine: setup.engine,
            sink,
            stats: Arc::clone(&stats),
        };
        let thread = std::thread::Builder::new()
            .name("midi service".into())
            .spawn(move || service.run(&receiver, watcher))
            .expect("the MIDI service thread starts");
        Self { inputs, thread: Some(thread), stats }
    }

    /// The service without ports: bytes come only through [`MidiService::port_feed`] (the GUI's tests).
    #[cfg(test)]
    pub(crate) fn without_ports(setup: MidiSetup, sink: NoticeSink) -> Self {
        Self::spawn(setup, sink, None)
    }

    /// The board changed (a preset loaded; a pedal added, moved, removed or replaced).
    pub fn set_board(&self, board: BoardView) {
        self.send(Input::Board(board));
    }

    /// The tuner was switched by other means than MIDI (the GUI), or its mute setting changed.
    pub fn set_tuner(&self, tuner: TunerState) {
        self.send(Input::Tuner(tuner));
    }

    /// The mappings changed (another preset, edited settings). A learn in progress stays armed.
    pub fn set_map(&self, map: MidiMap) {
        self.send(Input::Map(map));
    }

    /// A new engine (the audio device was reopened): its MIDI queue, and the board it plays.
    pub fn set_engine(&self, engine: Option<CommandSender>, board: BoardView) {
        self.send(Input::Engine(engine));
        self.send(Input::Board(board));
    }

    /// Arms MIDI learn: the next CC or note from any port is mapped to `target` ([`MidiNotice::Learned`]).
    pub fn learn(&self, target: Target) {
        self.send(Input::Learn(target));
    }

    pub fn cancel_learn(&self) {
        self.send(Input::CancelLearn);
    }

    pub fn stats(&self) -> &MidiStats {
        &self.stats
    }

    /// A byte stream into the service as if from a port called `port`, with its own parser: what a midir callback
    /// holds.
    #[cfg(test)]
    pub(crate) fn port_feed(&self, port: &str) -> ports::PortFeed {
        ports::PortFeed::new(port, self.inputs.clone(), Arc::clone(&self.stats))
    }

    fn send(&self, input: Input) {
        // Fails only once the service thread has ended, and then there is nothing left to tell.
        let _ = self.inputs.send(input);
    }
}

impl Drop for MidiService {
    fn drop(&mut self) {
        self.send(Input::Shutdown);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The service thread's state.
struct Service {
    router: MidiRouter,
    board: BoardView,
    tuner: TunerState,
    engine: Option<CommandSender>,
    sink: NoticeSink,
    stats: Arc<MidiStats>,
}

impl Service {
    fn run(mut self, inputs: &mpsc::Receiver<Input>, watcher: Option<ports::Watcher>) {
        // Every port feed holds a sender, so the channel stays open while ports are connected: Shutdown ends it.
        while let Ok(input) = inputs.recv() {
            match input {
                Input::Message { port, message } => self.handle(port, message),
                Input::Notice(notice) => (self.sink)(notice),
                Input::Board(board) => self.board = board,
                Input::Tuner(tuner) => self.tuner = tuner,
                Input::Map(map) => self.router.set_map(map),
                Input::Engine(engine) => self.engine = engine,
                Input::Learn(target) => self.router.learn(target),
                Input::CancelLearn => self.router.cancel_learn(),
                Input::Shutdown => break,
            }
        }
        drop(watcher);
    }

    /// Routes one message, sends the commands it makes, and reports it with what it did.
    fn handle(&mut self, port: Arc<str>, message: MidiMessage) {
        self.stats.messages.fetch_add(1, Ordering::Relaxed);
        let Service { router, board, tuner, engine, .. } = self;
        let mut effects = Vec::new();
        let mut notices = Vec::new();
        router.handle(&message, |action| match action_to_command(board, *tuner, &action) {
            Ok(command) => {
                let mut effect = describe_command(board, &command);
                if let Command::SetTuner { enabled, .. } = command {
                    tuner.enabled = enabled;
                    notices.push(MidiNotice::Tuner { enabled });
                }
                match engine {
                    Some(engine) => {
                        if let Err(e) = engine.send(command) {
                            effect = format!("{effect} (lost: {e})");
                        }
                    }
                    None => effect = describe_action(&action),
                }
                effects.push(effect);
            }
            Err(NotACommand::ForTheApp) => {
                effects.push(describe_action(&action));
                notices.push(match action {
                    MidiAction::NextPreset => MidiNotice::NextPreset,
                    MidiAction::PreviousPreset => MidiNotice::PreviousPreset,
                    MidiAction::SelectPreset { bank, program } => MidiNotice::SelectPreset { bank, program },
                    MidiAction::Learned { source, target } => {
                        MidiNotice::Learned { mapping: Mapping { source, target: target.clone() } }
                    }
                    // action_to_command turns every other action into a command.
                    _ => return,
                });
            }
            Err(_) if engine.is_none() => effects.push(describe_action(&action)),
            Err(nothing) => effects.push(nothing.to_string()),
        });
        for notice in notices {
            (self.sink)(notice);
        }
        (self.sink)(MidiNotice::Message { port, message, effects });
    }
}

/// What a command does, for the monitor: `chain[1] gain: gain_db = -12.0 dB`.
fn describe_command(board: &BoardView, command: &Command) -> String {
    let pedal = |id: SlotId| match board.position(id) {
        Some((index, slot)) => format!("chain[{index}] {}", slot.kind),
        None => format!("{id:?}"),
    };
    match *command {
        Command::SetParam { slot, param, value } => {
            let spec = board.position(slot).and_then(|(_, s)| s.params.get(usize::from(param.0)));
            match spec {
                Some(spec) => format!("{}: {} = {}", pedal(slot), spec.id, spec.format(value)),
                None => format!("{}: parameter {} = {value}", pedal(slot), param.0),
            }
        }
        Command::SetBypass { slot, bypassed } => {
            format!("{}: {}", pedal(slot), if bypassed { "bypassed" } else { "engaged" })
        }
        Command::ToggleBypass { slot } => format!("{}: bypass toggled", pedal(slot)),
        Command::SetInputGain { db } => format!("input gain = {db:.1} dB"),
        Command::SetOutputLevel { db } => format!("output level = {db:.1} dB"),
        Command::SetTuner { enabled, .. } => format!("tuner {}", if enabled { "on" } else { "off" }),
        _ => "another command".to_owned(),
    }
}

/// What an action asks for, without a board to resolve it against.
fn describe_action(action: &MidiAction<'_>) -> String {
    match *action {
        MidiAction::SetParam { slot, param, normalized } => format!("chain[{slot}] {param} at {normalized:.3}"),
        MidiAction::SetBypass { slot, bypassed } => {
            format!("chain[{slot}] {}", if bypassed { "bypassed" } else { "engaged" })
        }
        MidiAction::ToggleBypass { slot } => format!("chain[{slot}] bypass toggled"),
        MidiAction::SetInputGain { normalized } => format!("input gain = {:.1} dB", level_db(normalized)),
        MidiAction::SetOutputLevel { normalized } => format!("output level = {:.1} dB", level_db(normalized)),
        MidiAction::SetTuner(enabled) => format!("tuner {}", if enabled { "on" } else { "off" }),
        MidiAction::ToggleTuner => "tuner toggled".to_owned(),
        MidiAction::NextPreset => "next preset".to_owned(),
        MidiAction::PreviousPreset => "previous preset".to_owned(),
        MidiAction::SelectPreset { bank, program } => format!("preset bank {bank} program {program}"),
        MidiAction::Learned { source, target } => {
            format!("learned {source} for {}", describe_target(target, &BoardView::default()))
        }
    }
}

/// A mapping's target in a few words: with the pedal and parameter names where `board` has that pedal ("Volume ·
/// Gain", "Noise Gate · footswitch"), else by position and id (`chain[1] gain_db`, `chain[0] bypass`).
pub fn describe_target(target: &Target, board: &BoardView) -> String {
    match target {
        Target::Param { slot, param, .. } => match board.slots.get(*slot) {
            Some(pedal) => {
                let name = pedal.params.iter().find(|p| p.id == param).map_or(param.as_str(), |p| p.name);
                format!("{} · {name}", pedal.name)
            }
            None => format!("chain[{slot}] {param}"),
        },
        Target::Bypass { slot, .. } => match board.slots.get(*slot) {
            Some(pedal) => format!("{} · footswitch", pedal.name),
            None => format!("chain[{slot}] bypass"),
        },
        Target::InputGain { .. } => "input gain".to_owned(),
        Target::OutputLevel { .. } => "output level".to_owned(),
        Target::Tuner { .. } => "tuner".to_owned(),
        Target::NextPreset => "next preset".to_owned(),
        Target::PreviousPreset => "previous preset".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use neuralboard_engine::midi::{Curve, Source, SourceKind, SwitchMode};
    use neuralboard_engine::preset::PresetSlot;
    use neuralboard_engine::{Engine, EngineConfig, Preset};

    use super::*;

    const GAIN_DB: ParamId = ParamId(0);
    /// How long a test waits for the service before calling it stuck.
    const PATIENCE: Duration = Duration::from_secs(10);

    fn cc(channel: Option<u8>, controller: u8) -> Source {
        Source { channel, kind: SourceKind::Cc(controller) }
    }

    fn knob(slot: usize, param: &str) -> Target {
        Target::Param { slot, param: param.into(), min: 0.0, max: 1.0, curve: Curve::Linear }
    }

    fn map(mappings: impl IntoIterator<Item = (Source, Target)>) -> MidiMap {
        let mappings = mappings.into_iter().map(|(source, target)| Mapping { source, target }).collect();
        MidiMap { mappings, program_change_channel: None }
    }

    /// Two gain pedals: chain[0] at 0 dB and engaged, chain[1] at -6 dB and bypassed.
    fn two_gains() -> Preset {
        let gain = |db: f32, bypass: bool| PresetSlot {
            bypass,
            params: [("gain_db".to_owned(), db)].into_iter().collect(),
            ..PresetSlot::new("gain")
        };
        Preset { chain: vec![gain(0.0, false), gain(-6.0, true)], ..Preset::empty("two gains") }
    }

    /// A real engine and controller with the MIDI service between a test port and the engine's MIDI queue.
    struct Rig {
        engine: Engine,
        controller: Controller,
        service: MidiService,
        notices: mpsc::Receiver<MidiNotice>,
        port: ports::PortFeed,
    }

    impl Rig {
        fn new(map: MidiMap) -> Self {
            let (mut engine, mut controller) = Engine::new(EngineConfig { sample_rate: 48_000.0, max_block: 256 });
            drop(engine.install_chain(controller.prepare_preset(&two_gains(), None)));
            let (sender, notices) = mpsc::channel();
            let setup = MidiSetup { map, board: BoardView::of(&controller), engine: controller.take_midi_sender() };
            let service = MidiService::spawn(
                setup,
                Box::new(move |notice| {
                    let _ = sender.send(notice);
                }),
                None,
            );
            let port = service.port_feed("test port");
            Rig { engine, controller, service, notices, port }
        }

        /// Sends bytes from the test port and returns every notice up to the monitor line of the `messages`-th
        /// message they hold (the service sends it last).
        fn send(&mut self, bytes: &[u8], messages: usize) -> Vec<MidiNotice> {
            self.port.feed(bytes);
            self.receive(messages)
        }

        fn receive(&mut self, messages: usize) -> Vec<MidiNotice> {
            let mut notices = Vec::new();
            let mut seen = 0;
            while seen < messages {
                let notice = self.notices.recv_timeout(PATIENCE).expect("the MIDI service answers");
                seen += usize::from(matches!(notice, MidiNotice::Message { .. }));
                notices.push(notice);
            }
            notices
        }

        /// Runs one audio block, so the engine applies the MIDI commands and echoes them, then updates the board.
        fn play(&mut self) {
            let (input, mut left, mut right) = (vec![0.0f32; 256], vec![0.0f32; 256], vec![0.0f32; 256]);
            self.engine.process(&input, &mut left, &mut right);
            self.controller.poll();
        }

        fn gain_db(&self, slot: usize) -> f32 {
            self.controller.slots()[slot].value(GAIN_DB).unwrap()
        }

        fn bypassed(&self, slot: usize) -> bool {
            self.controller.slots()[slot].bypassed
        }
    }

    /// The effects listed on the monitor lines among `notices`.
    fn effects(notices: &[MidiNotice]) -> Vec<String> {
        notices
            .iter()
            .filter_map(|n| match n {
                MidiNotice::Message { effects, .. } => Some(effects.clone()),
                _ => None,
            })
            .flatten()
            .collect()
    }

    fn board() -> BoardView {
        let (_, mut controller) = Engine::new(EngineConfig::default());
        let _ = controller.prepare_preset(&two_gains(), None);
        BoardView::of(&controller)
    }

    #[test]
    fn knob_positions_become_plain_values_on_the_pedal_at_that_position() {
        let board = board();
        let action = MidiAction::SetParam { slot: 1, param: "gain_db", normalized: 0.75 };
        match action_to_command(&board, TunerState::default(), &action) {
            // gain_db spans -40..=24 dB, linearly.
            Ok(Command::SetParam { slot, param, value }) => {
                assert_eq!((slot, param, value), (board.slots[1].id, GAIN_DB, 8.0));
            }
            _ => panic!("not a SetParam"),
        }
        let to = |action| action_to_command(&board, TunerState::default(), &action).err();
        assert_eq!(
            to(MidiAction::SetParam { slot: 2, param: "gain_db", normalized: 0.5 }),
            Some(NotACommand::NoPedal { slot: 2 })
        );
        assert_eq!(
            to(MidiAction::SetParam { slot: 0, param: "drive", normalized: 0.5 }),
            Some(NotACommand::NoParam { slot: 0, kind: "gain".into(), param: "drive".into() })
        );
        assert_eq!(to(MidiAction::ToggleBypass { slot: 9 }), Some(NotACommand::NoPedal { slot: 9 }));
        for action in
            [MidiAction::NextPreset, MidiAction::PreviousPreset, MidiAction::SelectPreset { bank: 0, program: 1 }]
        {
            assert_eq!(to(action), Some(NotACommand::ForTheApp));
        }
    }

    #[test]
    fn switches_levels_and_the_tuner_become_their_commands() {
        let board = board();
        let id = board.slots[0].id;
        let (off, on_unmuted) = (TunerState::default(), TunerState { enabled: true, mute: false });
        let command = |tuner, action| action_to_command(&board, tuner, &action).ok().unwrap();
        let bypass = command(off, MidiAction::SetBypass { slot: 0, bypassed: true });
        assert!(matches!(bypass, Command::SetBypass { slot, bypassed: true } if slot == id));
        let toggle = command(off, MidiAction::ToggleBypass { slot: 0 });
        assert!(matches!(toggle, Command::ToggleBypass { slot } if slot == id));
        // Levels run linearly in dB over the engine's range, -60..=24 dB.
        let level = |action| match command(off, action) {
            Command::SetInputGain { db } => ("input", db),
            Command::SetOutputLevel { db } => ("output", db),
            _ => panic!("not a level"),
        };
        assert_eq!(level(MidiAction::SetInputGain { normalized: 0.0 }), ("input", -60.0));
        assert_eq!(level(MidiAction::SetOutputLevel { normalized: 1.0 }), ("output", 24.0));
        assert_eq!(level(MidiAction::SetOutputLevel { normalized: 0.5 }), ("output", -18.0));
        assert_eq!(level(MidiAction::SetOutputLevel { normalized: f32::NAN }), ("output", -60.0));
        // A footswitch mutes while tuning by default; toggling follows the tuner's state.
        assert!(matches!(command(off, MidiAction::ToggleTuner), Command::SetTuner { enabled: true, mute: true }));
        assert!(matches!(
            command(on_unmuted, MidiAction::ToggleTuner),
            Command::SetTuner { enabled: false, mute: false }
        ));
        assert!(matches!(
            command(on_unmuted, MidiAction::SetTuner(true)),
            Command::SetTuner { enabled: true, mute: false }
        ));
    }

    #[test]
    fn a_cc_turns_a_knob_and_the_board_shows_the_new_value() {
        let mut rig = Rig::new(map([(cc(None, 7), knob(0, "gain_db"))]));
        let notices = rig.send(&[0xB0, 7, 127], 1);
        assert_eq!(effects(&notices), ["chain[0] gain: gain_db = 24.0 dB"]);
        assert_eq!(rig.gain_db(0), 0.0, "not before the engine has played it");
        rig.play();
        assert_eq!(rig.gain_db(0), 24.0);
        // Running status: the next CC needs no status byte.
        rig.send(&[7, 0], 1);
        rig.play();
        assert_eq!(rig.gain_db(0), -40.0);
        assert!(rig.controller.is_modified(), "a knob moved by MIDI is an unsaved change like any other");
    }

    #[test]
    fn a_note_toggles_bypass_on_each_press() {
        let mut rig = Rig::new(map([(
            Source { channel: Some(9), kind: SourceKind::Note(36) },
            Target::Bypass { slot: 1, mode: SwitchMode::Toggle },
        )]));
        assert!(rig.bypassed(1));
        rig.send(&[0x99, 36, 100, 0x89, 36, 0], 2);
        rig.play();
        assert!(!rig.bypassed(1), "pressed once: engaged");
        rig.send(&[0x99, 36, 90, 36, 0], 2);
        rig.play();
        assert!(rig.bypassed(1), "pressed again: bypassed");
        assert!(!rig.bypassed(0), "the other pedal is left alone");
    }

    #[test]
    fn a_momentary_switch_engages_the_pedal_while_held() {
        let mut rig = Rig::new(map([(cc(None, 80), Target::Bypass { slot: 1, mode: SwitchMode::Momentary })]));
        rig.send(&[0xB0, 80, 127], 1);
        rig.play();
        assert!(!rig.bypassed(1), "held");
        rig.send(&[0xB0, 80, 0], 1);
        rig.play();
        assert!(rig.bypassed(1), "released");
    }

    #[test]
    fn the_global_levels_follow_their_controls() {
        let mut rig = Rig::new(map([
            (cc(None, 1), Target::InputGain { min: 0.0, max: 1.0, curve: Curve::Linear }),
            (cc(None, 2), Target::OutputLevel { min: 0.0, max: 1.0, curve: Curve::Linear }),
        ]));
        rig.send(&[0xB0, 1, 127, 2, 0], 2);
        rig.play();
        assert_eq!((rig.controller.input_gain_db(), rig.controller.output_level_db()), (24.0, -60.0));
    }

    #[test]
    fn a_program_change_asks_the_app_for_a_preset_and_plays_nothing() {
        let mut rig = Rig::new(MidiMap::default());
        let notices = rig.send(&[0xB0, 0, 1, 0xC0, 5], 2);
        assert!(notices.contains(&MidiNotice::SelectPreset { bank: 128, program: 5 }), "{notices:?}");
        assert_eq!(effects(&notices), ["preset bank 128 program 5"]);
        rig.play();
        assert!(!rig.controller.is_modified(), "the board itself did not change");
    }

    #[test]
    fn next_and_previous_footswitches_are_passed_to_the_app() {
        let mut rig = Rig::new(map([(cc(None, 90), Target::NextPreset), (cc(None, 91), Target::PreviousPreset)]));
        let notices = rig.send(&[0xB0, 90, 127, 91, 127], 2);
        let steps: Vec<_> =
            notices.into_iter().filter(|n| matches!(n, MidiNotice::NextPreset | MidiNotice::PreviousPreset)).collect();
        assert_eq!(steps, [MidiNotice::NextPreset, MidiNotice::PreviousPreset]);
    }

    #[test]
    fn learn_maps_the_next_control_which_then_drives_the_parameter() {
        let mut rig = Rig::new(map([(cc(None, 7), knob(0, "gain_db"))]));
        rig.service.learn(knob(1, "gain_db"));
        let notices = rig.send(&[0xB2, 21, 64], 1);
        let learned = Mapping { source: cc(Some(2), 21), target: knob(1, "gain_db") };
        assert!(notices.contains(&MidiNotice::Learned { mapping: learned }), "{notices:?}");
        rig.play();
        assert_eq!(rig.gain_db(1), -6.0, "the learning message itself moves nothing");
        rig.send(&[0xB2, 21, 0], 1);
        rig.play();
        assert_eq!(rig.gain_db(1), -40.0);
        rig.send(&[0xB0, 7, 127], 1);
        rig.play();
        assert_eq!(rig.gain_db(0), 24.0, "the other mappings still work");
    }

    #[test]
    fn a_cancelled_learn_maps_nothing() {
        let mut rig = Rig::new(MidiMap::default());
        rig.service.learn(knob(1, "gain_db"));
        rig.service.cancel_learn();
        let notices = rig.send(&[0xB0, 21, 64], 1);
        assert!(!notices.iter().any(|n| matches!(n, MidiNotice::Learned { .. })), "{notices:?}");
    }

    #[test]
    fn malformed_bytes_are_ignored_and_counted() {
        let mut rig = Rig::new(map([(cc(None, 7), knob(0, "gain_db"))]));
        // Two data bytes with no status, a stray end of SysEx, then a good CC.
        rig.send(&[0x05, 0x06, 0xF7, 0xB0, 7, 127], 1);
        assert_eq!(rig.service.stats().malformed.load(Ordering::Relaxed), 3);
        assert_eq!(rig.service.stats().messages.load(Ordering::Relaxed), 1);
        rig.play();
        assert_eq!(rig.gain_db(0), 24.0);
    }

    #[test]
    fn each_port_keeps_its_own_running_status() {
        let mut rig = Rig::new(map([(cc(None, 7), knob(0, "gain_db"))]));
        let mut keyboard = rig.service.port_feed("keyboard");
        rig.send(&[0xB0, 7, 0], 1);
        keyboard.feed(&[0x90, 60, 100]);
        rig.receive(1);
        // Running status from the test port's own last status (CC), not the keyboard's (note on).
        let notices = rig.send(&[7, 127], 1);
        assert!(
            matches!(&notices[..], [MidiNotice::Message { port, message: MidiMessage::ControlChange { .. }, .. }] if &**port == "test port"),
            "{notices:?}"
        );
        rig.play();
        assert_eq!(rig.gain_db(0), 24.0);
    }

    #[test]
    fn a_mapping_to_a_pedal_the_board_lacks_does_nothing_and_says_why() {
        let mut rig = Rig::new(map([(cc(None, 7), knob(5, "gain_db")), (cc(None, 7), knob(0, "drive"))]));
        let notices = rig.send(&[0xB0, 7, 127], 1);
        assert_eq!(
            effects(&notices),
            ["nothing: no pedal at chain[5]", "nothing: 'gain' at chain[0] has no parameter 'drive'"]
        );
    }

    #[test]
    fn after_the_chain_changes_the_mappings_address_the_new_board() {
        let mut rig = Rig::new(map([(cc(None, 7), knob(0, "gain_db"))]));
        let second = rig.controller.slots()[1].id;
        rig.controller.move_pedal(second, 0).unwrap();
        rig.service.set_board(BoardView::of(&rig.controller));
        rig.send(&[0xB0, 7, 127], 1);
        rig.play();
        assert_eq!(rig.controller.slot(second).unwrap().value(GAIN_DB), Some(24.0), "the pedal now at chain[0]");
        assert_eq!(rig.gain_db(1), 0.0, "the pedal that moved away");
    }

    #[test]
    fn a_new_map_replaces_the_mappings() {
        let mut rig = Rig::new(map([(cc(None, 7), knob(0, "gain_db"))]));
        rig.service.set_map(map([(cc(None, 8), knob(0, "gain_db"))]));
        assert!(effects(&rig.send(&[0xB0, 7, 127], 1)).is_empty());
        assert_eq!(effects(&rig.send(&[0xB0, 8, 127], 1)).len(), 1);
    }

    #[test]
    fn a_tuner_footswitch_switches_the_tuner_and_tells_the_app() {
        let mut rig = Rig::new(map([(cc(None, 69), Target::Tuner { mode: SwitchMode::Toggle })]));
        let tuner = |notices: Vec<MidiNotice>| {
            notices.into_iter().find_map(|n| match n {
                MidiNotice::Tuner { enabled } => Some(enabled),
                _ => None,
            })
        };
        assert_eq!(tuner(rig.send(&[0xB0, 69, 127], 1)), Some(true));
        // Loading another preset does not switch the tuner, so the next press turns it off.
        rig.service.set_board(BoardView::of(&rig.controller));
        assert_eq!(tuner(rig.send(&[0xB0, 69, 0, 69, 127], 2)), Some(false));
        // The GUI turned it on itself: the next press turns it off.
        rig.service.set_tuner(TunerState { enabled: true, mute: false });
        assert_eq!(tuner(rig.send(&[0xB0, 69, 0, 69, 127], 2)), Some(false));
    }

    #[test]
    fn without_an_engine_the_monitor_says_what_the_mappings_ask_for() {
        let (sender, notices) = mpsc::channel();
        let setup = MidiSetup { map: map([(cc(None, 7), knob(2, "mix"))]), ..MidiSetup::default() };
        let service = MidiService::spawn(
            setup,
            Box::new(move |notice| {
                let _ = sender.send(notice);
            }),
            None,
        );
        service.port_feed("pedalboard").feed(&[0xB0, 7, 127]);
        let line = notices.recv_timeout(PATIENCE).unwrap().to_string();
        assert_eq!(line, "[pedalboard] ch 1 CC 7 = 127 → chain[2] mix at 1.000");
    }

    /// Where this machine has no ALSA sequencer (containers, CI), the service must say so and carry on; where it has
    /// one, whatever it reports, starting and stopping must not hang or panic.
    #[test]
    fn without_a_sequencer_the_service_reports_midi_unavailable() {
        let (sender, notices) = mpsc::channel();
        let started = Instant::now();
        let service = MidiService::start(
            MidiSetup::default(),
            Box::new(move |notice| {
                let _ = sender.send(notice);
            }),
        );
        let first = notices.recv_timeout(Duration::from_secs(3));
        if cfg!(target_os = "linux") && !std::path::Path::new("/dev/snd/seq").exists() {
            match first {
                Ok(MidiNotice::Unavailable { reason }) => assert!(reason.contains("/dev/snd/seq"), "{reason}"),
                other => panic!("expected MIDI unavailable, got {other:?}"),
            }
            assert!(notices.recv_timeout(Duration::from_millis(200)).is_err(), "said once");
        }
        drop(service);
        assert!(started.elapsed() < Duration::from_secs(5), "stopping waits for no retry");
    }
}
