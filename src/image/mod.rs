//! Disk images: read qcow2/raw, sparsify, write compressed qcow2, checksums and manifest.

pub mod cli;
