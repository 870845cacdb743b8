//! A TCP proxy for fault tests: forwards 127.0.0.1 connections to the relay and, following a
//! plan per connection, cuts them after a number of bytes, delays every chunk, or stalls. Given
//! several relays it is a load balancer: connections go round the relays, and one whose relay
//! does not answer goes to the next (nginx's `proxy_next_upstream error`).

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What happens to one connection.
#[derive(Debug, Clone, Copy, Default)]
pub struct Fault {
    /// Cut both directions once this many bytes went towards the device.
    pub cut_down_after: Option<u64>,
    /// Cut both directions once this many bytes went towards the relay.
    pub cut_up_after: Option<u64>,
    /// Wait this long before forwarding each chunk.
    pub delay: Duration,
    /// After the cut point, hold the connection open but silent for this long before closing.
    pub stall: Duration,
}

pub struct Proxy {
    pub addr: SocketAddr,
    plan: Arc<Mutex<VecDeque<Fault>>>,
    /// Bytes forwarded towards devices, over all connections.
    pub down_bytes: Arc<AtomicU64>,
    /// Bytes forwarded towards the relay, over all connections.
    pub up_bytes: Arc<AtomicU64>,
    /// Connections this proxy cut at their planned byte count.
    cuts: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    pub async fn start(upstream: SocketAddr) -> Proxy {
        Self::balance(vec![upstream]).await
    }

    /// A proxy in front of several relays: each connection goes to the next relay in turn, or
    /// to the one after it if that relay does not accept the connection.
    pub async fn balance(upstreams: Vec<SocketAddr>) -> Proxy {
        assert!(!upstreams.is_empty(), "a proxy needs a relay behind it");
        let upstreams = Arc::new(upstreams);
        let turn = Arc::new(AtomicU64::new(0));
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().expect("proxy addr");
        let plan: Arc<Mutex<VecDeque<Fault>>> = Arc::default();
        let down_bytes = Arc::new(AtomicU64::new(0));
        let up_bytes = Arc::new(AtomicU64::new(0));
        let cuts = Arc::new(AtomicU64::new(0));
        let (p, d, u, c) = (
            plan.clone(),
            down_bytes.clone(),
            up_bytes.clone(),
            cuts.clone(),
        );
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let fault = p.lock().map(|mut q| q.pop_front()).ok().flatten();
                let (d, u, c) = (d.clone(), u.clone(), c.clone());
                let first = turn.fetch_add(1, Ordering::Relaxed) as usize;
                let upstreams = upstreams.clone();
                tokio::spawn(async move {
                    let Some(server) = connect_any(&upstreams, first).await else {
                        return;
                    };
                    if relay(client, server, fault.unwrap_or_default(), d, u).await {
                        c.fetch_add(1, Ordering::Relaxed);
                    }
                });
            }
        });
        Proxy {
            addr,
            plan,
            down_bytes,
            up_bytes,
            cuts,
            task,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Faults for the next connections, in order; later connections pass untouched.
    pub fn plan(&self, faults: impl IntoIterator<Item = Fault>) {
        if let Ok(mut q) = self.plan.lock() {
            q.extend(faults);
        }
    }

    /// Drops the faults planned for connections not made yet: from now on every one passes.
    pub fn clear(&self) {
        if let Ok(mut q) = self.plan.lock() {
            q.clear();
        }
    }

    /// How many planned faults are still waiting for a connection.
    pub fn planned(&self) -> usize {
        self.plan.lock().map(|q| q.len()).unwrap_or(0)
    }

    /// How many connections were cut at their planned byte count so far.
    pub fn cuts(&self) -> u64 {
        self.cuts.load(Ordering::Relaxed)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A connection to the first relay that accepts one, trying each once from `first` on.
async fn connect_any(upstreams: &[SocketAddr], first: usize) -> Option<TcpStream> {
    for k in 0..upstreams.len() {
        let upstream = upstreams[(first + k) % upstreams.len()];
        if let Ok(server) = TcpStream::connect(upstream).await {
            // With nothing listening on `upstream` (a relay being restarted), the kernel may
            // pick that very port as the source and connect the socket to itself, which would
            // also keep the relay from binding it again.
            if server.local_addr().ok() != server.peer_addr().ok() {
                return Some(server);
            }
        }
    }
    None
}

/// Forwards one connection; true if it was cut at a planned byte count.
async fn relay(
    client: TcpStream,
    server: TcpStream,
    fault: Fault,
    down: Arc<AtomicU64>,
    up_count: Arc<AtomicU64>,
) -> bool {
    let (mut cr, mut cw) = client.into_split();
    let (mut sr, mut sw) = server.into_split();
    let up = pump(
        &mut cr,
        &mut sw,
        fault.cut_up_after,
        fault.delay,
        Some(up_count),
    );
    let downstream = pump(
        &mut sr,
        &mut cw,
        fault.cut_down_after,
        fault.delay,
        Some(down),
    );
    // Whichever direction ends (or is cut) ends the connection.
    let cut = tokio::select! {
        cut = up => cut,
        cut = downstream => cut,
    };
    if !fault.stall.is_zero() {
        tokio::time::sleep(fault.stall).await;
    }
    cut
}

async fn pump(
    from: &mut tokio::net::tcp::OwnedReadHalf,
    to: &mut tokio::net::tcp::OwnedWriteHalf,
    cut_after: Option<u64>,
    delay: Duration,
    counter: Option<Arc<AtomicU64>>,
) -> bool {
    let mut buf = vec![0u8; 16 * 1024];
    let mut sent: u64 = 0;
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return false,
            Ok(n) => n,
        };
        let mut n = n as u64;
        if let Some(limit) = cut_after {
            n = n.min(limit.saturating_sub(sent));
        }
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        if to.write_all(&buf[..n as usize]).await.is_err() {
            return false;
        }
        sent += n;
        if let Some(c) = &counter {
            c.fetch_add(n, Ordering::Relaxed);
        }
        if cut_after.is_some_and(|limit| sent >= limit) {
            return true;
        }
    }
}
