//! The seven stages as `build` runs them: what each reads (for the cache) and how each runs,
//! through the public entry points of the stage modules.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use super::cache::InputHasher;
use super::context::{BuildContext, StageOutput, StageValues};
use super::stage::Stage;

/// The hash of everything `stage` reads, for the stage cache.
pub fn input_hash(stage: Stage, ctx: &BuildContext) -> Result<String> {
    let mut h = InputHasher::new();
    h.str("stage", stage.name());
    let commit = ctx.values.commit.map(|c| c.to_hex()).unwrap_or_default();
    match stage {
        Stage::Compose => compose_inputs(ctx, &mut h)?,
        Stage::Summary => {
            h.str("commit", &commit);
            if let Some(signer) = &ctx.signer {
                h.str("signed-by", &signer.signing_fingerprint());
            }
            h.str("deltas", &serde_json::to_string(&ctx.def.compose.deltas)?);
            if let Some(policy) = &ctx.def.compose.prune {
                h.file("prune-policy", &ctx.def.resolve(policy))?;
            }
        }
        Stage::Kickstart => {
            h.str("kickstart", &render_kickstart(ctx)?);
        }
        Stage::Install => {
            h.file("ks", &ctx.kickstart())?;
            h.str("commit", &commit);
            h.str("vm", &serde_json::to_string(&ctx.def.vm)?);
            h.str("installer", &serde_json::to_string(&ctx.def.installer)?);
            if let Some(installer) = &ctx.def.installer {
                for path in [&installer.kernel, &installer.initrd, &installer.iso]
                    .into_iter()
                    .flatten()
                {
                    h.file_identity("media", &ctx.def.resolve(path))?;
                }
            }
        }
        Stage::Postprocess => {
            if ctx.installed_disk().exists() {
                h.file_identity("disk", &ctx.installed_disk())?;
            }
            h.str("postprocess", &serde_json::to_string(&ctx.def.postprocess)?);
            if let Some(signer) = &ctx.signer {
                h.str("signed-by", &signer.signing_fingerprint());
            }
            h.str("commit", &commit);
        }
        Stage::BootTest => {
            if ctx.image().exists() {
                h.file_identity("image", &ctx.image())?;
            }
            h.str("boot_test", &serde_json::to_string(&ctx.def.boot_test)?);
        }
        Stage::UpgradeTest => {
            let previous = ctx.previous_image();
            if previous.exists() {
                h.file_identity("previous", &previous)?;
            }
            h.str("commit", &commit);
            h.str(
                "upgrade_test",
                &serde_json::to_string(&ctx.def.upgrade_test)?,
            );
            if let Some(dir) = &ctx.def.upgrade_test.tests {
                let dir = ctx.def.resolve(dir);
                let mut tests: Vec<PathBuf> = std::fs::read_dir(&dir)
                    .with_context(|| format!("upgrade_test.tests: reading {}", dir.display()))?
                    .filter_map(|e| e.ok().map(|e| e.path()))
                    .collect();
                tests.sort();
                for t in tests.iter().filter(|t| t.is_file()) {
                    h.file(&t.display().to_string(), t)?;
                }
            }
        }
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
    if let Some(signer) = &ctx.signer {
        h.str("signed-by", &signer.signing_fingerprint());
        h.str("public-key", &signer.public_key_armored()?);
        h.str("keypath", &shipped_keypath(ctx));
    }
    Ok(())
}

/// Where the signing key's public half goes in the tree (`signing.keypath`).
fn shipped_keypath(ctx: &BuildContext) -> String {
    ctx.def
        .signing
        .as_ref()
        .map(|s| s.keypath(ctx.def.ostree.remote_name()))
        .unwrap_or_default()
}

fn is_image_definition(path: &Path) -> bool {
    std::fs::read_to_string(path)
        .map(|t| {
            t.lines().any(|l| l.starts_with("kickstart:"))
                && t.lines().any(|l| l.starts_with("name:"))
        })
        .unwrap_or(false)
}

/// Local directories named by `baseurl=` in a `.repo` file (relative to the file).
fn repo_baseurls(repo_file: &Path) -> Result<Vec<PathBuf>> {
    let text = std::fs::read_to_string(repo_file)
        .with_context(|| format!("reading {}", repo_file.display()))?;
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

/// Runs `stage`; its logs go to `logs/<stage>/`.
pub fn run(stage: Stage, ctx: &mut BuildContext) -> Result<StageOutput> {
    std::fs::create_dir_all(ctx.stage_logs(stage))
        .with_context(|| format!("creating {}", ctx.stage_logs(stage).display()))?;
    match stage {
        Stage::Compose => run_compose(ctx),
        Stage::Summary => run_summary(ctx),
        Stage::Kickstart => run_kickstart(ctx),
        Stage::Install => run_install(ctx),
        Stage::Postprocess => run_postprocess(ctx),
        Stage::BootTest => run_boot_test(ctx),
        Stage::UpgradeTest => run_upgrade_test(ctx),
    }
}

fn run_boot_test(ctx: &mut BuildContext) -> Result<StageOutput> {
    let logs = ctx.stage_logs(Stage::BootTest);
    let report = logs.join("report.xml");
    let accel = probed_accel(ctx)?;
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

/// Upgrades the image an earlier build shipped (kept in `previous/`) to this build's commit
/// inside the guest, reboots, rolls back. Nothing to do on a first build.
fn run_upgrade_test(ctx: &mut BuildContext) -> Result<StageOutput> {
    use crate::vm::upgrade_test::{self, Outcome, UpgradeTestConfig};
    let logs = ctx.stage_logs(Stage::UpgradeTest);
    let previous = ctx.previous_image();
    let commit = ctx.commit()?.to_hex();
    let previous_commit = crate::image::manifest::recorded_commit(&previous);
    if !previous.exists() || previous_commit.as_deref() == Some(commit.as_str()) {
        ctx.reporter.info(
            "upgrade-test",
            "no earlier image with another commit: nothing to upgrade from (the next build with a new commit upgrades this one)",
        );
        return Ok(StageOutput::default());
    }
    let accel = probed_accel(ctx)?.into();
    let section = &ctx.def.upgrade_test;
    let report_path = logs.join("report.xml");
    let cfg = UpgradeTestConfig {
        image: previous,
        repo: ctx.repo(),
        ostree_ref: ctx.ostree_ref()?.to_string(),
        to: Some(commit.clone()),
        from: previous_commit.clone(),
        allow_downgrade: false,
        tests_dir: section.tests.as_ref().map(|d| ctx.def.resolve(d)),
        tests_after_upgrade: section.tests_after_upgrade,
        junit: Some(report_path.clone()),
        timeout: std::time::Duration::from_secs(section.timeout),
        inactivity: std::time::Duration::from_secs(section.inactivity_timeout),
        memory_mib: ctx.def.vm.memory.into(),
        cpus: ctx.def.vm.cpus,
        accel,
        qemu: "qemu-system-x86_64".into(),
        log_dir: logs,
    };
    let report = upgrade_test::run(&cfg)?;
    if let Some(step) = report.first_failure() {
        let why = match &step.outcome {
            Outcome::Failed(why) => why.as_str(),
            _ => "",
        };
        bail!(
            "step {why}\n{}",
            step.console
                .iter()
                .rev()
                .take(20)
                .rev()
                .map(|l| format!("  | {l}"))
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
    ctx.reporter.info(
        "upgrade-test",
        &format!(
            "{} upgraded to {commit}, rebooted, rolled back ({:.1} s)",
            report.from_commit.as_deref().unwrap_or("?"),
            report.elapsed.as_secs_f64()
        ),
    );
    Ok(StageOutput {
        files: vec![report_path],
        values: StageValues {
            upgraded_from: report.from_commit,
            ..Default::default()
        },
    })
}

/// Before the new image replaces it: the image in place, when it passed its boot-test and
/// holds another commit, moves to `previous/` with its manifest, for upgrade-test.
fn keep_previous_image(ctx: &BuildContext) -> Result<()> {
    let image = ctx.image();
    let manifest = ctx.out.join("manifest.json");
    let current = ctx.values.commit.map(|c| c.to_hex());
    let Some(old) = crate::image::manifest::recorded_commit(&image) else {
        return Ok(());
    };
    if !ctx.image_shipped || !image.exists() || Some(&old) == current.as_ref() {
        return Ok(());
    }
    let dir = ctx.out.join("previous");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let text = std::fs::read(&manifest)?;
    crate::fsutil::write_atomic(&dir.join("manifest.json"), &text)?;
    std::fs::rename(&image, ctx.previous_image()).with_context(|| {
        format!(
            "moving {} to {}",
            image.display(),
            ctx.previous_image().display()
        )
    })?;
    Ok(())
}

fn run_compose(ctx: &mut BuildContext) -> Result<StageOutput> {
    let repo = ctx.repo();
    if !repo.join("config").exists() {
        crate::ostree::Repo::create(&repo, crate::ostree::RepoMode::ArchiveZ2)?;
    }
    let treefile = ctx.def.resolve(&ctx.def.compose.treefile);
    let mut opts = crate::compose::ComposeOptions {
        progress: ctx.reporter.progress(Stage::Compose),
        ..Default::default()
    };
    if let Some(signer) = &ctx.signer {
        // The installed system verifies updates with this key (the kickstart's %post points
        // its remote's gpgkeypath here), so it travels in the tree.
        let public_key = ctx.out.join("signing-key.pub.asc");
        crate::fsutil::write_atomic(&public_key, signer.public_key_armored()?.as_bytes())?;
        opts.add_files.push((public_key, shipped_keypath(ctx)));
    }
    let outcome = crate::compose::compose_tree(&repo, &treefile, &opts)?;
    if let Some(signer) = &ctx.signer {
        // Also when nothing changed: signing is a no-op for a key that already signed.
        crate::ostree::sign::sign_commit_with(
            &repo,
            &outcome.commit,
            std::slice::from_ref(signer),
        )?;
        ctx.reporter.info(
            "compose",
            &format!(
                "signed {} with key {}",
                outcome.commit,
                signer.signing_fingerprint()
            ),
        );
    }
    ctx.reporter.info(
        "compose",
        &format!(
            "{} {} ({} packages{})",
            outcome.ostree_ref,
            outcome.commit,
            outcome.packages.len(),
            if outcome.changed { "" } else { ", unchanged" }
        ),
    );
    let values = StageValues {
        ostree_ref: Some(outcome.ostree_ref.clone()),
        commit: Some(outcome.commit),
        version: outcome.version.clone(),
        ..Default::default()
    };
    Ok(StageOutput {
        files: vec![repo.join("refs/heads").join(&outcome.ostree_ref)],
        values,
    })
}

/// `compose.deltas`: a delta to the new commit from each configured start, unless it exists.
fn generate_deltas(ctx: &BuildContext, repo: &crate::ostree::Repo) -> Result<()> {
    let Some(to) = ctx.values.commit else {
        return Ok(());
    };
    for source in &ctx.def.compose.deltas {
        let from = match source.generations()? {
            None => None,
            Some(n) => {
                let mut c = to;
                for _ in 0..n {
                    match repo.read_commit(&c)?.parent {
                        Some(p) if repo.has_object(&p, crate::ostree::ObjectType::Commit) => c = p,
                        _ => {
                            ctx.reporter.info(
                                "summary",
                                &format!(
                                    "no delta from {n} commit(s) back: the history is shorter"
                                ),
                            );
                            c = to;
                            break;
                        }
                    }
                }
                if c == to {
                    continue;
                }
                Some(c)
            }
        };
        let mut opts = crate::ostree::delta::GenerateOptions::new(from, to);
        opts.if_not_exists = true;
        let r = crate::ostree::delta::generate(repo, &opts)?;
        let name = crate::ostree::delta::DeltaName { from, to };
        ctx.reporter.info(
            "summary",
            &if r.existed {
                format!("static delta {} exists", name.id())
            } else {
                format!(
                    "static delta {}: {} parts, {} bytes",
                    name.id(),
                    r.parts,
                    r.part_bytes
                )
            },
        );
    }
    Ok(())
}

fn run_summary(ctx: &mut BuildContext) -> Result<StageOutput> {
    let repo = crate::ostree::Repo::open(&ctx.repo())?;
    generate_deltas(ctx, &repo)?;
    if let Some(policy) = &ctx.def.compose.prune {
        let path = ctx.def.resolve(policy);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let opts = crate::ostree::prune::policy::Policy::load(&path)?.to_options(&repo, now)?;
        let r = crate::ostree::prune::prune(&repo, &opts)?;
        ctx.reporter.info(
            "summary",
            &format!(
                "pruned {} objects ({} commits, {} deltas)",
                r.objects_pruned,
                r.commits_deleted.len(),
                r.deltas_deleted.len()
            ),
        );
    }
    repo.update_summary(&[])?;
    let mut files = vec![ctx.repo().join("summary")];
    if let Some(signer) = &ctx.signer {
        crate::ostree::sign::sign_summary_with(&ctx.repo(), std::slice::from_ref(signer))?;
        files.push(ctx.repo().join("summary.sig"));
    }
    Ok(StageOutput {
        files,
        ..Default::default()
    })
}

/// The kickstart points `ostreesetup` at `http://10.0.2.2/repo`; the install stage serves
/// the repository there and fills in its port, so the rendered file does not change with
/// the port of each run (and the stage cache stays valid).
fn render_kickstart(ctx: &BuildContext) -> Result<String> {
    let vars = crate::kickstart::PipelineVars {
        ostree_url: Some(format!(
            "http://{}/repo",
            crate::vm::kickstart_prep::HOST_ALIAS
        )),
        ostree_ref: Some(ctx.ostree_ref()?.to_string()),
        server_address: Some(crate::vm::kickstart_prep::HOST_ALIAS.to_string()),
    };
    crate::kickstart::render(&ctx.def.render_input(), &vars, &[])
}

fn run_kickstart(ctx: &mut BuildContext) -> Result<StageOutput> {
    let text = render_kickstart(ctx)?;
    let path = ctx.kickstart();
    let report = crate::kickstart::lint::lint_within(
        &text,
        &path,
        &ctx.def.kickstart.version,
        &crate::kickstart::render::template_dirs(&ctx.def.render_input()),
    )?;
    for finding in report.warnings() {
        ctx.reporter.info("kickstart", &finding.to_string());
    }
    let errors: Vec<String> = report.errors().map(|f| f.to_string()).collect();
    if !errors.is_empty() {
        bail!(
            "the rendered kickstart of {} does not pass lint:\n  {}",
            ctx.def.resolve(&ctx.def.kickstart.template).display(),
            errors.join("\n  ")
        );
    }
    crate::fsutil::write_atomic(&path, text.as_bytes())?;
    Ok(StageOutput {
        files: vec![path],
        ..Default::default()
    })
}

fn run_install(ctx: &mut BuildContext) -> Result<StageOutput> {
    use crate::pipeline::definition::InstallerMedia;
    use crate::vm::install::{InstallConfig, MediaSource};
    let accel = probed_accel(ctx)?;
    let installer =
        ctx.def.installer.clone().context(
            "the image definition has no `installer:` section (kernel + initrd, or iso)",
        )?;
    let media = match installer.media()? {
        InstallerMedia::KernelInitrd { kernel, initrd } => MediaSource::Kernel {
            kernel: ctx.def.resolve(&kernel),
            initrd: ctx.def.resolve(&initrd),
            stage2: None,
        },
        InstallerMedia::Iso(iso) => MediaSource::Iso(ctx.def.resolve(&iso)),
    };
    let mut cfg = InstallConfig::new(ctx.kickstart(), media, ctx.installed_disk());
    cfg.repo = Some(ctx.repo());
    cfg.ostree_ref = Some(ctx.ostree_ref()?.to_string());
    cfg.disk_size = crate::size::parse_size(&ctx.def.vm.disk_size).context("vm.disk_size")?;
    cfg.memory_mib = ctx.def.vm.memory.into();
    cfg.cpus = ctx.def.vm.cpus;
    cfg.accel = accel.into();
    cfg.progress = ctx.reporter.progress(Stage::Install);
    cfg.timeout = Some(std::time::Duration::from_secs(ctx.def.vm.timeout));
    cfg.inactivity_timeout = Some(std::time::Duration::from_secs(
        ctx.def.vm.inactivity_timeout,
    ));
    if let Some(append) = &installer.append {
        cfg.extra_kargs = append.split_whitespace().map(str::to_string).collect();
    }
    // The install stage keeps its logs beside the disk (`installed.qcow2.logs/`); link them
    // from logs/install so every stage's logs are found in one place, also after a failure.
    let link = ctx.stage_logs(Stage::Install).join("vm");
    let _ = std::fs::remove_file(&link);
    std::os::unix::fs::symlink(cfg.logs_dir(), &link)
        .with_context(|| format!("linking {}", link.display()))?;
    let outcome = crate::vm::install::run(&cfg)?;
    Ok(StageOutput {
        files: vec![outcome.disk],
        ..Default::default()
    })
}

/// The accelerator for this build, probed once (`auto` tries KVM and falls back to TCG
/// with one notice; `kvm` fails clearly when KVM does not work).
fn probed_accel(ctx: &mut BuildContext) -> Result<crate::vm::accel::Accel> {
    use crate::vm::accel::{Accel, AccelChoice};
    if let Some(accel) = ctx.accel {
        return Ok(accel);
    }
    let accel = match ctx.def.vm.accel {
        AccelChoice::Tcg => Accel::Tcg,
        wanted => crate::vm::choose_accel_blocking(wanted)?,
    };
    ctx.accel = Some(accel);
    Ok(accel)
}

fn run_postprocess(ctx: &mut BuildContext) -> Result<StageOutput> {
    use crate::image::{Compression, OutputFormat, PostprocessConfig};
    keep_previous_image(ctx)?;
    // One CHECKSUM and one images.json list every format of this run: start them afresh so
    // a format dropped from the definition is not listed any more.
    let checksum = ctx.out.join("CHECKSUM");
    let images_json = ctx.out.join("images.json");
    let signature = crate::image::checksum::signature_path(&checksum);
    for stale in [&signature, &checksum, &images_json] {
        match std::fs::remove_file(stale) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("removing {}", stale.display())),
        }
    }
    let mut files = Vec::new();
    for (index, &format) in ctx.def.postprocess.formats.iter().enumerate() {
        let output = match format {
            // The qcow2 and raw names stay `<name>.<format>`: boot-test and later stages
            // (and their caches) find the image there.
            OutputFormat::Qcow2 => ctx.image(),
            OutputFormat::Raw | OutputFormat::RawXz => {
                ctx.out
                    .join(format!("{}.{}", ctx.def.name, format.suffix()))
            }
            _ => ctx.published(format),
        };
        let mut cfg = PostprocessConfig::new(ctx.installed_disk(), &output);
        cfg.format = format;
        cfg.checksum = Some(checksum.clone());
        cfg.images_json = Some(images_json.clone());
        cfg.subvariant = Some(ctx.def.name.clone());
        if index > 0 {
            // manifest.json describes the first (main) format; the others get their own.
            cfg.manifest = Some(PathBuf::from(format!("{}.manifest.json", output.display())));
        }
        cfg.compression = if format.has_qcow2() {
            ctx.def.postprocess.compression
        } else {
            Compression::None
        };
        cfg.ostree_ref = ctx.values.ostree_ref.clone();
        cfg.ostree_commit = ctx.values.commit.map(|c| c.to_hex());
        cfg.version = Some(ctx.image_version());
        cfg.kickstart = Some(ctx.kickstart());
        cfg.progress = ctx.reporter.progress(Stage::Postprocess);
        cfg.signer = ctx.signer.clone();
        if format == OutputFormat::Vmdk {
            cfg.vmdk_subformat = ctx.def.postprocess.vmdk_subformat;
        }
        let outcome = crate::image::postprocess(&cfg)?;
        ctx.reporter.info(
            "postprocess",
            &format!(
                "{}: {} bytes ({} virtual), sha256 {}",
                outcome.image.display(),
                outcome.file_size,
                outcome.virtual_size,
                outcome.sha256
            ),
        );
        files.extend([outcome.image, outcome.manifest]);
    }
    if ctx.signer.is_some() {
        files.push(crate::image::checksum::signature_path(&checksum));
    }
    files.extend([checksum, images_json]);
    Ok(StageOutput {
        files,
        ..Default::default()
    })
}
