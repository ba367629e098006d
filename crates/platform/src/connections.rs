//! What every listener does with a connection before any protocol sees it: a cap on the
//! connections one client address holds open, and a deadline for a connection's first bytes —
//! so a client that opens connections and says nothing (or too little to be served) holds
//! neither many sockets nor any of them for long.

use std::{
    collections::HashMap,
    io,
    net::{IpAddr, Ipv6Addr},
    pin::Pin,
    sync::{Arc, Mutex},
    task::{Context, Poll},
    time::Duration,
};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Bytes a connection must send within its first-bytes deadline: the length of the HTTP/2
/// connection preface (any real HTTP/1 request head is longer).
pub const FIRST_BYTES: usize = 24;

/// The address a cap counts connections under: an IPv4 address (IPv4-mapped IPv6 included),
/// or an IPv6 /64 — one host is commonly given a whole /64.
pub fn source_of(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(Ipv6Addr::from(u128::from(v6) & !((1u128 << 64) - 1))),
        },
    }
}

/// Connections open per client address.
type OpenCounts = Arc<Mutex<HashMap<IpAddr, usize>>>;

/// Open connections per client address on one listener, at most `max` each (0: no cap).
#[derive(Debug, Clone)]
pub struct SourceCap {
    listener: &'static str,
    max: usize,
    open: OpenCounts,
}

impl SourceCap {
    pub fn new(listener: &'static str, max: usize) -> Self {
        Self { listener, max, open: Arc::default() }
    }

    /// A place for a connection from `ip`, held until the permit drops; `None` (counted in
    /// `chatmesh_connections_refused_total`) when its source already holds `max`.
    pub fn admit(&self, ip: IpAddr) -> Option<SourcePermit> {
        if self.max == 0 {
            return Some(SourcePermit { source: None });
        }
        let source = source_of(ip);
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let held = open.entry(source).or_default();
        if *held >= self.max {
            drop(open);
            tracing::debug!(%source, listener = self.listener, "connection refused: too many from this address");
            metrics::counter!("chatmesh_connections_refused_total", "listener" => self.listener).increment(1);
            return None;
        }
        *held += 1;
        Some(SourcePermit { source: Some((source, self.open.clone())) })
    }
}

/// One connection's place under a [`SourceCap`], given back when dropped.
#[derive(Debug)]
pub struct SourcePermit {
    source: Option<(IpAddr, OpenCounts)>,
}

impl Drop for SourcePermit {
    fn drop(&mut self) {
        let Some((source, open)) = self.source.take() else { return };
        let mut open = open.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(held) = open.get_mut(&source) {
            *held = held.saturating_sub(1);
            if *held == 0 {
                open.remove(&source);
            }
        }
    }
}

/// An accepted connection: it holds its source's place until dropped, and its reads fail once
/// `deadline` has passed before its first [`FIRST_BYTES`] arrived.
#[derive(Debug)]
pub struct Guarded<S> {
    inner: S,
    /// Bytes still expected before the deadline stops applying.
    awaited: usize,
    deadline: Option<Pin<Box<tokio::time::Sleep>>>,
    _permit: SourcePermit,
}

impl<S> Guarded<S> {
    /// `stream`, with `permit`, to deliver [`FIRST_BYTES`] within `deadline` from now.
    pub fn new(stream: S, permit: SourcePermit, deadline: Duration) -> Self {
        Self {
            inner: stream,
            awaited: FIRST_BYTES,
            deadline: Some(Box::pin(tokio::time::sleep(deadline))),
            _permit: permit,
        }
    }

    pub fn get_ref(&self) -> &S {
        &self.inner
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Guarded<S> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.inner).poll_read(cx, buf);
        let Some(deadline) = this.deadline.as_mut() else { return polled };
        match &polled {
            Poll::Ready(Ok(())) => {
                this.awaited = this.awaited.saturating_sub(buf.filled().len() - before);
                if this.awaited == 0 {
                    this.deadline = None;
                }
            }
            // why: polled only while the reader waits, so its timer wakes this very read
            Poll::Pending if deadline.as_mut().poll(cx).is_ready() => {
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "the connection sent too little before its deadline",
                )));
            }
            _ => {}
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Guarded<S> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

impl<S: tonic::transport::server::Connected> tonic::transport::server::Connected for Guarded<S> {
    type ConnectInfo = S::ConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.inner.connect_info()
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn an_ipv6_host_counts_as_its_64_and_a_mapped_ipv4_as_itself() {
        assert_eq!(source_of(ip("2001:db8:1:2:aaaa::1")), source_of(ip("2001:db8:1:2:bbbb::9")));
        assert_ne!(source_of(ip("2001:db8:1:2::1")), source_of(ip("2001:db8:1:3::1")));
        assert_eq!(source_of(ip("::ffff:10.0.0.1")), ip("10.0.0.1"));
        assert_eq!(source_of(ip("10.0.0.1")), ip("10.0.0.1"));
    }

    #[test]
    fn a_source_holds_at_most_its_cap_and_a_dropped_connection_frees_its_place() {
        let cap = SourceCap::new("test", 2);
        let (a, b) = (cap.admit(ip("10.0.0.1")).unwrap(), cap.admit(ip("10.0.0.1")).unwrap());
        assert!(cap.admit(ip("10.0.0.1")).is_none(), "a third from one address");
        assert!(cap.admit(ip("10.0.0.2")).is_some(), "another address has its own places");
        drop(a);
        let c = cap.admit(ip("10.0.0.1")).expect("a freed place");
        drop((b, c));
        assert!(cap.open.lock().unwrap().is_empty(), "no entry is kept for an address with nothing open");
    }

    #[test]
    fn no_cap_admits_everyone() {
        let cap = SourceCap::new("test", 0);
        let held: Vec<_> = (0..1000).map(|_| cap.admit(ip("10.0.0.1")).unwrap()).collect();
        assert_eq!(held.len(), 1000);
    }

    #[tokio::test(start_paused = true)]
    async fn a_connection_that_sends_too_little_before_its_deadline_fails_its_read() {
        let (mut client, server) = tokio::io::duplex(64);
        let mut guarded =
            Guarded::new(server, SourceCap::new("test", 0).admit(ip("10.0.0.1")).unwrap(), Duration::from_secs(5));
        client.write_all(b"PRI * HTTP/2.0\r\n").await.unwrap();
        let mut buf = [0u8; 64];
        assert_eq!(guarded.read(&mut buf).await.unwrap(), 16);
        let failed = guarded.read(&mut buf).await.expect_err("the deadline passed, eight bytes short");
        assert_eq!(failed.kind(), io::ErrorKind::TimedOut);
    }

    #[tokio::test(start_paused = true)]
    async fn once_its_first_bytes_arrived_a_connection_may_wait_as_long_as_it_likes() {
        let (mut client, server) = tokio::io::duplex(64);
        let mut guarded =
            Guarded::new(server, SourceCap::new("test", 0).admit(ip("10.0.0.1")).unwrap(), Duration::from_secs(5));
        client.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").await.unwrap();
        let mut buf = [0u8; 64];
        assert_eq!(guarded.read(&mut buf).await.unwrap(), FIRST_BYTES);
        let later = async {
            tokio::time::sleep(Duration::from_secs(60)).await;
            client.write_all(b"x").await.unwrap();
            client
        };
        let (read, _client) = tokio::join!(guarded.read(&mut buf), later);
        assert_eq!(read.unwrap(), 1, "read after a minute, past the deadline");
    }
}
