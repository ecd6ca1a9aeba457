//! `build`: compose → summary → kickstart → install → postprocess → boot-test → upgrade-test,
//! each stage skipped when the hash of its inputs matches its last finished run.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use super::cache::{StageCache, StageRecord};
use super::context::{BuildContext, StageValues};
use super::definition::ImageDefinition;
use super::events::Reporter;
use super::stage::Stage;
use super::stages;

/// What `build` runs, and where.
#[derive(Debug, Clone)]
pub struct BuildOptions {
    /// The image definition (`image.yaml`).
    pub definition: PathBuf,
    /// Everything goes under here: `build/<name>` by default.
    pub out_dir: Option<PathBuf>,
    /// The first stage to run; the stages before it must have finished in an earlier build.
    pub from: Option<Stage>,
    /// The last stage to run.
    pub until: Option<Stage>,
    /// Run every stage even when its inputs are unchanged.
    pub force: bool,
    /// Report as JSON events on stdout instead of lines on stderr.
    pub json: bool,
}

/// Runs the pipeline; returns the path of the finished image (when postprocess ran or was fresh).
pub fn build(opts: &BuildOptions) -> Result<Option<PathBuf>> {
    let def = ImageDefinition::load(&opts.definition)?;
    let first = opts.from.unwrap_or(Stage::Compose);
    let last = opts.until.unwrap_or(Stage::UpgradeTest);
    if first > last {
        bail!("--from {first} comes after --until {last}");
    }

    // The key is needed only when compose, summary or postprocess (CHECKSUM.asc) may run;
    // a build of other stages reuses their signed output and must not fail on a key that
    // has since gone.
    let signs = [Stage::Compose, Stage::Summary, Stage::Postprocess]
        .iter()
        .any(|s| (first..=last).contains(s));
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
        values: StageValues::default(),
        reporter: Reporter::new(opts.json),
        accel: None,
        signer,
        image_shipped,
    };
    let mut rows: Vec<(String, &'static str, Duration)> = Vec::new();
    let total = Stage::ALL.iter().filter(|s| **s <= last).count();
    for (index, &stage) in Stage::ALL.iter().enumerate().filter(|(_, s)| **s <= last) {
        // Before --from, a stage is reused if it ever finished: its record hands on its values,
        // and its inputs are not read (the signing key may be absent then).
        let inputs = if stage < first {
            String::new()
        } else {
            stages::input_hash(stage, &ctx)
                .with_context(|| format!("{stage}: reading its inputs"))?
        };
        let reuse = if stage < first {
            cache.fresh_any(stage.name())
        } else if opts.force {
            None
        } else {
            cache.fresh(stage.name(), &inputs)
        };
        if let Some(record) = reuse {
            ctx.values.update(StageValues::from_record(&record.values));
            let why = if stage < first {
                "before --from"
            } else {
                "inputs unchanged"
            };
            ctx.reporter.stage_skipped(stage.name(), why);
            rows.push((stage.to_string(), "skipped", Duration::ZERO));
            continue;
        }
        if stage < first {
            bail!(
                "--from {first}: stage {stage} never finished in {}; run the build without --from first",
                ctx.out.display()
            );
        }
        // A stage that starts invalidates its record first: if it is interrupted, the next
        // build sees no record and runs it again instead of trusting a half-made output.
        cache.invalidate(stage.name())?;
        ctx.reporter.stage_started(stage.name(), index + 1, total);
        let started = Instant::now();
        let output = match stages::run(stage, &mut ctx) {
            Ok(output) => output,
            Err(err) => {
                ctx.reporter.stage_failed(stage.name(), &err);
                return Err(err.context(format!(
                    "stage {stage} failed (logs in {})",
                    ctx.stage_logs(stage).display()
                )));
            }
        };
        let took = started.elapsed();
        let values = output.values.to_record();
        ctx.values.update(output.values);
        cache.store(&StageRecord {
            stage: stage.to_string(),
            inputs,
            outputs: output.files,
            values,
            finished_unix: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
            seconds: took.as_secs_f64(),
        })?;
        ctx.reporter.stage_finished(stage.name(), took);
        rows.push((stage.to_string(), "ran", took));
    }
    let image = ctx.image();
    let image = image.exists().then_some(image);
    ctx.reporter.summary(&rows, image.as_deref());
    Ok(image)
}

/// An image counts as shipped when boot-test finished after the image was last written.
fn shipped(cache: &StageCache, image: &Path) -> bool {
    let Some(record) = cache.fresh_any(Stage::BootTest.name()) else {
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
