//! Second-order IIR filters (RBJ "Audio EQ Cookbook" designs), transposed direct form II.

use std::f32::consts::PI;

/// Normalised biquad coefficients (a0 = 1).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Coefficients {
    pub b0: f32,
    pub b1: f32,
    pub b2: f32,
    pub a1: f32,
    pub a2: f32,
}

impl Coefficients {
    pub const IDENTITY: Self = Self { b0: 1.0, b1: 0.0, b2: 0.0, a1: 0.0, a2: 0.0 };

    fn normalised(b0: f32, b1: f32, b2: f32, a0: f32, a1: f32, a2: f32) -> Self {
        Self { b0: b0 / a0, b1: b1 / a0, b2: b2 / a0, a1: a1 / a0, a2: a2 / a0 }
    }

    fn omega(sample_rate: f32, frequency: f32) -> (f32, f32) {
        let w = 2.0 * PI * (frequency / sample_rate).clamp(1e-5, 0.49);
        (w.cos(), w.sin())
    }

    pub fn lowpass(sample_rate: f32, frequency: f32, q: f32) -> Self {
        let (cos, sin) = Self::omega(sample_rate, frequency);
        let alpha = sin / (2.0 * q);
        Self::normalised((1.0 - cos) / 2.0, 1.0 - cos, (1.0 - cos) / 2.0, 1.0 + alpha, -2.0 * cos, 1.0 - alpha)
    }

    pub fn highpass(sample_rate: f32, frequency: f32, q: f32) -> Self {
        let (cos, sin) = Self::omega(sample_rate, frequency);
        let alpha = sin / (2.0 * q);
        Self::normalised((1.0 + cos) / 2.0, -(1.0 + cos), (1.0 + cos) / 2.0, 1.0 + alpha, -2.0 * cos, 1.0 - alpha)
    }

    /// Bell boost or cut of `gain_db` around `frequency`.
    pub fn peaking(sample_rate: f32, frequency: f32, q: f32, gain_db: f32) -> Self {
        let (cos, sin) = Self::omega(sample_rate, frequency);
        let a = 10f32.powf(gain_db / 40.0);
        let alpha = sin / (2.0 * q);
        Self::normalised(1.0 + alpha * a, -2.0 * cos, 1.0 - alpha * a, 1.0 + alpha / a, -2.0 * cos, 1.0 - alpha / a)
    }

    /// Shelf raising (or, with a negative `gain_db`, lowering) everything below `frequency` (shelf slope 1).
    pub fn low_shelf(sample_rate: f32, frequency: f32, gain_db: f32) -> Self {
        let (cos, sin) = Self::omega(sample_rate, frequency);
        let a = 10f32.powf(gain_db / 40.0);
        let k = 2.0 * a.sqrt() * sin / std::f32::consts::SQRT_2;
        Self::normalised(
            a * ((a + 1.0) - (a - 1.0) * cos + k),
            2.0 * a * ((a - 1.0) - (a + 1.0) * cos),
            a * ((a + 1.0) - (a - 1.0) * cos - k),
            (a + 1.0) + (a - 1.0) * cos + k,
            -2.0 * ((a - 1.0) + (a + 1.0) * cos),
            (a + 1.0) + (a - 1.0) * cos - k,
        )
    }

    /// Shelf raising (or lowering) everything above `frequency` (shelf slope 1).
    pub fn high_shelf(sample_rate: f32, frequency: f32, gain_db: f32) -> Self {
        let (cos, sin) = Self::omega(sample_rate, frequency);
        let a = 10f32.powf(gain_db / 40.0);
        let k = 2.0 * a.sqrt() * sin / std::f32::consts::SQRT_2;
        Self::normalised(
            a * ((a + 1.0) + (a - 1.0) * cos + k),
            -2.0 * a * ((a - 1.0) + (a + 1.0) * cos),
            a * ((a + 1.0) + (a - 1.0) * cos - k),
            (a + 1.0) - (a - 1.0) * cos + k,
            2.0 * ((a - 1.0) - (a + 1.0) * cos),
            (a + 1.0) - (a - 1.0) * cos - k,
        )
    }

    /// First-order low-pass (6 dB/octave, bilinear transform with the corner prewarped).
    pub fn lowpass_first_order(sample_rate: f32, frequency: f32) -> Self {
        let k = (PI * (frequency / sample_rate).clamp(1e-5, 0.49)).tan();
        Self::normalised(k, k, 0.0, k + 1.0, k - 1.0, 0.0)
    }

    /// First-order high-pass (6 dB/octave).
    pub fn highpass_first_order(sample_rate: f32, frequency: f32) -> Self {
        let k = (PI * (frequency / sample_rate).clamp(1e-5, 0.49)).tan();
        Self::normalised(1.0, -1.0, 0.0, k + 1.0, k - 1.0, 0.0)
    }

    /// Magnitude response at `frequency`, linear.
    pub fn magnitude(&self, sample_rate: f32, frequency: f32) -> f32 {
        let w = 2.0 * PI * frequency / sample_rate;
        let (c1, s1, c2, s2) = (w.cos(), w.sin(), (2.0 * w).cos(), (2.0 * w).sin());
        let num_re = self.b0 + self.b1 * c1 + self.b2 * c2;
        let num_im = -(self.b1 * s1 + self.b2 * s2);
        let den_re = 1.0 + self.a1 * c1 + self.a2 * c2;
        let den_im = -(self.a1 * s1 + self.a2 * s2);
        ((num_re * num_re + num_im * num_im) / (den_re * den_re + den_im * den_im)).sqrt()
    }
}

/// The memory of one biquad section, apart from its coefficients: several channels can share one set of
/// coefficients, each with its own state.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct State {
    s1: f32,
    s2: f32,
}

impl State {
    #[inline]
    pub fn tick(&mut self, c: &Coefficients, x: f32) -> f32 {
        let y = c.b0 * x + self.s1;
        self.s1 = c.b1 * x - c.a1 * y + self.s2;
        self.s2 = c.b2 * x - c.a2 * y;
        y
    }
}

/// One biquad section with its state.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Biquad {
    pub coefficients: Coefficients,
    state: State,
}

impl Biquad {
    pub fn new(coefficients: Coefficients) -> Self {
        Self { coefficients, state: State::default() }
    }

    #[inline]
    pub fn tick(&mut self, x: f32) -> f32 {
        self.state.tick(&self.coefficients, x)
    }

    pub fn process(&mut self, block: &mut [f32]) {
        for x in block {
            *x = self.tick(*x);
        }
    }

    pub fn reset(&mut self) {
        self.state = State::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn measured_gain(coefficients: Coefficients, frequency: f32) -> f32 {
        let sr = 48_000.0;
        let mut f = Biquad::new(coefficients);
        let signal: Vec<f32> = (0..48_000).map(|i| (2.0 * PI * frequency * i as f32 / sr).sin()).collect();
        let out: Vec<f32> = signal.iter().map(|&x| f.tick(x)).collect();
        out[24_000..].iter().fold(0.0f32, |m, x| m.max(x.abs()))
    }

    #[test]
    fn filters_cut_and_boost_where_designed() {
        let sr = 48_000.0;
        let lp = Coefficients::lowpass(sr, 1000.0, std::f32::consts::FRAC_1_SQRT_2);
        assert!((measured_gain(lp, 1000.0) - std::f32::consts::FRAC_1_SQRT_2).abs() < 0.01, "-3 dB at the corner");
        assert!(measured_gain(lp, 8000.0) < 0.02);
        let hp = Coefficients::highpass(sr, 100.0, std::f32::consts::FRAC_1_SQRT_2);
        assert!(measured_gain(hp, 25.0) < 0.07);
        let bell = Coefficients::peaking(sr, 500.0, 1.0, 6.0);
        assert!((measured_gain(bell, 500.0) - 1.995).abs() < 0.02);
        assert!((bell.magnitude(sr, 500.0) - 1.995).abs() < 0.01);
    }

    #[test]
    fn shelves_and_first_order_filters_meet_their_specs() {
        let sr = 48_000.0;
        let db = |c: Coefficients, f: f32| 20.0 * c.magnitude(sr, f).log10();
        let low = Coefficients::low_shelf(sr, 300.0, 6.0);
        assert!((db(low, 20.0) - 6.0).abs() < 0.1 && db(low, 10_000.0).abs() < 0.1);
        assert!((db(low, 300.0) - 3.0).abs() < 0.2, "half the gain at the corner");
        let high = Coefficients::high_shelf(sr, 2000.0, -8.0);
        assert!((db(high, 20_000.0) + 8.0).abs() < 0.2 && db(high, 50.0).abs() < 0.1);
        assert!((db(high, 2000.0) + 4.0).abs() < 0.2);
        let lp1 = Coefficients::lowpass_first_order(sr, 1000.0);
        assert!((db(lp1, 1000.0) + 3.01).abs() < 0.05 && db(lp1, 10.0).abs() < 0.01);
        assert!((db(lp1, 4000.0) - db(lp1, 8000.0) - 5.0).abs() < 1.5, "about 6 dB per octave");
        let hp1 = Coefficients::highpass_first_order(sr, 100.0);
        assert!((db(hp1, 100.0) + 3.01).abs() < 0.05 && db(hp1, 10_000.0).abs() < 0.01);
        assert!((measured_gain(hp1, 25.0) - hp1.magnitude(sr, 25.0)).abs() < 0.01);
    }
}
