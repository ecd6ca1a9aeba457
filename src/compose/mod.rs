//! Compose: RPMs to an ostree commit, following rpm-ostree's treefile format and tree conventions.
//!
//! - [`treefile`]: YAML/JSON treefile, `include` merging, key validation
//! - [`sources`]: `.repo` files, rpm-md repositories, plain directories of RPMs
//! - [`package`]: the package model, EVR and dependency ranges
//! - [`resolve`]: dependency resolution with resolvo
//! - [`model`]: the tree model from RPM headers (layout rules, conflicts)
//! - [`payload`]: an RPM's compressed cpio payload, entry by entry, with bounds
//! - [`import`]: payloads streamed into the repository
//! - [`conventions`]: rpm-ostree's tree conventions (kernel, /opt, /var, rpmdb, units,
//!   add-files, os-release, remove-files, root layout), one function each
//! - [`commit`]: the tree objects, commit metadata and automatic versions
//! - [`tree`]: [`compose_tree`], the whole compose as its phases
//! - [`gpgcheck`]: `gpgcheck=1` RPM signature verification before import
//!
//! The rpmdb is not a real rpm database: the tree carries the package list in
//! `usr/share/rpm/atomic-factory-pkglist.txt` and the commit's `rpmostree.rpmdb.pkglist`.

pub mod caps;
pub mod cli;
pub mod commit;
pub mod conventions;
pub mod gpgcheck;
pub mod import;
pub mod model;
pub mod package;
pub mod payload;
pub mod resolve;
pub mod rpm_bounds;
pub mod sources;
pub mod tree;
pub mod treefile;

pub use tree::{ComposeOptions, ComposeOutcome, compose_tree};
