//! The log monitor: what the installer's lines (serial console and the virtio log port) mean.
//! Fatal patterns end the install at once; phase lines drive progress; the last lines are
//! kept for error messages.

use std::collections::VecDeque;

/// Substrings that mean the install failed. lorax's LogMonitor list (src/pylorax/monitor.py),
/// kickstart-tests' additions (log_handler.py), the kernel's own fatal lines, and the
/// stand-in installer's error lines.
const FATAL: &[&str] = &[
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

/// Lines that contain a fatal pattern but are known to be harmless (lorax, kickstart-tests).
const IGNORED: &[&str] = &[
    "IGNORED",
    "CRIT systemd-coredump:",
    "DegradedArray",
    "deprecated",
];

/// Whether a line reports a fatal installer error.
pub fn is_fatal(line: &str) -> bool {
    if IGNORED.iter().any(|p| line.contains(p)) {
        return false;
    }
    FATAL.iter().any(|p| line.contains(p))
        || anaconda_core_dump(line)
        || line.contains("packaging: base repo")
            && line.contains(" not valid")
            && !line.contains("(CDROM/file")
        || kickstart_tests_crit(line)
}

/// lorax: `Process [0-9]+ \(anaconda\) of user [0-9]+ dumped core`.
fn anaconda_core_dump(line: &str) -> bool {
    line.find("Process ").is_some_and(|i| {
        let rest = &line[i + 8..];
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        digits > 0
            && rest[digits..].starts_with(" (anaconda) of user ")
            && rest.contains("dumped core")
    })
}

/// kickstart-tests: a syslog line of severity CRIT (Anaconda's virtio log has `CRIT <tag>:`).
fn kickstart_tests_crit(line: &str) -> bool {
    line.split_whitespace().any(|w| w == "CRIT")
}

/// Install phases, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Phase {
    Starting,
    Booting,
    KickstartFetched,
    Pulling,
    Deploying,
    Bootloader,
    PoweringOff,
}

impl Phase {
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
    pub const KEEP: usize = 50;

    pub fn push(&mut self, source: &str, line: &str) {
        if self.lines.len() == Self::KEEP {
            self.lines.pop_front();
        }
        self.lines.push_back(format!("[{source}] {line}"));
    }

    pub fn lines(&self) -> impl Iterator<Item = &String> {
        self.lines.iter()
    }

    pub fn last(&self, n: usize) -> String {
        let skip = self.lines.len().saturating_sub(n);
        self.lines
            .iter()
            .skip(skip)
            .map(|l| format!("  {l}\n"))
            .collect()
    }
}

/// Strips what makes console lines hard to match: `\r` progress rewrites and ANSI escapes.
pub fn clean_line(raw: &[u8]) -> String {
    let s = String::from_utf8_lossy(raw);
    let s = s.rsplit('\r').find(|p| !p.trim().is_empty()).unwrap_or("");
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            if chars.peek() == Some(&'[') {
                chars.next();
                for c in chars.by_ref() {
                    if c.is_ascii_alphabetic() {
                        break;
                    }
                }
            }
        } else if c != '\n' {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fatal_patterns() {
        assert!(is_fatal(
            "STANDIN-INSTALL-FAILED: command failed (exit 1): ostree pull"
        ));
        assert!(is_fatal(
            "[   12.3] Kernel panic - not syncing: VFS: Unable to mount root fs"
        ));
        assert!(is_fatal("Out of memory: Killed process 123 (anaconda)"));
        assert!(is_fatal("Process 1234 (anaconda) of user 0 dumped core."));
        assert!(is_fatal("packaging: base repo (http://x/repo) not valid"));
        assert!(!is_fatal(
            "packaging: base repo (CDROM/file:///run/install/repo) not valid"
        ));
        assert!(is_fatal(
            "12:00:01,000 CRIT anaconda: storage configuration failed"
        ));
        assert!(!is_fatal("CRIT systemd-coredump: whatever"));
        assert!(!is_fatal(
            "standin: phase: pulling standin:standin/x86_64/demo"
        ));
        assert!(!is_fatal("Call Trace: IGNORED"));
    }

    #[test]
    fn phases_and_cleaning() {
        assert_eq!(
            phase_of("standin: phase: deploying"),
            Some(Phase::Deploying)
        );
        assert_eq!(
            phase_of("standin: powering off (poweroff)"),
            Some(Phase::PoweringOff)
        );
        assert_eq!(phase_of("random"), None);
        assert_eq!(clean_line(b"78\r7813 metadata\r\n"), "7813 metadata");
        assert_eq!(clean_line(b"\x1b[1;32mOK\x1b[0m done"), "OK done");
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
