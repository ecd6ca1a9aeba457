//! `prune` (like `ostree prune`, ostree-repo-prune.c and ot-builtin-prune.c): delete commits
//! beyond a depth or age, unreachable objects, and static deltas whose target commit is gone;
//! plus per-ref retention policies ([`policy`], as fedora-ostree-pruner applies them).
//!
//! Crash safety (a SIGKILL anywhere leaves a repository `ostree fsck` accepts): fsck walks
//! every commit object it finds, so nothing a surviving commit needs may go before that
//! commit. The order is therefore: refs the policy deletes; deltas to doomed commits; the
//! doomed commits (their `.commitmeta` first), made durable by one syncfs; only then the other
//! unreachable objects. Every step removes things nothing left behind refers to.

pub mod cli;
pub mod policy;

use std::collections::{HashMap, HashSet};
use std::fs;
use std::path::Path;

use anyhow::{Context as _, Result, bail, ensure};
use rayon::prelude::*;

use super::checksum::Checksum;
use super::delta::DeltaName;
use super::gvariant_raw;
use super::objects::ObjectType;
use super::repo::{Repo, fsync_dir, keyfile_get, keyfile_set, sync_filesystem, write_file_atomic};
use super::traverse::{self, ObjectName};

/// How deep to keep one ref's history.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Retain {
    /// This many parents (-1: all), like `--depth` / `--retain-branch-depth`.
    Depth(i64),
    /// Commits not older than this timestamp (the ref's own commit always), like
    /// `--keep-younger-than`.
    YoungerThan(u64),
}

/// `ostree prune` options.
#[derive(Clone, Debug, Default)]
pub struct PruneOptions {
    /// Keep only what refs reach (default: what any commit reaches).
    pub refs_only: bool,
    /// Parents to keep per commit (-1: all); ostree's `--depth`.
    pub depth: Option<i64>,
    /// Keep commits not older than this timestamp (seconds since the epoch), the ref's own
    /// commit always; ostree's `--keep-younger-than`.
    pub keep_younger_than: Option<u64>,
    /// Only these refs are pruned; every other ref keeps its whole history.
    pub only_branches: Vec<String>,
    /// Per-ref retention (`--retain-branch-depth`, and policies).
    pub retain: Vec<(String, Retain)>,
    /// Delete this commit (it must not be a ref's commit), leaving a tombstone; ostree's
    /// `--delete-commit`.
    pub delete_commit: Option<Checksum>,
    /// With `delete_commit`: delete only the deltas to it.
    pub static_deltas_only: bool,
    /// Report what would be deleted without deleting.
    pub dry_run: bool,
    /// Refs to delete before pruning (the policy's `delete`).
    pub delete_refs: Vec<String>,
}

/// What a prune did (or would do).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PruneReport {
    /// Loose objects in the repository before pruning.
    pub objects_total: usize,
    /// Objects deleted (or that a dry run would delete).
    pub objects_pruned: usize,
    /// Bytes the deleted objects took on disk (or would free, in a dry run).
    pub bytes_freed: u64,
    /// Commits deleted (or that a dry run would delete).
    pub commits_deleted: Vec<Checksum>,
    /// Static deltas deleted.
    pub deltas_deleted: Vec<DeltaName>,
    /// Refs deleted by the policy (or that a dry run would delete).
    pub refs_deleted: Vec<String>,
}

/// Every loose commit, dirtree, dirmeta and content object (not commitmeta, not tombstones:
/// `list_loose_objects_at` skips them).
pub fn list_objects(repo: &Repo) -> Result<Vec<ObjectName>> {
    let root = repo.path().join("objects");
    let mut out = Vec::new();
    for d in fs::read_dir(&root).with_context(|| format!("reading {}", root.display()))? {
        let d = d?;
        let prefix = d.file_name().to_string_lossy().into_owned();
        if prefix.len() != 2 || !d.file_type()?.is_dir() {
            continue;
        }
        for f in
            fs::read_dir(d.path()).with_context(|| format!("reading {}", d.path().display()))?
        {
            let name = f?.file_name().to_string_lossy().into_owned();
            let Some((rest, ext)) = name.rsplit_once('.') else {
                continue;
            };
            let t = match ext {
                "filez" => ObjectType::File,
                "dirtree" => ObjectType::DirTree,
                "dirmeta" => ObjectType::DirMeta,
                "commit" => ObjectType::Commit,
                _ => continue,
            };
            if rest.len() != 62 {
                continue;
            }
            if let Ok(c) = format!("{prefix}{rest}").parse::<Checksum>() {
                out.push((c, t));
            }
        }
    }
    Ok(out)
}

/// `ostree_repo_traverse_commit` with a depth: the commit, its tree and up to `depth`
/// parents (-1: all); stops at a missing parent. ostree stops at any commit already walked,
/// so with two refs sharing history the result depends on hash order; `seen` keeps the depth
/// each commit was walked with, and a walk stops only where an earlier one went as deep.
fn traverse_depth(
    repo: &Repo,
    commit: &Checksum,
    depth: i64,
    reachable: &mut HashSet<ObjectName>,
    seen: &mut HashMap<Checksum, i64>,
) -> Result<()> {
    let mut cur = *commit;
    let mut depth = depth;
    loop {
        if let Some(&d) = seen.get(&cur)
            && (d == -1 || (depth != -1 && d >= depth))
        {
            return Ok(());
        }
        if !repo.has_object(&cur, ObjectType::Commit) {
            return Ok(());
        }
        seen.insert(cur, depth);
        traverse::reachable_from_commit(repo, &cur, reachable)?;
        if depth == 0 {
            return Ok(());
        }
        match repo.read_commit(&cur)?.parent {
            Some(p) => {
                cur = p;
                if depth > 0 {
                    depth -= 1;
                }
            }
            None => return Ok(()),
        }
    }
}

/// `traverse_keep_younger_than`: the ref's commit always, then parents while not older
/// than `ts`.
fn traverse_younger(
    repo: &Repo,
    commit: &Checksum,
    ts: u64,
    reachable: &mut HashSet<ObjectName>,
) -> Result<()> {
    traverse::reachable_from_commit(repo, commit, reachable)?;
    let mut next = Some(*commit);
    while let Some(c) = next {
        if !repo.has_object(&c, ObjectType::Commit) {
            break;
        }
        let commit = repo.read_commit(&c)?;
        if commit.timestamp < ts {
            break;
        }
        traverse::reachable_from_commit(repo, &c, reachable)?;
        next = commit.parent;
    }
    Ok(())
}

fn storage_size(repo: &Repo, o: &ObjectName) -> u64 {
    fs::symlink_metadata(repo.object_path(&o.0, o.1))
        .map(|m| m.len())
        .unwrap_or(0)
}

/// Removes a file and reports whether it existed.
fn unlink(p: &Path) -> Result<bool> {
    match fs::remove_file(p) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e).with_context(|| format!("removing {}", p.display())),
    }
}

fn tombstones_enabled(repo: &Repo) -> Result<bool> {
    let config = fs::read_to_string(repo.path().join("config"))
        .with_context(|| format!("reading {}/config", repo.path().display()))?;
    Ok(keyfile_get(&config, "core", "tombstone-commits").as_deref() == Some("true"))
}

/// Deletes a commit as `ostree_repo_delete_object` does: its `.commitmeta`, the commit, and
/// a tombstone when `core.tombstone-commits` is set.
fn delete_commit_object(repo: &Repo, c: &Checksum, tombstones: bool) -> Result<()> {
    unlink(&repo.object_path(c, ObjectType::CommitMeta))?;
    let p = repo.object_path(c, ObjectType::Commit);
    ensure!(unlink(&p)?, "commit {c} vanished while pruning");
    let _ = unlink(&repo.path().join(format!("state/{c}.commitpartial")));
    if tombstones {
        // `{'commit': <b"HEX">}`: a bytestring, NUL included.
        let mut hex = c.to_hex().into_bytes();
        hex.push(0);
        let bytes = gvariant_raw::asv(&[("commit".into(), hex, "ay".into())]);
        let hexs = c.to_hex();
        let dest = repo
            .path()
            .join("objects")
            .join(&hexs[..2])
            .join(format!("{}.tombstone-commit", &hexs[2..]));
        write_file_atomic(&dest, &bytes, 0o644)?;
    }
    Ok(())
}

fn set_config_true(repo: &Repo, key: &str) -> Result<()> {
    let p = repo.path().join("config");
    let text = fs::read_to_string(&p).with_context(|| format!("reading {}", p.display()))?;
    if keyfile_get(&text, "core", key).as_deref() != Some("true") {
        write_file_atomic(
            &p,
            keyfile_set(&text, "core", key, "true").as_bytes(),
            0o644,
        )?;
    }
    Ok(())
}

/// Runs a prune. Every check (refs exist, the commit to delete is unreferenced, options
/// make sense) happens before anything is deleted.
pub fn prune(repo: &Repo, opts: &PruneOptions) -> Result<PruneReport> {
    let _lock = repo.lock()?;
    if opts.static_deltas_only && opts.delete_commit.is_none() {
        bail!("--static-deltas-only requires --delete-commit");
    }
    if opts.dry_run && opts.delete_commit.is_some() {
        bail!("cannot combine --delete-commit with --dry-run");
    }
    let mut refs: Vec<(String, Checksum)> = repo.list_refs()?;
    for b in &opts.only_branches {
        ensure!(
            refs.iter().any(|(n, _)| n == b),
            "--only-branch {b}: ref '{b}' not found in {}",
            repo.path().display()
        );
    }
    for (b, _) in &opts.retain {
        ensure!(
            refs.iter().any(|(n, _)| n == b),
            "ref '{b}' not found in {}",
            repo.path().display()
        );
    }
    for b in &opts.delete_refs {
        ensure!(
            refs.iter().any(|(n, _)| n == b),
            "ref '{b}' not found in {}",
            repo.path().display()
        );
    }
    if let Some(dc) = &opts.delete_commit
        && !opts.static_deltas_only
    {
        if let Some((r, _)) = refs.iter().find(|(_, c)| c == dc) {
            bail!("Commit '{dc}' is referenced by '{r}'");
        }
        ensure!(
            repo.has_object(dc, ObjectType::Commit),
            "commit {dc} is not in {}",
            repo.path().display()
        );
    }
    let mut report = PruneReport::default();

    // 1. Refs the policy deletes go first: after that, nothing below needs them.
    if !opts.dry_run {
        for r in &opts.delete_refs {
            unlink(&repo.path().join("refs/heads").join(r))?;
            report.refs_deleted.push(r.clone());
        }
        if !opts.delete_refs.is_empty() {
            fsync_dir(&repo.path().join("refs/heads"))?;
        }
    } else {
        report.refs_deleted = opts.delete_refs.clone();
    }
    refs.retain(|(n, _)| !opts.delete_refs.contains(n));

    // 2. --delete-commit.
    if let Some(dc) = &opts.delete_commit {
        if opts.static_deltas_only {
            for n in repo.list_static_deltas()? {
                if n.to == *dc {
                    repo.delete_static_delta(&n)?;
                    report.deltas_deleted.push(n);
                }
            }
        } else {
            // ot_enable_tombstone_commits, then ostree_repo_delete_object.
            set_config_true(repo, "tombstone-commits")?;
            delete_commit_object(repo, dc, true)?;
            fsync_dir(repo.object_path(dc, ObjectType::Commit).parent().unwrap())?;
            report.commits_deleted.push(*dc);
        }
    }

    // 3. What to keep.
    let objects = list_objects(repo)?;
    let mut reachable: HashSet<ObjectName> = HashSet::new();
    let mut seen: HashMap<Checksum, i64> = HashMap::new();
    let depth = opts.depth.unwrap_or(-1);
    let advanced = !opts.retain.is_empty()
        || opts.keep_younger_than.is_some()
        || !opts.only_branches.is_empty();
    if advanced {
        let mut per_ref: HashMap<&str, Retain> =
            opts.retain.iter().map(|(r, k)| (r.as_str(), *k)).collect();
        if !opts.only_branches.is_empty() {
            for (r, _) in &refs {
                if !opts.only_branches.contains(r) {
                    per_ref.entry(r.as_str()).or_insert(Retain::Depth(-1));
                }
            }
        }
        for (r, c) in &refs {
            match per_ref.get(r.as_str()) {
                Some(Retain::Depth(d)) => traverse_depth(repo, c, *d, &mut reachable, &mut seen)?,
                Some(Retain::YoungerThan(ts)) => traverse_younger(repo, c, *ts, &mut reachable)?,
                None => match opts.keep_younger_than {
                    Some(ts) => traverse_younger(repo, c, ts, &mut reachable)?,
                    None => traverse_depth(repo, c, depth, &mut reachable, &mut seen)?,
                },
            }
        }
    } else if opts.refs_only {
        for (_, c) in &refs {
            traverse_depth(repo, c, depth, &mut reachable, &mut seen)?;
        }
    } else {
        for (c, t) in &objects {
            if *t == ObjectType::Commit {
                traverse_depth(repo, c, depth, &mut reachable, &mut seen)?;
            }
        }
    }

    let doomed: Vec<&ObjectName> = objects.iter().filter(|o| !reachable.contains(o)).collect();
    report.objects_total = objects.len();
    report.objects_pruned = doomed.len();
    report.bytes_freed = doomed.iter().map(|o| storage_size(repo, o)).sum();
    let doomed_commits: Vec<Checksum> = doomed
        .iter()
        .filter(|o| o.1 == ObjectType::Commit)
        .map(|o| o.0)
        .collect();
    if opts.dry_run {
        report.commits_deleted.extend(doomed_commits);
        return Ok(report);
    }

    // 4. Deltas whose target commit will be gone (ostree_repo_prune_static_deltas: a delta
    // from a pruned commit still serves clients that have it, so only the target counts).
    let gone: HashSet<Checksum> = doomed_commits.iter().copied().collect();
    for n in repo.list_static_deltas()? {
        if gone.contains(&n.to) || !repo.has_object(&n.to, ObjectType::Commit) {
            repo.delete_static_delta(&n)?;
            report.deltas_deleted.push(n);
        }
    }

    // 5. Doomed commits, made durable (one syncfs) before any object they point to goes.
    let tombstones = tombstones_enabled(repo)?;
    for c in &doomed_commits {
        delete_commit_object(repo, c, tombstones)?;
        report.commits_deleted.push(*c);
    }
    if !doomed_commits.is_empty() {
        sync_filesystem(repo.path())?;
    }

    // 6. Everything else unreachable. No sync after: an unlink lost to a power cut leaves an
    // unreferenced object, which fsck accepts (ostree's prune syncs nothing at all).
    // unlink spends its time waiting on the filesystem journal, not the CPU, so more
    // threads than cores overlap the waits (4,000 unlinks: 0.85 s on one thread, 0.52 s
    // on eight).
    let others: Vec<&ObjectName> = doomed
        .iter()
        .copied()
        .filter(|o| o.1 != ObjectType::Commit)
        .collect();
    rayon::ThreadPoolBuilder::new()
        .num_threads(8)
        .build()
        .context("starting the unlink threads")?
        .install(|| {
            others
                .par_iter()
                .try_for_each(|o| unlink(&repo.object_path(&o.0, o.1)).map(drop))
        })?;

    // 7. The client-side summary cache of remotes we do not have (`_ostree_repo_prune_tmp`).
    if let Ok(rd) = fs::read_dir(repo.path().join("tmp/cache/summaries")) {
        for e in rd.flatten() {
            let _ = fs::remove_file(e.path());
        }
    }
    Ok(report)
}
