//! The chain of pedal slots the engine runs, in order.
//!
//! Every operation here runs on the audio thread: slots are boxed and built (with their buffers) elsewhere, the
//! slot vector's capacity is reserved up front, and whatever leaves the chain is handed back to the caller to be
//! dropped off the audio thread.

use crate::param::Smoothed;
use crate::pedal::{Channels, Pedal};

/// Stable identity of a slot: survives reordering, so the GUI and MIDI mappings can address a pedal wherever it
/// moves. Allocated by the [`crate::Controller`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SlotId(pub u32);

/// Most pedals a chain can hold; the capacity every chain vector reserves.
pub const MAX_SLOTS: usize = 32;

/// Bypass crossfade length. Long enough that switching a pedal with a large level change does not click, short
/// enough to feel instant under the foot.
pub const BYPASS_FADE_MS: f32 = 15.0;

/// Peak level above which a pedal's output is treated as broken (+60 dBFS): no working pedal produces it, and a
/// model that does would blast the player after the limiter's make-up.
pub const RUNAWAY_LEVEL: f32 = 1000.0;

/// One pedal in the chain with the state the chain keeps for it: bypass crossfade, dry/wet mix and the dry copy
/// needed to blend them.
pub struct Slot {
    id: SlotId,
    pedal: Box<dyn Pedal>,
    bypassed: bool,
    /// 0 = bypassed, 1 = engaged; ramps for a click-free switch.
    engage: Smoothed,
    mix: Smoothed,
    dry_left: Vec<f32>,
    dry_right: Vec<f32>,
}

impl std::fmt::Debug for Slot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Slot")
            .field("id", &self.id)
            .field("kind", &self.pedal.info().kind)
            .field("bypassed", &self.bypassed)
            .finish_non_exhaustive()
    }
}

impl Slot {
    /// Prepares the pedal and allocates the slot's buffers. Call off the audio thread.
    pub fn new(id: SlotId, mut pedal: Box<dyn Pedal>, sample_rate: f32, max_block: usize) -> Box<Self> {
        pedal.prepare(sample_rate, max_block);
        let mut engage = Smoothed::new(1.0);
        engage.set_ramp(sample_rate, BYPASS_FADE_MS);
        let mut mix = Smoothed::new(1.0);
        mix.set_ramp(sample_rate, crate::param::ParamSpec::DEFAULT_SMOOTHING_MS);
        Box::new(Self {
            id,
            pedal,
            bypassed: false,
            engage,
            mix,
            dry_left: vec![0.0; max_block],
            dry_right: vec![0.0; max_block],
        })
    }

    /// Sets the initial bypass state and mix without ramps (before the slot plays).
    pub fn with_state(mut self: Box<Self>, bypassed: bool, mix: f32) -> Box<Self> {
        self.bypassed = bypassed;
        self.engage.set_immediate(if bypassed { 0.0 } else { 1.0 });
        self.mix.set_immediate(mix.clamp(0.0, 1.0));
        self
    }

    pub fn id(&self) -> SlotId {
        self.id
    }

    pub fn pedal(&self) -> &dyn Pedal {
        &*self.pedal
    }

    pub fn pedal_mut(&mut self) -> &mut dyn Pedal {
        &mut *self.pedal
    }

    pub fn is_bypassed(&self) -> bool {
        self.bypassed
    }

    pub fn set_bypassed(&mut self, bypassed: bool) {
        if bypassed == self.bypassed {
            return;
        }
        if !bypassed && self.engage.current() == 0.0 {
            // The pedal has not run since it was fully bypassed: its state (envelopes, recurrent memory) is stale
            // and would play back as a burst.
            self.pedal.reset();
        }
        self.bypassed = bypassed;
        self.engage.set_target(if bypassed { 0.0 } else { 1.0 });
    }

    pub fn set_mix(&mut self, mix: f32) {
        let mix = if mix.is_finite() { mix.clamp(0.0, 1.0) } else { 1.0 };
        self.mix.set_target(mix);
    }

    fn is_silent_bypass(&self) -> bool {
        self.bypassed && !self.engage.is_smoothing()
    }

    /// Runs the pedal on the block and blends with the dry signal. Returns false if the pedal produced NaN/Inf or
    /// a runaway level: the block then holds the dry signal and the pedal has been reset.
    fn process(&mut self, left: &mut [f32], right: &mut [f32], stereo: bool) -> bool {
        let n = left.len();
        let dry_left = &mut self.dry_left[..n];
        let dry_right = &mut self.dry_right[..n];
        dry_left.copy_from_slice(left);
        if stereo {
            dry_right.copy_from_slice(right);
        }

        if stereo {
            self.pedal.process_stereo(left, right);
        } else {
            self.pedal.process(left);
        }

        let healthy = is_healthy(left) && (!stereo || is_healthy(right));
        if !healthy {
            // Keep the fades on schedule: a fault must not stretch a bypass or mix ramp.
            self.engage.skip(n);
            self.mix.skip(n);
            self.pedal.reset();
            left.copy_from_slice(dry_left);
            if stereo {
                right.copy_from_slice(dry_right);
            }
            return false;
        }

        let settled = !self.engage.is_smoothing() && !self.mix.is_smoothing();
        if settled && self.engage.current() == 1.0 && self.mix.current() == 1.0 {
            return true; // fully wet: nothing to blend
        }
        for i in 0..n {
            let wet = self.engage.next_value() * self.mix.next_value();
            left[i] = dry_left[i] + (left[i] - dry_left[i]) * wet;
            if stereo {
                right[i] = dry_right[i] + (right[i] - dry_right[i]) * wet;
            }
        }
        true
    }
}

/// True when every sample is finite and below [`RUNAWAY_LEVEL`]. Written as two folds so it vectorises.
#[inline]
fn is_healthy(block: &[f32]) -> bool {
    let mut nan_probe = 0.0f32;
    let mut peak = 0.0f32;
    for &x in block {
        nan_probe += x * 0.0; // NaN for NaN or ±Inf, 0 otherwise
        peak = peak.max(x.abs());
    }
    nan_probe == 0.0 && peak < RUNAWAY_LEVEL
}

/// Slots that misbehaved during one block, reported after it (fixed size: no allocation).
#[derive(Debug, Default)]
pub struct FaultLog {
    slots: [Option<SlotId>; MAX_SLOTS],
    len: usize,
}

impl FaultLog {
    pub fn clear(&mut self) {
        self.len = 0;
    }

    fn push(&mut self, id: SlotId) {
        if self.len < MAX_SLOTS && !self.slots[..self.len].contains(&Some(id)) {
            self.slots[self.len] = Some(id);
            self.len += 1;
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = SlotId> + '_ {
        self.slots[..self.len].iter().flatten().copied()
    }
}

/// An ordered list of slots with capacity for [`MAX_SLOTS`].
pub struct Chain {
    /// Boxed so that slots arrive in and leave the chain as pointers: inserting a prepared slot or removing one
    /// moves no buffers and never allocates or frees on the audio thread.
    #[allow(clippy::vec_box)]
    slots: Vec<Box<Slot>>,
}

impl Default for Chain {
    fn default() -> Self {
        Self::new()
    }
}

impl Chain {
    /// Allocates the slot vector with its full capacity. Call off the audio thread.
    pub fn new() -> Self {
        Self { slots: Vec::with_capacity(MAX_SLOTS) }
    }

    /// Builds a chain from prepared slots (off the audio thread); extra slots beyond [`MAX_SLOTS`] are dropped.
    pub fn from_slots(slots: impl IntoIterator<Item = Box<Slot>>) -> Self {
        let mut chain = Self::new();
        chain.slots.extend(slots.into_iter().take(MAX_SLOTS));
        chain
    }

    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    pub fn is_full(&self) -> bool {
        self.slots.len() >= MAX_SLOTS
    }

    pub fn ids(&self) -> impl Iterator<Item = SlotId> + '_ {
        self.slots.iter().map(|s| s.id)
    }

    pub fn slots(&self) -> impl Iterator<Item = &Slot> {
        self.slots.iter().map(|s| &**s)
    }

    pub fn position(&self, id: SlotId) -> Option<usize> {
        self.slots.iter().position(|s| s.id == id)
    }

    pub fn get_mut(&mut self, id: SlotId) -> Option<&mut Slot> {
        self.slots.iter_mut().find(|s| s.id == id).map(|s| &mut **s)
    }

    /// Inserts at `index` (clamped to the end). A full chain or a duplicate id gives the slot back unchanged.
    pub fn insert(&mut self, index: usize, slot: Box<Slot>) -> Result<(), Box<Slot>> {
        if self.is_full() || self.position(slot.id).is_some() {
            return Err(slot);
        }
        let index = index.min(self.slots.len());
        self.slots.insert(index, slot); // within capacity: no allocation
        Ok(())
    }

    /// Takes a slot out; the caller must drop it off the audio thread.
    pub fn remove(&mut self, id: SlotId) -> Option<Box<Slot>> {
        let index = self.position(id)?;
        Some(self.slots.remove(index))
    }

    /// Puts `slot` where the slot with the same id is; gives back the old one (to drop elsewhere), or the new one if
    /// no slot has its id.
    pub fn replace(&mut self, slot: Box<Slot>) -> Result<Box<Slot>, Box<Slot>> {
        match self.position(slot.id) {
            Some(index) => Ok(std::mem::replace(&mut self.slots[index], slot)),
            None => Err(slot),
        }
    }

    /// Moves a slot so that it ends up at `to` (clamped to the last position). Returns false if the id is unknown.
    pub fn move_slot(&mut self, id: SlotId, to: usize) -> bool {
        let Some(from) = self.position(id) else { return false };
        let to = to.min(self.slots.len() - 1);
        if from < to {
            self.slots[from..=to].rotate_left(1);
        } else {
            self.slots[to..=from].rotate_right(1);
        }
        true
    }

    /// Swaps in another chain's slots, returning this chain's old ones inside `other` for dropping elsewhere.
    pub fn swap(&mut self, other: &mut Chain) {
        std::mem::swap(&mut self.slots, &mut other.slots);
    }

    pub fn reset(&mut self) {
        for slot in &mut self.slots {
            slot.pedal.reset();
        }
    }

    /// Total latency the engaged pedals add, in samples.
    pub fn latency(&self) -> usize {
        self.slots.iter().filter(|s| !s.bypassed).map(|s| s.pedal.latency()).sum()
    }

    /// Runs the block through every slot in order. `stereo` says whether `right` carries a signal on entry; the
    /// return value says whether it does on exit. Misbehaving slots are noted in `faults`.
    pub fn process(&mut self, left: &mut [f32], right: &mut [f32], mut stereo: bool, faults: &mut FaultLog) -> bool {
        debug_assert_eq!(left.len(), right.len());
        for slot in &mut self.slots {
            if slot.is_silent_bypass() {
                continue;
            }
            if !stereo && slot.pedal.info().channels == Channels::MakesStereo {
                right.copy_from_slice(left);
                stereo = true;
            }
            if !slot.process(left, right, stereo) {
                faults.push(slot.id);
            }
        }
        stereo
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::param::ParamId;
    use crate::pedal::PedalInfo;

    struct Scale {
        info: PedalInfo,
        factor: f32,
        resets: usize,
    }

    impl Scale {
        fn boxed(factor: f32) -> Box<dyn Pedal> {
            Box::new(Scale {
                info: PedalInfo {
                    pad: None,
                    kind: "scale".into(),
                    name: "Scale".into(),
                    params: vec![],
                    channels: Channels::Mono,
                    model: None,
                },
                factor,
                resets: 0,
            })
        }
    }

    impl Pedal for Scale {
        fn info(&self) -> &PedalInfo {
            &self.info
        }
        fn prepare(&mut self, _: f32, _: usize) {}
        fn set_param(&mut self, _: ParamId, _: f32) {}
        fn process(&mut self, block: &mut [f32]) {
            block.iter_mut().for_each(|x| *x *= self.factor);
        }
        fn reset(&mut self) {
            self.resets += 1;
        }
    }

    fn slot(id: u32, factor: f32) -> Box<Slot> {
        Slot::new(SlotId(id), Scale::boxed(factor), 48_000.0, 64)
    }

    #[test]
    fn slots_process_in_chain_order_and_moves_change_it() {
        let mut chain = Chain::new();
        chain.insert(0, slot(1, 2.0)).unwrap();
        chain.insert(1, slot(2, 3.0)).unwrap();
        chain.insert(0, slot(3, 0.5)).unwrap();
        assert_eq!(chain.ids().collect::<Vec<_>>(), [SlotId(3), SlotId(1), SlotId(2)]);
        let mut l = [1.0f32; 8];
        let mut r = [0.0f32; 8];
        chain.process(&mut l, &mut r, false, &mut FaultLog::default());
        assert_eq!(l[0], 3.0);
        assert!(chain.move_slot(SlotId(3), 99));
        assert_eq!(chain.ids().collect::<Vec<_>>(), [SlotId(1), SlotId(2), SlotId(3)]);
        assert!(chain.move_slot(SlotId(2), 0));
        assert_eq!(chain.ids().collect::<Vec<_>>(), [SlotId(2), SlotId(1), SlotId(3)]);
        assert!(!chain.move_slot(SlotId(42), 0));
    }

    #[test]
    fn a_full_chain_or_duplicate_id_gives_the_slot_back() {
        let mut chain = Chain::new();
        for i in 0..MAX_SLOTS as u32 {
            chain.insert(usize::MAX, slot(i, 1.0)).unwrap();
        }
        assert!(chain.insert(0, slot(1000, 1.0)).is_err());
        chain.remove(SlotId(0)).unwrap();
        assert!(chain.insert(0, slot(1, 1.0)).is_err(), "duplicate id");
    }

    #[test]
    fn mix_blends_dry_and_wet() {
        let mut chain = Chain::new();
        chain.insert(0, slot(1, 3.0).with_state(false, 0.5)).unwrap();
        let mut l = [1.0f32; 16];
        let mut r = [0.0f32; 16];
        chain.process(&mut l, &mut r, false, &mut FaultLog::default());
        assert!(l.iter().all(|&x| (x - 2.0).abs() < 1e-6), "{l:?}");
    }

    #[test]
    fn a_fully_bypassed_pedal_is_not_run_and_is_reset_when_engaged_again() {
        let mut chain = Chain::new();
        chain.insert(0, slot(1, 3.0).with_state(true, 1.0)).unwrap();
        let mut l = [1.0f32; 16];
        let mut r = [0.0f32; 16];
        chain.process(&mut l, &mut r, false, &mut FaultLog::default());
        assert_eq!(l, [1.0; 16]);
        chain.get_mut(SlotId(1)).unwrap().set_bypassed(false);
        assert_eq!(chain.slots().next().map(|s| s.is_bypassed()), Some(false));
    }
}
