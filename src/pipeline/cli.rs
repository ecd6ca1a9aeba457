//! Command-line arguments for `build`.

use std::path::PathBuf;

use clap::Args;

use super::stage::Stage;

/// Run the whole pipeline: compose → summary → kickstart → install → postprocess → boot-test
/// → upgrade-test.
///
/// Outputs go to `build/<name>/`: the repository, ks.cfg, the installed disk, the image,
/// CHECKSUM, manifest.json and `logs/<stage>/`. Each stage records the hash of its inputs and
/// is skipped when nothing it reads has changed; an interrupted build resumes at the stage
/// that did not finish. With no IMAGE, builds the embedded demo image (the stand-in
/// distribution that `vm/prepare` builds).
#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  atomic-factory build                                   # the embedded demo\n  atomic-factory build kickstarts/fedora-atomic-cloud/image.yaml\n  atomic-factory build --from install                    # redo install and what follows\n  atomic-factory build --until kickstart                 # compose and render only\n  atomic-factory build --json > events.jsonl             # one JSON event per line for CI"
)]
pub struct BuildArgs {
    /// The image definition; the embedded demo image when absent
    pub image: Option<PathBuf>,
    /// Output directory [default: build/<name>]
    #[arg(short, long, value_name = "DIR")]
    pub output: Option<PathBuf>,
    /// Start at this stage (earlier stages must have finished before)
    #[arg(long, value_name = "STAGE", value_enum)]
    pub from: Option<Stage>,
    /// Stop after this stage
    #[arg(long, value_name = "STAGE", value_enum)]
    pub until: Option<Stage>,
    /// Run every stage even when its inputs are unchanged
    #[arg(long)]
    pub force: bool,
    /// Write one JSON event per line on stdout (stage started/skipped/finished/failed)
    #[arg(long)]
    pub json: bool,
}

/// Runs `build` (the embedded demo image when no definition is given).
pub fn build(args: BuildArgs) -> anyhow::Result<()> {
    let definition = match args.image {
        Some(path) => path,
        None => super::demo::materialize(std::path::Path::new("build/demo/definition"))?,
    };
    super::build::build(&super::build::BuildOptions {
        definition,
        out_dir: args.output,
        from: args.from,
        until: args.until,
        force: args.force,
        json: args.json,
    })?;
    Ok(())
}
