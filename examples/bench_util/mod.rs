//! What the postprocess benchmarks share: the cached 4 GiB input and timing helpers.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, ensure};

pub const DIR: &str = "/tmp/atomic-factory-bench";

pub fn run(cmd: &mut Command) -> Result<()> {
    let st = cmd.status().with_context(|| format!("running {cmd:?}"))?;
    ensure!(st.success(), "{cmd:?} failed");
    Ok(())
}

pub fn build_input(dir: &Path) -> Result<PathBuf> {
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
pub fn cpu_seconds() -> f64 {
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
pub fn timed(label: &str, f: impl FnOnce() -> Result<()>) -> Result<(f64, f64)> {
    let (t, c) = (Instant::now(), cpu_seconds());
    f()?;
    let (s, cpu) = (t.elapsed().as_secs_f64(), cpu_seconds() - c);
    eprintln!("{label:<40} {s:8.2} s wall {cpu:8.2} s cpu");
    Ok((s, cpu))
}

pub fn size(p: &Path) -> Result<u64> {
    Ok(std::fs::metadata(p)?.len())
}
