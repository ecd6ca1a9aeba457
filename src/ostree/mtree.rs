//! An in-memory tree of checksums (libostree's OstreeMutableTree) and writing it bottom-up.

use std::collections::BTreeMap;

use anyhow::{Result, bail};
use rayon::prelude::*;

use super::checksum::Checksum;
use super::objects::{DirTree, validate_filename};
use super::repo::Repo;

/// A directory: its dirmeta checksum, files (content checksums) and subdirectories.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MutableTree {
    /// Checksum of the directory's dirmeta object.
    pub metadata: Checksum,
    /// Regular files and symlinks: name to content checksum.
    pub files: BTreeMap<String, Checksum>,
    /// Subdirectories by name.
    pub dirs: BTreeMap<String, MutableTree>,
}

/// What [`MutableTree::lookup`] finds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TreeEntry<'a> {
    /// A regular file or symlink: its content checksum.
    File(&'a Checksum),
    /// A subdirectory.
    Dir(&'a MutableTree),
}

impl MutableTree {
    /// An empty directory with the given dirmeta.
    pub fn new(dirmeta: Checksum) -> Self {
        MutableTree {
            metadata: dirmeta,
            files: BTreeMap::new(),
            dirs: BTreeMap::new(),
        }
    }

    /// Walks to `path`, creating missing directories with `default_dirmeta`; errors if a file
    /// is in the way.
    pub fn ensure_dir(
        &mut self,
        path: &[&str],
        default_dirmeta: &Checksum,
    ) -> Result<&mut MutableTree> {
        let mut cur = self;
        for (i, name) in path.iter().enumerate() {
            validate_filename(name)?;
            if cur.files.contains_key(*name) {
                bail!(
                    "cannot create directory /{}: a file is in the way",
                    path[..=i].join("/")
                );
            }
            cur = cur
                .dirs
                .entry((*name).to_string())
                .or_insert_with(|| MutableTree::new(*default_dirmeta));
        }
        Ok(cur)
    }

    /// Replaces or adds a file; errors if a directory of that name exists.
    pub fn replace_file(&mut self, name: &str, csum: Checksum) -> Result<()> {
        validate_filename(name)?;
        if self.dirs.contains_key(name) {
            bail!("cannot add file '{name}': a directory of that name exists");
        }
        self.files.insert(name.to_string(), csum);
        Ok(())
    }

    /// Finds a file checksum or a subtree; the empty path is the tree itself.
    pub fn lookup(&self, path: &[&str]) -> Option<TreeEntry<'_>> {
        let Some((last, parents)) = path.split_last() else {
            return Some(TreeEntry::Dir(self));
        };
        let mut cur = self;
        for name in parents {
            cur = cur.dirs.get(*name)?;
        }
        if let Some(c) = cur.files.get(*last) {
            return Some(TreeEntry::File(c));
        }
        cur.dirs.get(*last).map(TreeEntry::Dir)
    }
}

impl Repo {
    /// Writes every dirtree of the tree bottom-up (dirmetas must already be written);
    /// returns (root dirtree, root dirmeta).
    pub fn write_mtree(&self, tree: &MutableTree) -> Result<(Checksum, Checksum)> {
        let subdirs: Vec<(String, Checksum, Checksum)> = tree
            .dirs
            .par_iter()
            .map(|(name, sub)| {
                let (t, m) = self.write_mtree(sub)?;
                Ok((name.clone(), t, m))
            })
            .collect::<Result<_>>()?;
        let dt = DirTree {
            files: tree.files.iter().map(|(n, c)| (n.clone(), *c)).collect(),
            dirs: subdirs,
        };
        Ok((self.write_dirtree(&dt)?, tree.metadata))
    }
}
