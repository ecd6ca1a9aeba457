//! MirrorManager's plain-text mirrorlist: a `# ...` header line, then one URL per mirror.
//! ostree's `mirrorlist=` reader skips `#` lines and tries `<url>/config` in order.

use std::fmt::Write;

use super::catalog::Catalog;
use super::config::MirrorConfig;

/// The `Content-Type` of a mirrorlist response.
pub const CONTENT_TYPE: &str = "text/plain; charset=utf-8";

/// The one URL a mirror contributes: https, then http, then ftp; with `protocol=`, the first
/// URL of the first listed scheme it has.
fn pick<'a>(
    m: &'a MirrorConfig,
    protocols: Option<&[String]>,
) -> Option<&'a super::config::MirrorUrl> {
    const DEFAULT: &[&str] = &["https", "http", "ftp"];
    match protocols {
        Some(p) => p
            .iter()
            .find_map(|s| m.urls.iter().find(|u| u.scheme == *s)),
        None => DEFAULT
            .iter()
            .find_map(|s| m.urls.iter().find(|u| u.scheme == *s)),
    }
}

/// `header` is the fragment list (`# repo = R arch = A ` or `# path = P `, plus the
/// selection's explanation); `rel` the folder (ends the URL with `/`) or file path.
pub fn render(
    cat: &Catalog,
    header: &str,
    rel: &str,
    is_dir: bool,
    hosts: &[usize],
    protocols: Option<&[String]>,
    created: Option<i64>,
) -> String {
    let mut out = String::with_capacity(128 + 96 * hosts.len());
    out.push_str(header);
    if let Some(p) = protocols {
        let _ = write!(out, "protocol = {} ", p.join(","));
    }
    out.push('\n');
    if let Some(t) = created {
        let _ = writeln!(out, "# database creation time: {t}");
    }
    for &m in hosts {
        if let Some(url) = pick(&cat.config.mirrors[m], protocols) {
            let mut u = url.join(rel);
            if is_dir && !u.ends_with('/') {
                u.push('/');
            }
            out.push_str(&u);
            out.push('\n');
        }
    }
    out
}

/// The 404 text for an unknown repo/arch, listing every valid pair.
pub fn unknown_repo(cat: &Catalog, repo: &str, arch: &str) -> String {
    let mut out = format!(
        "# repo = {repo} arch = {arch} error: invalid repo or arch\n# following repositories are available:\n"
    );
    for (r, a) in &cat.valid_pairs {
        let _ = writeln!(out, "# repo={r}&arch={a}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mirror::config;
    use crate::mirror::state::State;

    #[test]
    fn one_url_per_mirror_https_first() {
        let cfg = config::parse(
            "mirrors:\n  - {name: a, urls: [rsync://a/p/, http://a/p/, https://a/p/], country: us}\n  - {name: b, urls: [ftp://b/, rsync://b/], country: DE}\n",
        )
        .unwrap();
        let cat = Catalog::new(State::new("/".into()), cfg);
        let text = render(
            &cat,
            "# repo = r arch = x ",
            "atomic/21",
            true,
            &[0, 1],
            None,
            Some(7),
        );
        assert_eq!(
            text,
            "# repo = r arch = x \n# database creation time: 7\nhttps://a/p/atomic/21/\nftp://b/atomic/21/\n"
        );
        let http = vec!["http".to_string()];
        let text = render(&cat, "# path = s ", "s", false, &[0, 1], Some(&http), None);
        assert_eq!(text, "# path = s protocol = http \nhttp://a/p/s\n");
    }
}
