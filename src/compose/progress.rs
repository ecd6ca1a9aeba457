//! Compose progress: an indicatif bar on a terminal, plain lines otherwise.

use std::io::IsTerminal;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use indicatif::{ProgressBar, ProgressStyle};

pub struct Progress {
    bar: Option<ProgressBar>,
    quiet: bool,
    total: AtomicU64,
    bytes: AtomicU64,
    last_line: Mutex<Instant>,
}

impl Progress {
    /// `quiet` silences everything (library callers that report themselves).
    pub fn new(quiet: bool) -> Progress {
        Progress {
            bar: None,
            quiet,
            total: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            last_line: Mutex::new(Instant::now()),
        }
    }

    /// A status line ("resolved 12 packages").
    pub fn say(&self, msg: &str) {
        if self.quiet {
            return;
        }
        match &self.bar {
            Some(b) => b.println(msg),
            None => eprintln!("{msg}"),
        }
    }

    /// Starts the import phase over `total` packages.
    pub fn start_import(&mut self, total: u64) {
        self.total.store(total, Ordering::Relaxed);
        if !self.quiet && std::io::stderr().is_terminal() {
            let b = ProgressBar::new(total);
            b.set_style(
                ProgressStyle::with_template(
                    "{spinner} importing [{bar:30}] {pos}/{len} packages, {msg} {elapsed}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
            );
            self.bar = Some(b);
        }
    }

    pub fn add_bytes(&self, n: u64) {
        let t = self.bytes.fetch_add(n, Ordering::Relaxed) + n;
        if let Some(b) = &self.bar {
            b.set_message(format!("{} MiB", t >> 20));
        }
    }

    /// Packages done; plain output prints at most one line every 2 s.
    pub fn set(&self, done: u64) {
        if let Some(b) = &self.bar {
            b.set_position(done);
            return;
        }
        if self.quiet {
            return;
        }
        let total = self.total.load(Ordering::Relaxed);
        let mut last = self.last_line.lock().unwrap_or_else(|e| e.into_inner());
        if done == total || last.elapsed().as_secs() >= 2 {
            *last = Instant::now();
            eprintln!(
                "imported {done}/{total} packages, {} MiB",
                self.bytes.load(Ordering::Relaxed) >> 20
            );
        }
    }

    pub fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}
