//! The rate adapter never touches the allocator while it runs.
//!
//! [`RateAdapter::process`] runs on the audio thread around the neural amp whenever the sound card and the model
//! disagree on the sample rate, so an allocation or a free in it would be a dropout waiting to happen. This test
//! wraps the system allocator in one that counts every call made on the current thread while it is armed, then
//! plays audio through adapters at the common device rates, in callbacks of every awkward size, resetting them on
//! the way as the engine does after a NaN or on transport stop, and checks that the count stays at zero.

use neuralboard_engine::dsp::resample::RateAdapter;
use neuralboard_tests::alloc_counter::{CountingAllocator, allocator_calls_during};

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

const MODEL_RATE: f32 = 48_000.0;
const MAX_BLOCK: usize = 512;

/// Callback sizes a sound card or host may hand over, including empty, a single sample, odd sizes, the largest,
/// and one larger than promised (which the adapter splits rather than overruns).
const BLOCKS: [usize; 12] = [64, 1, 17, 256, 0, MAX_BLOCK, 3, 129, 2 * MAX_BLOCK + 7, 500, 2, 64];

#[test]
fn the_counting_allocator_sees_allocations_and_frees() {
    let ((), calls) = allocator_calls_during(|| drop(std::hint::black_box(vec![1.0f32; 64])));
    assert!(calls >= 2, "counted {calls} calls for an allocation and a free: the test below would prove nothing");
}

#[test]
fn processing_never_allocates_or_frees_at_any_rate_or_block_size() {
    for device_rate in [44_100.0, 96_000.0, 88_200.0, 192_000.0, 22_050.0, 48_000.0] {
        // Everything that may allocate happens here, before the allocator is armed.
        let mut adapter = RateAdapter::new(device_rate, MODEL_RATE, MAX_BLOCK).unwrap();
        let len: usize = BLOCKS.iter().sum();
        let input: Vec<f32> = (0..len).map(|i| (i as f32 * 0.05).sin() * 0.5).collect();
        let mut output = vec![0.0; len];
        // A stateful, non-linear stand-in for the model, itself allocation-free.
        let mut state = 0.0f32;
        let mut model = |input: &[f32], output: &mut [f32]| {
            for (x, y) in input.iter().zip(output.iter_mut()) {
                state = 0.9 * state + 0.1 * x;
                *y = (3.0 * x).tanh() + state;
            }
        };

        let ((), calls) = allocator_calls_during(|| {
            for round in 0..3 {
                let mut start = 0;
                for block in BLOCKS {
                    adapter.process(&input[start..start + block], &mut output[start..start + block], &mut model);
                    start += block;
                }
                if round == 1 {
                    adapter.reset();
                }
                std::hint::black_box((adapter.latency(), adapter.max_inner_block(), adapter.is_passthrough()));
            }
        });

        assert_eq!(calls, 0, "{device_rate} Hz: {calls} allocator calls on the audio thread");
        // And it did run: the tail of the last round carries the model's output.
        assert!(output[len - 200..].iter().any(|y| y.abs() > 0.1), "{device_rate} Hz: no sound came out");
    }
}
