//! Offline rendering: WAV in → the very same [`Engine`] → WAV out.
//!
//! Input: any WAV that hound reads — 8/16/24/32-bit integer or 32-bit float PCM, any channel count. A guitar is
//! mono, so multi-channel input is mixed to mono (the mean of the channels). The engine runs at the file's sample
//! rate with the given block size, exactly as the live callback would. Output: 32-bit float WAV of the same length
//! and rate, mono unless the chain makes stereo. The output is written to a temporary file and renamed into place,
//! so a failed render never leaves a truncated file where a good one was.

use std::path::{Path, PathBuf};

use crate::controller::SlotStatus;
use crate::engine::{Engine, EngineConfig};
use crate::preset::LoadedPreset;

/// Sample rates we accept from a file: anything outside is a broken header, not audio.
pub const SAMPLE_RATE_RANGE: (u32, u32) = (8_000, 768_000);

/// Largest block size the renderer accepts.
pub const MAX_BLOCK: usize = 65_536;

#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error("{}: {message}", path.display())]
    Input { path: PathBuf, message: String },
    #[error("{}: cannot write: {message}", path.display())]
    Output { path: PathBuf, message: String },
    #[error(transparent)]
    Preset(#[from] crate::preset::PresetError),
    #[error("block size {0} is outside 1..={MAX_BLOCK}")]
    Block(usize),
}

/// What a render did, for the command line to report.
#[derive(Debug, Clone, PartialEq)]
pub struct RenderReport {
    pub frames: u64,
    pub sample_rate: u32,
    pub input_channels: u16,
    pub output_channels: u16,
    /// Problems that did not stop the render: preset warnings, pedals that could not be built.
    pub warnings: Vec<String>,
    /// Peak of the output, linear.
    pub output_peak: f32,
}

/// Options for one render.
pub struct RenderJob<'a> {
    pub input: &'a Path,
    pub output: &'a Path,
    pub preset: Option<&'a LoadedPreset>,
    pub block: usize,
    /// Keep the output safety limiter (true for anything a person will listen to). Off reproduces a model's raw
    /// output, as the reference computes it, even above full scale.
    pub safety_limiter: bool,
}

/// An opened input file, checked.
struct Input {
    reader: hound::WavReader<std::io::BufReader<std::fs::File>>,
    spec: hound::WavSpec,
    frames: u64,
}

fn open_input(path: &Path) -> Result<Input, RenderError> {
    let bad = |message: String| RenderError::Input { path: path.to_owned(), message };
    let reader = hound::WavReader::open(path).map_err(|e| {
        bad(match e {
            hound::Error::IoError(io) if is_short_read(&io) => "not a WAV file (too short to hold a WAV header)".into(),
            hound::Error::IoError(io) => format!("cannot read: {io}"),
            hound::Error::FormatError(what) => format!("not a readable WAV file ({what})"),
            hound::Error::Unsupported => "unsupported WAV encoding (use 8/16/24/32-bit PCM or 32-bit float)".into(),
            other => format!("not a readable WAV file ({other})"),
        })
    })?;
    let spec = reader.spec();
    if spec.channels == 0 {
        return Err(bad("the WAV header declares 0 channels".into()));
    }
    let (min, max) = SAMPLE_RATE_RANGE;
    if !(min..=max).contains(&spec.sample_rate) {
        return Err(bad(format!("sample rate {} Hz is outside {min}..={max} Hz", spec.sample_rate)));
    }
    match (spec.sample_format, spec.bits_per_sample) {
        (hound::SampleFormat::Int, 8 | 16 | 24 | 32) | (hound::SampleFormat::Float, 32) => {}
        (format, bits) => return Err(bad(format!("unsupported sample format: {bits}-bit {format:?}"))),
    }
    let frames = u64::from(reader.duration());
    if frames == 0 {
        return Err(bad("the file contains no audio".into()));
    }
    Ok(Input { reader, spec, frames })
}

/// Runs the job; `progress(done, total)` is called every few thousand frames.
pub fn render(job: &RenderJob, progress: &mut dyn FnMut(u64, u64)) -> Result<RenderReport, RenderError> {
    if job.block == 0 || job.block > MAX_BLOCK {
        return Err(RenderError::Block(job.block));
    }
    let mut input = open_input(job.input)?;
    let spec = input.spec;
    let config = EngineConfig { sample_rate: spec.sample_rate as f32, max_block: job.block };
    let (mut engine, mut controller) = Engine::new(config);
    if !job.safety_limiter {
        engine.disable_safety_limiter_for_offline_render();
    }

    let mut warnings = Vec::new();
    if let Some(loaded) = job.preset {
        let name = loaded.path.display();
        warnings.extend(loaded.warnings.iter().map(|w| format!("{name}: {w}")));
        let swap = controller.prepare_preset(&loaded.preset, loaded.base_dir());
        drop(engine.install_chain(swap));
        for (i, slot) in controller.slots().iter().enumerate() {
            if let SlotStatus::Missing { reason } = &slot.status {
                warnings.push(format!("{name}: chain[{i}]: {reason}; passing the signal through"));
            }
        }
    }
    let output_channels: u16 = if engine.is_stereo() { 2 } else { 1 };

    let out_spec = hound::WavSpec {
        channels: output_channels,
        sample_rate: spec.sample_rate,
        bits_per_sample: 32,
        sample_format: hound::SampleFormat::Float,
    };
    let tmp = temp_path(job.output);
    let write_error = |e: hound::Error| RenderError::Output { path: job.output.to_owned(), message: e.to_string() };
    let mut writer = hound::WavWriter::create(&tmp, out_spec).map_err(write_error)?;

    let result = (|| -> Result<f32, RenderError> {
        let channels = usize::from(spec.channels);
        let mut mono = vec![0.0f32; job.block];
        let mut left = vec![0.0f32; job.block];
        let mut right = vec![0.0f32; job.block];
        let mut samples = Samples::new(&mut input.reader, spec);
        let mut done = 0u64;
        let mut peak = 0.0f32;
        let mut last_report = 0u64;
        progress(0, input.frames);
        while done < input.frames {
            let n = (input.frames - done).min(job.block as u64) as usize;
            for frame in &mut mono[..n] {
                let mut sum = 0.0;
                for _ in 0..channels {
                    sum += samples.next().map_err(|message| RenderError::Input {
                        path: job.input.to_owned(),
                        message: format!("at frame {done}: {message}"),
                    })?;
                }
                *frame = sum / channels as f32;
            }
            engine.process(&mono[..n], &mut left[..n], &mut right[..n]);
            controller.collect_garbage();
            for i in 0..n {
                peak = peak.max(left[i].abs()).max(right[i].abs());
                writer.write_sample(left[i]).map_err(write_error)?;
                if output_channels == 2 {
                    writer.write_sample(right[i]).map_err(write_error)?;
                }
            }
            done += n as u64;
            if done - last_report >= 16_384 || done == input.frames {
                progress(done, input.frames);
                last_report = done;
            }
        }
        writer.finalize().map_err(write_error)?;
        std::fs::rename(&tmp, job.output)
            .map_err(|e| RenderError::Output { path: job.output.to_owned(), message: e.to_string() })?;
        Ok(peak)
    })();
    let peak = result.inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })?;

    Ok(RenderReport {
        frames: input.frames,
        sample_rate: spec.sample_rate,
        input_channels: spec.channels,
        output_channels,
        warnings,
        output_peak: peak,
    })
}

/// hound reports running out of bytes as a generic I/O error with this text.
fn is_short_read(error: &std::io::Error) -> bool {
    error.kind() == std::io::ErrorKind::UnexpectedEof || error.to_string().contains("Failed to read enough bytes")
}

fn temp_path(output: &Path) -> PathBuf {
    let name = output.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "render".into());
    output.with_file_name(format!(".{name}.{}.partial", std::process::id()))
}

/// Reads interleaved samples of any supported format as f32 in -1..1.
enum Samples<'a> {
    Float(hound::WavSamples<'a, std::io::BufReader<std::fs::File>, f32>),
    Int(hound::WavSamples<'a, std::io::BufReader<std::fs::File>, i32>, f32),
}

impl<'a> Samples<'a> {
    fn new(reader: &'a mut hound::WavReader<std::io::BufReader<std::fs::File>>, spec: hound::WavSpec) -> Self {
        match spec.sample_format {
            hound::SampleFormat::Float => Samples::Float(reader.samples()),
            hound::SampleFormat::Int => {
                let scale = 1.0 / (1u64 << (spec.bits_per_sample - 1)) as f32;
                Samples::Int(reader.samples(), scale)
            }
        }
    }

    fn next(&mut self) -> Result<f32, String> {
        let sample = match self {
            Samples::Float(s) => s.next(),
            Samples::Int(s, scale) => s.next().map(|r| r.map(|v| v as f32 * *scale)),
        };
        match sample {
            Some(Ok(v)) if v.is_finite() => Ok(v),
            Some(Ok(_)) => Ok(0.0), // a NaN or Inf in a float file plays as silence, never as a blast
            Some(Err(hound::Error::IoError(io))) if is_short_read(&io) => {
                Err("the file ends before its header says it does (truncated?)".into())
            }
            Some(Err(e)) => Err(format!("the file is damaged ({e})")),
            None => Err("the file ends before its header says it does (truncated?)".into()),
        }
    }
}
