//! MIDI parsing and routing never touch the allocator.
//!
//! The MIDI input callback turns bytes into actions for the engine while the player stomps and turns knobs; it runs
//! on a driver thread that must not stall, so [`MidiParser::feed`] and [`MidiRouter::handle`] allocate nothing —
//! including when a MIDI learn completes and when a learned CC is upgraded to 14 bits.

use neuralboard_engine::midi::{Curve, Mapping, MidiMap, MidiParser, MidiRouter, Source, SourceKind, Target};
use neuralboard_tests::alloc_counter::{CountingAllocator, allocator_calls_during};

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

#[test]
fn the_counting_allocator_sees_allocations_and_frees() {
    let ((), calls) = allocator_calls_during(|| drop(std::hint::black_box(vec![1u8; 64])));
    assert!(calls >= 2, "counted {calls} calls for an allocation and a free: the test below would prove nothing");
}

#[test]
fn feeding_bytes_and_routing_messages_never_allocates() {
    let param = |slot, id: &str| Target::Param { slot, param: id.into(), min: 0.0, max: 1.0, curve: Curve::Log };
    let mappings: Vec<Mapping> = (0..20u8)
        .map(|i| Mapping { source: Source { channel: None, kind: SourceKind::Cc(i) }, target: param(i as usize, "x") })
        .collect();
    let mut router = MidiRouter::new(MidiMap { mappings, program_change_channel: None });
    let mut parser = MidiParser::new();
    router.learn(param(30, "learned"));
    // Running status, a SysEx, a note, a real-time byte inside a message, bank select + program change, a stray
    // data byte, then sweeps of a 14-bit pair, pitch bend and a sustain-style switch.
    let mut bytes =
        vec![0xB0, 25, 64, 57, 3, 0xF0, 1, 2, 3, 0xF7, 0x90, 60, 100, 0xF8, 60, 0, 0xB0, 0, 1, 32, 2, 0xC0, 5, 0x05];
    for v in 0..128u8 {
        bytes.extend([0xB0, 7, v, 39, v, 0xE0, v, v, 0xB0, 64, v]);
    }
    let mut actions = 0;
    let ((), calls) = allocator_calls_during(|| {
        for _ in 0..10 {
            parser.feed(&bytes, |m| router.handle(&m, |_| actions += 1));
        }
    });
    assert_eq!(calls, 0, "allocator called {calls} times while routing {actions} actions");
    assert!(actions > 1000, "the stream drove the mappings ({actions} actions)");
    assert!(router.map().mappings.iter().any(|m| m.source.kind == SourceKind::Cc14(25)), "learned as 14-bit");
}
