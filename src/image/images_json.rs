//! `images.json` in productmd's format 1.2, the metadata pungi writes for a compose and that
//! Fedora's release tooling reads: one entry per published image, by variant and arch.
//!
//! Each postprocess run adds (or replaces, by path) its image in the `images.json` of the
//! output directory, so running it once per format gives one file listing them all, as
//! `CHECKSUM` does. Type and format names must be ones productmd knows
//! (`productmd.images.IMAGE_TYPE_FORMAT_MAPPING`): its `Images().load()` rejects others.

use std::path::Path;

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

/// The compose an image belongs to; productmd requires an id ending in a date and a known
/// compose type.
#[derive(Debug, Clone)]
pub struct ComposeInfo {
    /// `<name>-<version>-<YYYYMMDD>.<respin>`.
    pub id: String,
    /// `YYYYMMDD`.
    pub date: String,
}

impl ComposeInfo {
    /// The compose of image `name` at `version`, dated by `unix` seconds (UTC).
    pub fn new(name: &str, version: &str, unix: u64) -> ComposeInfo {
        let date = chrono::DateTime::from_timestamp(unix as i64, 0)
            .unwrap_or_default()
            .format("%Y%m%d")
            .to_string();
        ComposeInfo {
            id: format!("{name}-{version}-{date}.0"),
            date,
        }
    }
}

/// One image as productmd describes it.
#[derive(Debug, Clone)]
pub struct ImageEntry {
    /// Relative to the directory of `images.json`.
    pub path: String,
    /// The file's modification time, in seconds since 1970.
    pub mtime: u64,
    /// The file's size in bytes.
    pub size: u64,
    /// The file's SHA-256, hex.
    pub sha256: String,
    /// productmd's image type (`qcow2`, `raw-xz`, `vhd-compressed`, ...).
    pub image_type: &'static str,
    /// productmd's format: the file suffix (`qcow2`, `raw.xz`, `vhdfixed.xz`, ...).
    pub format: &'static str,
    /// The image's architecture (`x86_64`).
    pub arch: String,
    /// The image's name within the variant (Fedora: `Cloud_Base`); we use the image name.
    pub subvariant: String,
    /// productmd's `bootable`: about installer media, so false for disk images.
    pub bootable: bool,
}

impl ImageEntry {
    fn to_json(&self) -> Value {
        json!({
            "arch": self.arch,
            "bootable": self.bootable,
            "checksums": {"sha256": self.sha256},
            "disc_count": 1,
            "disc_number": 1,
            "format": self.format,
            "implant_md5": null,
            "mtime": self.mtime,
            "path": self.path,
            "size": self.size,
            "subvariant": self.subvariant,
            "type": self.image_type,
            "volume_id": null,
        })
    }
}

/// The text of an `images.json`: `existing` (if any) with `entry` added under
/// `variant`/`arch`, replacing an entry with the same path; images sorted by path, as
/// productmd writes them.
pub fn merge(
    existing: Option<&str>,
    variant: &str,
    compose: &ComposeInfo,
    entry: &ImageEntry,
) -> Result<String> {
    let mut doc = match existing {
        Some(text) => {
            let doc: Value = serde_json::from_str(text).context("parsing it as JSON")?;
            if doc["header"]["type"] != "productmd.images" {
                bail!("it is not a productmd images file (header.type is not productmd.images)");
            }
            doc
        }
        None => json!({"payload": {"images": {}}}),
    };
    doc["header"] = json!({"type": "productmd.images", "version": "1.2"});
    doc["payload"]["compose"] = json!({
        "date": compose.date,
        "id": compose.id,
        "respin": 0,
        "type": "production",
    });
    let list = &mut doc["payload"]["images"][variant][entry.arch.as_str()];
    if !list.is_array() {
        *list = json!([]);
    }
    let list = list.as_array_mut().context("images list")?;
    list.retain(|i| i["path"] != entry.path.as_str());
    list.push(entry.to_json());
    list.sort_by(|a, b| a["path"].as_str().cmp(&b["path"].as_str()));
    let mut text = serde_json::to_string_pretty(&doc).context("serialising images.json")?;
    text.push('\n');
    Ok(text)
}

/// Adds `entry` to the `images.json` at `path` (created if missing), atomically.
pub fn update(path: &Path, variant: &str, compose: &ComposeInfo, entry: &ImageEntry) -> Result<()> {
    let existing = match std::fs::read_to_string(path) {
        Ok(t) => Some(t),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let text = merge(existing.as_deref(), variant, compose, entry)
        .with_context(|| format!("updating {}", path.display()))?;
    crate::fsutil::write_atomic(path, text.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(path: &str, image_type: &'static str, format: &'static str) -> ImageEntry {
        ImageEntry {
            path: path.into(),
            mtime: 1,
            size: 2,
            sha256: "ab".into(),
            image_type,
            format,
            arch: "x86_64".into(),
            subvariant: "demo".into(),
            bootable: false,
        }
    }

    #[test]
    fn compose_id_ends_in_the_date() {
        let c = ComposeInfo::new("demo", "41.1", 1_764_547_200);
        assert_eq!(c.date, "20251201");
        assert_eq!(c.id, "demo-41.1-20251201.0");
    }

    #[test]
    fn entries_accumulate_and_replace_by_path() {
        let c = ComposeInfo::new("demo", "1", 0);
        let one = merge(None, "Cloud", &c, &entry("b.qcow2", "qcow2", "qcow2")).unwrap();
        let two = merge(
            Some(&one),
            "Cloud",
            &c,
            &entry("a.raw.xz", "raw-xz", "raw.xz"),
        )
        .unwrap();
        let mut again = entry("b.qcow2", "qcow2", "qcow2");
        again.size = 99;
        let three = merge(Some(&two), "Cloud", &c, &again).unwrap();
        let doc: Value = serde_json::from_str(&three).unwrap();
        let list = doc["payload"]["images"]["Cloud"]["x86_64"]
            .as_array()
            .unwrap();
        let paths: Vec<_> = list.iter().map(|i| i["path"].as_str().unwrap()).collect();
        assert_eq!(paths, ["a.raw.xz", "b.qcow2"]);
        assert_eq!(list[1]["size"], 99);
        assert_eq!(doc["header"]["version"], "1.2");
    }

    #[test]
    fn a_foreign_json_file_is_refused() {
        let c = ComposeInfo::new("demo", "1", 0);
        let err = merge(
            Some("{\"a\": 1}"),
            "Cloud",
            &c,
            &entry("x", "qcow2", "qcow2"),
        );
        assert!(format!("{:#}", err.unwrap_err()).contains("productmd"));
        assert!(merge(Some("nope"), "Cloud", &c, &entry("x", "qcow2", "qcow2")).is_err());
    }
}
