//! Acceptance for `compose tree` (issue 3, items 1, 4 and 5): a tree composed from real RPMs
//! (fixtures + packages built here with rpmbuild, in an rpm-md repo made by createrepo_c)
//! passes `ostree fsck`, has rpm-ostree's layout under `ostree checkout`, and every file's
//! content and mode equal what `rpm2cpio | cpio -idm` extracts.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use atomic_factory::compose::ComposeOptions;

use crate::support::compose::*;
use crate::support::files::random_bytes;
use crate::support::{ours, require, run};

const KVER: &str = "6.1.0-test.x86_64";

/// The small distribution every test here composes.
fn distro(w: &Work) -> Vec<PathBuf> {
    let arch = std::env::consts::ARCH;
    let passwd = b"root:x:0:0:root:/root:/bin/sh\ndaemon:x:2:2:daemon:/sbin:/sbin/nologin\njane:x:1000:1000::/home/jane:/bin/sh\n";
    let group = b"root:x:0:\ndaemon:x:2:\nwheel:x:10:jane\njane:x:1000:\nbob:x:1001:\n";
    let specs = vec![
        Spec::new("setup", "2.14")
            .file("/etc/passwd", passwd, 0o644)
            .file("/etc/group", group, 0o644)
            .dir("/var/lib/setup", 0o750)
            .prov("user(jane)")
            .prov("group(jane)")
            .prov("group(bob)"),
        Spec::new("busybox-lite", "1.36")
            .arch(arch)
            .file("/usr/bin/busybox", &random_bytes(300_000, 7), 0o755)
            .symlink("/usr/bin/sh", "busybox")
            .file("/usr/bin/su-lite", b"#!/bin/sh\n", 0o4755)
            .prov("/bin/sh")
            .req("setup"),
        Spec::new("kernel-lite", "6.1.0")
            .arch(arch)
            .file(
                &format!("/usr/lib/modules/{KVER}/vmlinuz"),
                &random_bytes(1_500_000, 3),
                0o755,
            )
            .file(
                &format!("/usr/lib/modules/{KVER}/initramfs.img"),
                &random_bytes(700_000, 5),
                0o600,
            )
            .file(&format!("/usr/lib/modules/{KVER}/modules.dep"), b"", 0o644)
            .file(&format!("/boot/config-{KVER}"), b"CONFIG_TEST=y\n", 0o644)
            .req("busybox-lite"),
        Spec::new("os-release-lite", "1")
            .file(
                "/usr/lib/os-release",
                b"NAME=Lite\nVERSION=\"1 (Lite)\"\nID=lite\nPRETTY_NAME=\"Lite 1 (Lite)\"\n",
                0o644,
            )
            .symlink("/etc/os-release", "../usr/lib/os-release"),
        // rpm-basic's dependencies: a file provide, versioned requires, a virtual provide.
        Spec::new("ego", "1.0").file("/usr/sbin/ego", b"#!/bin/sh\necho ego\n", 0o755),
        Spec::new("methylamine", "1.2.0"),
        Spec::new("morality", "2"),
        Spec::new("morality", "3"),
        Spec::new("regret-impl", "0.1").prov("regret"),
        // Versioned chain with two candidates: app needs libfoo >= 2.
        Spec::new("libfoo", "1.0").file("/usr/lib/libfoo.txt", b"one\n", 0o644),
        Spec::new("libfoo", "2.1")
            .file("/usr/lib/libfoo.txt", b"two\n", 0o644)
            .owned_file("/etc/libfoo.conf", b"secret=1\n", 0o640, "root", "wheel")
            .owned_file("/usr/share/libfoo/jane.txt", b"hi\n", 0o600, "jane", "bob"),
        Spec::new("app", "1.0")
            .req("libfoo >= 2")
            .req("/bin/sh")
            .file("/usr/bin/app", b"#!/bin/sh\necho app\n", 0o755)
            .post("echo hello"),
    ];
    let mut built: Vec<PathBuf> = specs.iter().map(|s| w.add(s)).collect();
    let fx = fixtures_dir();
    for f in [
        "v6-zstd/rpm-basic-2.3.4-5.el9.noarch.rpm",
        "v6/rpm-file-attrs-1.0-1.noarch.rpm",
        "v6/rpm-scriptlets-1.0-1.noarch.rpm",
        "v4/rpm-empty-0-0.x86_64.rpm",
    ] {
        let dst = w.rpms().join(Path::new(f).file_name().unwrap());
        std::fs::copy(fx.join(f), &dst).unwrap();
        built.push(dst);
    }
    createrepo(&w.rpms());
    built
}

const PACKAGES: &[&str] = &[
    "setup",
    "kernel-lite",
    "os-release-lite",
    "rpm-basic",
    "rpm-file-attrs",
    "rpm-scriptlets",
    "rpm-empty",
    "app",
];

/// Where an rpm path lands in the checkout (rpm-ostree's rules), None for /var.
fn map_path(rel: &str) -> Option<String> {
    let (top, rest) = rel.split_once('/').unwrap_or((rel, ""));
    let join = |b: &str| {
        if rest.is_empty() {
            b.to_string()
        } else {
            format!("{b}/{rest}")
        }
    };
    match top {
        "etc" => Some(join("usr/etc")),
        "opt" => Some(join("usr/lib/opt")),
        "boot" => Some(join("usr/lib/ostree-boot")),
        "var" => None,
        _ => Some(rel.to_string()),
    }
}

/// `rpm2cpio | cpio -idm`; rpm 4.18's rpm2cpio refuses v6 (large-file) payloads and points
/// at rpm2archive, so those go through `rpm2archive | tar` (the same payload, as tar).
fn cpio_extract(rpm: &Path, dest: &Path) {
    std::fs::create_dir_all(dest).unwrap();
    let sh = |cmd: String| {
        Command::new("sh")
            .arg("-c")
            .arg(cmd)
            .current_dir(dest)
            .output()
            .unwrap()
    };
    let out = sh(format!(
        "rpm2cpio '{}' | cpio -idm --quiet --no-absolute-filenames",
        rpm.display()
    ));
    if out.status.success() {
        return;
    }
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("rpm2archive"),
        "rpm2cpio | cpio failed for {}: {}",
        rpm.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let out = sh(format!("rpm2archive - < '{}' | tar -xzpf -", rpm.display()));
    assert!(
        out.status.success(),
        "rpm2archive | tar failed for {}: {}",
        rpm.display(),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Every file rpm2cpio|cpio extracts has the same content, mode and link target in the checkout.
fn compare_with_cpio(rpm: &Path, checkout: &Path, tmp: &Path) -> usize {
    let ex = tmp.join(rpm.file_name().unwrap());
    cpio_extract(rpm, &ex);
    let mut n = 0;
    for ent in walkdir::WalkDir::new(&ex).min_depth(1) {
        let ent = ent.unwrap();
        let rel = ent
            .path()
            .strip_prefix(&ex)
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let Some(mapped) = map_path(&rel) else {
            continue;
        };
        if mapped == "usr/lib/os-release" {
            // Edited on purpose by mutate-os-release (checked separately).
            continue;
        }
        let ours = checkout.join(&mapped);
        let md = std::fs::symlink_metadata(ent.path()).unwrap();
        let omd = std::fs::symlink_metadata(&ours)
            .unwrap_or_else(|_| panic!("{}: /{rel} missing as /{mapped}", rpm.display()));
        if md.file_type().is_symlink() {
            assert!(
                omd.file_type().is_symlink(),
                "/{mapped} should be a symlink"
            );
            assert_eq!(
                std::fs::read_link(ent.path()).unwrap(),
                std::fs::read_link(&ours).unwrap(),
                "/{mapped} target"
            );
        } else if md.is_file() {
            assert!(omd.is_file(), "/{mapped} should be a regular file");
            assert_eq!(
                std::fs::read(ent.path()).unwrap(),
                std::fs::read(&ours).unwrap(),
                "/{mapped} content"
            );
            // `ostree checkout -U` drops setuid/setgid bits; those are checked with `ostree ls`.
            assert_eq!(
                md.permissions().mode() & 0o1777,
                omd.permissions().mode() & 0o1777,
                "/{mapped} mode"
            );
            n += 1;
        } else {
            assert!(omd.is_dir(), "/{mapped} should be a directory");
        }
    }
    n
}

fn checkout(w: &Work, rev: &str) -> PathBuf {
    let co = w.path().join(format!("co-{}", &rev[..8]));
    let repo = format!("--repo={}", w.repo().display());
    ostree_stdout(&["checkout", "-U", &repo, rev, co.to_str().unwrap()]);
    co
}

#[test]
fn compose_matches_rpm2cpio_and_rpm_ostree_layout() {
    require(&["rpmbuild", "createrepo_c", "ostree", "rpm2cpio", "cpio"]);
    let w = Work::new();
    let rpms = distro(&w);
    let tf = w.treefile(
        PACKAGES,
        "automatic-version-prefix: \"1\"\nmutate-os-release: \"1\"\nunits: []\n",
    );
    let out = w.compose(&tf).unwrap();
    assert!(out.changed);
    let c = out.commit.to_string();
    let repo = format!("--repo={}", w.repo().display());
    ostree_stdout(&["fsck", &repo]);

    // Metadata as rpm-ostree writes it.
    let show = ostree_stdout(&["show", &repo, "--print-metadata-key=ostree.linux", &c]);
    assert_eq!(show.trim(), format!("'{KVER}'"));
    assert_eq!(
        ostree_stdout(&["show", &repo, "--print-metadata-key=ostree.bootable", &c]).trim(),
        "true"
    );
    assert_eq!(
        ostree_stdout(&["show", &repo, "--print-metadata-key=version", &c]).trim(),
        "'1'"
    );
    let pkglist = ostree_stdout(&[
        "show",
        &repo,
        "--print-metadata-key=rpmostree.rpmdb.pkglist",
        &c,
    ]);
    assert!(
        pkglist.contains("('libfoo', '0', '2.1', '1', 'noarch')"),
        "{pkglist}"
    );
    assert!(
        pkglist.contains("('morality', '0', '2', '1', 'noarch')"),
        "morality <= 2 must win over 3.0: {pkglist}"
    );
    assert!(
        !pkglist.contains("'1.0', '1', 'noarch'), ('libfoo'"),
        "{pkglist}"
    );
    let scripts = ostree_stdout(&[
        "show",
        &repo,
        "--print-metadata-key=atomic-factory.skipped-scriptlets",
        &c,
    ]);
    assert!(scripts.contains("app-1.0-1.noarch: %post"), "{scripts}");
    assert!(
        scripts.contains("rpm-scriptlets-1.0-1.noarch: %pretrans"),
        "{scripts}"
    );
    assert_eq!(out.inputhash.len(), 64);
    let ih = ostree_stdout(&[
        "show",
        &repo,
        "--print-metadata-key=rpmostree.inputhash",
        &c,
    ]);
    assert_eq!(ih.trim(), format!("'{}'", out.inputhash));
    // Empty subject, like rpm-ostree.
    let log = ostree_stdout(&["log", &repo, "test/x86_64/base"]);
    assert!(
        log.contains("(no subject)") || !log.contains("    "),
        "{log}"
    );

    let co = checkout(&w, &c);
    // Layout.
    for d in [
        "dev", "proc", "run", "sys", "sysroot", "var", "boot", "usr/etc",
    ] {
        assert!(co.join(d).is_dir(), "/{d} should be a directory");
    }
    assert!(!co.join("etc").exists(), "/etc must be renamed to /usr/etc");
    for (l, t) in [
        ("home", "var/home"),
        ("root", "var/roothome"),
        ("tmp", "sysroot/tmp"),
        ("ostree", "sysroot/ostree"),
        ("opt", "var/opt"),
        ("bin", "usr/bin"),
        ("usr/local", "../var/usrlocal"),
    ] {
        assert_eq!(
            std::fs::read_link(co.join(l)).unwrap(),
            PathBuf::from(t),
            "/{l}"
        );
    }
    assert!(co.join(format!("usr/lib/modules/{KVER}/vmlinuz")).is_file());
    assert!(
        co.join(format!("usr/lib/modules/{KVER}/initramfs.img"))
            .is_file()
    );
    assert!(
        co.join(format!("usr/lib/ostree-boot/config-{KVER}"))
            .is_file()
    );
    assert!(co.join("usr/etc/passwd").is_file());
    let tmpfiles =
        std::fs::read_to_string(co.join("usr/lib/tmpfiles.d/rpm-ostree-1-autovar.conf")).unwrap();
    assert!(
        tmpfiles.contains("d /var/lib/setup 0750 root root - -"),
        "{tmpfiles}"
    );
    assert!(
        tmpfiles.contains("d /var/tmp/rpm-basic 0755 root root - -"),
        "{tmpfiles}"
    );
    assert!(
        tmpfiles.contains("L /var/opt/rpm-file-attrs - - - - /usr/lib/opt/rpm-file-attrs"),
        "{tmpfiles}"
    );
    assert!(
        std::fs::read_dir(co.join("var")).unwrap().next().is_none(),
        "/var must be empty"
    );
    let osr = std::fs::read_to_string(co.join("usr/lib/os-release")).unwrap();
    assert!(osr.contains("OSTREE_VERSION='1'"), "{osr}");

    // Ownership mapped through the tree's passwd/group; file caps as an xattr.
    let ls = ostree_stdout(&[
        "ls",
        &repo,
        &c,
        "/usr/share/libfoo/jane.txt",
        "/usr/etc/libfoo.conf",
    ]);
    assert!(
        ls.contains("-00600 1000 1001"),
        "jane:bob must map to 1000:1001: {ls}"
    );
    assert!(
        ls.contains("-00640 0 10"),
        "root:wheel must map to 0:10: {ls}"
    );
    let ls = ostree_stdout(&[
        "ls",
        "-X",
        &repo,
        &c,
        "/usr/lib/opt/rpm-file-attrs/with_caps",
    ]);
    assert!(ls.contains("security.capability"), "{ls}");
    let ls = ostree_stdout(&["ls", &repo, &c, "/usr/bin/su-lite"]);
    assert!(ls.contains("-04755"), "setuid bit kept: {ls}");

    // Content and mode against rpm2cpio | cpio -idm, for every package in the tree.
    let tmp = tempfile::tempdir().unwrap();
    let mut compared = 0;
    let installed: Vec<String> = out.packages.clone();
    for rpm in &rpms {
        let stem = rpm
            .file_name()
            .unwrap()
            .to_string_lossy()
            .trim_end_matches(".rpm")
            .to_string();
        if installed
            .iter()
            .any(|n| *n == stem || stem.replace("-2.3.4", "-1:2.3.4") == *n)
        {
            compared += compare_with_cpio(rpm, &co, tmp.path());
        }
    }
    assert!(compared >= 30, "compared only {compared} files");
}

/// Hard links: rpm writes the content once, with the last member of the set; every member
/// must come out with it (each in its own directory, as packages link across them).
#[test]
fn hardlinked_files_all_get_the_content() {
    require(&["rpmbuild", "createrepo_c", "ostree", "rpm2cpio", "cpio"]);
    let w = Work::new();
    let rpm = w.add(
        &Spec::new("linked", "1")
            .file(
                "/usr/bin/linked",
                b"#!/bin/sh\necho one binary, three names\n",
                0o755,
            )
            .hardlink("/usr/bin/linked-too", "/usr/bin/linked")
            .hardlink("/usr/libexec/linked/helper", "/usr/bin/linked")
            .file("/usr/share/linked/empty", b"", 0o644)
            .hardlink("/usr/share/linked/empty-too", "/usr/share/linked/empty"),
    );
    createrepo(&w.rpms());
    let out = w.compose(&w.treefile(&["linked"], "")).unwrap();
    ostree_stdout(&["fsck", &format!("--repo={}", w.repo().display())]);
    let co = checkout(&w, &out.commit.to_string());
    let tmp = tempfile::tempdir().unwrap();
    assert_eq!(compare_with_cpio(&rpm, &co, tmp.path()), 5);
}

#[test]
fn every_fixture_compression_imports_like_cpio() {
    require(&["rpmbuild", "createrepo_c", "ostree", "rpm2cpio", "cpio"]);
    let fx = fixtures_dir();
    let w0 = Work::new();
    let deps: Vec<PathBuf> = [
        Spec::new("ego", "1.0").file("/usr/sbin/ego", b"#!/bin/sh\n", 0o755),
        Spec::new("methylamine", "1.2.0"),
        Spec::new("morality", "1.0"),
        Spec::new("regret", "1.0"),
    ]
    .iter()
    .map(|s| w0.add(s))
    .collect();
    for variant in ["v4", "v6", "v6-gzip", "v6-xz", "v6-zstd"] {
        let w = Work::new();
        for d in &deps {
            std::fs::copy(d, w.rpms().join(d.file_name().unwrap())).unwrap();
        }
        let rpm = w.rpms().join("rpm-basic.rpm");
        std::fs::copy(
            fx.join(variant).join("rpm-basic-2.3.4-5.el9.noarch.rpm"),
            &rpm,
        )
        .unwrap();
        createrepo(&w.rpms());
        let tf = w.treefile(&["rpm-basic"], "");
        let out = w
            .compose(&tf)
            .unwrap_or_else(|e| panic!("{variant}: {e:#}"));
        let repo = format!("--repo={}", w.repo().display());
        ostree_stdout(&["fsck", &repo]);
        let co = checkout(&w, &out.commit.to_string());
        let tmp = tempfile::tempdir().unwrap();
        let n = compare_with_cpio(&rpm, &co, tmp.path());
        assert!(n >= 5, "{variant}: compared {n} files");
    }
}

#[test]
fn unchanged_inputs_make_no_commit_and_one_changed_package_does() {
    require(&["rpmbuild", "createrepo_c", "ostree"]);
    let w = Work::new();
    w.add(&Spec::new("setup", "1").file("/etc/passwd", b"root:x:0:0::/root:/bin/sh\n", 0o644));
    w.add(
        &Spec::new("tool", "1.0")
            .file("/usr/bin/tool", b"v1\n", 0o755)
            .req("setup"),
    );
    createrepo(&w.rpms());
    let tf = w.treefile(&["tool"], "automatic-version-prefix: \"42\"\n");
    let commitid = w.path().join("commitid");
    let touched = w.path().join("changed.stamp");
    let opts = ComposeOptions {
        progress: atomic_factory::progress::Reporter::quiet(),
        write_commitid_to: Some(commitid.clone()),
        touch_if_changed: Some(touched.clone()),
        add_metadata_string: vec![("build.id".into(), "7".into())],
        ..Default::default()
    };
    let first = w.compose_opts(&tf, &opts).unwrap();
    assert!(first.changed);
    assert_eq!(
        std::fs::read_to_string(&commitid).unwrap().trim(),
        first.commit.to_string()
    );
    assert!(touched.exists());
    let repo = format!("--repo={}", w.repo().display());
    assert_eq!(
        ostree_stdout(&[
            "show",
            &repo,
            "--print-metadata-key=build.id",
            "test/x86_64/base"
        ])
        .trim(),
        "'7'"
    );

    // Same inputs: no commit, the ref does not move, the stamp is not touched.
    std::fs::remove_file(&touched).unwrap();
    std::fs::remove_file(&commitid).unwrap();
    let o = run(ours().args([
        "compose",
        "tree",
        &repo,
        "--touch-if-changed",
        touched.to_str().unwrap(),
        tf.to_str().unwrap(),
    ]));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("No apparent changes since previous commit")
    );
    assert_eq!(w.ref_commit().unwrap(), first.commit.to_string());
    assert!(
        !touched.exists(),
        "--touch-if-changed must not touch without a change"
    );
    let log = ostree_stdout(&["log", &repo, "test/x86_64/base"]);
    assert_eq!(log.matches("commit ").count(), 1, "{log}");

    // --force-nocache commits anyway (same tree, new commit with the first as parent).
    let forced = w
        .compose_opts(
            &tf,
            &ComposeOptions {
                progress: atomic_factory::progress::Reporter::quiet(),
                force_nocache: true,
                ..Default::default()
            },
        )
        .unwrap();
    assert!(forced.changed);
    assert_ne!(forced.commit, first.commit);
    assert_eq!(forced.version.as_deref(), Some("42.1"));

    // One changed package: one new commit on top, with the new content.
    std::fs::remove_file(w.rpms().join("tool-1.0-1.noarch.rpm")).unwrap();
    w.add(
        &Spec::new("tool", "1.1")
            .file("/usr/bin/tool", b"v2\n", 0o755)
            .req("setup"),
    );
    createrepo(&w.rpms());
    let second = w.compose(&tf).unwrap();
    assert!(second.changed);
    let log = ostree_stdout(&["log", &repo, "test/x86_64/base"]);
    assert_eq!(log.matches("commit ").count(), 3, "{log}");
    assert_eq!(
        ostree_stdout(&["cat", &repo, "test/x86_64/base", "/usr/bin/tool"]),
        "v2\n"
    );
    assert_eq!(second.version.as_deref(), Some("42.2"));
    ostree_stdout(&["fsck", &repo]);
}

#[test]
fn same_inputs_on_different_days_give_the_same_checksum() {
    require(&["rpmbuild", "createrepo_c", "ostree"]);
    let built = Work::new();
    let rpms = vec![
        built.add(
            &Spec::new("setup", "1")
                .file("/etc/passwd", b"root:x:0:0::/root:/bin/sh\n", 0o644)
                .dir("/var/lib/x", 0o755),
        ),
        built.add(
            &Spec::new("tool", "1.0")
                .file("/usr/bin/tool", &random_bytes(100_000, 9), 0o755)
                .req("setup"),
        ),
    ];
    let mut commits = BTreeMap::new();
    for (day, mtime) in [
        ("monday", "2024-01-01 10:00"),
        ("friday", "2025-06-13 23:59"),
    ] {
        let w = Work::new();
        for r in &rpms {
            let dst = w.rpms().join(r.file_name().unwrap());
            std::fs::copy(r, &dst).unwrap();
            run(Command::new("touch").args(["-d", mtime]).arg(&dst));
        }
        createrepo(&w.rpms());
        let tf = w.treefile(&["tool"], "");
        run(Command::new("touch").args(["-d", mtime]).arg(&tf));
        let out = w
            .compose_opts(
                &tf,
                &ComposeOptions {
                    progress: atomic_factory::progress::Reporter::quiet(),
                    source_date_epoch: Some(1_700_000_000),
                    ..Default::default()
                },
            )
            .unwrap();
        let repo = format!("--repo={}", w.repo().display());
        ostree_stdout(&["fsck", &repo]);
        let ts = ostree_stdout(&["show", &repo, &out.commit.to_string()]);
        assert!(
            ts.contains("2023-11-14"),
            "timestamp from SOURCE_DATE_EPOCH: {ts}"
        );
        commits.insert(day, out.commit.to_string());
    }
    assert_eq!(commits["monday"], commits["friday"], "{commits:?}");
}
