//! Loopback HTTP servers that publish a directory (a repository) to the clients under test.

use std::path::Path;
use std::process::{Child, Command, Stdio};

use super::require;

/// `python3 -m http.server` on a free loopback port, killed on drop.
pub struct HttpServer {
    child: Child,
    /// The port on 127.0.0.1 (a guest reaches it as 10.0.2.2).
    pub port: u16,
    pub url: String,
}

impl HttpServer {
    pub fn serve(dir: &Path) -> HttpServer {
        require(&["python3"]);
        let port = free_port();
        let child = Command::new("python3")
            .args([
                "-m",
                "http.server",
                "--bind",
                "127.0.0.1",
                &port.to_string(),
            ])
            .current_dir(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting python3 -m http.server");
        wait_until_listening(port, "http.server");
        HttpServer {
            child,
            port,
            url: format!("http://127.0.0.1:{port}/"),
        }
    }
}

/// Serves `dir` like `python3 -m http.server`, writing one `PATH STATUS` line per request to
/// `log`; answers under `/objects/` wait `objects_delay_ms` first (so a test can tell what a
/// client needs from loose objects apart from what races ahead of a delta part).
pub fn serve_logged(dir: &Path, log: &Path, objects_delay_ms: u64) -> HttpServer {
    require(&["python3"]);
    const SCRIPT: &str = r#"
import functools, http.server, sys, time
port, logpath, delay, root = int(sys.argv[1]), sys.argv[2], float(sys.argv[3]) / 1000, sys.argv[4]
log = open(logpath, "a", buffering=1)
class Handler(http.server.SimpleHTTPRequestHandler):
    def do_GET(self):
        if delay and self.path.startswith("/objects/"):
            time.sleep(delay)
        super().do_GET()
    def log_request(self, code="-", size="-"):
        log.write("%s %s\n" % (self.path, getattr(code, "value", code)))
    def log_message(self, *args):
        pass
http.server.ThreadingHTTPServer(("127.0.0.1", port), functools.partial(Handler, directory=root)).serve_forever()
"#;
    let port = free_port();
    let child = Command::new("python3")
        .arg("-c")
        .arg(SCRIPT)
        .arg(port.to_string())
        .arg(log)
        .arg(objects_delay_ms.to_string())
        .arg(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting the logging http server");
    wait_until_listening(port, "logging http server");
    HttpServer {
        child,
        port,
        url: format!("http://127.0.0.1:{port}/"),
    }
}

/// Waits (up to 20 s) until something accepts connections on `port` of 127.0.0.1.
/// A port on 127.0.0.1 that was free a moment ago, for a server we start.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn wait_until_listening(port: u16, what: &str) {
    let start = std::time::Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            start.elapsed().as_secs() < 20,
            "{what} did not start on port {port}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
