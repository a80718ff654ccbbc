//! Cab IR: plays a speaker-cabinet impulse response, the pedal that turns an amp's raw output into a miked cab.
//!
//! The response comes from a WAV file (the preset's model path), loaded and normalised by [`crate::formats::ir`]
//! and played by the zero-latency [`Convolver`]. After the convolution come two 12 dB/octave Butterworth filters —
//! a low cut to tame boom and a high cut to tame fizz, the two adjustments players make to a cab — and a level.
//!
//! Channels: a mono IR plays on one channel, or on both with the same response once the chain is stereo
//! ([`Channels::StereoCapable`]). A stereo IR (two mics, or left/right) makes stereo from a mono input
//! ([`Channels::MakesStereo`]); given a stereo input it plays its left response on the left, its right on the right.
//!
//! **Swapping IRs.** A new response is prepared off the audio thread as a [`CabIr`] (with [`CabIr::load`]) and
//! handed to [`Cab::swap_ir`], which crossfades to it over [`SWAP_FADE_MS`] without allocating. The old response
//! keeps playing under the fade, so it cannot be dropped at once: when the fade ends it is parked, and
//! [`Cab::take_retired`] hands it out to be dropped off the audio thread. A swap arriving during a fade waits for
//! the fade to end (the newest wins; one it replaces is handed straight back by `swap_ir`), and a fade only starts
//! once the previous retired response has been collected — so the pedal never has to free anything itself.

use crate::dsp::biquad::{Coefficients, State};
use std::f32::consts::PI;
use std::path::Path;
use std::sync::Arc;

use crate::dsp::convolver::{Convolver, ConvolverIr};
use crate::formats::ir::{IrError, IrFile};
use crate::param::{Curve, ParamId, ParamSpec, Smoothed, Unit, db_to_gain};
use crate::pedal::{Channels, ModelInfo, Pedal, PedalInfo};

pub const KIND: &str = "cab";

const LEVEL: ParamId = ParamId(0);
const LOW_CUT: ParamId = ParamId(1);
const HIGH_CUT: ParamId = ParamId(2);

/// Crossfade between two responses: long enough that the change in tone is a glide rather than a click, short
/// enough to feel immediate when auditioning cabs.
pub const SWAP_FADE_MS: f32 = 20.0;

/// Before it fades in, a new response plays silently for its own length, at most this long. It then has the recent
/// input in its history and sounds as if it had always been playing; without this its resonances would audibly
/// start from nothing under the fade. Longer tails (a reverb) fill in naturally after the fade.
pub const SWAP_WARM_UP_MAX_MS: f32 = 100.0;

/// Highest filter corner, as a fraction of the sample rate: 20 kHz at 44.1 kHz sits too near Nyquist for a stable
/// bilinear-transform filter, and nothing there is audible through a guitar cab anyway.
const MAX_CORNER_FRACTION: f32 = 0.45;

/// Butterworth: maximally flat, and exactly −3 dB at the corner.
const FILTER_Q: f32 = std::f32::consts::FRAC_1_SQRT_2;

/// Samples handled at once on the stack while two responses play together (a crossfade, or a stereo response
/// folded to mono): the pedal needs no buffers sized to the host's block.
const CHUNK: usize = 64;

/// The rate a cab is built at when the registry builds it without knowing the engine's; `prepare` re-prepares it.
pub const BUILD_SAMPLE_RATE: f32 = 48_000.0;
pub const BUILD_MAX_BLOCK: usize = 256;

/// A response prepared for the Cab pedal: its convolvers and the facts the GUI shows. Built off the audio
/// thread; moved into the pedal with [`Cab::swap_ir`] and out again with [`Cab::take_retired`].
pub struct CabIr {
    /// The file as read, kept so the pedal can re-prepare for another sample rate without touching the disk.
    source: Arc<IrFile>,
    sample_rate: f32,
    stereo: bool,
    /// Left (or mono) and right. A mono response plays the same partitions on both, shared.
    convolvers: [Convolver; 2],
    /// The right convolver missed the input of some mono blocks: it takes over the left one's state before use.
    right_stale: bool,
    /// What the GUI shows. Moved into the pedal's [`PedalInfo`] while this response plays, so the swap needs no
    /// allocation; the response being replaced carries the old one out.
    model: Option<ModelInfo>,
    frames: usize,
}

impl CabIr {
    /// Reads `path` and prepares it for `sample_rate` (allocates, reads the disk: off the audio thread).
    pub fn load(path: &Path, sample_rate: f32) -> Result<Self, IrError> {
        Ok(Self::new(Arc::new(IrFile::read(path)?), sample_rate))
    }

    /// Prepares an already read file for `sample_rate`.
    pub fn new(source: Arc<IrFile>, sample_rate: f32) -> Self {
        let sample_rate = sane_rate(sample_rate);
        let ir = source.at_rate(sample_rate);
        let stereo = ir.is_stereo();
        let left = Arc::new(ConvolverIr::new(&ir.channels[0]));
        let right = if stereo { Arc::new(ConvolverIr::new(&ir.channels[1])) } else { left.clone() };
        let frames = ir.frames();
        let ms = frames as f32 * 1000.0 / sample_rate;
        let model = ModelInfo {
            name: source.name(),
            architecture: "Impulse response".into(),
            sample_rate: Some(source.sample_rate as f32),
            parameters: frames * ir.channels.len(),
            details: vec![
                ("Length".into(), format!("{ms:.1} ms")),
                ("Channels".into(), if stereo { "2 (stereo)".into() } else { "1 (mono)".into() }),
                ("Original rate".into(), format!("{} Hz", source.sample_rate)),
                ("Normalisation".into(), format!("{:+.1} dB", ir.normalisation_db)),
            ],
        };
        Self {
            source,
            sample_rate,
            stereo,
            convolvers: [Convolver::with_ir(left), Convolver::with_ir(right)],
            right_stale: true,
            model: Some(model),
            frames,
        }
    }

    pub fn is_stereo(&self) -> bool {
        self.stereo
    }

    /// The rate this response was prepared for.
    pub fn sample_rate(&self) -> f32 {
        self.sample_rate
    }

    /// Length at the prepared rate, in samples.
    pub fn frames(&self) -> usize {
        self.frames
    }

    pub fn source(&self) -> &IrFile {
        &self.source
    }

    fn channels(&self) -> Channels {
        if self.stereo { Channels::MakesStereo } else { Channels::StereoCapable }
    }

    fn reset(&mut self) {
        for c in &mut self.convolvers {
            c.reset();
        }
        self.right_stale = false;
    }

    /// One channel in, one out. A stereo response is folded to mono (the chain never asks a stereo-making pedal
    /// for mono, but the mono path must still sound right).
    fn process_mono(&mut self, block: &mut [f32]) {
        if !self.stereo {
            self.convolvers[0].process_in_place(block);
            self.right_stale = true;
            return;
        }
        let [left, right] = &mut self.convolvers;
        for chunk in block.chunks_mut(CHUNK) {
            let mut buffer = [0.0f32; CHUNK];
            let other = &mut buffer[..chunk.len()];
            other.copy_from_slice(chunk);
            left.process_in_place(chunk);
            right.process_in_place(other);
            for (l, r) in chunk.iter_mut().zip(other.iter()) {
                *l = 0.5 * (*l + *r);
            }
        }
    }

    fn process_stereo(&mut self, left: &mut [f32], right: &mut [f32]) {
        let [conv_left, conv_right] = &mut self.convolvers;
        if self.right_stale {
            // The right channel was not fed while the chain was mono; it was a copy of the left one, so the left
            // convolver's history is the right one's too.
            conv_right.copy_state_from(conv_left);
            self.right_stale = false;
        }
        conv_left.process_in_place(left);
        conv_right.process_in_place(right);
    }
}

/// A crossfade in progress: a silent warm-up of the incoming response, then a raised-cosine fade.
#[derive(Debug, Clone, Copy)]
struct Fade {
    warm_up: u32,
    done: u32,
    len: u32,
}

impl Fade {
    /// Gain of the incoming response for the next sample; equal-gain (the two add to one) because two cabs playing
    /// the same note are strongly correlated, and a raised cosine so the fade has no corners.
    #[inline]
    fn next_gain(&mut self) -> f32 {
        if self.warm_up > 0 {
            self.warm_up -= 1;
            return 0.0;
        }
        if self.done >= self.len {
            return 1.0;
        }
        self.done += 1;
        0.5 - 0.5 * (PI * self.done as f32 / self.len as f32).cos()
    }

    fn is_done(&self) -> bool {
        self.warm_up == 0 && self.done >= self.len
    }
}

/// 12 dB/octave Butterworth high-pass (`high_pass`) or low-pass at `hz`, the corner kept below Nyquist.
pub(crate) fn butterworth(high_pass: bool, hz: f32, sample_rate: f32) -> Coefficients {
    let hz = hz.clamp(1.0, MAX_CORNER_FRACTION * sample_rate);
    if high_pass {
        Coefficients::highpass(sample_rate, hz, FILTER_Q)
    } else {
        Coefficients::lowpass(sample_rate, hz, FILTER_Q)
    }
}

/// The Cab IR pedal. See the module documentation.
pub struct Cab {
    info: PedalInfo,
    sample_rate: f32,
    /// The response playing (fading out while `incoming` fades in).
    active: Box<CabIr>,
    incoming: Option<Box<CabIr>>,
    fade: Fade,
    /// Waiting for the current fade to end, or for `retired` to be collected.
    queued: Option<Box<CabIr>>,
    /// Faded out, waiting for [`Cab::take_retired`].
    retired: Option<Box<CabIr>>,
    level: Smoothed,
    /// Corner frequencies, smoothed in log frequency so a sweep sounds even.
    low_cut_log: Smoothed,
    high_cut_log: Smoothed,
    low_cut: Coefficients,
    high_cut: Coefficients,
    /// Filter state per channel: `[low cut, high cut]`.
    filter_state: [[State; 2]; 2],
    /// The last block was mono: the right filters missed it and take over the left ones' state when stereo starts.
    right_filters_stale: bool,
}

impl Cab {
    pub fn params() -> Vec<ParamSpec> {
        vec![
            ParamSpec::new("level_db", "Level", Unit::Decibels, -24.0, 12.0, 0.0),
            ParamSpec::new("low_cut_hz", "Low Cut", Unit::Hertz, 20.0, 500.0, 20.0).curve(Curve::Logarithmic),
            ParamSpec::new("high_cut_hz", "High Cut", Unit::Hertz, 2_000.0, 20_000.0, 20_000.0)
                .curve(Curve::Logarithmic),
        ]
    }

    /// Reads the IR at `path` and prepares the pedal for `sample_rate`. Off the audio thread. `max_block` is
    /// accepted for symmetry with [`Pedal::prepare`]: the pedal handles any block length without buffers of its own.
    pub fn load(path: &Path, sample_rate: f32, _max_block: usize) -> Result<Self, IrError> {
        Ok(Self::with_ir(Box::new(CabIr::load(path, sample_rate)?)))
    }

    /// A pedal playing an already prepared response, at the rate it was prepared for.
    pub fn with_ir(mut ir: Box<CabIr>) -> Self {
        let params = Self::params();
        let sample_rate = ir.sample_rate;
        let info = PedalInfo {
            pad: None,
            kind: KIND.into(),
            name: "Cab IR".into(),
            channels: ir.channels(),
            model: ir.model.take(),
            params,
        };
        let mut cab = Self {
            sample_rate,
            active: ir,
            incoming: None,
            fade: Fade { warm_up: 0, done: 0, len: 0 },
            queued: None,
            retired: None,
            level: Smoothed::new(db_to_gain(info.params[0].default)),
            low_cut_log: Smoothed::new(info.params[1].default.ln()),
            high_cut_log: Smoothed::new(info.params[2].default.ln()),
            low_cut: Coefficients::IDENTITY,
            high_cut: Coefficients::IDENTITY,
            filter_state: Default::default(),
            right_filters_stale: true,
            info,
        };
        cab.set_ramps();
        cab.update_filters();
        cab
    }

    /// The rate the pedal is prepared for: a [`CabIr`] for [`Cab::swap_ir`] must be prepared at it.
    pub fn sample_rate(&self) -> f32 {
        self.sample_rate
    }

    /// The newest response: the one waiting for its turn, else the one fading in, else the one playing.
    pub fn current_ir(&self) -> &CabIr {
        self.queued.as_deref().or(self.incoming.as_deref()).unwrap_or(&self.active)
    }

    /// Whether a crossfade is running or waiting.
    pub fn is_swapping(&self) -> bool {
        self.incoming.is_some() || self.queued.is_some()
    }

    /// Starts a click-free change to `ir` (real-time safe: no allocation, no freeing). Returns a response that
    /// will now never play, to be dropped off the audio thread: the one that was waiting behind a running
    /// crossfade and is replaced by `ir`, or `ir` itself if it was prepared for another sample rate than
    /// [`Cab::sample_rate`].
    pub fn swap_ir(&mut self, ir: Box<CabIr>) -> Option<Box<CabIr>> {
        if ir.sample_rate != self.sample_rate {
            return Some(ir);
        }
        let replaced = self.queued.replace(ir);
        self.start_queued_fade();
        replaced
    }

    /// The response that finished fading out, to be dropped off the audio thread. Call after `process`; a
    /// further swap waits until this has been collected.
    pub fn take_retired(&mut self) -> Option<Box<CabIr>> {
        let retired = self.retired.take();
        if retired.is_some() {
            self.start_queued_fade();
        }
        retired
    }

    fn start_queued_fade(&mut self) {
        if self.incoming.is_some() || self.retired.is_some() {
            return;
        }
        let Some(mut next) = self.queued.take() else { return };
        next.reset();
        let max_warm_up = (SWAP_WARM_UP_MAX_MS * 1e-3 * self.sample_rate) as usize;
        let warm_up = next.frames.min(max_warm_up) as u32;
        std::mem::swap(&mut self.info.model, &mut next.model);
        if next.stereo {
            self.info.channels = Channels::MakesStereo;
        }
        self.incoming = Some(next);
        self.fade = Fade { warm_up, done: 0, len: self.fade_len() };
    }

    fn finish_fade(&mut self) {
        let Some(mut next) = self.incoming.take() else { return };
        // The new response carries the old one's `ModelInfo` since the fade started; hand it back with the old one.
        std::mem::swap(&mut self.active.model, &mut next.model);
        let old = std::mem::replace(&mut self.active, next);
        self.info.channels = self.active.channels();
        self.retired = Some(old);
    }

    fn fade_len(&self) -> u32 {
        (SWAP_FADE_MS * 1e-3 * self.sample_rate).round().max(1.0) as u32
    }

    fn set_ramps(&mut self) {
        let sr = self.sample_rate;
        self.level.set_ramp(sr, self.info.params[0].smoothing_ms);
        self.low_cut_log.set_ramp(sr, self.info.params[1].smoothing_ms);
        self.high_cut_log.set_ramp(sr, self.info.params[2].smoothing_ms);
    }

    fn update_filters(&mut self) {
        self.low_cut = butterworth(true, self.low_cut_log.current().exp(), self.sample_rate);
        self.high_cut = butterworth(false, self.high_cut_log.current().exp(), self.sample_rate);
    }

    /// Advances the corner and level smoothers by one sample; returns the level.
    #[inline]
    fn next_controls(&mut self) -> f32 {
        if self.low_cut_log.is_smoothing() || self.high_cut_log.is_smoothing() {
            self.low_cut_log.next_value();
            self.high_cut_log.next_value();
            self.update_filters();
        }
        self.level.next_value()
    }

    /// Filters and level after the convolution, on one channel or two sharing the same controls.
    fn post_process(&mut self, left: &mut [f32], mut right: Option<&mut [f32]>) {
        for i in 0..left.len() {
            let gain = self.next_controls();
            let [l_state, r_state] = &mut self.filter_state;
            let l = l_state[0].tick(&self.low_cut, left[i]);
            left[i] = gain * l_state[1].tick(&self.high_cut, l);
            if let Some(right) = right.as_deref_mut() {
                let r = r_state[0].tick(&self.low_cut, right[i]);
                right[i] = gain * r_state[1].tick(&self.high_cut, r);
            }
        }
    }
}

/// An engine rate that will not break the filters or the resampler, whatever the caller passed.
fn sane_rate(sample_rate: f32) -> f32 {
    if sample_rate.is_finite() && sample_rate >= 1_000.0 { sample_rate } else { BUILD_SAMPLE_RATE }
}

impl Pedal for Cab {
    fn info(&self) -> &PedalInfo {
        &self.info
    }

    /// Re-prepares every held response for a new rate (resampling from the file's samples kept in memory). Any
    /// crossfade is completed at once: prepare runs off the audio thread, where dropping is allowed.
    fn prepare(&mut self, sample_rate: f32, _max_block: usize) {
        let sample_rate = sane_rate(sample_rate);
        // Complete any crossfade and any queued swap; what they replace is dropped here.
        self.finish_fade();
        self.retired = None;
        self.start_queued_fade();
        self.finish_fade();
        self.retired = None;
        if sample_rate != self.sample_rate {
            let mut ir = Box::new(CabIr::new(self.active.source.clone(), sample_rate));
            self.info.model = ir.model.take();
            self.info.channels = ir.channels();
            self.active = ir;
            self.sample_rate = sample_rate;
        }
        self.set_ramps();
        self.update_filters();
    }

    fn set_param(&mut self, id: ParamId, value: f32) {
        let Some(spec) = self.info.param(id) else { return };
        let value = spec.clamp(value);
        match id {
            LEVEL => self.level.set_target(db_to_gain(value)),
            LOW_CUT => self.low_cut_log.set_target(value.ln()),
            HIGH_CUT => self.high_cut_log.set_target(value.ln()),
            _ => {}
        }
    }

    fn process(&mut self, block: &mut [f32]) {
        match self.incoming.as_deref_mut() {
            None => self.active.process_mono(block),
            Some(incoming) => {
                for chunk in block.chunks_mut(CHUNK) {
                    let mut buffer = [0.0f32; CHUNK];
                    let new = &mut buffer[..chunk.len()];
                    new.copy_from_slice(chunk);
                    self.active.process_mono(chunk);
                    incoming.process_mono(new);
                    for (old, new) in chunk.iter_mut().zip(new.iter()) {
                        *old += (new - *old) * self.fade.next_gain();
                    }
                }
                if self.fade.is_done() {
                    self.finish_fade();
                }
            }
        }
        self.post_process(block, None);
        self.right_filters_stale = true;
    }

    fn process_stereo(&mut self, left: &mut [f32], right: &mut [f32]) {
        match self.incoming.as_deref_mut() {
            None => self.active.process_stereo(left, right),
            Some(incoming) => {
                for (l, r) in left.chunks_mut(CHUNK).zip(right.chunks_mut(CHUNK)) {
                    let mut buffers = [[0.0f32; CHUNK]; 2];
                    let [new_l, new_r] = &mut buffers;
                    let (new_l, new_r) = (&mut new_l[..l.len()], &mut new_r[..r.len()]);
                    new_l.copy_from_slice(l);
                    new_r.copy_from_slice(r);
                    self.active.process_stereo(l, r);
                    incoming.process_stereo(new_l, new_r);
                    for i in 0..l.len() {
                        let g = self.fade.next_gain();
                        l[i] += (new_l[i] - l[i]) * g;
                        r[i] += (new_r[i] - r[i]) * g;
                    }
                }
                if self.fade.is_done() {
                    self.finish_fade();
                }
            }
        }
        if self.right_filters_stale {
            self.filter_state[1] = self.filter_state[0];
            self.right_filters_stale = false;
        }
        self.post_process(left, Some(right));
    }

    fn reset(&mut self) {
        self.active.reset();
        if let Some(incoming) = self.incoming.as_deref_mut() {
            incoming.reset();
        }
        self.filter_state = Default::default();
        for s in [&mut self.level, &mut self.low_cut_log, &mut self.high_cut_log] {
            let target = s.target();
            s.set_immediate(target);
        }
        self.update_filters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::formats::ir::IrProblem;
    use crate::formats::ir::test_files::{Format, cab_like, write};
    use crate::param::gain_to_db;

    const SR: f32 = 48_000.0;

    fn sine(hz: f32, amplitude: f32, len: usize) -> Vec<f32> {
        (0..len).map(|i| amplitude * (std::f32::consts::TAU * hz * i as f32 / SR).sin()).collect()
    }

    fn rms(x: &[f32]) -> f32 {
        (x.iter().map(|v| v * v).sum::<f32>() / x.len().max(1) as f32).sqrt()
    }

    fn max_step(x: &[f32]) -> f32 {
        x.windows(2).fold(0.0f32, |m, w| m.max((w[1] - w[0]).abs()))
    }

    /// A pedal playing a one-sample unit impulse: the cab itself is transparent, so only the filters and level act.
    fn transparent_cab() -> Cab {
        let path = write("unit-impulse.wav", 48_000, Format::Float, &[&[1.0]]);
        let mut cab = Cab::load(&path, SR, 256).unwrap();
        cab.prepare(SR, 256);
        cab
    }

    /// Plays `input` through the pedal in blocks of `block`.
    fn play(cab: &mut Cab, input: &[f32], block: usize) -> Vec<f32> {
        let mut out = input.to_vec();
        for chunk in out.chunks_mut(block) {
            cab.process(chunk);
        }
        out
    }

    /// Gain in dB the pedal applies to a steady sine (measured after it settles).
    fn gain_at(cab: &mut Cab, hz: f32) -> f32 {
        cab.reset();
        let input = sine(hz, 0.5, (0.5 * SR) as usize);
        let out = play(cab, &input, 128);
        let settled = input.len() / 2;
        gain_to_db(rms(&out[settled..]) / rms(&input[settled..]))
    }

    #[test]
    fn low_and_high_cut_are_minus_3_db_at_their_corners() {
        let mut cab = transparent_cab();
        assert!(gain_at(&mut cab, 1_000.0).abs() < 0.05, "flat with both cuts at their defaults");
        for corner in [80.0, 200.0, 500.0] {
            cab.set_param(LOW_CUT, corner);
            cab.reset();
            let at = gain_at(&mut cab, corner);
            assert!((at + 3.0).abs() < 0.5, "low cut {corner} Hz: {at:.2} dB at the corner");
            let octave_below = gain_at(&mut cab, corner / 2.0);
            assert!(octave_below < -11.0 && octave_below > -13.5, "12 dB/octave: {octave_below:.2} dB");
            assert!(gain_at(&mut cab, corner * 8.0).abs() < 0.1, "passband untouched");
        }
        cab.set_param(LOW_CUT, 20.0);
        for corner in [2_000.0, 5_000.0, 12_000.0, 20_000.0] {
            cab.set_param(HIGH_CUT, corner);
            cab.reset();
            let at = gain_at(&mut cab, corner);
            assert!((at + 3.0).abs() < 0.5, "high cut {corner} Hz: {at:.2} dB at the corner");
            assert!(gain_at(&mut cab, 200.0).abs() < 0.1, "passband untouched");
        }
        cab.set_param(HIGH_CUT, 4_000.0);
        cab.reset();
        assert!(gain_at(&mut cab, 8_000.0) < -11.0, "an octave above the high cut");
    }

    #[test]
    fn level_sets_the_output_in_decibels() {
        let mut cab = transparent_cab();
        cab.set_param(LEVEL, -12.0);
        cab.reset();
        assert!((gain_at(&mut cab, 1_000.0) + 12.0).abs() < 0.05);
    }

    #[test]
    fn swapping_irs_while_a_sine_plays_has_no_step_larger_than_the_crossfade_allows() {
        let a = write("swap-a.wav", 44_100, Format::Int(24), &[&cab_like(44_100.0, 11)]);
        let b = write(
            "swap-b.wav",
            48_000,
            Format::Float,
            &[&cab_like(48_000.0, 12).iter().map(|x| -x).collect::<Vec<_>>()],
        );
        let input = sine(330.0, 0.5, (0.6 * SR) as usize);
        let swap_at = (0.3 * SR) as usize + 17; // mid-block, mid-cycle
        // What each cab alone makes of the sine, for the bound.
        let alone_a = play(&mut Cab::load(&a, SR, 256).unwrap(), &input, 64);
        let alone_b = play(&mut Cab::load(&b, SR, 256).unwrap(), &input, 64);

        let mut cab = Cab::load(&a, SR, 256).unwrap();
        let mut out = input.clone();
        let (before, after) = out.split_at_mut(swap_at);
        for chunk in before.chunks_mut(64) {
            cab.process(chunk);
        }
        let incoming = Box::new(CabIr::load(&b, SR).unwrap());
        let warm_up = incoming.frames().min((SWAP_WARM_UP_MAX_MS * 1e-3 * SR) as usize);
        assert!(cab.swap_ir(incoming).is_none());
        let mut retired_at = None;
        for (i, chunk) in after.chunks_mut(64).enumerate() {
            cab.process(chunk);
            if let Some(old) = cab.take_retired() {
                assert_eq!(old.source().sample_rate, 44_100, "the old response comes back");
                retired_at.get_or_insert(i * 64);
            }
        }
        let fade = (SWAP_FADE_MS * 1e-3 * SR) as usize;
        let end = warm_up + fade;
        let retired_at = retired_at.expect("the old response was handed back");
        assert!(retired_at < end && retired_at + 64 >= end, "handed back when the fade ends: {retired_at}");
        assert_eq!(cab.info().model.as_ref().unwrap().name, "swap-b.wav");

        // A raised-cosine fade moves at most pi / (2 * fade) per sample between two signals.
        let window = swap_at - 1..swap_at + end + 1;
        let steady = max_step(&alone_a[window.clone()]).max(max_step(&alone_b[window.clone()]));
        let apart =
            alone_a[window.clone()].iter().zip(&alone_b[window.clone()]).fold(0.0f32, |m, (x, y)| m.max((x - y).abs()));
        let bound = steady + std::f32::consts::PI / (2.0 * fade as f32) * apart;
        let measured = max_step(&out[window.clone()]);
        assert!(measured <= bound * 1.05, "step {measured} during the swap, bound {bound}");
        // The bound means something: switching without a fade would jump by about `apart`.
        assert!(apart > 5.0 * bound, "the two cabs differ enough to click: {apart} vs {bound}");
        // Before and after, each cab plays exactly as it does alone.
        assert!(out[..swap_at].iter().zip(&alone_a).all(|(x, y)| (x - y).abs() < 1e-6));
        let late = swap_at + end;
        assert!(out[late..].iter().zip(&alone_b[late..]).all(|(x, y)| (x - y).abs() < 1e-4));
    }

    #[test]
    fn a_swap_during_a_crossfade_waits_its_turn_and_the_newest_wins() {
        let paths: Vec<_> = (0..3)
            .map(|i| write(&format!("queue-{i}.wav"), 48_000, Format::Float, &[&cab_like(48_000.0, 20 + i)]))
            .collect();
        let mut cab = Cab::load(&paths[0], SR, 256).unwrap();
        let load = |i: usize| Box::new(CabIr::load(&paths[i], SR).unwrap());
        assert!(cab.swap_ir(load(1)).is_none());
        assert!(cab.swap_ir(load(2)).is_none(), "queued behind the running fade");
        let superseded = cab.swap_ir(load(1)).expect("the queued one is replaced and handed back");
        assert_eq!(superseded.source().name(), "queue-2.wav");
        let mut block = sine(200.0, 0.3, 2_048);
        let mut retired = Vec::new();
        for _ in 0..10 {
            cab.process(&mut block);
            retired.extend(cab.take_retired().map(|ir| ir.source().name()));
        }
        assert_eq!(retired, ["queue-0.wav", "queue-1.wav"]);
        assert!(!cab.is_swapping());
        // An IR prepared for another rate is refused, not played at the wrong pitch.
        let wrong = Box::new(CabIr::load(&paths[2], 44_100.0).unwrap());
        assert!(cab.swap_ir(wrong).is_some());
    }

    #[test]
    fn a_stereo_ir_makes_stereo_from_a_mono_input() {
        // A second mic half a millisecond further away.
        let left = cab_like(48_000.0, 30);
        let right: Vec<f32> = std::iter::repeat_n(0.0, 24).chain(left.iter().copied()).collect();
        let path = write("stereo-cab.wav", 48_000, Format::Float, &[&left, &right]);
        let mut cab = Cab::load(&path, SR, 256).unwrap();
        assert_eq!(cab.info().channels, Channels::MakesStereo);
        // The chain copies the mono signal to both sides before a pedal that makes stereo.
        let input = sine(150.0, 0.5, 9_600);
        let (mut l, mut r) = (input.clone(), input.clone());
        for (l, r) in l.chunks_mut(100).zip(r.chunks_mut(100)) {
            cab.process_stereo(l, r);
        }
        let difference: Vec<f32> = l.iter().zip(&r).map(|(a, b)| a - b).collect();
        assert!(rms(&difference) > 0.1 * rms(&l), "left and right differ");
        // Each side is its own response.
        let mut mono_left = Cab::load(&write("left-only.wav", 48_000, Format::Float, &[&left]), SR, 256).unwrap();
        let expected_left = play(&mut mono_left, &input, 100);
        let level = rms(&expected_left) / rms(&l);
        assert!((gain_to_db(level)).abs() < 3.0, "same response, up to the shared normalisation");
        let correlation: f32 = expected_left.iter().zip(&l).map(|(a, b)| a * b).sum::<f32>()
            / (rms(&expected_left) * rms(&l) * l.len() as f32);
        assert!(correlation > 0.999, "left plays the left response: {correlation}");
    }

    #[test]
    fn a_mono_ir_plays_both_channels_once_the_chain_is_stereo() {
        let path = write("mono-cab.wav", 48_000, Format::Float, &[&cab_like(48_000.0, 40)]);
        let mut cab = Cab::load(&path, SR, 256).unwrap();
        assert_eq!(cab.info().channels, Channels::StereoCapable);
        let input = sine(220.0, 0.5, 4_800);
        let mut reference = Cab::load(&path, SR, 256).unwrap();
        let expected = play(&mut reference, &input, 64);
        // First mono, then the chain turns stereo (a stereo pedal inserted before it): both sides continue smoothly.
        let mut mono = input[..2_400].to_vec();
        cab.process(&mut mono);
        let (mut l, mut r) = (input[2_400..].to_vec(), input[2_400..].to_vec());
        cab.process_stereo(&mut l, &mut r);
        assert!(mono.iter().chain(&l).zip(&expected).all(|(a, b)| (a - b).abs() < 1e-5));
        assert!(l.iter().zip(&r).all(|(a, b)| (a - b).abs() < 1e-6), "the right side picked up the left's state");
    }

    #[test]
    fn preparing_for_another_rate_re_prepares_the_response() {
        let path = write("rate-change.wav", 48_000, Format::Float, &[&cab_like(48_000.0, 50)]);
        let mut cab = Cab::load(&path, 48_000.0, 256).unwrap();
        let frames_48k = cab.current_ir().frames();
        cab.prepare(96_000.0, 64);
        assert_eq!(cab.sample_rate(), 96_000.0);
        let frames_96k = cab.current_ir().frames();
        assert!(frames_96k.abs_diff(2 * frames_48k) < 100, "{frames_48k} -> {frames_96k}");
        let model = cab.info().model.as_ref().unwrap();
        assert_eq!(model.name, "rate-change.wav");
        assert_eq!(model.sample_rate, Some(48_000.0));
        let mut block = sine(440.0, 0.5, 4_000);
        cab.process(&mut block);
        assert!(block.iter().all(|x| x.is_finite()) && rms(&block) > 0.01);
    }

    #[test]
    fn the_model_info_describes_the_ir() {
        let path = write("info.wav", 44_100, Format::Int(16), &[&cab_like(44_100.0, 60), &cab_like(44_100.0, 61)]);
        let cab = Cab::load(&path, SR, 256).unwrap();
        let model = cab.info().model.as_ref().unwrap();
        assert_eq!(model.name, "info.wav");
        assert_eq!(model.sample_rate, Some(44_100.0));
        let detail = |key: &str| model.details.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone()).unwrap();
        assert!(detail("Channels").starts_with('2'));
        let ms: f32 = detail("Length").trim_end_matches(" ms").parse().unwrap();
        assert!(ms > 30.0 && ms < 85.0, "{ms} ms");
        assert_eq!(cab.info().kind, KIND);
        assert_eq!(cab.info().params, Cab::params());
    }

    #[test]
    fn a_bad_file_is_an_error_not_a_panic() {
        let silent = write("cab-silent.wav", 48_000, Format::Int(16), &[&[0.0; 100]]);
        let err = Cab::load(&silent, SR, 256).err().unwrap();
        assert!(matches!(err.problem, IrProblem::Silent));
        assert!(err.to_string().contains("cab-silent.wav"));
    }
}
