//! The console monitor, one for every VM we run (install, boot-test, upgrade-test): read a
//! QEMU chardev stream, keep the raw bytes in a log, cut it into lines cleaned of ANSI
//! escapes and `\r` rewrites, name the lines that match the caller's fatal patterns, and
//! wait for what the caller looks for with an overall limit and a silence (hang) limit.
//!
//! Also what the installer's lines mean: its phases, and the last lines kept for errors.

use std::collections::VecDeque;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use anyhow::{Context as _, Result};
use regex::Regex;
use tokio::io::{AsyncRead, AsyncReadExt as _};
use tokio::sync::{Notify, mpsc};
use tokio::time::Instant;

/// Substrings that mean the install failed. lorax's LogMonitor list (src/pylorax/monitor.py),
/// kickstart-tests' additions (log_handler.py), the kernel's own fatal lines, and the
/// stand-in installer's error lines.
const INSTALLER_FATAL: &[&str] = &[
    // lorax
    "Traceback (",
    "traceback script(s) have been run",
    "Out of memory:",
    "Call Trace:",
    "insufficient disk space:",
    "Not enough disk space to download the packages",
    "error populating transaction after",
    "crashed on signal",
    "packaging: Missed: NoSuchPackage",
    "packaging: Installation failed",
    "The following error occurred while installing.  This is a fatal error",
    "Error in POSTIN scriptlet in rpm package",
    // kickstart-tests
    "Payload setup error:",
    "Would you like to ignore this and continue with installation?",
    "Transaction check error:",
    "The following problem occurred on line",
    "storage configuration failed:",
    "Not enough space in file systems",
    // kernel
    "Kernel panic - not syncing",
    "invoked oom-killer",
    // the stand-in installer
    "STANDIN-INSTALL-FAILED:",
];

/// Installer lines that are fatal by a regular expression rather than a substring:
/// (name, pattern, unless this also matches).
const INSTALLER_FATAL_RE: &[(&str, &str, Option<&str>)] = &[
    // lorax
    (
        "anaconda dumped core",
        r"Process [0-9]+ \(anaconda\) of user .*dumped core",
        None,
    ),
    (
        "base repository not valid",
        r"packaging: base repo.* not valid| not valid.*packaging: base repo",
        Some(r"\(CDROM/file"),
    ),
    // kickstart-tests: a syslog line of severity CRIT (Anaconda's virtio log has `CRIT <tag>:`)
    ("critical log line", r"(?:^|\s)CRIT(?:\s|$)", None),
];

/// Installer lines that contain a fatal pattern but are known to be harmless (lorax,
/// kickstart-tests).
const INSTALLER_IGNORED: &[&str] = &[
    "IGNORED",
    "CRIT systemd-coredump:",
    "DegradedArray",
    "deprecated",
];

/// Console lines that mean a boot failed, whatever else appears later. From kola's badness
/// checks (mantle/kola/harness.go) plus the kernel's own fatal messages.
const BOOT_FATAL: &[(&str, &str)] = &[
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

struct Pattern {
    name: &'static str,
    matches: Regex,
    unless: Option<Regex>,
}

/// A set of fatal console patterns: each caller watches with the set for what it runs.
pub struct FatalPatterns {
    patterns: Vec<Pattern>,
    /// A line containing one of these is never fatal.
    ignored: &'static [&'static str],
}

impl FatalPatterns {
    /// The installer's: Anaconda's and the stand-in's failures, and the kernel's. (Not the
    /// boot set: a unit failing in the installer's own system does not fail an install.)
    pub fn installer() -> &'static FatalPatterns {
        static SET: OnceLock<FatalPatterns> = OnceLock::new();
        SET.get_or_init(|| {
            let substrings = INSTALLER_FATAL.iter().map(|s| Pattern {
                name: s,
                matches: Regex::new(&regex::escape(s)).expect("escaped substring"),
                unless: None,
            });
            let expressions = INSTALLER_FATAL_RE.iter().map(|(name, re, unless)| Pattern {
                name,
                matches: Regex::new(re).expect("installer fatal pattern"),
                unless: unless.map(|u| Regex::new(u).expect("installer exception pattern")),
            });
            FatalPatterns {
                patterns: substrings.chain(expressions).collect(),
                ignored: INSTALLER_IGNORED,
            }
        })
    }

    /// An installed system's: kola's badness checks and the kernel's (boot-test,
    /// upgrade-test).
    pub fn boot() -> &'static FatalPatterns {
        static SET: OnceLock<FatalPatterns> = OnceLock::new();
        SET.get_or_init(|| FatalPatterns {
            patterns: BOOT_FATAL
                .iter()
                .map(|(name, re)| Pattern {
                    name,
                    matches: Regex::new(re).expect("boot fatal pattern"),
                    unless: None,
                })
                .collect(),
            ignored: &[],
        })
    }

    /// The name of the first pattern `line` matches, if it is fatal.
    pub fn find(&self, line: &str) -> Option<&'static str> {
        if self.ignored.iter().any(|i| line.contains(i)) {
            return None;
        }
        self.patterns
            .iter()
            .find(|p| {
                p.matches.is_match(line) && !p.unless.as_ref().is_some_and(|u| u.is_match(line))
            })
            .map(|p| p.name)
    }
}

/// Install phases, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Phase {
    /// Checking the inputs and preparing the VM, before QEMU starts.
    Starting,
    /// QEMU started; the installer is booting.
    Booting,
    /// The installer fetched or loaded the kickstart.
    KickstartFetched,
    /// Ostree objects are being pulled from the served repository.
    Pulling,
    /// The commit is being deployed.
    Deploying,
    /// The bootloader is being installed.
    Bootloader,
    /// The install is done and the guest is powering off.
    PoweringOff,
}

impl Phase {
    /// The phase as the progress display names it.
    pub fn label(self) -> &'static str {
        match self {
            Phase::Starting => "starting",
            Phase::Booting => "booting",
            Phase::KickstartFetched => "kickstart fetched",
            Phase::Pulling => "pulling objects",
            Phase::Deploying => "deploying",
            Phase::Bootloader => "bootloader",
            Phase::PoweringOff => "powering off",
        }
    }
}

/// The phase a log line announces (stand-in installer and Anaconda wording).
pub fn phase_of(line: &str) -> Option<Phase> {
    let l = line.to_ascii_lowercase();
    if l.contains("kickstart loaded") || l.contains("parsing kickstart") {
        Some(Phase::KickstartFetched)
    } else if l.contains("phase: pulling") || l.contains("starting pull") {
        Some(Phase::Pulling)
    } else if l.contains("phase: deploying")
        || l.contains("ostree admin deploy")
        || l.contains("deployment starting")
    {
        Some(Phase::Deploying)
    } else if l.contains("phase: bootloader")
        || l.contains("installing boot loader")
        || l.contains("installing bootloader")
    {
        Some(Phase::Bootloader)
    } else if l.contains("powering off") || l.contains("reboot: power down") {
        Some(Phase::PoweringOff)
    } else {
        None
    }
}

/// The last lines of both logs, for error messages and `last-lines.log`.
#[derive(Debug, Default)]
pub struct Tail {
    lines: VecDeque<String>,
}

impl Tail {
    /// How many lines are kept; older ones are dropped.
    pub const KEEP: usize = 50;

    /// Adds `line` from the log named `source` (kept as `[source] line`), dropping the oldest
    /// line beyond [`Self::KEEP`].
    pub fn push(&mut self, source: &str, line: &str) {
        if self.lines.len() == Self::KEEP {
            self.lines.pop_front();
        }
        self.lines.push_back(format!("[{source}] {line}"));
    }

    /// The kept lines, oldest first.
    pub fn lines(&self) -> impl Iterator<Item = &String> {
        self.lines.iter()
    }

    /// The last `n` lines, each indented and ending in a newline (for error messages).
    pub fn last(&self, n: usize) -> String {
        let skip = self.lines.len().saturating_sub(n);
        self.lines
            .iter()
            .skip(skip)
            .map(|l| format!("  {l}\n"))
            .collect()
    }
}

/// Strips what makes console lines hard to match: `\r` progress rewrites (the line reads as
/// its last non-empty version, as on a terminal) and escape sequences (CSI `ESC [ ... final`,
/// and two-character escapes).
pub fn clean_line(raw: &[u8]) -> String {
    let text = String::from_utf8_lossy(raw);
    text.split('\r')
        .map(strip_escapes)
        .rfind(|part| !part.trim().is_empty())
        .unwrap_or_default()
}

fn strip_escapes(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\u{1b}' => {
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
            '\n' => {}
            c => out.push(c),
        }
    }
    out
}

/// A whole console log as cleaned lines (for a log read back from disk).
pub fn clean_lines(raw: &[u8]) -> Vec<String> {
    raw.split(|&b| b == b'\n').map(clean_line).collect()
}

/// Cuts console bytes into cleaned lines and names the fatal ones. Pure: the reader task
/// feeds it, and so do the tests.
pub struct LineSplitter {
    patterns: &'static FatalPatterns,
    partial: Vec<u8>,
}

/// One complete console line, cleaned, with the fatal pattern it matches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    /// The line without escape sequences and `\r` rewrites.
    pub text: String,
    /// The name of the fatal pattern the line matches, if any.
    pub fatal: Option<&'static str>,
}

impl LineSplitter {
    /// A splitter that judges lines by `patterns`.
    pub fn new(patterns: &'static FatalPatterns) -> LineSplitter {
        LineSplitter {
            patterns,
            partial: Vec::new(),
        }
    }

    /// The lines `bytes` completes.
    pub fn push(&mut self, bytes: &[u8]) -> Vec<Line> {
        let mut lines = Vec::new();
        for &byte in bytes {
            if byte == b'\n' {
                lines.push(self.line(&self.partial));
                self.partial.clear();
            } else {
                self.partial.push(byte);
            }
        }
        lines
    }

    /// The line being written (a prompt has no newline yet), cleaned.
    pub fn partial(&self) -> String {
        clean_line(&self.partial)
    }

    /// At the end of the stream: the unterminated last line, if there is one.
    pub fn finish(&mut self) -> Option<Line> {
        let raw = std::mem::take(&mut self.partial);
        (!raw.is_empty()).then(|| self.line(&raw))
    }

    fn line(&self, raw: &[u8]) -> Line {
        let text = clean_line(raw);
        let fatal = self.patterns.find(&text);
        Line { text, fatal }
    }
}

/// Why a wait on the console ended without what it waited for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConsoleFailure {
    /// A fatal pattern (its name) appeared on the console.
    Fatal(String),
    /// Nothing at all came from the guest for this long.
    Silent(Duration),
    /// The overall time limit of the wait ran out while the guest was still talking.
    TimedOut(Duration),
    /// The console closed: QEMU exited (a reboot or power-off under -no-reboot, or a crash).
    Closed,
}

impl std::fmt::Display for ConsoleFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConsoleFailure::Fatal(what) => write!(f, "{what} on the console"),
            ConsoleFailure::Silent(d) => write!(
                f,
                "the guest stopped answering: no console output for {} s",
                d.as_secs()
            ),
            ConsoleFailure::TimedOut(d) => write!(f, "no answer within {} s", d.as_secs()),
            ConsoleFailure::Closed => write!(f, "the VM went away (QEMU exited)"),
        }
    }
}

/// What the console has shown, as a wait's condition sees it.
pub struct Seen<'a> {
    /// The complete lines from the wait's cursor on.
    pub lines: &'a [String],
    /// The line being written, cleaned (a login prompt ends without a newline).
    pub partial: &'a str,
    /// Whether a fatal line has appeared (anywhere, not only after the cursor).
    pub fatal: bool,
}

impl Seen<'_> {
    /// The lines and the partial line as one text, for multi-line patterns.
    pub fn text(&self) -> String {
        let mut text = String::new();
        for line in self.lines {
            text.push_str(line);
            text.push('\n');
        }
        text.push_str(self.partial);
        text
    }
}

#[derive(Default)]
struct Buffer {
    lines: Vec<String>,
    partial: String,
    last_output: Option<Instant>,
    /// The first fatal line: its index and pattern name.
    fatal: Option<(usize, &'static str)>,
    closed: bool,
}

struct Shared {
    buffer: Mutex<Buffer>,
    changed: Notify,
}

/// A console being read: every line kept, for waits on what the guest printed.
pub struct ConsoleMonitor {
    shared: Arc<Shared>,
    log: PathBuf,
}

impl ConsoleMonitor {
    /// Starts reading `stream` (a QEMU chardev) on the runtime; raw bytes go to `log`
    /// (created afresh), lines are judged with `patterns`.
    pub fn attach(
        stream: impl AsyncRead + Unpin + Send + 'static,
        log: &Path,
        patterns: &'static FatalPatterns,
    ) -> Result<ConsoleMonitor> {
        let shared = Arc::new(Shared {
            buffer: Mutex::new(Buffer::default()),
            changed: Notify::new(),
        });
        let sink = shared.clone();
        read_stream(stream, log, patterns, move |lines, splitter| {
            let mut b = sink.buffer.lock().expect("console buffer");
            b.last_output = Some(Instant::now());
            for line in lines {
                if b.fatal.is_none()
                    && let Some(name) = line.fatal
                {
                    b.fatal = Some((b.lines.len(), name));
                }
                b.lines.push(line.text);
            }
            match splitter {
                Some(s) => b.partial = s.partial(),
                None => {
                    b.partial.clear();
                    b.closed = true;
                }
            }
            drop(b);
            sink.changed.notify_waiters();
        })?;
        Ok(ConsoleMonitor {
            shared,
            log: log.to_path_buf(),
        })
    }

    /// The file the console's raw bytes are written to.
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    fn buffer(&self) -> std::sync::MutexGuard<'_, Buffer> {
        self.shared.buffer.lock().expect("console buffer")
    }

    /// How many complete lines the console has shown so far (a cursor for `lines_since`).
    pub fn line_count(&self) -> usize {
        self.buffer().lines.len()
    }

    /// The console lines from `cursor` on.
    pub fn lines_since(&self, cursor: usize) -> Vec<String> {
        let b = self.buffer();
        b.lines[cursor.min(b.lines.len())..].to_vec()
    }

    /// The last `n` lines and the partial line, for error messages.
    pub fn tail(&self, n: usize) -> Vec<String> {
        let b = self.buffer();
        let mut lines = b.lines[b.lines.len().saturating_sub(n)..].to_vec();
        if !b.partial.is_empty() {
            lines.push(b.partial.clone());
        }
        lines
    }

    /// The first fatal line so far: its pattern's name and the line.
    pub fn fatal(&self) -> Option<(&'static str, String)> {
        let b = self.buffer();
        b.fatal.map(|(at, name)| (name, b.lines[at].clone()))
    }

    /// Looks at what the console has shown from `cursor` on, now.
    pub fn with_seen<T>(&self, cursor: usize, look: impl FnOnce(&Seen<'_>) -> T) -> T {
        let b = self.buffer();
        look(&Seen {
            lines: &b.lines[cursor.min(b.lines.len())..],
            partial: &b.partial,
            fatal: b.fatal.is_some(),
        })
    }

    /// Waits until `found` returns something for what the console has shown from `cursor`
    /// on. Ends early on a fatal line, `silence` without any output, `limit` overall, or a
    /// closed console (in that order, each checked after `found`).
    pub async fn wait_for<T>(
        &self,
        cursor: usize,
        limit: Duration,
        silence: Duration,
        mut found: impl FnMut(&Seen<'_>) -> Option<T>,
    ) -> std::result::Result<T, ConsoleFailure> {
        let started = Instant::now();
        let deadline = started + limit;
        loop {
            let notified = self.shared.changed.notified();
            {
                let b = self.buffer();
                let seen = Seen {
                    lines: &b.lines[cursor.min(b.lines.len())..],
                    partial: &b.partial,
                    fatal: b.fatal.is_some(),
                };
                if let Some(hit) = found(&seen) {
                    return Ok(hit);
                }
                if let Some((_, name)) = &b.fatal {
                    return Err(ConsoleFailure::Fatal(name.to_string()));
                }
                if b.closed {
                    return Err(ConsoleFailure::Closed);
                }
                let quiet_since = b.last_output.unwrap_or(started).max(started);
                if quiet_since.elapsed() >= silence {
                    return Err(ConsoleFailure::Silent(silence));
                }
                if Instant::now() >= deadline {
                    return Err(ConsoleFailure::TimedOut(limit));
                }
            }
            let _ = tokio::time::timeout(Duration::from_millis(250), notified).await;
        }
    }
}

/// Reads `stream` (a QEMU chardev) on the runtime and sends its non-empty lines, tagged
/// with `source`, to `tx`: for a watcher that merges several streams with other events.
/// Raw bytes go to `log` (created afresh).
pub fn forward_lines(
    stream: impl AsyncRead + Unpin + Send + 'static,
    source: &'static str,
    log: &Path,
    patterns: &'static FatalPatterns,
    tx: mpsc::UnboundedSender<(&'static str, Line)>,
) -> Result<()> {
    read_stream(stream, log, patterns, move |lines, _| {
        for line in lines {
            if !line.text.trim().is_empty() {
                let _ = tx.send((source, line));
            }
        }
    })
}

/// The one console reader: copies `stream` to `log` and hands each chunk's complete lines to
/// `sink`, with the splitter (for the partial line); at the end, the unterminated last line
/// and `None`.
fn read_stream(
    mut stream: impl AsyncRead + Unpin + Send + 'static,
    log: &Path,
    patterns: &'static FatalPatterns,
    mut sink: impl FnMut(Vec<Line>, Option<&LineSplitter>) + Send + 'static,
) -> Result<()> {
    let mut file = std::fs::File::create(log)
        .with_context(|| format!("creating console log {}", log.display()))?;
    tokio::spawn(async move {
        let mut splitter = LineSplitter::new(patterns);
        let mut chunk = vec![0u8; 16 * 1024];
        loop {
            let n = match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            // The log is a record for people; a failed write must not stop the watch.
            let _ = file.write_all(&chunk[..n]);
            let lines = splitter.push(&chunk[..n]);
            sink(lines, Some(&splitter));
        }
        let _ = file.flush();
        sink(splitter.finish().into_iter().collect(), None);
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn installer_fatal_patterns() {
        let fatal = |line: &str| FatalPatterns::installer().find(line).is_some();
        assert!(fatal(
            "STANDIN-INSTALL-FAILED: command failed (exit 1): ostree pull"
        ));
        assert!(fatal(
            "[   12.3] Kernel panic - not syncing: VFS: Unable to mount root fs"
        ));
        assert!(fatal("Out of memory: Killed process 123 (anaconda)"));
        assert!(fatal("Process 1234 (anaconda) of user 0 dumped core."));
        assert!(!fatal("Process x (anaconda) of user 0 dumped core."));
        assert!(fatal("packaging: base repo (http://x/repo) not valid"));
        assert!(!fatal(
            "packaging: base repo (CDROM/file:///run/install/repo) not valid"
        ));
        assert!(fatal(
            "12:00:01,000 CRIT anaconda: storage configuration failed"
        ));
        assert!(!fatal("12:00:01,000 CRITICAL-ish but not the word"));
        assert!(!fatal("CRIT systemd-coredump: whatever"));
        assert!(!fatal(
            "standin: phase: pulling standin:standin/x86_64/demo"
        ));
        assert!(!fatal("Call Trace: IGNORED"));
        // A failed unit in the installer's own system is not an install failure.
        assert!(!fatal("[FAILED] Failed to start foo.service"));
    }

    #[test]
    fn boot_fatal_patterns_match_real_console_lines() {
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
            assert_eq!(FatalPatterns::boot().find(line), Some(want), "{line}");
        }
        for benign in ["[  OK  ] Started sshd.service", "fedora login: "] {
            assert_eq!(FatalPatterns::boot().find(benign), None, "{benign}");
        }
    }

    #[test]
    fn phases() {
        assert_eq!(
            phase_of("standin: phase: deploying"),
            Some(Phase::Deploying)
        );
        assert_eq!(
            phase_of("standin: powering off (poweroff)"),
            Some(Phase::PoweringOff)
        );
        assert_eq!(phase_of("random"), None);
    }

    #[test]
    fn cleaning_drops_rewrites_and_escapes() {
        assert_eq!(clean_line(b"78\r7813 metadata\r\n"), "7813 metadata");
        assert_eq!(clean_line(b"\x1b[1;32mOK\x1b[0m done"), "OK done");
        assert_eq!(
            clean_line(b"\x1b[0;32m  OK  \x1b[0m] Started x\r"),
            "  OK  ] Started x"
        );
        // A rewrite that only erases the line keeps what was written before it.
        assert_eq!(
            clean_line(b"[  OK  ] Started y\r\x1b[K"),
            "[  OK  ] Started y"
        );
        assert_eq!(clean_line(b"\x1b7saved\x1b8"), "saved");
        assert_eq!(
            clean_lines(b"a\r\nb\x1b[0m\nlogin: "),
            ["a", "b", "login: "]
        );
    }

    #[test]
    fn splitter_cuts_lines_names_fatal_ones_and_keeps_the_prompt() {
        let mut s = LineSplitter::new(FatalPatterns::boot());
        assert!(s.push(b"Booting").is_empty());
        let lines = s.push(b" Linux\r\n[ 1.0] Kernel panic - not syncing: x\nlogin: ");
        assert_eq!(
            lines,
            [
                Line {
                    text: "Booting Linux".into(),
                    fatal: None
                },
                Line {
                    text: "[ 1.0] Kernel panic - not syncing: x".into(),
                    fatal: Some("kernel panic")
                },
            ]
        );
        assert_eq!(s.partial(), "login: ");
        assert_eq!(s.finish().map(|l| l.text), Some("login: ".to_string()));
        assert_eq!(s.finish(), None);
    }

    #[test]
    fn seen_text_joins_lines_and_the_partial_line() {
        let lines = ["a".to_string(), "b".to_string()];
        let seen = Seen {
            lines: &lines,
            partial: "login: ",
            fatal: false,
        };
        assert_eq!(seen.text(), "a\nb\nlogin: ");
        let re = Regex::new(r"(?m)login:\s*$").unwrap();
        assert!(re.is_match(&seen.text()));
    }

    #[test]
    fn tail_keeps_fifty() {
        let mut t = Tail::default();
        for i in 0..60 {
            t.push("serial", &i.to_string());
        }
        assert_eq!(t.lines().count(), 50);
        assert!(t.last(2).contains("[serial] 59"));
        assert!(!t.last(50).contains("[serial] 9\n"));
    }
}
