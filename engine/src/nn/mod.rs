//! Neural building blocks and the `.nam` forward passes, exactly as NeuralAmpModelerCore computes them.
//!
//! [`build`] turns a validated [`NamFile`] into a [`NeuralModel`]: every buffer is allocated and the model prewarmed
//! there (off the audio thread); [`NeuralModel::process`] then never allocates. Blocks are `f32`, planar
//! (`channels × frames`, each channel's frames contiguous) so that the inner loops run over frames, which the
//! compiler vectorises for any channel count (see `conv1x1::weighted_sums`: tiles of channels × frames, compiled
//! for SSE2, AVX2+FMA and AVX-512, picked at run time in [`simd`]). Each layer keeps its weights in the order its
//! loop reads them, so a specialised kernel can replace one loop without touching the rest.
//!
//! After prewarming, each model snapshots its state; [`NeuralModel::reset`] copies the snapshot back, which is the
//! state the reference reaches by prewarming again, and costs a copy of the histories (real-time safe).

pub mod activations;
pub mod container;
pub mod conv1d;
pub mod conv1x1;
pub mod convnet;
pub mod decoder;
pub mod linear;
pub mod lstm;
pub mod s4d;
pub mod simd;
pub mod slimmable;
pub mod wavenet;

pub use activations::TanhMode;

use crate::formats::nam::{Architecture, NamError, NamFile};

/// Largest block [`build`] accepts: ample for any audio callback (hosts use 16–4096) and a bound on buffer memory.
pub const MAX_BLOCK: usize = 65_536;
/// Most floats one model may allocate for histories and working buffers (nested models included): 1 GiB. The
/// parser's limits keep real files far below; this catches absurd combinations of sizes and block length.
pub const MAX_MODEL_FLOATS: u64 = 1 << 28;

/// A playable neural model (mono in, mono out).
pub trait NeuralModel: Send {
    /// Processes one block. Real-time safe: no allocation, no locks. `input.len() == output.len()`; blocks longer
    /// than [`NeuralModel::max_block`] are processed in pieces (the contract is that they do not occur).
    fn process(&mut self, input: &[f32], output: &mut [f32]);
    /// Returns to the state right after prewarming: what the reference reaches by prewarming again. Real-time safe
    /// (copies the snapshot taken at build time; cost proportional to the model's history).
    fn reset(&mut self);
    fn max_block(&self) -> usize;
    /// Input samples (the current one included) the output depends on; 1 for recurrent models (LSTM).
    fn receptive_field(&self) -> usize;
    /// Size knob of slimmable models, `0..=1` (1 = full size). Real-time safe: every size is built in advance.
    fn set_slim(&mut self, _ratio: f32) {}
    fn is_slimmable(&self) -> bool {
        false
    }
    /// Number of weights in the model that is playing (the active submodel of a container).
    fn parameter_count(&self) -> usize;
}

/// Why a model could not be built.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error(transparent)]
    Invalid(#[from] NamError),
    #[error("block size {max_block} is not usable (1 to {MAX_BLOCK})")]
    BadBlockSize { max_block: usize },
    #[error("prewarm block {prewarm_block} must be between 1 and the maximum block {max_block}")]
    BadPrewarmBlock { prewarm_block: usize, max_block: usize },
    #[error("the model has {inputs} input and {outputs} output channels; only mono models (1 and 1) can be played")]
    NotMono { inputs: usize, outputs: usize },
    #[error("the model needs {value} floats of {what}, over the limit of {limit}")]
    TooLarge { what: &'static str, value: u64, limit: u64 },
    #[error("inconsistent model: {0}")]
    Inconsistent(String),
    #[error("the weights ran out while building the model (file and architecture disagree)")]
    WeightsExhausted,
}

/// How to build a model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BuildOptions {
    pub tanh: TanhMode,
    /// Largest block [`NeuralModel::process`] will be given.
    pub max_block: usize,
    /// Block length the prewarm processes zeros in (the reference uses its maximum block). Only recurrent models
    /// (LSTM) depend on it: they prewarm a whole number of blocks, at least one.
    pub prewarm_block: usize,
}

impl BuildOptions {
    pub fn new(tanh: TanhMode, max_block: usize) -> Self {
        Self { tanh, max_block, prewarm_block: max_block }
    }
}

/// Builds and prewarms a model. Allocates: call off the audio thread.
pub fn build(file: &NamFile, tanh: TanhMode, max_block: usize) -> Result<Box<dyn NeuralModel>, BuildError> {
    build_with(file, &BuildOptions::new(tanh, max_block))
}

/// [`build`] with every option.
pub fn build_with(file: &NamFile, options: &BuildOptions) -> Result<Box<dyn NeuralModel>, BuildError> {
    let dsp = build_prewarmed(file, options, |inputs, outputs| {
        if inputs != 1 || outputs != 1 {
            return Err(BuildError::NotMono { inputs, outputs });
        }
        Ok(())
    })?;
    Ok(Box::new(Model { dsp, max_block: options.max_block }))
}

/// Builds a model with more than one input channel (audio plus control signals, such as the LFO of the modulation
/// pedals) and one output, prewarmed: the caller feeds planar `in_channels × n` blocks through [`Dsp::process`].
pub fn build_conditioned(file: &NamFile, options: &BuildOptions) -> Result<Box<dyn Dsp>, BuildError> {
    build_prewarmed(file, options, |_, outputs| {
        if outputs != 1 {
            return Err(BuildError::Inconsistent(format!("the model has {outputs} outputs; one is needed")));
        }
        Ok(())
    })
}

/// Checks the options, the file and its (inputs, outputs) with `channels`, then builds and prewarms.
fn build_prewarmed(
    file: &NamFile,
    options: &BuildOptions,
    channels: impl FnOnce(usize, usize) -> Result<(), BuildError>,
) -> Result<Box<dyn Dsp>, BuildError> {
    let max_block = options.max_block;
    if max_block == 0 || max_block > MAX_BLOCK {
        return Err(BuildError::BadBlockSize { max_block });
    }
    if options.prewarm_block == 0 || options.prewarm_block > max_block {
        return Err(BuildError::BadPrewarmBlock { prewarm_block: options.prewarm_block, max_block });
    }
    file.validate()?;
    channels(file.architecture.in_channels(), file.architecture.out_channels())?;
    let mut dsp = build_dsp(file, &BuildContext::new(*options))?;
    dsp.prewarm(options.prewarm_block);
    Ok(dsp)
}

/// What the layer builders share: the options, and the running total of floats allocated (checked against
/// [`MAX_MODEL_FLOATS`] before each allocation, so an absurd model fails cleanly instead of exhausting memory).
pub struct BuildContext {
    pub tanh: TanhMode,
    pub max_block: usize,
    allocated: std::cell::Cell<u64>,
}

impl BuildContext {
    pub fn new(options: BuildOptions) -> Self {
        Self { tanh: options.tanh, max_block: options.max_block, allocated: std::cell::Cell::new(0) }
    }

    /// Counts `floats` against the model's budget.
    pub fn reserve(&self, floats: u64) -> Result<(), BuildError> {
        let total = self.allocated.get().saturating_add(floats);
        if total > MAX_MODEL_FLOATS {
            return Err(BuildError::TooLarge { what: "buffers", value: total, limit: MAX_MODEL_FLOATS });
        }
        self.allocated.set(total);
        Ok(())
    }

    /// A zeroed planar work buffer of `rows` × the largest block.
    pub fn buffer(&self, rows: usize) -> Result<Vec<f32>, BuildError> {
        let floats = rows.saturating_mul(self.max_block);
        self.reserve(floats as u64)?;
        Ok(vec![0.0; floats])
    }
}

/// Builds any architecture as a multi-channel block processor (used for nested models too). Not prewarmed: call
/// [`Dsp::prewarm`] before playing it.
pub fn build_dsp(file: &NamFile, ctx: &BuildContext) -> Result<Box<dyn Dsp>, BuildError> {
    let mut weights = Weights::new(&file.weights);
    let dsp: Box<dyn Dsp> = match &file.architecture {
        Architecture::WaveNet(config) if config.is_slimmable() && slimmable::supports(config) => {
            Box::new(slimmable::SlimmableWaveNet::new(config, &file.weights, ctx)?)
        }
        Architecture::WaveNet(config) => Box::new(wavenet::WaveNet::new(config, &mut weights, ctx)?),
        Architecture::Lstm(config) => Box::new(lstm::Lstm::new(config, &mut weights, file.sample_rate, ctx.tanh)?),
        Architecture::Linear(config) => Box::new(linear::Linear::new(config, &mut weights, ctx)?),
        Architecture::ConvNet(config) => Box::new(convnet::ConvNet::new(config, &mut weights, ctx)?),
        Architecture::SlimmableContainer(config) => Box::new(container::Container::new(config, ctx)?),
    };
    Ok(dsp)
}

/// A block processor with any number of channels: what models and nested models (condition DSPs) share. Models
/// with more than one input (e.g. audio plus a control signal) are used through this trait.
pub trait Dsp: Send {
    fn in_channels(&self) -> usize;
    fn out_channels(&self) -> usize;
    /// Planar `in_channels × n` in, planar `out_channels × n` out; `n` ≤ the block size it was built for.
    fn process(&mut self, input: &[f32], output: &mut [f32], n: usize);
    /// Zeros the reference processes after a reset before playing (rounded up to whole blocks).
    fn prewarm_samples(&self) -> usize;
    /// Brings the state to the reference's post-reset state and snapshots it. Allocates (scratch blocks of zeros).
    fn prewarm(&mut self, block: usize) {
        run_zeros(self, self.prewarm_samples(), block);
        self.save_state();
    }
    fn save_state(&mut self);
    fn restore_state(&mut self);
    fn receptive_field(&self) -> usize;
    fn parameter_count(&self) -> usize;
    fn set_slim(&mut self, _ratio: f32) {}
    fn is_slimmable(&self) -> bool {
        false
    }
}

/// Processes zeros in blocks of `block` until at least `samples` have gone through, like the reference's prewarm
/// loop (which always processes whole blocks).
pub fn run_zeros<D: Dsp + ?Sized>(dsp: &mut D, samples: usize, block: usize) {
    if samples == 0 {
        return;
    }
    let zeros = vec![0.0; block * dsp.in_channels()];
    let mut out = vec![0.0; block * dsp.out_channels()];
    let mut done = 0;
    while done < samples {
        dsp.process(&zeros, &mut out, block);
        done += block;
    }
}

/// The public face of a built model: splits over-long blocks, delegates the rest.
struct Model {
    dsp: Box<dyn Dsp>,
    max_block: usize,
}

impl NeuralModel for Model {
    fn process(&mut self, input: &[f32], output: &mut [f32]) {
        let len = input.len().min(output.len());
        for (inp, out) in input[..len].chunks(self.max_block).zip(output[..len].chunks_mut(self.max_block)) {
            self.dsp.process(inp, out, inp.len());
        }
    }

    fn reset(&mut self) {
        self.dsp.restore_state();
    }

    fn max_block(&self) -> usize {
        self.max_block
    }

    fn receptive_field(&self) -> usize {
        self.dsp.receptive_field()
    }

    fn set_slim(&mut self, ratio: f32) {
        self.dsp.set_slim(ratio);
    }

    fn is_slimmable(&self) -> bool {
        self.dsp.is_slimmable()
    }

    fn parameter_count(&self) -> usize {
        self.dsp.parameter_count()
    }
}

/// Sequential reader over a model's weight stream.
pub struct Weights<'a> {
    data: &'a [f32],
    pos: usize,
}

impl<'a> Weights<'a> {
    pub fn new(data: &'a [f32]) -> Self {
        Self { data, pos: 0 }
    }

    /// The next `n` weights.
    pub fn take(&mut self, n: usize) -> Result<&'a [f32], BuildError> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.data.len()).ok_or(BuildError::WeightsExhausted)?;
        let out = &self.data[self.pos..end];
        self.pos = end;
        Ok(out)
    }

    pub fn remaining(&self) -> usize {
        self.data.len() - self.pos
    }

    pub fn is_empty(&self) -> bool {
        self.remaining() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::formats::nam::{self, fixture_files, fixtures_dir};
    use serde_json::{Value, json};
    use std::path::{Path, PathBuf};

    /// `LeakyReLU` with slope 1 is the identity: hand-checked models use it to keep the arithmetic exact.
    fn identity() -> Value {
        json!({"type": "LeakyReLU", "negative_slope": 1.0})
    }

    /// A one-channel, one-layer, kernel-1 layer array; `extra` overrides or adds keys.
    fn array(extra: Value) -> Value {
        let mut a = json!({
            "input_size": 1, "condition_size": 1, "channels": 1, "head_size": 1, "head_bias": false,
            "kernel_size": 1, "dilations": [1], "activation": identity()
        });
        for (k, v) in extra.as_object().expect("object") {
            a[k] = v.clone();
        }
        a
    }

    fn wavenet(arrays: Value, weights: &[f32]) -> Value {
        json!({"version": "0.6.0", "architecture": "WaveNet", "sample_rate": 48000,
            "config": {"layers": arrays, "head": null, "head_scale": 0.02}, "weights": weights})
    }

    fn file(v: &Value) -> NamFile {
        nam::parse_value(v).unwrap_or_else(|e| panic!("{e}"))
    }

    fn model(v: &Value, max_block: usize) -> Box<dyn NeuralModel> {
        build(&file(v), TanhMode::Accurate, max_block).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Renders `input` in blocks of `block`.
    fn render(m: &mut dyn NeuralModel, input: &[f32], block: usize) -> Vec<f32> {
        let mut out = vec![0.0; input.len()];
        for (i, o) in input.chunks(block).zip(out.chunks_mut(block)) {
            m.process(i, o);
        }
        out
    }

    fn assert_close(got: &[f32], want: &[f32]) {
        assert_eq!(got.len(), want.len());
        for (i, (g, w)) in got.iter().zip(want).enumerate() {
            assert!((g - w).abs() <= 1e-6 * w.abs().max(1.0), "sample {i}: got {g}, want {w} (all: {got:?})");
        }
    }

    /// Plucked strings: five harmonics decaying over ~0.2 s, a new note every quarter second, peak ≈ 0.5.
    fn guitar_like(samples: usize) -> Vec<f32> {
        let notes = [82.41f32, 110.0, 146.83, 196.0, 246.94];
        (0..samples)
            .map(|i| {
                let t = i as f32 / 48_000.0;
                let pluck = (t / 0.25) as usize;
                let tp = t - pluck as f32 * 0.25;
                let f = notes[pluck % notes.len()];
                let envelope = 0.3 * (-tp * 8.0).exp();
                envelope * (1..=5).map(|h| (std::f32::consts::TAU * f * h as f32 * tp).sin() / h as f32).sum::<f32>()
            })
            .collect()
    }

    // --- hand-checked WaveNets -------------------------------------------------------------------------------

    #[test]
    fn wavenet_tap_k_minus_1_is_the_current_sample() {
        // rechannel 1 | conv taps [2 (oldest), 3 (current)] + bias 0.5 | mixin 0 | layer1x1 1, 0 | head 1 | scale 1
        // Silence gives the bias 0.5; an impulse gives 3·1 + 0.5, then 2·1 + 0.5, then 0.5 again.
        let v = wavenet(json!([array(json!({"kernel_size": 2}))]), &[1.0, 2.0, 3.0, 0.5, 0.0, 1.0, 0.0, 1.0, 1.0]);
        let mut m = model(&v, 4);
        assert_eq!(render(m.as_mut(), &[1.0, 0.0, 0.0, 0.0], 4), [3.5, 2.5, 0.5, 0.5]);
    }

    #[test]
    fn dilated_history_carries_across_block_boundaries() {
        // Same layer with dilation 3: y[t] = 3·x[t] + 2·x[t−3] + 0.5, played in blocks of 2.
        let v = wavenet(
            json!([array(json!({"kernel_size": 2, "dilations": [3]}))]),
            &[1.0, 2.0, 3.0, 0.5, 0.0, 1.0, 0.0, 1.0, 1.0],
        );
        let mut m = model(&v, 2);
        let x = [0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0];
        assert_eq!(render(m.as_mut(), &x, 2), [0.5, 3.5, 0.5, 0.5, 2.5, 0.5, 0.5, 0.5]);
    }

    #[test]
    fn gated_layer_multiplies_by_the_secondary_activation() {
        // conv rows: top = x, bottom = 0.5·x; gate = hardtanh(bottom); z = top · gate.
        // x = 1 → 1·0.5 = 0.5;  x = 4 → 4·1 = 4;  x = −1 → (−1)·(−0.5) = 0.5
        let v = wavenet(
            json!([array(json!({"gating_mode": "gated", "secondary_activation": "Hardtanh"}))]),
            &[1.0, 1.0, 0.5, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 1.0, 1.0],
        );
        assert_eq!(render(model(&v, 3).as_mut(), &[1.0, 4.0, -1.0], 3), [0.5, 4.0, 0.5]);
    }

    #[test]
    fn blended_layer_mixes_activated_and_raw_by_alpha() {
        // α = hardtanh(0.5·x), z = α·relu(x) + (1 − α)·x.
        // x = 1 → 0.5·1 + 0.5·1 = 1;  x = 4 → α = 1 → 4;  x = −1 → α = −0.5 → −0.5·0 + 1.5·(−1) = −1.5
        let v = wavenet(
            json!([array(json!({"gating_mode": "blended", "activation": "ReLU", "secondary_activation": "Hardtanh"}))]),
            &[1.0, 1.0, 0.5, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 1.0, 1.0],
        );
        assert_eq!(render(model(&v, 3).as_mut(), &[1.0, 4.0, -1.0], 3), [1.0, 4.0, -1.5]);
    }

    #[test]
    fn film_slot_scales_and_shifts_by_the_condition() {
        // activation_post_film: scale = 2c + 1, shift = −c + 0.5 with c = x; z = x → x(2x + 1) − x + 0.5 = 2x² + 0.5
        // weights: rechannel, conv, bias, mixin, layer1x1 w+b, FiLM [2, −1] + [1, 0.5], head, scale
        let v = wavenet(
            json!([array(json!({"activation_post_film": {"active": true, "shift": true, "groups": 1}}))]),
            &[1.0, 1.0, 0.0, 0.0, 1.0, 0.0, 2.0, -1.0, 1.0, 0.5, 1.0, 1.0],
        );
        assert_eq!(render(model(&v, 3).as_mut(), &[0.0, 1.0, 2.0], 3), [0.5, 2.5, 8.5]);
    }

    #[test]
    fn grouped_conv_keeps_each_group_to_its_own_channels() {
        // r = [x, 2x] (rechannel [1, 2]); groups 2: out0 = 3·in0, out1 = 5·in1; head sums both rows: 3x + 10x = 13x.
        // (Crossing the groups would give 3·2x + 5·x = 11x.)
        let v = wavenet(
            json!([array(json!({"channels": 2, "groups_input": 2}))]),
            &[1.0, 2.0, 3.0, 5.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 1.0, 0.0, 0.0, 1.0, 1.0, 1.0],
        );
        assert_eq!(render(model(&v, 2).as_mut(), &[1.0, -2.0], 2), [13.0, -26.0]);
    }

    #[test]
    fn head1x1_replaces_the_skip_rows() {
        // head1x1: [2z + 0.1, 3z + 0.2]; head rechannel [1, −1] → −z − 0.1 with z = x.
        let v = wavenet(
            json!([array(json!({"head1x1": {"active": true, "out_channels": 2, "groups": 1}}))]),
            &[1.0, 1.0, 0.0, 0.0, 1.0, 0.0, 2.0, 3.0, 0.1, 0.2, 1.0, -1.0, 1.0],
        );
        assert_close(&render(model(&v, 3).as_mut(), &[0.0, 1.0, 2.0], 3), &[-0.1, -1.1, -2.1]);
    }

    #[test]
    fn post_stack_head_activates_before_its_conv_and_head_scale_is_the_last_weight() {
        // h = 3·x (3 = last weight; config.head_scale 0.02 is ignored); y = 2·relu(h) + 0.5.
        // x = −1 → 0.5 (activation after the conv would give relu(−5.5) = 0);  x = 1 → 6.5
        let mut v = wavenet(json!([array(json!({}))]), &[1.0, 1.0, 0.0, 0.0, 1.0, 0.0, 1.0, 2.0, 0.5, 3.0]);
        v["config"]["head"] = json!({"channels": 1, "out_channels": 1, "kernel_sizes": [1], "activation": "ReLU"});
        assert_eq!(render(model(&v, 2).as_mut(), &[-1.0, 1.0], 2), [0.5, 6.5]);
    }

    #[test]
    fn condition_dsp_feeds_the_mixin_while_the_layers_get_the_raw_input() {
        // condition = Linear(2·x); conv 1·x, mixin 1·c → z = x + 2x = 3x (4x if the layers saw the condition).
        let linear = json!({"version": "0.6.0", "architecture": "Linear", "sample_rate": 48000,
            "config": {"receptive_field": 1, "bias": false}, "weights": [2.0]});
        let mut v = wavenet(json!([array(json!({}))]), &[1.0, 1.0, 0.0, 1.0, 1.0, 0.0, 1.0, 1.0]);
        v["config"]["condition_dsp"] = linear;
        assert_eq!(render(model(&v, 2).as_mut(), &[1.0, 2.0], 2), [3.0, 6.0]);
    }

    #[test]
    fn second_layer_array_takes_the_residual_and_continues_the_head() {
        // Array 0: z0 = x, residual 2x, head x. Array 1: z1 = 2x, head = x + 2x, head rechannel +1 bias → 3x + 1.
        let a0 = array(json!({}));
        let a1 = array(json!({"head_bias": true}));
        let w = [1.0, 1.0, 0.0, 0.0, 1.0, 0.0, 1.0, /* array 1 */ 1.0, 1.0, 0.0, 0.0, 1.0, 0.0, 1.0, 1.0, 1.0];
        let v = wavenet(json!([a0, a1]), &w);
        assert_eq!(render(model(&v, 3).as_mut(), &[0.0, 1.0, 2.0], 3), [1.0, 4.0, 7.0]);
    }

    #[test]
    fn slimming_uses_the_leading_channels_of_every_weight() {
        // Two identical channels; the head weighs them 1 and 10: full size 11x, one channel x.
        let v = wavenet(
            json!([array(json!({"channels": 2,
                "slimmable": {"method": "slice_channels_uniform", "kwargs": {"allowed_channels": [1, 2]}}}))]),
            &[1.0, 1.0, 1.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 1.0, 0.0, 0.0, 1.0, 10.0, 1.0],
        );
        let mut m = model(&v, 2);
        assert!(m.is_slimmable());
        assert_eq!(render(m.as_mut(), &[1.0, 2.0], 2), [11.0, 22.0], "full size by default");
        m.set_slim(0.49); // floor(0.49·2) = 0 → 1 channel
        assert_eq!(render(m.as_mut(), &[1.0, 2.0], 2), [1.0, 2.0]);
        m.set_slim(0.5); // floor(1.0) = 1 → 2 channels
        assert_eq!(render(m.as_mut(), &[1.0, 2.0], 2), [11.0, 22.0]);
        m.set_slim(0.0);
        assert_eq!(m.parameter_count(), 8);
    }

    // --- other architectures by hand -------------------------------------------------------------------------

    /// LSTM, hidden 1: only the g gate sees the input (weight 1); every gate pre-activation is otherwise 0, so
    /// i = f = o = σ(0) = ½. h0 = 0, c0 = 1. Head: y = 2h + 0.1.
    fn tiny_lstm(sample_rate: Option<f64>) -> Value {
        let mut v = json!({"version": "0.5.4", "architecture": "LSTM",
            "config": {"input_size": 1, "hidden_size": 1, "num_layers": 1},
            "weights": [0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0, 2.0, 0.1]});
        if let Some(sr) = sample_rate {
            v["sample_rate"] = json!(sr);
        }
        v
    }

    #[test]
    fn lstm_step_matches_the_cell_equations() {
        // Unknown rate, block 1: the prewarm is one zero: c = ½·1 + ½·tanh(0) = ½.
        // Then x = ½: c = ½·½ + ½·tanh(½), h = ½·tanh(c), y = 2h + 0.1.
        let mut m = model(&tiny_lstm(None), 1);
        // black_box: the expected value must use the run-time tanh, not a constant folded at compile time. The
        // model's tanh and sigmoid are its own vectorised ones, within a few ulp of these.
        let half = std::hint::black_box(0.5f32);
        let c = half * half + half * half.tanh();
        let y = (0.0 + 2.0 * (half * c.tanh())) + 0.1;
        assert_close(&render(m.as_mut(), &[0.5], 1), &[y]);
    }

    #[test]
    fn lstm_prewarm_is_half_a_second_in_whole_blocks_or_one_block_when_the_rate_is_unknown() {
        // With zero input c halves every sample: after k prewarm samples, the next zero gives tanh(½^(k+1)) + 0.1.
        let first_output = |sample_rate: Option<f64>, max_block: usize, prewarm_block: usize| {
            let options = BuildOptions { tanh: TanhMode::Accurate, max_block, prewarm_block };
            let mut m = build_with(&file(&tiny_lstm(sample_rate)), &options).unwrap();
            render(m.as_mut(), &[0.0], 1)[0]
        };
        let after = |k: i32| (0.0 + 2.0 * (0.5 * std::hint::black_box(0.5f32.powi(k + 1)).tanh())) + 0.1;
        // (To a few ulp: the model's tanh is its own. Neighbouring prewarm lengths differ by far more.)
        let close = |got: f32, want: f32| (got - want).abs() <= 1e-6;
        assert!(close(first_output(None, 8, 8), after(8)), "unknown rate: exactly one block of 8");
        assert!(close(first_output(None, 8, 3), after(3)), "unknown rate: one prewarm block of 3");
        assert!(close(first_output(Some(20.0), 8, 8), after(16)), "int(0.5·20) = 10 → two blocks of 8");
        assert!(close(first_output(Some(20.0), 8, 5), after(10)), "10 → two blocks of 5");
        assert!(!close(after(16), after(10)) && !close(after(8), after(3)));
    }

    #[test]
    fn linear_model_is_an_fir_filter_with_bias() {
        // y[t] = 0.5 + 1·x[t] + 2·x[t−1] + 3·x[t−2]
        let v = json!({"version": "0.5.0", "architecture": "Linear",
            "config": {"receptive_field": 3, "bias": true}, "weights": [1.0, 2.0, 3.0, 0.5]});
        assert_eq!(render(model(&v, 4).as_mut(), &[1.0, 0.0, 0.0, 0.0], 4), [1.5, 2.5, 3.5, 0.5]);
    }

    #[test]
    fn convnet_folds_batchnorm_into_scale_and_offset() {
        // conv taps [2 (x[t−1]), 3 (x[t])]; BN mean 1, var 3, weight 2, bias 0.5, eps 1 → scale 2/√4 = 1, loc −0.5
        // head 4·v + 0.25: silence → −1.75; impulse → 4·(3 − 0.5) + 0.25 = 10.25, then 4·(2 − 0.5) + 0.25 = 6.25
        let v = json!({"version": "0.5.0", "architecture": "ConvNet",
            "config": {"channels": 1, "dilations": [1], "batchnorm": true, "activation": identity()},
            "weights": [2.0, 3.0, 1.0, 3.0, 2.0, 0.5, 1.0, 4.0, 0.25]});
        assert_eq!(render(model(&v, 4).as_mut(), &[0.0, 1.0, 0.0, 0.0], 4), [-1.75, 10.25, 6.25, -1.75]);
    }

    // --- fixtures ------------------------------------------------------------------------------------------------

    fn fixture(name: &str) -> Option<NamFile> {
        Some(nam::load(&fixtures_dir()?.join(name)).unwrap())
    }

    #[test]
    fn every_fixture_builds_in_both_tanh_modes_and_plays_a_sane_signal() {
        let input = guitar_like(48_000);
        for path in fixture_files() {
            let f = nam::load(&path).unwrap();
            assert_eq!(f.weights.len() as u64, f.architecture.weight_count());
            for tanh in [TanhMode::Accurate, TanhMode::Fast] {
                let name = format!("{} ({tanh:?})", path.display());
                let mut m = build(&f, tanh, 64).unwrap_or_else(|e| panic!("{name}: {e}"));
                let y = render(m.as_mut(), &input, 64);
                assert!(y.iter().all(|v| v.is_finite() && v.abs() < 100.0), "{name}: not finite or unbounded");
                let mean = y.iter().sum::<f32>() / y.len() as f32;
                let var = y.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / y.len() as f32;
                assert!(var > 1e-8, "{name}: silent (variance {var})");
            }
        }
    }

    #[test]
    fn output_does_not_depend_on_the_block_size() {
        let input = guitar_like(12_000);
        for name in ["wavenet_a1_standard.nam", "wavenet_a2_max.nam", "wavenet_condition_dsp.nam", "lstm.nam", "A2.nam"]
        {
            let Some(f) = fixture(name) else { return };
            let mut reference = None;
            for block in [1, 7, 64, 128] {
                let mut m = build(&f, TanhMode::Accurate, 128).unwrap();
                let y = render(m.as_mut(), &input, block);
                match &reference {
                    None => reference = Some(y),
                    Some(r) => assert!(r == &y, "{name}: block {block} differs from block 1"),
                }
            }
        }
    }

    #[test]
    fn wavenet_after_prewarm_is_already_in_its_silent_steady_state() {
        for name in ["wavenet_a1_standard.nam", "wavenet_a2_max.nam", "wavenet_condition_dsp.nam", "wavenet.nam"] {
            let Some(f) = fixture(name) else { return };
            let mut m = build(&f, TanhMode::Accurate, 64).unwrap();
            let y = render(m.as_mut(), &[0.0; 10_000], 64);
            assert_eq!(y[0], y[9_999], "{name}");
        }
    }

    #[test]
    fn reset_returns_to_the_prewarmed_state() {
        let input = guitar_like(4_800);
        for name in ["wavenet_a1_standard.nam", "lstm.nam", "A2.nam", "slimmable_wavenet.nam"] {
            let Some(f) = fixture(name) else { return };
            let mut m = build(&f, TanhMode::Accurate, 64).unwrap();
            let fresh = render(m.as_mut(), &input, 64);
            render(m.as_mut(), &guitar_like(3_000), 64);
            m.reset();
            assert!(fresh == render(m.as_mut(), &input, 64), "{name}");
        }
    }

    #[test]
    fn container_switches_submodel_by_slim_value() {
        let Some(f) = fixture("slimmable_container.nam") else { return };
        let mut m = build(&f, TanhMode::Accurate, 64).unwrap();
        assert_eq!(m.parameter_count(), 842, "largest submodel by default");
        m.set_slim(0.2);
        assert_eq!(m.parameter_count(), 70, "the LSTM below 0.33");
        m.set_slim(0.5);
        assert_eq!(m.parameter_count(), 131);
        m.set_slim(1.0);
        assert_eq!(m.parameter_count(), 842);
    }

    #[test]
    fn slimmable_wavenet_picks_allowed_channels_at_floor_of_ratio_times_count() {
        let Some(f) = fixture("slimmable_wavenet.nam") else { return };
        let mut m = build(&f, TanhMode::Accurate, 64).unwrap();
        assert!(m.is_slimmable());
        let full = m.parameter_count();
        // allowed_channels [1, 2, 3]: parameter counts of the three sizes.
        let count_at = |m: &mut Box<dyn NeuralModel>, r: f32| {
            m.set_slim(r);
            m.parameter_count()
        };
        let sizes = [count_at(&mut m, 0.0), count_at(&mut m, 0.5), count_at(&mut m, 1.0)];
        assert!(sizes[0] < sizes[1] && sizes[1] < sizes[2] && sizes[2] == full, "{sizes:?}");
        for step in 0..=200 {
            let r = step as f32 / 100.0 - 0.5; // −0.5 ..= 1.5: out-of-range values clamp
            let index = ((f64::from(r).max(0.0) * 3.0).floor() as usize).min(2);
            assert_eq!(count_at(&mut m, r), sizes[index], "ratio {r}");
        }
    }

    #[test]
    fn bad_block_sizes_and_multichannel_models_are_refused() {
        let v = wavenet(json!([array(json!({}))]), &[1.0, 1.0, 0.0, 0.0, 1.0, 0.0, 1.0, 1.0]);
        assert!(matches!(build(&file(&v), TanhMode::Accurate, 0), Err(BuildError::BadBlockSize { .. })));
        let options = BuildOptions { tanh: TanhMode::Accurate, max_block: 4, prewarm_block: 8 };
        assert!(matches!(build_with(&file(&v), &options), Err(BuildError::BadPrewarmBlock { .. })));
        let mut two = array(json!({"head_size": 2}));
        two["head_size"] = json!(2);
        let v = wavenet(json!([two]), &[1.0, 1.0, 0.0, 0.0, 1.0, 0.0, 1.0, 1.0, 1.0]);
        assert!(matches!(build(&file(&v), TanhMode::Accurate, 4), Err(BuildError::NotMono { outputs: 2, .. })));
        // A hand-edited file with a weight missing is caught at build time too.
        let mut f = file(&wavenet(json!([array(json!({}))]), &[1.0, 1.0, 0.0, 0.0, 1.0, 0.0, 1.0, 1.0]));
        f.weights.pop();
        assert!(matches!(build(&f, TanhMode::Accurate, 4), Err(BuildError::Invalid(NamError::WeightCount { .. }))));
    }

    /// CPU time of this thread (Linux), which a loaded machine does not inflate the way it does wall time.
    fn thread_cpu_seconds() -> Option<f64> {
        let stat = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
        Some(stat.split_whitespace().next()?.parse::<f64>().ok()? * 1e-9)
    }

    /// Real-time factor (audio seconds per CPU second) at 48 kHz, block 64. Run with
    /// `cargo test --release -- --ignored --nocapture real_time_factor`; timings vary, so nothing is asserted.
    #[test]
    #[ignore]
    fn real_time_factor() {
        let input = guitar_like(48_000 * 10);
        for name in ["wavenet_a1_standard.nam", "A2.nam", "lstm.nam", "wavenet_a2_max.nam", "slimmable_wavenet.nam"] {
            let Some(f) = fixture(name) else { return };
            for tanh in [TanhMode::Accurate, TanhMode::Fast] {
                let mut m = build(&f, tanh, 64).unwrap();
                let (wall, cpu) = (std::time::Instant::now(), thread_cpu_seconds());
                let y = render(m.as_mut(), &input, 64);
                let (wall, cpu) = (wall.elapsed().as_secs_f64(), thread_cpu_seconds().map(|c| c - cpu.unwrap_or(0.0)));
                std::hint::black_box(y);
                let cpu = cpu.map_or("?".to_string(), |c| format!("{:6.1}x", 10.0 / c));
                eprintln!("{name:28} {tanh:?}: {:6.1}x real time (wall), {cpu} (thread CPU time)", 10.0 / wall);
            }
        }
    }

    #[test]
    fn buffers_beyond_the_memory_budget_are_refused_not_allocated() {
        let ctx = BuildContext::new(BuildOptions::new(TanhMode::Accurate, 64));
        ctx.reserve(MAX_MODEL_FLOATS - 10).unwrap();
        assert!(matches!(ctx.reserve(11), Err(BuildError::TooLarge { .. })));
        assert!(matches!(ctx.buffer(1), Err(BuildError::TooLarge { .. })));
    }

    // --- reference renders -----------------------------------------------------------------------------------

    /// `$NAM_REFERENCE_RENDERS`, else `tests/data/nam` of the repository (`engine/../tests/data/nam`).
    fn reference_dir() -> Option<PathBuf> {
        let dir = std::env::var_os("NAM_REFERENCE_RENDERS")
            .map(PathBuf::from)
            .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/data/nam"));
        if dir.join("manifest.json").is_file() {
            Some(dir)
        } else {
            eprintln!("skipping: reference renders not found (looked in {})", dir.display());
            None
        }
    }

    fn read_wav(path: &Path) -> Vec<f32> {
        let mut reader = hound::WavReader::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        reader.samples::<f32>().map(|s| s.unwrap()).collect()
    }

    /// Renders the oracle's input through every fixture (block 64, its prewarm, its slim value) and compares with
    /// the independent numpy implementation: ESR = Σ(y − ŷ)² / Σy² must stay below 1e-6.
    #[test]
    fn renders_match_the_independent_reference_implementation() {
        let (Some(refs), Some(fixtures)) = (reference_dir(), fixtures_dir()) else { return };
        let manifest: Value =
            serde_json::from_str(&std::fs::read_to_string(refs.join("manifest.json")).unwrap()).unwrap();
        let input = read_wav(&refs.join(manifest["input"]["file"].as_str().unwrap()));
        let block = manifest["block_size"].as_u64().unwrap() as usize;
        let mut worst: f64 = 0.0;
        for r in manifest["renders"].as_array().unwrap() {
            let name = r["file"].as_str().unwrap();
            let tanh = if r["tanh_mode"] == "fast" { TanhMode::Fast } else { TanhMode::Accurate };
            let f = nam::load(&fixtures.join(r["fixture"].as_str().unwrap())).unwrap();
            let mut m = build(&f, tanh, block).unwrap();
            if let Some(slim) = r["slim_ratio"].as_f64() {
                m.set_slim(slim as f32);
            }
            let y = render(m.as_mut(), &input, block);
            let reference = read_wav(&refs.join(name));
            assert_eq!(reference.len(), y.len(), "{name}");
            let err: f64 = y.iter().zip(&reference).map(|(a, b)| (f64::from(*a) - f64::from(*b)).powi(2)).sum();
            let energy: f64 = reference.iter().map(|b| f64::from(*b).powi(2)).sum();
            let esr = err / energy.max(f64::MIN_POSITIVE);
            eprintln!("ESR {name:45} {esr:.3e}");
            worst = worst.max(esr);
            assert!(esr <= 1e-6, "{name}: ESR {esr:e}");
        }
        eprintln!("worst ESR {worst:.3e}");
    }
}
