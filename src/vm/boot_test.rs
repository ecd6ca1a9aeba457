//! `boot-test`: boot images on throwaway overlays and judge them by their serial console,
//! the way kola judges a machine: pass on an expected line, fail at once on a badness pattern.
//!
//! The image itself is never opened for writing: QEMU writes to a qcow2 overlay in a
//! temporary directory that is removed afterwards.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use regex::Regex;

use super::accel::Accel;
use super::monitor::{self, ConsoleFailure, ConsoleMonitor, FatalPatterns, Seen};
use super::qemu::{self, Boot, QemuConfig};

/// What the stand-in distribution's init prints once the deployment is up.
pub const STANDIN_READY_MARKER: &str = "=== STANDIN-OSTREE-BOOT-OK ===";

/// Passes on a login prompt (a real distribution) or the stand-in's ready marker.
pub const DEFAULT_EXPECT: &str = r"(?m)(login:\s*$|=== STANDIN-OSTREE-BOOT-OK ===)";

/// How long to keep reading the console after a fatal line, so the error shows its context.
const FATAL_GRACE: Duration = Duration::from_millis(700);
/// Console lines quoted in a failure.
const TAIL_LINES: usize = 30;
/// How long QEMU gets to exit once its console has closed.
const EXIT_WAIT: Duration = Duration::from_secs(10);

/// What `boot-test` boots, what it expects to see, and the VM each image boots in; the CLI
/// and the pipeline fill it.
#[derive(Debug, Clone)]
pub struct BootTestConfig {
    /// The images to boot (qcow2, raw or fixed VHD); they are never written to.
    pub images: Vec<PathBuf>,
    /// Each expected regex must match the console (in any order) for a pass.
    pub expect: Vec<String>,
    /// Per image: how long to wait for every expected line.
    pub timeout: Duration,
    /// Guest memory in MiB.
    pub memory_mib: u32,
    /// Guest CPUs.
    pub cpus: u32,
    /// The accelerator to use, already probed by the caller.
    pub accel: Accel,
    /// Boot this many images at once.
    pub jobs: usize,
    /// Keep each image's console log here (`<image-stem>.console.log`).
    pub log_dir: PathBuf,
    /// Where to write a JUnit XML report, if anywhere.
    pub junit: Option<PathBuf>,
}

/// How one image's boot ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Every expected regex matched the console and no fatal pattern did.
    Passed,
    /// A badness pattern matched: its name and the console lines around it.
    Fatal {
        /// The name of the fatal pattern that matched.
        what: String,
    },
    /// The timeout ran out before every expected line appeared.
    TimedOut {
        /// The expected regexes that never matched.
        missing: Vec<String>,
    },
    /// The VM exited before every expected line appeared.
    Exited {
        /// QEMU's exit status (with its stderr, if any), or that its console closed.
        status: String,
        /// The expected regexes that never matched.
        missing: Vec<String>,
    },
    /// QEMU could not be started, or the image could not be used.
    Error {
        /// What went wrong.
        message: String,
    },
}

/// One image's boot-test result.
#[derive(Debug, Clone)]
pub struct BootResult {
    /// The image, as given.
    pub image: PathBuf,
    /// How the boot ended.
    pub verdict: Verdict,
    /// This image's whole test: the overlay, the boot and the wait for a verdict.
    pub duration: Duration,
    /// The image's whole console log, in the configured log folder.
    pub console_log: PathBuf,
    /// The console's last lines (at most 30), quoted on failure.
    pub console_tail: Vec<String>,
}

impl BootResult {
    /// Whether the verdict is [`Verdict::Passed`].
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
                    let result = boot_one(config, image, index, &expect);
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

fn boot_one(
    config: &BootTestConfig,
    image: &Path,
    index: usize,
    expect: &[(String, Regex)],
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
    let watched = crate::runtime::block_on(boot_and_watch(config, image, &console_log, expect))
        .and_then(|r| r);
    match watched {
        Ok((verdict, tail)) => {
            result.verdict = verdict;
            result.console_tail = tail;
        }
        Err(err) => {
            result.verdict = Verdict::Error {
                message: format!("{err:#}"),
            };
            if let Ok(raw) = fs::read(&console_log) {
                result.console_tail = tail(monitor::clean_lines(&raw), TAIL_LINES);
            }
        }
    }
    result.duration = started.elapsed();
    result
}

/// Starts QEMU on an overlay of `image` and watches its console until a verdict; returns it
/// with the console's last lines.
async fn boot_and_watch(
    config: &BootTestConfig,
    image: &Path,
    console_log: &Path,
    expect: &[(String, Regex)],
) -> Result<(Verdict, Vec<String>)> {
    let scratch = tempfile::Builder::new()
        .prefix("boot-test-")
        .tempdir()
        .context("creating a scratch directory for the overlay")?;
    let overlay = scratch.path().join("overlay.qcow2");
    qemu::create_overlay(image, &overlay)?;
    let vm = QemuConfig {
        binary: "qemu-system-x86_64".into(),
        accel: config.accel,
        memory_mib: config.memory_mib.into(),
        cpus: config.cpus,
        disk: overlay,
        cdrom: None,
        boot: Boot::Disk,
        serial_socket: scratch.path().join("serial"),
        virtio_log_socket: None,
        qmp_socket: None,
        network: false,
    };
    let qemu_log = scratch.path().join("qemu.log");
    let mut launched = vm.launch(&qemu_log).await?;
    let console = ConsoleMonitor::attach(launched.serial, console_log, FatalPatterns::boot())?;

    // No silence limit: a guest may print nothing for a while and still pass in time.
    let waited = console
        .wait_for(0, config.timeout, config.timeout, |seen| {
            (!seen.fatal && missing_expectations(expect, seen).is_empty()).then_some(())
        })
        .await;
    let verdict = match waited {
        Ok(()) => Verdict::Passed,
        Err(ConsoleFailure::Fatal(what)) => {
            // Keep reading a moment, so the failure shows the lines after the fatal one.
            tokio::time::sleep(FATAL_GRACE).await;
            Verdict::Fatal { what }
        }
        Err(ConsoleFailure::TimedOut(_) | ConsoleFailure::Silent(_)) => Verdict::TimedOut {
            missing: console_missing(&console, expect),
        },
        Err(ConsoleFailure::Closed) => {
            let status = match tokio::time::timeout(EXIT_WAIT, launched.process.wait()).await {
                Ok(status) => status?.to_string(),
                Err(_) => "its console closed".to_string(),
            };
            let stderr = std::fs::read_to_string(&qemu_log).unwrap_or_default();
            let status = if stderr.trim().is_empty() {
                status
            } else {
                format!("{status}: {}", stderr.trim())
            };
            Verdict::Exited {
                status,
                missing: console_missing(&console, expect),
            }
        }
    };
    launched.process.kill().await;
    Ok((verdict, console.tail(TAIL_LINES)))
}

fn missing_expectations(expect: &[(String, Regex)], seen: &Seen<'_>) -> Vec<String> {
    let console = seen.text();
    expect
        .iter()
        .filter(|(_, re)| !re.is_match(&console))
        .map(|(p, _)| p.clone())
        .collect()
}

/// The expectations the whole console has not met.
fn console_missing(console: &ConsoleMonitor, expect: &[(String, Regex)]) -> Vec<String> {
    console.with_seen(0, |seen| missing_expectations(expect, seen))
}

fn tail(lines: Vec<String>, n: usize) -> Vec<String> {
    lines[lines.len().saturating_sub(n)..].to_vec()
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
    fn default_expectation_takes_login_prompt_or_marker() {
        let expect = compile_expectations(&[]).unwrap();
        let seen = |lines: &[&str], partial: &'static str| {
            let lines: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
            let seen = Seen {
                lines: &lines,
                partial,
                fatal: false,
            };
            missing_expectations(&expect, &seen).len()
        };
        assert_eq!(seen(&["Fedora Linux 41"], "localhost login: "), 0);
        assert_eq!(seen(&["x", "=== STANDIN-OSTREE-BOOT-OK ==="], ""), 0);
        assert_eq!(seen(&["booting..."], ""), 1);
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
