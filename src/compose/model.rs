//! The in-memory tree model, built from RPM headers only (before any payload is read):
//! every path after rpm-ostree's layout rules, its owner package, ownership names, mode,
//! size and digest. File conflicts, `../` paths and bad layouts are found here, before
//! a single object is written.

use std::collections::BTreeMap;

use anyhow::{Context, Result, anyhow, bail};
use rpm::{FileFlags, FileType};

use super::caps;
use super::package::PkgInfo;

/// What a tree path holds.
#[derive(Debug, Clone, PartialEq)]
pub enum Node {
    /// A directory.
    Dir,
    /// A regular file from package `pkg`, path `src` in its payload.
    File {
        /// Size in bytes, from the header.
        size: u64,
        /// The header's file digest (hex); files with equal digests are imported once.
        digest: String,
        /// The `security.capability` xattr value, when the file has capabilities.
        caps: Option<Vec<u8>>,
        /// Index of the package in the headers.
        pkg: usize,
        /// The file's path inside the package payload.
        src: String,
    },
    /// A symbolic link.
    Symlink {
        /// Where the link points, as written.
        target: String,
    },
    /// Content we generate (tmpfiles.d, the package list, add-files, os-release edits).
    Generated {
        /// The file's content.
        data: Vec<u8>,
    },
}

/// One path of the tree: its content and ownership.
#[derive(Debug, Clone)]
pub struct Entry {
    /// What the path holds.
    pub node: Node,
    /// `st_mode`: file type and permission bits.
    pub mode: u32,
    /// Owning user, by name (mapped to a uid from the tree's passwd).
    pub user: String,
    /// Owning group, by name (mapped to a gid from the tree's group).
    pub group: String,
    /// Index of the package that ships it (None for what we generate).
    pub owner: Option<usize>,
}

/// Headers of the resolved packages, read once. Built only by `compose_tree` from files
/// whose header sizes `rpm_bounds` checked, so the importer does not check them again.
pub struct Header {
    /// What the package metadata says about it (name, EVR, file path).
    pub info: PkgInfo,
    /// The parsed RPM headers (file list, scriptlets, dependencies).
    pub meta: rpm::PackageMetadata,
}

/// The tree to commit, and what was left out of it.
#[derive(Default)]
pub struct Model {
    /// Tree paths relative to the root (`usr/bin/sh`), sorted so parents come first.
    pub entries: BTreeMap<String, Entry>,
    /// tmpfiles.d lines for /var content, keyed by path.
    pub tmpfiles: BTreeMap<String, String>,
    /// Things left out, for the report.
    pub notes: Vec<String>,
    /// Scriptlets not run, `name-evr.arch: %post (/bin/sh)`.
    pub scriptlets: Vec<String>,
}

/// `st_mode` file types, as ostree stores them in dirmeta and file headers.
pub const S_IFDIR: u32 = 0o040000;
/// `st_mode` type of a regular file.
pub const S_IFREG: u32 = 0o100000;
/// `st_mode` type of a symbolic link.
pub const S_IFLNK: u32 = 0o120000;

impl Entry {
    /// A directory the compose adds, owned by root.
    pub fn dir(mode: u32) -> Entry {
        Entry::ours(Node::Dir, S_IFDIR | mode)
    }

    /// A symlink the compose adds, owned by root.
    pub fn symlink(target: &str) -> Entry {
        let node = Node::Symlink {
            target: target.into(),
        };
        Entry::ours(node, S_IFLNK | 0o777)
    }

    /// A regular file whose content the compose generates, owned by root.
    pub fn generated(data: Vec<u8>, mode: u32) -> Entry {
        Entry::ours(Node::Generated { data }, S_IFREG | mode)
    }

    fn ours(node: Node, mode: u32) -> Entry {
        Entry {
            node,
            mode,
            user: "root".into(),
            group: "root".into(),
            owner: None,
        }
    }
}

/// Where an rpm path lands in the ostree tree.
enum Place {
    Tree(String),
    /// `/var` content (the path under /var, e.g. `var/lib/x`): becomes tmpfiles.d lines.
    Var(String),
    Skip(&'static str),
}

/// Validates an absolute rpm path and maps it with rpm-ostree's rules.
fn place(path: &str) -> Result<Place> {
    let Some(rel) = path.strip_prefix('/') else {
        bail!("path {path:?} is not absolute");
    };
    let comps: Vec<&str> = rel.split('/').collect();
    if comps
        .iter()
        .any(|c| c.is_empty() || *c == "." || *c == "..")
    {
        bail!(
            "path {path:?} has an empty, `.` or `..` component (it would escape or confuse the tree)"
        );
    }
    let rest = comps[1..].join("/");
    let under = |base: &str| {
        if rest.is_empty() {
            base.to_string()
        } else {
            format!("{base}/{rest}")
        }
    };
    Ok(match comps[0] {
        "usr" if comps.get(1) == Some(&"local") => {
            let tail = comps[2..].join("/");
            Place::Var(if tail.is_empty() {
                "var/usrlocal".into()
            } else {
                format!("var/usrlocal/{tail}")
            })
        }
        "usr" => Place::Tree(rel.to_string()),
        "etc" => Place::Tree(under("usr/etc")),
        "boot" => Place::Tree(under("usr/lib/ostree-boot")),
        "var" => Place::Var(rel.to_string()),
        "opt" => Place::Tree(under("usr/lib/opt")),
        // UsrMove: content under the compat dirs goes to /usr; the toplevel entries
        // themselves become our symlinks.
        d @ ("bin" | "sbin" | "lib" | "lib64" | "lib32") => {
            if rest.is_empty() {
                // The entry itself: a package's symlink is kept; a directory is replaced by
                // our symlink in `conventions::toplevel_layout`.
                Place::Tree(d.to_string())
            } else {
                Place::Tree(format!("usr/{d}/{rest}"))
            }
        }
        "home" => Place::Var(under("var/home")),
        "root" => Place::Var(under("var/roothome")),
        "srv" => Place::Var(under("var/srv")),
        "mnt" => Place::Var(under("var/mnt")),
        "dev" | "proc" | "sys" | "run" | "tmp" | "media" | "sysroot" | "ostree" | "afs" => {
            Place::Skip("API filesystem or runtime directory")
        }
        other => bail!(
            "path {path:?} is in toplevel directory /{other}, which has no place in an ostree tree (only /usr, /etc, /var, /boot, /opt and the UsrMove dirs)"
        ),
    })
}

fn scriptlets_of(h: &Header, out: &mut Vec<String>) {
    let m = &h.meta;
    let nevra = h.info.nevra();
    let list: [(&str, Result<rpm::Scriptlet, rpm::Error>); 9] = [
        ("%pretrans", m.get_pre_trans_script()),
        ("%pre", m.get_pre_install_script()),
        ("%post", m.get_post_install_script()),
        ("%preun", m.get_pre_uninstall_script()),
        ("%postun", m.get_post_uninstall_script()),
        ("%posttrans", m.get_post_trans_script()),
        ("%preuntrans", m.get_pre_untrans_script()),
        ("%postuntrans", m.get_post_untrans_script()),
        ("%verifyscript", m.get_verify_script()),
    ];
    for (name, s) in list {
        if let Ok(s) = s {
            let prog = s
                .program
                .map(|p| p.join(" "))
                .unwrap_or_else(|| "/bin/sh".into());
            out.push(format!("{nevra}: {name} ({prog})"));
        }
    }
    for (kind, t) in [
        ("trigger", m.get_triggers()),
        ("file trigger", m.get_file_triggers()),
    ] {
        for t in t.unwrap_or_default() {
            let on: Vec<&str> = t.conditions.iter().map(|c| c.name.as_str()).collect();
            out.push(format!(
                "{nevra}: {kind} on {} ({})",
                on.join(", "),
                t.program.join(" ")
            ));
        }
    }
}

/// Builds the model from all headers. `documentation: false` drops %doc files.
pub fn build(headers: &[Header], documentation: bool) -> Result<Model> {
    let mut m = Model::default();
    for (pi, h) in headers.iter().enumerate() {
        scriptlets_of(h, &mut m.scriptlets);
        let nevra = h.info.nevra();
        let entries = h.meta.get_file_entries().map_err(|e| {
            anyhow!(
                "{nevra} ({}): reading file list: {e}",
                h.info.path.display()
            )
        })?;
        for fe in entries {
            let path = fe.path().to_string_lossy().into_owned();
            let flags = fe.flags();
            if flags.contains(FileFlags::GHOST) {
                continue;
            }
            if !documentation && flags.contains(FileFlags::DOC) {
                continue;
            }
            let ctx = || format!("package {nevra} ({}): file {path}", h.info.path.display());
            let pl = place(&path).with_context(ctx)?;
            let perms = u32::from(fe.permissions()) & 0o7777;
            let (user, group) = (fe.user().to_string(), fe.group().to_string());
            let ftype = fe.file_type();
            match pl {
                Place::Skip(why) => {
                    if ftype != FileType::Dir {
                        m.notes
                            .push(format!("{nevra}: {path} not installed ({why})"));
                    }
                }
                Place::Var(vpath) => {
                    let line = match ftype {
                        FileType::Dir => format!("d /{vpath} {perms:04o} {user} {group} - -"),
                        FileType::SymbolicLink => {
                            format!("L /{vpath} - - - - {}", fe.linkto().unwrap_or_default())
                        }
                        _ => {
                            m.notes.push(format!(
                                "{nevra}: {path} not installed (regular files in /var are not part of an ostree commit)"
                            ));
                            continue;
                        }
                    };
                    m.tmpfiles.entry(vpath).or_insert(line);
                }
                Place::Tree(tpath) => {
                    let (node, mode) = match ftype {
                        FileType::Dir => (Node::Dir, S_IFDIR | perms),
                        FileType::SymbolicLink => {
                            let target = fe.linkto().unwrap_or_default().to_string();
                            if target.is_empty() {
                                return Err(anyhow!("symlink without a target")).with_context(ctx);
                            }
                            (Node::Symlink { target }, S_IFLNK | 0o777)
                        }
                        FileType::Regular => {
                            let caps = match fe.caps() {
                                Some(c) => caps::encode(c).with_context(ctx)?,
                                None => None,
                            };
                            let digest = fe
                                .digest()
                                .map(|d| d.as_hex().to_string())
                                .unwrap_or_default();
                            let node = Node::File {
                                size: fe.size() as u64,
                                digest,
                                caps,
                                pkg: pi,
                                src: path.clone(),
                            };
                            (node, S_IFREG | perms)
                        }
                        other => {
                            m.notes.push(format!(
                                "{nevra}: {path} not installed ({other:?} files cannot be stored in ostree)"
                            ));
                            continue;
                        }
                    };
                    let entry = Entry {
                        node,
                        mode,
                        user,
                        group,
                        owner: Some(pi),
                    };
                    add_entry(&mut m, headers, tpath, entry)?;
                }
            }
        }
    }
    Ok(m)
}

fn add_entry(m: &mut Model, headers: &[Header], tpath: String, e: Entry) -> Result<()> {
    let Some(old) = m.entries.get(&tpath) else {
        m.entries.insert(tpath, e);
        return Ok(());
    };
    let same = match (&old.node, &e.node) {
        (Node::Dir, Node::Dir) => true,
        (Node::Symlink { target: a }, Node::Symlink { target: b }) => a == b,
        (
            Node::File {
                digest: a,
                size: sa,
                ..
            },
            Node::File {
                digest: b,
                size: sb,
                ..
            },
        ) => a == b && sa == sb && old.mode == e.mode && old.user == e.user && old.group == e.group,
        _ => false,
    };
    if same {
        return Ok(());
    }
    let name = |o: Option<usize>| {
        o.map(|i| headers[i].info.nevra())
            .unwrap_or_else(|| "the compose".into())
    };
    bail!(
        "file conflict: /{tpath} is shipped by both {} and {} with different content or metadata; remove one of the packages (or exclude-packages)",
        name(old.owner),
        name(e.owner)
    )
}

/// Parses `/etc/passwd` or `/etc/group` content into name -> id.
pub fn parse_ids(text: &str) -> BTreeMap<String, u32> {
    let mut out = BTreeMap::new();
    for line in text.lines() {
        let f: Vec<&str> = line.split(':').collect();
        if f.len() >= 3
            && let Ok(id) = f[2].parse()
        {
            out.entry(f[0].to_string()).or_insert(id);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(p: &str) -> String {
        match place(p).unwrap() {
            Place::Tree(t) => t,
            Place::Var(v) => format!("VAR {v}"),
            Place::Skip(_) => "SKIP".into(),
        }
    }

    #[test]
    fn layout_rules() {
        assert_eq!(tree("/etc/passwd"), "usr/etc/passwd");
        assert_eq!(tree("/etc"), "usr/etc");
        assert_eq!(tree("/boot/vmlinuz-1"), "usr/lib/ostree-boot/vmlinuz-1");
        assert_eq!(tree("/var/lib/x"), "VAR var/lib/x");
        assert_eq!(tree("/bin/sh"), "usr/bin/sh");
        assert_eq!(tree("/bin"), "bin");
        assert_eq!(tree("/dev"), "SKIP");
        assert_eq!(tree("/usr/local/bin"), "VAR var/usrlocal/bin");
        assert!(place("/usr/../../etc/shadow").is_err());
        assert!(place("/weird/x").is_err());
        assert!(place("relative").is_err());
    }
}
