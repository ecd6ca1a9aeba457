//! The pipeline: the image definition, the stage cache, progress, and `build`.

pub mod cli;
pub mod definition;
