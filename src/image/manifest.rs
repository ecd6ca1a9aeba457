//! `manifest.json`: what the published image is and where it came from.

use serde::Serialize;

/// The manifest written next to the image. Provenance fields are omitted when unknown.
#[derive(Debug, Clone, Serialize)]
pub struct Manifest {
    /// The image's file name.
    pub name: String,
    /// The output format's name (`qcow2`, `raw.xz`, ...).
    pub format: String,
    /// Codec of the compressed clusters (qcow2 only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub compression: Option<String>,
    /// The disk's size as the guest sees it, in bytes.
    pub virtual_size: u64,
    /// The published file's size in bytes.
    pub file_size: u64,
    /// The published file's SHA-256, hex.
    pub sha256: String,
    /// The ostree ref the image was installed from.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ostree_ref: Option<String>,
    /// The ostree commit the image was installed from.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ostree_commit: Option<String>,
    /// The OS version.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// SHA-256 of the kickstart used for the install, hex.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kickstart_sha256: Option<String>,
    /// The program that wrote the image (`atomic-factory`).
    pub tool: String,
    /// Its version.
    pub tool_version: String,
}

/// The ostree commit that `manifest.json` beside `image` records for it, when that manifest
/// describes this very file (postprocess writes it for the first format of a build).
pub fn recorded_commit(image: &std::path::Path) -> Option<String> {
    let text = std::fs::read_to_string(image.parent()?.join("manifest.json")).ok()?;
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    let name = image.file_name()?.to_string_lossy();
    if v.get("name")?.as_str()? != name {
        return None;
    }
    v.get("ostree_commit")?.as_str().map(String::from)
}
