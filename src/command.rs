//! The one way to run an external tool (qemu-img, gpg, cpio, ksvalidator, xorriso, ...): an
//! extension trait on [`std::process::Command`] whose errors name the command line, how it
//! ended, the last lines of its stderr, and the set-up command when the tool is missing.

use std::io::Write as _;
use std::process::{Command, Output, Stdio};

use anyhow::{Context as _, Result, bail};

/// How many trailing stderr lines an error keeps: enough for the tool's own message, short
/// enough to stay readable when a tool prints a log.
const STDERR_TAIL_LINES: usize = 12;

/// Where a missing tool comes from; every tool this project calls is installed by it.
const SETUP_HINT: &str = "install it with vm/prepare";

/// How every external tool is run: output captured, and errors that name the command line,
/// the exit status and the stderr tail.
pub trait CommandExt {
    /// Runs to completion with stdout and stderr captured; a failure to start or a non-zero
    /// exit is an error naming the command line, the exit status and the stderr tail.
    fn run_checked(&mut self) -> Result<Output>;

    /// As [`CommandExt::run_checked`], returning stdout as text (lossy UTF-8).
    fn capture(&mut self) -> Result<String> {
        let out = self.run_checked()?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// As [`CommandExt::run_checked`] with `input` written to the tool's stdin (and closed).
    fn run_with_stdin(&mut self, input: &[u8]) -> Result<Output>;

    /// As [`CommandExt::run_unchecked`] with `input` written to the tool's stdin (and
    /// closed): the output whatever the exit status (gpg's stderr tells a wrong passphrase
    /// from a missing key).
    fn run_with_stdin_unchecked(&mut self, input: &[u8]) -> Result<Output>;

    /// Runs to completion with output captured and returns it whatever the exit status, for
    /// tools whose status is a finding rather than a failure (ksvalidator counts errors in
    /// it). Only a failure to start is an error.
    fn run_unchecked(&mut self) -> Result<Output>;
}

impl CommandExt for Command {
    fn run_checked(&mut self) -> Result<Output> {
        let out = self.run_unchecked()?;
        check(self, &out)?;
        Ok(out)
    }

    fn run_with_stdin(&mut self, input: &[u8]) -> Result<Output> {
        let out = self.run_with_stdin_unchecked(input)?;
        check(self, &out)?;
        Ok(out)
    }

    fn run_with_stdin_unchecked(&mut self, input: &[u8]) -> Result<Output> {
        let mut child = self
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| not_started(self))?;
        let stdin = child.stdin.take();
        // The input is written from a second thread while this one collects the output: a
        // tool that writes a lot before reading all of its input would otherwise block
        // against us, and one that exits without reading it (gpg with no such key) just
        // ends the write. Dropping the pipe ends the input.
        std::thread::scope(|scope| {
            if let Some(mut stdin) = stdin {
                scope.spawn(move || {
                    let _ = stdin.write_all(input);
                });
            }
            child
                .wait_with_output()
                .with_context(|| format!("waiting for `{}`", command_line(self)))
        })
    }

    fn run_unchecked(&mut self) -> Result<Output> {
        self.stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .output()
            .with_context(|| not_started(self))
    }
}

fn check(cmd: &Command, out: &Output) -> Result<()> {
    if out.status.success() {
        return Ok(());
    }
    let tail = stderr_tail(&out.stderr);
    if tail.is_empty() {
        bail!("`{}` failed ({})", command_line(cmd), out.status);
    }
    bail!("`{}` failed ({}):\n{tail}", command_line(cmd), out.status)
}

fn not_started(cmd: &Command) -> String {
    format!(
        "running `{}` ({SETUP_HINT} if {} is missing)",
        command_line(cmd),
        cmd.get_program().to_string_lossy()
    )
}

/// The last [`STDERR_TAIL_LINES`] non-empty lines of `stderr`.
pub fn stderr_tail(stderr: &[u8]) -> String {
    let text = String::from_utf8_lossy(stderr);
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let skip = lines.len().saturating_sub(STDERR_TAIL_LINES);
    lines[skip..].join("\n")
}

/// The command line as a user could paste it (arguments with spaces or quotes are quoted).
pub fn command_line(cmd: &Command) -> String {
    std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|arg| shell_quote(&arg.to_string_lossy()))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Whether `word` reads the same to a POSIX shell (and to Python's shlex) unquoted: not
/// empty, and only letters, digits and `-_./=:,@%+`.
pub fn is_plain_word(word: &str) -> bool {
    !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,@%+".contains(c))
}

/// POSIX shell quoting: a plain word stays as it is, anything else goes in single quotes
/// (`it's` -> `'it'\''s'`, the empty string -> `''`). The one quoting for printed command
/// lines (ours, QEMU's) and the kickstart templates' `shell_quote` filter.
pub fn shell_quote(word: &str) -> String {
    if is_plain_word(word) {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failing_tool_is_named_with_its_status_and_stderr_tail() {
        let mut cmd = Command::new("sh");
        cmd.args([
            "-c",
            "for i in $(seq 1 30); do echo line$i >&2; done; exit 3",
        ]);
        let e = format!("{:#}", cmd.run_checked().unwrap_err());
        assert!(e.contains("`sh -c 'for i in"), "{e}");
        assert!(e.contains("exit status: 3"), "{e}");
        assert!(e.contains("line30") && e.contains("line19"), "{e}");
        assert!(!e.contains("line18\n"), "{e}");
    }

    #[test]
    fn shell_quote_leaves_plain_words_and_quotes_the_rest() {
        assert_eq!(
            shell_quote("plain/path-1.0,a=b@c%d+e:f"),
            "plain/path-1.0,a=b@c%d+e:f"
        );
        assert_eq!(shell_quote("it's here"), r"'it'\''s here'");
        assert_eq!(shell_quote(""), "''");
        assert_eq!(shell_quote("$HOME"), "'$HOME'");
    }

    #[test]
    fn a_missing_tool_names_the_setup_command() {
        let e = format!(
            "{:#}",
            Command::new("no-such-tool-here")
                .arg("x")
                .run_checked()
                .unwrap_err()
        );
        assert!(e.contains("`no-such-tool-here x`"), "{e}");
        assert!(e.contains("vm/prepare"), "{e}");
    }

    #[test]
    fn output_and_stdin_reach_the_caller() {
        assert_eq!(Command::new("echo").arg("hi").capture().unwrap(), "hi\n");
        let out = Command::new("cat").run_with_stdin(b"fed").unwrap();
        assert_eq!(out.stdout, b"fed");
        let out = Command::new("false").run_unchecked().unwrap();
        assert!(!out.status.success());
    }

    #[test]
    fn large_input_and_output_do_not_block_each_other() {
        // Far more than a pipe holds, both ways: written before reading, cat would block.
        let input: Vec<u8> = (0..4 << 20).map(|i| (i % 251) as u8).collect();
        let out = Command::new("cat").run_with_stdin(&input).unwrap();
        assert_eq!(out.stdout, input);
        // A tool that exits without reading its input: the output still comes back.
        let out = Command::new("sh")
            .args(["-c", "echo gone >&2; exit 2"])
            .run_with_stdin_unchecked(&input)
            .unwrap();
        assert_eq!(out.status.code(), Some(2));
        assert_eq!(out.stderr, b"gone\n");
    }
}
