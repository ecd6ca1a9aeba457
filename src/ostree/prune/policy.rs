//! Per-ref retention policies, as fedora-ostree-pruner applies them: every ref must have one
//! (`keep: all | time:90d | depth:5 | delete`) and every policy must name an existing ref,
//! or nothing is pruned.
//!
//! ```yaml
//! refs:
//!   fedora/x86_64/atomic-host: { keep: time:90d }
//!   fedora/x86_64/testing:     { keep: depth:5 }
//!   fedora/x86_64/rawhide-old: { keep: delete }
//!   fedora/x86_64/stable:      { keep: all }
//! ```

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context as _, Result, bail};
use serde::Deserialize;

use super::{PruneOptions, Retain};
use crate::ostree::Repo;

/// What to keep of one ref's history.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Keep {
    /// The whole history.
    All,
    /// Commits younger than this many seconds (the ref's own commit always).
    Time(u64),
    /// The ref's commit and this many parents (`depth:0`: only the latest).
    Depth(u32),
    /// Delete the ref, and with it whatever only it reached.
    Delete,
}

impl std::str::FromStr for Keep {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Keep> {
        let s = s.trim();
        let bad = || {
            anyhow::anyhow!(
                "invalid keep policy '{s}': use all, delete, depth:N or time:N[d|h|w] \
                 (N days when no unit is given, as fedora-ostree-pruner's time:N)"
            )
        };
        match s {
            "all" => return Ok(Keep::All),
            "delete" => return Ok(Keep::Delete),
            _ => {}
        }
        if let Some(n) = s.strip_prefix("depth:") {
            return n.trim().parse().map(Keep::Depth).map_err(|_| bad());
        }
        if let Some(t) = s.strip_prefix("time:") {
            let t = t.trim();
            let (num, unit) = match t.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
                Some((i, _)) => (&t[..i], &t[i..]),
                None => (t, "d"),
            };
            let n: u64 = num.parse().map_err(|_| bad())?;
            let secs = match unit {
                "d" => 86_400,
                "h" => 3_600,
                "w" => 7 * 86_400,
                _ => return Err(bad()),
            };
            return Ok(Keep::Time(n * secs));
        }
        Err(bad())
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RefPolicyFile {
    keep: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyFile {
    refs: BTreeMap<String, RefPolicyFile>,
}

/// A parsed policy: ref name → what to keep.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Policy {
    /// What to keep, per ref name.
    pub refs: BTreeMap<String, Keep>,
}

impl Policy {
    /// Reads and parses a policy file; errors name the file.
    pub fn load(path: &Path) -> Result<Policy> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading prune policy {}", path.display()))?;
        Policy::parse(&text).with_context(|| format!("prune policy {}", path.display()))
    }

    /// Parses policy YAML; unknown keys and bad `keep` values are errors.
    pub fn parse(text: &str) -> Result<Policy> {
        let f: PolicyFile = serde_saphyr::from_str(text).map_err(|e| anyhow::anyhow!("{e}"))?;
        let refs = f
            .refs
            .into_iter()
            .map(|(r, p)| {
                let k = p.keep.parse().with_context(|| format!("refs.{r}.keep"))?;
                Ok((r, k))
            })
            .collect::<Result<_>>()?;
        Ok(Policy { refs })
    }

    /// The prune options that apply this policy to `repo` at time `now`, refusing when a ref
    /// has no policy or a policy names a ref that does not exist.
    pub fn to_options(&self, repo: &Repo, now: u64) -> Result<PruneOptions> {
        let refs = repo.list_refs()?;
        let missing: Vec<&str> = self
            .refs
            .keys()
            .filter(|r| !refs.iter().any(|(n, _)| n == *r))
            .map(|s| s.as_str())
            .collect();
        if !missing.is_empty() {
            bail!(
                "the prune policy names refs that are not in {}: {}; fix the policy \
                 (nothing was deleted)",
                repo.path().display(),
                missing.join(", ")
            );
        }
        let uncovered: Vec<&str> = refs
            .iter()
            .filter(|(n, _)| !self.refs.contains_key(n))
            .map(|(n, _)| n.as_str())
            .collect();
        if !uncovered.is_empty() {
            bail!(
                "refs without a prune policy in {}: {}; give each one `keep: all` at least \
                 (nothing was deleted)",
                repo.path().display(),
                uncovered.join(", ")
            );
        }
        let mut opts = PruneOptions {
            refs_only: true,
            ..Default::default()
        };
        for (r, k) in &self.refs {
            match k {
                Keep::All => opts.retain.push((r.clone(), Retain::Depth(-1))),
                Keep::Depth(d) => opts.retain.push((r.clone(), Retain::Depth(i64::from(*d)))),
                Keep::Time(secs) => opts
                    .retain
                    .push((r.clone(), Retain::YoungerThan(now.saturating_sub(*secs)))),
                Keep::Delete => opts.delete_refs.push(r.clone()),
            }
        }
        Ok(opts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keep_values() {
        assert_eq!("all".parse::<Keep>().unwrap(), Keep::All);
        assert_eq!("delete".parse::<Keep>().unwrap(), Keep::Delete);
        assert_eq!("depth:5".parse::<Keep>().unwrap(), Keep::Depth(5));
        assert_eq!("time:90d".parse::<Keep>().unwrap(), Keep::Time(90 * 86_400));
        assert_eq!("time:90".parse::<Keep>().unwrap(), Keep::Time(90 * 86_400));
        assert_eq!("time:12h".parse::<Keep>().unwrap(), Keep::Time(12 * 3_600));
        for bad in ["", "depth:", "depth:-1", "time:3y", "forever"] {
            assert!(bad.parse::<Keep>().is_err(), "{bad}");
        }
    }

    #[test]
    fn parses_yaml_and_rejects_unknown_keys() {
        let p = Policy::parse("refs:\n  a/b: { keep: depth:1 }\n  c: { keep: all }\n").unwrap();
        assert_eq!(p.refs["a/b"], Keep::Depth(1));
        assert!(Policy::parse("refs:\n  a: { kepe: all }\n").is_err());
        assert!(Policy::parse("refs:\n  a: { keep: sometimes }\n").is_err());
    }
}
