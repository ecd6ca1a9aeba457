//! Benchmark of `install` (BENCHMARKS.md, section "install"):
//!   cargo test --release --test it install_bench -- --ignored --nocapture
//! 1. our overhead outside the guest: set-up before QEMU starts, and guest poweroff to our
//!    return (disk renamed, server stopped);
//! 2. the guest's `ostree pull` time from our server vs from `python3 -m http.server` on the
//!    same repository, measured inside the guest (/proc/uptime around the pull).

use std::process::Command;

use atomic_factory::vm::install::{self, InstallOutcome, KsVia};

use crate::support::http::HttpServer;
use crate::support::vm::{self, REF, install_config as config, kickstart, test_repo};
use crate::support::{benchmark_lock, run};

/// The guest's own measurement: `standin: pull took N.NN s`.
fn guest_pull_seconds(o: &InstallOutcome) -> f64 {
    let log = std::fs::read_to_string(o.logs_dir.join("virtio.log")).unwrap();
    let line = log
        .lines()
        .find(|l| l.contains("pull took"))
        .expect("no 'pull took' line: rebuild with vm/prepare");
    line.split_whitespace()
        .rev()
        .nth(1)
        .unwrap()
        .parse()
        .unwrap()
}

#[test]
#[ignore = "benchmark: cargo test --release --test it install_bench -- --ignored --nocapture"]
fn install_overhead_and_pull_speed() {
    let _bench = benchmark_lock();
    let _vms = vm::exclusive();
    let repo = test_repo();
    let rounds = 2;
    let mut ours = Vec::new();
    let mut python = Vec::new();
    let mut overhead = Vec::new();
    for round in 0..rounds {
        // Our server.
        let dir = tempfile::tempdir().unwrap();
        let mut c = config(
            dir.path(),
            kickstart(dir.path(), "http://10.0.2.2/repo", ""),
        );
        c.repo = Some(repo.to_path_buf());
        let o = install::run(&c).unwrap_or_else(|e| panic!("{e:#}"));
        ours.push(guest_pull_seconds(&o));
        overhead.push((o.setup, o.first_output, o.teardown));
        // python3 -m http.server on the same repository (the kickstart in the initrd).
        let dir = tempfile::tempdir().unwrap();
        let py = HttpServer::serve(repo.parent().unwrap());
        let mut c = config(
            dir.path(),
            kickstart(dir.path(), &format!("http://10.0.2.2:{}/repo", py.port), ""),
        );
        c.ks_via = KsVia::Initrd;
        let o = install::run(&c);
        drop(py);
        python.push(guest_pull_seconds(&o.unwrap_or_else(|e| panic!("{e:#}"))));
        eprintln!(
            "round {round}: guest pull ours {:.2} s, python {:.2} s",
            ours[round], python[round]
        );
    }
    let avg = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    println!("install benchmark (TCG, stand-in repo of 14 MB, {rounds} rounds):");
    for (i, (s, f, t)) in overhead.iter().enumerate() {
        println!(
            "  round {i}: our set-up {:.0} ms, QEMU start to first guest output {:.0} ms, poweroff to exit {:.0} ms",
            s.as_secs_f64() * 1e3,
            f.as_secs_f64() * 1e3,
            t.as_secs_f64() * 1e3
        );
    }
    println!(
        "  guest pull: ours {:.2} s, python3 -m http.server {:.2} s, ratio python/ours {:.2}",
        avg(&ours),
        avg(&python),
        avg(&python) / avg(&ours)
    );
}

/// The server alone: the real `ostree pull` on the host from our server and from
/// `python3 -m http.server`, same repository (the stand-in plus 3000 small files, so that
/// per-request cost shows), fresh target repository each round.
#[test]
#[ignore = "benchmark: cargo test --release --test it install_bench -- --ignored --nocapture"]
fn host_pull_ours_vs_python_http_server() {
    let _bench = benchmark_lock();
    use std::time::Instant;
    let base = tempfile::tempdir().unwrap();
    let tree = base.path().join("tree");
    for i in 0..3000 {
        let d = tree.join(format!("usr/share/bench/{}", i % 30));
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(
            d.join(format!("f{i}")),
            format!("file {i}\n").repeat(1 + i % 200),
        )
        .unwrap();
    }
    let repo = base.path().join("srv/repo");
    std::fs::create_dir_all(base.path().join("srv")).unwrap();
    let r = format!("--repo={}", repo.display());
    run(Command::new("ostree").args([&r, "init", "--mode=archive"]));
    run(Command::new("ostree")
        .args([&r, "pull-local"])
        .arg(test_repo()));
    run(Command::new("ostree")
        .args([
            &r,
            "commit",
            "-b",
            "bench",
            "--owner-uid=0",
            "--owner-gid=0",
        ])
        .arg(format!("--tree=dir={}", tree.display())));
    let pull = |url: &str| -> f64 {
        let dest = tempfile::tempdir().unwrap();
        let d = format!("--repo={}", dest.path().join("r").display());
        run(Command::new("ostree").args([&d, "init", "--mode=archive"]));
        run(Command::new("ostree").args([&d, "remote", "add", "--no-gpg-verify", "s", url]));
        let t = Instant::now();
        run(Command::new("ostree").args([&d, "pull", "s", "bench", REF]));
        t.elapsed().as_secs_f64()
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (server, _log) = rt.block_on(async {
        let l = atomic_factory::vm::server::GuestServer::bind(0)
            .await
            .unwrap();
        atomic_factory::vm::server::GuestServer::serve(l, Vec::new(), Some(&repo))
            .await
            .unwrap()
    });
    let ours_url = format!("http://{}/repo", server.addr);
    let py = HttpServer::serve(&base.path().join("srv"));
    let py_url = format!("{}repo", py.url);
    let (mut ours, mut python) = (Vec::new(), Vec::new());
    for _ in 0..3 {
        ours.push(pull(&ours_url));
        python.push(pull(&py_url));
    }
    drop(py);
    rt.block_on(server.stop());
    let best = |v: &[f64]| v.iter().cloned().fold(f64::INFINITY, f64::min);
    println!(
        "host ostree pull of 3000+ objects (best of 3): ours {:.2} s, python3 -m http.server {:.2} s, ratio python/ours {:.2}",
        best(&ours),
        best(&python),
        best(&python) / best(&ours)
    );
}
