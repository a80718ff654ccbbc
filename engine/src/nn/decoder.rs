//! The reverb's decoder: the layer stack of a [`ReverbFile`] (dense, reshape, 1-D convolutions and transposed
//! convolutions, upsampling, activations), run on one latent point at a time.
//!
//! It runs on the reverb's worker thread, never on the audio thread, once per move of the pad: a few hundred
//! thousand multiply-adds. Buffers are sized when it is built, so decoding does not allocate either.

use crate::formats::reverb::{Layer, ReverbFile, Shape};

/// A built decoder.
#[derive(Debug, Clone)]
pub struct Decoder {
    layers: Vec<Layer>,
    /// Shape of the value entering each layer.
    inputs: Vec<Shape>,
    dims: usize,
    floor: f32,
    a: Vec<f32>,
    b: Vec<f32>,
    /// Length of the output (bands × frames).
    out_len: usize,
}

impl Decoder {
    pub fn new(file: &ReverbFile) -> Self {
        let shapes = file.shapes();
        let mut inputs = vec![Shape::Flat(file.latent.dims)];
        inputs.extend_from_slice(&shapes[..shapes.len() - 1]);
        let widest = shapes.iter().chain(&inputs).map(|s| s.len()).max().unwrap_or(1);
        Self {
            layers: file.decoder.clone(),
            inputs,
            dims: file.latent.dims,
            floor: file.db_floor,
            a: vec![0.0; widest],
            b: vec![0.0; widest],
            out_len: shapes.last().map_or(0, |s| s.len()),
        }
    }

    pub fn dims(&self) -> usize {
        self.dims
    }

    /// Decodes `z` (missing dimensions are 0) into the band grid, `D[b · frames + t]` in dB, floored.
    pub fn decode(&mut self, z: &[f32]) -> &[f32] {
        for (i, v) in self.a[..self.dims].iter_mut().enumerate() {
            *v = z.get(i).copied().unwrap_or(0.0);
        }
        for (layer, &input) in self.layers.iter().zip(&self.inputs) {
            let n = run(layer, input, &self.a[..input.len()], &mut self.b);
            // The result is in `b`; make it the next input.
            std::mem::swap(&mut self.a, &mut self.b);
            debug_assert!(n <= self.a.len());
        }
        let floor = self.floor;
        for v in &mut self.a[..self.out_len] {
            *v = v.max(floor);
        }
        &self.a[..self.out_len]
    }
}

/// Runs one layer from `x` (shaped `input`) into `out`; returns the output length.
fn run(layer: &Layer, input: Shape, x: &[f32], out: &mut [f32]) -> usize {
    let (channels, frames) = match input {
        Shape::Flat(n) => (n, 1),
        Shape::Frames(c, t) => (c, t),
    };
    match layer {
        Layer::Dense { weight, bias } => {
            for ((o, row), b) in out.iter_mut().zip(weight).zip(bias) {
                *o = b + row.iter().zip(x).map(|(w, x)| w * x).sum::<f32>();
            }
            bias.len()
        }
        Layer::Reshape { .. } => {
            out[..x.len()].copy_from_slice(x);
            x.len()
        }
        Layer::ConvTranspose1d { weight, bias, stride, padding } => {
            let k = weight[0][0].len();
            let out_frames = (frames - 1) * stride + k - 2 * padding;
            for (o, &b) in bias.iter().enumerate() {
                out[o * out_frames..(o + 1) * out_frames].fill(b);
            }
            for (i, per_out) in weight.iter().enumerate().take(channels) {
                let row = &x[i * frames..(i + 1) * frames];
                for (o, taps) in per_out.iter().enumerate() {
                    let dst = &mut out[o * out_frames..(o + 1) * out_frames];
                    for (t, &v) in row.iter().enumerate() {
                        for (j, &w) in taps.iter().enumerate() {
                            // Output position t·stride − padding + j, when it lies inside.
                            if let Some(at) = (t * stride + j).checked_sub(*padding)
                                && at < out_frames
                            {
                                dst[at] += v * w;
                            }
                        }
                    }
                }
            }
            bias.len() * out_frames
        }
        Layer::Conv1d { weight, bias, padding } => {
            let k = weight[0][0].len();
            let out_frames = frames + 2 * padding + 1 - k;
            for (o, (per_in, &b)) in weight.iter().zip(bias).enumerate() {
                let dst = &mut out[o * out_frames..(o + 1) * out_frames];
                dst.fill(b);
                for (i, taps) in per_in.iter().enumerate() {
                    let row = &x[i * frames..(i + 1) * frames];
                    for (t, d) in dst.iter_mut().enumerate() {
                        for (j, &w) in taps.iter().enumerate() {
                            // Input position t + j − padding; outside it is a padding zero.
                            if let Some(at) = (t + j).checked_sub(*padding)
                                && at < frames
                            {
                                *d += w * row[at];
                            }
                        }
                    }
                }
            }
            bias.len() * out_frames
        }
        Layer::Upsample { factor } => {
            for c in 0..channels {
                for t in 0..frames {
                    let v = x[c * frames + t];
                    let at = c * frames * factor + t * factor;
                    out[at..at + factor].fill(v);
                }
            }
            x.len() * factor
        }
        Layer::LeakyRelu { slope } => map(x, out, |v| if v >= 0.0 { v } else { slope * v }),
        Layer::Relu => map(x, out, |v| v.max(0.0)),
        Layer::Elu => map(x, out, |v| if v > 0.0 { v } else { v.exp_m1() }),
        Layer::Tanh => map(x, out, f32::tanh),
        Layer::Sigmoid => map(x, out, |v| 1.0 / (1.0 + (-v).exp())),
    }
}

fn map(x: &[f32], out: &mut [f32], f: impl Fn(f32) -> f32) -> usize {
    for (o, &v) in out.iter_mut().zip(x) {
        *o = f(v);
    }
    x.len()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::formats::reverb::{self, tests::tiny};

    /// The tiny file's stack written out by hand, in f64, straight from PyTorch's definitions.
    fn by_hand(v: &serde_json::Value, z: [f64; 2]) -> Vec<f64> {
        let num = |v: &serde_json::Value| v.as_f64().unwrap();
        let d = &v["decoder"];
        let dense: Vec<f64> = (0..12)
            .map(|o| num(&d[0]["bias"][o]) + (0..2).map(|i| num(&d[0]["weight"][o][i]) * z[i]).sum::<f64>())
            .map(|x| if x > 0.0 { x } else { x.exp_m1() })
            .collect();
        // Transposed convolution 3 → 4 channels, 4 → 8 frames, k 4, stride 2, padding 1.
        let mut up = vec![vec![0.0; 8]; 4];
        for (o, row) in up.iter_mut().enumerate() {
            for (t_out, y) in row.iter_mut().enumerate() {
                *y = num(&d[3]["bias"][o]);
                for i in 0..3 {
                    for t in 0..4 {
                        for j in 0..4 {
                            if 2 * t + j == t_out + 1 {
                                *y += dense[i * 4 + t] * num(&d[3]["weight"][i][o][j]);
                            }
                        }
                    }
                }
                *y = if *y >= 0.0 { *y } else { 0.1 * *y };
            }
        }
        // Convolution 4 → 5 channels, k 3, padding 1.
        let mut out = Vec::new();
        for o in 0..5 {
            for t in 0..8 {
                let mut y = num(&d[5]["bias"][o]);
                for (i, row) in up.iter().enumerate() {
                    for j in 0..3 {
                        let at = t as isize + j as isize - 1;
                        if (0..8).contains(&at) {
                            y += num(&d[5]["weight"][o][i][j]) * row[at as usize];
                        }
                    }
                }
                out.push(y.max(-100.0));
            }
        }
        out
    }

    #[test]
    fn decoder_runs_the_layers_as_pytorch_defines_them() {
        let v = tiny();
        let file = reverb::parse(&v.to_string()).unwrap();
        let mut decoder = Decoder::new(&file);
        for z in [[0.0, 0.0], [1.5, -0.7], [-2.0, 2.0]] {
            let got = decoder.decode(&[z[0] as f32, z[1] as f32]).to_vec();
            let want = by_hand(&v, z);
            assert_eq!(got.len(), 40);
            for (g, w) in got.iter().zip(&want) {
                assert!((f64::from(*g) - w).abs() < 1e-3 * (1.0 + w.abs()), "{z:?}: {g} against {w}");
            }
        }
        assert_ne!(decoder.decode(&[0.0, 0.0]).to_vec(), decoder.decode(&[1.0, 0.0]).to_vec());
    }

    #[test]
    fn decoder_upsample_repeats_frames() {
        let x = [1.0, 2.0, 3.0, 4.0];
        let mut out = [0.0; 8];
        let n = run(&Layer::Upsample { factor: 2 }, Shape::Frames(2, 2), &x, &mut out);
        assert_eq!(n, 8);
        assert_eq!(out, [1.0, 1.0, 2.0, 2.0, 3.0, 3.0, 4.0, 4.0]);
    }
}
