//! `neuralboard`: the desktop pedalboard, and its headless subcommands.
//!
//! With no subcommand it opens the GUI; `render` runs the very same engine offline over a WAV file.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

mod live;
mod midi_io;
mod play;
mod ui;

use clap::{Parser, Subcommand};
use neuralboard_engine::param::gain_to_db;
use neuralboard_engine::preset::{LoadedPreset, Preset, PresetSlot};
use neuralboard_engine::render::{self, RenderJob};

#[derive(Parser)]
#[command(name = "neuralboard", version, about = "A guitar pedalboard whose effects are neural networks.")]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Open the pedalboard window (what running without a subcommand does).
    Gui {
        /// Preset to open [default: the last one used, else Clean Practice (your copy, else the factory one)].
        #[arg(long, value_name = "FILE")]
        preset: Option<PathBuf>,
        /// Do not open audio devices: the board runs the demo loop silently (meters and tuner still move).
        #[arg(long)]
        offline: bool,
        /// Write main.png and settings.png of the window into DIR after a few seconds, then quit.
        #[arg(long, value_name = "DIR")]
        screenshot: Option<PathBuf>,
    },
    /// Process a WAV file through a preset's chain, offline, with the same engine the live board uses.
    ///
    /// Reads 8/16/24/32-bit integer and 32-bit float WAV; stereo or multi-channel input is mixed to mono (a
    /// guitar is mono). Writes 32-bit float WAV at the input's sample rate and length: mono, or stereo when the
    /// chain makes stereo.
    ///
    /// With --nam (and optionally --ir) instead of a preset, the chain is that model (and cabinet) alone, rendered
    /// as the reference implementation renders it: prewarmed, raw model output without loudness normalisation or
    /// the safety limiter, sample-aligned with the input, 64-frame blocks by default.
    Render {
        /// Preset (.ron) whose chain and levels to use; without one the signal passes through the input/output
        /// stages and the safety limiter only.
        #[arg(long, value_name = "FILE", conflicts_with_all = ["nam", "ir"])]
        preset: Option<PathBuf>,
        /// Play this Neural Amp Modeler capture.
        #[arg(long, value_name = "MODEL.nam")]
        nam: Option<PathBuf>,
        /// Cabinet impulse response after the amp.
        #[arg(long, value_name = "IR.wav")]
        ir: Option<PathBuf>,
        /// Use the reference plugin's fast tanh approximation in the model (default: accurate tanh).
        #[arg(long, requires = "nam")]
        fast_tanh: bool,
        /// Frames per engine call, as an audio interface's buffer size would be [default: 64 with --nam, else 128].
        #[arg(long, value_name = "N")]
        block: Option<usize>,
        /// Run the kernels of at most this instruction set (baseline, avx2, avx512), to compare their output; by
        /// default the best this CPU runs.
        #[arg(long, value_name = "ISA")]
        isa: Option<String>,
        /// Input WAV file.
        input: PathBuf,
        /// Output WAV file (replaced atomically when the render succeeds).
        output: PathBuf,
    },
    /// Measure how fast a .nam model runs: real-time factor (audio seconds per second of one CPU thread) over
    /// guitar-like input from the corpus generator, at the model's sample rate.
    Bench {
        /// The model to measure: a `.nam` file, or a compressor's `.s4d.json` (measured at its controls' midpoints).
        #[arg(long, visible_alias = "model", value_name = "MODEL.nam", required_unless_present = "shape")]
        nam: Option<PathBuf>,
        /// Instead of a file, a network of a standard shape with seeded pseudo-random weights: WaveNet standard,
        /// lite, feather or nano (the reference trainer's presets), or lstm-H (one layer of H units). For speed only:
        /// the cost of these networks does not depend on the values, and the output means nothing.
        #[arg(long, conflicts_with = "nam", value_name = "SHAPE")]
        shape: Option<String>,
        /// Seconds of audio to process.
        #[arg(long, default_value_t = 60.0)]
        seconds: f32,
        /// Frames per call.
        #[arg(long, default_value_t = 64)]
        block: usize,
        /// Use the fast tanh approximation.
        #[arg(long)]
        fast_tanh: bool,
        /// Run the kernels of at most this instruction set (baseline, avx2, avx512), to compare them on one CPU;
        /// by default the best this CPU runs.
        #[arg(long, value_name = "ISA")]
        isa: Option<String>,
    },
    /// Generate guitar DI material: physically modelled strings played as melodies, chords, strums, palm mutes,
    /// bends and vibrato at every dynamic, with silences and test signals. The same seed always gives the same
    /// audio; training, validation and test splits use disjoint seeds.
    Corpus {
        /// Random seed: the corpus is a pure function of it.
        #[arg(long)]
        seed: u64,
        /// Length in seconds.
        #[arg(long, default_value_t = 60.0)]
        seconds: f32,
        /// Sample rate in Hz.
        #[arg(long, default_value_t = 48_000)]
        rate: u32,
        /// Leave out the sweeps and noise bursts (guitar only).
        #[arg(long)]
        no_test_signals: bool,
        /// Output WAV file (32-bit float, mono).
        output: PathBuf,
    },
    /// Run a WAV file through a DSP "teacher" effect, whose output the neural pedals are trained to imitate.
    ///
    /// Kinds: amp (gain, bass, mid, treble 0..10; master dB), phaser (stages, rate, depth, centre, feedback, mix,
    /// waveform, phase), flanger (delay_ms, depth, rate, feedback, mix, waveform, phase), opto (peak_reduction,
    /// gain, limit). Input is mixed to mono; output is 32-bit float WAV, sample-aligned with the input and of the
    /// same length and rate.
    Teacher {
        /// amp, phaser, flanger or opto.
        kind: String,
        /// A parameter, as name=value (repeatable); waveform takes sine or triangle.
        #[arg(long = "param", value_name = "NAME=VALUE")]
        params: Vec<String>,
        /// Also write the LFO value used for each sample (−1..1) as a WAV (phaser and flanger only).
        #[arg(long, value_name = "LFO.wav")]
        lfo_out: Option<PathBuf>,
        /// Also write the gain-reduction envelopes behind each sample (dB, ≥ 0; opto only) as a two-channel WAV:
        /// the fast envelope, then the slow memory. The gain applied is the larger of the two.
        #[arg(long, value_name = "ENVELOPES.wav")]
        envelopes_out: Option<PathBuf>,
        /// Input WAV file.
        input: PathBuf,
        /// Output WAV file.
        output: PathBuf,
    },
    /// Render one of the project's physically modelled guitar cabinets (speaker in its box, close microphone, floor
    /// reflection) to an impulse response WAV for the cab pedal. Cabinets: 4x12-closed, 1x12-open.
    CabIr {
        /// Which cabinet.
        name: String,
        /// Sample rate in Hz.
        #[arg(long, default_value_t = 48_000)]
        rate: u32,
        /// Output WAV file (32-bit float, mono).
        output: PathBuf,
    },
    /// Check a shipped model against its manifest: regenerate the model's held-out test split (corpus seed, teacher
    /// and settings from NAME.manifest.json beside the model), run the engine's inference over it and print the ESR
    /// against the teacher next to the ESR the training recipe recorded.
    Eval {
        /// The model file (its manifest sits beside it); `reverb` for the shipped reverb decoder.
        #[arg(long, value_name = "FILE")]
        model: PathBuf,
        /// Exit with an error when the ESR differs from the manifest's by more than this fraction.
        #[arg(long, value_name = "FRACTION")]
        check: Option<f64>,
    },
    /// Play the board live, without a window: the engine between an audio input and output, until --seconds
    /// have passed (or Ctrl-C). Without --input the board plays a looped demo guitar, so nothing feeds back.
    /// Prints callbacks per second, pacing, xruns and CPU load at the end.
    Play {
        /// Preset to play [default: the last one played, else Clean Practice (your copy, else the factory one)].
        #[arg(long, value_name = "FILE")]
        preset: Option<PathBuf>,
        /// Audio host (ALSA, JACK, PulseAudio, PipeWire, …) [default: the system's].
        #[arg(long)]
        host: Option<String>,
        /// Output device (part of its name) [default: the host's default].
        #[arg(long, value_name = "NAME")]
        device: Option<String>,
        /// Input device (part of its name) [default: the host's default].
        #[arg(long, value_name = "NAME")]
        input_device: Option<String>,
        /// Route this input channel (1-based) into the board. Off until you ask: a microphone next to speakers
        /// howls. Remembered, like the devices, buffer and preset, in the settings for the next start.
        #[arg(long, value_name = "CHANNEL", conflicts_with = "no_input")]
        input: Option<u16>,
        /// Do not route the input this time, whatever the settings remember (plays the demo guitar).
        #[arg(long)]
        no_input: bool,
        /// Frames per callback [default: the device's].
        #[arg(long, value_name = "FRAMES", value_parser = clap::value_parser!(u32).range(16..=4096))]
        buffer: Option<u32>,
        /// Sample rate [default: the output device's].
        #[arg(long, value_name = "HZ")]
        rate: Option<u32>,
        /// Stop after this many seconds [default: run until interrupted].
        #[arg(long)]
        seconds: Option<f32>,
        /// Also write the measurements as JSON.
        #[arg(long, value_name = "FILE")]
        stats_json: Option<PathBuf>,
        /// Record a take: the dry input and the board's output as two WAV files in your takes folder (see
        /// `neuralboard paths`), crash-safe.
        #[arg(long)]
        record: bool,
        /// List audio hosts and devices, and exit.
        #[arg(long)]
        list: bool,
    },
    /// Show where presets, models, impulse responses, takes and settings live.
    Paths,
    /// MIDI input: which ports the board listens to, and what they send.
    Midi {
        #[command(subcommand)]
        command: MidiCommand,
    },
}

#[derive(Subcommand)]
enum MidiCommand {
    /// List the MIDI input ports (every one of them drives the board while it plays), or say why MIDI cannot be
    /// used.
    Ports,
    /// Print every message from every MIDI input port as it arrives (ports plugged in meanwhile included), with
    /// what the mappings (the settings' and the last preset's) would do with it. Nothing is played.
    Monitor {
        /// Stop after this many seconds [default: run until interrupted].
        #[arg(long)]
        seconds: Option<f32>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Some(Command::Render { preset, nam, ir, fast_tanh, block, isa, input, output }) => {
            let chain = match (preset, nam, ir) {
                (Some(preset), _, _) => Chain::Preset(preset),
                (None, None, None) => Chain::Empty,
                (None, nam, ir) => Chain::Model { nam, ir, fast_tanh },
            };
            limit_isa(isa.as_deref()).and_then(|()| render_command(chain, block, input, output))
        }
        Some(Command::Bench { nam, shape, seconds, block, fast_tanh, isa }) => {
            // clap requires one of the two; an empty shape would be refused with the list of shapes.
            let model = nam.map_or_else(|| BenchModel::Shape(shape.unwrap_or_default()), BenchModel::File);
            limit_isa(isa.as_deref()).and_then(|()| bench_command(&model, seconds, block, fast_tanh))
        }
        Some(Command::Corpus { seed, seconds, rate, no_test_signals, output }) => {
            corpus_command(seed, seconds, rate, !no_test_signals, &output)
        }
        Some(Command::Teacher { kind, params, lfo_out, envelopes_out, input, output }) => teacher_command(
            &kind,
            &params,
            Sides { lfo: lfo_out.as_deref(), envelopes: envelopes_out.as_deref() },
            &input,
            &output,
        ),
        Some(Command::CabIr { name, rate, output }) => cab_ir_command(&name, rate, &output),
        Some(Command::Eval { model, check }) => eval_command(&model, check),
        Some(Command::Play {
            preset,
            host,
            device,
            input_device,
            input,
            no_input,
            buffer,
            rate,
            seconds,
            stats_json,
            record,
            list,
        }) => {
            if list {
                print!("{}", live::describe_devices());
                Ok(())
            } else {
                offer_factory_presets();
                let options = live::LiveOptions {
                    host,
                    input_device,
                    output_device: device,
                    input_channel: input,
                    buffer,
                    sample_rate: rate,
                };
                play::play_command(play::PlayArgs { options, no_input, preset, seconds, stats_json, record })
            }
        }
        Some(Command::Paths) => paths_command(),
        Some(Command::Midi { command: MidiCommand::Ports }) => midi_ports_command(),
        Some(Command::Midi { command: MidiCommand::Monitor { seconds } }) => midi_monitor_command(seconds),
        Some(Command::Gui { preset, offline, screenshot }) => {
            let notes = offer_factory_presets();
            ui::run(ui::Options { preset, offline, screenshot, notes, ..ui::Options::default() })
        }
        None => ui::run(ui::Options { notes: offer_factory_presets(), ..ui::Options::default() }),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One line, the file first: every engine error names its file and already includes its cause.
            eprintln!("neuralboard: error: {}", e.to_string().replace('\n', " "));
            ExitCode::FAILURE
        }
    }
}

/// Copies the factory presets the player has not been given yet into their presets folder (the first start: all
/// of them; see [`neuralboard_engine::paths::offer_factory_presets`]), for the board and `play`, which are where a
/// player starts. The headless tools (`render`, `eval`, …) leave the player's folders alone.
///
/// Never fatal: what went wrong is printed, and returned for the window to show; the board starts all the same.
fn offer_factory_presets() -> Vec<String> {
    use neuralboard_engine::paths;
    let Some(dirs) = paths::UserDirs::locate() else {
        // No home folder: nowhere to copy to, and `paths` and saving already say so.
        return Vec::new();
    };
    let offer = paths::offer_factory_presets(&paths::factory_presets(), &dirs.presets);
    if !offer.copied.is_empty() {
        eprintln!(
            "neuralboard: copied {} factory preset(s) into {} (yours to edit)",
            offer.copied.len(),
            dirs.presets.display()
        );
    }
    let problems: Vec<String> =
        offer.problems.iter().map(|problem| format!("factory presets not copied: {problem}")).collect();
    for problem in &problems {
        eprintln!("neuralboard: warning: {problem}");
    }
    problems
}

/// What `render` plays.
enum Chain {
    Empty,
    Preset(PathBuf),
    Model { nam: Option<PathBuf>, ir: Option<PathBuf>, fast_tanh: bool },
}

fn render_command(chain: Chain, block: Option<usize>, input: PathBuf, output: PathBuf) -> anyhow::Result<()> {
    let (preset, block, safety_limiter) = match chain {
        Chain::Empty => (None, block.unwrap_or(128), true),
        Chain::Preset(path) => (Some(Preset::load(&path)?), block.unwrap_or(128), true),
        Chain::Model { nam, ir, fast_tanh } => (Some(model_chain(nam, ir, fast_tanh)?), block.unwrap_or(64), false),
    };
    let progress = progress_bar();
    let started = Instant::now();
    let job = RenderJob { input: &input, output: &output, preset: preset.as_ref(), block, safety_limiter };
    let report = render::render(&job, &mut |done, total| {
        if let Some(bar) = &progress {
            bar.set_length(total);
            bar.set_position(done);
        }
    })?;
    if let Some(bar) = progress {
        bar.finish_and_clear();
    }
    for warning in &report.warnings {
        eprintln!("neuralboard: warning: {warning}");
    }
    let seconds = report.frames as f64 / f64::from(report.sample_rate);
    let elapsed = started.elapsed().as_secs_f64();
    println!(
        "{}: {seconds:.2} s at {} Hz, {} → {} channel(s), peak {:.1} dBFS; rendered in {elapsed:.2} s ({:.0}× real time)",
        output.display(),
        report.sample_rate,
        report.input_channels,
        report.output_channels,
        gain_to_db(report.output_peak),
        seconds / elapsed.max(1e-9),
    );
    Ok(())
}

/// A one- or two-pedal chain for `render --nam/--ir`, checked up front so a bad file is an error, not a silent
/// pass-through slot.
fn model_chain(nam: Option<PathBuf>, ir: Option<PathBuf>, fast_tanh: bool) -> anyhow::Result<LoadedPreset> {
    use neuralboard_engine::effects;
    let mut preset = Preset::empty("render");
    for (kind, path) in [(effects::amp::KIND, nam), ("cab", ir)] {
        let Some(path) = path else { continue };
        if let Err(e) = effects::build(kind, Some(&path)) {
            match e {
                effects::BuildError::ModelNotFound(_) => anyhow::bail!("{}: file not found", path.display()),
                e => anyhow::bail!("{e}"),
            }
        }
        let mut slot = PresetSlot::new(kind);
        slot.model = Some(path.to_string_lossy().into_owned());
        if kind == effects::amp::KIND {
            // The reference renders raw model output: no loudness normalisation.
            slot.params.insert("normalize".into(), 0.0);
            slot.params.insert("fast_tanh".into(), if fast_tanh { 1.0 } else { 0.0 });
        }
        preset.chain.push(slot);
    }
    let cwd = std::env::current_dir().unwrap_or_default();
    Ok(LoadedPreset { preset, path: cwd.join("command line"), warnings: Vec::new() })
}

/// `--isa NAME` of `render` and `bench`: the kernels of at most that instruction set from now on (the models built
/// after this call).
fn limit_isa(name: Option<&str>) -> anyhow::Result<()> {
    use neuralboard_engine::nn::simd::Isa;
    if let Some(name) = name {
        let known = Isa::available().iter().map(|i| i.name()).collect::<Vec<_>>().join(", ");
        let isa = Isa::from_name(name)
            .filter(|i| i.supported())
            .ok_or_else(|| anyhow::anyhow!("--isa {name}: this CPU runs {known}"))?;
        Isa::limit(Some(isa));
    }
    Ok(())
}

/// What `bench` measures: a model file, or a standard shape with synthetic weights ([`synthetic_model`]).
enum BenchModel {
    File(PathBuf),
    Shape(String),
}

/// A network of a standard shape with seeded pseudo-random weights (uniform in ±0.2), for `bench --shape`: the WaveNet
/// presets of the reference trainer (standard: 16/8 channels, 10 + 10 layers; lite, feather, nano: 12/6, 8/4, 4/2
/// channels, 7 + 13 layers) or a one-layer LSTM of H units. Never a model: nothing is saved, and the output means
/// nothing; only the cost is real, as it does not depend on the values.
fn synthetic_model(shape: &str) -> anyhow::Result<neuralboard_engine::formats::nam::NamFile> {
    use neuralboard_engine::formats::nam::{self, NamError};
    use serde_json::json;
    let wavenet = |channels: usize, heads: usize, dilations: [Vec<u32>; 2]| {
        let [first, second] = dilations;
        let array = |input: usize, channels: usize, head: usize, dilations: Vec<u32>, head_bias: bool| {
            json!({"input_size": input, "condition_size": 1, "head_size": head, "channels": channels,
                   "kernel_size": 3, "dilations": dilations, "activation": "Tanh", "gated": false,
                   "head_bias": head_bias})
        };
        let half = channels / 2;
        (
            "WaveNet",
            json!({"layers": [array(1, channels, heads, first, false), array(channels, half, 1, second, true)],
                           "head": null, "head_scale": 0.02}),
        )
    };
    let standard_dilations = || (0..10).map(|k| 1 << k).collect::<Vec<u32>>();
    let lite_dilations = || [(0..7).map(|k| 1 << k).collect(), (7..10).chain(0..10).map(|k| 1 << k).collect()];
    let (architecture, config) = match shape {
        "standard" => wavenet(16, 8, [standard_dilations(), standard_dilations()]),
        "lite" => wavenet(12, 6, lite_dilations()),
        "feather" => wavenet(8, 4, lite_dilations()),
        "nano" => wavenet(4, 2, lite_dilations()),
        _ => {
            match shape.strip_prefix("lstm-").and_then(|h| h.parse::<usize>().ok()).filter(|h| (1..=256).contains(h)) {
                Some(hidden) => ("LSTM", json!({"input_size": 1, "hidden_size": hidden, "num_layers": 1})),
                None => anyhow::bail!("--shape {shape}: one of standard, lite, feather, nano, lstm-H (H = 1..256)"),
            }
        }
    };
    let document = |weights: Vec<f32>| {
        json!({"version": "0.5.4", "architecture": architecture, "config": config, "weights": weights,
               "sample_rate": 48000})
    };
    // The loader knows how many weights the shape takes: it says so when given none.
    let count = match nam::parse_value(&document(Vec::new())) {
        Err(NamError::WeightCount { expected, .. }) => expected,
        other => anyhow::bail!("--shape {shape}: {:?}", other.err()),
    };
    let mut rng = neuralboard_engine::corpus::rng::Rng::new(20_261_127);
    let weights = (0..count).map(|_| rng.uniform(-0.2, 0.2)).collect();
    Ok(nam::parse_value(&document(weights))?)
}

fn bench_command(model: &BenchModel, seconds: f32, block: usize, fast_tanh: bool) -> anyhow::Result<()> {
    use neuralboard_engine::corpus::{self, CorpusSpec};
    use neuralboard_engine::formats::nam;
    use neuralboard_engine::nn::simd::Isa;
    use neuralboard_engine::nn::{self, BuildOptions, TanhMode};
    use neuralboard_engine::teacher::{Lfo, Waveform};
    anyhow::ensure!(seconds.is_finite() && seconds > 0.0 && seconds <= 3600.0, "--seconds must be in 0..=3600");
    anyhow::ensure!((1..=nn::MAX_BLOCK).contains(&block), "--block must be in 1..={}", nn::MAX_BLOCK);
    let label = match model {
        BenchModel::File(path) => path.display().to_string(),
        BenchModel::Shape(shape) => format!("--shape {shape} (synthetic weights)"),
    };
    /// Processes one planar block of `n` frames.
    type Play = Box<dyn FnMut(&[f32], &mut [f32], usize)>;
    let tanh = if fast_tanh { TanhMode::Fast } else { TanhMode::Accurate };
    let (mut play, rate, channels, weights, architecture): (Play, f64, usize, usize, String) =
        if let BenchModel::File(path) = model
            && path.to_string_lossy().ends_with(".s4d.json")
        {
            let file = neuralboard_engine::formats::s4d::load(path)?;
            let mut net = neuralboard_engine::nn::s4d::S4dNetwork::new(&file, block);
            let middle: Vec<f32> = file.config.controls.iter().map(|c| 0.5 * (c.min + c.max)).collect();
            net.set_controls(&middle);
            let weights = net.parameter_count();
            let rate = f64::from(net.sample_rate());
            (Box::new(move |i, o, _| net.process(i, o)), rate, 1, weights, "S4D".to_owned())
        } else {
            let file = match model {
                BenchModel::File(path) => nam::load(path)?,
                BenchModel::Shape(shape) => synthetic_model(shape)?,
            };
            let rate = file.sample_rate.unwrap_or(neuralboard_engine::effects::amp::DEFAULT_MODEL_RATE);
            let channels = file.architecture.in_channels();
            let architecture = file.architecture.name().to_owned();
            let in_file = |e: nn::BuildError| anyhow::anyhow!("{label}: {e}");
            if channels == 1 {
                let mut model = nn::build(&file, tanh, block).map_err(in_file)?;
                let weights = model.parameter_count();
                (Box::new(move |i, o, _| model.process(i, o)), rate, 1, weights, architecture)
            } else {
                let mut dsp = nn::build_conditioned(&file, &BuildOptions::new(tanh, block)).map_err(in_file)?;
                let weights = dsp.parameter_count();
                (Box::new(move |i, o, n| dsp.process(i, o, n)), rate, channels, weights, architecture)
            }
        };
    // A fixed seed: every run measures the same guitar part.
    let spec = CorpusSpec { seed: 20_261_126, seconds, sample_rate: rate as f32, test_signals: false };
    let audio_in = corpus::generate(&spec).samples;
    // Models with more inputs (a modulation pedal's audio + LFO) get a 0.5 Hz sine LFO on every extra channel, planar
    // per block as the engine feeds them; mono models are measured through the player's own interface.
    let mut lfo = Lfo::new(rate as f32, 0.5, Waveform::Sine, 0.0);
    let mut input = Vec::with_capacity(audio_in.len() * channels);
    for chunk in audio_in.chunks(block) {
        input.extend_from_slice(chunk);
        let mut values = Vec::with_capacity(chunk.len());
        for _ in chunk {
            values.push(lfo.value());
            lfo.advance();
        }
        for _ in 1..channels {
            input.extend_from_slice(&values);
        }
    }
    let mut output = vec![0.0f32; block];
    let frames = |chunk: &[f32]| chunk.len() / channels;
    // Warm caches and branch predictors on the first second, then measure.
    for chunk in input.chunks(block * channels).take((rate as usize / block).max(1)) {
        let n = frames(chunk);
        play(chunk, &mut output[..n], n);
    }
    let started = Instant::now();
    for chunk in input.chunks(block * channels) {
        let n = frames(chunk);
        play(chunk, &mut output[..n], n);
        std::hint::black_box(&output);
    }
    let elapsed = started.elapsed().as_secs_f64();
    let audio = audio_in.len() as f64 / rate;
    println!(
        "{}: {} ({weights} weights, {channels} input{}), {:.0} Hz, block {block}, {} tanh, {} kernels: {audio:.1} s of audio in \
         {elapsed:.3} s on one thread = real-time factor {:.1}×",
        label,
        architecture,
        if channels == 1 { "" } else { "s" },
        rate,
        if fast_tanh { "fast" } else { "accurate" },
        Isa::detect().name(),
        audio / elapsed.max(1e-9),
    );
    Ok(())
}

fn corpus_command(seed: u64, seconds: f32, rate: u32, test_signals: bool, output: &Path) -> anyhow::Result<()> {
    use neuralboard_engine::corpus::{self, CorpusSpec};
    anyhow::ensure!(seconds.is_finite() && seconds > 0.0 && seconds <= 36_000.0, "--seconds must be in 0..=36000");
    anyhow::ensure!((8_000..=384_000).contains(&rate), "--rate must be in 8000..=384000 Hz");
    let spec = CorpusSpec { seed, seconds, sample_rate: rate as f32, test_signals };
    let corpus = corpus::generate(&spec);
    corpus::write_wav(&corpus, output).map_err(|e| anyhow::anyhow!("{}: cannot write: {e}", output.display()))?;
    let peak = corpus.samples.iter().fold(0.0f32, |m, x| m.max(x.abs()));
    let mean_square = corpus.samples.iter().map(|x| f64::from(x * x)).sum::<f64>() / corpus.samples.len() as f64;
    println!(
        "{}: seed {seed}, {seconds} s at {rate} Hz, {} phrases, peak {:.1} dBFS, RMS {:.1} dBFS",
        output.display(),
        corpus.phrases.len(),
        gain_to_db(peak),
        10.0 * mean_square.max(1e-20).log10(),
    );
    Ok(())
}

/// Where `neuralboard teacher` writes the side signals asked for.
struct Sides<'a> {
    lfo: Option<&'a Path>,
    envelopes: Option<&'a Path>,
}

fn teacher_command(kind: &str, params: &[String], sides: Sides, input: &Path, output: &Path) -> anyhow::Result<()> {
    use neuralboard_engine::teacher;
    let pairs = params
        .iter()
        .map(|p| match p.split_once('=') {
            Some((name, value)) => Ok((name.trim().to_owned(), value.trim().to_owned())),
            None => Err(anyhow::anyhow!("--param '{p}': expected NAME=VALUE")),
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    // Check kind and parameters before touching any file.
    teacher::build(kind, 48_000.0, &pairs)?;
    if sides.lfo.is_some() && !matches!(kind, "phaser" | "flanger") {
        anyhow::bail!("--lfo-out is only for phaser and flanger, not {kind}");
    }
    if sides.envelopes.is_some() && kind != "opto" {
        anyhow::bail!("--envelopes-out is only for opto, not {kind}");
    }
    let (samples, sample_rate) = read_mono_wav(input)?;
    let mut effect = teacher::build(kind, sample_rate as f32, &pairs)?;
    let teacher::Rendered { output: out, lfo, envelopes } = teacher::render(effect.as_mut(), &samples);
    write_float_wav(output, &out, sample_rate)?;
    if let Some(path) = sides.lfo {
        write_float_wav(path, &lfo, sample_rate)?;
    }
    if let Some(path) = sides.envelopes {
        write_float_wav_channels(path, envelopes.as_flattened(), 2, sample_rate)?;
    }
    let peak = out.iter().fold(0.0f32, |m, y| m.max(y.abs()));
    let mean_square = out.iter().map(|y| f64::from(y * y)).sum::<f64>() / out.len().max(1) as f64;
    println!(
        "{}: {kind}, {:.2} s at {sample_rate} Hz, peak {:.1} dBFS, RMS {:.1} dBFS",
        output.display(),
        out.len() as f64 / f64::from(sample_rate),
        gain_to_db(peak),
        10.0 * mean_square.max(1e-20).log10(),
    );
    Ok(())
}

fn cab_ir_command(name: &str, rate: u32, output: &Path) -> anyhow::Result<()> {
    use neuralboard_engine::cabsim;
    let Some(spec) = cabsim::find(name) else {
        let names: Vec<&str> = cabsim::CABINETS.iter().map(|c| c.name).collect();
        anyhow::bail!("unknown cabinet '{name}' (valid: {})", names.join(", "));
    };
    anyhow::ensure!((8_000..=384_000).contains(&rate), "--rate must be in 8000..=384000");
    let ir = cabsim::render(spec, rate as f32);
    write_float_wav(output, &ir, rate)?;
    println!("{}: {} — {}, {} samples at {rate} Hz", output.display(), spec.name, spec.description, ir.len());
    Ok(())
}

fn eval_command(model: &Path, check: Option<f64>) -> anyhow::Result<()> {
    use neuralboard_engine::eval;
    // `--model reverb`: the shipped reverb decoder.
    let shipped_reverb;
    let model = if model == Path::new("reverb") {
        shipped_reverb = neuralboard_engine::paths::factory_root().join("assets/models/reverb/rooms.reverb.json");
        shipped_reverb.as_path()
    } else {
        model
    };
    if model.to_string_lossy().ends_with(".reverb.json") {
        return reverb_eval_command(model);
    }
    let started = Instant::now();
    let result = eval::evaluate(model)?;
    println!("{}: {} ({}), {} Hz", model.display(), result.name, result.architecture, result.sample_rate);
    for s in &result.splits {
        println!(
            "  {}: {}\n    ESR {:.5} ({:.3} %) measured here; manifest records {:.5} ({:+.2} %){}",
            s.split,
            s.description,
            s.esr,
            100.0 * s.esr,
            s.recorded_esr,
            100.0 * s.relative_difference(),
            s.target.map(|t| format!("; target {t}{}", if s.esr <= t { "" } else { " (missed)" })).unwrap_or_default(),
        );
        if let Some(b) = s.breakdown {
            println!(
                "    the corpus's test signals (sweeps to 16–20 kHz, noise bursts) are {:.1} % of the teacher's output \
                 and {:.1} % of the error; ESR without them {:.5} ({:.3} %)",
                100.0 * b.signal_share,
                100.0 * b.error_share,
                b.esr_without,
                100.0 * b.esr_without,
            );
        }
    }
    if !result.dynamics.is_empty() {
        println!(
            "  dynamics against the teacher (static curve −40…0 dBFS; attack/release on a −30 → −6 dBFS step, and \
             the two gain reductions' largest difference over its first 200 ms and the 3 s after it; gain ripple on \
             a low E held at −6 dBFS):"
        );
    }
    for d in &result.dynamics {
        let times = |t: Option<eval::dynamics::Timing>| {
            t.map_or("no compression".to_owned(), |t| {
                let release =
                    t.release_s.map_or("not 63 % back within 3 s".to_owned(), |r| format!("{:.0} ms", 1e3 * r));
                format!("attack {:.1} ms, release {release}", 1e3 * t.attack_s)
            })
        };
        println!(
            "    peak reduction {}{}: static curve within {:.2} dB; teacher {}; model {}{}; attack curve within \
             {:.2} dB, release curve within {:.2} dB; ripple {:.2} dB (teacher {:.2} dB)",
            d.peak_reduction,
            if d.limit >= 0.5 { " (limit)" } else { "" },
            d.static_max_difference_db,
            times(d.teacher),
            times(d.model),
            d.timing_errors()
                .map(|(a, r)| format!(
                    " ({:+.1} % / {})",
                    100.0 * a,
                    r.map_or("–".to_owned(), |r| format!("{:+.1} %", 100.0 * r))
                ))
                .unwrap_or_default(),
            d.step_curves_db.0,
            d.step_curves_db.1,
            d.ripple_db.1,
            d.ripple_db.0,
        );
    }
    println!("  measured in {:.1} s", started.elapsed().as_secs_f64());
    if let Some(tolerance) = check {
        for s in &result.splits {
            anyhow::ensure!(
                s.relative_difference().abs() <= tolerance,
                "{}: {} ESR {:.5} differs from the manifest's {:.5} by more than {:.1} %",
                model.display(),
                s.split,
                s.esr,
                s.recorded_esr,
                100.0 * tolerance
            );
        }
    }
    Ok(())
}

/// `neuralboard eval` on a reverb decoder: its held-out rooms' decay times, its latent space's smoothness and the
/// time a room change takes.
fn reverb_eval_command(model: &Path) -> anyhow::Result<()> {
    use neuralboard_engine::eval::reverb;
    let started = Instant::now();
    let r = reverb::evaluate(model)?;
    println!(
        "{}: {}, {} held-out responses (decoded from their latent points, synthesised here)",
        model.display(),
        r.name,
        r.test_irs
    );
    for (what, bands, target) in [("T30", &r.t30, r.targets.t30_relative), ("EDT", &r.edt, r.targets.edt_relative)] {
        println!(
            "  {what} relative error per octave band (target {:.0} %): median / mean / share within",
            100.0 * target
        );
        for b in bands {
            println!(
                "    {:>5} Hz: {:5.1} % / {:6.1} % / {:3.0} %{}",
                b.band_hz,
                100.0 * b.median,
                100.0 * b.mean,
                100.0 * b.within,
                if b.median > target { "  (median misses the target)" } else { "" }
            );
        }
    }
    for t in &r.traversals {
        println!(
            "  latent line {:?} → {:?}, {} points: step {:.2} dB RMS mean, {:.2} dB largest; ends {:.1} dB apart",
            t.from, t.to, t.points, t.mean_step_db, t.max_step_db, t.ends_db
        );
    }
    let t = r.timing;
    println!(
        "  room change ({:.2} s stereo response, one thread, best of 5): {:.1} ms = decode {:.2} + synthesis {:.1} + partitioning {:.1}",
        t.response_s,
        t.total_ms(),
        t.decode_ms,
        t.synthesis_ms,
        t.partition_ms
    );
    let missed = r.missed();
    if !missed.is_empty() {
        println!("  targets missed (median): {}", missed.join(", "));
    }
    println!("  measured in {:.1} s", started.elapsed().as_secs_f64());
    Ok(())
}

/// Reads any WAV hound reads (8/16/24/32-bit integer or 32-bit float), averaging its channels to mono.
fn read_mono_wav(path: &Path) -> anyhow::Result<(Vec<f32>, u32)> {
    let fail = |e: hound::Error| anyhow::anyhow!("{}: cannot read WAV: {e}", path.display());
    let mut reader = hound::WavReader::open(path).map_err(fail)?;
    let spec = reader.spec();
    let interleaved: Vec<f32> = match (spec.sample_format, spec.bits_per_sample) {
        (hound::SampleFormat::Float, 32) => reader.samples::<f32>().collect::<Result<_, _>>().map_err(fail)?,
        (hound::SampleFormat::Int, bits @ (8 | 16 | 24 | 32)) => {
            let scale = 1.0 / (1u64 << (bits - 1)) as f32;
            reader.samples::<i32>().map(|s| s.map(|v| v as f32 * scale)).collect::<Result<_, _>>().map_err(fail)?
        }
        _ => anyhow::bail!("{}: unsupported WAV encoding (use 8/16/24/32-bit PCM or 32-bit float)", path.display()),
    };
    let channels = usize::from(spec.channels.max(1));
    let mono = interleaved.chunks(channels).map(|frame| frame.iter().sum::<f32>() / channels as f32).collect();
    Ok((mono, spec.sample_rate))
}

fn write_float_wav(path: &Path, samples: &[f32], sample_rate: u32) -> anyhow::Result<()> {
    write_float_wav_channels(path, samples, 1, sample_rate)
}

/// A 32-bit float WAV of `channels` interleaved channels.
fn write_float_wav_channels(path: &Path, samples: &[f32], channels: u16, sample_rate: u32) -> anyhow::Result<()> {
    let fail = |e: hound::Error| anyhow::anyhow!("{}: cannot write: {e}", path.display());
    let spec = hound::WavSpec { channels, sample_rate, bits_per_sample: 32, sample_format: hound::SampleFormat::Float };
    let mut writer = hound::WavWriter::create(path, spec).map_err(fail)?;
    for &s in samples {
        writer.write_sample(s).map_err(fail)?;
    }
    writer.finalize().map_err(fail)
}

fn paths_command() -> anyhow::Result<()> {
    let dirs = neuralboard_engine::paths::UserDirs::locate()
        .ok_or_else(|| anyhow::anyhow!("cannot find a home folder for per-user files (is HOME set?)"))?;
    println!("presets:  {}", dirs.presets.display());
    println!("models:   {}", dirs.models.display());
    println!("irs:      {}", dirs.irs.display());
    println!("takes:    {}", dirs.takes.display());
    println!("settings: {}", dirs.config.display());
    println!("factory:  {}", neuralboard_engine::paths::factory_presets().display());
    Ok(())
}

fn midi_ports_command() -> anyhow::Result<()> {
    let ports = midi_io::list_ports().map_err(|reason| anyhow::anyhow!("MIDI unavailable: {reason}"))?;
    if ports.is_empty() {
        println!("no MIDI input ports (plug in a MIDI device; the board connects to it while it plays)");
    }
    for port in ports {
        println!("{port}");
    }
    Ok(())
}

fn midi_monitor_command(seconds: Option<f32>) -> anyhow::Result<()> {
    use neuralboard_engine::midi::MidiMap;
    use std::sync::atomic::Ordering;
    use std::time::Duration;
    if let Some(s) = seconds {
        anyhow::ensure!(s.is_finite() && s >= 0.0, "--seconds must be a positive number");
    }
    let (global, preset) = play::saved_midi_maps();
    let map = MidiMap::merged(&global, preset.as_ref().map_or(&MidiMap::default(), |p| &p.preset.midi));
    println!(
        "listening to every MIDI input port; {} mapping(s) from the settings{}{}",
        global.mappings.len(),
        match &preset {
            Some(p) => format!(" and {} from preset '{}'", p.preset.midi.mappings.len(), p.preset.name),
            None => String::new(),
        },
        if seconds.is_none() { "; Ctrl-C stops" } else { "" },
    );
    let (notices_tx, notices) = std::sync::mpsc::channel();
    let setup = midi_io::MidiSetup { map, ..midi_io::MidiSetup::default() };
    let service = midi_io::MidiService::start(
        setup,
        Box::new(move |notice| {
            let _ = notices_tx.send(notice);
        }),
    );
    let deadline = seconds.map(|s| Instant::now() + Duration::from_secs_f32(s));
    loop {
        let wait = deadline.map_or(Duration::from_secs(3600), |d| d.saturating_duration_since(Instant::now()));
        match notices.recv_timeout(wait) {
            Ok(notice @ midi_io::MidiNotice::Unavailable { .. }) => eprintln!("neuralboard: {notice}"),
            Ok(notice) => println!("{notice}"),
            Err(_) if deadline.is_some_and(|d| Instant::now() >= d) => break,
            Err(_) => continue,
        }
    }
    let stats = service.stats();
    println!(
        "{} message(s), {} malformed byte(s) ignored",
        stats.messages.load(Ordering::Relaxed),
        stats.malformed.load(Ordering::Relaxed)
    );
    Ok(())
}

/// A progress bar on stderr, only when a person is watching a terminal.
fn progress_bar() -> Option<indicatif::ProgressBar> {
    if !std::io::stderr().is_terminal() {
        return None;
    }
    let bar = indicatif::ProgressBar::new(0);
    let style = indicatif::ProgressStyle::with_template("{spinner} rendering [{bar:40}] {percent}% eta {eta}")
        .ok()?
        .progress_chars("=> ");
    bar.set_style(style);
    Some(bar)
}
