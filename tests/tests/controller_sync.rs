//! The board the player sees (the [`Controller`]'s mirror) and the board the engine plays must not drift apart:
//! a knob that shows -20 dB must sound like -20 dB, and a pedal on screen must be in the signal.

use neuralboard_engine::param::db_to_gain;
use neuralboard_engine::{Command, Controller, Engine, EngineConfig, Event, ParamId, Preset};
use neuralboard_tests::{SAMPLE_RATE, frames, peak, preset, preset_slot, render_with, sine};

const GAIN_DB: ParamId = ParamId(0);
/// Level of the test note.
const NOTE: f32 = 0.25;

fn engine_with(preset: &Preset) -> (Engine, Controller) {
    let (mut engine, mut controller) = Engine::new(EngineConfig { sample_rate: SAMPLE_RATE, max_block: 256 });
    drop(engine.install_chain(controller.prepare_preset(preset, None)));
    (engine, controller)
}

/// Plays a 440 Hz note for `seconds` (polling between callbacks); returns the output's peak over the last 50 ms
/// and every event the engine sent.
fn play(engine: &mut Engine, controller: &mut Controller, seconds: f32) -> (f32, Vec<Event>) {
    let input = sine(440.0, NOTE, frames(seconds));
    let mut events = Vec::new();
    let out = render_with(engine, &input, &[128], |_, _| events.extend(controller.poll()));
    events.extend(controller.poll());
    (peak(&out.left[out.left.len() - frames(0.05)..]), events)
}

fn rejections(events: &[Event]) -> Vec<&Event> {
    events.iter().filter(|e| matches!(e, Event::Rejected { .. })).collect()
}

/// The start-up board and the preset the player switches to.
fn boards() -> (Preset, Preset) {
    let start = preset("Start", 0.0, 0.0, &[("gain", false, &[("gain_db", 0.0)])]);
    let next = preset("Next", 0.0, 0.0, &[("gain", false, &[("gain_db", 0.0)])]);
    (start, next)
}

/// The workaround that works today: wait for `ChainLoaded` before touching the new preset's pedals.
#[test]
fn a_knob_turned_once_the_new_preset_plays_is_heard() {
    let (start, next) = boards();
    let (mut engine, mut controller) = engine_with(&start);
    controller.load_preset(&next, None).unwrap();
    let (_, events) = play(&mut engine, &mut controller, 0.1);
    assert!(events.contains(&Event::ChainLoaded));
    let gain = controller.slots()[0].id;
    controller.set_param(gain, GAIN_DB, -20.0).unwrap();
    let (heard, events) = play(&mut engine, &mut controller, 0.2);
    assert!(rejections(&events).is_empty(), "{events:?}");
    let expected = NOTE * db_to_gain(-20.0);
    assert!((heard - expected).abs() < 0.02 * expected, "heard {heard}, expected {expected}");
}

/// A MIDI program change followed at once by a controller message (or a quick hand on the GUI) lands in the
/// engine before its 10 ms preset fade has finished.
#[test]
fn a_knob_turned_right_after_a_preset_switch_is_not_lost() {
    let (start, next) = boards();
    let (mut engine, mut controller) = engine_with(&start);
    controller.load_preset(&next, None).unwrap();
    let gain = controller.slots()[0].id;
    controller.set_param(gain, GAIN_DB, -20.0).unwrap();
    let (heard, events) = play(&mut engine, &mut controller, 0.3);
    assert_eq!(controller.slot(gain).unwrap().value(GAIN_DB), Some(-20.0));
    assert!(rejections(&events).is_empty(), "the knob change was rejected: {events:?}");
    let expected = NOTE * db_to_gain(-20.0);
    assert!(
        (heard - expected).abs() < 0.02 * expected,
        "the knob shows -20 dB but the note plays at {heard} instead of {expected}"
    );
}

#[test]
fn a_pedal_added_right_after_a_preset_switch_stays_on_the_board() {
    let (start, next) = boards();
    let (mut engine, mut controller) = engine_with(&start);
    controller.load_preset(&next, None).unwrap();
    let cut = preset_slot(("gain", false, &[("gain_db", -20.0)]));
    controller.insert_slot(1, &cut, None).unwrap();
    let (heard, _) = play(&mut engine, &mut controller, 0.3);
    assert_eq!(controller.slots().len(), 2, "the board shows two pedals");
    let expected = NOTE * db_to_gain(-20.0);
    assert!(
        (heard - expected).abs() < 0.02 * expected,
        "the added -20 dB pedal is not in the signal: {heard} instead of {expected}"
    );
}

#[test]
fn a_level_beyond_its_range_is_shown_as_played_and_saves_a_preset_that_loads() {
    let (start, _) = boards();
    let (mut engine, mut controller) = engine_with(&start);
    controller.set_input_gain_db(40.0).unwrap();
    controller.set_output_level_db(f32::NAN).unwrap();
    play(&mut engine, &mut controller, 0.1);
    assert_eq!(controller.input_gain_db(), 24.0, "the engine plays +24 dB at most");
    assert_eq!(controller.output_level_db(), 0.0, "the engine plays NaN as 0 dB");
    let saved = controller.to_preset().to_ron();
    if let Err(e) = Preset::parse(&saved, "saved.ron".as_ref()) {
        panic!("the saved board does not load again: {e}\n{saved}");
    }
}

#[test]
fn a_preset_that_could_not_be_sent_does_not_change_the_board_shown() {
    let (start, next) = boards();
    let (_engine, mut controller) = engine_with(&start);
    // The engine is stalled (no callbacks): its queue fills up.
    while controller.send(Command::ResetAll).is_ok() {}
    let before: Vec<_> = controller.slots().iter().map(|s| s.id).collect();
    assert!(controller.load_preset(&next, None).is_err(), "queue full");
    assert_eq!(controller.name(), "Start", "the board shown is still the one playing");
    assert_eq!(controller.slots().iter().map(|s| s.id).collect::<Vec<_>>(), before);
}

/// A `.nam` that multiplies by `gain` (a Linear model with one tap), written to the temporary folder.
fn gain_model(name: &str, gain: f32) -> String {
    let path = std::env::temp_dir().join(format!("neuralboard-sync-{}-{name}.nam", std::process::id()));
    let json = format!(
        r#"{{"version": "0.5.4", "architecture": "Linear", "config": {{"receptive_field": 1, "bias": false}},
            "weights": [{gain}], "sample_rate": 48000}}"#
    );
    std::fs::write(&path, json).unwrap();
    path.to_string_lossy().into_owned()
}

#[test]
fn loading_a_new_amp_model_while_playing_changes_the_sound_and_a_bad_file_changes_nothing() {
    use neuralboard_engine::preset::PresetSlot;
    let amp = |model: String| PresetSlot {
        model: Some(model),
        params: [("normalize".to_owned(), 0.0)].into_iter().collect(),
        ..PresetSlot::new("amp")
    };
    let mut board = Preset::empty("amp");
    board.chain.push(amp(gain_model("half", 0.5)));
    let (mut engine, mut controller) = engine_with(&board);
    let id = controller.slots()[0].id;
    let input = sine(220.0, NOTE, frames(1.2));

    // A broken file: refused up front, the board and the sound stay as they were.
    let broken = amp("/no/such/capture.nam".into());
    assert!(controller.replace_pedal(id, &broken, None).is_err());
    assert_eq!(controller.slots()[0].model.as_deref(), board.chain[0].model.as_deref());

    let mut swapped = false;
    let out = render_with(&mut engine, &input, &[64], |block, _| {
        if block == 300 && !swapped {
            controller.replace_pedal(id, &amp(gain_model("double", 2.0)), None).unwrap();
            swapped = true;
        }
        controller.poll();
    });
    let before = peak(&out.left[frames(0.2)..frames(0.4)]);
    let after = peak(&out.left[frames(0.8)..frames(1.2)]);
    assert!((before - NOTE * 0.5).abs() < 1e-3, "old model plays until the switch: {before}");
    assert!((after - NOTE * 2.0).abs() < 1e-3, "new model plays after it: {after}");
    assert_eq!(controller.slots()[0].id, id, "same slot, same id (MIDI mappings keep pointing at it)");
    let worst = neuralboard_tests::max_step(&out.left[frames(0.38)..frames(0.45)]);
    let natural = neuralboard_tests::max_step(&out.left[frames(0.8)..frames(1.0)]);
    assert!(worst <= natural * 1.01, "the switch fades through silence: step {worst} vs {natural}");
}

/// The board is what gets saved: a preset's MIDI mappings must come back out of `to_preset` as they went in, and
/// mappings edited on the board must be saved with it.
#[test]
fn a_presets_midi_mappings_survive_loading_and_saving_the_board() {
    use neuralboard_engine::midi::{Mapping, MidiMap, Source, SourceKind, SwitchMode, Target};
    let (start, mut next) = boards();
    next.midi = MidiMap {
        mappings: vec![Mapping {
            source: Source { channel: Some(0), kind: SourceKind::Cc(80) },
            target: Target::Bypass { slot: 0, mode: SwitchMode::Toggle },
        }],
        program_change_channel: None,
    };
    let (mut engine, mut controller) = engine_with(&start);
    assert!(controller.midi_map().is_empty());
    controller.load_preset(&next, None).unwrap();
    play(&mut engine, &mut controller, 0.05);
    assert_eq!(controller.midi_map(), &next.midi);
    let saved = controller.to_preset();
    assert_eq!(saved.midi, next.midi);
    assert_eq!(Preset::parse(&saved.to_ron(), "saved.ron".as_ref()).unwrap().0.midi, next.midi);

    let mut edited = next.midi.clone();
    edited.program_change_channel = Some(2);
    controller.set_midi_map(edited.clone());
    assert!(controller.is_modified(), "an edited mapping is an unsaved change");
    assert_eq!(controller.to_preset().midi, edited);
}

/// The compressor's meter: its gain reduction reaches the window through the telemetry, by slot, and a bypassed
/// compressor reads 0 dB.
#[test]
fn a_compressors_gain_reduction_is_published_for_its_slot() {
    let board = preset(
        "Squeeze",
        0.0,
        0.0,
        &[("gain", false, &[("gain_db", 0.0)]), ("compressor", false, &[("peak_reduction", 90.0)])],
    );
    let (mut engine, mut controller) = engine_with(&board);
    let (gain, compressor) = (controller.slots()[0].id, controller.slots()[1].id);
    let loud = sine(220.0, 0.7, frames(0.5));
    render_with(&mut engine, &loud, &[128], |_, _| drop(controller.poll()));
    let reading = controller.telemetry().gain_reduction;
    assert_eq!(reading.get(gain), None, "a volume pedal has no gain-reduction meter");
    let reduction = reading.get(compressor).expect("the compressor meters its gain reduction");
    assert!(reduction > 3.0, "a −3 dBFS tone at peak reduction 90 is compressed: {reduction} dB");

    controller.set_bypass(compressor, true).unwrap();
    render_with(&mut engine, &loud[..frames(0.1)], &[128], |_, _| drop(controller.poll()));
    assert_eq!(controller.telemetry().gain_reduction.get(compressor), Some(0.0));
}
