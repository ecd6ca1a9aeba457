//! What the install stage does to the rendered kickstart before serving it: checks that it
//! powers off, points `ostreesetup --url=http://10.0.2.2/...` at our server's port, and
//! appends the `%post --nochroot` that sends the per-run success token.

use std::path::Path;

use anyhow::{Result, bail};

use super::qemu::ANACONDA_LOG_PORT;

/// The host alias of QEMU user-mode networking: the guest reaches host 127.0.0.1 there.
pub const HOST_ALIAS: &str = "10.0.2.2";

/// The marker the injected %post writes, followed by the run's token.
pub const TOKEN_MARKER: &str = "ATOMIC-FACTORY-INSTALL-OK";

#[derive(Debug, Clone)]
pub struct PreparedKickstart {
    pub text: String,
    /// The ostreesetup --url after rewriting, if the kickstart has one.
    pub ostree_url: Option<String>,
    /// Whether that URL is served by us (it pointed at 10.0.2.2).
    pub url_is_ours: bool,
}

/// The line the guest sends on success; the kickstart itself never contains it literally
/// (the %post builds it with printf), so echoing the kickstart cannot fake a success.
pub fn token_line(token: &str) -> String {
    format!("{TOKEN_MARKER} {token}")
}

pub fn prepare(path: &Path, text: &str, port: u16, token: &str) -> Result<PreparedKickstart> {
    let mut out = String::with_capacity(text.len() + 512);
    let mut in_section = false;
    let mut shutdown = None;
    let mut ostree_url = None;
    let mut url_is_ours = false;
    for (i, line) in text.lines().enumerate() {
        let trimmed = line.trim_start();
        let word = trimmed.split_whitespace().next().unwrap_or("");
        if in_section {
            if word == "%end" {
                in_section = false;
            }
            out.push_str(line);
            out.push('\n');
            continue;
        }
        if word.starts_with('%') && word != "%end" && word != "%include" && word != "%ksappend" {
            in_section = true;
        }
        match word {
            "poweroff" | "shutdown" | "reboot" | "halt" => {
                shutdown = Some((i + 1, word.to_string()))
            }
            "ostreesetup" => {
                let (new_line, url, ours) = rewrite_url(line, port);
                ostree_url = url;
                url_is_ours = ours;
                out.push_str(&new_line);
                out.push('\n');
                continue;
            }
            _ => {}
        }
        out.push_str(line);
        out.push('\n');
    }
    match shutdown {
        Some((_, w)) if w == "poweroff" || w == "shutdown" => {}
        Some((n, w)) => bail!(
            "{}:{n}: `{w}`: the installer VM must power off when done (QEMU runs with -no-reboot and the \
             install counts only after a poweroff); replace it with `poweroff`",
            path.display()
        ),
        None => bail!(
            "{}: the kickstart has no `poweroff` command: without it the installer waits forever at the end; add `poweroff`",
            path.display()
        ),
    }
    out.push_str(&format!(
        "\n%post --nochroot\n\
         # atomic-factory install: the success token. The host counts the install as done only\n\
         # when this arrives on the virtio log port and the guest then powers off.\n\
         printf '{marker} %s\\n' '{token}' > /dev/virtio-ports/{port_name} 2>/dev/null || \
         logger -t atomic-factory \"$(printf '{marker} %s' '{token}')\"\n\
         %end\n",
        marker = TOKEN_MARKER,
        port_name = ANACONDA_LOG_PORT,
    ));
    Ok(PreparedKickstart {
        text: out,
        ostree_url,
        url_is_ours,
    })
}

/// Rewrites `--url=http://10.0.2.2[:ANY]/path` to `http://10.0.2.2:PORT/path`.
fn rewrite_url(line: &str, port: u16) -> (String, Option<String>, bool) {
    let Some(pos) = line.find("--url") else {
        return (line.to_string(), None, false);
    };
    let after = &line[pos + 5..];
    let (sep_len, rest) = if let Some(r) = after.strip_prefix('=') {
        (1, r)
    } else if after.starts_with(char::is_whitespace) {
        let t = after.trim_start();
        (after.len() - t.len(), t)
    } else {
        return (line.to_string(), None, false);
    };
    let quoted = rest.starts_with('"');
    let body = if quoted { &rest[1..] } else { rest };
    let end = body
        .find(if quoted { '"' } else { ' ' })
        .unwrap_or(body.len());
    let url = &body[..end];
    let prefix = format!("http://{HOST_ALIAS}");
    let Some(tail) = url.strip_prefix(&prefix) else {
        return (line.to_string(), Some(url.to_string()), false);
    };
    let path = if let Some(t) = tail.strip_prefix(':') {
        &t[t.find('/').unwrap_or(t.len())..]
    } else if tail.is_empty() || tail.starts_with('/') {
        tail
    } else {
        return (line.to_string(), Some(url.to_string()), false);
    };
    let new_url = format!("http://{HOST_ALIAS}:{port}{path}");
    let start = pos + 5 + sep_len + usize::from(quoted);
    let new_line = format!(
        "{}{}{}",
        &line[..start],
        new_url,
        &line[start + url.len()..]
    );
    (new_line, Some(new_url), true)
}

#[cfg(test)]
mod tests {
    use super::*;

    const KS: &str = "text\nostreesetup --osname=s --url=http://10.0.2.2/repo --ref=a/b --nogpg\n%post\necho poweroff\n%end\npoweroff\n";

    #[test]
    fn rewrites_the_served_url_and_injects_the_token() {
        let p = prepare(Path::new("ks.cfg"), KS, 4242, "abc").unwrap();
        assert!(
            p.text.contains("--url=http://10.0.2.2:4242/repo --ref=a/b"),
            "{}",
            p.text
        );
        assert!(p.url_is_ours);
        assert!(p.text.contains("%post --nochroot"));
        assert!(p.text.contains("'abc'"));
        assert!(
            !p.text.contains(&token_line("abc")),
            "the literal success line must not be in the kickstart"
        );
    }

    #[test]
    fn keeps_foreign_urls_and_other_ports() {
        let p = prepare(
            Path::new("k"),
            &KS.replace("http://10.0.2.2/repo", "https://example.org/repo"),
            1,
            "t",
        )
        .unwrap();
        assert!(!p.url_is_ours);
        assert_eq!(p.ostree_url.as_deref(), Some("https://example.org/repo"));
        let p = prepare(
            Path::new("k"),
            &KS.replace("10.0.2.2/repo", "10.0.2.2:8000/r"),
            9,
            "t",
        )
        .unwrap();
        assert_eq!(p.ostree_url.as_deref(), Some("http://10.0.2.2:9/r"));
        let p = prepare(
            Path::new("k"),
            &KS.replace("--url=http://10.0.2.2/repo", "--url \"http://10.0.2.2/x\""),
            7,
            "t",
        )
        .unwrap();
        assert_eq!(p.ostree_url.as_deref(), Some("http://10.0.2.2:7/x"));
        assert!(p.text.contains("--url \"http://10.0.2.2:7/x\""));
    }

    #[test]
    fn requires_poweroff() {
        let e = prepare(
            Path::new("my.ks"),
            &KS.replace("\npoweroff\n", "\nreboot\n"),
            1,
            "t",
        )
        .unwrap_err();
        assert!(format!("{e}").contains("my.ks:6: `reboot`"), "{e}");
        let e = prepare(
            Path::new("my.ks"),
            &KS.replace("\npoweroff\n", "\n"),
            1,
            "t",
        )
        .unwrap_err();
        assert!(format!("{e}").contains("no `poweroff`"), "{e}");
    }
}
