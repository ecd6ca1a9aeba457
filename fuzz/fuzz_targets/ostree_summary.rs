//! Summary reading (what `mirror scan` and `summary --view` read from any repository), with
//! the property that a summary we parse and write again is stable.
#![no_main]

use atomic_factory::ostree::summary::{parse_summary, summary_bytes};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = parse_summary(data) else {
        return;
    };
    let Ok(b2) = summary_bytes(&s) else {
        return;
    };
    let s2 = parse_summary(&b2).expect("a summary we wrote must parse");
    assert_eq!(summary_bytes(&s2).expect("writing again"), b2);
});
