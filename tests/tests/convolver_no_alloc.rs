//! The partitioned convolver and the Cab IR pedal never touch the allocator on the audio thread.
//!
//! An allocation or a free inside the audio callback can take the allocator's lock or page in memory, and one slow
//! call is an audible dropout. This test wraps the system allocator in one that counts every call made on the
//! current thread while a closure marked as audio work runs, then plays responses from one sample to ten seconds
//! through the convolver in blocks of every awkward size, and drives the Cab pedal through playing, knob turns,
//! IR swaps (prepared and collected off the "audio thread"), channel changes and resets. The reverb's bank of
//! responses installs and empties slots while it plays, and the Neural Reverb pedal changes rooms.

use std::path::PathBuf;

use std::sync::Arc;
use std::time::{Duration, Instant};

use neuralboard_engine::dsp::convolver::{Convolver, ConvolverBank, ConvolverIr};
use neuralboard_engine::effects::cab::{Cab, CabIr};
use neuralboard_engine::effects::reverb::{self, Reverb};
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
        let ir = Arc::new(ConvolverIr::new(&noise(len as u32, len)));
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

#[test]
fn a_bank_of_responses_never_allocates_while_slots_change() {
    for len in [1, 9_600, 304_000] {
        let first = Arc::new(ConvolverIr::new(&noise(1, len)));
        let second = Arc::new(ConvolverIr::new(&noise(2, len)));
        let mut bank = ConvolverBank::new(first.clone(), 4);
        let input = noise(7, 20_000);
        let mut outputs = vec![vec![0.0f32; input.len()]; 4];
        let (returned, calls) = allocator_calls_during(|| {
            let [a, b, c, d] = &mut outputs[..] else { unreachable!() };
            let mut returned = Vec::with_capacity(0);
            let mut start = 0;
            for (i, &block) in BLOCKS.iter().cycle().enumerate() {
                if start >= input.len() {
                    break;
                }
                let end = (start + block).min(input.len());
                match i % 5 {
                    1 => returned.extend(bank.install(2, second.clone(), Some(0)).ok().flatten()),
                    // `second` is still held here, so dropping the returned reference frees nothing.
                    3 => assert!(bank.take(2).is_some_and(|ir| Arc::ptr_eq(&ir, &second))),
                    _ => {}
                }
                let mut outs = [&mut a[start..end], &mut b[start..end], &mut c[start..end], &mut d[start..end]];
                bank.process(&input[start..end], &mut outs);
                start = end;
            }
            bank.reset();
            returned
        });
        assert_eq!(calls, 0, "{len}-sample responses: {calls} allocator calls while slots changed");
        assert!(returned.is_empty(), "slot 2 was emptied before each install");
        assert!(outputs.iter().flatten().all(|x| x.is_finite()));
        assert!(outputs[1].iter().all(|&x| x == 0.0), "slot 1 never held a response");
    }
}

#[test]
fn the_reverb_changes_rooms_without_allocating_on_the_audio_thread() {
    let mut pedal = Reverb::new(reverb::builtin().expect("the built-in model"), 48_000.0, 64);
    let param = |id: &str| ParamId(pedal.info().params.iter().position(|p| p.id == id).unwrap() as u16);
    let (x, y, decay) = (param("x"), param("y"), param("decay"));
    let (mut left, mut right) = (noise(1, 64), noise(2, 64));
    for (to_x, to_y, to_decay) in [(0.0, 0.0, 1.0), (100.0, 30.0, 2.0), (40.0, 100.0, 0.5)] {
        let ((), calls) = allocator_calls_during(|| {
            pedal.set_param(x, to_x);
            pedal.set_param(y, to_y);
            pedal.set_param(decay, to_decay);
            pedal.process_stereo(&mut left, &mut right);
        });
        assert_eq!(calls, 0, "asking for a room: {calls} allocator calls");
        // Play while the worker builds the room, then while it is installed and crossfaded in.
        let start = Instant::now();
        while pedal.is_changing() {
            assert!(start.elapsed() < Duration::from_secs(60), "the worker delivers the room");
            let ((), calls) = allocator_calls_during(|| pedal.process_stereo(&mut left, &mut right));
            assert_eq!(calls, 0, "changing room: {calls} allocator calls");
            std::thread::sleep(Duration::from_millis(1));
        }
        // The replaced voice goes back to the worker on the next block.
        let ((), calls) = allocator_calls_during(|| pedal.process_stereo(&mut left, &mut right));
        assert_eq!(calls, 0, "handing the old room back: {calls} allocator calls");
        assert!(left.iter().chain(&right).all(|v| v.is_finite()));
    }
    let ((), calls) = allocator_calls_during(|| pedal.reset());
    assert_eq!(calls, 0, "reset: {calls} allocator calls");
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
