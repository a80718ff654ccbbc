//! The partitioned convolver and the Cab IR pedal never touch the allocator on the audio thread.
//!
//! An allocation or a free inside the audio callback can take the allocator's lock or page in memory, and one slow
//! call is an audible dropout. This test wraps the system allocator in one that counts every call made on the
//! current thread while a closure marked as audio work runs, then plays responses from one sample to ten seconds
//! through the convolver in blocks of every awkward size, and drives the Cab pedal through playing, knob turns,
//! IR swaps (prepared and collected off the "audio thread"), channel changes and resets.

use std::path::PathBuf;

use neuralboard_engine::dsp::convolver::{Convolver, ConvolverIr};
use neuralboard_engine::effects::cab::{Cab, CabIr};
use neuralboard_engine::param::ParamId;
use neuralboard_engine::pedal::Pedal;
use neuralboard_tests::alloc_counter::{CountingAllocator, allocator_calls_during};

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

fn noise(seed: u32, len: usize) -> Vec<f32> {
    let mut state = seed.max(1);
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            state as f32 / u32::MAX as f32 - 0.5
        })
        .collect()
}

/// Block sizes a host, the engine's splitter or a render might use, awkward ones included.
const BLOCKS: [usize; 8] = [64, 1, 17, 256, 4096, 1000, 63, 65];

#[test]
fn the_counter_sees_an_allocation() {
    let (v, calls) = allocator_calls_during(|| vec![1.0f32; 16]);
    assert!(calls >= 1, "the counting allocator must see audio-thread allocations");
    drop(v);
}

#[test]
fn the_convolver_never_allocates_while_processing() {
    // One tap, exactly the head, a 200 ms cab, a 3 s reverb and 10 s at 96 kHz (the loader's limit).
    for len in [1, 64, 9_600, 144_000, 960_000] {
        let ir = std::sync::Arc::new(ConvolverIr::new(&noise(len as u32, len)));
        let mut conv = Convolver::with_ir(ir.clone());
        let mut other = Convolver::with_ir(ir);
        let input = noise(7, 70_000);
        let mut output = vec![0.0f32; input.len()];
        let ((), calls) = allocator_calls_during(|| {
            let mut start = 0;
            for &block in BLOCKS.iter().cycle() {
                if start >= input.len() {
                    break;
                }
                let end = (start + block).min(input.len());
                conv.process(&input[start..end], &mut output[start..end]);
                start = end;
            }
            conv.process_in_place(&mut output[..300]);
            other.copy_state_from(&conv);
            conv.reset();
        });
        assert_eq!(calls, 0, "{len}-tap response: {calls} allocator calls while processing");
        assert!(output.iter().all(|x| x.is_finite()));
    }
}

fn write_ir(name: &str, channels: &[Vec<f32>]) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("neuralboard-no-alloc-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    let spec = hound::WavSpec {
        channels: channels.len() as u16,
        sample_rate: 44_100,
        bits_per_sample: 32,
        sample_format: hound::SampleFormat::Float,
    };
    let mut writer = hound::WavWriter::create(&path, spec).unwrap();
    for i in 0..channels[0].len() {
        for c in channels {
            writer.write_sample(c[i]).unwrap();
        }
    }
    writer.finalize().unwrap();
    path
}

fn decaying(seed: u32, len: usize) -> Vec<f32> {
    noise(seed, len).iter().enumerate().map(|(i, x)| x * (-(i as f32) / 1500.0).exp()).collect()
}

#[test]
fn the_cab_pedal_never_allocates_while_playing_swapping_and_turning_knobs() {
    const SR: f32 = 48_000.0;
    let mono = write_ir("mono.wav", &[decaying(1, 8_000)]);
    let stereo = write_ir("stereo.wav", &[decaying(2, 6_000), decaying(3, 6_000)]);
    let mut cab = Cab::load(&mono, SR, 256).unwrap();
    cab.prepare(SR, 256);
    // Prepared off the audio thread, like the loader thread would.
    let mut prepared: Vec<Box<CabIr>> =
        [&stereo, &mono, &stereo, &mono].iter().map(|path| Box::new(CabIr::load(path, SR).unwrap())).collect();
    let mut garbage: Vec<Box<CabIr>> = Vec::with_capacity(16);
    let mut left = noise(4, 4096);
    let mut right = noise(5, 4096);
    let mut total = 0;
    for round in 0..40 {
        let next = if round % 8 == 0 { prepared.pop() } else { None };
        let block = BLOCKS[round % BLOCKS.len()].min(left.len());
        let ((handed_back, retired), calls) = allocator_calls_during(|| {
            let handed_back = next.and_then(|ir| cab.swap_ir(ir));
            cab.set_param(ParamId(0), -6.0 + round as f32 * 0.3);
            cab.set_param(ParamId(1), 20.0 + round as f32 * 10.0);
            cab.set_param(ParamId(2), 20_000.0 - round as f32 * 400.0);
            if round % 3 == 0 {
                cab.process(&mut left[..block]);
            } else {
                cab.process_stereo(&mut left[..block], &mut right[..block]);
            }
            if round == 30 {
                cab.reset();
            }
            (handed_back, cab.take_retired())
        });
        total += calls;
        // Dropped here, off the audio thread.
        garbage.extend(handed_back);
        garbage.extend(retired);
        assert!(left.iter().chain(&right).all(|x| x.is_finite()));
    }
    assert_eq!(total, 0, "{total} allocator calls on the audio thread");
    assert!(!garbage.is_empty(), "swaps happened and the replaced responses came back");
}
