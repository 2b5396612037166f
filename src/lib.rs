//! portcullis library root.
