//! Level metering: peak and RMS over a window, read and restarted by the engine when it publishes telemetry.

#[derive(Debug, Clone, Default)]
pub struct LevelMeter {
    peak: f32,
    sum_squares: f64,
    count: u64,
    clipped: bool,
}

/// Peak at or above this counts as a clip (−0.1 dBFS): the converter is about to, or did, run out of range.
pub const CLIP_LEVEL: f32 = 0.988_553;

/// One window's reading.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Levels {
    pub peak: f32,
    pub rms: f32,
    pub clipped: bool,
}

impl LevelMeter {
    pub fn add(&mut self, block: &[f32]) {
        let mut peak = self.peak;
        let mut sum = 0.0f32;
        for &x in block {
            peak = peak.max(x.abs());
            sum += x * x;
        }
        self.peak = peak;
        self.sum_squares += f64::from(sum);
        self.count += block.len() as u64;
        self.clipped |= peak >= CLIP_LEVEL;
    }

    /// The reading since the last call; starts a new window.
    pub fn take(&mut self) -> Levels {
        let rms = if self.count == 0 { 0.0 } else { (self.sum_squares / self.count as f64).sqrt() as f32 };
        let levels = Levels { peak: self.peak, rms, clipped: self.clipped };
        *self = Self::default();
        levels
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_scale_sine_reads_peak_one_rms_minus_three_db() {
        let mut m = LevelMeter::default();
        let sine: Vec<f32> = (0..48_000).map(|i| (i as f32 * std::f32::consts::TAU / 48.0).sin()).collect();
        m.add(&sine);
        let l = m.take();
        assert!((l.peak - 1.0).abs() < 1e-3);
        assert!((l.rms - std::f32::consts::FRAC_1_SQRT_2).abs() < 1e-3);
        assert!(l.clipped);
        assert_eq!(m.take(), Levels::default());
    }
}
