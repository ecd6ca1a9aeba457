//! The integration tests: one binary (one link instead of one per file), one module per
//! area, against our binary, our library and the real tools. `support` holds what they
//! share, including the locks that keep apart the tests that used to be apart by being
//! separate processes (VMs, benchmarks).
//!
//! Run one area with its module name as the filter, e.g.
//! `cargo test --release --test it ostree_delta`; benchmarks are ignored tests:
//! `cargo test --release --test it compose_bench -- --ignored --nocapture`.

mod support;

mod boot_test;
mod build;
mod compose;
mod compose_bad;
mod compose_bench;
mod compose_deps;
mod hostile_input;
mod install;
mod install_bench;
mod kickstart;
mod lifecycle_bench;
mod mirror;
mod mirror_bench;
mod ostree_commit_compat;
mod ostree_crash;
mod ostree_delta;
mod ostree_durability;
mod ostree_errors;
mod ostree_prune;
mod ostree_summary;
mod postprocess;
mod trust;
mod upgrade_test;
