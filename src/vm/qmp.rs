//! A minimal QMP client: JSON lines over QEMU's unix socket.
//!
//! Hand-written instead of the qapi/qapi-qmp crates (docs/crates.md §1): qapi-qmp generates
//! ~720 KB of Rust at build time (+20 s per build profile on our shared 2-core machines), its
//! schema is QEMU 9.1 and an event it does not know kills its stream. We need four commands
//! (qmp_capabilities, query-blockstats, screendump, quit) and to see every event, known or
//! not, so a tolerant JSON-lines reader of ~100 lines is the smaller and safer piece.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;
use tokio::net::unix::OwnedWriteHalf;
use tokio::sync::{Mutex, mpsc, oneshot};

type Pending = Arc<std::sync::Mutex<HashMap<u64, oneshot::Sender<Result<Value>>>>>;

/// An asynchronous QMP event, kept as raw JSON so that unknown events cannot break anything.
#[derive(Debug, Clone)]
pub struct QmpEvent {
    /// The event's name (`SHUTDOWN`, `BLOCK_IO_ERROR`, ...).
    pub name: String,
    /// Its `data` member (`Null` when the event has none).
    pub data: Value,
}

/// A connection to QEMU's QMP socket: any task may send commands; each reply is matched to
/// its command by id.
pub struct Qmp {
    writer: Mutex<OwnedWriteHalf>,
    pending: Pending,
    next_id: AtomicU64,
}

impl Qmp {
    /// Connects (retrying until QEMU has created the socket), reads the greeting and leaves
    /// capabilities negotiation mode. Events arrive on the returned channel.
    pub async fn connect(
        socket: &Path,
        wait: Duration,
    ) -> Result<(Qmp, mpsc::UnboundedReceiver<QmpEvent>)> {
        let deadline = tokio::time::Instant::now() + wait;
        let stream = loop {
            match UnixStream::connect(socket).await {
                Ok(s) => break s,
                Err(e) if tokio::time::Instant::now() < deadline => {
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(e) => {
                    return Err(e)
                        .with_context(|| format!("connecting to QMP socket {}", socket.display()));
                }
            }
        };
        let (read, write) = stream.into_split();
        let mut lines = BufReader::new(read).lines();
        let greeting = lines
            .next_line()
            .await?
            .context("QMP closed before its greeting")?;
        let greeting: Value =
            serde_json::from_str(&greeting).context("QMP greeting is not JSON")?;
        if greeting.get("QMP").is_none() {
            bail!("unexpected QMP greeting: {greeting}");
        }
        let pending: Pending = Arc::default();
        let (tx, rx) = mpsc::unbounded_channel();
        let p2 = pending.clone();
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                let Ok(v) = serde_json::from_str::<Value>(&line) else {
                    continue;
                };
                if let Some(name) = v.get("event").and_then(Value::as_str) {
                    let data = v.get("data").cloned().unwrap_or(Value::Null);
                    let _ = tx.send(QmpEvent {
                        name: name.to_string(),
                        data,
                    });
                } else if let Some(id) = v.get("id").and_then(Value::as_u64) {
                    let reply = if let Some(r) = v.get("return") {
                        Ok(r.clone())
                    } else {
                        let e = &v["error"];
                        Err(anyhow!("QMP error {}: {}", e["class"], e["desc"]))
                    };
                    if let Some(s) = p2.lock().unwrap().remove(&id) {
                        let _ = s.send(reply);
                    }
                }
            }
            // Connection gone: fail every waiting command.
            for (_, s) in p2.lock().unwrap().drain() {
                let _ = s.send(Err(anyhow!("QMP connection closed")));
            }
        });
        let qmp = Qmp {
            writer: Mutex::new(write),
            pending,
            next_id: AtomicU64::new(1),
        };
        qmp.execute("qmp_capabilities", json!({})).await?;
        Ok((qmp, rx))
    }

    /// Runs `command` with `arguments` and returns its `return` value; a QMP error, a closed
    /// connection or no reply within 10 s is an error.
    pub async fn execute(&self, command: &str, arguments: Value) -> Result<Value> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        self.pending.lock().unwrap().insert(id, tx);
        let mut line =
            serde_json::to_vec(&json!({"execute": command, "arguments": arguments, "id": id}))?;
        line.push(b'\n');
        self.writer
            .lock()
            .await
            .write_all(&line)
            .await
            .with_context(|| format!("sending QMP {command}"))?;
        match tokio::time::timeout(Duration::from_secs(10), rx).await {
            Ok(Ok(r)) => r.with_context(|| format!("QMP {command}")),
            Ok(Err(_)) => bail!("QMP connection closed during {command}"),
            Err(_) => bail!("QMP {command}: no reply within 10 s"),
        }
    }

    /// Bytes written + bytes read + operations on the device `id`, a number that grows
    /// whenever the guest uses the disk.
    pub async fn disk_activity(&self, device_id: &str) -> Result<u64> {
        let stats = self.execute("query-blockstats", json!({})).await?;
        let mut total = 0;
        for dev in stats.as_array().into_iter().flatten() {
            let name = dev.get("device").and_then(Value::as_str).unwrap_or("");
            let qdev = dev.get("qdev").and_then(Value::as_str).unwrap_or("");
            if name == device_id || qdev.contains(device_id) {
                let s = &dev["stats"];
                for k in ["wr_bytes", "rd_bytes", "wr_operations", "flush_operations"] {
                    total += s.get(k).and_then(Value::as_u64).unwrap_or(0);
                }
            }
        }
        Ok(total)
    }

    /// Saves the screen as PNG (QEMU >= 7.1); falls back to PPM. Returns the file written.
    pub async fn screendump(&self, png: &Path) -> Result<std::path::PathBuf> {
        match self
            .execute("screendump", json!({"filename": png, "format": "png"}))
            .await
        {
            Ok(_) => Ok(png.to_path_buf()),
            Err(e) => {
                let ppm = png.with_extension("ppm");
                self.execute("screendump", json!({"filename": ppm}))
                    .await
                    .with_context(|| format!("screendump as PNG failed ({e:#}), and as PPM"))?;
                Ok(ppm)
            }
        }
    }
}
