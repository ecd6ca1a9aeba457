//! Issue 18: objects are made durable per transaction, not per object. Traced with strace
//! around the real binary: no object appears under objects/ before its bytes were synced
//! (syncfs after its last write, or an fsync of it), the commit object appears only after
//! every other object is in place and synced, the ref only after the commit, and the number
//! of fsyncs does not grow with the number of objects.

use std::collections::HashMap;
use std::fs;
use std::path::Path;
use std::process::Command;

use crate::support::files::*;
use crate::support::ostree::*;
use crate::support::*;

#[derive(Debug)]
enum Event {
    /// A write to, or the close of, a file (by path).
    Touch(String),
    /// fsync/fdatasync of a file (by path).
    Fsync(String),
    Syncfs,
    Rename {
        from: String,
        to: String,
    },
}

/// `5</path/to/file>` at the start of the argument list -> the path.
fn fd_path(args: &str) -> Option<String> {
    let start = args.find('<')? + 1;
    let end = args[start..].find('>')? + start;
    Some(args[start..end].to_string())
}

/// The quoted strings of an argument list (rename's paths).
fn quoted(args: &str) -> Vec<String> {
    args.split('"')
        .enumerate()
        .filter(|(i, _)| i % 2 == 1)
        .map(|(_, s)| s.to_string())
        .collect()
}

fn event(syscall: &str, args: &str) -> Option<Event> {
    match syscall {
        "write" | "writev" | "pwrite64" | "close" => fd_path(args).map(Event::Touch),
        "fsync" | "fdatasync" => fd_path(args).map(Event::Fsync),
        "syncfs" => Some(Event::Syncfs),
        "rename" | "renameat" | "renameat2" => {
            let q = quoted(args);
            (q.len() >= 2).then(|| Event::Rename {
                from: q[0].clone(),
                to: q[1].clone(),
            })
        }
        _ => None,
    }
}

/// Parses `strace -f -y` output into events in the order they completed (a rename counts
/// from when it started: the conservative side for "synced before visible").
fn parse(log: &str) -> Vec<Event> {
    let mut unfinished: HashMap<&str, (String, String)> = HashMap::new();
    let mut out = Vec::new();
    for line in log.lines() {
        let Some((pid, rest)) = line.split_once(' ') else {
            continue;
        };
        let rest = rest.trim_start();
        if let Some(r) = rest.strip_prefix("<... ") {
            let name = r.split(' ').next().unwrap_or("");
            if let Some((syscall, args)) = unfinished.remove(pid)
                && syscall == name
                && !syscall.starts_with("rename")
                && let Some(e) = event(&syscall, &args)
            {
                out.push(e);
            }
            continue;
        }
        let Some((syscall, args)) = rest.split_once('(') else {
            continue;
        };
        if args.ends_with("<unfinished ...>") {
            if syscall.starts_with("rename")
                && let Some(e) = event(syscall, args)
            {
                out.push(e);
            }
            unfinished.insert(pid, (syscall.to_string(), args.to_string()));
        } else if let Some(e) = event(syscall, args) {
            out.push(e);
        }
    }
    out
}

fn build_tree(root: &Path) {
    let mut rng = Rng(0x5eed_0018);
    for d in 0..4 {
        let dir = root.join(format!("d{d}"));
        fs::create_dir_all(&dir).unwrap();
        for f in 0..15 {
            let p = dir.join(format!("f{f:02}"));
            match f % 3 {
                0 => write_random(&p, 1000 + rng.below(300_000) as usize, &mut rng),
                1 => fs::write(&p, format!("text file {d}/{f}\n").repeat(f * 50 + 1)).unwrap(),
                _ => write_random(&p, rng.below(5000) as usize, &mut rng),
            }
        }
        std::os::unix::fs::symlink("f00", dir.join("link")).unwrap();
    }
}

#[test]
fn objects_become_visible_only_after_their_data_is_synced() {
    require(&["ostree"]);
    require(&["strace"]);
    let tmp = tempfile::tempdir().unwrap();
    let tree = tmp.path().join("tree");
    build_tree(&tree);
    let repo = tmp.path().join("repo");
    our_init(&repo);
    let log = tmp.path().join("strace.log");
    let out = Command::new("strace")
        .args(["-f", "-qq", "-y", "-s", "0", "-o"])
        .arg(&log)
        .args([
            "-e",
            "trace=write,writev,pwrite64,close,fsync,fdatasync,syncfs,rename,renameat,renameat2",
        ])
        .arg(BIN)
        .arg("commit")
        .arg(format!("--repo={}", repo.display()))
        .args(["-b", "main", "--timestamp=@1700000000"])
        .arg(format!("--tree=dir={}", tree.display()))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "traced commit failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    fsck(&repo);
    let events = parse(&fs::read_to_string(&log).unwrap());

    let objects_dir = format!("{}/objects/", repo.display());
    let mut last_touch: HashMap<&str, usize> = HashMap::new();
    let mut synced_file: HashMap<&str, usize> = HashMap::new();
    let mut last_syncfs: Option<usize> = None;
    let mut last_object_rename: Option<usize> = None;
    let mut commit_rename: Option<usize> = None;
    let mut ref_rename: Option<usize> = None;
    let mut object_renames = 0;
    let mut fsyncs = 0;
    for (i, e) in events.iter().enumerate() {
        match e {
            Event::Touch(p) => {
                last_touch.insert(p, i);
            }
            Event::Fsync(p) => {
                fsyncs += 1;
                synced_file.insert(p, i);
            }
            Event::Syncfs => last_syncfs = Some(i),
            Event::Rename { from, to } if to.starts_with(&objects_dir) => {
                object_renames += 1;
                let written = last_touch.get(from.as_str()).copied();
                let Some(written) = written else {
                    panic!("{to}: its staging file {from} was never written in the trace");
                };
                let synced = last_syncfs.is_some_and(|s| s > written)
                    || synced_file.get(from.as_str()).is_some_and(|&s| s > written);
                assert!(
                    synced,
                    "{to} became visible (rename from {from}) before its data was synced"
                );
                if to.ends_with(".commit") {
                    assert!(
                        last_object_rename
                            .is_some_and(|o| last_syncfs.is_some_and(|s| s > o) && o < i),
                        "the commit object became visible before the objects it names \
                         were durably in place"
                    );
                    commit_rename = Some(i);
                } else {
                    assert!(
                        commit_rename.is_none(),
                        "{to} was moved into objects/ after the commit object"
                    );
                    last_object_rename = Some(i);
                }
            }
            Event::Rename { to, .. } if to.ends_with("/refs/heads/main") => {
                ref_rename = Some(i);
            }
            Event::Rename { .. } => {}
        }
    }
    let n_objects = objects(&repo).len();
    assert!(
        object_renames >= n_objects,
        "the trace shows {object_renames} renames into objects/ for {n_objects} objects: \
         the trace is incomplete"
    );
    let (Some(c), Some(r)) = (commit_rename, ref_rename) else {
        panic!("no commit rename ({commit_rename:?}) or ref rename ({ref_rename:?}) traced");
    };
    assert!(r > c, "the ref moved before the commit object was in place");
    let synced_before_ref = events[c..r]
        .iter()
        .any(|e| matches!(e, Event::Syncfs | Event::Fsync(_)));
    assert!(
        synced_before_ref,
        "the ref moved before the commit was synced"
    );
    // One sync per transaction, not per object: the fsyncs left are the ref's file and dir.
    assert!(
        fsyncs <= 4,
        "{fsyncs} fsyncs for {n_objects} objects: objects are being synced one by one"
    );
}
