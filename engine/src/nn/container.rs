//! SlimmableContainer: several complete models of increasing size behind one "size" knob.
//!
//! The active submodel is the first whose `max_value` exceeds the slim value (the largest by default). Switching
//! resets the newly active submodel, as the reference does; here that restores the snapshot taken when it was
//! prewarmed at build time, so switching is real-time safe.

use super::{BuildContext, BuildError, Dsp, build_dsp};
use crate::formats::nam::ContainerConfig;

pub struct Container {
    submodels: Vec<(f64, Box<dyn Dsp>)>,
    active: usize,
}

impl Container {
    pub fn new(config: &ContainerConfig, ctx: &BuildContext) -> Result<Self, BuildError> {
        let submodels = config
            .submodels
            .iter()
            .map(|s| Ok((s.max_value, build_dsp(&s.model, ctx)?)))
            .collect::<Result<Vec<_>, BuildError>>()?;
        if submodels.is_empty() {
            return Err(BuildError::Inconsistent("container without submodels".into()));
        }
        let active = submodels.len() - 1;
        Ok(Self { submodels, active })
    }

    /// Index of the submodel the reference plays at slim value `ratio`.
    fn index_for(&self, ratio: f32) -> usize {
        let ratio = f64::from(ratio);
        self.submodels.iter().position(|(max_value, _)| ratio < *max_value).unwrap_or(self.submodels.len() - 1)
    }

    fn active(&mut self) -> &mut dyn Dsp {
        self.submodels[self.active].1.as_mut()
    }
}

impl Dsp for Container {
    fn in_channels(&self) -> usize {
        1
    }

    fn out_channels(&self) -> usize {
        1
    }

    fn process(&mut self, input: &[f32], output: &mut [f32], n: usize) {
        self.active().process(input, output, n);
    }

    fn prewarm_samples(&self) -> usize {
        self.submodels[self.active].1.prewarm_samples()
    }

    /// Every submodel is prewarmed (each with its own length) so that any of them can become active instantly.
    fn prewarm(&mut self, block: usize) {
        for (_, model) in &mut self.submodels {
            model.prewarm(block);
        }
    }

    fn save_state(&mut self) {
        self.active().save_state();
    }

    fn restore_state(&mut self) {
        self.active().restore_state();
    }

    fn receptive_field(&self) -> usize {
        self.submodels[self.active].1.receptive_field()
    }

    fn parameter_count(&self) -> usize {
        self.submodels[self.active].1.parameter_count()
    }

    fn set_slim(&mut self, ratio: f32) {
        let index = self.index_for(ratio);
        if index != self.active {
            self.submodels[index].1.restore_state();
            self.active = index;
        }
    }

    fn is_slimmable(&self) -> bool {
        self.submodels.len() > 1
    }
}
