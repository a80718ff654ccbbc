//! Slimmable WaveNet: one weight file, several channel counts, chosen at run time by a size knob.
//!
//! For knob value `r`, each slimmable layer array plays `allowed_channels[min(⌊r·n⌋, n−1)]` channels (the others
//! keep their full size). A slimmed array uses the top-left corner of every full weight matrix — the first rows and
//! the first columns, which for gated layers and FiLM shifts means the first rows of the stacked matrix, exactly as
//! the reference slices it — and a bottleneck of `max(1, bottleneck·new/channels)`.
//!
//! The reference rebuilds and prewarms a model when the size changes. Here every distinct size is built and
//! prewarmed in advance, so that [`Dsp::set_slim`] only switches and restores the snapshot: real-time safe, and the
//! same state the reference reaches.

use super::wavenet::WaveNet;
use super::{BuildContext, BuildError, Dsp, Weights};
use crate::formats::nam::{LayerArrayConfig, MAX_WEIGHTS, WaveNetConfig, film_dims};

/// Whether the file's slimmable arrays can be sliced (see [`WaveNetConfig::can_slim`]); otherwise it plays at full
/// size only (the parser warns).
pub fn supports(config: &WaveNetConfig) -> bool {
    config.can_slim()
}

/// Channel count of one array at knob value `ratio`.
fn channels_for(ratio: f64, allowed: &[usize]) -> usize {
    let n = allowed.len();
    let ratio = if ratio.is_nan() { 1.0 } else { ratio.max(0.0) };
    let index = ((ratio * n as f64).floor() as usize).min(n - 1);
    allowed[index]
}

pub struct SlimmableWaveNet {
    /// Per array: the allowed channel counts (empty = not slimmable).
    allowed: Vec<Vec<usize>>,
    full: Vec<usize>,
    /// Every distinct size: its channels per array and its model.
    sizes: Vec<(Vec<usize>, WaveNet)>,
    active: usize,
}

impl SlimmableWaveNet {
    pub fn new(config: &WaveNetConfig, weights: &[f32], ctx: &BuildContext) -> Result<Self, BuildError> {
        let allowed: Vec<Vec<usize>> =
            config.layer_arrays.iter().map(|a| a.slimmable.clone().unwrap_or_default()).collect();
        let full: Vec<usize> = config.layer_arrays.iter().map(|a| a.channels).collect();
        let targets = |ratio: f64| -> Vec<usize> {
            allowed.iter().zip(&full).map(|(al, &f)| if al.is_empty() { f } else { channels_for(ratio, al) }).collect()
        };
        // Sizes only change at the breakpoints i/n of each array, so every size is met at a breakpoint or between
        // two (midpoints guard against rounding at the breakpoints). The full size comes first: it is the default.
        let mut breakpoints: Vec<f64> = allowed
            .iter()
            .flat_map(|al| (1..al.len()).map(move |i| i as f64 / al.len() as f64))
            .chain([0.0, 1.0])
            .collect();
        breakpoints.sort_by(f64::total_cmp);
        breakpoints.dedup();
        let midpoints = breakpoints.windows(2).map(|w| 0.5 * (w[0] + w[1]));
        let ratios: Vec<f64> = std::iter::once(1.0).chain(breakpoints.iter().copied()).chain(midpoints).collect();
        let mut sizes: Vec<(Vec<usize>, WaveNet)> = Vec::new();
        let mut total_weights = 0u64;
        for ratio in ratios {
            let channels = targets(ratio);
            if sizes.iter().any(|(c, _)| *c == channels) {
                continue;
            }
            let (slim_config, slim_weights) = if channels == full {
                (config.clone(), weights.to_vec())
            } else {
                (slim_config(config, &channels), slim_weights(config, weights, &channels)?)
            };
            total_weights += slim_weights.len() as u64;
            if total_weights > MAX_WEIGHTS {
                return Err(BuildError::TooLarge {
                    what: "weights over all slimmable sizes",
                    value: total_weights,
                    limit: MAX_WEIGHTS,
                });
            }
            let model = WaveNet::new(&slim_config, &mut Weights::new(&slim_weights), ctx)?;
            sizes.push((channels, model));
        }
        Ok(Self { allowed, full, sizes, active: 0 })
    }

    fn index_for(&self, ratio: f64) -> usize {
        self.sizes
            .iter()
            .position(|(channels, _)| {
                channels
                    .iter()
                    .zip(&self.allowed)
                    .zip(&self.full)
                    .all(|((&c, al), &f)| c == if al.is_empty() { f } else { channels_for(ratio, al) })
            })
            .unwrap_or(0)
    }
}

/// The configuration of the model with `channels[i]` channels in array `i`.
fn slim_config(config: &WaveNetConfig, channels: &[usize]) -> WaveNetConfig {
    let last = channels.len() - 1;
    let arrays = config
        .layer_arrays
        .iter()
        .enumerate()
        .map(|(i, a)| LayerArrayConfig {
            input_size: if i == 0 { a.input_size } else { channels[i - 1] },
            channels: channels[i],
            bottleneck: slim_bottleneck(a, channels[i]),
            head_size: if i < last { channels[i + 1] } else { a.head_size },
            slimmable: None,
            ..a.clone()
        })
        .collect();
    WaveNetConfig { layer_arrays: arrays, ..config.clone() }
}

fn slim_bottleneck(a: &LayerArrayConfig, channels: usize) -> usize {
    if a.layer1x1_active { (a.bottleneck * channels / a.channels).max(1) } else { channels }
}

/// Copies the top-left `slim_out × slim_in` corner (all taps) of a `full_out × full_in × k` weight, then the first
/// `slim_out` biases.
#[allow(clippy::too_many_arguments)]
fn corner(
    src: &mut Weights<'_>,
    dst: &mut Vec<f32>,
    full_in: usize,
    full_out: usize,
    slim_in: usize,
    slim_out: usize,
    k: usize,
    bias: bool,
) -> Result<(), BuildError> {
    let w = src.take(full_out * full_in * k)?;
    for o in 0..slim_out {
        for j in 0..slim_in {
            dst.extend_from_slice(&w[(o * full_in + j) * k..(o * full_in + j + 1) * k]);
        }
    }
    if bias {
        dst.extend_from_slice(&src.take(full_out)?[..slim_out]);
    }
    Ok(())
}

/// The weight stream of the slimmed model, walking the full stream in file order.
fn slim_weights(config: &WaveNetConfig, weights: &[f32], channels: &[usize]) -> Result<Vec<f32>, BuildError> {
    let mut src = Weights::new(weights);
    let mut dst = Vec::new();
    let slim = slim_config(config, channels);
    for (a, s) in config.layer_arrays.iter().zip(&slim.layer_arrays) {
        corner(&mut src, &mut dst, a.input_size, a.channels, s.input_size, s.channels, 1, false)?;
        for (l, sl) in a.layers.iter().zip(&s.layers) {
            let (z, sz) = (a.z_channels(l), s.z_channels(sl));
            corner(&mut src, &mut dst, a.channels, z, s.channels, sz, l.kernel_size, true)?;
            corner(&mut src, &mut dst, a.condition_size, z, a.condition_size, sz, 1, false)?;
            if a.layer1x1_active {
                corner(&mut src, &mut dst, a.bottleneck, a.channels, s.bottleneck, s.channels, 1, true)?;
            }
            if let Some((out, _)) = a.head1x1 {
                corner(&mut src, &mut dst, a.bottleneck, out, s.bottleneck, out, 1, true)?;
            }
            for ((film, dim), (_, slim_dim)) in film_dims(a, l).into_iter().zip(film_dims(s, sl)) {
                if let Some(f) = film {
                    let rows = |d: usize| if f.shift { 2 * d } else { d };
                    corner(&mut src, &mut dst, a.condition_size, rows(dim), a.condition_size, rows(slim_dim), 1, true)?;
                }
            }
        }
        let (head_in, slim_head_in) = (a.head_output_size(), s.head_output_size());
        corner(&mut src, &mut dst, head_in, a.head_size, slim_head_in, s.head_size, a.head_kernel_size, a.head_bias)?;
    }
    dst.extend_from_slice(src.take(1)?); // head scale
    if !src.is_empty() {
        return Err(BuildError::Inconsistent("slimmable WaveNet: weights left over".into()));
    }
    Ok(dst)
}

impl Dsp for SlimmableWaveNet {
    fn in_channels(&self) -> usize {
        self.sizes[self.active].1.in_channels()
    }

    fn out_channels(&self) -> usize {
        self.sizes[self.active].1.out_channels()
    }

    fn process(&mut self, input: &[f32], output: &mut [f32], n: usize) {
        self.sizes[self.active].1.process(input, output, n);
    }

    fn prewarm_samples(&self) -> usize {
        self.sizes[self.active].1.prewarm_samples()
    }

    /// Every size is prewarmed, so that any can start playing at once.
    fn prewarm(&mut self, block: usize) {
        for (_, model) in &mut self.sizes {
            model.prewarm(block);
        }
    }

    fn save_state(&mut self) {
        self.sizes[self.active].1.save_state();
    }

    fn restore_state(&mut self) {
        self.sizes[self.active].1.restore_state();
    }

    fn receptive_field(&self) -> usize {
        self.sizes[self.active].1.receptive_field()
    }

    fn parameter_count(&self) -> usize {
        self.sizes[self.active].1.parameter_count()
    }

    fn set_slim(&mut self, ratio: f32) {
        let index = self.index_for(f64::from(ratio));
        if index != self.active {
            self.sizes[index].1.restore_state();
            self.active = index;
        }
    }

    fn is_slimmable(&self) -> bool {
        self.sizes.len() > 1
    }
}
