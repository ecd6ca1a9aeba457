//! The pipeline: the image definition, the stage cache, progress, and `build`.

pub mod build;
pub mod cache;
pub mod cli;
pub mod context;
pub mod definition;
pub mod demo;
pub mod events;
pub mod stage;
pub mod stages;
