//! The [`Pedal`] trait every effect implements, and the description it gives of itself.

use std::sync::Arc;

use crate::param::{ParamId, ParamSpec};

/// How a pedal treats channels.
///
/// A guitar is mono and the neural amp is the costliest pedal, so the chain runs mono until the first pedal that
/// makes stereo; from there on it carries two channels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Channels {
    /// Processes one channel. After the stereo point the chain calls [`Pedal::process_stereo`], whose default sums
    /// to mono first — exactly what a mono pedal placed after a stereo one does on a real pedalboard.
    Mono,
    /// Processes each channel (or both linked) and keeps stereo as stereo; takes mono in as mono.
    StereoCapable,
    /// Turns mono into stereo (reverb, stereo spread): from this pedal on the chain is stereo.
    MakesStereo,
}

/// Facts about a loaded model, shown by the GUI (gear, rate, architecture).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ModelInfo {
    pub name: String,
    pub architecture: String,
    pub sample_rate: Option<f32>,
    pub parameters: usize,
    /// Free-form facts from the file (gear make/model, author, loudness...), in display order.
    pub details: Vec<(String, String)>,
}

/// A pedal's description of itself: what the GUI draws, what presets store.
#[derive(Debug, Clone, PartialEq)]
pub struct PedalInfo {
    /// Registry key, stored in presets (`"gate"`, `"amp"`). Never shown.
    pub kind: String,
    /// Display name ("Noise Gate").
    pub name: String,
    pub params: Vec<ParamSpec>,
    pub channels: Channels,
    pub model: Option<ModelInfo>,
    /// Two of `params` the GUI draws as one XY pad instead of two knobs.
    pub pad: Option<PadInfo>,
}

/// Two parameters (both 0–100 %) drawn as one XY pad, over a map of what lies where: the reverb's room space.
#[derive(Debug, Clone, PartialEq)]
pub struct PadInfo {
    pub x: ParamId,
    pub y: ParamId,
    /// Shared with the model, so cloning the pedal's description stays cheap.
    pub map: Option<Arc<PadMap>>,
}

/// What the pad's positions sound like, in pad coordinates (0–1 on each axis, y up).
#[derive(Debug, Clone, PartialEq)]
pub struct PadMap {
    /// `columns × rows` samples of the map, row by row from the bottom, at evenly spaced positions from 0 to 1
    /// (none: the map has only its rooms).
    pub columns: usize,
    pub rows: usize,
    /// Mid-band decay time (T30, seconds) at each sample; `None` where it could not be measured.
    pub decay_s: Vec<Option<f32>>,
    /// Room volume (m³) at each sample.
    pub volume_m3: Vec<f32>,
    /// The rooms the model learnt from, where they lie.
    pub rooms: Vec<PadRoom>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PadRoom {
    pub x: f32,
    pub y: f32,
    pub decay_s: Option<f32>,
    pub volume_m3: f32,
}

impl PadMap {
    /// Decay time and volume at a pad position, interpolated between the four nearest samples (geometrically:
    /// decay times and volumes spread over decades). The decay is `None` if any of them that counts is
    /// unmeasured.
    pub fn at(&self, x: f32, y: f32) -> (Option<f32>, f32) {
        if self.columns < 2 || self.rows < 2 {
            return (None, 0.0);
        }
        let locate = |t: f32, n: usize| {
            let f = t.clamp(0.0, 1.0) * (n.max(2) - 1) as f32;
            let i = (f.floor() as usize).min(n.saturating_sub(2));
            (i, (f - i as f32).clamp(0.0, 1.0))
        };
        let (i, fx) = locate(x, self.columns);
        let (j, fy) = locate(y, self.rows);
        let index =
            |di: usize, dj: usize| ((j + dj).min(self.rows - 1)) * self.columns + (i + di).min(self.columns - 1);
        let corners =
            [(0, 0, (1.0 - fx) * (1.0 - fy)), (1, 0, fx * (1.0 - fy)), (0, 1, (1.0 - fx) * fy), (1, 1, fx * fy)];
        let blend = |value: &dyn Fn(usize) -> Option<f32>| -> Option<f32> {
            let mut log_sum = 0.0;
            for &(di, dj, w) in corners.iter().filter(|c| c.2 > 0.0) {
                log_sum += w * value(index(di, dj))?.max(1e-6).ln();
            }
            Some(log_sum.exp())
        };
        let decay = blend(&|k| self.decay_s.get(k).copied().flatten());
        let volume = blend(&|k| self.volume_m3.get(k).copied()).unwrap_or(0.0);
        (decay, volume)
    }
}

impl PedalInfo {
    pub fn param_id(&self, id: &str) -> Option<ParamId> {
        self.params.iter().position(|p| p.id == id).map(|i| ParamId(i as u16))
    }

    pub fn param(&self, id: ParamId) -> Option<&ParamSpec> {
        self.params.get(id.0 as usize)
    }
}

/// One effect in the chain.
///
/// Everything that allocates happens in the constructor and [`Pedal::prepare`], both called off the audio thread.
/// [`Pedal::set_param`], [`Pedal::process`] and [`Pedal::reset`] run on the audio thread: no allocation, no locks,
/// no I/O, bounded work.
pub trait Pedal: Send {
    fn info(&self) -> &PedalInfo;

    /// Sizes internal buffers for the sample rate and the largest block `process` will see. Allocates.
    fn prepare(&mut self, sample_rate: f32, max_block: usize);

    /// Sets a parameter in plain units (already range-checked); the pedal smooths it. Unknown ids are ignored.
    fn set_param(&mut self, id: ParamId, value: f32);

    /// Processes one mono block in place. `block.len()` never exceeds the prepared `max_block`.
    fn process(&mut self, block: &mut [f32]);

    /// Processes a stereo block in place. Pedals that are not [`Channels::Mono`] must override this.
    fn process_stereo(&mut self, left: &mut [f32], right: &mut [f32]) {
        for (l, r) in left.iter_mut().zip(right.iter()) {
            *l = 0.5 * (*l + *r);
        }
        self.process(left);
        right.copy_from_slice(left);
    }

    /// Finishes now any work the pedal would otherwise do in the background for its current settings (the
    /// reverb's room), so a pedal built from a preset plays those settings from its first sample, live and in an
    /// offline render alike. Called off the audio thread once the preset's parameters are set: may allocate, block
    /// and take milliseconds.
    fn settle(&mut self) {}

    /// Clears all signal state (filters, envelopes, recurrent state) without touching parameters.
    /// Called after a NaN/Inf and when the transport restarts.
    fn reset(&mut self);

    /// Latency in samples that this pedal adds.
    fn latency(&self) -> usize {
        0
    }

    /// Gain reduction (dB, ≥ 0) a dynamics pedal is applying now, for its meter; `None` for pedals without one.
    /// Read by the audio thread after each block: cheap, no allocation.
    fn gain_reduction_db(&self) -> Option<f32> {
        None
    }
}
