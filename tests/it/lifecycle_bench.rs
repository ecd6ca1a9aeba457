//! Benchmarks of issue 14 (ignored by default), ours and ostree 2022.7 side by side in one
//! run, printing ratios:
//!
//! - static delta generation between two commits of a 1 GiB / 20,000-file tree (10% of the
//!   files changed, 1% added, 1% removed): wall time and delta size;
//! - a bare-user client at A pulling B through that delta vs through loose objects: bytes
//!   transferred and wall time;
//! - prune of a repository with 30 commits on 3 refs (`--refs-only --depth=2`).
//!
//!   cargo test --release --test it lifecycle_bench -- --ignored --nocapture
//!
//! BENCH_FILES (20000) and BENCH_MB (1024) shrink the tree for a quick check; the trees and
//! repositories live in a temporary directory.

use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::Instant;

use crate::support::files::*;
use crate::support::http::*;
use crate::support::ostree::*;
use crate::support::*;

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Half random, half text: compresses about 2:1 like binaries and configuration.
fn write_file(p: &Path, size: usize, rng: &mut Rng) {
    let mut data = vec![0u8; size];
    rng.fill(&mut data[..size / 2]);
    let text = b"a line of configuration text for the benchmark tree\n";
    for (i, b) in data[size / 2..].iter_mut().enumerate() {
        *b = text[i % text.len()];
    }
    fs::write(p, data).unwrap();
}

/// Wall time of a command, after `sync` so that neither tool pays for the writeback of
/// what the benchmark wrote before it (one of ours syncs the filesystem; ostree's prune
/// syncs nothing).
fn timed(cmd: &mut Command) -> f64 {
    run(&mut Command::new("sync"));
    let t = Instant::now();
    run(cmd);
    t.elapsed().as_secs_f64()
}

/// "Total Size: N" of `ostree static-delta show` (parts plus fallbacks).
fn delta_size(repo: &Path, id: &str) -> u64 {
    let show = capture(ostree(repo).args(["static-delta", "show", id]));
    show.lines()
        .find_map(|l| l.strip_prefix("Total Size: "))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no Total Size in:\n{show}"))
}

fn commit(repo: &Path, tree: &Path, ts: u64) -> String {
    capture(
        ours()
            .arg("commit")
            .arg(format!("--repo={}", repo.display()))
            .args(["-b", "bench", &format!("--timestamp=@{ts}")])
            .arg(format!("--tree=dir={}", tree.display())),
    )
}

/// "N KiB|MiB transferred" of an `ostree pull`, in bytes.
fn transferred(pull_output: &str) -> f64 {
    let words: Vec<&str> = pull_output.split_whitespace().collect();
    let i = words
        .iter()
        .position(|w| *w == "transferred")
        .unwrap_or_else(|| panic!("no 'transferred' in {pull_output}"));
    let n: f64 = words[i - 2].parse().unwrap();
    n * match words[i - 1] {
        "bytes" => 1.0,
        "KiB" => 1024.0,
        "MiB" => 1024.0 * 1024.0,
        "GiB" => 1024.0 * 1024.0 * 1024.0,
        u => panic!("unit {u}"),
    }
}

#[test]
#[ignore]
fn bench_static_delta_generate_and_pull() {
    let _bench = benchmark_lock();
    require(&["ostree"]);
    let files = env_or("BENCH_FILES", 20_000);
    let total = env_or("BENCH_MB", 1024) << 20;
    let tmp = tempfile::tempdir().unwrap();
    let tree = tmp.path().join("tree");
    let mut rng = Rng(0x1414_be7c);
    let avg = total / files;
    for i in 0..files {
        let d = tree.join(format!("d{:03}", i % 200));
        fs::create_dir_all(&d).unwrap();
        let size = (rng.below(2 * avg as u64) as usize).max(1);
        write_file(&d.join(format!("f{i}")), size, &mut rng);
    }
    let repo = tmp.path().join("repo");
    our_init(&repo);
    let a = commit(&repo, &tree, 1_700_000_000);
    // 10% changed (a few bytes in the middle and a tail), 1% added, 1% removed.
    for i in 0..files {
        let p = tree.join(format!("d{:03}", i % 200)).join(format!("f{i}"));
        match i % 100 {
            0..=9 => {
                let mut b = fs::read(&p).unwrap();
                let mid = b.len() / 2;
                let end = (mid + 64).min(b.len());
                b[mid..end].fill(0x5a);
                b.extend_from_slice(b"changed in B\n");
                fs::write(&p, b).unwrap();
            }
            10 => fs::remove_file(&p).unwrap(),
            11 => write_file(&p.with_extension("new"), avg, &mut rng),
            _ => {}
        }
    }
    let b = commit(&repo, &tree, 1_700_086_400);
    let id = format!("{a}-{b}");
    let theirs = tmp.path().join("theirs");
    run(Command::new("cp").arg("-a").arg(&repo).arg(&theirs));
    let load = fs::read_to_string("/proc/loadavg").unwrap_or_default();

    let t_ours = timed(
        ours()
            .args(["static-delta", "generate"])
            .arg(format!("--repo={}", repo.display()))
            .arg(format!("--from={a}"))
            .arg(format!("--to={b}")),
    );
    let t_theirs = timed(ostree(&theirs).args([
        "static-delta",
        "generate",
        &format!("--from={a}"),
        &format!("--to={b}"),
    ]));
    let (s_ours, s_theirs) = (delta_size(&repo, &id), delta_size(&theirs, &id));
    println!(
        "tree: {files} files, {} MiB; load before: {load}",
        total >> 20
    );
    println!(
        "delta generate wall s: ours {t_ours:.2}, ostree {t_theirs:.2}, ratio {:.2}x (target <= 0.5x)",
        t_ours / t_theirs
    );
    println!(
        "delta size bytes: ours {s_ours}, ostree {s_theirs}, ratio {:.3}x (target <= 1.05x)",
        s_ours as f64 / s_theirs as f64
    );

    // Pull B from A: through our delta, and through loose objects.
    run(ours()
        .args(["summary", "-u"])
        .arg(format!("--repo={}", repo.display())));
    let server = HttpServer::serve(&repo);
    let mut results = Vec::new();
    for (name, flag) in [
        ("delta", "--require-static-deltas"),
        ("loose objects", "--disable-static-deltas"),
    ] {
        let c = tmp
            .path()
            .join(format!("client-{}", name.replace(' ', "-")));
        run(Command::new("ostree")
            .arg("init")
            .arg(format!("--repo={}", c.display()))
            .arg("--mode=bare-user"));
        run(ostree(&c).args(["remote", "add", "--no-gpg-verify", "origin", &server.url]));
        run(ostree(&c).args([
            "pull",
            "--disable-static-deltas",
            "origin",
            &format!("bench@{a}"),
        ]));
        let t = Instant::now();
        let out = capture(ostree(&c).args(["pull", flag, "origin", "bench"]));
        let secs = t.elapsed().as_secs_f64();
        let last = out.lines().last().unwrap_or_default().to_string();
        println!(
            "pull A->B via {name}: {secs:.2} s, {:.0} bytes ({last})",
            transferred(&last)
        );
        results.push((secs, transferred(&last)));
    }
    println!(
        "pull via delta / via objects: time {:.2}x, bytes {:.3}x",
        results[0].0 / results[1].0,
        results[0].1 / results[1].1
    );
}

#[test]
#[ignore]
fn bench_prune_30_commits_on_3_refs() {
    let _bench = benchmark_lock();
    require(&["ostree"]);
    let files = env_or("BENCH_FILES", 20_000) / 10;
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path().join("repo");
    our_init(&repo);
    let mut rng = Rng(0x7072_756e);
    for r in ["os/stable", "os/testing", "os/rawhide"] {
        let tree = tmp.path().join(format!("tree-{}", r.replace('/', "-")));
        for c in 0..10 {
            // Each commit replaces a tenth of the files and adds some.
            for i in 0..files {
                let d = tree.join(format!("d{:02}", i % 50));
                fs::create_dir_all(&d).unwrap();
                if c == 0 || i % 10 == c % 10 {
                    write_file(
                        &d.join(format!("f{i}")),
                        1 + rng.below(16_384) as usize,
                        &mut rng,
                    );
                }
            }
            capture(
                ours()
                    .arg("commit")
                    .arg(format!("--repo={}", repo.display()))
                    .args([
                        "-b",
                        r,
                        &format!("--timestamp=@{}", 1_700_000_000 + c * 86_400),
                    ])
                    .arg(format!("--tree=dir={}", tree.display())),
            );
        }
    }
    let theirs = tmp.path().join("theirs");
    run(Command::new("cp").arg("-a").arg(&repo).arg(&theirs));
    let t_ours = timed(
        ours()
            .arg("prune")
            .arg(format!("--repo={}", repo.display()))
            .args(["--refs-only", "--depth=2"]),
    );
    let t_theirs = timed(ostree(&theirs).args(["prune", "--refs-only", "--depth=2"]));
    assert_eq!(
        objects(&repo).len(),
        objects(&theirs).len(),
        "different results"
    );
    println!(
        "prune (30 commits, 3 refs, {} objects left): ours {t_ours:.2} s, ostree {t_theirs:.2} s, ratio {:.2}x (target <= 0.5x)",
        objects(&repo).len(),
        t_ours / t_theirs
    );
}
