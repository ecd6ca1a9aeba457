//! `manifest.json`: what the published image is and where it came from.

use serde::Serialize;

/// The manifest written next to the image. Provenance fields are omitted when unknown.
#[derive(Debug, Clone, Serialize)]
pub struct Manifest {
    pub name: String,
    pub format: String,
    /// Codec of the compressed clusters (qcow2 only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub compression: Option<String>,
    pub virtual_size: u64,
    pub file_size: u64,
    pub sha256: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ostree_ref: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ostree_commit: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kickstart_sha256: Option<String>,
    pub tool: String,
    pub tool_version: String,
}
