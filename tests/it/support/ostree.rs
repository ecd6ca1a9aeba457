//! The real `ostree` as oracle: repositories it makes, checks and pulls, and object-level
//! comparison of its repositories with ours.

use std::collections::BTreeMap;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::{capture, ours, require, run};

/// The real `ostree` on `repo`.
pub fn ostree(repo: &Path) -> Command {
    require(&["ostree"]);
    let mut c = Command::new("ostree");
    c.arg(format!("--repo={}", repo.display()));
    c
}

/// A new archive repository made by the real `ostree init`.
pub fn ostree_init(repo: &Path) {
    run(Command::new("ostree")
        .arg("init")
        .arg(format!("--repo={}", repo.display()))
        .arg("--mode=archive"));
}

/// A new repository made by our `init`.
pub fn our_init(repo: &Path) {
    run(ours().arg("init").arg(format!("--repo={}", repo.display())));
}

/// The real `ostree fsck` must accept `repo`.
pub fn fsck(repo: &Path) {
    run(ostree(repo).arg("fsck"));
}

/// Object files below `repo/objects`, as "XX/rest.ext" -> path.
pub fn objects(repo: &Path) -> BTreeMap<String, PathBuf> {
    let mut out = BTreeMap::new();
    for e in walkdir::WalkDir::new(repo.join("objects")).min_depth(2) {
        let e = e.unwrap();
        if e.file_type().is_file() {
            let rel = e
                .path()
                .strip_prefix(repo.join("objects"))
                .unwrap()
                .to_string_lossy()
                .into_owned();
            out.insert(rel, e.path().to_path_buf());
        }
    }
    out
}

/// Splits a `.filez` into (header bytes, inflated content).
pub fn split_filez(path: &Path) -> (Vec<u8>, Vec<u8>) {
    let b = fs::read(path).unwrap();
    let n = u32::from_be_bytes(b[0..4].try_into().unwrap()) as usize;
    let header = b[..8 + n].to_vec();
    let mut content = Vec::new();
    if b.len() > 8 + n {
        flate2::read::DeflateDecoder::new(&b[8 + n..])
            .read_to_end(&mut content)
            .unwrap();
    }
    (header, content)
}

/// Asserts that two repos hold the same objects: metadata byte-identical, `.filez` with the
/// same header and the same inflated content.
pub fn assert_same_objects(ours: &Path, theirs: &Path) {
    let a = objects(ours);
    let b = objects(theirs);
    let names_a: Vec<_> = a.keys().collect();
    let names_b: Vec<_> = b.keys().collect();
    assert_eq!(
        names_a,
        names_b,
        "object names differ between {} and {}",
        ours.display(),
        theirs.display()
    );
    for (name, pa) in &a {
        let pb = &b[name];
        if name.ends_with(".filez") {
            let (ha, ca) = split_filez(pa);
            let (hb, cb) = split_filez(pb);
            assert_eq!(ha, hb, "{name}: .filez headers differ");
            assert!(ca == cb, "{name}: inflated content differs");
        } else {
            assert!(
                fs::read(pa).unwrap() == fs::read(pb).unwrap(),
                "{name}: bytes differ"
            );
        }
    }
}

/// The last-modified value of a summary, read through the real ostree's `--view`.
pub fn ostree_last_modified(repo: &Path) -> u64 {
    let view = capture(ostree(repo).args(["summary", "--view"]));
    let line = view
        .lines()
        .find(|l| l.starts_with("Last-Modified"))
        .expect("Last-Modified line");
    let date = line.rsplit(": ").next().unwrap().trim_end_matches("+00");
    let out = capture(Command::new("date").args(["-u", "-d", &format!("{date}Z"), "+%s"]));
    out.parse().unwrap()
}

/// Pulls `refname` from `url` into a fresh archive repo at `dest` with the real ostree, then fscks it.
pub fn ostree_pull(url: &str, refname: &str, dest: &Path) {
    ostree_init(dest);
    run(ostree(dest).args(["remote", "add", "--no-gpg-verify", "origin", url]));
    run(ostree(dest).args(["pull", "origin", refname]));
    fsck(dest);
}
