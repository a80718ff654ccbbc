//! Neural Reverb: walks the latent space of an autoencoder trained on simulated rooms (`training/reverb/train.py`).
//! Each point of the pad is a room: the decoder turns it into the room's time-frequency envelope, shaped noise
//! turns that into a left and a right impulse response ([`RoomSynth`], two seeds, so the stereo image is wide and
//! decorrelated), and the zero-latency [`Convolver`] plays them.
//!
//! **The worker.** Decoding, synthesis and the FFT partitioning of two multi-second responses allocate and take a
//! few milliseconds, so they run on a thread the pedal starts when it is built. The audio thread sends the
//! settings that shape the response (room position, decay, pre-delay) through a ring buffer when they change;
//! the worker builds the newest request only and sends back a ready [`Voice`] (two partitioned responses). The
//! audio thread installs them in the free slots of its [`ConvolverBank`], where they play over the input's whole
//! history at once (the new room sounds with its whole tail), and crossfades to them over [`FADE_MS`]. The voice it
//! replaces goes back to the worker to be dropped. Nothing on the audio thread allocates, frees, locks or waits;
//! the worker polls every [`POLL_MS`] and sleeps otherwise.
//!
//! Every response has the same length (the longest decay plus the longest pre-delay, zero-padded), so all four
//! (left and right, playing and incoming) are cut into the same partitions and share one input history: a room
//! change copies only the incoming slots' pending output, not seconds of history.
//!
//! After the convolution come a 12 dB/octave low cut and high cut on the wet signal, and the mix. The pedal makes
//! stereo from a mono chain ([`Channels::MakesStereo`]); given stereo it reverberates the sum of both sides, as a
//! stereo reverb fed a stereo signal usually does.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rtrb::{Consumer, Producer, RingBuffer};

use crate::dsp::biquad::{Coefficients, State};
use crate::dsp::convolver::{ConvolverBank, ConvolverIr};
use crate::dsp::room_ir::RoomSynth;
use crate::effects::cab::butterworth;
use crate::formats::reverb::{self, ReverbFile};
use crate::nn::decoder::Decoder;
use crate::param::{Curve, ParamId, ParamSpec, Smoothed, Unit};
use crate::pedal::{Channels, ModelInfo, PadInfo, PadMap, PadRoom, Pedal, PedalInfo};

pub const KIND: &str = "reverb";

/// The trained model, built into the binary (`assets/models/reverb/`, with its manifest and room map).
pub const MODEL: &str = include_str!("../../../assets/models/reverb/rooms.reverb.json");

/// The built-in model, parsed once (a few MB of JSON) and shared by every reverb pedal.
pub fn builtin() -> Result<Arc<ReverbFile>, String> {
    static PARSED: OnceLock<Result<Arc<ReverbFile>, String>> = OnceLock::new();
    PARSED
        .get_or_init(|| reverb::parse(MODEL).map(Arc::new).map_err(|e| format!("Neural Reverb: built-in model: {e}")))
        .clone()
}

const X: ParamId = ParamId(0);
const Y: ParamId = ParamId(1);
const DECAY: ParamId = ParamId(2);
const PRE_DELAY: ParamId = ParamId(3);
const LOW_CUT: ParamId = ParamId(4);
const HIGH_CUT: ParamId = ParamId(5);
const MIX: ParamId = ParamId(6);
/// The third latent dimension, for decoders that have one.
const Z: ParamId = ParamId(7);

/// Decay knob range: the room's decay times are multiplied by this.
pub const MIN_DECAY: f32 = 0.5;
pub const MAX_DECAY: f32 = 2.0;
pub const MAX_PRE_DELAY_MS: f32 = 200.0;
/// Crossfade from one room to the next: short enough to follow the pad, long enough not to click.
pub const FADE_MS: f32 = 30.0;
/// How often the worker looks for a request.
pub const POLL_MS: u64 = 2;
/// How long [`Pedal::settle`] waits for a room before leaving it to arrive while playing.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(10);
/// Latent dimensions the pedal drives; more are held at the file's default.
const MAX_DIMS: usize = 8;
/// Noise seeds of the left and right responses.
const SEEDS: [u64; 2] = [0x5EED_0001, 0x5EED_0002];

/// What shapes a response: sent from the audio thread to the worker.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Request {
    z: [f32; MAX_DIMS],
    decay: f32,
    pre_delay_ms: f32,
}

/// One room's left and right responses, partitioned by the worker. While the bank plays them the voice holds a
/// second reference, so a slot emptied on the audio thread never frees them there: the voice goes back to the
/// worker, which drops the last reference.
pub struct Voice {
    irs: [Arc<ConvolverIr>; 2],
    request: Request,
}

impl Voice {
    /// Partitions both responses (allocates: off the audio thread).
    fn new(left: &[f32], right: &[f32], request: Request) -> Self {
        Self { irs: [Arc::new(ConvolverIr::new(left)), Arc::new(ConvolverIr::new(right))], request }
    }
}

/// Slots of the bank: a voice's left and right, twice (the playing voice and the one fading in).
const SLOTS: usize = 4;

/// The worker's side of the rings.
struct Worker {
    file: Arc<ReverbFile>,
    decoder: Decoder,
    synth: RoomSynth,
    sample_rate: f32,
    /// Every response is zero-padded to this length.
    len: usize,
    requests: Consumer<Request>,
    voices: Producer<Box<Voice>>,
    retired: Consumer<Box<Voice>>,
    stop: Arc<AtomicBool>,
}

impl Worker {
    fn run(mut self) {
        let mut pending: Option<Request> = None;
        while !self.stop.load(Ordering::Acquire) {
            while let Ok(request) = self.requests.pop() {
                pending = Some(request);
            }
            while let Ok(voice) = self.retired.pop() {
                drop(voice);
            }
            match pending {
                Some(request) if self.voices.slots() > 0 => {
                    let voice = self.build(request);
                    // A newer request that arrived meanwhile supersedes this one: build that instead.
                    if self.requests.is_empty() {
                        let _ = self.voices.push(Box::new(voice));
                        pending = None;
                    }
                }
                _ => std::thread::sleep(Duration::from_millis(POLL_MS)),
            }
        }
    }

    fn build(&mut self, request: Request) -> Voice {
        let [left, right] =
            room_responses(&self.file, &mut self.decoder, &mut self.synth, self.sample_rate, self.len, &request);
        Voice::new(&left, &right, request)
    }
}

/// The left and right responses for a request, `len` samples each: pre-delay, then the decoded room at its decay.
fn room_responses(
    file: &ReverbFile,
    decoder: &mut Decoder,
    synth: &mut RoomSynth,
    sample_rate: f32,
    len: usize,
    request: &Request,
) -> [Vec<f32>; 2] {
    let dims = file.latent.dims;
    let mut z = [0.0; MAX_DIMS];
    z[..dims].copy_from_slice(&request.z[..dims]);
    let grid = decoder.decode(&z[..dims]);
    let delay = ((request.pre_delay_ms * 1e-3 * sample_rate).round() as usize).min(len);
    let room_len = synth.len_for(request.decay);
    SEEDS.map(|seed| {
        let mut ir = vec![0.0; len];
        let mut room = vec![0.0; room_len];
        synth.synthesize(grid, request.decay, seed, &mut room);
        let n = room.len().min(len - delay);
        ir[delay..delay + n].copy_from_slice(&room[..n]);
        ir
    })
}

/// The Neural Reverb pedal. See the module documentation.
pub struct Reverb {
    info: PedalInfo,
    file: Arc<ReverbFile>,
    sample_rate: f32,
    /// Every knob's value as last set (plain units), so a rebuild for another rate starts where the player was.
    knobs: Vec<f32>,
    /// The response settings the knobs ask for: room position in latent coordinates, decay, pre-delay.
    request: Request,
    /// The settings changed and have not reached the worker yet.
    dirty: bool,
    /// Plays the active voice in slots `active_slot` and `active_slot + 1`, the incoming one in the other two.
    bank: ConvolverBank,
    active_slot: usize,
    active: Box<Voice>,
    incoming: Option<Box<Voice>>,
    /// A replaced voice waiting for room in the ring back to the worker.
    retired: Option<Box<Voice>>,
    fade_done: u32,
    fade_len: u32,
    requests: Producer<Request>,
    voices: Consumer<Box<Voice>>,
    to_drop: Producer<Box<Voice>>,
    stop: Arc<AtomicBool>,
    worker: Option<JoinHandle<()>>,
    low_cut_log: Smoothed,
    high_cut_log: Smoothed,
    low_cut: Coefficients,
    high_cut: Coefficients,
    filters: [[State; 2]; 2],
    mix: Smoothed,
    /// The convolution's input (the dry signal, mono).
    send: Vec<f32>,
    /// The playing room's wet signal, left and right, so the dry stays for the mix.
    wet: [Vec<f32>; 2],
    /// The incoming room's, while it fades in.
    fresh: [Vec<f32>; 2],
}

impl Reverb {
    pub fn params(file: &ReverbFile) -> Vec<ParamSpec> {
        let at = |d: usize| {
            let l = &file.latent;
            (100.0 * (l.default[d] - l.min[d]) / (l.max[d] - l.min[d])).clamp(0.0, 100.0)
        };
        let mut params = vec![
            ParamSpec::new("x", "Room X", Unit::Percent, 0.0, 100.0, at(0)).smoothing(0.0),
            ParamSpec::new("y", "Room Y", Unit::Percent, 0.0, 100.0, if file.latent.dims > 1 { at(1) } else { 50.0 })
                .smoothing(0.0),
            ParamSpec::new("decay", "Decay", Unit::Multiplier, MIN_DECAY, MAX_DECAY, 1.0)
                .curve(Curve::Logarithmic)
                .smoothing(0.0),
            ParamSpec::new("pre_delay_ms", "Pre-delay", Unit::Milliseconds, 0.0, MAX_PRE_DELAY_MS, 10.0).smoothing(0.0),
            ParamSpec::new("low_cut_hz", "Low Cut", Unit::Hertz, 20.0, 1000.0, 150.0).curve(Curve::Logarithmic),
            ParamSpec::new("high_cut_hz", "High Cut", Unit::Hertz, 1000.0, 20_000.0, 8000.0).curve(Curve::Logarithmic),
            ParamSpec::new("mix", "Mix", Unit::Percent, 0.0, 100.0, 25.0),
        ];
        if file.latent.dims > 2 {
            params.push(ParamSpec::new("z", "Room Z", Unit::Percent, 0.0, 100.0, at(2)).smoothing(0.0));
        }
        params
    }

    /// Builds the pedal for `file` at `sample_rate`, its first room decoded here (allocates; starts the worker).
    pub fn new(file: Arc<ReverbFile>, sample_rate: f32, max_block: usize) -> Self {
        let sample_rate = if sample_rate.is_finite() && sample_rate >= 1_000.0 { sample_rate } else { 48_000.0 };
        let params = Self::params(&file);
        let knobs = params.iter().map(|p| p.default).collect();
        let mut decoder = Decoder::new(&file);
        let mut synth = RoomSynth::new(&file.grid, file.sample_rate, sample_rate);
        let len = synth.len_for(MAX_DECAY) + (MAX_PRE_DELAY_MS * 1e-3 * sample_rate).ceil() as usize;
        let mut request = Request { z: [0.0; MAX_DIMS], decay: 1.0, pre_delay_ms: 10.0 };
        request.z[..file.latent.dims].copy_from_slice(&file.latent.default);
        let [left, right] = room_responses(&file, &mut decoder, &mut synth, sample_rate, len, &request);
        let active = Box::new(Voice::new(&left, &right, request));
        let mut bank = ConvolverBank::new(active.irs[0].clone(), SLOTS);
        let installed = bank.install(1, active.irs[1].clone(), None);
        debug_assert!(matches!(installed, Ok(None)), "both responses have the pedal's length");

        let (requests, worker_requests) = RingBuffer::new(8);
        let (worker_voices, voices) = RingBuffer::new(2);
        let (to_drop, worker_retired) = RingBuffer::new(8);
        let stop = Arc::new(AtomicBool::new(false));
        let worker = Worker {
            file: file.clone(),
            decoder,
            synth,
            sample_rate,
            len,
            requests: worker_requests,
            voices: worker_voices,
            retired: worker_retired,
            stop: stop.clone(),
        };
        let worker = std::thread::Builder::new()
            .name("reverb-rooms".into())
            .spawn(move || worker.run())
            .expect("start the reverb's worker thread");

        let info = PedalInfo {
            kind: KIND.into(),
            name: "Neural Reverb".into(),
            params,
            channels: Channels::MakesStereo,
            model: Some(model_info(&file, len, sample_rate)),
            pad: Some(PadInfo { x: X, y: Y, map: pad_map(&file) }),
        };
        let mut pedal = Self {
            info,
            file,
            sample_rate,
            knobs,
            request,
            dirty: false,
            bank,
            active_slot: 0,
            active,
            incoming: None,
            retired: None,
            fade_done: 0,
            fade_len: 1,
            requests,
            voices,
            to_drop,
            stop,
            worker: Some(worker),
            low_cut_log: Smoothed::new(150f32.ln()),
            high_cut_log: Smoothed::new(8000f32.ln()),
            low_cut: butterworth(true, 150.0, sample_rate),
            high_cut: butterworth(false, 8000.0, sample_rate),
            filters: Default::default(),
            mix: Smoothed::new(0.25),
            send: vec![0.0; max_block.max(1)],
            wet: [vec![0.0; max_block.max(1)], vec![0.0; max_block.max(1)]],
            fresh: [vec![0.0; max_block.max(1)], vec![0.0; max_block.max(1)]],
        };
        // The knobs start at their defaults; the room decoded above is the file's default point, the same place.
        for (i, spec) in pedal.info.params.clone().iter().enumerate() {
            pedal.apply(ParamId(i as u16), spec.default, true);
        }
        pedal.dirty = false;
        pedal.prepare_rate();
        pedal
    }

    /// The room map shipped with the model, for the GUI's pad.
    pub fn file(&self) -> &Arc<ReverbFile> {
        &self.file
    }

    /// Length of every response the pedal plays, in samples (the longest decay plus the longest pre-delay).
    pub fn response_len(&self) -> usize {
        self.bank.len()
    }

    /// Whether a new room is being built or faded in (for tests: wait until it is not).
    pub fn is_changing(&self) -> bool {
        self.dirty || self.incoming.is_some() || self.active.request != self.request
    }

    fn prepare_rate(&mut self) {
        let sr = self.sample_rate;
        self.fade_len = (FADE_MS * 1e-3 * sr).round().max(1.0) as u32;
        self.low_cut_log.set_ramp(sr, ParamSpec::DEFAULT_SMOOTHING_MS);
        self.high_cut_log.set_ramp(sr, ParamSpec::DEFAULT_SMOOTHING_MS);
        self.mix.set_ramp(sr, ParamSpec::DEFAULT_SMOOTHING_MS);
        self.update_filters();
    }

    fn update_filters(&mut self) {
        self.low_cut = butterworth(true, self.low_cut_log.current().exp(), self.sample_rate);
        self.high_cut = butterworth(false, self.high_cut_log.current().exp(), self.sample_rate);
    }

    /// A knob's value (already clamped) into the request or a smoother.
    fn apply(&mut self, id: ParamId, value: f32, immediate: bool) {
        if let Some(knob) = self.knobs.get_mut(id.0 as usize) {
            *knob = value;
        }
        let l = &self.file.latent;
        let latent = |d: usize| l.min[d] + (l.max[d] - l.min[d]) * value / 100.0;
        let before = self.request;
        match id {
            X => self.request.z[0] = latent(0),
            Y if l.dims > 1 => self.request.z[1] = latent(1),
            Z if l.dims > 2 => self.request.z[2] = latent(2),
            DECAY => self.request.decay = value,
            PRE_DELAY => self.request.pre_delay_ms = value,
            LOW_CUT | HIGH_CUT | MIX => {
                let (smoother, target) = match id {
                    LOW_CUT => (&mut self.low_cut_log, value.ln()),
                    HIGH_CUT => (&mut self.high_cut_log, value.ln()),
                    _ => (&mut self.mix, value / 100.0),
                };
                if immediate { smoother.set_immediate(target) } else { smoother.set_target(target) }
            }
            _ => {}
        }
        if self.request != before {
            self.dirty = true;
        }
    }

    /// Sends a changed request, takes a finished voice and hands a replaced one back: the audio thread's side of
    /// the worker, once per block. Never blocks: a full ring is tried again next block.
    fn exchange(&mut self) {
        if let Some(old) = self.retired.take()
            && let Err(rtrb::PushError::Full(old)) = self.to_drop.push(old)
        {
            self.retired = Some(old);
        }
        if self.dirty && self.requests.push(self.request).is_ok() {
            self.dirty = false;
        }
        if self.incoming.is_none()
            && self.retired.is_none()
            && let Ok(voice) = self.voices.pop()
        {
            let slot = SLOTS / 2 - self.active_slot;
            let mut fits = true;
            for side in 0..2 {
                // The incoming slots are empty (emptied when the last fade ended), so nothing is replaced.
                let installed = self.bank.install(slot + side, voice.irs[side].clone(), Some(self.active_slot + side));
                fits &= matches!(installed, Ok(None));
            }
            if fits {
                self.incoming = Some(voice);
                self.fade_done = 0;
            } else {
                // Not built for this bank (cannot happen: one worker builds every voice at the pedal's length).
                self.bank.take(slot);
                self.bank.take(slot + 1);
                self.retired = Some(voice);
            }
        }
    }

    /// Convolves the mono input the caller put in `send[..n]` into both wet channels, crossfading while a new
    /// room comes in.
    fn convolve(&mut self, n: usize) {
        let [wet_l, wet_r] = &mut self.wet;
        let [new_l, new_r] = &mut self.fresh;
        let (wet_l, wet_r, new_l, new_r) = (&mut wet_l[..n], &mut wet_r[..n], &mut new_l[..n], &mut new_r[..n]);
        let send = &self.send[..n];
        if self.active_slot == 0 {
            self.bank.process(send, &mut [wet_l, wet_r, new_l, new_r]);
        } else {
            self.bank.process(send, &mut [new_l, new_r, wet_l, wet_r]);
        }
        if self.incoming.is_none() {
            return;
        }
        let [wet_l, wet_r] = &mut self.wet;
        let [new_l, new_r] = &self.fresh;
        for i in 0..n {
            self.fade_done = (self.fade_done + 1).min(self.fade_len);
            // Equal power: two rooms' tails are uncorrelated noise.
            let g = self.fade_done as f32 / self.fade_len as f32 * std::f32::consts::FRAC_PI_2;
            let (fade_in, fade_out) = (g.sin(), g.cos());
            wet_l[i] = wet_l[i] * fade_out + new_l[i] * fade_in;
            wet_r[i] = wet_r[i] * fade_out + new_r[i] * fade_in;
        }
        if self.fade_done >= self.fade_len
            && let Some(new) = self.incoming.take()
        {
            // The retiring voice holds these responses too, so emptying the slots frees nothing here.
            self.bank.take(self.active_slot);
            self.bank.take(self.active_slot + 1);
            self.active_slot = SLOTS / 2 - self.active_slot;
            self.retired = Some(std::mem::replace(&mut self.active, new));
        }
    }

    /// Filters the wet signal and mixes it with the dry in `left` (and `right`, for a stereo chain).
    fn mix_out(&mut self, left: &mut [f32], mut right: Option<&mut [f32]>) {
        for i in 0..left.len() {
            if self.low_cut_log.is_smoothing() || self.high_cut_log.is_smoothing() {
                self.low_cut_log.next_value();
                self.high_cut_log.next_value();
                self.update_filters();
            }
            let mix = self.mix.next_value();
            let [[l_low, l_high], [r_low, r_high]] = &mut self.filters;
            let wet = l_high.tick(&self.high_cut, l_low.tick(&self.low_cut, self.wet[0][i]));
            left[i] += mix * (wet - left[i]);
            if let Some(right) = right.as_deref_mut() {
                let wet = r_high.tick(&self.high_cut, r_low.tick(&self.low_cut, self.wet[1][i]));
                right[i] += mix * (wet - right[i]);
            }
        }
    }
}

/// The model's room map in pad coordinates, made once per model and shared by every pedal that plays it.
fn pad_map(file: &Arc<ReverbFile>) -> Option<Arc<PadMap>> {
    static BUILTIN: OnceLock<Option<Arc<PadMap>>> = OnceLock::new();
    if builtin().is_ok_and(|b| Arc::ptr_eq(&b, file)) {
        return BUILTIN.get_or_init(|| room_map_on_pad(file).map(Arc::new)).clone();
    }
    room_map_on_pad(file).map(Arc::new)
}

/// Converts the file's map from latent coordinates to the pad's 0–1 (the first two latent dimensions).
fn room_map_on_pad(file: &ReverbFile) -> Option<PadMap> {
    let map = file.map.as_ref()?;
    let l = &file.latent;
    let on_pad = |z: f32, d: usize| {
        if d < l.dims { ((z - l.min[d]) / (l.max[d] - l.min[d])).clamp(0.0, 1.0) } else { 0.5 }
    };
    let rooms = map
        .rooms
        .iter()
        .map(|r| PadRoom {
            x: on_pad(r.z.first().copied().unwrap_or(0.0), 0),
            y: on_pad(r.z.get(1).copied().unwrap_or(0.0), 1),
            decay_s: r.t30_mid_s,
            volume_m3: r.volume_m3,
        })
        .collect();
    let mut pad = PadMap { columns: 0, rows: 0, decay_s: Vec::new(), volume_m3: Vec::new(), rooms };
    // The grid is drawn as evenly spaced samples spanning the pad: use it only if it is one.
    if let Some(grid) = &map.grid
        && l.dims >= 2
        && spans_evenly(&grid.x, l.min[0], l.max[0])
        && spans_evenly(&grid.y, l.min[1], l.max[1])
    {
        pad.columns = grid.x.len();
        pad.rows = grid.y.len();
        pad.decay_s = grid.t30_mid_s.iter().flatten().copied().collect();
        pad.volume_m3 = grid.volume_m3.iter().flatten().copied().collect();
    }
    Some(pad)
}

/// Whether `values` run evenly from `min` to `max` (within 1 % of a step).
fn spans_evenly(values: &[f32], min: f32, max: f32) -> bool {
    let n = values.len();
    n >= 2 && {
        let step = (max - min) / (n - 1) as f32;
        values.iter().enumerate().all(|(i, &v)| (v - (min + step * i as f32)).abs() <= 0.01 * step.abs())
    }
}

fn model_info(file: &ReverbFile, len: usize, sample_rate: f32) -> ModelInfo {
    let mut details = vec![
        ("Latent space".into(), format!("{} dimensions", file.latent.dims)),
        ("Bands".into(), format!("{} × {} frames", file.grid.bands(), file.grid.frames)),
        ("Response".into(), format!("{:.2} s, stereo", len as f32 / sample_rate)),
    ];
    if let Some(map) = &file.map {
        details.push(("Training rooms".into(), map.rooms.len().to_string()));
    }
    ModelInfo {
        name: file.name().unwrap_or("Neural Reverb").into(),
        architecture: "Autoencoder decoder (room envelopes)".into(),
        sample_rate: Some(file.sample_rate),
        parameters: file.parameter_count(),
        details,
    }
}

impl Drop for Reverb {
    fn drop(&mut self) {
        // Pedals are dropped off the audio thread, so waiting for the worker to finish its room is fine here.
        self.stop.store(true, Ordering::Release);
        if let Some(worker) = self.worker.take() {
            let _ = worker.join();
        }
    }
}

impl Pedal for Reverb {
    fn info(&self) -> &PedalInfo {
        &self.info
    }

    /// A new rate or block size rebuilds everything (the room at the new rate, a new worker) with the knobs where
    /// they were. Runs off the audio thread.
    fn prepare(&mut self, sample_rate: f32, max_block: usize) {
        let max_block = max_block.max(1);
        if sample_rate != self.sample_rate || self.send.len() < max_block {
            let mut fresh = Reverb::new(self.file.clone(), sample_rate, max_block);
            for (i, &value) in self.knobs.iter().enumerate() {
                fresh.apply(ParamId(i as u16), value, true);
            }
            fresh.settle();
            std::mem::swap(self, &mut fresh);
        }
    }

    fn set_param(&mut self, id: ParamId, value: f32) {
        let Some(spec) = self.info.param(id) else { return };
        let value = spec.clamp(value);
        self.apply(id, value, false);
    }

    /// A mono chain's reverb (the chain normally goes stereo here): the left response.
    fn process(&mut self, block: &mut [f32]) {
        self.exchange();
        let step = self.send.len();
        for chunk in block.chunks_mut(step) {
            let n = chunk.len();
            self.send[..n].copy_from_slice(chunk);
            self.convolve(n);
            self.mix_out(chunk, None);
        }
    }

    fn process_stereo(&mut self, left: &mut [f32], right: &mut [f32]) {
        self.exchange();
        let step = self.send.len();
        for (l, r) in left.chunks_mut(step).zip(right.chunks_mut(step)) {
            let n = l.len();
            for ((w, &a), &b) in self.send[..n].iter_mut().zip(l.iter()).zip(r.iter()) {
                *w = 0.5 * (a + b);
            }
            self.convolve(n);
            self.mix_out(l, Some(r));
        }
    }

    /// Waits for the worker to build the room the knobs ask for and plays it at once, without a crossfade.
    fn settle(&mut self) {
        let start = Instant::now();
        while self.active.request != self.request && start.elapsed() < SETTLE_TIMEOUT {
            if self.dirty && self.requests.push(self.request).is_ok() {
                self.dirty = false;
            }
            match self.voices.pop() {
                // The worker builds the newest request it has seen; an older room that was on its way is dropped.
                Ok(voice) if voice.request == self.request => {
                    for side in 0..2 {
                        let _ = self.bank.take(SLOTS / 2 - self.active_slot + side);
                        let _ = self.bank.install(self.active_slot + side, voice.irs[side].clone(), None);
                    }
                    self.incoming = None;
                    self.active = voice;
                }
                Ok(_) => {}
                Err(_) => std::thread::sleep(Duration::from_millis(POLL_MS)),
            }
        }
    }

    fn reset(&mut self) {
        self.bank.reset();
        self.filters = Default::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::formats::reverb::{self, tests::tiny};

    const SR: f32 = 8_000.0;

    fn pedal() -> Reverb {
        let file = Arc::new(reverb::parse(&tiny().to_string()).unwrap());
        let mut pedal = Reverb::new(file, SR, 64);
        pedal.set_param(MIX, 100.0);
        pedal.set_param(LOW_CUT, 20.0);
        pedal.set_param(HIGH_CUT, 3500.0);
        // Let the mix and filter ramps finish.
        play(&mut pedal, 512, |_| 0.0);
        pedal
    }

    /// Runs `seconds` of `input` (a function of the sample index) in stereo blocks of 64.
    fn play(pedal: &mut Reverb, samples: usize, input: impl Fn(usize) -> f32) -> [Vec<f32>; 2] {
        let mut out = [Vec::new(), Vec::new()];
        for start in (0..samples).step_by(64) {
            let mut l: Vec<f32> = (start..start + 64).map(&input).collect();
            let mut r = l.clone();
            pedal.process_stereo(&mut l, &mut r);
            out[0].extend_from_slice(&l);
            out[1].extend_from_slice(&r);
        }
        out
    }

    /// Plays silence until the pedal has its newest room (the worker runs on its own thread).
    fn play_until_settled(pedal: &mut Reverb) {
        let start = Instant::now();
        while pedal.is_changing() {
            assert!(start.elapsed() < Duration::from_secs(10), "the worker delivers the room");
            play(pedal, 64, |_| 0.0);
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    #[test]
    fn reverb_an_impulse_rings_in_two_decorrelated_channels() {
        let mut pedal = pedal();
        play_until_settled(&mut pedal);
        let [l, r] = play(&mut pedal, 4096, |i| if i == 0 { 1.0 } else { 0.0 });
        assert!(l.iter().chain(&r).all(|y| y.is_finite()));
        let energy = |x: &[f32]| x.iter().map(|v| v * v).sum::<f32>();
        assert!(energy(&l[..512]) > 1e-3 && energy(&r[..512]) > 1e-3, "a tail on both sides");
        assert!(energy(&l[2000..]) < 1e-9, "and it ends (the response is {} samples)", pedal.bank.len());
        let correlation = l.iter().zip(&r).map(|(a, b)| a * b).sum::<f32>() / (energy(&l) * energy(&r)).sqrt();
        assert!(correlation.abs() < 0.5, "left and right differ: {correlation}");
        // Pre-delay 10 ms: nothing before 80 samples.
        assert!(l[..79].iter().all(|&y| y.abs() < 1e-6), "{:?}", &l[..100]);
    }

    #[test]
    fn reverb_moving_the_pad_changes_the_room_without_a_click() {
        let mut pedal = pedal();
        play_until_settled(&mut pedal);
        let before = play(&mut pedal, 64, |_| 0.0);
        assert!(before[0].iter().all(|&y| y == 0.0));
        // A steady tone, so both rooms ring with the same input; the room changes while it plays.
        let tone = |i: usize| 0.5 * (i as f32 * 0.3).sin();
        let settled = play(&mut pedal, 2048, tone);
        pedal.set_param(X, 0.0);
        pedal.set_param(Y, 100.0);
        assert!(pedal.is_changing());
        let mut out = settled[0].clone();
        let start = Instant::now();
        let mut i = 2048;
        while pedal.is_changing() {
            assert!(start.elapsed() < Duration::from_secs(10));
            let [l, _] = play(&mut pedal, 64, |k| tone(i + k));
            out.extend_from_slice(&l);
            i += 64;
        }
        let [l, _] = play(&mut pedal, 1024, |k| tone(i + k));
        out.extend_from_slice(&l);
        assert!(pedal.active.request.z[0] == -2.0 && pedal.active.request.z[1] == 2.0);
        // No sample-to-sample jump larger than the tone itself makes.
        let steepest_tone = 0.5 * 0.3;
        let worst = out.windows(2).map(|w| (w[1] - w[0]).abs()).fold(0.0f32, f32::max);
        let level = out.iter().map(|y| y.abs()).fold(0.0f32, f32::max);
        assert!(worst < 4.0 * steepest_tone * level.max(0.1) / 0.5, "jump {worst}, level {level}");
        // The replaced voice went back to the worker.
        play(&mut pedal, 64, |_| 0.0);
        assert!(pedal.retired.is_none());
    }

    #[test]
    fn reverb_knobs_reach_the_response() {
        let mut pedal = pedal();
        play_until_settled(&mut pedal);
        let impulse = |i: usize| if i == 0 { 1.0 } else { 0.0 };
        let energy_after = |x: &[f32], from: usize| x[from..].iter().map(|v| v * v).sum::<f32>();
        // The tiny model's room lasts 512 samples (64 ms), plus 80 of pre-delay; twice the decay doubles it.
        let [short, _] = play(&mut pedal, 2048, impulse);
        pedal.set_param(DECAY, 2.0);
        play_until_settled(&mut pedal);
        pedal.reset();
        let [long, _] = play(&mut pedal, 2048, impulse);
        let (short_tail, long_tail) = (energy_after(&short, 700), energy_after(&long, 700));
        assert!(long_tail > 100.0 * short_tail, "a longer decay rings longer: {long_tail} against {short_tail}");
        pedal.set_param(PRE_DELAY, 100.0);
        play_until_settled(&mut pedal);
        pedal.reset();
        let [late, _] = play(&mut pedal, 2048, impulse);
        assert!(late[..799].iter().all(|&y| y.abs() < 1e-6) && late[800..900].iter().any(|&y| y.abs() > 1e-4));
        // Mix 0: the dry signal only.
        pedal.set_param(MIX, 0.0);
        play(&mut pedal, 512, |_| 0.0);
        let [dry, _] = play(&mut pedal, 256, |i| (i as f32 * 0.1).sin());
        assert!(dry.iter().enumerate().all(|(i, &y)| (y - (i as f32 * 0.1).sin()).abs() < 1e-5));
    }

    #[test]
    fn reverb_settle_plays_the_asked_room_from_the_first_sample() {
        // A pedal built from a preset settles before it plays; one whose knobs move while it plays gets there later.
        let impulse = |i: usize| if i == 0 { 1.0 } else { 0.0 };
        let mut settled = pedal();
        settled.set_param(X, 0.0);
        settled.set_param(Y, 100.0);
        settled.settle();
        assert!(!settled.is_changing());
        let [now, _] = play(&mut settled, 1024, impulse);
        let mut playing = pedal();
        playing.set_param(X, 0.0);
        playing.set_param(Y, 100.0);
        play_until_settled(&mut playing);
        playing.reset();
        let [later, _] = play(&mut playing, 1024, impulse);
        assert!(now.iter().any(|y| y.abs() > 1e-3));
        assert_eq!(now, later, "the same room");
    }

    #[test]
    fn reverb_pad_shows_the_room_map_in_pad_coordinates() {
        let pedal = pedal();
        let pad = pedal.info().pad.clone().unwrap();
        assert_eq!((pad.x, pad.y), (X, Y));
        let map = pad.map.unwrap();
        // z (0.5, -0.5) on a latent square of -2..2 each way.
        assert_eq!((map.rooms[0].x, map.rooms[0].y, map.rooms[0].decay_s), (0.625, 0.375, Some(0.8)));
        // The tiny file's grid does not span the pad (x runs -1..1): rooms only, and no guess in between.
        assert_eq!((map.columns, map.rows), (0, 0));
        assert_eq!(map.at(0.5, 0.5), (None, 0.0));

        let mut text = tiny();
        text["map"]["grid"]["x"] = serde_json::json!([-2, 2]);
        text["map"]["grid"]["y"] = serde_json::json!([-2, 0, 2]);
        let file = Arc::new(reverb::parse(&text.to_string()).unwrap());
        let map = room_map_on_pad(&file).unwrap();
        assert_eq!((map.columns, map.rows), (2, 3));
        assert_eq!(map.at(0.0, 0.0), (Some(1.0), 10.0));
        assert_eq!(map.at(1.0, 1.0), (Some(2.0), 20.0));
        let (decay, volume) = map.at(0.5, 0.0);
        assert!((decay.unwrap() - 2f32.sqrt()).abs() < 1e-5 && (volume - 200f32.sqrt()).abs() < 1e-3, "geometric");
        assert_eq!(map.at(1.0, 0.5).0, None, "an unmeasured sample leaves its neighbourhood unknown");
    }

    #[test]
    fn reverb_prepare_for_another_rate_keeps_the_settings() {
        let mut pedal = pedal();
        pedal.set_param(DECAY, 1.5);
        pedal.prepare(16_000.0, 128);
        assert_eq!(pedal.sample_rate, 16_000.0);
        assert_eq!(pedal.request.decay, 1.5);
        play_until_settled(&mut pedal);
        let [l, _] = play(&mut pedal, 4096, |i| if i == 0 { 1.0 } else { 0.0 });
        assert!(l.iter().any(|y| y.abs() > 1e-3) && l.iter().all(|y| y.is_finite()));
    }
}
