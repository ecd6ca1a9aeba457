//! Command-line arguments for `mirror scan`, `crawl`, `metalink` and `serve`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use anyhow::{Result, bail};
use clap::{Args, Subcommand};

use super::catalog::{Catalog, LookupError, PathTarget};
use super::config::MIRRORS_YAML_HELP;
use super::crawl::{self, CrawlOptions};
use super::scan::{self, ScanOptions};
use super::selection::{self, Client};
use super::server::{self, ServeOptions};
use super::{metalink, mirrorlist};

/// The `mirror` subcommands.
#[derive(Debug, Subcommand)]
pub enum MirrorCommand {
    /// Walk a master tree and record every ostree and yum repository in it
    Scan(ScanArgs),
    /// Fetch each mirror's copy of every summary/repomd.xml and record which are up to date
    Crawl(CrawlArgs),
    /// Print the Metalink 3.0 document for one repository
    Metalink(MetalinkArgs),
    /// Serve /metalink and /mirrorlist like MirrorManager's mirrorlist-server
    Serve(ServeArgs),
}

/// Arguments of `mirror scan`.
#[derive(Debug, Args)]
#[command(after_help = "\
An ostree repository is a folder with `summary` and `objects/`; a yum repository
one with `repodata/repomd.xml`. Names follow MirrorManager: ostree repositories
are `atomic-<last folder>` with arch x86_64; yum names come from the path
(fedora-39, updates-released-f39, rawhide, ...). A rescan re-hashes only files
whose size or mtime changed. Without --alias the previous aliases are kept.

Examples:
  atomic-factory mirror scan /srv/pub -o state.json
  atomic-factory mirror scan /srv/pub -o state.json --alias fedora-atomic-21=atomic-21
  atomic-factory mirror scan /srv/pub -o state.json --ostree-prefix fedora-atomic")]
pub struct ScanArgs {
    /// The master tree to walk
    pub root: PathBuf,
    /// Where to write the state (read first, if present, to skip unchanged files)
    #[arg(short, long)]
    pub output: PathBuf,
    /// Name ostree repositories `<PREFIX>-<last folder>`
    #[arg(long, default_value = "atomic")]
    pub ostree_prefix: String,
    /// The arch of ostree repositories (MirrorManager hardcodes x86_64)
    #[arg(long, default_value = "x86_64")]
    pub ostree_arch: String,
    /// Also answer `repo=FROM` with repository TO (repeatable)
    #[arg(long, value_name = "FROM=TO", value_parser = scan::parse_alias)]
    pub alias: Vec<(String, String)>,
}

fn crawl_help() -> String {
    format!(
        "Each mirror's copy is fetched over http with a timeout and hashed; it is up to date when \
         its sha256 equals the master's. Results go into the state file.\n\n{MIRRORS_YAML_HELP}\n\n\
         Examples:\n  atomic-factory mirror crawl --mirrors mirrors.yaml --state state.json\n  \
         atomic-factory mirror crawl --mirrors mirrors.yaml --state state.json --jobs 64 --timeout 5"
    )
}

/// Arguments of `mirror crawl`.
#[derive(Debug, Args)]
#[command(after_help = crawl_help())]
pub struct CrawlArgs {
    /// The mirrors file (format below)
    #[arg(long)]
    pub mirrors: PathBuf,
    /// The state written by `mirror scan`; crawl results are added to it
    #[arg(long)]
    pub state: PathBuf,
    /// Requests in flight at once
    #[arg(long, default_value_t = 16)]
    pub jobs: usize,
    /// Seconds per request before the mirror counts as failed
    #[arg(long, default_value_t = 10.0)]
    pub timeout: f64,
}

fn metalink_help() -> String {
    format!(
        "Prints MirrorManager's Metalink 3.0 document minus what the ostree client rejects \
         (no mm0:private; size and hashes before resources). Only up-to-date mirrors are listed.\n\n\
         {MIRRORS_YAML_HELP}\n\nExamples:\n  atomic-factory mirror metalink --mirrors mirrors.yaml \
         --state state.json --repo atomic-21 --arch x86_64\n  atomic-factory mirror metalink \
         --mirrors mirrors.yaml --state state.json --path pub/atomic/21/summary --country DE"
    )
}

/// Arguments of `mirror metalink`.
#[derive(Debug, Args)]
#[command(after_help = metalink_help())]
pub struct MetalinkArgs {
    /// The mirrors file (format below)
    #[arg(long)]
    pub mirrors: PathBuf,
    /// The state written by `mirror scan` and `mirror crawl`
    #[arg(long)]
    pub state: PathBuf,
    /// Repository name (with --arch)
    #[arg(long, requires = "arch", conflicts_with = "path")]
    pub repo: Option<String>,
    /// Repository arch (with --repo)
    #[arg(long, requires = "repo")]
    pub arch: Option<String>,
    /// A repository folder or its summary/repomd.xml, relative to the master tree
    #[arg(long, required_unless_present = "repo")]
    pub path: Option<String>,
    /// Pick mirrors for this country (ISO code or `global`)
    #[arg(long)]
    pub country: Option<String>,
}

fn serve_help() -> String {
    format!(
        "Endpoints (any path ending in /metalink or /mirrorlist):\n  \
         /metalink?repo=R&arch=A   Metalink 3.0 for an ostree summary or a yum repomd.xml\n  \
         /metalink?path=P          the same for a folder or file path\n  \
         /mirrorlist?repo=R&arch=A MirrorManager's text list (also path=)\n\
         Parameters: country=CC[,CC|global], netblock=0, protocol=https,http, ip=ADDR, redirect, \
         time. The client address is ip=, else the last X-Forwarded-For entry (as MirrorManager; \
         put the server behind your proxy), else the peer. Mirrors: netblock match, then country, continent, then global; up to date only; \
         ordered by preference. Both files are re-read when they change.\n\n{MIRRORS_YAML_HELP}\n\n\
         Examples:\n  atomic-factory mirror serve --mirrors mirrors.yaml --state state.json \
         --listen 127.0.0.1:3000\n  ostree remote add --no-gpg-verify \
         --set=metalink='http://127.0.0.1:3000/metalink?repo=atomic-21&arch=x86_64' os \
         http://127.0.0.1:9/unused"
    )
}

/// Arguments of `mirror serve`.
#[derive(Debug, Args)]
#[command(after_help = serve_help())]
pub struct ServeArgs {
    /// The mirrors file (format below)
    #[arg(long)]
    pub mirrors: PathBuf,
    /// The state written by `mirror scan` and `mirror crawl`
    #[arg(long)]
    pub state: PathBuf,
    /// Address to listen on (port 0 picks a free one; the bound address is printed)
    #[arg(long, default_value = "127.0.0.1:3000")]
    pub listen: SocketAddr,
    /// Seconds between checks of both files for changes
    #[arg(long, default_value_t = 1.0)]
    pub reload_interval: f64,
}

fn seconds(v: f64, what: &str) -> Result<Duration> {
    if !(v.is_finite() && v > 0.0 && v < 86400.0) {
        bail!("{what} must be a number of seconds between 0 and 86400, got {v}");
    }
    Ok(Duration::from_secs_f64(v))
}

/// Runs a `mirror` subcommand.
pub fn run(cmd: MirrorCommand) -> Result<()> {
    match cmd {
        MirrorCommand::Scan(a) => scan(a),
        MirrorCommand::Crawl(a) => crawl(a),
        MirrorCommand::Metalink(a) => metalink(a),
        MirrorCommand::Serve(a) => serve(a),
    }
}

fn scan(a: ScanArgs) -> Result<()> {
    let opts = ScanOptions {
        ostree_prefix: a.ostree_prefix,
        ostree_arch: a.ostree_arch,
        aliases: (!a.alias.is_empty()).then_some(a.alias),
    };
    let r = scan::scan_to_file(&a.root, &a.output, &opts)?;
    eprintln!(
        "found {} ostree and {} yum repositories; hashed {}, unchanged {}; wrote {}",
        r.ostree,
        r.yum,
        r.hashed,
        r.reused,
        a.output.display()
    );
    Ok(())
}

fn crawl(a: CrawlArgs) -> Result<()> {
    let opts = CrawlOptions {
        jobs: a.jobs,
        timeout: seconds(a.timeout, "--timeout")?,
    };
    let outcomes = crawl::crawl_to_file(&a.mirrors, &a.state, &opts)?;
    let fresh = outcomes.iter().filter(|o| o.up_to_date).count();
    for o in &outcomes {
        let status = match (&o.result.error, o.up_to_date) {
            (Some(e), _) => format!("error: {e}"),
            (None, true) => "up to date".into(),
            (None, false) => "stale".into(),
        };
        println!(
            "{}\t{}\t{status}",
            o.mirror,
            o.url.as_deref().unwrap_or(&o.file)
        );
    }
    eprintln!(
        "{fresh} of {} mirror copies up to date; wrote {}",
        outcomes.len(),
        a.state.display()
    );
    Ok(())
}

fn metalink(a: MetalinkArgs) -> Result<()> {
    let cat = Catalog::load(&a.mirrors, &a.state)?;
    let i = if let Some(p) = &a.path {
        let clean: Vec<&str> = p.split('/').filter(|c| !c.is_empty()).collect();
        match cat.lookup_path(&clean.join("/")) {
            Some(PathTarget::Dir(i) | PathTarget::File(i)) => i,
            None => bail!("no repository at path {p:?} in {}", a.state.display()),
        }
    } else {
        let (repo, arch) = (a.repo.unwrap_or_default(), a.arch.unwrap_or_default());
        match cat.lookup_repo(&repo, &arch) {
            Ok((i, _, _)) => i,
            Err(LookupError::Unknown { repo, arch }) => {
                bail!(
                    "{}",
                    mirrorlist::unknown_repo(&cat, &repo, &arch).trim_end()
                )
            }
        }
    };
    let client = Client {
        countries: a.country.map(|c| {
            c.split(',')
                .map(|x| {
                    if x.eq_ignore_ascii_case("global") {
                        "GLOBAL".to_string()
                    } else {
                        x.to_ascii_uppercase()
                    }
                })
                .collect()
        }),
        use_netblocks: false,
        ..Client::default()
    };
    let sel = selection::select(&cat, i, &client);
    if sel.hosts.is_empty() {
        tracing::warn!("no up-to-date mirror for this repository; run `mirror crawl`");
    }
    print!(
        "{}",
        metalink::render(&cat, cat.repo(i), &sel.hosts, None, SystemTime::now())
    );
    Ok(())
}

fn serve(a: ServeArgs) -> Result<()> {
    server::serve(ServeOptions {
        mirrors: a.mirrors,
        state: a.state,
        listen: a.listen,
        reload_interval: seconds(a.reload_interval, "--reload-interval")?,
    })
}
