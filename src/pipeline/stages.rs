//! The six stages as `build` runs them: what each reads (for the cache) and how each runs,
//! through the public entry points of the stage modules.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use super::build::{BuildContext, StageOutput};
use super::cache::InputHasher;

pub fn input_hash(stage: &str, ctx: &BuildContext) -> Result<String> {
    let mut h = InputHasher::new();
    h.str("stage", stage);
    match stage {
        "compose" => compose_inputs(ctx, &mut h)?,
        "summary" => {
            h.str("commit", ctx.values.get("commit").map(String::as_str).unwrap_or(""));
        }
        "kickstart" => {
            h.str("kickstart", &render_kickstart(ctx)?);
        }
        "install" => {
            h.file("ks", &ctx.kickstart())?;
            h.str("commit", ctx.values.get("commit").map(String::as_str).unwrap_or(""));
            h.str("vm", &serde_json::to_string(&ctx.def.vm)?);
            h.str("installer", &serde_json::to_string(&ctx.def.installer)?);
            if let Some(installer) = &ctx.def.installer {
                for path in [&installer.kernel, &installer.initrd, &installer.iso].into_iter().flatten() {
                    h.file_identity("media", &ctx.def.resolve(path))?;
                }
            }
        }
        "postprocess" => {
            if ctx.installed_disk().exists() {
                h.file_identity("disk", &ctx.installed_disk())?;
            }
            h.str("postprocess", &serde_json::to_string(&ctx.def.postprocess)?);
            h.str("commit", ctx.values.get("commit").map(String::as_str).unwrap_or(""));
        }
        "boot-test" => {
            if ctx.image().exists() {
                h.file_identity("image", &ctx.image())?;
            }
            h.str("boot_test", &serde_json::to_string(&ctx.def.boot_test)?);
        }
        other => bail!("unknown stage {other}"),
    }
    Ok(h.finish())
}

/// The treefile, everything beside it that a treefile can pull in (includes, `.repo`
/// files, add-files), and the package repositories' metadata. The image definition and
/// the kickstart template live there too but are not compose inputs.
fn compose_inputs(ctx: &BuildContext, h: &mut InputHasher) -> Result<()> {
    let treefile = ctx.def.resolve(&ctx.def.compose.treefile);
    h.file("treefile", &treefile)?;
    let dir = treefile.parent().unwrap_or(Path::new("."));
    let template = ctx.def.resolve(&ctx.def.kickstart.template);
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && *p != treefile && *p != template && !is_image_definition(p))
        .collect();
    entries.sort();
    for path in &entries {
        h.file(&path.display().to_string(), path)?;
        if path.extension().is_some_and(|e| e == "repo") {
            for baseurl in repo_baseurls(path)? {
                package_dir_inputs(&baseurl, h)?;
            }
        }
    }
    if let Ok(epoch) = std::env::var("SOURCE_DATE_EPOCH") {
        h.str("SOURCE_DATE_EPOCH", &epoch);
    }
    Ok(())
}

fn is_image_definition(path: &Path) -> bool {
    std::fs::read_to_string(path)
        .map(|t| t.lines().any(|l| l.starts_with("kickstart:")) && t.lines().any(|l| l.starts_with("name:")))
        .unwrap_or(false)
}

/// Local directories named by `baseurl=` in a `.repo` file (relative to the file).
fn repo_baseurls(repo_file: &Path) -> Result<Vec<PathBuf>> {
    let text = std::fs::read_to_string(repo_file).with_context(|| format!("reading {}", repo_file.display()))?;
    let dir = repo_file.parent().unwrap_or(Path::new("."));
    Ok(text
        .lines()
        .filter_map(|l| l.trim().strip_prefix("baseurl"))
        .filter_map(|l| l.trim_start().strip_prefix('='))
        .map(|url| {
            let url = url.trim();
            let path = url.strip_prefix("file://").unwrap_or(url);
            dir.join(path)
        })
        .collect())
}

/// An rpm-md repository by its repomd.xml (which names every metadata checksum), a plain
/// directory of RPMs by name, size and mtime of each package.
fn package_dir_inputs(dir: &Path, h: &mut InputHasher) -> Result<()> {
    let repomd = dir.join("repodata/repomd.xml");
    if repomd.exists() {
        h.file("repomd", &repomd)?;
        return Ok(());
    }
    let mut rpms: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("reading package directory {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "rpm"))
        .collect();
    rpms.sort();
    for rpm in rpms {
        h.file_identity("rpm", &rpm)?;
    }
    Ok(())
}

pub fn run(stage: &str, ctx: &mut BuildContext) -> Result<StageOutput> {
    std::fs::create_dir_all(ctx.stage_logs(stage))
        .with_context(|| format!("creating {}", ctx.stage_logs(stage).display()))?;
    match stage {
        "compose" => run_compose(ctx),
        "summary" => run_summary(ctx),
        "kickstart" => run_kickstart(ctx),
        "install" => run_install(ctx),
        "postprocess" => run_postprocess(ctx),
        "boot-test" => run_boot_test(ctx),
        other => bail!("unknown stage {other}"),
    }
}

fn run_boot_test(ctx: &mut BuildContext) -> Result<StageOutput> {
    let logs = ctx.stage_logs("boot-test");
    let report = logs.join("report.xml");
    let accel = crate::vm::accel_for_boot_test(match ctx.def.vm.accel {
        super::definition::Accel::Auto => "auto",
        super::definition::Accel::Kvm => "kvm",
        super::definition::Accel::Tcg => "tcg",
    })?;
    let results = crate::vm::boot_test::run(&crate::vm::boot_test::BootTestConfig {
        images: vec![ctx.image()],
        expect: ctx.def.boot_test.expect.clone(),
        timeout: std::time::Duration::from_secs(ctx.def.boot_test.timeout),
        memory_mib: ctx.def.vm.memory,
        cpus: ctx.def.vm.cpus,
        accel,
        jobs: 1,
        log_dir: logs.clone(),
        junit: Some(report.clone()),
    })?;
    let result = &results[0];
    if !result.passed() {
        bail!(
            "{}\n{}",
            result.describe(),
            result
                .console_tail
                .iter()
                .map(|l| format!("  | {l}"))
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
    Ok(StageOutput {
        files: vec![report],
        ..Default::default()
    })
}
