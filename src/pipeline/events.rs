//! What `build` tells its user: human lines on stderr, or with `--json` one JSON event per
//! line on stdout for CI (stage started/skipped/finished/failed, and the final result).

use std::io::Write;
use std::time::Duration;

use serde_json::json;

use super::stage::Stage;

/// One JSON event as a line on stdout, flushed at once (a CI reader follows it live).
fn emit(value: serde_json::Value) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{value}");
    let _ = out.flush();
}

/// Reports the build's progress: lines on stderr, or JSON events on stdout.
pub struct Reporter {
    json: bool,
}

impl Reporter {
    /// A reporter writing JSON events when `json` is set, human lines otherwise.
    pub fn new(json: bool) -> Self {
        Self { json }
    }

    /// Whether it writes JSON (tools it calls must then stay quiet).
    pub fn is_json(&self) -> bool {
        self.json
    }

    fn emit(&self, value: serde_json::Value) {
        emit(value);
    }

    /// The progress reporter for a stage's own work: its bars and lines on stderr, or with
    /// `--json` a `progress` event per line they would print (a task, its count, the text).
    pub fn progress(&self, stage: Stage) -> crate::progress::Reporter {
        if !self.json {
            return crate::progress::Reporter::new(false);
        }
        crate::progress::Reporter::to_events(move |e| {
            emit(json!({
                "event": "progress",
                "stage": stage.to_string(),
                "task": e.task,
                "done": e.done,
                "total": e.total,
                "message": e.text,
            }));
        })
    }

    /// A stage starts: number `index` of `total`.
    pub fn stage_started(&self, stage: &str, index: usize, total: usize) {
        if self.json {
            self.emit(
                json!({"event": "stage-started", "stage": stage, "index": index, "total": total}),
            );
        } else {
            eprintln!("==> [{index}/{total}] {stage}");
        }
    }

    /// A stage is skipped, and why.
    pub fn stage_skipped(&self, stage: &str, why: &str) {
        if self.json {
            self.emit(json!({"event": "stage-skipped", "stage": stage, "reason": why}));
        } else {
            eprintln!("==> {stage}: skipped ({why})");
        }
    }

    /// A stage finished after `took`.
    pub fn stage_finished(&self, stage: &str, took: Duration) {
        if self.json {
            self.emit(
                json!({"event": "stage-finished", "stage": stage, "seconds": took.as_secs_f64()}),
            );
        } else {
            eprintln!("==> {stage}: done in {:.1} s", took.as_secs_f64());
        }
    }

    /// A stage failed; only a JSON event, since in human form the error reaches the user as
    /// `build`'s own.
    pub fn stage_failed(&self, stage: &str, error: &anyhow::Error) {
        if self.json {
            self.emit(
                json!({"event": "stage-failed", "stage": stage, "error": format!("{error:#}")}),
            );
        }
    }

    /// A note from a running stage.
    pub fn info(&self, stage: &str, message: &str) {
        if self.json {
            self.emit(json!({"event": "info", "stage": stage, "message": message}));
        } else {
            eprintln!("    {message}");
        }
    }

    /// The end-of-build table: stage, ran or skipped, time.
    pub fn summary(
        &self,
        rows: &[(String, &'static str, Duration)],
        image: Option<&std::path::Path>,
    ) {
        if self.json {
            let stages: Vec<_> = rows
                .iter()
                .map(|(s, what, t)| json!({"stage": s, "result": what, "seconds": t.as_secs_f64()}))
                .collect();
            self.emit(json!({"event": "build-finished", "stages": stages, "image": image}));
            return;
        }
        eprintln!("\n{:<12} {:<8} {:>9}", "stage", "result", "time");
        for (stage, what, took) in rows {
            eprintln!("{stage:<12} {what:<8} {:>7.1} s", took.as_secs_f64());
        }
        let total: f64 = rows.iter().map(|(_, _, t)| t.as_secs_f64()).sum();
        eprintln!("{:<12} {:<8} {total:>7.1} s", "total", "");
        if let Some(image) = image {
            eprintln!("\nimage: {}", image.display());
        }
    }
}
