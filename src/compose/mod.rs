//! Compose: RPMs to an ostree commit, following rpm-ostree's treefile format and tree conventions.

pub mod cli;
pub mod gpgcheck;
