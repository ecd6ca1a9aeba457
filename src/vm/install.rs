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
use tokio::io::AsyncReadExt;
use tokio::net::UnixListener;
use tokio::sync::mpsc;

use super::accel::{self, Accel, AccelChoice};
use crate::command::CommandExt as _;
use super::kickstart_prep::{self, HOST_ALIAS};
use super::media::{self, InstallerMedia};
use super::monitor::{self, Phase, Tail};
use super::qemu::{Boot, QemuConfig};
use super::qmp::Qmp;
use super::server::{Access, GuestServer};

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

#[derive(Debug, Clone)]
pub enum MediaSource {
    Iso(PathBuf),
    Kernel {
        kernel: PathBuf,
        initrd: PathBuf,
        stage2: Option<String>,
    },
}

/// Everything `install` needs; the CLI and the pipeline fill it.
#[derive(Debug, Clone)]
pub struct InstallConfig {
    pub kickstart: PathBuf,
    /// The ostree repository to serve at `http://10.0.2.2:PORT/repo/`.
    pub repo: Option<PathBuf>,
    /// The ref the kickstart installs (checked to exist in `repo`).
    pub ostree_ref: Option<String>,
    pub media: MediaSource,
    pub disk_size: u64,
    pub memory_mib: u64,
    pub cpus: u32,
    pub accel: AccelChoice,
    /// Overall limit; None = 20 min under KVM, 3x that under TCG.
    pub timeout: Option<Duration>,
    /// No log output, disk I/O or HTTP request for this long = hang; None = 5 min (KVM), 10 (TCG).
    pub inactivity_timeout: Option<Duration>,
    pub output: PathBuf,
    pub ks_via: KsVia,
    /// Port on 127.0.0.1 for the guest server (0 = any free port).
    pub port: u16,
    /// Extra kernel arguments for the installer.
    pub extra_kargs: Vec<String>,
    pub qemu: PathBuf,
}

impl InstallConfig {
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
        }
    }

    /// Where the logs of an install to `output` go: `<output>.logs/` next to it.
    pub fn logs_dir(&self) -> PathBuf {
        let mut s = self.output.clone().into_os_string();
        s.push(".logs");
        PathBuf::from(s)
    }
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct InstallOutcome {
    pub disk: PathBuf,
    pub logs_dir: PathBuf,
    pub accel: Accel,
    /// The one notice given when `auto` fell back to TCG.
    pub accel_notice: Option<String>,
    pub elapsed: Duration,
    /// Our set-up time before QEMU started (excluding the KVM probe).
    pub setup: Duration,
    /// QEMU start to the first byte the guest printed.
    pub first_output: Duration,
    /// Guest poweroff (QEMU exit) to our return, disk renamed and server stopped.
    pub teardown: Duration,
    pub objects_fetched: usize,
    pub objects_total: usize,
}

/// Runs an install to completion on the process's runtime (from synchronous code).
pub fn run(cfg: &InstallConfig) -> Result<InstallOutcome> {
    crate::runtime::block_on(run_async(cfg))?
}

pub async fn run_async(cfg: &InstallConfig) -> Result<InstallOutcome> {
    let started = Instant::now();
    let mut progress = Progress::new();
    progress.phase(Phase::Starting, "checking inputs");

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
    let sockets = tempfile::Builder::new().prefix("af-vm-").tempdir()?;

    // The server port first: the kickstart names it.
    let listener = GuestServer::bind(cfg.port).await?;
    let port = listener.local_addr()?.port();
    let token = random_token()?;
    let prepared = kickstart_prep::prepare(&cfg.kickstart, &ks_text, port, &token)?;
    if cfg.repo.is_some() && !prepared.url_is_ours {
        progress.notice(&format!(
            "warning: {}: ostreesetup --url is {} which is not the served repository; use --url=http://{HOST_ALIAS}/repo",
            cfg.kickstart.display(),
            prepared.ostree_url.as_deref().unwrap_or("missing")
        ));
    }
    write_file(&logs.join("ks.cfg"), prepared.text.as_bytes())?;

    let media = match &cfg.media {
        MediaSource::Iso(iso) => {
            let dir = logs.join("media");
            std::fs::create_dir_all(&dir)?;
            media::from_iso(iso, &dir)?
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
            InstallerMedia {
                kernel: kernel.clone(),
                initrd: initrd.clone(),
                iso: None,
                stage2: stage2.clone(),
            }
        }
    };
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

    let probe_start = Instant::now();
    let decision = accel::choose(cfg.accel, &cfg.qemu, sockets.path()).await?;
    let probe_time = probe_start.elapsed();
    if let Some(n) = &decision.notice {
        progress.notice(n);
    }
    let tcg = decision.accel == Accel::Tcg;
    let timeout = cfg
        .timeout
        .unwrap_or(Duration::from_secs(if tcg { 3600 } else { 1200 }));
    let inactivity = cfg
        .inactivity_timeout
        .unwrap_or(Duration::from_secs(if tcg { 600 } else { 300 }));

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

    let qcfg = QemuConfig {
        binary: cfg.qemu.clone(),
        accel: decision.accel,
        memory_mib: cfg.memory_mib,
        cpus: cfg.cpus,
        disk: partial.clone(),
        cdrom: media.iso.clone(),
        boot: Boot::Kernel {
            kernel: media.kernel.clone(),
            initrd,
            append: append.join(" "),
        },
        serial_socket: sockets.path().join("serial"),
        virtio_log_socket: Some(sockets.path().join("virtio-log")),
        qmp_socket: sockets.path().join("qmp"),
        network: true,
    };
    write_file(
        &logs.join("qemu-cmdline"),
        format!("{}\n", qcfg.display()).as_bytes(),
    )?;
    let serial_l = UnixListener::bind(&qcfg.serial_socket)?;
    let vlog_l = UnixListener::bind(sockets.path().join("virtio-log"))?;
    let (line_tx, line_rx) = mpsc::unbounded_channel();
    let setup = started.elapsed().saturating_sub(probe_time);
    let mut qemu = qcfg.spawn(&logs.join("qemu.log"))?;
    let spawned = Instant::now();
    progress.phase(
        Phase::Booting,
        &format!(
            "QEMU started ({}, {} MiB, {} cpus)",
            decision.accel.qemu_name(),
            cfg.memory_mib,
            cfg.cpus
        ),
    );

    // QEMU connects both chardevs while starting up; a QEMU that dies first is reported.
    let accept = async {
        let (s, _) = serial_l.accept().await?;
        let (v, _) = vlog_l.accept().await?;
        anyhow::Ok((s, v))
    };
    let (serial, vlog) = tokio::select! {
        r = tokio::time::timeout(Duration::from_secs(30), accept) => match r {
            Ok(r) => r?,
            Err(_) => bail!("QEMU did not connect its serial console within 30 s; see {}", logs.join("qemu.log").display()),
        },
        status = qemu.wait() => {
            let err = std::fs::read_to_string(logs.join("qemu.log")).unwrap_or_default();
            bail!("QEMU exited at start ({}): {}", status?, err.trim());
        }
    };
    spawn_reader(serial, "serial", logs.join("serial.log"), line_tx.clone())?;
    spawn_reader(vlog, "virtio", logs.join("virtio.log"), line_tx)?;
    let (qmp, qmp_events) = Qmp::connect(&qcfg.qmp_socket, Duration::from_secs(10)).await?;

    let watch = Watch {
        cfg,
        logs: &logs,
        token_line: kickstart_prep::token_line(&token),
        timeout,
        inactivity,
        objects_total,
        port,
        prepared_url: prepared.ostree_url.clone(),
        url_is_ours: prepared.url_is_ours,
    };
    let result = watch
        .run(
            &mut qemu,
            &qmp,
            qmp_events,
            line_rx,
            access_rx,
            &mut progress,
            spawned,
        )
        .await;
    let exit_at = Instant::now();
    qemu.kill().await;
    drop(qmp);
    server.stop().await;
    let watched = result?;

    // Success: only now does the disk get its real name.
    std::fs::File::open(&partial)
        .and_then(|f| f.sync_all())
        .ok();
    std::fs::rename(&partial, &cfg.output)
        .with_context(|| format!("renaming {} to {}", partial.display(), cfg.output.display()))?;
    if let Ok(d) = std::fs::File::open(&out_dir) {
        let _ = d.sync_all();
    }
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
        objects_total,
    };
    progress.finish(&format!(
        "installed {} in {:.1} s ({} of {} objects fetched); logs in {}",
        cfg.output.display(),
        outcome.elapsed.as_secs_f64(),
        outcome.objects_fetched,
        objects_total,
        logs.display()
    ));
    Ok(outcome)
}

struct Watch<'a> {
    cfg: &'a InstallConfig,
    logs: &'a Path,
    token_line: String,
    timeout: Duration,
    inactivity: Duration,
    objects_total: usize,
    port: u16,
    prepared_url: Option<String>,
    url_is_ours: bool,
}

struct Watched {
    first_output: Option<Duration>,
    objects_fetched: usize,
    /// Time from the guest's poweroff (SHUTDOWN) to QEMU's exit being seen.
    exit_wait: Duration,
}

impl Watch<'_> {
    #[allow(clippy::too_many_arguments)]
    async fn run(
        &self,
        qemu: &mut super::qemu::QemuProcess,
        qmp: &Qmp,
        mut events: mpsc::UnboundedReceiver<super::qmp::QmpEvent>,
        mut lines: mpsc::UnboundedReceiver<(&'static str, String)>,
        mut access: mpsc::UnboundedReceiver<Access>,
        progress: &mut Progress,
        spawned: Instant,
    ) -> Result<Watched> {
        let deadline = tokio::time::Instant::from_std(spawned + self.timeout);
        let mut last_activity = Instant::now();
        let mut last_disk = 0u64;
        let mut tail = Tail::default();
        let mut access_log = std::fs::File::create(self.logs.join("http-access.log"))?;
        let mut first_output = None;
        let mut token_seen = false;
        let mut shutdown: Option<(Instant, String)> = None;
        let mut io_error: Option<String> = None;
        let mut fatal: Vec<String> = Vec::new();
        let mut fatal_deadline: Option<tokio::time::Instant> = None;
        let mut ks_fetched = false;
        let mut repo_requests = 0usize;
        let mut repo_404: Vec<String> = Vec::new();
        let mut objects: HashSet<String> = HashSet::new();
        let mut tick = tokio::time::interval(Duration::from_secs(2));
        let mut lines_open = true;
        let mut phase = Phase::Booting;
        let ctrl_c = tokio::signal::ctrl_c();
        tokio::pin!(ctrl_c);

        let exit_status = loop {
            tokio::select! {
                status = qemu.wait() => break Some(status?),
                line = lines.recv(), if lines_open => match line {
                    None => lines_open = false,
                    Some((src, line)) => {
                        last_activity = Instant::now();
                        first_output.get_or_insert_with(|| spawned.elapsed());
                        tail.push(src, &line);
                        if src == "virtio" && line.contains(&self.token_line) {
                            token_seen = true;
                        }
                        if monitor::is_fatal(&line) {
                            fatal.push(line.clone());
                            fatal_deadline.get_or_insert_with(|| tokio::time::Instant::now() + Duration::from_millis(1500));
                        }
                        if let Some(p) = monitor::phase_of(&line)
                            && p > phase
                        {
                            phase = p;
                            progress.phase(p, "");
                        }
                    }
                },
                Some(a) = access.recv() => {
                    last_activity = Instant::now();
                    let _ = writeln!(
                        access_log,
                        "+{:.3}s {} {} {}",
                        a.at.saturating_duration_since(spawned).as_secs_f64(),
                        a.method,
                        a.path,
                        a.status
                    );
                    if a.path == "/ks.cfg" && a.status == 200 {
                        ks_fetched = true;
                        if phase < Phase::KickstartFetched {
                            phase = Phase::KickstartFetched;
                            progress.phase(phase, "");
                        }
                    } else if let Some(rest) = a.path.strip_prefix("/repo/") {
                        repo_requests += 1;
                        if a.status == 404 && repo_404.len() < 5 {
                            repo_404.push(a.path.clone());
                        }
                        if rest.starts_with("objects/") && a.status / 100 == 2 && objects.insert(rest.to_string()) {
                            if phase < Phase::Pulling {
                                phase = Phase::Pulling;
                            }
                            progress.objects(objects.len(), self.objects_total);
                        }
                    }
                },
                Some(ev) = events.recv() => match ev.name.as_str() {
                    "SHUTDOWN" => {
                        let reason = ev.data.get("reason").and_then(|r| r.as_str()).unwrap_or("").to_string();
                        shutdown = Some((Instant::now(), reason));
                        progress.phase(Phase::PoweringOff, "");
                    }
                    "BLOCK_IO_ERROR" => {
                        let reason = ev.data.get("reason").and_then(|r| r.as_str()).unwrap_or("I/O error").to_string();
                        let nospace = ev.data.get("nospace").and_then(|v| v.as_bool()).unwrap_or(false);
                        io_error = Some(if nospace || reason.contains("No space") {
                            format!(
                                "the host disk is full: writing {} failed ({reason}); free space in {} and retry",
                                partial_path(&self.cfg.output).display(),
                                self.cfg.output.parent().map(|p| p.display().to_string()).unwrap_or_default()
                            )
                        } else {
                            format!("writing the target disk failed on the host: {reason}")
                        });
                        break None;
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
                        let hint = self.never_fetched_hint(ks_fetched, repo_requests);
                        return Err(self.hang(qmp, &tail, &format!(
                            "no log output, disk or network activity for {} s (inactivity timeout){hint}",
                            self.inactivity.as_secs()
                        )).await);
                    }
                },
                _ = tokio::time::sleep_until(deadline) => {
                    let hint = self.never_fetched_hint(ks_fetched, repo_requests);
                    return Err(self.hang(qmp, &tail, &format!(
                        "the install did not finish within {} s (overall timeout){hint}", self.timeout.as_secs()
                    )).await);
                },
                _ = sleep_until_opt(fatal_deadline) => break None,
                _ = &mut ctrl_c => bail!("interrupted (Ctrl-C): QEMU stopped, {} not written", self.cfg.output.display()),
            }
        };
        // Drain what the guest printed before it went away (the token may be in flight).
        let exit_seen = Instant::now();
        let drain_until = tokio::time::Instant::now() + Duration::from_millis(500);
        while lines_open {
            match tokio::time::timeout_at(drain_until, lines.recv()).await {
                Ok(Some((src, line))) => {
                    tail.push(src, &line);
                    if src == "virtio" && line.contains(&self.token_line) {
                        token_seen = true;
                    }
                    if monitor::is_fatal(&line) {
                        fatal.push(line);
                    }
                }
                _ => lines_open = false,
            }
        }
        self.save_tail(&tail);
        let logs_note = format!("logs: {}", self.logs.display());
        if let Some(e) = io_error {
            bail!("{e}\n{logs_note}");
        }
        if !fatal.is_empty() {
            let shown: Vec<String> = fatal.iter().take(20).map(|l| format!("  {l}")).collect();
            let missing = if repo_404.is_empty() {
                String::new()
            } else {
                format!(
                    "\nthe guest asked for paths the served repository does not have: {}",
                    repo_404.join(", ")
                )
            };
            bail!(
                "the installer reported a fatal error:\n{}{}{missing}\n{logs_note}",
                shown.join("\n"),
                self.never_fetched_hint(ks_fetched, repo_requests),
            );
        }
        let guest_poweroff = matches!(&shutdown, Some((_, r)) if r.starts_with("guest"))
            || (shutdown.is_none() && exit_status.map(|s| s.success()).unwrap_or(false));
        if !token_seen {
            bail!(
                "no success signal: the installer VM {} without sending the per-run success token \
                 (the kickstart's %post --nochroot never ran or could not write to the virtio log port){}\n\
                 last log lines:\n{}{logs_note}",
                if guest_poweroff {
                    "powered off"
                } else {
                    "went away"
                },
                self.never_fetched_hint(ks_fetched, repo_requests),
                tail.last(15)
            );
        }
        if !guest_poweroff {
            bail!(
                "the installer sent its success token but QEMU ended without a guest poweroff ({:?}, {:?})\n{logs_note}",
                exit_status,
                shutdown.map(|s| s.1)
            );
        }
        let exit_wait = shutdown
            .map(|(t, _)| exit_seen.saturating_duration_since(t))
            .unwrap_or_default();
        Ok(Watched {
            first_output,
            objects_fetched: objects.len(),
            exit_wait,
        })
    }

    /// Why nothing happened, from the access log.
    fn never_fetched_hint(&self, ks_fetched: bool, repo_requests: usize) -> String {
        if self.cfg.ks_via == KsVia::Http && !ks_fetched {
            return format!(
                "\nthe guest never fetched the kickstart (http://{HOST_ALIAS}:{}/ks.cfg): the installer did not \
                 get that far, has no network (QEMU user networking), or ignores inst.ks=",
                self.port
            );
        }
        if self.cfg.repo.is_some() && repo_requests == 0 {
            return format!(
                "\nthe guest {} but never fetched the repository: ostreesetup --url is {}{}",
                if self.cfg.ks_via == KsVia::Http {
                    "fetched the kickstart"
                } else {
                    "booted"
                },
                self.prepared_url.as_deref().unwrap_or("missing"),
                if self.url_is_ours {
                    ""
                } else {
                    " (it must be http://10.0.2.2/<path> to reach the served repository)"
                }
            );
        }
        String::new()
    }

    /// A hang: screendump and the last 50 lines, both named in the error.
    async fn hang(&self, qmp: &Qmp, tail: &Tail, what: &str) -> anyhow::Error {
        let shot = match qmp.screendump(&self.logs.join("screendump.png")).await {
            Ok(p) => format!("screendump: {}", p.display()),
            Err(e) => format!("no screendump ({e:#})"),
        };
        let lines = self.save_tail(tail);
        anyhow::anyhow!(
            "{what}\n{shot}\nlast {} log lines: {}\n{}logs: {}",
            Tail::KEEP,
            lines.display(),
            tail.last(10),
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

async fn sleep_until_opt(t: Option<tokio::time::Instant>) {
    match t {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

/// Reads a chardev stream, keeps the raw bytes in `log`, and sends cleaned lines.
fn spawn_reader(
    mut stream: tokio::net::UnixStream,
    name: &'static str,
    log: PathBuf,
    tx: mpsc::UnboundedSender<(&'static str, String)>,
) -> Result<()> {
    let mut file =
        std::fs::File::create(&log).with_context(|| format!("creating {}", log.display()))?;
    tokio::spawn(async move {
        let mut buf = vec![0u8; 16384];
        let mut pending: Vec<u8> = Vec::new();
        loop {
            let n = match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            let _ = file.write_all(&buf[..n]);
            pending.extend_from_slice(&buf[..n]);
            while let Some(i) = pending.iter().position(|&b| b == b'\n') {
                let line = monitor::clean_line(&pending[..i]);
                pending.drain(..=i);
                if !line.trim().is_empty() {
                    let _ = tx.send((name, line));
                }
            }
        }
        if !pending.is_empty() {
            let _ = tx.send((name, monitor::clean_line(&pending)));
        }
        let _ = file.flush();
    });
    Ok(())
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

#[allow(unsafe_code, reason = "statvfs(2); std has no safe wrapper")]
fn check_free_space(dir: &Path) -> Result<()> {
    let c = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes())?;
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: c is a valid C string, st a valid out-pointer.
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } == 0 {
        let free = st.f_bavail as u64 * st.f_frsize as u64;
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

/// Phase and object progress: an indicatif bar on a terminal, plain lines otherwise.
pub struct Progress {
    bar: Option<indicatif::ProgressBar>,
    last_phase: Option<Phase>,
    last_objects_line: Option<Instant>,
}

impl Progress {
    fn new() -> Self {
        use std::io::IsTerminal;
        let bar = std::io::stderr().is_terminal().then(|| {
            let b = indicatif::ProgressBar::new_spinner();
            b.enable_steady_tick(Duration::from_millis(200));
            b
        });
        Progress {
            bar,
            last_phase: None,
            last_objects_line: None,
        }
    }

    fn phase(&mut self, p: Phase, detail: &str) {
        if self.last_phase == Some(p) && detail.is_empty() {
            return;
        }
        self.last_phase = Some(p);
        let msg = if detail.is_empty() {
            p.label().to_string()
        } else {
            format!("{}: {detail}", p.label())
        };
        match &self.bar {
            Some(b) => b.set_message(msg),
            None => eprintln!("install: {msg}"),
        }
    }

    fn objects(&mut self, n: usize, total: usize) {
        self.last_phase = Some(Phase::Pulling);
        let msg = format!("pulling objects {n}/{total}");
        match &self.bar {
            Some(b) => b.set_message(msg),
            None => {
                // Plain output: one line per second at most, and the last one.
                if n == total
                    || self
                        .last_objects_line
                        .is_none_or(|t| t.elapsed() > Duration::from_secs(1))
                {
                    self.last_objects_line = Some(Instant::now());
                    eprintln!("install: {msg}");
                }
            }
        }
    }

    fn notice(&mut self, msg: &str) {
        match &self.bar {
            Some(b) => b.println(format!("install: {msg}")),
            None => eprintln!("install: {msg}"),
        }
    }

    fn finish(&mut self, msg: &str) {
        match self.bar.take() {
            Some(b) => b.finish_with_message(msg.to_string()),
            None => eprintln!("install: {msg}"),
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        if let Some(b) = self.bar.take() {
            b.abandon();
        }
    }
}
