//! Whole-chain cost at 48 kHz with 64-sample blocks: the live configuration.
//!
//! Reports time per block; criterion's throughput line gives samples per second, and real-time factor is that
//! divided by 48 000. Run with `cargo bench -p neuralboard-engine --bench chain` (or `cargo xtask bench`).

use std::hint::black_box;
use std::path::Path;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
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
    for kind in ["phaser", "flanger", "compressor"] {
        let preset = Preset { chain: vec![PresetSlot::new(kind)], ..Preset::empty(kind) };
        bench_preset(c, kind, &preset, false);
    }
}

criterion_group!(benches, chain);
criterion_main!(benches);
