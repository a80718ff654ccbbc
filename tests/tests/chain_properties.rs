//! Building a board by hand — inserting, removing and dragging pedals around while playing — always leaves the
//! board the player sees (the controller's mirror) and the sound the engine makes in the same order.
//!
//! Order is checked by ear, not by asking the engine: the board is made of `gain` pedals (±12 dB) and `gate`s
//! with distinct thresholds, and a steady probe tone is played after every change. A gate before a cut lets the
//! note through; the same gate after the cut closes on it. The level of the probe at the output therefore depends
//! on the order of the pedals, and the test predicts it from a plain `Vec` model of the board.
//!
//! Levels are chosen so the prediction is exact and robust: the probe sits at -30 dBFS and every gain moves it by
//! a multiple of 12 dB, while every threshold sits 6 dB between two reachable levels, far beyond the envelope
//! follower's ripple. A closed gate attenuates by exactly its range (-60 dB).

use std::collections::HashSet;

use neuralboard_engine::preset::PresetSlot;
use neuralboard_engine::{Controller, Engine, EngineConfig, SlotId};
use neuralboard_tests::{SAMPLE_RATE, frames, peak, preset, preset_slot, render, sine_from};
use proptest::prelude::*;
use proptest::sample::Index;

const MAX_BLOCK: usize = 256;
/// The probe: a 1 kHz tone (exactly 48 samples a period, so a sample lands on every crest) at -30 dBFS.
const PROBE_HZ: f32 = 1000.0;
const PROBE_DB: f32 = -30.0;
/// Output level of the board: keeps the loudest possible probe (-30 + 6 × 12 dB) clear of the safety limiter.
const OUTPUT_DB: f32 = -48.0;
/// Gate attenuation when closed.
const GATE_RANGE_DB: f32 = -60.0;
/// Most pedals on the board in these tests (keeps every level inside the ranges above).
const MAX_PEDALS: usize = 6;
/// Callback sizes the probe is played in.
const BLOCKS: [usize; 3] = [64, 100, 256];

/// A pedal of the test board.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Pedal {
    /// A `gain` pedal.
    Gain { db: f32 },
    /// A `gate` that opens instantly above its threshold, closes below it, and attenuates by [`GATE_RANGE_DB`].
    Gate { threshold_db: f32 },
}

impl Pedal {
    /// The preset entry that builds this pedal with its settings already in place (no parameter glide).
    fn entry(self) -> PresetSlot {
        match self {
            Pedal::Gain { db } => preset_slot(("gain", false, &[("gain_db", db)])),
            Pedal::Gate { threshold_db } => preset_slot((
                "gate",
                false,
                &[
                    ("threshold_db", threshold_db),
                    ("hysteresis_db", 0.0),
                    ("attack_ms", 0.1),
                    ("hold_ms", 0.0),
                    ("release_ms", 5.0),
                    ("range_db", GATE_RANGE_DB),
                ],
            )),
        }
    }
}

/// Output level of the probe (its crest, in dBFS) that a board in this order should give.
fn expected_probe_db(board: &[(SlotId, Pedal)]) -> f32 {
    let mut level = PROBE_DB;
    for (_, pedal) in board {
        match *pedal {
            Pedal::Gain { db } => level += db,
            Pedal::Gate { threshold_db } if level < threshold_db => level += GATE_RANGE_DB,
            Pedal::Gate { .. } => {}
        }
    }
    level + OUTPUT_DB
}

/// A board under test: the engine, its controller, the model of what the board should be, and the probe's
/// running position (so consecutive probes join without a click).
struct Rig {
    engine: Engine,
    controller: Controller,
    model: Vec<(SlotId, Pedal)>,
    probe_position: usize,
}

impl Rig {
    fn new() -> Self {
        let (mut engine, mut controller) = Engine::new(EngineConfig { sample_rate: SAMPLE_RATE, max_block: MAX_BLOCK });
        let board = preset("Test board", 0.0, OUTPUT_DB, &[]);
        drop(engine.install_chain(controller.prepare_preset(&board, None)));
        Self { engine, controller, model: Vec::new(), probe_position: 0 }
    }

    fn insert(&mut self, index: usize, pedal: Pedal) -> SlotId {
        let id = self.controller.insert_slot(index, &pedal.entry(), None).expect("insert");
        self.model.insert(index.min(self.model.len()), (id, pedal));
        id
    }

    fn remove(&mut self, nth: usize) {
        let (id, _) = self.model.remove(nth);
        self.controller.remove_pedal(id).expect("remove");
    }

    fn move_to(&mut self, nth: usize, to: usize) {
        let entry = self.model.remove(nth);
        self.controller.move_pedal(entry.0, to).expect("move");
        self.model.insert(to.min(self.model.len()), entry);
    }

    /// Clears every pedal's state (so each gate starts closed), plays the probe, and returns the crest level of
    /// its last 20 ms in dBFS.
    fn probe_db(&mut self) -> f32 {
        self.controller.reset_all().expect("reset");
        let len = frames(0.06);
        let input = sine_from(PROBE_HZ, 10f32.powf(PROBE_DB / 20.0), self.probe_position, len);
        self.probe_position += len;
        let out = render(&mut self.engine, &input, &BLOCKS);
        self.controller.poll();
        assert_eq!(out.left, out.right, "a mono board plays the same on both sides");
        20.0 * peak(&out.left[len - frames(0.02)..]).max(1e-30).log10()
    }

    /// The mirror matches the model (order, ids, kinds, settings), each pedal is on the board once, and the probe
    /// sounds the way a board in the model's order sounds.
    fn check(&mut self) -> Result<(), TestCaseError> {
        let mirror: Vec<SlotId> = self.controller.slots().iter().map(|s| s.id).collect();
        let model: Vec<SlotId> = self.model.iter().map(|(id, _)| *id).collect();
        prop_assert_eq!(&mirror, &model, "the board shown is the board played");
        let unique: HashSet<SlotId> = mirror.iter().copied().collect();
        prop_assert_eq!(unique.len(), mirror.len(), "every pedal is on the board once");
        for (state, (_, pedal)) in self.controller.slots().iter().zip(&self.model) {
            let (kind, first_value) = match *pedal {
                Pedal::Gain { db } => ("gain", db),
                Pedal::Gate { threshold_db } => ("gate", threshold_db),
            };
            prop_assert_eq!(state.kind(), kind);
            prop_assert_eq!(state.values.first().copied(), Some(first_value));
        }
        let expected = expected_probe_db(&self.model);
        let heard = self.probe_db();
        prop_assert!(
            (heard - expected).abs() < 0.5,
            "the probe plays at {} dBFS, but a board {:?} in this order gives {} dBFS",
            heard,
            self.model,
            expected
        );
        Ok(())
    }
}

/// One change to the board.
#[derive(Debug, Clone)]
enum Op {
    /// Insert at an index (past the end appends).
    Insert { index: usize, pedal: Pedal },
    /// Remove the pedal at a position.
    Remove { nth: Index },
    /// Move the pedal at a position to an index (past the end moves it last).
    Move { nth: Index, to: usize },
}

fn pedal() -> impl Strategy<Value = Pedal> {
    prop_oneof![
        prop::sample::select(vec![-12.0f32, 12.0]).prop_map(|db| Pedal::Gain { db }),
        prop::sample::select(vec![-48.0f32, -36.0, -24.0, -12.0]).prop_map(|threshold_db| Pedal::Gate { threshold_db }),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0..MAX_PEDALS + 2, pedal()).prop_map(|(index, pedal)| Op::Insert { index, pedal }),
        1 => any::<Index>().prop_map(|nth| Op::Remove { nth }),
        2 => (any::<Index>(), 0..MAX_PEDALS + 2).prop_map(|(nth, to)| Op::Move { nth, to }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Batches of changes (each batch reaches the engine in one callback), a probe after each batch.
    #[test]
    fn the_board_shown_is_always_the_board_heard(batches in prop::collection::vec(prop::collection::vec(op(), 1..=3), 1..=16)) {
        let mut rig = Rig::new();
        rig.check()?;
        for batch in batches {
            for op in batch {
                let len = rig.model.len();
                match op {
                    Op::Insert { index, pedal } if len < MAX_PEDALS => {
                        rig.insert(index, pedal);
                    }
                    Op::Remove { nth } if len > 0 => rig.remove(nth.index(len)),
                    Op::Move { nth, to } if len > 0 => rig.move_to(nth.index(len), to),
                    _ => {}
                }
            }
            rig.check()?;
        }
    }
}

/// The audible check can tell orders apart: a gate before a -12 dB cut lets a -30 dBFS note through, the same gate
/// after the cut silences it, and dragging the gate back restores the note.
#[test]
fn moving_a_gate_past_a_cut_decides_whether_a_quiet_note_is_heard() {
    let mut rig = Rig::new();
    let gate = rig.insert(0, Pedal::Gate { threshold_db: -36.0 });
    rig.insert(1, Pedal::Gain { db: -12.0 });
    let passes = rig.probe_db();
    assert!((passes - (PROBE_DB - 12.0 + OUTPUT_DB)).abs() < 0.5, "gate first: {passes} dBFS");

    rig.controller.move_pedal(gate, 1).unwrap();
    let gated = rig.probe_db();
    assert!(gated < passes + GATE_RANGE_DB + 0.5, "gate after the cut closes: {gated} dBFS vs {passes} dBFS");

    rig.controller.move_pedal(gate, 0).unwrap();
    let again = rig.probe_db();
    assert!((again - passes).abs() < 0.01, "moved back: {again} dBFS");
}
