//! What `neuralboard eval` measures on a reverb decoder: how well it rebuilds the held-out rooms (T30 and EDT per
//! octave band, against the simulated responses' own, which the manifest records with each test room's latent
//! point), how smooth the latent space is to walk, and how long a room change takes from the knob to the new
//! response playing.

use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::Deserialize;

use crate::dsp::convolver::ConvolverIr;
use crate::dsp::room_ir::RoomSynth;
use crate::effects::reverb::{MAX_DECAY, MAX_PRE_DELAY_MS};
use crate::eval::decay::{self, OCTAVES_HZ};
use crate::eval::{EvalError, MANIFEST_VERSION};
use crate::formats::reverb::{self, ReverbFile};
use crate::nn::decoder::Decoder;

/// Seed of the noise the evaluation synthesises with (the pedal's left channel).
const EVAL_SEED: u64 = 0x5EED_0001;

/// T30 and EDT per octave band ([`OCTAVES_HZ`]), seconds; none where a decay could not be measured.
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct BandTimes {
    pub t30: Vec<Option<f32>>,
    pub edt: Vec<Option<f32>>,
}

/// One held-out impulse response: its room, where the encoder put it, and its measured decay times.
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct TestIr {
    pub room: usize,
    #[serde(default)]
    pub position: usize,
    pub z: Vec<f32>,
    pub reference: BandTimes,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq)]
pub struct Targets {
    pub t30_relative: f64,
    pub edt_relative: f64,
}

/// What this build reads of a reverb model's manifest (`training/reverb/train.py` writes much more).
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct ReverbManifest {
    pub manifest_version: u32,
    pub name: String,
    pub file: String,
    pub targets: Targets,
    pub test_irs: Vec<TestIr>,
}

/// Relative errors of one quantity in one octave band over the test responses.
#[derive(Debug, Clone, PartialEq)]
pub struct BandErrors {
    pub band_hz: f32,
    /// Responses with a reference value in this band.
    pub count: usize,
    pub median: f64,
    pub mean: f64,
    /// Share of them within the target.
    pub within: f64,
}

/// What [`evaluate`] measured.
#[derive(Debug, Clone)]
pub struct ReverbEvaluation {
    pub manifest_path: PathBuf,
    pub name: String,
    pub test_irs: usize,
    pub targets: Targets,
    pub t30: Vec<BandErrors>,
    pub edt: Vec<BandErrors>,
    pub traversals: Vec<Traversal>,
    pub timing: RoomChangeTiming,
}

impl ReverbEvaluation {
    /// Bands whose median error misses its target: "T30 250 Hz", …
    pub fn missed(&self) -> Vec<String> {
        let mut missed = Vec::new();
        for (what, bands, target) in
            [("T30", &self.t30, self.targets.t30_relative), ("EDT", &self.edt, self.targets.edt_relative)]
        {
            for b in bands.iter().filter(|b| b.median > target) {
                missed.push(format!("{what} {} Hz", b.band_hz));
            }
        }
        missed
    }
}

/// Decodes every test room's latent point, synthesises its response as the pedal does (time scale 1, no
/// pre-delay), measures T30 and EDT per octave band and compares them with the simulated response's; then the
/// traversals and the room-change timing.
pub fn evaluate(model_path: &Path) -> Result<ReverbEvaluation, EvalError> {
    let manifest_path = crate::eval::manifest_path_for(model_path);
    let text = std::fs::read_to_string(&manifest_path)
        .map_err(|source| EvalError::Io { path: manifest_path.clone(), source })?;
    let bad = |message: String| EvalError::BadManifest { path: manifest_path.clone(), message };
    let manifest: ReverbManifest = serde_json::from_str(&text).map_err(|e| bad(e.to_string()))?;
    if manifest.manifest_version != MANIFEST_VERSION {
        return Err(bad(format!("manifest_version {} is not supported", manifest.manifest_version)));
    }
    let named = model_path.file_name().map(|n| n.to_string_lossy().into_owned());
    if named.as_deref() != Some(manifest.file.as_str()) {
        return Err(bad(format!("it describes '{}', not {}", manifest.file, model_path.display())));
    }
    let file = reverb::load(model_path)
        .map_err(|e| EvalError::Model { path: model_path.to_owned(), message: e.to_string() })?;
    for (i, ir) in manifest.test_irs.iter().enumerate() {
        if ir.z.len() != file.latent.dims || ir.z.iter().any(|v| !v.is_finite()) {
            return Err(bad(format!("test_irs[{i}].z: expected {} finite values", file.latent.dims)));
        }
        if ir.reference.t30.len() != OCTAVES_HZ.len() || ir.reference.edt.len() != OCTAVES_HZ.len() {
            return Err(bad(format!("test_irs[{i}].reference: expected {} bands", OCTAVES_HZ.len())));
        }
    }
    let (t30, edt) = measure_test_irs(&file, &manifest);
    Ok(ReverbEvaluation {
        manifest_path,
        name: manifest.name.clone(),
        test_irs: manifest.test_irs.len(),
        targets: manifest.targets,
        t30,
        edt,
        traversals: standard_traversals(&file, 64),
        timing: time_room_change(&file, file.sample_rate, 5),
    })
}

fn measure_test_irs(file: &ReverbFile, manifest: &ReverbManifest) -> (Vec<BandErrors>, Vec<BandErrors>) {
    let mut decoder = Decoder::new(file);
    let mut synth = RoomSynth::new(&file.grid, file.sample_rate, file.sample_rate);
    let mut ir = vec![0.0; synth.len_for(1.0)];
    let bands = OCTAVES_HZ.len();
    let (mut t30_err, mut edt_err) = (vec![Vec::new(); bands], vec![Vec::new(); bands]);
    for test in &manifest.test_irs {
        let grid = decoder.decode(&test.z).to_vec();
        synth.synthesize(&grid, 1.0, EVAL_SEED, &mut ir);
        let times = decay::decay_times(&ir, file.sample_rate);
        for b in 0..bands {
            for (errors, model, reference) in [
                (&mut t30_err, times.t30[b], test.reference.t30[b]),
                (&mut edt_err, times.edt[b], test.reference.edt[b]),
            ] {
                if let Some(reference) = reference.filter(|r| *r > 0.0) {
                    // A decay the model's response does not show counts as a miss.
                    let error = model.map_or(f64::INFINITY, |m| f64::from((m - reference).abs() / reference));
                    errors[b].push(error);
                }
            }
        }
    }
    let summarise = |errors: Vec<Vec<f64>>, target: f64| -> Vec<BandErrors> {
        errors
            .into_iter()
            .zip(OCTAVES_HZ)
            .map(|(mut e, band_hz)| {
                e.sort_by(f64::total_cmp);
                let count = e.len();
                let median = if count == 0 { f64::NAN } else { e[count / 2] };
                let mean = e.iter().sum::<f64>() / count.max(1) as f64;
                let within = e.iter().filter(|&&x| x <= target).count() as f64 / count.max(1) as f64;
                BandErrors { band_hz, count, median, mean, within }
            })
            .collect()
    };
    (summarise(t30_err, manifest.targets.t30_relative), summarise(edt_err, manifest.targets.edt_relative))
}

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
        let z: Vec<f32> =
            file.latent.min.iter().zip(&file.latent.max).map(|(a, b)| a + (b - a) * (i % 7) as f32 / 7.0).collect();
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
        let responses: Vec<ConvolverIr> = irs.iter().map(|ir| ConvolverIr::new(ir)).collect();
        best.partition_ms = best.partition_ms.min(ms(t));
        drop(responses);
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
