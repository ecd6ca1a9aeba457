//! Progress on stderr: an indicatif bar on a terminal, a plain line every 10% otherwise.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicU64, Ordering};

pub struct Progress {
    bar: Option<indicatif::ProgressBar>,
    plain: bool,
    label: &'static str,
    total: u64,
    last_decile: AtomicU64,
}

impl Progress {
    pub fn new(enabled: bool, label: &'static str, total: u64) -> Progress {
        let tty = std::io::stderr().is_terminal();
        let bar = (enabled && tty).then(|| {
            let b = indicatif::ProgressBar::new(total);
            b.set_style(
                indicatif::ProgressStyle::with_template(
                    "{msg} [{bar:40}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
                )
                .expect("valid template"),
            );
            b.set_message(label);
            b
        });
        Progress {
            bar,
            plain: enabled && !tty,
            label,
            total,
            last_decile: AtomicU64::new(0),
        }
    }

    pub fn set(&self, done: u64) {
        if let Some(b) = &self.bar {
            b.set_position(done);
        } else if self.plain && self.total > 0 {
            let decile = done * 10 / self.total;
            if self.last_decile.fetch_max(decile, Ordering::Relaxed) < decile {
                eprintln!(
                    "{}: {}% ({done} of {} bytes)",
                    self.label,
                    decile * 10,
                    self.total
                );
            }
        }
    }

    pub fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}
