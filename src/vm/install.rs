//! `install`: boot the installer in QEMU against the served kickstart and repository, watch
//! it, and keep the disk only on a positive success signal.
//!
//! Success = the per-run token arrived on the virtio log port AND the guest powered off.
//! Everything else is a failure that says why: a fatal log line (with the lines), the VM
//! vanishing without the token, the overall or inactivity timeout (with a screendump and the
//! last 50 log lines), an environment problem (kickstart or repository never fetched, port in
//! use, disk full, media without a kernel).

use std::collections::HashSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use tokio::net::UnixStream;
use tokio::sync::mpsc;

use super::accel::{self, Accel, AccelChoice};
use super::kickstart_prep::{self, HOST_ALIAS, PreparedKickstart};
use super::media::{self, InstallerMedia};
use super::monitor::{self, FatalPatterns, Line, Phase, Tail};
use super::process::QemuProcess;
use super::qemu::{Boot, QemuConfig};
use super::qmp::{Qmp, QmpEvent};
use super::server::{Access, GuestServer};
use crate::command::CommandExt as _;
use crate::progress::{Reporter, Task, Unit};

/// How the installer gets the kickstart (`--ks-via`).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum KsVia {
    /// `inst.ks=http://10.0.2.2:PORT/ks.cfg`
    Http,
    /// `inst.ks=file:/ks.cfg`, in a cpio appended to a copy of the initrd
    Initrd,
}

/// Where the installer's kernel and initrd come from.
#[derive(Debug, Clone)]
pub enum MediaSource {
    /// A boot.iso: kernel and initrd are read out of it, it is attached as a CD-ROM, and
    /// `inst.stage2=` points at its volume label.
    Iso(PathBuf),
    /// A kernel and initrd given as files.
    Kernel {
        /// The installer kernel.
        kernel: PathBuf,
        /// The installer initrd.
        initrd: PathBuf,
        /// The `inst.stage2=` value, if the installer needs one.
        stage2: Option<String>,
    },
}

/// Everything `install` needs; the CLI and the pipeline fill it.
#[derive(Debug, Clone)]
pub struct InstallConfig {
    /// The rendered kickstart; it must end the install with `poweroff`.
    pub kickstart: PathBuf,
    /// The ostree repository to serve at `http://10.0.2.2:PORT/repo/`.
    pub repo: Option<PathBuf>,
    /// The ref the kickstart installs (checked to exist in `repo`).
    pub ostree_ref: Option<String>,
    /// The installer to boot.
    pub media: MediaSource,
    /// Size of the target disk in bytes.
    pub disk_size: u64,
    /// Guest memory in MiB.
    pub memory_mib: u64,
    /// Guest CPUs.
    pub cpus: u32,
    /// The accelerator asked for; probed when the install starts.
    pub accel: AccelChoice,
    /// Overall limit; None = 20 min under KVM, 3x that under TCG.
    pub timeout: Option<Duration>,
    /// No log output, disk I/O or HTTP request for this long = hang; None = 5 min (KVM), 10 (TCG).
    pub inactivity_timeout: Option<Duration>,
    /// The installed disk (qcow2); written as `<output>.partial`, renamed on success and
    /// removed on failure.
    pub output: PathBuf,
    /// How the installer gets the kickstart.
    pub ks_via: KsVia,
    /// Port on 127.0.0.1 for the guest server (0 = any free port).
    pub port: u16,
    /// Extra kernel arguments for the installer.
    pub extra_kargs: Vec<String>,
    /// The QEMU binary.
    pub qemu: PathBuf,
    /// Where the install's phases and pulled objects are reported (stderr by default).
    pub progress: Reporter,
}

impl InstallConfig {
    /// A configuration with the CLI's defaults: an 8 GiB disk, 2048 MiB, 2 CPUs, `auto`
    /// accelerator, kickstart over HTTP, any free port, no repository.
    pub fn new(kickstart: PathBuf, media: MediaSource, output: PathBuf) -> Self {
        InstallConfig {
            kickstart,
            repo: None,
            ostree_ref: None,
            media,
            disk_size: 8 << 30,
            memory_mib: 2048,
            cpus: 2,
            accel: AccelChoice::Auto,
            timeout: None,
            inactivity_timeout: None,
            output,
            ks_via: KsVia::Http,
            port: 0,
            extra_kargs: Vec::new(),
            qemu: "qemu-system-x86_64".into(),
            progress: Reporter::default(),
        }
    }

    /// Where the logs of an install to `output` go: `<output>.logs/` next to it.
    pub fn logs_dir(&self) -> PathBuf {
        let mut s = self.output.clone().into_os_string();
        s.push(".logs");
        PathBuf::from(s)
    }
}

/// What a successful install left, and how long its parts took.
#[derive(Debug, Clone, serde::Serialize)]
pub struct InstallOutcome {
    /// The installed disk (the configured output).
    pub disk: PathBuf,
    /// The install's logs (`<output>.logs/`).
    pub logs_dir: PathBuf,
    /// The accelerator the installer ran under.
    pub accel: Accel,
    /// The one notice given when `auto` fell back to TCG.
    pub accel_notice: Option<String>,
    /// The whole install, from the input checks to the renamed disk.
    pub elapsed: Duration,
    /// Our set-up time before QEMU started (excluding the KVM probe).
    pub setup: Duration,
    /// QEMU start to the first byte the guest printed.
    pub first_output: Duration,
    /// Guest poweroff (QEMU exit) to our return, disk renamed and server stopped.
    pub teardown: Duration,
    /// Distinct ostree objects the guest fetched from the served repository.
    pub objects_fetched: usize,
    /// Objects in the served repository (0 when none is served).
    pub objects_total: usize,
}

/// Runs an install to completion on the process's runtime (from synchronous code).
pub fn run(cfg: &InstallConfig) -> Result<InstallOutcome> {
    crate::runtime::block_on(run_async(cfg))?
}

/// [`run`] for async callers: checks the inputs, serves the kickstart and the repository,
/// boots the installer and watches it until it powers off. On failure the partial disk is
/// removed and the logs folder holds what the guest printed.
pub async fn run_async(cfg: &InstallConfig) -> Result<InstallOutcome> {
    let started = Instant::now();
    let mut progress = Progress::new(cfg.progress.clone());
    progress.phase(Phase::Starting, "checking inputs");
    let inputs = check_inputs(cfg)?;
    let logs = &inputs.logs;
    let sockets = tempfile::Builder::new().prefix("af-vm-").tempdir()?;

    // The server port first: the kickstart names it.
    let listener = GuestServer::bind(cfg.port).await?;
    let port = listener.local_addr()?.port();
    let token = random_token()?;
    let prepared = prepare_kickstart(cfg, &inputs.ks_text, port, &token, logs, &mut progress)?;
    let media = installer_media(cfg, logs)?;
    let boot = installer_boot(cfg, &media, &prepared, port, logs)?;

    let probe_start = Instant::now();
    let decision = accel::choose(cfg.accel, &cfg.qemu, sockets.path()).await?;
    let probe_time = probe_start.elapsed();
    if let Some(n) = &decision.notice {
        progress.notice(n);
    }
    let (timeout, inactivity) = limits(cfg, decision.accel);

    let partial = partial_path(&cfg.output);
    let _ = std::fs::remove_file(&partial);
    let mut disk_guard = PartialDisk(Some(partial.clone()));
    create_disk(&partial, cfg.disk_size)?;
    let (server, access_rx) = GuestServer::serve(
        listener,
        prepared.text.clone().into_bytes(),
        cfg.repo.as_deref(),
    )
    .await?;

    let qmp_socket = sockets.path().join("qmp");
    let qcfg = QemuConfig {
        binary: cfg.qemu.clone(),
        accel: decision.accel,
        memory_mib: cfg.memory_mib,
        cpus: cfg.cpus,
        disk: partial.clone(),
        cdrom: media.iso.clone(),
        boot,
        serial_socket: sockets.path().join("serial"),
        virtio_log_socket: Some(sockets.path().join("virtio-log")),
        qmp_socket: Some(qmp_socket.clone()),
        network: true,
    };
    write_file(
        &logs.join("qemu-cmdline"),
        format!("{}\n", qcfg.display()).as_bytes(),
    )?;
    let setup = started.elapsed().saturating_sub(probe_time);
    let launched = qcfg.launch(&logs.join("qemu.log")).await?;
    let (mut qemu, spawned) = (launched.process, launched.spawned);
    progress.phase(
        Phase::Booting,
        &format!(
            "QEMU started ({}, {} MiB, {} cpus)",
            decision.accel.qemu_name(),
            cfg.memory_mib,
            cfg.cpus
        ),
    );
    let lines = read_logs(launched.serial, launched.virtio_log, logs)?;
    let (qmp, qmp_events) = Qmp::connect(&qmp_socket, Duration::from_secs(10)).await?;

    let watch = Watch {
        logs,
        output: &cfg.output,
        token_line: kickstart_prep::token_line(&token),
        timeout,
        inactivity,
        objects_total: inputs.objects_total,
        hints: Hints {
            ks_over_http: cfg.ks_via == KsVia::Http,
            serves_repo: cfg.repo.is_some(),
            port,
            ostree_url: prepared.ostree_url.clone(),
            url_is_ours: prepared.url_is_ours,
        },
    };
    let events = Events {
        qmp: qmp_events,
        lines,
        access: access_rx,
    };
    let result = watch
        .run(&mut qemu, &qmp, events, &mut progress, spawned)
        .await;
    let exit_at = Instant::now();
    qemu.kill().await;
    drop(qmp);
    server.stop().await;
    let watched = result?;

    // Success: only now does the disk get its real name.
    keep_disk(&partial, &cfg.output, &inputs.out_dir)?;
    disk_guard.0 = None;
    let outcome = InstallOutcome {
        disk: cfg.output.clone(),
        logs_dir: logs.clone(),
        accel: decision.accel,
        accel_notice: decision.notice,
        elapsed: started.elapsed(),
        setup,
        first_output: watched.first_output.unwrap_or_default(),
        teardown: exit_at.elapsed() + watched.exit_wait,
        objects_fetched: watched.objects_fetched,
        objects_total: inputs.objects_total,
    };
    progress.finish(&format!(
        "installed {} in {:.1} s ({} of {} objects fetched); logs in {}",
        cfg.output.display(),
        outcome.elapsed.as_secs_f64(),
        outcome.objects_fetched,
        outcome.objects_total,
        logs.display()
    ));
    Ok(outcome)
}

/// What the input checks found, for the rest of the install.
struct Inputs {
    ks_text: String,
    /// Objects in the served repository (the progress total).
    objects_total: usize,
    /// The folder the disk is written to.
    out_dir: PathBuf,
    /// The logs folder, created empty.
    logs: PathBuf,
}

/// Reads the kickstart, checks the repository, the output folder and its free space, and
/// starts an empty logs folder.
fn check_inputs(cfg: &InstallConfig) -> Result<Inputs> {
    let ks_text = std::fs::read_to_string(&cfg.kickstart)
        .with_context(|| format!("reading the kickstart {}", cfg.kickstart.display()))?;
    let objects_total = match &cfg.repo {
        Some(repo) => check_repo(repo, cfg.ostree_ref.as_deref())?,
        None => 0,
    };
    let out_dir = match cfg.output.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    if !out_dir.is_dir() {
        bail!(
            "output folder {} does not exist: create it or pick another -o",
            out_dir.display()
        );
    }
    check_free_space(&out_dir)?;
    let logs = cfg.logs_dir();
    if logs.exists() {
        std::fs::remove_dir_all(&logs)
            .with_context(|| format!("clearing old logs {}", logs.display()))?;
    }
    std::fs::create_dir_all(&logs).with_context(|| format!("creating {}", logs.display()))?;
    Ok(Inputs {
        ks_text,
        objects_total,
        out_dir,
        logs,
    })
}

/// The kickstart as served (port and success token in), saved in the logs; warns when its
/// ostreesetup URL is not the repository we serve.
fn prepare_kickstart(
    cfg: &InstallConfig,
    ks_text: &str,
    port: u16,
    token: &str,
    logs: &Path,
    progress: &mut Progress,
) -> Result<PreparedKickstart> {
    let prepared = kickstart_prep::prepare(&cfg.kickstart, ks_text, port, token)?;
    if cfg.repo.is_some() && !prepared.url_is_ours {
        progress.notice(&format!(
            "warning: {}: ostreesetup --url is {} which is not the served repository; use --url=http://{HOST_ALIAS}/repo",
            cfg.kickstart.display(),
            prepared.ostree_url.as_deref().unwrap_or("missing")
        ));
    }
    write_file(&logs.join("ks.cfg"), prepared.text.as_bytes())?;
    Ok(prepared)
}

/// The installer's kernel and initrd: out of the ISO (into the logs folder), or as given.
fn installer_media(cfg: &InstallConfig, logs: &Path) -> Result<InstallerMedia> {
    match &cfg.media {
        MediaSource::Iso(iso) => {
            let dir = logs.join("media");
            std::fs::create_dir_all(&dir)?;
            media::from_iso(iso, &dir)
        }
        MediaSource::Kernel {
            kernel,
            initrd,
            stage2,
        } => {
            for (what, p) in [("--kernel", kernel), ("--initrd", initrd)] {
                if !p.is_file() {
                    bail!("{what} {}: no such file", p.display());
                }
            }
            Ok(InstallerMedia {
                kernel: kernel.clone(),
                initrd: initrd.clone(),
                iso: None,
                stage2: stage2.clone(),
            })
        }
    }
}

/// How the installer boots: its kernel, the initrd (with the kickstart in it for
/// `--ks-via initrd`), and the kernel arguments that find the kickstart and the console.
fn installer_boot(
    cfg: &InstallConfig,
    media: &InstallerMedia,
    prepared: &PreparedKickstart,
    port: u16,
    logs: &Path,
) -> Result<Boot> {
    let mut initrd = media.initrd.clone();
    let ks_arg = match cfg.ks_via {
        KsVia::Http => format!("inst.ks=http://{HOST_ALIAS}:{port}/ks.cfg"),
        KsVia::Initrd => {
            initrd = logs.join("initrd-with-ks.img");
            media::initrd_with_kickstart(&media.initrd, prepared.text.as_bytes(), &initrd)?;
            "inst.ks=file:/ks.cfg".to_string()
        }
    };
    let mut append = vec![
        ks_arg,
        "inst.text".into(),
        "console=ttyS0".into(),
        "inst.notmux".into(),
        "inst.nosave=output_ks".into(),
    ];
    if let Some(s) = &media.stage2 {
        append.push(format!("inst.stage2={s}"));
    }
    append.extend(cfg.extra_kargs.iter().cloned());
    Ok(Boot::Kernel {
        kernel: media.kernel.clone(),
        initrd,
        append: append.join(" "),
    })
}

/// The overall and inactivity timeouts: as configured, else 20 and 5 min under KVM and
/// 60 and 10 min under TCG.
fn limits(cfg: &InstallConfig, accel: Accel) -> (Duration, Duration) {
    let tcg = accel == Accel::Tcg;
    let timeout = cfg
        .timeout
        .unwrap_or(Duration::from_secs(if tcg { 3600 } else { 1200 }));
    let inactivity = cfg
        .inactivity_timeout
        .unwrap_or(Duration::from_secs(if tcg { 600 } else { 300 }));
    (timeout, inactivity)
}

/// Reads the installer's serial console and Anaconda's log port into `serial.log` and
/// `virtio.log`, judged with the installer's fatal patterns; their lines arrive, tagged with
/// the stream, on the returned channel.
fn read_logs(
    serial: UnixStream,
    virtio_log: Option<UnixStream>,
    logs: &Path,
) -> Result<mpsc::UnboundedReceiver<(&'static str, Line)>> {
    let virtio_log = virtio_log.context("QEMU has no virtio log port connection")?;
    let (tx, rx) = mpsc::unbounded_channel();
    let installer = FatalPatterns::installer();
    monitor::forward_lines(
        serial,
        "serial",
        &logs.join("serial.log"),
        installer,
        tx.clone(),
    )?;
    monitor::forward_lines(
        virtio_log,
        "virtio",
        &logs.join("virtio.log"),
        installer,
        tx,
    )?;
    Ok(rx)
}

/// Gives the finished disk its real name, durably.
fn keep_disk(partial: &Path, output: &Path, out_dir: &Path) -> Result<()> {
    std::fs::File::open(partial).and_then(|f| f.sync_all()).ok();
    std::fs::rename(partial, output)
        .with_context(|| format!("renaming {} to {}", partial.display(), output.display()))?;
    if let Ok(d) = std::fs::File::open(out_dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// How long after a fatal line the watch goes on, so its context reaches the logs.
const FATAL_GRACE: Duration = Duration::from_millis(1500);
/// How long after QEMU's exit the lines still in flight are read (the token may be).
const DRAIN_TIME: Duration = Duration::from_millis(500);
/// How often disk activity and the inactivity timeout are checked.
const TICK: Duration = Duration::from_secs(2);

/// What the install watch needs to know beyond what it observes.
struct Watch<'a> {
    logs: &'a Path,
    output: &'a Path,
    token_line: String,
    timeout: Duration,
    inactivity: Duration,
    objects_total: usize,
    hints: Hints,
}

/// What explains an install that never got going.
#[derive(Debug, Clone)]
struct Hints {
    ks_over_http: bool,
    serves_repo: bool,
    port: u16,
    ostree_url: Option<String>,
    url_is_ours: bool,
}

/// The event sources of a watch.
struct Events {
    qmp: mpsc::UnboundedReceiver<QmpEvent>,
    lines: mpsc::UnboundedReceiver<(&'static str, Line)>,
    access: mpsc::UnboundedReceiver<Access>,
}

struct Watched {
    first_output: Option<Duration>,
    objects_fetched: usize,
    /// Time from the guest's poweroff (SHUTDOWN) to QEMU's exit being seen.
    exit_wait: Duration,
}

/// Why the watch loop stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    /// QEMU exited, with this status.
    Exited(std::process::ExitStatus),
    /// A fatal line was seen (and its grace time is over).
    Fatal,
    /// QMP reported a write error on the target disk.
    HostIoError,
    /// No log line, disk write or HTTP request for the inactivity timeout.
    Inactive,
    /// The overall timeout ran out.
    OverallTimeout,
    /// Ctrl-C.
    Interrupted,
}

impl Stop {
    /// Whether the guest may have printed lines that are still on their way.
    fn drains(self) -> bool {
        matches!(self, Stop::Exited(_) | Stop::Fatal | Stop::HostIoError)
    }
}

/// A write error QEMU reported on the target disk.
#[derive(Debug, Clone, PartialEq, Eq)]
struct IoError {
    reason: String,
    nospace: bool,
}

/// Everything the watch observed: the verdict is a function of this and the [`Stop`].
#[derive(Debug)]
struct Observed {
    first_output: Option<Duration>,
    token_seen: bool,
    /// Fatal lines, in order.
    fatal: Vec<String>,
    /// QMP SHUTDOWN: when, and its reason (`guest-shutdown`, `host-signal`, ...).
    shutdown: Option<(Instant, String)>,
    io_error: Option<IoError>,
    ks_fetched: bool,
    repo_requests: usize,
    /// The first repository paths the server did not have.
    repo_404: Vec<String>,
    objects: HashSet<String>,
    phase: Phase,
    tail: Tail,
}

impl Default for Observed {
    fn default() -> Self {
        Observed {
            first_output: None,
            token_seen: false,
            fatal: Vec::new(),
            shutdown: None,
            io_error: None,
            ks_fetched: false,
            repo_requests: 0,
            repo_404: Vec::new(),
            objects: HashSet::new(),
            phase: Phase::Booting,
            tail: Tail::default(),
        }
    }
}

impl Observed {
    /// Records a console or log line; returns the phase it starts, if it starts one.
    fn line(&mut self, source: &str, line: &Line, token_line: &str) -> Option<Phase> {
        self.tail.push(source, &line.text);
        if source == "virtio" && line.text.contains(token_line) {
            self.token_seen = true;
        }
        if line.fatal.is_some() {
            self.fatal.push(line.text.clone());
        }
        self.advance(monitor::phase_of(&line.text)?)
    }

    /// Records an HTTP request of the guest; returns the kickstart phase when it starts it
    /// (pulling shows as object counts instead).
    fn access(&mut self, a: &Access) -> Option<Phase> {
        if a.path == "/ks.cfg" && a.status == 200 {
            self.ks_fetched = true;
            return self.advance(Phase::KickstartFetched);
        }
        let rest = a.path.strip_prefix("/repo/")?;
        self.repo_requests += 1;
        if a.status == 404 && self.repo_404.len() < 5 {
            self.repo_404.push(a.path.clone());
        }
        if rest.starts_with("objects/") && a.status / 100 == 2 {
            self.objects.insert(rest.to_string());
            self.advance(Phase::Pulling);
        }
        None
    }

    fn advance(&mut self, phase: Phase) -> Option<Phase> {
        (phase > self.phase).then(|| {
            self.phase = phase;
            phase
        })
    }
}

/// How an install ended.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Verdict {
    Installed,
    Interrupted,
    /// QMP reported a write error on the target disk.
    HostIoError(IoError),
    /// The installer printed fatal lines.
    Fatal,
    /// Nothing happened for the inactivity timeout (or the overall one ran out).
    Hang {
        overall: bool,
    },
    /// The VM ended without the success token (after a guest poweroff or not).
    NoToken {
        powered_off: bool,
    },
    /// The token came, but QEMU ended without the guest powering off.
    NoPoweroff,
}

/// The verdict on what the watch observed: a success needs the token on the virtio log port
/// and a guest poweroff, and no fatal line or host I/O error.
fn judge(stop: Stop, seen: &Observed) -> Verdict {
    match stop {
        Stop::Interrupted => return Verdict::Interrupted,
        Stop::Inactive => return Verdict::Hang { overall: false },
        Stop::OverallTimeout => return Verdict::Hang { overall: true },
        Stop::Exited(_) | Stop::Fatal | Stop::HostIoError => {}
    }
    if let Some(e) = &seen.io_error {
        return Verdict::HostIoError(e.clone());
    }
    if !seen.fatal.is_empty() {
        return Verdict::Fatal;
    }
    let powered_off = match &seen.shutdown {
        Some((_, reason)) => reason.starts_with("guest"),
        None => matches!(stop, Stop::Exited(status) if status.success()),
    };
    if !seen.token_seen {
        return Verdict::NoToken { powered_off };
    }
    if !powered_off {
        return Verdict::NoPoweroff;
    }
    Verdict::Installed
}

impl Watch<'_> {
    /// Watches the install until QEMU exits (or it fails), then judges it.
    async fn run(
        &self,
        qemu: &mut QemuProcess,
        qmp: &Qmp,
        mut events: Events,
        progress: &mut Progress,
        spawned: Instant,
    ) -> Result<Watched> {
        let (stop, mut seen) = self
            .observe(qemu, qmp, &mut events, progress, spawned)
            .await?;
        let exit_seen = Instant::now();
        if stop.drains() {
            self.drain(&mut events.lines, &mut seen).await;
        }
        let verdict = judge(stop, &seen);
        match verdict {
            Verdict::Installed => Ok(Watched {
                first_output: seen.first_output,
                objects_fetched: seen.objects.len(),
                exit_wait: seen
                    .shutdown
                    .map(|(t, _)| exit_seen.saturating_duration_since(t))
                    .unwrap_or_default(),
            }),
            Verdict::Interrupted => bail!("{}", self.failure_message(&verdict, stop, &seen)),
            Verdict::Hang { .. } => {
                let what = self.failure_message(&verdict, stop, &seen);
                Err(self.hang(qmp, &seen, &what).await)
            }
            _ => {
                self.save_tail(&seen.tail);
                Err(anyhow::anyhow!(self.failure_message(&verdict, stop, &seen)))
            }
        }
    }

    /// The event loop: console and log lines, the guest's HTTP requests, QMP events, and
    /// the timers, until QEMU exits or something ends the install.
    async fn observe(
        &self,
        qemu: &mut QemuProcess,
        qmp: &Qmp,
        events: &mut Events,
        progress: &mut Progress,
        spawned: Instant,
    ) -> Result<(Stop, Observed)> {
        let deadline = tokio::time::Instant::from_std(spawned + self.timeout);
        let mut seen = Observed::default();
        let mut last_activity = Instant::now();
        let mut last_disk = 0u64;
        let mut access_log = std::fs::File::create(self.logs.join("http-access.log"))?;
        let mut fatal_deadline: Option<tokio::time::Instant> = None;
        let mut tick = tokio::time::interval(TICK);
        let mut lines_open = true;
        let ctrl_c = tokio::signal::ctrl_c();
        tokio::pin!(ctrl_c);

        let stop = loop {
            tokio::select! {
                status = qemu.wait() => break Stop::Exited(status?),
                line = events.lines.recv(), if lines_open => match line {
                    None => lines_open = false,
                    Some((source, line)) => {
                        last_activity = Instant::now();
                        seen.first_output.get_or_insert_with(|| spawned.elapsed());
                        if let Some(phase) = seen.line(source, &line, &self.token_line) {
                            progress.phase(phase, "");
                        }
                        if line.fatal.is_some() {
                            fatal_deadline.get_or_insert_with(|| tokio::time::Instant::now() + FATAL_GRACE);
                        }
                    }
                },
                Some(a) = events.access.recv() => {
                    last_activity = Instant::now();
                    let _ = writeln!(
                        access_log,
                        "+{:.3}s {} {} {}",
                        a.at.saturating_duration_since(spawned).as_secs_f64(),
                        a.method,
                        a.path,
                        a.status
                    );
                    let objects_before = seen.objects.len();
                    if let Some(phase) = seen.access(&a) {
                        progress.phase(phase, "");
                    }
                    if seen.objects.len() != objects_before {
                        progress.objects(seen.objects.len(), self.objects_total);
                    }
                },
                Some(ev) = events.qmp.recv() => match ev.name.as_str() {
                    "SHUTDOWN" => {
                        let reason = ev.data.get("reason").and_then(|r| r.as_str()).unwrap_or("").to_string();
                        seen.shutdown = Some((Instant::now(), reason));
                        progress.phase(Phase::PoweringOff, "");
                    }
                    "BLOCK_IO_ERROR" => {
                        let reason = ev.data.get("reason").and_then(|r| r.as_str()).unwrap_or("I/O error").to_string();
                        let nospace = ev.data.get("nospace").and_then(|v| v.as_bool()).unwrap_or(false);
                        seen.io_error = Some(IoError { reason, nospace });
                        break Stop::HostIoError;
                    }
                    _ => {}
                },
                _ = tick.tick() => {
                    if let Ok(n) = qmp.disk_activity("target").await
                        && n != last_disk
                    {
                        last_disk = n;
                        last_activity = Instant::now();
                    }
                    if last_activity.elapsed() > self.inactivity {
                        break Stop::Inactive;
                    }
                },
                _ = tokio::time::sleep_until(deadline) => break Stop::OverallTimeout,
                _ = sleep_until_opt(fatal_deadline) => break Stop::Fatal,
                _ = &mut ctrl_c => break Stop::Interrupted,
            }
        };
        Ok((stop, seen))
    }

    /// Reads what the guest printed before it went away (the token may be in flight).
    async fn drain(
        &self,
        lines: &mut mpsc::UnboundedReceiver<(&'static str, Line)>,
        seen: &mut Observed,
    ) {
        let until = tokio::time::Instant::now() + DRAIN_TIME;
        while let Ok(Some((source, line))) = tokio::time::timeout_at(until, lines.recv()).await {
            seen.line(source, &line, &self.token_line);
        }
    }

    /// What a verdict says (the error of a failed install). Pure, like [`judge`]; a hang's
    /// error gets a screendump and the saved tail around it ([`Watch::hang`]).
    fn failure_message(&self, verdict: &Verdict, stop: Stop, seen: &Observed) -> String {
        let logs_note = format!("logs: {}", self.logs.display());
        let hint = self
            .hints
            .never_fetched(seen.ks_fetched, seen.repo_requests);
        match verdict {
            Verdict::HostIoError(e) if e.nospace || e.reason.contains("No space") => format!(
                "the host disk is full: writing {} failed ({}); free space in {} and retry\n{logs_note}",
                partial_path(self.output).display(),
                e.reason,
                self.output
                    .parent()
                    .map(|p| p.display().to_string())
                    .unwrap_or_default()
            ),
            Verdict::HostIoError(e) => format!(
                "writing the target disk failed on the host: {}\n{logs_note}",
                e.reason
            ),
            Verdict::Fatal => {
                let shown: Vec<String> = seen
                    .fatal
                    .iter()
                    .take(20)
                    .map(|l| format!("  {l}"))
                    .collect();
                let missing = if seen.repo_404.is_empty() {
                    String::new()
                } else {
                    format!(
                        "\nthe guest asked for paths the served repository does not have: {}",
                        seen.repo_404.join(", ")
                    )
                };
                format!(
                    "the installer reported a fatal error:\n{}{hint}{missing}\n{logs_note}",
                    shown.join("\n"),
                )
            }
            Verdict::NoToken { powered_off } => format!(
                "no success signal: the installer VM {} without sending the per-run success token \
                 (the kickstart's %post --nochroot never ran or could not write to the virtio log port){hint}\n\
                 last log lines:\n{}{logs_note}",
                if *powered_off {
                    "powered off"
                } else {
                    "went away"
                },
                seen.tail.last(15)
            ),
            Verdict::NoPoweroff => {
                let exit_status = match stop {
                    Stop::Exited(status) => Some(status),
                    _ => None,
                };
                format!(
                    "the installer sent its success token but QEMU ended without a guest poweroff ({:?}, {:?})\n{logs_note}",
                    exit_status,
                    seen.shutdown.as_ref().map(|s| &s.1)
                )
            }
            Verdict::Hang { overall: true } => format!(
                "the install did not finish within {} s (overall timeout){hint}",
                self.timeout.as_secs()
            ),
            Verdict::Hang { overall: false } => format!(
                "no log output, disk or network activity for {} s (inactivity timeout){hint}",
                self.inactivity.as_secs()
            ),
            Verdict::Interrupted => format!(
                "interrupted (Ctrl-C): QEMU stopped, {} not written",
                self.output.display()
            ),
            Verdict::Installed => "installed".to_string(),
        }
    }

    /// A hang: screendump and the last 50 lines, both named in the error.
    async fn hang(&self, qmp: &Qmp, seen: &Observed, what: &str) -> anyhow::Error {
        let shot = match qmp.screendump(&self.logs.join("screendump.png")).await {
            Ok(p) => format!("screendump: {}", p.display()),
            Err(e) => format!("no screendump ({e:#})"),
        };
        let lines = self.save_tail(&seen.tail);
        anyhow::anyhow!(
            "{what}\n{shot}\nlast {} log lines: {}\n{}logs: {}",
            Tail::KEEP,
            lines.display(),
            seen.tail.last(10),
            self.logs.display()
        )
    }

    fn save_tail(&self, tail: &Tail) -> PathBuf {
        let p = self.logs.join("last-lines.log");
        let text: String = tail.lines().map(|l| format!("{l}\n")).collect();
        let _ = std::fs::write(&p, text);
        p
    }
}

impl Hints {
    /// Why nothing happened, from the access log.
    fn never_fetched(&self, ks_fetched: bool, repo_requests: usize) -> String {
        if self.ks_over_http && !ks_fetched {
            return format!(
                "\nthe guest never fetched the kickstart (http://{HOST_ALIAS}:{}/ks.cfg): the installer did not \
                 get that far, has no network (QEMU user networking), or ignores inst.ks=",
                self.port
            );
        }
        if self.serves_repo && repo_requests == 0 {
            return format!(
                "\nthe guest {} but never fetched the repository: ostreesetup --url is {}{}",
                if self.ks_over_http {
                    "fetched the kickstart"
                } else {
                    "booted"
                },
                self.ostree_url.as_deref().unwrap_or("missing"),
                if self.url_is_ours {
                    ""
                } else {
                    " (it must be http://10.0.2.2/<path> to reach the served repository)"
                }
            );
        }
        String::new()
    }
}

async fn sleep_until_opt(t: Option<tokio::time::Instant>) {
    match t {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

/// Checks the repository and counts its objects (the progress total).
fn check_repo(repo: &Path, ostree_ref: Option<&str>) -> Result<usize> {
    if !repo.join("config").is_file() || !repo.join("objects").is_dir() {
        bail!(
            "--repo {}: not an ostree repository (no config or objects/); compose one first",
            repo.display()
        );
    }
    if let Some(r) = ostree_ref
        && !repo.join("refs/heads").join(r).is_file()
    {
        bail!(
            "--repo {}: has no ref {r} (see `ostree refs --repo={}`)",
            repo.display(),
            repo.display()
        );
    }
    let mut n = 0;
    for e in walkdir::WalkDir::new(repo.join("objects"))
        .min_depth(2)
        .max_depth(2)
    {
        let e = e?;
        let name = e.file_name().to_string_lossy();
        if [".commit", ".dirtree", ".dirmeta", ".filez", ".file"]
            .iter()
            .any(|s| name.ends_with(s))
        {
            n += 1;
        }
    }
    Ok(n)
}

fn check_free_space(dir: &Path) -> Result<()> {
    if let Ok(st) = rustix::fs::statvfs(dir) {
        let free = st.f_bavail * st.f_frsize;
        if free < 256 << 20 {
            bail!(
                "the host disk is full: only {} MiB free in {}; the installed disk needs at least a few hundred MiB",
                free >> 20,
                dir.display()
            );
        }
    }
    Ok(())
}

/// An empty qcow2 of `size` bytes for the installer to write.
fn create_disk(path: &Path, size: u64) -> Result<()> {
    std::process::Command::new("qemu-img")
        .args(["create", "-q", "-f", "qcow2"])
        .arg(path)
        .arg(size.to_string())
        .run_checked()?;
    Ok(())
}

fn partial_path(output: &Path) -> PathBuf {
    let mut s = output.as_os_str().to_owned();
    s.push(".partial");
    PathBuf::from(s)
}

/// Removes the half-written disk unless the install succeeded.
struct PartialDisk(Option<PathBuf>);
impl Drop for PartialDisk {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            let _ = std::fs::remove_file(p);
        }
    }
}

fn write_file(path: &Path, data: &[u8]) -> Result<()> {
    std::fs::write(path, data).with_context(|| format!("writing {}", path.display()))
}

pub(crate) fn random_token() -> Result<String> {
    let mut b = [0u8; 16];
    std::io::Read::read_exact(&mut std::fs::File::open("/dev/urandom")?, &mut b)?;
    Ok(hex::encode(b))
}

/// Install's use of the shared progress reporter: its phases (a repeated phase without new
/// detail is not shown again) and the objects the guest has pulled.
pub struct Progress {
    reporter: Reporter,
    task: Task,
    last_phase: Option<Phase>,
}

impl Progress {
    fn new(reporter: Reporter) -> Self {
        // The object count is not known until the guest starts pulling: a spinner until then.
        let task = reporter.task("install", 0, Unit::Items("objects"));
        Progress {
            reporter,
            task,
            last_phase: None,
        }
    }

    fn phase(&mut self, p: Phase, detail: &str) {
        if self.last_phase == Some(p) && detail.is_empty() {
            return;
        }
        self.last_phase = Some(p);
        if detail.is_empty() {
            self.task.phase(p.label());
        } else {
            self.task.phase(&format!("{}: {detail}", p.label()));
        }
    }

    fn objects(&mut self, n: usize, total: usize) {
        if self.last_phase != Some(Phase::Pulling) {
            self.last_phase = Some(Phase::Pulling);
            self.task.phase(Phase::Pulling.label());
        }
        self.task.set_total(total as u64);
        self.task.set_position(n as u64);
    }

    fn notice(&mut self, msg: &str) {
        self.reporter.say(&format!("install: {msg}"));
    }

    fn finish(&mut self, msg: &str) {
        self.task.finish_with(msg);
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::process::ExitStatusExt as _;
    use std::process::ExitStatus;

    use super::*;

    const TOKEN_LINE: &str = "ATOMIC-FACTORY-INSTALL-OK abc";

    fn exited(code: i32) -> Stop {
        Stop::Exited(ExitStatus::from_raw(code << 8))
    }

    /// What a good install shows: the token on the virtio port, then a guest poweroff.
    fn good() -> Observed {
        let mut seen = Observed::default();
        seen.line("virtio", &line(TOKEN_LINE), TOKEN_LINE);
        seen.shutdown = Some((Instant::now(), "guest-shutdown".into()));
        seen
    }

    fn line(text: &str) -> Line {
        Line {
            text: text.to_string(),
            fatal: FatalPatterns::installer().find(text),
        }
    }

    #[test]
    fn token_and_guest_poweroff_is_success() {
        assert_eq!(judge(exited(0), &good()), Verdict::Installed);
        // Without a SHUTDOWN event, QEMU's clean exit stands for the guest's poweroff.
        let mut seen = good();
        seen.shutdown = None;
        assert_eq!(judge(exited(0), &seen), Verdict::Installed);
    }

    #[test]
    fn each_fatal_pattern_fails_even_with_the_token() {
        for text in [
            "Traceback (most recent call last):",
            "STANDIN-INSTALL-FAILED: command failed (exit 1): ostree pull",
            "[  3.1] Kernel panic - not syncing: VFS",
            "Process 9 (anaconda) of user 0 dumped core.",
            "packaging: base repo (http://x/) not valid",
            "12:00:01,000 CRIT anaconda: boom",
            "storage configuration failed: no disks",
        ] {
            let mut seen = good();
            seen.line("serial", &line(text), TOKEN_LINE);
            assert_eq!(seen.fatal, [text], "{text}");
            assert_eq!(judge(Stop::Fatal, &seen), Verdict::Fatal, "{text}");
            assert_eq!(judge(exited(0), &seen), Verdict::Fatal, "{text}");
        }
    }

    #[test]
    fn harmless_lines_do_not_fail() {
        let mut seen = good();
        for text in [
            "Call Trace: IGNORED",
            "CRIT systemd-coredump: x",
            "[FAILED] Failed to start foo.service",
        ] {
            seen.line("serial", &line(text), TOKEN_LINE);
        }
        assert_eq!(judge(exited(0), &seen), Verdict::Installed);
    }

    #[test]
    fn the_token_counts_only_on_the_virtio_port() {
        let mut seen = Observed::default();
        seen.line("serial", &line(TOKEN_LINE), TOKEN_LINE);
        seen.shutdown = Some((Instant::now(), "guest-shutdown".into()));
        assert_eq!(
            judge(exited(0), &seen),
            Verdict::NoToken { powered_off: true }
        );
    }

    #[test]
    fn an_early_qemu_exit_without_token_went_away() {
        let seen = Observed::default();
        assert_eq!(
            judge(exited(1), &seen),
            Verdict::NoToken { powered_off: false }
        );
        let seen = Observed {
            shutdown: Some((Instant::now(), "host-signal".into())),
            ..Observed::default()
        };
        assert_eq!(
            judge(exited(0), &seen),
            Verdict::NoToken { powered_off: false }
        );
    }

    #[test]
    fn the_token_without_a_guest_poweroff_fails() {
        let mut seen = good();
        seen.shutdown = Some((Instant::now(), "host-qmp-quit".into()));
        assert_eq!(judge(exited(0), &seen), Verdict::NoPoweroff);
        let mut seen = good();
        seen.shutdown = None;
        assert_eq!(judge(exited(1), &seen), Verdict::NoPoweroff);
    }

    #[test]
    fn hangs_and_interruptions_win_over_what_was_seen() {
        let seen = good();
        assert_eq!(
            judge(Stop::Inactive, &seen),
            Verdict::Hang { overall: false }
        );
        assert_eq!(
            judge(Stop::OverallTimeout, &seen),
            Verdict::Hang { overall: true }
        );
        assert_eq!(judge(Stop::Interrupted, &seen), Verdict::Interrupted);
    }

    #[test]
    fn a_host_io_error_comes_before_fatal_lines() {
        let mut seen = good();
        seen.line("serial", &line("Traceback (x"), TOKEN_LINE);
        let full = IoError {
            reason: "No space left on device".into(),
            nospace: true,
        };
        seen.io_error = Some(full.clone());
        assert_eq!(judge(Stop::HostIoError, &seen), Verdict::HostIoError(full));
    }

    #[test]
    fn requests_and_lines_move_the_phase_forward_only() {
        let access = |path: &str, status| Access {
            method: "GET".into(),
            path: path.into(),
            status,
            at: std::time::Instant::now(),
        };
        let mut seen = Observed::default();
        assert_eq!(seen.access(&access("/ks.cfg", 404)), None);
        assert!(!seen.ks_fetched);
        assert_eq!(
            seen.access(&access("/ks.cfg", 200)),
            Some(Phase::KickstartFetched)
        );
        assert_eq!(seen.access(&access("/repo/config", 200)), None);
        seen.access(&access("/repo/objects/ab/cd.commit", 200));
        seen.access(&access("/repo/objects/ab/cd.commit", 200));
        seen.access(&access("/repo/objects/ef/gh.dirtree", 404));
        assert_eq!(seen.objects.len(), 1);
        assert_eq!(seen.repo_requests, 4);
        assert_eq!(seen.repo_404, ["/repo/objects/ef/gh.dirtree"]);
        assert_eq!(seen.phase, Phase::Pulling);
        assert_eq!(
            seen.line("virtio", &line("standin: phase: deploying"), TOKEN_LINE),
            Some(Phase::Deploying)
        );
        assert_eq!(
            seen.line("virtio", &line("standin: phase: pulling x"), TOKEN_LINE),
            None
        );
    }

    fn watch<'a>(logs: &'a Path, output: &'a Path, ks_over_http: bool) -> Watch<'a> {
        Watch {
            logs,
            output,
            token_line: TOKEN_LINE.into(),
            timeout: Duration::from_secs(60),
            inactivity: Duration::from_secs(10),
            objects_total: 3,
            hints: Hints {
                ks_over_http,
                serves_repo: true,
                port: 4242,
                ostree_url: Some("https://example.org/repo".into()),
                url_is_ours: false,
            },
        }
    }

    #[test]
    fn messages_say_why_and_what_never_happened() {
        let (logs, output) = (Path::new("/l"), Path::new("/o/disk.qcow2"));
        let w = watch(logs, output, true);
        let seen = Observed::default();
        let m = w.failure_message(&Verdict::Hang { overall: false }, Stop::Inactive, &seen);
        assert!(m.contains("for 10 s (inactivity timeout)"), "{m}");
        assert!(
            m.contains("never fetched the kickstart (http://10.0.2.2:4242/ks.cfg)"),
            "{m}"
        );

        let w = watch(logs, output, false);
        let m = w.failure_message(&Verdict::NoToken { powered_off: true }, exited(0), &seen);
        assert!(m.contains("the installer VM powered off without"), "{m}");
        assert!(
            m.contains("booted but never fetched the repository: ostreesetup --url is https://example.org/repo (it must be"),
            "{m}"
        );

        let mut seen = good();
        seen.line("serial", &line("Traceback (x"), TOKEN_LINE);
        seen.ks_fetched = true;
        seen.repo_requests = 1;
        seen.repo_404.push("/repo/refs/heads/x".into());
        let m = w.failure_message(&Verdict::Fatal, Stop::Fatal, &seen);
        assert!(m.contains("fatal error:\n  Traceback (x"), "{m}");
        assert!(m.contains("does not have: /repo/refs/heads/x"), "{m}");
        assert!(m.ends_with("logs: /l"), "{m}");

        let full = IoError {
            reason: "No space left on device".into(),
            nospace: true,
        };
        let m = w.failure_message(&Verdict::HostIoError(full), Stop::HostIoError, &seen);
        assert!(
            m.starts_with("the host disk is full: writing /o/disk.qcow2.partial failed"),
            "{m}"
        );
    }
}
