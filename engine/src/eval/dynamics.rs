//! How a compressor model's dynamics compare with its teacher's: the static gain-reduction curve and the attack
//! and release times, measured the same way on both (the measurements a reviewer of a hardware compressor makes).
//!
//! - **Static curve**: a steady 1 kHz tone at each level from −40 to 0 dBFS in 2 dB steps, played long enough for
//!   every envelope to settle (`SETTLE_S`); the gain reduction is the input's RMS over the output's over the last
//!   `MEASURE_S`, in dB.
//! - **Attack and release**: a 1 kHz tone that steps from −30 dBFS up to −6 dBFS and, after `HOLD_S`, back down.
//!   The gain reduction is followed in 1 ms windows (interpolated between their centres where it crosses a goal:
//!   a 10 ms attack is ten windows); the attack time is the time from the step up until it has covered 63 % of its
//!   way to the value at the end of the hold, the release time the time from the step down until it has covered
//!   63 % of its way back to the quiet level's: the reduction the quiet tone had settled to before the step up. (Not
//!   the value at the end of the measurement: an opto's slow release is still moving seconds later, and a goal read
//!   there would move with the length of the tail. The teacher at peak reduction 70 would read 98 ms with a 3 s
//!   tail, 566 ms with 5 s and 944 ms with 10 s; measured to the settled quiet level, 971 ms.)
//! - **Attack and release curves**: the same step, the two gain reductions compared over time in 10 ms windows:
//!   the largest difference over the first `ATTACK_CURVE_S` after the step up and over the `RELEASE_S` after the
//!   step down. Where a release has two stages, its 63 % point can fall on the plateau between them, and a few
//!   tenths of a decibel move the time by half; the curve says how far apart the two releases really are.
//! - **Ripple**: a low E (82.4 Hz) held at −6 dBFS. Within each cycle a fast detector sees the level rise and fall
//!   twice; a compressor that follows it modulates the note's gain at twice its frequency, which is heard as
//!   distortion. The ripple is the spread (max − min, dB) of the gain, output over input, over the last
//!   `RIPPLE_MEASURE_S`, at the samples within 6 dB of the peak (where the ratio is well defined).
//!
//! The processors are any `FnMut(&[f32], &mut [f32])`: the teacher ticked sample by sample, or a network in blocks.

/// One processor under test, fed blocks (its state continuing from block to block).
pub type Processor<'a> = dyn FnMut(&[f32], &mut [f32]) + 'a;

const TONE_HZ: f64 = 1000.0;
/// The ripple test's tone (a guitar's low E), its level, how long it plays and how much of the end is measured.
pub const RIPPLE_HZ: f64 = 82.41;
pub const RIPPLE_DBFS: f32 = -6.0;
const RIPPLE_S: f32 = 2.0;
const RIPPLE_MEASURE_S: f32 = 0.5;
/// How long each static level plays before it is measured, and over how long it is measured.
pub const SETTLE_S: f32 = 3.0;
pub const MEASURE_S: f32 = 0.25;
/// Levels of the attack/release test and how long the loud part lasts.
pub const QUIET_DBFS: f32 = -30.0;
pub const LOUD_DBFS: f32 = -6.0;
pub const HOLD_S: f32 = 2.0;
/// How long the quiet tone plays after the step down (the release is followed over all of it).
pub const RELEASE_S: f32 = 3.0;
/// How much of the attack the curve comparison covers, and the windows it compares.
pub const ATTACK_CURVE_S: f32 = 0.2;
const CURVE_WINDOW_S: f32 = 0.01;
const WINDOW_S: f32 = 0.001;
/// How many windows before a step give the level it leaves (50 ms).
const LEVEL_WINDOWS: usize = 50;
const BLOCK: usize = 64;

/// A steady 1 kHz tone of `peak_dbfs` (peak level), `n` samples, continuing the phase from `start`.
fn tone(sample_rate: f32, peak_dbfs: f32, start: usize, n: usize) -> Vec<f32> {
    tone_at(TONE_HZ, sample_rate, peak_dbfs, start, n)
}

fn tone_at(hz: f64, sample_rate: f32, peak_dbfs: f32, start: usize, n: usize) -> Vec<f32> {
    let amplitude = 10f64.powf(f64::from(peak_dbfs) / 20.0);
    let w = std::f64::consts::TAU * hz / f64::from(sample_rate);
    (start..start + n).map(|i| (amplitude * (w * i as f64).sin()) as f32).collect()
}

fn run(process: &mut Processor, input: &[f32]) -> Vec<f32> {
    let mut out = vec![0.0; input.len()];
    for (i, o) in input.chunks(BLOCK).zip(out.chunks_mut(BLOCK)) {
        process(i, o);
    }
    out
}

fn mean_square(x: &[f32]) -> f64 {
    x.iter().map(|&v| f64::from(v) * f64::from(v)).sum::<f64>() / x.len().max(1) as f64
}

/// Gain reduction in dB (≥ 0 when the output is quieter) from input and output excerpts.
fn reduction_db(input: &[f32], output: &[f32]) -> f64 {
    10.0 * (mean_square(input) / mean_square(output).max(1e-30)).log10()
}

/// The static curve: `(level dBFS, gain reduction dB)` for each level from −40 to 0 dBFS in 2 dB steps. `fresh`
/// gives a processor in its initial state (each level is measured from that state, as a fresh unit would be).
pub fn static_curve(sample_rate: f32, fresh: &mut dyn FnMut() -> Box<Processor<'static>>) -> Vec<(f32, f64)> {
    let settle = (SETTLE_S * sample_rate) as usize;
    let measure = (MEASURE_S * sample_rate) as usize;
    (0..=20)
        .map(|step| {
            let level = -40.0 + 2.0 * step as f32;
            let input = tone(sample_rate, level, 0, settle + measure);
            let output = run(&mut *fresh(), &input);
            (level, reduction_db(&input[settle..], &output[settle..]))
        })
        .collect()
}

/// Attack and release times, seconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Timing {
    pub attack_s: f64,
    /// `None` when the release does not get 63 % of its way back within `RELEASE_S`.
    pub release_s: Option<f64>,
    /// Gain reduction at the end of the loud part (dB), for the report.
    pub held_reduction_db: f64,
}

/// A processor's response to the attack/release step: its input and output, and where the steps are.
pub struct StepResponse {
    input: Vec<f32>,
    output: Vec<f32>,
    /// First sample of the loud part, and of the quiet part after it.
    step_up: usize,
    step_down: usize,
}

impl StepResponse {
    /// Plays the step (`QUIET_DBFS` for 1 s, `LOUD_DBFS` for `HOLD_S`, `QUIET_DBFS` for `RELEASE_S`) through a
    /// processor in its initial state.
    pub fn measure(sample_rate: f32, process: &mut Processor) -> Self {
        let lead = (1.0 * sample_rate) as usize;
        let hold = (HOLD_S * sample_rate) as usize;
        let tail = (RELEASE_S * sample_rate) as usize;
        let mut input = tone(sample_rate, QUIET_DBFS, 0, lead);
        input.extend(tone(sample_rate, LOUD_DBFS, lead, hold));
        input.extend(tone(sample_rate, QUIET_DBFS, lead + hold, tail));
        let output = run(process, &input);
        Self { input, output, step_up: lead, step_down: lead + hold }
    }

    /// The gain reduction (dB) in consecutive windows of `window` samples.
    fn reduction(&self, window: usize) -> Vec<f64> {
        self.input.chunks(window).zip(self.output.chunks(window)).map(|(i, o)| reduction_db(i, o)).collect()
    }
}

/// How far apart two processors' gain reductions are over the step (dB, largest difference in 10 ms windows): over
/// the first `ATTACK_CURVE_S` after the step up, and over the `RELEASE_S` after the step down.
pub fn step_curve_differences(sample_rate: f32, a: &StepResponse, b: &StepResponse) -> (f64, f64) {
    let window = (CURVE_WINDOW_S * sample_rate) as usize;
    let (ra, rb) = (a.reduction(window), b.reduction(window));
    let worst = |from: usize, to: usize| {
        ra[from / window..to / window].iter().zip(&rb[from / window..]).map(|(x, y)| (x - y).abs()).fold(0.0, f64::max)
    };
    let attack_end = a.step_up + (ATTACK_CURVE_S * sample_rate) as usize;
    (worst(a.step_up, attack_end), worst(a.step_down, a.input.len()))
}

/// Measures attack and release on a processor in its initial state; `None` when the step does not make it compress
/// (a gain-reduction change under 1 dB has no meaningful time constant).
pub fn timing(sample_rate: f32, process: &mut Processor) -> Option<Timing> {
    timing_of(sample_rate, &StepResponse::measure(sample_rate, process))
}

/// [`timing`] from a measured step response.
pub fn timing_of(sample_rate: f32, step: &StepResponse) -> Option<Timing> {
    let window = (WINDOW_S * sample_rate) as usize;
    let reduction = step.reduction(window);
    let at = |sample: usize| sample / window;
    // The levels the steps leave, each the mean over the `LEVEL_WINDOWS` windows before its step (a network at a
    // control rate ripples by a few hundredths of a decibel from one window to the next): the quiet level's settled
    // reduction (the quiet tone has played for a second) and the loud level's at the end of the hold.
    let level_before =
        |step: usize| reduction[at(step) - LEVEL_WINDOWS..at(step)].iter().sum::<f64>() / LEVEL_WINDOWS as f64;
    let (quiet, held) = (level_before(step.step_up), level_before(step.step_down));
    if held - quiet < 1.0 {
        return None;
    }
    // The time from `from` (a window boundary) at which the reduction first reaches `goal`, rising or falling: each
    // window's value stands at its centre, and between the last window short of the goal and the first one past it
    // the time is interpolated (a 10 ms attack is ten windows: without it the time would move in steps of 10 %).
    let crossing = |from: usize, goal: f64, rising: bool| {
        let past = |r: f64| if rising { r >= goal } else { r <= goal };
        let w = reduction[from..].iter().position(|&r| past(r))?;
        // `from` ≥ 1: the window before the step is the level the step leaves.
        let (before, after) = (reduction[from + w - 1], reduction[from + w]);
        let fraction = if after == before { 1.0 } else { (goal - before) / (after - before) };
        Some(((w as f64 - 0.5 + fraction) * f64::from(WINDOW_S)).max(0.0))
    };
    let attack_goal = quiet + 0.63 * (held - quiet);
    let release_goal = held - 0.63 * (held - quiet);
    Some(Timing {
        attack_s: crossing(at(step.step_up), attack_goal, true)?,
        release_s: crossing(at(step.step_down), release_goal, false),
        held_reduction_db: held,
    })
}

/// The gain ripple (dB, max − min) on a held low E, for a processor in its initial state.
pub fn ripple_db(sample_rate: f32, process: &mut Processor) -> f64 {
    let n = (RIPPLE_S * sample_rate) as usize;
    let input = tone_at(RIPPLE_HZ, sample_rate, RIPPLE_DBFS, 0, n);
    let output = run(process, &input);
    let from = n - (RIPPLE_MEASURE_S * sample_rate) as usize;
    let half_peak = 0.5 * 10f32.powf(RIPPLE_DBFS / 20.0);
    let (lo, hi) = input[from..]
        .iter()
        .zip(&output[from..])
        .filter(|(x, _)| x.abs() >= half_peak)
        .map(|(&x, &y)| 20.0 * (f64::from(y) / f64::from(x)).abs().max(1e-30).log10())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), g| (lo.min(g), hi.max(g)));
    hi - lo
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::teacher::Teacher;
    use crate::teacher::opto::{Opto, OptoSettings};

    const RATE: f32 = 48_000.0;

    fn opto(peak_reduction: f32, limit: f32) -> Box<Processor<'static>> {
        let mut teacher = Opto::new(RATE, OptoSettings { peak_reduction, gain: 0.0, limit });
        Box::new(move |input: &[f32], output: &mut [f32]| {
            for (y, &x) in output.iter_mut().zip(input) {
                *y = teacher.tick(x);
            }
        })
    }

    /// The teacher with its output times `gain` from the step response's step down on (3 s in).
    fn opto_quieter_after_step_down(peak_reduction: f32, gain: f32) -> Box<Processor<'static>> {
        let mut inner = opto(peak_reduction, 0.0);
        let mut n = 0usize;
        Box::new(move |input: &[f32], output: &mut [f32]| {
            inner(input, output);
            for y in output.iter_mut() {
                if n >= 3 * RATE as usize {
                    *y *= gain;
                }
                n += 1;
            }
        })
    }

    #[test]
    fn dynamics_the_static_curve_of_the_teacher_is_its_designed_curve() {
        let curve = static_curve(RATE, &mut || opto(60.0, 0.0));
        // Threshold at peak reduction 60: 10 − 0.5·60 = −20 dB (RMS of the detector: a tone's RMS is 3 dB under its
        // peak); 3:1 above the knee.
        let teacher = Opto::new(RATE, OptoSettings { peak_reduction: 60.0, gain: 0.0, limit: 0.0 });
        for &(level, reduction) in &curve {
            let designed = f64::from(teacher.static_reduction_db(level - 3.0103));
            assert!((reduction - designed).abs() < 0.2, "{level} dBFS: measured {reduction}, designed {designed}");
        }
        assert!(curve[0].1.abs() < 0.01 && curve[20].1 > 10.0, "{curve:?}");
    }

    #[test]
    fn dynamics_ripple_is_the_gains_spread_on_a_low_note() {
        // The teacher smooths its detector: its gain on a held low E barely moves.
        let teacher = ripple_db(RATE, &mut *opto(70.0, 0.0));
        assert!(teacher < 0.2, "teacher: {teacher} dB");
        // A gain that swings ±1 dB at twice the note's frequency reads 2 dB (within the sampling of its peaks).
        let mut t = 0usize;
        let mut wobbly = |input: &[f32], output: &mut [f32]| {
            for (y, &x) in output.iter_mut().zip(input) {
                let phase = std::f64::consts::TAU * 2.0 * RIPPLE_HZ * t as f64 / f64::from(RATE);
                *y = x * 10f32.powf(phase.sin() as f32 / 20.0);
                t += 1;
            }
        };
        let measured = ripple_db(RATE, &mut wobbly);
        assert!((measured - 2.0).abs() < 0.05, "{measured} dB");
    }

    #[test]
    fn dynamics_the_teachers_attack_is_fast_and_its_release_slow() {
        let t = timing(RATE, &mut *opto(80.0, 0.0)).unwrap();
        assert!(t.held_reduction_db > 5.0, "{t:?}");
        assert!((0.001..0.03).contains(&t.attack_s), "{t:?}");
        assert!(t.release_s.is_some_and(|r| r > 0.05 && r < 3.0), "{t:?}");
        assert!(timing(RATE, &mut *opto(0.0, 0.0)).is_none(), "no compression, no timing");
    }

    #[test]
    fn dynamics_the_release_time_is_measured_to_the_quiet_levels_settled_reduction() {
        // The teacher's release at peak reduction 70 has two stages: about half its way within 50 ms, then a slow
        // stage of seconds. Its 63 % point lies in the slow stage, whatever the tail; a goal read at the end of the
        // tail (still 2 dB up after 3 s) put it on the plateau between the stages, at 98 ms.
        let t = timing(RATE, &mut *opto(70.0, 0.0)).unwrap();
        assert!(t.release_s.is_some_and(|r| (0.8..1.2).contains(&r)), "{t:?}");
        // A processor whose release never gets back within the tail (12 dB down from the step down on) has no
        // release time.
        assert_eq!(timing(RATE, &mut *opto_quieter_after_step_down(70.0, 0.25)).unwrap().release_s, None);
    }

    #[test]
    fn dynamics_times_are_read_between_windows() {
        // A gain that follows exponentials from the steps (1 s and 3 s): 10 dB of reduction with a 7.3 ms time
        // constant, then back with 150 ms. Their 63 % points are 0.994 of the time constants: 7.26 ms and 149.1 ms,
        // which the 1 ms windows alone would read to ±0.5 ms (±7 % of the attack).
        let (attack_tau, release_tau) = (0.0073, 0.15);
        let mut n = 0usize;
        let mut exponential = |input: &[f32], output: &mut [f32]| {
            for (y, &x) in output.iter_mut().zip(input) {
                let t = n as f64 / f64::from(RATE);
                let reduction_db = match t {
                    t if t < 1.0 => 0.0,
                    t if t < 3.0 => 10.0 * (1.0 - (-(t - 1.0) / attack_tau).exp()),
                    t => 10.0 * (1.0 - (-2.0 / attack_tau).exp()) * (-(t - 3.0) / release_tau).exp(),
                };
                *y = x * 10f64.powf(-reduction_db / 20.0) as f32;
                n += 1;
            }
        };
        let t = timing(RATE, &mut exponential).unwrap();
        let at_63 = -(0.37f64).ln();
        assert!((t.attack_s / (at_63 * attack_tau) - 1.0).abs() < 0.01, "{t:?}");
        assert!((t.release_s.unwrap() / (at_63 * release_tau) - 1.0).abs() < 0.01, "{t:?}");
    }

    #[test]
    fn dynamics_step_curves_compare_two_gain_reductions_over_time() {
        let teacher = StepResponse::measure(RATE, &mut *opto(70.0, 0.0));
        assert_eq!(step_curve_differences(RATE, &teacher, &teacher), (0.0, 0.0));
        // The same compressor, 0.5 dB quieter during the release only.
        let model = StepResponse::measure(RATE, &mut *opto_quieter_after_step_down(70.0, 10f32.powf(-0.5 / 20.0)));
        let (attack, release) = step_curve_differences(RATE, &teacher, &model);
        assert!(attack < 1e-9, "{attack}");
        assert!((release - 0.5).abs() < 1e-3, "{release}");
    }
}
