//! The [`Pedal`] trait every effect implements, and the description it gives of itself.

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
