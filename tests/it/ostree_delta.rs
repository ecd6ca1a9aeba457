//! Issue 14, static deltas, against ostree 2022.7: a bare-user client at A pulls B over HTTP
//! through our delta (superblock and parts fetched, no loose content); `--empty` and
//! `--inline` deltas; `ostree static-delta show` and ours read each other's deltas; the
//! summary lists deltas byte for byte as `ostree summary -u` does; bad deltas are refused.

use std::fs;
use std::path::{Path, PathBuf};

use crate::support::files::*;
use crate::support::http::*;
use crate::support::ostree::*;
use crate::support::*;

struct Fixture {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    repo: PathBuf,
    a: String,
    b: String,
    /// Content objects of B that are too big for a part (the fallbacks), as hex.
    big: Vec<String>,
}

fn commit(repo: &Path, tree: &Path, ts: u64) -> String {
    capture(
        ours()
            .arg("commit")
            .arg(format!("--repo={}", repo.display()))
            .args(["-b", "demo/x86_64", "--owner-uid=0", "--owner-gid=0"])
            .arg(format!("--timestamp=@{ts}"))
            .arg(format!("--tree=dir={}", tree.display())),
    )
}

/// A repo with two commits: B edits text and binary files a little (sent as copies from the
/// old objects), shifts bytes all over a library (bsdiff material), adds,
/// removes, re-links, adds a subtree and a 5 MB incompressible file (a fallback).
fn fixture() -> Fixture {
    require(&["ostree"]);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    let tree = dir.join("tree");
    let mut rng = Rng(0x14);
    fs::create_dir_all(tree.join("usr/bin")).unwrap();
    fs::create_dir_all(tree.join("usr/lib/mods")).unwrap();
    fs::create_dir_all(tree.join("etc")).unwrap();
    let lines: String = (0..20_000).map(|i| format!("config line {i}\n")).collect();
    fs::write(tree.join("etc/config.txt"), &lines).unwrap();
    write_random(&tree.join("usr/bin/tool"), 300_000, &mut rng);
    write_random(&tree.join("usr/lib/libreloc.so"), 200_000, &mut rng);
    for i in 0..30 {
        write_random(
            &tree.join(format!("usr/lib/mods/m{i}.ko")),
            2_000 + i * 97,
            &mut rng,
        );
    }
    fs::write(tree.join("usr/bin/gone"), b"removed in B\n").unwrap();
    std::os::unix::fs::symlink("tool", tree.join("usr/bin/alias")).unwrap();
    let repo = dir.join("repo");
    our_init(&repo);
    let a = commit(&repo, &tree, 1_700_000_000);

    let edited = lines.replace("config line 777\n", "edited line\n") + "appended\n";
    fs::write(tree.join("etc/config.txt"), edited).unwrap();
    let mut tool = fs::read(tree.join("usr/bin/tool")).unwrap();
    tool[1000..1100].fill(7);
    tool.extend_from_slice(b"new tail");
    fs::write(tree.join("usr/bin/tool"), tool).unwrap();
    // Every 16th byte moves, as relocations do: no long exact match survives, so this one
    // goes as a bsdiff patch while the small edits above go as copies.
    let mut lib = fs::read(tree.join("usr/lib/libreloc.so")).unwrap();
    for b in lib.iter_mut().step_by(16) {
        *b = b.wrapping_add(1);
    }
    fs::write(tree.join("usr/lib/libreloc.so"), lib).unwrap();
    fs::remove_file(tree.join("usr/bin/gone")).unwrap();
    fs::remove_file(tree.join("usr/bin/alias")).unwrap();
    std::os::unix::fs::symlink("../lib/mods/m1.ko", tree.join("usr/bin/alias")).unwrap();
    fs::create_dir_all(tree.join("usr/share/new")).unwrap();
    fs::write(tree.join("usr/share/new/readme"), b"new in B\n").unwrap();
    write_random(&tree.join("usr/share/new/blob"), 5_000_000, &mut rng);
    let b = commit(&repo, &tree, 1_700_086_400);
    let big = capture(ostree(&repo).args(["ls", "-C", &b, "/usr/share/new/blob"]));
    let big = vec![big.split_whitespace().nth(4).unwrap().to_string()];
    Fixture {
        _tmp: tmp,
        dir,
        repo,
        a,
        b,
        big,
    }
}

fn generate(repo: &Path, args: &[&str]) {
    run(ours()
        .args(["static-delta", "generate"])
        .arg(format!("--repo={}", repo.display()))
        .args(args));
}

fn summary_u(repo: &Path) {
    run(ours()
        .args(["summary", "-u"])
        .arg(format!("--repo={}", repo.display())));
}

/// A bare-user client with remote `origin` at `url`, optionally already at `at`.
fn client(dir: &Path, url: &str, at: Option<&str>) -> PathBuf {
    let c = dir.join(format!("client-{}", at.map(|s| &s[..8]).unwrap_or("empty")));
    let _ = fs::remove_dir_all(&c);
    run(Command::new("ostree")
        .arg("init")
        .arg(format!("--repo={}", c.display()))
        .arg("--mode=bare-user"));
    run(ostree(&c).args(["remote", "add", "--no-gpg-verify", "origin", url]));
    if let Some(rev) = at {
        run(ostree(&c).args([
            "pull",
            "--disable-static-deltas",
            "origin",
            &format!("demo/x86_64@{rev}"),
        ]));
    }
    c
}

use std::process::Command;

fn requests(log: &Path) -> Vec<(String, u16)> {
    fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let (p, s) = l.rsplit_once(' ')?;
            Some((p.to_string(), s.parse().ok()?))
        })
        .collect()
}

/// The checkout of `rev` from `repo`, as a snapshot (user mode: no ownership games).
fn checkout_snapshot(
    repo: &Path,
    rev: &str,
    dest: &Path,
) -> std::collections::BTreeMap<String, String> {
    let _ = fs::remove_dir_all(dest);
    run(ostree(repo).args(["checkout", "-U", rev]).arg(dest));
    // A bare-user repo's checkout hardlinks its objects, which carry ostree's own
    // `user.ostreemeta` (uid, gid, mode); that is storage, not content of B.
    snapshot(dest)
        .into_iter()
        .map(|(k, v)| {
            let v = match v.find("user.ostreemeta=") {
                Some(i) => {
                    let end = v[i..].find([',', ']']).map_or(v.len(), |e| i + e);
                    format!("{}{}", &v[..i], &v[end..])
                        .replace("[,", "[")
                        .replace(",]", "]")
                }
                None => v,
            };
            (k, v)
        })
        .collect()
}

/// Pulls B into `client` with deltas required; returns the server's request log of that pull.
fn pull_b(client: &Path, log: &Path) -> Vec<(String, u16)> {
    fs::write(log, "").unwrap();
    run(ostree(client).args(["pull", "--require-static-deltas", "origin", "demo/x86_64"]));
    requests(log)
}

/// What a delta pull may fetch under objects/: the commit's detached metadata (always
/// probed) and the fallbacks; nothing else, least of all content the parts carry.
fn assert_no_loose_content(reqs: &[(String, u16)], allowed: &[String]) {
    for (p, _) in reqs.iter().filter(|(p, _)| p.starts_with("/objects/")) {
        let name: String = p
            .trim_start_matches("/objects/")
            .replace('/', "")
            .split('.')
            .next()
            .unwrap()
            .to_string();
        assert!(
            p.ends_with(".commitmeta") || allowed.contains(&name),
            "the delta pull fetched a loose object: {p}\nall requests: {reqs:#?}"
        );
    }
}

fn assert_client_has_b(f: &Fixture, client: &Path) {
    fsck(client);
    assert_eq!(
        capture(ostree(client).args(["rev-parse", "origin:demo/x86_64"])),
        f.b
    );
    let theirs = checkout_snapshot(&f.repo, &f.b, &f.dir.join("co-server"));
    let mine = checkout_snapshot(client, &f.b, &f.dir.join("co-client"));
    assert_eq!(mine, theirs, "the client's checkout of B differs from B");
}

#[test]
fn client_at_a_pulls_b_through_our_delta() {
    let f = fixture();
    generate(&f.repo, &["--to=demo/x86_64"]); // from its parent, A
    summary_u(&f.repo);
    let show = capture(ostree(&f.repo).args(["static-delta", "show", &format!("{}-{}", f.a, f.b)]));
    assert!(
        show.contains("bspatch=") && !show.contains("bspatch=0"),
        "no bsdiff in:\n{show}"
    );
    // The small edits: copied from the old objects by `write` ops with a read source.
    let ops = |name: &str| -> u32 {
        show.split_whitespace()
            .find_map(|w| w.strip_prefix(&format!("{name}=")))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {name}= in:\n{show}"))
    };
    assert!(
        ops("write") >= 4 && ops("setread") >= 3,
        "the edited files were not sent as copies:\n{show}"
    );
    assert!(show.contains("Number of fallback entries: 1"), "{show}");

    let log = f.dir.join("access.log");
    // objects/ answers lag 500 ms, so only requests the client really needs show up
    // before the part lands (the 2022.7 client scans the new commit while parts apply).
    let server = serve_logged(&f.repo, &log, 500);
    let c = client(&f.dir, &server.url, Some(&f.a));
    let reqs = pull_b(&c, &log);
    let ok = |suffix: &str| {
        reqs.iter()
            .any(|(p, s)| p.starts_with("/deltas/") && p.ends_with(suffix) && *s == 200)
    };
    assert!(ok("/superblock"), "superblock not fetched: {reqs:#?}");
    assert!(ok("/0"), "part 0 not fetched: {reqs:#?}");
    assert!(
        reqs.iter()
            .any(|(p, s)| p.starts_with("/delta-indexes/") && *s == 200),
        "the delta index was not used: {reqs:#?}"
    );
    assert_no_loose_content(&reqs, &f.big);
    assert!(
        reqs.iter().any(|(p, _)| p.contains(&f.big[0][2..])),
        "the fallback object was not fetched on its own: {reqs:#?}"
    );
    assert_client_has_b(&f, &c);
}

#[test]
fn empty_and_inline_deltas_bring_an_empty_client_to_b() {
    let f = fixture();
    generate(
        &f.repo,
        &[
            "--empty",
            "--inline",
            "--min-fallback-size=0",
            "--to=demo/x86_64",
        ],
    );
    summary_u(&f.repo);
    let sb_dir = capture(
        Command::new("sh")
            .arg("-c")
            .arg(format!("cd {} && ls -d deltas/*/*", f.repo.display())),
    );
    let files: Vec<_> = fs::read_dir(f.repo.join(&sb_dir))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(files, ["superblock"], "an inline delta is one file");
    let log = f.dir.join("access.log");
    let server = serve_logged(&f.repo, &log, 500);
    let c = client(&f.dir, &server.url, None);
    let reqs = pull_b(&c, &log);
    assert!(
        reqs.iter()
            .any(|(p, s)| p.ends_with("/superblock") && *s == 200),
        "{reqs:#?}"
    );
    // Inline and no fallbacks: nothing else from deltas/ or objects/ (but the probe).
    assert_no_loose_content(&reqs, &[]);
    assert_client_has_b(&f, &c);

    // A non-inline --empty delta, part files beside the superblock.
    let f = fixture();
    generate(&f.repo, &["--empty", "--to=demo/x86_64"]);
    summary_u(&f.repo);
    let log = f.dir.join("access.log");
    let server = serve_logged(&f.repo, &log, 500);
    let c = client(&f.dir, &server.url, None);
    let reqs = pull_b(&c, &log);
    assert!(
        reqs.iter().any(|(p, s)| p.ends_with("/0") && *s == 200),
        "{reqs:#?}"
    );
    assert_no_loose_content(&reqs, &f.big);
    assert_client_has_b(&f, &c);
}

/// `ostree static-delta show` on one of our deltas prints what our `show` prints, and our
/// `show` on a delta made by `ostree static-delta generate` prints what ostree prints.
#[test]
fn show_reads_both_ways_and_ostree_and_our_deltas_end_in_the_same_commit() {
    let f = fixture();
    let id = format!("{}-{}", f.a, f.b);
    let theirs_repo = f.dir.join("theirs");
    run(Command::new("cp").arg("-a").arg(&f.repo).arg(&theirs_repo));
    generate(&f.repo, &[&format!("--from={}", f.a), "--to=demo/x86_64"]);
    run(ostree(&theirs_repo).args([
        "static-delta",
        "generate",
        &format!("--from={}", f.a),
        "--to=demo/x86_64",
    ]));
    for repo in [&f.repo, &theirs_repo] {
        let o = capture(ostree(repo).args(["static-delta", "show", &id]));
        let m = capture(
            ours()
                .args(["static-delta", "show"])
                .arg(format!("--repo={}", repo.display()))
                .arg(&id),
        );
        assert_eq!(
            m,
            o,
            "show output differs for the delta in {}",
            repo.display()
        );
        assert_eq!(
            capture(ostree(repo).args(["static-delta", "list"])),
            capture(
                ours()
                    .args(["static-delta", "list"])
                    .arg(format!("--repo={}", repo.display()))
            )
        );
    }
    // Clients pulling through either delta end with the same commit and tree.
    summary_u(&f.repo);
    run(ostree(&theirs_repo).args(["summary", "-u"]));
    let mut snaps = Vec::new();
    for (i, repo) in [&f.repo, &theirs_repo].into_iter().enumerate() {
        let server = HttpServer::serve(repo);
        let via = f.dir.join(format!("via{i}"));
        fs::create_dir_all(&via).unwrap();
        let c = client(&via, &server.url, Some(&f.a));
        run(ostree(&c).args(["pull", "--require-static-deltas", "origin", "demo/x86_64"]));
        fsck(&c);
        snaps.push((
            capture(ostree(&c).args(["rev-parse", "origin:demo/x86_64"])),
            checkout_snapshot(&c, &f.b, &f.dir.join(format!("co{i}"))),
        ));
    }
    assert_eq!(snaps[0], snaps[1]);
    assert_eq!(snaps[0].0, f.b);
}

/// With the same last-modified, our summary of a repo with deltas is byte-identical to
/// `ostree summary -u`'s, and so are the delta indexes.
#[test]
fn summary_lists_deltas_like_ostree() {
    let f = fixture();
    generate(&f.repo, &["--to=demo/x86_64"]);
    generate(&f.repo, &["--empty", "--to=demo/x86_64"]);
    let theirs = f.dir.join("theirs");
    run(Command::new("cp").arg("-a").arg(&f.repo).arg(&theirs));
    run(ostree(&theirs).args(["summary", "-u"]));
    let view = capture(ostree(&theirs).args(["summary", "--view"]));
    assert!(view.contains("ostree.static-deltas"), "{view}");
    let raw = fs::read(theirs.join("summary")).unwrap();
    // last-modified is the only clock-dependent value: reuse ostree's.
    let lm = ostree_last_modified(&theirs).to_string();
    run(ours()
        .args(["summary", "-u"])
        .arg(format!("--repo={}", f.repo.display()))
        .env("SOURCE_DATE_EPOCH", &lm));
    assert!(
        fs::read(f.repo.join("summary")).unwrap() == raw,
        "summary bytes differ from ostree summary -u (last-modified {lm})"
    );
    let idx = |r: &Path| {
        let mut v: Vec<(String, Vec<u8>)> = walkdir::WalkDir::new(r.join("delta-indexes"))
            .into_iter()
            .map(|e| e.unwrap())
            .filter(|e| e.file_type().is_file())
            .map(|e| {
                (
                    e.path().strip_prefix(r).unwrap().display().to_string(),
                    fs::read(e.path()).unwrap(),
                )
            })
            .collect();
        v.sort();
        v
    };
    assert!(!idx(&theirs).is_empty());
    assert_eq!(idx(&f.repo), idx(&theirs));
}

#[test]
fn a_part_with_a_wrong_checksum_is_refused_and_a_corrupt_superblock_is_named() {
    let f = fixture();
    generate(&f.repo, &["--to=demo/x86_64"]);
    summary_u(&f.repo);
    let name = format!("{}-{}", f.a, f.b);
    let dir = fs::read_dir(f.repo.join("deltas"))
        .unwrap()
        .flat_map(|d| fs::read_dir(d.unwrap().path()).unwrap())
        .map(|e| e.unwrap().path())
        .find(|p| p.join("0").exists())
        .unwrap();
    let part = dir.join("0");
    let server = HttpServer::serve(&f.repo);
    let pull_fails_with = |bytes: &[u8], expect: Option<&str>| {
        fs::write(&part, bytes).unwrap();
        let c = client(&f.dir, &server.url, Some(&f.a));
        let out = ostree(&c)
            .args(["pull", "--require-static-deltas", "origin", "demo/x86_64"])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "the client accepted a bad part");
        assert!(
            expect.is_none_or(|e| err.contains(e)),
            "unexpected error: {err}"
        );
        assert_eq!(
            capture(ostree(&c).args(["rev-parse", "origin:demo/x86_64"])),
            f.a,
            "the client moved its ref despite the error"
        );
    };
    // A flipped byte inside the xz stream fails decompression first (ostree 2022.7 then
    // reports an unhelpful "mmap: Invalid argument", so only the refusal is checked).
    let mut flipped = fs::read(&part).unwrap();
    let mid = flipped.len() / 2;
    flipped[mid] ^= 0xff;
    pull_fails_with(&flipped, None);
    // A well-formed part that is not the one the superblock names: the delta is made without
    // bsdiff (a big part), then the small bsdiff part of the same delta is served instead.
    // It decompresses and parses; only its sha256 gives it away.
    let other = f.dir.join("other");
    generate(
        &f.repo,
        &[
            "--to=demo/x86_64",
            &format!("--filename={}/superblock", other.display()),
        ],
    );
    generate(&f.repo, &["--to=demo/x86_64", "--disable-bsdiff"]);
    summary_u(&f.repo);
    let small = fs::read(other.join("0")).unwrap();
    assert!(small.len() < fs::metadata(&part).unwrap().len() as usize);
    pull_fails_with(&small, Some("Checksum mismatch"));

    // A truncated superblock: our tools say which file is broken, and do not panic.
    let sb = dir.join("superblock");
    let sbb = fs::read(&sb).unwrap();
    fs::write(&sb, &sbb[..sbb.len() / 3]).unwrap();
    for args in [
        vec!["static-delta", "show", name.as_str()],
        vec!["summary", "-u"],
    ] {
        let out = ours()
            .args(&args)
            .arg(format!("--repo={}", f.repo.display()))
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        if args[0] == "summary" {
            // The summary only hashes superblocks; it must still succeed.
            assert!(out.status.success(), "{err}");
            continue;
        }
        assert!(!out.status.success());
        assert!(
            err.contains("superblock") && err.contains("not a valid static delta superblock"),
            "unclear error: {err}"
        );
        assert!(!err.contains("panicked"), "{err}");
    }
}
