mod checks;
pub mod ir;
pub mod nam;
pub mod reverb;
pub mod s4d;
