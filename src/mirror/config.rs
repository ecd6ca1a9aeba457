//! `mirrors.yaml`: the mirrors, where they are, and which client netblocks belong to which
//! country. Parsed with serde-saphyr; unknown keys and bad values are errors with line and column.

use std::collections::HashSet;
use std::net::IpAddr;
use std::path::Path;

use anyhow::{Context, Result, bail};
use serde::Deserialize;

/// The format, shown in `--help` of the commands that read it.
pub const MIRRORS_YAML_HELP: &str = "\
mirrors.yaml format (unknown keys are errors):
  minimum: 5            # optional: pad with global mirrors below this many (default 5)
  mirrors:              # tried in this order within a group unless `preference` says otherwise
    - name: m1          # unique; crawl results are stored under it
      urls:             # base URLs of the master tree's copy (http, https, ftp, rsync)
        - http://mirror.example.org/pub/
      country: US       # ISO 3166 code of the host
      continent: NA     # optional: AF AN AS EU NA OC SA (derived from country)
      preference: 0     # optional: higher is listed first within a group (default 0)
      netblocks: [192.0.2.0/24]  # optional: clients in these come here first
      private: false    # optional: serve only clients in its netblocks
      always_up_to_date: false   # optional: list without a crawl check
  netblocks:            # optional: client address -> country (no GeoIP here)
    - cidr: 10.0.0.0/8
      country: DE";

/// The whole `mirrors.yaml` (format in [`MIRRORS_YAML_HELP`]).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MirrorsConfig {
    /// Below this many usable mirrors, a selection is padded with global ones (default 5).
    #[serde(default = "default_minimum")]
    pub minimum: usize,
    /// The mirrors, in file order (the order within a group at equal preference).
    pub mirrors: Vec<MirrorConfig>,
    /// Client netblock to country, for clients without `country=`.
    #[serde(default)]
    pub netblocks: Vec<CountryNetblock>,
}

fn default_minimum() -> usize {
    5
}

/// One mirror host.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MirrorConfig {
    /// Unique, without spaces; crawl results are stored under it.
    pub name: String,
    /// Base URLs of its copy of the master tree.
    pub urls: Vec<MirrorUrl>,
    /// Where the host is.
    pub country: Country,
    /// Overrides the continent derived from `country`.
    #[serde(default)]
    pub continent: Option<Continent>,
    /// Higher is listed first within a group (default 0).
    #[serde(default)]
    pub preference: i64,
    /// Clients in these netblocks get this mirror first.
    #[serde(default)]
    pub netblocks: Vec<Cidr>,
    /// Served only to clients in its `netblocks`.
    #[serde(default)]
    pub private: bool,
    /// Listed without a crawl check (and not crawled).
    #[serde(default)]
    pub always_up_to_date: bool,
}

/// A `netblocks` entry: clients in `cidr` count as being in `country`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CountryNetblock {
    /// The client addresses.
    pub cidr: Cidr,
    /// Their country.
    pub country: Country,
}

/// An upper-case ISO 3166 alpha-2 code.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Deserialize)]
#[serde(try_from = "String")]
pub struct Country(pub String);

impl TryFrom<String> for Country {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        if s.len() == 2 && s.bytes().all(|b| b.is_ascii_alphabetic()) {
            Ok(Country(s.to_ascii_uppercase()))
        } else {
            Err(format!(
                "country {s:?} is not a two-letter ISO 3166 code (e.g. US, DE)"
            ))
        }
    }
}

/// A continent code as in GeoIP: AF AN AS EU NA OC SA.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(try_from = "String")]
pub struct Continent(pub [u8; 2]);

/// The continent codes GeoIP uses.
pub const CONTINENTS: &[&str] = &["AF", "AN", "AS", "EU", "NA", "OC", "SA"];

impl TryFrom<String> for Continent {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        let up = s.to_ascii_uppercase();
        if CONTINENTS.contains(&up.as_str()) {
            Ok(Continent([up.as_bytes()[0], up.as_bytes()[1]]))
        } else {
            Err(format!(
                "continent {s:?} is not one of {}",
                CONTINENTS.join(" ")
            ))
        }
    }
}

/// A CIDR block (a bare address is a /32 or /128, as in MirrorManager).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct Cidr(pub ipnet::IpNet);

impl TryFrom<String> for Cidr {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        if let Ok(net) = s.parse::<ipnet::IpNet>() {
            return Ok(Cidr(net.trunc()));
        }
        match s.parse::<IpAddr>() {
            Ok(ip) => Ok(Cidr(ipnet::IpNet::from(ip))),
            Err(_) => Err(format!(
                "{s:?} is not a CIDR block (e.g. 192.0.2.0/24) or an address"
            )),
        }
    }
}

/// A mirror base URL: scheme, host, path; kept without the trailing `/`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct MirrorUrl {
    /// Lower-case: `http`, `https`, `ftp` or `rsync`.
    pub scheme: String,
    /// The whole URL without its trailing `/`.
    pub base: String,
}

impl TryFrom<String> for MirrorUrl {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        let Some((scheme, rest)) = s.split_once("://") else {
            return Err(format!("URL {s:?} has no scheme (write http://host/path/)"));
        };
        let scheme = scheme.to_ascii_lowercase();
        if !["http", "https", "ftp", "rsync"].contains(&scheme.as_str()) {
            return Err(format!(
                "URL {s:?}: scheme must be http, https, ftp or rsync"
            ));
        }
        let host = rest.split('/').next().unwrap_or("");
        if host.is_empty() {
            return Err(format!("URL {s:?} has no host"));
        }
        // The URL is written verbatim into XML and text lists: refuse what would need escaping.
        if s.chars()
            .any(|c| c.is_whitespace() || c.is_control() || "<>\"'&?#".contains(c))
        {
            return Err(format!("URL {s:?} holds a space, quote, <, >, &, ? or #"));
        }
        Ok(MirrorUrl {
            scheme,
            base: s.trim_end_matches('/').to_string(),
        })
    }
}

impl MirrorUrl {
    /// The URL of `rel` (a `/`-path relative to the master root; may be empty) on this mirror.
    pub fn join(&self, rel: &str) -> String {
        if rel.is_empty() {
            format!("{}/", self.base)
        } else {
            format!("{}/{rel}", self.base)
        }
    }
}

impl MirrorConfig {
    /// The continent of this host: given, else from its country.
    pub fn continent(&self) -> Option<Continent> {
        self.continent.or_else(|| continent_of(&self.country.0))
    }
}

/// Reads and checks `mirrors.yaml`.
pub fn load(path: &Path) -> Result<MirrorsConfig> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading mirrors file {}", path.display()))?;
    parse(&text).with_context(|| format!("in mirrors file {}", path.display()))
}

/// Parses and checks `mirrors.yaml` text: unique names, at least one URL each, netblocks
/// for private mirrors.
pub fn parse(text: &str) -> Result<MirrorsConfig> {
    let cfg: MirrorsConfig = serde_saphyr::from_str(text).map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut names = HashSet::new();
    for m in &cfg.mirrors {
        if m.name.is_empty() || m.name.contains(char::is_whitespace) {
            bail!(
                "mirror name {:?} must be non-empty and without spaces",
                m.name
            );
        }
        if !names.insert(&m.name) {
            bail!(
                "mirror name {:?} appears twice; names must be unique",
                m.name
            );
        }
        if m.urls.is_empty() {
            bail!(
                "mirror {:?} has no urls; add at least one http:// or https:// URL",
                m.name
            );
        }
        if m.private && m.netblocks.is_empty() {
            bail!(
                "mirror {:?} is private but has no netblocks, so no client could reach it",
                m.name
            );
        }
        if m.continent().is_none() {
            bail!(
                "mirror {:?}: country {} is not in the built-in continent table; add `continent:`",
                m.name,
                m.country.0
            );
        }
    }
    Ok(cfg)
}

/// Country to continent (GeoIP's mapping, as MirrorManager's country_continent.csv).
pub fn continent_of(country: &str) -> Option<Continent> {
    const TABLE: &[(&str, &str)] = &[
        (
            "AF",
            "AO BF BI BJ BW CD CF CG CI CM CV DJ DZ EG EH ER ET GA GH GM GN GQ GW KE KM LR LS LY MA MG ML MR MU MW MZ NA NE NG RE RW SC SD SH SL SN SO SS ST SZ TD TG TN TZ UG YT ZA ZM ZW",
        ),
        ("AN", "AQ BV GS HM TF"),
        (
            "AS",
            "AE AF AM AZ BD BH BN BT CC CN CX GE HK ID IL IN IO IQ IR JO JP KG KH KP KR KW KZ LA LB LK MM MN MO MV MY NP OM PH PK PS QA SA SG SY TH TJ TL TM TR TW UZ VN YE",
        ),
        (
            "EU",
            "AD AL AT AX BA BE BG BY CH CY CZ DE DK EE ES EU FI FO FR GB GG GI GR HR HU IE IM IS IT JE LI LT LU LV MC MD ME MK MT NL NO PL PT RO RS RU SE SI SJ SK SM UA VA XK",
        ),
        (
            "NA",
            "AG AI AW BB BL BM BQ BS BZ CA CR CU CW DM DO GD GL GP GT HN HT JM KN KY LC MF MQ MS MX NI PA PM PR SV SX TC TT US VC VG VI",
        ),
        (
            "OC",
            "AS AU CK FJ FM GU KI MH MP NC NF NR NU NZ PF PG PN PW SB TK TO TV UM VU WF WS",
        ),
        ("SA", "AR BO BR CL CO EC FK GF GY PE PY SR UY VE"),
    ];
    let up = country.to_ascii_uppercase();
    TABLE
        .iter()
        .find(|(_, list)| list.split(' ').any(|c| c == up))
        .map(|(cont, _)| Continent([cont.as_bytes()[0], cont.as_bytes()[1]]))
}

#[cfg(test)]
mod tests {
    use super::*;

    const VALID: &str = "\
mirrors:
  - name: m1
    urls: [http://a.example/pub/, rsync://a.example/pub/]
    country: us
  - name: m2
    urls: [https://b.example/]
    country: DE
    preference: 5
    netblocks: [10.0.0.0/8, 192.0.2.7]
netblocks:
  - cidr: 127.0.0.0/8
    country: FR
";

    #[test]
    fn valid_file_parses_with_defaults() {
        let cfg = parse(VALID).unwrap();
        assert_eq!(cfg.minimum, 5);
        assert_eq!(cfg.mirrors[0].country.0, "US");
        assert_eq!(cfg.mirrors[0].continent(), Some(Continent(*b"NA")));
        assert_eq!(cfg.mirrors[0].urls[0].base, "http://a.example/pub");
        assert_eq!(
            cfg.mirrors[0].urls[0].join("x/summary"),
            "http://a.example/pub/x/summary"
        );
        assert_eq!(cfg.mirrors[1].netblocks[1].0.to_string(), "192.0.2.7/32");
        assert_eq!(cfg.netblocks[0].country.0, "FR");
    }

    #[test]
    fn errors_name_the_line_and_column() {
        let cases = [
            (
                VALID.replace("country: us", "country: usa"),
                "line 4",
                "two-letter",
            ),
            (
                VALID.replace("preference: 5", "preferance: 5"),
                "line 8",
                "preferance",
            ),
            (VALID.replace("10.0.0.0/8", "10.0.0.0/33"), "line 9", "CIDR"),
            (
                VALID.replace("https://b.example/", "gopher://b.example/"),
                "line 6",
                "scheme",
            ),
            (VALID.replace("  - name: m2", "  - name: m1"), "", "twice"),
        ];
        for (text, line, what) in cases {
            let err = format!("{:#}", parse(&text).unwrap_err());
            assert!(err.contains(line), "expected {line:?} in: {err}");
            assert!(err.contains(what), "expected {what:?} in: {err}");
        }
    }

    #[test]
    fn continent_table_covers_common_countries() {
        for (c, cont) in [
            ("DE", "EU"),
            ("us", "NA"),
            ("BR", "SA"),
            ("JP", "AS"),
            ("AU", "OC"),
            ("ZA", "AF"),
        ] {
            assert_eq!(
                continent_of(c).map(|x| x.0),
                Some(*cont.as_bytes().first_chunk().unwrap()),
                "{c}"
            );
        }
        assert_eq!(continent_of("ZZ"), None);
    }
}
