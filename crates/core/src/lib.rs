//! Baton's pure core.
pub mod expr;
