//! Command-line arguments for `kickstart render` and `kickstart lint`.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};

use super::{ksvalidator, render};
use crate::pipeline::definition::ImageDefinition;

/// The `kickstart` subcommands.
#[derive(Debug, Subcommand)]
pub enum KickstartCommand {
    /// Render an image's kickstart template
    Render(RenderArgs),
    /// Check a kickstart for mistakes that would only show up in the installer
    Lint(LintArgs),
}

/// Render the kickstart template named by an image definition.
///
/// Variables: the definition's kickstart.vars, image.name, ostree.osname/remote, ostree.ref
/// (from the treefile when not set), plus whatever --set gives (ostree.url, server.address:
/// the install stage sets them when it runs). Partials come from the template's directory
/// and the project's templates/.
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  atomic-factory kickstart render kickstarts/demo/image.yaml \\
      --set ostree.url=http://10.0.2.2:8000/repo -o ks.cfg
  atomic-factory kickstart render kickstarts/fedora-atomic-cloud/image.yaml \\
      --set ostree.url=http://10.0.2.2:8000/repo --set server.address=10.0.2.2:8000 --flatten")]
pub struct RenderArgs {
    /// The image definition whose kickstart to render
    pub image: PathBuf,
    /// Write the kickstart here (atomically) instead of to standard output
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Set a variable, dotted keys for nested ones (repeatable); wins over everything
    #[arg(long = "set", value_name = "KEY=VALUE", value_parser = parse_key_value)]
    pub set: Vec<(String, String)>,
    /// Inline %include files, like ksflatten
    #[arg(long)]
    pub flatten: bool,
}

/// Check a kickstart before an installer VM boots with it.
///
/// Our rules (exactly one complete ostreesetup with an http/https/file URL, poweroff or
/// shutdown last, %include files present, %end everywhere, a bootloader, no plaintext
/// rootpw, commands known to the syntax version), plus pykickstart's ksvalidator when it is
/// installed (vm/prepare puts it in .venv). Exits non-zero when there are errors.
#[derive(Debug, Args)]
// `--version` is the syntax version here, like ksvalidator's, not the program's version.
#[command(
    disable_version_flag = true,
    after_help = "Examples:
  atomic-factory kickstart lint ks.cfg --version F41
  atomic-factory kickstart lint ks.cfg --no-ksvalidator"
)]
pub struct LintArgs {
    /// The kickstart file to check
    pub kickstart: PathBuf,
    /// pykickstart syntax version (F19..F46, RHEL7..RHEL11, DEVEL)
    #[arg(long, default_value = "DEVEL")]
    pub version: String,
    /// The ksvalidator to run (default: $ATOMIC_FACTORY_KSVALIDATOR, .venv/bin, $PATH)
    #[arg(long, value_name = "PATH")]
    pub ksvalidator: Option<PathBuf>,
    /// Only our own rules, even when ksvalidator is installed
    #[arg(long, conflicts_with = "ksvalidator")]
    pub no_ksvalidator: bool,
}

fn parse_key_value(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("expected KEY=VALUE, got {s:?}")),
    }
}

/// Runs a `kickstart` subcommand.
pub fn run(cmd: KickstartCommand) -> Result<()> {
    match cmd {
        KickstartCommand::Render(args) => render_cmd(args),
        KickstartCommand::Lint(args) => lint_cmd(args),
    }
}

fn render_cmd(args: RenderArgs) -> Result<()> {
    let def = ImageDefinition::load(&args.image)?;
    let pipeline = render::PipelineVars {
        ostree_ref: def.treefile_ref()?,
        ..Default::default()
    };
    let mut text = render::render(&def.render_input(), &pipeline, &args.set)
        .with_context(|| format!("rendering the kickstart of {}", args.image.display()))?;
    if args.flatten {
        let template = def.resolve(&def.kickstart.template);
        text = render::flatten(
            &text,
            &template,
            &render::template_dirs(&def.render_input()),
        )?;
    }
    match &args.output {
        Some(out) => crate::fsutil::write_atomic(out, text.as_bytes())?,
        None => print!("{text}"),
    }
    Ok(())
}

fn lint_cmd(args: LintArgs) -> Result<()> {
    let validator = if args.no_ksvalidator {
        None
    } else {
        args.ksvalidator.clone().or_else(ksvalidator::find)
    };
    let report = super::lint_file(&args.kickstart, &args.version, validator.as_deref())?;
    for f in &report.findings {
        println!("{f}");
    }
    let errors = report.errors().count();
    let warnings = report.warnings().count();
    let validated = match &report.ksvalidator {
        Some(p) => format!("our rules and {} ({})", p.display(), report.version),
        None => format!(
            "our rules only (ksvalidator not found: run vm/prepare or pass --ksvalidator) for {}",
            report.version
        ),
    };
    eprintln!(
        "{}: {errors} error(s), {warnings} warning(s); checked with {validated}",
        args.kickstart.display()
    );
    if errors > 0 {
        bail!("{}: {errors} kickstart error(s)", args.kickstart.display());
    }
    Ok(())
}
