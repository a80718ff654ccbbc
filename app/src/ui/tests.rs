//! Interaction tests: iced's headless simulator drives the real view, the messages it produces go through the
//! real update, and the offline engine shows what reached the audio.

use std::path::{Path, PathBuf};

use iced::mouse;
use iced::{Event, Point};
use iced_test::simulator::Simulator;
use neuralboard_engine::preset::{Preset, PresetSlot};

use super::app::{App, Message, Options, WINDOW_SIZE};

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("nb-gui-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// An app on an offline, silent engine with its settings and presets in `dir`, showing `preset`.
fn app_with(dir: &Path, preset: &Preset) -> App {
    let path = dir.join("start.ron");
    preset.save(&path).unwrap();
    App::new(Options {
        preset: Some(path),
        offline: true,
        silent: true,
        settings_path: Some(dir.join("settings.ron")),
        presets_dir: Some(dir.join("presets")),
        ..Options::default()
    })
}

fn slot(kind: &str, params: &[(&str, f32)]) -> PresetSlot {
    let mut slot = PresetSlot::new(kind);
    slot.params = params.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect();
    slot
}

/// Runs `interact` against the app's current view and feeds every message it produced to the app.
fn interact(app: &mut App, interact: impl FnOnce(&mut Simulator<'_, Message>)) {
    let messages: Vec<Message> = {
        let mut ui = Simulator::with_size(iced::Settings::default(), WINDOW_SIZE, app.view());
        interact(&mut ui);
        ui.into_messages().collect()
    };
    for message in messages {
        let _ = app.update(message);
    }
}

fn center_of(ui: &mut Simulator<'_, Message>, label: &str) -> Point {
    ui.find(label).unwrap_or_else(|e| panic!("{label}: {e}")).visible_bounds().expect("visible").center()
}

fn drag(ui: &mut Simulator<'_, Message>, from: Point, to: Point) {
    ui.point_at(from);
    let _ = ui.simulate([Event::Mouse(mouse::Event::CursorMoved { position: from })]);
    let _ = ui.simulate([Event::Mouse(mouse::Event::ButtonPressed(mouse::Button::Left))]);
    ui.point_at(to);
    let _ = ui.simulate([Event::Mouse(mouse::Event::CursorMoved { position: to })]);
    let _ = ui.simulate([Event::Mouse(mouse::Event::ButtonReleased(mouse::Button::Left))]);
}

fn rms_db(x: &[f32]) -> f32 {
    let ms = x.iter().map(|v| v * v).sum::<f32>() / x.len() as f32;
    10.0 * ms.max(1e-20).log10()
}

fn sine(frames: usize, amplitude: f32) -> Vec<f32> {
    (0..frames).map(|i| amplitude * (2.0 * std::f32::consts::PI * 220.0 * i as f32 / 48_000.0).sin()).collect()
}

#[test]
fn dragging_a_pedal_onto_another_reorders_the_chain_the_audio_runs_through() {
    let dir = scratch("drag");
    let mut preset = Preset::empty("Drag");
    preset.chain = vec![slot("gate", &[]), slot("gain", &[]), slot("gain", &[("gain_db", -6.0)])];
    let mut app = app_with(&dir, &preset);
    let before: Vec<_> = app.session_mut().controller.slots().iter().map(|s| s.id).collect();

    interact(&mut app, |ui| {
        let gate = center_of(ui, "NOISE GATE");
        let volumes = ui.find("VOLUME").unwrap().visible_bounds().unwrap();
        // The first VOLUME is the second pedal; drop the gate onto it.
        drag(ui, gate, Point::new(volumes.center_x(), volumes.center_y() + 60.0));
    });
    let after: Vec<_> = app.session_mut().controller.slots().iter().map(|s| s.id).collect();
    assert_eq!(after, vec![before[1], before[0], before[2]], "the gate moved one place right");

    // The engine took the same order.
    app.session_mut().process(&[0.0; 64]);
    assert_eq!(app.session_mut().engine_order().unwrap(), after);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn dragging_a_knob_changes_the_level_the_engine_plays() {
    let dir = scratch("knob");
    let mut preset = Preset::empty("Knob");
    preset.chain = vec![slot("gain", &[("gain_db", 0.0)])];
    let mut app = app_with(&dir, &preset);
    let input = sine(48_000, 0.1);
    let before = rms_db(&app.session_mut().process(&input).unwrap()[24_000..]);

    interact(&mut app, |ui| {
        let label = center_of(ui, "Gain");
        // The knob sits above its label; drag it up 40 px.
        let knob = Point::new(label.x, label.y - 32.0);
        drag(ui, knob, Point::new(knob.x, knob.y - 40.0));
    });
    let state = &app.session_mut().controller.slots()[0];
    let gain_db = state.values[0];
    assert!(gain_db > 1.0, "dragging up raised the gain: {gain_db} dB");

    let after = rms_db(&app.session_mut().process(&input).unwrap()[24_000..]);
    assert!((after - before - gain_db).abs() < 0.2, "the output rose by the knob's {gain_db} dB: {before} → {after}");

    // Double-click resets it to its default (0 dB).
    interact(&mut app, |ui| {
        let label = center_of(ui, "Gain");
        let knob = Point::new(label.x, label.y - 32.0);
        ui.point_at(knob);
        let _ = ui.simulate(iced_test::simulator::click());
        let _ = ui.simulate(iced_test::simulator::click());
    });
    assert_eq!(app.session_mut().controller.slots()[0].values[0], 0.0);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn the_reverb_pad_moves_both_room_parameters_where_it_is_clicked_and_double_click_resets_them() {
    let dir = scratch("pad");
    let mut preset = Preset::empty("Pad");
    preset.chain = vec![slot("reverb", &[("x", 50.0), ("y", 50.0)])];
    let mut app = app_with(&dir, &preset);
    let values = |app: &mut App| {
        let slot = &app.session_mut().controller.slots()[0];
        let pad = slot.info.pad.clone().expect("the reverb has a pad");
        (slot.values[pad.x.0 as usize], slot.values[pad.y.0 as usize])
    };
    // The pad sits above its axis labels, centred on them.
    let pad_point = |ui: &mut Simulator<'_, Message>, x: f32, y: f32| {
        let x_label = ui.find("X 50.0 %").unwrap().visible_bounds().unwrap();
        let y_label = ui.find("Y 50.0 %").unwrap().visible_bounds().unwrap();
        let centre = 0.5 * (x_label.x + y_label.x + y_label.width);
        let bottom = x_label.y - 3.0;
        Point::new(centre - 75.0 + 150.0 * x, bottom - 150.0 * y)
    };
    interact(&mut app, |ui| {
        let at = pad_point(ui, 0.2, 0.8);
        ui.point_at(at);
        let _ = ui.simulate([Event::Mouse(mouse::Event::CursorMoved { position: at })]);
        let _ = ui.simulate(iced_test::simulator::click());
    });
    let (x, y) = values(&mut app);
    assert!((x - 20.0).abs() < 2.0 && (y - 80.0).abs() < 2.0, "a click puts the room there: {x}, {y}");
    assert!(app.session_mut().controller.is_modified(), "the board knows it changed");

    // Dragging moves it on; the readout follows.
    // (Back to the middle first, so the labels read as the pad_point helper expects.)
    let id = app.session_mut().controller.slots()[0].id;
    for param in [0, 1] {
        app.session_mut().controller.set_param(id, neuralboard_engine::ParamId(param), 50.0).unwrap();
    }
    interact(&mut app, |ui| {
        let (from, to) = (pad_point(ui, 0.5, 0.5), pad_point(ui, 0.9, 0.1));
        drag(ui, from, to);
    });
    let (x, y) = values(&mut app);
    assert!((x - 90.0).abs() < 2.0 && (y - 10.0).abs() < 2.0, "a drag takes it along: {x}, {y}");

    let _ = app.update(Message::Pad(id, super::pad::PadEvent::Reset));
    let slot = &app.session_mut().controller.slots()[0];
    let defaults: Vec<f32> = slot.info.params.iter().map(|p| p.default).collect();
    assert_eq!(&slot.values[..2], &defaults[..2], "reset puts the room back at the model's default");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn save_as_then_loading_the_preset_restores_the_board() {
    let dir = scratch("presets");
    let mut preset = Preset::empty("Start");
    preset.chain = vec![slot("gate", &[]), slot("gain", &[("gain_db", 3.0)])];
    let mut app = app_with(&dir, &preset);

    interact(&mut app, |ui| {
        ui.click("Save As").unwrap();
    });
    interact(&mut app, |ui| {
        ui.click(iced::widget::Id::new(super::topbar::NAME_INPUT)).unwrap();
        // The field starts with the current name; replace it.
        for _ in 0..10 {
            let _ = ui.tap_key(iced::keyboard::key::Named::Backspace);
        }
        let _ = ui.typewrite("Lead Tone");
        let _ = ui.tap_key(iced::keyboard::key::Named::Enter);
    });
    let saved = dir.join("presets/lead-tone.ron");
    let loaded = Preset::load(&saved).expect("Save As wrote the preset").preset;
    assert_eq!(loaded.name, "Lead Tone");
    assert_eq!(loaded.chain.len(), 2);
    assert!(!app.session_mut().controller.is_modified());

    // Change the board, then come back to the saved preset through the library.
    let id = app.session_mut().controller.slots()[1].id;
    let _ = app.update(Message::Knob(id, neuralboard_engine::ParamId(0), super::knob::KnobEvent::Set(1.0)));
    assert!(app.session_mut().controller.is_modified());
    let index = app.library_index(&saved).expect("the library lists the new preset");
    let _ = app.update(Message::PresetPicked(index));
    let state = &app.session_mut().controller.slots()[1];
    assert_eq!(state.values[0], 3.0, "the saved value is back");
    assert!(!app.session_mut().controller.is_modified());

    // Save overwrites the player's own preset in place.
    let id = app.session_mut().controller.slots()[1].id;
    let _ = app.update(Message::Knob(id, neuralboard_engine::ParamId(0), super::knob::KnobEvent::Reset));
    interact(&mut app, |ui| {
        ui.click("Save").unwrap();
    });
    assert_eq!(Preset::load(&saved).unwrap().preset.chain[1].params["gain_db"], 0.0);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn footswitch_and_b_key_bypass_and_adding_from_the_palette_appends_a_pedal() {
    let dir = scratch("bypass");
    let mut preset = Preset::empty("Bypass");
    preset.chain = vec![slot("gain", &[("gain_db", 6.0)])];
    let mut app = app_with(&dir, &preset);
    let input = sine(24_000, 0.1);
    let engaged = rms_db(&app.session_mut().process(&input).unwrap()[12_000..]);

    let id = app.session_mut().controller.slots()[0].id;
    let _ = app.update(Message::DragStart(id));
    let _ = app.update(Message::DragEnd);
    let _ = app.update(Message::Key(iced::keyboard::Key::Character("b".into()), iced::keyboard::Modifiers::empty()));
    assert!(app.session_mut().controller.slots()[0].bypassed);
    let bypassed = rms_db(&app.session_mut().process(&input).unwrap()[12_000..]);
    assert!((engaged - bypassed - 6.0).abs() < 0.2, "bypass removed the 6 dB: {engaged} → {bypassed}");

    interact(&mut app, |ui| {
        ui.click("+").unwrap();
    });
    // An entry near the top of the palette (the list scrolls; the simulator does not scroll it).
    interact(&mut app, |ui| {
        ui.click("Neural Phaser").unwrap();
    });
    let kinds: Vec<String> = app.session_mut().controller.slots().iter().map(|s| s.kind().to_owned()).collect();
    assert_eq!(kinds, ["gain", "phaser"]);
    app.session_mut().process(&[0.0; 64]);
    assert_eq!(app.session_mut().engine_order().unwrap().len(), 2);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_broken_model_file_is_reported_on_the_pedal_and_the_old_model_keeps_playing() {
    let dir = scratch("badmodel");
    let mut preset = Preset::empty("Amp");
    let mut amp = slot("amp", &[]);
    amp.model = Some("factory:assets/models/amp/clean-lstm.nam".to_owned());
    preset.chain = vec![amp];
    let mut app = app_with(&dir, &preset);
    let input = sine(24_000, 0.1);
    let before = app.session_mut().process(&input).unwrap();

    let broken = dir.join("broken.nam");
    std::fs::write(&broken, r#"{"version": "0.5.4", "architecture": "LSTM", "config": {"#).unwrap();
    let id = app.session_mut().controller.slots()[0].id;
    let _ = app.update(Message::UseModel(id, broken.clone()));

    let state = &app.session_mut().controller.slots()[0];
    assert_eq!(state.model.as_deref(), Some("factory:assets/models/amp/clean-lstm.nam"), "the old model stays");
    // The pedal shows what is wrong, naming the file.
    let mut ui = Simulator::with_size(iced::Settings::default(), WINDOW_SIZE, app.view());
    let shown = app.pedal_errors.iter().find(|(s, _)| *s == id).map(|(_, e)| format!("⚠ {e}")).expect("error kept");
    assert!(shown.contains("broken.nam"), "{shown}");
    assert!(ui.find(shown.as_str()).is_ok(), "the error is on the pedal");
    drop(ui);
    // And the sound is the old model's, uninterrupted.
    let after = app.session_mut().process(&input).unwrap();
    assert!((rms_db(&after[12_000..]) - rms_db(&before[12_000..])).abs() < 0.5);

    // A good file replaces it.
    let crunch = neuralboard_engine::paths::factory_root().join("assets/models/amp/crunch-wavenet.nam");
    let _ = app.update(Message::UseModel(id, crunch));
    let state = &app.session_mut().controller.slots()[0];
    assert_eq!(state.model.as_deref(), Some("factory:assets/models/amp/crunch-wavenet.nam"));
    assert!(app.pedal_errors.is_empty());
    let _ = std::fs::remove_dir_all(dir);
}

/// Ticks the app (engine block, events, MIDI notices) until `done` holds, for at most two seconds.
fn tick_until(app: &mut App, mut done: impl FnMut(&mut App) -> bool) -> bool {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    while std::time::Instant::now() < deadline {
        let _ = app.update(Message::Tick);
        if done(app) {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    false
}

#[test]
fn midi_learn_maps_a_controller_to_the_touched_knob_which_then_drives_the_sound() {
    use neuralboard_engine::midi::{Mapping, Source, SourceKind, Target};

    let dir = scratch("learn");
    let mut preset = Preset::empty("Learn");
    preset.chain = vec![slot("gate", &[]), slot("gain", &[("gain_db", 0.0)])];
    let mut app = app_with(&dir, &preset);
    let mut pedalboard = app.attach_test_midi();
    let input = sine(24_000, 0.05);
    let before = rms_db(&app.session_mut().process(&input).unwrap()[12_000..]);

    interact(&mut app, |ui| {
        ui.click("MIDI Learn").unwrap();
    });
    assert_eq!(app.learn, Some(super::app::Learn::Armed));
    interact(&mut app, |ui| {
        let label = center_of(ui, "Gain");
        let knob = Point::new(label.x, label.y - 32.0);
        drag(ui, knob, Point::new(knob.x, knob.y - 2.0));
    });
    let expected = Target::Param {
        slot: 1,
        param: "gain_db".to_owned(),
        min: 0.0,
        max: 1.0,
        curve: neuralboard_engine::midi::Curve::Linear,
    };
    assert!(matches!(&app.learn, Some(super::app::Learn::Waiting { target, .. }) if *target == expected));

    // The player moves CC 20 on channel 1 of the footboard: learned, kept in the settings.
    pedalboard.feed(&[0xB0, 20, 64]);
    assert!(tick_until(&mut app, |app| app.learn.is_none()), "no Learned notice");
    let mapping = Mapping { source: Source { channel: Some(0), kind: SourceKind::Cc(20) }, target: expected };
    assert_eq!(app.settings.midi.mappings, vec![mapping.clone()]);
    let saved = neuralboard_engine::settings::Settings::load_or_default(&dir.join("settings.ron")).0;
    assert_eq!(saved.midi.mappings, vec![mapping]);

    // From now on the controller turns the knob, with running status and a stray byte in the stream.
    pedalboard.feed(&[0x42, 0xB0, 20, 100, 20, 127]);
    let max = app.session_mut().controller.slots()[1].info.params[0].max;
    assert!(
        tick_until(&mut app, |app| app.session_mut().controller.slots()[1].values[0] == max),
        "CC 20 = 127 put the knob at the top of its range"
    );
    let after = rms_db(&app.session_mut().process(&input).unwrap()[12_000..]);
    assert!((after - before - max).abs() < 0.3, "the output rose by {max} dB: {before} → {after}");
    assert!(app.midi_status.contains("CC 20"), "the monitor shows the message: {}", app.midi_status);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_program_change_from_midi_loads_that_preset() {
    let dir = scratch("program");
    let mut app = app_with(&dir, &Preset::empty("Start"));
    let mut pedalboard = app.attach_test_midi();
    let wanted = app.library.entries.get(1).expect("factory presets").clone();
    pedalboard.feed(&[0xC0, 1]);
    assert!(
        tick_until(&mut app, |app| app.preset_path.as_ref() == Some(&wanted.path)),
        "program 1 loads the second preset"
    );
    assert_eq!(app.session_mut().controller.name(), wanted.name);
    let _ = std::fs::remove_dir_all(dir);
}
