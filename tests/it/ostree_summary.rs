//! Acceptance 3 of issue 2: our summary is byte-identical to `ostree summary -u` for the same
//! last-modified value; `ostree summary --view` and `ostree pull` read ours; we read ostree's.

use std::fs;
use std::path::Path;

use crate::support::http::*;
use crate::support::ostree::*;
use crate::support::*;

fn commit_both(
    tree: &Path,
    mine: &Path,
    theirs: &Path,
    branch: &str,
    ts: u64,
    version: Option<&str>,
) {
    let mut args = vec![
        "-b".to_string(),
        branch.to_string(),
        format!("--timestamp=@{ts}"),
        "-s".into(),
        format!("commit of {branch}"),
    ];
    if let Some(v) = version {
        args.push(format!("--add-metadata-string=version={v}"));
    }
    args.push(format!("--tree=dir={}", tree.display()));
    let a = capture(
        ours()
            .arg("commit")
            .arg(format!("--repo={}", mine.display()))
            .args(&args),
    );
    let b = capture(ostree(theirs).arg("commit").args(&args));
    assert_eq!(a, b);
}

#[test]
fn summary_matches_ostree_bytes_and_both_read_each_other() {
    require(&["ostree"]);
    let tmp = tempfile::tempdir().unwrap();
    let tree = tmp.path().join("tree");
    fs::create_dir_all(tree.join("usr/bin")).unwrap();
    fs::write(tree.join("usr/bin/a"), b"a\n").unwrap();
    let mine = tmp.path().join("ours");
    let theirs = tmp.path().join("theirs");
    our_init(&mine);
    ostree_init(&theirs);
    // Refs chosen so that name order, commit sizes and version keys all vary.
    commit_both(&tree, &mine, &theirs, "zeta", 1_700_000_000, None);
    commit_both(
        &tree,
        &mine,
        &theirs,
        "alpha/x86_64/cloud",
        1_700_000_100,
        Some("39.20240101.0"),
    );
    commit_both(
        &tree,
        &mine,
        &theirs,
        "alpha/aarch64",
        1_700_000_200,
        Some("1"),
    );
    commit_both(&tree, &mine, &theirs, "Beta", 1_700_000_300, None);
    fs::write(theirs.join("summary.sig"), b"stale").unwrap();
    fs::write(mine.join("summary.sig"), b"stale").unwrap();

    run(ostree(&theirs).args(["summary", "-u"]));
    let lm = ostree_last_modified(&theirs);
    run(ours()
        .env("SOURCE_DATE_EPOCH", lm.to_string())
        .args(["summary", "-u"])
        .arg(format!("--repo={}", mine.display())));
    assert!(
        fs::read(mine.join("summary")).unwrap() == fs::read(theirs.join("summary")).unwrap(),
        "summary bytes differ from ostree's (last-modified {lm})"
    );
    assert_eq!(
        fs::read_to_string(mine.join("config")).unwrap(),
        fs::read_to_string(theirs.join("config")).unwrap()
    );
    assert!(!mine.join("summary.sig").exists() && !theirs.join("summary.sig").exists());

    // ostree reads ours; we read ostree's, and print the same facts.
    let view_theirs = capture(ostree(&mine).args(["summary", "--view"]));
    let view_ours = capture(
        ours()
            .args(["summary", "--view"])
            .arg(format!("--repo={}", theirs.display())),
    );
    assert_eq!(view_ours, view_theirs);
    assert!(
        view_ours.contains("Version (ostree.commit.version): 39.20240101.0"),
        "{view_ours}"
    );

    // A client pulls through our summary (it also fetches config because of the mode key).
    let server = HttpServer::serve(&mine);
    ostree_pull(
        &server.url,
        "alpha/x86_64/cloud",
        &tmp.path().join("client"),
    );
    let refs = capture(ostree(&tmp.path().join("client")).args(["remote", "refs", "origin"]));
    for r in [
        "origin:Beta",
        "origin:alpha/aarch64",
        "origin:alpha/x86_64/cloud",
        "origin:zeta",
    ] {
        assert!(
            refs.lines().any(|l| l == r),
            "{r} missing from `ostree remote refs`: {refs}"
        );
    }
}

#[test]
fn summary_with_extra_metadata_matches_ostree() {
    require(&["ostree"]);
    let tmp = tempfile::tempdir().unwrap();
    let tree = tmp.path().join("tree");
    fs::create_dir_all(&tree).unwrap();
    fs::write(tree.join("f"), b"f").unwrap();
    let mine = tmp.path().join("ours");
    let theirs = tmp.path().join("theirs");
    our_init(&mine);
    ostree_init(&theirs);
    commit_both(&tree, &mine, &theirs, "main", 1_700_000_000, Some("1.0"));
    run(ostree(&theirs).args([
        "summary",
        "-u",
        "--add-metadata=ostree.summary.expires-note='soon'",
        "--add-metadata=flag=true",
    ]));
    let lm = ostree_last_modified(&theirs);
    run(ours()
        .env("SOURCE_DATE_EPOCH", lm.to_string())
        .args([
            "summary",
            "-u",
            "--add-metadata=ostree.summary.expires-note='soon'",
            "--add-metadata=flag=true",
        ])
        .arg(format!("--repo={}", mine.display())));
    assert!(fs::read(mine.join("summary")).unwrap() == fs::read(theirs.join("summary")).unwrap());
}
