//! Noise gate: silences hum and hiss between notes, the gate players put before a high-gain amp.
//!
//! A peak envelope follower drives a four-state machine (closed → open → hold → release). The gate opens when the
//! envelope rises above the threshold and only starts closing when it falls below *threshold − hysteresis*, so a
//! note decaying around the threshold does not chatter. The gain moves in a straight line in decibels — the
//! whole range in the attack or release time — which sounds like a natural fade, and costs one multiply per sample.

use crate::param::{Curve, ParamId, ParamSpec, Unit, db_to_gain};
use crate::pedal::{Channels, Pedal, PedalInfo};

pub const KIND: &str = "gate";

const THRESHOLD: ParamId = ParamId(0);
const HYSTERESIS: ParamId = ParamId(1);
const ATTACK: ParamId = ParamId(2);
const HOLD: ParamId = ParamId(3);
const RELEASE: ParamId = ParamId(4);
const RANGE: ParamId = ParamId(5);

/// Decay time constant of the envelope follower: long enough to ride over the gaps between the peaks of a low E
/// (82 Hz, 12 ms period) with less ripple than the default hysteresis, short enough to notice a note has ended.
const DETECTOR_DECAY_MS: f32 = 20.0;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Closed,
    Open,
    Holding,
    Releasing,
}

pub struct Gate {
    info: PedalInfo,
    sample_rate: f32,
    // Settings in plain units, as last set.
    threshold_db: f32,
    hysteresis_db: f32,
    attack_ms: f32,
    hold_ms: f32,
    release_ms: f32,
    range_db: f32,
    // Derived per-sample coefficients.
    open_level: f32,
    close_level: f32,
    floor: f32,
    attack_step: f32,
    release_step: f32,
    hold_samples: u32,
    detector_decay: f32,
    // Signal state.
    state: State,
    envelope: f32,
    gain: f32,
    hold_left: u32,
}

impl Gate {
    pub fn params() -> Vec<ParamSpec> {
        vec![
            ParamSpec::new("threshold_db", "Threshold", Unit::Decibels, -100.0, 0.0, -60.0).smoothing(0.0),
            ParamSpec::new("hysteresis_db", "Hysteresis", Unit::Decibels, 0.0, 20.0, 6.0).smoothing(0.0),
            ParamSpec::new("attack_ms", "Attack", Unit::Milliseconds, 0.1, 50.0, 1.0)
                .curve(Curve::Logarithmic)
                .smoothing(0.0),
            ParamSpec::new("hold_ms", "Hold", Unit::Milliseconds, 0.0, 500.0, 50.0)
                .curve(Curve::Power(2.0))
                .smoothing(0.0),
            ParamSpec::new("release_ms", "Release", Unit::Milliseconds, 5.0, 2000.0, 150.0)
                .curve(Curve::Logarithmic)
                .smoothing(0.0),
            ParamSpec::new("range_db", "Range", Unit::Decibels, -100.0, 0.0, -90.0).smoothing(0.0),
        ]
    }

    pub fn new() -> Self {
        let params = Self::params();
        let mut gate = Self {
            threshold_db: params[0].default,
            hysteresis_db: params[1].default,
            attack_ms: params[2].default,
            hold_ms: params[3].default,
            release_ms: params[4].default,
            range_db: params[5].default,
            info: PedalInfo {
                pad: None,
                kind: KIND.into(),
                name: "Noise Gate".into(),
                params,
                channels: Channels::StereoCapable,
                model: None,
            },
            sample_rate: 48_000.0,
            open_level: 0.0,
            close_level: 0.0,
            floor: 0.0,
            attack_step: 1.0,
            release_step: 1.0,
            hold_samples: 0,
            detector_decay: 0.0,
            state: State::Closed,
            envelope: 0.0,
            gain: 0.0,
            hold_left: 0,
        };
        gate.update_coefficients();
        gate.gain = gate.floor;
        gate
    }

    /// Whether the gate is currently letting sound through (for an LED).
    pub fn is_open(&self) -> bool {
        matches!(self.state, State::Open | State::Holding)
    }

    fn update_coefficients(&mut self) {
        let sr = self.sample_rate;
        self.open_level = db_to_gain(self.threshold_db);
        self.close_level = db_to_gain(self.threshold_db - self.hysteresis_db);
        self.floor = db_to_gain(self.range_db);
        // Per-sample gain factor that crosses the whole range (in dB) in the given time.
        let range = -self.range_db.min(-1e-3);
        let per_sample = |ms: f32| db_to_gain(range / (ms * 1e-3 * sr).max(1.0));
        self.attack_step = per_sample(self.attack_ms);
        self.release_step = 1.0 / per_sample(self.release_ms);
        self.hold_samples = (self.hold_ms * 1e-3 * sr) as u32;
        self.detector_decay = (-1.0 / (DETECTOR_DECAY_MS * 1e-3 * sr)).exp();
        self.gain = self.gain.clamp(self.floor, 1.0);
    }

    /// Advances the detector and state machine by one sample of sidechain level; returns the gain to apply.
    #[inline]
    fn tick(&mut self, level: f32) -> f32 {
        self.envelope = if level > self.envelope { level } else { self.envelope * self.detector_decay };
        let env = self.envelope;
        self.state = match self.state {
            State::Closed | State::Releasing if env > self.open_level => State::Open,
            State::Open if env < self.close_level => {
                self.hold_left = self.hold_samples;
                State::Holding
            }
            State::Holding if env >= self.close_level => State::Open,
            State::Holding if self.hold_left == 0 => State::Releasing,
            State::Holding => {
                self.hold_left -= 1;
                State::Holding
            }
            State::Releasing if self.gain <= self.floor => State::Closed,
            state => state,
        };
        self.gain = match self.state {
            State::Open | State::Holding => (self.gain * self.attack_step).min(1.0),
            State::Releasing | State::Closed => (self.gain * self.release_step).max(self.floor),
        };
        self.gain
    }
}

impl Default for Gate {
    fn default() -> Self {
        Self::new()
    }
}

impl Pedal for Gate {
    fn info(&self) -> &PedalInfo {
        &self.info
    }

    fn prepare(&mut self, sample_rate: f32, _max_block: usize) {
        self.sample_rate = sample_rate;
        self.update_coefficients();
    }

    fn set_param(&mut self, id: ParamId, value: f32) {
        let Some(spec) = self.info.param(id) else { return };
        let value = spec.clamp(value);
        match id {
            THRESHOLD => self.threshold_db = value,
            HYSTERESIS => self.hysteresis_db = value,
            ATTACK => self.attack_ms = value,
            HOLD => self.hold_ms = value,
            RELEASE => self.release_ms = value,
            RANGE => self.range_db = value,
            _ => return,
        }
        self.update_coefficients();
    }

    fn process(&mut self, block: &mut [f32]) {
        for x in block {
            *x *= self.tick(x.abs());
        }
    }

    fn process_stereo(&mut self, left: &mut [f32], right: &mut [f32]) {
        // Linked: one detector on the louder channel, the same gain on both, so the image does not wander.
        for (l, r) in left.iter_mut().zip(right.iter_mut()) {
            let g = self.tick(l.abs().max(r.abs()));
            *l *= g;
            *r *= g;
        }
    }

    fn reset(&mut self) {
        self.state = State::Closed;
        self.envelope = 0.0;
        self.gain = self.floor;
        self.hold_left = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::param::gain_to_db;

    const SR: f32 = 48_000.0;

    fn gate() -> Gate {
        let mut g = Gate::new();
        g.prepare(SR, 256);
        g
    }

    fn sine(amplitude_db: f32, seconds: f32) -> Vec<f32> {
        let a = db_to_gain(amplitude_db);
        (0..(seconds * SR) as usize).map(|i| a * (std::f32::consts::TAU * 110.0 * i as f32 / SR).sin()).collect()
    }

    fn peak(block: &[f32]) -> f32 {
        block.iter().fold(0.0f32, |m, x| m.max(x.abs()))
    }

    #[test]
    fn a_note_above_the_threshold_passes_untouched_after_the_attack() {
        let mut g = gate();
        let mut note = sine(-20.0, 0.5);
        let reference = note.clone();
        g.process(&mut note);
        let start = (0.01 * SR) as usize; // well after the 1 ms attack
        for (out, dry) in note[start..].iter().zip(&reference[start..]) {
            assert!((out - dry).abs() < 1e-6);
        }
    }

    #[test]
    fn hiss_below_the_threshold_is_attenuated_by_the_range() {
        let mut g = gate();
        let mut hiss = sine(-70.0, 0.5);
        g.process(&mut hiss);
        let tail = &hiss[(0.25 * SR) as usize..];
        assert!(gain_to_db(peak(tail)) < -70.0 - 85.0, "{} dB", gain_to_db(peak(tail)));
    }

    #[test]
    fn hysteresis_keeps_a_decaying_note_open_between_the_two_thresholds() {
        let mut g = gate();
        g.set_param(THRESHOLD, -40.0);
        g.set_param(HYSTERESIS, 10.0);
        // Open with a loud note, then sit at -45 dB: below the opening threshold, above the closing one.
        g.process(&mut sine(-20.0, 0.1));
        let mut quiet = sine(-45.0, 0.5);
        let reference = quiet.clone();
        g.process(&mut quiet);
        assert!((peak(&quiet) - peak(&reference)).abs() < 1e-6, "gate closed on a note inside the hysteresis band");
        // From closed, the same level does not open it.
        let mut g = gate();
        g.set_param(THRESHOLD, -40.0);
        g.set_param(HYSTERESIS, 10.0);
        let mut quiet = sine(-45.0, 0.5);
        g.process(&mut quiet);
        assert!(peak(&quiet[(0.1 * SR) as usize..]) < 1e-4);
    }

    #[test]
    fn after_a_note_the_gate_holds_then_fades_over_the_release_time() {
        let mut g = gate();
        g.set_param(HOLD, 100.0);
        g.set_param(RELEASE, 200.0);
        g.process(&mut sine(-20.0, 0.2));
        // Feed a steady -80 dB tone (below the close threshold) and watch the gain.
        let mut tail = sine(-80.0, 1.0);
        let level = db_to_gain(-80.0);
        g.process(&mut tail);
        let window = |ms: f32| {
            let i = (ms * 1e-3 * SR) as usize;
            peak(&tail[i..i + 480]) / level
        };
        // The detector needs a few tens of ms to fall below the close threshold, then 100 ms hold.
        assert!(window(80.0) > 0.99, "still open during hold: {}", window(80.0));
        let mid = gain_to_db(window(300.0));
        assert!(mid < -5.0 && mid > -85.0, "fading during release: {mid} dB");
        assert!(gain_to_db(window(600.0)) < -85.0, "closed after release");
        assert!(!g.is_open());
    }
}
