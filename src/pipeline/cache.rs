//! The stage cache: each finished stage records the hash of its inputs, so an unchanged
//! stage is skipped on the next build and an interrupted one is redone.
//!
//! A record is written (atomically) only after the stage's outputs are in place, so a
//! record never vouches for a half-written output.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// One finished run of a stage, stored as `<state>/<stage>.json`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct StageRecord {
    /// The stage's name (`boot-test`).
    pub stage: String,
    /// sha256 over everything the stage read (files, settings, previous outputs).
    pub inputs: String,
    /// Files the stage produced; all must still exist for the record to count.
    pub outputs: Vec<PathBuf>,
    /// Values later stages need (e.g. the commit checksum), so a skip can hand them on.
    #[serde(default)]
    pub values: std::collections::BTreeMap<String, String>,
    /// When the stage finished, in Unix seconds.
    pub finished_unix: u64,
    /// How long it ran, in seconds.
    pub seconds: f64,
}

/// The stage records of one build directory.
pub struct StageCache {
    dir: PathBuf,
}

impl StageCache {
    /// The cache kept in `state_dir` (created on the first store).
    pub fn new(state_dir: &Path) -> Self {
        Self {
            dir: state_dir.to_path_buf(),
        }
    }

    fn record_path(&self, stage: &str) -> PathBuf {
        self.dir.join(format!("{stage}.json"))
    }

    /// The record of the stage's last run when its inputs are unchanged and its outputs
    /// are all still there; `None` means the stage must run.
    pub fn fresh(&self, stage: &str, inputs: &str) -> Option<StageRecord> {
        let text = std::fs::read_to_string(self.record_path(stage)).ok()?;
        let record: StageRecord = serde_json::from_str(&text).ok()?;
        (record.inputs == inputs && record.outputs.iter().all(|p| p.exists())).then_some(record)
    }

    /// The last record whatever its inputs, when its outputs still exist.
    pub fn fresh_any(&self, stage: &str) -> Option<StageRecord> {
        let text = std::fs::read_to_string(self.record_path(stage)).ok()?;
        let record: StageRecord = serde_json::from_str(&text).ok()?;
        record.outputs.iter().all(|p| p.exists()).then_some(record)
    }

    /// Writes the record atomically; call it only once the stage's outputs are in place.
    pub fn store(&self, record: &StageRecord) -> Result<()> {
        let text = serde_json::to_vec_pretty(record).context("serializing a stage record")?;
        crate::fsutil::write_atomic(&self.record_path(&record.stage), &text)
    }

    /// Forgets a stage, so it runs next time even if its inputs look the same.
    pub fn invalidate(&self, stage: &str) -> Result<()> {
        match std::fs::remove_file(self.record_path(stage)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(e).with_context(|| format!("removing {}", self.record_path(stage).display()))
            }
            _ => Ok(()),
        }
    }
}

/// Accumulates a stage's inputs into one hash. Each item is length-prefixed and labelled,
/// so ("ab","c") and ("a","bc") hash differently.
pub struct InputHasher(Sha256);

impl Default for InputHasher {
    fn default() -> Self {
        Self::new()
    }
}

impl InputHasher {
    /// A hasher already fed with the tool's version.
    pub fn new() -> Self {
        let mut h = Sha256::new();
        // A new tool version may produce different outputs from the same inputs.
        h.update(concat!("atomic-factory ", env!("CARGO_PKG_VERSION"), "\n"));
        Self(h)
    }

    /// Adds `value` under `label`.
    pub fn value(&mut self, label: &str, value: &[u8]) -> &mut Self {
        self.0.update((label.len() as u64).to_le_bytes());
        self.0.update(label.as_bytes());
        self.0.update((value.len() as u64).to_le_bytes());
        self.0.update(value);
        self
    }

    /// Adds a string under `label`.
    pub fn str(&mut self, label: &str, value: &str) -> &mut Self {
        self.value(label, value.as_bytes())
    }

    /// A file's content; a missing file is an error naming it.
    pub fn file(&mut self, label: &str, path: &Path) -> Result<&mut Self> {
        let digest = crate::fsutil::sha256_file(path)?;
        Ok(self.str(label, &digest))
    }

    /// A big file by identity (path, size, mtime) rather than content: installer media and
    /// disks are hundreds of MiB and are replaced, not edited in place.
    pub fn file_identity(&mut self, label: &str, path: &Path) -> Result<&mut Self> {
        let meta =
            std::fs::metadata(path).with_context(|| format!("reading {}", path.display()))?;
        let mtime = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let id = format!("{}:{}:{}", path.display(), meta.len(), mtime);
        Ok(self.str(label, &id))
    }

    /// The hash so far, hex.
    pub fn finish(&self) -> String {
        hex::encode(self.0.clone().finalize())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_is_fresh_only_with_same_inputs_and_existing_outputs() {
        let dir = tempfile::tempdir().unwrap();
        let cache = StageCache::new(&dir.path().join("state"));
        let out = dir.path().join("out.txt");
        std::fs::write(&out, "x").unwrap();
        let record = StageRecord {
            stage: "kickstart".into(),
            inputs: "abc".into(),
            outputs: vec![out.clone()],
            values: Default::default(),
            finished_unix: 1,
            seconds: 0.1,
        };
        cache.store(&record).unwrap();
        assert_eq!(cache.fresh("kickstart", "abc"), Some(record));
        assert_eq!(cache.fresh("kickstart", "abd"), None);
        std::fs::remove_file(&out).unwrap();
        assert_eq!(cache.fresh("kickstart", "abc"), None);
        cache.invalidate("kickstart").unwrap();
        cache.invalidate("kickstart").unwrap();
    }

    #[test]
    fn hasher_separates_fields() {
        let a = InputHasher::new().str("x", "ab").str("y", "c").finish();
        let b = InputHasher::new().str("x", "a").str("y", "bc").finish();
        assert_ne!(a, b);
    }
}
