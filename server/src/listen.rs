//! The accept loop: HTTP/1.1 (over TLS when the relay serves it) with a header-read timeout,
//! connections capped per address and in all (refused the moment they are accepted), the read
//! budget of a sync socket before its device signed in, and a graceful shutdown that ends within
//! `shutdown_timeout`.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tower::Service;

use crate::config::Limits;
use crate::metrics::Metrics;

/// Request headers larger than this are refused (431). Browsers and devices send a few hundred
/// bytes; hyper's default (about 400 KiB) would let every half-open connection hold that much.
const MAX_HEAD_BYTES: usize = 16 * 1024;

/// Serves `app` on `listener` (over TLS with `tls`) until `signal` completes; then stops
/// accepting, tells sessions to end (`stopping`), and waits for every connection to close, at
/// most `shutdown_timeout`. Connections open and refused are counted in `metrics`, if given.
pub(crate) async fn serve(
    listener: TcpListener,
    app: Router,
    tls: Option<TlsAcceptor>,
    limits: &Limits,
    signal: impl Future<Output = ()>,
    stopping: &watch::Sender<bool>,
    metrics: Option<Arc<Metrics>>,
) {
    let census = Arc::new(Census::new(limits).counted_in(metrics));
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_buf_size(MAX_HEAD_BYTES);
    let mut connections = JoinSet::new();
    tokio::pin!(signal);
    loop {
        tokio::select! {
            () = &mut signal => break,
            // Finished connections are collected as they end, so the set stays small.
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(accepted) => accepted,
                    Err(e) if is_connection_error(&e) => continue,
                    Err(e) => {
                        // Out of file descriptors, say: wait rather than spin.
                        tracing::error!("accept error: {e}");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        continue;
                    }
                };
                let Some(slot) = census.admit(peer.ip()) else {
                    // A TLS client could not read a plain answer: it is just closed.
                    if tls.is_none() {
                        refuse(stream);
                    }
                    continue;
                };
                let stream = Metered {
                    stream,
                    budget: Arc::new(ReadBudget::unlimited()),
                    _slot: slot,
                };
                let shutdown = stopping.subscribe();
                let http = http.clone();
                let app = app.clone();
                match &tls {
                    None => connections.spawn(connection(http, stream, peer, app, shutdown)),
                    Some(tls) => connections.spawn(handshake(
                        tls.clone(),
                        limits.header_timeout,
                        http,
                        stream,
                        peer,
                        app,
                        shutdown,
                    )),
                };
            }
        }
    }
    drop(listener);
    let _ = stopping.send(true);
    let deadline = tokio::time::Instant::now() + limits.shutdown_timeout;
    // Upgraded sync sockets live outside `connections`, but their slot in the census is only
    // given back when the socket is dropped: wait for the census to empty.
    let drained = tokio::time::timeout_at(deadline, async {
        while census.total() > 0 {
            tokio::select! {
                Some(_) = connections.join_next(), if !connections.is_empty() => {}
                () = tokio::time::sleep(Duration::from_millis(20)) => {}
            }
        }
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            "shutdown: {} connections still open after {:?}; dropping them",
            census.total(),
            limits.shutdown_timeout
        );
    }
    connections.shutdown().await;
}

/// The TLS handshake of one connection, then its HTTP. The handshake has the time request
/// headers have (`header_timeout`), and the connection holds its place in the census throughout:
/// a client that opens TLS and stalls costs what one that stalls in its headers does. It also
/// ends at once on shutdown, having sent no request.
async fn handshake(
    tls: TlsAcceptor,
    timeout: Duration,
    http: http1::Builder,
    stream: Metered,
    peer: SocketAddr,
    app: Router,
    mut shutdown: watch::Receiver<bool>,
) {
    let accepted = tokio::select! {
        accepted = tokio::time::timeout(timeout, tls.accept(stream)) => accepted,
        _ = shutdown.wait_for(|stopping| *stopping) => return,
    };
    match accepted {
        Ok(Ok(stream)) => connection(http, stream, peer, app, shutdown).await,
        // Scanners and clients that do not trust the certificate end here: not worth a warning.
        Ok(Err(e)) => tracing::debug!("TLS handshake with {peer} failed: {e}"),
        Err(_) => tracing::debug!("TLS handshake with {peer} timed out"),
    }
}

/// A connection's socket, and the budget of what it may still read.
trait Socket: AsyncRead + AsyncWrite + Unpin + Send + 'static {
    fn budget(&self) -> Arc<ReadBudget>;
}

impl Socket for Metered {
    fn budget(&self) -> Arc<ReadBudget> {
        self.budget.clone()
    }
}

/// TLS over the metered socket: the budget counts bytes on the wire, TLS records included
/// (about 22 bytes in each record of up to 16 KiB).
impl Socket for tokio_rustls::server::TlsStream<Metered> {
    fn budget(&self) -> Arc<ReadBudget> {
        self.get_ref().0.budget.clone()
    }
}

/// One HTTP/1.1 connection (and, after an upgrade, the sync socket it became).
async fn connection(
    http: http1::Builder,
    stream: impl Socket,
    peer: SocketAddr,
    app: Router,
    mut shutdown: watch::Receiver<bool>,
) {
    let budget = stream.budget();
    let asked = Arc::new(AtomicBool::new(false));
    let asked_in_service = asked.clone();
    let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
        asked_in_service.store(true, Ordering::SeqCst);
        request.extensions_mut().insert(ConnectInfo(peer));
        request.extensions_mut().insert(budget.clone());
        let mut app = app.clone();
        async move { app.call(request).await }
    });
    let conn = http
        .serve_connection(TokioIo::new(stream), service)
        .with_upgrades();
    tokio::pin!(conn);
    tokio::select! {
        done = conn.as_mut() => {
            if let Err(e) = done {
                tracing::debug!("connection from {peer} ended: {e}");
            }
        }
        _ = async { shutdown.wait_for(|stopping| *stopping).await.map(|_| ()) } => {
            // A connection that has not even sent a whole request has nothing to finish.
            if asked.load(Ordering::SeqCst) {
                conn.as_mut().graceful_shutdown();
                let _ = conn.await;
            }
        }
    }
}

fn is_connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

/// Says why, if the socket takes it at once, and closes. Nothing is read or waited for.
fn refuse(stream: TcpStream) {
    let body = "服务器繁忙 Too many connections from this address or in all; try again in a moment";
    let response = format!(
        "HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nContent-Type: text/plain; \
         charset=utf-8\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.try_write(response.as_bytes());
}

/// Open TCP connections, per address and in all.
struct Census {
    open: Mutex<(HashMap<IpAddr, usize>, usize)>,
    per_address: usize,
    total: usize,
    /// When a refusal was last logged: a flood is logged once a minute, not once a connection.
    warned: Mutex<Option<Instant>>,
    metrics: Option<Arc<Metrics>>,
}

impl Census {
    fn new(limits: &Limits) -> Census {
        Census {
            open: Mutex::new((HashMap::new(), 0)),
            per_address: limits.max_connections_per_address,
            total: limits.max_connections,
            warned: Mutex::new(None),
            metrics: None,
        }
    }

    fn counted_in(self, metrics: Option<Arc<Metrics>>) -> Census {
        Census { metrics, ..self }
    }

    fn admit(self: &Arc<Self>, ip: IpAddr) -> Option<Slot> {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let (by_address, total) = &mut *open;
        let from_here = by_address.get(&ip).copied().unwrap_or(0);
        if from_here >= self.per_address || *total >= self.total {
            let total = *total;
            drop(open);
            if let Some(m) = &self.metrics {
                m.connection_refused();
            }
            self.warn(ip, from_here, total);
            return None;
        }
        by_address.insert(ip, from_here + 1);
        *total += 1;
        if let Some(m) = &self.metrics {
            m.connection_opened();
        }
        Some(Slot {
            census: self.clone(),
            ip,
        })
    }

    fn warn(&self, ip: IpAddr, from_here: usize, total: usize) {
        let mut warned = self.warned.lock().unwrap_or_else(|p| p.into_inner());
        if warned.is_none_or(|at| at.elapsed() > Duration::from_secs(60)) {
            *warned = Some(Instant::now());
            tracing::warn!(
                "refusing connections: {from_here} open from {ip} (at most {}), {total} in all \
                 (at most {})",
                self.per_address,
                self.total
            );
        }
    }

    fn total(&self) -> usize {
        self.open.lock().unwrap_or_else(|p| p.into_inner()).1
    }
}

/// A place in the census, given back when the connection's socket is dropped.
struct Slot {
    census: Arc<Census>,
    ip: IpAddr,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut open = self.census.open.lock().unwrap_or_else(|p| p.into_inner());
        let (by_address, total) = &mut *open;
        *total = total.saturating_sub(1);
        if let Some(m) = &self.census.metrics {
            m.connection_closed();
        }
        if let Some(n) = by_address.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                by_address.remove(&self.ip);
            }
        }
    }
}

/// What a connection may still read: unlimited for plain HTTP; armed with
/// `max_first_message_bytes` when it becomes a sync socket, lifted once its device signed in.
/// Counting bytes on the socket, under tungstenite, bounds what an unauthenticated client can
/// make the relay buffer whatever frame length it announces.
#[derive(Debug)]
pub(crate) struct ReadBudget(AtomicUsize);

impl ReadBudget {
    fn unlimited() -> ReadBudget {
        ReadBudget(AtomicUsize::new(usize::MAX))
    }

    /// From now on, at most `bytes` more until [`ReadBudget::lift`].
    pub(crate) fn arm(&self, bytes: usize) {
        self.0.store(bytes, Ordering::SeqCst);
    }

    pub(crate) fn lift(&self) {
        self.0.store(usize::MAX, Ordering::SeqCst);
    }

    /// Whether a read was refused for want of budget.
    pub(crate) fn exhausted(&self) -> bool {
        self.0.load(Ordering::SeqCst) == 0
    }

    fn spend(&self, n: usize) {
        let _ = self
            .0
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |left| {
                (left != usize::MAX).then(|| left.saturating_sub(n))
            });
    }
}

/// An accepted socket with its read budget and its place in the census.
struct Metered {
    stream: TcpStream,
    budget: Arc<ReadBudget>,
    _slot: Slot,
}

impl AsyncRead for Metered {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let left = this.budget.0.load(Ordering::SeqCst);
        if left == usize::MAX {
            return Pin::new(&mut this.stream).poll_read(cx, buf);
        }
        if left == 0 {
            return Poll::Ready(Err(io::Error::other(
                "more bytes than a hello or sign-in needs before signing in",
            )));
        }
        let want = buf.remaining().min(left);
        let mut limited = ReadBuf::new(buf.initialize_unfilled_to(want));
        ready!(Pin::new(&mut this.stream).poll_read(cx, &mut limited))?;
        let n = limited.filled().len();
        buf.advance(n);
        this.budget.spend(n);
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Metered {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_census_caps_each_address_and_the_total() {
        let limits = Limits {
            max_connections_per_address: 2,
            max_connections: 3,
            ..Limits::default()
        };
        let census = Arc::new(Census::new(&limits));
        let a: IpAddr = [10, 0, 0, 1].into();
        let b: IpAddr = [10, 0, 0, 2].into();
        let a1 = census.admit(a).expect("first from a");
        let _a2 = census.admit(a).expect("second from a");
        assert!(census.admit(a).is_none(), "a third from one address");
        let _b1 = census.admit(b).expect("first from b");
        assert!(census.admit(b).is_none(), "a fourth in all");
        drop(a1);
        let _a3 = census.admit(a).expect("a place given back is free again");
        assert_eq!(census.total(), 3);
    }

    #[test]
    fn test_budget_counts_down_and_lifts() {
        let budget = ReadBudget::unlimited();
        budget.spend(10);
        assert!(!budget.exhausted());
        budget.arm(5);
        budget.spend(3);
        assert!(!budget.exhausted());
        budget.spend(3);
        assert!(budget.exhausted());
        budget.lift();
        budget.spend(1_000_000);
        assert!(!budget.exhausted());
    }
}
