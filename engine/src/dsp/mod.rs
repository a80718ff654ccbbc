//! Classic DSP building blocks used by the engine and the pedals.

pub mod biquad;
pub mod convolver;
pub mod denormal;
pub mod limiter;
pub mod meter;
pub mod resample;
pub mod room_ir;
pub mod tuner;
