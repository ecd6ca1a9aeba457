//! Reachability: the objects a commit needs (like `ostree_repo_traverse_commit`), used by
//! static deltas (what B has that A lacks) and prune (what must be kept).

use std::collections::HashSet;

use anyhow::{Context as _, Result};

use super::checksum::Checksum;
use super::objects::ObjectType;
use super::repo::Repo;

/// An object name: checksum and type.
pub type ObjectName = (Checksum, ObjectType);

/// Adds to `out` the commit and every dirtree, dirmeta and content object reachable from its
/// root (not its parents). Subtrees already in `out` are not walked again, so walking many
/// commits of one history costs little more than walking one.
pub fn reachable_from_commit(
    repo: &Repo,
    commit: &Checksum,
    out: &mut HashSet<ObjectName>,
) -> Result<()> {
    let c = repo
        .read_commit(commit)
        .with_context(|| format!("walking commit {commit}"))?;
    out.insert((*commit, ObjectType::Commit));
    out.insert((c.root_dirmeta, ObjectType::DirMeta));
    let mut stack = vec![c.root_dirtree];
    while let Some(tree) = stack.pop() {
        if !out.insert((tree, ObjectType::DirTree)) {
            continue;
        }
        let t = repo.read_dirtree(&tree)?;
        for (_, f) in &t.files {
            out.insert((*f, ObjectType::File));
        }
        for (_, sub, meta) in &t.dirs {
            out.insert((*meta, ObjectType::DirMeta));
            if !out.contains(&(*sub, ObjectType::DirTree)) {
                stack.push(*sub);
            }
        }
    }
    Ok(())
}

/// The objects reachable from one commit.
pub fn reachable(repo: &Repo, commit: &Checksum) -> Result<HashSet<ObjectName>> {
    let mut out = HashSet::new();
    reachable_from_commit(repo, commit, &mut out)?;
    Ok(out)
}
