//! Benchmark: `atomic-factory postprocess` against `qemu-img convert -c -O qcow2` on the same
//! input in the same run.
//!
//!     cargo run --release --example postprocess_bench
//!
//! The input is a 4 GiB qcow2 holding an ext4 filesystem with about 1.5 GiB of data (text and
//! binaries hard-linked from /usr, plus random files), built once and cached in
//! /tmp/atomic-factory-bench. Each tool runs with a warm page cache.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, ensure};
use atomic_factory::image::{Compression, PostprocessConfig, postprocess};

const DIR: &str = "/tmp/atomic-factory-bench";

fn run(cmd: &mut Command) -> Result<()> {
    let st = cmd.status().with_context(|| format!("running {cmd:?}"))?;
    ensure!(st.success(), "{cmd:?} failed");
    Ok(())
}

fn build_input(dir: &Path) -> Result<PathBuf> {
    let img = dir.join("bench-4g.qcow2");
    if img.exists() {
        return Ok(img);
    }
    eprintln!("building the benchmark input in {DIR} (once)...");
    let stage = dir.join("stage");
    let _ = std::fs::remove_dir_all(&stage);
    std::fs::create_dir_all(stage.join("random"))?;
    // Hard links: the same bytes as on a real system, without copying 1.1 GiB.
    for src in ["/usr/bin", "/usr/share", "/usr/libexec"] {
        run(Command::new("cp")
            .args(["-al", src])
            .arg(stage.join(src.trim_start_matches('/').replace('/', "_"))))?;
    }
    for i in 0..12 {
        run(Command::new("head")
            .args(["-c", "32M", "/dev/urandom"])
            .stdout(std::fs::File::create(
                stage.join("random").join(format!("r{i}.bin")),
            )?))?;
    }
    let raw = dir.join("bench-4g.raw");
    std::fs::File::create(&raw)?.set_len(4 << 30)?;
    run(Command::new("/usr/sbin/mkfs.ext4")
        .args(["-q", "-F", "-E", "nodiscard", "-d"])
        .arg(&stage)
        .arg(&raw))?;
    let tmp = dir.join("bench-4g.qcow2.tmp");
    run(Command::new("qemu-img")
        .args(["convert", "-O", "qcow2"])
        .arg(&raw)
        .arg(&tmp))?;
    std::fs::rename(&tmp, &img)?;
    std::fs::remove_file(&raw)?;
    std::fs::remove_dir_all(&stage)?;
    Ok(img)
}

/// CPU seconds (user + system) used so far by this process and by its waited-for children.
fn cpu_seconds() -> f64 {
    let mut total = 0.0;
    for who in [libc::RUSAGE_SELF, libc::RUSAGE_CHILDREN] {
        // SAFETY: getrusage only writes the struct we pass.
        let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
        unsafe { libc::getrusage(who, &mut ru) };
        let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
        total += tv(ru.ru_utime) + tv(ru.ru_stime);
    }
    total
}

/// Wall and CPU seconds of `f`. The machine is shared, so CPU time is the steadier figure.
fn timed(label: &str, f: impl FnOnce() -> Result<()>) -> Result<(f64, f64)> {
    let (t, c) = (Instant::now(), cpu_seconds());
    f()?;
    let (s, cpu) = (t.elapsed().as_secs_f64(), cpu_seconds() - c);
    eprintln!("{label:<40} {s:8.2} s wall {cpu:8.2} s cpu");
    Ok((s, cpu))
}

fn size(p: &Path) -> Result<u64> {
    Ok(std::fs::metadata(p)?.len())
}

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
        cfg.quiet = true;
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
