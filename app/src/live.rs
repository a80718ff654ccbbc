//! Live audio: the engine between a cpal input stream and a cpal output stream.
//!
//! cpal has no duplex streams on Linux or Windows, so the input callback pushes the chosen input channel into an
//! rtrb ring and the output callback — which owns the [`Engine`] — pops it, processes and writes the interleaved
//! output. The ring starts holding one period of silence, so the output runs one period behind the input and a
//! little jitter between the two callbacks never starves it. If the two clocks drift (two devices), the ring is
//! kept between its bounds by dropping or padding a few frames, and that is counted.
//!
//! Both callbacks follow the audio thread's rules: no allocation, no locks, no I/O. What they report goes through
//! atomics in [`LiveStats`]; errors cpal reports (xruns, a device unplugged) are counted the same way.
//!
//! Input is only routed when asked for (`route_input`): a laptop's microphone next to its speakers would otherwise
//! howl. Without it the board plays the demo guitar (the corpus generator's output, looped) or silence.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use cpal::traits::{DeviceTrait, HostTrait, StreamTrait};
use cpal::{FromSample, Sample, SampleFormat, SizedSample, StreamConfig};
use neuralboard_engine::Engine;
use neuralboard_engine::corpus::{self, CorpusSpec};
use neuralboard_engine::takes::TakeTap;

/// Largest number of frames the output callback hands the engine at once; longer callbacks are processed in
/// pieces.
pub const MAX_CHUNK: usize = 1024;
/// How long stream construction may take before we give up on a device.
const OPEN_TIMEOUT: Duration = Duration::from_secs(5);

/// Seconds of demo guitar looped when no input is routed.
const DEMO_SECONDS: f32 = 20.0;
/// The demo guitar's corpus seed: a fixed, pleasant phrase mix.
const DEMO_SEED: u64 = 7;

/// The demo guitar loop played when no input is routed: corpus phrases at `sample_rate`, starting just before the
/// first note rather than in a silence.
pub fn demo_loop(sample_rate: f32) -> Vec<f32> {
    let mut demo =
        corpus::generate(&CorpusSpec { sample_rate, test_signals: false, ..CorpusSpec::new(DEMO_SEED, DEMO_SECONDS) })
            .samples;
    let first_note = demo.iter().position(|x| x.abs() > 0.01).unwrap_or(0);
    demo.rotate_left(first_note.saturating_sub(sample_rate as usize / 20));
    demo
}

/// What to open.
#[derive(Debug, Clone, Default)]
pub struct LiveOptions {
    /// Host name as cpal spells it (`ALSA`, `JACK`, …), case-insensitive; default: cpal's default host.
    pub host: Option<String>,
    /// Part of the input/output device's name; default: the host's default device.
    pub input_device: Option<String>,
    pub output_device: Option<String>,
    /// Route this input channel (1-based) into the board. `None`: the input is not opened (feedback guard).
    pub input_channel: Option<u16>,
    /// Frames per callback; default: the device's.
    pub buffer: Option<u32>,
    /// Sample rate; default: the output device's.
    pub sample_rate: Option<u32>,
}

/// Where the board's input comes from.
pub enum Source {
    /// The input device (channel chosen in [`LiveOptions::input_channel`]).
    Device,
    /// A recording played in a loop (the demo guitar when no input is routed).
    Loop(Vec<f32>),
    Silence,
}

/// Counters both callbacks update; read them from any thread.
#[derive(Debug, Default)]
pub struct LiveStats {
    pub output_callbacks: AtomicU64,
    pub output_frames: AtomicU64,
    pub input_callbacks: AtomicU64,
    /// Xruns cpal reported (buffer under/overruns in the device or server).
    pub xruns: AtomicU64,
    /// Frames the output had to fill with silence because the input had not delivered them yet.
    pub input_starved: AtomicU64,
    /// Input frames dropped because the ring was full (the output stalled or runs slower).
    pub input_dropped: AtomicU64,
    /// Other stream errors cpal reported.
    pub errors: AtomicU64,
    /// Output callbacks whose own CPU time exceeded the period they had to fill: overruns the board caused, as
    /// opposed to xruns from the rest of the system (scheduling, other clients). Zero on a working setup.
    pub engine_overruns: AtomicU64,
    /// Most CPU time one output callback took, nanoseconds.
    pub max_callback_cpu_ns: AtomicU64,
    /// Set when a device went away (unplugged, server stopped): the streams must be reopened.
    pub device_lost: AtomicBool,
}

/// A running pair of streams. Dropping it stops them.
pub struct LiveAudio {
    _input: Option<cpal::Stream>,
    _output: cpal::Stream,
    pub stats: Arc<LiveStats>,
    pub info: LiveInfo,
}

/// What was opened, for the player to see.
#[derive(Debug, Clone)]
pub struct LiveInfo {
    pub host: String,
    pub input_device: Option<String>,
    pub output_device: String,
    pub sample_rate: u32,
    /// Frames per callback if fixed, else `None` (the device decides).
    pub buffer: Option<u32>,
    pub output_channels: u16,
    pub input_channels: u16,
    /// One period of input buffering plus the ring's period of slack plus the output's double buffer, frames (an
    /// estimate; the engine's own pedal latency comes on top).
    pub latency_frames: u32,
}

impl LiveInfo {
    pub fn latency_ms(&self) -> f64 {
        1000.0 * f64::from(self.latency_frames) / f64::from(self.sample_rate)
    }
}

/// The devices and configurations chosen, before any stream runs (so the engine can be built for the rate).
pub struct Plan {
    input: Option<(cpal::Device, StreamConfig, SampleFormat, usize)>,
    output: (cpal::Device, StreamConfig, SampleFormat),
    pub info: LiveInfo,
}

/// The devices of one audio host, for the settings page.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HostDevices {
    pub host: String,
    /// Input devices with their channel counts.
    pub inputs: Vec<(String, u16)>,
    pub outputs: Vec<String>,
    /// Why the host cannot be used (no server running, no permission), if it cannot.
    pub problem: Option<String>,
}

/// Every host this build offers with its devices. Slow on some hosts (ALSA probes each card): call it off the GUI
/// thread.
pub fn device_catalog() -> Vec<HostDevices> {
    cpal::available_hosts()
        .into_iter()
        .map(|id| {
            let mut entry = HostDevices { host: id.name().to_owned(), ..HostDevices::default() };
            match cpal::host_from_id(id) {
                Err(e) => entry.problem = Some(e.to_string()),
                Ok(host) => match host.devices() {
                    Err(e) => entry.problem = Some(e.to_string()),
                    Ok(devices) => {
                        for device in devices {
                            if let Ok(config) = device.default_input_config() {
                                entry.inputs.push((device_name(&device), config.channels()));
                            }
                            if device.default_output_config().is_ok() {
                                entry.outputs.push(device_name(&device));
                            }
                        }
                    }
                },
            }
            entry
        })
        .collect()
}

/// Lists hosts and devices, for `neuralboard play --list`.
pub fn describe_devices() -> String {
    let mut out = String::new();
    for id in cpal::available_hosts() {
        out += &format!("host {}\n", id.name());
        let Ok(host) = cpal::host_from_id(id) else {
            out += "  (not available)\n";
            continue;
        };
        match host.devices() {
            Ok(devices) => {
                for device in devices {
                    let io = match (device.supports_input(), device.supports_output()) {
                        (true, true) => "in/out",
                        (true, false) => "in",
                        (false, true) => "out",
                        (false, false) => "-",
                    };
                    out += &format!("  [{io}] {}\n", device_name(&device));
                }
            }
            Err(e) => out += &format!("  cannot list devices: {e}\n"),
        }
    }
    out
}

fn device_name(device: &cpal::Device) -> String {
    device.description().map(|d| d.name().to_owned()).unwrap_or_else(|_| "(unnamed)".to_owned())
}

fn pick_host(name: Option<&str>) -> anyhow::Result<cpal::Host> {
    let Some(name) = name else { return Ok(cpal::default_host()) };
    let hosts = cpal::available_hosts();
    let id = hosts.iter().find(|id| id.name().eq_ignore_ascii_case(name)).copied().ok_or_else(|| {
        let names: Vec<&str> = hosts.iter().map(|id| id.name()).collect();
        anyhow!("audio host '{name}' is not available in this build (available: {})", names.join(", "))
    })?;
    cpal::host_from_id(id).with_context(|| format!("audio host {} cannot be used", id.name()))
}

fn pick_device(host: &cpal::Host, wanted: Option<&str>, input: bool) -> anyhow::Result<cpal::Device> {
    let what = if input { "input" } else { "output" };
    match wanted {
        None => {
            let device = if input { host.default_input_device() } else { host.default_output_device() };
            device.ok_or_else(|| anyhow!("no {what} device on audio host {}", host.id().name()))
        }
        Some(wanted) => {
            let devices = if input { host.input_devices() } else { host.output_devices() }
                .with_context(|| format!("cannot list {what} devices"))?;
            let lower = wanted.to_lowercase();
            devices.into_iter().find(|d| device_name(d).to_lowercase().contains(&lower)).ok_or_else(|| {
                anyhow!("no {what} device matching '{wanted}' on audio host {} (see --list)", host.id().name())
            })
        }
    }
}

/// Round-trip estimate from the period: the output's double buffer, plus, with an input, the input's period and the
/// ring's period of slack. A formula, not a loopback measurement; the pedals' own latency comes on top.
pub fn latency_frames(period: u32, with_input: bool) -> u32 {
    if with_input { 4 * period } else { 2 * period }
}

/// Chooses host, devices, rate and buffer size; opens nothing yet.
pub fn plan(options: &LiveOptions) -> anyhow::Result<Plan> {
    let host = pick_host(options.host.as_deref())?;
    let host_name = host.id().name().to_owned();
    let out_device = pick_device(&host, options.output_device.as_deref(), false)?;
    let out_default = out_device
        .default_output_config()
        .with_context(|| format!("output device {}: no usable configuration", device_name(&out_device)))?;
    let sample_rate = options.sample_rate.unwrap_or(out_default.sample_rate());
    let buffer_size = options.buffer.map_or(cpal::BufferSize::Default, cpal::BufferSize::Fixed);
    let out_config = StreamConfig { channels: out_default.channels(), sample_rate, buffer_size };

    let input = match options.input_channel {
        None => None,
        Some(channel) => {
            let device = pick_device(&host, options.input_device.as_deref(), true)?;
            let default = device
                .default_input_config()
                .with_context(|| format!("input device {}: no usable configuration", device_name(&device)))?;
            let channels = default.channels();
            if channel == 0 || channel > channels {
                bail!("input channel {channel} does not exist: {} has channels 1 to {channels}", device_name(&device));
            }
            let config = StreamConfig { channels, sample_rate, buffer_size };
            Some((device, config, default.sample_format(), usize::from(channel - 1)))
        }
    };
    let period = options.buffer.unwrap_or(256);
    let info = LiveInfo {
        host: host_name,
        input_device: input.as_ref().map(|(d, ..)| device_name(d)),
        output_device: device_name(&out_device),
        sample_rate,
        buffer: options.buffer,
        output_channels: out_config.channels,
        input_channels: input.as_ref().map_or(0, |(_, c, ..)| c.channels),
        latency_frames: latency_frames(period, input.is_some()),
    };
    Ok(Plan { input, output: (out_device, out_config, out_default.sample_format()), info })
}

impl Plan {
    /// Starts the streams with `engine` (built for [`LiveInfo::sample_rate`] and a maximum block of at least
    /// [`MAX_CHUNK`]) playing `source`.
    /// `tap`, when given, records every callback's dry input and processed output (see
    /// [`neuralboard_engine::takes`]).
    pub fn start(self, mut engine: Engine, source: Source, tap: Option<TakeTap>) -> anyhow::Result<LiveAudio> {
        warm_up(&mut engine, self.info.sample_rate);
        let stats = Arc::new(LiveStats::default());
        let period = self.info.buffer.unwrap_or(256) as usize;
        // Room for several periods of jitter; the output keeps it near one period.
        let (mut producer, consumer) = rtrb::RingBuffer::<f32>::new((8 * period).max(8192));
        for _ in 0..period {
            let _ = producer.push(0.0);
        }
        let (source, producer) = match (source, self.input.is_some()) {
            (Source::Device, true) => (SourceState::Device(consumer), Some(producer)),
            (Source::Device, false) => bail!("no input device is open: route an input channel first"),
            (Source::Loop(samples), _) if !samples.is_empty() => (SourceState::Loop { samples, position: 0 }, None),
            _ => (SourceState::Silence, None),
        };

        let input = match (self.input, producer) {
            (Some((device, config, format, channel)), Some(producer)) => {
                let stream = match format {
                    SampleFormat::I16 => build_input::<i16>(&device, &config, channel, producer, &stats),
                    SampleFormat::I32 => build_input::<i32>(&device, &config, channel, producer, &stats),
                    _ => build_input::<f32>(&device, &config, channel, producer, &stats),
                }
                .with_context(|| format!("cannot open input device {}", device_name(&device)))?;
                Some(stream)
            }
            _ => None,
        };
        let (device, config, format) = self.output;
        let runner = OutputRunner::new(
            engine,
            tap,
            source,
            usize::from(config.channels),
            period,
            config.sample_rate,
            Arc::clone(&stats),
        );
        let output = match format {
            SampleFormat::I16 => build_output::<i16>(&device, &config, runner),
            SampleFormat::I32 => build_output::<i32>(&device, &config, runner),
            _ => build_output::<f32>(&device, &config, runner),
        }
        .with_context(|| format!("cannot open output device {}", device_name(&device)))?;
        if let Some(input) = &input {
            input.play().context("cannot start the input stream")?;
        }
        output.play().context("cannot start the output stream")?;
        let mut info = self.info;
        // With the device's default buffer the period is only known now.
        if let Ok(frames) = output.buffer_size() {
            info.latency_frames = latency_frames(frames, input.is_some());
        }
        Ok(LiveAudio { _input: input, _output: output, stats, info })
    }
}

/// Runs the engine over a tenth of a second of silence before it goes to the audio thread: the chain the controller
/// sent is installed, every buffer is touched (paged in) and caches are warm, so the first real callbacks are not
/// the slowest. (Read the telemetry once after starting to clear the warm-up's readings.)
fn warm_up(engine: &mut Engine, sample_rate: u32) {
    let (input, mut left, mut right) = (vec![0.0f32; 64], vec![0.0f32; 64], vec![0.0f32; 64]);
    for _ in 0..(sample_rate as usize / 10 / 64).max(1) {
        engine.process(&input, &mut left, &mut right);
    }
}

fn error_counter(stats: &Arc<LiveStats>) -> impl FnMut(cpal::Error) + Send + 'static {
    let stats = Arc::clone(stats);
    move |error: cpal::Error| match error.kind() {
        cpal::ErrorKind::Xrun => {
            stats.xruns.fetch_add(1, Ordering::Relaxed);
        }
        cpal::ErrorKind::DeviceNotAvailable | cpal::ErrorKind::StreamInvalidated | cpal::ErrorKind::HostUnavailable => {
            stats.device_lost.store(true, Ordering::Relaxed);
        }
        _ => {
            stats.errors.fetch_add(1, Ordering::Relaxed);
        }
    }
}

fn build_input<T>(
    device: &cpal::Device,
    config: &StreamConfig,
    channel: usize,
    mut producer: rtrb::Producer<f32>,
    stats: &Arc<LiveStats>,
) -> Result<cpal::Stream, cpal::Error>
where
    T: SizedSample,
    f32: FromSample<T>,
{
    let channels = usize::from(config.channels);
    let counters = Arc::clone(stats);
    device.build_input_stream::<T, _, _>(
        *config,
        move |data: &[T], _| {
            counters.input_callbacks.fetch_add(1, Ordering::Relaxed);
            let mut dropped = 0u64;
            for frame in data.chunks_exact(channels) {
                if producer.push(f32::from_sample(frame[channel])).is_err() {
                    dropped += 1;
                }
            }
            if dropped > 0 {
                counters.input_dropped.fetch_add(dropped, Ordering::Relaxed);
            }
        },
        error_counter(stats),
        Some(OPEN_TIMEOUT),
    )
}

fn build_output<T>(
    device: &cpal::Device,
    config: &StreamConfig,
    mut runner: OutputRunner,
) -> Result<cpal::Stream, cpal::Error>
where
    T: SizedSample + FromSample<f32>,
{
    let errors = error_counter(&runner.stats);
    device.build_output_stream::<T, _, _>(
        *config,
        move |data: &mut [T], _| runner.fill(data),
        errors,
        Some(OPEN_TIMEOUT),
    )
}

/// CPU time the calling thread has used, nanoseconds (time spent preempted does not count). Real-time safe: one
/// `clock_gettime`, no allocation.
#[cfg(unix)]
fn thread_cpu_ns() -> u64 {
    let mut t = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `t` is a valid, writable timespec and the clock id is a constant the platform defines.
    if unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut t) } != 0 {
        return 0;
    }
    t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64
}

/// Without a per-thread CPU clock, wall time (which also counts time the thread was preempted).
#[cfg(not(unix))]
fn thread_cpu_ns() -> u64 {
    use std::sync::OnceLock;
    static START: OnceLock<std::time::Instant> = OnceLock::new();
    START.get_or_init(std::time::Instant::now).elapsed().as_nanos() as u64
}

enum SourceState {
    Device(rtrb::Consumer<f32>),
    Loop { samples: Vec<f32>, position: usize },
    Silence,
}

/// Everything the output callback owns.
struct OutputRunner {
    engine: Engine,
    tap: Option<TakeTap>,
    source: SourceState,
    channels: usize,
    sample_rate: u32,
    /// The ring's target fill, frames: one period.
    period: usize,
    input: Vec<f32>,
    left: Vec<f32>,
    right: Vec<f32>,
    stats: Arc<LiveStats>,
}

impl OutputRunner {
    fn new(
        engine: Engine,
        tap: Option<TakeTap>,
        source: SourceState,
        channels: usize,
        period: usize,
        sample_rate: u32,
        stats: Arc<LiveStats>,
    ) -> Self {
        Self {
            engine,
            tap,
            sample_rate,
            source,
            channels: channels.max(1),
            period,
            input: vec![0.0; MAX_CHUNK],
            left: vec![0.0; MAX_CHUNK],
            right: vec![0.0; MAX_CHUNK],
            stats,
        }
    }

    /// The output callback: real-time safe.
    fn fill<T: SizedSample + FromSample<f32>>(&mut self, data: &mut [T]) {
        let started = thread_cpu_ns();
        self.render(data);
        let used = thread_cpu_ns().saturating_sub(started);
        let frames = (data.len() / self.channels) as u64;
        if used.saturating_mul(u64::from(self.sample_rate)) > frames * 1_000_000_000 {
            self.stats.engine_overruns.fetch_add(1, Ordering::Relaxed);
        }
        self.stats.max_callback_cpu_ns.fetch_max(used, Ordering::Relaxed);
    }

    fn render<T: SizedSample + FromSample<f32>>(&mut self, data: &mut [T]) {
        let frames = data.len() / self.channels;
        self.stats.output_callbacks.fetch_add(1, Ordering::Relaxed);
        self.stats.output_frames.fetch_add(frames as u64, Ordering::Relaxed);
        self.keep_ring_bounded(frames);
        for out in data.chunks_mut(MAX_CHUNK * self.channels) {
            let n = out.len() / self.channels;
            self.read_input(n);
            self.engine.process(&self.input[..n], &mut self.left[..n], &mut self.right[..n]);
            if let Some(tap) = &mut self.tap {
                tap.push(&self.input[..n], &self.left[..n], &self.right[..n]);
            }
            for (i, frame) in out.chunks_exact_mut(self.channels).enumerate() {
                frame[0] = T::from_sample(self.left[i]);
                if self.channels > 1 {
                    frame[1] = T::from_sample(self.right[i]);
                    for s in &mut frame[2..] {
                        *s = T::from_sample(0.0f32);
                    }
                }
            }
        }
    }

    /// Drops input frames beyond a few periods (the input clock runs fast, or the output stalled), so the latency
    /// cannot grow without bound.
    fn keep_ring_bounded(&mut self, frames: usize) {
        if let SourceState::Device(consumer) = &mut self.source {
            let limit = frames + 3 * self.period;
            let excess = consumer.slots().saturating_sub(limit);
            if excess > 0
                && let Ok(chunk) = consumer.read_chunk(excess)
            {
                chunk.commit_all();
                self.stats.input_dropped.fetch_add(excess as u64, Ordering::Relaxed);
            }
        }
    }

    fn read_input(&mut self, n: usize) {
        let input = &mut self.input[..n];
        match &mut self.source {
            SourceState::Device(consumer) => {
                let available = consumer.slots().min(n);
                if let Ok(chunk) = consumer.read_chunk(available) {
                    let (a, b) = chunk.as_slices();
                    input[..a.len()].copy_from_slice(a);
                    input[a.len()..available].copy_from_slice(b);
                    chunk.commit_all();
                }
                if available < n {
                    input[available..].fill(0.0);
                    self.stats.input_starved.fetch_add((n - available) as u64, Ordering::Relaxed);
                }
            }
            SourceState::Loop { samples, position } => {
                let mut filled = 0;
                while filled < n {
                    let run = (samples.len() - *position).min(n - filled);
                    input[filled..filled + run].copy_from_slice(&samples[*position..*position + run]);
                    filled += run;
                    *position = (*position + run) % samples.len();
                }
            }
            SourceState::Silence => input.fill(0.0),
        }
    }
}
