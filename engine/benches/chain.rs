//! Whole-chain cost at 48 kHz with 64-sample blocks: the live configuration.
//!
//! Reports time per block; criterion's throughput line gives samples per second, and real-time factor is that
//! divided by 48 000. Run with `cargo bench -p neuralboard-engine --bench chain` (or `cargo xtask bench`).

use std::hint::black_box;
use std::path::Path;
use std::sync::Arc;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use neuralboard_engine::dsp::convolver::{ConvolverBank, ConvolverIr};
use neuralboard_engine::effects::reverb::Reverb;
use neuralboard_engine::eval::reverb::time_room_change;
use neuralboard_engine::formats::reverb::{self, ReverbFile};
use neuralboard_engine::pedal::Pedal;
use neuralboard_engine::preset::{Preset, PresetSlot};
use neuralboard_engine::{Engine, EngineConfig};

const SR: f32 = 48_000.0;
const BLOCK: usize = 64;

fn guitar_block(offset: usize) -> Vec<f32> {
    (0..BLOCK)
        .map(|i| {
            let t = (offset + i) as f32 / SR;
            0.3 * (std::f32::consts::TAU * 110.0 * t).sin() * (-(t % 1.0) * 2.0).exp()
        })
        .collect()
}

fn bench_preset(c: &mut Criterion, name: &str, preset: &Preset, tuner: bool) {
    let (mut engine, mut controller) = Engine::new(EngineConfig { sample_rate: SR, max_block: BLOCK });
    let swap = controller.prepare_preset(preset, None);
    drop(engine.install_chain(swap));
    controller.set_tuner(tuner, false).unwrap();
    // A second of varied input, cycled.
    let input: Vec<Vec<f32>> = (0..750).map(|b| guitar_block(b * BLOCK)).collect();
    let mut left = vec![0.0; BLOCK];
    let mut right = vec![0.0; BLOCK];
    let mut n = 0;
    let mut group = c.benchmark_group("chain_48k_block64");
    group.throughput(Throughput::Elements(BLOCK as u64));
    group.bench_function(name, |b| {
        b.iter(|| {
            engine.process(black_box(&input[n % input.len()]), &mut left, &mut right);
            n += 1;
            black_box(left[0]);
        })
    });
    group.finish();
    controller.collect_garbage();
}

fn factory(name: &str) -> Preset {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../presets").join(name);
    Preset::load(&path).expect("factory preset").preset
}

fn chain(c: &mut Criterion) {
    bench_preset(c, "empty", &Preset::empty("empty"), false);
    bench_preset(c, "clean-practice", &factory("clean-practice.ron"), false);
    bench_preset(c, "clean-practice+tuner", &factory("clean-practice.ron"), true);
    // Each built-in neural pedal alone (at its default knobs), so its own cost shows: the chain's fixed costs are
    // the "empty" line.
    for kind in ["phaser", "flanger", "compressor", "reverb"] {
        let preset = Preset { chain: vec![PresetSlot::new(kind)], ..Preset::empty(kind) };
        bench_preset(c, kind, &preset, false);
    }
}

/// A decoder of the trained model's shape (2-D latent, 48 bands × 288 frames of 10.7 ms: 3.07 s) whose output is
/// a fixed room, every band decaying 60 dB in 2 s. A cost fixture only: the convolution's cost depends on the
/// response's length, not on what the room sounds like.
fn cost_fixture() -> Arc<ReverbFile> {
    let (bands, frames) = (48usize, 288usize);
    let edges: Vec<f32> = (0..=bands).map(|b| 500.0 * b as f32).collect();
    let frame_s = 512.0 / SR;
    let bias: Vec<f32> = (0..bands * frames).map(|i| -30.0 - 30.0 * (i % frames) as f32 * frame_s).collect();
    let text = serde_json::json!({
        "format": "neuralboard-reverb", "version": 1, "sample_rate": 48000,
        "grid": {"n_fft": 1024, "hop": 512, "frames": frames, "band_edges_hz": edges},
        "db_floor": -120,
        "latent": {"dims": 2, "min": [-3, -3], "max": [3, 3], "default": [0, 0]},
        "decoder": [{"type": "dense", "weight": vec![vec![0.0f32; 2]; bands * frames], "bias": bias},
                    {"type": "reshape", "channels": bands, "frames": frames}]
    })
    .to_string();
    Arc::new(reverb::parse(&text).expect("cost fixture"))
}

/// The reverb at 48 kHz, block 64: playing (stereo, its full-length responses) and changing room (what its worker
/// does between a move of the pad and the new room fading in).
fn reverb(c: &mut Criterion) {
    let file = cost_fixture();
    let mut pedal = Reverb::new(file.clone(), SR, BLOCK);
    let input: Vec<Vec<f32>> = (0..750).map(|b| guitar_block(b * BLOCK)).collect();
    let (mut left, mut right) = (vec![0.0; BLOCK], vec![0.0; BLOCK]);
    let mut n = 0;
    let mut group = c.benchmark_group("reverb_48k_block64");
    group.throughput(Throughput::Elements(BLOCK as u64));
    group.bench_function("play", |b| {
        b.iter(|| {
            left.copy_from_slice(&input[n % input.len()]);
            right.copy_from_slice(&left);
            pedal.process_stereo(black_box(&mut left), black_box(&mut right));
            n += 1;
            black_box(left[0]);
        })
    });
    // While a new room fades in (30 ms) the bank plays four responses: both rooms, left and right.
    let len = pedal.response_len();
    let irs: Vec<Arc<ConvolverIr>> = (0..4).map(|seed| Arc::new(ConvolverIr::new(&room_noise(seed, len)))).collect();
    let mut bank = ConvolverBank::new(irs[0].clone(), 4);
    for (slot, ir) in irs.iter().enumerate().skip(1) {
        let _ = bank.install(slot, ir.clone(), None);
    }
    let mut outputs = [[0.0f32; BLOCK]; 4];
    group.bench_function("play_crossfading", |b| {
        b.iter(|| {
            let [a, b, c, d] = &mut outputs;
            bank.process(black_box(&input[n % input.len()]), &mut [a, b, c, d]);
            n += 1;
            black_box(outputs[3][0]);
        })
    });
    group.finish();
    let mut group = c.benchmark_group("reverb_room_change");
    group.sample_size(10);
    group.bench_function("decode_synthesise_partition", |b| b.iter(|| black_box(time_room_change(&file, SR, 1))));
    // The audio thread's share of a room change: installing the new room's two responses (each copies the playing
    // slot's pending output) and, when the fade ends, emptying the old room's two slots. They happen in different
    // blocks; one iteration does both, so it is an upper bound for either block.
    group.bench_function("audio_thread_install_and_empty", |b| {
        b.iter(|| {
            for side in 0..2 {
                let _ = black_box(bank.install(2 + side, irs[2 + side].clone(), Some(side)));
            }
            for side in 0..2 {
                black_box(bank.take(2 + side));
            }
        })
    });
    group.finish();
}

/// Noise decaying 60 dB over `len` samples: a stand-in response (the cost does not depend on its sound).
fn room_noise(seed: u32, len: usize) -> Vec<f32> {
    let mut state = 0x9E37_79B9u32 ^ seed.wrapping_mul(0x85EB_CA6B);
    let decay = (-6.9 / len.max(1) as f32).exp();
    let mut gain = 1.0f32;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            gain *= decay;
            gain * (state as f32 / u32::MAX as f32 - 0.5)
        })
        .collect()
}

criterion_group!(benches, chain, reverb);
criterion_main!(benches);
