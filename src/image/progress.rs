//! Progress for the cluster loop: a bar on a terminal, a plain line every 10% otherwise.

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressStyle};

pub struct Progress {
    bar: Option<ProgressBar>,
    total: u64,
    done: u64,
    next_tenth: u64,
    quiet: bool,
}

impl Progress {
    pub fn new(total: u64, quiet: bool) -> Progress {
        let bar = (!quiet && std::io::stderr().is_terminal()).then(|| {
            let b = ProgressBar::new(total);
            b.set_style(
                ProgressStyle::with_template(
                    "{msg} [{bar:30}] {bytes}/{total_bytes} {binary_bytes_per_sec} eta {eta}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            b.set_message("postprocess");
            b
        });
        Progress {
            bar,
            total,
            done: 0,
            next_tenth: 1,
            quiet,
        }
    }

    pub fn advance(&mut self, n: u64) {
        self.done += n;
        if let Some(b) = &self.bar {
            b.set_position(self.done);
        } else if !self.quiet && self.total > 0 && self.done * 10 >= self.next_tenth * self.total {
            eprintln!(
                "postprocess: {}% ({} of {} MiB)",
                self.done * 100 / self.total,
                self.done >> 20,
                self.total >> 20
            );
            self.next_tenth = self.done * 10 / self.total + 1;
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}
