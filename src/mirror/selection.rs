//! Which mirrors a client gets, and in what order: MirrorManager's netblock, country,
//! continent, then global steps, but with a stable order (preference, then mirrors.yaml order)
//! instead of a bandwidth-weighted shuffle, and only mirrors whose copy is up to date.

use std::net::IpAddr;

use super::catalog::Catalog;
use super::config::MirrorConfig;

/// What the request says about the client.
#[derive(Debug, Clone, Default)]
pub struct Client {
    /// `country=`: upper-case codes; `global` is kept as `GLOBAL`.
    pub countries: Option<Vec<String>>,
    /// The client address (`ip=`, else the last X-Forwarded-For entry, else the peer).
    pub ip: Option<IpAddr>,
    /// `netblock=0` turns netblock matching off.
    pub use_netblocks: bool,
    /// `protocol=`: lower-case schemes to keep.
    pub protocols: Option<Vec<String>>,
}

/// The chosen mirrors and the mirrorlist header fragments that explain the choice.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Selection {
    /// Indices into the mirrors file, in the order to list them.
    pub hosts: Vec<usize>,
    /// Header fragments naming the scopes used (`country = DE `, ...).
    pub header: String,
}

/// True when the mirror has a URL of a scheme the client accepts. Without `protocol=` this is
/// any URL a client can download from (rsync is never handed out alone).
pub fn has_usable_url(m: &MirrorConfig, protocols: Option<&[String]>) -> bool {
    m.urls.iter().any(|u| match protocols {
        Some(p) => p.contains(&u.scheme),
        None => u.scheme != "rsync",
    })
}

/// Picks the up-to-date mirrors of `repo` for `client`: its netblock, country or continent
/// first, padded with global mirrors below the configured minimum; only mirrors with a URL
/// the client can use.
pub fn select(cat: &Catalog, repo: usize, client: &Client) -> Selection {
    let candidates = &cat.up_to_date[repo];
    let mirrors = &cat.config.mirrors;
    let mut sel = Selection::default();
    let push = |sel: &mut Selection, m: usize| {
        if !sel.hosts.contains(&m) {
            sel.hosts.push(m);
        }
    };
    let public = || candidates.iter().copied().filter(|&m| !mirrors[m].private);
    // Adds the public mirrors that pass `keep`; names the scope in the header when that
    // added any.
    let add = |sel: &mut Selection, keep: &dyn Fn(usize) -> bool, scope: &str| {
        let before = sel.hosts.len();
        public().filter(|&m| keep(m)).for_each(|m| push(sel, m));
        if sel.hosts.len() > before {
            sel.header.push_str(scope);
        }
    };
    let continent_scope = |cont: &super::config::Continent| {
        format!("continent = {} ", String::from_utf8_lossy(&cont.0))
    };

    if client.countries.is_none()
        && client.use_netblocks
        && let Some(ip) = client.ip
    {
        let mut any = false;
        for &(net, m) in &cat.mirror_netblocks {
            if net.contains(&ip) && candidates.contains(&m) {
                push(&mut sel, m);
                any = true;
            }
        }
        if any {
            sel.header.push_str("Using preferred netblock ");
        }
    }

    let mut only_country = false;
    match &client.countries {
        Some(countries) if countries.iter().any(|c| c == "GLOBAL") => {
            public().for_each(|m| push(&mut sel, m));
            sel.header.push_str("country = global ");
            only_country = true;
        }
        Some(countries) => {
            for c in countries {
                let scope = format!("country = {c} ");
                add(&mut sel, &|m| mirrors[m].country.0 == *c, &scope);
            }
            if sel.hosts.is_empty() {
                for c in countries {
                    if let Some(cont) = super::config::continent_of(c) {
                        let scope = continent_scope(&cont);
                        add(&mut sel, &|m| cat.continents[m] == Some(cont), &scope);
                    }
                }
            }
            only_country = !sel.hosts.is_empty();
        }
        None => {
            if let Some(c) = client.ip.and_then(|ip| cat.country_of(ip)) {
                let scope = format!("country = {c} ");
                add(&mut sel, &|m| mirrors[m].country.0 == c, &scope);
                if let Some(cont) = super::config::continent_of(c) {
                    let scope = continent_scope(&cont);
                    add(&mut sel, &|m| cat.continents[m] == Some(cont), &scope);
                }
            }
        }
    }

    let usable = sel
        .hosts
        .iter()
        .filter(|&&m| has_usable_url(&mirrors[m], client.protocols.as_deref()))
        .count();
    if !only_country && usable < cat.config.minimum {
        add(&mut sel, &|_| true, "country = global ");
    }
    sel.hosts
        .retain(|&m| has_usable_url(&mirrors[m], client.protocols.as_deref()));
    sel
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mirror::config;
    use crate::mirror::state::{CrawlResult, FileDetail, Repo, RepoKind, State};

    fn catalog(minimum: usize) -> Catalog {
        let yaml = format!(
            "minimum: {minimum}
mirrors:
  - {{name: us1, urls: [http://us1/], country: US}}
  - {{name: de1, urls: [http://de1/], country: DE}}
  - {{name: fr1, urls: [http://fr1/, rsync://fr1/], country: FR, preference: 10}}
  - {{name: de2, urls: [https://de2/], country: DE, preference: 10}}
  - {{name: corp, urls: [http://corp/], country: US, private: true, netblocks: [10.1.0.0/16]}}
  - {{name: stale, urls: [http://stale/], country: DE}}
  - {{name: rsynconly, urls: [rsync://r/], country: DE, always_up_to_date: true}}
netblocks:
  - {{cidr: 192.0.2.0/24, country: DE}}
"
        );
        let cfg = config::parse(&yaml).unwrap();
        let mut state = State::new("/srv".into());
        let detail = FileDetail {
            size: 1,
            mtime: 0,
            mtime_nsec: 0,
            timestamp: 0,
            first_seen: 0,
            md5: String::new(),
            sha1: String::new(),
            sha256: "cur".into(),
            sha512: String::new(),
        };
        state.repos.push(Repo {
            kind: RepoKind::Ostree,
            name: Some("atomic-21".into()),
            arch: Some("x86_64".into()),
            path: "atomic/21".into(),
            file: "summary".into(),
            detail,
            alternates: vec![],
        });
        for (m, sha) in [
            ("us1", "cur"),
            ("de1", "cur"),
            ("fr1", "cur"),
            ("de2", "cur"),
            ("corp", "cur"),
            ("stale", "old"),
        ] {
            state.crawl.entry(m.into()).or_default().insert(
                "atomic/21/summary".into(),
                CrawlResult {
                    checked_at: 0,
                    sha256: Some(sha.into()),
                    error: None,
                },
            );
        }
        Catalog::new(state, cfg)
    }

    fn names(cat: &Catalog, sel: &Selection) -> Vec<String> {
        sel.hosts
            .iter()
            .map(|&m| cat.config.mirrors[m].name.clone())
            .collect()
    }

    #[test]
    fn country_then_continent_then_global_in_preference_order() {
        let cat = catalog(5);
        let client = Client {
            ip: Some("192.0.2.9".parse().unwrap()),
            use_netblocks: true,
            ..Client::default()
        };
        let sel = select(&cat, 0, &client);
        assert_eq!(names(&cat, &sel), ["de2", "de1", "fr1", "us1"]);
        assert_eq!(sel.header, "country = DE continent = EU country = global ");
    }

    #[test]
    fn netblock_mirror_comes_first_and_private_mirrors_only_there() {
        let cat = catalog(5);
        let inside = Client {
            ip: Some("10.1.2.3".parse().unwrap()),
            use_netblocks: true,
            ..Client::default()
        };
        let sel = select(&cat, 0, &inside);
        assert_eq!(names(&cat, &sel)[0], "corp");
        assert!(sel.header.starts_with("Using preferred netblock "));
        let off = Client {
            use_netblocks: false,
            ..inside
        };
        assert!(!names(&cat, &select(&cat, 0, &off)).contains(&"corp".to_string()));
    }

    #[test]
    fn country_parameter_is_exclusive_and_falls_back_to_the_continent() {
        let cat = catalog(5);
        let client = |c: &str| Client {
            countries: Some(vec![c.into()]),
            use_netblocks: true,
            ..Client::default()
        };
        assert_eq!(names(&cat, &select(&cat, 0, &client("US"))), ["us1"]);
        // No mirror in Austria: the rest of Europe.
        assert_eq!(
            names(&cat, &select(&cat, 0, &client("AT"))),
            ["fr1", "de2", "de1"]
        );
        assert_eq!(
            names(&cat, &select(&cat, 0, &client("GLOBAL"))),
            ["fr1", "de2", "us1", "de1"]
        );
    }

    #[test]
    fn stale_and_rsync_only_mirrors_are_never_listed_and_protocol_filters() {
        let cat = catalog(50);
        let all = names(&cat, &select(&cat, 0, &Client::default()));
        assert!(!all.contains(&"stale".to_string()) && !all.contains(&"rsynconly".to_string()));
        let https = Client {
            protocols: Some(vec!["https".into()]),
            ..Client::default()
        };
        assert_eq!(names(&cat, &select(&cat, 0, &https)), ["de2"]);
    }
}
