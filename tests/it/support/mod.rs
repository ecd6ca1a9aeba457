//! What the integration tests share: running the tools (ours and the real ones), the
//! locks that keep tests apart now that they share one process, and per area helpers in
//! the submodules.

pub mod compose;
pub mod files;
pub mod gpg;
pub mod http;
pub mod ostree;
pub mod productmd;
pub mod vm;

use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::{Mutex, MutexGuard};

use atomic_factory::command::{CommandExt, command_line};

/// Our binary, built by cargo for the tests.
pub const BIN: &str = env!("CARGO_BIN_EXE_atomic-factory");

/// Our binary as a command.
pub fn ours() -> Command {
    Command::new(BIN)
}

/// The project's root (kickstarts/, templates/, vm/out/, tests/fixtures/).
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Fails (never skips) when a tool the test needs is missing. The sbin directories count
/// too: a CI user's PATH may lack them, and the tests that use e2fsprogs or fdisk add them.
pub fn require(tools: &[&str]) {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let dirs: Vec<PathBuf> = std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/sbin")])
        .collect();
    for tool in tools {
        assert!(
            dirs.iter().any(|d| d.join(tool).is_file()),
            "`{tool}` is not installed: run vm/prepare (it installs the packages the tests need)"
        );
    }
}

/// Runs a command that must succeed; the panic names the command line, its exit status and
/// all of its output (a test failure is read once, in full).
pub fn run(cmd: &mut Command) -> Output {
    let out = cmd.run_unchecked().unwrap_or_else(|e| panic!("{e:#}"));
    assert!(
        out.status.success(),
        "`{}` failed ({}):\nstdout: {}\nstderr: {}",
        command_line(cmd),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// As [`run`], returning stdout as text without surrounding whitespace (the value or lines
/// a test looks at; use [`run`] where trailing newlines matter).
pub fn capture(cmd: &mut Command) -> String {
    String::from_utf8_lossy(&run(cmd).stdout).trim().to_string()
}

/// Peak RSS in KiB of `cmd` alone, measured by `/usr/bin/time`, which forks the command
/// itself: RUSAGE_CHILDREN would count every child of this process, and tests share it.
/// Returns the command's output too; it must succeed.
pub fn run_measuring_peak_rss(cmd: &Command) -> (Output, u64) {
    require(&["time"]);
    let report = tempfile::NamedTempFile::new().unwrap();
    let mut timed = Command::new("/usr/bin/time");
    timed
        .args(["-f", "%M", "-o"])
        .arg(report.path())
        .arg(cmd.get_program())
        .args(cmd.get_args());
    if let Some(dir) = cmd.get_current_dir() {
        timed.current_dir(dir);
    }
    for (k, v) in cmd.get_envs() {
        match v {
            Some(v) => timed.env(k, v),
            None => timed.env_remove(k),
        };
    }
    let out = run(&mut timed);
    let kib = std::fs::read_to_string(report.path())
        .unwrap()
        .trim()
        .parse()
        .expect("/usr/bin/time -f %M prints KiB");
    (out, kib)
}

/// Benchmarks measure time and memory: one at a time, so that none measures another, even
/// when several are selected (`--ignored` with a broad filter).
pub fn benchmark_lock() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}
