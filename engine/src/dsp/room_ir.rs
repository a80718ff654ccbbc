//! A room impulse response from its time-frequency envelope: the reverb decoder's band grid (power per band and
//! STFT frame, in dB) turned into sound by shaping noise — the same method `training/reverb/train.py` measures.
//!
//! A room's late response is, to a very good approximation, Gaussian noise whose spectrum decays over time: the
//! envelope is what the decoder knows, and the fine structure is random. So each STFT frame gets the envelope's
//! magnitude with a random phase, and the frames are overlap-added with a √Hann window at 50 % overlap, whose
//! squares sum to one: the power of uncorrelated frames then glides from one frame's spectrum to the next. No
//! iterative phase reconstruction (Griffin-Lim) is needed for noise, and one inverse FFT per frame keeps a 3 s
//! response at a few milliseconds — the pad can move freely while the audio plays.
//!
//! Per frame `t` and bin `k`, the level in dB is interpolated linearly over `log2(max(f, 20 Hz))` between the band
//! centres `2^((log2 max(lo, 20) + log2 hi) / 2)` (bins outside take the first or last band's level). At the
//! model's rate the synthesis frames are the grid's (its `n_fft`, hop `n_fft / 2`); at another rate the FFT size is
//! scaled to keep the frames as long in time (rounded to a power of two) and each frame reads the grid at its own
//! time, interpolated between frames in dB. A **time scale** `s` stretches the envelope: the frame at time `τ`
//! reads the grid at `τ / s`, so every band's decay time is multiplied by `s`. The response is scaled to unit energy; its last 5 % fades
//! out so a long room is not cut off with a click.

use std::f32::consts::PI;
use std::sync::Arc;

use realfft::num_complex::Complex;
use realfft::{ComplexToReal, RealFftPlanner};

use crate::corpus::rng::Rng;
use crate::formats::reverb::Grid;

/// Lowest frequency of the interpolation axis: below it every bin takes the same level.
const LOW_HZ: f32 = 20.0;
/// Share of the response that fades out at its end.
const END_FADE: f32 = 0.05;

/// Builds responses for one grid layout; holds the FFT plan and buffers (allocated once, off the audio thread).
pub struct RoomSynth {
    n_fft: usize,
    hop: usize,
    /// Grid frames per synthesis frame (at time scale 1).
    step: f32,
    frames: usize,
    bands: usize,
    /// Per bin: the two bands it lies between and the weight of the second.
    bins: Vec<(usize, usize, f32)>,
    window: Vec<f32>,
    ifft: Arc<dyn ComplexToReal<f32>>,
    spectrum: Vec<Complex<f32>>,
    frame: Vec<f32>,
    scratch: Vec<Complex<f32>>,
    level: Vec<f32>,
}

impl RoomSynth {
    /// Synthesis at `sample_rate` of the grids of a model made at `model_rate`.
    pub fn new(grid: &Grid, model_rate: f32, sample_rate: f32) -> Self {
        let n_fft = ((grid.n_fft as f32 * sample_rate / model_rate).round() as usize).next_power_of_two().max(16);
        let hop = n_fft / 2;
        let step = (hop as f32 / sample_rate) / (grid.hop as f32 / model_rate);
        let edges = &grid.band_edges_hz;
        let bands = grid.bands();
        let centre = |b: usize| 0.5 * (edges[b].max(LOW_HZ).log2() + edges[b + 1].max(LOW_HZ).log2());
        let centres: Vec<f32> = (0..bands).map(centre).collect();
        let bins = (0..=n_fft / 2)
            .map(|k| {
                let u = (k as f32 * sample_rate / n_fft as f32).max(LOW_HZ).log2();
                match centres.iter().position(|&c| u < c) {
                    Some(0) => (0, 0, 0.0),
                    None => (bands - 1, bands - 1, 0.0),
                    Some(hi) => {
                        let (a, b) = (centres[hi - 1], centres[hi]);
                        (hi - 1, hi, if b > a { (u - a) / (b - a) } else { 0.0 })
                    }
                }
            })
            .collect();
        // √(periodic Hann): at 50 % overlap the squares sum to one.
        let window = (0..n_fft).map(|i| (0.5 - 0.5 * (2.0 * PI * i as f32 / n_fft as f32).cos()).sqrt()).collect();
        let ifft = RealFftPlanner::<f32>::new().plan_fft_inverse(n_fft);
        let scratch = ifft.make_scratch_vec();
        Self {
            n_fft,
            hop,
            step,
            frames: grid.frames,
            bands,
            bins,
            window,
            spectrum: ifft.make_input_vec(),
            frame: ifft.make_output_vec(),
            ifft,
            scratch,
            level: vec![0.0; bands],
        }
    }

    /// Length in samples of a response built with time scale `scale`: the grid's duration times `scale`, in whole
    /// synthesis frames.
    pub fn len_for(&self, scale: f32) -> usize {
        (self.frames as f32 * scale / self.step).ceil().max(1.0) as usize * self.hop
    }

    /// Builds a response from `db` (`bands × frames`, band-major, as the decoder gives it) into `out` (length
    /// [`RoomSynth::len_for`]`(scale)`), with the noise drawn from `seed`: the same seed gives the same response,
    /// two seeds two decorrelated ones (left and right).
    pub fn synthesize(&mut self, db: &[f32], scale: f32, seed: u64, out: &mut [f32]) {
        assert_eq!(db.len(), self.bands * self.frames, "grid size");
        out.fill(0.0);
        let mut rng = Rng::new(seed);
        let out_frames = out.len() / self.hop;
        let half = self.n_fft / 2;
        for t in 0..=out_frames {
            // The envelope at this frame: the grid read at t / scale, interpolated in dB.
            let pos = (t as f32 * self.step / scale).min((self.frames - 1) as f32);
            let (f0, frac) = (pos.floor() as usize, pos.fract());
            let f1 = (f0 + 1).min(self.frames - 1);
            for (b, level) in self.level.iter_mut().enumerate() {
                let row = &db[b * self.frames..(b + 1) * self.frames];
                *level = row[f0] + frac * (row[f1] - row[f0]);
            }
            for (k, (s, &(lo, hi, w))) in self.spectrum.iter_mut().zip(&self.bins).enumerate() {
                let db = self.level[lo] + w * (self.level[hi] - self.level[lo]);
                let magnitude = 10f32.powf(db / 20.0);
                *s = if k == 0 || k == half {
                    // Real bins: a random sign.
                    Complex::new(if rng.chance(0.5) { magnitude } else { -magnitude }, 0.0)
                } else {
                    let phase = 2.0 * PI * rng.unit();
                    Complex::new(magnitude * phase.cos(), magnitude * phase.sin())
                };
            }
            self.ifft
                .process_with_scratch(&mut self.spectrum, &mut self.frame, &mut self.scratch)
                .expect("buffers sized by the plan");
            // Overlap-add, the frame centred on sample t·hop.
            let start = (t * self.hop) as isize - half as isize;
            for (i, (&x, &w)) in self.frame.iter().zip(&self.window).enumerate() {
                let at = start + i as isize;
                if at >= 0 && (at as usize) < out.len() {
                    out[at as usize] += x * w;
                }
            }
        }
        let fade = ((out.len() as f32 * END_FADE) as usize).max(1);
        let n = out.len();
        for (i, y) in out[n - fade..].iter_mut().enumerate() {
            *y *= 0.5 + 0.5 * (PI * (i as f32 + 0.5) / fade as f32).cos();
        }
        let energy: f64 = out.iter().map(|&y| f64::from(y) * f64::from(y)).sum();
        if energy > 0.0 {
            let g = (1.0 / energy.sqrt()) as f32;
            out.iter_mut().for_each(|y| *y *= g);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grid(frames: usize) -> Grid {
        Grid { n_fft: 1024, hop: 512, frames, band_edges_hz: vec![0.0, 200.0, 1000.0, 4000.0, 24_000.0] }
    }

    /// A grid whose every band decays linearly in dB from 0 at `rate_db_per_s` (given per band).
    fn decaying(g: &Grid, rates: &[f32]) -> Vec<f32> {
        let frame_s = g.hop as f32 / 48_000.0;
        rates.iter().flat_map(|&r| (0..g.frames).map(move |t| (-r * t as f32 * frame_s).max(-150.0))).collect()
    }

    /// Decay rate (dB/s) of `ir`'s energy between 10 % and 60 % of its length, by a least-squares fit over
    /// 20 ms windows.
    fn decay_rate(ir: &[f32]) -> f32 {
        let w = 960;
        let points: Vec<(f32, f32)> = (ir.len() / 10 / w..ir.len() * 6 / 10 / w)
            .map(|i| {
                let e: f32 = ir[i * w..(i + 1) * w].iter().map(|x| x * x).sum();
                ((i * w) as f32 / 48_000.0, 10.0 * e.log10())
            })
            .collect();
        let n = points.len() as f32;
        let (mx, my) = points.iter().fold((0.0, 0.0), |(a, b), (x, y)| (a + x / n, b + y / n));
        let (sxy, sxx) =
            points.iter().fold((0.0, 0.0), |(a, b), (x, y)| (a + (x - mx) * (y - my), b + (x - mx).powi(2)));
        -sxy / sxx
    }

    #[test]
    fn room_synth_follows_the_envelope_and_its_time_scale() {
        let g = grid(96);
        let mut synth = RoomSynth::new(&g, 48_000.0, 48_000.0);
        let db = decaying(&g, &[60.0; 4]);
        let mut ir = vec![0.0; synth.len_for(1.0)];
        synth.synthesize(&db, 1.0, 1, &mut ir);
        let energy: f32 = ir.iter().map(|x| x * x).sum();
        assert!((energy - 1.0).abs() < 1e-3, "unit energy: {energy}");
        let rate = decay_rate(&ir);
        assert!((rate - 60.0).abs() < 3.0, "decays at the grid's 60 dB/s: {rate}");
        // Twice the time scale: twice as long, half the decay rate.
        let mut long = vec![0.0; synth.len_for(2.0)];
        assert_eq!(long.len(), 2 * ir.len());
        synth.synthesize(&db, 2.0, 1, &mut long);
        let rate = decay_rate(&long);
        assert!((rate - 30.0).abs() < 2.0, "scaled: {rate}");
        // At 96 kHz: as long in time, the same decay in dB per second.
        let mut fast = RoomSynth::new(&g, 48_000.0, 96_000.0);
        let mut ir96 = vec![0.0; fast.len_for(1.0)];
        assert_eq!(ir96.len(), 2 * ir.len());
        fast.synthesize(&db, 1.0, 1, &mut ir96);
        let rate = 2.0 * decay_rate(&ir96); // decay_rate reads time at 48 kHz
        assert!((rate - 60.0).abs() < 3.0, "at 96 kHz: {rate}");
    }

    #[test]
    fn room_synth_shapes_the_spectrum_by_band_and_decorrelates_seeds() {
        let g = grid(96);
        let mut synth = RoomSynth::new(&g, 48_000.0, 48_000.0);
        // Steady, 30 dB less above 4 kHz.
        let db: Vec<f32> = (0..4).flat_map(|b| std::iter::repeat_n(if b == 3 { -30.0 } else { 0.0 }, 96)).collect();
        let (mut left, mut right) = (vec![0.0; synth.len_for(1.0)], vec![0.0; synth.len_for(1.0)]);
        synth.synthesize(&db, 1.0, 1, &mut left);
        synth.synthesize(&db, 1.0, 2, &mut right);
        let correlation: f32 = left.iter().zip(&right).map(|(a, b)| a * b).sum();
        assert!(correlation.abs() < 0.05, "two seeds give decorrelated responses: {correlation}");
        let mut again = vec![0.0; left.len()];
        synth.synthesize(&db, 1.0, 1, &mut again);
        assert_eq!(again, left, "a seed gives the same response");

        // Band levels through a plain DFT of the middle 8192 samples.
        let x = &left[16_384..16_384 + 8192];
        let power_at = |lo: f32, hi: f32| {
            let (k0, k1) = ((lo * 8192.0 / 48_000.0) as usize, (hi * 8192.0 / 48_000.0) as usize);
            let mut sum = 0.0f64;
            for k in (k0..k1).step_by(7) {
                let w = 2.0 * std::f64::consts::PI * k as f64 / 8192.0;
                let (re, im) = x.iter().enumerate().fold((0.0, 0.0), |(re, im), (n, &v)| {
                    (re + f64::from(v) * (w * n as f64).cos(), im - f64::from(v) * (w * n as f64).sin())
                });
                sum += re * re + im * im;
            }
            sum / ((k1 - k0) / 7) as f64
        };
        let difference = 10.0 * (power_at(1500.0, 3000.0) / power_at(8000.0, 20_000.0)).log10();
        assert!((difference - 30.0).abs() < 3.0, "the top band is 30 dB down: {difference}");
    }
}
