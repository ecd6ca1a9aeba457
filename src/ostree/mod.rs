//! The ostree repository core, written in pure Rust and byte-compatible with libostree 2022.7:
//! repository layout, objects (commit, dirtree, dirmeta, content), refs and the summary.

pub mod cli;
pub mod detached;
pub mod gpg;
pub mod sign;
