//! `neuralboard play`: the live board without a window.

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use neuralboard_engine::midi::MidiMap;
use neuralboard_engine::preset::{self, LoadedPreset, Preset};
use neuralboard_engine::settings::{AudioSettings, Settings};
use neuralboard_engine::takes::TakeRecorder;
use neuralboard_engine::{Controller, Engine, EngineConfig, SlotStatus, paths};

use crate::live::{self, LiveAudio, LiveOptions, LiveStats, Source};
use crate::midi_io::{BoardView, MidiNotice, MidiService, MidiSetup};

pub struct PlayArgs {
    /// What the command line asked for; settings fill in what it leaves out.
    pub options: LiveOptions,
    /// `--no-input`: do not route the input even if the settings say so.
    pub no_input: bool,
    pub preset: Option<PathBuf>,
    pub seconds: Option<f32>,
    pub stats_json: Option<PathBuf>,
    /// Record a take (dry input and board output) into the takes folder.
    pub record: bool,
}

/// What a run measured (also written as JSON for scripts and tests).
#[derive(Debug, Default, serde::Serialize)]
pub struct PlayReport {
    pub host: String,
    pub output_device: String,
    pub input_device: Option<String>,
    pub sample_rate: u32,
    pub buffer: Option<u32>,
    pub seconds: f64,
    pub output_callbacks: u64,
    pub callbacks_per_second: f64,
    /// Output frames per wall-clock second divided by the sample rate: 1.0 is real-time pacing.
    pub pacing: f64,
    pub xruns: u64,
    pub input_starved_frames: u64,
    pub input_dropped_frames: u64,
    pub stream_errors: u64,
    /// Callbacks in which the board itself used more CPU time than the period lasts.
    pub engine_overruns: u64,
    pub max_callback_cpu_ms: f64,
    pub device_reopened: u64,
    pub cpu_load: f32,
    pub cpu_peak: f32,
    pub output_peak_dbfs: f32,
    pub output_rms_dbfs: f32,
    pub estimated_latency_ms: f64,
}

fn load_preset(path: Option<&PathBuf>) -> anyhow::Result<LoadedPreset> {
    let user_presets = paths::UserDirs::locate().map(|dirs| dirs.presets);
    let path = path.cloned().unwrap_or_else(|| paths::default_preset(user_presets.as_deref()));
    let loaded = Preset::load(&path)?;
    for warning in &loaded.warnings {
        eprintln!("neuralboard: warning: {warning}");
    }
    Ok(loaded)
}

/// The settings file (when there is a home folder) and the settings in it, or the defaults; what is wrong with the
/// file is printed as warnings.
fn load_settings() -> (Option<PathBuf>, Settings) {
    let path = paths::UserDirs::locate().map(|dirs| Settings::path_in(&dirs.config));
    let settings = match &path {
        Some(path) => {
            let (saved, notes) = Settings::load_or_default(path);
            for note in notes {
                eprintln!("neuralboard: warning: {note}");
            }
            saved
        }
        None => Settings::default(),
    };
    (path, settings)
}

/// The global MIDI mappings from the settings, and the preset `play` would start with (whose own mappings add to
/// them), if it loads: what `neuralboard midi monitor` shows the effect of.
pub fn saved_midi_maps() -> (MidiMap, Option<LoadedPreset>) {
    let (_, settings) = load_settings();
    let preset = load_preset(settings.last_preset.filter(|p| p.is_file()).as_ref()).ok();
    (settings.midi, preset)
}

fn warn_about_missing_pedals(controller: &Controller) {
    for slot in controller.slots() {
        if slot.status != SlotStatus::Ready {
            eprintln!("neuralboard: warning: {}: {:?} (passing the signal through)", slot.kind(), slot.status);
        }
    }
}

/// Opens the devices, builds the engine for their rate and loads the preset into it.
fn open(
    args: &PlayArgs,
    preset: &LoadedPreset,
    demo: &[f32],
    recorder: &mut Option<TakeRecorder>,
) -> anyhow::Result<(LiveAudio, Controller)> {
    let plan = live::plan(&args.options)?;
    let config = EngineConfig { sample_rate: plan.info.sample_rate as f32, max_block: live::MAX_CHUNK };
    let (engine, mut controller): (Engine, Controller) = Engine::new(config);
    controller.load_preset(&preset.preset, preset.base_dir())?;
    warn_about_missing_pedals(&controller);
    let source = if args.options.input_channel.is_some() {
        Source::Device
    } else if demo.is_empty() {
        Source::Silence
    } else {
        Source::Loop(demo.to_vec())
    };
    let tap = if args.record {
        let (new_recorder, tap) = TakeRecorder::new(plan.info.sample_rate, live::MAX_CHUNK);
        *recorder = Some(new_recorder);
        Some(tap)
    } else {
        None
    };
    let audio = plan.start(engine, source, tap)?;
    let _ = controller.telemetry(); // drop the warm-up's readings
    Ok((audio, controller))
}

/// Fills what the command line left out from the saved settings.
fn merge(args: &mut PlayArgs, saved: &Settings) {
    let (o, a) = (&mut args.options, &saved.audio);
    if o.host.is_none() {
        o.host.clone_from(&a.host);
        // A device name only means something on the host it was saved for.
        if o.output_device.is_none() {
            o.output_device.clone_from(&a.output_device);
        }
        if o.input_device.is_none() {
            o.input_device.clone_from(&a.input_device);
        }
    }
    if o.input_channel.is_none() && !args.no_input {
        o.input_channel = a.input_channel;
    }
    o.buffer = o.buffer.or(a.buffer);
    o.sample_rate = o.sample_rate.or(a.sample_rate);
    if args.preset.is_none() {
        args.preset = saved.last_preset.clone().filter(|p| p.is_file());
    }
}

/// Remembers what was opened, for the next start.
fn remember(
    path: &std::path::Path,
    mut saved: Settings,
    args: &PlayArgs,
    info: &live::LiveInfo,
    preset: &LoadedPreset,
) {
    saved.audio = AudioSettings {
        host: Some(info.host.clone()),
        output_device: args.options.output_device.clone(),
        input_device: args.options.input_device.clone(),
        input_channel: args.options.input_channel,
        buffer: args.options.buffer,
        sample_rate: args.options.sample_rate,
    };
    saved.last_preset = Some(preset.path.clone());
    if let Err(e) = saved.save(path) {
        eprintln!("neuralboard: warning: settings not saved: {e}");
    }
}

pub fn play_command(mut args: PlayArgs) -> anyhow::Result<()> {
    let (settings_path, saved) = load_settings();
    merge(&mut args, &saved);
    let global_midi = saved.midi.clone();
    let mut preset = load_preset(args.preset.as_ref())?;
    let demo = if args.options.input_channel.is_none() {
        live::demo_loop(args.options.sample_rate.unwrap_or(48_000) as f32)
    } else {
        Vec::new()
    };
    let mut recorder = None;
    let (mut audio, mut controller) = open(&args, &preset, &demo, &mut recorder)?;
    if let Some(recorder) = &mut recorder {
        let folder = paths::UserDirs::locate()
            .map(|dirs| dirs.takes)
            .ok_or_else(|| anyhow::anyhow!("no home folder to keep takes in (set NEURALBOARD_HOME)"))?;
        let files = recorder.start(&folder)?;
        println!("recording {} and {}", files.out.display(), files.dry.display());
    }
    let info = audio.info.clone();
    if let Some(path) = &settings_path {
        remember(path, saved, &args, &info, &preset);
    }
    let (notices_tx, notices) = mpsc::channel();
    let midi = MidiService::start(
        MidiSetup {
            map: MidiMap::merged(&global_midi, &preset.preset.midi),
            board: BoardView::of(&controller),
            engine: controller.take_midi_sender(),
        },
        Box::new(move |notice| {
            let _ = notices_tx.send(notice);
        }),
    );
    println!(
        "playing '{}' on {} → {} ({} ch), {} Hz, buffer {}, input: {}; estimated round trip {:.1} ms",
        preset.preset.name,
        info.host,
        info.output_device,
        info.output_channels,
        info.sample_rate,
        info.buffer.map_or("device default".to_owned(), |b| b.to_string()),
        match (&info.input_device, args.options.input_channel) {
            (Some(device), Some(channel)) => format!("{device} channel {channel} of {}", info.input_channels),
            _ => "demo guitar (no input routed; --input CHANNEL routes one)".to_owned(),
        },
        info.latency_ms(),
    );

    let started = Instant::now();
    // What the stream played before the clock started (warm-up, settings, MIDI start-up) is not counted, so the
    // rates below compare frames and time over the same interval.
    let before_start =
        (audio.stats.output_callbacks.load(Ordering::Relaxed), audio.stats.output_frames.load(Ordering::Relaxed));
    let mut report = PlayReport::default();
    let (mut cpu_sum, mut cpu_readings, mut out_peak, mut out_ms_sum) = (0.0f64, 0u32, 0.0f32, 0.0f64);
    let mut totals = Totals::default();
    let deadline = args.seconds.map(|s| Duration::from_secs_f32(s.max(0.0)));
    loop {
        std::thread::sleep(Duration::from_millis(100));
        let _ = controller.poll();
        while let Ok(notice) = notices.try_recv() {
            let step = match notice {
                // Every message would flood the terminal: `neuralboard midi monitor` shows them.
                MidiNotice::Message { .. } => continue,
                MidiNotice::NextPreset => PresetStep::Next,
                MidiNotice::PreviousPreset => PresetStep::Previous,
                MidiNotice::SelectPreset { bank, program } => {
                    PresetStep::Number(usize::from(bank) * 128 + usize::from(program))
                }
                notice @ (MidiNotice::Unavailable { .. } | MidiNotice::PortFailed { .. }) => {
                    eprintln!("neuralboard: {notice}");
                    continue;
                }
                notice => {
                    println!("{notice}");
                    continue;
                }
            };
            match switch_preset(&preset.path, step, &mut controller) {
                Ok(Some(next)) => {
                    println!("playing '{}' ({})", next.preset.name, next.path.display());
                    midi.set_map(MidiMap::merged(&global_midi, &next.preset.midi));
                    midi.set_board(BoardView::of(&controller));
                    preset = next;
                }
                Ok(None) => {}
                Err(e) => eprintln!("neuralboard: preset not changed: {e}"),
            }
        }
        let t = controller.telemetry();
        if t.frames > 0 {
            cpu_sum += f64::from(t.cpu_load);
            cpu_readings += 1;
            report.cpu_peak = report.cpu_peak.max(t.cpu_peak);
            out_peak = out_peak.max(t.output.peak);
            out_ms_sum += f64::from(t.output.rms * t.output.rms);
        }
        if audio.stats.device_lost.load(Ordering::Relaxed) {
            eprintln!("neuralboard: the audio device went away; reopening it when it returns");
            totals.add(&audio.stats);
            drop(audio);
            loop {
                std::thread::sleep(Duration::from_secs(1));
                // A take cannot span two streams: the one running is finished first (its files stay valid).
                finish_take(&mut recorder);
                match open(&args, &preset, &demo, &mut recorder) {
                    Ok(reopened) => {
                        (audio, controller) = reopened;
                        midi.set_engine(controller.take_midi_sender(), BoardView::of(&controller));
                        report.device_reopened += 1;
                        eprintln!("neuralboard: audio device back");
                        break;
                    }
                    Err(e) if deadline.is_some_and(|d| started.elapsed() >= d) => return Err(e),
                    Err(_) => continue,
                }
            }
        }
        if deadline.is_some_and(|d| started.elapsed() >= d) {
            break;
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    totals.add(&audio.stats);
    totals.callbacks -= before_start.0.min(totals.callbacks);
    totals.frames -= before_start.1.min(totals.frames);
    drop(midi);
    drop(audio);
    finish_take(&mut recorder);

    report.host = info.host.clone();
    report.output_device = info.output_device.clone();
    report.input_device = info.input_device.clone();
    report.sample_rate = info.sample_rate;
    report.buffer = info.buffer;
    report.seconds = elapsed;
    report.output_callbacks = totals.callbacks;
    report.callbacks_per_second = totals.callbacks as f64 / elapsed;
    report.pacing = totals.frames as f64 / elapsed / f64::from(info.sample_rate);
    report.xruns = totals.xruns;
    report.input_starved_frames = totals.starved;
    report.input_dropped_frames = totals.dropped;
    report.stream_errors = totals.errors;
    report.engine_overruns = totals.engine_overruns;
    report.max_callback_cpu_ms = totals.max_callback_cpu_ns as f64 / 1e6;
    report.cpu_load = if cpu_readings > 0 { (cpu_sum / f64::from(cpu_readings)) as f32 } else { 0.0 };
    report.output_peak_dbfs = 20.0 * out_peak.max(1e-10).log10();
    report.output_rms_dbfs = 10.0 * (out_ms_sum / f64::from(cpu_readings.max(1))).max(1e-20).log10() as f32;
    report.estimated_latency_ms = info.latency_ms();
    println!(
        "{:.1} s: {} callbacks ({:.1}/s), pacing {:.3}× real time, {} xruns ({} caused by the board; longest callback \
         {:.2} ms of CPU), input starved {} / dropped {} frames, CPU load {:.1} % (peak {:.1} %), output peak {:.1} \
         dBFS, RMS {:.1} dBFS",
        elapsed,
        report.output_callbacks,
        report.callbacks_per_second,
        report.pacing,
        report.xruns,
        report.engine_overruns,
        report.max_callback_cpu_ms,
        report.input_starved_frames,
        report.input_dropped_frames,
        100.0 * report.cpu_load,
        100.0 * report.cpu_peak,
        report.output_peak_dbfs,
        report.output_rms_dbfs,
    );
    if let Some(path) = &args.stats_json {
        std::fs::write(path, serde_json::to_string_pretty(&report)? + "\n")
            .map_err(|e| anyhow::anyhow!("{}: cannot write: {e}", path.display()))?;
    }
    Ok(())
}

/// Which preset a MIDI footswitch or program change asks for, among the presets in the playing one's folder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PresetStep {
    Next,
    Previous,
    /// Program change: the n-th preset of the folder in name order, counting from 0 (bank * 128 + program).
    Number(usize),
}

/// The presets in a folder, in file name order: what MIDI steps through.
fn presets_in(folder: &Path) -> Vec<PathBuf> {
    let mut presets: Vec<PathBuf> =
        std::fs::read_dir(folder).map(|entries| entries.flatten().map(|e| e.path()).collect()).unwrap_or_default();
    presets.retain(|p| p.is_file() && p.extension().is_some_and(|e| e == preset::EXTENSION));
    presets.sort();
    presets
}

/// The preset `step` leads to from `current` (one of `presets`, all in one folder): wrapping around the folder for
/// next and previous; `None` for a program number beyond the folder's presets, or a step that leads back to
/// `current` (a folder of one).
fn step_preset(current: &Path, presets: &[PathBuf], step: PresetStep) -> Option<PathBuf> {
    let n = presets.len();
    if n == 0 {
        return None;
    }
    let here = presets.iter().position(|p| p.file_name() == current.file_name());
    let index = match (step, here) {
        (PresetStep::Next, Some(i)) => (i + 1) % n,
        (PresetStep::Previous, Some(i)) => (i + n - 1) % n,
        (PresetStep::Next, None) => 0,
        (PresetStep::Previous, None) => n - 1,
        (PresetStep::Number(k), _) => k,
    };
    presets.get(index).filter(|_| Some(index) != here).cloned()
}

/// Loads the preset that `step` leads to onto the board; `Ok(None)` when there is none to go to.
fn switch_preset(
    current: &Path,
    step: PresetStep,
    controller: &mut Controller,
) -> anyhow::Result<Option<LoadedPreset>> {
    let folder = current.parent().filter(|f| !f.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let presets = presets_in(folder);
    let Some(path) = step_preset(current, &presets, step) else {
        if let PresetStep::Number(k) = step {
            eprintln!("neuralboard: no preset number {k} (the folder has {})", presets.len());
        }
        return Ok(None);
    };
    let next = Preset::load(&path)?;
    for warning in &next.warnings {
        eprintln!("neuralboard: warning: {warning}");
    }
    controller.load_preset(&next.preset, next.base_dir())?;
    warn_about_missing_pedals(controller);
    Ok(Some(next))
}

/// Stops a running take and says what it kept.
fn finish_take(recorder: &mut Option<TakeRecorder>) {
    if let Some(mut recorder) = recorder.take().filter(|r| r.is_recording() || r.files().is_some()) {
        match recorder.stop() {
            Ok(summary) => println!(
                "take: {:.1} s in {} and {}{}",
                summary.seconds,
                summary.files.out.display(),
                summary.files.dry.display(),
                if summary.overruns > 0 {
                    format!(" ({} frames lost to overruns)", summary.overruns)
                } else {
                    String::new()
                }
            ),
            Err(e) => eprintln!("neuralboard: error: the take stopped: {e}"),
        }
    }
}

/// Counters summed over reopened streams.
#[derive(Default)]
struct Totals {
    callbacks: u64,
    frames: u64,
    xruns: u64,
    starved: u64,
    dropped: u64,
    errors: u64,
    engine_overruns: u64,
    max_callback_cpu_ns: u64,
}

impl Totals {
    fn add(&mut self, stats: &LiveStats) {
        self.callbacks += stats.output_callbacks.load(Ordering::Relaxed);
        self.frames += stats.output_frames.load(Ordering::Relaxed);
        self.xruns += stats.xruns.load(Ordering::Relaxed);
        self.starved += stats.input_starved.load(Ordering::Relaxed);
        self.dropped += stats.input_dropped.load(Ordering::Relaxed);
        self.errors += stats.errors.load(Ordering::Relaxed);
        self.engine_overruns += stats.engine_overruns.load(Ordering::Relaxed);
        self.max_callback_cpu_ns = self.max_callback_cpu_ns.max(stats.max_callback_cpu_ns.load(Ordering::Relaxed));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn folder() -> Vec<PathBuf> {
        ["p/a.ron", "p/b.ron", "p/c.ron"].map(PathBuf::from).to_vec()
    }

    fn step(current: &str, step: PresetStep) -> Option<String> {
        step_preset(Path::new(current), &folder(), step).map(|p| p.to_string_lossy().into_owned())
    }

    #[test]
    fn footswitches_step_through_the_folder_and_wrap_around() {
        assert_eq!(step("p/a.ron", PresetStep::Next).as_deref(), Some("p/b.ron"));
        assert_eq!(step("p/c.ron", PresetStep::Next).as_deref(), Some("p/a.ron"));
        assert_eq!(step("p/a.ron", PresetStep::Previous).as_deref(), Some("p/c.ron"));
        // The playing preset named another way (./p/b.ron) is still found by its name.
        assert_eq!(step("./p/b.ron", PresetStep::Previous).as_deref(), Some("p/a.ron"));
        // A preset from elsewhere: next starts at the folder's first, previous at its last.
        assert_eq!(step("/x/z.ron", PresetStep::Next).as_deref(), Some("p/a.ron"));
        assert_eq!(step("/x/z.ron", PresetStep::Previous).as_deref(), Some("p/c.ron"));
        let alone = [PathBuf::from("p/a.ron")];
        assert_eq!(step_preset(Path::new("p/a.ron"), &alone, PresetStep::Next), None, "nothing to step to");
        assert_eq!(step_preset(Path::new("p/a.ron"), &[], PresetStep::Next), None);
    }

    #[test]
    fn a_program_change_selects_the_preset_by_its_place_in_the_folder() {
        assert_eq!(step("p/a.ron", PresetStep::Number(2)).as_deref(), Some("p/c.ron"));
        assert_eq!(step("p/a.ron", PresetStep::Number(3)), None, "beyond the folder");
        assert_eq!(step("p/b.ron", PresetStep::Number(1)), None, "already playing");
    }
}
