//! The `neuralboard-reverb` model file: the decoder of an autoencoder trained on room impulse responses, which turns
//! a point of a small latent space into the time-frequency envelope of a room (`training/reverb/train.py`), and a
//! map of where the training rooms lie in that space, for the pad that walks it.
//!
//! ```text
//! { "format": "neuralboard-reverb", "version": 1, "sample_rate": 48000,
//!   "grid": { "n_fft": 1024, "hop": 512, "frames": 288, "band_edges_hz": [0, ..., 24000] },
//!   "db_floor": -120,
//!   "latent": { "dims": 2, "min": [..], "max": [..], "default": [..] },
//!   "decoder": [ LAYER, ... ],
//!   "map": { "rooms": [{"z": [..], "t30_mid_s": t, "volume_m3": v, "split": "train"}, ...],
//!            "grid": {"x": [nx], "y": [ny], "t30_mid_s": [[nx] x ny], "volume_m3": [[nx] x ny]} },
//!   "metadata": { "name": ..., ... } }
//! ```
//!
//! The decoder maps the latent vector `z` (`dims` values) to `D[b][t]`, the room's power in band `b`
//! (`band_edges_hz[b] ≤ f < band_edges_hz[b + 1]`) during STFT frame `t` (centred on sample `t · hop`), in dB, for
//! the response scaled to unit energy; values below `db_floor` mean "nothing". Its layers (PyTorch's layouts):
//!
//! | `type` | fields | what it does |
//! |---|---|---|
//! | `dense` | `weight [out][in]`, `bias [out]` | `y = W x + b` on a flat vector |
//! | `reshape` | `channels`, `frames` | a flat vector becomes channels × frames (index `c · frames + t`) |
//! | `conv_transpose1d` | `weight [in][out][k]`, `bias [out]`, `stride`, `padding` | output length `(L − 1)·stride − 2·padding + k` |
//! | `conv1d` | `weight [out][in][k]`, `bias [out]`, `padding` | stride 1, `padding` zeros each side |
//! | `upsample` | `factor` | each frame repeated `factor` times |
//! | `leaky_relu` (`slope`), `relu`, `elu`, `tanh`, `sigmoid` | | element-wise |
//!
//! The stack must end with `bands × frames` values (a flat vector of that length is read channel-major). Everything
//! is checked here — shapes flow from layer to layer, numbers are finite, sizes are within limits — so that building
//! and running a decoder from a [`ReverbFile`] never meets a surprise.

use std::path::Path;

use serde::Deserialize;

use super::checks::{JsonFormat, ModelFileError, check_finite, check_matrix, check_vec, invalid};

/// The `format` value of these files.
pub const FORMAT: &str = "neuralboard-reverb";
/// Files larger than this are refused before reading (the shipped decoder is a few MB of JSON).
pub const MAX_FILE_BYTES: u64 = 64 << 20;
const JSON: JsonFormat = JsonFormat { name: FORMAT, kind: "reverb model", max_bytes: MAX_FILE_BYTES, max_version: 1 };
/// Limits a hostile file cannot get past: far above anything trained, low enough to bound what the engine
/// allocates.
pub const MAX_LATENT_DIMS: usize = 8;
pub const MAX_BANDS: usize = 512;
pub const MAX_FRAMES: usize = 4096;
pub const MAX_FFT: usize = 16_384;
pub const MAX_LAYERS: usize = 64;
/// Most values one layer may output (channels × frames), and most weights one layer may hold.
pub const MAX_LAYER_VALUES: usize = 1 << 22;
pub const MAX_KERNEL: usize = 64;
pub const MAX_STRIDE: usize = 64;

/// The time-frequency grid the decoder fills.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Grid {
    pub n_fft: usize,
    pub hop: usize,
    pub frames: usize,
    pub band_edges_hz: Vec<f32>,
}

impl Grid {
    pub fn bands(&self) -> usize {
        self.band_edges_hz.len().saturating_sub(1)
    }

    /// Samples of the response the grid describes: `frames · hop`.
    pub fn samples(&self) -> usize {
        self.frames * self.hop
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Latent {
    pub dims: usize,
    pub min: Vec<f32>,
    pub max: Vec<f32>,
    pub default: Vec<f32>,
}

/// One decoder layer (see the module's table).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Layer {
    Dense { weight: Vec<Vec<f32>>, bias: Vec<f32> },
    Reshape { channels: usize, frames: usize },
    ConvTranspose1d { weight: Vec<Vec<Vec<f32>>>, bias: Vec<f32>, stride: usize, padding: usize },
    Conv1d { weight: Vec<Vec<Vec<f32>>>, bias: Vec<f32>, padding: usize },
    Upsample { factor: usize },
    LeakyRelu { slope: f32 },
    Relu,
    Elu,
    Tanh,
    Sigmoid,
}

/// A training room on the map: where it lies in the latent space and what it is.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct MapRoom {
    pub z: Vec<f32>,
    /// Mean of the 500 Hz and 1 kHz octaves' T30; none where the room's response was too short to measure it.
    pub t30_mid_s: Option<f32>,
    pub volume_m3: f32,
    #[serde(default)]
    pub split: String,
}

/// Values over a grid of the pad: `values[j][i]` at `(x[i], y[j])`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct MapGrid {
    pub x: Vec<f32>,
    pub y: Vec<f32>,
    /// T30 of the response decoded there (none where it could not be measured).
    pub t30_mid_s: Vec<Vec<Option<f32>>>,
    pub volume_m3: Vec<Vec<f32>>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct RoomMap {
    #[serde(default)]
    pub rooms: Vec<MapRoom>,
    pub grid: Option<MapGrid>,
}

/// The parsed, validated file.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ReverbFile {
    pub format: String,
    pub version: u32,
    pub sample_rate: f32,
    pub grid: Grid,
    pub db_floor: f32,
    pub latent: Latent,
    pub decoder: Vec<Layer>,
    #[serde(default)]
    pub map: Option<RoomMap>,
    #[serde(default)]
    pub metadata: serde_json::Value,
}

/// The shape of the value flowing between layers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    Flat(usize),
    /// Channels × frames.
    Frames(usize, usize),
}

impl Shape {
    pub fn len(self) -> usize {
        match self {
            Shape::Flat(n) => n,
            Shape::Frames(c, t) => c * t,
        }
    }

    pub fn is_empty(self) -> bool {
        self.len() == 0
    }
}

impl ReverbFile {
    pub fn name(&self) -> Option<&str> {
        self.metadata.get("name").and_then(|n| n.as_str())
    }

    pub fn parameter_count(&self) -> usize {
        self.decoder
            .iter()
            .map(|layer| match layer {
                Layer::Dense { weight, bias } => weight.iter().map(Vec::len).sum::<usize>() + bias.len(),
                Layer::ConvTranspose1d { weight, bias, .. } | Layer::Conv1d { weight, bias, .. } => {
                    weight.iter().flatten().map(Vec::len).sum::<usize>() + bias.len()
                }
                _ => 0,
            })
            .sum()
    }

    /// The shapes after each layer, from the latent vector (checked by [`parse`]: every layer fits its input).
    pub fn shapes(&self) -> Vec<Shape> {
        let mut shape = Shape::Flat(self.latent.dims);
        self.decoder
            .iter()
            .map(|layer| {
                shape = output_shape(layer, shape).unwrap_or(shape);
                shape
            })
            .collect()
    }

    fn validate(&self) -> Result<(), ModelFileError> {
        JSON.check_header(&self.format, self.version)?;
        if !(self.sample_rate.is_finite() && (8_000.0..=768_000.0).contains(&self.sample_rate)) {
            return Err(invalid("sample_rate", format!("{} Hz is not a usable rate", self.sample_rate)));
        }
        let g = &self.grid;
        if !(g.n_fft.is_power_of_two() && (16..=MAX_FFT).contains(&g.n_fft)) {
            return Err(invalid("grid.n_fft", format!("{} is not a power of two in 16..={MAX_FFT}", g.n_fft)));
        }
        if g.hop == 0 || g.hop > g.n_fft {
            return Err(invalid("grid.hop", format!("{} is outside 1..={}", g.hop, g.n_fft)));
        }
        if g.frames == 0 || g.frames > MAX_FRAMES {
            return Err(invalid("grid.frames", format!("{} is outside 1..={MAX_FRAMES}", g.frames)));
        }
        let bands = g.bands();
        if bands == 0 || bands > MAX_BANDS {
            return Err(invalid("grid.band_edges_hz", format!("needs 2 to {} edges", MAX_BANDS + 1)));
        }
        check_finite("grid.band_edges_hz", &g.band_edges_hz)?;
        if g.band_edges_hz[0] != 0.0 || g.band_edges_hz.windows(2).any(|w| w[1] <= w[0]) {
            return Err(invalid("grid.band_edges_hz", "edges must start at 0 and increase"));
        }
        let nyquist = 0.5 * self.sample_rate;
        if (g.band_edges_hz[bands] - nyquist).abs() > 1e-3 * nyquist {
            return Err(invalid("grid.band_edges_hz", format!("the last edge must be Nyquist ({nyquist} Hz)")));
        }
        // Every band must own at least one FFT bin, or it could not be measured (nor synthesised).
        let bin_hz = self.sample_rate / g.n_fft as f32;
        let mut counts = vec![0usize; bands];
        for k in 0..=g.n_fft / 2 {
            counts[band_of(&g.band_edges_hz, k as f32 * bin_hz)] += 1;
        }
        if let Some(b) = counts.iter().position(|&c| c == 0) {
            return Err(invalid(format!("grid.band_edges_hz[{b}]"), "band holds no FFT bin"));
        }
        if !(self.db_floor.is_finite() && (-400.0..0.0).contains(&self.db_floor)) {
            return Err(invalid("db_floor", format!("{} dB is outside -400..0", self.db_floor)));
        }
        let l = &self.latent;
        if l.dims == 0 || l.dims > MAX_LATENT_DIMS {
            return Err(invalid("latent.dims", format!("{} is outside 1..={MAX_LATENT_DIMS}", l.dims)));
        }
        for (what, v) in [("latent.min", &l.min), ("latent.max", &l.max), ("latent.default", &l.default)] {
            check_vec(what, v, l.dims)?;
        }
        if l.min.iter().zip(&l.max).any(|(a, b)| a >= b) {
            return Err(invalid("latent", "needs min < max in every dimension"));
        }
        if self.decoder.is_empty() || self.decoder.len() > MAX_LAYERS {
            return Err(invalid("decoder", format!("needs 1 to {MAX_LAYERS} layers")));
        }
        let mut shape = Shape::Flat(l.dims);
        for (i, layer) in self.decoder.iter().enumerate() {
            let at = format!("decoder[{i}]");
            check_layer(&at, layer, shape)?;
            shape = output_shape(layer, shape).map_err(|m| invalid(&at, m))?;
            if shape.is_empty() || shape.len() > MAX_LAYER_VALUES {
                return Err(invalid(&at, format!("outputs {} values (1..={MAX_LAYER_VALUES})", shape.len())));
            }
        }
        let wanted = bands * g.frames;
        let fits = match shape {
            Shape::Flat(n) => n == wanted,
            Shape::Frames(c, t) => c == bands && t == g.frames,
        };
        if !fits {
            return Err(invalid(
                "decoder",
                format!("ends with {shape:?}, the grid needs {bands} bands × {} frames", g.frames),
            ));
        }
        if let Some(map) = &self.map {
            for (i, room) in map.rooms.iter().enumerate() {
                check_vec(&format!("map.rooms[{i}].z"), &room.z, l.dims)?;
                check_finite(&format!("map.rooms[{i}]"), &[room.t30_mid_s.unwrap_or(0.0), room.volume_m3])?;
            }
            if let Some(grid) = &map.grid {
                check_finite("map.grid.x", &grid.x)?;
                check_finite("map.grid.y", &grid.y)?;
                check_matrix("map.grid.volume_m3", &grid.volume_m3, grid.y.len(), grid.x.len())?;
                let t30: Vec<Vec<f32>> =
                    grid.t30_mid_s.iter().map(|row| row.iter().map(|t| t.unwrap_or(0.0)).collect()).collect();
                check_matrix("map.grid.t30_mid_s", &t30, grid.y.len(), grid.x.len())?;
            }
        }
        Ok(())
    }
}

/// The band a frequency falls in (the last band takes Nyquist and anything above).
pub fn band_of(edges: &[f32], f: f32) -> usize {
    let bands = edges.len() - 1;
    edges[1..].iter().position(|&hi| f < hi).unwrap_or(bands - 1).min(bands - 1)
}

fn output_shape(layer: &Layer, input: Shape) -> Result<Shape, String> {
    Ok(match (layer, input) {
        (Layer::Dense { bias, .. }, Shape::Flat(_)) => Shape::Flat(bias.len()),
        (Layer::Dense { .. }, Shape::Frames(..)) => return Err("a dense layer needs a flat input".into()),
        (Layer::Reshape { channels, frames }, s) => {
            if channels * frames != s.len() {
                return Err(format!("cannot reshape {} values to {channels} × {frames}", s.len()));
            }
            Shape::Frames(*channels, *frames)
        }
        (Layer::ConvTranspose1d { bias, stride, padding, weight, .. }, Shape::Frames(_, t)) => {
            let k = weight.first().and_then(|w| w.first()).map_or(0, Vec::len);
            let full = (t - 1) * stride + k;
            if full <= 2 * padding {
                return Err(format!("padding {padding} leaves no output"));
            }
            Shape::Frames(bias.len(), full - 2 * padding)
        }
        (Layer::Conv1d { bias, padding, weight, .. }, Shape::Frames(_, t)) => {
            let k = weight.first().and_then(|w| w.first()).map_or(0, Vec::len);
            if t + 2 * padding < k {
                return Err(format!("kernel {k} is longer than the padded input ({})", t + 2 * padding));
            }
            Shape::Frames(bias.len(), t + 2 * padding + 1 - k)
        }
        (Layer::ConvTranspose1d { .. } | Layer::Conv1d { .. } | Layer::Upsample { .. }, Shape::Flat(_)) => {
            return Err("needs channels × frames (reshape first)".into());
        }
        (Layer::Upsample { factor }, Shape::Frames(c, t)) => Shape::Frames(c, t * factor),
        (_, s) => s,
    })
}

fn check_layer(at: &str, layer: &Layer, input: Shape) -> Result<(), ModelFileError> {
    let channels_in = match input {
        Shape::Flat(n) => n,
        Shape::Frames(c, _) => c,
    };
    match layer {
        Layer::Dense { weight, bias } => {
            if weight.len() * channels_in > MAX_LAYER_VALUES {
                return Err(invalid(at, "too many weights"));
            }
            check_matrix(&format!("{at}.weight"), weight, bias.len(), channels_in)?;
            check_finite(&format!("{at}.bias"), bias)?;
        }
        Layer::ConvTranspose1d { weight, bias, .. } | Layer::Conv1d { weight, bias, .. } => {
            let transpose = matches!(layer, Layer::ConvTranspose1d { .. });
            if let Layer::ConvTranspose1d { stride, .. } = layer
                && (*stride == 0 || *stride > MAX_STRIDE)
            {
                return Err(invalid(format!("{at}.stride"), format!("{stride} is outside 1..={MAX_STRIDE}")));
            }
            let k = weight.first().and_then(|w| w.first()).map_or(0, Vec::len);
            if k == 0 || k > MAX_KERNEL {
                return Err(invalid(format!("{at}.weight"), format!("kernel length {k} is outside 1..={MAX_KERNEL}")));
            }
            let (outer, inner) = if transpose { (channels_in, bias.len()) } else { (bias.len(), channels_in) };
            if outer * inner * k > MAX_LAYER_VALUES {
                return Err(invalid(at, "too many weights"));
            }
            if weight.len() != outer {
                return Err(invalid(format!("{at}.weight"), format!("{} rows, expected {outer}", weight.len())));
            }
            for (i, w) in weight.iter().enumerate() {
                check_matrix(&format!("{at}.weight[{i}]"), w, inner, k)?;
            }
            check_finite(&format!("{at}.bias"), bias)?;
        }
        Layer::Reshape { .. } => {}
        Layer::Upsample { factor } => {
            if *factor == 0 || *factor > MAX_STRIDE {
                return Err(invalid(format!("{at}.factor"), format!("{factor} is outside 1..={MAX_STRIDE}")));
            }
        }
        Layer::LeakyRelu { slope } => check_finite(&format!("{at}.slope"), &[*slope])?,
        Layer::Relu | Layer::Elu | Layer::Tanh | Layer::Sigmoid => {}
    }
    Ok(())
}

/// Parses and validates the text of a file.
pub fn parse(text: &str) -> Result<ReverbFile, ModelFileError> {
    let file: ReverbFile = JSON.parse(text)?;
    file.validate()?;
    Ok(file)
}

/// Reads, parses and validates a file; errors name it.
pub fn load(path: &Path) -> Result<ReverbFile, ModelFileError> {
    JSON.load(path, parse)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use serde_json::{Value, json};

    /// A small valid file with deterministic weights: 2-D latent → dense 2 → 12 → reshape 3 × 4 → transposed
    /// convolution (stride 2) to 4 × 8 → leaky ReLU → convolution to `bands` × 8; 8 frames of 64 samples, n_fft 128
    /// at 8 kHz. Not a model: for the parser and the maths.
    pub(crate) fn tiny() -> Value {
        let mut seed = 7u32;
        let mut next = move || {
            seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (seed >> 8) as f32 / (1u32 << 24) as f32 - 0.5
        };
        let mut tensor = |a: usize, b: usize, c: usize, scale: f32| {
            (0..a)
                .map(|_| (0..b).map(|_| (0..c).map(|_| scale * next()).collect::<Vec<_>>()).collect::<Vec<_>>())
                .collect::<Vec<_>>()
        };
        let dense_w = tensor(1, 12, 2, 2.0).remove(0);
        let dense_b = tensor(1, 1, 12, 1.0).remove(0).remove(0);
        let convt_w = tensor(3, 4, 4, 1.0);
        let convt_b = tensor(1, 1, 4, 0.5).remove(0).remove(0);
        let conv_w = tensor(5, 4, 3, 10.0);
        let conv_b: Vec<f32> = (0..5).map(|b| -40.0 - 5.0 * b as f32).collect();
        json!({
            "format": "neuralboard-reverb", "version": 1, "sample_rate": 8000,
            "grid": {"n_fft": 128, "hop": 64, "frames": 8, "band_edges_hz": [0, 200, 500, 1000, 2000, 4000]},
            "db_floor": -100,
            "latent": {"dims": 2, "min": [-2, -2], "max": [2, 2], "default": [0, 0]},
            "decoder": [
                {"type": "dense", "weight": dense_w, "bias": dense_b},
                {"type": "elu"},
                {"type": "reshape", "channels": 3, "frames": 4},
                {"type": "conv_transpose1d", "weight": convt_w, "bias": convt_b, "stride": 2, "padding": 1},
                {"type": "leaky_relu", "slope": 0.1},
                {"type": "conv1d", "weight": conv_w, "bias": conv_b, "padding": 1}
            ],
            "map": {"rooms": [{"z": [0.5, -0.5], "t30_mid_s": 0.8, "volume_m3": 120.0, "split": "train"},
                              {"z": [0.1, 0.2], "t30_mid_s": null, "volume_m3": 30.0, "split": "test"}],
                    "grid": {"x": [-1, 1], "y": [-1, 0, 1], "t30_mid_s": [[1, 2], [1, null], [1, 2]],
                             "volume_m3": [[10, 20], [10, 20], [10, 20]]}},
            "metadata": {"name": "tiny"}
        })
    }

    fn error_of(mutate: impl FnOnce(&mut Value)) -> String {
        let mut v = tiny();
        mutate(&mut v);
        parse(&v.to_string()).map(|_| ()).unwrap_err().to_string()
    }

    #[test]
    fn reverb_a_valid_file_parses_with_its_shapes() {
        let file = parse(&tiny().to_string()).unwrap();
        assert_eq!(file.name(), Some("tiny"));
        assert_eq!(file.grid.bands(), 5);
        assert_eq!(file.grid.samples(), 512);
        assert_eq!(*file.shapes().last().unwrap(), Shape::Frames(5, 8));
        assert_eq!(file.shapes()[3], Shape::Frames(4, 8));
        // dense 12·2 + 12, transposed 3·4·4 + 4, conv 5·4·3 + 5.
        assert_eq!(file.parameter_count(), 36 + 52 + 65);
    }

    #[test]
    fn reverb_bad_files_say_what_is_wrong() {
        type Mutation = Box<dyn FnOnce(&mut Value)>;
        let cases: Vec<(Mutation, &str)> = vec![
            (Box::new(|v| v["format"] = json!("neuralboard-s4d")), "format \"neuralboard-s4d\""),
            (Box::new(|v| v["version"] = json!(3)), "version 3"),
            (Box::new(|v| v["grid"]["n_fft"] = json!(100)), "grid.n_fft"),
            (
                Box::new(|v| v["grid"]["band_edges_hz"] = json!([0, 200, 220, 1000, 2000, 4000])),
                "band_edges_hz[1]: band holds no FFT bin",
            ),
            (Box::new(|v| v["grid"]["band_edges_hz"] = json!([0, 500, 200, 1000, 2000, 4000])), "increase"),
            (Box::new(|v| v["grid"]["band_edges_hz"] = json!([0, 200, 500, 1000, 2000, 3000])), "Nyquist"),
            (Box::new(|v| v["grid"]["frames"] = json!(9)), "the grid needs 5 bands × 9 frames"),
            (Box::new(|v| v["latent"]["max"] = json!([2, -3])), "min < max"),
            (Box::new(|v| v["latent"]["default"] = json!([0])), "latent.default: 1 values"),
            (Box::new(|v| v["decoder"][0]["weight"][3] = json!([1, "x"])), "not a valid"),
            (Box::new(|v| v["decoder"][0]["bias"][1] = json!(1e39)), "decoder[0].bias"),
            (Box::new(|v| v["decoder"][2]["frames"] = json!(5)), "decoder[2]: cannot reshape 12 values"),
            (Box::new(|v| v["decoder"][3]["stride"] = json!(0)), "decoder[3].stride"),
            (Box::new(|v| v["decoder"][5]["weight"][4] = json!([[1, 2, 3]])), "decoder[5].weight[4]: 1 rows"),
            (Box::new(|v| v["decoder"][1] = json!({"type": "softmax"})), "not a valid"),
            (Box::new(|v| v["map"]["rooms"][0]["z"] = json!([1, 2, 3])), "map.rooms[0].z"),
            (Box::new(|v| v["map"]["grid"]["t30_mid_s"] = json!([[1, 2]])), "map.grid.t30_mid_s"),
        ];
        for (mutate, wanted) in cases {
            let e = error_of(mutate);
            assert!(e.contains(wanted), "{e:?} should mention {wanted:?}");
        }
        assert!(parse("").unwrap_err().to_string().contains("not a valid"));
    }

    #[test]
    fn reverb_band_of_puts_nyquist_in_the_last_band() {
        let edges = [0.0, 200.0, 500.0, 4000.0];
        assert_eq!(band_of(&edges, 0.0), 0);
        assert_eq!(band_of(&edges, 199.9), 0);
        assert_eq!(band_of(&edges, 200.0), 1);
        assert_eq!(band_of(&edges, 4000.0), 2);
    }

    #[test]
    fn reverb_load_names_the_file() {
        let dir = std::env::temp_dir().join(format!("nb-reverb-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("broken.reverb.json");
        std::fs::write(&path, "[1, 2").unwrap();
        let e = load(&path).unwrap_err().to_string();
        assert!(e.contains("broken.reverb.json") && e.contains("not a valid"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
