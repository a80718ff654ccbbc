//! Runs a processor that only works at one sample rate (a neural amp trained at 48 kHz) inside an audio stream at
//! another (a sound card at 44.1 or 96 kHz): device rate → model rate → model → device rate, on the audio thread.
//!
//! Both conversions are polyphase FIR filters at the exact rational ratio between the two rates (160/147 for
//! 44.1 ↔ 48 kHz, 1/2 for 96 ↔ 48 kHz). An exact ratio means no clock drift to track, no interpolation between
//! table entries and no accumulated rounding: every output sample is one dot product with one of a fixed set of
//! coefficient rows. Both filters are the same linear-phase prototype, a Kaiser-windowed sinc, flat to
//! [`PASSBAND_HZ`] and [`STOPBAND_DB`] down from the lower rate minus [`CLEAN_BAND_HZ`], which is where the
//! image of a tone at that frequency lands: every tone up to it comes through with its images and aliases, in
//! the output and in what the model is fed, at least 100 dB down.
//!
//! The filters run one sample at a time: each device sample pushed in yields the model samples it completes, the
//! model runs once on all of them, and each model sample yields the device samples it completes. So a callback
//! of any size comes back complete, and the only latency is the two filters' own group delay, rounded up to a
//! whole device sample by where the model's sampling instants are placed: under a millisecond, whatever the
//! block size (39 samples at 44.1 kHz, 56 at 96 kHz). rubato's resamplers work in chunks: fed through FIFOs
//! they add a chunk of delay, and fed one sample per call (the same scheme as here) they need a 128-tap
//! Blackman-Harris sinc to stay flat to 18 kHz, 2.7 ms at 44.1 kHz, and several times the CPU.
//!
//! Why the model must be fed a clean signal, not just the output: an amp model is non-linear, so an image left in
//! its input (a 19 kHz note's image sits at 25.1 kHz when 44.1 kHz is upsampled) would intermodulate into the
//! audible band, where no output filter could remove it.

use thiserror::Error;

/// Highest frequency that passes flat (within ±0.001 dB), when the lower of the two rates is 44.1 kHz or above.
pub const PASSBAND_HZ: f64 = 18_000.0;

/// Highest frequency whose images and aliases are rejected in full: the stopband starts at the lower rate minus
/// this, where the image of a tone at this frequency lands. Between it and [`PASSBAND_HZ`] a tone loses a
/// fraction of a decibel. Guitar, amp and cabinet carry nothing audible up there, and each kilohertz added to the
/// transition band between the two shortens the filters, so the latency, by 10 to 15 %.
pub const CLEAN_BAND_HZ: f64 = 19_000.0;

/// Below 44.1 kHz both bands shrink in proportion to the lower rate, keeping the same relative transition.
const REFERENCE_LOWER_RATE: f64 = 44_100.0;

/// Stopband attenuation the prototype is designed for: 10 dB below the −90 dB the engine promises for images and
/// aliases, for the two filters' residues adding up and the Kaiser length formula being approximate.
pub const STOPBAND_DB: f64 = 100.0;

/// Largest number of coefficient rows (polyphase branches) a filter may have. Every standard device rate from 8 to
/// 384 kHz needs at most 1280 with a model at 44.1, 48 or 96 kHz (11.025 ↔ 96 kHz), and the tables then take about
/// 200 KiB; an odd pair such as 47 999 ↔ 48 000 Hz would need tens of megabytes.
const MAX_PHASES: u32 = 2048;

/// Dot products run on this many independent accumulators, which the compiler turns into SIMD lanes; coefficient
/// rows are zero-padded to a multiple of it.
const LANES: usize = 8;

#[derive(Debug, Clone, PartialEq, Error)]
pub enum ResampleError {
    #[error("sample rate {0} Hz is not usable: use a whole, positive number of hertz such as 44100 or 48000")]
    InvalidRate(f32),
    #[error(
        "cannot convert between {device} Hz (device) and {model} Hz (model): the ratio {up}/{down} needs more \
         than {MAX_PHASES} filter phases; run the audio device at 44100, 48000, 88200 or 96000 Hz"
    )]
    UnsupportedRatio { device: u32, model: u32, up: u32, down: u32 },
    #[error("the largest block must be at least one sample")]
    ZeroBlock,
}

/// Runs a fixed-rate processor at its own rate inside a stream at another rate.
#[derive(Debug, Clone)]
pub struct RateAdapter {
    max_block: usize,
    max_inner_block: usize,
    latency: usize,
    /// `None` when the rates are equal: the inner processor is then called directly.
    conversion: Option<Conversion>,
}

/// The state of a real conversion: the two filters and the buffers between them.
#[derive(Debug, Clone)]
struct Conversion {
    to_model: Polyphase,
    to_device: Polyphase,
    model_in: Vec<f32>,
    model_out: Vec<f32>,
    /// Device-rate output. The first `carry` samples were completed early by the previous callback (the model
    /// samples it produced already reached into this one's time span) and are due now.
    device_out: Vec<f32>,
    carry: usize,
}

impl RateAdapter {
    /// Allocates everything (call off the audio thread). `max_block` = largest device block.
    pub fn new(device_rate: f32, model_rate: f32, max_block: usize) -> Result<Self, ResampleError> {
        let device = whole_hertz(device_rate)?;
        let model = whole_hertz(model_rate)?;
        if max_block == 0 {
            return Err(ResampleError::ZeroBlock);
        }
        if device == model {
            return Ok(Self { max_block, max_inner_block: max_block, latency: 0, conversion: None });
        }

        // model / device = up / down. Both filters run at the common rate device · up = model · down, where a
        // device sample falls every `up` ticks and a model sample every `down` ticks.
        let common = gcd(device, model);
        let (up, down) = (model / common, device / common);
        if up.max(down) > MAX_PHASES {
            return Err(ResampleError::UnsupportedRatio { device, model, up, down });
        }
        let (up, down) = (up as usize, down as usize);
        let high_rate = f64::from(device) * up as f64;

        let lower = f64::from(device.min(model));
        let scale = (lower / REFERENCE_LOWER_RATE).min(1.0);
        let passband = PASSBAND_HZ * scale;
        let stopband = lower - CLEAN_BAND_HZ * scale;
        // Kaiser's estimate of the length that reaches STOPBAND_DB across this transition band, as a half-length
        // (taps either side of the centre) in ticks of the common rate.
        let transition = 2.0 * std::f64::consts::PI * (stopband - passband) / high_rate;
        let min_half = ((STOPBAND_DB - 7.95) / (2.285 * transition) / 2.0).ceil() as usize;

        // Each filter delays by `half` ticks, the round trip by 2·half. Taking the model's samples `offset` ticks
        // after the device's takes that much off, and as long as offset < up every device sample is still complete
        // by the end of the callback that brought its input: the latency is (2·half − offset) / up device samples.
        // Pick the smallest whole number the minimum length allows, then lengthen the filter into what the
        // rounding left over, which only improves it.
        let latency = (2 * min_half + 1).div_ceil(up) - 1;
        let half = ((latency + 1) * up - 1) / 2;
        let offset = 2 * half - latency * up;
        debug_assert!(half >= min_half && offset < up);

        let cutoff = (passband + stopband) / 2.0 / high_rate;
        let prototype = kaiser_lowpass(half, cutoff, kaiser_beta(STOPBAND_DB));
        let to_model = Polyphase::new(&prototype, up, down, offset);
        let to_device = Polyphase::new(&prototype, down, up, 0);

        // Model samples fall every `down` ticks, so `max_block · up` ticks of device input complete at most this
        // many; device samples completed early (see `Conversion::carry`) are at most `down / up` + 1.
        let max_inner_block = (max_block * up).div_ceil(down);
        let max_device_out = max_block + down.div_ceil(up) + 2;
        Ok(Self {
            max_block,
            max_inner_block,
            latency,
            conversion: Some(Conversion {
                to_model,
                to_device,
                model_in: vec![0.0; max_inner_block],
                model_out: vec![0.0; max_inner_block],
                device_out: vec![0.0; max_device_out],
                carry: 0,
            }),
        })
    }

    /// Largest block the inner processor will be asked to process (so the model can be prepared for it).
    pub fn max_inner_block(&self) -> usize {
        self.max_inner_block
    }

    /// Real-time safe: no allocation, no locks. Any input length 0..=max_block; output has the same length.
    /// `inner(in, out)` is called with blocks at the model rate (in.len()==out.len()<=max_inner_block).
    ///
    /// A longer block is processed in pieces of `max_block`, so the inner processor is never over-filled. If
    /// `output` is shorter than `input` only the first `output.len()` samples are processed.
    pub fn process(&mut self, input: &[f32], output: &mut [f32], inner: &mut dyn FnMut(&[f32], &mut [f32])) {
        debug_assert_eq!(input.len(), output.len());
        let pieces = input.chunks(self.max_block).zip(output.chunks_mut(self.max_block));
        match &mut self.conversion {
            None => pieces.for_each(|(input, output)| inner(input, output)),
            Some(conversion) => pieces.for_each(|(input, output)| conversion.process(input, output, inner)),
        }
    }

    /// Total added latency in device-rate samples (constant).
    pub fn latency(&self) -> usize {
        self.latency
    }

    /// Equal rates: the inner processor is called directly, with zero latency.
    pub fn is_passthrough(&self) -> bool {
        self.conversion.is_none()
    }

    /// Forgets all audio: what comes next sounds as if the stream had just started.
    pub fn reset(&mut self) {
        if let Some(conversion) = &mut self.conversion {
            conversion.to_model.reset();
            conversion.to_device.reset();
            conversion.carry = 0;
        }
    }
}

impl Conversion {
    /// One piece of at most `max_block` samples.
    fn process(&mut self, input: &[f32], output: &mut [f32], inner: &mut dyn FnMut(&[f32], &mut [f32])) {
        let mut models = 0;
        for &x in input {
            models += self.to_model.push(x, &mut self.model_in[models..]);
        }
        if models > 0 {
            inner(&self.model_in[..models], &mut self.model_out[..models]);
        }
        let mut ready = self.carry;
        for &y in &self.model_out[..models] {
            ready += self.to_device.push(y, &mut self.device_out[ready..]);
        }
        // The latency was chosen so that every device sample of this piece is complete by now.
        let due = output.len().min(ready);
        debug_assert_eq!(due, output.len(), "device output fell behind the input");
        output[..due].copy_from_slice(&self.device_out[..due]);
        output[due..].fill(0.0);
        self.device_out.copy_within(due..ready, 0);
        self.carry = ready - due;
    }
}

/// One rational-ratio FIR resampler, run one input sample at a time.
///
/// Input samples fall every `step_in` ticks of the common rate and output samples every `step_out`; the prototype
/// low-pass is defined at the common rate. Output sample k at tick t uses the inputs under the prototype's span,
/// which are one in every `step_in` of its taps: the row of coefficients for phase `t mod step_in`.
#[derive(Debug, Clone)]
struct Polyphase {
    /// `step_in` rows of `taps` coefficients, each row reversed so it lines up with the history oldest-first.
    rows: Vec<f32>,
    taps: usize,
    step_in: usize,
    step_out: usize,
    /// The last `taps` inputs, stored twice over so that they are always one contiguous slice, whatever the
    /// write position: `history[write..write + taps]`, oldest first.
    history: Vec<f32>,
    write: usize,
    /// Tick of the next output, counted from the tick of the latest input plus `step_in`.
    next: usize,
    /// `next` at the start of the stream: the offset between the input and output sampling grids.
    first: usize,
}

impl Polyphase {
    fn new(prototype: &[f64], step_in: usize, step_out: usize, offset: usize) -> Self {
        let taps = prototype.len().div_ceil(step_in).next_multiple_of(LANES);
        // Upsampling by `step_in` spreads each input over `step_in` ticks, so each row's gain is scaled back up.
        let gain = step_in as f64;
        let mut rows = vec![0.0; step_in * taps];
        for (phase, row) in rows.chunks_exact_mut(taps).enumerate() {
            for (age, c) in row.iter_mut().rev().enumerate() {
                let tap = phase + age * step_in;
                *c = prototype.get(tap).map_or(0.0, |h| (h * gain) as f32);
            }
        }
        let first = offset + step_in;
        Self { rows, taps, step_in, step_out, history: vec![0.0; 2 * taps], write: 0, next: first, first }
    }

    /// Takes one input sample, writes the output samples it completes to the front of `out`, returns how many.
    #[inline]
    fn push(&mut self, x: f32, out: &mut [f32]) -> usize {
        let taps = self.taps;
        self.history[self.write] = x;
        self.history[self.write + taps] = x;
        self.write = if self.write + 1 == taps { 0 } else { self.write + 1 };
        let recent = &self.history[self.write..self.write + taps];

        self.next -= self.step_in;
        let mut written = 0;
        while self.next < self.step_in {
            let row = &self.rows[self.next * taps..(self.next + 1) * taps];
            out[written] = dot(row, recent);
            written += 1;
            self.next += self.step_out;
        }
        written
    }

    fn reset(&mut self) {
        self.history.fill(0.0);
        self.write = 0;
        self.next = self.first;
    }
}

/// Sum of products of two equally long slices whose length is a multiple of [`LANES`].
#[inline]
fn dot(a: &[f32], b: &[f32]) -> f32 {
    // Two independent accumulator sets, so consecutive additions do not wait for each other.
    let (mut even, mut odd) = ([0.0f32; LANES], [0.0f32; LANES]);
    let (a_pairs, a_rest) = a.split_at(a.len() / (2 * LANES) * (2 * LANES));
    let (b_pairs, b_rest) = b.split_at(a_pairs.len());
    for (a, b) in a_pairs.chunks_exact(2 * LANES).zip(b_pairs.chunks_exact(2 * LANES)) {
        for lane in 0..LANES {
            even[lane] += a[lane] * b[lane];
            odd[lane] += a[LANES + lane] * b[LANES + lane];
        }
    }
    for (a, b) in a_rest.chunks_exact(LANES).zip(b_rest.chunks_exact(LANES)) {
        for lane in 0..LANES {
            even[lane] += a[lane] * b[lane];
        }
    }
    even.iter().zip(&odd).map(|(e, o)| e + o).sum()
}

/// Highest rate accepted, far above any sound card, so that rate arithmetic cannot overflow.
const MAX_RATE_HZ: f32 = 10_000_000.0;

/// A rate in Hz as a whole number, rejecting what no sound card or model uses.
fn whole_hertz(rate: f32) -> Result<u32, ResampleError> {
    let rounded = rate.round();
    if rate.is_finite() && (1.0..=MAX_RATE_HZ).contains(&rounded) && (rate - rounded).abs() < 1e-3 {
        Ok(rounded as u32)
    } else {
        Err(ResampleError::InvalidRate(rate))
    }
}

fn gcd(mut a: u32, mut b: u32) -> u32 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// Kaiser's window shape for a filter with `attenuation_db` of stopband attenuation.
fn kaiser_beta(attenuation_db: f64) -> f64 {
    if attenuation_db > 50.0 {
        0.1102 * (attenuation_db - 8.7)
    } else if attenuation_db > 21.0 {
        0.5842 * (attenuation_db - 21.0).powf(0.4) + 0.07886 * (attenuation_db - 21.0)
    } else {
        0.0
    }
}

/// Linear-phase low-pass, `2 · half + 1` taps, cutting off at `cutoff` cycles per sample (−6 dB there), with a
/// Kaiser window of shape `beta`, normalised to unity gain at DC.
fn kaiser_lowpass(half: usize, cutoff: f64, beta: f64) -> Vec<f64> {
    let centre = half as f64;
    let norm = bessel_i0(beta);
    let mut taps: Vec<f64> = (0..=2 * half)
        .map(|n| {
            let from_centre = n as f64 - centre;
            let x = 2.0 * cutoff * from_centre;
            let sinc = if x == 0.0 { 1.0 } else { (std::f64::consts::PI * x).sin() / (std::f64::consts::PI * x) };
            let r = if half == 0 { 0.0 } else { from_centre / centre };
            let window = bessel_i0(beta * (1.0 - r * r).max(0.0).sqrt()) / norm;
            sinc * window
        })
        .collect();
    let sum: f64 = taps.iter().sum();
    taps.iter_mut().for_each(|t| *t /= sum);
    taps
}

/// Modified Bessel function of the first kind, order zero, by its power series (converges fast for the βs used).
/// Shared by the Kaiser windows of this resampler and the IR loader's.
pub(crate) fn bessel_i0(x: f64) -> f64 {
    let quarter_x2 = x * x / 4.0;
    let (mut sum, mut term, mut k) = (1.0, 1.0, 1.0);
    while term > sum * 1e-17 {
        term *= quarter_x2 / (k * k);
        sum += term;
        k += 1.0;
    }
    sum
}

#[cfg(test)]
mod tests {
    use super::*;
    use realfft::RealFftPlanner;

    const MODEL_RATE: f32 = 48_000.0;
    const MAX_BLOCK: usize = 256;

    /// Samples per spectrum: long enough to resolve images a few hertz apart, 1.5 s at 44.1 kHz.
    const SPECTRUM_LEN: usize = 1 << 16;
    /// Kaiser window for spectra: sidelobes near −160 dB, far below anything measured; main lobe ±6.5 bins.
    const SPECTRUM_BETA: f64 = 20.0;
    /// Bins either side of the sine that belong to its own window main lobe, not to the resampler.
    const SPECTRUM_GUARD_BINS: usize = 10;
    /// What the engine promises for images and aliases, relative to the sine.
    const SPURIOUS_LIMIT_DB: f64 = -90.0;

    fn adapter(device_rate: f32) -> RateAdapter {
        RateAdapter::new(device_rate, MODEL_RATE, MAX_BLOCK).unwrap()
    }

    fn identity(input: &[f32], output: &mut [f32]) {
        output.copy_from_slice(input);
    }

    /// Plays `input` through `adapter` in callbacks whose sizes cycle through `blocks`.
    fn run_blocks(
        adapter: &mut RateAdapter,
        input: &[f32],
        blocks: &[usize],
        inner: &mut dyn FnMut(&[f32], &mut [f32]),
    ) -> Vec<f32> {
        let mut output = vec![0.0; input.len()];
        let mut start = 0;
        for &block in blocks.iter().cycle() {
            if start == input.len() {
                break;
            }
            let end = (start + block).min(input.len());
            adapter.process(&input[start..end], &mut output[start..end], inner);
            start = end;
        }
        output
    }

    fn run(adapter: &mut RateAdapter, input: &[f32]) -> Vec<f32> {
        run_blocks(adapter, input, &[64], &mut identity)
    }

    /// A sine of peak `amplitude` at `frequency` moved to the nearest bin of a [`SPECTRUM_LEN`] spectrum, so it
    /// is measured at its true level and nothing of it leaks beyond the guard bins.
    fn on_bin(frequency: f64, rate: f64) -> f64 {
        (frequency * SPECTRUM_LEN as f64 / rate).round() * rate / SPECTRUM_LEN as f64
    }

    fn sine(frequency: f64, rate: f64, amplitude: f64, len: usize) -> Vec<f32> {
        (0..len)
            .map(|i| (amplitude * (std::f64::consts::TAU * (i as f64 * frequency / rate).fract()).sin()) as f32)
            .collect()
    }

    /// Deterministic white noise in ±0.5.
    fn noise(len: usize) -> Vec<f32> {
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        (0..len)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                (state >> 40) as f32 / (1u64 << 24) as f32 - 0.5
            })
            .collect()
    }

    /// Level of the strongest component of `signal` outside the sine's main lobe, in dB relative to the sine.
    fn worst_spurious_db(signal: &[f32], frequency: f64, rate: f64) -> f64 {
        assert_eq!(signal.len(), SPECTRUM_LEN);
        let norm = bessel_i0(SPECTRUM_BETA);
        let centre = (SPECTRUM_LEN - 1) as f64 / 2.0;
        let mut windowed: Vec<f64> = signal
            .iter()
            .enumerate()
            .map(|(n, &x)| {
                let r = (n as f64 - centre) / centre;
                f64::from(x) * bessel_i0(SPECTRUM_BETA * (1.0 - r * r).max(0.0).sqrt()) / norm
            })
            .collect();
        let fft = RealFftPlanner::<f64>::new().plan_fft_forward(SPECTRUM_LEN);
        let mut spectrum = fft.make_output_vec();
        fft.process(&mut windowed, &mut spectrum).unwrap();
        let sine_bin = (frequency * SPECTRUM_LEN as f64 / rate).round() as usize;
        let sine = spectrum[sine_bin].norm();
        let worst = spectrum
            .iter()
            .enumerate()
            .filter(|(bin, _)| bin.abs_diff(sine_bin) > SPECTRUM_GUARD_BINS)
            .map(|(_, c)| c.norm())
            .fold(0.0, f64::max);
        20.0 * (worst / sine).log10()
    }

    /// Worst image or alias, in dB relative to the sine, in the device output and in what the model is fed.
    fn spurious_db(device_rate: f32, frequency: f64) -> (f64, f64) {
        let mut adapter = adapter(device_rate);
        let device = f64::from(device_rate);
        let model = f64::from(MODEL_RATE);
        let frequency = on_bin(frequency, device);
        // Settle well past the filters' start-up before the measured stretch, at both rates.
        let settle = 4 * adapter.latency() + 1024;
        // Long enough for a full spectrum at the model rate too, when that is the lower one.
        let measured = SPECTRUM_LEN * (device / model).ceil() as usize;
        let input = sine(frequency, device, 0.5, settle + measured);
        let mut fed = Vec::new();
        let output = run_blocks(&mut adapter, &input, &[64], &mut |input: &[f32], output: &mut [f32]| {
            fed.extend_from_slice(input);
            output.copy_from_slice(input);
        });
        let model_settle = (settle as f64 * model / device) as usize;
        // The sine is usually not on a bin of the model-rate spectrum; that costs a little of its measured level
        // (scalloping, under 0.1 dB with this window) and nothing past the guard bins.
        let fed = &fed[model_settle..model_settle + SPECTRUM_LEN];
        (
            worst_spurious_db(&output[settle..settle + SPECTRUM_LEN], frequency, device),
            worst_spurious_db(fed, frequency, model),
        )
    }

    fn assert_clean_sines(device_rate: f32) {
        for frequency in [100.0, 1_000.0, 5_000.0, 10_000.0, 15_000.0, 18_000.0, 18_900.0, 19_000.0] {
            let (output_db, model_db) = spurious_db(device_rate, frequency);
            eprintln!(
                "{device_rate} Hz, {frequency} Hz sine: worst spurious {output_db:.1} dB out, {model_db:.1} dB fed"
            );
            assert!(output_db < SPURIOUS_LIMIT_DB, "{frequency} Hz at {device_rate} Hz: {output_db:.1} dB out");
            assert!(model_db < SPURIOUS_LIMIT_DB, "{frequency} Hz at {device_rate} Hz: {model_db:.1} dB fed");
        }
    }

    #[test]
    fn sines_through_a_44k1_device_come_back_without_images_or_aliases() {
        assert_clean_sines(44_100.0);
    }

    #[test]
    fn sines_through_a_96k_device_come_back_without_images_or_aliases() {
        assert_clean_sines(96_000.0);
    }

    /// Gain of a sine at `frequency` through the adapter, in dB, fitted over whole cycles after start-up.
    fn gain_db(device_rate: f32, frequency: f64) -> f64 {
        let mut adapter = adapter(device_rate);
        let rate = f64::from(device_rate);
        let frequency = on_bin(frequency, rate);
        let settle = 4 * adapter.latency() + 1024;
        let input = sine(frequency, rate, 0.5, settle + SPECTRUM_LEN);
        let output = run(&mut adapter, &input);
        let (mut re, mut im) = (0.0, 0.0);
        for (n, &y) in output[settle..].iter().enumerate() {
            let phase = std::f64::consts::TAU * (n as f64 * frequency / rate).fract();
            re += f64::from(y) * phase.cos();
            im += f64::from(y) * phase.sin();
        }
        let amplitude = 2.0 * re.hypot(im) / SPECTRUM_LEN as f64;
        20.0 * (amplitude / 0.5).log10()
    }

    #[test]
    fn every_standard_device_rate_works_with_models_at_44k1_48k_and_96k() {
        let devices = [8_000.0, 11_025.0, 16_000.0, 22_050.0, 32_000.0, 44_100.0, 48_000.0, 88_200.0, 96_000.0];
        let devices = devices.into_iter().chain([176_400.0, 192_000.0, 352_800.0, 384_000.0]);
        let input = noise(3_000);
        for device_rate in devices {
            for model_rate in [44_100.0, 48_000.0, 96_000.0] {
                let mut outputs = Vec::new();
                for blocks in [&[1][..], &[MAX_BLOCK], &[5, 200, 0, 77]] {
                    let mut adapter = RateAdapter::new(device_rate, model_rate, MAX_BLOCK).unwrap();
                    let max_inner = adapter.max_inner_block();
                    let mut model = |input: &[f32], output: &mut [f32]| {
                        assert!(input.len() <= max_inner);
                        output.copy_from_slice(input);
                    };
                    outputs.push(run_blocks(&mut adapter, &input, blocks, &mut model));
                }
                let pair = format!("{device_rate} Hz device, {model_rate} Hz model");
                assert!(outputs[1] == outputs[0] && outputs[2] == outputs[0], "{pair}: depends on the block size");
                // The transition band is at least a fifth of the lower rate wide, so the delay stays short.
                let adapter = RateAdapter::new(device_rate, model_rate, MAX_BLOCK).unwrap();
                let ms = adapter.latency() as f32 * 1000.0 / device_rate;
                assert!(ms < 3.0 * 44_100.0 / device_rate.min(model_rate).min(44_100.0), "{pair}: {ms} ms");
            }
        }
    }

    #[test]
    fn passband_is_flat_within_a_tenth_of_a_db_up_to_18_khz() {
        for device_rate in [44_100.0, 96_000.0] {
            for frequency in [20.0, 100.0, 1_000.0, 5_000.0, 10_000.0, 15_000.0, 17_000.0, 18_000.0] {
                let gain = gain_db(device_rate, frequency);
                assert!(gain.abs() < 0.1, "{frequency} Hz at {device_rate} Hz: {gain:.4} dB");
            }
        }
    }

    #[test]
    fn an_impulse_comes_out_exactly_latency_samples_later() {
        for device_rate in [44_100.0, 88_200.0, 96_000.0, 192_000.0, 22_050.0] {
            let mut adapter = adapter(device_rate);
            let latency = adapter.latency();
            // Every position of the impulse relative to the model's sampling grid, which repeats every 147
            // device samples at 44.1 kHz.
            for at in 500..650 {
                adapter.reset();
                let mut input = vec![0.0; at + latency + 500];
                input[at] = 1.0;
                let output = run(&mut adapter, &input);
                let peak = (0..output.len()).max_by(|&a, &b| output[a].abs().total_cmp(&output[b].abs())).unwrap();
                assert_eq!(peak, at + latency, "impulse at {at}, {device_rate} Hz");
                // The impulse comes out band-limited to the lower rate, which lowers its peak in proportion.
                let expected = (MODEL_RATE / device_rate).min(1.0);
                assert!(output[peak] > 0.8 * expected, "impulse at {at}, {device_rate} Hz: peak {}", output[peak]);
            }
        }
    }

    #[test]
    fn a_band_limited_signal_comes_back_unchanged_after_exactly_latency_samples() {
        for device_rate in [44_100.0, 88_200.0, 96_000.0, 192_000.0] {
            let mut adapter = adapter(device_rate);
            let rate = f64::from(device_rate);
            let len = 30_000;
            let tones = [97.0, 1_013.0, 4_999.0, 11_003.0, 17_011.0];
            let mut input = vec![0.0f32; len];
            for frequency in tones {
                for (x, s) in input.iter_mut().zip(sine(frequency, rate, 0.15, len)) {
                    *x += s;
                }
            }
            let output = run(&mut adapter, &input);
            let latency = adapter.latency();
            let settle = 4 * latency + 1024;
            let (mut error, mut signal) = (0.0, 0.0);
            for n in settle..len {
                error += f64::from(output[n] - input[n - latency]).powi(2);
                signal += f64::from(input[n - latency]).powi(2);
            }
            let error_db = 10.0 * (error / signal).log10();
            // A delay off by a hundredth of a sample would leave about −30 dB at 17 kHz.
            assert!(error_db < -80.0, "{device_rate} Hz: difference {error_db:.1} dB");
        }
    }

    #[test]
    fn output_is_identical_whatever_the_callback_sizes() {
        let input = noise(20_000);
        let varying = [1, 0, 17, 256, 3, 64, 255, 2, 100, 0, 31, 128, 7, 200];
        for device_rate in [44_100.0, 96_000.0, 88_200.0, 192_000.0, 22_050.0, 8_000.0, 48_000.0] {
            let mut runs = Vec::new();
            for blocks in [&[MAX_BLOCK][..], &[1], &[17], &[64], &[256], &varying] {
                let mut adapter = adapter(device_rate);
                let max_inner = adapter.max_inner_block();
                // A stateful, non-linear model: any sample lost, repeated or reordered between callbacks shows.
                let mut state = 0.0f32;
                let mut model = |input: &[f32], output: &mut [f32]| {
                    assert_eq!(input.len(), output.len());
                    assert!(input.len() <= max_inner, "{} > {max_inner}", input.len());
                    for (x, y) in input.iter().zip(output.iter_mut()) {
                        state = 0.9 * state + 0.1 * x;
                        *y = (3.0 * x).tanh() + state;
                    }
                };
                runs.push(run_blocks(&mut adapter, &input, blocks, &mut model));
            }
            for (i, run) in runs.iter().enumerate().skip(1) {
                assert!(run == &runs[0], "{device_rate} Hz: block pattern {i} differs");
            }
        }
    }

    #[test]
    fn equal_rates_pass_straight_through_with_no_latency() {
        let mut adapter = RateAdapter::new(48_000.0, 48_000.0, 128).unwrap();
        assert!(adapter.is_passthrough());
        assert_eq!(adapter.latency(), 0);
        assert_eq!(adapter.max_inner_block(), 128);
        let input = noise(1_000);
        let mut sizes = Vec::new();
        let output = run_blocks(&mut adapter, &input, &[100, 7], &mut |input: &[f32], output: &mut [f32]| {
            sizes.push(input.len());
            output.iter_mut().zip(input).for_each(|(y, x)| *y = 2.0 * x);
        });
        assert!(output.iter().zip(&input).all(|(y, x)| *y == 2.0 * x));
        assert_eq!(sizes[..4], [100, 7, 100, 7]);
        assert!(!RateAdapter::new(44_100.0, 48_000.0, 128).unwrap().is_passthrough());
    }

    #[test]
    fn reset_forgets_all_previous_audio() {
        let input = noise(5_000);
        let mut fresh = adapter(44_100.0);
        let expected = run(&mut fresh, &input);
        let mut used = adapter(44_100.0);
        run(&mut used, &noise(3_333));
        used.reset();
        assert!(run(&mut used, &input) == expected);
    }

    #[test]
    fn blocks_longer_than_max_block_are_split_not_overrun() {
        let input = noise(3 * MAX_BLOCK + 5);
        let mut reference = adapter(44_100.0);
        let expected = run_blocks(&mut reference, &input, &[MAX_BLOCK], &mut identity);
        let mut adapter = adapter(44_100.0);
        let max_inner = adapter.max_inner_block();
        let mut output = vec![0.0; input.len()];
        adapter.process(&input, &mut output, &mut |input: &[f32], output: &mut [f32]| {
            assert!(input.len() <= max_inner);
            output.copy_from_slice(input);
        });
        assert!(output == expected);
    }

    #[test]
    fn latency_is_about_a_millisecond_at_common_rates() {
        for (device_rate, most_ms) in [(44_100.0, 1.1), (88_200.0, 1.1), (96_000.0, 0.7), (192_000.0, 0.7)] {
            let latency = adapter(device_rate).latency();
            let ms = latency as f32 * 1000.0 / device_rate;
            eprintln!("{device_rate} Hz: latency {latency} samples = {ms:.3} ms");
            assert!(ms <= most_ms, "{device_rate} Hz: {latency} samples = {ms:.3} ms");
        }
    }

    #[test]
    fn rates_that_are_not_whole_or_too_far_from_a_simple_ratio_are_rejected() {
        for bad in [0.0, -44_100.0, f32::NAN, f32::INFINITY, 44_100.5] {
            let error = RateAdapter::new(bad, MODEL_RATE, 64).unwrap_err();
            assert!(matches!(error, ResampleError::InvalidRate(_)), "{bad}: {error}");
            assert!(RateAdapter::new(MODEL_RATE, bad, 64).is_err());
        }
        assert_eq!(RateAdapter::new(44_100.0, MODEL_RATE, 0).unwrap_err(), ResampleError::ZeroBlock);
        let odd = RateAdapter::new(47_999.0, MODEL_RATE, 64).unwrap_err();
        assert!(matches!(odd, ResampleError::UnsupportedRatio { .. }), "{odd}");
        assert!(odd.to_string().contains("47999"));
    }
}
