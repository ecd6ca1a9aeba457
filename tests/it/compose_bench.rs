//! Benchmark (ignored by default): 200 generated RPMs (~500 MiB payload, zstd, mixed file
//! sizes) composed by `atomic-factory compose tree`, against `rpm2cpio | cpio -idm` of the
//! same RPMs plus `ostree commit` into an archive repo, in the same run. Prints the ratio,
//! our peak RSS and the no-change check time.
//!
//!   cargo test --release --test it compose_bench -- --ignored --nocapture
//!
//! The generated RPMs are cached in /tmp/af-compose-bench (delete it to regenerate).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use crate::support::compose::*;
use crate::support::ostree::fsck;
use crate::support::{BIN, benchmark_lock, require, run, run_measuring_peak_rss};

const PACKAGES: usize = 200;
const CACHE: &str = "/tmp/af-compose-bench-v1";

/// Deterministic content: a mix of random-looking bytes and text, so it compresses about
/// like binaries (roughly 2:1).
fn content(size: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(size);
    while out.len() < size {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        if x.is_multiple_of(2) {
            out.extend_from_slice(&x.to_le_bytes());
        } else {
            out.extend_from_slice(b"the quick brown fox ");
        }
    }
    out.truncate(size);
    out
}

/// File sizes of package `i`: many small files, some medium, a few large ones.
fn sizes(i: usize) -> Vec<usize> {
    let mut v: Vec<usize> = (0..30)
        .map(|k| 1024 + (i * 7919 + k * 104_729) % 16_384)
        .collect();
    v.extend((0..4).map(|k| 100_000 + (i * 31 + k * 17) % 900_000));
    if i.is_multiple_of(4) {
        v.push(4_000_000 + (i % 7) * 1_000_000);
    }
    v
}

fn generate(dir: &Path) -> u64 {
    std::fs::create_dir_all(dir).unwrap();
    let mut total = 0u64;
    for i in 0..PACKAGES {
        let name = format!("bench{i:03}");
        let path = dir.join(format!("{name}-1.0-1.noarch.rpm"));
        let szs = sizes(i);
        total += szs.iter().map(|s| *s as u64).sum::<u64>();
        if path.exists() {
            continue;
        }
        let mut b = rpm::PackageBuilder::new(&name, "1.0", "MIT", "noarch", "benchmark package");
        b.release("1").using_config(
            rpm::BuildConfig::default()
                .compression(rpm::CompressionWithLevel::Zstd(3))
                .source_date(1_700_000_000u32),
        );
        for (k, s) in szs.iter().enumerate() {
            let sub = if k % 3 == 0 { "lib" } else { "share" };
            b.with_file_contents(
                content(*s, (i * 1000 + k) as u64),
                rpm::FileOptions::new(format!("/usr/{sub}/{name}/f{k:03}")),
            )
            .unwrap();
        }
        if i > 0 {
            b.requires(rpm::Dependency::any(format!("bench{:03}", i - 1)));
        }
        b.build().unwrap().write_file(&path).unwrap();
    }
    total
}

/// Wall time in seconds of a command that must succeed.
fn timed(cmd: &mut Command) -> f64 {
    let t = Instant::now();
    run(cmd);
    t.elapsed().as_secs_f64()
}

#[test]
#[ignore = "benchmark: cargo test --release --test it compose_bench -- --ignored --nocapture"]
fn compose_benchmark() {
    let _bench = benchmark_lock();
    require(&["createrepo_c", "ostree", "rpm2cpio", "cpio"]);
    let cache = PathBuf::from(CACHE);
    let rpms = cache.join("rpms");
    let payload = generate(&rpms);
    if !rpms.join("repodata/repomd.xml").exists() {
        createrepo(&rpms);
    }
    let on_disk: u64 = std::fs::read_dir(&rpms)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.path().extension().is_some_and(|x| x == "rpm"))
        .map(|e| e.metadata().unwrap().len())
        .sum();
    let work = tempfile::tempdir_in("/tmp").unwrap();
    let w = work.path();
    std::fs::write(
        w.join("bench.repo"),
        format!("[bench]\nbaseurl=file://{}\n", rpms.display()),
    )
    .unwrap();
    let names: Vec<String> = (0..PACKAGES).map(|i| format!("  - bench{i:03}")).collect();
    std::fs::write(
        w.join("tf.yaml"),
        format!(
            "ref: bench/x86_64\nrepos: [bench]\npackages:\n{}\n",
            names.join("\n")
        ),
    )
    .unwrap();

    // Ours.
    let ours_repo = w.join("ours");
    run(Command::new(BIN).args(["init", "--repo"]).arg(&ours_repo));
    let t = Instant::now();
    let (_, rss) = run_measuring_peak_rss(
        Command::new(BIN)
            .args(["compose", "tree", "-q", "--repo"])
            .arg(&ours_repo)
            .arg(w.join("tf.yaml")),
    );
    let ours = t.elapsed().as_secs_f64();
    let nochange = timed(
        Command::new(BIN)
            .args(["compose", "tree", "-q", "--repo"])
            .arg(&ours_repo)
            .arg(w.join("tf.yaml")),
    );
    fsck(&ours_repo);

    // Reference: rpm2cpio | cpio -idm of every package, then ostree commit (archive repo).
    let ref_repo = w.join("reference");
    let rootfs = w.join("rootfs");
    std::fs::create_dir(&rootfs).unwrap();
    run(Command::new("ostree")
        .args(["init", "--mode=archive"])
        .arg(format!("--repo={}", ref_repo.display())));
    let t = Instant::now();
    for i in 0..PACKAGES {
        let rpm = rpms.join(format!("bench{i:03}-1.0-1.noarch.rpm"));
        run(Command::new("sh")
            .arg("-c")
            .arg(format!("rpm2cpio '{}' | cpio -idm --quiet", rpm.display()))
            .current_dir(&rootfs));
    }
    let extract = t.elapsed().as_secs_f64();
    let commit = timed(
        Command::new("ostree")
            .args(["commit", "-b", "bench/x86_64", "--tree=dir=rootfs"])
            .arg(format!("--repo={}", ref_repo.display()))
            .current_dir(w),
    );
    let reference = extract + commit;

    println!(
        "compose benchmark: {PACKAGES} RPMs, {} MiB payload, {} MiB of RPMs (zstd)",
        payload >> 20,
        on_disk >> 20
    );
    println!(
        "  ours (compose tree):               {ours:7.2} s, peak RSS {} MiB",
        rss / 1024
    );
    println!(
        "  rpm2cpio|cpio + ostree commit:     {reference:7.2} s (extract {extract:.2} s + commit {commit:.2} s)"
    );
    println!(
        "  ratio ours/reference:              {:7.2}x (target <= 0.35x, issue 18)",
        ours / reference
    );
    println!("  no-change check:                   {nochange:7.3} s (target <= 0.2 s)");
    println!(
        "  cores: {}",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    );
}
