//! `neuralboard`: the desktop pedalboard, and its headless subcommands.
//!
//! With no subcommand it opens the GUI; `render` runs the very same engine offline over a WAV file.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use clap::{CommandFactory, Parser, Subcommand};
use neuralboard_engine::param::gain_to_db;
use neuralboard_engine::preset::Preset;
use neuralboard_engine::render::{self, RenderJob};

#[derive(Parser)]
#[command(name = "neuralboard", version, about = "A guitar pedalboard whose effects are neural networks.")]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Process a WAV file through a preset's chain, offline, with the same engine the live board uses.
    ///
    /// Reads 8/16/24/32-bit integer and 32-bit float WAV; stereo or multi-channel input is mixed to mono (a
    /// guitar is mono). Writes 32-bit float WAV at the input's sample rate and length: mono, or stereo when the
    /// chain makes stereo.
    Render {
        /// Preset (.ron) whose chain and levels to use; without one the signal passes through the input/output
        /// stages and the safety limiter only.
        #[arg(long, value_name = "FILE")]
        preset: Option<PathBuf>,
        /// Frames per engine call, as an audio interface's buffer size would be.
        #[arg(long, value_name = "N", default_value_t = 128)]
        block: usize,
        /// Input WAV file.
        input: PathBuf,
        /// Output WAV file (replaced atomically when the render succeeds).
        output: PathBuf,
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
    /// Show where presets, models, impulse responses, takes and settings live.
    Paths,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Some(Command::Render { preset, block, input, output }) => render_command(preset, block, input, output),
        Some(Command::Corpus { seed, seconds, rate, no_test_signals, output }) => {
            corpus_command(seed, seconds, rate, !no_test_signals, &output)
        }
        Some(Command::Paths) => paths_command(),
        None => gui(),
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

fn gui() -> anyhow::Result<()> {
    // Until the GUI lands, starting without a subcommand explains that and shows what does work.
    eprintln!("neuralboard: the graphical board is not part of this build yet; these commands work today:\n");
    Cli::command().print_help()?;
    Ok(())
}

fn render_command(preset: Option<PathBuf>, block: usize, input: PathBuf, output: PathBuf) -> anyhow::Result<()> {
    let preset = preset.map(|p| Preset::load(&p)).transpose()?;
    let progress = progress_bar();
    let started = Instant::now();
    let job = RenderJob { input: &input, output: &output, preset: preset.as_ref(), block };
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
