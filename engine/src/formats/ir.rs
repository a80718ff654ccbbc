//! Impulse-response files: a WAV in, a validated response at the engine's rate out, ready for the convolver.
//!
//! Reading happens in two parts, both off the audio thread:
//!
//! 1. [`IrFile::read`] decodes and checks the file (mono or stereo; 8/16/24/32-bit integer or 32-bit float; a sane
//!    rate; finite, not silent, at most [`MAX_SECONDS`] long once trailing silence is trimmed) and keeps it at its
//!    own rate, so a pedal can re-prepare it when the engine's rate changes without touching the file again.
//! 2. [`IrFile::at_rate`] resamples to the engine's rate with a windowed-sinc filter, trims trailing silence again
//!    and normalises the loudness.
//!
//! **Normalisation.** Players switch cabs expecting the level to stay put, and IR files come at any level: one
//! vendor peaks at 0 dBFS, another at −20. Peak or energy normalisation does not follow loudness — a dark cab
//! and a bright one with equal energy sound very different in level, because much of a bright IR's energy sits
//! where a guitar has little. So the response is scaled to unit power gain for pink noise in the guitar band
//! ([`LOUDNESS_BAND_HZ`], weighted per octave): a full-range guitar signal comes out about as loud as it went in,
//! whatever the cab. Both channels of a stereo IR get the same gain, so the balance between the mics is kept.

use crate::dsp::resample::bessel_i0;
use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};

use realfft::RealFftPlanner;

/// Longest response accepted, in seconds (after trimming trailing silence). Cabs are a few hundred ms; this leaves
/// room for halls and plates.
pub const MAX_SECONDS: f64 = 10.0;

/// Sample rates we accept from a file: anything outside is a broken header, not an impulse response.
pub const SAMPLE_RATE_RANGE: (u32, u32) = (8_000, 768_000);

/// Mono, or stereo (two mics, or a true left/right response). More channels have no agreed meaning for an IR.
pub const MAX_CHANNELS: u16 = 2;

/// Trailing samples quieter than this, relative to the response's peak, are cut: they cost convolution work and
/// are far below the noise floor of any guitar rig.
const TRIM_BELOW_DB: f32 = -100.0;

/// Files whose header claims more than this are refused before their samples are read: even with silence to trim
/// they are not impulse responses, and reading one would take a long while.
const MAX_FILE_SECONDS: f64 = 60.0;

/// The band whose loudness is normalised: from below a low E (82 Hz) to where a guitar speaker has long rolled off.
pub const LOUDNESS_BAND_HZ: (f64, f64) = (80.0, 8_000.0);

/// Smallest FFT used to measure loudness, so a very short response still gets a fine frequency grid (~3 Hz).
const LOUDNESS_FFT_MIN: usize = 1 << 14;

/// Largest boost normalisation applies. A response with almost nothing in the guitar band (a test tone, a broken
/// export) would otherwise be raised to a deafening level elsewhere.
pub const MAX_NORMALISATION_BOOST_DB: f32 = 40.0;

/// Zero crossings of the resampling sinc on each side. With the Kaiser window below this keeps the passband flat to
/// about 90 % of the lower Nyquist frequency (19.8 kHz for 44.1 kHz files).
const SINC_ZERO_CROSSINGS: usize = 64;

/// Kaiser window shape: about 90 dB of stopband rejection.
const KAISER_BETA: f64 = 9.0;

/// Resampling cutoff as a fraction of the lower of the two Nyquist frequencies.
const RESAMPLE_CUTOFF: f64 = 0.94;

/// Zero crossings of the resampling sinc kept *before* the response's first sample. A response that starts
/// abruptly (most cab IRs are trimmed to start on the transient) rings slightly before its start once band-limited;
/// cutting that ringing off changes the top octaves by a dB or more, because it is what cancels the transient's
/// high frequencies. Keeping 16 crossings holds the error under 0.3 dB up to 19 kHz, at the price of delaying a
/// resampled response by about 0.35 ms (16 cycles of the lower Nyquist frequency). Responses at the engine's rate
/// are not resampled and not delayed.
const PRE_RINGING_ZERO_CROSSINGS: f64 = 16.0;

/// Kernel table entries per zero crossing; linear interpolation between them errs by less than −120 dB.
const KERNEL_STEPS: usize = 512;

/// An impulse-response file that could not be used, and which file it was.
#[derive(Debug, thiserror::Error)]
#[error("{}: {problem}", path.display())]
pub struct IrError {
    pub path: PathBuf,
    pub problem: IrProblem,
}

/// What is wrong with an impulse-response file, in words a player can act on.
#[derive(Debug, thiserror::Error)]
pub enum IrProblem {
    #[error("cannot read the file ({0})")]
    Io(#[from] std::io::Error),
    #[error("not a readable WAV file ({0}); impulse responses must be WAV files")]
    NotWav(String),
    #[error("unsupported sample format {bits}-bit {format}; use 8/16/24/32-bit PCM or 32-bit float")]
    UnsupportedFormat { bits: u16, format: &'static str },
    #[error("the WAV header declares 0 channels")]
    NoChannels,
    #[error("{0} channels; an impulse response must be mono or stereo (export it as such)")]
    TooManyChannels(u16),
    #[error("sample rate {0} Hz is outside 8000..=768000 Hz (a broken header?)")]
    SampleRate(u32),
    #[error("the file contains no audio")]
    Empty,
    #[error("the file ends before its header says it does (truncated?)")]
    Truncated,
    #[error("the file is damaged ({0})")]
    Damaged(String),
    #[error("sample {frame} of channel {channel} is not a finite number (the file is damaged)")]
    NotFinite { frame: usize, channel: usize },
    #[error("the response is silent: every sample is zero")]
    Silent,
    #[error("the response is {seconds:.1} s long; the limit is {MAX_SECONDS} s (trim it, or use a shorter IR)")]
    TooLong { seconds: f64 },
}

/// A response as its file holds it: validated, at the file's own rate, trailing silence trimmed.
#[derive(Debug, Clone, PartialEq)]
pub struct IrFile {
    pub path: PathBuf,
    /// The file's rate in Hz.
    pub sample_rate: u32,
    /// One or two channels of equal length, in −1..1 full scale.
    pub channels: Vec<Vec<f32>>,
}

/// A response at the engine's rate, normalised and trimmed, ready to be partitioned.
#[derive(Debug, Clone, PartialEq)]
pub struct ImpulseResponse {
    /// One or two channels of equal length.
    pub channels: Vec<Vec<f32>>,
    pub sample_rate: f32,
    /// Gain normalisation applied, in dB (shown to the player: a large value flags an unusual file).
    pub normalisation_db: f32,
}

impl ImpulseResponse {
    pub fn frames(&self) -> usize {
        self.channels.first().map_or(0, Vec::len)
    }

    pub fn is_stereo(&self) -> bool {
        self.channels.len() == 2
    }
}

/// Reads, resamples and normalises an impulse response in one go (off the audio thread).
pub fn load(path: &Path, sample_rate: f32) -> Result<ImpulseResponse, IrError> {
    Ok(IrFile::read(path)?.at_rate(sample_rate))
}

impl IrFile {
    /// Reads and validates a WAV file. Never panics on a bad file: every problem is an [`IrError`].
    pub fn read(path: &Path) -> Result<Self, IrError> {
        let fail = |problem: IrProblem| IrError { path: path.to_owned(), problem };
        let file = File::open(path).map_err(|e| fail(IrProblem::Io(e)))?;
        let reader = hound::WavReader::new(BufReader::new(file)).map_err(|e| {
            fail(match e {
                hound::Error::IoError(io) if is_short_read(&io) => {
                    IrProblem::NotWav("too short to hold a WAV header".into())
                }
                hound::Error::IoError(io) => IrProblem::Io(io),
                // hound checks this itself, before we see the header.
                hound::Error::FormatError(what) if what.contains("zero channels") => IrProblem::NoChannels,
                hound::Error::Unsupported => {
                    IrProblem::NotWav("an unsupported encoding: use 8/16/24/32-bit PCM or 32-bit float".into())
                }
                other => IrProblem::NotWav(other.to_string()),
            })
        })?;
        let spec = reader.spec();
        if spec.channels == 0 {
            return Err(fail(IrProblem::NoChannels));
        }
        if spec.channels > MAX_CHANNELS {
            return Err(fail(IrProblem::TooManyChannels(spec.channels)));
        }
        let (min, max) = SAMPLE_RATE_RANGE;
        if !(min..=max).contains(&spec.sample_rate) {
            return Err(fail(IrProblem::SampleRate(spec.sample_rate)));
        }
        match (spec.sample_format, spec.bits_per_sample) {
            (hound::SampleFormat::Int, 8 | 16 | 24 | 32) | (hound::SampleFormat::Float, 32) => {}
            (hound::SampleFormat::Int, bits) => {
                return Err(fail(IrProblem::UnsupportedFormat { bits, format: "integer" }));
            }
            (hound::SampleFormat::Float, bits) => {
                return Err(fail(IrProblem::UnsupportedFormat { bits, format: "float" }));
            }
        }
        let frames = reader.duration() as usize;
        if frames == 0 {
            return Err(fail(IrProblem::Empty));
        }
        let header_seconds = frames as f64 / f64::from(spec.sample_rate);
        if header_seconds > MAX_FILE_SECONDS {
            return Err(fail(IrProblem::TooLong { seconds: header_seconds }));
        }

        let channels = decode(reader, frames).map_err(fail)?;
        let mut ir = Self { path: path.to_owned(), sample_rate: spec.sample_rate, channels };
        trim_trailing_silence(&mut ir.channels);
        if ir.frames() == 0 {
            return Err(fail(IrProblem::Silent));
        }
        let seconds = ir.seconds();
        if seconds > MAX_SECONDS {
            return Err(fail(IrProblem::TooLong { seconds }));
        }
        Ok(ir)
    }

    /// The file name, for display.
    pub fn name(&self) -> String {
        self.path.file_name().map_or_else(|| self.path.display().to_string(), |n| n.to_string_lossy().into_owned())
    }

    pub fn frames(&self) -> usize {
        self.channels.first().map_or(0, Vec::len)
    }

    pub fn seconds(&self) -> f64 {
        self.frames() as f64 / f64::from(self.sample_rate)
    }

    /// The response at `sample_rate` Hz: resampled (keeping its frequency response), trimmed and normalised.
    /// Allocates and can take a while for long responses: off the audio thread.
    pub fn at_rate(&self, sample_rate: f32) -> ImpulseResponse {
        let to = f64::from(sample_rate);
        let longest = (MAX_SECONDS * to).ceil() as usize;
        let mut channels: Vec<Vec<f32>> = self
            .channels
            .iter()
            .map(|c| {
                let mut resampled = resample(c, f64::from(self.sample_rate), to);
                resampled.truncate(longest);
                resampled
            })
            .collect();
        trim_trailing_silence(&mut channels);
        let loudness = channels.iter().map(|c| band_loudness(c, to)).sum::<f64>() / channels.len().max(1) as f64;
        let max_gain = 10f64.powf(f64::from(MAX_NORMALISATION_BOOST_DB) / 20.0);
        let gain = if loudness > 0.0 { (1.0 / loudness.sqrt()).min(max_gain) } else { 1.0 };
        for c in &mut channels {
            c.iter_mut().for_each(|x| *x = (f64::from(*x) * gain) as f32);
        }
        ImpulseResponse { channels, sample_rate, normalisation_db: (20.0 * gain.log10()) as f32 }
    }
}

/// Reads every sample as f32 full scale, split into channels.
fn decode(mut reader: hound::WavReader<BufReader<File>>, frames: usize) -> Result<Vec<Vec<f32>>, IrProblem> {
    let spec = reader.spec();
    let count = usize::from(spec.channels);
    let mut channels = vec![Vec::with_capacity(frames); count];
    let mut push = |i: usize, value: Result<f32, hound::Error>| -> Result<(), IrProblem> {
        let v = value.map_err(|e| match e {
            hound::Error::IoError(io) if is_short_read(&io) => IrProblem::Truncated,
            other => IrProblem::Damaged(other.to_string()),
        })?;
        if !v.is_finite() {
            return Err(IrProblem::NotFinite { frame: i / count, channel: i % count });
        }
        channels[i % count].push(v);
        Ok(())
    };
    let expected = frames * count;
    let mut read = 0;
    match spec.sample_format {
        hound::SampleFormat::Float => {
            for (i, s) in reader.samples::<f32>().enumerate().take(expected) {
                push(i, s)?;
                read += 1;
            }
        }
        hound::SampleFormat::Int => {
            let scale = 1.0 / (1u64 << (spec.bits_per_sample - 1)) as f32;
            for (i, s) in reader.samples::<i32>().enumerate().take(expected) {
                push(i, s.map(|v| v as f32 * scale))?;
                read += 1;
            }
        }
    }
    if read < expected {
        return Err(IrProblem::Truncated);
    }
    Ok(channels)
}

/// hound reports running out of bytes as a generic I/O error with this text.
fn is_short_read(error: &std::io::Error) -> bool {
    error.kind() == std::io::ErrorKind::UnexpectedEof || error.to_string().contains("Failed to read enough bytes")
}

/// Cuts the common tail where every channel is below [`TRIM_BELOW_DB`] relative to the loudest sample. An all-zero
/// response ends up empty.
fn trim_trailing_silence(channels: &mut [Vec<f32>]) {
    let peak = channels.iter().flatten().fold(0.0f32, |m, x| m.max(x.abs()));
    let floor = peak * 10f32.powf(TRIM_BELOW_DB / 20.0);
    let keep = channels.iter().map(|c| c.iter().rposition(|x| x.abs() > floor).map_or(0, |i| i + 1)).max();
    for c in channels {
        c.truncate(keep.unwrap_or(0));
    }
}

/// Power gain of `ir` for pink noise in [`LOUDNESS_BAND_HZ`]: the mean of `|H(f)|²` over log frequency.
pub fn band_loudness(ir: &[f32], sample_rate: f64) -> f64 {
    let n = (2 * ir.len()).next_power_of_two().max(LOUDNESS_FFT_MIN);
    let fft = RealFftPlanner::<f64>::new().plan_fft_forward(n);
    let mut time = vec![0.0f64; n];
    for (t, &x) in time.iter_mut().zip(ir) {
        *t = f64::from(x);
    }
    let mut spectrum = fft.make_output_vec();
    fft.process(&mut time, &mut spectrum).expect("buffers sized by the plan");
    let bin_hz = sample_rate / n as f64;
    let (low, high) = LOUDNESS_BAND_HZ;
    let (mut power, mut weight) = (0.0, 0.0);
    for (k, bin) in spectrum.iter().enumerate().skip(1) {
        let f = k as f64 * bin_hz;
        if (low..=high).contains(&f) {
            // Bins are evenly spaced in Hz; 1/f weights each octave equally, as pink noise does.
            power += bin.norm_sqr() / f;
            weight += 1.0 / f;
        }
    }
    if weight > 0.0 { power / weight } else { 0.0 }
}

/// Resamples a response from `from` Hz to `to` Hz with a Kaiser-windowed sinc, keeping its frequency response
/// rather than its sample values (the same filter at twice the rate has half the sample values). The output
/// starts [`PRE_RINGING_ZERO_CROSSINGS`] early (see there) and ends at the input's end.
pub fn resample(input: &[f32], from: f64, to: f64) -> Vec<f32> {
    if input.is_empty() || from == to || !(from > 0.0 && to > 0.0) {
        return input.to_vec();
    }
    let ratio = to / from;
    // Cutoff in cycles per input sample: below the lower of the two Nyquist frequencies.
    let cutoff = RESAMPLE_CUTOFF * 0.5 * ratio.min(1.0);
    let half_width = SINC_ZERO_CROSSINGS as f64 / (2.0 * cutoff);
    let table = kernel_table();
    // 2 * cutoff makes a unit-gain lowpass; from / to keeps the response's level across rates.
    let scale = 2.0 * cutoff * from / to;
    // In output samples; a whole number so the response moves by an exact delay.
    let pre_roll = (PRE_RINGING_ZERO_CROSSINGS * ratio / (2.0 * cutoff)).round();
    let out_len = (input.len() as f64 * ratio).ceil() as usize + pre_roll as usize;
    let last_input = input.len() - 1;
    (0..out_len)
        .map(|m| {
            let u = (m as f64 - pre_roll) * from / to;
            let first = (u - half_width).ceil().max(0.0) as usize;
            let last = ((u + half_width).floor() as usize).min(last_input);
            let mut sum = 0.0f64;
            for (j, &x) in input.iter().enumerate().take(last + 1).skip(first) {
                let z = ((u - j as f64) * 2.0 * cutoff).abs() * KERNEL_STEPS as f64;
                let i = z as usize;
                let frac = z - i as f64;
                let k = table[i] + (table[i + 1] - table[i]) * frac;
                sum += f64::from(x) * k;
            }
            (sum * scale) as f32
        })
        .collect()
}

/// `sinc(z) * kaiser(z / N)` for `z` from 0 to N zero crossings in steps of `1 / KERNEL_STEPS`, with zero padding
/// for the interpolation at the far end.
fn kernel_table() -> Vec<f64> {
    let n = SINC_ZERO_CROSSINGS as f64;
    let norm = bessel_i0(KAISER_BETA);
    let len = SINC_ZERO_CROSSINGS * KERNEL_STEPS;
    let mut table: Vec<f64> = (0..=len)
        .map(|i| {
            let z = i as f64 / KERNEL_STEPS as f64;
            let sinc = if i == 0 { 1.0 } else { (std::f64::consts::PI * z).sin() / (std::f64::consts::PI * z) };
            let t = z / n;
            sinc * bessel_i0(KAISER_BETA * (1.0 - t * t).max(0.0).sqrt()) / norm
        })
        .collect();
    table.extend([0.0, 0.0]);
    table
}

/// WAV files for tests, written to a per-process temporary folder.
#[cfg(test)]
pub(crate) mod test_files {
    use std::path::PathBuf;

    /// How samples are stored.
    #[derive(Debug, Clone, Copy)]
    pub enum Format {
        Int(u16),
        Float,
    }

    /// A fresh path in this process's temporary folder.
    pub fn path(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("neuralboard-ir-tests-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir.join(name)
    }

    /// Writes `channels` (equal lengths, full scale −1..1) as a WAV and returns its path.
    pub fn write(name: &str, sample_rate: u32, format: Format, channels: &[&[f32]]) -> PathBuf {
        let path = path(name);
        let (bits, sample_format) = match format {
            Format::Int(bits) => (bits, hound::SampleFormat::Int),
            Format::Float => (32, hound::SampleFormat::Float),
        };
        let spec =
            hound::WavSpec { channels: channels.len() as u16, sample_rate, bits_per_sample: bits, sample_format };
        let mut writer = hound::WavWriter::create(&path, spec).unwrap();
        let frames = channels.first().map_or(0, |c| c.len());
        for i in 0..frames {
            for c in channels {
                match format {
                    Format::Float => writer.write_sample(c[i]).unwrap(),
                    Format::Int(bits) => {
                        let full = ((1i64 << (bits - 1)) - 1) as f32;
                        let v = (c[i].clamp(-1.0, 1.0) * full).round() as i32;
                        if bits == 8 { writer.write_sample(v as i8).unwrap() } else { writer.write_sample(v).unwrap() }
                    }
                }
            }
        }
        writer.finalize().unwrap();
        path
    }

    /// A plausible cabinet response at `sample_rate`: a fast attack, a few speaker resonances and a high-frequency
    /// roll-off, decaying over about 50 ms. Deterministic.
    pub fn cab_like(sample_rate: f32, seed: u32) -> Vec<f32> {
        let len = (0.08 * sample_rate) as usize;
        let mut state = seed.max(1);
        let mut lowpassed = 0.0f32;
        let modes = [(110.0, 0.3), (900.0, 0.5), (2_500.0, 0.4), (4_200.0, 0.2)];
        (0..len)
            .map(|n| {
                let t = n as f32 / sample_rate;
                state ^= state << 13;
                state ^= state >> 17;
                state ^= state << 5;
                let noise = state as f32 / u32::MAX as f32 * 2.0 - 1.0;
                lowpassed += 0.35 * (noise - lowpassed);
                let resonances: f32 =
                    modes.iter().map(|&(hz, a)| a * (std::f32::consts::TAU * hz * t).sin() * (-t * 60.0).exp()).sum();
                0.5 * (lowpassed * (-t * 120.0).exp() + resonances)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::test_files::{Format, cab_like, path, write};
    use super::*;

    /// Magnitude in dB of the response at `hz`, by direct DFT (exact at any frequency).
    fn magnitude_db(ir: &[f32], sample_rate: f64, hz: f64) -> f64 {
        let w = std::f64::consts::TAU * hz / sample_rate;
        let (re, im) = ir.iter().enumerate().fold((0.0, 0.0), |(re, im), (n, &x)| {
            let (s, c) = (w * n as f64).sin_cos();
            (re + f64::from(x) * c, im - f64::from(x) * s)
        });
        10.0 * (re * re + im * im).log10()
    }

    fn problem(path: &Path) -> IrProblem {
        match IrFile::read(path) {
            Ok(_) => panic!("{} loaded", path.display()),
            Err(e) => {
                let name = path.file_name().unwrap().to_string_lossy().into_owned();
                assert!(e.to_string().contains(&name), "the message names the file: {e}");
                e.problem
            }
        }
    }

    /// A canonical 44-byte WAV header with whatever fields a test wants to break.
    fn raw_wav(name: &str, format_tag: u16, channels: u16, rate: u32, bits: u16, data: &[u8]) -> PathBuf {
        let block_align = channels * bits / 8;
        let mut bytes = Vec::new();
        bytes.extend(b"RIFF");
        bytes.extend((36 + data.len() as u32).to_le_bytes());
        bytes.extend(b"WAVEfmt ");
        bytes.extend(16u32.to_le_bytes());
        bytes.extend(format_tag.to_le_bytes());
        bytes.extend(channels.to_le_bytes());
        bytes.extend(rate.to_le_bytes());
        bytes.extend((rate * u32::from(block_align)).to_le_bytes());
        bytes.extend(block_align.to_le_bytes());
        bytes.extend(bits.to_le_bytes());
        bytes.extend(b"data");
        bytes.extend((data.len() as u32).to_le_bytes());
        bytes.extend(data);
        let path = path(name);
        std::fs::write(&path, bytes).unwrap();
        path
    }

    #[test]
    fn every_supported_sample_format_reads_the_same_response() {
        let ir = cab_like(48_000.0, 1);
        for (format, tolerance) in [
            (Format::Int(8), 1.0 / 100.0),
            (Format::Int(16), 1.0 / 30_000.0),
            (Format::Int(24), 1e-6),
            (Format::Int(32), 1e-6),
            (Format::Float, 0.0),
        ] {
            let file = write(&format!("format-{format:?}.wav"), 48_000, format, &[&ir]);
            let read = IrFile::read(&file).unwrap();
            assert_eq!(read.sample_rate, 48_000);
            assert_eq!(read.channels.len(), 1);
            let error = read.channels[0].iter().zip(&ir).fold(0.0f32, |m, (a, b)| m.max((a - b).abs()));
            assert!(error <= tolerance, "{format:?}: error {error}");
            // Trailing silence trimming may drop the quietest end of the tail, nothing more.
            assert!(read.frames() <= ir.len() && read.frames() > ir.len() / 2, "{format:?}");
        }
    }

    #[test]
    fn a_stereo_file_keeps_both_channels() {
        let left = cab_like(44_100.0, 2);
        let right = cab_like(44_100.0, 3);
        let file = write("stereo.wav", 44_100, Format::Float, &[&left, &right]);
        let read = IrFile::read(&file).unwrap();
        assert_eq!(read.channels.len(), 2);
        assert_eq!(read.channels[0][..100], left[..100]);
        assert_eq!(read.channels[1][..100], right[..100]);
        let ir = read.at_rate(48_000.0);
        assert!(ir.is_stereo());
        assert_ne!(ir.channels[0], ir.channels[1]);
    }

    #[test]
    fn a_44k1_response_resampled_to_48k_keeps_its_frequency_response() {
        let original = cab_like(44_100.0, 4);
        let file = write("rate-44k1.wav", 44_100, Format::Float, &[&original]);
        let ir = load(&file, 48_000.0).unwrap();
        assert_eq!(ir.sample_rate, 48_000.0);
        let resampled = &ir.channels[0];
        for hz in [50.0, 100.0, 440.0, 1_000.0, 2_500.0, 5_000.0, 8_000.0, 12_000.0, 16_000.0, 18_000.0] {
            let before = magnitude_db(&original, 44_100.0, hz);
            let after = magnitude_db(resampled, 48_000.0, hz) - f64::from(ir.normalisation_db);
            assert!((after - before).abs() < 0.5, "{hz} Hz: {before:.2} dB before, {after:.2} dB after");
        }
        // A response that starts on a hard transient is the hard case: band-limited, it rings before its first
        // sample, and losing that ringing would cost 0.7 dB at 16 kHz here.
        let hard: Vec<f32> =
            (0..2000).map(|n| if n == 1 { 1.0 } else { 0.2 * 0.9f32.powi(n) * (n as f32 * 0.7).cos() }).collect();
        let resampled = resample(&hard, 44_100.0, 48_000.0);
        for hz in [100.0, 1_000.0, 5_000.0, 10_000.0, 14_000.0, 16_000.0, 18_000.0] {
            let error = magnitude_db(&resampled, 48_000.0, hz) - magnitude_db(&hard, 44_100.0, hz);
            assert!(error.abs() < 0.5, "hard onset at {hz} Hz: {error:.2} dB");
        }
        // And the other way, from a high rate down.
        let high = cab_like(96_000.0, 5);
        let down = resample(&high, 96_000.0, 48_000.0);
        for hz in [100.0, 1_000.0, 10_000.0, 18_000.0] {
            let error = magnitude_db(&down, 48_000.0, hz) - magnitude_db(&high, 96_000.0, hz);
            assert!(error.abs() < 0.5, "96k -> 48k at {hz} Hz: {error:.2} dB");
        }
    }

    #[test]
    fn two_responses_differing_only_in_gain_load_equally_loud() {
        let ir = cab_like(48_000.0, 6);
        let quiet: Vec<f32> = ir.iter().map(|x| x * 0.05).collect();
        let a = load(&write("loud.wav", 48_000, Format::Int(24), &[&ir]), 48_000.0).unwrap();
        let b = load(&write("quiet.wav", 48_000, Format::Int(24), &[&quiet]), 48_000.0).unwrap();
        let la = 10.0 * band_loudness(&a.channels[0], 48_000.0).log10();
        let lb = 10.0 * band_loudness(&b.channels[0], 48_000.0).log10();
        assert!(la.abs() < 0.01 && lb.abs() < 0.01, "normalised to unity: {la:.3} dB, {lb:.3} dB");
        // The quiet file got exactly the 26 dB it lacked.
        let difference = b.normalisation_db - a.normalisation_db;
        assert!((difference + 20.0 * 0.05f32.log10()).abs() < 0.05, "{difference} dB");
    }

    #[test]
    fn a_dark_and_a_bright_cab_are_normalised_to_the_same_guitar_band_loudness() {
        // Same energy, very different tone: energy normalisation would leave the dark one far louder on guitar.
        let dark: Vec<f32> = (0..2000).map(|n| (-(n as f32) / 200.0).exp() * 0.1).collect();
        let bright: Vec<f32> = (0..2000).map(|n| if n == 0 { 1.0 } else { 0.0 }).collect();
        let dark = load(&write("dark.wav", 48_000, Format::Float, &[&dark]), 48_000.0).unwrap();
        let bright = load(&write("bright.wav", 48_000, Format::Float, &[&bright]), 48_000.0).unwrap();
        for ir in [&dark, &bright] {
            assert!((10.0 * band_loudness(&ir.channels[0], 48_000.0).log10()).abs() < 0.01);
        }
        // A unit impulse is already at unity: nothing to change.
        assert!(bright.normalisation_db.abs() < 0.01, "{}", bright.normalisation_db);
    }

    #[test]
    fn trailing_silence_is_trimmed_and_leading_delay_kept() {
        let mut ir = vec![0.0f32; 100];
        ir.extend(cab_like(48_000.0, 7));
        let tail_start = ir.len();
        ir.extend(std::iter::repeat_n(0.0, 48_000));
        ir.extend(std::iter::repeat_n(1e-7, 1000)); // -140 dB: below the trim threshold
        let read = IrFile::read(&write("padded.wav", 48_000, Format::Float, &[&ir])).unwrap();
        assert!(read.frames() <= tail_start, "{} frames", read.frames());
        assert!(read.channels[0][..100].iter().all(|&x| x == 0.0), "the pre-delay (mic distance) stays");
        // 30 s of file, 80 ms of response: accepted, because what counts is the response.
        let mut long = cab_like(8_000.0, 8);
        long.resize(8_000 * 30, 0.0);
        assert!(IrFile::read(&write("long-silence.wav", 8_000, Format::Int(16), &[&long])).is_ok());
    }

    #[test]
    fn bad_files_each_give_the_right_error() {
        let ir = cab_like(48_000.0, 9);
        assert!(matches!(problem(&path("does-not-exist.wav")), IrProblem::Io(_)));
        let empty = path("zero-bytes.wav");
        std::fs::write(&empty, b"").unwrap();
        assert!(matches!(problem(&empty), IrProblem::NotWav(_)));
        let text = path("notes.wav");
        std::fs::write(&text, "this is not a wav file, it is a shopping list").unwrap();
        assert!(matches!(problem(&text), IrProblem::NotWav(_)));
        let no_frames = write("no-frames.wav", 48_000, Format::Int(16), &[&[]]);
        assert!(matches!(problem(&no_frames), IrProblem::Empty));
        assert!(matches!(problem(&raw_wav("zero-channels.wav", 1, 0, 48_000, 16, &[0; 8])), IrProblem::NoChannels));
        let four = write("quad.wav", 48_000, Format::Int(16), &[&ir, &ir, &ir, &ir]);
        assert!(matches!(problem(&four), IrProblem::TooManyChannels(4)));
        let slow = write("slow.wav", 4_000, Format::Int(16), &[&ir]);
        assert!(matches!(problem(&slow), IrProblem::SampleRate(4_000)));
        let absurd = raw_wav("absurd-rate.wav", 1, 1, 5_000_000, 16, &[1, 2, 3, 4]);
        assert!(matches!(problem(&absurd), IrProblem::SampleRate(5_000_000)));
        let mut broken = ir.clone();
        broken[10] = f32::NAN;
        let nan = write("nan.wav", 48_000, Format::Float, &[&broken]);
        assert!(matches!(problem(&nan), IrProblem::NotFinite { frame: 10, channel: 0 }));
        broken[10] = f32::INFINITY;
        let inf = write("inf.wav", 48_000, Format::Float, &[&ir, &broken]);
        assert!(matches!(problem(&inf), IrProblem::NotFinite { frame: 10, channel: 1 }));
        let silent = write("silent.wav", 48_000, Format::Int(16), &[&vec![0.0; 4800]]);
        assert!(matches!(problem(&silent), IrProblem::Silent));
        let eleven_seconds: Vec<f32> = (0..8_000 * 11).map(|n| (n as f32 * 0.1).sin() * 0.5).collect();
        let long = write("eleven-seconds.wav", 8_000, Format::Int(16), &[&eleven_seconds]);
        assert!(matches!(problem(&long), IrProblem::TooLong { .. }));
        let double = raw_wav("float64.wav", 3, 1, 48_000, 64, &[0; 64]);
        assert!(matches!(problem(&double), IrProblem::NotWav(_) | IrProblem::UnsupportedFormat { .. }));
        // Cut mid-way: the header promises more than the file holds.
        let whole = std::fs::read(write("whole.wav", 48_000, Format::Int(24), &[&ir])).unwrap();
        let truncated = path("truncated.wav");
        std::fs::write(&truncated, &whole[..whole.len() / 2]).unwrap();
        assert!(matches!(problem(&truncated), IrProblem::Truncated));
    }

    #[test]
    fn damaged_headers_are_errors_never_panics() {
        let ir = cab_like(48_000.0, 10);
        let good = std::fs::read(write("good.wav", 48_000, Format::Int(16), &[&ir[..200]])).unwrap();
        let mut state = 12_345u32;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            state
        };
        let damaged = path("damaged.wav");
        for _ in 0..500 {
            let mut bytes = good.clone();
            for _ in 0..1 + next() % 4 {
                let at = (next() % 48) as usize; // the header
                bytes[at] = next() as u8;
            }
            if next() % 4 == 0 {
                bytes.truncate((next() as usize) % bytes.len());
            }
            std::fs::write(&damaged, &bytes).unwrap();
            if let Ok(read) = IrFile::read(&damaged) {
                let ir = read.at_rate(48_000.0);
                assert!(ir.channels.iter().flatten().all(|x| x.is_finite()));
            }
        }
    }
}
