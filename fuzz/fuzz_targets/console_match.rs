//! The console monitor on arbitrary guest output: ANSI/CR cleaning, the installer's and
//! boot-test's fatal patterns, and the installer's phase matcher. Property: how the bytes
//! arrive (one read or two) does not change the lines or their verdicts.
#![no_main]

use atomic_factory::vm::monitor::{FatalPatterns, Line, LineSplitter, phase_of};
use libfuzzer_sys::fuzz_target;

fn lines(patterns: &'static FatalPatterns, reads: &[&[u8]]) -> Vec<Line> {
    let mut splitter = LineSplitter::new(patterns);
    let mut out = Vec::new();
    for read in reads {
        out.extend(splitter.push(read));
    }
    out.extend(splitter.finish());
    out
}

fuzz_target!(|data: &[u8]| {
    let Some((&cut, data)) = data.split_first() else {
        return;
    };
    let cut = usize::from(cut) * data.len() / 256;
    for patterns in [FatalPatterns::installer(), FatalPatterns::boot()] {
        let whole = lines(patterns, &[data]);
        let split = lines(patterns, &[&data[..cut], &data[cut..]]);
        assert_eq!(whole, split, "lines depend on where a read ends");
        for line in &whole {
            let _ = phase_of(&line.text);
        }
    }
});
