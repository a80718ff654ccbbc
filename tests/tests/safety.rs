//! What protects the player's ears and speakers: a broken pedal cannot send NaN, infinity or a runaway level to
//! the output, footswitches and preset switches do not click, and nothing ever exceeds 0 dBFS.
//!
//! Every render here goes through [`neuralboard_tests::render_with`], which fails the test if any output sample
//! is non-finite or above full scale.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use neuralboard_engine::chain::{BYPASS_FADE_MS, Slot};
use neuralboard_engine::control::Fault;
use neuralboard_engine::dsp::limiter::DEFAULT_CEILING;
use neuralboard_engine::param::db_to_gain;
use neuralboard_engine::pedal::Channels;
use neuralboard_engine::{Command, Controller, Engine, EngineConfig, Event, ParamId, Pedal, PedalInfo, Preset, SlotId};
use neuralboard_tests::{
    SAMPLE_RATE, frames, max_gain_slew, max_step, max_step_at, peak, preset, preset_slot, render_with, sine, square,
};

const MAX_BLOCK: usize = 256;
/// Length of the engine's preset-switch fade (each way). Mirrors the engine's private `SWITCH_FADE_MS`.
const SWITCH_FADE_MS: f32 = 10.0;

fn engine() -> (Engine, Controller) {
    Engine::new(EngineConfig { sample_rate: SAMPLE_RATE, max_block: MAX_BLOCK })
}

/// An engine already playing `preset` (installed before audio, as the app does at start-up).
fn engine_with(preset: &Preset) -> (Engine, Controller) {
    let (mut engine, mut controller) = engine();
    drop(engine.install_chain(controller.prepare_preset(preset, None)));
    (engine, controller)
}

/// Number of samples in `ms` milliseconds.
fn samples(ms: f32) -> f32 {
    ms * 1e-3 * SAMPLE_RATE
}

// ---------------------------------------------------------------------------------------------------------------
// Broken pedals

/// A pedal that halves its input, except on every [`FAULT_EVERY`]-th block (starting with block
/// [`FIRST_FAULT`]), where one sample comes out as `bad`. Counts its resets.
struct Faulty {
    info: PedalInfo,
    bad: f32,
    calls: usize,
    resets: Arc<AtomicUsize>,
}

const FAULT_EVERY: usize = 5;
const FIRST_FAULT: usize = 3;
const FAULTY_ID: SlotId = SlotId(10_000);

impl Faulty {
    fn is_faulty_block(call: usize) -> bool {
        call % FAULT_EVERY == FIRST_FAULT
    }
}

impl Pedal for Faulty {
    fn info(&self) -> &PedalInfo {
        &self.info
    }

    fn prepare(&mut self, _sample_rate: f32, _max_block: usize) {}

    fn set_param(&mut self, _id: ParamId, _value: f32) {}

    fn process(&mut self, block: &mut [f32]) {
        block.iter_mut().for_each(|x| *x *= 0.5);
        if Self::is_faulty_block(self.calls) {
            block[block.len() / 2] = self.bad;
        }
        self.calls += 1;
    }

    fn reset(&mut self) {
        self.resets.fetch_add(1, Ordering::Relaxed);
    }
}

/// Plays a sine through `[Faulty(bad), gain -6 dB]` in blocks the engine does not split, and checks that every
/// faulty block is replaced by the dry signal, the pedal is reset and reported each time, and the rest of the
/// chain (and the faulty pedal itself, on its good blocks) keeps playing.
fn a_pedal_producing(bad: f32) {
    let (mut engine, mut controller) = engine();
    let resets = Arc::new(AtomicUsize::new(0));
    let faulty = Faulty {
        info: PedalInfo {
            pad: None,
            kind: "faulty".into(),
            name: "Faulty".into(),
            params: Vec::new(),
            channels: Channels::Mono,
            model: None,
        },
        bad,
        calls: 0,
        resets: resets.clone(),
    };
    let slot = Slot::new(FAULTY_ID, Box::new(faulty), SAMPLE_RATE, MAX_BLOCK);
    controller.send(Command::InsertSlot { index: 0, slot }).unwrap();
    let after = preset_slot(("gain", false, &[("gain_db", -6.0)]));
    controller.insert_slot(1, &after, None).unwrap();

    const BLOCK: usize = 64;
    let input = sine(440.0, db_to_gain(-12.0), frames(0.5));
    let mut events = Vec::new();
    let out = render_with(&mut engine, &input, &[BLOCK], |_, _| events.extend(controller.poll()));
    events.extend(controller.poll());

    assert_eq!(out.left, out.right);
    let cut = db_to_gain(-6.0);
    let mut faults = 0;
    for (b, (dry, heard)) in input.chunks(BLOCK).zip(out.left.chunks(BLOCK)).enumerate() {
        let faulty = Faulty::is_faulty_block(b);
        faults += usize::from(faulty);
        let pedal = if faulty { 1.0 } else { 0.5 };
        for (i, (&x, &y)) in dry.iter().zip(heard).enumerate() {
            let expected = x * pedal * cut;
            assert!(
                (y - expected).abs() <= 1e-6,
                "bad value {bad}: block {b} (faulty: {faulty}), sample {i}: {y} instead of {expected}"
            );
        }
    }
    assert_eq!(resets.load(Ordering::Relaxed), faults, "bad value {bad}: the pedal is reset after each fault");
    let reported: Vec<_> = events.iter().filter(|e| matches!(e, Event::PedalFault { .. })).collect();
    assert_eq!(reported.len(), faults, "bad value {bad}: one fault event per faulty block");
    assert!(
        reported.iter().all(|e| **e == Event::PedalFault { slot: FAULTY_ID, fault: Fault::BadOutput }),
        "bad value {bad}: faults name the faulty slot: {reported:?}"
    );
    assert_eq!(controller.telemetry().dropped_events, 0);
}

#[test]
fn a_pedal_that_outputs_nan_or_infinity_is_replaced_by_the_dry_signal_reset_and_reported() {
    for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
        a_pedal_producing(bad);
    }
}

#[test]
fn a_pedal_with_a_runaway_level_is_treated_like_one_that_outputs_nan() {
    a_pedal_producing(1e6);
    a_pedal_producing(-1e6);
}

// ---------------------------------------------------------------------------------------------------------------
// Clicks

/// Where a switch takes effect (a sample index) and the state from there on.
type Switches = Vec<(usize, bool)>;

/// The output an instant switch would give: `a` where the state is false, `b` where it is true.
fn hard_switched(a: &[f32], b: &[f32], initial: bool, switches: &Switches) -> Vec<f32> {
    let mut state = initial;
    let mut next = switches.iter().peekable();
    (0..a.len())
        .map(|i| {
            while let Some(&&(at, s)) = next.peek() {
                if at > i {
                    break;
                }
                state = s;
                next.next();
            }
            if state { b[i] } else { a[i] }
        })
        .collect()
}

/// Checks each stretch between switches that lasted longer than `settle` samples ends at `level(state)`.
fn assert_settled_levels(out: &[f32], switches: &Switches, initial: bool, settle: usize, level: impl Fn(bool) -> f32) {
    let mut bounds = vec![(0, initial)];
    bounds.extend(switches.iter().copied());
    bounds.push((out.len(), false));
    let window = frames(0.005);
    for w in bounds.windows(2) {
        let ((start, state), (end, _)) = (w[0], w[1]);
        if end - start > settle + window {
            let heard = peak(&out[end - window..end]);
            let expected = level(state);
            assert!(
                (heard - expected).abs() < 0.02 * expected,
                "samples {start}..{end} (state {state}): peak {heard}, expected {expected}"
            );
        }
    }
}

#[test]
fn bypassing_a_boost_does_not_click() {
    // +12 dB on a -12 dBFS note; the output level keeps the boosted note (0 dBFS) clear of the safety limiter, so
    // what is measured is the bypass crossfade alone.
    let output_db = -6.0;
    let (mut engine, mut controller) =
        engine_with(&preset("Test", 0.0, output_db, &[("gain", false, &[("gain_db", 12.0)])]));
    let boost = controller.slots()[0].id;
    let input = sine(440.0, db_to_gain(-12.0), frames(2.0));
    let quiet: Vec<f32> = input.iter().map(|x| x * db_to_gain(output_db)).collect();
    let loud: Vec<f32> = input.iter().map(|x| x * db_to_gain(12.0 + output_db)).collect();

    // A footswitch pressed every ~49 ms, with a burst of presses in the middle of fades.
    let mut switches = Switches::new();
    let mut engaged = true;
    let out = render_with(&mut engine, &input, &[64], |block, offset| {
        if block % 37 == 20 || ((600..=612).contains(&block) && block % 3 == 0) {
            engaged = !engaged;
            controller.set_bypass(boost, !engaged).unwrap();
            switches.push((offset, engaged));
        }
        controller.poll();
    });
    assert!(switches.len() > 30);

    let fade = samples(BYPASS_FADE_MS);
    let steady = max_step(&loud);
    let level_change = peak(&loud) - peak(&quiet);
    let bound = steady + level_change / fade + 1e-4;
    let heard = max_step(&out.left);
    assert!(
        heard <= bound,
        "bypass clicks: step of {heard} at sample {}, the steady boosted note steps by at most {steady} and a \
         {BYPASS_FADE_MS} ms crossfade adds at most {}",
        max_step_at(&out.left),
        level_change / fade
    );
    let instant = max_step(&hard_switched(&quiet, &loud, true, &switches));
    assert!(instant > 4.0 * bound, "the test would notice a hard switch: {instant} vs bound {bound}");
    // The step bound is dominated by the note's own slope; the gain's glide shows a too-short fade directly.
    let (quiet_gain, loud_gain) = (db_to_gain(output_db), db_to_gain(12.0 + output_db));
    let slew = max_gain_slew(&input, &out.left, 0.1 * peak(&input));
    let fastest = (loud_gain - quiet_gain) / fade;
    assert!(slew <= fastest * 1.01 + 1e-5, "the bypass fades faster than {BYPASS_FADE_MS} ms: {slew} > {fastest}");
    assert_settled_levels(&out.left, &switches, true, fade as usize, |engaged| {
        peak(if engaged { &loud } else { &quiet })
    });
}

#[test]
fn switching_presets_while_playing_does_not_click() {
    let boosted = preset("Test", 0.0, -6.0, &[("gain", false, &[("gain_db", 12.0)])]);
    let soft = preset("Test", 0.0, 0.0, &[("gain", false, &[("gain_db", -6.0)]), ("gain", true, &[("gain_db", 6.0)])]);
    let (mut engine, mut controller) = engine_with(&boosted);
    let input = sine(440.0, db_to_gain(-12.0), frames(1.5));
    let sound_of_boosted: Vec<f32> = input.iter().map(|x| x * db_to_gain(12.0 - 6.0)).collect();
    let sound_of_soft: Vec<f32> = input.iter().map(|x| x * db_to_gain(-6.0)).collect();

    // (block, true = soft): the last two arrive one block apart, the second while the first still fades out.
    let schedule = [(200, true), (500, false), (800, true), (1000, false), (1001, true)];
    let mut switches = Switches::new();
    let mut loaded = 0;
    let out = render_with(&mut engine, &input, &[64], |block, offset| {
        if let Some(&(_, to_soft)) = schedule.iter().find(|(b, _)| *b == block) {
            controller.load_preset(if to_soft { &soft } else { &boosted }, None).unwrap();
            switches.push((offset, to_soft));
        }
        loaded += controller.poll().iter().filter(|e| **e == Event::ChainLoaded).count();
    });
    assert_eq!(loaded, 4, "each switch played, the superseded one skipped");

    let fade = samples(SWITCH_FADE_MS);
    let steady = max_step(&sound_of_boosted).max(max_step(&sound_of_soft));
    let loudest = peak(&sound_of_boosted).max(peak(&sound_of_soft));
    let bound = steady + loudest / fade + 1e-4;
    let heard = max_step(&out.left);
    assert!(
        heard <= bound,
        "preset switch clicks: step of {heard} at sample {}, bound {bound}",
        max_step_at(&out.left)
    );
    let instant = max_step(&hard_switched(&sound_of_boosted, &sound_of_soft, false, &switches));
    assert!(instant > 3.0 * bound, "the test would notice a hard switch: {instant} vs bound {bound}");
    let slew = max_gain_slew(&input, &out.left, 0.1 * peak(&input));
    let fastest = db_to_gain(12.0 - 6.0) / fade;
    assert!(slew <= fastest * 1.01 + 1e-5, "the switch fades faster than {SWITCH_FADE_MS} ms: {slew} > {fastest}");
    assert_settled_levels(&out.left, &switches, false, 2 * fade as usize + 64, |soft| {
        peak(if soft { &sound_of_soft } else { &sound_of_boosted })
    });
}

// ---------------------------------------------------------------------------------------------------------------
// Level

#[test]
fn a_full_scale_square_boosted_by_48_db_never_exceeds_0_dbfs() {
    let (mut engine, mut controller) =
        engine_with(&preset("Test", 24.0, 0.0, &[("gain", false, &[("gain_db", 24.0)])]));
    let input = square(110.0, 1.0, frames(1.0));
    let mut faults = 0;
    let out = render_with(&mut engine, &input, &[1, 64, 256, 1000], |_, _| {
        faults += controller.poll().iter().filter(|e| matches!(e, Event::PedalFault { .. })).count();
    });
    let loudest = peak(&out.left).max(peak(&out.right));
    assert!(loudest <= DEFAULT_CEILING, "peak {loudest} above the limiter's ceiling");
    assert!(loudest > 0.9, "still loud, not muted: peak {loudest}");
    let tail = &out.left[frames(0.5)..];
    assert!(peak(tail) > 0.9, "the square keeps playing at the ceiling");
    assert!(controller.telemetry().limiter_gain < 0.01, "the safety limiter is doing the work");
    assert_eq!(faults, 0, "+48 dB is loud, not broken");
}
