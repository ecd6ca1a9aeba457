//! Acceptance 1 and 2 of issue 2: `atomic-factory commit` against `ostree commit` 2022.7 on a
//! tree with every kind of entry; `ostree fsck`, `ostree checkout` and `ostree pull` of ours.

use std::fs;
use std::os::unix::fs::symlink;
use std::path::Path;

use crate::support::files::*;
use crate::support::http::*;
use crate::support::ostree::*;
use crate::support::*;

/// Builds the acceptance tree: empty/small/50 MiB files, odd modes, symlinks of every kind,
/// nested and empty dirs, spaces and UTF-8 names, user xattrs, hardlinks, several owners.
fn build_tree(root: &Path) {
    let mut rng = Rng(0x5eed_1234_abcd_0001);
    fs::create_dir_all(root.join("usr/bin")).unwrap();
    fs::create_dir_all(root.join("usr/share/doc/deep/er/still")).unwrap();
    fs::create_dir_all(root.join("empty")).unwrap();
    fs::create_dir_all(root.join("etc/empty too")).unwrap();
    fs::write(root.join("empty-file"), b"").unwrap();
    fs::write(root.join("hello.txt"), b"hello\n").unwrap();
    fs::write(
        root.join("usr/share/doc/deep/er/still/readme"),
        "compressible ".repeat(5000),
    )
    .unwrap();
    write_random(&root.join("usr/share/big.bin"), 50 << 20, &mut rng);
    write_random(&root.join("usr/share/medium.bin"), 300_000, &mut rng);
    fs::write(root.join("usr/bin/tool"), b"#!/bin/sh\necho tool\n").unwrap();
    chmod(&root.join("usr/bin/tool"), 0o755);
    fs::write(root.join("usr/bin/suid"), b"setuid program").unwrap();
    chmod(&root.join("usr/bin/suid"), 0o4755);
    fs::write(root.join("usr/bin/sgid"), b"setgid program").unwrap();
    chmod(&root.join("usr/bin/sgid"), 0o2711);
    fs::write(root.join("secret"), b"nobody may read this").unwrap();
    chmod(&root.join("secret"), 0o000);
    fs::create_dir(root.join("sticky")).unwrap();
    chmod(&root.join("sticky"), 0o1777);
    fs::create_dir(root.join("private")).unwrap();
    chmod(&root.join("private"), 0o700);
    symlink("hello.txt", root.join("rel-link")).unwrap();
    symlink("/usr/bin/tool", root.join("abs-link")).unwrap();
    symlink("does/not/exist", root.join("dangling")).unwrap();
    symlink("../../bin", root.join("usr/share/doc/up-link")).unwrap();
    fs::write(root.join("name with spaces.txt"), b"spaces\n").unwrap();
    fs::write(root.join("ünïcödé-文件.txt"), "utf-8 ✓\n").unwrap();
    fs::create_dir(root.join("répertoire ü")).unwrap();
    fs::write(root.join("répertoire ü/fichier"), b"x").unwrap();
    fs::write(root.join("xattr-file"), b"with xattrs\n").unwrap();
    xattr::set(root.join("xattr-file"), "user.zeta", b"z").unwrap();
    xattr::set(root.join("xattr-file"), "user.alpha", b"value1").unwrap();
    xattr::set(root.join("xattr-file"), "user.empty", b"").unwrap();
    xattr::set(root.join("etc"), "user.dir-attr", b"on a directory").unwrap();
    fs::hard_link(root.join("hello.txt"), root.join("hardlink-to-hello")).unwrap();
    fs::hard_link(root.join("usr/bin/tool"), root.join("usr/share/tool-again")).unwrap();
    // Same content, different owner: a distinct content object.
    fs::write(root.join("owned-by-1000"), b"hello\n").unwrap();
    chown(&root.join("owned-by-1000"), 1000, 1000);
    fs::write(root.join("owned-by-42-7"), b"owned\n").unwrap();
    chown(&root.join("owned-by-42-7"), 42, 7);
    chown(&root.join("private"), 65534, 65534);
    chown(&root.join("dangling"), 123, 456);
    // A huge uid to exercise all four bytes of the big-endian field.
    fs::write(root.join("usr/share/owned-by-big-uid"), b"big uid\n").unwrap();
    chown(&root.join("usr/share/owned-by-big-uid"), 4_000_000_001, 99);
}

#[test]
fn commit_matches_ostree_and_ostree_reads_it() {
    require(&["ostree"]);
    let tmp = tempfile::tempdir().unwrap();
    let tree = tmp.path().join("tree");
    build_tree(&tree);
    let mine = tmp.path().join("ours");
    let theirs = tmp.path().join("theirs");
    our_init(&mine);
    ostree_init(&theirs);
    assert_eq!(
        fs::read(mine.join("config")).unwrap(),
        fs::read(theirs.join("config")).unwrap()
    );

    // Three option sets: preserved ownership; forced ownership; no xattrs + metadata strings.
    let variants: Vec<Vec<String>> = vec![
        vec![
            "-b".into(),
            "test/x86_64".into(),
            "--subject=Test subject".into(),
            "--body=Body text".into(),
        ],
        vec![
            "-b".into(),
            "owned/x86_64".into(),
            "--subject=owned".into(),
            "--owner-uid=0".into(),
            "--owner-gid=0".into(),
        ],
        vec![
            "-b".into(),
            "noxattrs".into(),
            "--no-xattrs".into(),
            "--add-metadata-string=version=42.1".into(),
            "--add-metadata-string=rpmostree.inputhash=abc".into(),
        ],
    ];
    for (i, args) in variants.iter().enumerate() {
        let ts = format!("--timestamp=@{}", 1_704_164_645 + i as u64);
        let tree_arg = format!("--tree=dir={}", tree.display());
        let a = capture(
            ours()
                .arg("commit")
                .arg(format!("--repo={}", mine.display()))
                .args(args)
                .arg(&ts)
                .arg(&tree_arg),
        );
        let b = capture(
            ostree(&theirs)
                .arg("commit")
                .args(args)
                .arg(&ts)
                .arg(&tree_arg),
        );
        assert_eq!(a, b, "commit checksums differ for options {args:?}");
        let refname = &args[1];
        assert_eq!(
            fs::read_to_string(mine.join("refs/heads").join(refname)).unwrap(),
            fs::read_to_string(theirs.join("refs/heads").join(refname)).unwrap()
        );
    }
    // A second commit on a branch gets the current commit as parent, like ostree.
    let ts = "--timestamp=2024-02-03 04:05:06Z";
    let tree_arg = format!("--tree=dir={}", tree.display());
    let a = capture(
        ours()
            .arg("commit")
            .arg(format!("--repo={}", mine.display()))
            .args(["-b", "test/x86_64", ts, &tree_arg]),
    );
    let b = capture(
        ostree(&theirs)
            .arg("commit")
            .args(["-b", "test/x86_64", ts, &tree_arg]),
    );
    assert_eq!(a, b, "child commit checksums differ");

    assert_same_objects(&mine, &theirs);
    fsck(&mine);
    // Issue 18: stored blocks for data that does not shrink (the 50 MiB random file) keep the
    // repository within 1% of ostree's level-6 deflate everywhere.
    let size = |repo: &Path| -> u64 {
        objects(repo)
            .values()
            .map(|p| fs::metadata(p).unwrap().len())
            .sum()
    };
    let (ours_size, theirs_size) = (size(&mine), size(&theirs));
    assert!(
        ours_size as f64 <= theirs_size as f64 * 1.01,
        "our objects take {ours_size} bytes, ostree's {theirs_size}"
    );

    // ostree checkout of our commit reproduces the tree (content, modes, owners, links, xattrs).
    let co = tmp.path().join("co-ostree");
    run(ostree(&mine).args(["checkout", "test/x86_64"]).arg(&co));
    assert_eq!(
        snapshot(&tree),
        snapshot(&co),
        "ostree checkout of our commit differs from the tree"
    );
    // And so does ours, of ostree's commit.
    let co2 = tmp.path().join("co-ours");
    run(ours()
        .arg("checkout")
        .arg(format!("--repo={}", theirs.display()))
        .arg("test/x86_64")
        .arg(&co2));
    assert_eq!(
        snapshot(&tree),
        snapshot(&co2),
        "our checkout of ostree's commit differs from the tree"
    );

    // ls/show agree with ostree on our repo.
    let ls_ours = capture(
        ours()
            .arg("ls")
            .arg(format!("--repo={}", mine.display()))
            .args(["-R", "test/x86_64"]),
    );
    let ls_theirs = capture(ostree(&mine).args(["ls", "-R", "test/x86_64"]));
    assert_eq!(ls_ours, ls_theirs);
    let show = capture(
        ours()
            .arg("show")
            .arg(format!("--repo={}", mine.display()))
            .arg("test/x86_64"),
    );
    assert!(
        show.contains(&format!("commit {a}")) && show.contains("Date:  2024-02-03 04:05:06 +0000"),
        "{show}"
    );

    // ostree pull over HTTP checks GVariant normal form, which fsck does not.
    let server = HttpServer::serve(&mine);
    for r in ["test/x86_64", "owned/x86_64", "noxattrs"] {
        ostree_pull(
            &server.url,
            r,
            &tmp.path().join(format!("pulled-{}", r.replace('/', "-"))),
        );
    }
}

#[test]
fn library_api_builds_the_same_commit_as_ostree() {
    use atomic_factory::ostree::{
        CommitSpec, DirMeta, FileMeta, MetaValue, MutableTree, Repo, RepoMode,
    };
    require(&["ostree"]);
    let tmp = tempfile::tempdir().unwrap();
    let repo = Repo::create(&tmp.path().join("api"), RepoMode::ArchiveZ2).unwrap();
    let root_meta = repo
        .write_dirmeta(&DirMeta {
            uid: 0,
            gid: 0,
            mode: 0o40755,
            xattrs: vec![],
        })
        .unwrap();
    let file = FileMeta {
        uid: 0,
        gid: 0,
        mode: 0o100644,
        xattrs: vec![],
    };
    let hello = repo.write_file(&file, 6, &mut &b"hello\n"[..]).unwrap();
    let link = repo
        .write_symlink(
            &FileMeta {
                mode: 0o120777,
                ..file.clone()
            },
            "hello.txt",
        )
        .unwrap();
    let mut mt = MutableTree::new(root_meta);
    mt.ensure_dir(&["usr", "lib"], &root_meta)
        .unwrap()
        .files
        .insert("hello.txt".into(), hello);
    mt.files.insert("link".into(), link);
    let (tree, meta) = repo.write_mtree(&mt).unwrap();
    let commit = repo
        .write_commit(&CommitSpec {
            parent: None,
            subject: "api".into(),
            body: String::new(),
            timestamp: 1_700_000_000,
            root_dirtree: tree,
            root_dirmeta: meta,
            metadata: vec![(
                "ostree.ref-binding".into(),
                MetaValue::StrList(vec!["api".into()]),
            )],
        })
        .unwrap();
    repo.set_ref("api", &commit).unwrap();
    assert_eq!(repo.resolve_ref("api").unwrap(), Some(commit));

    // The same tree through `ostree commit`.
    let src = tmp.path().join("src");
    fs::create_dir_all(src.join("usr/lib")).unwrap();
    chmod(&src, 0o755);
    chmod(&src.join("usr"), 0o755);
    chmod(&src.join("usr/lib"), 0o755);
    fs::write(src.join("usr/lib/hello.txt"), b"hello\n").unwrap();
    chmod(&src.join("usr/lib/hello.txt"), 0o644);
    symlink("hello.txt", src.join("link")).unwrap();
    let theirs = tmp.path().join("theirs");
    ostree_init(&theirs);
    let b = capture(
        ostree(&theirs)
            .args([
                "commit",
                "-b",
                "api",
                "--subject=api",
                "--timestamp=@1700000000",
                "--owner-uid=0",
                "--owner-gid=0",
                "--no-xattrs",
            ])
            .arg(format!("--tree=dir={}", src.display())),
    );
    assert_eq!(commit.to_string(), b);
    fsck(repo.path());

    // Reading back.
    let c = repo.read_commit(&commit).unwrap();
    assert_eq!(
        (c.subject.as_str(), c.timestamp, c.root_dirtree),
        ("api", 1_700_000_000, tree)
    );
    let (m, target, _) = repo.read_file(&link).unwrap();
    assert_eq!((m.mode, target.as_deref()), (0o120777, Some("hello.txt")));
    let (_, _, mut r) = repo.read_file(&hello).unwrap();
    let mut s = String::new();
    std::io::Read::read_to_string(&mut r, &mut s).unwrap();
    assert_eq!(s, "hello\n");
    assert_eq!(
        repo.commit_size(&commit).unwrap(),
        fs::metadata(repo.object_path(&commit, atomic_factory::ostree::ObjectType::Commit))
            .unwrap()
            .len()
    );
}
