//! `upgrade-test`: prove inside the booted guest that an image upgrades to a newer commit and
//! rolls back, as a user would do it: boot the image (on a throwaway overlay), record the
//! booted commit, `ostree admin upgrade` from the repository we serve, reboot into the new
//! commit, roll back, reboot into the old one. Every step passes only on an answer carrying
//! this run's token (see `console`), and the guest's own `ostree admin status`.
//!
//! The guest is driven over its serial console: the image must give a root shell there (the
//! stand-in distribution does when the host types; a real image needs serial autologin, see
//! vm/README.md). Reboots are real: under `-no-reboot` QEMU exits, and the next boot starts
//! QEMU again on the same overlay, through whatever bootloader entries ostree wrote.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use regex::Regex;

use super::accel::{self, Accel, AccelChoice};
use super::boot_test::escape_xml;
use super::console::Console;
use super::install::random_token;
use super::monitor::ConsoleFailure;
use super::process::QemuProcess;
use super::qemu::{Boot, QemuConfig, create_overlay};
use super::qmp::Qmp;
use super::server::GuestServer;
use crate::ostree::{Checksum, ObjectType, Repo};

/// Exit status of an external test that skips itself (autotools' and kola's convention).
pub const SKIP_STATUS: i32 = 77;
/// Console lines kept with each step in the report.
const EXCERPT_LINES: usize = 40;
/// Time a guest gets from the reboot command to QEMU's exit.
const REBOOT_LIMIT: Duration = Duration::from_secs(120);

/// Everything `upgrade-test` needs; the CLI and the pipeline fill it.
#[derive(Debug, Clone)]
pub struct UpgradeTestConfig {
    /// The image to boot (qcow2 or raw); only a throwaway overlay of it is written.
    pub image: PathBuf,
    /// The ostree repository served to the guest, to upgrade from.
    pub repo: PathBuf,
    /// The ref to upgrade to; its commit in `repo` is the target unless `to` is set.
    pub ostree_ref: String,
    /// Upgrade to this commit instead of the ref's.
    pub to: Option<String>,
    /// The commit the image boots, when known before boot (else read from the image's
    /// manifest.json, else learned at the first boot).
    pub from: Option<String>,
    /// Deploy a target that does not descend from the booted commit.
    pub allow_downgrade: bool,
    /// kola-style external tests: every executable in this folder.
    pub tests_dir: Option<PathBuf>,
    /// Run the external tests again after the upgrade (those marked `needs=upgrade` always
    /// run only then).
    pub tests_after_upgrade: bool,
    /// Where to write a JUnit XML report, if anywhere.
    pub junit: Option<PathBuf>,
    /// Limit for each boot (to the shell) and each guest command.
    pub timeout: Duration,
    /// Fail a step when the guest prints nothing for this long while we wait on it.
    pub inactivity: Duration,
    /// Guest memory in MiB.
    pub memory_mib: u64,
    /// Guest CPUs.
    pub cpus: u32,
    /// The accelerator asked for; probed once before the first boot.
    pub accel: AccelChoice,
    /// The QEMU binary.
    pub qemu: PathBuf,
    /// Console logs, screendumps, test outputs.
    pub log_dir: PathBuf,
}

/// How a step ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The step did what it should.
    Passed,
    /// The step failed: its name and why.
    Failed(String),
    /// The step did not run (an earlier one failed), or an external test skipped itself
    /// (exit 77): why.
    Skipped(String),
}

/// One step of the test: a boot, the upgrade, a reboot, the rollback, an external test.
#[derive(Debug, Clone)]
pub struct Step {
    /// The step's name in the report.
    pub name: String,
    /// How it ended.
    pub outcome: Outcome,
    /// How long it took (a boot or reboot step includes the boot).
    pub duration: Duration,
    /// What the console showed during the step (the last lines).
    pub console: Vec<String>,
    /// A screendump of the VGA display taken when the step failed, if QMP gave one.
    pub screendump: Option<PathBuf>,
}

/// The steps of an upgrade test, the commits it went between and its overhead figures.
#[derive(Debug, Clone)]
pub struct UpgradeReport {
    /// Every step, in order; after a failure the rest are listed as skipped.
    pub steps: Vec<Step>,
    /// The commit the image booted, once known.
    pub from_commit: Option<String>,
    /// The commit upgraded to.
    pub to_commit: String,
    /// The whole run.
    pub elapsed: Duration,
    /// Our own time from QEMU's start to the first console byte, per boot.
    pub first_output: Vec<Duration>,
    /// Guest command round trips (marker to marker), for the overhead figures.
    pub round_trips: Vec<Duration>,
    /// Round trips of an empty command (`:`), one per boot: the channel's own cost.
    pub noop_round_trips: Vec<Duration>,
}

impl UpgradeReport {
    /// Whether no step failed (skipped steps do not fail the run).
    pub fn passed(&self) -> bool {
        self.steps
            .iter()
            .all(|s| !matches!(s.outcome, Outcome::Failed(_)))
    }

    /// The first failed step, if any.
    pub fn first_failure(&self) -> Option<&Step> {
        self.steps
            .iter()
            .find(|s| matches!(s.outcome, Outcome::Failed(_)))
    }
}

/// One external test and its header metadata (`# atomic-factory: timeout=60, needs=upgrade`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExternalTest {
    /// The test's file name.
    pub name: String,
    /// The executable on the host (copied into the guest to run).
    pub path: PathBuf,
    /// `timeout=SECONDS` from its header; without it, the run's timeout applies.
    pub timeout: Option<Duration>,
    /// `needs=upgrade`: run only after the upgrade, never after the first boot.
    pub needs_upgrade: bool,
}

/// Reads the executables of `dir` (sorted by name) and their metadata headers.
pub fn load_external_tests(dir: &Path) -> Result<Vec<ExternalTest>> {
    use std::os::unix::fs::PermissionsExt;
    let mut tests = Vec::new();
    let entries =
        std::fs::read_dir(dir).with_context(|| format!("reading --tests {}", dir.display()))?;
    for entry in entries {
        let path = entry?.path();
        let meta = std::fs::metadata(&path)?;
        if !meta.is_file() || meta.permissions().mode() & 0o111 == 0 {
            continue;
        }
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        anyhow::ensure!(
            name.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)),
            "external test {}: name must be letters, digits, '-', '_' or '.'",
            path.display()
        );
        let text = std::fs::read(&path)?;
        let (timeout, needs_upgrade) = parse_test_header(&String::from_utf8_lossy(&text))
            .with_context(|| format!("external test {}", path.display()))?;
        tests.push(ExternalTest {
            name,
            path,
            timeout,
            needs_upgrade,
        });
    }
    tests.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(tests)
}

/// `# atomic-factory: timeout=60, needs=upgrade` among the first lines of a test.
fn parse_test_header(text: &str) -> Result<(Option<Duration>, bool)> {
    let mut timeout = None;
    let mut needs_upgrade = false;
    for (n, line) in text.lines().take(20).enumerate() {
        let Some(rest) = line.trim().strip_prefix("# atomic-factory:") else {
            continue;
        };
        for item in rest.split(',').map(str::trim).filter(|i| !i.is_empty()) {
            match item.split_once('=') {
                Some(("timeout", v)) => {
                    let secs: u64 = v.trim().parse().with_context(|| {
                        format!("line {}: timeout={v} is not a number of seconds", n + 1)
                    })?;
                    timeout = Some(Duration::from_secs(secs));
                }
                Some(("needs", "upgrade")) => needs_upgrade = true,
                _ => bail!(
                    "line {}: unknown metadata {item:?} (known: timeout=SECONDS, needs=upgrade)",
                    n + 1
                ),
            }
        }
    }
    Ok((timeout, needs_upgrade))
}

/// The deployments `ostree admin status` lists, and whether /run/ostree-booted exists.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct GuestStatus {
    /// Whether /run/ostree-booted exists: the guest booted an ostree deployment.
    pub ostree_booted: bool,
    /// (osname, checksum, deploy serial, booted, origin refspec) in boot order.
    pub deployments: Vec<Deployment>,
}

/// One deployment as `ostree admin status` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deployment {
    /// Its stateroot (`/ostree/deploy/<osname>`).
    pub osname: String,
    /// The deployed commit.
    pub checksum: String,
    /// The deploy serial: 0, 1, ... for the same commit deployed more than once.
    pub serial: u32,
    /// Whether it is the booted deployment (`*` in the status).
    pub booted: bool,
    /// The origin refspec, when the status shows one.
    pub refspec: Option<String>,
}

impl GuestStatus {
    /// The booted deployment, if the list has one.
    pub fn booted(&self) -> Option<&Deployment> {
        self.deployments.iter().find(|d| d.booted)
    }
}

/// Parses the output of our status command: `ostree-booted=yes|no` and `ostree admin status`.
pub fn parse_status(output: &str) -> GuestStatus {
    let deployment = Regex::new(r"^([* ]) (\S+) ([0-9a-f]{64})\.(\d+)").expect("deployment regex");
    let mut status = GuestStatus::default();
    for line in output.lines() {
        if line.trim() == "ostree-booted=yes" {
            status.ostree_booted = true;
        } else if let Some(c) = deployment.captures(line) {
            status.deployments.push(Deployment {
                osname: c[2].to_string(),
                checksum: c[3].to_string(),
                serial: c[4].parse().unwrap_or(0),
                booted: &c[1] == "*",
                refspec: None,
            });
        } else if let Some(r) = line.trim().strip_prefix("origin refspec: ")
            && let Some(last) = status.deployments.last_mut()
        {
            last.refspec = Some(r.trim().to_string());
        }
    }
    status
}

const STATUS_COMMAND: &str = "if test -e /run/ostree-booted; then echo ostree-booted=yes; else echo ostree-booted=no; fi; ostree admin status";

/// Points the booted deployment's remote at our server and upgrades, with rpm-ostree where
/// the image has it, else plain ostree.
fn upgrade_command(booted: &Deployment, url: &str, to: Option<&str>, downgrade: bool) -> String {
    let origin = format!(
        "/ostree/deploy/{}/deploy/{}.{}.origin",
        booted.osname, booted.checksum, booted.serial
    );
    let mut ostree = String::from("ostree admin upgrade");
    let mut rpm_ostree = String::from("rpm-ostree upgrade");
    if let Some(c) = to {
        ostree.push_str(&format!(" --override-commit={c}"));
        rpm_ostree = format!("rpm-ostree deploy {c}");
    }
    if downgrade {
        ostree.push_str(" --allow-downgrade");
        rpm_ostree.push_str(" --allow-downgrade");
    }
    format!(
        "refspec=$(sed -n 's/^refspec=//p' {origin}); remote=${{refspec%%:*}}; \
         if [ \"$remote\" = \"$refspec\" ]; then echo \"the booted deployment follows no remote ($refspec)\"; false; \
         elif grep -qs \"^\\[remote \\\"$remote\\\"\\]\" /etc/ostree/remotes.d/*.conf; then \
         sed -i \"/^\\[remote \\\"$remote\\\"\\]/,/^\\[/ s|^url=.*|url={url}|\" /etc/ostree/remotes.d/*.conf; \
         else ostree config --repo=/ostree/repo set --group=\"remote \\\"$remote\\\"\" url {url}; fi && \
         echo \"remote $remote now at {url}\" && \
         if command -v rpm-ostree >/dev/null; then {rpm_ostree}; else {ostree}; fi 2>&1"
    )
}

/// Makes `target` (the deployment booted before the upgrade) the default again: rpm-ostree
/// rollback where the image has it; plain ostree 2022.7 has no set-default and refuses to
/// undeploy the booted deployment, so it deploys the old commit again with its origin.
fn rollback_command(target: &Deployment) -> String {
    let origin = format!(
        "/ostree/deploy/{}/deploy/{}.{}.origin",
        target.osname, target.checksum, target.serial
    );
    format!(
        "if command -v rpm-ostree >/dev/null; then rpm-ostree rollback; \
         else ostree admin deploy --retain --os={} --origin-file={origin} {}; fi 2>&1",
        target.osname, target.checksum
    )
}

const REBOOT_COMMAND: &str =
    "sync; (command -v systemctl >/dev/null && systemctl reboot) || reboot -f";

const FAILED_UNITS_COMMAND: &str = "if command -v systemctl >/dev/null; then systemctl --failed --no-legend --plain; else echo 'no systemd: no units to check'; fi";

/// Walks `to`'s parents in `repo`: whether `from` is an ancestor of `to`.
fn descends_from(repo: &Repo, to: &Checksum, from: &Checksum) -> Result<bool> {
    let mut at = *to;
    for _ in 0..100_000 {
        if at == *from {
            return Ok(true);
        }
        if !repo.has_object(&at, ObjectType::Commit) {
            return Ok(false);
        }
        match repo.read_commit(&at)?.parent {
            Some(p) => at = p,
            None => return Ok(false),
        }
    }
    Ok(false)
}

/// What is known before the first boot.
struct Plan {
    target: Checksum,
    known_from: Option<Checksum>,
}

fn preflight(cfg: &UpgradeTestConfig) -> Result<Plan> {
    if !cfg.image.is_file() {
        bail!("image {}: no such file", cfg.image.display());
    }
    let repo = Repo::open(&cfg.repo)
        .with_context(|| format!("opening the repository to serve, {}", cfg.repo.display()))?;
    let target = match &cfg.to {
        Some(rev) => repo
            .resolve_rev(rev)
            .with_context(|| format!("--to {rev}: not in {}", cfg.repo.display()))?,
        None => repo.resolve_ref(&cfg.ostree_ref)?.with_context(|| {
            format!(
                "ref {} does not exist in {}",
                cfg.ostree_ref,
                cfg.repo.display()
            )
        })?,
    };
    if !repo.has_object(&target, ObjectType::Commit) {
        bail!(
            "step upgrade cannot run: commit {target} is not in the served repository {}",
            cfg.repo.display()
        );
    }
    let known_from = match cfg
        .from
        .clone()
        .or_else(|| crate::image::manifest::recorded_commit(&cfg.image))
    {
        Some(s) => Some(
            s.parse::<Checksum>()
                .with_context(|| format!("the image's commit {s:?} is not a checksum"))?,
        ),
        None => None,
    };
    if let Some(from) = &known_from {
        check_direction(&repo, &target, from, cfg.allow_downgrade)?;
    }
    Ok(Plan { target, known_from })
}

/// Refuses an upgrade that does not move forward from the booted commit.
fn check_direction(repo: &Repo, target: &Checksum, from: &Checksum, downgrade: bool) -> Result<()> {
    if target == from {
        bail!("the image already boots {target}: there is nothing to upgrade to");
    }
    if !downgrade && !descends_from(repo, target, from)? {
        bail!(
            "refusing to upgrade: {target} does not descend from the booted commit {from} \
             (pass --allow-downgrade to deploy it anyway)"
        );
    }
    Ok(())
}

/// A booted VM: QEMU, its console and QMP.
struct Vm {
    qemu: QemuProcess,
    console: Console,
    qmp: Option<Qmp>,
    _sockets: tempfile::TempDir,
}

/// State of one run, shared by the steps.
struct Runner<'a> {
    cfg: &'a UpgradeTestConfig,
    accel: Accel,
    overlay: PathBuf,
    url: String,
    token: String,
    boots: usize,
    /// When the current boot (or reboot) step began, so its time covers the boot.
    step_started: Option<Instant>,
    report: UpgradeReport,
    tests: Vec<ExternalTest>,
}

/// Runs the whole cycle. Errors (before any boot) are bad input; a failing guest is a
/// report with a failed step.
pub fn run(cfg: &UpgradeTestConfig) -> Result<UpgradeReport> {
    crate::runtime::block_on(run_async(cfg))?
}

/// [`run`] for async callers.
pub async fn run_async(cfg: &UpgradeTestConfig) -> Result<UpgradeReport> {
    let started = Instant::now();
    let plan = preflight(cfg)?;
    let tests = match &cfg.tests_dir {
        Some(dir) => load_external_tests(dir)?,
        None => Vec::new(),
    };
    std::fs::create_dir_all(&cfg.log_dir)
        .with_context(|| format!("creating {}", cfg.log_dir.display()))?;
    let scratch = tempfile::Builder::new()
        .prefix("upgrade-test-")
        .tempdir()
        .context("creating a scratch directory for the overlay")?;
    let overlay = scratch.path().join("overlay.qcow2");
    create_overlay(&cfg.image, &overlay)?;
    let decision = accel::choose(cfg.accel, &cfg.qemu, scratch.path()).await?;
    if let Some(n) = &decision.notice {
        eprintln!("note: {n}");
    }
    let listener = GuestServer::bind(0).await?;
    let port = listener.local_addr()?.port();
    let (server, _access) = GuestServer::serve(listener, Vec::new(), Some(&cfg.repo)).await?;
    let mut runner = Runner {
        cfg,
        accel: decision.accel,
        overlay,
        url: format!("http://10.0.2.2:{port}/repo"),
        token: random_token()?,
        boots: 0,
        step_started: None,
        report: UpgradeReport {
            steps: Vec::new(),
            from_commit: plan.known_from.map(|c| c.to_hex()),
            to_commit: plan.target.to_hex(),
            elapsed: Duration::ZERO,
            first_output: Vec::new(),
            round_trips: Vec::new(),
            noop_round_trips: Vec::new(),
        },
        tests,
    };
    let result = runner.cycle(&plan).await;
    server.stop().await;
    drop(scratch);
    let mut report = runner.report;
    report.elapsed = started.elapsed();
    if let Err(e) = result {
        // An error of ours mid-run (not a guest failure) still goes into the report.
        report.steps.push(Step {
            name: "harness".into(),
            outcome: Outcome::Failed(format!("{e:#}")),
            duration: Duration::ZERO,
            console: Vec::new(),
            screendump: None,
        });
    }
    if let Some(junit) = &cfg.junit {
        write_junit(junit, &report)?;
    }
    Ok(report)
}

/// How a step ended, before it is written into the report.
type StepResult = std::result::Result<String, String>;

impl Runner<'_> {
    async fn cycle(&mut self, plan: &Plan) -> Result<()> {
        let names = [
            "boot the image",
            "upgrade",
            "reboot into the upgrade",
            "rollback",
            "reboot into the rollback",
        ];
        let mut vm = match self.boot_step(names[0]).await? {
            Some(vm) => vm,
            None => return self.skip_rest(&names[1..]),
        };
        // Step 1: the booted commit.
        let before = match self.status_step(&mut vm, names[0], None).await {
            Some(s) => s,
            None => return self.finish(vm, &names[1..]).await,
        };
        let booted_before = before.booted().cloned().expect("status_step checked it");
        self.report.from_commit = Some(booted_before.checksum.clone());
        if !self.base_checks(&mut vm, "base checks after boot").await
            || !self.external_tests(&mut vm, false).await
        {
            return self.finish(vm, &names[1..]).await;
        }

        // Step 2: upgrade, refused when it would not move forward.
        let repo = Repo::open(&self.cfg.repo)?;
        let from: Checksum = booted_before.checksum.parse()?;
        if plan.known_from.is_none()
            && let Err(e) = check_direction(&repo, &plan.target, &from, self.cfg.allow_downgrade)
        {
            self.record(
                names[1],
                Err(format!("{e:#}")),
                Duration::ZERO,
                &vm,
                0,
                None,
            );
            return self.finish(vm, &names[2..]).await;
        }
        let target = plan.target.to_hex();
        let to = self.cfg.to.as_ref().map(|_| target.as_str());
        let command = upgrade_command(&booted_before, &self.url, to, self.cfg.allow_downgrade);
        let upgraded = self
            .command_step(&mut vm, names[1], &command, &target)
            .await;
        if !upgraded {
            return self.finish(vm, &names[2..]).await;
        }

        // Step 3: reboot into the new commit.
        let Some(mut vm) = self.reboot(vm, names[2]).await? else {
            return self.skip_rest(&names[3..]);
        };
        if self
            .status_step(&mut vm, names[2], Some(&target))
            .await
            .is_none()
        {
            return self.finish(vm, &names[3..]).await;
        }
        if !self.base_checks(&mut vm, "base checks after upgrade").await
            || !self.external_tests(&mut vm, true).await
        {
            return self.finish(vm, &names[3..]).await;
        }

        // Step 4: roll back.
        let old = booted_before.checksum.clone();
        let rolled = self
            .command_step(&mut vm, names[3], &rollback_command(&booted_before), &old)
            .await;
        if !rolled {
            return self.finish(vm, &names[4..]).await;
        }

        // Step 5: reboot into the old commit.
        let Some(mut vm) = self.reboot(vm, names[4]).await? else {
            return Ok(());
        };
        if self
            .status_step(&mut vm, names[4], Some(&old))
            .await
            .is_some()
        {
            self.base_checks(&mut vm, "base checks after rollback")
                .await;
        }
        self.finish(vm, &[]).await
    }

    /// Starts QEMU on the overlay and waits for the guest's shell. `None`: the step failed.
    async fn boot_step(&mut self, name: &str) -> Result<Option<Vm>> {
        let started = *self.step_started.get_or_insert_with(Instant::now);
        let mut vm = self.start_vm().await?;
        match vm
            .console
            .wait_for_shell(self.cfg.timeout, self.cfg.inactivity)
            .await
        {
            Ok(_) => {
                // The terminal's echo of what we type doubles the bytes a slow emulated
                // UART carries per command (the markers never depended on it).
                let _ = vm
                    .console
                    .run(
                        "stty -echo 2>/dev/null; :",
                        self.cfg.timeout,
                        self.cfg.inactivity,
                    )
                    .await;
                if let Ok(r) = vm
                    .console
                    .run(":", self.cfg.timeout, self.cfg.inactivity)
                    .await
                {
                    self.report.noop_round_trips.push(r.round_trip);
                }
                Ok(Some(vm))
            }
            Err(failure) => {
                let why = self.describe_boot_failure(&vm, &failure);
                let shot = self.screendump(&vm, name).await;
                self.step_started = None;
                self.record(name, Err(why), started.elapsed(), &vm, 0, shot);
                vm.qemu.kill().await;
                Ok(None)
            }
        }
    }

    fn describe_boot_failure(&self, vm: &Vm, failure: &ConsoleFailure) -> String {
        let what = match failure {
            ConsoleFailure::Fatal(_) => vm.console.fatal().unwrap_or_else(|| failure.to_string()),
            other => other.to_string(),
        };
        format!("the deployment did not come up to a shell: {what}")
    }

    async fn start_vm(&mut self) -> Result<Vm> {
        self.boots += 1;
        let n = self.boots;
        let sockets = tempfile::Builder::new().prefix("af-upg-").tempdir()?;
        let qmp_socket = sockets.path().join("qmp");
        let qcfg = QemuConfig {
            binary: self.cfg.qemu.clone(),
            accel: self.accel,
            memory_mib: self.cfg.memory_mib,
            cpus: self.cfg.cpus,
            disk: self.overlay.clone(),
            cdrom: None,
            boot: Boot::Disk,
            serial_socket: sockets.path().join("serial"),
            virtio_log_socket: None,
            qmp_socket: Some(qmp_socket.clone()),
            network: true,
        };
        let qemu_log = self.cfg.log_dir.join(format!("boot-{n}.qemu.log"));
        let launched = qcfg.launch(&qemu_log).await?;
        let (qemu, spawned) = (launched.process, launched.spawned);
        let console_log = self.cfg.log_dir.join(format!("boot-{n}.console.log"));
        let console = Console::attach(launched.serial, &console_log, &self.token)?;
        let qmp = Qmp::connect(&qmp_socket, Duration::from_secs(10))
            .await
            .ok()
            .map(|(q, _events)| q);
        // First output: when the guest's firmware prints (our part is the start-up before).
        let first = console
            .wait_for(0, Duration::from_secs(60), Duration::from_secs(60), |l| {
                (!l.is_empty()).then_some(())
            })
            .await;
        if first.is_ok() {
            self.report.first_output.push(spawned.elapsed());
        }
        Ok(Vm {
            qemu,
            console,
            qmp,
            _sockets: sockets,
        })
    }

    /// Runs the status command; passes when the booted deployment is `expect` (or any, for
    /// the first boot) and /run/ostree-booted exists.
    async fn status_step(
        &mut self,
        vm: &mut Vm,
        name: &str,
        expect: Option<&str>,
    ) -> Option<GuestStatus> {
        let started = self.step_started.take().unwrap_or_else(Instant::now);
        let cursor = vm.console.line_count();
        let reply = vm
            .console
            .run(STATUS_COMMAND, self.cfg.timeout, self.cfg.inactivity)
            .await;
        let result: std::result::Result<GuestStatus, String> = match reply {
            Err(f) => Err(format!(
                "the guest did not answer `ostree admin status`: {f}"
            )),
            Ok(r) => {
                self.report.round_trips.push(r.round_trip);
                let status = parse_status(&r.output);
                match (status.booted(), expect) {
                    _ if r.status != 0 => Err(format!(
                        "`ostree admin status` failed (exit {}): {}",
                        r.status,
                        r.output.trim()
                    )),
                    _ if !status.ostree_booted => {
                        Err("/run/ostree-booted is missing: not booted through ostree".into())
                    }
                    (None, _) => Err(format!(
                        "`ostree admin status` shows no booted deployment:\n{}",
                        r.output
                    )),
                    (Some(b), Some(want)) if b.checksum != want => Err(format!(
                        "the booted commit is {}, not {want}: the new deployment did not come up",
                        b.checksum
                    )),
                    (Some(_), _) => Ok(status),
                }
            }
        };
        match result {
            Ok(status) => {
                let b = status.booted().expect("checked above");
                let msg = format!(
                    "booted {} ({}.{}), /run/ostree-booted present",
                    b.checksum, b.osname, b.serial
                );
                self.record(name, Ok(msg), started.elapsed(), vm, cursor, None);
                Some(status)
            }
            Err(why) => {
                let shot = self.screendump(vm, name).await;
                self.record(name, Err(why), started.elapsed(), vm, cursor, shot);
                None
            }
        }
    }

    /// Runs `command`; passes when it exits 0 and `ostree admin status` afterwards lists
    /// `default` first (the deployment the next boot starts).
    async fn command_step(
        &mut self,
        vm: &mut Vm,
        name: &str,
        command: &str,
        default: &str,
    ) -> bool {
        let started = Instant::now();
        let cursor = vm.console.line_count();
        let result: StepResult = async {
            let r = vm
                .console
                .run(command, self.cfg.timeout, self.cfg.inactivity)
                .await
                .map_err(|f| format!("{f}"))?;
            self.report.round_trips.push(r.round_trip);
            if r.status != 0 {
                return Err(format!("exit {}: {}", r.status, last_lines(&r.output, 15)));
            }
            let s = vm
                .console
                .run(STATUS_COMMAND, self.cfg.timeout, self.cfg.inactivity)
                .await
                .map_err(|f| format!("`ostree admin status`: {f}"))?;
            match parse_status(&s.output).deployments.first() {
                Some(d) if d.checksum == default => {
                    Ok(format!("{default} is the default deployment"))
                }
                other => Err(format!(
                    "after the {name} the default deployment is {}, not {default}",
                    other.map(|d| d.checksum.as_str()).unwrap_or("missing")
                )),
            }
        }
        .await;
        let ok = result.is_ok();
        let shot = if ok {
            None
        } else {
            self.screendump(vm, name).await
        };
        self.record(name, result, started.elapsed(), vm, cursor, shot);
        ok
    }

    /// Asks the guest to reboot, waits for QEMU to exit (-no-reboot), and boots again.
    async fn reboot(&mut self, mut vm: Vm, name: &str) -> Result<Option<Vm>> {
        let started = Instant::now();
        self.step_started = Some(started);
        let cursor = vm.console.line_count();
        let _ = vm.console.type_line(REBOOT_COMMAND).await;
        let went = vm
            .console
            .wait_for(cursor, REBOOT_LIMIT, REBOOT_LIMIT, |_| None::<()>)
            .await;
        if went != Err(ConsoleFailure::Closed) {
            let why = format!(
                "the guest did not reboot: {}",
                went.err().map(|f| f.to_string()).unwrap_or_default()
            );
            let shot = self.screendump(&vm, name).await;
            self.step_started = None;
            self.record(name, Err(why), started.elapsed(), &vm, cursor, shot);
            vm.qemu.kill().await;
            return Ok(None);
        }
        let _ = tokio::time::timeout(Duration::from_secs(10), vm.qemu.wait()).await;
        vm.qemu.kill().await;
        self.boot_step(name).await
    }

    /// No kernel oops/panic/BUG on the console so far, and no failed units under systemd.
    async fn base_checks(&mut self, vm: &mut Vm, name: &str) -> bool {
        let started = Instant::now();
        let cursor = vm.console.line_count();
        let result = match vm.console.fatal() {
            Some(f) => Err(f),
            None => match vm
                .console
                .run(FAILED_UNITS_COMMAND, self.cfg.timeout, self.cfg.inactivity)
                .await
            {
                Err(f) => Err(f.to_string()),
                Ok(r) if r.status != 0 => Err(format!("listing failed units: exit {}", r.status)),
                Ok(r) if r.output.trim().is_empty() => Ok("no failed units".into()),
                Ok(r) if r.output.starts_with("no systemd") => Ok(r.output.trim().to_string()),
                Ok(r) => Err(format!("failed units:\n{}", r.output.trim())),
            },
        };
        let ok = result.is_ok();
        self.record(name, result, started.elapsed(), vm, cursor, None);
        ok
    }

    /// Copies and runs the external tests that belong to this boot. False when one failed
    /// in a way that leaves the guest unusable (it stopped answering) or failed at all.
    async fn external_tests(&mut self, vm: &mut Vm, after_upgrade: bool) -> bool {
        let tests: Vec<ExternalTest> = self
            .tests
            .iter()
            .filter(|t| {
                if after_upgrade {
                    t.needs_upgrade || self.cfg.tests_after_upgrade
                } else {
                    !t.needs_upgrade
                }
            })
            .cloned()
            .collect();
        let when = if after_upgrade {
            "after upgrade"
        } else {
            "after boot"
        };
        let mut all_ok = true;
        for test in tests {
            let name = format!("test {} ({when})", test.name);
            let started = Instant::now();
            let cursor = vm.console.line_count();
            let guest_path = format!("/var/tmp/af-tests/{}", test.name);
            let limit = test.timeout.unwrap_or(self.cfg.timeout);
            let outcome: std::result::Result<Outcome, String> = async {
                let bytes = std::fs::read(&test.path)
                    .map_err(|e| format!("reading {}: {e}", test.path.display()))?;
                vm.console
                    .run("mkdir -p /var/tmp/af-tests", limit, self.cfg.inactivity)
                    .await
                    .map_err(|f| f.to_string())?;
                vm.console
                    .put_file(&guest_path, &bytes, true, self.cfg.timeout)
                    .await
                    .map_err(|e| format!("{e:#}"))?;
                let r = vm
                    .console
                    .run(&format!("{guest_path} 2>&1"), limit, self.cfg.inactivity)
                    .await
                    .map_err(|f| f.to_string())?;
                let log = self.cfg.log_dir.join(format!(
                    "test-{}-{}.log",
                    test.name,
                    if after_upgrade { "upgrade" } else { "boot" }
                ));
                let _ = crate::fsutil::write_atomic(&log, r.output.as_bytes());
                Ok(match r.status {
                    0 => Outcome::Passed,
                    SKIP_STATUS => Outcome::Skipped(format!("exit {SKIP_STATUS}: {}", r.output)),
                    n => Outcome::Failed(format!("exit {n}: {}", last_lines(&r.output, 15))),
                })
            }
            .await;
            let (result, shot) = match outcome {
                Ok(Outcome::Passed) => (Ok(format!("{} passed", test.name)), None),
                Ok(Outcome::Skipped(why)) => {
                    self.push_step(Step {
                        name,
                        outcome: Outcome::Skipped(why),
                        duration: started.elapsed(),
                        console: excerpt(&vm.console, cursor),
                        screendump: None,
                    });
                    continue;
                }
                Ok(Outcome::Failed(why)) => (Err(why), None),
                Err(why) => {
                    let shot = self.screendump(vm, &name).await;
                    (Err(why), shot)
                }
            };
            all_ok &= result.is_ok();
            self.record(&name, result, started.elapsed(), vm, cursor, shot);
            if !all_ok {
                break;
            }
        }
        all_ok
    }

    async fn screendump(&self, vm: &Vm, step: &str) -> Option<PathBuf> {
        let qmp = vm.qmp.as_ref()?;
        let slug: String = step
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .collect();
        let png = self.cfg.log_dir.join(format!("screendump-{slug}.png"));
        let png = std::fs::canonicalize(&self.cfg.log_dir)
            .map(|d| d.join(png.file_name().expect("has a name")))
            .unwrap_or(png);
        tokio::time::timeout(Duration::from_secs(10), qmp.screendump(&png))
            .await
            .ok()?
            .ok()
    }

    fn record(
        &mut self,
        name: &str,
        result: StepResult,
        duration: Duration,
        vm: &Vm,
        cursor: usize,
        screendump: Option<PathBuf>,
    ) {
        let outcome = match result {
            Ok(_) => Outcome::Passed,
            Err(why) => Outcome::Failed(format!("{name}: {why}")),
        };
        self.push_step(Step {
            name: name.to_string(),
            outcome,
            duration,
            console: excerpt(&vm.console, cursor),
            screendump,
        });
    }

    fn push_step(&mut self, step: Step) {
        let line = match &step.outcome {
            Outcome::Passed => format!("PASS {}", step.name),
            Outcome::Skipped(why) => format!("SKIP {}: {}", step.name, first_line(why)),
            Outcome::Failed(why) => format!("FAIL {why}"),
        };
        eprintln!(
            "upgrade-test: {line} ({:.1} s)",
            step.duration.as_secs_f64()
        );
        self.report.steps.push(step);
    }

    fn skip_rest(&mut self, names: &[&str]) -> Result<()> {
        for name in names {
            self.report.steps.push(Step {
                name: name.to_string(),
                outcome: Outcome::Skipped("an earlier step failed".into()),
                duration: Duration::ZERO,
                console: Vec::new(),
                screendump: None,
            });
        }
        Ok(())
    }

    async fn finish(&mut self, mut vm: Vm, rest: &[&str]) -> Result<()> {
        vm.qemu.kill().await;
        self.skip_rest(rest)
    }
}

fn excerpt(console: &Console, cursor: usize) -> Vec<String> {
    let lines = console.lines_since(cursor);
    if lines.is_empty() {
        return console.tail(EXCERPT_LINES);
    }
    lines[lines.len().saturating_sub(EXCERPT_LINES)..].to_vec()
}

fn last_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

fn first_line(text: &str) -> &str {
    text.lines().next().unwrap_or("")
}

/// JUnit XML: one testcase per step, with its console excerpt; skipped steps as `<skipped>`.
pub fn write_junit(path: &Path, report: &UpgradeReport) -> Result<()> {
    use std::fmt::Write as _;
    let failures = report
        .steps
        .iter()
        .filter(|s| matches!(s.outcome, Outcome::Failed(_)))
        .count();
    let skipped = report
        .steps
        .iter()
        .filter(|s| matches!(s.outcome, Outcome::Skipped(_)))
        .count();
    let total = report.elapsed.as_secs_f64();
    let n = report.steps.len();
    let mut xml = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        xml,
        "<testsuites name=\"atomic-factory upgrade-test\" tests=\"{n}\" failures=\"{failures}\" errors=\"0\" time=\"{total:.3}\">"
    );
    let _ = writeln!(
        xml,
        "  <testsuite name=\"upgrade-test\" tests=\"{n}\" failures=\"{failures}\" errors=\"0\" skipped=\"{skipped}\" time=\"{total:.3}\">"
    );
    for step in &report.steps {
        let _ = writeln!(
            xml,
            "    <testcase classname=\"upgrade-test\" name=\"{}\" time=\"{:.3}\">",
            escape_xml(&step.name),
            step.duration.as_secs_f64()
        );
        match &step.outcome {
            Outcome::Passed => {}
            Outcome::Skipped(why) => {
                let _ = writeln!(
                    xml,
                    "      <skipped message=\"{}\"/>",
                    escape_xml(first_line(why))
                );
            }
            Outcome::Failed(why) => {
                let _ = writeln!(
                    xml,
                    "      <failure message=\"{}\" type=\"upgrade\">{}</failure>",
                    escape_xml(first_line(why)),
                    escape_xml(why)
                );
            }
        }
        let mut out = step.console.join("\n");
        if let Some(shot) = &step.screendump {
            let _ = write!(out, "\nscreendump: {}", shot.display());
        }
        let _ = writeln!(xml, "      <system-out>{}</system-out>", escape_xml(&out));
        xml.push_str("    </testcase>\n");
    }
    xml.push_str("  </testsuite>\n</testsuites>\n");
    crate::fsutil::write_atomic(path, xml.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    const STATUS: &str = "ostree-booted=yes
  standin 1111111111111111111111111111111111111111111111111111111111111111.0 (pending)
    origin refspec: standin:standin/x86_64/demo
* standin 2222222222222222222222222222222222222222222222222222222222222222.0
    origin refspec: standin:standin/x86_64/demo
";

    #[test]
    fn status_parses_booted_and_order() {
        let s = parse_status(STATUS);
        assert!(s.ostree_booted);
        assert_eq!(s.deployments.len(), 2);
        assert_eq!(s.deployments[0].checksum, "1".repeat(64));
        assert!(!s.deployments[0].booted);
        let b = s.booted().unwrap();
        assert_eq!(b.checksum, "2".repeat(64));
        assert_eq!(b.refspec.as_deref(), Some("standin:standin/x86_64/demo"));
        assert!(!parse_status("ostree-booted=no\n").ostree_booted);
    }

    #[test]
    fn test_headers() {
        assert_eq!(
            parse_test_header("#!/bin/sh\n# atomic-factory: timeout=60, needs=upgrade\n").unwrap(),
            (Some(Duration::from_secs(60)), true)
        );
        assert_eq!(
            parse_test_header("#!/bin/sh\necho\n").unwrap(),
            (None, false)
        );
        let err = parse_test_header("# atomic-factory: retries=3\n").unwrap_err();
        assert!(format!("{err:#}").contains("line 1"), "{err:#}");
        assert!(parse_test_header("# atomic-factory: timeout=soon\n").is_err());
    }

    #[test]
    fn upgrade_command_repoints_the_remote_and_overrides() {
        let d = Deployment {
            osname: "standin".into(),
            checksum: "a".repeat(64),
            serial: 0,
            booted: true,
            refspec: None,
        };
        let c = upgrade_command(&d, "http://10.0.2.2:1234/repo", Some("bbbb"), true);
        assert!(c.contains(&format!(
            "/ostree/deploy/standin/deploy/{}.0.origin",
            "a".repeat(64)
        )));
        assert!(c.contains("ostree admin upgrade --override-commit=bbbb --allow-downgrade"));
        assert!(c.contains("url http://10.0.2.2:1234/repo"));
        assert!(!c.contains('\n'));
        let r = rollback_command(&d);
        assert!(r.contains("ostree admin deploy --retain --os=standin"));
    }
}
