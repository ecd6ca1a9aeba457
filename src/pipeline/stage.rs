//! The pipeline's stages, in order; `--from`/`--until` take their names.

use std::fmt;

/// One stage of `build`; the order of the variants is the pipeline order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, clap::ValueEnum)]
pub enum Stage {
    /// RPMs to an ostree commit.
    Compose,
    /// Static deltas, pruning, the summary and its signature.
    Summary,
    /// Render and lint the kickstart.
    Kickstart,
    /// Boot the installer in QEMU against the repository.
    Install,
    /// Sparsify, compress and write the output formats.
    Postprocess,
    /// Boot the image and judge its console.
    BootTest,
    /// Upgrade the previous image to the new commit in the guest.
    UpgradeTest,
}

impl Stage {
    /// Every stage, in pipeline order.
    pub const ALL: [Stage; 7] = [
        Stage::Compose,
        Stage::Summary,
        Stage::Kickstart,
        Stage::Install,
        Stage::Postprocess,
        Stage::BootTest,
        Stage::UpgradeTest,
    ];

    /// The name in messages, logs/ and the stage cache (`boot-test`).
    pub fn name(self) -> &'static str {
        match self {
            Stage::Compose => "compose",
            Stage::Summary => "summary",
            Stage::Kickstart => "kickstart",
            Stage::Install => "install",
            Stage::Postprocess => "postprocess",
            Stage::BootTest => "boot-test",
            Stage::UpgradeTest => "upgrade-test",
        }
    }
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::Stage;
    use clap::ValueEnum;

    #[test]
    fn names_are_the_command_line_values_in_pipeline_order() {
        for (i, stage) in Stage::ALL.iter().enumerate() {
            let value = stage.to_possible_value().unwrap();
            assert_eq!(value.get_name(), stage.name());
            assert_eq!(Stage::from_str(stage.name(), false), Ok(*stage));
            assert_eq!(Stage::value_variants()[i], *stage);
        }
    }
}
