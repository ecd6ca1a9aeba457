//! The `atomic-factory` binary: parse the command line, run it, report errors once.

use clap::Parser;

fn main() {
    large_buffers_go_back_to_the_os();
    atomic_factory::cli::init_logging();
    let cli = atomic_factory::cli::Cli::parse();
    if let Err(err) = atomic_factory::cli::run(cli) {
        // `{:#}` prints the whole context chain on one line: "committing tree: reading a/b: Permission denied".
        eprintln!("error: {err:#}");
        std::process::exit(1);
    }
}

/// Makes glibc serve allocations of 4 MiB and more with mmap and unmap them when freed.
/// By default its threshold slides up to 32 MiB after the first large free, and from then
/// on multi-megabyte buffers made and freed on several threads (postprocess's xz blocks and
/// encoders, 60 MiB each) stay in per-thread heaps that do not shrink: +24 MiB resident in
/// `postprocess -O vhdfixed.xz`, measured, against issue 15's 256 MiB bound.
#[allow(unsafe_code, reason = "mallopt(3) has no safe wrapper")]
fn large_buffers_go_back_to_the_os() {
    // SAFETY: mallopt only sets an allocator parameter; called before any other thread starts.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 4 << 20);
    }
}
