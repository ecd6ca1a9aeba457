//! rpm-ostree's tree conventions, applied to the tree model once the payloads are imported:
//! where the kernel lives, /opt and /var through tmpfiles.d, the rpmdb location, the
//! treefile's units, add-files, mutate-os-release and remove-files, and the root layout.
//!
//! Each convention is one function over the [`Model`]; [`apply`] runs them in the order the
//! commit depends on (tmpfiles.d lines are all collected before the file is written, and
//! remove-files sees what add-files added). The path mapping of package files (/etc to
//! /usr/etc, /boot to usr/lib/ostree-boot, /var to tmpfiles.d lines) happens earlier, in
//! `model::place`, before any payload is read.

use std::path::Path;

use anyhow::{Context, Result, anyhow, bail};

use super::import::Imported;
use super::model::{Entry, Model, Node};
use super::treefile::Treefile;
use crate::ostree::Repo;

/// The directory kernel packages' /boot content lands in (`model::place`).
const OSTREE_BOOT: &str = "usr/lib/ostree-boot";

/// Applies every convention to the composed model, in order. `nevras` names the packages
/// by index (the model's owners); `version` is the commit's version, if it has one.
/// Returns the kernel version when the tree has a kernel.
pub fn apply(
    tf: &Treefile,
    repo: &Repo,
    nevras: &[String],
    model: &mut Model,
    imported: &mut Imported,
    version: Option<&str>,
) -> Result<Option<String>> {
    copy_boot_kernel_to_modules(model, imported);
    let kver = kernel_version(model)?;
    link_opt_from_var(model);
    package_list_as_rpmdb(model, nevras);
    default_var_dirs(model);
    write_var_tmpfiles(model);
    enable_units(model, &tf.units, tf.default_target.as_deref())?;
    add_files(model, &tf.dir, &tf.add_files)?;
    mutate_os_release(
        model,
        repo,
        imported,
        tf.mutate_os_release.as_deref(),
        version,
    )?;
    remove_files(model, &tf.remove_files);
    toplevel_layout(model, nevras, tf.tmp_is_dir == Some(true))?;
    Ok(kver)
}

/// ostree's deploy (`get_kernel_from_tree`) and rpm-ostree (`rpmostree_finalize_kernel`)
/// take the kernel from usr/lib/modules/$kver/vmlinuz with its initramfs.img beside it.
/// A kernel package that ships only /boot/vmlinuz-$kver (and maybe initramfs-$kver.img)
/// has it copied there; a tree that already has the modules-dir kernel is left as it is.
pub fn copy_boot_kernel_to_modules(model: &mut Model, imported: &mut Imported) {
    let e = &mut model.entries;
    let vmlinuz_prefix = format!("{OSTREE_BOOT}/vmlinuz-");
    let boot_kernels: Vec<(String, String)> = e
        .keys()
        .filter_map(|k| {
            k.strip_prefix(&vmlinuz_prefix)
                .map(|v| (k.clone(), v.to_string()))
        })
        .collect();
    for (path, kver) in boot_kernels {
        let dest = format!("usr/lib/modules/{kver}/vmlinuz");
        if e.contains_key(&dest) {
            continue;
        }
        let initrd = format!("{OSTREE_BOOT}/initramfs-{kver}.img");
        let idest = format!("usr/lib/modules/{kver}/initramfs.img");
        for (from, to) in [(path, dest), (initrd, idest)] {
            if let (Some(ent), Some(c)) = (e.get(&from).cloned(), imported.get(&from).copied()) {
                e.insert(to.clone(), ent);
                imported.insert(to, c);
            }
        }
    }
}

/// A commit boots one kernel: ostree deploys the single usr/lib/modules/$kver/vmlinuz and
/// records its version as `ostree.linux`. None for a tree without a kernel (which is then
/// not marked bootable); several kernels are an error naming them.
pub fn kernel_version(model: &Model) -> Result<Option<String>> {
    let kvers: Vec<String> = model
        .entries
        .keys()
        .filter_map(|k| {
            k.strip_prefix("usr/lib/modules/")?
                .strip_suffix("/vmlinuz")
                .map(str::to_string)
        })
        .filter(|v| !v.contains('/'))
        .collect();
    match kvers.len() {
        0 => Ok(None),
        1 => Ok(Some(kvers[0].clone())),
        _ => bail!(
            "the tree has several kernels ({}); ostree needs exactly one usr/lib/modules/*/vmlinuz",
            kvers.join(", ")
        ),
    }
}

/// /opt is a symlink to the machine's mutable /var/opt, so package content under /opt is
/// committed in usr/lib/opt (`model::place`) and each top-level entry is linked back at
/// boot with a tmpfiles.d line /var/opt/NAME -> /usr/lib/opt/NAME, as rpm-ostree's importer
/// does for /opt packages (coreos/rpm-ostree#233).
pub fn link_opt_from_var(model: &mut Model) {
    let opt_tops: Vec<String> = model
        .entries
        .keys()
        .filter_map(|k| k.strip_prefix("usr/lib/opt/"))
        .filter(|k| !k.contains('/'))
        .map(str::to_string)
        .collect();
    for t in opt_tops {
        model.tmpfiles.insert(
            format!("var/opt/{t}"),
            format!("L /var/opt/{t} - - - - /usr/lib/opt/{t}"),
        );
    }
}

/// rpm-ostree keeps the rpmdb in usr/share/rpm (`RPMOSTREE_RPMDB_LOCATION`), reached as
/// usr/lib/sysimage/rpm and, through tmpfiles.d, as /var/lib/rpm (`compose_postprocess_rpmdb`).
/// We write no real rpm database (see the `compose` module docs): the package list, one
/// NEVRA a line in the order of `nevras`, stands in for it at that location.
pub fn package_list_as_rpmdb(model: &mut Model, nevras: &[String]) {
    let e = &mut model.entries;
    let mut list = String::new();
    for nevra in nevras {
        list.push_str(nevra);
        list.push('\n');
    }
    e.insert("usr/share/rpm".into(), Entry::dir(0o755));
    e.insert(
        "usr/share/rpm/atomic-factory-pkglist.txt".into(),
        Entry::generated(list.into_bytes(), 0o644),
    );
    e.entry("usr/lib/sysimage".into())
        .or_insert_with(|| Entry::dir(0o755));
    e.insert(
        "usr/lib/sysimage/rpm".into(),
        Entry::symlink("../../share/rpm"),
    );
    model.tmpfiles.insert(
        "var/lib/rpm".into(),
        "L /var/lib/rpm - - - - ../../usr/share/rpm".into(),
    );
}

/// The /var directories that the root layout's symlinks point into (/home, /root, /opt,
/// /srv, /mnt, /usr/local), created at boot by tmpfiles.d as rpm-ostree's own
/// rpm-ostree-0-integration.conf creates them; /root's is private (0700). A package's own
/// line for one of these paths wins.
pub fn default_var_dirs(model: &mut Model) {
    for (d, m) in [
        ("var/home", 0o755),
        ("var/roothome", 0o700),
        ("var/opt", 0o755),
        ("var/srv", 0o755),
        ("var/mnt", 0o755),
        ("var/usrlocal", 0o755),
    ] {
        model
            .tmpfiles
            .entry(d.into())
            .or_insert_with(|| format!("d /{d} {m:04o} root root - -"));
    }
}

/// ostree deploys /var once and then leaves it to the machine, so a commit carries no /var:
/// rpm-ostree turns the packages' /var directories and symlinks (and its own) into
/// tmpfiles.d lines in usr/lib/tmpfiles.d/rpm-ostree-1-autovar.conf
/// (`convert_var_to_tmpfiles_d`). Lines are sorted by path, so parents come first.
pub fn write_var_tmpfiles(model: &mut Model) {
    let mut lines: Vec<&String> = model.tmpfiles.values().collect();
    lines.sort_by_key(|l| l.split_whitespace().nth(1).map(str::to_string));
    let mut conf =
        String::from("# Generated by atomic-factory compose from the packages' /var content\n");
    for l in lines {
        conf.push_str(l);
        conf.push('\n');
    }
    let e = &mut model.entries;
    e.entry("usr/lib/tmpfiles.d".into())
        .or_insert_with(|| Entry::dir(0o755));
    e.insert(
        "usr/lib/tmpfiles.d/rpm-ostree-1-autovar.conf".into(),
        Entry::generated(conf.into_bytes(), 0o644),
    );
}

/// Treefile `units` and `default-target` (`compose_postprocess_units`,
/// `compose_postprocess_default_target`): each unit is enabled with a symlink in
/// /etc/systemd/system/multi-user.target.wants, and the default target becomes
/// /etc/systemd/system/default.target. A unit the tree does not ship is an error, where
/// rpm-ostree would leave a dangling link.
pub fn enable_units(
    model: &mut Model,
    units: &[String],
    default_target: Option<&str>,
) -> Result<()> {
    let e = &mut model.entries;
    let sysd = "usr/etc/systemd/system";
    for u in units {
        if !e.contains_key(&format!("usr/lib/systemd/system/{u}")) {
            bail!(
                "treefile units: {u} is not in the tree (no usr/lib/systemd/system/{u}); check the name or add its package"
            );
        }
        e.insert(
            format!("{sysd}/multi-user.target.wants/{u}"),
            Entry::symlink(&format!("/usr/lib/systemd/system/{u}")),
        );
    }
    if let Some(t) = default_target {
        e.insert(
            format!("{sysd}/default.target"),
            Entry::symlink(&format!("/usr/lib/systemd/system/{t}")),
        );
    }
    Ok(())
}

/// Treefile `add-files`: [source relative to `dir`, absolute destination], with the
/// source's content and permission bits (`compose_postprocess_add_files`). A destination in
/// /etc lands in /usr/etc like every /etc path; other destinations must be under /usr,
/// since the rest of the root belongs to the layout and /var to the machine.
pub fn add_files(model: &mut Model, dir: &Path, files: &[(String, String)]) -> Result<()> {
    for (src, dest) in files {
        let (data, mode) = read_add_file(dir, src)?;
        let tdest = match dest.strip_prefix("/etc/") {
            Some(rest) => format!("usr/etc/{rest}"),
            None => dest.trim_start_matches('/').to_string(),
        };
        if tdest.is_empty()
            || tdest
                .split('/')
                .any(|c| c.is_empty() || c == "." || c == "..")
            || !tdest.starts_with("usr/")
        {
            bail!(
                "add-files: destination {dest:?} must be an absolute path under /usr or /etc without `..`"
            );
        }
        model.entries.insert(tdest, Entry::generated(data, mode));
    }
    Ok(())
}

/// An add-files source as the tree gets it: its bytes and permission bits. The input hash
/// reads sources through this too, so it covers exactly what is committed.
pub fn read_add_file(dir: &Path, src: &str) -> Result<(Vec<u8>, u32)> {
    use std::os::unix::fs::PermissionsExt;
    let p = dir.join(src);
    let data = std::fs::read(&p).with_context(|| format!("add-files: reading {}", p.display()))?;
    let mode = std::fs::metadata(&p)
        .with_context(|| format!("reading {}", p.display()))?
        .permissions()
        .mode()
        & 0o7777;
    Ok((data, mode))
}

/// Treefile `mutate-os-release` (`compose_postprocess_mutate_os_release`): when the commit
/// has a version, the base version `base` in os-release's VERSION= and PRETTY_NAME= lines is
/// replaced by it and OSTREE_VERSION= is appended, so the booted system names its commit.
/// The file is usr/lib/os-release, else usr/etc/os-release; its mode is kept.
pub fn mutate_os_release(
    model: &mut Model,
    repo: &Repo,
    imported: &Imported,
    base: Option<&str>,
    version: Option<&str>,
) -> Result<()> {
    let (Some(base), Some(v)) = (base, version) else {
        return Ok(());
    };
    let e = &mut model.entries;
    let path = ["usr/lib/os-release", "usr/etc/os-release"]
        .into_iter()
        .find(|p| matches!(e.get(*p).map(|x| &x.node), Some(Node::File { .. })))
        .ok_or_else(|| anyhow!("mutate-os-release: the tree has no usr/lib/os-release"))?;
    let csum = imported[path];
    let (_, _, mut r) = repo.read_file(&csum)?;
    let mut text = String::new();
    std::io::Read::read_to_string(&mut r, &mut text).context("reading os-release")?;
    let out = os_release_with_version(&text, base, v);
    let mode = e[path].mode & 0o7777;
    e.insert(path.to_string(), Entry::generated(out.into_bytes(), mode));
    Ok(())
}

/// os-release `text` with `base` replaced by `version` in VERSION= and PRETTY_NAME=, and
/// OSTREE_VERSION= appended.
fn os_release_with_version(text: &str, base: &str, version: &str) -> String {
    let mut out = String::new();
    for line in text.lines() {
        if line.starts_with("VERSION=") || line.starts_with("PRETTY_NAME=") {
            out.push_str(&line.replace(base, version));
        } else {
            out.push_str(line);
        }
        out.push('\n');
    }
    out.push_str(&format!("OSTREE_VERSION='{version}'\n"));
    out
}

/// Treefile `remove-files` (`compose_postprocess_remove_files`): paths relative to the root
/// (`usr/share/info`, rpm-ostree's form; a leading or trailing `/` is tolerated), each
/// removed with everything under it; `etc/` means usr/etc. A path that is not in the tree
/// is noted for the report, not an error.
pub fn remove_files(model: &mut Model, paths: &[String]) {
    let e = &mut model.entries;
    for r in paths {
        let key = r.trim_start_matches('/').trim_end_matches('/');
        let key = key
            .strip_prefix("etc/")
            .map(|x| format!("usr/etc/{x}"))
            .unwrap_or_else(|| key.to_string());
        let prefix = format!("{key}/");
        let before = e.len();
        e.retain(|k, _| k != &key && !k.starts_with(&prefix));
        if e.len() == before {
            model
                .notes
                .push(format!("remove-files: {r} was not in the tree"));
        }
    }
}

/// The UsrMove directories: a package may ship them as its own symlinks into /usr (kept),
/// or as directories whose content `model::place` already moved to /usr (replaced).
const USRMOVE_DIRS: [&str; 5] = ["bin", "sbin", "lib", "lib64", "lib32"];

/// rpm-ostree's root layout (`compose_init_rootfs`): the API and mount-point directories,
/// symlinks from the FHS toplevel into /var (home, root, srv, mnt, opt, usr/local) and
/// /sysroot (ostree, tmp), /media into /run, and the UsrMove links bin, sbin, lib (and
/// lib64 when the tree has usr/lib64) into /usr. With `tmp_is_dir` (treefile `tmp-is-dir`)
/// /tmp is a sticky directory instead of a link to sysroot/tmp. A package that ships
/// something where the layout puts a link is an error naming it (`nevras` by package
/// index), except the UsrMove directories.
pub fn toplevel_layout(model: &mut Model, nevras: &[String], tmp_is_dir: bool) -> Result<()> {
    let e = &mut model.entries;
    for d in [
        "dev", "proc", "run", "sys", "var", "sysroot", "boot", "usr", "usr/etc",
    ] {
        e.entry(d.into()).or_insert_with(|| Entry::dir(0o755));
    }
    let mut links = vec![
        ("home", "var/home"),
        ("root", "var/roothome"),
        ("ostree", "sysroot/ostree"),
        ("srv", "var/srv"),
        ("mnt", "var/mnt"),
        ("media", "run/media"),
        ("opt", "var/opt"),
        ("usr/local", "../var/usrlocal"),
        ("bin", "usr/bin"),
        ("sbin", "usr/sbin"),
        ("lib", "usr/lib"),
    ];
    if e.keys()
        .any(|k| k.starts_with("usr/lib64/") || k == "usr/lib64")
    {
        links.push(("lib64", "usr/lib64"));
    }
    if tmp_is_dir {
        e.insert("tmp".into(), Entry::dir(0o1777));
    } else {
        links.push(("tmp", "sysroot/tmp"));
    }
    for (l, t) in links {
        match e.get(l).map(|x| (&x.node, x.owner)) {
            // A package's own compat symlink (bin -> usr/bin) stays as shipped.
            Some((Node::Symlink { .. }, Some(_))) if USRMOVE_DIRS.contains(&l) => {}
            // UsrMove: a compat dir's content already went to /usr; the dir becomes a link.
            Some((Node::Dir, Some(_))) if USRMOVE_DIRS.contains(&l) => {
                e.insert(l.into(), Entry::symlink(t));
            }
            Some((_, Some(o))) => bail!(
                "/{l} is shipped by {} but rpm-ostree's layout makes it a symlink to {t}",
                nevras[o]
            ),
            _ => {
                e.insert(l.into(), Entry::symlink(t));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    use crate::compose::model::{S_IFDIR, S_IFREG};
    use crate::ostree::{Checksum, FileMeta, RepoMode};

    /// A regular file shipped by package `pkg`.
    fn file(pkg: usize) -> Entry {
        Entry {
            node: Node::File {
                size: 1,
                digest: String::new(),
                caps: None,
                pkg,
                src: String::new(),
            },
            mode: S_IFREG | 0o644,
            user: "root".into(),
            group: "root".into(),
            owner: Some(pkg),
        }
    }

    fn owned(mut e: Entry, pkg: usize) -> Entry {
        e.owner = Some(pkg);
        e
    }

    fn model_with(paths: &[&str]) -> Model {
        let mut m = Model::default();
        for p in paths {
            m.entries.insert(p.to_string(), file(0));
        }
        m
    }

    fn generated_text(m: &Model, path: &str) -> String {
        match &m.entries[path].node {
            Node::Generated { data } => String::from_utf8(data.clone()).unwrap(),
            other => panic!("{path} is {other:?}, not generated"),
        }
    }

    fn symlink_target(m: &Model, path: &str) -> String {
        match &m.entries[path].node {
            Node::Symlink { target } => target.clone(),
            other => panic!("{path} is {other:?}, not a symlink"),
        }
    }

    #[test]
    fn a_boot_only_kernel_is_copied_into_the_modules_dir() {
        let mut m = model_with(&[
            "usr/lib/ostree-boot/vmlinuz-6.1",
            "usr/lib/ostree-boot/initramfs-6.1.img",
        ]);
        let (k, i) = (Checksum([1; 32]), Checksum([2; 32]));
        let mut imported = HashMap::from([
            ("usr/lib/ostree-boot/vmlinuz-6.1".to_string(), k),
            ("usr/lib/ostree-boot/initramfs-6.1.img".to_string(), i),
        ]);
        copy_boot_kernel_to_modules(&mut m, &mut imported);
        assert_eq!(imported["usr/lib/modules/6.1/vmlinuz"], k);
        assert_eq!(imported["usr/lib/modules/6.1/initramfs.img"], i);
        assert!(m.entries.contains_key("usr/lib/modules/6.1/initramfs.img"));

        // A modules-dir kernel is left alone, initramfs included.
        let mut m = model_with(&[
            "usr/lib/ostree-boot/vmlinuz-6.2",
            "usr/lib/ostree-boot/initramfs-6.2.img",
            "usr/lib/modules/6.2/vmlinuz",
        ]);
        let mut imported = HashMap::from([
            ("usr/lib/ostree-boot/vmlinuz-6.2".to_string(), k),
            ("usr/lib/ostree-boot/initramfs-6.2.img".to_string(), i),
            ("usr/lib/modules/6.2/vmlinuz".to_string(), Checksum([3; 32])),
        ]);
        copy_boot_kernel_to_modules(&mut m, &mut imported);
        assert_eq!(imported["usr/lib/modules/6.2/vmlinuz"], Checksum([3; 32]));
        assert!(!m.entries.contains_key("usr/lib/modules/6.2/initramfs.img"));
    }

    #[test]
    fn the_tree_has_at_most_one_kernel() {
        assert_eq!(kernel_version(&model_with(&["usr/bin/sh"])).unwrap(), None);
        let one = model_with(&[
            "usr/lib/modules/6.1/vmlinuz",
            "usr/lib/modules/6.1/x/vmlinuz",
        ]);
        assert_eq!(kernel_version(&one).unwrap().as_deref(), Some("6.1"));
        let two = model_with(&["usr/lib/modules/6.1/vmlinuz", "usr/lib/modules/6.2/vmlinuz"]);
        let e = kernel_version(&two).unwrap_err().to_string();
        assert!(e.contains("6.1, 6.2"), "{e}");
    }

    #[test]
    fn opt_entries_are_linked_from_var_opt() {
        let mut m = model_with(&["usr/lib/opt/app/bin/app", "usr/lib/opt/tool"]);
        m.entries
            .insert("usr/lib/opt/app".into(), owned(Entry::dir(0o755), 0));
        link_opt_from_var(&mut m);
        assert_eq!(
            m.tmpfiles.iter().collect::<Vec<_>>(),
            [
                (
                    &"var/opt/app".to_string(),
                    &"L /var/opt/app - - - - /usr/lib/opt/app".to_string()
                ),
                (
                    &"var/opt/tool".to_string(),
                    &"L /var/opt/tool - - - - /usr/lib/opt/tool".to_string()
                ),
            ]
        );
    }

    #[test]
    fn the_package_list_stands_in_for_the_rpmdb() {
        let mut m = Model::default();
        package_list_as_rpmdb(&mut m, &["b-1-1.noarch".into(), "a-2-1.x86_64".into()]);
        assert_eq!(
            generated_text(&m, "usr/share/rpm/atomic-factory-pkglist.txt"),
            "b-1-1.noarch\na-2-1.x86_64\n"
        );
        assert_eq!(
            symlink_target(&m, "usr/lib/sysimage/rpm"),
            "../../share/rpm"
        );
        assert_eq!(m.entries["usr/lib/sysimage"].mode, S_IFDIR | 0o755);
        assert_eq!(
            m.tmpfiles["var/lib/rpm"],
            "L /var/lib/rpm - - - - ../../usr/share/rpm"
        );
    }

    #[test]
    fn var_dirs_are_created_unless_a_package_has_its_own_line() {
        let mut m = Model::default();
        m.tmpfiles
            .insert("var/home".into(), "d /var/home 0711 root root - -".into());
        default_var_dirs(&mut m);
        assert_eq!(m.tmpfiles["var/home"], "d /var/home 0711 root root - -");
        assert_eq!(
            m.tmpfiles["var/roothome"],
            "d /var/roothome 0700 root root - -"
        );
        assert_eq!(
            m.tmpfiles["var/usrlocal"],
            "d /var/usrlocal 0755 root root - -"
        );
        assert_eq!(m.tmpfiles.len(), 6);
    }

    #[test]
    fn var_tmpfiles_are_written_sorted_by_path() {
        let mut m = Model::default();
        // Keys and paths sort differently: the file follows the paths.
        m.tmpfiles
            .insert("a".into(), "d /var/lib/x/y 0755 root root - -".into());
        m.tmpfiles
            .insert("b".into(), "d /var/lib/x 0755 root root - -".into());
        write_var_tmpfiles(&mut m);
        let conf = generated_text(&m, "usr/lib/tmpfiles.d/rpm-ostree-1-autovar.conf");
        let lines: Vec<&str> = conf.lines().collect();
        assert!(lines[0].starts_with("# Generated"), "{conf}");
        assert_eq!(
            lines[1..],
            [
                "d /var/lib/x 0755 root root - -",
                "d /var/lib/x/y 0755 root root - -"
            ]
        );
        assert_eq!(m.entries["usr/lib/tmpfiles.d"].mode, S_IFDIR | 0o755);
    }

    #[test]
    fn units_are_enabled_and_must_exist() {
        let mut m = model_with(&["usr/lib/systemd/system/sshd.service"]);
        enable_units(&mut m, &["sshd.service".into()], Some("multi-user.target")).unwrap();
        assert_eq!(
            symlink_target(
                &m,
                "usr/etc/systemd/system/multi-user.target.wants/sshd.service"
            ),
            "/usr/lib/systemd/system/sshd.service"
        );
        assert_eq!(
            symlink_target(&m, "usr/etc/systemd/system/default.target"),
            "/usr/lib/systemd/system/multi-user.target"
        );
        let e = enable_units(&mut m, &["nope.service".into()], None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("nope.service is not in the tree"), "{e}");
    }

    #[test]
    fn add_files_land_in_usr_with_their_mode() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("key.conf");
        std::fs::write(&src, b"secret=1\n").unwrap();
        std::fs::set_permissions(&src, std::fs::Permissions::from_mode(0o600)).unwrap();
        let mut m = Model::default();
        let files = [
            ("key.conf".to_string(), "/etc/app/key.conf".to_string()),
            ("key.conf".to_string(), "/usr/share/app/key".to_string()),
        ];
        add_files(&mut m, dir.path(), &files).unwrap();
        for p in ["usr/etc/app/key.conf", "usr/share/app/key"] {
            assert_eq!(generated_text(&m, p), "secret=1\n");
            assert_eq!(m.entries[p].mode, S_IFREG | 0o600);
        }
        for bad in ["/var/lib/x", "/usr/../etc/x", "/"] {
            let files = [("key.conf".to_string(), bad.to_string())];
            let e = add_files(&mut m, dir.path(), &files)
                .unwrap_err()
                .to_string();
            assert!(
                e.contains("must be an absolute path under /usr or /etc"),
                "{e}"
            );
        }
        let missing = [("gone".to_string(), "/usr/x".to_string())];
        let e = format!("{:#}", add_files(&mut m, dir.path(), &missing).unwrap_err());
        assert!(e.contains("add-files: reading"), "{e}");
    }

    #[test]
    fn os_release_carries_the_commit_version() {
        let dir = tempfile::tempdir().unwrap();
        let repo = Repo::create(dir.path(), RepoMode::ArchiveZ2).unwrap();
        let text =
            "NAME=Fedora\nVERSION=\"39 (Thirty Nine)\"\nVERSION_ID=39\nPRETTY_NAME=\"Fedora 39\"\n";
        let meta = FileMeta {
            uid: 0,
            gid: 0,
            mode: S_IFREG | 0o640,
            xattrs: vec![],
        };
        let csum = repo.write_file_bytes(&meta, text.as_bytes()).unwrap();
        let mut m = Model::default();
        let mut ent = file(0);
        ent.mode = S_IFREG | 0o640;
        m.entries.insert("usr/lib/os-release".into(), ent);
        let imported = HashMap::from([("usr/lib/os-release".to_string(), csum)]);

        // Without a version nothing changes.
        mutate_os_release(&mut m, &repo, &imported, Some("39"), None).unwrap();
        assert!(matches!(
            m.entries["usr/lib/os-release"].node,
            Node::File { .. }
        ));

        mutate_os_release(&mut m, &repo, &imported, Some("39"), Some("39.3")).unwrap();
        assert_eq!(
            generated_text(&m, "usr/lib/os-release"),
            "NAME=Fedora\nVERSION=\"39.3 (Thirty Nine)\"\nVERSION_ID=39\n\
             PRETTY_NAME=\"Fedora 39.3\"\nOSTREE_VERSION='39.3'\n"
        );
        assert_eq!(m.entries["usr/lib/os-release"].mode, S_IFREG | 0o640);

        let e = mutate_os_release(
            &mut Model::default(),
            &repo,
            &imported,
            Some("39"),
            Some("40"),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("no usr/lib/os-release"), "{e}");
    }

    #[test]
    fn remove_files_takes_subtrees_and_notes_misses() {
        let mut m = model_with(&[
            "usr/share/info/a",
            "usr/share/info/b/c",
            "usr/share/infox",
            "usr/etc/motd",
        ]);
        m.entries
            .insert("usr/share/info".into(), owned(Entry::dir(0o755), 0));
        remove_files(
            &mut m,
            &[
                "usr/share/info/".into(),
                "/etc/motd".into(),
                "usr/nothing".into(),
            ],
        );
        assert_eq!(m.entries.keys().collect::<Vec<_>>(), ["usr/share/infox"]);
        assert_eq!(m.notes, ["remove-files: usr/nothing was not in the tree"]);
    }

    #[test]
    fn the_root_follows_rpm_ostree_layout() {
        let mut m = model_with(&["usr/lib64/libc.so"]);
        m.entries.insert("bin".into(), owned(Entry::dir(0o755), 0));
        m.entries
            .insert("sbin".into(), owned(Entry::symlink("usr/sbin"), 0));
        toplevel_layout(&mut m, &["filesystem-1-1.noarch".into()], false).unwrap();
        for (link, target) in [
            ("home", "var/home"),
            ("root", "var/roothome"),
            ("usr/local", "../var/usrlocal"),
            ("tmp", "sysroot/tmp"),
            ("lib64", "usr/lib64"),
            // A package's directory becomes the link; its own link is kept.
            ("bin", "usr/bin"),
            ("sbin", "usr/sbin"),
        ] {
            assert_eq!(symlink_target(&m, link), target, "/{link}");
        }
        assert_eq!(m.entries["sbin"].owner, Some(0));
        assert_eq!(m.entries["bin"].owner, None);
        assert_eq!(m.entries["sysroot"].mode, S_IFDIR | 0o755);

        let mut m = Model::default();
        toplevel_layout(&mut m, &[], true).unwrap();
        assert_eq!(m.entries["tmp"].mode, S_IFDIR | 0o1777);
        assert!(!m.entries.contains_key("lib64"));

        let mut m = Model::default();
        m.entries.insert("home".into(), owned(Entry::dir(0o755), 0));
        let e = toplevel_layout(&mut m, &["bad-1-1.noarch".into()], false)
            .unwrap_err()
            .to_string();
        assert!(e.contains("/home is shipped by bad-1-1.noarch"), "{e}");
    }
}
