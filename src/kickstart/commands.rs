//! Which kickstart commands each pykickstart syntax version knows.
//!
//! The table in `commands_table.rs` is generated from pykickstart's handlers by
//! `gen-commands.py` (committed next to it), so lint needs no Python at run time.

use anyhow::{Result, bail};

use super::commands_table::{DEVEL, VERSIONS};

/// What a syntax version says about a command name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommandStatus {
    /// A current command of the version.
    Active,
    /// Accepted with a warning by pykickstart; ksvalidator counts it as an error.
    Deprecated,
    /// A parse error ("has been removed").
    Removed,
    /// Not a command in any form this version knows.
    Unknown,
}

/// A validated syntax version, e.g. `F41`; `DEVEL` resolves to the newest Fedora.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SyntaxVersion {
    /// The name as ksvalidator takes it (`F41`, `RHEL9`, `DEVEL`).
    pub name: &'static str,
    /// The concrete version `DEVEL` stands for, or `name` itself.
    pub resolved: &'static str,
    entry: usize,
}

impl SyntaxVersion {
    /// Parse a version name, case-insensitively (`f41`, `F41`, `devel`, `rhel9`).
    pub fn parse(name: &str) -> Result<Self> {
        let upper = name.trim().to_ascii_uppercase();
        let (shown, wanted) = if upper == "DEVEL" {
            ("DEVEL", DEVEL)
        } else {
            ("", upper.as_str())
        };
        match VERSIONS.iter().position(|v| v.0 == wanted) {
            Some(entry) => {
                let resolved = VERSIONS[entry].0;
                Ok(SyntaxVersion {
                    name: if shown.is_empty() { resolved } else { shown },
                    resolved,
                    entry,
                })
            }
            None => bail!(
                "unknown kickstart syntax version {name:?}; known: DEVEL, {}",
                VERSIONS.iter().map(|v| v.0).collect::<Vec<_>>().join(", ")
            ),
        }
    }

    /// The status of `cmd` in this version.
    pub fn status(&self, cmd: &str) -> CommandStatus {
        let (_, active, deprecated, removed) = VERSIONS[self.entry];
        let has = |list: &str| list.split(' ').any(|c| c == cmd);
        if has(active) {
            CommandStatus::Active
        } else if has(deprecated) {
            CommandStatus::Deprecated
        } else if has(removed) {
            CommandStatus::Removed
        } else {
            CommandStatus::Unknown
        }
    }

    /// The active command closest to a misspelt `cmd`, if one is close enough to suggest.
    pub fn suggest(&self, cmd: &str) -> Option<&'static str> {
        let active = VERSIONS[self.entry].1;
        // Counted in chars, as the distance is: the table is ASCII, a typo may not be.
        let len = cmd.chars().count();
        active
            .split(' ')
            // The distance is at least the difference in length: skip the table's rows
            // that cannot be within 2 (most of them, and all of them for a long word).
            .filter(|c| c.len().abs_diff(len) <= 2)
            .map(|c| (strsim::levenshtein(c, cmd), c))
            .filter(|(d, c)| *d <= 2 && *d < c.len())
            .min()
            .map(|(_, c)| c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_resolve() {
        let v = SyntaxVersion::parse("f41").unwrap();
        assert_eq!((v.name, v.resolved), ("F41", "F41"));
        let d = SyntaxVersion::parse("DEVEL").unwrap();
        assert_eq!(d.name, "DEVEL");
        assert!(d.resolved.starts_with('F'));
        let err = SyntaxVersion::parse("F3").unwrap_err().to_string();
        assert!(err.contains("unknown kickstart syntax version") && err.contains("F41"));
    }

    #[test]
    fn statuses_follow_pykickstart() {
        let f41 = SyntaxVersion::parse("F41").unwrap();
        assert_eq!(f41.status("ostreesetup"), CommandStatus::Active);
        assert_eq!(f41.status("poweroff"), CommandStatus::Active);
        // authconfig was removed in F35 (pykickstart commands/authconfig.py F35_Authconfig).
        assert_eq!(f41.status("auth"), CommandStatus::Removed);
        assert_eq!(f41.status("ostreesetupp"), CommandStatus::Unknown);
        assert_eq!(f41.suggest("ostreesetupp"), Some("ostreesetup"));
        assert_eq!(f41.suggest("frobnicate"), None);
        // Two 3-byte characters: 8 bytes, 4 chars, 2 edits from `part`.
        assert_eq!(f41.suggest("pa€€"), Some("part"));
        // In F23 `auth` was still a working command.
        let f23 = SyntaxVersion::parse("F23").unwrap();
        assert_eq!(f23.status("auth"), CommandStatus::Active);
    }
}
