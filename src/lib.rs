//! atomic-factory: an image factory for ostree-based ("Atomic") OS images.
//!
//! One module per pipeline stage; a stage takes the previous stage's output
//! (a repository path and ref, a kickstart file, a disk path), never its internals.
//!
//! - [`ostree`]: the repository core: objects, commits, refs, summary (byte-compatible with libostree)
//! - [`compose`]: RPMs to an ostree commit, like `rpm-ostree compose tree`
//! - [`kickstart`]: render kickstarts from templates and lint them
//! - [`vm`]: QEMU, the accelerator probe, QMP, the guest's HTTP server, install and boot-test
//! - [`image`]: qcow2 reading and writing, sparsify, compress, checksums, manifest
//! - [`mirror`]: scan master trees, emit metalinks, serve mirrorlists
//! - [`pipeline`]: the image definition, the stage cache and `build`

pub mod cli;
pub mod command;
pub mod compose;
pub mod compressibility;
pub mod fsutil;
pub mod image;
pub mod kickstart;
pub mod layers;
pub mod mirror;
pub mod ostree;
pub mod pipeline;
pub mod progress;
pub mod runtime;
pub mod size;
pub mod vm;
