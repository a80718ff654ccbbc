//! Parameter descriptions and per-sample smoothing.
//!
//! A pedal describes its knobs with [`ParamSpec`]s. The GUI draws knobs from them, presets store values by
//! [`ParamSpec::id`], and MIDI maps a controller onto the normalised 0..1 range through [`ParamSpec::curve`].
//! Values travel in *plain* units (dB, ms, Hz) everywhere; normalisation is only for knobs and controllers.

use std::fmt;

/// Index of a parameter within its pedal's [`crate::PedalInfo::params`]. Stable for a pedal kind; presets
/// store the string id instead, so the index may change between versions without breaking files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ParamId(pub u16);

/// What a value means, for display and for sensible knob behaviour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    None,
    Decibels,
    Milliseconds,
    Hertz,
    Percent,
    /// A ratio such as 4:1.
    Ratio,
    /// A factor applied to something the pedal has (a room's decay times): ×0.5 … ×2.
    Multiplier,
    /// On/off switch: 0 or 1.
    Toggle,
    /// A note value for tempo sync: the value is an index into [`NOTE_DIVISIONS`] (use [`Curve::Stepped`]).
    NoteDivision,
}

/// The note values a tempo-synced time steps through, longest first: (label, length in beats, a beat being a
/// quarter note).
pub const NOTE_DIVISIONS: &[(&str, f32)] = &[
    ("4 bars", 16.0),
    ("2 bars", 8.0),
    ("1 bar", 4.0),
    ("1/2", 2.0),
    ("1/4.", 1.5),
    ("1/4", 1.0),
    ("1/8.", 0.75),
    ("1/8", 0.5),
    ("1/16", 0.25),
];

/// Length in beats of the note value at `index` in [`NOTE_DIVISIONS`] (clamped into the list).
pub fn division_beats(index: f32) -> f32 {
    NOTE_DIVISIONS[division_index(index)].1
}

fn division_index(value: f32) -> usize {
    let last = NOTE_DIVISIONS.len() - 1;
    if value.is_finite() { (value.round().max(0.0) as usize).min(last) } else { last }
}

impl Unit {
    pub fn suffix(self) -> &'static str {
        match self {
            Unit::None | Unit::Toggle | Unit::NoteDivision | Unit::Multiplier => "",
            Unit::Decibels => " dB",
            Unit::Milliseconds => " ms",
            Unit::Hertz => " Hz",
            Unit::Percent => " %",
            Unit::Ratio => ":1",
        }
    }
}

/// How a knob's travel maps onto the value range.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Curve {
    Linear,
    /// Equal knob travel multiplies the value by an equal factor (frequencies, times). Requires `min > 0`.
    Logarithmic,
    /// Skewed towards the low end: `value = min + (max - min) * t^exponent`.
    Power(f32),
    /// Integer steps from `min` to `max` (switches, selectors).
    Stepped,
}

/// Everything the GUI, presets and MIDI need to know about one parameter.
#[derive(Debug, Clone, PartialEq)]
pub struct ParamSpec {
    /// Stable identifier stored in presets, e.g. `"threshold_db"`.
    pub id: &'static str,
    /// Short display name, e.g. `"Threshold"`.
    pub name: &'static str,
    pub unit: Unit,
    pub min: f32,
    pub max: f32,
    pub default: f32,
    pub curve: Curve,
    /// Ramp time used when the value changes. Zero means the change applies at the next sample.
    pub smoothing_ms: f32,
}

/// Why a value cannot be applied to a parameter.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ParamValueError {
    #[error("value is not a finite number")]
    NotFinite,
    #[error("{value} is outside {min}..={max}")]
    OutOfRange { value: f32, min: f32, max: f32 },
}

impl ParamSpec {
    /// Default smoothing for continuous knobs: long enough to remove zipper noise, short enough to feel immediate.
    pub const DEFAULT_SMOOTHING_MS: f32 = 20.0;

    pub const fn new(id: &'static str, name: &'static str, unit: Unit, min: f32, max: f32, default: f32) -> Self {
        Self { id, name, unit, min, max, default, curve: Curve::Linear, smoothing_ms: Self::DEFAULT_SMOOTHING_MS }
    }

    pub const fn curve(mut self, curve: Curve) -> Self {
        self.curve = curve;
        self
    }

    pub const fn smoothing(mut self, ms: f32) -> Self {
        self.smoothing_ms = ms;
        self
    }

    /// An on/off switch parameter (no smoothing: the pedal crossfades itself if it needs to).
    pub const fn toggle(id: &'static str, name: &'static str, default: bool) -> Self {
        Self {
            id,
            name,
            unit: Unit::Toggle,
            min: 0.0,
            max: 1.0,
            default: if default { 1.0 } else { 0.0 },
            curve: Curve::Stepped,
            smoothing_ms: 0.0,
        }
    }

    /// Checks a value from a file or another untrusted source.
    pub fn validate(&self, value: f32) -> Result<f32, ParamValueError> {
        if !value.is_finite() {
            return Err(ParamValueError::NotFinite);
        }
        // A little tolerance so values written with rounding by another tool still load.
        let tolerance = (self.max - self.min).abs() * 1e-6;
        if value < self.min - tolerance || value > self.max + tolerance {
            return Err(ParamValueError::OutOfRange { value, min: self.min, max: self.max });
        }
        Ok(self.clamp(value))
    }

    /// Clamps into range; a non-finite value becomes the default. Used on the audio thread, so it cannot fail.
    pub fn clamp(&self, value: f32) -> f32 {
        if !value.is_finite() {
            return self.default;
        }
        let v = value.clamp(self.min, self.max);
        if self.curve == Curve::Stepped { v.round() } else { v }
    }

    /// Knob position (0..=1) for a value.
    pub fn to_normalized(&self, value: f32) -> f32 {
        let v = self.clamp(value);
        let span = self.max - self.min;
        if span <= 0.0 {
            return 0.0;
        }
        let t = match self.curve {
            Curve::Linear | Curve::Stepped => (v - self.min) / span,
            Curve::Logarithmic => (v / self.min).ln() / (self.max / self.min).ln(),
            Curve::Power(exponent) => ((v - self.min) / span).powf(1.0 / exponent),
        };
        t.clamp(0.0, 1.0)
    }

    /// Value for a knob position (0..=1).
    pub fn from_normalized(&self, t: f32) -> f32 {
        let t = if t.is_finite() { t.clamp(0.0, 1.0) } else { 0.0 };
        let v = match self.curve {
            Curve::Linear | Curve::Stepped => self.min + (self.max - self.min) * t,
            Curve::Logarithmic => self.min * (self.max / self.min).powf(t),
            Curve::Power(exponent) => self.min + (self.max - self.min) * t.powf(exponent),
        };
        self.clamp(v)
    }

    /// The value as a person reads it: "-12.0 dB", "350 ms", "On".
    pub fn format(&self, value: f32) -> String {
        FormattedValue { spec: self, value }.to_string()
    }
}

struct FormattedValue<'a> {
    spec: &'a ParamSpec,
    value: f32,
}

impl fmt::Display for FormattedValue<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let v = self.value;
        match self.spec.unit {
            Unit::Toggle => f.write_str(if v >= 0.5 { "On" } else { "Off" }),
            Unit::NoteDivision => f.write_str(NOTE_DIVISIONS[division_index(v)].0),
            Unit::Hertz if v >= 1000.0 => write!(f, "{:.2} kHz", v / 1000.0),
            Unit::Milliseconds if v >= 1000.0 => write!(f, "{:.2} s", v / 1000.0),
            Unit::Multiplier => write!(f, "×{v:.2}"),
            unit => {
                let precision = if self.spec.curve == Curve::Stepped || v.abs() >= 100.0 {
                    0
                } else if v.abs() >= 10.0 {
                    1
                } else {
                    2
                };
                write!(f, "{v:.precision$}{}", unit.suffix())
            }
        }
    }
}

/// A value that glides to its target in a straight line over a fixed time, one step per sample.
///
/// Linear rather than exponential so a ramp ends exactly on time and a parameter is settled when the GUI says so.
#[derive(Debug, Clone)]
pub struct Smoothed {
    current: f32,
    target: f32,
    step: f32,
    remaining: u32,
    ramp_samples: u32,
}

impl Smoothed {
    pub fn new(value: f32) -> Self {
        Self { current: value, target: value, step: 0.0, remaining: 0, ramp_samples: 0 }
    }

    /// Sets the ramp length from a time; call from `prepare`.
    pub fn set_ramp(&mut self, sample_rate: f32, ms: f32) {
        self.ramp_samples = (sample_rate * ms * 1e-3).round().max(0.0) as u32;
    }

    pub fn set_target(&mut self, target: f32) {
        if self.ramp_samples == 0 {
            self.set_immediate(target);
            return;
        }
        self.target = target;
        self.remaining = self.ramp_samples;
        self.step = (target - self.current) / self.ramp_samples as f32;
    }

    /// Jumps straight to a value (on load, or when nothing is playing).
    pub fn set_immediate(&mut self, value: f32) {
        self.current = value;
        self.target = value;
        self.remaining = 0;
        self.step = 0.0;
    }

    #[inline]
    pub fn next_value(&mut self) -> f32 {
        if self.remaining > 0 {
            self.remaining -= 1;
            self.current = if self.remaining == 0 { self.target } else { self.current + self.step };
        }
        self.current
    }

    /// Advances the ramp by `n` samples without producing values.
    pub fn skip(&mut self, n: usize) {
        let n = (n as u32).min(self.remaining);
        if n == 0 {
            return;
        }
        self.remaining -= n;
        self.current = if self.remaining == 0 { self.target } else { self.current + self.step * n as f32 };
    }

    pub fn is_smoothing(&self) -> bool {
        self.remaining > 0
    }

    pub fn current(&self) -> f32 {
        self.current
    }

    pub fn target(&self) -> f32 {
        self.target
    }

    /// Fills `out` with the next `out.len()` values; cheap when settled.
    pub fn fill(&mut self, out: &mut [f32]) {
        if self.remaining == 0 {
            out.fill(self.current);
        } else {
            for v in out {
                *v = self.next_value();
            }
        }
    }
}

/// Converts decibels to a linear gain factor.
#[inline]
pub fn db_to_gain(db: f32) -> f32 {
    10f32.powf(db * 0.05)
}

/// Converts a linear gain factor to decibels, with a floor so silence reads as a number.
#[inline]
pub fn gain_to_db(gain: f32) -> f32 {
    20.0 * gain.max(1e-10).log10()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalisation_round_trips_for_every_curve() {
        let specs = [
            ParamSpec::new("a", "A", Unit::Decibels, -60.0, 12.0, 0.0),
            ParamSpec::new("b", "B", Unit::Hertz, 20.0, 20000.0, 1000.0).curve(Curve::Logarithmic),
            ParamSpec::new("c", "C", Unit::Milliseconds, 0.0, 2000.0, 100.0).curve(Curve::Power(3.0)),
        ];
        for spec in &specs {
            for i in 0..=20 {
                let t = i as f32 / 20.0;
                let v = spec.from_normalized(t);
                assert!((spec.to_normalized(v) - t).abs() < 1e-4, "{} at {t}", spec.id);
            }
        }
        // A log curve puts 1 kHz near the middle of 20 Hz..20 kHz, as a player expects.
        assert!((specs[1].to_normalized(632.5) - 0.5).abs() < 0.01);
    }

    #[test]
    fn validation_rejects_nan_and_out_of_range_but_accepts_the_edges() {
        let spec = ParamSpec::new("t", "T", Unit::Decibels, -90.0, 0.0, -60.0);
        assert_eq!(spec.validate(f32::NAN), Err(ParamValueError::NotFinite));
        assert!(matches!(spec.validate(3.0), Err(ParamValueError::OutOfRange { .. })));
        assert_eq!(spec.validate(-90.0), Ok(-90.0));
        assert_eq!(spec.validate(0.0), Ok(0.0));
        assert_eq!(spec.clamp(f32::INFINITY), -60.0);
    }

    #[test]
    fn smoothing_reaches_the_target_exactly_on_time_without_overshoot() {
        let mut s = Smoothed::new(0.0);
        s.set_ramp(48_000.0, 1.0); // 48 samples
        s.set_target(1.0);
        let mut previous = 0.0;
        for i in 0..48 {
            let v = s.next_value();
            assert!(v >= previous && v <= 1.0, "sample {i}: {v}");
            previous = v;
        }
        assert_eq!(s.current(), 1.0);
        assert!(!s.is_smoothing());
    }

    #[test]
    fn values_format_with_units() {
        let hz = ParamSpec::new("f", "F", Unit::Hertz, 20.0, 20000.0, 1000.0);
        assert_eq!(hz.format(2500.0), "2.50 kHz");
        assert_eq!(ParamSpec::toggle("x", "X", true).format(1.0), "On");
        let db = ParamSpec::new("g", "G", Unit::Decibels, -60.0, 12.0, 0.0);
        assert_eq!(db.format(-12.0), "-12.0 dB");
    }
}
