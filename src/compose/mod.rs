//! Compose: RPMs to an ostree commit, following rpm-ostree's treefile format and tree conventions.

pub mod cli;
pub mod gpgcheck;
pub mod package;
pub mod resolve;
pub mod sources;
pub mod treefile;
