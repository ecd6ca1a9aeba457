//! Running pykickstart's `ksvalidator` (installed into `.venv` by `vm/prepare`) and turning
//! its output into findings that point at the user's files.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result};

use crate::command::CommandExt;

use super::lint::{Checker, Finding, Severity};
use super::parse::{Flattened, Origin};

/// Environment variable naming the ksvalidator binary explicitly.
pub const KSVALIDATOR_ENV: &str = "ATOMIC_FACTORY_KSVALIDATOR";

/// Find ksvalidator: `$ATOMIC_FACTORY_KSVALIDATOR`, then `.venv/bin/ksvalidator` in the
/// current directory or its parents, then next to our own binary's project
/// (`target/*/atomic-factory` -> `.venv`), then `$PATH`.
pub fn find() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os(KSVALIDATOR_ENV) {
        return Some(PathBuf::from(p));
    }
    let venv = |dir: &Path| {
        dir.ancestors()
            .map(|a| a.join(".venv/bin/ksvalidator"))
            .find(|p| p.is_file())
    };
    if let Some(p) = std::env::current_dir().ok().as_deref().and_then(venv) {
        return Some(p);
    }
    if let Some(p) = std::env::current_exe().ok().as_deref().and_then(venv) {
        return Some(p);
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join("ksvalidator"))
            .find(|p| p.is_file())
    })
}

/// Run `ksvalidator -v VERSION` on the flattened kickstart and map its findings back to the
/// files and lines they came from. ksvalidator's exit status is its error count.
pub fn run(
    ksvalidator: &Path,
    flat: &Flattened,
    path: &Path,
    version: &str,
) -> Result<Vec<Finding>> {
    // ksvalidator copies its input to a temporary directory, so relative %includes would not
    // resolve there; give it our flattened text instead.
    let mut tmp = tempfile::Builder::new()
        .prefix("atomic-factory-ks")
        .suffix(".cfg")
        .tempfile()
        .context("creating a temporary file for ksvalidator")?;
    std::io::Write::write_all(&mut tmp, flat.text().as_bytes())
        .context("writing the kickstart for ksvalidator")?;
    // ksvalidator's exit status counts the errors it found: a finding, not a failure.
    let out = Command::new(ksvalidator)
        .args(version_args(version))
        .arg(tmp.path())
        .run_unchecked()?;
    let errors = out
        .status
        .code()
        .with_context(|| format!("{} was killed by a signal", ksvalidator.display()))?;
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    let tmp_name = tmp.path().display().to_string();
    let mut findings = parse_output(&text, &tmp_name, flat, path);
    if errors > 0 && findings.is_empty() {
        findings.push(Finding {
            severity: Severity::Error,
            checker: Checker::Ksvalidator,
            origin: whole(path),
            message: format!("exited with {errors} errors: {}", text.trim()),
        });
    }
    Ok(findings)
}

/// The version arguments for ksvalidator. `-v DEVEL` fails for every file with pykickstart
/// 3.78 ("The version DEVEL is not supported": `returnClassForVersion` imports a module
/// named `devel`), while DEVEL is ksvalidator's default; so DEVEL means no `-v` at all.
pub fn version_args(version: &str) -> Vec<String> {
    if version.eq_ignore_ascii_case("DEVEL") {
        Vec::new()
    } else {
        vec!["-v".to_string(), version.to_string()]
    }
}

fn whole(path: &Path) -> Origin {
    Origin {
        file: path.into(),
        line: 0,
    }
}

const PROBLEM: &str = "The following problem occurred on line ";

/// Parse ksvalidator's report: blocks of "The following problem occurred on line N of the
/// kickstart file:\n\nMESSAGE", plus free-standing messages (deprecation, general errors).
fn parse_output(text: &str, tmp_name: &str, flat: &Flattened, path: &Path) -> Vec<Finding> {
    let origin_of = |line: usize| {
        flat.lines
            .get(line.wrapping_sub(1))
            .map(|l| l.origin.clone())
            .unwrap_or_else(|| whole(path))
    };
    let mut findings = Vec::new();
    let mut push = |origin: Origin, message: &str| {
        let message = message
            .trim()
            .replace(tmp_name, &path.display().to_string());
        if !message.is_empty() {
            findings.push(Finding {
                severity: Severity::Error,
                checker: Checker::Ksvalidator,
                origin,
                message: message.split_whitespace().collect::<Vec<_>>().join(" "),
            });
        }
    };
    let cleaned: String = text
        .lines()
        .filter(|l| !l.starts_with("Checking kickstart file "))
        .collect::<Vec<_>>()
        .join("\n");
    let mut chunks = cleaned.split(PROBLEM);
    let lead = chunks.next().unwrap_or("");
    // Free text, e.g. "File uses a deprecated option or command.\n... on line 3 ...".
    for para in lead.split("\n\n") {
        let line = para
            .split("on line ")
            .nth(1)
            .and_then(|r| r.split(|c: char| !c.is_ascii_digit()).next())
            .and_then(|n| n.parse::<usize>().ok());
        push(line.map(origin_of).unwrap_or_else(|| whole(path)), para);
    }
    for chunk in chunks {
        let (num, rest) = chunk.split_once(' ').unwrap_or((chunk, ""));
        let rest = rest.trim_start_matches("of the kickstart file:");
        // A block runs to the first blank line after its message.
        let mut parts = rest.trim_start().splitn(2, "\n\n");
        let message = parts.next().unwrap_or("");
        let origin = num.parse().map(origin_of).unwrap_or_else(|_| whole(path));
        push(origin, message);
        if let Some(after) = parts.next() {
            push(whole(path), after);
        }
    }
    findings
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_maps_to_origins() {
        let flat = super::super::parse::flatten("text\nfoo\nbar\n", Path::new("k.ks"));
        let out = "\nThe following problem occurred on line 2 of the kickstart file:\n\nUnknown command: foo\n\n\
                   Checking kickstart file /tmp/x.cfg\n\n\
                   The following problem occurred on line 3 of the kickstart file:\n\nUnknown command: bar\n";
        let f = parse_output(out, "/tmp/x.cfg", &flat, Path::new("k.ks"));
        let shown: Vec<_> = f.iter().map(|f| f.to_string()).collect();
        assert_eq!(
            shown,
            [
                "k.ks:2: error (ksvalidator): Unknown command: foo",
                "k.ks:3: error (ksvalidator): Unknown command: bar"
            ]
        );
    }
}
