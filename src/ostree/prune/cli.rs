//! `atomic-factory prune` (like `ostree prune`, plus `--policy FILE`).

use std::path::PathBuf;

use anyhow::{Context as _, Result, bail};
use clap::Args;

use super::policy::Policy;
use super::{PruneOptions, Retain};
use crate::ostree::{Checksum, Repo, datetime};

/// Arguments of `atomic-factory prune`.
#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  atomic-factory prune --repo=repo --refs-only                      # drop what no ref reaches\n  atomic-factory prune --repo=repo --refs-only --depth=5            # keep 5 parents per ref\n  atomic-factory prune --repo=repo --only-branch=demo/x86_64/testing --keep-younger-than='90 days ago'\n  atomic-factory prune --repo=repo --delete-commit=3f1c…e2\n  atomic-factory prune --repo=repo --policy=prune.yaml --dry-run\n\nA policy file gives every ref a `keep:` of all, time:90d, depth:5 or delete:\n  refs:\n    demo/x86_64/stable:  { keep: all }\n    demo/x86_64/testing: { keep: time:90d }\nThe prune refuses to run, before deleting anything, when a ref has no policy or a\npolicy names a ref that does not exist."
)]
pub struct PruneArgs {
    /// Path of the repository
    #[arg(long)]
    pub repo: PathBuf,
    /// Only keep what refs reach (default: what any commit reaches)
    #[arg(long)]
    pub refs_only: bool,
    /// Keep commits younger than DATE: @SECONDS, YYYY-MM-DD[ HH:MM[:SS]] or 'N days ago'
    #[arg(long, value_name = "DATE")]
    pub keep_younger_than: Option<String>,
    /// Only traverse DEPTH parents of each commit (-1: all)
    #[arg(long, value_name = "DEPTH", allow_negative_numbers = true)]
    pub depth: Option<i64>,
    /// Only prune this ref (repeatable); other refs keep their whole history
    #[arg(long, value_name = "REF")]
    pub only_branch: Vec<String>,
    /// Additionally keep DEPTH parents of REF (repeatable)
    #[arg(long, value_name = "REF=DEPTH")]
    pub retain_branch_depth: Vec<String>,
    /// Delete this (unreferenced) commit, leaving a tombstone
    #[arg(long, value_name = "COMMIT")]
    pub delete_commit: Option<String>,
    /// With --delete-commit: only delete the static deltas to that commit
    #[arg(long)]
    pub static_deltas_only: bool,
    /// Only print what would be deleted (ostree's --no-prune)
    #[arg(long, visible_alias = "no-prune")]
    pub dry_run: bool,
    /// Apply a per-ref retention policy (YAML) instead of the options above
    #[arg(long, value_name = "FILE", conflicts_with_all = ["keep_younger_than", "depth", "only_branch", "retain_branch_depth", "delete_commit"])]
    pub policy: Option<PathBuf>,
}

/// `parse_datetime` for the forms `--keep-younger-than` is given in practice.
pub fn parse_date(s: &str, now: u64) -> Result<u64> {
    let t = s.trim();
    if let Some(rest) = t.strip_suffix(" ago") {
        let mut it = rest.split_whitespace();
        let (Some(n), Some(unit), None) = (it.next(), it.next(), it.next()) else {
            bail!("could not parse date '{s}'");
        };
        let n: u64 = n
            .parse()
            .with_context(|| format!("could not parse date '{s}'"))?;
        let secs = match unit.trim_end_matches('s') {
            "second" | "sec" => 1,
            "minute" | "min" => 60,
            "hour" => 3_600,
            "day" => 86_400,
            "week" => 7 * 86_400,
            _ => bail!("could not parse date '{s}': unknown unit '{unit}'"),
        };
        return Ok(now.saturating_sub(n * secs));
    }
    datetime::parse_timestamp(t)
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// `atomic-factory prune`: builds the options (from the flags or a `--policy` file), prunes,
/// and prints what was (or, with `--dry-run`, would be) deleted.
pub fn prune(a: PruneArgs) -> Result<()> {
    let repo = Repo::open(&a.repo)?;
    let mut opts = match &a.policy {
        Some(p) => Policy::load(p)?.to_options(&repo, now())?,
        None => PruneOptions {
            refs_only: a.refs_only,
            depth: a.depth,
            keep_younger_than: a
                .keep_younger_than
                .as_deref()
                .map(|d| parse_date(d, now()).context("--keep-younger-than"))
                .transpose()?,
            only_branches: a.only_branch.clone(),
            delete_commit: a
                .delete_commit
                .as_deref()
                .map(|c| c.parse::<Checksum>().context("--delete-commit"))
                .transpose()?,
            static_deltas_only: a.static_deltas_only,
            ..Default::default()
        },
    };
    for rd in &a.retain_branch_depth {
        let (r, d) = rd
            .rsplit_once('=')
            .with_context(|| format!("Invalid value {rd}, must specify BRANCH=DEPTH"))?;
        let d: i64 = d.parse().with_context(|| format!("Invalid depth {d}"))?;
        opts.retain.push((r.to_string(), Retain::Depth(d)));
    }
    opts.dry_run = a.dry_run;
    let r = super::prune(&repo, &opts)?;
    for n in &r.refs_deleted {
        println!(
            "{} ref {n}",
            if a.dry_run { "Would delete" } else { "Deleted" }
        );
    }
    println!("Total objects: {}", r.objects_total);
    if r.objects_pruned == 0 {
        println!("No unreachable objects");
    } else if a.dry_run {
        println!(
            "Would delete: {} objects, freeing {} bytes",
            r.objects_pruned, r.bytes_freed
        );
    } else {
        println!(
            "Deleted {} objects, {} bytes freed",
            r.objects_pruned, r.bytes_freed
        );
    }
    if !r.deltas_deleted.is_empty() {
        println!("Deleted {} static deltas", r.deltas_deleted.len());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(
            parse_date("2 days ago", 1_000_000).unwrap(),
            1_000_000 - 172_800
        );
        assert_eq!(parse_date("1 hour ago", 10_000).unwrap(), 6_400);
        assert_eq!(parse_date("@123", 0).unwrap(), 123);
        assert!(parse_date("2 fortnights ago", 0).is_err());
    }
}
