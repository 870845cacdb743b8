//! Counts bytes at the socket: a TCP relay on 127.0.0.1 between devices and the server.
//!
//! Devices initialised with [`Meter::url`] connect here; every byte of the connection is counted,
//! so HTTP upgrade request and response, WebSocket frame headers and masks, pings and close frames
//! are all included. The relay runs on its own thread, whose CPU time is reported separately so it
//! can be subtracted from the client's.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;

use crate::measure;

#[derive(Default)]
struct Counters {
    up: AtomicU64,
    down: AtomicU64,
    connections: AtomicU64,
    open: AtomicI64,
}

/// Bytes device → server (`up`) and server → device (`down`), and connections opened.
#[derive(Debug, Clone, Copy, Default)]
pub struct Traffic {
    pub up: u64,
    pub down: u64,
    pub connections: u64,
}

impl Traffic {
    pub fn since(self, earlier: Traffic) -> Traffic {
        Traffic {
            up: self.up - earlier.up,
            down: self.down - earlier.down,
            connections: self.connections - earlier.connections,
        }
    }
}

pub struct Meter {
    addr: SocketAddr,
    counters: Arc<Counters>,
    thread_stat: Option<String>,
    _shutdown: oneshot::Sender<()>,
}

impl Meter {
    /// Starts a relay to `upstream` on a free port of 127.0.0.1.
    pub fn start(upstream: SocketAddr) -> Result<Meter> {
        Meter::start_balanced(vec![upstream])
    }

    /// As [`Meter::start`], handing connections to the `upstreams` in turn, as a round-robin
    /// load balancer in front of several relays does.
    pub fn start_balanced(upstreams: Vec<SocketAddr>) -> Result<Meter> {
        if upstreams.is_empty() {
            return Err(anyhow!("a meter needs a relay to forward to"));
        }
        let listener = std::net::TcpListener::bind("127.0.0.1:0").context("bind meter")?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let counters = Arc::new(Counters::default());
        let (shutdown, stopped) = oneshot::channel::<()>();
        let (tid_tx, tid_rx) = std::sync::mpsc::channel();
        let c = counters.clone();
        std::thread::Builder::new()
            .name("bench-meter".into())
            .spawn(move || {
                let _ = tid_tx.send(measure::this_thread_stat_path());
                let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                else {
                    return;
                };
                rt.block_on(async move {
                    let Ok(listener) = TcpListener::from_std(listener) else {
                        return;
                    };
                    tokio::select! {
                        _ = stopped => {}
                        _ = accept_loop(listener, upstreams, c) => {}
                    }
                });
            })?;
        let thread_stat = tid_rx
            .recv_timeout(Duration::from_secs(5))
            .map_err(|_| anyhow!("meter thread did not start"))?;
        Ok(Meter {
            addr,
            counters,
            thread_stat,
            _shutdown: shutdown,
        })
    }

    /// The URL devices use to reach the server through the meter.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn traffic(&self) -> Traffic {
        Traffic {
            up: self.counters.up.load(Ordering::SeqCst),
            down: self.counters.down.load(Ordering::SeqCst),
            connections: self.counters.connections.load(Ordering::SeqCst),
        }
    }

    /// Waits (up to `timeout`) until every relayed connection has closed, so the counts include
    /// the closing handshake.
    pub async fn settle(&self, timeout: Duration) -> Traffic {
        let deadline = Instant::now() + timeout;
        while self.counters.open.load(Ordering::SeqCst) > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        self.traffic()
    }

    /// CPU seconds the relay thread has used (to subtract from the client's).
    pub fn cpu_secs(&self) -> f64 {
        self.thread_stat
            .as_deref()
            .and_then(|p| measure::stat_cpu_secs(p).ok())
            .unwrap_or(0.0)
    }
}

async fn accept_loop(listener: TcpListener, upstreams: Vec<SocketAddr>, counters: Arc<Counters>) {
    let mut turn = 0usize;
    loop {
        let Ok((client, _)) = listener.accept().await else {
            continue;
        };
        let upstream = upstreams[turn % upstreams.len()];
        turn = turn.wrapping_add(1);
        let counters = counters.clone();
        tokio::spawn(async move {
            let Ok(server) = TcpStream::connect(upstream).await else {
                return;
            };
            let _ = client.set_nodelay(true);
            let _ = server.set_nodelay(true);
            counters.connections.fetch_add(1, Ordering::SeqCst);
            counters.open.fetch_add(1, Ordering::SeqCst);
            let (cr, cw) = client.into_split();
            let (sr, sw) = server.into_split();
            tokio::join!(pump(cr, sw, &counters.up), pump(sr, cw, &counters.down));
            counters.open.fetch_sub(1, Ordering::SeqCst);
        });
    }
}

async fn pump(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, count: &AtomicU64) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if to.write_all(&buf[..n]).await.is_err() {
                    break;
                }
                count.fetch_add(n as u64, Ordering::SeqCst);
            }
        }
    }
    let _ = to.shutdown().await;
}
