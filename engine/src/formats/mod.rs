pub mod ir;
pub mod nam;
pub mod s4d;
