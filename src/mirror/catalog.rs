//! The served view: a state plus a mirrors file, indexed for lookups by `repo=`+`arch=` and by
//! `path=`, with each repository's up-to-date mirrors sorted once. Built on load and on reload,
//! then shared read-only between requests.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::Path;

use anyhow::Result;

use super::config::{self, Continent, MirrorsConfig};
use super::state::{self, Repo, State};

/// A state and a mirrors file, indexed for serving.
pub struct Catalog {
    /// What `scan` and `crawl` recorded.
    pub state: State,
    /// The mirrors file.
    pub config: MirrorsConfig,
    /// `name+arch` to repository index.
    by_key: HashMap<String, usize>,
    /// File path (`a/b/summary`) and folder path (`a/b`) to repository index.
    by_file: HashMap<String, usize>,
    by_dir: HashMap<String, usize>,
    /// Per repository: indices of up-to-date mirrors, by preference (higher first), then file order.
    pub up_to_date: Vec<Vec<usize>>,
    /// Every valid `(repo, arch)`, sorted, for error documents.
    pub valid_pairs: Vec<(String, String)>,
    /// Mirror netblocks, most specific first.
    pub mirror_netblocks: Vec<(ipnet::IpNet, usize)>,
    /// Client netblock to country, most specific first.
    country_netblocks: Vec<(ipnet::IpNet, String)>,
    /// Per mirror (in mirrors-file order): its continent, given or derived from its country.
    pub continents: Vec<Option<Continent>>,
}

/// What `path=` named.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathTarget {
    /// The repository folder: mirrorlists list folders, metalinks describe its summary/repomd.
    Dir(usize),
    /// The summary or repomd.xml itself.
    File(usize),
}

/// Why `repo=`+`arch=` found nothing.
#[derive(Debug, PartialEq, Eq)]
pub enum LookupError {
    /// No repository has this name and arch.
    Unknown {
        /// The `repo=` asked for (after redirects).
        repo: String,
        /// The `arch=` asked for (`source` for a source repository).
        arch: String,
    },
}

impl Catalog {
    /// Builds the indexes and sorts each repository's up-to-date mirrors.
    pub fn new(state: State, config: MirrorsConfig) -> Catalog {
        let mut by_key = HashMap::new();
        let mut by_file = HashMap::new();
        let mut by_dir = HashMap::new();
        let mut valid_pairs = Vec::new();
        for (i, r) in state.repos.iter().enumerate() {
            if let (Some(n), Some(a)) = (&r.name, &r.arch) {
                by_key.insert(format!("{n}+{a}"), i);
                valid_pairs.push((n.clone(), a.clone()));
            }
            by_file.insert(r.file_path(), i);
            by_dir.insert(r.path.clone(), i);
        }
        valid_pairs.sort();
        let mut order: Vec<usize> = (0..config.mirrors.len()).collect();
        // Stable sort: equal preferences keep the order of mirrors.yaml.
        order.sort_by_key(|&m| std::cmp::Reverse(config.mirrors[m].preference));
        let up_to_date = state
            .repos
            .iter()
            .map(|r| {
                order
                    .iter()
                    .copied()
                    .filter(|&m| {
                        let mc = &config.mirrors[m];
                        mc.always_up_to_date || state.is_up_to_date(&mc.name, r)
                    })
                    .collect()
            })
            .collect();
        let mut mirror_netblocks: Vec<(ipnet::IpNet, usize)> = order
            .iter()
            .flat_map(|&m| config.mirrors[m].netblocks.iter().map(move |n| (n.0, m)))
            .collect();
        mirror_netblocks.sort_by_key(|(n, _)| std::cmp::Reverse(n.prefix_len()));
        let mut country_netblocks: Vec<(ipnet::IpNet, String)> = config
            .netblocks
            .iter()
            .map(|n| (n.cidr.0, n.country.0.clone()))
            .collect();
        country_netblocks.sort_by_key(|(n, _)| std::cmp::Reverse(n.prefix_len()));
        let continents = config.mirrors.iter().map(|m| m.continent()).collect();
        Catalog {
            state,
            config,
            by_key,
            by_file,
            by_dir,
            up_to_date,
            valid_pairs,
            mirror_netblocks,
            country_netblocks,
            continents,
        }
    }

    /// Loads both files and builds the catalog.
    pub fn load(mirrors: &Path, state_path: &Path) -> Result<Catalog> {
        let config = config::load(mirrors)?;
        let state = state::load(state_path)?;
        Ok(Catalog::new(state, config))
    }

    /// Repository `i` of the state.
    pub fn repo(&self, i: usize) -> &Repo {
        &self.state.repos[i]
    }

    /// Resolves `repo=`+`arch=` as MirrorManager does: redirects first, and a `source` repo
    /// forces arch `source`. Returns the resolved name too, for the mirrorlist header.
    pub fn lookup_repo(
        &self,
        repo: &str,
        arch: &str,
    ) -> Result<(usize, String, String), LookupError> {
        let name = self.state.redirects.get(repo).map_or(repo, String::as_str);
        let arch = if name.contains("source") {
            "source"
        } else {
            arch
        };
        self.by_key
            .get(&format!("{name}+{arch}"))
            .map(|&i| (i, name.to_string(), arch.to_string()))
            .ok_or_else(|| LookupError::Unknown {
                repo: name.to_string(),
                arch: arch.to_string(),
            })
    }

    /// Resolves a cleaned `path=` (no leading/trailing `/`, no `//`, no `..`).
    pub fn lookup_path(&self, path: &str) -> Option<PathTarget> {
        if let Some(&i) = self.by_file.get(path) {
            return Some(PathTarget::File(i));
        }
        self.by_dir.get(path).map(|&i| PathTarget::Dir(i))
    }

    /// The client's country from the netblock table.
    pub fn country_of(&self, ip: IpAddr) -> Option<&str> {
        self.country_netblocks
            .iter()
            .find(|(n, _)| n.contains(&ip))
            .map(|(_, c)| c.as_str())
    }
}
