//! Acceptance for bad input (issue 3, item 3): each case fails with a clear error naming
//! the input, and leaves no new commit (the ref stays where it was, no commit object added).

use std::path::Path;

use crate::support::compose::*;
use crate::support::require;

fn commit_objects(repo: &Path) -> usize {
    walkdir::WalkDir::new(repo.join("objects"))
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.path().extension().is_some_and(|x| x == "commit"))
        .count()
}

/// A work dir with a good first commit; returns (work, treefile, first commit).
fn with_good_commit() -> (Work, std::path::PathBuf, String) {
    require(&["rpmbuild", "createrepo_c", "ostree"]);
    let w = Work::new();
    w.add(&Spec::new("setup", "1").file("/etc/passwd", b"root:x:0:0::/root:/bin/sh\n", 0o644));
    w.add(
        &Spec::new("good", "1")
            .file("/usr/share/good/a", b"a\n", 0o644)
            .req("setup"),
    );
    createrepo(&w.rpms());
    let tf = w.treefile(&["good"], "");
    let c = w.compose(&tf).unwrap().commit.to_string();
    (w, tf, c)
}

/// Asserts the compose failed without touching the ref or adding a commit.
fn assert_no_new_commit(w: &Work, before: &str) {
    assert_eq!(
        w.ref_commit().as_deref(),
        Some(before),
        "the ref must not move"
    );
    assert_eq!(
        commit_objects(&w.repo()),
        1,
        "no commit object may be written"
    );
    ostree_stdout(&["fsck", &format!("--repo={}", w.repo().display())]);
}

#[test]
fn truncated_rpm() {
    let (w, tf, c) = with_good_commit();
    let p = w.add(&Spec::new("big", "1").file("/usr/share/big/blob", &vec![7u8; 200_000], 0o644));
    createrepo(&w.rpms());
    let len = std::fs::metadata(&p).unwrap().len();
    let f = std::fs::OpenOptions::new().write(true).open(&p).unwrap();
    f.set_len(len / 2).unwrap();
    let tf2 = w.treefile(&["good", "big"], "");
    assert_eq!(tf, tf2);
    let e = err_text(w.compose(&tf2));
    assert!(
        e.contains("big-1-1.noarch") && e.contains("primary.xml"),
        "{e}"
    );
    assert_no_new_commit(&w, &c);
}

#[test]
fn checksum_differs_from_primary_xml() {
    let (w, _, c) = with_good_commit();
    let p = w.add(&Spec::new("evil", "1").file("/usr/share/evil/x", b"innocent\n", 0o644));
    createrepo(&w.rpms());
    // Replace the package after createrepo_c ran: a different, valid RPM of the same name.
    let other = tempfile::tempdir().unwrap();
    let q = Spec::new("evil", "1")
        .file("/usr/share/evil/x", b"malicious\n", 0o644)
        .build(other.path());
    std::fs::copy(q, &p).unwrap();
    let tf = w.treefile(&["good", "evil"], "");
    let e = err_text(w.compose(&tf));
    assert!(
        e.contains("evil-1-1.noarch") && e.contains("(primary.xml) says"),
        "{e}"
    );
    assert_no_new_commit(&w, &c);
}

#[test]
fn payload_path_with_dotdot() {
    let (w, _, c) = with_good_commit();
    let pkg = rpm::PackageBuilder::new("escape", "1", "MIT", "noarch", "escapes the root")
        .using_config(rpm::BuildConfig::default().compression(rpm::CompressionType::Zstd))
        .with_file_contents("pwned\n", rpm::FileOptions::new("/usr/../../etc/evil"))
        .unwrap()
        .build()
        .unwrap();
    pkg.write_file(w.rpms().join("escape-1-1.noarch.rpm"))
        .unwrap();
    createrepo(&w.rpms());
    let tf = w.treefile(&["good", "escape"], "");
    let e = err_text(w.compose(&tf));
    assert!(
        e.contains("escape-1-1.noarch") && e.contains("/usr/../../etc/evil") && e.contains("`..`"),
        "{e}"
    );
    assert_no_new_commit(&w, &c);
}

/// Writes `pkg` into the work dir's rpms and composes `good` + `name`, expecting failure.
fn compose_hostile(w: &Work, pkg: rpm::Package, name: &str) -> String {
    pkg.write_file(w.rpms().join(format!("{name}-1-1.noarch.rpm")))
        .unwrap();
    createrepo(&w.rpms());
    let tf = w.treefile(&["good", name], "");
    err_text(w.compose(&tf))
}

fn hostile_builder(name: &str) -> rpm::PackageBuilder {
    let mut b = rpm::PackageBuilder::new(name, "1", "MIT", "noarch", "hostile payload");
    b.using_config(rpm::BuildConfig::default().compression(rpm::CompressionType::Zstd));
    b
}

/// A symlink to a directory outside /usr, then a file "under" it: the file must not land
/// in the symlink's target (that is how tar and cpio extraction get escaped).
#[test]
fn payload_file_under_a_symlink() {
    let (w, _, c) = with_good_commit();
    let pkg = hostile_builder("linked")
        .with_symlink(rpm::FileOptions::symlink("/usr/share/linked", "/etc"))
        .unwrap()
        .with_file_contents("pwned\n", rpm::FileOptions::new("/usr/share/linked/evil"))
        .unwrap()
        .build()
        .unwrap();
    let e = compose_hostile(&w, pkg, "linked");
    // The message names the path but not yet the package.
    assert!(
        e.contains("/usr/share/linked/evil") && e.contains("a file is in the way"),
        "{e}"
    );
    assert_no_new_commit(&w, &c);
}

#[test]
fn unknown_treefile_key() {
    let (w, _, c) = with_good_commit();
    let tf = w.treefile(&["good"], "packags: [oops]\n");
    let e = err_text(w.compose(&tf));
    assert!(
        e.contains("unknown key `packags`") && e.contains("tf.yaml"),
        "{e}"
    );
    assert_no_new_commit(&w, &c);
    let tf = w.treefile(&["good"], "postprocess-script: post.sh\n");
    let e = err_text(w.compose(&tf));
    assert!(
        e.contains("`postprocess-script`") && e.contains("not implement"),
        "{e}"
    );
    assert_no_new_commit(&w, &c);
}

#[test]
fn repo_file_pointing_nowhere() {
    let (w, tf, c) = with_good_commit();
    std::fs::write(
        w.path().join("t.repo"),
        "[t]\nbaseurl=file:///nonexistent/repo\n",
    )
    .unwrap();
    let e = err_text(w.compose(&tf));
    assert!(
        e.contains("t.repo") && e.contains("/nonexistent/repo") && e.contains("baseurl"),
        "{e}"
    );
    assert_no_new_commit(&w, &c);
    // A repos entry with no .repo file at all.
    let tf = w.path().join("tf2.yaml");
    std::fs::write(
        &tf,
        "ref: test/x86_64/base\nrepos: [missing]\npackages: [good]\n",
    )
    .unwrap();
    let e = err_text(w.compose(&tf));
    assert!(e.contains("missing.repo"), "{e}");
    assert_no_new_commit(&w, &c);
}

#[test]
fn conflicting_files() {
    let (w, _, c) = with_good_commit();
    w.add(&Spec::new("one", "1").file("/usr/share/same/path", b"from one\n", 0o644));
    w.add(&Spec::new("two", "1").file("/usr/share/same/path", b"from two\n", 0o644));
    createrepo(&w.rpms());
    let tf = w.treefile(&["good", "one", "two"], "");
    let e = err_text(w.compose(&tf));
    assert!(
        e.contains("/usr/share/same/path")
            && e.contains("one-1-1.noarch")
            && e.contains("two-1-1.noarch"),
        "{e}"
    );
    assert_no_new_commit(&w, &c);
}

#[test]
fn unknown_owner_names_package_and_file() {
    let (w, _, c) = with_good_commit();
    w.add(&Spec::new("owned", "1").owned_file(
        "/usr/share/owned/f",
        b"x\n",
        0o644,
        "ghostuser",
        "root",
    ));
    createrepo(&w.rpms());
    let tf = w.treefile(&["good", "owned"], "");
    let e = err_text(w.compose(&tf));
    assert!(
        e.contains("owned-1-1.noarch")
            && e.contains("/usr/share/owned/f")
            && e.contains("ghostuser"),
        "{e}"
    );
    assert_no_new_commit(&w, &c);
}

/// A payload entry whose cpio header claims a 4 GiB name (the fuzzer's finding, issue 16) is
/// refused before anything is allocated for it. The compose runs under a 3 GiB address-space
/// limit, where allocating the claimed name would abort the process instead of failing it.
#[test]
fn payload_entry_claiming_a_4_gib_name() {
    require(&["prlimit"]);
    let (w, tf, c) = with_good_commit();
    let pkg = rpm::PackageBuilder::new("longname", "1", "MIT", "noarch", "hostile payload")
        .using_config(rpm::BuildConfig::default().compression(rpm::CompressionType::None))
        .with_file_contents("x\n", rpm::FileOptions::new("/usr/share/longname/f"))
        .unwrap()
        .build()
        .unwrap();
    let mut bytes = Vec::new();
    pkg.write(&mut bytes).unwrap();
    let entry = bytes
        .windows(6)
        .position(|w| w == b"070701")
        .expect("an uncompressed cpio payload");
    // c_namesize, the twelfth 8-digit field after the 6-byte magic.
    let namesize = entry + 6 + 11 * 8;
    bytes[namesize..namesize + 8].copy_from_slice(b"ffffffff");
    std::fs::write(w.rpms().join("longname-1-1.noarch.rpm"), &bytes).unwrap();
    createrepo(&w.rpms());
    let tf2 = w.treefile(&["good", "longname"], "");
    assert_eq!(tf, tf2);
    let out = std::process::Command::new("prlimit")
        .arg(format!("--as={}", 3u64 << 30))
        .arg("--")
        .arg(crate::support::BIN)
        .args(["compose", "tree", "--quiet", "--repo"])
        .arg(w.repo())
        .arg(&tf2)
        .output()
        .unwrap();
    let e = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(1),
        "a clean failure, not a crash: {e}"
    );
    assert!(
        e.contains("longname-1-1.noarch") && e.contains("entry name of 4294967295 bytes"),
        "{e}"
    );
    assert_no_new_commit(&w, &c);
}
