//! The board's audio session: the engine playing through the devices, or, where there is no output device (and in
//! the tests), running here on the GUI's clock so the board stays live and the controller stays in sync.

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;

use neuralboard_engine::preset::Preset;
use neuralboard_engine::settings::AudioSettings;
use neuralboard_engine::takes::{TakeFiles, TakeRecorder, TakeSummary};
use neuralboard_engine::{Controller, Engine, EngineConfig, paths};

use crate::live::{self, LiveAudio, LiveInfo, LiveOptions, Source};

/// Sample rate of the engine when no device decides it.
const OFFLINE_RATE: f32 = 48_000.0;
/// Frames the offline engine processes per GUI tick: enough to keep meters and tuner moving.
const OFFLINE_BLOCK: usize = 1024;

/// One per app, replaced only when the devices change, so the variants' sizes do not matter.
#[allow(clippy::large_enum_variant)]
enum Backend {
    Live {
        audio: LiveAudio,
        recorder: TakeRecorder,
    },
    /// No output device: the engine runs here, on silence (or a test's input), so commands are applied and the
    /// mirror stays true.
    Offline {
        engine: Engine,
        demo: Vec<f32>,
        position: usize,
    },
}

/// The engine, its controller and where the sound goes.
pub struct Session {
    pub controller: Controller,
    backend: Backend,
    /// The settings it was opened with.
    pub audio: AudioSettings,
    /// Why there is no live audio, in words for the status bar; `None` while playing.
    pub problem: Option<String>,
    /// What feeds the board: "Input 1 of Scarlett 2i2", "demo guitar loop", "silence".
    pub source: String,
}

impl Session {
    /// Opens the devices in `audio` and loads `preset`. Never fails: without a usable output the board runs
    /// offline and [`Session::problem`] says why.
    pub fn open(audio: &AudioSettings, preset: &Preset, base_dir: Option<&Path>) -> Self {
        let options = LiveOptions {
            host: audio.host.clone(),
            input_device: audio.input_device.clone(),
            output_device: audio.output_device.clone(),
            input_channel: audio.input_channel,
            buffer: audio.buffer,
            sample_rate: audio.sample_rate,
        };
        match Self::open_live(&options, preset, base_dir) {
            Ok(session) => Self { audio: audio.clone(), ..session },
            Err(e) => {
                let mut session = Self::offline(preset, base_dir);
                session.problem =
                    Some(format!("No audio output: {e:#}. The board runs silently; pick a device in Settings."));
                session.audio = audio.clone();
                session
            }
        }
    }

    fn open_live(options: &LiveOptions, preset: &Preset, base_dir: Option<&Path>) -> anyhow::Result<Self> {
        let plan = live::plan(options)?;
        let rate = plan.info.sample_rate;
        let config = EngineConfig { sample_rate: rate as f32, max_block: live::MAX_CHUNK };
        let (engine, mut controller) = Engine::new(config);
        let chain = controller.prepare_preset(preset, base_dir);
        let mut engine = engine;
        drop(engine.install_chain(chain));
        let (source, describe) = if options.input_channel.is_some() {
            let channel = options.input_channel.unwrap_or(1);
            let device = plan.info.input_device.clone().unwrap_or_default();
            (Source::Device, format!("input {channel} of {device}"))
        } else {
            (Source::Loop(live::demo_loop(rate as f32)), "demo guitar loop (no input routed)".to_owned())
        };
        let (recorder, tap) = TakeRecorder::new(rate, live::MAX_CHUNK);
        let audio = plan.start(engine, source, Some(tap))?;
        let _ = controller.telemetry();
        Ok(Self {
            controller,
            backend: Backend::Live { audio, recorder },
            audio: AudioSettings::default(),
            problem: None,
            source: describe,
        })
    }

    /// The board without devices (tests): the engine runs on [`Session::tick`], on silence.
    pub fn offline(preset: &Preset, base_dir: Option<&Path>) -> Self {
        Self::offline_with(preset, base_dir, Vec::new())
    }

    /// The board without devices, playing the demo loop at the GUI's pace so meters and tuner show what it does.
    pub fn offline_demo(preset: &Preset, base_dir: Option<&Path>) -> Self {
        let mut session = Self::offline_with(preset, base_dir, live::demo_loop(OFFLINE_RATE));
        session.source = "demo guitar loop, not played: no audio device".to_owned();
        session
    }

    fn offline_with(preset: &Preset, base_dir: Option<&Path>, demo: Vec<f32>) -> Self {
        let (mut engine, mut controller) =
            Engine::new(EngineConfig { sample_rate: OFFLINE_RATE, max_block: OFFLINE_BLOCK });
        let chain = controller.prepare_preset(preset, base_dir);
        drop(engine.install_chain(chain));
        Self {
            controller,
            backend: Backend::Offline { engine, demo, position: 0 },
            audio: AudioSettings::default(),
            problem: None,
            source: "silence".to_owned(),
        }
    }

    /// Closes the devices and opens them again with new settings, keeping the board as it is.
    pub fn reopen(&mut self, audio: &AudioSettings, base_dir: Option<&Path>) {
        let preset = self.controller.to_preset();
        let modified = self.controller.is_modified();
        self.stop_take();
        // The old streams stop before the new ones open: some devices cannot be opened twice.
        self.backend =
            Backend::Offline { engine: Engine::new(EngineConfig::default()).0, demo: Vec::new(), position: 0 };
        *self = Self::open(audio, &preset, base_dir);
        if modified {
            self.controller.mark_modified();
        }
    }

    /// Runs the offline engine for the `dt` seconds since the last tick (at most one block when the session has
    /// nothing to play). Live sessions need nothing: the device's callback runs them.
    pub fn tick(&mut self, dt: f32) {
        let Backend::Offline { engine, demo, position } = &mut self.backend else { return };
        let mut input = [0.0f32; OFFLINE_BLOCK];
        let (mut left, mut right) = ([0.0f32; OFFLINE_BLOCK], [0.0f32; OFFLINE_BLOCK]);
        if demo.is_empty() {
            engine.process(&input, &mut left, &mut right);
            return;
        }
        let mut frames = ((dt * OFFLINE_RATE) as usize).min(4 * OFFLINE_BLOCK);
        while frames > 0 {
            let n = frames.min(OFFLINE_BLOCK).min(demo.len() - *position);
            input[..n].copy_from_slice(&demo[*position..*position + n]);
            engine.process(&input[..n], &mut left[..n], &mut right[..n]);
            *position = (*position + n) % demo.len();
            frames -= n;
        }
    }

    /// Processes `input` through an offline session and returns the left output (tests); `None` when live.
    #[cfg(test)]
    pub fn process(&mut self, input: &[f32]) -> Option<Vec<f32>> {
        let Backend::Offline { engine, .. } = &mut self.backend else { return None };
        let mut left = vec![0.0; input.len()];
        let mut right = vec![0.0; input.len()];
        engine.process(input, &mut left, &mut right);
        Some(left)
    }

    /// The offline engine's chain order (tests); `None` when live.
    #[cfg(test)]
    pub fn engine_order(&self) -> Option<Vec<neuralboard_engine::SlotId>> {
        match &self.backend {
            Backend::Offline { engine, .. } => Some(engine.slot_ids().collect()),
            Backend::Live { .. } => None,
        }
    }

    pub fn info(&self) -> Option<&LiveInfo> {
        match &self.backend {
            Backend::Live { audio, .. } => Some(&audio.info),
            Backend::Offline { .. } => None,
        }
    }

    /// Xruns the device reported and whether it went away.
    pub fn xruns(&self) -> u64 {
        match &self.backend {
            Backend::Live { audio, .. } => audio.stats.xruns.load(Ordering::Relaxed),
            Backend::Offline { .. } => 0,
        }
    }

    pub fn device_lost(&self) -> bool {
        match &self.backend {
            Backend::Live { audio, .. } => audio.stats.device_lost.load(Ordering::Relaxed),
            Backend::Offline { .. } => false,
        }
    }

    /// One line for the status bar: host, device, rate, buffer, latency.
    pub fn describe(&self) -> String {
        match (&self.backend, &self.problem) {
            (Backend::Live { audio, .. }, _) => {
                let i = &audio.info;
                format!(
                    "{} · {} · {} kHz / {} · {:.1} ms round trip · {}",
                    i.host,
                    i.output_device,
                    f64::from(i.sample_rate) / 1000.0,
                    i.buffer.map_or("default".to_owned(), |b| b.to_string()),
                    i.latency_ms(),
                    self.source
                )
            }
            (Backend::Offline { .. }, Some(problem)) => problem.clone(),
            (Backend::Offline { .. }, None) => "offline (no audio device)".to_owned(),
        }
    }

    /// Starts a take in the user's takes folder (or `folder`).
    pub fn start_take(&mut self, folder: Option<PathBuf>) -> Result<TakeFiles, String> {
        let Backend::Live { recorder, .. } = &mut self.backend else {
            return Err("cannot record: no audio device is playing".to_owned());
        };
        let folder = folder
            .or_else(|| paths::UserDirs::locate().map(|d| d.takes))
            .ok_or("no home folder to keep takes in (set NEURALBOARD_HOME)")?;
        recorder.start(&folder).map_err(|e| e.to_string())
    }

    pub fn stop_take(&mut self) -> Option<Result<TakeSummary, String>> {
        match &mut self.backend {
            Backend::Live { recorder, .. } if recorder.is_recording() => {
                Some(recorder.stop().map_err(|e| e.to_string()))
            }
            _ => None,
        }
    }

    /// Seconds recorded so far, when a take is running.
    pub fn take_seconds(&self) -> Option<f64> {
        match &self.backend {
            Backend::Live { recorder, .. } if recorder.is_recording() => Some(recorder.elapsed_seconds()),
            _ => None,
        }
    }

    /// The take's output file name while recording.
    pub fn take_name(&self) -> Option<String> {
        match &self.backend {
            Backend::Live { recorder, .. } => {
                recorder.files().and_then(|f| f.out.file_name()).map(|n| n.to_string_lossy().into_owned())
            }
            Backend::Offline { .. } => None,
        }
    }
}
