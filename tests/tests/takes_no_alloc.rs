//! The take tap never touches the allocator on the audio thread: idle, recording, and with the ring full.
//!
//! [`TakeTap::push`] runs in every audio callback, so an allocation or a free in it would be a dropout waiting to
//! happen. The writer thread and the recorder may allocate; they run elsewhere, and this count is per thread.
//!
//! [`TakeTap::push`]: neuralboard_engine::takes::TakeTap::push

use neuralboard_engine::takes::{TakeRecorder, TakeStatus};
use neuralboard_tests::alloc_counter::{CountingAllocator, allocator_calls_during};

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

const RATE: u32 = 48_000;
const MAX_BLOCK: usize = 512;

/// Callback sizes a sound card or host may hand over, including empty, a single sample and the largest.
const BLOCKS: [usize; 10] = [64, 1, 17, 256, 0, MAX_BLOCK, 3, 129, 500, 64];

#[test]
fn the_counting_allocator_sees_allocations_and_frees() {
    let ((), calls) = allocator_calls_during(|| drop(std::hint::black_box(vec![1.0f32; 64])));
    assert!(calls >= 2, "counted {calls} calls for an allocation and a free: the test below would prove nothing");
}

#[test]
fn pushing_blocks_never_allocates_or_frees_idle_recording_or_overrunning() {
    let folder = std::env::temp_dir().join(format!("nb-takes-no-alloc-{}", std::process::id()));
    let (mut recorder, mut tap) = TakeRecorder::new(RATE, MAX_BLOCK);
    let dry: Vec<f32> = (0..MAX_BLOCK).map(|i| (i as f32 * 0.05).sin() * 0.5).collect();
    let (left, right): (Vec<f32>, Vec<f32>) = dry.iter().map(|x| (0.8 * x, -0.8 * x)).unzip();
    let mut play = |rounds: usize| {
        for _ in 0..rounds {
            for n in BLOCKS {
                tap.push(&dry[..n], &left[..n], &right[..n]);
            }
        }
    };

    let ((), idle) = allocator_calls_during(|| play(10));
    assert_eq!(idle, 0, "{idle} allocator calls while no take runs");

    recorder.start(&folder).unwrap();
    // Far faster than real time: about 17 s of audio in a few milliseconds, so the ring (4 s) fills and the
    // overrun path runs too.
    let ((), recording) = allocator_calls_during(|| play(500));
    assert_eq!(recording, 0, "{recording} allocator calls while recording");
    assert_eq!(recorder.status(), TakeStatus::Recording);
    assert!(recorder.overruns() > 0, "the ring never filled: the overrun path was not exercised");

    let summary = recorder.stop().unwrap();
    let fed: usize = 500 * BLOCKS.iter().sum::<usize>();
    assert_eq!(summary.frames + summary.overruns, fed as u64);
    std::fs::remove_dir_all(&folder).unwrap();
}
