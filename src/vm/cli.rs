//! Command-line arguments for `install` and `boot-test`.

use std::path::PathBuf;

use clap::Args;

#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  atomic-factory install --ks ks.cfg --repo repo --ref demo/x86_64 --kernel vmlinuz --initrd initrd.img -o disk.qcow2"
)]
pub struct InstallArgs {
    /// The rendered kickstart
    #[arg(long)]
    pub ks: Option<PathBuf>,
}

/// Boot images on throwaway overlays and judge their serial console.
///
/// Each image boots in QEMU on a qcow2 overlay (the image is never modified). A boot passes
/// when every `--expect` regex has matched the console (default: a login prompt or the
/// stand-in's ready marker); it fails at once on a kernel panic, emergency mode, a failed
/// unit, an OOM kill or the other patterns kola looks for, on timeout, or when the VM exits
/// early. Exit code 0 only when every image passed.
#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  atomic-factory boot-test build/demo/demo.qcow2\n  atomic-factory boot-test a.qcow2 b.qcow2 -j 2 --junit report.xml\n  atomic-factory boot-test image.qcow2 --expect 'login:' --expect 'Reached target' --timeout 600"
)]
pub struct BootTestArgs {
    /// Images to boot (qcow2 or raw)
    #[arg(required = true)]
    pub images: Vec<PathBuf>,
    /// A regex the console must print for a pass; repeat for several (all must match)
    #[arg(long = "expect", value_name = "REGEX")]
    pub expect: Vec<String>,
    /// Seconds to wait for the expected lines (per image)
    #[arg(long, default_value_t = 300)]
    pub timeout: u64,
    /// Write a JUnit XML report here
    #[arg(long, value_name = "FILE")]
    pub junit: Option<PathBuf>,
    /// Boot this many images at once
    #[arg(short = 'j', long = "jobs", default_value_t = 1)]
    pub jobs: usize,
    /// Guest memory in MiB
    #[arg(long, default_value_t = 1024)]
    pub memory: u32,
    /// Guest CPUs
    #[arg(long, default_value_t = 1)]
    pub cpus: u32,
    /// Accelerator: auto probes KVM and falls back to TCG
    #[arg(long, default_value = "auto", value_parser = ["auto", "kvm", "tcg"])]
    pub accel: String,
    /// Keep console logs here
    #[arg(long, value_name = "DIR", default_value = "boot-test-logs")]
    pub log_dir: PathBuf,
}

pub fn install(_args: InstallArgs) -> anyhow::Result<()> {
    anyhow::bail!("not implemented yet (issue #5)")
}

pub fn boot_test(args: BootTestArgs) -> anyhow::Result<()> {
    let accel = super::accel_for_boot_test(&args.accel)?;
    let config = super::boot_test::BootTestConfig {
        images: args.images,
        expect: args.expect,
        timeout: std::time::Duration::from_secs(args.timeout),
        memory_mib: args.memory,
        cpus: args.cpus,
        accel,
        jobs: args.jobs,
        log_dir: args.log_dir,
        junit: args.junit,
    };
    let results = super::boot_test::run(&config)?;
    let failed: Vec<_> = results.iter().filter(|r| !r.passed()).collect();
    for r in &failed {
        eprintln!(
            "\n{}\nlast console lines ({}):",
            r.describe(),
            r.console_log.display()
        );
        for line in &r.console_tail {
            eprintln!("  | {line}");
        }
    }
    if !failed.is_empty() {
        anyhow::bail!(
            "{} of {} image(s) failed the boot test",
            failed.len(),
            results.len()
        );
    }
    eprintln!("boot-test: all {} image(s) passed", results.len());
    Ok(())
}
