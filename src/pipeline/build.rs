//! `build`: compose → summary → kickstart → install → postprocess → boot-test → upgrade-test,
//! each stage skipped when the hash of its inputs matches its last finished run.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use super::cache::{StageCache, StageRecord};
use super::definition::ImageDefinition;
use super::events::Reporter;
use super::stages;

/// The stages in pipeline order; the names are what `--from`/`--until` take.
pub const STAGES: [&str; 7] = [
    "compose",
    "summary",
    "kickstart",
    "install",
    "postprocess",
    "boot-test",
    "upgrade-test",
];

#[derive(Debug, Clone)]
pub struct BuildOptions {
    pub definition: PathBuf,
    /// Everything goes under here: `build/<name>` by default.
    pub out_dir: Option<PathBuf>,
    pub from: Option<String>,
    pub until: Option<String>,
    pub force: bool,
    pub json: bool,
}

/// What the stages hand each other, and where each output lives.
pub struct BuildContext {
    pub def: ImageDefinition,
    pub out: PathBuf,
    pub logs: PathBuf,
    /// Values recorded by earlier stages (`ref`, `commit`, `version`, ...).
    pub values: BTreeMap<String, String>,
    pub reporter: Reporter,
    /// The accelerator once probed, so install and boot-test probe (and say so) only once.
    pub accel: Option<crate::vm::accel::Accel>,
    /// The `signing:` key, loaded before any stage runs so a wrong key id fails at once.
    pub signer: Option<crate::ostree::gpg::Signer>,
    /// Whether the image in place when the build started passed its boot-test.
    pub image_shipped: bool,
}

impl BuildContext {
    pub fn repo(&self) -> PathBuf {
        self.out.join("repo")
    }
    pub fn kickstart(&self) -> PathBuf {
        self.out.join("ks.cfg")
    }
    pub fn installed_disk(&self) -> PathBuf {
        self.out.join("installed.qcow2")
    }
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
        match (self.values.get("version"), self.values.get("commit")) {
            (Some(v), _) => v.clone(),
            (None, Some(c)) => c.chars().take(10).collect(),
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
    pub fn stage_logs(&self, stage: &str) -> PathBuf {
        self.logs.join(stage)
    }
    pub fn value(&self, key: &str) -> Result<&str> {
        self.values.get(key).map(String::as_str).with_context(|| {
            format!("no `{key}` from an earlier stage (run the build without --from)")
        })
    }
}

/// What a stage produced: files that must exist for a later skip, and values for later stages.
#[derive(Default)]
pub struct StageOutput {
    pub files: Vec<PathBuf>,
    pub values: BTreeMap<String, String>,
}

fn stage_index(name: &str, flag: &str) -> Result<usize> {
    STAGES.iter().position(|s| *s == name).with_context(|| {
        format!(
            "{flag} {name:?}: not a stage; the stages are {}",
            STAGES.join(", ")
        )
    })
}

/// Runs the pipeline; returns the path of the finished image (when postprocess ran or was fresh).
pub fn build(opts: &BuildOptions) -> Result<Option<PathBuf>> {
    let def = ImageDefinition::load(&opts.definition)?;
    let first = opts
        .from
        .as_deref()
        .map(|s| stage_index(s, "--from"))
        .transpose()?
        .unwrap_or(0);
    let last = opts
        .until
        .as_deref()
        .map(|s| stage_index(s, "--until"))
        .transpose()?
        .unwrap_or(STAGES.len() - 1);
    if first > last {
        bail!(
            "--from {} comes after --until {}",
            STAGES[first],
            STAGES[last]
        );
    }

    // The key is needed only when compose, summary or postprocess (CHECKSUM.asc) may run;
    // a build of other stages reuses their signed output and must not fail on a key that
    // has since gone.
    let signs = STAGES[first..=last]
        .iter()
        .any(|s| matches!(*s, "compose" | "summary" | "postprocess"));
    let signer = match &def.signing {
        Some(signing) if signs => Some(signing.signer(&def).with_context(|| {
            format!(
                "signing: loading key {:?} named in {}",
                signing.key,
                opts.definition.display()
            )
        })?),
        _ => None,
    };
    let out = match &opts.out_dir {
        Some(dir) => dir.clone(),
        None => PathBuf::from("build").join(&def.name),
    };
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let out = std::fs::canonicalize(&out)?;
    let logs = out.join("logs");
    std::fs::create_dir_all(&logs).with_context(|| format!("creating {}", logs.display()))?;
    let cache = StageCache::new(&out.join("state"));
    // Checked before postprocess replaces the image: did it pass its boot-test?
    let image_shipped = shipped(&cache, &out.join(format!("{}.qcow2", def.name)));

    let mut ctx = BuildContext {
        def,
        out,
        logs,
        values: BTreeMap::new(),
        reporter: Reporter::new(opts.json),
        accel: None,
        signer,
        image_shipped,
    };
    let mut rows: Vec<(String, &'static str, Duration)> = Vec::new();
    let total = last + 1;
    for (index, stage) in STAGES.iter().enumerate().take(last + 1) {
        // Before --from, a stage is reused if it ever finished: its record hands on its values,
        // and its inputs are not read (the signing key may be absent then).
        let inputs = if index < first {
            String::new()
        } else {
            stages::input_hash(stage, &ctx)
                .with_context(|| format!("{stage}: reading its inputs"))?
        };
        let reuse = if index < first {
            cache.fresh_any(stage)
        } else if opts.force {
            None
        } else {
            cache.fresh(stage, &inputs)
        };
        if let Some(record) = reuse {
            ctx.values.extend(record.values.clone());
            let why = if index < first {
                "before --from"
            } else {
                "inputs unchanged"
            };
            ctx.reporter.stage_skipped(stage, why);
            rows.push((stage.to_string(), "skipped", Duration::ZERO));
            continue;
        }
        if index < first {
            bail!(
                "--from {}: stage {stage} never finished in {}; run the build without --from first",
                STAGES[first],
                ctx.out.display()
            );
        }
        // A stage that starts invalidates its record first: if it is interrupted, the next
        // build sees no record and runs it again instead of trusting a half-made output.
        cache.invalidate(stage)?;
        ctx.reporter.stage_started(stage, index + 1, total);
        let started = Instant::now();
        let output = match stages::run(stage, &mut ctx) {
            Ok(output) => output,
            Err(err) => {
                ctx.reporter.stage_failed(stage, &err);
                return Err(err.context(format!(
                    "stage {stage} failed (logs in {})",
                    ctx.stage_logs(stage).display()
                )));
            }
        };
        let took = started.elapsed();
        ctx.values.extend(output.values.clone());
        cache.store(&StageRecord {
            stage: stage.to_string(),
            inputs,
            outputs: output.files,
            values: output.values,
            finished_unix: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
            seconds: took.as_secs_f64(),
        })?;
        ctx.reporter.stage_finished(stage, took);
        rows.push((stage.to_string(), "ran", took));
    }
    let image = ctx.image();
    let image = image.exists().then_some(image);
    ctx.reporter.summary(&rows, image.as_deref());
    Ok(image)
}

/// An image counts as shipped when boot-test finished after the image was last written.
fn shipped(cache: &StageCache, image: &Path) -> bool {
    let Some(record) = cache.fresh_any("boot-test") else {
        return false;
    };
    let written = std::fs::metadata(image)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok());
    written.is_some_and(|w| record.finished_unix >= w.as_secs())
}

/// The directory that holds `kickstarts/` and `templates/` for a definition path.
pub fn project_root_of(definition: &Path) -> Option<PathBuf> {
    definition
        .ancestors()
        .find(|dir| dir.join("templates").is_dir() && dir.join("kickstarts").is_dir())
        .map(Path::to_path_buf)
}
