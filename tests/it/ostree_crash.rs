//! Acceptance 4 of issue 2: SIGKILL of `atomic-factory commit` at 20 random moments during a
//! large commit never leaves a repo `ostree fsck` rejects nor a ref to a missing object, and
//! the next commit succeeds.

use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::files::*;
use crate::support::ostree::*;
use crate::support::*;

/// About 64 MiB in 400 files of mixed size, some compressible.
fn build_large_tree(root: &Path) {
    let mut rng = Rng(0xdead_beef_0042);
    for d in 0..20 {
        let dir = root.join(format!("d{d:02}/sub"));
        fs::create_dir_all(&dir).unwrap();
        for f in 0..20 {
            let size = match rng.below(10) {
                0 => (1 << 20) + rng.below(1 << 20) as usize, // 1-2 MiB
                1..=3 => 4096 + rng.below(200_000) as usize,
                _ => rng.below(8192) as usize,
            };
            let p = dir.join(format!("f{f:02}"));
            if rng.below(3) == 0 {
                fs::write(
                    &p,
                    format!("line {f} of a compressible file\n").repeat(size / 32 + 1),
                )
                .unwrap();
            } else {
                write_random(&p, size, &mut rng);
            }
        }
    }
}

fn commit_cmd(repo: &Path, tree: &Path, branch: &str) -> Command {
    let mut c = ours();
    c.arg("commit")
        .arg(format!("--repo={}", repo.display()))
        .args(["-b", branch, "--timestamp=@1700000000"])
        .arg(format!("--tree=dir={}", tree.display()))
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    c
}

/// Every ref names a commit whose objects are all present (fsck walks them).
fn assert_consistent(repo: &Path, what: &str) {
    for e in walkdir::WalkDir::new(repo.join("refs/heads")).min_depth(1) {
        let e = e.unwrap();
        if e.file_type().is_file() {
            let text = fs::read_to_string(e.path()).unwrap();
            assert!(
                text.len() == 65 && text.ends_with('\n'),
                "{what}: ref {} is not 64 hex + newline: {text:?}",
                e.path().display()
            );
            let hex = text.trim_end();
            let obj = repo
                .join("objects")
                .join(&hex[..2])
                .join(format!("{}.commit", &hex[2..]));
            assert!(
                obj.exists(),
                "{what}: ref {} points to missing commit {hex}",
                e.path().display()
            );
        }
    }
    let out = ostree(repo).arg("fsck").output().unwrap();
    assert!(
        out.status.success(),
        "{what}: ostree fsck failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn sigkill_during_commit_never_corrupts_the_repo() {
    require(&["ostree"]);
    let tmp = tempfile::tempdir().unwrap();
    let tree = tmp.path().join("tree");
    build_large_tree(&tree);
    let small = tmp.path().join("small");
    fs::create_dir_all(&small).unwrap();
    fs::write(small.join("f"), b"first version").unwrap();

    // Calibrate: how long does a full commit take here?
    let cal = tmp.path().join("cal");
    our_init(&cal);
    let t0 = Instant::now();
    assert!(commit_cmd(&cal, &tree, "main").status().unwrap().success());
    let full = t0.elapsed();
    fs::remove_dir_all(&cal).unwrap();

    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        | 1;
    eprintln!("full commit takes {full:?}; kill-moment seed {seed:#x}");
    let mut rng = Rng(seed);
    let mut killed_mid_way = 0;
    for i in 0..20 {
        let repo = tmp.path().join(format!("repo{i}"));
        our_init(&repo);
        // An existing ref, so a kill must leave either the old or the new commit behind.
        assert!(
            commit_cmd(&repo, &small, "main")
                .status()
                .unwrap()
                .success()
        );
        let before = fs::read_to_string(repo.join("refs/heads/main")).unwrap();
        let at = Duration::from_micros(rng.below(full.as_micros() as u64 * 11 / 10 + 1));
        let mut child = commit_cmd(&repo, &tree, "main").spawn().unwrap();
        std::thread::sleep(at);
        let _ = child.kill(); // SIGKILL
        let status = child.wait().unwrap();
        let after = fs::read_to_string(repo.join("refs/heads/main")).unwrap();
        if !status.success() {
            killed_mid_way += 1;
            assert!(
                after == before || status.code().is_none(),
                "run {i}: ref moved by a failed commit"
            );
        }
        assert_consistent(&repo, &format!("run {i}, killed after {at:?}"));
        // The next commit succeeds and yields a consistent repo.
        let out = commit_cmd(&repo, &tree, "main")
            .stderr(Stdio::piped())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "run {i}: commit after the kill failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_consistent(&repo, &format!("run {i}, after re-commit"));
        fs::remove_dir_all(&repo).unwrap();
    }
    assert!(
        killed_mid_way >= 10,
        "only {killed_mid_way} of 20 kills hit a running commit; the test did not test much"
    );
}
