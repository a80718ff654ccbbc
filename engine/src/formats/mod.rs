pub mod nam;
