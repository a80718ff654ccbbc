//! WaveNet: layer arrays of gated/FiLM-modulated dilated convolutions with residual and skip (head) connections.
//!
//! Per block, following NAM_FORMAT.md §3.3 (x = input, c = condition):
//! ```text
//! c = condition_dsp(x) or x
//! array 0: r = rechannel(x), head_acc = 0;  array i > 0: r = rechannel(residual of i−1), head_acc = head of i−1
//! each layer:  z = act(FiLMs(conv(FiLM(r)) + input_mixin(FiLM(c))))   (gated / blended on 2·bottleneck rows)
//!              head_acc += head1x1(z) or z;   r += layer1x1(z)
//! head = head_rechannel(head_acc);  y = head_scale · head  (then the post-stack head, activation before each conv)
//! ```
//! `head_scale` is the LAST weight of the file, not `config.head_scale`.

use super::activations::Activation;
use super::conv1d::Conv1d;
use super::conv1x1::{Conv1x1, Film};
use super::{BuildContext, BuildError, Dsp, Weights, build_dsp};
use crate::formats::nam::{FilmConfig, Gating, LayerArrayConfig, LayerConfig, WaveNetConfig, film_dims};

/// Whether a layer applies its `layer1x1_post_film` (the weights are read either way).
///
/// NeuralAmpModelerCore at daae2d0 (the version this crate matches, NAM_FORMAT.md §3.3) applies it only in
/// BLENDED layers; the open PR #322 (36f9e2b) applies it for every gating mode. Only files with an active
/// `layer1x1_post_film` on a non-blended layer (e.g. `wavenet_a2_max.nam`) sound different. Change this one
/// function if the reference changes.
fn layer1x1_post_film_applies(gating: &LayerGating) -> bool {
    matches!(gating, LayerGating::Blended(_))
}

#[derive(Debug, Clone)]
enum LayerGating {
    None,
    Gated(Activation),
    Blended(Activation),
}

/// The eight FiLM slots of a layer (see [`crate::formats::nam::FilmSlots`]).
#[derive(Debug, Clone, Default)]
struct Films {
    conv_pre: Option<Film>,
    conv_post: Option<Film>,
    input_mixin_pre: Option<Film>,
    input_mixin_post: Option<Film>,
    activation_pre: Option<Film>,
    activation_post: Option<Film>,
    layer1x1_post: Option<Film>,
    head1x1_post: Option<Film>,
}

impl Films {
    fn iter(&self) -> impl Iterator<Item = &Film> {
        [
            &self.conv_pre,
            &self.conv_post,
            &self.input_mixin_pre,
            &self.input_mixin_post,
            &self.activation_pre,
            &self.activation_post,
            &self.layer1x1_post,
            &self.head1x1_post,
        ]
        .into_iter()
        .flatten()
    }
}

/// Working buffers shared by every layer of a WaveNet (sized for the largest layer and block).
#[derive(Debug, Clone, Default)]
struct Scratch {
    /// FiLM-modulated conv input.
    conv_in: Vec<f32>,
    /// Conv output, then the pre-activation sum (Z rows).
    z: Vec<f32>,
    /// Input-mixin output (Z rows).
    mix: Vec<f32>,
    /// FiLM-modulated condition for the input mixin.
    mix_in: Vec<f32>,
    /// FiLM scale/shift rows.
    film: Vec<f32>,
    /// Activated rows of gated/blended layers (bottleneck rows).
    act: Vec<f32>,
    /// Gate / blend rows.
    gate: Vec<f32>,
    layer1x1: Vec<f32>,
    head1x1: Vec<f32>,
}

#[derive(Debug, Clone, Copy, Default)]
struct ScratchRows {
    conv_in: usize,
    z: usize,
    mix_in: usize,
    film: usize,
    bottleneck: usize,
    layer1x1: usize,
    head1x1: usize,
}

impl ScratchRows {
    fn max(self, o: ScratchRows) -> ScratchRows {
        ScratchRows {
            conv_in: self.conv_in.max(o.conv_in),
            z: self.z.max(o.z),
            mix_in: self.mix_in.max(o.mix_in),
            film: self.film.max(o.film),
            bottleneck: self.bottleneck.max(o.bottleneck),
            layer1x1: self.layer1x1.max(o.layer1x1),
            head1x1: self.head1x1.max(o.head1x1),
        }
    }

    fn allocate(self, ctx: &BuildContext) -> Result<Scratch, BuildError> {
        let b = |rows| ctx.buffer(rows);
        Ok(Scratch {
            conv_in: b(self.conv_in)?,
            z: b(self.z)?,
            mix: b(self.z)?,
            mix_in: b(self.mix_in)?,
            film: b(self.film)?,
            act: b(self.bottleneck)?,
            gate: b(self.bottleneck)?,
            layer1x1: b(self.layer1x1)?,
            head1x1: b(self.head1x1)?,
        })
    }
}

#[derive(Debug, Clone)]
struct Layer {
    conv: Conv1d,
    input_mixin: Conv1x1,
    layer1x1: Option<Conv1x1>,
    head1x1: Option<Conv1x1>,
    films: Films,
    activation: Activation,
    gating: LayerGating,
    channels: usize,
    bottleneck: usize,
    condition_size: usize,
}

fn film(
    w: &mut Weights<'_>,
    condition_size: usize,
    slot: (Option<FilmConfig>, usize),
) -> Result<Option<Film>, BuildError> {
    slot.0.map(|f| Film::new(w, condition_size, slot.1, f.shift, f.groups)).transpose()
}

impl Layer {
    fn new(w: &mut Weights<'_>, a: &LayerArrayConfig, l: &LayerConfig, ctx: &BuildContext) -> Result<Self, BuildError> {
        let z = a.z_channels(l);
        let conv = Conv1d::new(w, a.channels, z, l.kernel_size, l.dilation, true, a.groups_input, ctx)?;
        let input_mixin = Conv1x1::new(w, a.condition_size, z, false, a.groups_input_mixin)?;
        let layer1x1 = if a.layer1x1_active {
            Some(Conv1x1::new(w, a.bottleneck, a.channels, true, a.layer1x1_groups)?)
        } else {
            None
        };
        let head1x1 = a.head1x1.map(|(out, groups)| Conv1x1::new(w, a.bottleneck, out, true, groups)).transpose()?;
        let [conv_pre, conv_post, mix_pre, mix_post, act_pre, act_post, l1_post, h1_post] = film_dims(a, l);
        let cs = a.condition_size;
        let films = Films {
            conv_pre: film(w, cs, conv_pre)?,
            conv_post: film(w, cs, conv_post)?,
            input_mixin_pre: film(w, cs, mix_pre)?,
            input_mixin_post: film(w, cs, mix_post)?,
            activation_pre: film(w, cs, act_pre)?,
            activation_post: film(w, cs, act_post)?,
            layer1x1_post: film(w, cs, l1_post)?,
            head1x1_post: film(w, cs, h1_post)?,
        };
        let gating = match &l.gating {
            Gating::None => LayerGating::None,
            Gating::Gated { secondary } => LayerGating::Gated(Activation::new(secondary, ctx.tanh)),
            Gating::Blended { secondary } => LayerGating::Blended(Activation::new(secondary, ctx.tanh)),
        };
        Ok(Self {
            conv,
            input_mixin,
            layer1x1,
            head1x1,
            films,
            activation: Activation::new(&l.activation, ctx.tanh),
            gating,
            channels: a.channels,
            bottleneck: a.bottleneck,
            condition_size: a.condition_size,
        })
    }

    fn scratch_rows(&self) -> ScratchRows {
        ScratchRows {
            conv_in: self.channels,
            z: self.conv.out_channels(),
            mix_in: self.condition_size,
            film: self.films.iter().map(Film::scratch_rows).max().unwrap_or(0),
            bottleneck: self.bottleneck,
            layer1x1: self.channels,
            head1x1: self.head1x1.as_ref().map_or(0, Conv1x1::out_channels),
        }
    }

    fn parameter_count(&self) -> usize {
        self.conv.parameter_count()
            + self.input_mixin.parameter_count()
            + self.layer1x1.as_ref().map_or(0, Conv1x1::parameter_count)
            + self.head1x1.as_ref().map_or(0, Conv1x1::parameter_count)
            + self.films.iter().map(Film::parameter_count).sum::<usize>()
    }

    /// One layer: updates the residual `r` (channels × n) in place and adds its skip output to `head_acc`.
    fn process(&mut self, s: &mut Scratch, r: &mut [f32], c: &[f32], head_acc: &mut [f32], n: usize) {
        let (cn, bn) = (self.channels * n, self.bottleneck * n);
        let zn = self.conv.out_channels() * n;
        let f = &self.films;

        // Dilated conv of the (optionally modulated) residual stream.
        if let Some(film) = &f.conv_pre {
            s.conv_in[..cn].copy_from_slice(&r[..cn]);
            film.apply(&mut s.conv_in, c, &mut s.film, n);
            self.conv.process(&s.conv_in, &mut s.z, n);
        } else {
            self.conv.process(r, &mut s.z, n);
        }
        if let Some(film) = &f.conv_post {
            film.apply(&mut s.z, c, &mut s.film, n);
        }

        // Input mixin of the (optionally modulated) condition.
        if let Some(film) = &f.input_mixin_pre {
            let m = self.condition_size * n;
            s.mix_in[..m].copy_from_slice(&c[..m]);
            film.apply(&mut s.mix_in, c, &mut s.film, n);
            self.input_mixin.process(&s.mix_in, &mut s.mix, n);
        } else {
            self.input_mixin.process(c, &mut s.mix, n);
        }
        if let Some(film) = &f.input_mixin_post {
            film.apply(&mut s.mix, c, &mut s.film, n);
        }

        for (z, m) in s.z[..zn].iter_mut().zip(&s.mix[..zn]) {
            *z += m;
        }
        if let Some(film) = &f.activation_pre {
            film.apply(&mut s.z, c, &mut s.film, n);
        }

        // Activation. Gated/blended layers activate column by column in the reference (PReLU's index restarts
        // every column: period = bottleneck rows).
        let b = self.bottleneck;
        let z: &mut [f32] = match &self.gating {
            LayerGating::None => {
                self.activation.apply(&mut s.z, b, n, bn);
                &mut s.z
            }
            LayerGating::Gated(secondary) => {
                s.act[..bn].copy_from_slice(&s.z[..bn]);
                self.activation.apply(&mut s.act, b, n, b);
                s.gate[..bn].copy_from_slice(&s.z[bn..2 * bn]);
                secondary.apply(&mut s.gate, b, n, b);
                for (a, g) in s.act[..bn].iter_mut().zip(&s.gate[..bn]) {
                    *a *= g;
                }
                &mut s.act
            }
            LayerGating::Blended(secondary) => {
                s.act[..bn].copy_from_slice(&s.z[..bn]);
                self.activation.apply(&mut s.act, b, n, b);
                s.gate[..bn].copy_from_slice(&s.z[bn..2 * bn]);
                secondary.apply(&mut s.gate, b, n, b);
                for ((a, alpha), pre) in s.act[..bn].iter_mut().zip(&s.gate[..bn]).zip(&s.z[..bn]) {
                    *a = alpha * *a + (1.0 - alpha) * pre;
                }
                &mut s.act
            }
        };
        if let Some(film) = &f.activation_post {
            film.apply(z, c, &mut s.film, n);
        }
        let z: &[f32] = z;

        // Residual: r += layer1x1(z).
        if let Some(layer1x1) = &self.layer1x1 {
            layer1x1.process(z, &mut s.layer1x1, n);
            if let Some(film) = &f.layer1x1_post
                && layer1x1_post_film_applies(&self.gating)
            {
                film.apply(&mut s.layer1x1, c, &mut s.film, n);
            }
            for (r, l) in r[..cn].iter_mut().zip(&s.layer1x1[..cn]) {
                *r += l;
            }
        }

        // Skip connection into the head accumulator.
        match &self.head1x1 {
            Some(head1x1) => {
                let hn = head1x1.out_channels() * n;
                head1x1.process(z, &mut s.head1x1, n);
                if let Some(film) = &f.head1x1_post {
                    film.apply(&mut s.head1x1, c, &mut s.film, n);
                }
                for (h, x) in head_acc[..hn].iter_mut().zip(&s.head1x1[..hn]) {
                    *h += x;
                }
            }
            None => {
                for (h, x) in head_acc[..bn].iter_mut().zip(&z[..bn]) {
                    *h += x;
                }
            }
        }
    }
}

#[derive(Debug, Clone)]
struct LayerArray {
    rechannel: Conv1x1,
    layers: Vec<Layer>,
    head_rechannel: Conv1d,
    /// Residual stream (channels × block); after the last layer, the input of the next array.
    residual: Vec<f32>,
    /// Skip-connection accumulator (head output size × block).
    head_acc: Vec<f32>,
    /// Head rechannel output (head_size × block).
    head_out: Vec<f32>,
    channels: usize,
    head_output_size: usize,
    /// Past frames its output depends on: Σ d(K−1) + head dilation·(head K − 1).
    history: usize,
}

impl LayerArray {
    fn new(w: &mut Weights<'_>, a: &LayerArrayConfig, ctx: &BuildContext) -> Result<Self, BuildError> {
        let rechannel = Conv1x1::new(w, a.input_size, a.channels, false, 1)?;
        let layers = a.layers.iter().map(|l| Layer::new(w, a, l, ctx)).collect::<Result<Vec<_>, _>>()?;
        let head_output_size = a.head_output_size();
        let head_rechannel =
            Conv1d::new(w, head_output_size, a.head_size, a.head_kernel_size, a.head_dilation, a.head_bias, 1, ctx)?;
        let history =
            a.layers.iter().map(|l| l.dilation * (l.kernel_size - 1)).sum::<usize>() + head_rechannel.receptive_field();
        Ok(Self {
            rechannel,
            layers,
            head_rechannel,
            residual: ctx.buffer(a.channels)?,
            head_acc: ctx.buffer(head_output_size)?,
            head_out: ctx.buffer(a.head_size)?,
            channels: a.channels,
            head_output_size,
            history,
        })
    }

    /// `head_in`: the previous array's head output (None for the first array, whose accumulator starts at zero).
    fn process(&mut self, input: &[f32], c: &[f32], head_in: Option<&[f32]>, s: &mut Scratch, n: usize) {
        self.rechannel.process(input, &mut self.residual, n);
        let hn = self.head_output_size * n;
        match head_in {
            None => self.head_acc[..hn].fill(0.0),
            Some(h) => self.head_acc[..hn].copy_from_slice(&h[..hn]),
        }
        for layer in &mut self.layers {
            layer.process(s, &mut self.residual, c, &mut self.head_acc, n);
        }
        self.head_rechannel.process(&self.head_acc, &mut self.head_out, n);
    }

    fn convs(&mut self) -> impl Iterator<Item = &mut Conv1d> {
        self.layers.iter_mut().map(|l| &mut l.conv).chain(std::iter::once(&mut self.head_rechannel))
    }

    fn parameter_count(&self) -> usize {
        self.rechannel.parameter_count()
            + self.layers.iter().map(Layer::parameter_count).sum::<usize>()
            + self.head_rechannel.parameter_count()
    }
}

/// Post-stack head: `h = conv_i(act(h))` for each conv.
#[derive(Debug, Clone)]
struct PostHead {
    convs: Vec<Conv1d>,
    activation: Activation,
    /// Input of each conv (the first holds `head_scale · head`).
    inputs: Vec<Vec<f32>>,
}

/// A WaveNet model (any number of layer arrays, optional condition DSP and post-stack head).
pub struct WaveNet {
    in_channels: usize,
    out_channels: usize,
    condition_dsp: Option<Box<dyn Dsp>>,
    /// Condition DSP output (condition channels × block).
    condition: Vec<f32>,
    arrays: Vec<LayerArray>,
    post_head: Option<PostHead>,
    head_scale: f32,
    scratch: Scratch,
    prewarm_samples: usize,
    receptive_field: usize,
    parameters: usize,
}

impl WaveNet {
    /// Reads the weights in file order (arrays, post-stack head, head scale) and allocates every buffer.
    pub fn new(config: &WaveNetConfig, w: &mut Weights<'_>, ctx: &BuildContext) -> Result<Self, BuildError> {
        let inconsistent = |m: String| Err(BuildError::Inconsistent(m));
        let condition_dsp = match &config.condition_dsp {
            Some(file) => Some(build_dsp(file, ctx)?),
            None => None,
        };
        let condition_dim = condition_dsp.as_ref().map_or(config.in_channels, |d| d.out_channels());
        if let Some(d) = &condition_dsp
            && d.in_channels() != config.in_channels
        {
            return inconsistent(format!(
                "condition DSP takes {} channels, not {}",
                d.in_channels(),
                config.in_channels
            ));
        }
        let mut arrays: Vec<LayerArray> = Vec::with_capacity(config.layer_arrays.len());
        for (i, a) in config.layer_arrays.iter().enumerate() {
            let expected_input = arrays.last().map_or(config.in_channels, |p| p.channels);
            if a.input_size != expected_input || a.condition_size != condition_dim {
                return inconsistent(format!("layer array {i}: input/condition sizes do not match what feeds them"));
            }
            if let Some(p) = config.layer_arrays.get(i.wrapping_sub(1))
                && (a.head_output_size() != p.head_size || a.channels != p.head_size)
            {
                return inconsistent(format!("layer array {i}: head sizes do not chain"));
            }
            arrays.push(LayerArray::new(w, a, ctx)?);
        }
        let Some(last) = config.layer_arrays.last() else { return inconsistent("no layer array".into()) };
        let post_head = match &config.head {
            Some(h) => {
                let mut convs = Vec::new();
                let mut inputs = Vec::new();
                let mut c_in = last.head_size;
                for (i, &k) in h.kernel_sizes.iter().enumerate() {
                    let c_out = if i + 1 == h.kernel_sizes.len() { h.out_channels } else { h.channels };
                    convs.push(Conv1d::new(w, c_in, c_out, k, 1, true, 1, ctx)?);
                    inputs.push(ctx.buffer(c_in)?);
                    c_in = c_out;
                }
                Some(PostHead { convs, activation: Activation::new(&h.activation, ctx.tanh), inputs })
            }
            None => None,
        };
        let head_scale = w.take(1)?[0];
        if !w.is_empty() {
            return inconsistent(format!("{} weights left over", w.remaining()));
        }

        let rows = arrays
            .iter()
            .flat_map(|a| &a.layers)
            .map(Layer::scratch_rows)
            .fold(ScratchRows::default(), ScratchRows::max);
        let scratch = rows.allocate(ctx)?;
        let post_history = post_head.as_ref().map_or(0, |h| h.convs.iter().map(Conv1d::receptive_field).sum());
        let history = arrays.iter().map(|a| a.history).sum::<usize>() + post_history;
        // The reference prewarms `(condition_dsp ? its prewarm : 1) + receptive field` samples.
        let prewarm_samples = condition_dsp.as_ref().map_or(1, |d| d.prewarm_samples()) + history;
        let receptive_field = condition_dsp.as_ref().map_or(1, |d| d.receptive_field()) + history;
        let parameters = arrays.iter().map(LayerArray::parameter_count).sum::<usize>()
            + post_head.as_ref().map_or(0, |h| h.convs.iter().map(Conv1d::parameter_count).sum())
            + 1
            + condition_dsp.as_ref().map_or(0, |d| d.parameter_count());
        Ok(Self {
            in_channels: config.in_channels,
            out_channels: config.out_channels(),
            condition: ctx.buffer(condition_dim)?,
            condition_dsp,
            arrays,
            post_head,
            head_scale,
            scratch,
            prewarm_samples,
            receptive_field,
            parameters,
        })
    }
}

impl Dsp for WaveNet {
    fn in_channels(&self) -> usize {
        self.in_channels
    }

    fn out_channels(&self) -> usize {
        self.out_channels
    }

    fn process(&mut self, input: &[f32], output: &mut [f32], n: usize) {
        let c: &[f32] = match &mut self.condition_dsp {
            Some(d) => {
                d.process(input, &mut self.condition, n);
                &self.condition
            }
            None => input,
        };
        for i in 0..self.arrays.len() {
            let (done, rest) = self.arrays.split_at_mut(i);
            match done.last() {
                None => rest[0].process(input, c, None, &mut self.scratch, n),
                Some(prev) => rest[0].process(&prev.residual, c, Some(&prev.head_out), &mut self.scratch, n),
            }
        }
        let Some(last) = self.arrays.last() else { return };
        let scale = self.head_scale;
        match &mut self.post_head {
            None => {
                let hn = self.out_channels * n;
                for (y, h) in output[..hn].iter_mut().zip(&last.head_out[..hn]) {
                    *y = scale * h;
                }
            }
            Some(ph) => {
                let rows = ph.convs[0].in_channels();
                for (y, h) in ph.inputs[0][..rows * n].iter_mut().zip(&last.head_out[..rows * n]) {
                    *y = scale * h;
                }
                let count = ph.convs.len();
                for i in 0..count {
                    let c_in = ph.convs[i].in_channels();
                    let (inputs, later) = ph.inputs.split_at_mut(i + 1);
                    let x = &mut inputs[i];
                    ph.activation.apply(x, c_in, n, c_in * n);
                    let out: &mut [f32] = if i + 1 == count { output } else { &mut later[0] };
                    ph.convs[i].process(x, out, n);
                }
            }
        }
    }

    fn prewarm_samples(&self) -> usize {
        self.prewarm_samples
    }

    fn save_state(&mut self) {
        if let Some(d) = &mut self.condition_dsp {
            d.save_state();
        }
        self.arrays.iter_mut().flat_map(LayerArray::convs).for_each(Conv1d::save_state);
        if let Some(ph) = &mut self.post_head {
            ph.convs.iter_mut().for_each(Conv1d::save_state);
        }
    }

    fn restore_state(&mut self) {
        if let Some(d) = &mut self.condition_dsp {
            d.restore_state();
        }
        self.arrays.iter_mut().flat_map(LayerArray::convs).for_each(Conv1d::restore_state);
        if let Some(ph) = &mut self.post_head {
            ph.convs.iter_mut().for_each(Conv1d::restore_state);
        }
    }

    fn receptive_field(&self) -> usize {
        self.receptive_field
    }

    fn parameter_count(&self) -> usize {
        self.parameters
    }
}
