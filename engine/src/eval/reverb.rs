//! What `neuralboard eval` measures on a reverb decoder: how smooth the latent space is to walk, and how long a room
//! change takes from the knob to the new response playing.

use std::time::Instant;

use crate::dsp::convolver::Convolver;
use crate::dsp::room_ir::RoomSynth;
use crate::effects::reverb::{MAX_DECAY, MAX_PRE_DELAY_MS};
use crate::formats::reverb::ReverbFile;
use crate::nn::decoder::Decoder;

/// RMS difference in dB between two decoded grids, over the cells where either is above the floor (silence
/// against silence is no difference worth counting).
pub fn grid_distance_db(a: &[f32], b: &[f32], floor: f32) -> f64 {
    let (mut sum, mut n) = (0.0f64, 0usize);
    for (&x, &y) in a.iter().zip(b) {
        if x > floor || y > floor {
            sum += f64::from(x - y).powi(2);
            n += 1;
        }
    }
    if n == 0 { 0.0 } else { (sum / n as f64).sqrt() }
}

/// Steps along a straight line through the latent space.
#[derive(Debug, Clone, PartialEq)]
pub struct Traversal {
    pub from: Vec<f32>,
    pub to: Vec<f32>,
    pub points: usize,
    /// RMS dB distance between consecutive points: mean and largest.
    pub mean_step_db: f64,
    pub max_step_db: f64,
    /// Distance between the two ends, for scale.
    pub ends_db: f64,
}

/// Decodes `points` points evenly spaced from `from` to `to` and measures the distance between neighbours.
pub fn traverse(file: &ReverbFile, from: &[f32], to: &[f32], points: usize) -> Traversal {
    let mut decoder = Decoder::new(file);
    let points = points.max(2);
    let at = |i: usize| -> Vec<f32> {
        let t = i as f32 / (points - 1) as f32;
        from.iter().zip(to).map(|(a, b)| a + t * (b - a)).collect()
    };
    let first = decoder.decode(&at(0)).to_vec();
    let mut previous = first.clone();
    let (mut sum, mut max) = (0.0, 0.0f64);
    for i in 1..points {
        let grid = decoder.decode(&at(i)).to_vec();
        let d = grid_distance_db(&previous, &grid, file.db_floor);
        sum += d;
        max = max.max(d);
        previous = grid;
    }
    Traversal {
        from: from.to_vec(),
        to: to.to_vec(),
        points,
        mean_step_db: sum / (points - 1) as f64,
        max_step_db: max,
        ends_db: grid_distance_db(&first, &previous, file.db_floor),
    }
}

/// The two lines [`crate::eval`] reports: the diagonal of the pad and the line across its middle.
pub fn standard_traversals(file: &ReverbFile, points: usize) -> Vec<Traversal> {
    let l = &file.latent;
    let mid: Vec<f32> = l.min.iter().zip(&l.max).map(|(a, b)| 0.5 * (a + b)).collect();
    let mut across_from = mid.clone();
    let mut across_to = mid;
    across_from[0] = l.min[0];
    across_to[0] = l.max[0];
    vec![traverse(file, &l.min, &l.max, points), traverse(file, &across_from, &across_to, points)]
}

/// Where the time of a room change goes, for the pedal's full stereo response at `sample_rate`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RoomChangeTiming {
    /// Length of the responses (the longest decay plus the longest pre-delay), seconds.
    pub response_s: f32,
    pub decode_ms: f64,
    pub synthesis_ms: f64,
    /// Partitioning and transforming both responses, and the convolvers' buffers.
    pub partition_ms: f64,
}

impl RoomChangeTiming {
    pub fn total_ms(&self) -> f64 {
        self.decode_ms + self.synthesis_ms + self.partition_ms
    }
}

/// Times what the reverb's worker does for one room change (the best of `repeats`, one thread).
pub fn time_room_change(file: &ReverbFile, sample_rate: f32, repeats: usize) -> RoomChangeTiming {
    let mut decoder = Decoder::new(file);
    let mut synth = RoomSynth::new(&file.grid, file.sample_rate, sample_rate);
    let len = synth.len_for(MAX_DECAY) + (MAX_PRE_DELAY_MS * 1e-3 * sample_rate).ceil() as usize;
    let room_len = synth.len_for(1.0);
    let mut best = RoomChangeTiming {
        response_s: len as f32 / sample_rate,
        decode_ms: f64::INFINITY,
        synthesis_ms: f64::INFINITY,
        partition_ms: f64::INFINITY,
    };
    let ms = |t: Instant| t.elapsed().as_secs_f64() * 1e3;
    for i in 0..repeats.max(1) {
        let z: Vec<f32> = file.latent.min.iter().zip(&file.latent.max).map(|(a, b)| a + (b - a) * (i % 7) as f32 / 7.0).collect();
        let t = Instant::now();
        let grid = decoder.decode(&z).to_vec();
        best.decode_ms = best.decode_ms.min(ms(t));
        let t = Instant::now();
        let irs: Vec<Vec<f32>> = (0..2u64)
            .map(|seed| {
                let mut ir = vec![0.0; len];
                synth.synthesize(&grid, 1.0, seed, &mut ir[..room_len]);
                ir
            })
            .collect();
        best.synthesis_ms = best.synthesis_ms.min(ms(t));
        let t = Instant::now();
        let convolvers: Vec<Convolver> = irs.iter().map(|ir| Convolver::new(ir)).collect();
        best.partition_ms = best.partition_ms.min(ms(t));
        drop(convolvers);
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::formats::reverb::{self, tests::tiny};

    #[test]
    fn reverb_eval_traversal_measures_neighbour_distances() {
        let file = reverb::parse(&tiny().to_string()).unwrap();
        let coarse = traverse(&file, &[-2.0, -2.0], &[2.0, 2.0], 3);
        let fine = traverse(&file, &[-2.0, -2.0], &[2.0, 2.0], 33);
        assert!(fine.max_step_db < coarse.max_step_db, "{fine:?} {coarse:?}");
        assert!(fine.mean_step_db > 0.0 && (fine.ends_db - coarse.ends_db).abs() < 1e-9);
        // Cells at the floor on both sides do not count.
        assert_eq!(grid_distance_db(&[-100.0, -3.0], &[-100.0, -7.0], -100.0), 4.0);
    }

    #[test]
    fn reverb_eval_times_a_room_change() {
        let file = reverb::parse(&tiny().to_string()).unwrap();
        let timing = time_room_change(&file, 8_000.0, 2);
        assert!(timing.total_ms().is_finite() && timing.response_s > 0.2);
    }
}
