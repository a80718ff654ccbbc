//! The `neuralboard-s4d` model file: a stack of diagonal state-space (S4D) blocks with FiLM-conditioned controls,
//! as `training/compressor/train.py` exports it. JSON, because it is what the trainer writes without extra packages
//! and what a person can open to see what was shipped.
//!
//! ```text
//! { "format": "neuralboard-s4d", "version": 1 | 2, "sample_rate": 48000,
//!   "config": { "channels": H, "modes": N, "depth": D, "embedding": E,
//!               "controls": [{"name": "peak_reduction", "min": 0, "max": 100}, ...],
//!               "level_floor_db": F,                                    optional: the level input (below)
//!               "block": D },                                           optional: the control-rate form (below)
//!   "weights": { "mlp": [{"weight": [[in] x out], "bias": [out]}, ...],   ReLU after every layer, the last included
//!                "expand": {"weight": [H], "bias": [H], "level_weight": [H]},   level_weight iff level_floor_db
//!                "blocks": [{ "linear": {"weight": [[H] x H], "bias": [H]}, "prelu1": a,
//!                             "ssm": {"dt": [H], "a_re": [[N] x H], "a_im": .., "c_re": .., "c_im": .., "d": [H]},
//!                             "norm": {"mean": [H], "var": [H], "eps": e},
//!                             "film": {"weight": [[E] x 2H], "bias": [2H]}, "prelu2": a, "residual": [H] }, ...],
//!                "contract": {"weight": [H], "bias": b},
//!                "memory": {"weight": [H], "bias": b} },                version 2 only (below)
//!   "output": "tanh" | "gain", "metadata": { "name": ..., ... } }
//! ```
//!
//! The input of the stack is `h = w x + b`, or with `level_floor_db` set `h = w x + w_l l + b`, where
//! `l = 1 + max(20 log₁₀|x|, F) / −F` is the sample's level in decibels scaled to 0 at the floor `F` and 1 at full
//! scale (0 in silence). The output `o = w_c · h + b_c` is the signal itself, `y = tanh(o)` ("tanh"), or a gain
//! applied to the input, `y = x · e^{−softplus(o)} = x / (1 + e^{o})` ("gain": a gain computer, never louder than
//! its input).
//!
//! With `block` set (a gain computer with a level input) the network runs at a control rate: once per block of `D`
//! samples, on the block's RMS `r = √m` in place of `x` and its level `l = 1 + max(10 log₁₀ m, F) / −F`, `m` the
//! mean square of the block's samples. Its output gives the log-gain `L[k] = −softplus(o)` (nepers) at the end of
//! block `k`, and sample `j` of block `k` gets `y = x · e^{L[k−2] + (L[k−1] − L[k−2])·(j+1)/D}`: the gain ramps over
//! each block to the last one computed, causally (`L[k−1]` is known when block `k` starts), with no steps.
//!
//! Version 2 (a control-rate gain computer only) adds a second readout, `memory`: `o = max(w_c · h + b_c,
//! w_m · h + b_m)`. The gain reduction `softplus(o)` is then the larger of two envelopes, as an optical compressor's
//! is the larger of its fast envelope and its cell's slow memory: the release turns from the one to the other at a
//! corner that one smooth readout can only round off. Version 1 files have no `memory`.
//!
//! Everything is checked here (shapes, finite numbers, a stable state matrix, positive step sizes and variances,
//! sizes within limits), so the network built from a [`S4dFile`] never meets a surprise.

use std::path::Path;

use serde::Deserialize;

use super::checks::{JsonFormat, ModelFileError, check_finite, check_matrix, check_vec, invalid};

/// The `format` value of these files.
pub const FORMAT: &str = "neuralboard-s4d";
/// Files larger than this are refused before reading (a shipped model is a few hundred kB).
pub const MAX_FILE_BYTES: u64 = 64 << 20;
const JSON: JsonFormat = JsonFormat { name: FORMAT, kind: "S4D model", max_bytes: MAX_FILE_BYTES, max_version: 2 };
/// The version that adds the second envelope's readout (`weights.memory`); a file without one is version 1.
pub const VERSION_ENVELOPES: u32 = 2;
/// Limits on the sizes a file may declare: far above anything trained, low enough that a hostile file cannot make
/// the engine allocate without bound.
pub const MAX_CHANNELS: usize = 256;
pub const MAX_MODES: usize = 64;
pub const MAX_DEPTH: usize = 32;
pub const MAX_WIDTH: usize = 1024;
/// The longest control-rate block (85 ms at 48 kHz): a gain computer must follow an attack.
pub const MAX_CONTROL_BLOCK: usize = 4096;

/// One control the network is conditioned on; the MLP sees `(value − min) / (max − min)`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Control {
    pub name: String,
    pub min: f32,
    pub max: f32,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Config {
    /// Channels through the stack (H).
    pub channels: usize,
    /// Complex modes per channel in each state-space layer (N).
    pub modes: usize,
    /// Number of blocks.
    pub depth: usize,
    /// Width of the control embedding the FiLM layers read (the MLP's last layer).
    pub embedding: usize,
    pub controls: Vec<Control>,
    /// The level input's floor in dB (see the module): absent, the network sees the audio only.
    #[serde(default)]
    pub level_floor_db: Option<f32>,
    /// The control-rate form's block size in samples (see the module): absent, the network runs every sample.
    #[serde(default)]
    pub block: Option<usize>,
}

/// The input layer: per channel `h_c = w_c x + w_l,c l + b_c` (the level term only with a level input).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Expand {
    pub weight: Vec<f32>,
    pub bias: Vec<f32>,
    #[serde(default)]
    pub level_weight: Option<Vec<f32>>,
}

/// What the network's last layer gives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    /// `y = tanh(o)`: the output signal.
    Tanh,
    /// `y = x / (1 + e^{o})`: a gain on the input.
    Gain,
}

/// A dense layer, `y = W x + b`, `weight[out][in]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Dense {
    pub weight: Vec<Vec<f32>>,
    pub bias: Vec<f32>,
}

/// The output projection, `o = w · h + b`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Contract {
    pub weight: Vec<f32>,
    pub bias: f32,
}

/// The continuous-time diagonal state space of one block, per channel `c` and mode `n`:
/// `x' = A x + u`, `y = 2 Re(C x) + D u`, sampled with step `dt` (zero-order hold).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Ssm {
    pub dt: Vec<f32>,
    pub a_re: Vec<Vec<f32>>,
    pub a_im: Vec<Vec<f32>>,
    pub c_re: Vec<Vec<f32>>,
    pub c_im: Vec<Vec<f32>>,
    pub d: Vec<f32>,
}

/// Batch-norm running statistics (no affine: FiLM follows).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Norm {
    pub mean: Vec<f32>,
    pub var: Vec<f32>,
    pub eps: f32,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Block {
    pub linear: Dense,
    pub prelu1: f32,
    pub ssm: Ssm,
    pub norm: Norm,
    /// `2H` outputs from the embedding: rows `0..H` scale (γ), rows `H..2H` shift (β).
    pub film: Dense,
    pub prelu2: f32,
    pub residual: Vec<f32>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Weights {
    pub mlp: Vec<Dense>,
    pub expand: Expand,
    pub blocks: Vec<Block>,
    pub contract: Contract,
    /// The second envelope's readout (version 2).
    #[serde(default)]
    pub memory: Option<Contract>,
}

/// The parsed, validated file.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct S4dFile {
    pub format: String,
    pub version: u32,
    pub sample_rate: f32,
    pub config: Config,
    pub weights: Weights,
    pub output: String,
    #[serde(default)]
    pub metadata: serde_json::Value,
}

impl S4dFile {
    /// The `metadata.name` of the file, if it has one.
    pub fn name(&self) -> Option<&str> {
        self.metadata.get("name").and_then(|n| n.as_str())
    }

    /// What the last layer's output is (validated: one of the known names).
    pub fn output_kind(&self) -> Output {
        if self.output == "gain" { Output::Gain } else { Output::Tanh }
    }

    /// Number of weights (what the GUI shows as the model's size).
    pub fn parameter_count(&self) -> usize {
        let dense = |d: &Dense| d.weight.iter().map(Vec::len).sum::<usize>() + d.bias.len();
        let w = &self.weights;
        let blocks: usize = w
            .blocks
            .iter()
            .map(|b| {
                let ssm = &b.ssm;
                // A and C: complex, one per channel and mode.
                let modes = 4 * ssm.a_re.len() * self.config.modes;
                dense(&b.linear) + 2 + ssm.dt.len() + ssm.d.len() + modes + dense(&b.film) + b.residual.len()
            })
            .sum();
        let expand = 2 * w.expand.weight.len() + w.expand.level_weight.as_ref().map_or(0, Vec::len);
        let readouts =
            [Some(&w.contract), w.memory.as_ref()].into_iter().flatten().map(|r| r.weight.len() + 1).sum::<usize>();
        w.mlp.iter().map(dense).sum::<usize>() + expand + blocks + readouts
    }

    fn validate(&self) -> Result<(), ModelFileError> {
        JSON.check_header(&self.format, self.version)?;
        if !(self.sample_rate.is_finite() && (8_000.0..=768_000.0).contains(&self.sample_rate)) {
            return Err(invalid("sample_rate", format!("{} Hz is not a usable rate", self.sample_rate)));
        }
        if self.output != "tanh" && self.output != "gain" {
            return Err(invalid("output", format!("\"{}\" is not a known output (tanh, gain)", self.output)));
        }
        let c = &self.config;
        for (what, value, limit) in [
            ("config.channels", c.channels, MAX_CHANNELS),
            ("config.modes", c.modes, MAX_MODES),
            ("config.depth", c.depth, MAX_DEPTH),
            ("config.embedding", c.embedding, MAX_WIDTH),
        ] {
            if value == 0 || value > limit {
                return Err(invalid(what, format!("{value} is outside 1..={limit}")));
            }
        }
        if c.controls.is_empty() || c.controls.len() > MAX_WIDTH {
            return Err(invalid("config.controls", "expected 1 to 1024 controls"));
        }
        for (i, control) in c.controls.iter().enumerate() {
            if !(control.min.is_finite() && control.max.is_finite() && control.max > control.min) {
                return Err(invalid(format!("config.controls[{i}]"), "needs finite min < max"));
            }
        }
        let h = c.channels;
        let w = &self.weights;

        // The control MLP: controls → … → embedding.
        if w.mlp.is_empty() {
            return Err(invalid("weights.mlp", "needs at least one layer"));
        }
        let mut width = c.controls.len();
        for (i, layer) in w.mlp.iter().enumerate() {
            let out = if i + 1 == w.mlp.len() { c.embedding } else { layer.bias.len() };
            check_dense(&format!("weights.mlp[{i}]"), layer, width, out)?;
            width = out;
        }
        check_vec("weights.expand.weight", &w.expand.weight, h)?;
        check_vec("weights.expand.bias", &w.expand.bias, h)?;
        match (c.level_floor_db, &w.expand.level_weight) {
            (None, None) => {}
            (Some(floor), Some(level_weight)) => {
                if !(floor.is_finite() && (-300.0..=-1.0).contains(&floor)) {
                    return Err(invalid("config.level_floor_db", format!("{floor} dB is outside -300..=-1")));
                }
                check_vec("weights.expand.level_weight", level_weight, h)?;
            }
            (Some(_), None) => {
                return Err(invalid("weights.expand.level_weight", "missing (config.level_floor_db is set)"));
            }
            (None, Some(_)) => {
                return Err(invalid("config.level_floor_db", "missing (weights.expand has a level_weight)"));
            }
        }
        if let Some(block) = c.block {
            if block == 0 || block > MAX_CONTROL_BLOCK {
                return Err(invalid("config.block", format!("{block} samples is outside 1..={MAX_CONTROL_BLOCK}")));
            }
            if self.output != "gain" || c.level_floor_db.is_none() {
                return Err(invalid("config.block", "the control-rate form needs a gain output and a level input"));
            }
        }
        check_vec("weights.contract.weight", &w.contract.weight, h)?;
        check_finite("weights.contract.bias", &[w.contract.bias])?;
        match (&w.memory, self.version == VERSION_ENVELOPES) {
            (Some(memory), true) => {
                if c.block.is_none() {
                    return Err(invalid(
                        "weights.memory",
                        "a second envelope needs the control-rate form (config.block)",
                    ));
                }
                check_vec("weights.memory.weight", &memory.weight, h)?;
                check_finite("weights.memory.bias", &[memory.bias])?;
            }
            (None, false) => {}
            (Some(_), false) => return Err(invalid("weights.memory", "only version 2 files have a second envelope")),
            (None, true) => return Err(invalid("weights.memory", "missing (version 2 files have a second envelope)")),
        }
        if w.blocks.len() != c.depth {
            return Err(invalid("weights.blocks", format!("{} blocks, config.depth says {}", w.blocks.len(), c.depth)));
        }
        for (i, b) in w.blocks.iter().enumerate() {
            let at = |field: &str| format!("weights.blocks[{i}].{field}");
            check_dense(&at("linear"), &b.linear, h, h)?;
            check_dense(&at("film"), &b.film, c.embedding, 2 * h)?;
            check_finite(&at("prelu1"), &[b.prelu1])?;
            check_finite(&at("prelu2"), &[b.prelu2])?;
            check_vec(&at("residual"), &b.residual, h)?;
            check_vec(&at("norm.mean"), &b.norm.mean, h)?;
            check_vec(&at("norm.var"), &b.norm.var, h)?;
            if !(b.norm.eps.is_finite() && b.norm.eps >= 0.0) {
                return Err(invalid(at("norm.eps"), "must be finite and ≥ 0"));
            }
            if b.norm.var.iter().any(|&v| v < 0.0 || v + b.norm.eps <= 0.0) {
                return Err(invalid(at("norm.var"), "variances must be ≥ 0 and var + eps > 0"));
            }
            let s = &b.ssm;
            check_vec(&at("ssm.dt"), &s.dt, h)?;
            if s.dt.iter().any(|&dt| dt <= 0.0) {
                return Err(invalid(at("ssm.dt"), "step sizes must be > 0"));
            }
            check_vec(&at("ssm.d"), &s.d, h)?;
            for (name, m) in [("a_re", &s.a_re), ("a_im", &s.a_im), ("c_re", &s.c_re), ("c_im", &s.c_im)] {
                check_matrix(&at(&format!("ssm.{name}")), m, h, c.modes)?;
            }
            if s.a_re.iter().flatten().any(|&a| a >= 0.0) {
                return Err(invalid(at("ssm.a_re"), "real parts must be < 0 (a stable, decaying state)"));
            }
        }
        Ok(())
    }
}

fn check_dense(path: &str, layer: &Dense, inputs: usize, outputs: usize) -> Result<(), ModelFileError> {
    if inputs > MAX_WIDTH || outputs == 0 || outputs > MAX_WIDTH {
        return Err(invalid(path, format!("{inputs} → {outputs} is outside the supported widths (1..={MAX_WIDTH})")));
    }
    check_matrix(&format!("{path}.weight"), &layer.weight, outputs, inputs)?;
    Ok(check_vec(&format!("{path}.bias"), &layer.bias, outputs)?)
}

/// Parses and validates the text of a file.
pub fn parse(text: &str) -> Result<S4dFile, ModelFileError> {
    let file: S4dFile = JSON.parse(text)?;
    file.validate()?;
    Ok(file)
}

/// Reads, parses and validates a file; errors name it.
pub fn load(path: &Path) -> Result<S4dFile, ModelFileError> {
    JSON.load(path, parse)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use serde_json::{Value, json};

    /// A small valid file with deterministic, non-trivial weights: `channels` channels, 2 modes, 2 blocks, controls
    /// [peak_reduction 0..100, limit 0..1], an MLP 2 → 4 → 3. Not a model: for checking the parser and the maths.
    pub(crate) fn tiny(channels: usize) -> Value {
        let mut seed = 1u32;
        let mut next = move || {
            seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (seed >> 8) as f32 / (1u32 << 24) as f32 - 0.5
        };
        let mut vector = |n: usize, scale: f32| (0..n).map(|_| scale * next()).collect::<Vec<f32>>();
        let h = channels;
        let mut matrix = |r: usize, c: usize, scale: f32| (0..r).map(|_| vector(c, scale)).collect::<Vec<_>>();
        let mut block = || {
            // Time constants from 1/(0.5·0.1) = 20 samples to 2000 and more: fast and slow modes.
            let dt: Vec<f32> = (0..h).map(|c| 10f32.powf(-1.0 - c as f32 * 0.7)).collect();
            json!({
                "linear": {"weight": matrix(h, h, 0.8), "bias": matrix(1, h, 0.2)[0]},
                "prelu1": 0.25,
                "ssm": {
                    "dt": dt,
                    "a_re": vec![vec![-0.5, -0.5]; h],
                    "a_im": vec![vec![0.0, std::f32::consts::PI]; h],
                    "c_re": matrix(h, 2, 1.0), "c_im": matrix(h, 2, 1.0), "d": matrix(1, h, 1.0)[0]
                },
                "norm": {"mean": matrix(1, h, 0.1)[0], "var": vec![0.5; h], "eps": 1e-5},
                "film": {"weight": matrix(2 * h, 3, 1.0), "bias": matrix(1, 2 * h, 0.5)[0]},
                "prelu2": 0.1,
                "residual": matrix(1, h, 1.0)[0]
            })
        };
        let blocks = vec![block(), block()];
        let mlp = json!([{"weight": matrix(4, 2, 1.0), "bias": matrix(1, 4, 0.5)[0]},
                         {"weight": matrix(3, 4, 1.0), "bias": matrix(1, 3, 0.5)[0]}]);
        let expand = json!({"weight": matrix(1, h, 2.0)[0], "bias": matrix(1, h, 0.1)[0]});
        let contract = json!({"weight": matrix(1, h, 0.5)[0], "bias": 0.01});
        json!({
            "format": "neuralboard-s4d", "version": 1, "sample_rate": 48000,
            "config": {"channels": h, "modes": 2, "depth": 2, "embedding": 3,
                       "controls": [{"name": "peak_reduction", "min": 0, "max": 100}, {"name": "limit", "min": 0, "max": 1}]},
            "weights": {"mlp": mlp, "expand": expand, "blocks": blocks, "contract": contract},
            "output": "tanh",
            "metadata": {"name": "tiny"}
        })
    }

    fn error_of(mutate: impl FnOnce(&mut Value)) -> String {
        let mut v = tiny(3);
        mutate(&mut v);
        parse(&v.to_string()).map(|_| ()).unwrap_err().to_string()
    }

    #[test]
    fn s4d_a_valid_file_parses_and_counts_its_weights() {
        let file = parse(&tiny(3).to_string()).unwrap();
        assert_eq!(file.name(), Some("tiny"));
        // mlp 2·4+4 + 4·3+3; expand 6; per block: linear 9+3, prelus 2, ssm 3+3+4·3·2, film 6·3+6, residual 3;
        // contract 3+1.
        let block = 12 + 2 + 30 + 24 + 3;
        assert_eq!(file.parameter_count(), 12 + 15 + 6 + 2 * block + 4);
    }

    /// [`tiny`] with a level input (floor −90 dB) and a gain output.
    pub(crate) fn tiny_gain(channels: usize) -> Value {
        let mut v = tiny(channels);
        v["config"]["level_floor_db"] = json!(-90.0);
        let level: Vec<f32> = (0..channels).map(|c| 1.5 - 0.4 * c as f32).collect();
        v["weights"]["expand"]["level_weight"] = json!(level);
        v["output"] = json!("gain");
        v
    }

    /// [`tiny_gain`] in the control-rate form, blocks of `block` samples.
    pub(crate) fn tiny_control_rate(channels: usize, block: usize) -> Value {
        let mut v = tiny_gain(channels);
        v["config"]["block"] = json!(block);
        v
    }

    /// [`tiny_control_rate`] with a second envelope's readout (version 2): the first readout's weights reversed
    /// and its bias raised, so that each readout is the larger in places.
    pub(crate) fn tiny_envelopes(channels: usize, block: usize) -> Value {
        let mut v = tiny_control_rate(channels, block);
        let contract = &v["weights"]["contract"];
        let mut weight: Vec<f64> = serde_json::from_value(contract["weight"].clone()).unwrap();
        weight.reverse();
        let bias = contract["bias"].as_f64().unwrap() + 0.3;
        v["weights"]["memory"] = json!({"weight": weight, "bias": bias});
        v["version"] = json!(VERSION_ENVELOPES);
        v
    }

    #[test]
    fn s4d_a_second_envelope_is_version_2_and_needs_the_control_rate_form() {
        let file = parse(&tiny_envelopes(3, 32).to_string()).unwrap();
        let one = parse(&tiny_control_rate(3, 32).to_string()).unwrap();
        assert_eq!(file.parameter_count(), one.parameter_count() + 3 + 1);
        for (mutate, wanted) in [
            (
                Box::new(|v: &mut Value| v["version"] = json!(1)) as Box<dyn FnOnce(&mut Value)>,
                "only version 2 files have a second envelope",
            ),
            (
                Box::new(|v: &mut Value| v["weights"].as_object_mut().unwrap().remove("memory").map(drop).unwrap()),
                "memory: missing",
            ),
            (Box::new(|v: &mut Value| v["weights"]["memory"]["weight"] = json!([1.0])), "memory.weight: 1 values"),
            (Box::new(|v: &mut Value| v["weights"]["memory"]["bias"] = json!(1e39)), "memory.bias"),
            (
                Box::new(|v: &mut Value| v["config"].as_object_mut().unwrap().remove("block").map(drop).unwrap()),
                "needs the control-rate form",
            ),
            (
                Box::new(|v: &mut Value| v["version"] = json!(3)),
                "version 3 is not supported (this player reads versions 1 to 2)",
            ),
        ] {
            let mut v = tiny_envelopes(3, 32);
            mutate(&mut v);
            let e = parse(&v.to_string()).map(|_| ()).unwrap_err().to_string();
            assert!(e.contains(wanted), "{e:?} should mention {wanted:?}");
        }
    }

    #[test]
    fn s4d_a_control_rate_gain_computer_parses_and_needs_a_gain_output_and_a_level() {
        let file = parse(&tiny_control_rate(3, 32).to_string()).unwrap();
        assert_eq!(file.config.block, Some(32));
        assert_eq!(parse(&tiny_gain(3).to_string()).unwrap().config.block, None);
        for (mutate, wanted) in [
            (Box::new(|v: &mut Value| v["config"]["block"] = json!(0)) as Box<dyn FnOnce(&mut Value)>, "block: 0"),
            (Box::new(|v: &mut Value| v["config"]["block"] = json!(1 << 20)), "outside 1..=4096"),
            (Box::new(|v: &mut Value| v["output"] = json!("tanh")), "needs a gain output"),
        ] {
            let mut v = tiny_control_rate(3, 32);
            mutate(&mut v);
            let e = parse(&v.to_string()).map(|_| ()).unwrap_err().to_string();
            assert!(e.contains(wanted), "{e:?} should mention {wanted:?}");
        }
        let mut v = tiny(3);
        v["config"]["block"] = json!(16);
        assert!(parse(&v.to_string()).unwrap_err().to_string().contains("level input"));
    }

    #[test]
    fn s4d_a_gain_computer_with_a_level_input_parses() {
        let file = parse(&tiny_gain(3).to_string()).unwrap();
        assert_eq!(file.output_kind(), Output::Gain);
        assert_eq!(file.config.level_floor_db, Some(-90.0));
        assert_eq!(file.parameter_count(), parse(&tiny(3).to_string()).unwrap().parameter_count() + 3);
        assert_eq!(parse(&tiny(3).to_string()).unwrap().output_kind(), Output::Tanh);
    }

    #[test]
    fn s4d_bad_files_say_what_is_wrong() {
        type Mutation = Box<dyn FnOnce(&mut Value)>;
        let cases: Vec<(Mutation, &str)> = vec![
            (Box::new(|v| v["format"] = json!("nam")), "format \"nam\""),
            (Box::new(|v| v["version"] = json!(2)), "weights.memory: missing"),
            (Box::new(|v| v["version"] = json!(0)), "version 0 is not supported"),
            (Box::new(|v| v["weights"]["blocks"][1]["ssm"]["a_re"][0][1] = json!(0.1)), "blocks[1].ssm.a_re"),
            (Box::new(|v| v["weights"]["blocks"][0]["ssm"]["dt"][2] = json!(0.0)), "step sizes"),
            (Box::new(|v| v["weights"]["blocks"][0]["norm"]["var"][0] = json!(-1.0)), "norm.var"),
            (Box::new(|v| v["weights"]["blocks"][0]["film"]["weight"][5] = json!([1.0])), "film.weight[5]: 1 values"),
            (Box::new(|v| v["weights"]["expand"]["bias"] = json!([1.0])), "expand.bias: 1 values, expected 3"),
            (Box::new(|v| v["config"]["depth"] = json!(3)), "2 blocks, config.depth says 3"),
            (Box::new(|v| v["config"]["channels"] = json!(100_000)), "config.channels"),
            (Box::new(|v| v["config"]["controls"][0]["max"] = json!(-1)), "min < max"),
            (Box::new(|v| v["output"] = json!("relu")), "\"relu\""),
            (Box::new(|v| v["weights"].as_object_mut().unwrap().remove("contract").map(drop).unwrap()), "contract"),
            (Box::new(|v| v["config"]["level_floor_db"] = json!(-80)), "level_weight: missing"),
            (Box::new(|v| v["weights"]["expand"]["level_weight"] = json!([1, 2, 3])), "level_floor_db: missing"),
        ];
        for (mutate, wanted) in cases {
            let e = error_of(mutate);
            assert!(e.contains(wanted), "{e:?} should mention {wanted:?}");
        }
        for (mutate, wanted) in [
            (
                Box::new(|v: &mut Value| v["config"]["level_floor_db"] = json!(0)) as Box<dyn FnOnce(&mut Value)>,
                "level_floor_db: 0 dB",
            ),
            (Box::new(|v: &mut Value| v["weights"]["expand"]["level_weight"] = json!([1])), "level_weight: 1 values"),
        ] {
            let mut v = tiny_gain(3);
            mutate(&mut v);
            let e = parse(&v.to_string()).map(|_| ()).unwrap_err().to_string();
            assert!(e.contains(wanted), "{e:?} should mention {wanted:?}");
        }
        assert!(parse("").unwrap_err().to_string().contains("not a valid"));
        assert!(parse("{\"format\": 1}").is_err());
    }

    #[test]
    fn s4d_load_names_the_file() {
        let dir = std::env::temp_dir().join(format!("nb-s4d-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("broken.s4d.json");
        std::fs::write(&path, "{ truncated").unwrap();
        let e = load(&path).unwrap_err().to_string();
        assert!(e.contains("broken.s4d.json") && e.contains("not a valid"), "{e}");
        let e = load(&dir.join("absent.json")).unwrap_err().to_string();
        assert!(e.contains("absent.json") && e.contains("cannot read"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
