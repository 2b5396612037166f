//! portcullis library root.

pub mod scan;
