//! Zero-latency partitioned convolution, for cabinet impulse responses and the reverb.
//!
//! A guitarist hears latency in the monitor long before a listener would, so the output for input sample `t` must
//! appear at output sample `t`, not a block later. A plain FFT convolver has to wait for a whole block of input
//! before it can transform it; this one splits the impulse response into pieces that each get the cheapest method
//! that still meets its deadline:
//!
//! - **Head** (taps `0..HEAD_LEN`): a direct-form FIR, sample by sample. Only these taps need input that arrived in
//!   the current block, so only they must be computed in the time domain.
//! - **Stage 0** (taps `HEAD_LEN..8 * HEAD_LEN`): uniform partitions of `HEAD_LEN`, overlap-save with a
//!   frequency-domain delay line. Its output for the next `HEAD_LEN` samples only needs input that is already
//!   complete, so it is computed at once whenever a block of `HEAD_LEN` inputs completes.
//! - **Later stages**: partitions four times longer each stage (up to [`MAX_PARTITION`]), each starting at twice
//!   its partition size into the response. That offset leaves one whole partition period between the moment a
//!   stage's input block is complete and the moment its output is due, so its work — one forward FFT, the
//!   partition products, one inverse FFT — is spread over that period in steps of `HEAD_LEN` samples instead of
//!   landing in one callback. The forward and inverse transforms of different stages are put on different steps.
//!
//! With uniform 64-sample partitions a 3 s response at 48 kHz would take 2250 spectrum products of 65 bins per
//! block, about 2300 complex multiply-adds per sample; with partitions growing fourfold per stage it takes about
//! 32 per sample plus five FFT pairs, so the cost grows little with length: at block 64 a 200 ms cab and a 3 s
//! reverb both take under 0.5 % of a core. The largest lump of work on one step is one 32768-point FFT (50–70 µs
//! on the development machine).
//!
//! Callers may pass blocks of any length (1 sample, 17, 4096): the convolver works in steps of `HEAD_LEN` inside
//! and needs no prepared maximum block. Everything is allocated in the constructor; [`Convolver::process`] neither
//! allocates nor locks. The impulse response itself lives in an [`Arc<ConvolverIr>`], so the two channels of a
//! stereo chain can share one set of spectra.
//!
//! A [`ConvolverBank`] plays one input through several responses of one length (a reverb's left and right, and
//! the next room's while it fades in): the input's delay lines and forward transforms are shared, and a response
//! put into a free slot plays over the whole past input at once. [`Convolver`] is a bank of one.

use std::sync::Arc;

use realfft::num_complex::Complex;
use realfft::{ComplexToReal, RealFftPlanner, RealToComplex};

/// Taps computed directly, and the smallest FFT partition. 64 taps cost 64 multiply-adds per sample, which
/// vectorise well, and a 128-point FFT pair per 64 samples is cheap; halving it would double the FFT calls
/// per sample, doubling it would double the direct-form work.
pub const HEAD_LEN: usize = 64;

/// Each stage's partitions are this many times longer than the previous stage's. Four keeps the number of
/// stages small (five cover 3 s at 48 kHz) while each stage still holds six partitions, enough for the longer
/// partitions to pay off.
const STAGE_GROWTH: usize = 4;

/// Longest partition. Longer ones would save multiply-adds on very long responses but make each FFT a bigger
/// lump of work in one callback; a 32768-point real FFT is a few tens of microseconds.
pub const MAX_PARTITION: usize = 16_384;

const ZERO: Complex<f32> = Complex { re: 0.0, im: 0.0 };

/// An impulse response cut into partitions and transformed, ready to be played by one or more [`Convolver`]s.
/// Building it runs every partition's FFT: do it off the audio thread.
pub struct ConvolverIr {
    len: usize,
    /// The first `min(len, HEAD_LEN)` taps, reversed so the direct-form FIR is a forward dot product.
    head: Vec<f32>,
    stages: Vec<StageIr>,
}

/// One uniform run of FFT partitions.
struct StageIr {
    /// Partition length `P`; the FFT length is `2 P`.
    size: usize,
    partitions: usize,
    /// Samples from the input to the first output this stage contributes (its first tap).
    offset: usize,
    /// `partitions` spectra of `size + 1` bins each, with the inverse FFT's `1 / 2P` already folded in.
    spectra: Vec<Complex<f32>>,
    forward: Arc<dyn RealToComplex<f32>>,
    inverse: Arc<dyn ComplexToReal<f32>>,
}

/// Where each stage sits in the response: `(partition size, offset of its first tap, partitions)`.
fn layout(len: usize) -> Vec<(usize, usize, usize)> {
    let mut stages = Vec::new();
    let mut offset = HEAD_LEN;
    let mut size = HEAD_LEN;
    while offset < len {
        let next = (size * STAGE_GROWTH).min(MAX_PARTITION);
        // A stage of size `next` can start at `2 * next`; until then this one covers the response.
        let end = if next > size { len.min(2 * next) } else { len };
        let partitions = (end - offset).div_ceil(size);
        stages.push((size, offset, partitions));
        offset += partitions * size;
        size = next;
    }
    stages
}

impl ConvolverIr {
    /// Partitions and transforms `ir`. An empty response is allowed and plays silence.
    pub fn new(ir: &[f32]) -> Self {
        let len = ir.len();
        let head = ir[..len.min(HEAD_LEN)].iter().rev().copied().collect();
        let mut planner = RealFftPlanner::<f32>::new();
        let stages = layout(len)
            .into_iter()
            .map(|(size, offset, partitions)| {
                let forward = planner.plan_fft_forward(2 * size);
                let inverse = planner.plan_fft_inverse(2 * size);
                let bins = size + 1;
                let mut spectra = vec![ZERO; partitions * bins];
                let mut time = vec![0.0f32; 2 * size];
                let mut scratch = forward.make_scratch_vec();
                let scale = 1.0 / (2 * size) as f32;
                for (j, spectrum) in spectra.chunks_exact_mut(bins).enumerate() {
                    time.fill(0.0);
                    let start = offset + j * size;
                    let taps = &ir[start..len.min(start + size)];
                    for (t, &h) in time.iter_mut().zip(taps) {
                        *t = h * scale;
                    }
                    forward.process_with_scratch(&mut time, spectrum, &mut scratch).expect("buffers sized by the plan");
                }
                StageIr { size, partitions, offset, spectra, forward, inverse }
            })
            .collect();
        Self { len, head, stages }
    }

    /// Length of the impulse response in samples.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// The input side of one stage, shared by every response a [`ConvolverBank`] plays: its delay line of input
/// spectra and the job in progress.
struct StageState {
    /// Partition length `P`.
    size: usize,
    partitions: usize,
    /// `P / HEAD_LEN`: the steps one job is spread over.
    steps_per_job: usize,
    /// Step of the current job, `0..steps_per_job`. Step 0 transforms the new input, the last step the output.
    step: usize,
    /// The step a freshly reset stage starts at, chosen so stages transform on different steps.
    first_step: usize,
    /// Partition products done so far in the current job (the same for every response).
    done: usize,
    /// Slot of the delay line holding the newest input spectrum.
    newest: usize,
    /// How far ahead of the current sample the finished job's output starts.
    write_ahead: usize,
    /// FFT input and output, `2 P`: the forward transform's at step 0, then each response's inverse in turn.
    time: Vec<f32>,
    /// Frequency-domain delay line: `partitions` input spectra of `P + 1` bins, a ring.
    history: Vec<Complex<f32>>,
    forward: Arc<dyn RealToComplex<f32>>,
    inverse: Arc<dyn ComplexToReal<f32>>,
}

/// What one response of a bank does not share with the others.
struct Slot {
    ir: Option<Arc<ConvolverIr>>,
    /// Per stage, the sum of the partition products of the current job, `P + 1` bins.
    accumulators: Vec<Vec<Complex<f32>>>,
    /// FFT stages' output waiting to be played, a power-of-two ring indexed by sample time.
    output: Vec<f32>,
}

/// One input played through several responses of the same length at once, each to its own output: the input's
/// history (the delay lines of input spectra, by far the largest state) and its forward transforms are shared, so
/// every further response costs only its partition products and inverse transforms.
///
/// A response can be put into a free slot while the bank plays ([`ConvolverBank::install`]); it plays at once
/// over the whole past input, so a reverb whose room changes keeps ringing with the new room's tail. Installing
/// copies only the slot's pending output (about 300 kB at 48 kHz), never the history.
pub struct ConvolverBank {
    /// Length every response in the bank has (their partitions must line up).
    len: usize,
    stages: Vec<StageState>,
    slots: Vec<Slot>,
    /// The last `HEAD_LEN - 1` inputs before the current step, then the current step's inputs so far.
    head_history: Vec<f32>,
    /// Samples into the current step, `0..HEAD_LEN`.
    pos: usize,
    /// Samples processed since the last reset (wrapping; only its value modulo the ring sizes matters).
    now: usize,
    /// Recent input, a power-of-two ring long enough for the largest stage's FFT window.
    input: Vec<f32>,
    scratch: Vec<Complex<f32>>,
}

impl ConvolverBank {
    /// A bank of `slots` responses of `first`'s length, `first` playing in slot 0 and the others empty. Allocates
    /// every buffer the bank will use: off the audio thread.
    pub fn new(first: Arc<ConvolverIr>, slots: usize) -> Self {
        let largest = first.stages.iter().map(|s| s.size).max().unwrap_or(HEAD_LEN);
        let scratch_len =
            first.stages.iter().flat_map(|s| [s.forward.get_scratch_len(), s.inverse.get_scratch_len()]).max();
        let stages: Vec<StageState> = first
            .stages
            .iter()
            .enumerate()
            .map(|(index, s)| {
                let steps_per_job = s.size / HEAD_LEN;
                // The step before the job's output is due: `offset - size` samples after the input completed.
                let write_ahead = s.offset - s.size - (steps_per_job - 1) * HEAD_LEN;
                // Stagger the transforms: stage i transforms on step 2i of its cycle, its inverse a step earlier.
                let first_step = (steps_per_job - (2 * index) % steps_per_job) % steps_per_job;
                StageState {
                    size: s.size,
                    partitions: s.partitions,
                    steps_per_job,
                    step: first_step,
                    first_step,
                    done: 0,
                    newest: 0,
                    write_ahead,
                    time: vec![0.0; 2 * s.size],
                    history: vec![ZERO; s.partitions * (s.size + 1)],
                    forward: s.forward.clone(),
                    inverse: s.inverse.clone(),
                }
            })
            .collect();
        let output_len = (largest + 2 * HEAD_LEN).next_power_of_two();
        let slots = (0..slots.max(1))
            .map(|_| Slot {
                ir: None,
                accumulators: stages.iter().map(|s| vec![ZERO; s.size + 1]).collect(),
                output: vec![0.0; output_len],
            })
            .collect();
        let mut bank = Self {
            len: first.len,
            stages,
            slots,
            head_history: vec![0.0; 2 * HEAD_LEN - 1],
            pos: 0,
            now: 0,
            input: vec![0.0; (2 * largest).next_power_of_two()],
            scratch: vec![ZERO; scratch_len.unwrap_or(0)],
        };
        bank.slots[0].ir = Some(first);
        bank
    }

    /// Length of the responses this bank plays, in samples.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn slots(&self) -> usize {
        self.slots.len()
    }

    /// The response playing in `slot`, if any.
    pub fn ir(&self, slot: usize) -> Option<&Arc<ConvolverIr>> {
        self.slots.get(slot).and_then(|s| s.ir.as_ref())
    }

    /// Puts `ir` into `slot`; from the next sample it plays over the bank's whole input history. Real-time safe:
    /// copies, never allocates, and returns what the slot held (drop it off the audio thread, or make sure another
    /// owner holds it). A response of another length, or a slot that does not exist, is refused and handed back.
    ///
    /// Output already computed for the coming samples cannot be recomputed for the new response within a block,
    /// so the slot takes `continue_from`'s (or silence): for up to two partition periods (at most
    /// 2 × [`MAX_PARTITION`] samples) part of the late tail is still that slot's response, which a crossfade from
    /// that slot to this one covers.
    pub fn install(
        &mut self,
        slot: usize,
        ir: Arc<ConvolverIr>,
        continue_from: Option<usize>,
    ) -> Result<Option<Arc<ConvolverIr>>, Arc<ConvolverIr>> {
        if ir.len != self.len || slot >= self.slots.len() {
            return Err(ir);
        }
        match continue_from.filter(|&from| from != slot && from < self.slots.len()) {
            Some(from) => {
                let (target, source) = pair_mut(&mut self.slots, slot, from);
                for (mine, theirs) in target.accumulators.iter_mut().zip(&source.accumulators) {
                    mine.copy_from_slice(theirs);
                }
                target.output.copy_from_slice(&source.output);
            }
            None => self.slots[slot].clear(),
        }
        Ok(self.slots[slot].ir.replace(ir))
    }

    /// Empties `slot` (it plays silence) and returns its response: drop it off the audio thread, or make sure
    /// another owner holds it.
    pub fn take(&mut self, slot: usize) -> Option<Arc<ConvolverIr>> {
        let slot = self.slots.get_mut(slot)?;
        slot.clear();
        slot.ir.take()
    }

    /// Convolves `input` with every slot's response into the matching buffer of `outputs` (an empty slot writes
    /// silence). Each output must be at least as long as `input`; slots beyond `outputs` are played and discarded.
    /// Any length; real-time safe.
    pub fn process(&mut self, input: &[f32], outputs: &mut [&mut [f32]]) {
        debug_assert!(outputs.iter().all(|o| o.len() >= input.len()));
        let mut start = 0;
        while start < input.len() {
            let n = (input.len() - start).min(HEAD_LEN - self.pos);
            let history_at = self.push(&input[start..start + n]);
            for slot in 0..self.slots.len() {
                match outputs.get_mut(slot) {
                    Some(out) => self.render(slot, history_at, &mut out[start..start + n]),
                    None => self.discard(slot, n),
                }
            }
            self.advance(n);
            start += n;
        }
    }

    /// Clears the signal state: what plays next is as if the input had been silent forever. Real-time safe but
    /// proportional to the response: it writes every buffer (about 20 µs for a 200 ms cab; a 10 s response at
    /// 96 kHz has about 16 MB to clear).
    pub fn reset(&mut self) {
        for stage in &mut self.stages {
            stage.step = stage.first_step;
            stage.done = 0;
            stage.newest = 0;
            stage.time.fill(0.0);
            stage.history.fill(ZERO);
        }
        for slot in &mut self.slots {
            slot.clear();
        }
        self.head_history.fill(0.0);
        self.pos = 0;
        self.now = 0;
        self.input.fill(0.0);
    }

    /// Copies `other`'s whole signal state (two banks of one layout and slot count).
    fn copy_state_from(&mut self, other: &ConvolverBank) {
        for (mine, theirs) in self.stages.iter_mut().zip(&other.stages) {
            mine.step = theirs.step;
            mine.done = theirs.done;
            mine.newest = theirs.newest;
            mine.time.copy_from_slice(&theirs.time);
            mine.history.copy_from_slice(&theirs.history);
        }
        for (mine, theirs) in self.slots.iter_mut().zip(&other.slots) {
            for (a, b) in mine.accumulators.iter_mut().zip(&theirs.accumulators) {
                a.copy_from_slice(b);
            }
            mine.output.copy_from_slice(&theirs.output);
        }
        self.head_history.copy_from_slice(&other.head_history);
        self.pos = other.pos;
        self.now = other.now;
        self.input.copy_from_slice(&other.input);
    }

    /// Takes in samples that all fall within one step (`pos + chunk.len() <= HEAD_LEN`); returns where in the head
    /// history they start.
    fn push(&mut self, chunk: &[f32]) -> usize {
        let n = chunk.len();
        let history_at = HEAD_LEN - 1 + self.pos;
        self.head_history[history_at..history_at + n].copy_from_slice(chunk);
        // Steps start at multiples of HEAD_LEN and the rings are multiples of it, so a step never wraps a ring.
        let input_at = self.now & (self.input.len() - 1);
        self.input[input_at..input_at + n].copy_from_slice(chunk);
        history_at
    }

    /// One slot's output for the samples just pushed: its head taps directly, plus what its FFT stages left.
    fn render(&mut self, slot: usize, history_at: usize, out: &mut [f32]) {
        let slot = &mut self.slots[slot];
        let Some(ir) = &slot.ir else {
            out.fill(0.0);
            return;
        };
        let output_at = self.now & (slot.output.len() - 1);
        let pending = &mut slot.output[output_at..output_at + out.len()];
        let taps = &ir.head;
        for (i, (y, tail)) in out.iter_mut().zip(pending.iter_mut()).enumerate() {
            let end = history_at + i + 1;
            *y = dot(taps, &self.head_history[end - taps.len()..end]) + *tail;
            *tail = 0.0;
        }
    }

    /// Drops one slot's output for the samples just pushed.
    fn discard(&mut self, slot: usize, n: usize) {
        let output = &mut self.slots[slot].output;
        let at = self.now & (output.len() - 1);
        output[at..at + n].fill(0.0);
    }

    /// Moves on by the `n` samples just pushed and rendered; runs the FFT work when a step completes.
    fn advance(&mut self, n: usize) {
        self.pos += n;
        self.now = self.now.wrapping_add(n);
        if self.pos == HEAD_LEN {
            self.head_history.copy_within(HEAD_LEN.., 0);
            self.pos = 0;
            self.step();
        }
    }

    /// Runs each stage's share of FFT work at the end of a step of `HEAD_LEN` samples.
    fn step(&mut self) {
        let now = self.now;
        for (index, stage) in self.stages.iter_mut().enumerate() {
            let size = stage.size;
            let bins = size + 1;
            if stage.step == 0 {
                // The input block for this job is complete: transform the last 2P inputs into the delay line.
                read_ring(&self.input, now.wrapping_sub(2 * size), &mut stage.time);
                stage.newest = (stage.newest + 1) % stage.partitions;
                let slot = &mut stage.history[stage.newest * bins..][..bins];
                let result = stage.forward.process_with_scratch(&mut stage.time, slot, &mut self.scratch);
                debug_assert!(result.is_ok(), "buffers sized by the plan");
                for slot in self.slots.iter_mut().filter(|s| s.ir.is_some()) {
                    slot.accumulators[index].fill(ZERO);
                }
                stage.done = 0;
            }
            // An even share of the partition products on every step of the job.
            let target = (stage.partitions * (stage.step + 1)).div_ceil(stage.steps_per_job);
            for slot in &mut self.slots {
                let Some(ir) = &slot.ir else { continue };
                let spectra = &ir.stages[index].spectra;
                let accumulator = &mut slot.accumulators[index];
                for j in stage.done..target {
                    let delayed = (stage.newest + stage.partitions - j) % stage.partitions;
                    multiply_accumulate(
                        accumulator,
                        &spectra[j * bins..][..bins],
                        &stage.history[delayed * bins..][..bins],
                    );
                }
            }
            stage.done = target;
            if stage.step + 1 < stage.steps_per_job {
                stage.step += 1;
                continue;
            }
            // Last step: back to the time domain; overlap-save keeps the second half.
            for slot in self.slots.iter_mut().filter(|s| s.ir.is_some()) {
                let accumulator = &mut slot.accumulators[index];
                accumulator[0].im = 0.0;
                accumulator[size].im = 0.0;
                let result = stage.inverse.process_with_scratch(accumulator, &mut stage.time, &mut self.scratch);
                debug_assert!(result.is_ok(), "buffers sized by the plan, DC and Nyquist real");
                add_to_ring(&mut slot.output, now.wrapping_add(stage.write_ahead), &stage.time[size..]);
            }
            stage.step = 0;
        }
    }
}

impl Slot {
    /// Forgets the pending output and the current job's products.
    fn clear(&mut self) {
        for accumulator in &mut self.accumulators {
            accumulator.fill(ZERO);
        }
        self.output.fill(0.0);
    }
}

/// Two distinct elements of `items`, the first mutable.
fn pair_mut<T>(items: &mut [T], a: usize, b: usize) -> (&mut T, &T) {
    if a < b {
        let (left, right) = items.split_at_mut(b);
        (&mut left[a], &right[0])
    } else {
        let (left, right) = items.split_at_mut(a);
        (&mut right[0], &left[b])
    }
}

/// Plays one impulse response on one channel with zero latency: a [`ConvolverBank`] of one slot. See the module
/// documentation for the scheme.
pub struct Convolver {
    bank: ConvolverBank,
}

impl Convolver {
    /// A convolver for `ir` (partitions and transforms it first: off the audio thread).
    pub fn new(ir: &[f32]) -> Self {
        Self::with_ir(Arc::new(ConvolverIr::new(ir)))
    }

    /// A convolver playing an already prepared response, which other convolvers may share.
    pub fn with_ir(ir: Arc<ConvolverIr>) -> Self {
        Self { bank: ConvolverBank::new(ir, 1) }
    }

    /// The response this convolver plays.
    pub fn ir(&self) -> &Arc<ConvolverIr> {
        self.bank.ir(0).expect("a convolver's one slot always holds its response")
    }

    /// Convolves `input` into `output` (the shorter length decides). Any length; real-time safe.
    pub fn process(&mut self, input: &[f32], output: &mut [f32]) {
        debug_assert_eq!(input.len(), output.len());
        let n = input.len().min(output.len());
        self.bank.process(&input[..n], &mut [&mut output[..n]]);
    }

    /// Convolves `block` in place. Any length; real-time safe.
    pub fn process_in_place(&mut self, block: &mut [f32]) {
        let mut start = 0;
        while start < block.len() {
            let n = (block.len() - start).min(HEAD_LEN - self.bank.pos);
            let chunk = &mut block[start..start + n];
            let history_at = self.bank.push(chunk);
            self.bank.render(0, history_at, chunk);
            self.bank.advance(n);
            start += n;
        }
    }

    /// Clears the signal state; see [`ConvolverBank::reset`].
    pub fn reset(&mut self) {
        self.bank.reset();
    }

    /// Makes this convolver continue exactly where `other` is, as if it had been fed the same input. Both must
    /// play the same [`ConvolverIr`]; otherwise this one is reset and `false` returned. Copies, never allocates.
    ///
    /// Used when a second channel starts: it picks up the first channel's history instead of a stale one.
    pub fn copy_state_from(&mut self, other: &Convolver) -> bool {
        if !Arc::ptr_eq(self.ir(), other.ir()) {
            self.reset();
            return false;
        }
        self.bank.copy_state_from(&other.bank);
        true
    }
}

/// Copies `out.len()` samples of a power-of-two ring starting at (unwrapped) position `start`.
fn read_ring(ring: &[f32], start: usize, out: &mut [f32]) {
    let at = start & (ring.len() - 1);
    let first = out.len().min(ring.len() - at);
    out[..first].copy_from_slice(&ring[at..at + first]);
    let rest = out.len() - first;
    out[first..].copy_from_slice(&ring[..rest]);
}

/// Adds `src` into a power-of-two ring starting at (unwrapped) position `start`.
fn add_to_ring(ring: &mut [f32], start: usize, src: &[f32]) {
    let at = start & (ring.len() - 1);
    let first = src.len().min(ring.len() - at);
    for (r, s) in ring[at..at + first].iter_mut().zip(&src[..first]) {
        *r += s;
    }
    for (r, s) in ring.iter_mut().zip(&src[first..]) {
        *r += s;
    }
}

/// Dot product with eight independent sums, so the compiler can keep them in vector registers.
#[inline]
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let (a_chunks, a_rest) = a.as_chunks::<8>();
    let (b_chunks, b_rest) = b.as_chunks::<8>();
    let mut sums = [0.0f32; 8];
    for (x, y) in a_chunks.iter().zip(b_chunks) {
        for k in 0..8 {
            sums[k] += x[k] * y[k];
        }
    }
    let mut total = a_rest.iter().zip(b_rest).map(|(x, y)| x * y).sum::<f32>();
    for s in sums {
        total += s;
    }
    total
}

/// `acc += h * x`, bin by bin.
#[inline]
fn multiply_accumulate(acc: &mut [Complex<f32>], h: &[Complex<f32>], x: &[Complex<f32>]) {
    for ((a, h), x) in acc.iter_mut().zip(h).zip(x) {
        a.re += h.re * x.re - h.im * x.im;
        a.im += h.re * x.im + h.im * x.re;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A deterministic noise source (xorshift) for test signals.
    fn noise(seed: u32, len: usize) -> Vec<f32> {
        let mut state = seed.max(1);
        (0..len)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 17;
                state ^= state << 5;
                state as f32 / u32::MAX as f32 * 2.0 - 1.0
            })
            .collect()
    }

    /// A response that decays like a real room or cabinet, so late partitions matter but do not dominate.
    fn decaying_ir(len: usize) -> Vec<f32> {
        let decay = (-5.0 / len.max(1) as f32).exp();
        noise(7, len)
            .into_iter()
            .scan(1.0f32, |g, x| {
                let y = x * *g;
                *g *= decay;
                Some(y)
            })
            .collect()
    }

    /// Reference: `y[n] = sum_k h[k] x[n - k]` in f64, at the requested output indices.
    fn direct(ir: &[f32], input: &[f32], n: usize) -> f64 {
        let taps = ir.len().min(n + 1);
        (0..taps).map(|k| f64::from(ir[k]) * f64::from(input[n - k])).sum()
    }

    /// Runs `input` through a convolver in blocks cycling through `blocks`.
    fn run(conv: &mut Convolver, input: &[f32], blocks: &[usize]) -> Vec<f32> {
        let mut out = vec![0.0; input.len()];
        let mut start = 0;
        for &b in blocks.iter().cycle() {
            if start >= input.len() {
                break;
            }
            let end = (start + b).min(input.len());
            conv.process(&input[start..end], &mut out[start..end]);
            start = end;
        }
        out
    }

    fn max_error_relative_to_peak(ir: &[f32], input: &[f32], out: &[f32], stride: usize) -> f64 {
        let mut peak = 0.0f64;
        let mut error = 0.0f64;
        for n in (0..input.len()).step_by(stride) {
            let reference = direct(ir, input, n);
            peak = peak.max(reference.abs());
            error = error.max((reference - f64::from(out[n])).abs());
        }
        error / peak.max(1e-30)
    }

    #[test]
    fn convolution_equals_direct_convolution_for_every_length_and_block_size() {
        for len in [1, 63, 64, 65, 1000, 48_000] {
            let ir = decaying_ir(len);
            let input = noise(3, len + 3000);
            // The long response: every 7th output (7 is coprime to every partition size) keeps the test quick.
            let stride = if len > 10_000 { 7 } else { 1 };
            let mut first: Option<Vec<f32>> = None;
            for blocks in [&[1][..], &[17], &[64], &[256], &[1, 17, 64, 256, 5, 300, 63]] {
                let out = run(&mut Convolver::new(&ir), &input, blocks);
                let error = max_error_relative_to_peak(&ir, &input, &out, stride);
                assert!(error < 1e-5, "IR {len}, blocks {blocks:?}: error {error:e}");
                // The work is cut into the same steps whatever the host's blocks: the same output, bit for bit.
                assert!(
                    first.get_or_insert_with(|| out.clone()) == &out,
                    "IR {len}: blocks {blocks:?} sound different"
                );
            }
        }
    }

    #[test]
    fn an_impulse_plays_the_response_from_the_first_sample() {
        let ir = decaying_ir(5000);
        let mut impulse = vec![0.0; 6000];
        impulse[0] = 1.0;
        let out = run(&mut Convolver::new(&ir), &impulse, &[64]);
        for (n, (&y, &h)) in out.iter().zip(&ir).enumerate() {
            assert!((y - h).abs() < 1e-5, "sample {n}: {y} vs {h}");
        }
        assert!(out[5000..].iter().all(|y| y.abs() < 1e-5), "nothing after the response");
    }

    #[test]
    fn reset_forgets_the_past_input() {
        let ir = decaying_ir(3000);
        let mut conv = Convolver::new(&ir);
        run(&mut conv, &noise(1, 2000), &[100]);
        conv.reset();
        let mut impulse = vec![0.0; 4000];
        impulse[0] = 1.0;
        let out = run(&mut conv, &impulse, &[100]);
        assert!(out.iter().zip(&ir).all(|(y, h)| (y - h).abs() < 1e-5));
        assert!(out[3000..].iter().all(|y| y.abs() < 1e-5));
    }

    #[test]
    fn a_copied_state_continues_the_same_output() {
        let ir = Arc::new(ConvolverIr::new(&decaying_ir(9000)));
        let input = noise(5, 20_000);
        let mut first = Convolver::with_ir(ir.clone());
        let mut second = Convolver::with_ir(ir);
        let mut a = vec![0.0; 12_345];
        first.process(&input[..12_345], &mut a);
        assert!(second.copy_state_from(&first));
        let mut b1 = vec![0.0; 7655];
        let mut b2 = vec![0.0; 7655];
        first.process(&input[12_345..], &mut b1);
        second.process(&input[12_345..], &mut b2);
        assert_eq!(b1, b2);
    }

    #[test]
    fn a_response_installed_in_a_bank_plays_over_the_whole_past_input() {
        // Two different responses of one length: installed while the bank plays the first, the second plays as if
        // it had heard the whole input, once the first's in-flight output (up to two partition periods) has played.
        let len = 40_000;
        let old_ir: Vec<f32> = decaying_ir(len).iter().map(|x| -0.5 * x).collect();
        let new_ir: Vec<f32> = noise(9, len).iter().zip(decaying_ir(len)).map(|(a, b)| a * b.abs()).collect();
        let input = noise(5, 90_000);
        let mut bank = ConvolverBank::new(Arc::new(ConvolverIr::new(&old_ir)), 2);
        let mut old = Convolver::new(&old_ir);
        let mut reference = Convolver::new(&new_ir);
        let split = 30_016;
        let (mut a, mut b, mut scratch) = (vec![0.0; split], vec![1.0; split], vec![0.0; split]);
        bank.process(&input[..split], &mut [&mut a, &mut b]);
        assert!(b.iter().all(|&y| y == 0.0), "an empty slot plays silence");
        old.process(&input[..split], &mut scratch);
        assert_eq!(a, scratch, "a bank's slot plays exactly what a convolver of its own does");
        reference.process(&input[..split], &mut scratch);

        let installed = bank.install(1, Arc::new(ConvolverIr::new(&new_ir)), Some(0));
        assert!(matches!(installed, Ok(None)), "the slot was empty");
        let rest = &input[split..];
        let (mut want, mut got, mut kept, mut still) =
            (vec![0.0; rest.len()], vec![0.0; rest.len()], vec![0.0; rest.len()], vec![0.0; rest.len()]);
        reference.process(rest, &mut want);
        old.process(rest, &mut kept);
        bank.process(rest, &mut [&mut still, &mut got]);
        assert_eq!(still, kept, "the other slot plays on undisturbed");
        let settled = layout(len).iter().map(|s| s.0).max().unwrap() * 2;
        let worst = want[settled..].iter().zip(&got[settled..]).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
        assert!(worst < 1e-3, "after {settled} samples the installed slot is the new response: {worst}");
        assert!(want[settled..].iter().any(|y| y.abs() > 0.1), "the tail is audible");

        // A response of another length does not fit; a taken slot plays silence again.
        assert!(bank.install(1, Arc::new(ConvolverIr::new(&new_ir[..len - 1])), None).is_err());
        assert_eq!(bank.take(1).map(|ir| ir.len()), Some(len));
        bank.process(&input[..1000], &mut [&mut a[..1000], &mut b[..1000]]);
        assert!(b[..1000].iter().all(|&y| y == 0.0));
    }

    #[test]
    fn an_empty_response_plays_silence() {
        let mut conv = Convolver::new(&[]);
        let out = run(&mut conv, &noise(2, 500), &[33]);
        assert!(out.iter().all(|&y| y == 0.0));
        assert!(conv.ir().is_empty());
    }

    #[test]
    fn long_responses_use_few_stages_with_growing_partitions() {
        // 10 s at 96 kHz: the largest response the loader accepts.
        let stages = layout(960_000);
        assert!(stages.len() <= 6, "{stages:?}");
        assert!(stages.windows(2).all(|w| w[1].0 >= w[0].0 && w[1].1 == w[0].1 + w[0].0 * w[0].2));
        // Every stage starts late enough for its deadline: at its size (stage 0), or twice its size (spread).
        assert_eq!(stages[0], (HEAD_LEN, HEAD_LEN, 7));
        assert!(stages[1..].iter().all(|&(size, offset, _)| offset >= 2 * size));
        let (size, offset, partitions) = stages[stages.len() - 1];
        assert!(offset + size * partitions >= 960_000);
    }
}
