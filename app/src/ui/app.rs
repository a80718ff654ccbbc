//! The application: state, messages, update and the top-level layout.
//!
//! The board only talks to the engine through the [`neuralboard_engine::Controller`] held by the [`Session`]:
//! commands out, events and telemetry in (polled on a ~30 Hz tick).

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use iced::widget::{button, column, container, row, text};
use iced::{Element, Length, Subscription, Task, Theme, keyboard, window};
use neuralboard_engine::effects;
use neuralboard_engine::midi::{self, MidiMap, SwitchMode, Target};
use neuralboard_engine::preset::{Preset, PresetSlot};
use neuralboard_engine::settings::Settings;
use neuralboard_engine::{ParamId, SlotId, paths};

use super::board;
use super::knob::KnobEvent;
use super::library::Library;
use super::meter::MeterState;
use super::pad::PadEvent;
use super::session::Session;
use super::settings::{self, SettingsPage};
use super::style;
use super::topbar;
use crate::midi_io::{BoardView, MidiNotice, MidiService, MidiSetup, TunerState, describe_target};

/// How often meters, tuner and engine events are refreshed.
pub const TICK: Duration = Duration::from_millis(33);
/// MIDI monitor lines kept for the settings page.
const MONITOR_LINES: usize = 40;
/// How often a lost audio device is looked for again (opening devices can take a moment on some hosts).
const REOPEN_EVERY: Duration = Duration::from_secs(1);
/// How long a status message stays in the status bar.
const NOTICE_FOR: Duration = Duration::from_secs(6);
/// The window's size at start: readable at 1280×720, scales up.
pub const WINDOW_SIZE: (f32, f32) = (1280.0, 720.0);

/// What the app is asked to do at start.
#[derive(Debug, Clone, Default)]
pub struct Options {
    pub preset: Option<PathBuf>,
    /// Do not open audio devices (tests, screenshots on machines without sound): the engine runs offline playing
    /// the demo loop.
    pub offline: bool,
    /// Write `main.png` and `settings.png` into this folder after the board has run a moment, then quit.
    pub screenshot: Option<PathBuf>,
    /// Where settings live (default: the user's config folder).
    pub settings_path: Option<PathBuf>,
    /// Where user presets live (default: the user's data folder).
    pub presets_dir: Option<PathBuf>,
    /// Offline on silence instead of the demo loop (tests drive the engine themselves).
    pub silent: bool,
    /// Problems found before the window opened (e.g. copying the factory presets), shown in the status line.
    pub notes: Vec<String>,
}

/// A status-bar message.
#[derive(Debug, Clone, PartialEq)]
pub struct Notice {
    pub text: String,
    pub error: bool,
    at: Instant,
}

/// A pedal being dragged to a new place.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Drag {
    pub slot: SlotId,
    /// The chain position it would drop at.
    pub over: Option<usize>,
}

/// Naming a preset (Save As, Rename).
#[derive(Debug, Clone, PartialEq)]
pub struct Naming {
    pub rename: bool,
    pub text: String,
}

/// MIDI learn: armed until the player touches a control on screen, then waiting for one on the MIDI device.
#[derive(Debug, Clone, PartialEq)]
pub enum Learn {
    Armed,
    Waiting { target: Target, what: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Screen {
    Board,
    Settings,
}

#[derive(Debug, Clone)]
pub enum Message {
    Tick,
    Knob(SlotId, ParamId, KnobEvent),
    /// An on/off parameter clicked.
    ToggleParam(SlotId, ParamId),
    /// The XY pad of a pedal that has one (its two parameters at once).
    Pad(SlotId, PadEvent),
    /// One axis of a pad picked by its label (what MIDI learn maps, since the pad moves both at once).
    PadAxis(SlotId, ParamId),
    Footswitch(SlotId),
    DragStart(SlotId),
    /// The cursor entered the pedal at this chain position (or the end slot) while dragging.
    DragOver(usize),
    /// The mouse button went up: drop where the drag is over.
    DragEnd,
    Remove(SlotId),
    /// Show or hide the palette of pedals to add.
    Palette(bool),
    Add(&'static str),
    PresetPicked(usize),
    StepPreset(i32),
    Save,
    StartNaming {
        rename: bool,
    },
    NameInput(String),
    NameCommit,
    NameCancel,
    DeletePreset,
    ToggleRecord,
    TunerMute,
    ToggleLearn,
    /// Open a native file dialog for the pedal's model or IR.
    OpenFile(SlotId),
    FileChosen(SlotId, Option<PathBuf>),
    /// A file picked in the model browser (or by previous/next).
    UseModel(SlotId, PathBuf),
    StepModel(SlotId, i32),
    Show(Screen),
    Settings(settings::Message),
    Key(keyboard::Key, keyboard::Modifiers),
    Screenshot(Option<window::Screenshot>),
}

pub struct App {
    pub(super) session: Session,
    pub(super) library: Library,
    /// The preset file the board came from, if any.
    pub(super) preset_path: Option<PathBuf>,
    pub(super) selected: Option<SlotId>,
    pub(super) drag: Option<Drag>,
    pub(super) palette: bool,
    pub(super) naming: Option<Naming>,
    pub(super) screen: Screen,
    pub(super) settings_page: SettingsPage,
    pub(super) settings: Settings,
    settings_path: Option<PathBuf>,
    pub(super) input_meter: MeterState,
    pub(super) output_meter: MeterState,
    pub(super) tuner: Option<(u8, f32)>,
    pub(super) tuner_muted: bool,
    pub(super) cpu: f32,
    /// The compressors' gain reduction, shown on their pedals.
    pub(super) gain_reduction: neuralboard_engine::GainReductions,
    pub(super) notice: Option<Notice>,
    /// The last MIDI message and what it did, or the MIDI state ("MIDI unavailable: …").
    pub(super) midi_status: String,
    pub(super) midi_monitor: VecDeque<String>,
    /// Why MIDI cannot be used, if it cannot.
    pub(super) midi_problem: Option<String>,
    pub(super) learn: Option<Learn>,
    midi: Option<MidiService>,
    midi_notices: mpsc::Receiver<MidiNotice>,
    /// What the MIDI service was last told, to tell it again only when it changes.
    midi_board: Vec<neuralboard_engine::SlotId>,
    midi_map: MidiMap,
    /// Problems loading a pedal's file, shown on the pedal (the old model keeps playing).
    pub(super) pedal_errors: Vec<(SlotId, String)>,
    last_tick: Instant,
    /// Since when the audio device has been gone, and when it was last looked for; `None` while it plays.
    device_gone: Option<Instant>,
    started: Instant,
    screenshot: Option<ScreenshotPlan>,
}

#[derive(Debug, Clone)]
struct ScreenshotPlan {
    dir: PathBuf,
    taken: usize,
    requested: bool,
}

fn base_dir_of(path: Option<&Path>) -> Option<&Path> {
    path.and_then(Path::parent)
}

impl App {
    /// Builds the app: settings, preset library, the preset to open and the audio session.
    pub fn new(options: Options) -> Self {
        // Folders are created when something is saved into them, not at start.
        let dirs = paths::UserDirs::locate();
        let settings_path =
            options.settings_path.clone().or_else(|| dirs.as_ref().map(|d| Settings::path_in(&d.config)));
        let mut notices = Vec::new();
        let settings = match &settings_path {
            Some(path) => {
                let (settings, notes) = Settings::load_or_default(path);
                notices.extend(notes);
                settings
            }
            None => Settings::default(),
        };
        notices.extend(options.notes.iter().cloned());
        let user_presets = options.presets_dir.clone().or_else(|| dirs.as_ref().map(|d| d.presets.clone()));
        let library = Library::scan(user_presets.clone(), paths::factory_presets());

        let wanted = options
            .preset
            .clone()
            .or_else(|| settings.last_preset.clone().filter(|p| p.is_file()))
            .unwrap_or_else(|| paths::default_preset(user_presets.as_deref()));
        let (preset, preset_path) = match Preset::load(&wanted) {
            Ok(loaded) => {
                notices.extend(loaded.warnings.iter().map(ToString::to_string));
                (loaded.preset, Some(loaded.path))
            }
            Err(e) => {
                notices.push(format!("{e}; starting with an empty board"));
                (Preset::empty("New board"), None)
            }
        };
        let base_dir = base_dir_of(preset_path.as_deref());
        let mut session = if options.silent {
            Session::offline(&preset, base_dir)
        } else if options.offline {
            Session::offline_demo(&preset, base_dir)
        } else {
            Session::open(&settings.audio, &preset, base_dir)
        };
        let (notice_sender, midi_notices) = mpsc::channel();
        let midi_map = MidiMap::merged(&settings.midi, session.controller.midi_map());
        let midi = (!options.silent).then(|| {
            let setup = MidiSetup {
                map: midi_map.clone(),
                board: BoardView::of(&session.controller),
                engine: session.controller.take_midi_sender(),
            };
            MidiService::start(setup, Box::new(move |notice| drop(notice_sender.send(notice))))
        });
        let mut app = Self {
            midi_board: session.controller.slots().iter().map(|s| s.id).collect(),
            midi_map,
            midi,
            midi_notices,
            midi_monitor: VecDeque::new(),
            midi_problem: None,
            learn: None,
            settings_page: SettingsPage::new(&settings),
            session,
            library,
            preset_path,
            selected: None,
            drag: None,
            palette: false,
            naming: None,
            screen: Screen::Board,
            settings,
            settings_path,
            input_meter: MeterState::default(),
            output_meter: MeterState::default(),
            tuner: None,
            tuner_muted: false,
            cpu: 0.0,
            gain_reduction: Default::default(),
            notice: None,
            midi_status: String::new(),
            pedal_errors: Vec::new(),
            last_tick: Instant::now(),
            device_gone: None,
            started: Instant::now(),
            screenshot: options.screenshot.map(|dir| ScreenshotPlan { dir, taken: 0, requested: false }),
        };
        app.selected = app.session.controller.slots().iter().find(|s| s.info.model.is_some()).map(|s| s.id);
        app.set_tuner_mode(false);
        if let Some(note) = notices.into_iter().next() {
            app.notify(note, true);
        } else if let Some(problem) = app.session.problem.clone() {
            app.notify(problem, true);
        }
        app
    }

    pub fn title(&self) -> String {
        let name = self.session.controller.name();
        let mark = if self.session.controller.is_modified() { " •" } else { "" };
        format!("Neuralboard — {name}{mark}")
    }

    pub fn theme(&self) -> Theme {
        style::theme()
    }

    pub fn subscription(&self) -> Subscription<Message> {
        let mut subscriptions = vec![iced::time::every(TICK).map(|_| Message::Tick)];
        subscriptions.push(keyboard::listen().filter_map(|event| match event {
            keyboard::Event::KeyPressed { key, modifiers, .. } => Some(Message::Key(key, modifiers)),
            _ => None,
        }));
        if self.drag.is_some() {
            // A drag released outside the board still ends.
            subscriptions.push(iced::event::listen_with(|event, _, _| match event {
                iced::Event::Mouse(iced::mouse::Event::ButtonReleased(iced::mouse::Button::Left)) => {
                    Some(Message::DragEnd)
                }
                _ => None,
            }));
        }
        Subscription::batch(subscriptions)
    }

    pub(super) fn notify(&mut self, text: impl Into<String>, error: bool) {
        self.notice = Some(Notice { text: text.into(), error, at: Instant::now() });
    }

    /// The controller, for tests that look at what reached the engine.
    #[cfg(test)]
    pub fn session_mut(&mut self) -> &mut Session {
        &mut self.session
    }

    pub fn update(&mut self, message: Message) -> Task<Message> {
        let task = self.handle(message);
        self.sync_midi();
        task
    }

    fn handle(&mut self, message: Message) -> Task<Message> {
        match message {
            Message::Tick => return self.tick(),
            Message::Knob(slot, param, event) => {
                self.learn_target(slot, Some(param));
                let controller = &mut self.session.controller;
                let result = match event {
                    KnobEvent::Set(t) => controller.set_param_normalized(slot, param, t),
                    KnobEvent::Reset => {
                        let default = controller.slot(slot).and_then(|s| s.info.param(param)).map(|p| p.default);
                        match default {
                            Some(default) => controller.set_param(slot, param, default),
                            None => return Task::none(),
                        }
                    }
                };
                if let Err(e) = result {
                    self.notify(e.to_string(), true);
                }
                self.selected = Some(slot);
            }
            Message::Pad(slot, event) => {
                let Some(pad) = self.session.controller.slot(slot).and_then(|s| s.info.pad.clone()) else {
                    return Task::none();
                };
                // MIDI learn takes the pad's X; its axis labels pick either one.
                self.learn_target(slot, Some(pad.x));
                let controller = &mut self.session.controller;
                for (param, position) in [(pad.x, 0), (pad.y, 1)] {
                    let result = match event {
                        PadEvent::Set(x, y) => controller.set_param_normalized(slot, param, [x, y][position]),
                        PadEvent::Reset => {
                            match controller.slot(slot).and_then(|s| s.info.param(param)).map(|p| p.default) {
                                Some(default) => controller.set_param(slot, param, default),
                                None => continue,
                            }
                        }
                    };
                    if let Err(e) = result {
                        self.notify(e.to_string(), true);
                        break;
                    }
                }
                self.selected = Some(slot);
            }
            Message::PadAxis(slot, param) => {
                self.learn_target(slot, Some(param));
                self.selected = Some(slot);
            }
            Message::ToggleParam(slot, param) => {
                let current = self.session.controller.slot(slot).and_then(|s| s.value(param));
                if let Some(v) = current {
                    let value = if v >= 0.5 { 0.0 } else { 1.0 };
                    if let Err(e) = self.session.controller.set_param(slot, param, value) {
                        self.notify(e.to_string(), true);
                    }
                }
            }
            // In MIDI learn, touching a footswitch picks it as the target without switching it.
            Message::Footswitch(slot) if self.learn.is_some() => self.learn_target(slot, None),
            Message::Footswitch(slot) => self.toggle_bypass(slot),
            Message::DragStart(slot) => {
                self.selected = Some(slot);
                self.drag = Some(Drag { slot, over: None });
            }
            Message::DragOver(index) => {
                if let Some(drag) = &mut self.drag {
                    drag.over = Some(index);
                }
            }
            Message::DragEnd => {
                if let Some(Drag { slot, over: Some(to) }) = self.drag.take() {
                    let from = self.session.controller.slots().iter().position(|s| s.id == slot);
                    if from != Some(to) {
                        let to = to.min(self.session.controller.slots().len().saturating_sub(1));
                        if let Err(e) = self.session.controller.move_pedal(slot, to) {
                            self.notify(e.to_string(), true);
                        }
                    }
                }
            }
            Message::Remove(slot) => {
                if let Err(e) = self.session.controller.remove_pedal(slot) {
                    self.notify(e.to_string(), true);
                }
                if self.selected == Some(slot) {
                    self.selected = None;
                }
            }
            Message::Palette(open) => self.palette = open,
            Message::Add(kind) => {
                self.palette = false;
                return self.add_pedal(kind);
            }
            Message::PresetPicked(index) => self.load_library_preset(index),
            Message::StepPreset(step) => self.step_preset(step),
            Message::Save => self.save(),
            Message::StartNaming { rename } => {
                if rename && !self.is_user_preset() {
                    self.notify("factory presets cannot be renamed; use Save As to keep a copy", true);
                    return Task::none();
                }
                let text = self.session.controller.name().to_owned();
                self.naming = Some(Naming { rename, text });
                return iced::widget::operation::focus(topbar::NAME_INPUT);
            }
            Message::NameInput(text) => {
                if let Some(naming) = &mut self.naming {
                    naming.text = text;
                }
            }
            Message::NameCommit => self.commit_name(),
            Message::NameCancel => self.naming = None,
            Message::DeletePreset => self.delete_preset(),
            Message::ToggleRecord => self.toggle_record(),
            Message::TunerMute => self.set_tuner_mode(!self.tuner_muted),
            Message::ToggleLearn => {
                if self.learn.take().is_some() {
                    if let Some(midi) = &self.midi {
                        midi.cancel_learn();
                    }
                } else {
                    self.learn = Some(Learn::Armed);
                }
            }
            Message::OpenFile(slot) => return self.open_file_dialog(slot),
            Message::FileChosen(slot, Some(path)) | Message::UseModel(slot, path) => self.use_model(slot, &path),
            Message::FileChosen(_, None) => {}
            Message::StepModel(slot, step) => {
                if let Some(path) = board::neighbour_model(self, slot, step) {
                    self.use_model(slot, &path);
                }
            }
            Message::Show(screen) => {
                self.screen = screen;
                self.naming = None;
                if screen == Screen::Settings {
                    self.settings_page = SettingsPage::new(&self.settings);
                    return settings::load_catalog();
                }
            }
            Message::Settings(message) => return self.settings_message(message),
            Message::Key(key, modifiers) => return self.key(key, modifiers),
            Message::Screenshot(shot) => return self.screenshot_taken(shot),
        }
        Task::none()
    }

    fn tick(&mut self) -> Task<Message> {
        if self.screenshot_frozen() {
            return self.screenshot_step();
        }
        let now = Instant::now();
        let dt = now.duration_since(self.last_tick).as_secs_f32().min(0.5);
        self.last_tick = now;
        self.session.tick(dt);
        let controller = &mut self.session.controller;
        for event in controller.poll() {
            if let neuralboard_engine::Event::PedalFault { slot, .. } = event {
                let name = controller.slot(slot).map_or("a pedal".to_owned(), |s| s.info.name.clone());
                self.notice = Some(Notice {
                    text: format!("{name} produced an invalid signal and was reset"),
                    error: true,
                    at: now,
                });
            }
        }
        controller.collect_garbage();
        while let Ok(notice) = self.midi_notices.try_recv() {
            self.midi_notice(notice);
        }
        let controller = &mut self.session.controller;
        let t = controller.telemetry();
        self.input_meter.update(t.input.peak, t.input.rms, t.input.clipped, dt);
        self.output_meter.update(t.output.peak, t.output.rms, t.output.clipped, dt);
        self.tuner = t.tuner.map(|r| (r.note, r.cents));
        self.cpu = t.cpu_load;
        self.gain_reduction = t.gain_reduction;
        if self.notice.as_ref().is_some_and(|n| now.duration_since(n.at) > NOTICE_FOR) {
            self.notice = None;
        }
        self.follow_device(now);
        self.screenshot_step()
    }

    /// When the device goes away (unplugged, server stopped), the board runs offline and the device is looked for
    /// again every [`REOPEN_EVERY`] until it is back.
    fn follow_device(&mut self, now: Instant) {
        if self.session.device_lost() {
            self.notify("the audio device went away; the board reopens it when it returns", true);
            self.device_gone = Some(now - REOPEN_EVERY);
        }
        let Some(tried) = self.device_gone else { return };
        if now.duration_since(tried) < REOPEN_EVERY {
            return;
        }
        let audio = self.session.audio.clone();
        let base = base_dir_of(self.preset_path.as_deref()).map(Path::to_owned);
        self.session.reopen(&audio, base.as_deref());
        self.reattach_midi();
        if self.session.problem.is_none() {
            self.device_gone = None;
            self.notify("audio device back", false);
        } else {
            self.device_gone = Some(now);
        }
    }

    fn toggle_bypass(&mut self, slot: SlotId) {
        let bypassed = self.session.controller.slot(slot).map(|s| s.bypassed);
        if let Some(bypassed) = bypassed
            && let Err(e) = self.session.controller.set_bypass(slot, !bypassed)
        {
            self.notify(e.to_string(), true);
        }
    }

    fn add_pedal(&mut self, kind: &'static str) -> Task<Message> {
        let index = self.session.controller.slots().len();
        let needs_model = effects::find(kind).is_some_and(|k| k.needs_model);
        let entry = PresetSlot::new(kind);
        if needs_model {
            // A pedal that plays a file starts with the first one available, so it makes sound at once.
            let Some(path) = board::models_for(kind).into_iter().next().map(|m| m.path) else {
                self.notify(format!("no files for {kind}: put some in your models folder or use Open"), true);
                return Task::none();
            };
            let entry = PresetSlot { model: Some(board::preset_path_for(&path)), ..entry };
            match self.session.controller.insert_slot(index, &entry, None) {
                Ok(id) => self.selected = Some(id),
                Err(e) => self.notify(e.to_string(), true),
            }
        } else {
            match self.session.controller.insert_pedal(index, kind) {
                Ok(id) => self.selected = Some(id),
                Err(e) => self.notify(e.to_string(), true),
            }
        }
        Task::none()
    }

    /// Gives a pedal another model or IR file. Built here before anything changes: a file that cannot be played
    /// is reported on the pedal and the old one keeps playing.
    fn use_model(&mut self, slot: SlotId, path: &Path) {
        let controller = &self.session.controller;
        let Some(index) = controller.slots().iter().position(|s| s.id == slot) else { return };
        let Some(mut entry) = controller.to_preset().chain.into_iter().nth(index) else { return };
        entry.model = Some(board::preset_path_for(path));
        self.pedal_errors.retain(|(s, _)| *s != slot);
        match self.session.controller.replace_pedal(slot, &entry, None) {
            Ok(()) => {
                let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
                self.notify(format!("loaded {name}"), false);
            }
            Err(err) => {
                let message = err.to_string();
                self.notify(format!("{message} — the previous file keeps playing"), true);
                self.pedal_errors.push((slot, message));
            }
        }
    }

    fn open_file_dialog(&mut self, slot: SlotId) -> Task<Message> {
        let Some(kind) = self.session.controller.slot(slot).map(|s| s.kind().to_owned()) else { return Task::none() };
        let (label, extensions): (&str, &[&str]) =
            if kind == "cab" { ("Impulse responses", &["wav"]) } else { ("Neural Amp Modeler models", &["nam"]) };
        let folder = board::user_folder_for(&kind);
        Task::perform(
            async move {
                let mut dialog = rfd::AsyncFileDialog::new().add_filter(label, extensions).set_title("Open");
                if let Some(folder) = folder.filter(|f| f.is_dir()) {
                    dialog = dialog.set_directory(folder);
                }
                dialog.pick_file().await.map(|f| f.path().to_owned())
            },
            move |path| Message::FileChosen(slot, path),
        )
    }

    pub(super) fn is_user_preset(&self) -> bool {
        let user = self.library.user_dir.as_deref();
        self.preset_path.as_deref().and_then(Path::parent).is_some_and(|p| Some(p) == user)
    }

    #[cfg(test)]
    pub fn library_index(&self, path: &Path) -> Option<usize> {
        self.library.index_of(path)
    }

    pub(super) fn current_preset_index(&self) -> Option<usize> {
        self.preset_path.as_deref().and_then(|p| self.library.index_of(p))
    }

    fn load_preset_file(&mut self, path: &Path) {
        match Preset::load(path) {
            Ok(loaded) => {
                let base = loaded.base_dir().map(Path::to_owned);
                if let Err(e) = self.session.controller.load_preset(&loaded.preset, base.as_deref()) {
                    self.notify(e.to_string(), true);
                    return;
                }
                self.preset_path = Some(loaded.path.clone());
                self.pedal_errors.clear();
                self.selected = self.session.controller.slots().iter().find(|s| s.info.model.is_some()).map(|s| s.id);
                let missing: Vec<String> = self
                    .session
                    .controller
                    .slots()
                    .iter()
                    .filter_map(|s| match &s.status {
                        neuralboard_engine::SlotStatus::Missing { reason } => Some(reason.clone()),
                        neuralboard_engine::SlotStatus::Ready => None,
                    })
                    .collect();
                if let Some(first) = missing.first() {
                    self.notify(format!("{}: {first}", loaded.preset.name), true);
                } else if let Some(w) = loaded.warnings.first() {
                    self.notify(w.to_string(), true);
                } else {
                    self.notify(format!("loaded {}", loaded.preset.name), false);
                }
                self.remember_preset(loaded.path);
            }
            Err(e) => self.notify(format!("{e}; the board stays as it was"), true),
        }
    }

    fn load_library_preset(&mut self, index: usize) {
        if let Some(entry) = self.library.entries.get(index).cloned() {
            self.load_preset_file(&entry.path);
        }
    }

    fn step_preset(&mut self, step: i32) {
        let n = self.library.entries.len() as i32;
        if n == 0 {
            return;
        }
        let index = match self.current_preset_index() {
            Some(i) => (i as i32 + step).rem_euclid(n),
            None => 0,
        };
        self.load_library_preset(index as usize);
    }

    fn save(&mut self) {
        let preset = self.session.controller.to_preset();
        match self.library.save(&preset, self.preset_path.as_deref()) {
            Ok(path) => self.saved(path, &preset.name),
            Err(e) => self.notify(e.to_string(), true),
        }
    }

    /// The board was saved as `name` in `path`: it is now that preset, and the one to open next time.
    fn saved(&mut self, path: PathBuf, name: &str) {
        self.session.controller.mark_saved(name);
        self.notify(format!("saved {}", path.display()), false);
        self.preset_path = Some(path.clone());
        self.remember_preset(path);
    }

    fn remember_preset(&mut self, path: PathBuf) {
        self.settings.last_preset = Some(path);
        self.save_settings();
    }

    fn commit_name(&mut self) {
        let Some(naming) = self.naming.take() else { return };
        let result = if naming.rename {
            match self.preset_path.clone() {
                Some(path) => self.library.rename(&path, &naming.text),
                None => Err(super::library::LibraryError::Factory),
            }
        } else {
            let mut preset = self.session.controller.to_preset();
            self.library.save_as(&mut preset, &naming.text)
        };
        match result {
            Ok(path) => self.saved(path, naming.text.trim()),
            Err(e) => self.notify(e.to_string(), true),
        }
    }

    fn delete_preset(&mut self) {
        let Some(path) = self.preset_path.clone() else { return };
        match self.library.delete(&path) {
            Ok(trash) => {
                self.notify(format!("deleted (kept in {})", trash.display()), false);
                self.preset_path = None;
                self.session.controller.mark_modified();
            }
            Err(e) => self.notify(e.to_string(), true),
        }
    }

    fn toggle_record(&mut self) {
        if let Some(result) = self.session.stop_take() {
            match result {
                Ok(summary) => {
                    let overruns =
                        if summary.overruns > 0 { format!(", {} overruns", summary.overruns) } else { String::new() };
                    self.notify(
                        format!("take saved: {} ({:.1} s{overruns})", summary.files.out.display(), summary.seconds),
                        false,
                    );
                }
                Err(e) => self.notify(format!("take ended with an error: {e}"), true),
            }
            return;
        }
        match self.session.start_take(None) {
            Ok(files) => self.notify(format!("recording {}", files.out.display()), false),
            Err(e) => self.notify(e, true),
        }
    }

    fn key(&mut self, key: keyboard::Key, modifiers: keyboard::Modifiers) -> Task<Message> {
        use keyboard::key::Named;
        if self.naming.is_some() {
            if key == keyboard::Key::Named(Named::Escape) {
                self.naming = None;
            }
            return Task::none();
        }
        match key.as_ref() {
            keyboard::Key::Named(Named::Space) => self.toggle_record(),
            keyboard::Key::Named(Named::ArrowRight | Named::ArrowDown) => self.step_preset(1),
            keyboard::Key::Named(Named::ArrowLeft | Named::ArrowUp) => self.step_preset(-1),
            keyboard::Key::Named(Named::Escape) => {
                self.palette = false;
                self.drag = None;
                self.screen = Screen::Board;
            }
            keyboard::Key::Named(Named::Delete) => {
                if let Some(slot) = self.selected {
                    return self.update(Message::Remove(slot));
                }
            }
            keyboard::Key::Character("b") if !modifiers.command() => {
                if let Some(slot) = self.selected {
                    self.toggle_bypass(slot);
                }
            }
            keyboard::Key::Character("s") if modifiers.command() => self.save(),
            keyboard::Key::Character("t") if !modifiers.command() => return self.update(Message::TunerMute),
            _ => {}
        }
        Task::none()
    }

    fn settings_message(&mut self, message: settings::Message) -> Task<Message> {
        match self.settings_page.update(message, &self.settings.midi.mappings) {
            Some(settings::Event::Apply(audio)) => {
                self.settings.audio = audio;
                let base = base_dir_of(self.preset_path.as_deref()).map(Path::to_owned);
                self.session.reopen(&self.settings.audio, base.as_deref());
                self.reattach_midi();
                match self.session.problem.clone() {
                    Some(problem) => self.notify(problem, true),
                    None => self.notify(format!("audio: {}", self.session.describe()), false),
                }
                self.save_settings();
            }
            Some(settings::Event::DeleteMapping(index)) if index < self.settings.midi.mappings.len() => {
                self.settings.midi.mappings.remove(index);
                self.save_settings();
            }
            Some(settings::Event::DeleteMapping(_)) => {}
            Some(settings::Event::EditMapping(index, mapping)) => {
                if let Some(m) = self.settings.midi.mappings.get_mut(index) {
                    *m = mapping;
                    self.save_settings();
                }
            }
            Some(settings::Event::Close) => self.screen = Screen::Board,
            Some(settings::Event::Rescan) => return settings::load_catalog(),
            None => {}
        }
        Task::none()
    }

    fn save_settings(&mut self) {
        if let Some(path) = &self.settings_path
            && let Err(e) = self.settings.save(path)
        {
            self.notify(format!("settings not saved: {e}"), true);
        }
    }

    /// How long the board runs before a screenshot, and how long before that its display stops changing: a
    /// screenshot renders the frame again, and text or meters that changed in that very frame can come out blank.
    fn screenshot_times(plan: &ScreenshotPlan) -> (Duration, Duration) {
        let settle = Duration::from_millis(if plan.taken == 0 { 2500 } else { 1000 });
        (settle, settle - Duration::from_millis(400))
    }

    fn screenshot_frozen(&self) -> bool {
        self.screenshot.as_ref().is_some_and(|plan| self.started.elapsed() >= Self::screenshot_times(plan).1)
    }

    /// Screenshot mode: the main window after the board has played a moment, then the settings page.
    fn screenshot_step(&mut self) -> Task<Message> {
        let Some(plan) = &mut self.screenshot else { return Task::none() };
        let (settle, _) = Self::screenshot_times(plan);
        if plan.requested || self.started.elapsed() < settle {
            return Task::none();
        }
        plan.requested = true;
        window::latest().and_then(window::screenshot).map(|shot| Message::Screenshot(Some(shot)))
    }

    fn screenshot_taken(&mut self, shot: Option<window::Screenshot>) -> Task<Message> {
        let Some(plan) = &mut self.screenshot else { return Task::none() };
        let name = if plan.taken == 0 { "main.png" } else { "settings.png" };
        if let Some(shot) = shot {
            let path = plan.dir.join(name);
            if let Err(e) = save_png(&path, &shot) {
                eprintln!("neuralboard: screenshot {}: {e}", path.display());
            } else {
                println!("wrote {}", path.display());
            }
        }
        plan.taken += 1;
        plan.requested = false;
        if plan.taken >= 2 {
            return iced::exit();
        }
        self.started = Instant::now();
        self.update(Message::Show(Screen::Settings))
    }

    pub fn view(&self) -> Element<'_, Message> {
        let body = match self.screen {
            Screen::Board => board::view(self),
            Screen::Settings => self
                .settings_page
                .view(&self.session, &self.settings, &self.midi_monitor, self.midi_problem.as_deref())
                .map(Message::Settings),
        };
        let status = self.notice.as_ref().map_or_else(
            || text(self.library_hint()).size(13).color(style::DIM),
            |n| text(n.text.clone()).size(13).color(if n.error { style::DANGER } else { style::GOOD }),
        );
        let status_bar = container(
            row![status.width(Length::Fill), text(self.session.describe()).size(12).color(style::DIM)].spacing(16),
        )
        .padding([6, 16])
        .width(Length::Fill)
        .style(style::bar);
        column![topbar::view(self), container(body).height(Length::Fill), status_bar].into()
    }

    pub(super) fn midi_activity(&self) -> String {
        match &self.learn {
            Some(Learn::Armed) => "MIDI learn: touch a knob or footswitch on the board".to_owned(),
            Some(Learn::Waiting { what, .. }) => format!("MIDI learn: move a control on your MIDI device for {what}"),
            None => self.midi_status.clone(),
        }
    }

    /// In MIDI learn, makes the control just touched (a knob, or a footswitch when `param` is `None`) the target.
    fn learn_target(&mut self, slot: SlotId, param: Option<ParamId>) {
        if self.learn.is_none() {
            return;
        }
        let controller = &self.session.controller;
        let Some(index) = controller.slots().iter().position(|s| s.id == slot) else { return };
        let target = match param.and_then(|p| controller.slots()[index].info.param(p)) {
            Some(spec) => {
                Target::Param { slot: index, param: spec.id.to_owned(), min: 0.0, max: 1.0, curve: midi::Curve::Linear }
            }
            None => Target::Bypass { slot: index, mode: SwitchMode::Toggle },
        };
        let what = describe_target(&target, &BoardView::of(controller));
        if let Some(midi) = &self.midi {
            midi.learn(target.clone());
        }
        self.learn = Some(Learn::Waiting { target, what });
    }

    /// Tuning mode (the output muted while the tuner shows the note). The tuner itself always runs for the display.
    fn set_tuner_mode(&mut self, on: bool) {
        self.tuner_muted = on;
        if let Err(e) = self.session.controller.set_tuner(true, on) {
            self.notify(e.to_string(), true);
        }
        if let Some(midi) = &self.midi {
            midi.set_tuner(TunerState { enabled: on, mute: true });
        }
    }

    fn midi_notice(&mut self, notice: MidiNotice) {
        match &notice {
            MidiNotice::NextPreset => self.step_preset(1),
            MidiNotice::PreviousPreset => self.step_preset(-1),
            MidiNotice::SelectPreset { bank, program } => {
                let index = usize::from(*bank) * 128 + usize::from(*program);
                if index < self.library.entries.len() {
                    self.load_library_preset(index);
                } else {
                    self.notify(
                        format!("MIDI program {index}: there are {} presets", self.library.entries.len()),
                        true,
                    );
                }
            }
            MidiNotice::Learned { mapping } => {
                self.settings.midi.insert_learned(mapping.clone());
                self.save_settings();
                let what = describe_target(&mapping.target, &BoardView::of(&self.session.controller));
                self.notify(format!("MIDI learn: {} → {what}", mapping.source), false);
                self.learn = None;
            }
            MidiNotice::Tuner { enabled } => {
                // The service switched the engine's tuner; the display keeps it running, muted or not.
                self.tuner_muted = *enabled;
                let _ = self.session.controller.set_tuner(true, *enabled);
            }
            MidiNotice::Unavailable { reason } => {
                // The whole story on the settings page; the bar keeps to one short line.
                self.midi_problem = Some(format!("MIDI unavailable: {reason}"));
                self.midi_status = "MIDI unavailable (see Settings)".to_owned();
                return;
            }
            MidiNotice::Available => self.midi_problem = None,
            _ => {}
        }
        let line = notice.to_string();
        if matches!(notice, MidiNotice::Message { .. }) {
            if self.midi_monitor.len() == MONITOR_LINES {
                self.midi_monitor.pop_front();
            }
            self.midi_monitor.push_back(line.clone());
        }
        self.midi_status = line;
    }

    /// Tells the MIDI service what changed: the chain (so mappings address the right pedals) and the mappings.
    fn sync_midi(&mut self) {
        let Some(midi) = &self.midi else { return };
        let ids: Vec<SlotId> = self.session.controller.slots().iter().map(|s| s.id).collect();
        if ids != self.midi_board {
            midi.set_board(BoardView::of(&self.session.controller));
            self.midi_board = ids;
        }
        let map = MidiMap::merged(&self.settings.midi, self.session.controller.midi_map());
        if map != self.midi_map {
            midi.set_map(map.clone());
            self.midi_map = map;
        }
    }

    /// After the audio session was reopened: the new engine's MIDI queue goes to the service.
    fn reattach_midi(&mut self) {
        let sender = self.session.controller.take_midi_sender();
        if let Some(midi) = &self.midi {
            midi.set_engine(sender, BoardView::of(&self.session.controller));
        }
        self.midi_board = self.session.controller.slots().iter().map(|s| s.id).collect();
        self.set_tuner_mode(self.tuner_muted);
    }

    /// A MIDI service without ports for the tests, which feed it bytes.
    #[cfg(test)]
    pub fn attach_test_midi(&mut self) -> crate::midi_io::ports::PortFeed {
        let (notices, receiver) = mpsc::channel();
        let setup = MidiSetup {
            map: self.midi_map.clone(),
            board: BoardView::of(&self.session.controller),
            engine: self.session.controller.take_midi_sender(),
        };
        let midi = MidiService::without_ports(setup, Box::new(move |notice| drop(notices.send(notice))));
        let feed = midi.port_feed("test pedalboard");
        self.midi = Some(midi);
        self.midi_notices = receiver;
        feed
    }

    fn library_hint(&self) -> String {
        match &self.library.user_dir {
            Some(dir) => format!("Your presets: {}", dir.display()),
            None => "No user folder: presets cannot be saved".to_owned(),
        }
    }
}

fn save_png(path: &Path, shot: &window::Screenshot) -> anyhow::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let file = std::io::BufWriter::new(std::fs::File::create(path)?);
    let mut encoder = png::Encoder::new(file, shot.size.width, shot.size.height);
    encoder.set_color(png::ColorType::Rgba);
    encoder.set_depth(png::BitDepth::Eight);
    let mut writer = encoder.write_header()?;
    writer.write_image_data(&shot.rgba)?;
    writer.finish()?;
    Ok(())
}

/// Small flat button used in bars and panels.
pub(super) fn flat_button(label: &str, message: Message) -> button::Button<'_, Message> {
    button(text(label).size(14)).padding([6, 12]).style(style::flat(false)).on_press(message)
}
