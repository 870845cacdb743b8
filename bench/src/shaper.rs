//! A shaped link: a TCP relay on 127.0.0.1 that carries at most `rate` bytes a second each way
//! (shared by every connection, as one phone's uplink is), counts the bytes, and can cut every
//! open connection at once (a train entering a tunnel). W6 runs its device through it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context, Result};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Mutex, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::meter::Traffic;

/// One direction of the link: when it is free again, and what it carried.
#[derive(Default)]
struct Direction {
    free_at: Mutex<Option<Instant>>,
    bytes: AtomicU64,
}

struct Link {
    rate: u64,
    up: Direction,
    down: Direction,
    connections: AtomicU64,
}

pub struct Shaper {
    addr: SocketAddr,
    link: Arc<Link>,
    cut: watch::Sender<u64>,
    task: JoinHandle<()>,
}

impl Shaper {
    /// Starts a link of `rate` bytes a second each way to `upstream`.
    pub async fn start(upstream: SocketAddr, rate: u64) -> Result<Shaper> {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .context("bind shaper")?;
        let addr = listener.local_addr()?;
        let link = Arc::new(Link {
            rate: rate.max(1),
            up: Direction::default(),
            down: Direction::default(),
            connections: AtomicU64::new(0),
        });
        let (cut, cuts) = watch::channel(0u64);
        let l = link.clone();
        // Ends when the shaper is dropped (the task is aborted).
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let (link, mut cuts) = (l.clone(), cuts.clone());
                cuts.mark_unchanged();
                tokio::spawn(async move {
                    let Ok(server) = TcpStream::connect(upstream).await else {
                        return;
                    };
                    let _ = client.set_nodelay(true);
                    let _ = server.set_nodelay(true);
                    link.connections.fetch_add(1, Ordering::SeqCst);
                    let (cr, cw) = client.into_split();
                    let (sr, sw) = server.into_split();
                    // A cut drops both halves at once, mid-frame, as a lost radio link does.
                    tokio::select! {
                        _ = cuts.changed() => {}
                        () = async {
                            tokio::join!(
                                pump(cr, sw, &link.up, link.rate),
                                pump(sr, cw, &link.down, link.rate)
                            );
                        } => {}
                    }
                });
            }
        });
        Ok(Shaper {
            addr,
            link,
            cut,
            task,
        })
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn traffic(&self) -> Traffic {
        Traffic {
            up: self.link.up.bytes.load(Ordering::SeqCst),
            down: self.link.down.bytes.load(Ordering::SeqCst),
            connections: self.link.connections.load(Ordering::SeqCst),
        }
    }

    /// Drops every connection open now; later ones go through.
    pub fn cut(&self) {
        self.cut.send_modify(|n| *n += 1);
    }
}

impl Drop for Shaper {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn pump(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, dir: &Direction, rate: u64) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        // The link is busy with earlier bytes until `free_at`; these take n / rate after that.
        let done = {
            let mut free_at = dir.free_at.lock().await;
            let now = Instant::now();
            let start = free_at.filter(|t| *t > now).unwrap_or(now);
            let done = start + Duration::from_nanos(n as u64 * 1_000_000_000 / rate);
            *free_at = Some(done);
            done
        };
        tokio::time::sleep_until(done).await;
        if to.write_all(&buf[..n]).await.is_err() {
            break;
        }
        dir.bytes.fetch_add(n as u64, Ordering::SeqCst);
    }
    let _ = to.shutdown().await;
}
