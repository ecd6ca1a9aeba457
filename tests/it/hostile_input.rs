//! Hostile input (issue 16): servers never hand out files outside their roots, parsers refuse
//! inputs built to cost unbounded memory or time, and every crash the fuzzers found stays
//! fixed (the minimised inputs are in tests/fixtures/fuzz-regressions/).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use atomic_factory::vm::server::GuestServer;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::run;

const SECRET: &str = "SECRET-OUTSIDE-THE-ROOT";

/// A fuzzer's input kept as a regression test.
fn fuzz_regression(name: &str) -> PathBuf {
    crate::support::root()
        .join("tests/fixtures/fuzz-regressions")
        .join(name)
}

/// www/repo is served; www/secret lies beside it, reachable only by escaping the root.
fn guest_tree() -> (tempfile::TempDir, PathBuf) {
    let d = tempfile::tempdir().unwrap();
    let repo = d.path().join("www/repo");
    std::fs::create_dir_all(repo.join("objects/ab")).unwrap();
    std::fs::write(
        repo.join("config"),
        "[core]\nrepo_version=1\nmode=archive-z2\n",
    )
    .unwrap();
    std::fs::write(repo.join("objects/ab/cd.filez"), "object").unwrap();
    std::fs::write(d.path().join("www/secret"), SECRET).unwrap();
    std::os::unix::fs::symlink("../secret", repo.join("link")).unwrap();
    std::os::unix::fs::symlink(d.path().join("www"), repo.join("objects/www")).unwrap();
    (d, repo)
}

/// Sends `target` byte for byte (no client-side normalisation) and returns the whole reply.
async fn raw_get(addr: std::net::SocketAddr, target: &[u8]) -> String {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut req = b"GET ".to_vec();
    req.extend_from_slice(target);
    req.extend_from_slice(b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    s.write_all(&req).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out))
        .await
        .expect("the server answers")
        .unwrap();
    String::from_utf8_lossy(&out).into_owned()
}

fn status(reply: &str) -> &str {
    reply.split(' ').nth(1).unwrap_or("")
}

#[tokio::test]
async fn guest_server_never_serves_outside_the_repository() {
    let (_d, repo) = guest_tree();
    let listener = GuestServer::bind(0).await.unwrap();
    let (server, _log) = GuestServer::serve(listener, b"ks".to_vec(), Some(&repo))
        .await
        .unwrap();
    // The real files are served, so the refusals below are about the paths.
    let ok = raw_get(server.addr, b"/repo/config").await;
    assert_eq!(status(&ok), "200", "{ok}");
    assert_eq!(
        status(&raw_get(server.addr, b"/repo//objects/ab/cd.filez").await),
        "200"
    );
    let hostile: &[&[u8]] = &[
        b"/repo/../secret",
        b"/repo/%2e%2e/secret",
        b"/repo/%2E%2E%2Fsecret",
        b"/repo/..%2fsecret",
        b"/repo/objects/%2e%2e/%2e%2e/%2e%2e/secret",
        b"/repo//../secret",
        b"//repo/../secret",
        b"/repo/link",
        b"/repo/objects/www/secret",
        b"/repo/objects/www/repo/config/../../secret",
        b"/repo/config%00",
        b"/repo/%00/../secret",
        b"/repo/..\\secret",
    ];
    for target in hostile {
        let reply = raw_get(server.addr, target).await;
        let shown = String::from_utf8_lossy(target);
        assert!(
            !reply.contains(SECRET),
            "{shown} served a file outside the repository: {reply}"
        );
        assert!(
            status(&reply).starts_with('4'),
            "{shown} must be a client error: {reply}"
        );
    }
    server.stop().await;
}

/// A template directory with a partial, a host file outside it, and a symlink to that file
/// inside it.
fn include_tree() -> (tempfile::TempDir, PathBuf, PathBuf) {
    let d = tempfile::tempdir().unwrap();
    let tdir = d.path().join("templates");
    std::fs::create_dir(&tdir).unwrap();
    std::fs::write(tdir.join("part.ks"), "network --bootproto=dhcp\n").unwrap();
    let outside = d.path().join("host-secret");
    std::fs::write(&outside, format!("rootpw {SECRET}\n")).unwrap();
    std::os::unix::fs::symlink(&outside, tdir.join("sneaky.ks")).unwrap();
    (d, tdir, outside)
}

#[test]
fn kickstart_includes_outside_the_template_dirs_are_not_read_for_a_build() {
    use atomic_factory::kickstart::parse::{IncludeProblem, flatten_within};
    let (_d, tdir, outside) = include_tree();
    let ks = tdir.join("ks.cfg");
    let text = format!(
        "text\n%include part.ks\n%include {}\n%include sneaky.ks\n%include /etc/passwd\n",
        outside.display()
    );
    let flat = flatten_within(&text, &ks, std::slice::from_ref(&tdir));
    let out = flat.text();
    assert!(out.contains("network --bootproto=dhcp"), "{out}");
    assert!(
        !out.contains(SECRET) && !out.contains("root:x:0:0"),
        "{out}"
    );
    let refused: Vec<(usize, bool)> = flat
        .include_errors
        .iter()
        .map(|e| {
            (
                e.origin.line,
                matches!(e.problem, IncludeProblem::Outside { .. }),
            )
        })
        .collect();
    assert_eq!(refused, [(3, true), (4, true), (5, true)]);
    // The rendering path (`kickstart render --flatten`) refuses with the line named.
    let e = atomic_factory::kickstart::render::flatten(&text, &ks, std::slice::from_ref(&tdir))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("ks.cfg:3") && e.contains("outside the template directories"),
        "{e}"
    );
    // Lint for a build reports it as an error at the line, without the file's content.
    let report = atomic_factory::kickstart::lint::lint_within(
        &text,
        &ks,
        "DEVEL",
        std::slice::from_ref(&tdir),
    )
    .unwrap();
    let shown: Vec<String> = report.errors().map(|f| f.to_string()).collect();
    assert!(
        shown
            .iter()
            .any(|f| f.contains("ks.cfg:4") && f.contains("sneaky.ks")),
        "{shown:?}"
    );
    assert!(shown.iter().all(|f| !f.contains(SECRET)), "{shown:?}");
}

/// Runs `f` and fails if it takes longer than `limit` (the bound: 1 s per KiB).
fn within<T>(limit: Duration, what: &str, f: impl FnOnce() -> T) -> T {
    let start = Instant::now();
    let out = f();
    assert!(start.elapsed() < limit, "{what} took {:?}", start.elapsed());
    out
}

#[test]
fn treefile_include_cycles_and_fan_out_fail_fast() {
    let d = tempfile::tempdir().unwrap();
    let a = d.path().join("a.yaml");
    std::fs::write(&a, "include: b.yaml\nref: x/y\n").unwrap();
    std::fs::write(d.path().join("b.yaml"), "include: a.yaml\npackages: [p]\n").unwrap();
    let e = format!(
        "{:#}",
        atomic_factory::compose::treefile::load(&a).unwrap_err()
    );
    assert!(
        e.contains("include cycle") && e.contains("a.yaml -> "),
        "{e}"
    );
    // Each level includes the next one four times: 4^20 loads without a cap on the total.
    for i in 0..20 {
        let next = format!("l{}.yaml", i + 1);
        std::fs::write(
            d.path().join(format!("l{i}.yaml")),
            format!("include: [{next}, {next}, {next}, {next}]\n"),
        )
        .unwrap();
    }
    std::fs::write(d.path().join("l20.yaml"), "packages: [p]\n").unwrap();
    std::fs::write(d.path().join("top.yaml"), "include: l0.yaml\nref: x/y\n").unwrap();
    let e = within(Duration::from_secs(5), "a fan-out treefile", || {
        format!(
            "{:#}",
            atomic_factory::compose::treefile::load(&d.path().join("top.yaml")).unwrap_err()
        )
    });
    assert!(e.contains("files included in all"), "{e}");
}

#[test]
fn yaml_alias_bomb_in_an_image_definition_is_refused() {
    let mut text = String::from(
        "name: x\nkickstart:\n  vars:\n    a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]\n",
    );
    for i in 1..10 {
        let p = i - 1;
        text.push_str(&format!(
            "    a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"
        ));
    }
    let e = within(Duration::from_secs(2), "a billion laughs in YAML", || {
        atomic_factory::pipeline::definition::ImageDefinition::parse(&text, Path::new("image.yaml"))
            .unwrap_err()
            .to_string()
    });
    assert!(e.contains("image.yaml"), "{e}");
}

#[test]
fn xml_entity_bomb_in_primary_xml_is_not_expanded() {
    use atomic_factory::compose::sources::{RepoDef, parse_primary};
    let d = tempfile::tempdir().unwrap();
    let mut doc = String::from("<?xml version=\"1.0\"?>\n<!DOCTYPE m [\n <!ENTITY l0 \"lol\">\n");
    for i in 1..10 {
        let p = format!("&l{};", i - 1);
        doc.push_str(&format!(" <!ENTITY l{i} \"{}\">\n", p.repeat(10)));
    }
    doc.push_str("]>\n<metadata packages=\"1\"><package type=\"rpm\"><name>&l9;</name><arch>noarch</arch><version epoch=\"0\" ver=\"1\" rel=\"1\"/><location href=\"p.rpm\"/></package></metadata>\n");
    let p = d.path().join("primary.xml");
    std::fs::write(&p, doc).unwrap();
    let repo = RepoDef {
        id: "bomb".into(),
        dir: d.path().to_path_buf(),
        origin: d.path().join("bomb.repo"),
    };
    let r = within(Duration::from_secs(2), "a billion laughs in XML", || {
        parse_primary(&p, &repo)
    });
    // Either refused, or the name stays unexpanded: never a gigabyte of "lol".
    if let Ok(pkgs) = r {
        assert!(
            pkgs.iter().all(|p| p.name.len() < 1024),
            "{:?}",
            pkgs[0].name.len()
        );
    }
}

#[test]
fn repomd_locations_outside_the_repository_are_refused() {
    use atomic_factory::compose::sources::{RepoDef, load_rpmmd};
    let d = tempfile::tempdir().unwrap();
    std::fs::create_dir(d.path().join("repodata")).unwrap();
    std::fs::write(d.path().join("outside.xml"), "<metadata/>").unwrap();
    for href in [
        "../outside.xml",
        "/etc/passwd",
        "repodata/../../outside.xml",
    ] {
        std::fs::write(
            d.path().join("repodata/repomd.xml"),
            format!("<repomd><data type=\"primary\"><checksum type=\"sha256\">00</checksum><location href=\"{href}\"/></data></repomd>"),
        )
        .unwrap();
        let repo = RepoDef {
            id: "evil".into(),
            dir: d.path().to_path_buf(),
            origin: d.path().join("evil.repo"),
        };
        let e = format!("{:#}", load_rpmmd(&repo, &["noarch"]).unwrap_err());
        assert!(
            e.contains("evil")
                && e.contains(href)
                && e.contains("not a path inside the repository"),
            "{href}: {e}"
        );
    }
}

/// A qemu-img image whose 2048 L1 entries all name its one L2 table: loading a table per entry
/// cost 128 MiB for a 300 KiB file before the reader refused shared tables.
#[test]
fn qcow2_l1_entries_sharing_one_l2_table_are_refused() {
    let d = tempfile::tempdir().unwrap();
    let img = d.path().join("shared-l2.qcow2");
    let s = img.to_str().unwrap();
    run(Command::new("qemu-img").args(["create", "-q", "-f", "qcow2", s, "1T"]));
    run(Command::new("qemu-io").args(["-f", "qcow2", "-c", "write -P 0x5a 0 4k", s]));
    let mut bytes = std::fs::read(&img).unwrap();
    let be64 = |b: &[u8], at: usize| u64::from_be_bytes(b[at..at + 8].try_into().unwrap());
    let l1_size = u32::from_be_bytes(bytes[36..40].try_into().unwrap()) as usize;
    let l1_off = be64(&bytes, 40) as usize;
    assert_eq!(l1_size, 2048);
    let first = be64(&bytes, l1_off);
    assert_ne!(first, 0, "qemu-io allocated the first L2 table");
    for i in 1..l1_size {
        bytes[l1_off + i * 8..l1_off + i * 8 + 8].copy_from_slice(&first.to_be_bytes());
    }
    std::fs::write(&img, &bytes).unwrap();
    let e = within(Duration::from_secs(2), "opening the image", || {
        format!(
            "{:#}",
            atomic_factory::image::backing::open_input(&img, Some("qcow2"))
                .err()
                .expect("a corrupt image must not open")
        )
    });
    assert!(
        e.contains("shared-l2.qcow2") && e.contains("both point to the L2 table"),
        "{e}"
    );
}

/// `mirror scan` publishes sizes and digests of what it finds; a summary or repomd.xml that
/// is a symlink out of the master tree must not make a host file's digests public.
#[test]
fn mirror_scan_skips_metadata_symlinked_out_of_the_tree() {
    use atomic_factory::mirror::scan::{ScanOptions, scan};
    let d = tempfile::tempdir().unwrap();
    let root = d.path().join("pub");
    std::fs::write(d.path().join("secret"), SECRET).unwrap();
    for (repo, out) in [("good", false), ("evil", true)] {
        let r = root.join("atomic").join(repo);
        std::fs::create_dir_all(r.join("objects")).unwrap();
        if out {
            std::os::unix::fs::symlink(d.path().join("secret"), r.join("summary")).unwrap();
        } else {
            std::fs::write(r.join("summary"), "summary bytes").unwrap();
        }
    }
    let y = root.join("fedora/41/os");
    std::fs::create_dir_all(y.join("repodata")).unwrap();
    std::os::unix::fs::symlink("../../../../../secret", y.join("repodata/repomd.xml")).unwrap();
    let (state, _) = scan(&root, None, &ScanOptions::default()).unwrap();
    let found: Vec<&str> = state.repos.iter().map(|r| r.path.as_str()).collect();
    assert_eq!(found, ["atomic/good"]);
}

/// The summary fuzzer's find: this input reads as a summary with no refs and no metadata,
/// which zgvariant wrote as 0 bytes and could not read back (the "out of memory" was the
/// panic message symbolising a backtrace). We write GLib's form, one `00` byte, which the
/// real ostree reads as an empty summary.
#[test]
fn a_summary_with_nothing_in_it_is_written_as_glib_does() {
    use atomic_factory::ostree::summary::{parse_summary, summary_bytes};
    let input = std::fs::read(fuzz_regression("ostree_summary-empty-rewrite")).unwrap();
    let parsed = parse_summary(&input).unwrap();
    assert!(parsed.refs.is_empty() && parsed.metadata.is_empty());
    let written = summary_bytes(&parsed).unwrap();
    assert_eq!(written, [0]);
    assert_eq!(parse_summary(&written).unwrap(), parsed);

    let d = tempfile::tempdir().unwrap();
    let repo = d.path().join("repo");
    let repo_arg = format!("--repo={}", repo.display());
    run(Command::new("ostree").args(["init", "--mode=archive-z2", &repo_arg]));
    std::fs::write(repo.join("summary"), &written).unwrap();
    let out = std::process::Command::new("ostree")
        .args(["summary", "--view", &repo_arg])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "ostree summary --view: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let view = String::from_utf8_lossy(&out.stdout);
    assert!(!view.contains("* "), "no refs expected:\n{view}");
}

/// The fuzzer's package whose payload's first cpio entry claims a 388 MiB name: the
/// rpm crate's payload reader allocated it before checking (an out-of-memory finding). Our
/// payload reader refuses it, naming the package and the claimed length.
#[test]
fn a_payload_entry_with_a_huge_name_is_refused_by_the_importer() {
    use atomic_factory::compose::{import::read_small_files, model::Header};
    let path = fuzz_regression("rpm_import-cpio-name-length");
    let info = atomic_factory::compose::sources::info_from_header(&path, "fuzz").unwrap();
    let meta = rpm::PackageMetadata::open(&path).unwrap();
    let header = Header { info, meta };
    let e = format!(
        "{:#}",
        read_small_files(&header, &["/etc/passwd"]).unwrap_err()
    );
    assert!(
        e.contains("rpm_import-cpio-name-length") && e.contains("entry name of 407384603 bytes"),
        "{e}"
    );
}
