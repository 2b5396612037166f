//! portcullis library root.
pub mod metrics;
