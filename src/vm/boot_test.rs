//! `boot-test`: boot images on throwaway overlays and judge them by their serial console,
//! the way kola judges a machine: pass on an expected line, fail at once on a badness pattern.
//!
//! The image itself is never opened for writing: QEMU writes to a qcow2 overlay in a
//! temporary directory that is removed afterwards.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::fs;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use regex::Regex;

/// What the stand-in distribution's init prints once the deployment is up.
pub const STANDIN_READY_MARKER: &str = "=== STANDIN-OSTREE-BOOT-OK ===";

/// Passes on a login prompt (a real distribution) or the stand-in's ready marker.
pub const DEFAULT_EXPECT: &str = r"(?m)(login:\s*$|=== STANDIN-OSTREE-BOOT-OK ===)";

/// Console lines that mean the boot failed, whatever else appears later. From kola's
/// badness checks (mantle/kola/harness.go) plus the kernel's own fatal messages.
pub const FATAL_PATTERNS: &[(&str, &str)] = &[
    ("kernel panic", r"Kernel panic - not syncing"),
    ("kernel oops", r"\bOops: "),
    ("kernel BUG", r"(kernel BUG at|BUG: unable to handle)"),
    ("kernel warning", r"WARNING: CPU: \d+ PID: \d+"),
    (
        "emergency mode",
        r"(Entering emergency mode|You are in emergency mode|emergency shell)",
    ),
    ("dracut gave up", r"dracut: Refusing to continue"),
    ("offline device", r"rejecting I/O to offline device"),
    ("out of memory", r"invoked oom-killer"),
    ("systemd ordering cycle", r"Ordering cycle found"),
    ("failed unit", r"\[FAILED\] Failed to start"),
    ("failed generator", r"Failed to run generator"),
    ("segmentation fault", r"(segfault at|core dumped)"),
];

/// How long to keep reading the console after a fatal line, so the error shows its context.
const FATAL_GRACE: Duration = Duration::from_millis(700);
/// Console lines quoted in a failure.
const TAIL_LINES: usize = 30;

#[derive(Debug, Clone)]
pub struct BootTestConfig {
    pub images: Vec<PathBuf>,
    /// Each expected regex must match the console (in any order) for a pass.
    pub expect: Vec<String>,
    pub timeout: Duration,
    pub memory_mib: u32,
    pub cpus: u32,
    /// The accelerator to use, already probed by the caller.
    pub accel: super::accel::Accel,
    /// Boot this many images at once.
    pub jobs: usize,
    /// Keep each image's console log here (`<image-stem>.console.log`).
    pub log_dir: PathBuf,
    pub junit: Option<PathBuf>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Passed,
    /// A badness pattern matched: its name and the console lines around it.
    Fatal {
        what: String,
    },
    /// The timeout ran out before every expected line appeared.
    TimedOut {
        missing: Vec<String>,
    },
    /// The VM exited before every expected line appeared.
    Exited {
        status: String,
        missing: Vec<String>,
    },
    /// QEMU could not be started, or the image could not be used.
    Error {
        message: String,
    },
}

#[derive(Debug, Clone)]
pub struct BootResult {
    pub image: PathBuf,
    pub verdict: Verdict,
    pub duration: Duration,
    pub console_log: PathBuf,
    pub console_tail: Vec<String>,
}

impl BootResult {
    pub fn passed(&self) -> bool {
        self.verdict == Verdict::Passed
    }

    /// One line for the summary, and the reason on failure.
    pub fn describe(&self) -> String {
        let name = self.image.display();
        let secs = self.duration.as_secs_f64();
        match &self.verdict {
            Verdict::Passed => format!("PASS {name} ({secs:.1} s)"),
            Verdict::Fatal { what } => format!("FAIL {name} ({secs:.1} s): {what} on the console"),
            Verdict::TimedOut { missing } => format!(
                "FAIL {name} ({secs:.1} s): timed out waiting for {}",
                missing.join(", ")
            ),
            Verdict::Exited { status, missing } => format!(
                "FAIL {name} ({secs:.1} s): the VM exited ({status}) before printing {}",
                missing.join(", ")
            ),
            Verdict::Error { message } => format!("FAIL {name}: {message}"),
        }
    }
}

/// Boots every image (up to `jobs` at once) and returns one result per image, in order.
/// Writes the JUnit report when asked. Errors only when nothing could be judged at all.
pub fn run(config: &BootTestConfig) -> Result<Vec<BootResult>> {
    let expect = compile_expectations(&config.expect)?;
    let fatal = compile_fatal()?;
    fs::create_dir_all(&config.log_dir)
        .with_context(|| format!("creating log directory {}", config.log_dir.display()))?;

    let queue = Mutex::new((0..config.images.len()).collect::<VecDeque<_>>());
    let results = Mutex::new(vec![None; config.images.len()]);
    let jobs = config.jobs.clamp(1, config.images.len().max(1));
    std::thread::scope(|scope| {
        for _ in 0..jobs {
            scope.spawn(|| {
                loop {
                    let Some(index) = queue.lock().expect("queue lock").pop_front() else {
                        break;
                    };
                    let image = &config.images[index];
                    let result = boot_one(config, image, index, &expect, &fatal);
                    eprintln!("boot-test: {}", result.describe());
                    results.lock().expect("results lock")[index] = Some(result);
                }
            });
        }
    });
    let results: Vec<BootResult> = results
        .into_inner()
        .expect("results lock")
        .into_iter()
        .map(|r| r.expect("every image was booted"))
        .collect();
    if let Some(path) = &config.junit {
        write_junit(path, &results)?;
    }
    Ok(results)
}

fn compile_expectations(expect: &[String]) -> Result<Vec<(String, Regex)>> {
    let patterns: Vec<String> = if expect.is_empty() {
        vec![DEFAULT_EXPECT.to_string()]
    } else {
        expect.to_vec()
    };
    patterns
        .into_iter()
        .map(|p| {
            let re = Regex::new(&p)
                .with_context(|| format!("--expect {p:?} is not a valid regular expression"))?;
            Ok((p, re))
        })
        .collect()
}

fn compile_fatal() -> Result<Vec<(&'static str, Regex)>> {
    FATAL_PATTERNS
        .iter()
        .map(|(name, p)| Ok((*name, Regex::new(p)?)))
        .collect()
}

/// Kills QEMU when the boot is over, whichever way it ends (pass, fail, panic in our code).
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn boot_one(
    config: &BootTestConfig,
    image: &Path,
    index: usize,
    expect: &[(String, Regex)],
    fatal: &[(&'static str, Regex)],
) -> BootResult {
    let started = Instant::now();
    let stem = image
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| format!("image{index}"));
    let console_log = config
        .log_dir
        .join(format!("{index:02}-{stem}.console.log"));
    let mut result = BootResult {
        image: image.to_path_buf(),
        verdict: Verdict::Passed,
        duration: Duration::ZERO,
        console_log: console_log.clone(),
        console_tail: Vec::new(),
    };
    match boot_and_watch(config, image, &console_log, expect, fatal) {
        Ok((verdict, console)) => {
            result.verdict = verdict;
            result.console_tail = tail(&console, TAIL_LINES);
        }
        Err(err) => {
            result.verdict = Verdict::Error {
                message: format!("{err:#}"),
            };
            if let Ok(text) = fs::read(&console_log) {
                result.console_tail = tail(&clean_console(&text), TAIL_LINES);
            }
        }
    }
    result.duration = started.elapsed();
    result
}

/// A qcow2 overlay backed by `image`, so a VM can write without touching the image (used by
/// boot-test and upgrade-test).
pub(crate) fn create_overlay(image: &Path, overlay: &Path) -> Result<()> {
    let image =
        fs::canonicalize(image).with_context(|| format!("opening image {}", image.display()))?;
    let format = detect_format(&image)?;
    let out = Command::new("qemu-img")
        .args(["create", "-q", "-f", "qcow2", "-F", format, "-b"])
        .arg(&image)
        .arg(overlay)
        .output()
        .context("running qemu-img (install it with vm/prepare)")?;
    if !out.status.success() {
        bail!(
            "creating an overlay of {}: {}",
            image.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// Starts QEMU on an overlay of `image` and reads its console until a verdict.
fn boot_and_watch(
    config: &BootTestConfig,
    image: &Path,
    console_log: &Path,
    expect: &[(String, Regex)],
    fatal: &[(&'static str, Regex)],
) -> Result<(Verdict, String)> {
    let scratch = tempfile::Builder::new()
        .prefix("boot-test-")
        .tempdir()
        .context("creating a scratch directory for the overlay")?;
    let overlay = scratch.path().join("overlay.qcow2");
    create_overlay(image, &overlay)?;
    // QEMU appends to an existing file; start each run with an empty log.
    fs::write(console_log, b"").with_context(|| format!("creating {}", console_log.display()))?;

    let mut cmd = Command::new("qemu-system-x86_64");
    cmd.args(["-accel", config.accel.qemu_name()])
        .args(["-m", &config.memory_mib.to_string()])
        .args(["-smp", &config.cpus.to_string()])
        .args(["-display", "none", "-monitor", "none", "-no-reboot"])
        .arg("-serial")
        .arg(format!("file:{}", console_log.display()))
        .arg("-drive")
        .arg(format!("file={},if=virtio,format=qcow2", overlay.display()))
        .args(["-nic", "none"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    if config.accel == super::accel::Accel::Tcg {
        // qemu64 lacks x86-64-v2, which current distributions require (kola does the same).
        cmd.args(["-cpu", "Nehalem"]);
    }
    super::qemu::die_with_parent(&mut cmd);
    let child = cmd
        .spawn()
        .context("starting qemu-system-x86_64 (install it with vm/prepare)")?;
    let mut qemu = KillOnDrop(child);

    let mut console;
    let mut raw = Vec::new();
    let mut offset = 0u64;
    let deadline = Instant::now() + config.timeout;
    let mut fatal_seen: Option<(String, Instant)> = None;
    loop {
        read_new(console_log, &mut offset, &mut raw)?;
        console = clean_console(&raw);

        if fatal_seen.is_none()
            && let Some((name, _)) = fatal.iter().find(|(_, re)| re.is_match(&console))
        {
            fatal_seen = Some((name.to_string(), Instant::now()));
        }
        if let Some((name, when)) = &fatal_seen {
            if when.elapsed() >= FATAL_GRACE {
                return Ok((Verdict::Fatal { what: name.clone() }, console));
            }
        } else {
            let missing = missing_expectations(expect, &console);
            if missing.is_empty() {
                return Ok((Verdict::Passed, console));
            }
            if let Some(status) = qemu.0.try_wait().context("waiting for QEMU")? {
                // Read what QEMU wrote before it exited, then judge once more.
                read_new(console_log, &mut offset, &mut raw)?;
                console = clean_console(&raw);
                if let Some((name, _)) = fatal.iter().find(|(_, re)| re.is_match(&console)) {
                    return Ok((
                        Verdict::Fatal {
                            what: name.to_string(),
                        },
                        console,
                    ));
                }
                let missing = missing_expectations(expect, &console);
                if missing.is_empty() {
                    return Ok((Verdict::Passed, console));
                }
                let mut stderr = String::new();
                if let Some(mut err) = qemu.0.stderr.take() {
                    let _ = err.read_to_string(&mut stderr);
                }
                let status = if stderr.trim().is_empty() {
                    status.to_string()
                } else {
                    format!("{status}: {}", stderr.trim())
                };
                return Ok((Verdict::Exited { status, missing }, console));
            }
            if Instant::now() >= deadline {
                return Ok((Verdict::TimedOut { missing }, console));
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn missing_expectations(expect: &[(String, Regex)], console: &str) -> Vec<String> {
    expect
        .iter()
        .filter(|(_, re)| !re.is_match(console))
        .map(|(p, _)| p.clone())
        .collect()
}

/// Appends what was written to the log since `offset`.
fn read_new(path: &Path, offset: &mut u64, buf: &mut Vec<u8>) -> Result<()> {
    let mut file = fs::File::open(path).with_context(|| format!("reading {}", path.display()))?;
    file.seek(SeekFrom::Start(*offset))?;
    let n = file.read_to_end(buf)?;
    *offset += n as u64;
    Ok(())
}

/// Console text without carriage returns and ANSI escape sequences, so patterns match
/// what a person reads.
pub fn clean_console(raw: &[u8]) -> String {
    let text = String::from_utf8_lossy(raw);
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\r' => {}
            '\u{1b}' => {
                // CSI: ESC [ params final-byte; other escapes: ESC + one char.
                if chars.peek() == Some(&'[') {
                    chars.next();
                    for c in chars.by_ref() {
                        if ('@'..='~').contains(&c) {
                            break;
                        }
                    }
                } else {
                    chars.next();
                }
            }
            c => out.push(c),
        }
    }
    out
}

fn tail(text: &str, n: usize) -> Vec<String> {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..]
        .iter()
        .map(|l| l.to_string())
        .collect()
}

/// "qcow2", "vpc" (a fixed VHD: its footer is the last 512 bytes) or "raw", from the file's
/// magic, so the overlay names its backing format (QEMU refuses to probe raw backing files).
fn detect_format(image: &Path) -> Result<&'static str> {
    use std::os::unix::fs::FileExt;
    let mut magic = [0u8; 4];
    let mut file =
        fs::File::open(image).with_context(|| format!("opening image {}", image.display()))?;
    let n = file
        .read(&mut magic)
        .with_context(|| format!("reading image {}", image.display()))?;
    if n == 0 {
        bail!("image {} is empty", image.display());
    }
    if magic == *b"QFI\xfb" {
        return Ok("qcow2");
    }
    let len = file
        .metadata()
        .with_context(|| format!("reading image {}", image.display()))?
        .len();
    let mut cookie = [0u8; 8];
    if len >= 1024 && file.read_exact_at(&mut cookie, len - 512).is_ok() && cookie == *b"conectix" {
        return Ok("vpc");
    }
    Ok("raw")
}

/// JUnit XML as Jenkins, GitLab and GitHub test reporters read it: one testsuite, one
/// testcase per image, a `<failure>` with the console tail for each failed boot.
pub fn write_junit(path: &Path, results: &[BootResult]) -> Result<()> {
    let failures = results.iter().filter(|r| !r.passed()).count();
    let total: f64 = results.iter().map(|r| r.duration.as_secs_f64()).sum();
    let mut xml = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        xml,
        "<testsuites name=\"atomic-factory boot-test\" tests=\"{}\" failures=\"{failures}\" errors=\"0\" time=\"{total:.3}\">",
        results.len()
    );
    let _ = writeln!(
        xml,
        "  <testsuite name=\"boot-test\" tests=\"{}\" failures=\"{failures}\" errors=\"0\" skipped=\"0\" time=\"{total:.3}\">",
        results.len()
    );
    for r in results {
        let name = escape_xml(&r.image.display().to_string());
        let _ = writeln!(
            xml,
            "    <testcase classname=\"boot-test\" name=\"{name}\" time=\"{:.3}\">",
            r.duration.as_secs_f64()
        );
        if !r.passed() {
            let _ = writeln!(
                xml,
                "      <failure message=\"{}\" type=\"boot\">{}</failure>",
                escape_xml(&r.describe()),
                escape_xml(&r.console_tail.join("\n"))
            );
        }
        let _ = writeln!(
            xml,
            "      <system-out>console log: {}</system-out>",
            escape_xml(&r.console_log.display().to_string())
        );
        xml.push_str("    </testcase>\n");
    }
    xml.push_str("  </testsuite>\n</testsuites>\n");
    crate::fsutil::write_atomic(path, xml.as_bytes())
}

/// Escapes text for XML content and attributes, and drops the control characters that
/// XML 1.0 cannot carry at all (consoles are full of them).
pub(crate) fn escape_xml(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\t' | '\n' => out.push(c),
            c if (c as u32) < 0x20 => {}
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn console_cleaning_drops_carriage_returns_and_ansi() {
        let raw = b"\x1b[0;32m  OK  \x1b[0m] Started x\r\n78\r13 metadata\n";
        assert_eq!(clean_console(raw), "  OK  ] Started x\n7813 metadata\n");
    }

    #[test]
    fn fatal_patterns_match_real_console_lines() {
        let fatal = compile_fatal().unwrap();
        let cases = [
            (
                "[    2.1] Kernel panic - not syncing: Attempted to kill init! exitcode=0x00000100",
                "kernel panic",
            ),
            (
                "You are in emergency mode. After logging in, type \"journalctl -xb\"",
                "emergency mode",
            ),
            (
                "[FAILED] Failed to start sshd.service - OpenSSH server daemon.",
                "failed unit",
            ),
            (
                "[  9.9] systemd invoked oom-killer: gfp_mask=0x140cca",
                "out of memory",
            ),
        ];
        for (line, want) in cases {
            let hit = fatal
                .iter()
                .find(|(_, re)| re.is_match(line))
                .map(|(n, _)| *n);
            assert_eq!(hit, Some(want), "{line}");
        }
        let benign = "[  OK  ] Started sshd.service\nfedora login: ";
        assert!(fatal.iter().all(|(_, re)| !re.is_match(benign)));
    }

    #[test]
    fn default_expectation_takes_login_prompt_or_marker() {
        let expect = compile_expectations(&[]).unwrap();
        assert!(missing_expectations(&expect, "Fedora Linux 41\nlocalhost login: ").is_empty());
        assert!(missing_expectations(&expect, "x\n=== STANDIN-OSTREE-BOOT-OK ===\n").is_empty());
        assert_eq!(missing_expectations(&expect, "booting...\n").len(), 1);
    }

    #[test]
    fn bad_expect_regex_is_an_error_naming_it() {
        let err = compile_expectations(&["(unclosed".into()]).unwrap_err();
        assert!(format!("{err:#}").contains("(unclosed"));
    }

    #[test]
    fn xml_escaping_removes_control_characters() {
        assert_eq!(escape_xml("a<b>&\"\u{7}c\n"), "a&lt;b&gt;&amp;&quot;c\n");
    }
}
