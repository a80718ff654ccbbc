pub mod ir;
pub mod nam;
