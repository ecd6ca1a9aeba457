//! Benchmark of `mirror serve`'s `/metalink` under wrk on loopback, against the same document
//! served as a static file by `python3 -m http.server` (there is no MirrorManager here).
//!
//! Run: `cargo test --release --test it mirror_bench -- --ignored --nocapture`
//! (BENCH_SECS=60 by default; the reference runs for a sixth of that).

use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::http::HttpServer;
use crate::support::{BIN, benchmark_lock, require, run};

struct Kill(Child);
impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// utime + stime of a process, in clock ticks (100 Hz on Linux).
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the ")" of the command name; utime and stime are fields 14 and 15.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split(' ').collect();
    f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split(' ')
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// wrk's requests/s and p99 latency in ms.
fn wrk(url: &str, secs: u64) -> (f64, f64, String) {
    let out = Command::new("wrk")
        .args(["-t1", "-c32", &format!("-d{secs}s"), "--latency", url])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "wrk failed: {text}");
    assert!(!text.contains("Non-2xx"), "errors under load: {text}");
    let rps = text
        .lines()
        .find_map(|l| l.strip_prefix("Requests/sec:"))
        .map(|v| v.trim().parse().unwrap())
        .unwrap();
    let p99 = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("99%"))
        .map(|v| {
            let v = v.trim();
            let (num, unit) = v.split_at(v.find(|c: char| c.is_alphabetic()).unwrap());
            let n: f64 = num.parse().unwrap();
            match unit {
                "us" => n / 1000.0,
                "ms" => n,
                "s" => n * 1000.0,
                _ => panic!("unit {unit}"),
            }
        })
        .unwrap();
    (rps, p99, text)
}

/// One GET over a raw socket (no HTTP client in the dev-dependencies); returns the body.
fn get(addr: &str, target: &str) -> Vec<u8> {
    use std::io::{Read, Write};
    let mut s = TcpStream::connect(addr).unwrap();
    write!(
        s,
        "GET {target} HTTP/1.1\r\nHost: b\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).unwrap();
    let at = buf.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    assert!(
        buf.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&buf)
    );
    buf.split_off(at + 4)
}

/// A master tree of `n` ostree-shaped repositories (summary + objects/) with 1 KiB summaries.
fn master(root: &Path, n: usize) {
    for i in 0..n {
        let dir = root.join(format!("pub/fedora/linux/atomic/{}", 100 + i));
        std::fs::create_dir_all(dir.join("objects")).unwrap();
        std::fs::write(dir.join("summary"), vec![(i % 251) as u8; 1024]).unwrap();
    }
}

#[test]
#[ignore = "benchmark: cargo test --release --test it mirror_bench -- --ignored --nocapture"]
fn metalink_throughput_latency_and_memory() {
    let _bench = benchmark_lock();
    require(&["wrk"]);
    require(&["python3"]);
    let secs: u64 = std::env::var("BENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60);
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    master(&root, 500);
    let state = dir.path().join("state.json");
    run(Command::new(BIN)
        .args(["mirror", "scan"])
        .arg(&root)
        .arg("-o")
        .arg(&state));
    // 30 mirrors in 10 countries, all listed as up to date (the crawl is not what is measured).
    let countries = ["US", "DE", "FR", "GB", "JP", "BR", "AU", "CA", "NL", "SE"];
    let mut yaml = String::from("mirrors:\n");
    for i in 0..30 {
        yaml.push_str(&format!(
            "  - {{name: m{i}, urls: [https://m{i}.example.org/pub/, http://m{i}.example.org/pub/], \
             country: {}, always_up_to_date: true, preference: {}}}\n",
            countries[i % countries.len()],
            i % 3
        ));
    }
    let mirrors = dir.path().join("mirrors.yaml");
    std::fs::write(&mirrors, yaml).unwrap();

    let mut child = Command::new(BIN)
        .args(["mirror", "serve", "--listen", "127.0.0.1:0", "--mirrors"])
        .arg(&mirrors)
        .arg("--state")
        .arg(&state)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let addr = loop {
        let l = lines.next().expect("serve exited").unwrap();
        if let Some(a) = l.strip_prefix("listening on http://") {
            break a.to_string();
        }
    };
    std::thread::spawn(move || for _ in lines.by_ref() {});
    let pid = child.id();
    let server = Kill(child);
    let url = format!("http://{addr}/metalink?repo=atomic-342&arch=x86_64&country=DE");

    // The same document as a static file for the reference server.
    let doc = get(&addr, &url[url.find("/metalink").unwrap()..]);
    assert!(String::from_utf8_lossy(&doc).contains("<file name=\"summary\">"));
    let www = dir.path().join("www");
    std::fs::create_dir_all(&www).unwrap();
    std::fs::write(www.join("metalink.xml"), &doc).unwrap();

    // Warm up, then sample RSS every 5 s while wrk runs.
    wrk(&url, 2);
    let sampler = std::thread::spawn(move || {
        let mut samples = Vec::new();
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(secs) {
            samples.push((start.elapsed().as_secs(), rss_kib(pid)));
            std::thread::sleep(Duration::from_secs(5));
        }
        samples
    });
    let load_before = loadavg();
    let ticks_before = cpu_ticks(pid);
    let (rps, p99, text) = wrk(&url, secs);
    let cpu_secs = (cpu_ticks(pid) - ticks_before) as f64 / 100.0;
    let requests = rps * secs as f64;
    let samples = sampler.join().unwrap();
    let rss_end = rss_kib(pid);
    drop(server);

    let py = HttpServer::serve(&www);
    let (ref_rps, ref_p99, _) = wrk(&format!("{}metalink.xml", py.url), (secs / 6).max(5));
    drop(py);

    println!("{text}");
    println!(
        "document: {} bytes, 30 mirrors, 500 repositories",
        doc.len()
    );
    println!("RSS samples (s, KiB): {samples:?}, at end {rss_end}");
    let first = samples.get(1).map_or(samples[0].1, |s| s.1);
    let growth = rss_end as f64 / first as f64;
    println!(
        "atomic-factory mirror serve /metalink: {rps:.0} req/s, p99 {p99:.2} ms \
         (targets >= 20000 req/s, < 5 ms): {}",
        if rps >= 20000.0 && p99 < 5.0 {
            "MET"
        } else {
            "MISSED"
        }
    );
    println!(
        "python3 -m http.server, same document as a static file: {ref_rps:.0} req/s, p99 {ref_p99:.2} ms"
    );
    println!("ratio (ours / python static): {:.1}x", rps / ref_rps);
    let us_per_req = cpu_secs * 1e6 / requests;
    println!(
        "server CPU: {cpu_secs:.1} s for {requests:.0} requests = {us_per_req:.1} us/request \
         (capacity on 2 free cores ~ {:.0} req/s); load average before/after: {load_before} / {}",
        2e6 / us_per_req,
        loadavg()
    );
    println!(
        "memory: {first} KiB at 5 s -> {rss_end} KiB at {secs} s ({:+.1}%): {}",
        (growth - 1.0) * 100.0,
        if growth < 1.1 { "flat" } else { "GROWING" }
    );
    assert!(growth < 1.5, "memory grew from {first} to {rss_end} KiB");
}
