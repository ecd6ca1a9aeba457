//! Metalink 3.0 documents in MirrorManager's shape, minus what the real ostree client rejects:
//! no attribute beyond `name` on `<file>`, `type` on `<hash>` and `protocol`/`type`/`location`/
//! `preference` on `<url>` (so never `mm0:private`); `<size>` and the hashes before
//! `<resources>`; hashes in MirrorManager's order md5, sha1, sha256, sha512, so the last one is
//! a kind ostree knows; lowercase hex; no whitespace around URLs.

use std::fmt::Write;
use std::time::SystemTime;

use quick_xml::escape::escape;

use super::catalog::Catalog;
use super::state::{FileDetail, Repo};

/// The `Content-Type` of a metalink response.
pub const CONTENT_TYPE: &str = "application/metalink+xml";

fn header(out: &mut String, now: SystemTime) {
    let _ = write!(
        out,
        "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<metalink version=\"3.0\" \
         xmlns=\"http://www.metalinker.org/\" type=\"dynamic\" pubdate=\"{}\" \
         generator=\"mirrormanager\" xmlns:mm0=\"http://fedorahosted.org/mirrormanager\">\n",
        httpdate::fmt_http_date(now)
    );
}

/// MirrorManager's failure document: the header with the message in a comment.
pub fn failure(message: &str, now: SystemTime) -> String {
    let mut out = String::with_capacity(512 + message.len());
    header(&mut out, now);
    let _ = write!(
        out,
        "<!-- {}\n-->\n</metalink>\n",
        comment_text(message.trim_end())
    );
    out
}

/// `text` made safe inside an XML comment, where "--" may not appear: a space goes between
/// any two hyphens in a row. (Replacing "--" by "- -" is not enough: "---" would become
/// "- --", found by fuzzing.)
fn comment_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut previous = None;
    for c in text.chars() {
        if c == '-' && previous == Some('-') {
            out.push(' ');
        }
        out.push(c);
        previous = Some(c);
    }
    out
}

fn details(out: &mut String, d: &FileDetail, indent: &str) {
    if d.timestamp != 0 {
        let _ = writeln!(
            out,
            "{indent}<mm0:timestamp>{}</mm0:timestamp>",
            d.timestamp
        );
    }
    let _ = writeln!(out, "{indent}<size>{}</size>", d.size);
    let _ = writeln!(out, "{indent}<verification>");
    for (kind, hex) in [
        ("md5", &d.md5),
        ("sha1", &d.sha1),
        ("sha256", &d.sha256),
        ("sha512", &d.sha512),
    ] {
        if !hex.is_empty() {
            let _ = writeln!(
                out,
                "{indent} <hash type=\"{kind}\">{}</hash>",
                hex.to_ascii_lowercase()
            );
        }
    }
    let _ = writeln!(out, "{indent}</verification>");
}

/// The document for `repo`'s summary or repomd.xml, listing the URLs of `hosts` in order.
/// Preference starts at 100 and drops by one per host, as in MirrorManager (ostree ignores it).
pub fn render(
    cat: &Catalog,
    repo: &Repo,
    hosts: &[usize],
    protocols: Option<&[String]>,
    now: SystemTime,
) -> String {
    let mut out = String::with_capacity(1536 + 160 * hosts.len());
    header(&mut out, now);
    let _ = writeln!(
        out,
        " <files>\n  <file name=\"{}\">",
        escape(repo.file_name())
    );
    details(&mut out, &repo.detail, "   ");
    if !repo.alternates.is_empty() {
        out.push_str("   <mm0:alternates>\n");
        for alt in &repo.alternates {
            out.push_str("    <mm0:alternate>\n");
            details(&mut out, alt, "     ");
            out.push_str("    </mm0:alternate>\n");
        }
        out.push_str("   </mm0:alternates>\n");
    }
    out.push_str("   <resources maxconnections=\"1\">\n");
    let file_path = repo.file_path();
    for (i, &m) in hosts.iter().enumerate() {
        let mirror = &cat.config.mirrors[m];
        let preference = 100usize.saturating_sub(i).max(1);
        for url in &mirror.urls {
            if protocols.is_some_and(|p| !p.contains(&url.scheme)) {
                continue;
            }
            let _ = writeln!(
                out,
                "    <url protocol=\"{s}\" type=\"{s}\" location=\"{c}\" preference=\"{preference}\">{u}</url>",
                s = url.scheme,
                c = mirror.country.0,
                u = escape(url.join(&file_path)),
            );
        }
    }
    out.push_str("   </resources>\n  </file>\n </files>\n</metalink>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mirror::config;
    use crate::mirror::state::{RepoKind, State};

    #[test]
    fn document_has_the_shape_ostree_needs() {
        let cfg = config::parse(
            "mirrors:\n  - {name: a, urls: [http://a/pub/, rsync://a/pub/], country: us, netblocks: [10.0.0.0/8], private: true}\n  - {name: b, urls: [https://b/], country: DE}\n",
        )
        .unwrap();
        let d = FileDetail {
            size: 282,
            mtime: 5,
            mtime_nsec: 0,
            timestamp: 1795633156,
            first_seen: 0,
            md5: "ec02aec488aa55879af6a91c31c90325".into(),
            sha1: "455db12d2097a87a1841177ac505b06efed8ca23".into(),
            sha256: "EA48B464165DCDE0AB647CB54ECF75114A4235C2CD52FE597BE3864B597F61A6".into(),
            sha512: "21fd".repeat(32),
        };
        let mut state = State::new("/".into());
        state.repos.push(Repo {
            kind: RepoKind::Ostree,
            name: None,
            arch: None,
            path: "atomic/21".into(),
            file: "summary".into(),
            detail: d.clone(),
            alternates: vec![d],
        });
        let cat = Catalog::new(state, cfg);
        let xml = render(&cat, cat.repo(0), &[0, 1], None, SystemTime::UNIX_EPOCH);
        assert!(
            xml.contains("pubdate=\"Thu, 01 Jan 1970 00:00:00 GMT\""),
            "{xml}"
        );
        assert!(!xml.contains("mm0:private"));
        let size = xml.find("<size>282</size>").unwrap();
        let resources = xml.find("<resources").unwrap();
        assert!(size < resources);
        let hashes: Vec<_> = xml
            .match_indices("<hash type=\"")
            .map(|(i, _)| &xml[i + 12..i + 16])
            .collect();
        assert_eq!(&hashes[..4], ["md5\"", "sha1", "sha2", "sha5"]);
        assert!(xml.contains("ea48b464165dcde0ab647cb54ecf75114a4235c2cd52fe597be3864b597f61a6"));
        assert!(xml.contains(
            "<url protocol=\"http\" type=\"http\" location=\"US\" preference=\"100\">http://a/pub/atomic/21/summary</url>"
        ));
        assert!(xml.contains(
            "<url protocol=\"rsync\" type=\"rsync\" location=\"US\" preference=\"100\">rsync://a/pub/atomic/21/summary</url>"
        ));
        assert!(xml.contains(
            "<url protocol=\"https\" type=\"https\" location=\"DE\" preference=\"99\">https://b/atomic/21/summary</url>"
        ));
        // The document is well-formed XML.
        let mut reader = quick_xml::Reader::from_str(&xml);
        loop {
            match reader.read_event().unwrap() {
                quick_xml::events::Event::Eof => break,
                _ => continue,
            }
        }
        let only_http = render(
            &cat,
            cat.repo(0),
            &[0],
            Some(&["http".to_string()]),
            SystemTime::UNIX_EPOCH,
        );
        assert!(!only_http.contains("rsync://"));
    }

    #[test]
    fn failure_keeps_the_message_in_a_comment() {
        let doc = failure(
            "# repo = x arch = y error -- invalid",
            SystemTime::UNIX_EPOCH,
        );
        assert!(doc.contains("<!-- # repo = x arch = y error - - invalid\n-->\n</metalink>"));
        // The fuzzer's find: runs of hyphens, and a message that tries to end the comment.
        let doc = failure("a---b-----> c-", SystemTime::UNIX_EPOCH);
        let body = &doc[doc.find("<!--").unwrap() + 4..doc.rfind("-->").unwrap()];
        assert!(!body.contains("--"), "{doc}");
        assert!(body.contains("a- - -b- - - - -> c-"), "{doc}");
        let found = std::fs::read_to_string(crate::fsutil::fuzz_regression(
            "mirror_query-comment-hyphens",
        ))
        .unwrap();
        let doc = failure(&found, SystemTime::UNIX_EPOCH);
        let body = &doc[doc.find("<!--").unwrap() + 4..];
        assert_eq!(body.find("-->"), body.rfind("-->"), "{doc}");
    }
}
