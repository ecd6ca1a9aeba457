//! What the install stage does to the rendered kickstart before serving it: checks that it
//! powers off, points `ostreesetup --url=http://10.0.2.2/...` at our server's port, and
//! appends the `%post --nochroot` that sends the per-run success token.

use std::path::Path;
use std::sync::Arc;

use anyhow::{Result, bail};

use super::qemu::ANACONDA_LOG_PORT;
use crate::kickstart::parse::{self, Origin, SourceLine};

/// The host alias of QEMU user-mode networking: the guest reaches host 127.0.0.1 there.
pub const HOST_ALIAS: &str = "10.0.2.2";

/// The marker the injected %post writes, followed by the run's token.
pub const TOKEN_MARKER: &str = "ATOMIC-FACTORY-INSTALL-OK";

/// The kickstart as it is served to the guest, and what the rewrite found.
#[derive(Debug, Clone)]
pub struct PreparedKickstart {
    /// The text to serve: the ostreesetup URL pointed at our port, the token `%post` appended.
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

/// Checks that the kickstart at `path` (text `text`) powers off, points an ostreesetup URL
/// on [`HOST_ALIAS`] without a port at our server's `port`, and appends the `%post` that sends
/// `token`. Commands are read with the kickstart parser (pykickstart's structure, shlex
/// words); `%include`s are left alone, since the guest resolves them (often to files its own
/// `%pre` wrote), and the text is otherwise served as it is.
pub fn prepare(path: &Path, text: &str, port: u16, token: &str) -> Result<PreparedKickstart> {
    let file: Arc<Path> = Arc::from(path);
    let lines: Vec<SourceLine> = text
        .lines()
        .enumerate()
        .map(|(i, line)| SourceLine {
            origin: Origin {
                file: file.clone(),
                line: i + 1,
            },
            text: line.to_string(),
        })
        .collect();
    let parsed = parse::parse(&lines);
    let mut rewritten: Vec<Option<String>> = vec![None; lines.len()];
    let mut shutdown = None;
    let mut ostree_url = None;
    let mut url_is_ours = false;
    for command in parsed.commands() {
        match command.name() {
            "poweroff" | "shutdown" | "reboot" | "halt" => {
                shutdown = Some((command.origin.line, command.name().to_string()))
            }
            "ostreesetup" => {
                let at = command.origin.line - 1;
                let url = command.option("--url").filter(|u| !u.is_empty());
                let (new_line, url, ours) = rewrite_url(&lines[at].text, url, port);
                rewritten[at] = new_line;
                ostree_url = url;
                url_is_ours = ours;
            }
            _ => {}
        }
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
    let mut out = String::with_capacity(text.len() + 512);
    for (line, new) in lines.iter().zip(&rewritten) {
        out.push_str(new.as_deref().unwrap_or(&line.text));
        out.push('\n');
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

/// For an ostreesetup `line` whose `--url` is `url`: the line with `http://10.0.2.2/path`
/// (no port: it names our server) rewritten to `http://10.0.2.2:PORT/path`, if it is one;
/// the URL after rewriting; and whether it is ours.
fn rewrite_url(line: &str, url: Option<&str>, port: u16) -> (Option<String>, Option<String>, bool) {
    let Some(url) = url else {
        return (None, None, false);
    };
    let prefix = format!("http://{HOST_ALIAS}");
    // An explicit port means the user serves that URL; without one it names our server.
    let path = match url.strip_prefix(&prefix) {
        Some(tail) if tail.is_empty() || tail.starts_with('/') => tail,
        _ => return (None, Some(url.to_string()), false),
    };
    let new_url = format!("http://{HOST_ALIAS}:{port}{path}");
    // The value as written follows the option name (`--url=`, `--url `, maybe quoted).
    let option = line.find("--url").unwrap_or(0);
    let Some(at) = line[option..].find(url).map(|i| option + i) else {
        return (None, Some(url.to_string()), false);
    };
    let new_line = format!("{}{new_url}{}", &line[..at], &line[at + url.len()..]);
    (Some(new_line), Some(new_url), true)
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
        // An explicit port: the user serves it.
        assert_eq!(p.ostree_url.as_deref(), Some("http://10.0.2.2:8000/r"));
        assert!(!p.url_is_ours);
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
    fn reads_commands_as_the_kickstart_parser_does() {
        // A poweroff inside a section is script text, not the command; a comment is nothing.
        let e = prepare(
            Path::new("k"),
            "text\n%post\npoweroff\n%end\n# poweroff\n",
            1,
            "t",
        )
        .unwrap_err();
        assert!(format!("{e}").contains("no `poweroff`"), "{e}");
        // The last of several power commands counts; indentation does not matter.
        let p = prepare(Path::new("k"), "reboot\n  poweroff\n", 1, "t").unwrap();
        assert!(p.ostree_url.is_none());
        // %include lines stay for the guest to resolve.
        let p = prepare(Path::new("k"), "%include /tmp/part\npoweroff\n", 1, "t").unwrap();
        assert!(
            p.text.starts_with("%include /tmp/part\npoweroff\n"),
            "{}",
            p.text
        );
        // The URL's path keeps everything after the host, and other options stay.
        let p = prepare(
            Path::new("k"),
            "ostreesetup --osname=s --url='http://10.0.2.2' --ref=r\npoweroff\n",
            5,
            "t",
        )
        .unwrap();
        assert_eq!(p.ostree_url.as_deref(), Some("http://10.0.2.2:5"));
        assert!(
            p.text.contains("--url='http://10.0.2.2:5' --ref=r"),
            "{}",
            p.text
        );
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
