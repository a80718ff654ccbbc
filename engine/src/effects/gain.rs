//! Volume / clean boost: a gain in dB, smoothed per sample. The simplest pedal, and the one players put first or
//! last to level a chain.

use crate::param::{ParamId, ParamSpec, Smoothed, Unit, db_to_gain};
use crate::pedal::{Channels, Pedal, PedalInfo};

pub const KIND: &str = "gain";
const GAIN: ParamId = ParamId(0);

pub struct Gain {
    info: PedalInfo,
    gain: Smoothed,
}

impl Gain {
    pub fn params() -> Vec<ParamSpec> {
        vec![ParamSpec::new("gain_db", "Gain", Unit::Decibels, -40.0, 24.0, 0.0)]
    }

    pub fn new() -> Self {
        let info = PedalInfo {
            pad: None,
            kind: KIND.into(),
            name: "Volume".into(),
            params: Self::params(),
            channels: Channels::StereoCapable,
            model: None,
        };
        Self { info, gain: Smoothed::new(1.0) }
    }
}

impl Default for Gain {
    fn default() -> Self {
        Self::new()
    }
}

impl Pedal for Gain {
    fn info(&self) -> &PedalInfo {
        &self.info
    }

    fn prepare(&mut self, sample_rate: f32, _max_block: usize) {
        self.gain.set_ramp(sample_rate, self.info.params[0].smoothing_ms);
    }

    fn set_param(&mut self, id: ParamId, value: f32) {
        if id == GAIN {
            self.gain.set_target(db_to_gain(self.info.params[0].clamp(value)));
        }
    }

    fn process(&mut self, block: &mut [f32]) {
        if self.gain.is_smoothing() {
            for x in block {
                *x *= self.gain.next_value();
            }
        } else {
            let g = self.gain.current();
            block.iter_mut().for_each(|x| *x *= g);
        }
    }

    fn process_stereo(&mut self, left: &mut [f32], right: &mut [f32]) {
        for (l, r) in left.iter_mut().zip(right.iter_mut()) {
            let g = self.gain.next_value();
            *l *= g;
            *r *= g;
        }
    }

    fn reset(&mut self) {
        let target = self.gain.target();
        self.gain.set_immediate(target);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gain_applies_the_set_decibels_after_the_ramp() {
        let mut g = Gain::new();
        g.prepare(48_000.0, 512);
        g.set_param(GAIN, -6.0);
        let mut block = vec![1.0f32; 2048];
        g.process(&mut block);
        assert!((block[2047] - 0.501_187).abs() < 1e-4);
        // The ramp is monotonic: no zipper steps back and forth.
        assert!(block.windows(2).all(|w| w[1] <= w[0] + 1e-7));
    }
}
