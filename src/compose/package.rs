//! The package model shared by sources, the resolver and tree assembly: what rpm-md
//! metadata (or an RPM header) says about a package, before its payload is read.

use std::cmp::Ordering;
use std::fmt;
use std::path::PathBuf;

use rpm_version::Evr;

/// A comparison in a dependency (`>=` and friends).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Op {
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `=`
    Eq,
    /// `>=`
    Ge,
    /// `>`
    Gt,
}

impl Op {
    /// rpm-md `flags` attribute (`EQ`, `LT`, ...).
    pub fn from_rpmmd(s: &str) -> Option<Op> {
        Some(match s {
            "LT" => Op::Lt,
            "LE" => Op::Le,
            "EQ" => Op::Eq,
            "GE" => Op::Ge,
            "GT" => Op::Gt,
            _ => return None,
        })
    }
    /// Rich-dependency / spec syntax (`>=` and friends).
    pub fn from_symbol(s: &str) -> Option<Op> {
        Some(match s {
            "<" => Op::Lt,
            "<=" => Op::Le,
            "=" | "==" => Op::Eq,
            ">=" => Op::Ge,
            ">" => Op::Gt,
            _ => return None,
        })
    }
    fn symbol(self) -> &'static str {
        match self {
            Op::Lt => "<",
            Op::Le => "<=",
            Op::Eq => "=",
            Op::Ge => ">=",
            Op::Gt => ">",
        }
    }
    fn allows(self, o: Ordering) -> bool {
        match self {
            Op::Lt => o == Ordering::Less,
            Op::Le => o != Ordering::Greater,
            Op::Eq => o == Ordering::Equal,
            Op::Ge => o != Ordering::Less,
            Op::Gt => o == Ordering::Greater,
        }
    }
    fn has_less(self) -> bool {
        matches!(self, Op::Lt | Op::Le)
    }
    fn has_greater(self) -> bool {
        matches!(self, Op::Gt | Op::Ge)
    }
    fn has_equal(self) -> bool {
        matches!(self, Op::Le | Op::Eq | Op::Ge)
    }
}

/// An epoch:version-release; empty epoch means 0, empty release means "any release".
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct EvrS {
    /// Empty means 0.
    pub epoch: String,
    /// The upstream version.
    pub version: String,
    /// Empty means any release (in a dependency).
    pub release: String,
}

impl EvrS {
    /// Parses `[E:]V[-R]`.
    pub fn parse(s: &str) -> EvrS {
        let (epoch, rest) = match s.split_once(':') {
            Some((e, r)) if e.chars().all(|c| c.is_ascii_digit()) => (e.to_string(), r),
            _ => (String::new(), s),
        };
        let (version, release) = match rest.rsplit_once('-') {
            Some((v, r)) => (v.to_string(), r.to_string()),
            None => (rest.to_string(), String::new()),
        };
        EvrS {
            epoch,
            version,
            release,
        }
    }

    /// rpm's comparison, ignoring the release when either side has none (as rpm does for
    /// `Requires: foo >= 2`).
    pub fn cmp_dep(&self, other: &EvrS) -> Ordering {
        let norm = |e: &str| {
            if e.is_empty() {
                "0".to_string()
            } else {
                e.to_string()
            }
        };
        let (r1, r2) = if self.release.is_empty() || other.release.is_empty() {
            ("", "")
        } else {
            (self.release.as_str(), other.release.as_str())
        };
        let a = Evr::new(norm(&self.epoch), self.version.clone(), r1.to_string());
        let b = Evr::new(norm(&other.epoch), other.version.clone(), r2.to_string());
        a.cmp(&b)
    }
}

impl fmt::Display for EvrS {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.epoch.is_empty() && self.epoch != "0" {
            write!(f, "{}:", self.epoch)?;
        }
        write!(f, "{}", self.version)?;
        if !self.release.is_empty() {
            write!(f, "-{}", self.release)?;
        }
        Ok(())
    }
}

/// A simple (non-rich) dependency: `name [op evr]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Dep {
    /// The capability: a package name, a virtual provide or a file path.
    pub name: String,
    /// The version range; None matches any version.
    pub constraint: Option<(Op, EvrS)>,
}

impl Dep {
    /// An unversioned dependency on `name`.
    pub fn new(name: &str) -> Dep {
        Dep {
            name: name.to_string(),
            constraint: None,
        }
    }

    /// Whether a provide `self` satisfies the requirement `req` (same name assumed): rpm's
    /// range-overlap rule; an unversioned side matches everything.
    pub fn provide_satisfies(&self, req: &Dep) -> bool {
        let (Some((pop, pevr)), Some((rop, revr))) = (&self.constraint, &req.constraint) else {
            return true;
        };
        let o = pevr.cmp_dep(revr);
        match o {
            Ordering::Less => pop.has_greater() || rop.has_less(),
            Ordering::Greater => pop.has_less() || rop.has_greater(),
            Ordering::Equal => {
                (pop.has_equal() && rop.has_equal())
                    || (pop.has_less() && rop.has_less())
                    || (pop.has_greater() && rop.has_greater())
            }
        }
    }

    /// Whether a package's own EVR matches this dep's range (for Obsoletes).
    pub fn evr_matches(&self, evr: &EvrS) -> bool {
        match &self.constraint {
            None => true,
            Some((op, want)) => op.allows(evr.cmp_dep(want)),
        }
    }
}

impl fmt::Display for Dep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.name)?;
        if let Some((op, evr)) = &self.constraint {
            write!(f, " {} {evr}", op.symbol())?;
        }
        Ok(())
    }
}

/// Everything known about one package before its payload is read.
#[derive(Debug, Clone)]
pub struct PkgInfo {
    /// The package name.
    pub name: String,
    /// Its epoch, version and release.
    pub evr: EvrS,
    /// The architecture (`x86_64`, `noarch`, ...).
    pub arch: String,
    /// The .rpm file on disk.
    pub path: PathBuf,
    /// The repo it came from (its id, or the directory for plain dirs).
    pub repo: String,
    /// Expected checksum from primary.xml (type, hex); None for plain directories.
    pub checksum: Option<(String, String)>,
    /// Identity for the input hash: primary.xml's checksum, or a header digest.
    pub pkgid: String,
    /// Capabilities it provides (versioned or not).
    pub provides: Vec<Dep>,
    /// Requirements as written (simple names or rich `(... )` expressions).
    pub requires: Vec<(String, Option<(Op, EvrS)>)>,
    /// Packages it cannot be installed with.
    pub conflicts: Vec<Dep>,
    /// Packages it replaces.
    pub obsoletes: Vec<Dep>,
    /// Every file path (for file provides).
    pub files: Vec<String>,
}

impl PkgInfo {
    /// `name-[epoch:]version-release.arch`, as rpm names a package.
    pub fn nevra(&self) -> String {
        format!("{}-{}.{}", self.name, self.evr, self.arch)
    }
    /// rpm's full EVR order (release included).
    pub fn cmp_evr(&self, other: &PkgInfo) -> Ordering {
        let norm = |e: &str| {
            if e.is_empty() {
                "0".to_string()
            } else {
                e.to_string()
            }
        };
        let a = Evr::new(
            norm(&self.evr.epoch),
            self.evr.version.clone(),
            self.evr.release.clone(),
        );
        let b = Evr::new(
            norm(&other.evr.epoch),
            other.evr.version.clone(),
            other.evr.release.clone(),
        );
        a.cmp(&b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dep(name: &str, op: &str, evr: &str) -> Dep {
        Dep {
            name: name.into(),
            constraint: Some((Op::from_symbol(op).unwrap(), EvrS::parse(evr))),
        }
    }

    #[test]
    fn evr_order_is_rpms() {
        let c = |a: &str, b: &str| EvrS::parse(a).cmp_dep(&EvrS::parse(b));
        assert_eq!(c("1.10-1", "1.9-1"), Ordering::Greater);
        assert_eq!(c("1:1.0-1", "2.0-1"), Ordering::Greater);
        assert_eq!(c("1.0~rc1-1", "1.0-1"), Ordering::Less);
        assert_eq!(c("1.0-2", "1.0"), Ordering::Equal);
    }

    #[test]
    fn ranges_overlap_like_rpm() {
        assert!(dep("b", "=", "2.0-1").provide_satisfies(&dep("b", ">=", "2")));
        assert!(!dep("b", "=", "1.0-1").provide_satisfies(&dep("b", ">=", "2")));
        assert!(dep("b", ">", "3").provide_satisfies(&dep("b", ">=", "2")));
        assert!(!dep("b", "<", "2").provide_satisfies(&dep("b", ">=", "2")));
        assert!(Dep::new("b").provide_satisfies(&dep("b", ">=", "2")));
    }
}
