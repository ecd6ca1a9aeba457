//! Issue 14, prune: the same commits and objects remain as after `ostree prune` with the
//! equivalent options on a copy of the repo; policies that name a missing ref or leave a
//! ref without a policy refuse before deleting anything; SIGKILL at any point leaves a repo
//! `ostree fsck` accepts.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::support::files::*;
use crate::support::ostree::*;
use crate::support::*;

const DAY: u64 = 86_400;

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// `refs` × `n` commits (commit i of a ref is `n - i` days and an hour old), each adding
/// `files` unique files to a shared base, plus deltas to the newest and the oldest commit
/// of the first ref.
fn history(
    dir: &Path,
    refs: &[&str],
    n: u64,
    files: usize,
) -> (PathBuf, BTreeMap<String, Vec<String>>) {
    let repo = dir.join("repo");
    our_init(&repo);
    let mut rng = Rng(0x1414);
    let mut commits: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for r in refs {
        let tree = dir.join(format!("tree-{}", r.replace('/', "_")));
        fs::create_dir_all(tree.join("base")).unwrap();
        fs::write(tree.join("base/shared"), b"in every commit\n").unwrap();
        for i in 0..n {
            let d = tree.join(format!("gen{i}"));
            fs::create_dir_all(&d).unwrap();
            for f in 0..files {
                write_random(
                    &d.join(format!("f{f}")),
                    64 + rng.below(4000) as usize,
                    &mut rng,
                );
            }
            let ts = now() - (n - i) * DAY - 3600;
            let c = capture(
                ours()
                    .arg("commit")
                    .arg(format!("--repo={}", repo.display()))
                    .args(["-b", r, &format!("--timestamp=@{ts}")])
                    .arg(format!("--tree=dir={}", tree.display())),
            );
            commits.entry(r.to_string()).or_default().push(c);
        }
    }
    let first = &commits[refs[0]];
    for args in [
        vec![format!("--to={}", first[n as usize - 1])],
        vec!["--empty".to_string(), format!("--to={}", first[0])],
    ] {
        run(ours()
            .args(["static-delta", "generate"])
            .arg(format!("--repo={}", repo.display()))
            .args(&args));
    }
    (repo, commits)
}

fn copy(repo: &Path, to: &Path) {
    run(Command::new("cp").arg("-a").arg(repo).arg(to));
}

fn our_prune(repo: &Path, args: &[&str]) {
    run(ours()
        .arg("prune")
        .arg(format!("--repo={}", repo.display()))
        .args(args));
}

fn deltas(repo: &Path) -> String {
    capture(ostree(repo).args(["static-delta", "list"]))
}

/// Same loose objects (names only: both sides delete, never rewrite), same refs, same
/// deltas, and both pass `ostree fsck`.
fn assert_same_state(mine: &Path, theirs: &Path) {
    fsck(mine);
    fsck(theirs);
    let a: Vec<String> = objects(mine).into_keys().collect();
    let b: Vec<String> = objects(theirs).into_keys().collect();
    let only_a: Vec<_> = a.iter().filter(|x| !b.contains(x)).collect();
    let only_b: Vec<_> = b.iter().filter(|x| !a.contains(x)).collect();
    assert!(
        only_a.is_empty() && only_b.is_empty(),
        "objects differ; only ours: {only_a:?}; only ostree's: {only_b:?}"
    );
    assert_eq!(
        capture(ostree(mine).args(["refs"])),
        capture(ostree(theirs).args(["refs"]))
    );
    assert_eq!(deltas(mine), deltas(theirs));
}

fn commit_objects(repo: &Path) -> usize {
    objects(repo)
        .keys()
        .filter(|k| k.ends_with(".commit"))
        .count()
}

#[test]
fn policy_prune_leaves_what_ostree_prune_leaves() {
    require(&["ostree"]);
    let tmp = tempfile::tempdir().unwrap();
    let (repo, commits) = history(tmp.path(), &["os/a", "os/b", "os/c", "os/d"], 5, 3);
    let theirs = tmp.path().join("theirs");
    copy(&repo, &theirs);
    let policy = tmp.path().join("policy.yaml");
    fs::write(
        &policy,
        "refs:\n  os/a: { keep: depth:1 }\n  os/b: { keep: time:3d }\n  os/c: { keep: all }\n  os/d: { keep: delete }\n",
    )
    .unwrap();
    let before = commit_objects(&repo);
    our_prune(&repo, &[&format!("--policy={}", policy.display())]);
    // What fedora-ostree-pruner runs for the same policy.
    run(ostree(&theirs).args(["refs", "--delete", "os/d"]));
    run(ostree(&theirs).args([
        "prune",
        "--commit-only",
        "--refs-only",
        "--only-branch=os/a",
        "--depth=1",
    ]));
    run(ostree(&theirs).args([
        "prune",
        "--commit-only",
        "--refs-only",
        "--only-branch=os/b",
        "--keep-younger-than=3 days ago",
    ]));
    run(ostree(&theirs).args(["prune", "--refs-only"]));
    assert_same_state(&repo, &theirs);
    // a: head + 1 parent; b: the two commits younger than 3 days (1d1h and 2d1h old);
    // c: all 5; d: none.
    assert_eq!(commit_objects(&repo), 2 + 2 + 5);
    assert!(before > commit_objects(&repo));
    // The delta to a's oldest commit went with it; the one to its head stayed.
    let d = deltas(&repo);
    assert!(!d.contains(&commits["os/a"][0]), "{d}");
    assert!(d.contains(&commits["os/a"][4]), "{d}");
}

#[test]
fn options_prune_like_ostree() {
    require(&["ostree"]);
    let tmp = tempfile::tempdir().unwrap();
    let (repo, commits) = history(tmp.path(), &["os/a", "os/b"], 4, 2);
    let cases: Vec<Vec<String>> = vec![
        vec!["--refs-only".into(), "--depth=0".into()],
        vec![
            "--refs-only".into(),
            "--keep-younger-than=2 days ago".into(),
        ],
        vec!["--only-branch=os/b".into(), "--depth=1".into()],
        vec![format!("--delete-commit={}", commits["os/a"][1])],
        vec![
            format!("--delete-commit={}", commits["os/a"][0]),
            "--static-deltas-only".into(),
        ],
    ];
    for (i, args) in cases.iter().enumerate() {
        let mine = tmp.path().join(format!("mine{i}"));
        let theirs = tmp.path().join(format!("theirs{i}"));
        copy(&repo, &mine);
        copy(&repo, &theirs);
        let args: Vec<&str> = args.iter().map(|s| s.as_str()).collect();
        our_prune(&mine, &args);
        run(ostree(&theirs).arg("prune").args(&args));
        assert_same_state(&mine, &theirs);
        if args[0].starts_with("--delete-commit") && args.len() == 1 {
            // ostree turns tombstones on and leaves one for the deleted commit.
            let t = objects(&mine)
                .keys()
                .filter(|k| k.ends_with(".tombstone-commit"))
                .count();
            assert_eq!(t, 1, "{args:?}");
            let cfg = fs::read_to_string(mine.join("config")).unwrap();
            assert!(cfg.contains("tombstone-commits=true"), "{cfg}");
        }
    }
    // --delete-commit of a ref's commit is refused, as by ostree.
    let out = ours()
        .arg("prune")
        .arg(format!("--repo={}", repo.display()))
        .arg(format!("--delete-commit={}", commits["os/a"][3]))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("is referenced by 'os/a'"));
}

#[test]
fn bad_policies_refuse_before_deleting_anything() {
    require(&["ostree"]);
    let tmp = tempfile::tempdir().unwrap();
    let (repo, _) = history(tmp.path(), &["os/a", "os/b"], 3, 1);
    let before = objects(&repo);
    let refs_before = capture(ostree(&repo).arg("refs"));
    let cases = [
        (
            "refs:\n  os/a: { keep: depth:0 }\n  os/b: { keep: all }\n  os/gone: { keep: all }\n",
            "not in",
        ),
        (
            "refs:\n  os/a: { keep: depth:0 }\n",
            "without a prune policy",
        ),
        (
            "refs:\n  os/a: { keep: depth:0 }\n  os/b: { keep: someday }\n",
            "invalid keep policy",
        ),
        (
            "refs:\n  os/a: { keep: delete }\n  os/b: { kep: all }\n",
            "kep",
        ),
    ];
    for (text, expect) in cases {
        let policy = tmp.path().join("policy.yaml");
        fs::write(&policy, text).unwrap();
        let out = ours()
            .arg("prune")
            .arg(format!("--repo={}", repo.display()))
            .arg(format!("--policy={}", policy.display()))
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "accepted:\n{text}");
        assert!(err.contains(expect), "for\n{text}\nunexpected error: {err}");
        assert!(
            err.contains("policy"),
            "the error should name the policy: {err}"
        );
        assert_eq!(
            objects(&repo),
            before,
            "objects changed after a refused prune"
        );
        assert_eq!(capture(ostree(&repo).arg("refs")), refs_before);
    }
    let out = ours()
        .arg("prune")
        .arg(format!("--repo={}", repo.display()))
        .arg("--policy=/nonexistent/policy.yaml")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/policy.yaml"));
}

/// SIGKILL at several moments of a prune that deletes thousands of objects: every
/// interrupted repo passes `ostree fsck`, and finishing the prune gives what ostree leaves.
#[test]
fn sigkill_during_prune_leaves_a_repo_fsck_accepts() {
    require(&["ostree"]);
    let tmp = tempfile::tempdir().unwrap();
    let (repo, _) = history(tmp.path(), &["os/a", "os/b", "os/c"], 6, 150);
    let theirs = tmp.path().join("theirs");
    copy(&repo, &theirs);
    run(ostree(&theirs).args(["prune", "--refs-only", "--depth=0"]));
    let mut interrupted = 0;
    for (i, delay_ms) in [1u64, 5, 15, 30, 60, 100, 150, 250].into_iter().enumerate() {
        let work = tmp.path().join(format!("kill{i}"));
        copy(&repo, &work);
        let mut child = ours()
            .arg("prune")
            .arg(format!("--repo={}", work.display()))
            .args(["--refs-only", "--depth=0"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(delay_ms));
        let finished = child.try_wait().unwrap().is_some();
        let _ = child.kill();
        let _ = child.wait();
        if !finished && objects(&work).len() != objects(&theirs).len() {
            interrupted += 1;
        }
        fsck(&work);
        our_prune(&work, &["--refs-only", "--depth=0"]);
        assert_same_state(&work, &theirs);
        let _ = fs::remove_dir_all(&work);
    }
    assert!(
        interrupted >= 2,
        "only {interrupted} kills landed mid-prune; the test did not exercise a crash"
    );
}
