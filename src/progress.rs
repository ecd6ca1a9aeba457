//! Progress of long work, the same for every stage: a stage opens a [`Task`] on a
//! [`Reporter`] and advances it; the reporter shows an indicatif bar when stderr is a
//! terminal, a plain line at each tenth of the work otherwise (so CI and journald logs stay
//! short and readable), events to a caller's sink (`build --json` turns them into JSON
//! lines), and nothing when quiet.

use std::io::IsTerminal;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

/// What a task counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    /// Bytes: MiB in lines; size, rate and time left on the bar.
    Bytes,
    /// Things of the named kind ("packages", "files").
    Items(&'static str),
}

/// One report for a machine reader: what a person would read, and the numbers behind it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// The task's label ("importing"); empty for a status line of no task.
    pub task: String,
    /// Units done and the total, for a task's count (both 0 for a status or phase line).
    pub done: u64,
    /// See `done`.
    pub total: u64,
    /// The line a person would read.
    pub text: String,
}

/// Where events go: shared by every clone of the reporter and every worker thread.
type Sink = std::sync::Arc<dyn Fn(Event) + Send + Sync>;

/// Where the reporter's output goes.
#[derive(Clone)]
enum Target {
    Quiet,
    /// Bars, with status lines printed above them.
    Terminal(MultiProgress),
    /// Whole lines on stderr.
    Lines,
    /// Events (the lines of `Lines`, with their numbers) to a caller's sink.
    Events(Sink),
    /// Lines kept for the unit tests to read.
    #[cfg(test)]
    Captured(std::sync::Arc<Mutex<Vec<String>>>),
}

impl Target {
    fn line(&self, text: &str) {
        self.count_line("", 0, 0, text);
    }

    /// A line about `task`'s count (or a status line, with an empty task and zeros).
    fn count_line(&self, task: &str, done: u64, total: u64, text: &str) {
        match self {
            Target::Quiet => {}
            Target::Events(sink) => sink(Event {
                task: task.to_string(),
                done,
                total,
                text: text.to_string(),
            }),
            // Only fails when stderr is gone, and then there is no one to tell.
            Target::Terminal(bars) => drop(bars.println(text)),
            Target::Lines => eprintln!("{text}"),
            #[cfg(test)]
            Target::Captured(lines) => lines.lock().unwrap().push(text.to_string()),
        }
    }
}

/// The progress output of one command or stage; cheap to clone. The default shows progress
/// on stderr.
#[derive(Clone)]
pub struct Reporter {
    target: Target,
}

impl Default for Reporter {
    fn default() -> Self {
        Reporter::new(false)
    }
}

impl std::fmt::Debug for Reporter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let target = match &self.target {
            Target::Quiet => "quiet",
            Target::Terminal(_) => "terminal",
            Target::Lines => "lines",
            Target::Events(_) => "events",
            #[cfg(test)]
            Target::Captured(_) => "captured",
        };
        write!(f, "Reporter({target})")
    }
}

impl Reporter {
    /// Progress on stderr: bars on a terminal, lines otherwise, nothing when `quiet` (library
    /// callers that report on their own, `build --json`).
    pub fn new(quiet: bool) -> Reporter {
        let target = if quiet {
            Target::Quiet
        } else if std::io::stderr().is_terminal() {
            Target::Terminal(MultiProgress::with_draw_target(ProgressDrawTarget::stderr()))
        } else {
            Target::Lines
        };
        Reporter { target }
    }

    /// No progress output at all.
    pub fn quiet() -> Reporter {
        Reporter {
            target: Target::Quiet,
        }
    }

    /// Progress as [`Event`]s to `sink`, one per status line, phase and tenth of a task:
    /// for callers that report in their own format (`build --json`).
    pub fn to_events(sink: impl Fn(Event) + Send + Sync + 'static) -> Reporter {
        Reporter {
            target: Target::Events(std::sync::Arc::new(sink)),
        }
    }

    /// A status line ("resolved 12 packages"), printed above any bar.
    pub fn say(&self, text: &str) {
        self.target.line(text);
    }

    /// Starts a task of `total` units named `label` ("importing", "postprocess"). A `total`
    /// of 0 means not known yet: a spinner with the phase until [`Task::set_total`].
    pub fn task(&self, label: &str, total: u64, unit: Unit) -> Task {
        let bar = match &self.target {
            Target::Terminal(bars) => {
                let bar = bars.add(ProgressBar::new(total));
                bar.set_prefix(label.to_string());
                set_style(&bar, total, unit);
                Some(bar)
            }
            _ => None,
        };
        Task {
            label: label.to_string(),
            unit,
            target: self.target.clone(),
            bar,
            total: AtomicU64::new(total),
            done: AtomicU64::new(0),
            tenths: AtomicU64::new(0),
            detail: Mutex::new(String::new()),
        }
    }
}

fn set_style(bar: &ProgressBar, total: u64, unit: Unit) {
    let template = match (total, unit) {
        (0, _) => "{spinner} {prefix}: {msg} {elapsed}".to_string(),
        (_, Unit::Bytes) => {
            "{prefix} [{bar:30}] {bytes}/{total_bytes} {binary_bytes_per_sec} eta {eta} {msg}"
                .to_string()
        }
        (_, Unit::Items(name)) => {
            format!("{{prefix}} [{{bar:30}}] {{pos}}/{{len}} {name} {{msg}} {{elapsed}}")
        }
    };
    let style = ProgressStyle::with_template(&template)
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
    bar.set_style(style);
    if total == 0 {
        bar.enable_steady_tick(Duration::from_millis(200));
    } else {
        bar.disable_steady_tick();
    }
}

/// One piece of work being counted. Every method takes `&self`, so worker threads share it.
/// Call [`Task::finish`] when done; a task dropped unfinished (an error) leaves its bar where
/// it stopped.
pub struct Task {
    label: String,
    unit: Unit,
    target: Target,
    bar: Option<ProgressBar>,
    total: AtomicU64,
    done: AtomicU64,
    /// The tenths of `total` already reported as lines.
    tenths: AtomicU64,
    /// Shown after the count ("1234 MiB" while importing packages).
    detail: Mutex<String>,
}

impl Task {
    /// `n` more units done.
    pub fn advance(&self, n: u64) {
        let done = self.done.fetch_add(n, Ordering::Relaxed) + n;
        self.show(done);
    }

    /// `done` units done in all; counts from worker threads may arrive out of order, so a
    /// lower count than one already shown is ignored.
    pub fn set_position(&self, done: u64) {
        let done = self.done.fetch_max(done, Ordering::Relaxed).max(done);
        self.show(done);
    }

    /// The total, once it is known (a spinner becomes a bar).
    pub fn set_total(&self, total: u64) {
        if self.total.swap(total, Ordering::Relaxed) == total {
            return;
        }
        if let Some(bar) = &self.bar {
            bar.set_length(total);
            set_style(bar, total, self.unit);
        }
        self.show(self.done.load(Ordering::Relaxed));
    }

    /// Text shown after the count: on the bar, and in the next tenth's line.
    pub fn set_detail(&self, text: String) {
        match &self.bar {
            Some(bar) => bar.set_message(text),
            None if matches!(self.target, Target::Quiet) => {}
            None => *self.detail.lock().unwrap_or_else(|e| e.into_inner()) = text,
        }
    }

    /// A new step of the task ("booting", "pulling objects"): the bar's message on a
    /// terminal, a line `label: text` otherwise.
    pub fn phase(&self, text: &str) {
        match &self.bar {
            Some(bar) => bar.set_message(text.to_string()),
            None => self
                .target
                .count_line(&self.label, 0, 0, &format!("{}: {text}", self.label)),
        }
    }

    /// The task is done: its bar goes away (its last line, at 100%, stays in plain output).
    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }

    /// The task is done with an outcome to keep on screen: the bar stays with `text`, or a
    /// line `label: text`.
    pub fn finish_with(&self, text: &str) {
        match &self.bar {
            Some(bar) => bar.finish_with_message(text.to_string()),
            None => self
                .target
                .count_line(&self.label, 0, 0, &format!("{}: {text}", self.label)),
        }
    }

    fn show(&self, done: u64) {
        if let Some(bar) = &self.bar {
            bar.set_position(done);
            return;
        }
        let total = self.total.load(Ordering::Relaxed);
        if total == 0 || matches!(self.target, Target::Quiet) {
            return;
        }
        let tenth = (done.min(total) * 10 / total).min(10);
        // One line per tenth crossed, however many threads cross it at once.
        if self.tenths.fetch_max(tenth, Ordering::Relaxed) < tenth {
            let done = done.min(total);
            self.target
                .count_line(&self.label, done, total, &self.line(done, total));
        }
    }

    /// `importing: 40% (4 of 10 packages), 120 MiB`.
    fn line(&self, done: u64, total: u64) -> String {
        let count = match self.unit {
            Unit::Bytes => format!("{} of {} MiB", done >> 20, total >> 20),
            Unit::Items(name) => format!("{done} of {total} {name}"),
        };
        let detail = self.detail.lock().unwrap_or_else(|e| e.into_inner());
        let detail = if detail.is_empty() {
            String::new()
        } else {
            format!(", {detail}")
        };
        format!("{}: {}% ({count}){detail}", self.label, done * 100 / total)
    }
}

impl Drop for Task {
    fn drop(&mut self) {
        if let Some(bar) = &self.bar
            && !bar.is_finished()
        {
            bar.abandon();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::{Reporter, Target, Unit};

    fn captured() -> (Reporter, Arc<Mutex<Vec<String>>>) {
        let lines = Arc::new(Mutex::new(Vec::new()));
        let reporter = Reporter {
            target: Target::Captured(lines.clone()),
        };
        (reporter, lines)
    }

    #[test]
    fn events_carry_the_task_and_its_count() {
        let events = Arc::new(Mutex::new(Vec::new()));
        let sink = events.clone();
        let reporter = Reporter::to_events(move |e| sink.lock().unwrap().push(e));
        reporter.say("resolved 3 packages");
        let task = reporter.task("importing", 4, Unit::Items("packages"));
        task.phase("reading headers");
        for _ in 0..4 {
            task.advance(1);
        }
        let got = events.lock().unwrap().clone();
        assert_eq!(got[0].task, "");
        assert_eq!(got[0].text, "resolved 3 packages");
        assert_eq!(
            (got[1].task.as_str(), got[1].text.as_str()),
            ("importing", "importing: reading headers")
        );
        let counts: Vec<(u64, u64)> = got[2..].iter().map(|e| (e.done, e.total)).collect();
        assert_eq!(counts, [(1, 4), (2, 4), (3, 4), (4, 4)]);
        assert_eq!(got[5].text, "importing: 100% (4 of 4 packages)");
        assert!(got[2..].iter().all(|e| e.task == "importing"));
    }

    fn take(lines: &Mutex<Vec<String>>) -> Vec<String> {
        std::mem::take(&mut *lines.lock().unwrap())
    }

    #[test]
    fn plain_output_is_one_line_per_tenth() {
        let (reporter, lines) = captured();
        let task = reporter.task("importing", 200, Unit::Items("packages"));
        for _ in 0..200 {
            task.advance(1);
        }
        task.finish();
        let lines = take(&lines);
        assert_eq!(lines.len(), 10, "{lines:?}");
        assert_eq!(lines[0], "importing: 10% (20 of 200 packages)");
        assert_eq!(lines[9], "importing: 100% (200 of 200 packages)");
    }

    #[test]
    fn a_jump_over_several_tenths_is_one_line() {
        let (reporter, lines) = captured();
        let task = reporter.task("postprocess", 10 << 20, Unit::Bytes);
        task.advance(3 << 20);
        task.set_position(10 << 20);
        task.set_position(5 << 20);
        assert_eq!(
            take(&lines),
            [
                "postprocess: 30% (3 of 10 MiB)",
                "postprocess: 100% (10 of 10 MiB)"
            ]
        );
    }

    #[test]
    fn lines_carry_the_detail() {
        let (reporter, lines) = captured();
        let task = reporter.task("importing", 2, Unit::Items("packages"));
        task.set_detail("12 MiB".to_string());
        task.advance(1);
        assert_eq!(take(&lines), ["importing: 50% (1 of 2 packages), 12 MiB"]);
    }

    #[test]
    fn phases_and_status_lines_are_printed_and_an_unknown_total_counts_silently() {
        let (reporter, lines) = captured();
        reporter.say("resolved 3 packages");
        let task = reporter.task("install", 0, Unit::Items("objects"));
        task.phase("booting");
        task.advance(5);
        task.set_total(10);
        task.advance(5);
        task.finish_with("done");
        assert_eq!(
            take(&lines),
            [
                "resolved 3 packages",
                "install: booting",
                "install: 50% (5 of 10 objects)",
                "install: 100% (10 of 10 objects)",
                "install: done"
            ]
        );
    }

    #[test]
    fn threads_share_a_task_and_each_tenth_prints_once() {
        let (reporter, lines) = captured();
        let task = reporter.task("committing", 8000, Unit::Items("files"));
        std::thread::scope(|s| {
            for _ in 0..8 {
                s.spawn(|| {
                    for _ in 0..1000 {
                        task.advance(1);
                    }
                });
            }
        });
        // Threads may print their lines in another order than they crossed the tenths.
        let mut percents: Vec<u64> = take(&lines)
            .iter()
            .map(|l| {
                let word = l.split_whitespace().nth(1).unwrap();
                word.trim_end_matches('%').parse().unwrap()
            })
            .collect();
        percents.sort();
        assert_eq!(percents, [10, 20, 30, 40, 50, 60, 70, 80, 90, 100]);
    }

    #[test]
    fn quiet_prints_nothing_and_still_counts() {
        let reporter = Reporter::new(true);
        let task = reporter.task("importing", 10, Unit::Items("packages"));
        task.set_detail("x".to_string());
        task.advance(10);
        assert_eq!(task.done.load(std::sync::atomic::Ordering::Relaxed), 10);
        assert!(task.detail.lock().unwrap().is_empty());
    }
}
