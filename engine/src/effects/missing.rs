//! Stand-in for a pedal that could not be built (unknown kind, missing model file). It keeps the slot's place in
//! the chain so nothing the player had is lost when the preset is saved again, and passes the signal through.

use crate::param::ParamId;
use crate::pedal::{Channels, Pedal, PedalInfo};

pub struct Missing {
    info: PedalInfo,
}

impl Missing {
    /// `kind` is the kind the preset asked for; it is kept so the slot saves back unchanged.
    pub fn new(kind: &str) -> Self {
        Self {
            info: PedalInfo {
                pad: None,
                kind: kind.to_owned(),
                name: format!("{kind} (missing)"),
                params: Vec::new(),
                channels: Channels::StereoCapable,
                model: None,
            },
        }
    }
}

impl Pedal for Missing {
    fn info(&self) -> &PedalInfo {
        &self.info
    }
    fn prepare(&mut self, _sample_rate: f32, _max_block: usize) {}
    fn set_param(&mut self, _id: ParamId, _value: f32) {}
    fn process(&mut self, _block: &mut [f32]) {}
    fn process_stereo(&mut self, _left: &mut [f32], _right: &mut [f32]) {}
    fn reset(&mut self) {}
}
