//! Mirrors: find repositories in a master tree, emit metalinks the ostree client accepts, serve them.

pub mod cli;
