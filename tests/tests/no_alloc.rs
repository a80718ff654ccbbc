//! The audio thread never touches the allocator.
//!
//! An allocation or a free inside the audio callback can take the allocator's lock or page in memory, and a
//! single slow one is an audible dropout. This test wraps the system allocator in one that counts every
//! allocation, reallocation and deallocation made on the current thread while [`Engine::process`] runs, then
//! plays several seconds of guitar through the engine while sending it every kind of [`Command`] (from the GUI
//! queue, the MIDI queue and the loader queue, including commands the engine must reject) and checks that the
//! count stays at zero. It also checks the other half of the contract: what the engine lets go of is freed by
//! [`Controller::poll`] on the control thread, and nothing is leaked or dropped on the way.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::collections::{BTreeSet, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};

use neuralboard_engine::chain::{MAX_SLOTS, Slot};
use neuralboard_engine::control::CommandSender;
use neuralboard_engine::controller::ControlError;
use neuralboard_engine::effects::{self, KINDS};
use neuralboard_engine::preset::PresetSlot;
use neuralboard_engine::{Command, CommandKind, Controller, Engine, EngineConfig, Event, ParamId, Preset, SlotId};
use neuralboard_tests::{SAMPLE_RATE, assert_playable, frames, guitar_like, peak, preset, sine};
use strum::IntoEnumIterator;

/// Which counters the current thread's allocator calls go to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Watch {
    /// Not counted.
    Off,
    /// Inside `Engine::process`: every call is a failure.
    Audio,
    /// Inside `Controller::poll`: frees here are the engine's garbage being dropped where it should be.
    Control,
}

thread_local! {
    // `const` initialiser and a `Copy` type without `Drop`: reading it never allocates or registers a destructor,
    // so the allocator itself can consult it.
    static WATCH: Cell<Watch> = const { Cell::new(Watch::Off) };
}

static AUDIO_ALLOCS: AtomicUsize = AtomicUsize::new(0);
static AUDIO_REALLOCS: AtomicUsize = AtomicUsize::new(0);
static AUDIO_DEALLOCS: AtomicUsize = AtomicUsize::new(0);
/// Size of the first allocation made on the audio thread, to help find it.
static FIRST_AUDIO_ALLOC_SIZE: AtomicUsize = AtomicUsize::new(0);
static CONTROL_DEALLOCS: AtomicUsize = AtomicUsize::new(0);

/// The system allocator, counting what happens on watched threads.
struct CountingAllocator;

impl CountingAllocator {
    fn watched() -> Watch {
        WATCH.try_with(Cell::get).unwrap_or(Watch::Off)
    }

    fn count_alloc(size: usize) {
        if Self::watched() == Watch::Audio && AUDIO_ALLOCS.fetch_add(1, Ordering::Relaxed) == 0 {
            FIRST_AUDIO_ALLOC_SIZE.store(size, Ordering::Relaxed);
        }
    }
}

// SAFETY: every call is forwarded unchanged to `System`; the counting only touches atomics and a const
// thread-local, neither of which allocates.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        Self::count_alloc(layout.size());
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        Self::count_alloc(layout.size());
        // SAFETY: same contract as ours.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if Self::watched() == Watch::Audio {
            AUDIO_REALLOCS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: same contract as ours.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        match Self::watched() {
            Watch::Audio => {
                AUDIO_DEALLOCS.fetch_add(1, Ordering::Relaxed);
            }
            Watch::Control => {
                CONTROL_DEALLOCS.fetch_add(1, Ordering::Relaxed);
            }
            Watch::Off => {}
        }
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

/// Runs `f` with this thread's allocator calls counted as `watch`.
fn watching<R>(watch: Watch, f: impl FnOnce() -> R) -> R {
    WATCH.with(|w| w.set(watch));
    let result = f();
    WATCH.with(|w| w.set(Watch::Off));
    result
}

const MAX_BLOCK: usize = 256;
/// Callback sizes, cycled: single samples, odd sizes, and blocks longer than `MAX_BLOCK` (split by the engine).
const BLOCK_SIZES: [usize; 7] = [1, 17, 64, 256, 1000, 128, 333];
const LONGEST_BLOCK: usize = 1000;
/// Total length of the prepared input signals; the session must stay within it.
const SIGNAL_SECONDS: f32 = 12.0;
/// The tuner's test note: A2, the open A string.
const TUNER_HZ: f32 = 110.0;
const TUNER_NOTE: u8 = 45;

/// What the guitar plays into the engine at the moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Playing {
    Guitar,
    /// A steady sine, for the tuner.
    Sine,
}

/// The engine and its controller driven like the app drives them: a callback loop with the control thread's
/// work (sending commands, polling) between callbacks, and a record of every kind of command sent.
struct Session {
    engine: Engine,
    controller: Controller,
    midi: CommandSender,
    loader: CommandSender,
    sent: HashSet<CommandKind>,
    events: Vec<Event>,
    guitar: Vec<f32>,
    sine: Vec<f32>,
    playing: Playing,
    position: usize,
    block: usize,
    left: Vec<f32>,
    right: Vec<f32>,
    process_calls: usize,
    poll_calls: usize,
    /// Peak of the most recent output block.
    last_peak: f32,
    saw_tuner_note: bool,
}

impl Session {
    fn new() -> Self {
        let (engine, mut controller) = Engine::new(EngineConfig { sample_rate: SAMPLE_RATE, max_block: MAX_BLOCK });
        let midi = controller.take_midi_sender().expect("MIDI sender");
        let loader = controller.take_loader_sender().expect("loader sender");
        let len = frames(SIGNAL_SECONDS);
        Self {
            engine,
            controller,
            midi,
            loader,
            sent: HashSet::new(),
            events: Vec::new(),
            guitar: guitar_like(SIGNAL_SECONDS, 0.4, 0.15, 0x5EED),
            sine: sine(TUNER_HZ, 0.3, len),
            playing: Playing::Guitar,
            position: 0,
            block: 0,
            left: vec![0.0; LONGEST_BLOCK],
            right: vec![0.0; LONGEST_BLOCK],
            process_calls: 0,
            poll_calls: 0,
            last_peak: 0.0,
            saw_tuner_note: false,
        }
    }

    /// One audio callback (watched), then the control thread's poll.
    fn callback(&mut self) {
        let n = BLOCK_SIZES[self.block % BLOCK_SIZES.len()];
        self.block += 1;
        let source = match self.playing {
            Playing::Guitar => &self.guitar,
            Playing::Sine => &self.sine,
        };
        let input = source.get(self.position..self.position + n).expect("session longer than the prepared signal");
        let (left, right) = (&mut self.left[..n], &mut self.right[..n]);
        let engine = &mut self.engine;
        watching(Watch::Audio, || engine.process(input, left, right));
        self.process_calls += 1;
        self.position += n;
        assert_playable("left", left);
        assert_playable("right", right);
        self.last_peak = peak(left).max(peak(right));

        // The control thread: garbage is dropped here (and counted), the event vector outside the watch.
        let controller = &mut self.controller;
        let events = watching(Watch::Control, || controller.poll());
        self.poll_calls += 1;
        self.events.extend(events);
        if self.controller.telemetry().tuner.is_some_and(|r| r.note == TUNER_NOTE) {
            self.saw_tuner_note = true;
        }
    }

    /// Plays for at least `seconds`.
    fn play(&mut self, seconds: f32) {
        let end = self.position + frames(seconds);
        while self.position < end {
            self.callback();
        }
    }

    /// Plays until an event matching `wanted` arrives (at most one second); returns it.
    fn play_until(&mut self, what: &str, wanted: impl Fn(&Event) -> bool) -> Event {
        let seen = self.events.len();
        let end = self.position + frames(1.0);
        while self.position < end {
            self.callback();
            if let Some(event) = self.events[seen..].iter().find(|e| wanted(e)) {
                return event.clone();
            }
        }
        panic!("no {what} event within a second; got {:?}", &self.events[seen..]);
    }

    /// A Controller method that sends one command of `kind`.
    fn ui<T>(&mut self, kind: CommandKind, f: impl FnOnce(&mut Controller) -> Result<T, ControlError>) -> T {
        let value = f(&mut self.controller).unwrap_or_else(|e| panic!("{kind:?}: {e}"));
        self.sent.insert(kind);
        value
    }

    /// A raw command on the GUI queue.
    fn send(&mut self, command: Command) {
        self.sent.insert(command.kind());
        self.controller.send(command).expect("GUI queue has room");
    }

    /// A raw command on the MIDI queue.
    fn send_midi(&mut self, command: Command) {
        self.sent.insert(command.kind());
        self.midi.send(command).expect("MIDI queue has room");
    }

    /// A raw command on the loader queue.
    fn send_loader(&mut self, command: Command) {
        self.sent.insert(command.kind());
        self.loader.send(command).expect("loader queue has room");
    }

    /// Whether a `Rejected` event for `kind` arrived since event number `since`.
    fn rejected_since(&self, since: usize, kind: CommandKind) -> bool {
        self.events[since..].iter().any(|e| matches!(e, Event::Rejected { command, .. } if *command == kind))
    }

    fn ids(&self) -> Vec<SlotId> {
        self.controller.slots().iter().map(|s| s.id).collect()
    }
}

/// Knob positions every parameter is turned to.
const KNOB_POSITIONS: [f32; 4] = [0.0, 0.37, 1.0, 0.5];

/// The instrument works: an allocation and a free made while watched are both counted. Resets the counters.
fn check_the_counter() {
    watching(Watch::Audio, || drop(std::hint::black_box(Box::new(42u64))));
    let counted = (AUDIO_ALLOCS.load(Ordering::Relaxed), AUDIO_DEALLOCS.load(Ordering::Relaxed));
    assert_eq!(counted, (1, 1), "the counting allocator sees the audio thread");
    for counter in [&AUDIO_ALLOCS, &AUDIO_REALLOCS, &AUDIO_DEALLOCS, &FIRST_AUDIO_ALLOC_SIZE, &CONTROL_DEALLOCS] {
        counter.store(0, Ordering::Relaxed);
    }
}

#[test]
fn a_long_session_using_every_command_never_allocates_on_the_audio_thread() {
    check_the_counter();
    let mut s = Session::new();
    s.play(0.05);

    // One pedal of every kind, inserted while playing, at the front and at the end.
    for (i, kind) in KINDS.iter().enumerate() {
        let index = if i % 2 == 0 { 0 } else { usize::MAX };
        match neuralboard_tests::model_file_for(kind.kind) {
            Some(model) => {
                let entry =
                    PresetSlot { model: Some(model.to_string_lossy().into_owned()), ..PresetSlot::new(kind.kind) };
                s.ui(CommandKind::InsertSlot, |c| c.insert_slot(index, &entry, None));
            }
            None => {
                assert!(!kind.needs_model, "no test model for '{}'", kind.kind);
                s.ui(CommandKind::InsertSlot, |c| c.insert_pedal(index, kind.kind));
            }
        }
        s.play(0.02);
    }

    // Every parameter of every kind through its range, with audio between the turns.
    let mut turned = BTreeSet::new();
    for slot in s.controller.slots().to_vec() {
        for (p, spec) in slot.info.params.iter().enumerate() {
            for t in KNOB_POSITIONS {
                s.ui(CommandKind::SetParam, |c| c.set_param_normalized(slot.id, ParamId(p as u16), t));
                s.play(0.005);
            }
            s.ui(CommandKind::SetParam, |c| c.set_param(slot.id, ParamId(p as u16), spec.default));
            turned.insert((slot.kind().to_owned(), spec.id));
        }
    }
    // Every parameter each pedal shows (an amp shows its size knob only for a slimmable model).
    let every_param: BTreeSet<_> = s
        .controller
        .slots()
        .iter()
        .flat_map(|slot| slot.info.params.iter().map(move |p| (slot.kind().to_owned(), p.id)))
        .collect();
    assert_eq!(turned, every_param, "every parameter of every pedal on the board was turned");
    assert_eq!(
        s.controller.slots().iter().map(|slot| slot.kind().to_owned()).collect::<BTreeSet<_>>(),
        KINDS.iter().map(|k| k.kind.to_owned()).collect::<BTreeSet<_>>(),
        "one pedal of every kind"
    );

    // Load another model into the amp while playing (the GUI's "open .nam"), and a bad file that must change nothing.
    let amp = s.controller.slots().iter().find(|slot| slot.kind() == "amp").map(|slot| slot.id).unwrap();
    let other = std::env::temp_dir().join(format!("neuralboard-no-alloc-{}.nam", std::process::id()));
    std::fs::write(&other, neuralboard_tests::tiny_wavenet_json()).unwrap();
    let entry = PresetSlot { model: Some(other.to_string_lossy().into_owned()), ..PresetSlot::new("amp") };
    s.ui(CommandKind::ReplaceSlot, |c| c.replace_pedal(amp, &entry, None));
    s.play(0.05);
    let broken = PresetSlot { model: Some("/nonexistent/broken.nam".into()), ..PresetSlot::new("amp") };
    assert!(s.controller.replace_pedal(amp, &broken, None).is_err(), "a bad file is refused before anything changes");
    s.play(0.02);

    // Footswitches, mix and the global levels, from the GUI and from MIDI.
    let ids = s.ids();
    for &id in &ids {
        s.ui(CommandKind::SetBypass, |c| c.set_bypass(id, true));
        s.play(0.01);
        s.ui(CommandKind::SetBypass, |c| c.set_bypass(id, false));
        s.play(0.03);
        s.send_midi(Command::ToggleBypass { slot: id });
        s.play(0.005);
        s.send_midi(Command::ToggleBypass { slot: id });
        s.ui(CommandKind::SetMix, |c| c.set_mix(id, 0.4));
        s.play(0.02);
        s.send_midi(Command::SetMix { slot: id, mix: 1.0 });
        s.play(0.02);
    }
    assert!(s.controller.slots().iter().all(|slot| !slot.bypassed && slot.mix == 1.0), "MIDI echoes followed");
    let gain = s.controller.slots().iter().find(|slot| slot.kind() == "gain").map(|slot| slot.id).unwrap();
    s.send_midi(Command::SetParam { slot: gain, param: ParamId(0), value: -3.0 });
    s.play(0.01);
    assert_eq!(s.controller.slot(gain).unwrap().value(ParamId(0)), Some(-3.0), "mirror follows a MIDI knob");
    s.ui(CommandKind::SetInputGain, |c| c.set_input_gain_db(6.0));
    s.play(0.03);
    s.ui(CommandKind::SetOutputLevel, |c| c.set_output_level_db(-6.0));
    s.play(0.03);
    s.send_midi(Command::SetInputGain { db: 0.0 });
    s.send_midi(Command::SetOutputLevel { db: -3.0 });
    s.play(0.03);

    // Reordering, removing and inserting again.
    let first = s.ids()[0];
    s.ui(CommandKind::MoveSlot, |c| c.move_pedal(first, usize::MAX));
    s.play(0.01);
    s.send_midi(Command::MoveSlot { slot: first, to: 0 });
    s.play(0.01);
    s.ui(CommandKind::MoveSlot, |c| c.move_pedal(first, 0));
    s.ui(CommandKind::RemoveSlot, |c| c.remove_pedal(first));
    s.play(0.02);
    let again = s.ui(CommandKind::InsertSlot, |c| c.insert_pedal(1, "gate"));
    s.play(0.02);
    assert!(s.ids().contains(&again));

    // Commands the engine must refuse: an unknown slot, from the GUI and from MIDI.
    let unknown = SlotId(987_654);
    let since = s.events.len();
    s.send(Command::SetParam { slot: unknown, param: ParamId(0), value: 1.0 });
    s.send(Command::SetBypass { slot: unknown, bypassed: true });
    s.send(Command::RemoveSlot { slot: unknown });
    s.send_midi(Command::ToggleBypass { slot: unknown });
    s.send_midi(Command::SetMix { slot: unknown, mix: 0.5 });
    s.send_midi(Command::MoveSlot { slot: unknown, to: 0 });
    s.send(Command::SetParam { slot: again, param: ParamId(99), value: 1.0 });
    s.play(0.01);
    for kind in [
        CommandKind::SetParam,
        CommandKind::SetBypass,
        CommandKind::RemoveSlot,
        CommandKind::ToggleBypass,
        CommandKind::SetMix,
        CommandKind::MoveSlot,
    ] {
        assert!(s.rejected_since(since, kind), "{kind:?} to an unknown slot rejected: {:?}", &s.events[since..]);
    }

    // A full board: the engine refuses one more pedal (and one with a duplicate id) and hands it back to be freed
    // on this thread.
    while s.controller.slots().len() < MAX_SLOTS {
        s.ui(CommandKind::InsertSlot, |c| c.insert_pedal(usize::MAX, "gain"));
        s.play(0.002);
    }
    let since = s.events.len();
    let extra = Slot::new(SlotId(50_000), effects::build("gain", None).unwrap(), SAMPLE_RATE, MAX_BLOCK);
    s.send(Command::InsertSlot { index: 0, slot: extra });
    s.play(0.01);
    assert!(s.rejected_since(since, CommandKind::InsertSlot), "a 33rd pedal is refused");
    let last = *s.ids().last().unwrap();
    s.ui(CommandKind::RemoveSlot, |c| c.remove_pedal(last));
    let since = s.events.len();
    let duplicate = Slot::new(again, effects::build("gain", None).unwrap(), SAMPLE_RATE, MAX_BLOCK);
    s.send(Command::InsertSlot { index: 0, slot: duplicate });
    s.play(0.01);
    assert!(s.rejected_since(since, CommandKind::InsertSlot), "a duplicate id is refused");
    while s.controller.slots().len() > 3 {
        let id = *s.ids().last().unwrap();
        s.ui(CommandKind::RemoveSlot, |c| c.remove_pedal(id));
        s.play(0.002);
    }

    // Preset switches: one played to the end, two in a row (the first superseded while fading out), and one
    // from the loader thread's queue.
    let clean = preset("Clean", 0.0, -6.0, &[("gate", false, &[("threshold_db", -60.0)]), ("gain", false, &[])]);
    let lead = preset(
        "Lead",
        3.0,
        -3.0,
        &[("gain", false, &[("gain_db", 9.0)]), ("gate", true, &[]), ("gain", false, &[("gain_db", -6.0)])],
    );
    let empty = Preset::empty("Empty");
    s.ui(CommandKind::LoadChain, |c| c.load_preset(&clean, None));
    s.play_until("ChainLoaded", |e| *e == Event::ChainLoaded);
    s.play(0.05);
    s.ui(CommandKind::LoadChain, |c| c.load_preset(&empty, None));
    s.play(0.002);
    s.ui(CommandKind::LoadChain, |c| c.load_preset(&lead, None));
    s.play_until("ChainLoaded", |e| *e == Event::ChainLoaded);
    s.play(0.05);
    let swap = s.controller.prepare_preset(&clean, None);
    s.send_loader(Command::LoadChain(swap));
    s.play_until("ChainLoaded", |e| *e == Event::ChainLoaded);
    s.play(0.05);
    for slot in s.ids() {
        s.ui(CommandKind::SetParam, |c| c.set_param_normalized(slot, ParamId(0), 0.6));
    }
    s.play(0.05);

    // The tuner, on a steady A string: analysing, then muting, then off.
    s.playing = Playing::Sine;
    s.ui(CommandKind::SetTuner, |c| c.set_tuner(true, false));
    s.play(0.6);
    assert!(s.saw_tuner_note, "the tuner read the A string");
    s.ui(CommandKind::SetTuner, |c| c.set_tuner(true, true));
    s.play(0.1);
    assert_eq!(s.last_peak, 0.0, "tuner mute silences the output");
    s.send_midi(Command::SetTuner { enabled: false, mute: false });
    s.play(0.1);
    assert!(s.last_peak > 0.01, "sound returns after tuning");
    s.playing = Playing::Guitar;

    // The panic button, from the GUI and from a footswitch.
    s.ui(CommandKind::ResetAll, |c| c.reset_all());
    s.play(0.05);
    s.send_midi(Command::ResetAll);
    s.play(0.05);

    // Play on, so the session covers several seconds.
    let minimum = frames(4.0);
    if s.position < minimum {
        let rest = (minimum - s.position) as f32 / SAMPLE_RATE;
        s.play(rest);
    }

    let all: HashSet<CommandKind> = CommandKind::iter().collect();
    let missing: Vec<_> = all.difference(&s.sent).collect();
    assert!(missing.is_empty(), "the session never sent {missing:?}: extend it to cover every command");
    assert_eq!(s.sent, all);

    let allocs = AUDIO_ALLOCS.load(Ordering::Relaxed);
    let reallocs = AUDIO_REALLOCS.load(Ordering::Relaxed);
    let deallocs = AUDIO_DEALLOCS.load(Ordering::Relaxed);
    assert_eq!(
        (allocs, reallocs, deallocs),
        (0, 0, 0),
        "allocations, reallocations and frees inside Engine::process over {} callbacks (first allocation: {} \
         bytes)",
        s.process_calls,
        FIRST_AUDIO_ALLOC_SIZE.load(Ordering::Relaxed)
    );
    assert_eq!(s.poll_calls, s.process_calls, "the controller polled between every two callbacks");
    assert!(
        CONTROL_DEALLOCS.load(Ordering::Relaxed) > 0,
        "removed pedals and replaced chains were freed by Controller::poll"
    );
    let telemetry = s.controller.telemetry();
    assert_eq!(telemetry.leaked_garbage, 0, "nothing leaked because the garbage queue was full");
    assert_eq!(telemetry.dropped_events, 0, "no event lost");
    assert_eq!(telemetry.frames, s.position as u64);
    assert!(s.position >= minimum, "played {} s", s.position as f32 / SAMPLE_RATE);
    assert!(
        !s.events.iter().any(|e| matches!(e, Event::PedalFault { .. })),
        "no stock pedal faulted: {:?}",
        s.events.iter().filter(|e| matches!(e, Event::PedalFault { .. })).collect::<Vec<_>>()
    );
}
