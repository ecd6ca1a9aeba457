//! `kickstart lint`: the mistakes that would otherwise surface only after an installer VM
//! has booted (or never, if the VM loops back into the installer).
//!
//! Rules: exactly one `ostreesetup` with `--osname`, `--url` (http, https, file) and `--ref`;
//! the last action is `poweroff`/`shutdown`; `%include`s exist; sections end with `%end`;
//! a `bootloader` is present; no plaintext `rootpw`; every command is known to the chosen
//! pykickstart syntax version. pykickstart's own checks come from `ksvalidator`
//! (see [`super::ksvalidator`]).

use std::fmt;
use std::path::Path;

use anyhow::Result;

use super::commands::{CommandStatus, SyntaxVersion};
use super::parse::{self, Command, Flattened, IncludeProblem, Origin, Parsed};

/// How bad a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    /// Reported, but the kickstart passes.
    Warning,
    /// Fails `kickstart lint` and the build's kickstart stage.
    Error,
}

/// Which checker reported a finding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Checker {
    /// Our own rules.
    Lint,
    /// pykickstart's `ksvalidator`.
    Ksvalidator,
}

/// One problem found in a kickstart.
#[derive(Debug, Clone)]
pub struct Finding {
    /// Error or warning.
    pub severity: Severity,
    /// Who found it.
    pub checker: Checker,
    /// Where; line 0 for findings about the whole file (e.g. a missing command).
    pub origin: Origin,
    /// What is wrong and, where known, how to fix it.
    pub message: String,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.origin.line == 0 {
            write!(f, "{}: ", self.origin.file.display())?;
        } else {
            write!(f, "{}: ", self.origin)?;
        }
        let sev = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        let who = match self.checker {
            Checker::Lint => "",
            Checker::Ksvalidator => " (ksvalidator)",
        };
        write!(f, "{sev}{who}: {}", self.message)
    }
}

/// All findings for one kickstart, in file order.
#[derive(Debug, Clone, Default)]
pub struct LintReport {
    /// The findings, whole-file ones first, then by file and line.
    pub findings: Vec<Finding>,
    /// The version checked against, as ksvalidator names it.
    pub version: String,
    /// Whether ksvalidator ran (and with which binary).
    pub ksvalidator: Option<std::path::PathBuf>,
}

impl LintReport {
    /// The findings of severity error.
    pub fn errors(&self) -> impl Iterator<Item = &Finding> {
        self.findings
            .iter()
            .filter(|f| f.severity == Severity::Error)
    }

    /// The findings of severity warning.
    pub fn warnings(&self) -> impl Iterator<Item = &Finding> {
        self.findings
            .iter()
            .filter(|f| f.severity == Severity::Warning)
    }

    /// Whole-file findings first, then by file and line.
    pub fn sort(&mut self) {
        // A borrowing comparator: a key function would copy each path per comparison.
        self.findings.sort_by(|a, b| {
            let (a, b) = (&a.origin, &b.origin);
            (a.line != 0, &*a.file, a.line).cmp(&(b.line != 0, &*b.file, b.line))
        });
    }

    /// Whether any finding is an error.
    pub fn has_errors(&self) -> bool {
        self.errors().next().is_some()
    }

    fn push(&mut self, severity: Severity, origin: &Origin, message: String) {
        self.findings.push(Finding {
            severity,
            checker: Checker::Lint,
            origin: origin.clone(),
            message,
        });
    }
}

/// Lint kickstart `text` read from `path` (used to name it and to find its `%include`s)
/// against syntax `version` (`F41`, `DEVEL`, ...). Errors only for an unknown version;
/// problems in the kickstart are findings in the report.
pub fn lint(text: &str, path: &Path, version: &str) -> Result<LintReport> {
    let version = SyntaxVersion::parse(version)?;
    let flat = parse::flatten(text, path);
    Ok(lint_flattened(&flat, path, version))
}

/// [`lint`] for a build: `%include`s are read only from inside `include_dirs`.
pub fn lint_within(
    text: &str,
    path: &Path,
    version: &str,
    include_dirs: &[std::path::PathBuf],
) -> Result<LintReport> {
    let version = SyntaxVersion::parse(version)?;
    let flat = parse::flatten_within(text, path, include_dirs);
    Ok(lint_flattened(&flat, path, version))
}

/// The rules, on an already flattened kickstart.
pub fn lint_flattened(flat: &Flattened, path: &Path, version: SyntaxVersion) -> LintReport {
    let parsed = parse::parse(&flat.lines);
    let mut report = LintReport {
        version: version.name.to_string(),
        ..LintReport::default()
    };
    let file = Origin {
        file: path.into(),
        line: 0,
    };

    for p in &parsed.problems {
        report.push(Severity::Error, &p.origin, p.message.clone());
    }
    check_includes(flat, &parsed, &mut report);
    check_sections(&parsed, &mut report);
    check_commands(&parsed, version, &mut report);
    if let Some(msg) = check_ostreesetup(&parsed, &mut report) {
        report.push(Severity::Error, &file, msg);
    }
    if let Some(msg) = check_last_action(&parsed, &mut report) {
        report.push(Severity::Error, &file, msg);
    }
    if !parsed.commands().any(|c| c.name() == "bootloader") {
        report.push(
            Severity::Error,
            &file,
            "no `bootloader` command: the installed disk would not boot with the serial console \
             we watch; add e.g. `bootloader --timeout=1 --append=\"console=ttyS0,115200n8\"`"
                .into(),
        );
    }
    check_passwords(&parsed, &mut report);
    report.sort();
    report
}

fn check_includes(flat: &Flattened, parsed: &Parsed, report: &mut LintReport) {
    for e in &flat.include_errors {
        // A %pre that writes the include file is the documented way to generate
        // partitioning at install time; the file cannot exist on the build host then.
        let writer = matches!(
            e.problem,
            IncludeProblem::Missing { .. } | IncludeProblem::Outside { .. }
        )
        .then(|| {
            parsed
                .sections()
                .find(|s| s.name() == "%pre" && s.body.iter().any(|l| l.text.contains(&e.path)))
        })
        .flatten();
        match writer {
            Some(pre) => report.push(
                Severity::Warning,
                &e.origin,
                format!(
                    "`%include {}` is not on this machine; assuming the %pre at {} writes it",
                    e.path, pre.origin
                ),
            ),
            None => report.push(Severity::Error, &e.origin, e.to_string()),
        }
    }
}

fn check_sections(parsed: &Parsed, report: &mut LintReport) {
    for s in parsed.sections() {
        if s.end.is_none() {
            report.push(
                Severity::Error,
                &s.origin,
                format!(
                    "section `{}` has no `%end`; add a line `%end` after its last line \
                     (pykickstart rejects unterminated sections since F8)",
                    s.name()
                ),
            );
        }
    }
}

fn check_commands(parsed: &Parsed, version: SyntaxVersion, report: &mut LintReport) {
    for c in parsed.commands() {
        let name = c.name();
        let v = version.name;
        let msg = match version.status(name) {
            CommandStatus::Active => continue,
            CommandStatus::Deprecated => format!(
                "`{name}` is deprecated in {v} and has no effect (ksvalidator counts it as an \
                 error); remove it"
            ),
            CommandStatus::Removed => {
                format!("`{name}` has been removed in {v}; remove it or use its replacement")
            }
            CommandStatus::Unknown => {
                let hint = version
                    .suggest(name)
                    .map(|s| format!("; did you mean `{s}`?"))
                    .unwrap_or_default();
                format!("unknown command `{name}` for kickstart syntax {v}{hint}")
            }
        };
        report.push(Severity::Error, &c.origin, msg);
    }
}

const OSTREESETUP_OPTIONS: &[&str] = &["--osname", "--remote", "--url", "--ref", "--nogpg"];

/// Checks each `ostreesetup`; returns a whole-file message when there is none.
fn check_ostreesetup(parsed: &Parsed, report: &mut LintReport) -> Option<String> {
    let setups: Vec<&Command> = parsed
        .commands()
        .filter(|c| c.name() == "ostreesetup")
        .collect();
    let Some(first) = setups.first() else {
        return Some(
            "no `ostreesetup` command: Anaconda would have no ostree payload to install; add \
             `ostreesetup --osname=NAME --url=http://HOST/repo --ref=REF`"
                .into(),
        );
    };
    for extra in &setups[1..] {
        report.push(
            Severity::Error,
            &extra.origin,
            format!(
                "a second `ostreesetup` (the first is at {}): Anaconda silently uses the last \
                 one; keep exactly one",
                first.origin
            ),
        );
    }
    for c in &setups {
        for a in &c.args[1..] {
            let opt = a.split('=').next().unwrap_or(a);
            if opt.starts_with("--") && !OSTREESETUP_OPTIONS.contains(&opt) {
                report.push(
                    Severity::Error,
                    &c.origin,
                    format!(
                        "`ostreesetup` has no option `{opt}` (it takes {})",
                        OSTREESETUP_OPTIONS.join(", ")
                    ),
                );
            }
        }
        for required in ["--osname", "--url", "--ref"] {
            match c.option(required) {
                Some(v) if !v.is_empty() => {}
                _ => report.push(
                    Severity::Error,
                    &c.origin,
                    format!(
                        "`ostreesetup` lacks `{required}=...` (required: --osname, --url, --ref)"
                    ),
                ),
            }
        }
        if let Some(url) = c.option("--url").filter(|u| !u.is_empty())
            && !["file:", "http:", "https:"]
                .iter()
                .any(|s| url.starts_with(s))
        {
            report.push(
                Severity::Error,
                &c.origin,
                format!(
                    "`ostreesetup --url={url}`: the URL must be http://, https:// or file:// \
                     (Anaconda pulls with libostree, and pykickstart rejects other schemes); \
                     serve the repository over HTTP, e.g. the install stage's \
                     http://10.0.2.2:PORT/ server"
                ),
            );
        }
    }
    for c in parsed.commands() {
        if matches!(c.name(), "ostreecontainer" | "bootc") {
            report.push(
                Severity::Error,
                &c.origin,
                format!(
                    "`{}` conflicts with `ostreesetup` at {}; keep only one payload",
                    c.name(),
                    first.origin
                ),
            );
        }
    }
    None
}

/// The last of `poweroff`/`shutdown`/`reboot`/`halt` decides what the VM does at the end
/// (pykickstart maps all four to one command, so the last wins).
fn check_last_action(parsed: &Parsed, report: &mut LintReport) -> Option<String> {
    let last = parsed
        .commands()
        .filter(|c| matches!(c.name(), "poweroff" | "shutdown" | "reboot" | "halt"))
        .last();
    let Some(last) = last else {
        return Some(
            "no `poweroff` or `shutdown`: without one Anaconda halts and waits at the end, \
             QEMU never exits and the install times out; add `poweroff` as the last command"
                .into(),
        );
    };
    let fix = match last.name() {
        "reboot" => Some(
            "`reboot` as the last action: with direct kernel boot the VM restarts into the \
             installer and installs again in a loop; replace it with `poweroff` (or \
             `shutdown`), which ends the VM so the install stage knows it finished",
        ),
        "halt" => Some(
            "`halt` as the last action: the VM stops without powering off, so QEMU never \
             exits and the install times out; replace it with `poweroff`",
        ),
        _ => None,
    };
    if let Some(fix) = fix {
        report.push(Severity::Error, &last.origin, fix.into());
    }
    None
}

fn check_passwords(parsed: &Parsed, report: &mut LintReport) {
    for c in parsed.commands() {
        let plaintext = match c.name() {
            "rootpw" => {
                !c.has_flag("--lock") && !c.has_flag("--iscrypted") || c.has_flag("--plaintext")
            }
            "user" => c.option("--password").is_some() && !c.has_flag("--iscrypted"),
            _ => continue,
        };
        if plaintext {
            report.push(
                Severity::Warning,
                &c.origin,
                format!(
                    "`{}` with a plaintext password: it ends up in the image's \
                     /root/anaconda-ks.cfg and in logs; use `--iscrypted` with a hash from \
                     `openssl passwd -6`, or `--lock`",
                    c.name()
                ),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "\
text
bootloader --append=\"console=ttyS0\"
ostreesetup --osname=standin --remote=standin --url=http://10.0.2.2:8000/repo --ref=standin/x86_64 --nogpg
rootpw --lock
poweroff
";

    fn errors(text: &str) -> Vec<String> {
        lint(text, Path::new("t.ks"), "F41")
            .unwrap()
            .errors()
            .map(|f| f.to_string())
            .collect()
    }

    #[test]
    fn good_kickstart_is_clean() {
        let r = lint(GOOD, Path::new("t.ks"), "F41").unwrap();
        assert!(r.findings.is_empty(), "{:?}", r.findings);
    }

    #[test]
    fn plaintext_rootpw_warns() {
        let text = GOOD.replace("rootpw --lock", "rootpw hunter2");
        let r = lint(&text, Path::new("t.ks"), "F41").unwrap();
        assert!(!r.has_errors());
        let w: Vec<_> = r.warnings().map(|f| f.to_string()).collect();
        assert!(w.len() == 1 && w[0].contains("t.ks:4") && w[0].contains("plaintext"));
    }

    #[test]
    fn halt_and_missing_action() {
        assert!(errors(&GOOD.replace("poweroff", "halt"))[0].contains("`halt`"));
        assert!(errors(&GOOD.replace("poweroff", ""))[0].contains("no `poweroff`"));
        // shutdown is as good as poweroff.
        assert!(errors(&GOOD.replace("poweroff", "shutdown")).is_empty());
    }

    #[test]
    fn missing_bootloader_and_conflicts() {
        assert!(errors(&GOOD.replace("bootloader", "#"))[0].contains("no `bootloader`"));
        let e = errors(&format!("{GOOD}ostreecontainer --url=quay.io/x\n"));
        assert!(
            e.iter().any(|m| m.contains("conflicts with `ostreesetup`")),
            "{e:?}"
        );
    }

    #[test]
    fn include_written_by_pre_is_a_warning() {
        let text = format!(
            "{GOOD}%include /tmp/part-include\n%pre\necho zerombr > /tmp/part-include\n%end\n"
        );
        let r = lint(&text, Path::new("t.ks"), "F41").unwrap();
        assert!(!r.has_errors(), "{:?}", r.findings);
        assert!(
            r.warnings()
                .next()
                .unwrap()
                .message
                .contains("%pre at t.ks:7")
        );
    }
}
