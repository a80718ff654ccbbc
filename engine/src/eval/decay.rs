//! Decay times of an impulse response per octave band, as `training/reverb/train.py` measures them (ISO 3382
//! style, the band filter applied in the frequency domain so that both sides compute the same numbers).
//!
//! - Band: the response's spectrum (zero-padded to the next power of two ≥ twice its length) times the octave
//!   `fc/√2 … fc·√2` with sin² crossovers [`CROSSOVER_OCTAVES`] wide (in log frequency) centred on its edges, so
//!   adjacent bands add up to one: `w(f) = sin²(π/2 · clamp((1/2 − |log₂(f/fc)|) / CROSSOVER_OCTAVES + 1/2, 0, 1))`;
//!   transformed back, the first `len` samples kept. (A brick-wall band rings as `sin(x)/x`, whose energy falls
//!   only as `1/t`: it reads a 0.3 s decay 30 % long in the 500 Hz octave. This band's ringing dies within
//!   milliseconds. `training/reverb/train.py` calls it the "smooth" band.)
//! - Energy decay curve (Schroeder): `EDC(n) = Σ_{m ≥ n} y(m)²`, in dB relative to `EDC(0)`.
//! - T30: the least-squares line of the EDC (dB against seconds) from the first sample at or below −5 dB up to the
//!   first at or below −35 dB (excluded), `T30 = −60 / slope`; none if the EDC never gets to −35 dB.
//! - EDT: the same from 0 dB to the first sample at or below −10 dB.

use realfft::RealFftPlanner;

/// Width of the crossover between adjacent octave bands, in octaves.
pub const CROSSOVER_OCTAVES: f64 = 1.0 / 6.0;

/// The octave bands the targets are stated for.
pub const OCTAVES_HZ: [f32; 6] = [250.0, 500.0, 1000.0, 2000.0, 4000.0, 8000.0];

/// T30 and EDT (seconds) per band of [`OCTAVES_HZ`].
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct DecayTimes {
    pub t30: [Option<f32>; 6],
    pub edt: [Option<f32>; 6],
}

/// Measures both per octave band.
pub fn decay_times(ir: &[f32], sample_rate: f32) -> DecayTimes {
    let mut times = DecayTimes::default();
    for (i, band) in octave_bands(ir, sample_rate, &OCTAVES_HZ).iter().enumerate() {
        let edc = edc_db(band);
        times.t30[i] = fit_time(&edc, sample_rate, -5.0, -35.0);
        times.edt[i] = fit_time(&edc, sample_rate, 0.0, -10.0);
    }
    times
}

/// The response filtered to the octave around `fc` (see the module).
pub fn octave_band(ir: &[f32], sample_rate: f32, fc: f32) -> Vec<f32> {
    octave_bands(ir, sample_rate, &[fc]).remove(0)
}

/// The response filtered to each octave of `centres` (one forward transform for all of them).
pub fn octave_bands(ir: &[f32], sample_rate: f32, centres: &[f32]) -> Vec<Vec<f32>> {
    let n = (2 * ir.len()).next_power_of_two().max(2);
    let mut planner = RealFftPlanner::<f64>::new();
    let (forward, inverse) = (planner.plan_fft_forward(n), planner.plan_fft_inverse(n));
    let mut buffer: Vec<f64> = ir.iter().map(|&x| f64::from(x)).chain(std::iter::repeat(0.0)).take(n).collect();
    let mut spectrum = forward.make_output_vec();
    forward.process(&mut buffer, &mut spectrum).expect("sized by the plan");
    centres
        .iter()
        .map(|&fc| {
            let mut band: Vec<_> = spectrum
                .iter()
                .enumerate()
                .map(|(k, &s)| s * band_weight(k as f64 * f64::from(sample_rate) / n as f64, f64::from(fc)))
                .collect();
            inverse.process(&mut band, &mut buffer).expect("sized by the plan");
            buffer[..ir.len()].iter().map(|&y| (y / n as f64) as f32).collect()
        })
        .collect()
}

/// The octave band's weight at `f` (see the module): 1 inside, 0 outside, sin² across the edges.
pub fn band_weight(f: f64, fc: f64) -> f64 {
    let u = (f.max(1e-9) / fc).log2();
    let x = ((0.5 - u.abs()) / CROSSOVER_OCTAVES + 0.5).clamp(0.0, 1.0);
    (0.5 * std::f64::consts::PI * x).sin().powi(2)
}

/// The Schroeder energy decay curve in dB relative to its start (−∞ where the energy has run out).
pub fn edc_db(y: &[f32]) -> Vec<f64> {
    let mut edc = vec![0.0f64; y.len()];
    let mut sum = 0.0f64;
    for (e, &v) in edc.iter_mut().zip(y).rev() {
        sum += f64::from(v) * f64::from(v);
        *e = sum;
    }
    let total = edc.first().copied().unwrap_or(0.0);
    edc.iter().map(|&e| if total > 0.0 && e > 0.0 { 10.0 * (e / total).log10() } else { f64::NEG_INFINITY }).collect()
}

/// `−60 / slope` of the least-squares line through the EDC from the first sample at or below `from_db` up to the
/// first at or below `to_db` (excluded); `None` when the EDC never reaches `to_db` or the fit has under two points.
pub fn fit_time(edc: &[f64], sample_rate: f32, from_db: f64, to_db: f64) -> Option<f32> {
    let start = edc.iter().position(|&e| e <= from_db)?;
    let end = edc.iter().position(|&e| e <= to_db)?;
    if end < start + 2 {
        return None;
    }
    let n = (end - start) as f64;
    let dt = 1.0 / f64::from(sample_rate);
    let mean_t = (start + end - 1) as f64 * 0.5 * dt;
    let mean_e = edc[start..end].iter().sum::<f64>() / n;
    let (mut sxy, mut sxx) = (0.0, 0.0);
    for (i, &e) in edc[start..end].iter().enumerate() {
        let t = (start + i) as f64 * dt - mean_t;
        sxy += t * (e - mean_e);
        sxx += t * t;
    }
    let slope = sxy / sxx;
    (slope < 0.0).then(|| (-60.0 / slope) as f32)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::corpus::rng::Rng;

    /// Noise decaying exponentially with reverberation time `t60` (60 dB of energy in `t60` seconds).
    fn exponential_noise(t60: f32, seconds: f32, seed: u64) -> Vec<f32> {
        let mut rng = Rng::new(seed);
        let n = (seconds * 48_000.0) as usize;
        (0..n)
            .map(|i| {
                let t = i as f32 / 48_000.0;
                // Energy falls 60 dB in t60: amplitude 10^(−3 t / t60).
                (rng.unit() - 0.5) * 10f32.powf(-3.0 * t / t60)
            })
            .collect()
    }

    #[test]
    fn decay_times_of_an_exponential_decay_are_its_reverberation_time() {
        // One noise realisation's decay curve wanders (a 0.3 s decay in an octave holds only some fifty
        // independent values between −5 and −35 dB, and the early decay, over its first 10 dB, fewer), so each band
        // is measured on four realisations: their mean must be the decay's, each one near it.
        for t60 in [0.3f32, 1.2, 2.5] {
            let runs: Vec<DecayTimes> =
                (1..=4).map(|seed| decay_times(&exponential_noise(t60, 3.0 * t60.max(1.0), seed), 48_000.0)).collect();
            for band in 0..OCTAVES_HZ.len() {
                for (what, each, mean_within) in [("T30", 0.15, 0.04), ("EDT", 0.3, 0.1)] {
                    let values: Vec<f32> = runs
                        .iter()
                        .map(|r| if what == "T30" { r.t30[band] } else { r.edt[band] }.expect("decays far enough"))
                        .collect();
                    let mean = values.iter().sum::<f32>() / values.len() as f32;
                    assert!((mean / t60 - 1.0).abs() < mean_within, "T60 {t60}, band {band}: {what} {values:?}");
                    assert!(
                        values.iter().all(|t| (t / t60 - 1.0).abs() < each),
                        "T60 {t60}, band {band}: {what} {values:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn decay_times_follow_each_band() {
        // A slow decay in the 500 Hz octave plus a fast one in the 4 kHz octave: each band reads its own.
        let slow = octave_band(&exponential_noise(2.0, 4.0, 5), 48_000.0, 500.0);
        let fast = octave_band(&exponential_noise(0.5, 4.0, 6), 48_000.0, 4000.0);
        let ir: Vec<f32> = slow.iter().zip(&fast).map(|(a, b)| a + b).collect();
        let times = decay_times(&ir, 48_000.0);
        assert!((times.t30[1].unwrap() / 2.0 - 1.0).abs() < 0.05, "{times:?}");
        assert!((times.t30[4].unwrap() / 0.5 - 1.0).abs() < 0.05, "{times:?}");
    }

    #[test]
    fn octave_bands_add_up_to_one_between_them() {
        for f in [250.0, 300.0, 353.6, 360.0, 700.0, 1414.2, 3000.0, 8000.0] {
            let sum: f64 = OCTAVES_HZ.iter().map(|&fc| band_weight(f, f64::from(fc))).sum();
            assert!((sum - 1.0).abs() < 1e-9, "{f} Hz: {sum}");
        }
        assert_eq!(band_weight(1000.0, 1000.0), 1.0);
        assert!(band_weight(1000.0 * 2f64.powf(0.5 + 1.0 / 12.0), 1000.0) < 1e-12);
        assert!((band_weight(1000.0 * 2f64.sqrt(), 1000.0) - 0.5).abs() < 1e-9);
    }

    #[test]
    fn decay_times_are_none_when_the_response_is_too_short() {
        // A flat burst of ten samples: its EDC ends at −10 dB, so it has an EDT but no T30.
        let edc = edc_db(&[1.0; 10]);
        assert_eq!(fit_time(&edc, 48_000.0, -5.0, -35.0), None);
        assert!(fit_time(&edc, 48_000.0, 0.0, -9.0).is_some());
        assert_eq!(fit_time(&[0.0, -1.0], 48_000.0, -5.0, -35.0), None);
    }
}
