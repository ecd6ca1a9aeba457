//! Benchmark: `atomic-factory postprocess` against `qemu-img convert -c -O qcow2` on the same
//! input in the same run.
//!
//!     cargo run --release --example postprocess_bench
//!
//! The input is a 4 GiB qcow2 holding an ext4 filesystem with about 1.5 GiB of data (text and
//! binaries hard-linked from /usr, plus random files), built once and cached in
//! /tmp/atomic-factory-bench. Each tool runs with a warm page cache.

#![allow(unsafe_code, reason = "bench_util calls getrusage")]

use std::path::PathBuf;
use std::process::Command;

use anyhow::Result;
use atomic_factory::image::{Compression, PostprocessConfig, postprocess};

#[path = "bench_util/mod.rs"]
mod bench_util;
use bench_util::{DIR, build_input, run, size, timed};

fn main() -> Result<()> {
    let dir = PathBuf::from(DIR);
    std::fs::create_dir_all(&dir)?;
    let input = build_input(&dir)?;
    // Warm the page cache so no tool pays for the first read.
    run(Command::new("cat")
        .arg(&input)
        .stdout(std::process::Stdio::null()))?;
    let out = |n: &str| dir.join(n);

    let q = timed("qemu-img convert -c -O qcow2", || {
        run(Command::new("qemu-img")
            .args(["convert", "-c", "-O", "qcow2"])
            .arg(&input)
            .arg(out("qemu.qcow2")))
    })?;
    let qw = timed("qemu-img convert -c -m 2 -W -O qcow2", || {
        run(Command::new("qemu-img")
            .args(["convert", "-c", "-m", "2", "-W", "-O", "qcow2"])
            .arg(&input)
            .arg(out("qemu-w.qcow2")))
    })?;
    let ours = |c: Compression, name: &str| -> Result<(f64, f64)> {
        let mut cfg = PostprocessConfig::new(&input, out(name));
        cfg.compression = c;
        cfg.progress = atomic_factory::progress::Reporter::quiet();
        timed(&format!("atomic-factory postprocess ({c:?})"), || {
            postprocess(&cfg).map(|_| ())
        })
    };
    let z = ours(Compression::Zlib, "ours-zlib.qcow2")?;
    let zs = ours(Compression::Zstd, "ours-zstd.qcow2")?;
    for n in ["ours-zlib.qcow2", "ours-zstd.qcow2"] {
        run(Command::new("qemu-img")
            .args(["compare", "-q"])
            .arg(&input)
            .arg(out(n)))?;
    }

    let (sq, sqw, sz, szs) = (
        size(&out("qemu.qcow2"))?,
        size(&out("qemu-w.qcow2"))?,
        size(&out("ours-zlib.qcow2"))?,
        size(&out("ours-zstd.qcow2"))?,
    );
    let ((q, qc), (qw, qwc), (z, zc), (zs, zsc)) = (q, qw, z, zs);
    let best = q.min(qw);
    println!(
        "input: {} ({} MiB file)",
        input.display(),
        size(&input)? >> 20
    );
    println!(
        "sizes MiB: qemu-img {} | qemu-img -W {} | ours zlib {} | ours zstd {}",
        sq >> 20,
        sqw >> 20,
        sz >> 20,
        szs >> 20
    );
    println!(
        "zlib wall time vs qemu-img: {:.2}x (vs -m 2 -W: {:.2}x), target <= 0.5x",
        z / q,
        z / qw
    );
    println!(
        "zlib size vs qemu-img: {:.3}x, target <= 1.02x",
        sz as f64 / sq as f64
    );
    println!(
        "cpu seconds: qemu-img {qc:.1} | qemu-img -W {qwc:.1} | ours zlib {zc:.1} | ours zstd {zsc:.1}; load average {}",
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .split(' ')
            .next()
            .unwrap_or("?")
    );
    println!(
        "zstd speed-up vs the faster qemu-img zlib run: {:.2}x, target >= 3x",
        best / zs
    );
    for n in [
        "qemu.qcow2",
        "qemu-w.qcow2",
        "ours-zlib.qcow2",
        "ours-zstd.qcow2",
        "CHECKSUM",
        "manifest.json",
    ] {
        let _ = std::fs::remove_file(out(n));
    }
    Ok(())
}
