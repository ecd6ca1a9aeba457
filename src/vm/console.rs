//! A conversation with a guest over its serial console: everything the guest prints goes to a
//! log file and a line buffer; commands are typed at the guest's shell and their output and
//! exit status come back between markers that only this run can produce.
//!
//! The markers carry a per-run random token and are printed by `printf` with the token split
//! across two arguments, so the terminal's echo of the typed line never matches: an answer
//! is proof that the guest ran the command, not that the console echoed it.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};
use regex::Regex;
use tokio::io::AsyncWriteExt;
use tokio::net::UnixStream;
use tokio::net::unix::OwnedWriteHalf;
use tokio::time::Instant;

use super::monitor::{ConsoleFailure, ConsoleMonitor, FatalPatterns, Seen};

/// The longest line typed at once: a terminal in canonical mode takes 4095 bytes a line.
const MAX_TYPED_LINE: usize = 3000;

/// What a command typed at the guest's shell gave back.
#[derive(Debug, Clone)]
pub struct Reply {
    /// The command's exit status in the guest's shell.
    pub status: i32,
    /// The command's output (stdout and stderr), without the markers.
    pub output: String,
    /// From typing the command to reading its end marker.
    pub round_trip: Duration,
}

/// One boot's serial console, connected to QEMU's chardev socket: the monitor reads it
/// (with an installed system's fatal patterns), we type at it.
pub struct Console {
    writer: OwnedWriteHalf,
    monitor: ConsoleMonitor,
    token: String,
    sequence: u64,
}

impl Console {
    /// Starts reading `stream` (QEMU's serial chardev); raw bytes are written to `log`.
    pub fn attach(stream: UnixStream, log: &Path, token: &str) -> Result<Console> {
        let (reader, writer) = stream.into_split();
        let monitor = ConsoleMonitor::attach(reader, log, FatalPatterns::boot())?;
        Ok(Console {
            writer,
            monitor,
            token: token.to_string(),
            sequence: 0,
        })
    }

    /// The file the console's raw bytes are written to.
    pub fn log_path(&self) -> &Path {
        self.monitor.log_path()
    }

    /// How many complete lines the console has shown so far (a cursor for `lines_since`).
    pub fn line_count(&self) -> usize {
        self.monitor.line_count()
    }

    /// The console lines from `cursor` on.
    pub fn lines_since(&self, cursor: usize) -> Vec<String> {
        self.monitor.lines_since(cursor)
    }

    /// The last `n` lines, for error messages.
    pub fn tail(&self, n: usize) -> Vec<String> {
        self.monitor.tail(n)
    }

    /// The fatal pattern seen so far, if any, with the line it was on.
    pub fn fatal(&self) -> Option<String> {
        self.monitor
            .fatal()
            .map(|(name, line)| format!("{name} ({})", line.trim()))
    }

    /// Waits until `found` returns something for the lines from `cursor` on; see
    /// [`ConsoleMonitor::wait_for`].
    pub async fn wait_for<T>(
        &self,
        cursor: usize,
        limit: Duration,
        silence: Duration,
        mut found: impl FnMut(&[String]) -> Option<T>,
    ) -> std::result::Result<T, ConsoleFailure> {
        self.monitor
            .wait_for(cursor, limit, silence, |seen: &Seen<'_>| found(seen.lines))
            .await
    }

    /// Types one line at the guest.
    pub async fn type_line(&mut self, line: &str) -> Result<()> {
        anyhow::ensure!(
            line.len() <= MAX_TYPED_LINE && !line.contains('\n'),
            "a console line must be one line of at most {MAX_TYPED_LINE} bytes"
        );
        self.writer
            .write_all(format!("{line}\n").as_bytes())
            .await
            .context("writing to the guest's serial console")?;
        Ok(())
    }

    /// Waits until the guest's shell answers: types a probe every second (the first may be
    /// eaten by whatever reads the console before the shell) until its marker comes back.
    pub async fn wait_for_shell(
        &mut self,
        limit: Duration,
        silence: Duration,
    ) -> std::result::Result<Duration, ConsoleFailure> {
        let started = Instant::now();
        let deadline = started + limit;
        let marker = format!("AFREADY-{}", self.token);
        let probe = format!("printf '%s%s\\n' AFREADY- {}", self.token);
        loop {
            if self.type_line(&probe).await.is_err() {
                return Err(ConsoleFailure::Closed);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(ConsoleFailure::TimedOut(limit));
            }
            match self
                .wait_for(0, left.min(Duration::from_secs(1)), silence, |lines| {
                    lines.iter().any(|l| l.contains(&marker)).then_some(())
                })
                .await
            {
                Ok(()) => return Ok(started.elapsed()),
                Err(ConsoleFailure::TimedOut(_)) if Instant::now() < deadline => continue,
                Err(ConsoleFailure::TimedOut(_)) => return Err(ConsoleFailure::TimedOut(limit)),
                Err(other) => return Err(other),
            }
        }
    }

    /// Runs `command` (one shell line) in the guest and returns its exit status and output.
    pub async fn run(
        &mut self,
        command: &str,
        limit: Duration,
        silence: Duration,
    ) -> std::result::Result<Reply, ConsoleFailure> {
        self.sequence += 1;
        let id = format!("{}-{}", self.token, self.sequence);
        let begin = format!("AFBEGIN-{id}");
        let end = Regex::new(&format!(r"AFEND-{id} rc=(\d+)")).expect("marker regex");
        let cursor = self.line_count();
        let started = Instant::now();
        let line = format!(
            "printf '%s%s\\n' AFBEGIN- {id}; {command}\nprintf '\\n%s%s rc=%s\\n' AFEND- {id} $?"
        );
        for l in line.lines() {
            if self.type_line(l).await.is_err() {
                return Err(ConsoleFailure::Closed);
            }
        }
        self.wait_for(cursor, limit, silence, |lines| {
            let start = lines.iter().position(|l| l.ends_with(&begin))?;
            lines[start + 1..].iter().enumerate().find_map(|(i, l)| {
                let caps = end.captures(l)?;
                let status = caps[1].parse().unwrap_or(255);
                // The end marker starts on a fresh line; the empty line before it is ours.
                let body = &lines[start + 1..start + 1 + i];
                let body = body.strip_suffix(&[String::new()]).unwrap_or(body);
                Some(Reply {
                    status,
                    output: body.join("\n"),
                    round_trip: started.elapsed(),
                })
            })
        })
        .await
    }

    /// Writes `bytes` to `path` in the guest (base64 over the console, in lines the
    /// terminal accepts) and makes it executable when `executable`.
    pub async fn put_file(
        &mut self,
        path: &str,
        bytes: &[u8],
        executable: bool,
        limit: Duration,
    ) -> Result<()> {
        use base64::Engine as _;
        let encoded = base64::engine::general_purpose::STANDARD.encode(bytes);
        let staging = format!("{path}.b64");
        self.run_ok(&format!(": > {staging}"), limit, path).await?;
        for chunk in encoded.as_bytes().chunks(2000) {
            let text = std::str::from_utf8(chunk).expect("base64 is ASCII");
            self.run_ok(
                &format!("printf '%s\\n' '{text}' >> {staging}"),
                limit,
                path,
            )
            .await?;
        }
        let mode = if executable { "755" } else { "644" };
        self.run_ok(
            &format!("base64 -d {staging} > {path} && rm -f {staging} && chmod {mode} {path}"),
            limit,
            path,
        )
        .await?;
        Ok(())
    }

    /// `run` for a step of copying `path`: an error unless the guest answers with status 0.
    async fn run_ok(&mut self, command: &str, limit: Duration, path: &str) -> Result<Reply> {
        let reply = self
            .run(command, limit, limit)
            .await
            .map_err(|e| anyhow::anyhow!("copying {path} into the guest: {e}"))?;
        anyhow::ensure!(
            reply.status == 0,
            "copying {path} into the guest: `{}` failed (exit {}): {}",
            command.split_whitespace().next().unwrap_or(""),
            reply.status,
            reply.output
        );
        Ok(reply)
    }
}
