//! Reading commits back: `ls`, `show` and `checkout`.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use anyhow::{Context as _, Result, bail};
use sha2::{Digest, Sha256};

use super::checksum::Checksum;
use super::objects::{DirMeta, FileMeta, ObjectType, S_IFLNK, S_IFMT, Xattrs};
use super::repo::Repo;

/// A node found by path inside a commit.
pub enum Node {
    /// A directory: its dirtree and dirmeta checksums.
    Dir {
        /// The directory's dirtree.
        tree: Checksum,
        /// The directory's dirmeta.
        meta: Checksum,
    },
    /// A regular file or symlink: its content checksum.
    File(Checksum),
}

/// Resolves `path` ("/usr/bin") inside the commit `commit`.
pub fn lookup_path(repo: &Repo, commit: &Checksum, path: &str) -> Result<Node> {
    let c = repo.read_commit(commit)?;
    let mut node = Node::Dir {
        tree: c.root_dirtree,
        meta: c.root_dirmeta,
    };
    for part in path.split('/').filter(|p| !p.is_empty()) {
        let Node::Dir { tree, .. } = node else {
            bail!("{path}: not a directory in commit {commit}");
        };
        let dt = repo.read_dirtree(&tree)?;
        node = if let Some((_, c)) = dt.files.iter().find(|(n, _)| n == part) {
            Node::File(*c)
        } else if let Some((_, t, m)) = dt.dirs.iter().find(|(n, _, _)| n == part) {
            Node::Dir { tree: *t, meta: *m }
        } else {
            bail!("{path}: no such file or directory in commit {commit}");
        };
    }
    Ok(node)
}

fn join(parent: &str, name: &str) -> String {
    if parent.ends_with('/') {
        format!("{parent}{name}")
    } else {
        format!("{parent}/{name}")
    }
}

fn ls_line(
    kind: char,
    mode: u32,
    uid: u32,
    gid: u32,
    size: u64,
    path: &str,
    target: Option<&str>,
) -> String {
    let mut s = format!("{kind}0{:04o} {uid} {gid} {size:>6} {path}", mode & 0o7777);
    if let Some(t) = target {
        s.push_str(&format!(" -> {t}"));
    }
    s
}

fn file_line(repo: &Repo, csum: &Checksum, path: &str) -> Result<String> {
    let p = repo.object_path(csum, ObjectType::File);
    let head = fs::read(&p).with_context(|| format!("reading {}", p.display()))?;
    let (meta, target, size, _) = super::objects::parse_filez_header(&head)?;
    if meta.mode & S_IFMT == S_IFLNK {
        Ok(ls_line(
            'l',
            meta.mode,
            meta.uid,
            meta.gid,
            0,
            path,
            Some(&target),
        ))
    } else {
        Ok(ls_line(
            '-', meta.mode, meta.uid, meta.gid, size, path, None,
        ))
    }
}

/// `ostree ls`: the entry at `path`, then (for a directory) its children; all of them below
/// it when `recursive`.
pub fn ls(repo: &Repo, commit: &Checksum, path: &str, recursive: bool) -> Result<Vec<String>> {
    let path = if path.is_empty() { "/" } else { path };
    let mut out = Vec::new();
    match lookup_path(repo, commit, path)? {
        Node::File(c) => out.push(file_line(repo, &c, path)?),
        Node::Dir { tree, meta } => {
            let m = repo.read_dirmeta(&meta)?;
            out.push(ls_line('d', m.mode, m.uid, m.gid, 0, path, None));
            ls_dir(repo, &tree, path, recursive, &mut out)?;
        }
    }
    Ok(out)
}

fn ls_dir(
    repo: &Repo,
    tree: &Checksum,
    path: &str,
    recursive: bool,
    out: &mut Vec<String>,
) -> Result<()> {
    let dt = repo.read_dirtree(tree)?;
    for (name, c) in &dt.files {
        out.push(file_line(repo, c, &join(path, name))?);
    }
    for (name, t, m) in &dt.dirs {
        let p = join(path, name);
        let meta = repo.read_dirmeta(m)?;
        out.push(ls_line('d', meta.mode, meta.uid, meta.gid, 0, &p, None));
        if recursive {
            ls_dir(repo, t, &p, true, out)?;
        }
    }
    Ok(())
}

/// `ostree show`: the commit's header, metadata and message.
pub fn show(repo: &Repo, commit: &Checksum) -> Result<String> {
    let c = repo.read_commit(commit)?;
    let mut h = Sha256::new();
    h.update(fs::read(
        repo.object_path(&c.root_dirtree, ObjectType::DirTree),
    )?);
    h.update(fs::read(
        repo.object_path(&c.root_dirmeta, ObjectType::DirMeta),
    )?);
    let mut s = format!("commit {commit}\n");
    if let Some(p) = c.parent {
        s.push_str(&format!("Parent:  {p}\n"));
    }
    s.push_str(&format!(
        "ContentChecksum:  {}\n",
        hex::encode(h.finalize())
    ));
    let date = super::datetime::format_iso(c.timestamp)
        .replace('T', " ")
        .replace("+00", " +0000");
    s.push_str(&format!("Date:  {date}\n"));
    if let Some(v) = super::gvariant::lookup(&c.metadata, "version").and_then(|v| v.as_str()) {
        s.push_str(&format!("Version: {v}\n"));
    }
    for (k, v) in &c.metadata {
        s.push_str(&format!("Metadata: {k} = {v}\n"));
    }
    s.push_str(&format!("\n    {}\n\n", c.subject));
    for line in c.body.lines() {
        s.push_str(&format!("    {line}\n"));
    }
    Ok(s)
}

/// Sets ownership without following symlinks; EPERM (not root) is ignored like ostree's
/// user-mode checkout.
fn lchown(p: &Path, uid: u32, gid: u32) -> Result<()> {
    if let Err(e) = std::os::unix::fs::lchown(p, Some(uid), Some(gid))
        && e.raw_os_error() != Some(libc::EPERM)
    {
        return Err(e).with_context(|| format!("chown {}", p.display()));
    }
    Ok(())
}

fn set_xattrs(p: &Path, x: &Xattrs) -> Result<()> {
    for (k, v) in x {
        let name = std::ffi::OsStr::from_bytes(k);
        xattr::set(p, name, v).with_context(|| {
            format!(
                "setting xattr {} on {}",
                String::from_utf8_lossy(k),
                p.display()
            )
        })?;
    }
    Ok(())
}

/// `ostree checkout`: recreates the commit's tree at `dest` (which must not exist).
pub fn checkout(repo: &Repo, commit: &Checksum, dest: &Path) -> Result<()> {
    if dest.symlink_metadata().is_ok() {
        bail!("checkout destination {} already exists", dest.display());
    }
    let c = repo.read_commit(commit)?;
    checkout_dir(repo, &c.root_dirtree, &c.root_dirmeta, dest)
}

fn checkout_dir(repo: &Repo, tree: &Checksum, meta: &Checksum, dest: &Path) -> Result<()> {
    let m: DirMeta = repo.read_dirmeta(meta)?;
    fs::create_dir(dest).with_context(|| format!("creating {}", dest.display()))?;
    fs::set_permissions(dest, fs::Permissions::from_mode(0o700))?;
    let dt = repo.read_dirtree(tree)?;
    for (name, c) in &dt.files {
        checkout_file(repo, c, &dest.join(name))?;
    }
    for (name, t, mm) in &dt.dirs {
        checkout_dir(repo, t, mm, &dest.join(name))?;
    }
    lchown(dest, m.uid, m.gid)?;
    set_xattrs(dest, &m.xattrs)?;
    fs::set_permissions(dest, fs::Permissions::from_mode(m.mode & 0o7777))
        .with_context(|| format!("chmod {}", dest.display()))
}

fn checkout_file(repo: &Repo, csum: &Checksum, dest: &Path) -> Result<()> {
    let (meta, target, mut reader): (FileMeta, _, _) = repo.read_file(csum)?;
    if let Some(t) = target {
        std::os::unix::fs::symlink(&t, dest)
            .with_context(|| format!("creating symlink {}", dest.display()))?;
        lchown(dest, meta.uid, meta.gid)?;
        return set_xattrs(dest, &meta.xattrs);
    }
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(dest)
        .with_context(|| format!("creating {}", dest.display()))?;
    std::io::copy(&mut reader, &mut f).with_context(|| format!("writing {}", dest.display()))?;
    f.flush()?;
    drop(f);
    lchown(dest, meta.uid, meta.gid)?;
    set_xattrs(dest, &meta.xattrs)?;
    // chmod after chown: chown clears setuid/setgid bits.
    fs::set_permissions(dest, fs::Permissions::from_mode(meta.mode & 0o7777))
        .with_context(|| format!("chmod {}", dest.display()))
}
