//! The build context the stages share, and the typed values they hand each other.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{Context, Result};

use super::definition::ImageDefinition;
use super::events::Reporter;
use super::stage::Stage;
use crate::ostree::Checksum;

/// What the stages hand each other, and where each output lives.
pub struct BuildContext {
    /// The image definition, paths resolved.
    pub def: ImageDefinition,
    /// The build directory (absolute): everything the build writes goes under it.
    pub out: PathBuf,
    /// `logs/` of the build directory; each stage logs into its own subdirectory.
    pub logs: PathBuf,
    /// Values recorded by earlier stages.
    pub values: StageValues,
    /// Where stages report progress (human or JSON).
    pub reporter: Reporter,
    /// The accelerator once probed, so install and boot-test probe (and say so) only once.
    pub accel: Option<crate::vm::accel::Accel>,
    /// The `signing:` key, loaded before any stage runs so a wrong key id fails at once.
    pub signer: Option<crate::ostree::gpg::Signer>,
    /// Whether the image in place when the build started passed its boot-test.
    pub image_shipped: bool,
}

impl BuildContext {
    /// The ostree repository compose commits to.
    pub fn repo(&self) -> PathBuf {
        self.out.join("repo")
    }
    /// The rendered kickstart.
    pub fn kickstart(&self) -> PathBuf {
        self.out.join("ks.cfg")
    }
    /// The disk the installer wrote.
    pub fn installed_disk(&self) -> PathBuf {
        self.out.join("installed.qcow2")
    }
    /// The main published image, `<name>.qcow2`.
    pub fn image(&self) -> PathBuf {
        self.out.join(format!("{}.qcow2", self.def.name))
    }
    /// The image an earlier build shipped (passed its boot-test), kept when postprocess
    /// replaces it, so upgrade-test can upgrade it to the new commit.
    pub fn previous_image(&self) -> PathBuf {
        self.out
            .join("previous")
            .join(format!("{}.qcow2", self.def.name))
    }
    /// The version in published file names: the ostree commit's `version` metadata when the
    /// treefile sets one (rpm-ostree's `automatic-version-prefix`), else the first 10 hex
    /// digits of the commit, which also name the content exactly.
    pub fn image_version(&self) -> String {
        match (&self.values.version, &self.values.commit) {
            (Some(v), _) => v.clone(),
            (None, Some(c)) => c.to_hex().chars().take(10).collect(),
            (None, None) => "0".to_owned(),
        }
    }
    /// Where a format other than qcow2/raw is published, named as Fedora names its images:
    /// `<name>-<version>.x86_64.<suffix>`.
    pub fn published(&self, format: crate::image::OutputFormat) -> PathBuf {
        self.out.join(format!(
            "{}-{}.{}.{}",
            self.def.name,
            self.image_version(),
            crate::image::ARCH,
            format.suffix()
        ))
    }
    /// Where `stage` writes its logs.
    pub fn stage_logs(&self, stage: Stage) -> PathBuf {
        self.logs.join(stage.name())
    }
    /// The ref compose built.
    pub fn ostree_ref(&self) -> Result<&str> {
        self.values.ostree_ref.as_deref().context(MISSING_REF)
    }
    /// The commit compose made.
    pub fn commit(&self) -> Result<&Checksum> {
        self.values.commit.as_ref().context(MISSING_COMMIT)
    }
}

/// What a stage produced: files that must exist for a later skip, and values for later stages.
#[derive(Default)]
pub struct StageOutput {
    /// Files that must still exist for a later build to skip the stage.
    pub files: Vec<PathBuf>,
    /// Values for the later stages.
    pub values: StageValues,
}

const MISSING_REF: &str = "no `ref` from an earlier stage (run the build without --from)";
const MISSING_COMMIT: &str = "no `commit` from an earlier stage (run the build without --from)";

/// Values a stage hands to later ones; a stage record keeps them as a string map (the
/// stage cache's file format), converted here and nowhere else.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StageValues {
    /// compose: the ref it built.
    pub ostree_ref: Option<String>,
    /// compose: the commit it made.
    pub commit: Option<Checksum>,
    /// compose: the commit's `version` metadata, when the treefile sets one.
    pub version: Option<String>,
    /// upgrade-test: the commit the previous image was upgraded from.
    pub upgraded_from: Option<String>,
}

impl StageValues {
    /// From a stage record; a value that does not parse counts as absent, so the stage
    /// that needs it says which stage to rerun.
    pub fn from_record(map: &BTreeMap<String, String>) -> Self {
        Self {
            ostree_ref: map.get("ref").cloned(),
            commit: map.get("commit").and_then(|c| c.parse().ok()),
            version: map.get("version").cloned(),
            upgraded_from: map.get("upgraded-from").cloned(),
        }
    }

    /// For a stage record.
    pub fn to_record(&self) -> BTreeMap<String, String> {
        let pairs = [
            ("ref", self.ostree_ref.clone()),
            ("commit", self.commit.map(|c| c.to_hex())),
            ("version", self.version.clone()),
            ("upgraded-from", self.upgraded_from.clone()),
        ];
        pairs
            .into_iter()
            .filter_map(|(k, v)| Some((k.to_string(), v?)))
            .collect()
    }

    /// Takes every value `later` has.
    pub fn update(&mut self, later: StageValues) {
        let StageValues {
            ostree_ref,
            commit,
            version,
            upgraded_from,
        } = later;
        self.ostree_ref = ostree_ref.or(self.ostree_ref.take());
        self.commit = commit.or(self.commit.take());
        self.version = version.or(self.version.take());
        self.upgraded_from = upgraded_from.or(self.upgraded_from.take());
    }
}
