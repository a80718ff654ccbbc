//! One guitar string as a digital waveguide (extended Karplus–Strong).
//!
//! A delay line one period long, closed by a loss filter, models the travelling wave on the string. Around it:
//! the pluck (a one-period burst shaped by the picking dynamics and comb-filtered by the pick position), the
//! pickup (a second comb: a pickup sees the string's motion at its own position), and pitch changes for bends
//! and vibrato, read with a cubic Lagrange fractional delay so the pitch glides without zipper noise.

use super::rng::Rng;

/// Lowest fundamental a string can play (a drop-tuned low string); sizes the delay line.
const LOWEST_HZ: f32 = 25.0;
/// How quickly a fretting hand lifting off a note damps the string (seconds to -60 dB).
const RELEASE_T60_S: f32 = 0.04;

/// How a note is played.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Pluck {
    pub frequency_hz: f32,
    /// 0..1: pianissimo to fortissimo. Sets level and brightness of the attack.
    pub velocity: f32,
    /// Pick position as a fraction of the string length from the bridge (0.05..0.35).
    pub pick_position: f32,
    /// Time for the fundamental to decay by 60 dB.
    pub t60_s: f32,
    /// 0..1: how much the loop filter dulls the sound over time (palm mutes are high).
    pub damping: f32,
}

/// A pitch change over a note's life, in semitones.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct PitchMotion {
    /// Bend: from `bend_start_s` after the pluck, glide to `bend_semitones` over `bend_time_s`.
    pub bend_semitones: f32,
    pub bend_start_s: f32,
    pub bend_time_s: f32,
    /// Vibrato depth (semitones, peak) and rate, starting after `vibrato_start_s`.
    pub vibrato_semitones: f32,
    pub vibrato_hz: f32,
    pub vibrato_start_s: f32,
}

impl PitchMotion {
    fn semitones_at(&self, t: f32) -> f32 {
        let mut st = 0.0;
        if self.bend_semitones != 0.0 && t > self.bend_start_s {
            let x = ((t - self.bend_start_s) / self.bend_time_s.max(1e-3)).min(1.0);
            st += self.bend_semitones * x * x * (3.0 - 2.0 * x); // smoothstep: fingers accelerate then settle
        }
        if self.vibrato_semitones != 0.0 && t > self.vibrato_start_s {
            let age = t - self.vibrato_start_s;
            let fade_in = (age / 0.25).min(1.0);
            st += self.vibrato_semitones * fade_in * (std::f32::consts::TAU * self.vibrato_hz * age).sin();
        }
        st
    }
}

pub struct GuitarString {
    sample_rate: f32,
    line: Vec<f32>,
    write: usize,
    /// Output history, for the pickup-position comb.
    history: Vec<f32>,
    history_write: usize,
    excitation: Vec<f32>,
    excitation_pos: usize,
    base_period: f32,
    pickup_position: f32,
    loop_gain: f32,
    brightness: f32,
    loss_state: f32,
    motion: PitchMotion,
    age_s: f32,
    releasing: bool,
    release_gain: f32,
}

impl GuitarString {
    pub fn new(sample_rate: f32, pickup_position: f32) -> Self {
        let capacity = (sample_rate / LOWEST_HZ) as usize + 8;
        Self {
            sample_rate,
            line: vec![0.0; capacity],
            write: 0,
            history: vec![0.0; capacity],
            history_write: 0,
            excitation: Vec::with_capacity(capacity),
            excitation_pos: 0,
            base_period: sample_rate / 110.0,
            pickup_position: pickup_position.clamp(0.05, 0.45),
            loop_gain: 0.0,
            brightness: 0.5,
            loss_state: 0.0,
            motion: PitchMotion::default(),
            age_s: 0.0,
            releasing: false,
            release_gain: 1.0,
        }
    }

    /// Plucks the string (any ringing note is replaced, as on a real string).
    pub fn pluck(&mut self, pluck: Pluck, motion: PitchMotion, rng: &mut Rng) {
        let f = pluck.frequency_hz.clamp(LOWEST_HZ * 1.05, self.sample_rate / 4.0);
        self.base_period = self.sample_rate / f;
        self.motion = motion;
        self.age_s = 0.0;
        self.releasing = false;
        self.release_gain = 1.0;
        // The loop filter y = (1-b)·x + b·x[-1] loses high partials each trip; b comes from the damping.
        self.brightness = 0.15 + 0.35 * pluck.damping.clamp(0.0, 1.0);
        let period_s = 1.0 / f;
        self.loop_gain = 10f32.powf(-3.0 * period_s / pluck.t60_s.max(0.01));

        // Excitation: one period of noise, low-passed more for soft picking, comb-filtered by the pick position.
        let n = self.base_period.round().max(2.0) as usize;
        let v = pluck.velocity.clamp(0.0, 1.0);
        let lowpass = 0.9 - 0.5 * v; // soft attacks are darker
        let mut state = 0.0f32;
        self.excitation.clear();
        let mut raw = Vec::with_capacity(n);
        for _ in 0..n {
            state = (1.0 - lowpass) * rng.uniform(-1.0, 1.0) + lowpass * state;
            raw.push(state);
        }
        let mean = raw.iter().sum::<f32>() / n as f32;
        let pick = ((pluck.pick_position.clamp(0.03, 0.5) * n as f32).round() as usize).max(1);
        let level = 10f32.powf((v - 1.0) * 30.0 / 20.0); // 30 dB of dynamic range from pp to ff
        for i in 0..n {
            let x = raw[i] - mean;
            let delayed = if i >= pick { raw[i - pick] - mean } else { 0.0 };
            self.excitation.push((x - delayed) * level);
        }
        self.excitation_pos = 0;
    }

    /// Lifts the fretting finger: the note dies quickly.
    pub fn release(&mut self) {
        self.releasing = true;
    }

    pub fn is_silent(&self) -> bool {
        self.loop_gain == 0.0 || self.release_gain < 1e-4
    }

    #[inline]
    fn read(buffer: &[f32], write: usize, delay: f32) -> f32 {
        // Cubic Lagrange interpolation at `delay` samples behind the write position.
        let len = buffer.len();
        let d = delay.clamp(1.0, (len - 3) as f32);
        let i = d.floor() as usize;
        let frac = d - i as f32;
        let at = |k: usize| buffer[(write + len * 2 - k) % len];
        let (y0, y1, y2, y3) = (at(i - 1), at(i), at(i + 1), at(i + 2));
        let f = frac;
        let c0 = -f * (f - 1.0) * (f - 2.0) / 6.0;
        let c1 = (f + 1.0) * (f - 1.0) * (f - 2.0) / 2.0;
        let c2 = -(f + 1.0) * f * (f - 2.0) / 2.0;
        let c3 = (f + 1.0) * f * (f - 1.0) / 6.0;
        c0 * y0 + c1 * y1 + c2 * y2 + c3 * y3
    }

    /// Next output sample (string velocity at the pickup).
    pub fn tick(&mut self) -> f32 {
        if self.loop_gain == 0.0 {
            return 0.0;
        }
        let dt = 1.0 / self.sample_rate;
        self.age_s += dt;
        let semitones = self.motion.semitones_at(self.age_s);
        let period = self.base_period * 2f32.powf(-semitones / 12.0);
        // The loop is the read delay plus one sample (the read happens before this sample is written) plus the loss
        // filter's phase delay of about `brightness` samples: take both out so the pitch is right.
        let delay = period - self.brightness - 1.0;

        let from_line = Self::read(&self.line, self.write, delay);
        let filtered = (1.0 - self.brightness) * from_line + self.brightness * self.loss_state;
        self.loss_state = from_line;
        if self.releasing {
            self.release_gain *= 10f32.powf(-3.0 * dt / RELEASE_T60_S);
        }
        let mut y = filtered * self.loop_gain;
        if self.excitation_pos < self.excitation.len() {
            y += self.excitation[self.excitation_pos];
            self.excitation_pos += 1;
        }
        let len = self.line.len();
        self.write = (self.write + 1) % len;
        self.line[self.write] = y;

        // Pickup: the string's motion at the pickup position is the travelling waves' difference there.
        let hlen = self.history.len();
        self.history_write = (self.history_write + 1) % hlen;
        self.history[self.history_write] = y;
        let out = y - Self::read(&self.history, self.history_write, (self.pickup_position * period).max(1.0));
        if self.is_silent() {
            self.loop_gain = 0.0;
            self.line.fill(0.0);
            self.history.fill(0.0);
        }
        out * self.release_gain
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dsp::tuner::Tuner;

    fn render(string: &mut GuitarString, seconds: f32) -> Vec<f32> {
        (0..(seconds * 48_000.0) as usize).map(|_| string.tick()).collect()
    }

    /// Feeds the tuner the way the engine does, in audio-callback-sized blocks.
    fn pitch_of(audio: &[f32]) -> Option<crate::dsp::tuner::TunerReading> {
        let mut tuner = Tuner::new(48_000.0);
        audio.chunks(256).for_each(|block| tuner.push(block));
        tuner.reading()
    }

    fn pluck(f: f32) -> Pluck {
        Pluck { frequency_hz: f, velocity: 0.8, pick_position: 0.15, t60_s: 3.0, damping: 0.3 }
    }

    #[test]
    fn a_plucked_string_sounds_at_its_pitch() {
        for (f, note) in [(82.41, 40u8), (110.0, 45), (196.0, 55), (329.63, 64), (659.26, 76)] {
            let mut s = GuitarString::new(48_000.0, 0.2);
            s.pluck(pluck(f), PitchMotion::default(), &mut Rng::new(1));
            let audio = render(&mut s, 1.0);
            let reading = pitch_of(&audio).expect("a pitch");
            assert_eq!(reading.note, note, "{f} Hz read as {reading:?}");
            assert!(reading.cents.abs() < 2.0, "{f} Hz is {} cents off", reading.cents);
        }
    }

    #[test]
    fn a_note_decays_by_about_its_t60() {
        let mut s = GuitarString::new(48_000.0, 0.2);
        s.pluck(Pluck { t60_s: 1.0, ..pluck(110.0) }, PitchMotion::default(), &mut Rng::new(2));
        let audio = render(&mut s, 1.5);
        let rms = |a: &[f32]| (a.iter().map(|x| x * x).sum::<f32>() / a.len() as f32).sqrt();
        let early = rms(&audio[4800..9600]);
        let late = rms(&audio[52_800..57_600]); // one second later
        let drop_db = 20.0 * (early / late).log10();
        // The fundamental loses 60 dB per t60; the upper partials decay faster still.
        assert!(drop_db > 45.0 && drop_db < 110.0, "dropped {drop_db:.1} dB in 1 s");
    }

    #[test]
    fn a_bend_raises_the_pitch_by_the_bend_amount() {
        let mut s = GuitarString::new(48_000.0, 0.2);
        let motion = PitchMotion { bend_semitones: 2.0, bend_start_s: 0.05, bend_time_s: 0.1, ..Default::default() };
        s.pluck(pluck(220.0), motion, &mut Rng::new(3));
        let audio = render(&mut s, 0.8);
        let reading = pitch_of(&audio).expect("a pitch");
        assert_eq!(reading.note, 59, "A3 bent up a tone is B3: {reading:?}");
    }

    #[test]
    fn releasing_a_note_silences_it_quickly() {
        let mut s = GuitarString::new(48_000.0, 0.2);
        s.pluck(pluck(110.0), PitchMotion::default(), &mut Rng::new(4));
        render(&mut s, 0.2);
        s.release();
        let tail = render(&mut s, 0.3);
        let peak = tail[9600..].iter().fold(0.0f32, |m, x| m.max(x.abs()));
        assert!(peak < 1e-3, "still ringing at {peak}");
    }
}
