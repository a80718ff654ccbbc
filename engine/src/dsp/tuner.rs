//! Guitar tuner: pitch analysis of the instrument input, run on the audio thread.
//!
//! The tuner has to live on the audio thread (it sees exactly the samples the
//! pedals see, with no extra buffering or copying to another thread), so after
//! [`Tuner::new`] nothing here allocates, frees, locks, blocks or prints, and
//! the work done by one [`Tuner::push`] is bounded: linear in the block length
//! plus at most one pitch analysis.
//!
//! # Algorithm
//!
//! The McLeod Pitch Method (McLeod & Wyvill, "A smarter way to find pitch",
//! 2005). It was chosen over plain autocorrelation or YIN because its
//! normalised square difference function (NSDF) is a number in -1..1 whose
//! peak doubles as a "clarity" (how periodic the signal is), and because its
//! key-maximum rule picks the fundamental rather than an octave of it even when
//! the 2nd harmonic is louder than the fundamental, which is normal for a
//! plucked string.
//!
//! 1. **Anti-alias + decimate.** A guitar's fundamentals lie below ~1.5 kHz,
//!    so analysing at 44.1–192 kHz would waste 4–16x the work. The input goes
//!    through an 8th-order Butterworth low-pass (four biquads, `f64` so the
//!    very low normalised cutoff at 192 kHz stays numerically clean) at 0.3x the
//!    analysis rate and every `D`-th sample is kept, where
//!    `D = round(sample_rate / 12 kHz)`: 44.1 kHz → D=4 (11.025 kHz), 48 kHz →
//!    D=4 (12 kHz), 96 kHz → D=8, 192 kHz → D=16. The steep filter keeps
//!    aliased upper partials from faking a pitch.
//! 2. **Window / hop.** Every `HOP` = 512 decimated samples (~43 ms) the
//!    latest `WINDOW` = 2048 decimated samples (~170–190 ms) are analysed. That
//!    holds more than two periods of a 7-string's low B (30.87 Hz, ~32 ms)
//!    and gives a readout that updates ~23 times a second.
//! 3. **NSDF via FFT.** The autocorrelation `r(τ)` comes from one forward and
//!    one inverse real FFT of the zero-padded window (padding ≥ the largest
//!    lag, so the correlation is linear, not circular); the normaliser `m(τ)`
//!    is a running sum. `n(τ) = 2 r(τ) / m(τ)`.
//! 4. **Peak picking.** Key maxima are the highest points of each positive
//!    lobe of `n(τ)` after the lobe at lag 0. The first one that reaches
//!    `PEAK_CUTOFF` (0.93) of the highest key maximum is the period;
//!    parabolic interpolation through it and its neighbours gives a sub-sample
//!    lag (needed for sub-cent accuracy on high strings, where a period is only
//!    ~30 samples) and the interpolated height is the clarity.
//! 5. **Gates.** No reading if the window RMS is below -60 dBFS (nothing is
//!    being played) or clarity is below 0.8 (noise, chord, pick attack).
//! 6. **Stabilising.** A new pitch is only shown once two consecutive analyses
//!    agree (within `AGREE_CENTS`); while a note is held the display is the
//!    median of the last three agreeing estimates, which removes one-off
//!    glitches without lagging a steady note. When analyses stop being valid
//!    the last reading is held for `HOLD_SECONDS` so it doesn't blink out
//!    the moment a note decays, then cleared.

use std::sync::Arc;

use realfft::num_complex::Complex;
use realfft::{ComplexToReal, RealFftPlanner, RealToComplex};

/// Note names by pitch class (0 = C), sharps only: that is what tuners show,
/// and a guitarist tunes to E, A, D, G, B, E, which are all naturals anyway.
pub const NOTE_NAMES: [&str; 12] = ["C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B"];

/// Decimated samples analysed per pitch estimate. At ~11–12 kHz this is
/// ~170 ms: more than two periods of a 7-string low B (30.87 Hz), which MPM
/// needs to see a repeat, while still short enough to follow a retuned string.
const WINDOW: usize = 2048;

/// Decimated samples between analyses (1/4 window): ~23 readouts per second,
/// smooth to the eye, and one FFT pair per hop is negligible CPU.
const HOP: usize = WINDOW / 4;

/// Sample rate the input is decimated towards. 12 kHz leaves a 6 kHz band,
/// ample for fundamentals up to ~1.5 kHz plus a few harmonics, while cutting
/// filter/FFT work 4–16x at common interface rates.
const TARGET_ANALYSIS_RATE: f32 = 12_000.0;

/// Anti-alias corner as a fraction of the analysis rate (Nyquist is 0.5).
/// 0.3 puts the 8th-order roll-off at ~-35 dB by Nyquist, so folded partials
/// are far too weak to create a false periodicity.
const ANTI_ALIAS_CUTOFF: f64 = 0.3;

/// Lowest pitch reported. Just under B0 (30.87 Hz), a 7-string's low B.
const MIN_FREQUENCY_HZ: f32 = 28.0;

/// Highest pitch reported. Above E6 (1318.5 Hz), the 24th fret of the high E.
const MAX_FREQUENCY_HZ: f32 = 1600.0;

/// The lag search runs a little past the lowest pitch's period so that the
/// NSDF lobe of a B0 has a peak *inside* the searched range.
const LAG_SEARCH_MIN_HZ: f32 = 24.0;

/// MPM cutoff `k`: the first key maximum that reaches `k` × the highest one is
/// taken as the period. Close to 1 keeps octave-too-low errors away; below 1
/// tolerates the slight loss of NSDF height at longer lags.
const PEAK_CUTOFF: f32 = 0.93;

/// Minimum NSDF peak height for a reading. Below this the signal is not
/// periodic enough (noise, chords, pick scrape) for a trustworthy pitch.
const CLARITY_GATE: f32 = 0.8;

/// Window RMS below this (-60 dBFS) means "not playing": no reading, so that
/// hum and interface noise never show up as a note.
const LEVEL_GATE_RMS: f32 = 0.001;

/// How long the last reading stays on screen after the note stops being
/// detectable. Without it the readout blinks off as a note decays and the
/// player loses the reading they were looking at.
const HOLD_SECONDS: f32 = 0.3;

/// Two estimates within this many cents count as "the same note still
/// sounding". Wide enough for vibrato and a string being tuned, narrow enough
/// that a new note or an octave glitch is treated as a change that has to be
/// confirmed by a second analysis.
const AGREE_CENTS: f32 = 40.0;

/// Estimates the display takes the median over.
const MEDIAN_LEN: usize = 3;

/// Default concert pitch.
const DEFAULT_REFERENCE_HZ: f32 = 440.0;

/// Tiny constant added to the filter input so the IIR state settles at a
/// normal number instead of decaying into subnormals during silence
/// (subnormal arithmetic is very slow on x86). Removed by mean subtraction.
const ANTI_DENORMAL: f64 = 1e-20;

/// One tuner measurement.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TunerReading {
    pub frequency_hz: f32,
    /// MIDI note number of the nearest equal-tempered note (69 = A4).
    pub note: u8,
    /// Deviation from that note, -50..+50.
    pub cents: f32,
    /// NSDF peak value 0..1: how periodic the signal is.
    pub clarity: f32,
}

impl TunerReading {
    /// Builds a reading relative to the concert pitch `reference_hz` (A4).
    ///
    /// Done at read time rather than analysis time so that changing the
    /// reference re-labels the current note immediately.
    fn from_frequency(frequency_hz: f32, clarity: f32, reference_hz: f32) -> Self {
        let midi = 69.0 + 12.0 * (frequency_hz / reference_hz).log2();
        let nearest = midi.round().clamp(0.0, 127.0);
        let cents = ((midi - nearest) * 100.0).clamp(-50.0, 50.0);
        TunerReading {
            frequency_hz,
            // In 0..=127 after the clamp, so the cast is exact.
            note: nearest as u8,
            cents,
            clarity: clarity.clamp(0.0, 1.0),
        }
    }

    /// Note name with sharps ("E", "F#", ...), as shown on the tuner display.
    pub fn note_name(&self) -> &'static str {
        NOTE_NAMES[usize::from(self.note % 12)]
    }

    /// Octave in scientific pitch notation (MIDI 40 = E2, 60 = C4), so the
    /// six open strings read E2 A2 D3 G3 B3 E4.
    pub fn octave(&self) -> i32 {
        i32::from(self.note) / 12 - 1
    }
}

/// Transposed direct form II biquad in `f64`.
///
/// `f64` because at 192 kHz the anti-alias corner is ~0.02 of the sample
/// rate, where `f32` biquads lose enough precision to add audible noise and
/// drift; the cost is irrelevant at four biquads per input sample.
#[derive(Debug, Clone, Copy, Default)]
struct Biquad {
    b0: f64,
    b1: f64,
    b2: f64,
    a1: f64,
    a2: f64,
    s1: f64,
    s2: f64,
}

impl Biquad {
    /// RBJ-cookbook low-pass. Cascading these with the Butterworth pole-pair
    /// Qs gives an exact (bilinear) Butterworth: maximally flat passband, so
    /// the filter never favours one harmonic over another below the corner.
    fn low_pass(cutoff_hz: f64, sample_rate: f64, q: f64) -> Self {
        let w0 = std::f64::consts::TAU * cutoff_hz / sample_rate;
        let (sin, cos) = w0.sin_cos();
        let alpha = sin / (2.0 * q);
        let a0 = 1.0 + alpha;
        let b1 = (1.0 - cos) / a0;
        Biquad { b0: 0.5 * b1, b1, b2: 0.5 * b1, a1: -2.0 * cos / a0, a2: (1.0 - alpha) / a0, s1: 0.0, s2: 0.0 }
    }

    #[inline]
    fn process(&mut self, x: f64) -> f64 {
        let y = self.b0 * x + self.s1;
        self.s1 = self.b1 * x - self.a1 * y + self.s2;
        self.s2 = self.b2 * x - self.a2 * y;
        y
    }

    fn clear(&mut self) {
        self.s1 = 0.0;
        self.s2 = 0.0;
    }
}

/// Q of each pole pair of an 8th-order Butterworth: 1 / (2 cos((2k-1)π/16)).
const BUTTERWORTH_8_Q: [f64; 4] = [0.509_795_6, 0.601_344_9, 0.899_976_2, 2.562_915_4];

/// Real-time guitar tuner. Feed it the instrument input with [`Tuner::push`]
/// and poll [`Tuner::reading`] (e.g. once per block to publish to the UI).
pub struct Tuner {
    /// Input samples per analysis sample.
    decimation: usize,
    /// `sample_rate / decimation`: the rate lags are measured in.
    analysis_rate: f32,
    /// Shortest lag searched (highest pitch).
    min_lag: usize,
    /// Longest lag searched (lowest pitch, plus margin).
    max_lag: usize,
    /// `HOLD_SECONDS` in decimated samples.
    hold_len: usize,
    reference_hz: f32,

    anti_alias: [Biquad; 4],
    /// Input samples since the last kept (decimated) one.
    decimation_phase: usize,
    /// Last `WINDOW` decimated samples; `write` is the oldest / next slot.
    ring: Vec<f32>,
    write: usize,
    /// Decimated samples since the last analysis was due.
    hop_count: usize,
    /// Decimated samples since the display was last confirmed.
    since_valid: usize,

    /// Mean-removed copy of the analysed window (the FFT clobbers its input,
    /// and `m(τ)` needs the samples afterwards).
    frame: Vec<f32>,
    fft_in: Vec<f32>,
    spectrum: Vec<Complex<f32>>,
    acf: Vec<f32>,
    scratch: Vec<Complex<f32>>,
    nsdf: Vec<f32>,
    forward: Arc<dyn RealToComplex<f32>>,
    inverse: Arc<dyn ComplexToReal<f32>>,

    /// Most recent agreeing estimates (Hz), oldest first, `history_len` valid.
    history: [f32; MEDIAN_LEN],
    history_len: usize,
    /// An estimate that disagreed with the display and awaits confirmation.
    candidate: Option<f32>,
    /// What [`Tuner::reading`] reports: (frequency, clarity).
    display: Option<(f32, f32)>,
}

impl Tuner {
    /// Allocates: call off the audio thread.
    ///
    /// Every buffer, the FFT plans and their scratch space are created here so
    /// that [`Tuner::push`] never touches the allocator. Rates outside
    /// 8–384 kHz (or non-finite) are clamped / replaced with 48 kHz, because a
    /// tuner that silently does nothing is better than a panic in the engine.
    pub fn new(sample_rate: f32) -> Self {
        let sample_rate = if sample_rate.is_finite() { sample_rate.clamp(8_000.0, 384_000.0) } else { 48_000.0 };
        let decimation = ((sample_rate / TARGET_ANALYSIS_RATE).round() as usize).max(1);
        let analysis_rate = sample_rate / decimation as f32;

        let min_lag = ((analysis_rate / MAX_FREQUENCY_HZ).floor() as usize).max(2);
        let max_lag = (analysis_rate / LAG_SEARCH_MIN_HZ).ceil() as usize;
        // n(τ) is computed up to max_lag + 1 (for interpolation) and needs at
        // least a couple of periods of overlap to mean anything.
        debug_assert!(max_lag + 2 < WINDOW / 2);
        // Zero padding ≥ the largest lag keeps the FFT correlation linear.
        let fft_len = (WINDOW + max_lag + 2).next_power_of_two();

        let mut planner = RealFftPlanner::<f32>::new();
        let forward = planner.plan_fft_forward(fft_len);
        let inverse = planner.plan_fft_inverse(fft_len);
        let scratch_len = forward.get_scratch_len().max(inverse.get_scratch_len());

        let cutoff = ANTI_ALIAS_CUTOFF * f64::from(analysis_rate);
        let anti_alias = BUTTERWORTH_8_Q.map(|q| Biquad::low_pass(cutoff, f64::from(sample_rate), q));

        Tuner {
            decimation,
            analysis_rate,
            min_lag,
            max_lag,
            hold_len: (HOLD_SECONDS * analysis_rate).round() as usize,
            reference_hz: DEFAULT_REFERENCE_HZ,
            anti_alias,
            decimation_phase: 0,
            ring: vec![0.0; WINDOW],
            write: 0,
            hop_count: 0,
            since_valid: 0,
            frame: vec![0.0; WINDOW],
            fft_in: forward.make_input_vec(),
            spectrum: forward.make_output_vec(),
            acf: inverse.make_output_vec(),
            scratch: vec![Complex::new(0.0, 0.0); scratch_len],
            nsdf: vec![0.0; max_lag + 2],
            forward,
            inverse,
            history: [0.0; MEDIAN_LEN],
            history_len: 0,
            candidate: None,
            display: None,
        }
    }

    /// Real-time safe. Any length of input (0..=many thousands of samples).
    ///
    /// Cost is the anti-alias filter per sample plus at most one analysis
    /// (two 4096-point real FFTs and an O(lag) scan), however many hops the
    /// block spans: a huge block just skips the analyses it would have
    /// overlapped, it never queues extra work. Non-finite samples are treated
    /// as silence so one bad sample can't poison the filter state forever.
    pub fn push(&mut self, input: &[f32]) {
        let mut analysis_due = false;
        for &x in input {
            let mut y = if x.is_finite() { f64::from(x) } else { 0.0 } + ANTI_DENORMAL;
            for biquad in &mut self.anti_alias {
                y = biquad.process(y);
            }
            self.decimation_phase += 1;
            if self.decimation_phase < self.decimation {
                continue;
            }
            self.decimation_phase = 0;
            self.ring[self.write] = y as f32;
            self.write = (self.write + 1) % WINDOW;
            self.since_valid = self.since_valid.saturating_add(1);
            self.hop_count += 1;
            if self.hop_count >= HOP {
                self.hop_count = 0;
                analysis_due = true;
            }
        }

        if analysis_due {
            match self.analyse() {
                Some((frequency, clarity)) => self.accept(frequency, clarity),
                // A gap breaks the "two consecutive agreeing analyses" chain.
                None => self.candidate = None,
            }
        }

        if self.since_valid > self.hold_len {
            self.display = None;
            self.history_len = 0;
            self.candidate = None;
        }
    }

    /// The current reading, or `None` when nothing clear enough is being
    /// played (and the hold time has passed). Cents are relative to the
    /// current reference pitch.
    pub fn reading(&self) -> Option<TunerReading> {
        let (frequency, clarity) = self.display?;
        Some(TunerReading::from_frequency(frequency, clarity, self.reference_hz))
    }

    /// Forgets all audio history (e.g. on preset change or transport stop)
    /// so a stale note is never shown. Keeps the reference pitch, which is a
    /// user setting, not signal state. Real-time safe.
    pub fn reset(&mut self) {
        for biquad in &mut self.anti_alias {
            biquad.clear();
        }
        self.decimation_phase = 0;
        self.ring.fill(0.0);
        self.write = 0;
        self.hop_count = 0;
        self.since_valid = 0;
        self.history_len = 0;
        self.candidate = None;
        self.display = None;
    }

    /// Concert pitch reference, default 440 Hz, clamp to 400..=480.
    ///
    /// Clamped because anything outside that range is a UI bug rather than a
    /// real tuning standard (baroque 415 and "432" are inside it). Non-finite
    /// values are ignored.
    pub fn set_reference_hz(&mut self, a4: f32) {
        if a4.is_finite() {
            self.reference_hz = a4.clamp(400.0, 480.0);
        }
    }

    /// Feeds one valid pitch estimate through the confirm / median logic.
    fn accept(&mut self, frequency: f32, clarity: f32) {
        let agrees = |a: f32, b: f32| (1200.0 * (a / b).log2()).abs() <= AGREE_CENTS;

        if self.history_len > 0 && agrees(frequency, self.history[self.history_len - 1]) {
            // Same note still sounding.
            if self.history_len == MEDIAN_LEN {
                self.history.copy_within(1.., 0);
                self.history_len -= 1;
            }
            self.history[self.history_len] = frequency;
            self.history_len += 1;
            self.candidate = None;
        } else if let Some(previous) = self.candidate.filter(|&c| agrees(frequency, c)) {
            // A new note, confirmed by two consecutive analyses.
            self.history[0] = previous;
            self.history[1] = frequency;
            self.history_len = 2;
            self.candidate = None;
        } else {
            // New note or glitch: keep showing what we had until confirmed.
            self.candidate = Some(frequency);
            return;
        }

        let shown = match self.history_len {
            1 => self.history[0],
            2 => 0.5 * (self.history[0] + self.history[1]),
            _ => {
                let [a, b, c] = self.history;
                a.max(b).min(a.min(b).max(c))
            }
        };
        self.display = Some((shown, clarity));
        self.since_valid = 0;
    }

    /// One MPM analysis of the latest window: `Some((frequency_hz, clarity))`
    /// if the window is loud and periodic enough and the pitch is in range.
    fn analyse(&mut self) -> Option<(f32, f32)> {
        // Unroll the ring oldest-first.
        let (newer, older) = self.ring.split_at(self.write);
        self.frame[..older.len()].copy_from_slice(older);
        self.frame[older.len()..].copy_from_slice(newer);

        // Remove DC (interface offset, anti-denormal constant): a constant
        // offset correlates with itself at every lag and inflates clarity.
        let mean = self.frame.iter().map(|&x| f64::from(x)).sum::<f64>() / WINDOW as f64;
        let mut energy = 0.0f64;
        for x in &mut self.frame {
            *x = (f64::from(*x) - mean) as f32;
            energy += f64::from(*x) * f64::from(*x);
        }
        if ((energy / WINDOW as f64).sqrt() as f32) < LEVEL_GATE_RMS {
            return None;
        }

        // r(τ) = IFFT(|FFT(x)|²) / N with x zero-padded to N.
        let fft_len = self.fft_in.len();
        self.fft_in[..WINDOW].copy_from_slice(&self.frame);
        self.fft_in[WINDOW..].fill(0.0);
        self.forward.process_with_scratch(&mut self.fft_in, &mut self.spectrum, &mut self.scratch).ok()?;
        for bin in &mut self.spectrum {
            *bin = Complex::new(bin.norm_sqr(), 0.0);
        }
        self.inverse.process_with_scratch(&mut self.spectrum, &mut self.acf, &mut self.scratch).ok()?;

        // n(τ) = 2 r(τ) / m(τ), m(τ) = Σ_{j<W-τ} x_j² + x_{j+τ}², updated by
        // dropping the two samples that leave the overlap at each step.
        let scale = 2.0 / fft_len as f64;
        let mut m = 2.0 * energy;
        self.nsdf[0] = 1.0;
        for tau in 1..self.nsdf.len() {
            let head = f64::from(self.frame[tau - 1]);
            let tail = f64::from(self.frame[WINDOW - tau]);
            m -= head * head + tail * tail;
            self.nsdf[tau] = if m > 1e-12 { (scale * f64::from(self.acf[tau]) / m) as f32 } else { 0.0 };
        }

        // MPM key-maximum rule: highest key maximum first, then the first one
        // that gets within PEAK_CUTOFF of it.
        let mut highest = 0.0f32;
        for_each_key_maximum(&self.nsdf, self.min_lag, self.max_lag, |_, v| {
            highest = highest.max(v);
        });
        if highest < CLARITY_GATE {
            return None;
        }
        let threshold = PEAK_CUTOFF * highest;
        let mut chosen = None;
        for_each_key_maximum(&self.nsdf, self.min_lag, self.max_lag, |tau, v| {
            if chosen.is_none() && v >= threshold {
                chosen = Some(tau);
            }
        });
        let tau = chosen?;

        // Parabola through the peak and its neighbours: sub-sample lag and
        // the interpolated peak height (the clarity).
        let (a, b, c) = (self.nsdf[tau - 1], self.nsdf[tau], self.nsdf[tau + 1]);
        let curvature = a - 2.0 * b + c;
        let offset = if curvature < 0.0 { (0.5 * (a - c) / curvature).clamp(-0.5, 0.5) } else { 0.0 };
        let clarity = (b - 0.25 * (a - c) * offset).min(1.0);
        if clarity < CLARITY_GATE {
            return None;
        }
        let frequency = self.analysis_rate / (tau as f32 + offset);
        (MIN_FREQUENCY_HZ..=MAX_FREQUENCY_HZ).contains(&frequency).then_some((frequency, clarity))
    }
}

/// Calls `f(lag, value)` for each MPM key maximum with `lag` in
/// `min_lag..max_lag`: the highest point of each positive lobe of the NSDF,
/// skipping the lobe around lag 0 (every signal matches itself there).
/// A lobe still open at `max_lag` counts only if its peak is interior, so a
/// pitch right at the bottom of the range is not mistaken for a rising edge.
fn for_each_key_maximum(nsdf: &[f32], min_lag: usize, max_lag: usize, mut f: impl FnMut(usize, f32)) {
    let last = max_lag.min(nsdf.len().saturating_sub(2));
    let mut tau = 1;
    while tau <= last && nsdf[tau] > 0.0 {
        tau += 1;
    }
    let mut lobe: Option<(usize, f32)> = None;
    while tau <= last {
        let v = nsdf[tau];
        if v > 0.0 {
            match lobe {
                Some((_, best)) if best >= v => {}
                _ => lobe = Some((tau, v)),
            }
        } else if let Some((peak, value)) = lobe.take()
            && peak >= min_lag
        {
            f(peak, value);
        }
        tau += 1;
    }
    if let Some((peak, value)) = lobe
        && peak >= min_lag
        && peak < last
    {
        f(peak, value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Deterministic white noise (xorshift32), uniform in -1..1.
    struct Noise(u32);
    impl Noise {
        fn next(&mut self) -> f32 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 17;
            self.0 ^= self.0 << 5;
            (self.0 as f32 / u32::MAX as f32) * 2.0 - 1.0
        }
    }

    fn sine(freq: f32, sample_rate: f32, seconds: f32, amplitude: f32) -> Vec<f32> {
        let n = (seconds * sample_rate) as usize;
        let step = f64::from(freq) / f64::from(sample_rate);
        (0..n)
            .map(|i| {
                let phase = (i as f64 * step).fract();
                (f64::from(amplitude) * (std::f64::consts::TAU * phase).sin()) as f32
            })
            .collect()
    }

    /// Plucked-string-like tone: harmonics with decaying envelopes (upper ones
    /// die faster) and a fundamental weaker than the 2nd harmonic, as on a
    /// string plucked near the bridge or a bright pickup.
    fn plucked(freq: f32, sample_rate: f32, seconds: f32) -> Vec<f32> {
        const AMPS: [f64; 8] = [0.4, 1.0, 0.7, 0.55, 0.4, 0.3, 0.2, 0.12];
        let n = (seconds * sample_rate) as usize;
        let sr = f64::from(sample_rate);
        (0..n)
            .map(|i| {
                let t = i as f64 / sr;
                let mut s = 0.0;
                for (h, amp) in AMPS.iter().enumerate() {
                    let k = (h + 1) as f64;
                    let decay = (-t * (1.0 + 0.8 * k)).exp();
                    let phase = 0.7 * k * k; // fixed but irregular phases
                    s += amp * decay * (std::f64::consts::TAU * k * f64::from(freq) * t + phase).sin();
                }
                (0.2 * s) as f32
            })
            .collect()
    }

    fn feed(tuner: &mut Tuner, signal: &[f32], block: usize) {
        for chunk in signal.chunks(block) {
            tuner.push(chunk);
        }
    }

    fn read(freq: f32, sample_rate: f32) -> TunerReading {
        let mut tuner = Tuner::new(sample_rate);
        feed(&mut tuner, &sine(freq, sample_rate, 0.6, 0.3), 256);
        tuner.reading().unwrap_or_else(|| panic!("no reading for {freq} Hz at {sample_rate} Hz"))
    }

    #[test]
    fn open_strings_read_right_note_within_one_cent_at_44k1_and_48k() {
        let strings =
            [(82.41, "E", 2), (110.0, "A", 2), (146.83, "D", 3), (196.0, "G", 3), (246.94, "B", 3), (329.63, "E", 4)];
        for sample_rate in [44_100.0, 48_000.0] {
            for (freq, name, octave) in strings {
                let r = read(freq, sample_rate);
                // The nominal string frequencies are themselves rounded to
                // 0.01 Hz, so compare against their exact cents offset.
                let expected = 1200.0 * (freq / 440.0).log2();
                let expected = expected - (expected / 100.0).round() * 100.0;
                assert_eq!((r.note_name(), r.octave()), (name, octave), "{freq} Hz @ {sample_rate}: {r:?}");
                assert!(r.cents.abs() < 1.0, "{freq} Hz @ {sample_rate}: {r:?}");
                assert!((r.cents - expected).abs() < 0.5, "{freq} Hz @ {sample_rate}: {r:?}");
                assert!(r.clarity > 0.95, "{r:?}");
            }
        }
    }

    #[test]
    fn low_b_of_five_and_seven_string_basses_and_guitars_detected() {
        for sample_rate in [44_100.0, 48_000.0] {
            let b1 = read(61.74, sample_rate);
            assert_eq!((b1.note_name(), b1.octave()), ("B", 1), "{b1:?}");
            assert!(b1.cents.abs() < 1.0, "{b1:?}");
            let b0 = read(30.87, sample_rate);
            assert_eq!((b0.note_name(), b0.octave()), ("B", 0), "{b0:?}");
            assert!(b0.cents.abs() < 1.0, "{b0:?}");
        }
    }

    #[test]
    fn high_e6_detected() {
        for sample_rate in [44_100.0, 48_000.0] {
            let r = read(1318.51, sample_rate);
            assert_eq!((r.note_name(), r.octave()), ("E", 6), "{r:?}");
            assert!(r.cents.abs() < 5.0, "{r:?}");
        }
    }

    #[test]
    fn twenty_cents_sharp_reads_plus_twenty_and_follows_reference() {
        let freq = 440.0 * 2f32.powf(20.0 / 1200.0);
        let mut tuner = Tuner::new(48_000.0);
        feed(&mut tuner, &sine(freq, 48_000.0, 0.6, 0.3), 512);
        let r = tuner.reading().expect("reading");
        assert_eq!((r.note, r.note_name(), r.octave()), (69, "A", 4));
        assert!((r.cents - 20.0).abs() < 1.0, "{r:?}");

        // At A=442 the same string is 20 - 7.85 = 12.15 cents sharp, and the
        // change shows without waiting for new audio.
        tuner.set_reference_hz(442.0);
        let r = tuner.reading().expect("reading");
        let expected = 20.0 - 1200.0 * (442.0f32 / 440.0).log2();
        assert_eq!(r.note, 69);
        assert!((r.cents - expected).abs() < 1.0, "{r:?} vs {expected}");

        // Out-of-range and garbage references are clamped / ignored.
        tuner.set_reference_hz(1000.0);
        assert_eq!(tuner.reference_hz, 480.0);
        tuner.set_reference_hz(f32::NAN);
        assert_eq!(tuner.reference_hz, 480.0);
        tuner.set_reference_hz(10.0);
        assert_eq!(tuner.reference_hz, 400.0);
    }

    #[test]
    fn plucked_string_with_weak_fundamental_reads_fundamental_not_octave() {
        for (freq, name, octave) in [(82.41, "E", 2), (110.0, "A", 2), (196.0, "G", 3)] {
            let mut tuner = Tuner::new(48_000.0);
            let signal = plucked(freq, 48_000.0, 1.0);
            let mut readings = 0;
            for chunk in signal.chunks(480) {
                tuner.push(chunk);
                if let Some(r) = tuner.reading() {
                    readings += 1;
                    assert_eq!((r.note_name(), r.octave()), (name, octave), "{freq}: {r:?}");
                    assert!(r.cents.abs() < 3.0, "{freq}: {r:?}");
                }
            }
            assert!(readings > 50, "{freq}: only {readings} readings");
        }
    }

    #[test]
    fn next_note_replaces_the_previous_one_quickly() {
        let sample_rate = 48_000.0;
        let mut tuner = Tuner::new(sample_rate);
        feed(&mut tuner, &sine(110.0, sample_rate, 0.6, 0.3), 480);
        assert_eq!(tuner.reading().map(|r| r.note_name()), Some("A"));

        // Straight into the D string: the old note must never be shown with
        // a mixed-up pitch, and the new one must appear within ~0.3 s.
        let next = sine(146.83, sample_rate, 0.6, 0.3);
        let mut switched_after_ms = None;
        for (ms, chunk) in next.chunks(48).enumerate() {
            tuner.push(chunk);
            let r = tuner.reading().expect("no gap between notes");
            match r.note_name() {
                "A" => assert!(r.cents.abs() < 1.0, "{r:?}"),
                "D" => {
                    assert!(r.cents.abs() < 1.0, "{r:?}");
                    switched_after_ms.get_or_insert(ms);
                }
                other => panic!("showed {other} between A and D: {r:?}"),
            }
        }
        let ms = switched_after_ms.expect("never switched to D");
        assert!(ms <= 300, "took {ms} ms to show the new note");
        assert_eq!(tuner.reading().map(|r| r.note_name()), Some("D"));
    }

    #[test]
    fn silence_gives_no_reading() {
        let mut tuner = Tuner::new(48_000.0);
        let silence = vec![0.0; 48_000];
        feed(&mut tuner, &silence, 128);
        assert_eq!(tuner.reading(), None);
        // Hum-level sine below -60 dBFS RMS is also "silence".
        feed(&mut tuner, &sine(110.0, 48_000.0, 0.5, 0.0005), 128);
        assert_eq!(tuner.reading(), None);
    }

    #[test]
    fn white_noise_never_gives_a_reading() {
        let mut tuner = Tuner::new(44_100.0);
        let mut noise = Noise(0x1234_5678);
        let signal: Vec<f32> = (0..2 * 44_100).map(|_| 0.5 * noise.next()).collect();
        for chunk in signal.chunks(64) {
            tuner.push(chunk);
            assert_eq!(tuner.reading(), None);
        }
    }

    #[test]
    fn reading_held_briefly_then_cleared_after_note_stops() {
        let sample_rate = 48_000.0;
        let mut tuner = Tuner::new(sample_rate);
        feed(&mut tuner, &sine(110.0, sample_rate, 0.6, 0.3), 64);
        let before = tuner.reading().expect("reading while note sounds");

        let block = 48; // 1 ms
        let silence = vec![0.0; block];
        let mut gone_after_ms = None;
        for ms in 1..=2000 {
            tuner.push(&silence);
            match tuner.reading() {
                Some(r) => assert_eq!(r.note, before.note, "held reading changed at {ms} ms"),
                None => {
                    gone_after_ms = Some(ms);
                    break;
                }
            }
        }
        let ms = gone_after_ms.expect("reading never cleared");
        assert!((300..=1000).contains(&ms), "cleared after {ms} ms");
    }

    #[test]
    fn decaying_note_is_followed_then_cleared() {
        let sample_rate = 44_100.0;
        let mut tuner = Tuner::new(sample_rate);
        let mut signal = plucked(146.83, sample_rate, 3.0);
        // Exponential fade: -60 dB after ~1.4 s.
        for (i, s) in signal.iter_mut().enumerate() {
            *s *= (-(i as f32) / (0.2 * sample_rate)).exp();
        }
        feed(&mut tuner, &signal[..(0.5 * sample_rate) as usize], 128);
        let r = tuner.reading().expect("reading");
        assert_eq!((r.note_name(), r.octave()), ("D", 3));
        feed(&mut tuner, &signal[(0.5 * sample_rate) as usize..], 128);
        assert_eq!(tuner.reading(), None);
    }

    #[test]
    fn block_size_does_not_change_the_reading() {
        for sample_rate in [44_100.0, 48_000.0] {
            let signal = sine(146.83, sample_rate, 0.7, 0.3);
            let readings: Vec<TunerReading> = [1, 37, 64, 4096]
                .iter()
                .map(|&block| {
                    let mut tuner = Tuner::new(sample_rate);
                    feed(&mut tuner, &signal, block);
                    tuner.reading().unwrap_or_else(|| panic!("no reading, block {block}"))
                })
                .collect();
            for r in &readings[1..] {
                assert_eq!(r.note, readings[0].note);
                assert!((r.cents - readings[0].cents).abs() < 0.2, "{readings:?}");
            }
        }
    }

    #[test]
    fn works_across_supported_sample_rates() {
        for sample_rate in [22_050.0, 32_000.0, 88_200.0, 96_000.0, 176_400.0, 192_000.0] {
            for (freq, name, octave) in [(82.41, "E", 2), (329.63, "E", 4)] {
                let r = read(freq, sample_rate);
                assert_eq!((r.note_name(), r.octave()), (name, octave), "{sample_rate}: {r:?}");
                assert!(r.cents.abs() < 1.0, "{sample_rate}: {r:?}");
            }
        }
    }

    #[test]
    fn dc_offset_nan_and_reset_are_harmless() {
        let sample_rate = 48_000.0;
        let mut tuner = Tuner::new(sample_rate);
        tuner.push(&[f32::NAN, f32::INFINITY, f32::NEG_INFINITY]);
        let signal: Vec<f32> = sine(196.0, sample_rate, 0.6, 0.2).iter().map(|s| s + 0.3).collect();
        feed(&mut tuner, &signal, 256);
        let r = tuner.reading().expect("reading with DC offset");
        assert_eq!((r.note_name(), r.octave()), ("G", 3));
        assert!(r.cents.abs() < 1.0, "{r:?}");

        tuner.reset();
        assert_eq!(tuner.reading(), None);
        feed(&mut tuner, &sine(110.0, sample_rate, 0.6, 0.3), 256);
        let r = tuner.reading().expect("reading after reset");
        assert_eq!((r.note_name(), r.octave()), ("A", 2));
        tuner.push(&[]);
        assert_eq!(tuner.reading(), Some(r));
    }

    #[test]
    fn note_names_and_octaves_use_scientific_pitch() {
        let at = |note: u8| TunerReading { frequency_hz: 0.0, note, cents: 0.0, clarity: 1.0 };
        assert_eq!((at(40).note_name(), at(40).octave()), ("E", 2));
        assert_eq!((at(60).note_name(), at(60).octave()), ("C", 4));
        assert_eq!((at(69).note_name(), at(69).octave()), ("A", 4));
        assert_eq!((at(66).note_name(), at(66).octave()), ("F#", 4));
        assert_eq!((at(23).note_name(), at(23).octave()), ("B", 0));
        assert_eq!((at(0).note_name(), at(0).octave()), ("C", -1));
    }

    #[test]
    fn tuner_can_be_moved_to_the_audio_thread() {
        fn assert_send<T: Send>() {}
        assert_send::<Tuner>();
    }
}
