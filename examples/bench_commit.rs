//! Benchmark (issue 2, "commit"): commit ~1 GiB in 20,000 files into fresh archive repos with
//! `atomic-factory` (the library's `commit_directory`, run in a child process) and with
//! `ostree commit`, in the same run; then re-commit the unchanged tree into the same repos.
//! Prints wall times, the ratios, both peak RSS figures (getrusage of each child) and the
//! ratio of the repositories' object sizes.
//!
//!     cargo run --release --example bench_commit [-- --files N --total-mib M]
//!     cargo run --release --example bench_commit -- --usr [--usr-mib M]
//!
//! After timing, our repository is checked with the real ostree (fsck, pull over HTTP, fsck
//! of the pulled copy); `--no-verify` skips that.
//!
//! The generated tree is kept in /tmp/af-bench-tree and reused while its spec matches.
//! `--usr` (issue 18) commits instead a tree that looks like an OS: the first M MiB (default
//! 1024, or all of it) of this machine's own /usr, copied once to /tmp/af-bench-usr.

#![allow(unsafe_code, reason = "wait4 for the child's resource usage")]

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545F4914F6CDD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

const WORDS: &[&str] = &[
    "ostree",
    "commit",
    "kernel",
    "module",
    "config",
    "library",
    "systemd",
    "service",
    "unit",
    "usr",
    "lib",
    "share",
    "doc",
    "locale",
    "python",
    "site-packages",
    "__init__",
    "return",
];

/// Generates the tree: 75% small (0-16 KiB), 24% medium (16-256 KiB), 1% large (~1-8 MiB),
/// scaled so the total is close to `total`; a third of the files are compressible text.
fn generate(root: &Path, files: usize, total: u64) -> Result<u64> {
    let mut rng = Rng(0x1234_5678_9abc_def1);
    let mut sizes: Vec<u64> = (0..files)
        .map(|_| match rng.below(100) {
            0 => (1 << 20) + rng.below(7 << 20),
            1..=24 => (16 << 10) + rng.below(240 << 10),
            _ => rng.below(16 << 10),
        })
        .collect();
    let sum: u64 = sizes.iter().sum();
    for s in &mut sizes {
        *s = (*s as u128 * total as u128 / sum as u128) as u64;
    }
    let per_dir = 100;
    let mut written = 0;
    let mut buf = Vec::new();
    for (i, size) in sizes.iter().enumerate() {
        let dir = root.join(format!("d{:03}/s{}", i / per_dir, i % 3));
        if i % per_dir == 0 || i % per_dir < 3 {
            fs::create_dir_all(&dir)?;
        }
        buf.clear();
        if i % 3 == 0 {
            while (buf.len() as u64) < *size {
                buf.extend_from_slice(WORDS[rng.below(WORDS.len() as u64) as usize].as_bytes());
                buf.push(if rng.below(8) == 0 { b'\n' } else { b' ' });
            }
            buf.truncate(*size as usize);
        } else {
            while (buf.len() as u64) < *size {
                buf.extend_from_slice(&rng.next().to_le_bytes());
            }
            buf.truncate(*size as usize);
        }
        fs::File::create(dir.join(format!("file-{i:05}")))?.write_all(&buf)?;
        written += size;
    }
    Ok(written)
}

/// Runs a command, returning (wall time, peak RSS in KiB, stdout) via wait4's rusage.
fn timed(cmd: &mut Command) -> Result<(Duration, u64, String)> {
    use std::os::unix::process::ExitStatusExt;
    let t0 = Instant::now();
    let child = cmd
        .stdout(std::process::Stdio::piped())
        .spawn()
        .with_context(|| format!("{cmd:?}"))?;
    let pid = child.id() as libc::pid_t;
    let mut stdout = child.stdout.expect("piped");
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut stdout, &mut s).map(|_| s)
    });
    let mut status = 0;
    // SAFETY: zeroed rusage is a valid out-parameter; pid is our child.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    let r = unsafe { libc::wait4(pid, &mut status, 0, &mut ru) };
    let wall = t0.elapsed();
    if r != pid {
        bail!("wait4 failed: {}", std::io::Error::last_os_error());
    }
    let st = std::process::ExitStatus::from_raw(status);
    if !st.success() {
        bail!("{cmd:?} failed: {st}");
    }
    let out = reader.join().expect("reader thread")?;
    Ok((wall, ru.ru_maxrss as u64, out.trim().to_string()))
}

/// Copies regular files, symlinks and directories of `src` (depth first, sorted) until
/// `limit` bytes of file data; skips what a commit would refuse (non-UTF-8 names, devices,
/// sockets) and what cannot be read. Returns (bytes, files).
fn copy_usr(src: &Path, dest: &Path, limit: u64) -> Result<(u64, u64)> {
    let (mut bytes, mut count) = (0u64, 0u64);
    let walk = walkdir::WalkDir::new(src)
        .min_depth(1)
        .sort_by_file_name()
        .into_iter();
    for e in walk.filter_map(|e| e.ok()) {
        let rel = e.path().strip_prefix(src)?;
        if rel.to_str().is_none() {
            continue;
        }
        let to = dest.join(rel);
        let ft = e.file_type();
        if ft.is_dir() {
            fs::create_dir_all(&to)?;
        } else if ft.is_symlink() {
            if let Ok(target) = fs::read_link(e.path())
                && target.to_str().is_some()
            {
                std::os::unix::fs::symlink(target, &to)?;
            }
        } else if ft.is_file() {
            let Ok(md) = e.metadata() else { continue };
            if bytes + md.len() > limit {
                continue;
            }
            // fs::copy keeps the permission bits.
            if fs::copy(e.path(), &to).is_ok() {
                bytes += md.len();
                count += 1;
            }
        }
    }
    Ok((bytes, count))
}

/// Total size of the files under `repo/objects`.
fn dir_bytes(repo: &Path) -> Result<u64> {
    let mut n = 0;
    for e in walkdir::WalkDir::new(repo.join("objects")) {
        let e = e?;
        if e.file_type().is_file() {
            n += e.metadata()?.len();
        }
    }
    Ok(n)
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--child-commit") {
        // The measured process: what `atomic-factory commit` does, through the library.
        let repo = atomic_factory::ostree::Repo::open(Path::new(&args[2]))?;
        let opts = atomic_factory::ostree::CommitOptions {
            branch: Some("bench".into()),
            timestamp: Some(1_700_000_000),
            subject: "bench".into(),
            ..Default::default()
        };
        let c = atomic_factory::ostree::commit_directory(&repo, Path::new(&args[3]), &opts)?;
        println!("{c}");
        return Ok(());
    }
    let mut files = 20_000usize;
    let mut total_mib = 1024u64;
    let mut generate_only = false;
    let mut usr_mib: Option<u64> = None;
    let mut it = args.iter().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--files" => files = it.next().context("--files N")?.parse()?,
            "--total-mib" => total_mib = it.next().context("--total-mib M")?.parse()?,
            "--generate-only" => generate_only = true,
            "--no-verify" => {}
            "--usr" => usr_mib = Some(usr_mib.unwrap_or(1024)),
            "--usr-mib" => usr_mib = Some(it.next().context("--usr-mib M")?.parse()?),
            _ => bail!(
                "unknown argument {a}; usage: bench_commit [--files N] [--total-mib M] \
                 [--generate-only] [--usr [--usr-mib M]] [--no-verify]"
            ),
        }
    }
    let tree = match usr_mib {
        Some(mib) => {
            let base = PathBuf::from("/tmp/af-bench-usr");
            let tree = base.join("tree");
            let spec = format!("usr {mib}\n");
            if fs::read_to_string(base.join("spec")).ok().as_deref() != Some(spec.as_str()) {
                let _ = fs::remove_dir_all(&base);
                fs::create_dir_all(&tree)?;
                eprintln!("copying up to {mib} MiB of /usr to {} ...", tree.display());
                let (n, count) = copy_usr(Path::new("/usr"), &tree, mib << 20)?;
                Command::new("sync").status()?;
                fs::write(base.join("spec"), &spec)?;
                eprintln!("copied {count} files, {n} bytes");
            }
            println!("input: a copy of up to {mib} MiB of /usr");
            tree
        }
        None => {
            let base = PathBuf::from("/tmp/af-bench-tree");
            let tree = base.join("tree");
            let spec = format!("{files} {total_mib}\n");
            if fs::read_to_string(base.join("spec")).ok().as_deref() != Some(spec.as_str()) {
                let _ = fs::remove_dir_all(&base);
                fs::create_dir_all(&tree)?;
                eprintln!(
                    "generating {files} files, {total_mib} MiB in {} ...",
                    tree.display()
                );
                let t0 = Instant::now();
                let n = generate(&tree, files, total_mib << 20)?;
                Command::new("sync").status()?;
                fs::write(base.join("spec"), &spec)?;
                eprintln!("generated {n} bytes in {:?}", t0.elapsed());
            }
            println!("input: generated, files={files} total={total_mib} MiB");
            tree
        }
    };
    if generate_only {
        return Ok(());
    }
    // Warm the page cache the same way for both tools.
    Command::new("sh")
        .arg("-c")
        .arg(format!("cat $(find {} -type f) >/dev/null", tree.display()))
        .status()?;

    let work = PathBuf::from("/tmp/af-bench-repos");
    let _ = fs::remove_dir_all(&work);
    fs::create_dir_all(&work)?;
    let ours_repo = work.join("ours");
    let theirs_repo = work.join("theirs");
    atomic_factory::ostree::Repo::create(&ours_repo, atomic_factory::ostree::RepoMode::ArchiveZ2)?;
    let st = Command::new("ostree")
        .arg("init")
        .arg(format!("--repo={}", theirs_repo.display()))
        .arg("--mode=archive")
        .status()?;
    if !st.success() {
        bail!("ostree init failed (is ostree installed? run vm/prepare)");
    }
    let me = std::env::current_exe()?;
    let ours_cmd = || {
        let mut c = Command::new(&me);
        c.arg("--child-commit").arg(&ours_repo).arg(&tree);
        c
    };
    let theirs_cmd = || {
        let mut c = Command::new("ostree");
        c.arg("commit")
            .arg(format!("--repo={}", theirs_repo.display()))
            .args(["-b", "bench", "--subject=bench", "--timestamp=@1700000000"])
            .arg(format!("--tree=dir={}", tree.display()));
        c
    };
    let (t_theirs, rss_theirs, c_theirs) = timed(&mut theirs_cmd())?;
    let (t_ours, rss_ours, c_ours) = timed(&mut ours_cmd())?;
    println!(
        "commit: cores={} load average {}",
        std::thread::available_parallelism()?.get(),
        fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .trim()
    );
    println!(
        "  ostree commit         {:>8.2} s  peak RSS {:>6} MiB",
        t_theirs.as_secs_f64(),
        rss_theirs / 1024
    );
    println!(
        "  atomic-factory commit {:>8.2} s  peak RSS {:>6} MiB",
        t_ours.as_secs_f64(),
        rss_ours / 1024
    );
    println!(
        "  ratio ours/ostree     {:>8.3}   (target <= 0.35; RSS target <= 256 MiB)",
        t_ours.as_secs_f64() / t_theirs.as_secs_f64()
    );
    println!(
        "  same commit checksum: {}",
        if c_ours == c_theirs { "yes" } else { "NO" }
    );
    let (size_ours, size_theirs) = (dir_bytes(&ours_repo)?, dir_bytes(&theirs_repo)?);
    println!(
        "  repository size       ours {} MiB, ostree {} MiB, ratio {:.4} (target <= 1.01)",
        size_ours >> 20,
        size_theirs >> 20,
        size_ours as f64 / size_theirs as f64
    );

    let (r_theirs, _, _) = timed(&mut theirs_cmd())?;
    let (r_ours, rr_ours, _) = timed(&mut ours_cmd())?;
    println!("re-commit of the unchanged tree (all objects exist):");
    println!("  ostree commit         {:>8.2} s", r_theirs.as_secs_f64());
    println!(
        "  atomic-factory commit {:>8.2} s  peak RSS {:>6} MiB",
        r_ours.as_secs_f64(),
        rr_ours / 1024
    );
    println!(
        "  ratio ours/ostree     {:>8.3}   (target <= 0.03)",
        r_ours.as_secs_f64() / r_theirs.as_secs_f64()
    );
    if !args.iter().any(|a| a == "--no-verify") {
        verify_with_ostree(&ours_repo, &work, &c_ours)?;
    }
    Ok(())
}

/// Issue 18: the real ostree must accept what we wrote: `ostree fsck` on our repository, and
/// `ostree pull` of our commit over HTTP (python's http.server) into a fresh repository,
/// whose fsck must pass too. Not timed.
fn verify_with_ostree(repo: &Path, work: &Path, commit: &str) -> Result<()> {
    use atomic_factory::command::CommandExt as _;
    let ostree = |args: &[String]| Command::new("ostree").args(args).run_checked().map(drop);
    ostree(&["fsck".into(), format!("--repo={}", repo.display())])?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let mut server = Command::new("python3")
        .args([
            "-m",
            "http.server",
            "--bind",
            "127.0.0.1",
            &port.to_string(),
        ])
        .current_dir(repo)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .context("starting python3 -m http.server")?;
    let pulled = work.join("pulled");
    let result = (|| -> Result<()> {
        // Until the server listens (a pull started earlier fails at once).
        let start = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if start.elapsed() > Duration::from_secs(20) {
                bail!("python3 -m http.server did not start on port {port}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let repo_arg = format!("--repo={}", pulled.display());
        ostree(&["init".into(), repo_arg.clone(), "--mode=bare-user".into()])?;
        ostree(&[
            "remote".into(),
            "add".into(),
            repo_arg.clone(),
            "--no-gpg-verify".into(),
            "origin".into(),
            format!("http://127.0.0.1:{port}/"),
        ])?;
        ostree(&[
            "pull".into(),
            repo_arg.clone(),
            "origin".into(),
            commit.into(),
        ])?;
        ostree(&["fsck".into(), repo_arg])
    })();
    let _ = server.kill();
    let _ = server.wait();
    let _ = fs::remove_dir_all(&pulled);
    result?;
    println!("  ostree fsck of ours, ostree pull over HTTP + fsck: passed");
    Ok(())
}
