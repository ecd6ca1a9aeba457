//! The console monitors: ANSI/CR cleaning, boot-test's fatal patterns and the installer
//! monitor's fatal and phase matchers, on arbitrary guest output.
#![no_main]

use atomic_factory::vm::boot_test::{FATAL_PATTERNS, clean_console};
use atomic_factory::vm::monitor::{clean_line, is_fatal, phase_of};
use libfuzzer_sys::fuzz_target;
use regex::Regex;
use std::sync::OnceLock;

fuzz_target!(|data: &[u8]| {
    static FATAL: OnceLock<Vec<Regex>> = OnceLock::new();
    let fatal = FATAL.get_or_init(|| {
        FATAL_PATTERNS
            .iter()
            .map(|(_, p)| Regex::new(p).expect("our patterns compile"))
            .collect()
    });
    let text = clean_console(data);
    for line in text.lines() {
        let _ = fatal.iter().any(|re| re.is_match(line));
    }
    for raw in data.split(|&b| b == b'\n') {
        let line = clean_line(raw);
        let _ = is_fatal(&line);
        let _ = phase_of(&line);
    }
});
