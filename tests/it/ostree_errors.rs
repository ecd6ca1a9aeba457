//! Acceptance 5 of issue 2: bad input gets a clear error naming the path and leaves no ref.

#![allow(
    unsafe_code,
    reason = "mkfifo and mknod make the special files the tests feed in"
)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::files::*;
use crate::support::ostree::*;
use crate::support::*;

/// Runs our commit, expects failure, returns stderr; checks no panic and no ref was written.
fn commit_fails(repo: &Path, tree: &Path, branch: &str, wrap: Option<&[&str]>) -> String {
    let mut cmd = match wrap {
        Some(w) => {
            let mut c = Command::new(w[0]);
            c.args(&w[1..]).arg(BIN);
            c
        }
        None => ours(),
    };
    let out = cmd
        .arg("commit")
        .arg(format!("--repo={}", repo.display()))
        .arg(format!("--branch={branch}"))
        .arg(format!("--tree=dir={}", tree.display()))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        !out.status.success(),
        "commit of {} should have failed",
        tree.display()
    );
    assert!(
        !err.contains("panicked"),
        "panic instead of an error: {err}"
    );
    assert!(
        err.lines().any(|l| l.starts_with("error: ")),
        "no `error: ` line: {err}"
    );
    if repo.join("refs/heads").exists() {
        assert!(
            !repo.join("refs/heads").join(branch).exists(),
            "a ref was written despite the error: {err}"
        );
        assert_eq!(
            fs::read_dir(repo.join("refs/heads")).unwrap().count(),
            0,
            "refs/heads is not empty"
        );
    }
    err
}

fn tree_with(tmp: &Path, name: &str, make: impl FnOnce(&Path)) -> (PathBuf, PathBuf) {
    let tree = tmp.join(format!("tree-{name}"));
    fs::create_dir_all(tree.join("ok")).unwrap();
    fs::write(tree.join("ok/file"), b"fine").unwrap();
    let bad = tree.join("ok").join(name);
    make(&bad);
    (tree, bad)
}

/// Creates a special file at the given path.
type Maker = Box<dyn FnOnce(&Path)>;

fn cpath(p: &Path) -> std::ffi::CString {
    std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).unwrap()
}

#[test]
fn special_files_are_rejected_with_their_path() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path().join("repo");
    our_init(&repo);
    let makers: Vec<(&str, &str, Maker)> = vec![
        (
            "fifo",
            "is a fifo",
            Box::new(|p: &Path| {
                // SAFETY: valid path; creating a fifo.
                assert_eq!(unsafe { libc::mkfifo(cpath(p).as_ptr(), 0o644) }, 0);
            }),
        ),
        (
            "socket",
            "is a socket",
            Box::new(|p: &Path| {
                let l = std::os::unix::net::UnixListener::bind(p).unwrap();
                std::mem::forget(l);
            }),
        ),
        (
            "device",
            "is a character device",
            Box::new(|p: &Path| {
                // SAFETY: valid path; we are root in CI (mknod of /dev/null's numbers).
                let r = unsafe {
                    libc::mknod(
                        cpath(p).as_ptr(),
                        libc::S_IFCHR | 0o644,
                        libc::makedev(1, 3),
                    )
                };
                assert_eq!(
                    r,
                    0,
                    "mknod needs root: {}",
                    std::io::Error::last_os_error()
                );
            }),
        ),
    ];
    for (name, what, make) in makers {
        let (tree, bad) = tree_with(tmp.path(), name, make);
        let err = commit_fails(&repo, &tree, "main", None);
        assert!(
            err.contains(&bad.display().to_string()) && err.contains(what),
            "{name}: {err}"
        );
    }
    fsck(&repo);
}

#[test]
fn unreadable_file_is_reported_with_its_path() {
    // Root reads everything, so drop CAP_DAC_OVERRIDE/CAP_DAC_READ_SEARCH from the bounding
    // set with setpriv (util-linux): then a 0000 file owned by someone else is unreadable.
    require(&["setpriv"]);
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path().join("repo");
    our_init(&repo);
    let (tree, bad) = tree_with(tmp.path(), "locked", |p| {
        fs::write(p, b"secret").unwrap();
        chmod(p, 0o000);
        chown(p, 4321, 4321);
    });
    let wrap = [
        "setpriv",
        "--bounding-set=-dac_override,-dac_read_search",
        "--inh-caps=-dac_override,-dac_read_search",
        "--",
    ];
    let err = commit_fails(&repo, &tree, "main", Some(&wrap));
    assert!(
        err.contains(&bad.display().to_string()) && err.contains("Permission denied"),
        "{err}"
    );
    fsck(&repo);
}

#[test]
fn not_a_repo_bad_ref_and_missing_tree() {
    let tmp = tempfile::tempdir().unwrap();
    let (tree, _) = tree_with(tmp.path(), "plain", |p| fs::write(p, b"x").unwrap());

    let not_repo = tmp.path().join("just-a-dir");
    fs::create_dir(&not_repo).unwrap();
    let err = commit_fails(&not_repo, &tree, "main", None);
    assert!(
        err.contains(&not_repo.display().to_string()) && err.contains("not an ostree repository"),
        "{err}"
    );
    assert_eq!(
        fs::read_dir(&not_repo).unwrap().count(),
        0,
        "wrote into a non-repo"
    );

    let repo = tmp.path().join("repo");
    our_init(&repo);
    for bad in ["bad ref", "-x", "a//b", "a/", "../escape"] {
        let err = commit_fails(&repo, &tree, bad, None);
        assert!(err.contains(&format!("invalid ref name '{bad}'")), "{err}");
    }
    let missing = tmp.path().join("no/such/tree");
    let err = commit_fails(&repo, &missing, "main", None);
    assert!(
        err.contains(&missing.display().to_string()) && err.contains("does not exist"),
        "{err}"
    );
    // Nothing was written for the failed commits: no object at all.
    assert!(
        objects(&repo).is_empty(),
        "objects written by failed commits"
    );
    fsck(&repo);
}
