//! `portcullis scan PATH…` (placeholder, filled in below).
