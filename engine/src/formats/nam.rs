//! Neural Amp Modeler `.nam` files: JSON → validated, typed model descriptions.
//!
//! A `.nam` file is one JSON object holding a version, an architecture name, its hyper-parameters (`config`), every
//! weight flattened into one float32 stream, and optional metadata. This module checks all of it *before* anything
//! is allocated from it: versions exactly as NeuralAmpModelerCore accepts them, every key the reference reads
//! (including the legacy spellings), dimensions that must agree between layers, and the exact number of weights the
//! architecture consumes. The forward passes in [`crate::nn`] can therefore trust a [`NamFile`] and never panic on
//! one. See `shared/NAM_FORMAT.md` for the format itself.
//!
//! Hostile files are expected (files come from the internet): every size is capped below (`MAX_*`), numbers must be
//! finite after conversion to `f32`, and every error says where in the file it is (`config.layers[1].dilations[3]`).
//! Where the reference is looser than the spec (integers written as `3.0`, `true` for a default FiLM, a version
//! with a `-beta` suffix) we follow the reference, so that no model it plays is refused here; what we refuse beyond
//! it are files it would crash on or hang with (mismatched dimensions, absurd sizes or sample rates).

use std::fmt;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

/// Largest file [`load`] reads. The biggest real captures are a few MB; 200 MB leaves room for anything sane.
pub const MAX_FILE_BYTES: u64 = 200 * 1024 * 1024;
/// Most weights one model (including nested models) may have. A1 "standard" has 13 802; 50 M is far beyond real-time.
pub const MAX_WEIGHTS: u64 = 50_000_000;
/// Largest channel count of any layer (channels, bottleneck, head sizes, condition sizes, LSTM hidden size).
pub const MAX_CHANNELS: usize = 4096;
/// Largest dilation of any convolution.
pub const MAX_DILATION: usize = 1_000_000;
/// Largest convolution kernel (taps).
pub const MAX_KERNEL_SIZE: usize = 4096;
/// Most floats of convolution history one model may need (channels × dilation × (kernel − 1), summed): 64 MB.
pub const MAX_HISTORY_FLOATS: u64 = 16_000_000;
/// How deep `condition_dsp` / container submodels may nest.
pub const MAX_NESTING: usize = 8;
/// Highest sample rate accepted. The LSTM prewarms for half a second at the model's rate, so an absurd rate would
/// make loading hang; 768 kHz is the highest rate audio interfaces offer.
pub const MAX_SAMPLE_RATE_HZ: f64 = 768_000.0;
/// The `sample_rate` value the trainer writes for "unknown" (it is also what the reference uses internally).
const UNKNOWN_SAMPLE_RATE: f64 = -1.0;

/// Versions this implementation plays fully: those NeuralAmpModelerCore 0.5.5 plays fully.
const FULL_SUPPORT_MIN: Version = Version { major: 0, minor: 5, patch: 0 };
const FULL_SUPPORT_MAX: Version = Version { major: 0, minor: 7, patch: 0 };
/// First minor version that is refused outright (0.8.0 may change the meaning of existing keys).
const FIRST_UNSUPPORTED_MINOR: u32 = 8;

/// Everything that can be wrong with a `.nam` file. `path` fields name the place in the JSON document.
#[derive(Debug, thiserror::Error)]
pub enum NamError {
    #[error("{path}: {source}")]
    InFile {
        path: PathBuf,
        #[source]
        source: Box<NamError>,
    },
    #[error("cannot read the file: {0}")]
    Io(#[from] std::io::Error),
    #[error("the file is {size} bytes; .nam files over {limit} bytes are refused")]
    FileTooLarge { size: u64, limit: u64 },
    #[error("the file is empty")]
    Empty,
    #[error("not valid JSON (line {line}, column {column}): {message}")]
    Json { line: usize, column: usize, message: String },
    #[error("{path}: expected a JSON object, found {found}")]
    NotAnObject { path: String, found: &'static str },
    #[error("{path}: required key is missing")]
    MissingKey { path: String },
    #[error("{path}: expected {expected}, found {found}")]
    WrongType { path: String, expected: &'static str, found: String },
    #[error("{path}: {message}")]
    InvalidValue { path: String, message: String },
    #[error("{path}: \"{version}\" is not a version of the form MAJOR.MINOR.PATCH")]
    InvalidVersion { path: String, version: String },
    #[error(
        "{path}: version {version} is not supported ({reason}); this player reads 0.5.0 to 0.7.x — update the \
         player or re-export the model"
    )]
    UnsupportedVersion { path: String, version: Version, reason: &'static str },
    #[error("{path}: unknown architecture \"{name}\" (known: WaveNet, LSTM, ConvNet, Linear, SlimmableContainer)")]
    UnknownArchitecture { path: String, name: String },
    #[error("{path}: unknown activation \"{name}\"")]
    UnknownActivation { path: String, name: String },
    #[error("{path}: the architecture needs {expected} weights but the file has {found}")]
    WeightCount { path: String, expected: u64, found: u64 },
    #[error("{path}: weight {value} is not a finite 32-bit float")]
    NonFiniteWeight { path: String, value: f64 },
    #[error("{path}: {what} {value} exceeds the limit of {limit}")]
    LimitExceeded { path: String, what: &'static str, value: u64, limit: u64 },
}

/// A `MAJOR.MINOR.PATCH` version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Version {
    pub major: u32,
    pub minor: u32,
    pub patch: u32,
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

impl Version {
    /// Parses `MAJOR.MINOR.PATCH`, allowing a semver pre-release/build suffix after the patch (`0.5.4-beta`), which
    /// the reference also reads as `0.5.4`.
    pub fn parse(text: &str) -> Option<Version> {
        let mut parts = text.splitn(3, '.');
        let number = |s: &str| -> Option<u32> {
            if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            s.parse().ok()
        };
        let major = number(parts.next()?)?;
        let minor = number(parts.next()?)?;
        let rest = parts.next()?;
        let end = rest.find(['-', '+']).unwrap_or(rest.len());
        let patch = number(&rest[..end])?;
        if end < rest.len() && rest.len() == end + 1 {
            return None; // a bare "-" or "+" with nothing after it
        }
        Some(Version { major, minor, patch })
    }
}

/// The parsed, validated content of a `.nam` file.
#[derive(Debug, Clone, PartialEq)]
pub struct NamFile {
    pub version: Version,
    pub architecture: Architecture,
    /// Rate the model was trained at, in Hz. `None` for old files that do not say (treat as 48 kHz to play them).
    pub sample_rate: Option<f64>,
    pub metadata: NamMetadata,
    /// Every parameter in file order; [`Architecture::weight_count`] of them (none for a container).
    pub weights: Vec<f32>,
    /// Things worth telling the user that did not stop the file from loading (newer minor version, odd metadata).
    pub warnings: Vec<String>,
}

/// Architecture and its typed hyper-parameters.
#[derive(Debug, Clone, PartialEq)]
pub enum Architecture {
    WaveNet(WaveNetConfig),
    Lstm(LstmConfig),
    Linear(LinearConfig),
    ConvNet(ConvNetConfig),
    SlimmableContainer(ContainerConfig),
}

impl Architecture {
    /// The registry name used in files.
    pub fn name(&self) -> &'static str {
        match self {
            Architecture::WaveNet(_) => "WaveNet",
            Architecture::Lstm(_) => "LSTM",
            Architecture::Linear(_) => "Linear",
            Architecture::ConvNet(_) => "ConvNet",
            Architecture::SlimmableContainer(_) => "SlimmableContainer",
        }
    }

    /// Number of floats this architecture reads from its own `weights` array (nested models carry their own).
    /// Saturates instead of overflowing, so absurd configurations compare as "too many".
    pub fn weight_count(&self) -> u64 {
        match self {
            Architecture::WaveNet(c) => c.weight_count(),
            Architecture::Lstm(c) => c.weight_count(),
            Architecture::Linear(c) => c.receptive_field as u64 + u64::from(c.bias),
            Architecture::ConvNet(c) => c.weight_count(),
            Architecture::SlimmableContainer(_) => 0,
        }
    }

    /// Input channels the model expects (1 for every model a guitar can play).
    pub fn in_channels(&self) -> usize {
        match self {
            Architecture::WaveNet(c) => c.in_channels,
            Architecture::Lstm(c) => c.in_channels,
            Architecture::Linear(c) => c.in_channels,
            Architecture::ConvNet(c) => c.in_channels,
            Architecture::SlimmableContainer(_) => 1,
        }
    }

    /// Output channels the model produces.
    pub fn out_channels(&self) -> usize {
        match self {
            Architecture::WaveNet(c) => c.out_channels(),
            Architecture::Lstm(c) => c.out_channels,
            Architecture::Linear(c) => c.out_channels,
            Architecture::ConvNet(c) => c.out_channels,
            Architecture::SlimmableContainer(_) => 1,
        }
    }
}

/// Metadata the player uses or shows. Unknown keys are ignored; wrong types are ignored with a warning.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NamMetadata {
    /// Output loudness in dB of the capture (used to normalise levels).
    pub loudness: Option<f64>,
    /// dBu of the capture's input at digital full scale (used to calibrate input gain).
    pub input_level_dbu: Option<f64>,
    /// dBu of the capture's output at digital full scale.
    pub output_level_dbu: Option<f64>,
    pub name: Option<String>,
    pub modeled_by: Option<String>,
    pub gear_type: Option<String>,
    pub gear_make: Option<String>,
    pub gear_model: Option<String>,
    pub tone_type: Option<String>,
}

/// An activation function with its parameters. `Tanh` becomes the fast approximation in fast-tanh mode.
#[derive(Debug, Clone, PartialEq)]
pub enum ActivationConfig {
    Tanh,
    Hardtanh,
    FastTanh,
    Relu,
    LeakyRelu {
        negative_slope: f32,
    },
    /// One slope per channel; channel = flat (column-major) index mod `negative_slopes.len()`.
    Prelu {
        negative_slopes: Vec<f32>,
    },
    Sigmoid,
    Silu,
    Hardswish,
    LeakyHardtanh {
        min_val: f32,
        max_val: f32,
        min_slope: f32,
        max_slope: f32,
    },
    Softsign,
}

/// How a WaveNet layer turns its 2·bottleneck (or bottleneck) pre-activation rows into bottleneck rows.
#[derive(Debug, Clone, PartialEq)]
pub enum Gating {
    None,
    /// `act(top) ⊙ secondary(bottom)`.
    Gated {
        secondary: ActivationConfig,
    },
    /// `α ⊙ act(top) + (1 − α) ⊙ top` with `α = secondary(bottom)`.
    Blended {
        secondary: ActivationConfig,
    },
}

impl Gating {
    pub fn is_none(&self) -> bool {
        matches!(self, Gating::None)
    }
}

/// One layer of a WaveNet layer array.
#[derive(Debug, Clone, PartialEq)]
pub struct LayerConfig {
    pub kernel_size: usize,
    pub dilation: usize,
    pub activation: ActivationConfig,
    pub gating: Gating,
}

/// A FiLM slot: `x ⊙ scale(c) (+ shift(c))`, scale/shift from a grouped 1×1 conv of the condition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FilmConfig {
    pub shift: bool,
    pub groups: usize,
}

/// The eight optional FiLM slots of a layer, in weight order.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FilmSlots {
    pub conv_pre: Option<FilmConfig>,
    pub conv_post: Option<FilmConfig>,
    pub input_mixin_pre: Option<FilmConfig>,
    pub input_mixin_post: Option<FilmConfig>,
    pub activation_pre: Option<FilmConfig>,
    pub activation_post: Option<FilmConfig>,
    pub layer1x1_post: Option<FilmConfig>,
    pub head1x1_post: Option<FilmConfig>,
}

/// A WaveNet layer array: rechannel, layers with residual + skip connections, and the head rechannel.
#[derive(Debug, Clone, PartialEq)]
pub struct LayerArrayConfig {
    pub input_size: usize,
    pub condition_size: usize,
    pub channels: usize,
    pub bottleneck: usize,
    pub layers: Vec<LayerConfig>,
    /// Output rows of the head rechannel (`head_size`).
    pub head_size: usize,
    pub head_kernel_size: usize,
    pub head_bias: bool,
    pub head_dilation: usize,
    pub layer1x1_active: bool,
    pub layer1x1_groups: usize,
    /// `Some((out_channels, groups))` when the head 1×1 is active.
    pub head1x1: Option<(usize, usize)>,
    pub groups_input: usize,
    pub groups_input_mixin: usize,
    pub films: FilmSlots,
    /// `allowed_channels` of a `slice_channels_uniform` slimmable array (ascending, last = channels).
    pub slimmable: Option<Vec<usize>>,
}

impl LayerArrayConfig {
    /// Rows each layer contributes to the head accumulator ("head output size").
    pub fn head_output_size(&self) -> usize {
        self.head1x1.map_or(self.bottleneck, |(out, _)| out)
    }

    /// Rows of a layer's dilated conv output: 2·bottleneck when gated or blended.
    pub fn z_channels(&self, layer: &LayerConfig) -> usize {
        if layer.gating.is_none() { self.bottleneck } else { 2 * self.bottleneck }
    }
}

/// Post-stack head: `for each conv: h = conv(act(h))`.
#[derive(Debug, Clone, PartialEq)]
pub struct PostHeadConfig {
    pub in_channels: usize,
    pub channels: usize,
    pub out_channels: usize,
    pub kernel_sizes: Vec<usize>,
    pub activation: ActivationConfig,
}

#[derive(Debug, Clone, PartialEq)]
pub struct WaveNetConfig {
    pub in_channels: usize,
    pub layer_arrays: Vec<LayerArrayConfig>,
    pub head: Option<PostHeadConfig>,
    /// `config.head_scale` as written. Not used: the reference multiplies by the LAST weight instead.
    pub head_scale: f32,
    /// Model run on the input whose output is the condition of every layer.
    pub condition_dsp: Option<Box<NamFile>>,
}

impl WaveNetConfig {
    pub fn out_channels(&self) -> usize {
        match &self.head {
            Some(head) => head.out_channels,
            None => self.layer_arrays.last().map_or(0, |a| a.head_size),
        }
    }

    /// Whether any layer array can change size at run time.
    pub fn is_slimmable(&self) -> bool {
        self.layer_arrays.iter().any(|a| a.slimmable.is_some())
    }

    /// Whether the slimmable arrays can actually be sliced: the reference's slicing only handles ungrouped 1×1s and
    /// convolutions, a kernel-1 head rechannel and no post-stack head (it throws when asked to slim anything else).
    pub fn can_slim(&self) -> bool {
        let films_ungrouped = |a: &LayerArrayConfig| {
            let f = &a.films;
            [
                f.conv_pre,
                f.conv_post,
                f.input_mixin_pre,
                f.input_mixin_post,
                f.activation_pre,
                f.activation_post,
                f.layer1x1_post,
                f.head1x1_post,
            ]
            .iter()
            .flatten()
            .all(|film| film.groups == 1)
        };
        self.is_slimmable()
            && self.head.is_none()
            && self.layer_arrays.iter().all(|a| {
                a.groups_input == 1
                    && a.groups_input_mixin == 1
                    && (!a.layer1x1_active || a.layer1x1_groups == 1)
                    && a.head1x1.is_none_or(|(_, groups)| groups == 1)
                    && a.head_kernel_size == 1
                    && films_ungrouped(a)
            })
    }

    fn weight_count(&self) -> u64 {
        let mut n: u64 = 0;
        for a in &self.layer_arrays {
            n = n.saturating_add(conv1x1_weights(a.input_size, a.channels, false, 1));
            for l in &a.layers {
                let z = a.z_channels(l);
                n = n.saturating_add(conv1d_weights(a.channels, z, l.kernel_size, true, a.groups_input));
                n = n.saturating_add(conv1x1_weights(a.condition_size, z, false, a.groups_input_mixin));
                if a.layer1x1_active {
                    n = n.saturating_add(conv1x1_weights(a.bottleneck, a.channels, true, a.layer1x1_groups));
                }
                if let Some((out, groups)) = a.head1x1 {
                    n = n.saturating_add(conv1x1_weights(a.bottleneck, out, true, groups));
                }
                for (film, dim) in film_dims(a, l) {
                    n = n.saturating_add(film.map_or(0, |f| film_weights(a.condition_size, dim, f)));
                }
            }
            n = n.saturating_add(conv1d_weights(a.head_output_size(), a.head_size, a.head_kernel_size, a.head_bias, 1));
        }
        if let Some(head) = &self.head {
            let mut c_in = head.in_channels;
            for (i, &k) in head.kernel_sizes.iter().enumerate() {
                let c_out = if i + 1 == head.kernel_sizes.len() { head.out_channels } else { head.channels };
                n = n.saturating_add(conv1d_weights(c_in, c_out, k, true, 1));
                c_in = c_out;
            }
        }
        n.saturating_add(1) // head_scale
    }
}

/// The FiLM slots of one layer with the row count each modulates, in weight order.
pub fn film_dims(a: &LayerArrayConfig, l: &LayerConfig) -> [(Option<FilmConfig>, usize); 8] {
    let z = a.z_channels(l);
    let f = &a.films;
    [
        (f.conv_pre, a.channels),
        (f.conv_post, z),
        (f.input_mixin_pre, a.condition_size),
        (f.input_mixin_post, z),
        (f.activation_pre, z),
        (f.activation_post, a.bottleneck),
        (f.layer1x1_post, a.channels),
        (f.head1x1_post, a.head1x1.map_or(0, |(out, _)| out)),
    ]
}

#[derive(Debug, Clone, PartialEq)]
pub struct LstmConfig {
    pub input_size: usize,
    pub hidden_size: usize,
    pub num_layers: usize,
    pub in_channels: usize,
    pub out_channels: usize,
}

impl LstmConfig {
    fn weight_count(&self) -> u64 {
        let h = self.hidden_size as u64;
        let mut n: u64 = 0;
        for layer in 0..self.num_layers {
            let i = if layer == 0 { self.input_size as u64 } else { h };
            // W (4H × (I+H)), b (4H), h0 (H), c0 (H)
            n = n.saturating_add((4 * h).saturating_mul(i + h)).saturating_add(4 * h + 2 * h);
        }
        n.saturating_add((self.out_channels as u64).saturating_mul(h + 1))
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct LinearConfig {
    pub receptive_field: usize,
    pub bias: bool,
    pub in_channels: usize,
    pub out_channels: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ConvNetConfig {
    pub channels: usize,
    pub dilations: Vec<usize>,
    pub batchnorm: bool,
    pub activation: ActivationConfig,
    pub groups: usize,
    pub in_channels: usize,
    pub out_channels: usize,
}

/// Kernel size of every ConvNet block (fixed by the format).
pub const CONVNET_KERNEL_SIZE: usize = 2;

impl ConvNetConfig {
    fn weight_count(&self) -> u64 {
        let c = self.channels;
        let mut n: u64 = 0;
        for i in 0..self.dilations.len() {
            let c_in = if i == 0 { self.in_channels } else { c };
            n = n.saturating_add(conv1d_weights(c_in, c, CONVNET_KERNEL_SIZE, !self.batchnorm, self.groups));
            if self.batchnorm {
                n = n.saturating_add(4 * c as u64 + 1);
            }
        }
        n.saturating_add(conv1x1_weights(c, self.out_channels, true, 1))
    }
}

/// One submodel of a [`ContainerConfig`]: active while the slim value is below `max_value`.
#[derive(Debug, Clone, PartialEq)]
pub struct Submodel {
    pub max_value: f64,
    pub model: Box<NamFile>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ContainerConfig {
    /// Sorted by ascending `max_value`; the last has `max_value ≥ 1`.
    pub submodels: Vec<Submodel>,
}

/// Weights of a grouped 1×1 conv: block-diagonal `out × in/groups`, then `out` biases.
pub fn conv1x1_weights(c_in: usize, c_out: usize, bias: bool, groups: usize) -> u64 {
    conv1d_weights(c_in, c_out, 1, bias, groups)
}

/// Weights of a grouped dilated conv: `out × in/groups × kernel`, then `out` biases.
pub fn conv1d_weights(c_in: usize, c_out: usize, kernel: usize, bias: bool, groups: usize) -> u64 {
    let per_group_in = (c_in / groups.max(1)) as u64;
    (c_out as u64).saturating_mul(per_group_in).saturating_mul(kernel as u64).saturating_add(if bias {
        c_out as u64
    } else {
        0
    })
}

/// Weights of a FiLM slot modulating `dim` rows.
pub fn film_weights(condition_size: usize, dim: usize, film: FilmConfig) -> u64 {
    conv1x1_weights(condition_size, if film.shift { 2 * dim } else { dim }, true, film.groups)
}

/// Most JSON values (counted by their separating commas) a file may hold beyond its weights: config and metadata
/// are a few hundred. Counting first bounds the memory the JSON tree can take (about 32 bytes per value) for files
/// that are mostly one enormous array.
const MAX_NON_WEIGHT_VALUES: u64 = 1_000_000;

/// Parses the text of a `.nam` file.
pub fn parse(text: &str) -> Result<NamFile, NamError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text); // a UTF-8 byte-order mark, as some editors write
    if text.trim().is_empty() {
        return Err(NamError::Empty);
    }
    let values = bytecount(text.as_bytes(), b',') as u64;
    if values > MAX_WEIGHTS + MAX_NON_WEIGHT_VALUES {
        return Err(NamError::LimitExceeded {
            path: "(top level)".into(),
            what: "number of JSON values",
            value: values,
            limit: MAX_WEIGHTS + MAX_NON_WEIGHT_VALUES,
        });
    }
    let value: Value = serde_json::from_str(text).map_err(|e| NamError::Json {
        line: e.line(),
        column: e.column(),
        message: e.to_string(),
    })?;
    parse_value(&value)
}

fn bytecount(bytes: &[u8], needle: u8) -> usize {
    bytes.iter().filter(|&&b| b == needle).count()
}

/// Parses an already-decoded JSON document.
pub fn parse_value(value: &Value) -> Result<NamFile, NamError> {
    let mut warnings = Vec::new();
    let file = parse_model(At::root(value), 0, &mut warnings)?;
    Ok(NamFile { warnings, ..file })
}

/// Reads and parses a `.nam` file; errors name the file.
pub fn load(path: &Path) -> Result<NamFile, NamError> {
    let in_file = |source: NamError| NamError::InFile { path: path.to_path_buf(), source: Box::new(source) };
    let size = std::fs::metadata(path).map_err(|e| in_file(e.into()))?.len();
    if size > MAX_FILE_BYTES {
        return Err(in_file(NamError::FileTooLarge { size, limit: MAX_FILE_BYTES }));
    }
    let bytes = std::fs::read(path).map_err(|e| in_file(e.into()))?;
    let text = String::from_utf8(bytes)
        .map_err(|e| in_file(NamError::Json { line: 0, column: 0, message: format!("not UTF-8 text ({e})") }))?;
    parse(&text).map_err(in_file)
}

impl NamFile {
    /// Checks the cross-field rules (dimensions, groups, limits, weight count) again. [`parse`] already did; the
    /// builder in [`crate::nn`] calls this because a `NamFile` can also be made or edited by hand.
    pub fn validate(&self) -> Result<(), NamError> {
        validate_model(self, "", 0)
    }

    /// Total parameters including nested models (condition DSPs, container submodels).
    pub fn total_weights(&self) -> u64 {
        let nested = match &self.architecture {
            Architecture::WaveNet(c) => c.condition_dsp.as_ref().map_or(0, |m| m.total_weights()),
            Architecture::SlimmableContainer(c) => c.submodels.iter().map(|s| s.model.total_weights()).sum(),
            _ => 0,
        };
        self.weights.len() as u64 + nested
    }
}

// ---------------------------------------------------------------------------------------------------------------
// JSON walking with paths

/// A JSON value and where it is in the document.
#[derive(Clone)]
struct At<'a> {
    value: &'a Value,
    path: String,
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() { key.to_string() } else { format!("{path}.{key}") }
}

impl<'a> At<'a> {
    fn root(value: &'a Value) -> Self {
        At { value, path: String::new() }
    }

    fn display_path(&self) -> String {
        if self.path.is_empty() { "(top level)".to_string() } else { self.path.clone() }
    }

    fn wrong_type(&self, expected: &'static str) -> NamError {
        let found = match self.value {
            Value::Number(n) => format!("the number {n}"),
            Value::String(s) if s.len() <= 40 => format!("the string \"{s}\""),
            other => type_name(other).to_string(),
        };
        NamError::WrongType { path: self.display_path(), expected, found }
    }

    fn invalid(&self, message: impl Into<String>) -> NamError {
        NamError::InvalidValue { path: self.display_path(), message: message.into() }
    }

    fn object(&self) -> Result<&'a Map<String, Value>, NamError> {
        self.value
            .as_object()
            .ok_or_else(|| NamError::NotAnObject { path: self.display_path(), found: type_name(self.value) })
    }

    /// The value under `key`, even if it is `null`; `None` if the key is absent (or this is not an object).
    fn get(&self, key: &str) -> Option<At<'a>> {
        self.value.as_object()?.get(key).map(|value| At { value, path: join(&self.path, key) })
    }

    /// The value under `key`, treating `null` as absent.
    fn opt(&self, key: &str) -> Option<At<'a>> {
        self.get(key).filter(|v| !v.value.is_null())
    }

    fn req(&self, key: &str) -> Result<At<'a>, NamError> {
        self.get(key).ok_or_else(|| NamError::MissingKey { path: join(&self.path, key) })
    }

    fn array(&self) -> Result<&'a Vec<Value>, NamError> {
        self.value.as_array().ok_or_else(|| self.wrong_type("an array"))
    }

    fn items(&self) -> Result<Vec<At<'a>>, NamError> {
        Ok(self
            .array()?
            .iter()
            .enumerate()
            .map(|(i, value)| At { value, path: format!("{}[{i}]", self.path) })
            .collect())
    }

    fn bool(&self) -> Result<bool, NamError> {
        self.value.as_bool().ok_or_else(|| self.wrong_type("true or false"))
    }

    fn str(&self) -> Result<&'a str, NamError> {
        self.value.as_str().ok_or_else(|| self.wrong_type("a string"))
    }

    fn f64(&self) -> Result<f64, NamError> {
        let x = self.value.as_f64().ok_or_else(|| self.wrong_type("a number"))?;
        if x.is_finite() { Ok(x) } else { Err(self.invalid("number is not finite")) }
    }

    /// A number that must stay finite as an `f32` (parameters of activations, weights).
    fn f32(&self) -> Result<f32, NamError> {
        let x = self.f64()?;
        let y = x as f32;
        if y.is_finite() { Ok(y) } else { Err(self.invalid(format!("{x} overflows a 32-bit float"))) }
    }

    /// A non-negative integer. Integral floats (`3.0`) are accepted, as the reference accepts them.
    fn uint(&self) -> Result<u64, NamError> {
        let Value::Number(n) = self.value else { return Err(self.wrong_type("a non-negative integer")) };
        if let Some(u) = n.as_u64() {
            return Ok(u);
        }
        match n.as_f64() {
            Some(x) if x >= 0.0 && x.fract() == 0.0 && x < 1.8e19 => Ok(x as u64),
            _ => Err(self.wrong_type("a non-negative integer")),
        }
    }

    /// An integer in `min..=limit`, with `what` naming it in the limit error.
    fn size(&self, min: u64, limit: usize, what: &'static str) -> Result<usize, NamError> {
        let v = self.uint()?;
        if v > limit as u64 {
            return Err(NamError::LimitExceeded { path: self.display_path(), what, value: v, limit: limit as u64 });
        }
        if v < min {
            return Err(self.invalid(format!("{what} must be at least {min}")));
        }
        Ok(v as usize)
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Model

fn parse_model(at: At<'_>, depth: usize, warnings: &mut Vec<String>) -> Result<NamFile, NamError> {
    if depth > MAX_NESTING {
        return Err(NamError::LimitExceeded {
            path: at.display_path(),
            what: "model nesting depth",
            value: depth as u64,
            limit: MAX_NESTING as u64,
        });
    }
    at.object()?;
    let version = parse_version(&at.req("version")?, warnings)?;
    let arch_at = at.req("architecture")?;
    let arch_name = arch_at.str()?;
    let config = at.req("config")?;
    let sample_rate = parse_sample_rate(&at, warnings)?;
    let metadata = parse_metadata(&at, warnings);
    let architecture = match arch_name {
        "WaveNet" => Architecture::WaveNet(parse_wavenet(&config, depth, warnings)?),
        "LSTM" => Architecture::Lstm(parse_lstm(&config)?),
        "Linear" => Architecture::Linear(parse_linear(&config)?),
        "ConvNet" => Architecture::ConvNet(parse_convnet(&config)?),
        "SlimmableContainer" => Architecture::SlimmableContainer(parse_container(&config, depth, warnings)?),
        other => {
            return Err(NamError::UnknownArchitecture { path: arch_at.display_path(), name: other.to_string() });
        }
    };
    let weights_at = at.req("weights")?;
    let expected = architecture.weight_count();
    if expected > MAX_WEIGHTS {
        return Err(NamError::LimitExceeded {
            path: weights_at.display_path(),
            what: "weight count",
            value: expected,
            limit: MAX_WEIGHTS,
        });
    }
    let weights = parse_weights(&weights_at)?;
    if let Architecture::SlimmableContainer(_) = architecture {
        if !weights.is_empty() {
            warnings.push(format!(
                "{}: a SlimmableContainer has no weights of its own; {} were ignored",
                weights_at.display_path(),
                weights.len()
            ));
        }
        let file = NamFile { version, architecture, sample_rate, metadata, weights: Vec::new(), warnings: Vec::new() };
        validate_model(&file, &at.path, depth)?;
        return Ok(file);
    }
    let file = NamFile { version, architecture, sample_rate, metadata, weights, warnings: Vec::new() };
    validate_model(&file, &at.path, depth)?;
    Ok(file)
}

fn parse_version(at: &At<'_>, warnings: &mut Vec<String>) -> Result<Version, NamError> {
    let text = at.str()?;
    let version = Version::parse(text)
        .ok_or_else(|| NamError::InvalidVersion { path: at.display_path(), version: text.to_string() })?;
    let refuse = |reason| Err(NamError::UnsupportedVersion { path: at.display_path(), version, reason });
    if version.major >= 1 {
        return refuse("major version 1 or later");
    }
    if version < FULL_SUPPORT_MIN {
        return refuse("older than 0.5.0");
    }
    if version.minor >= FIRST_UNSUPPORTED_MINOR {
        return refuse("minor version 8 or later");
    }
    if version > FULL_SUPPORT_MAX {
        warnings.push(format!(
            "{}: version {version} is newer than {FULL_SUPPORT_MAX}; it is played as {FULL_SUPPORT_MAX} (partial \
             support: newer features, if any, may sound different)",
            at.display_path()
        ));
    }
    Ok(version)
}

fn parse_sample_rate(at: &At<'_>, warnings: &mut Vec<String>) -> Result<Option<f64>, NamError> {
    let Some(sr) = at.opt("sample_rate") else { return Ok(None) };
    let rate = sr.f64()?;
    if rate == UNKNOWN_SAMPLE_RATE {
        return Ok(None);
    }
    if rate <= 0.0 {
        warnings.push(format!("{}: {rate} Hz is not a sample rate; treated as unknown", sr.display_path()));
        return Ok(None);
    }
    if rate > MAX_SAMPLE_RATE_HZ {
        return Err(NamError::LimitExceeded {
            path: sr.display_path(),
            what: "sample rate (Hz)",
            value: rate as u64,
            limit: MAX_SAMPLE_RATE_HZ as u64,
        });
    }
    Ok(Some(rate))
}

fn parse_metadata(at: &At<'_>, warnings: &mut Vec<String>) -> NamMetadata {
    let mut meta = NamMetadata::default();
    let Some(m) = at.opt("metadata") else { return meta };
    if m.value.as_object().is_none() {
        warnings.push(format!("{}: expected an object, found {}; ignored", m.display_path(), type_name(m.value)));
        return meta;
    }
    let mut number = |key: &str| -> Option<f64> {
        let v = m.opt(key)?;
        match v.f64() {
            Ok(x) => Some(x),
            Err(_) => {
                warnings.push(format!(
                    "{}: expected a number, found {}; ignored",
                    v.display_path(),
                    type_name(v.value)
                ));
                None
            }
        }
    };
    meta.loudness = number("loudness");
    meta.input_level_dbu = number("input_level_dbu");
    meta.output_level_dbu = number("output_level_dbu");
    // Descriptive keys: free text typed by people; anything that is not a string is simply not shown.
    let text = |key: &str| m.opt(key).and_then(|v| v.value.as_str().map(str::to_string));
    meta.name = text("name");
    meta.modeled_by = text("modeled_by");
    meta.gear_type = text("gear_type");
    meta.gear_make = text("gear_make");
    meta.gear_model = text("gear_model");
    meta.tone_type = text("tone_type");
    meta
}

fn parse_weights(at: &At<'_>) -> Result<Vec<f32>, NamError> {
    let items = at.array()?;
    let mut weights = Vec::with_capacity(items.len());
    for (i, v) in items.iter().enumerate() {
        let x = v.as_f64().ok_or_else(|| At { value: v, path: format!("{}[{i}]", at.path) }.wrong_type("a number"))?;
        let w = x as f32;
        if !w.is_finite() {
            return Err(NamError::NonFiniteWeight { path: format!("{}[{i}]", at.path), value: x });
        }
        weights.push(w);
    }
    Ok(weights)
}

// ---------------------------------------------------------------------------------------------------------------
// Activations

/// Slope of `LeakyReLU`/`PReLU` when the file does not give one (PyTorch's default).
const DEFAULT_NEGATIVE_SLOPE: f32 = 0.01;

fn parse_activation(at: &At<'_>) -> Result<ActivationConfig, NamError> {
    let (name, params) = match at.value {
        Value::String(s) => (s.as_str(), None),
        Value::Object(_) => (at.req("type")?.str()?, Some(at)),
        _ => return Err(at.wrong_type("an activation name or {\"type\": ...}")),
    };
    let param = |key: &str, default: f32| -> Result<f32, NamError> {
        match params.and_then(|p| p.opt(key)) {
            Some(v) => v.f32(),
            None => Ok(default),
        }
    };
    Ok(match name {
        "Tanh" => ActivationConfig::Tanh,
        "Hardtanh" => ActivationConfig::Hardtanh,
        "Fasttanh" => ActivationConfig::FastTanh,
        "ReLU" => ActivationConfig::Relu,
        "LeakyReLU" => ActivationConfig::LeakyRelu { negative_slope: param("negative_slope", DEFAULT_NEGATIVE_SLOPE)? },
        "PReLU" => {
            let slopes = match params.and_then(|p| p.opt("negative_slopes")) {
                Some(list) => {
                    let slopes = list.items()?.iter().map(At::f32).collect::<Result<Vec<_>, _>>()?;
                    if slopes.is_empty() {
                        return Err(list.invalid("PReLU needs at least one slope"));
                    }
                    if slopes.len() > MAX_CHANNELS {
                        return Err(NamError::LimitExceeded {
                            path: list.display_path(),
                            what: "PReLU slope count",
                            value: slopes.len() as u64,
                            limit: MAX_CHANNELS as u64,
                        });
                    }
                    slopes
                }
                None => vec![param("negative_slope", DEFAULT_NEGATIVE_SLOPE)?],
            };
            ActivationConfig::Prelu { negative_slopes: slopes }
        }
        "Sigmoid" => ActivationConfig::Sigmoid,
        "SiLU" => ActivationConfig::Silu,
        "Hardswish" => ActivationConfig::Hardswish,
        "LeakyHardtanh" | "LeakyHardTanh" => ActivationConfig::LeakyHardtanh {
            min_val: param("min_val", -1.0)?,
            max_val: param("max_val", 1.0)?,
            min_slope: param("min_slope", 0.01)?,
            max_slope: param("max_slope", 0.01)?,
        },
        "Softsign" => ActivationConfig::Softsign,
        other => {
            let path = params.map_or_else(|| at.display_path(), |p| join(&p.path, "type"));
            return Err(NamError::UnknownActivation { path, name: other.to_string() });
        }
    })
}

// ---------------------------------------------------------------------------------------------------------------
// WaveNet

fn parse_wavenet(config: &At<'_>, depth: usize, warnings: &mut Vec<String>) -> Result<WaveNetConfig, NamError> {
    config.object()?;
    let condition_dsp = match config.opt("condition_dsp") {
        Some(c) => Some(Box::new(parse_model(c, depth + 1, warnings)?)),
        None => None,
    };
    let layers_at = config.req("layers")?;
    let mut layer_arrays = Vec::new();
    for la in layers_at.items()? {
        layer_arrays.push(parse_layer_array(&la)?);
    }
    if layer_arrays.is_empty() {
        return Err(layers_at.invalid("a WaveNet needs at least one layer array"));
    }
    // Required by the reference (it reads it as a float), then ignored: the last weight is the head scale.
    let head_scale = config.req("head_scale")?.f32()?;
    let in_channels = match config.opt("in_channels") {
        Some(v) => v.size(1, MAX_CHANNELS, "in_channels")?,
        None => 1,
    };
    let head = match config.opt("head") {
        Some(h) => Some(parse_post_head(&h, layer_arrays.last().map_or(0, |a| a.head_size))?),
        None => None,
    };
    let config = WaveNetConfig { in_channels, layer_arrays, head, head_scale, condition_dsp };
    if config.is_slimmable() && config.head.is_none() && !config.can_slim() {
        warnings.push(format!(
            "{}: slimmable layer arrays use grouped convolutions or a head kernel > 1, which cannot be slimmed; \
             the model plays at full size only",
            config_path_of(&layers_at)
        ));
    }
    Ok(config)
}

fn config_path_of(layers: &At<'_>) -> String {
    layers.path.strip_suffix(".layers").unwrap_or(&layers.path).to_string()
}

fn parse_post_head(h: &At<'_>, implied_in: usize) -> Result<PostHeadConfig, NamError> {
    h.object()?;
    if let Some(legacy) = h.opt("in_channels") {
        let v = legacy.size(1, MAX_CHANNELS, "channels")?;
        if v != implied_in {
            return Err(legacy.invalid(format!("must equal the last layer array's head size ({implied_in})")));
        }
    }
    let channels = h.req("channels")?.size(1, MAX_CHANNELS, "channels")?;
    let out_channels = h.req("out_channels")?.size(1, MAX_CHANNELS, "channels")?;
    let ks_at = h.req("kernel_sizes")?;
    let kernel_sizes =
        ks_at.items()?.iter().map(|k| k.size(1, MAX_KERNEL_SIZE, "kernel size")).collect::<Result<Vec<_>, _>>()?;
    if kernel_sizes.is_empty() {
        return Err(ks_at.invalid("the post-stack head needs at least one convolution"));
    }
    let activation = parse_activation(&h.req("activation")?)?;
    Ok(PostHeadConfig { in_channels: implied_in, channels, out_channels, kernel_sizes, activation })
}

/// A per-layer list, or one value repeated for every layer.
fn per_layer<'a, T>(
    at: &At<'a>,
    n: usize,
    mut parse_one: impl FnMut(&At<'a>) -> Result<T, NamError>,
) -> Result<Vec<T>, NamError>
where
    T: Clone,
{
    if at.value.is_array() {
        let items = at.items()?;
        if items.len() != n {
            return Err(at.invalid(format!("has {} entries but there are {n} layers (dilations)", items.len())));
        }
        items.iter().map(parse_one).collect()
    } else {
        Ok(vec![parse_one(at)?; n])
    }
}

fn parse_gating_mode(at: &At<'_>) -> Result<u8, NamError> {
    match at.str()? {
        "none" => Ok(0),
        "gated" => Ok(1),
        "blended" => Ok(2),
        other => Err(at.invalid(format!("gating_mode \"{other}\" is not one of none, gated, blended"))),
    }
}

fn parse_film(la: &At<'_>, key: &str) -> Result<Option<FilmConfig>, NamError> {
    let Some(f) = la.opt(key) else { return Ok(None) };
    match f.value {
        Value::Bool(false) => Ok(None),
        Value::Bool(true) => Ok(Some(FilmConfig { shift: true, groups: 1 })),
        Value::Object(_) => {
            let active = match f.opt("active") {
                Some(v) => v.bool()?,
                None => true,
            };
            let shift = match f.opt("shift") {
                Some(v) => v.bool()?,
                None => true,
            };
            let groups = match f.opt("groups") {
                Some(v) => v.size(1, MAX_CHANNELS, "groups")?,
                None => 1,
            };
            Ok(active.then_some(FilmConfig { shift, groups }))
        }
        _ => Err(f.wrong_type("false or a FiLM object")),
    }
}

fn parse_layer_array(la: &At<'_>) -> Result<LayerArrayConfig, NamError> {
    la.object()?;
    let ch = |key: &str| -> Result<usize, NamError> { la.req(key)?.size(1, MAX_CHANNELS, "channels") };
    let input_size = ch("input_size")?;
    let condition_size = ch("condition_size")?;
    let channels = ch("channels")?;
    let bottleneck = match la.opt("bottleneck") {
        Some(v) => v.size(1, MAX_CHANNELS, "channels")?,
        None => channels,
    };
    let groups_of = |key: &str| -> Result<usize, NamError> {
        match la.opt(key) {
            Some(v) => v.size(1, MAX_CHANNELS, "groups"),
            None => Ok(1),
        }
    };
    let groups_input = groups_of("groups_input")?;
    let groups_input_mixin = groups_of("groups_input_mixin")?;

    // Head rechannel: nested "head" (current trainer) or legacy head_size + head_bias with kernel 1.
    let (head_size, head_kernel_size, head_bias, head_dilation) = if let Some(h) = la.opt("head") {
        h.object()?;
        let dilation = match h.opt("head_dilation") {
            Some(d) => d.size(1, MAX_DILATION, "dilation")?,
            None => 1,
        };
        (
            h.req("out_channels")?.size(1, MAX_CHANNELS, "channels")?,
            h.req("kernel_size")?.size(1, MAX_KERNEL_SIZE, "kernel size")?,
            h.req("bias")?.bool()?,
            dilation,
        )
    } else if let Some(hs) = la.opt("head_size") {
        (hs.size(1, MAX_CHANNELS, "channels")?, 1, la.req("head_bias")?.bool()?, 1)
    } else {
        return Err(la.invalid("needs a \"head\" object (out_channels, kernel_size, bias) or legacy \"head_size\""));
    };

    let dil_at = la.req("dilations")?;
    let dilations =
        dil_at.items()?.iter().map(|d| d.size(0, MAX_DILATION, "dilation")).collect::<Result<Vec<_>, _>>()?;
    let n = dilations.len();
    if n == 0 {
        return Err(dil_at.invalid("a layer array needs at least one layer"));
    }

    let kernel_sizes = match (la.get("kernel_size"), la.get("kernel_sizes")) {
        (Some(_), Some(_)) => return Err(la.invalid("give kernel_size or kernel_sizes, not both")),
        (Some(k), None) => vec![k.size(1, MAX_KERNEL_SIZE, "kernel size")?; n],
        (None, Some(ks)) => {
            if !ks.value.is_array() {
                return Err(ks.wrong_type("an array"));
            }
            per_layer(&ks, n, |k| k.size(1, MAX_KERNEL_SIZE, "kernel size"))?
        }
        (None, None) => return Err(NamError::MissingKey { path: join(&la.path, "kernel_size") }),
    };
    let activations = per_layer(&la.req("activation")?, n, parse_activation)?;

    // Gating: "gating_mode" (one or per layer) wins over the legacy "gated" boolean. The secondary activation is
    // only read for gated/blended layers (files put "" or null in the other slots).
    let secondary_at = la.get("secondary_activation");
    let secondary_for = |layer: usize| -> Result<ActivationConfig, NamError> {
        match &secondary_at {
            None => Ok(ActivationConfig::Sigmoid),
            Some(s) if s.value.is_array() => {
                let items = s.items()?;
                if items.len() != n {
                    return Err(s.invalid(format!("has {} entries but there are {n} layers", items.len())));
                }
                parse_activation(&items[layer])
            }
            Some(s) if s.value.is_null() => Ok(ActivationConfig::Sigmoid),
            Some(s) => parse_activation(s),
        }
    };
    let modes: Vec<u8> = if let Some(g) = la.opt("gating_mode") {
        per_layer(&g, n, parse_gating_mode)?
    } else if let Some(g) = la.opt("gated") {
        vec![if g.bool()? { 1 } else { 0 }; n]
    } else {
        vec![0; n]
    };
    let legacy_gated = la.opt("gating_mode").is_none();
    let mut layers = Vec::with_capacity(n);
    for l in 0..n {
        let gating = match modes[l] {
            0 => Gating::None,
            // The legacy boolean always gates with a sigmoid.
            1 if legacy_gated => Gating::Gated { secondary: ActivationConfig::Sigmoid },
            1 => Gating::Gated { secondary: secondary_for(l)? },
            _ => Gating::Blended { secondary: secondary_for(l)? },
        };
        layers.push(LayerConfig {
            kernel_size: kernel_sizes[l],
            dilation: dilations[l],
            activation: activations[l].clone(),
            gating,
        });
    }

    let (layer1x1_active, layer1x1_groups) = match la.opt("layer1x1") {
        Some(l) => {
            l.object()?;
            let active = match l.opt("active") {
                Some(v) => v.bool()?,
                None => true,
            };
            let groups = match l.opt("groups") {
                Some(v) => v.size(1, MAX_CHANNELS, "groups")?,
                None => 1,
            };
            (active, groups)
        }
        None => (true, 1),
    };
    let head1x1 = match la.opt("head1x1") {
        Some(h) => {
            h.object()?;
            let active = match h.opt("active") {
                Some(v) => v.bool()?,
                None => false,
            };
            if active {
                let out = match h.opt("out_channels") {
                    Some(v) => v.size(1, MAX_CHANNELS, "channels")?,
                    None => channels,
                };
                let groups = match h.opt("groups") {
                    Some(v) => v.size(1, MAX_CHANNELS, "groups")?,
                    None => 1,
                };
                Some((out, groups))
            } else {
                None
            }
        }
        None => None,
    };
    let films = FilmSlots {
        conv_pre: parse_film(la, "conv_pre_film")?,
        conv_post: parse_film(la, "conv_post_film")?,
        input_mixin_pre: parse_film(la, "input_mixin_pre_film")?,
        input_mixin_post: parse_film(la, "input_mixin_post_film")?,
        activation_pre: parse_film(la, "activation_pre_film")?,
        activation_post: parse_film(la, "activation_post_film")?,
        layer1x1_post: parse_film(la, "layer1x1_post_film")?,
        head1x1_post: parse_film(la, "head1x1_post_film")?,
    };
    let slimmable = parse_slimmable(la, channels)?;

    Ok(LayerArrayConfig {
        input_size,
        condition_size,
        channels,
        bottleneck,
        layers,
        head_size,
        head_kernel_size,
        head_bias,
        head_dilation,
        layer1x1_active,
        layer1x1_groups,
        head1x1,
        groups_input,
        groups_input_mixin,
        films,
        slimmable,
    })
}

/// The only slimming method the reference implements.
const SLIMMABLE_METHOD: &str = "slice_channels_uniform";

fn parse_slimmable(la: &At<'_>, channels: usize) -> Result<Option<Vec<usize>>, NamError> {
    let Some(s) = la.opt("slimmable") else { return Ok(None) };
    if s.value.as_object().is_none() {
        return Ok(None); // the reference only looks at objects
    }
    let method = match s.opt("method") {
        Some(m) => m.str()?,
        None => "",
    };
    if method.is_empty() {
        return Ok(None);
    }
    if method != SLIMMABLE_METHOD {
        return Err(s.invalid(format!("unsupported slimmable method \"{method}\" (only \"{SLIMMABLE_METHOD}\")")));
    }
    let allowed = match s.opt("kwargs").and_then(|k| k.opt("allowed_channels")) {
        Some(list) => {
            list.items()?.iter().map(|c| c.size(1, MAX_CHANNELS, "channels")).collect::<Result<Vec<_>, _>>()?
        }
        // Missing list: every size from 1 to the full channel count.
        None => (1..=channels).collect(),
    };
    if allowed.windows(2).any(|w| w[1] <= w[0]) {
        return Err(s.invalid("allowed_channels must be strictly ascending"));
    }
    if allowed.last() != Some(&channels) {
        return Err(s.invalid(format!("the last allowed_channels entry must equal channels ({channels})")));
    }
    Ok(Some(allowed))
}

// ---------------------------------------------------------------------------------------------------------------
// Other architectures

fn parse_lstm(config: &At<'_>) -> Result<LstmConfig, NamError> {
    config.object()?;
    let opt_ch = |key: &str| -> Result<usize, NamError> {
        match config.opt(key) {
            Some(v) => v.size(1, MAX_CHANNELS, "channels"),
            None => Ok(1),
        }
    };
    Ok(LstmConfig {
        input_size: config.req("input_size")?.size(1, MAX_CHANNELS, "channels")?,
        hidden_size: config.req("hidden_size")?.size(1, MAX_CHANNELS, "channels")?,
        num_layers: config.req("num_layers")?.size(1, MAX_CHANNELS, "LSTM layers")?,
        in_channels: opt_ch("in_channels")?,
        out_channels: opt_ch("out_channels")?,
    })
}

fn parse_linear(config: &At<'_>) -> Result<LinearConfig, NamError> {
    config.object()?;
    let opt_ch = |key: &str| -> Result<usize, NamError> {
        match config.opt(key) {
            Some(v) => v.size(1, MAX_CHANNELS, "channels"),
            None => Ok(1),
        }
    };
    Ok(LinearConfig {
        receptive_field: config.req("receptive_field")?.size(1, MAX_WEIGHTS as usize, "receptive field")?,
        bias: config.req("bias")?.bool()?,
        in_channels: opt_ch("in_channels")?,
        out_channels: opt_ch("out_channels")?,
    })
}

fn parse_convnet(config: &At<'_>) -> Result<ConvNetConfig, NamError> {
    config.object()?;
    let opt = |key: &str, what| -> Result<usize, NamError> {
        match config.opt(key) {
            Some(v) => v.size(1, MAX_CHANNELS, what),
            None => Ok(1),
        }
    };
    let dil_at = config.req("dilations")?;
    let dilations =
        dil_at.items()?.iter().map(|d| d.size(1, MAX_DILATION, "dilation")).collect::<Result<Vec<_>, _>>()?;
    if dilations.is_empty() {
        return Err(dil_at.invalid("a ConvNet needs at least one block"));
    }
    Ok(ConvNetConfig {
        channels: config.req("channels")?.size(1, MAX_CHANNELS, "channels")?,
        dilations,
        batchnorm: config.req("batchnorm")?.bool()?,
        activation: parse_activation(&config.req("activation")?)?,
        groups: opt("groups", "groups")?,
        in_channels: opt("in_channels", "channels")?,
        out_channels: opt("out_channels", "channels")?,
    })
}

fn parse_container(config: &At<'_>, depth: usize, warnings: &mut Vec<String>) -> Result<ContainerConfig, NamError> {
    config.object()?;
    let list = config.req("submodels")?;
    let mut submodels = Vec::new();
    for entry in list.items()? {
        entry.object()?;
        let max_value = entry.req("max_value")?.f64()?;
        let model = Box::new(parse_model(entry.req("model")?, depth + 1, warnings)?);
        submodels.push(Submodel { max_value, model });
    }
    if submodels.is_empty() {
        return Err(list.invalid("a SlimmableContainer needs at least one submodel"));
    }
    Ok(ContainerConfig { submodels })
}

// ---------------------------------------------------------------------------------------------------------------
// Cross-field validation

fn check_groups(path: &str, what: &str, c_in: usize, c_out: usize, groups: usize) -> Result<(), NamError> {
    if groups == 0 || !c_in.is_multiple_of(groups) || !c_out.is_multiple_of(groups) {
        return Err(NamError::InvalidValue {
            path: path.to_string(),
            message: format!("{what}: {groups} groups do not divide {c_in} inputs and {c_out} outputs"),
        });
    }
    Ok(())
}

fn limit(path: &str, what: &'static str, value: u64, limit: u64) -> Result<(), NamError> {
    if value > limit {
        return Err(NamError::LimitExceeded { path: path.to_string(), what, value, limit });
    }
    Ok(())
}

/// Floats of convolution history a model keeps (its nested models included).
pub fn history_floats(file: &NamFile) -> u64 {
    let hist = |c_in: usize, k: usize, d: usize| (c_in as u64).saturating_mul((k.saturating_sub(1) * d) as u64);
    match &file.architecture {
        Architecture::WaveNet(c) => {
            let mut n = c.condition_dsp.as_ref().map_or(0, |m| history_floats(m));
            for a in &c.layer_arrays {
                for l in &a.layers {
                    n = n.saturating_add(hist(a.channels, l.kernel_size, l.dilation));
                }
                n = n.saturating_add(hist(a.head_output_size(), a.head_kernel_size, a.head_dilation));
            }
            if let Some(h) = &c.head {
                let mut c_in = h.in_channels;
                for &k in &h.kernel_sizes {
                    n = n.saturating_add(hist(c_in, k, 1));
                    c_in = h.channels;
                }
            }
            n
        }
        Architecture::Linear(c) => (c.receptive_field as u64).saturating_mul(c.in_channels.min(c.out_channels) as u64),
        Architecture::ConvNet(c) => c
            .dilations
            .iter()
            .enumerate()
            .map(|(i, &d)| hist(if i == 0 { c.in_channels } else { c.channels }, CONVNET_KERNEL_SIZE, d))
            .fold(0u64, u64::saturating_add),
        Architecture::Lstm(_) => 0,
        Architecture::SlimmableContainer(c) => {
            c.submodels.iter().map(|s| history_floats(&s.model)).fold(0u64, u64::saturating_add)
        }
    }
}

fn validate_model(file: &NamFile, path: &str, depth: usize) -> Result<(), NamError> {
    let config_path = join(path, "config");
    match &file.architecture {
        Architecture::WaveNet(c) => validate_wavenet(c, file.sample_rate, &config_path, depth)?,
        Architecture::Lstm(c) => {
            if c.input_size != c.in_channels {
                return Err(NamError::InvalidValue {
                    path: config_path,
                    message: format!("input_size ({}) must equal in_channels ({})", c.input_size, c.in_channels),
                });
            }
        }
        Architecture::Linear(_) => {}
        Architecture::ConvNet(c) => {
            for i in 0..c.dilations.len() {
                let c_in = if i == 0 { c.in_channels } else { c.channels };
                check_groups(&join(&config_path, "groups"), &format!("block {i}"), c_in, c.channels, c.groups)?;
            }
        }
        Architecture::SlimmableContainer(c) => {
            let sub_path = join(&config_path, "submodels");
            for (i, pair) in c.submodels.windows(2).enumerate() {
                if pair[1].max_value <= pair[0].max_value {
                    return Err(NamError::InvalidValue {
                        path: format!("{sub_path}[{}].max_value", i + 1),
                        message: "submodels must be sorted by strictly ascending max_value".into(),
                    });
                }
            }
            if c.submodels.last().is_none_or(|s| s.max_value < 1.0) {
                return Err(NamError::InvalidValue {
                    path: sub_path,
                    message: "the last submodel's max_value must be at least 1.0".into(),
                });
            }
            for (i, s) in c.submodels.iter().enumerate() {
                let p = format!("{sub_path}[{i}].model");
                if let (Some(a), Some(b)) = (s.model.sample_rate, file.sample_rate)
                    && a != b
                {
                    return Err(NamError::InvalidValue {
                        path: p,
                        message: format!("sample rate {a} Hz differs from the container's {b} Hz"),
                    });
                }
                let arch = &s.model.architecture;
                if arch.in_channels() != 1 || arch.out_channels() != 1 {
                    return Err(NamError::InvalidValue {
                        path: p,
                        message: "submodels of a container must have one input and one output channel".into(),
                    });
                }
                validate_model(&s.model, &p, depth + 1)?;
            }
        }
    }
    let weights_path = join(path, "weights");
    let expected = file.architecture.weight_count();
    limit(&weights_path, "weight count", expected, MAX_WEIGHTS)?;
    limit(&weights_path, "total weight count (with nested models)", file.total_weights(), MAX_WEIGHTS)?;
    limit(&config_path, "convolution history (floats)", history_floats(file), MAX_HISTORY_FLOATS)?;
    if !matches!(file.architecture, Architecture::SlimmableContainer(_)) && expected != file.weights.len() as u64 {
        return Err(NamError::WeightCount { path: weights_path, expected, found: file.weights.len() as u64 });
    }
    if let Some(i) = file.weights.iter().position(|w| !w.is_finite()) {
        return Err(NamError::NonFiniteWeight { path: format!("{weights_path}[{i}]"), value: file.weights[i] as f64 });
    }
    Ok(())
}

fn validate_wavenet(c: &WaveNetConfig, sample_rate: Option<f64>, path: &str, depth: usize) -> Result<(), NamError> {
    let invalid = |p: String, message: String| NamError::InvalidValue { path: p, message };
    // The condition every layer sees: the condition DSP's output, or the raw input.
    let condition_dim = match &c.condition_dsp {
        Some(cond) => {
            let p = join(path, "condition_dsp");
            if cond.sample_rate != sample_rate {
                let show = |r: Option<f64>| r.map_or("unknown".to_string(), |r| format!("{r} Hz"));
                return Err(invalid(
                    p,
                    format!(
                        "its sample rate ({}) differs from the model's ({})",
                        show(cond.sample_rate),
                        show(sample_rate)
                    ),
                ));
            }
            if cond.architecture.in_channels() != c.in_channels {
                return Err(invalid(
                    p,
                    format!(
                        "it takes {} input channels but the model has {}",
                        cond.architecture.in_channels(),
                        c.in_channels
                    ),
                ));
            }
            validate_model(cond, &p, depth + 1)?;
            cond.architecture.out_channels()
        }
        None => c.in_channels,
    };
    let mut prev: Option<&LayerArrayConfig> = None;
    for (i, a) in c.layer_arrays.iter().enumerate() {
        let ap = format!("{path}.layers[{i}]");
        if a.condition_size != condition_dim {
            return Err(invalid(
                join(&ap, "condition_size"),
                format!(
                    "is {} but the condition has {condition_dim} channels ({})",
                    a.condition_size,
                    if c.condition_dsp.is_some() { "condition_dsp outputs" } else { "the model's input" }
                ),
            ));
        }
        match prev {
            None if a.input_size != c.in_channels => {
                return Err(invalid(
                    join(&ap, "input_size"),
                    format!("is {} but the model has {} input channels", a.input_size, c.in_channels),
                ));
            }
            Some(p) => {
                if a.input_size != p.channels {
                    return Err(invalid(
                        join(&ap, "input_size"),
                        format!("is {} but the previous layer array has {} channels", a.input_size, p.channels),
                    ));
                }
                if a.channels != p.head_size {
                    return Err(invalid(
                        join(&ap, "channels"),
                        format!("is {} but the previous layer array's head size is {}", a.channels, p.head_size),
                    ));
                }
                if a.head_output_size() != p.head_size {
                    return Err(invalid(
                        ap.clone(),
                        format!(
                            "its layers add {} rows to the head but the previous layer array's head has {}",
                            a.head_output_size(),
                            p.head_size
                        ),
                    ));
                }
            }
            None => {}
        }
        if !a.layer1x1_active && a.bottleneck != a.channels {
            return Err(invalid(
                join(&ap, "bottleneck"),
                format!("must equal channels ({}) when layer1x1 is inactive", a.channels),
            ));
        }
        if a.films.layer1x1_post.is_some() && !a.layer1x1_active {
            return Err(invalid(join(&ap, "layer1x1_post_film"), "needs layer1x1 to be active".into()));
        }
        if a.films.head1x1_post.is_some() && a.head1x1.is_none() {
            return Err(invalid(join(&ap, "head1x1_post_film"), "needs head1x1 to be active".into()));
        }
        limit(&join(&ap, "dilations"), "layer count", a.layers.len() as u64, MAX_CHANNELS as u64)?;
        if a.layer1x1_active {
            check_groups(&join(&ap, "layer1x1.groups"), "layer1x1", a.bottleneck, a.channels, a.layer1x1_groups)?;
        }
        if let Some((out, groups)) = a.head1x1 {
            check_groups(&join(&ap, "head1x1.groups"), "head1x1", a.bottleneck, out, groups)?;
        }
        for l in &a.layers {
            let z = a.z_channels(l);
            check_groups(&join(&ap, "groups_input"), "dilated conv", a.channels, z, a.groups_input)?;
            check_groups(&join(&ap, "groups_input_mixin"), "input mixin", a.condition_size, z, a.groups_input_mixin)?;
            let names = [
                "conv_pre_film",
                "conv_post_film",
                "input_mixin_pre_film",
                "input_mixin_post_film",
                "activation_pre_film",
                "activation_post_film",
                "layer1x1_post_film",
                "head1x1_post_film",
            ];
            for ((film, dim), name) in film_dims(a, l).into_iter().zip(names) {
                if let Some(f) = film {
                    let rows = if f.shift { 2 * dim } else { dim };
                    check_groups(&join(&ap, &format!("{name}.groups")), name, a.condition_size, rows, f.groups)?;
                }
            }
        }
        prev = Some(a);
    }
    if c.head.is_some() && c.is_slimmable() {
        return Err(invalid(join(path, "head"), "a slimmable WaveNet cannot have a post-stack head".into()));
    }
    Ok(())
}

/// The fixture folder shared by the tests: `$NAM_FIXTURES`, else `shared/fixtures/nam` beside the repository
/// (`engine/../../shared`). `None` (and a note on stderr) when it is absent, so that tests pass without it.
#[cfg(test)]
pub(crate) fn fixtures_dir() -> Option<PathBuf> {
    let dir = std::env::var_os("NAM_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/fixtures/nam"));
    if dir.is_dir() {
        Some(dir)
    } else {
        eprintln!("skipping: ../shared/fixtures/nam not found (looked in {})", dir.display());
        None
    }
}

/// Every `.nam` file in the fixture folder, sorted.
#[cfg(test)]
pub(crate) fn fixture_files() -> Vec<PathBuf> {
    let Some(dir) = fixtures_dir() else { return Vec::new() };
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("fixture folder readable")
        .map(|e| e.expect("fixture entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "nam"))
        .collect();
    files.sort();
    files
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A minimal valid A1-style WaveNet (1 layer array, 1 channel, kernel 2) with its 8 weights.
    fn tiny_wavenet() -> Value {
        json!({
            "version": "0.5.4",
            "architecture": "WaveNet",
            "config": {
                "layers": [{
                    "input_size": 1, "condition_size": 1, "head_size": 1, "channels": 1, "kernel_size": 2,
                    "dilations": [1], "activation": "Tanh", "gated": false, "head_bias": false
                }],
                "head": null,
                "head_scale": 0.02
            },
            // rechannel 1, conv 2 + bias 1, mixin 1, layer1x1 1 + 1, head rechannel 1, head scale 1
            "weights": [1.0, 0.1, 0.2, 0.0, 0.3, 0.4, 0.0, 1.0, 0.02],
            "sample_rate": 48000
        })
    }

    fn parse_json(v: &Value) -> Result<NamFile, NamError> {
        parse(&v.to_string())
    }

    #[test]
    fn every_fixture_parses_and_declares_exactly_its_weight_count() {
        let files = fixture_files();
        for path in &files {
            let file = load(path).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(file.weights.len() as u64, file.architecture.weight_count(), "{}", path.display());
            assert!(file.warnings.is_empty(), "{}: {:?}", path.display(), file.warnings);
        }
        if let Some(dir) = fixtures_dir() {
            // The counts the spec checked by hand.
            let count = |name: &str| load(&dir.join(name)).unwrap().weights.len();
            assert_eq!(count("wavenet.nam"), 131);
            assert_eq!(count("wavenet_a1_standard.nam"), 13802);
            assert_eq!(count("lstm.nam"), 70);
        }
    }

    #[test]
    fn fixtures_are_read_into_the_expected_shapes() {
        let Some(dir) = fixtures_dir() else { return };
        let old = load(&dir.join("my_model.nam")).unwrap();
        assert_eq!(old.sample_rate, None, "old files without sample_rate are 'unknown'");
        assert_eq!(old.metadata, NamMetadata::default());
        let Architecture::WaveNet(wn) = &old.architecture else { panic!("WaveNet") };
        assert_eq!(wn.layer_arrays.len(), 2);
        assert_eq!(wn.layer_arrays[1].layers[9].dilation, 512);
        assert!(!wn.layer_arrays[0].head_bias && wn.layer_arrays[1].head_bias);

        let lstm = load(&dir.join("lstm.nam")).unwrap();
        assert_eq!(lstm.metadata.gear_make.as_deref(), Some("Darkglass Electronics"));
        assert_eq!(lstm.metadata.input_level_dbu, Some(18.3));
        assert_eq!(lstm.metadata.output_level_dbu, Some(12.3));
        assert!(lstm.metadata.loudness.is_some_and(|l| (l + 37.84).abs() < 0.01));

        let a2 = load(&dir.join("A2.nam")).unwrap();
        let Architecture::SlimmableContainer(c) = &a2.architecture else { panic!("container") };
        assert_eq!(c.submodels.iter().map(|s| s.max_value).collect::<Vec<_>>(), [0.5, 1.0]);
        assert_eq!(a2.metadata.input_level_dbu, Some(14.76));

        let max = load(&dir.join("wavenet_a2_max.nam")).unwrap();
        let Architecture::WaveNet(wn) = &max.architecture else { panic!("WaveNet") };
        let cond = wn.condition_dsp.as_ref().expect("condition_dsp");
        let Architecture::WaveNet(cw) = &cond.architecture else { panic!("nested WaveNet") };
        let gatings: Vec<_> = cw.layer_arrays[1].layers.iter().map(|l| l.gating.clone()).collect();
        assert!(matches!(gatings[0], Gating::Blended { secondary: ActivationConfig::LeakyHardtanh { .. } }));
        assert_eq!(gatings[1], Gating::Gated { secondary: ActivationConfig::Relu });
        assert_eq!(cw.layer_arrays[0].groups_input, 3);
        assert_eq!(wn.layer_arrays[0].head1x1, Some((4, 2)));
        assert_eq!(wn.layer_arrays[0].films.layer1x1_post, Some(FilmConfig { shift: true, groups: 8 }));
    }

    #[test]
    fn versions_follow_the_reference_rules() {
        let with_version = |v: &str| {
            let mut m = tiny_wavenet();
            m["version"] = json!(v);
            parse_json(&m)
        };
        for ok in ["0.5.0", "0.5.4", "0.6.0", "0.7.0", "0.5.4-beta"] {
            let f = with_version(ok).unwrap_or_else(|e| panic!("{ok}: {e}"));
            assert!(f.warnings.is_empty(), "{ok}");
        }
        let partial = with_version("0.7.3").unwrap();
        assert_eq!(partial.warnings.len(), 1, "0.7.1+ loads with a warning");
        for old in ["0.4.0", "0.4.9", "1.0.0", "2.5.0", "0.8.0", "0.12.0"] {
            assert!(matches!(with_version(old), Err(NamError::UnsupportedVersion { .. })), "{old}");
        }
        for bad in ["0.5", "a.b.c", "", "0.5.x", "v0.5.4", "0..5"] {
            assert!(matches!(with_version(bad), Err(NamError::InvalidVersion { .. })), "{bad:?}");
        }
        let mut m = tiny_wavenet();
        m["version"] = json!(5);
        assert!(matches!(parse_json(&m), Err(NamError::WrongType { .. })));
    }

    #[test]
    fn empty_truncated_and_non_object_files_are_refused_clearly() {
        assert!(matches!(parse(""), Err(NamError::Empty)));
        assert!(matches!(parse("  \n"), Err(NamError::Empty)));
        let text = tiny_wavenet().to_string();
        assert!(matches!(parse(&text[..text.len() / 2]), Err(NamError::Json { .. })));
        assert!(matches!(parse("[1, 2, 3]"), Err(NamError::NotAnObject { .. })));
        assert!(matches!(parse("\"WaveNet\""), Err(NamError::NotAnObject { .. })));
        for key in ["version", "architecture", "config", "weights"] {
            let mut m = tiny_wavenet();
            m.as_object_mut().unwrap().remove(key);
            match parse_json(&m) {
                Err(NamError::MissingKey { path }) => assert_eq!(path, key),
                other => panic!("{key}: {other:?}"),
            }
        }
    }

    #[test]
    fn a_missing_or_extra_weight_reports_expected_and_found() {
        let mut m = tiny_wavenet();
        m["weights"].as_array_mut().unwrap().pop();
        match parse_json(&m) {
            Err(e @ NamError::WeightCount { expected: 9, found: 8, .. }) => {
                assert!(e.to_string().contains("needs 9 weights but the file has 8"), "{e}")
            }
            other => panic!("{other:?}"),
        }
        let mut m = tiny_wavenet();
        m["weights"].as_array_mut().unwrap().push(json!(0.5));
        assert!(matches!(parse_json(&m), Err(NamError::WeightCount { expected: 9, found: 10, .. })));
        // The LSTM count is checked too (the reference only asserts it): W 4×2, b 4, h0 1, c0 1, head 1 + 1.
        let lstm = json!({"version": "0.5.4", "architecture": "LSTM",
            "config": {"input_size": 1, "hidden_size": 1, "num_layers": 1}, "weights": vec![0.0; 15]});
        assert!(matches!(parse_json(&lstm), Err(NamError::WeightCount { expected: 16, found: 15, .. })));
    }

    #[test]
    fn weights_that_overflow_f32_are_refused_with_their_index() {
        let mut m = tiny_wavenet();
        m["weights"][3] = json!(1e39);
        match parse_json(&m) {
            Err(NamError::NonFiniteWeight { path, .. }) => assert_eq!(path, "weights[3]"),
            other => panic!("{other:?}"),
        }
        // serde_json itself refuses numbers beyond f64.
        let text = tiny_wavenet().to_string().replace("0.3", "1e400");
        assert!(matches!(parse(&text), Err(NamError::Json { .. })));
        let text = tiny_wavenet().to_string().replace("0.3", "NaN");
        assert!(matches!(parse(&text), Err(NamError::Json { .. })), "JSON has no NaN literal");
        let mut m = tiny_wavenet();
        m["weights"][0] = json!("1.0");
        assert!(matches!(parse_json(&m), Err(NamError::WrongType { .. })));
    }

    #[test]
    fn unknown_architecture_and_activation_are_named_with_their_place() {
        let mut m = tiny_wavenet();
        m["architecture"] = json!("Transformer");
        match parse_json(&m) {
            Err(NamError::UnknownArchitecture { name, .. }) => assert_eq!(name, "Transformer"),
            other => panic!("{other:?}"),
        }
        let mut m = tiny_wavenet();
        m["config"]["layers"][0]["activation"] = json!("Mish");
        match parse_json(&m) {
            Err(NamError::UnknownActivation { path, name }) => {
                assert_eq!((path.as_str(), name.as_str()), ("config.layers[0].activation", "Mish"))
            }
            other => panic!("{other:?}"),
        }
        let mut m = tiny_wavenet();
        m["config"]["layers"][0]["activation"] = json!({"type": "Swish"});
        assert!(matches!(parse_json(&m), Err(NamError::UnknownActivation { .. })));
    }

    #[test]
    fn absurd_sizes_are_refused_before_anything_is_allocated() {
        let mut m = tiny_wavenet();
        m["config"]["layers"][0]["channels"] = json!(1_000_000_000u64);
        match parse_json(&m) {
            Err(NamError::LimitExceeded { path, value, .. }) => {
                assert_eq!((path.as_str(), value), ("config.layers[0].channels", 1_000_000_000))
            }
            other => panic!("{other:?}"),
        }
        let mut m = tiny_wavenet();
        m["config"]["layers"][0]["dilations"] = json!([1, 2, 4, 1e7]);
        match parse_json(&m) {
            Err(NamError::LimitExceeded { path, .. }) => assert_eq!(path, "config.layers[0].dilations[3]"),
            other => panic!("{other:?}"),
        }
        // Within each limit but too many weights in total: refused before the count is compared.
        let mut m = tiny_wavenet();
        m["config"]["layers"][0]["channels"] = json!(4096);
        m["config"]["layers"][0]["kernel_size"] = json!(4096);
        assert!(matches!(parse_json(&m), Err(NamError::LimitExceeded { what: "weight count", .. })));
        // Long histories: 4096 channels × dilation 1e6.
        let mut m = tiny_wavenet();
        m["config"]["layers"][0]["dilations"] = json!([1_000_000]);
        m["config"]["layers"][0]["channels"] = json!(64);
        m["config"]["layers"][0]["head_size"] = json!(1);
        assert!(matches!(parse_json(&m), Err(NamError::LimitExceeded { .. })));
        let mut m = tiny_wavenet();
        m["sample_rate"] = json!(1e12);
        assert!(matches!(parse_json(&m), Err(NamError::LimitExceeded { .. })));
    }

    #[test]
    fn wrong_types_name_the_key_and_what_was_expected() {
        let mut m = tiny_wavenet();
        m["config"]["layers"][0]["dilations"][0] = json!("one");
        match parse_json(&m) {
            Err(e @ NamError::WrongType { .. }) => {
                assert!(
                    e.to_string().starts_with("config.layers[0].dilations[0]: expected a non-negative integer"),
                    "{e}"
                )
            }
            other => panic!("{other:?}"),
        }
        let mut m = tiny_wavenet();
        m["config"]["layers"][0]["dilations"][0] = json!(-1);
        assert!(matches!(parse_json(&m), Err(NamError::WrongType { .. })));
        let mut m = tiny_wavenet();
        m["config"]["layers"][0]["dilations"][0] = json!(1.5);
        assert!(matches!(parse_json(&m), Err(NamError::WrongType { .. })));
        let mut m = tiny_wavenet();
        m["config"]["layers"][0]["dilations"][0] = json!(1.0);
        assert!(parse_json(&m).is_ok(), "integral floats are integers, as in the reference");
        let mut m = tiny_wavenet();
        m["config"]["layers"] = json!({});
        assert!(matches!(parse_json(&m), Err(NamError::WrongType { .. })));
        let mut m = tiny_wavenet();
        m["config"] = json!([]);
        assert!(matches!(parse_json(&m), Err(NamError::NotAnObject { .. })));
        let mut m = tiny_wavenet();
        m["config"]["layers"][0]["gated"] = json!("no");
        assert!(matches!(parse_json(&m), Err(NamError::WrongType { .. })));
    }

    #[test]
    fn a_byte_order_mark_is_ignored() {
        let text = format!("\u{feff}{}", tiny_wavenet());
        assert!(parse(&text).is_ok());
    }

    #[test]
    fn sample_rate_may_be_float_absent_or_unknown() {
        let mut m = tiny_wavenet();
        m["sample_rate"] = json!(44100.0);
        assert_eq!(parse_json(&m).unwrap().sample_rate, Some(44100.0));
        m.as_object_mut().unwrap().remove("sample_rate");
        assert_eq!(parse_json(&m).unwrap().sample_rate, None);
        m["sample_rate"] = json!(-1);
        assert_eq!(parse_json(&m).unwrap().sample_rate, None);
        m["sample_rate"] = json!(null);
        assert_eq!(parse_json(&m).unwrap().sample_rate, None);
    }

    #[test]
    fn metadata_of_the_wrong_type_is_ignored_not_fatal() {
        let mut m = tiny_wavenet();
        m["metadata"] = json!({"loudness": "loud", "name": 5, "gear_model": "JCM800", "input_level_dbu": null,
            "output_level_dbu": 3, "training": {"anything": [1, 2]}});
        let f = parse_json(&m).unwrap();
        assert_eq!(f.metadata.loudness, None);
        assert_eq!(f.metadata.name, None);
        assert_eq!(f.metadata.gear_model.as_deref(), Some("JCM800"));
        assert_eq!(f.metadata.input_level_dbu, None);
        assert_eq!(f.metadata.output_level_dbu, Some(3.0));
        assert_eq!(f.warnings.len(), 1, "{:?}", f.warnings);
        m["metadata"] = json!("free text");
        assert_eq!(parse_json(&m).unwrap().warnings.len(), 1);
    }

    #[test]
    fn legacy_and_current_layer_array_keys_mean_the_same() {
        let mut m = tiny_wavenet();
        let la = &mut m["config"]["layers"][0];
        la.as_object_mut().unwrap().remove("kernel_size");
        la["kernel_sizes"] = json!([2]);
        la.as_object_mut().unwrap().remove("head_size");
        la.as_object_mut().unwrap().remove("head_bias");
        la["head"] = json!({"out_channels": 1, "kernel_size": 1, "bias": false});
        la.as_object_mut().unwrap().remove("gated");
        la["gating_mode"] = json!("none");
        la["layer1x1"] = json!({"active": true, "groups": 1});
        la["head1x1"] = json!({"active": false, "out_channels": 1, "groups": 1});
        la["conv_pre_film"] = json!(false);
        la["conv_post_film"] = json!({"active": false, "shift": true, "groups": 1});
        let new = parse_json(&m).unwrap();
        let old = parse_json(&tiny_wavenet()).unwrap();
        assert_eq!(new.architecture, old.architecture);
        // Both forms at once is ambiguous: refused, as by the reference.
        let mut m = tiny_wavenet();
        m["config"]["layers"][0]["kernel_sizes"] = json!([2]);
        assert!(matches!(parse_json(&m), Err(NamError::InvalidValue { .. })));
    }

    #[test]
    fn legacy_gated_flag_gates_with_a_sigmoid_and_doubles_the_conv() {
        let mut m = tiny_wavenet();
        m["config"]["layers"][0]["gated"] = json!(true);
        // conv (2 out × 1 in × 2 taps + 2 biases) and mixin (2) grow by 3 + 1 weights.
        let w = m["weights"].as_array_mut().unwrap();
        for _ in 0..4 {
            w.insert(1, json!(0.0));
        }
        let f = parse_json(&m).unwrap();
        let Architecture::WaveNet(c) = f.architecture else { panic!() };
        assert_eq!(c.layer_arrays[0].layers[0].gating, Gating::Gated { secondary: ActivationConfig::Sigmoid });
    }

    #[test]
    fn inconsistent_dimensions_are_refused_with_the_reason() {
        let mut m = tiny_wavenet();
        m["config"]["layers"][0]["condition_size"] = json!(2);
        match parse_json(&m) {
            Err(NamError::InvalidValue { path, .. }) => assert_eq!(path, "config.layers[0].condition_size"),
            other => panic!("{other:?}"),
        }
        let mut m = tiny_wavenet();
        m["config"]["layers"][0]["groups_input"] = json!(2);
        assert!(matches!(parse_json(&m), Err(NamError::InvalidValue { .. })));
        let mut m = tiny_wavenet();
        m["config"]["layers"][0]["head1x1_post_film"] = json!({"active": true});
        assert!(matches!(parse_json(&m), Err(NamError::InvalidValue { .. })));
    }

    #[test]
    fn load_names_the_file_and_refuses_what_it_cannot_read() {
        let missing = Path::new("/nonexistent/amp.nam");
        let e = load(missing).unwrap_err();
        assert!(e.to_string().contains("/nonexistent/amp.nam"), "{e}");
        let dir = std::env::temp_dir().join(format!("nam-load-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let bad = dir.join("bad.nam");
        std::fs::write(&bad, "{\"version\": ").unwrap();
        let e = load(&bad).unwrap_err();
        assert!(matches!(&e, NamError::InFile { source, .. } if matches!(**source, NamError::Json { .. })));
        assert!(e.to_string().contains("bad.nam"), "{e}");
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn nested_models_are_checked_like_top_level_ones() {
        let mut m = tiny_wavenet();
        let mut nested = tiny_wavenet();
        nested["version"] = json!("0.4.0");
        m["config"]["condition_dsp"] = nested;
        match parse_json(&m) {
            Err(NamError::UnsupportedVersion { path, .. }) => assert_eq!(path, "config.condition_dsp.version"),
            other => panic!("{other:?}"),
        }
        let container = json!({"version": "0.7.0", "architecture": "SlimmableContainer", "weights": [],
            "config": {"submodels": [{"max_value": 0.5, "model": tiny_wavenet()}]}});
        assert!(matches!(parse_json(&container), Err(NamError::InvalidValue { .. })), "last max_value must be ≥ 1");
    }
}
