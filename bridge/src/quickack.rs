//! The HTTP listener's connections acknowledge at once.
//!
//! Spin's outbound HTTP client keeps connections to the bridge alive and
//! writes a request's headers and its body as two segments, with Nagle's
//! algorithm on: the body waits until the headers are acknowledged. On a
//! kept-alive connection Linux delays that acknowledgement (up to 40 ms,
//! hoping to piggyback it on an answer that cannot come before the body).
//! Measured under `spin up`: about one publish in two took 44 to 47 ms
//! instead of 2 ms, on every hop a component publishes through (ingress and
//! the executor), so an idle message's reply took ~100 ms at p95.
//!
//! `TCP_QUICKACK` turns the delay off, but Linux clears it as the connection
//! goes on, so it is set again after every read and every write. The bridge
//! sets `TCP_NODELAY` too (its own small answers are not held either). Other
//! systems have no such switch: there the listener is a plain one.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};

/// A TCP listener whose connections acknowledge at once (see the module doc).
pub struct QuickAckListener(pub TcpListener);

impl axum::serve::Listener for QuickAckListener {
    type Io = QuickAck;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        let (tcp, addr) = axum::serve::Listener::accept(&mut self.0).await;
        let _ = tcp.set_nodelay(true);
        let stream = QuickAck(tcp);
        stream.ack_at_once();
        (stream, addr)
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.0.local_addr()
    }
}

/// One accepted connection.
pub struct QuickAck(TcpStream);

impl QuickAck {
    #[cfg(target_os = "linux")]
    fn ack_at_once(&self) {
        // Best effort: a failure only brings back the delay.
        let _ = socket2::SockRef::from(&self.0).set_tcp_quickack(true);
    }

    #[cfg(not(target_os = "linux"))]
    fn ack_at_once(&self) {}
}

impl AsyncRead for QuickAck {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let read = Pin::new(&mut self.0).poll_read(cx, buf);
        if read.is_ready() {
            self.ack_at_once();
        }
        read
    }
}

impl AsyncWrite for QuickAck {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let written = Pin::new(&mut self.0).poll_write(cx, buf);
        if written.is_ready() {
            self.ack_at_once();
        }
        written
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let written = Pin::new(&mut self.0).poll_write_vectored(cx, bufs);
        if written.is_ready() {
            self.ack_at_once();
        }
        written
    }

    fn is_write_vectored(&self) -> bool {
        self.0.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;
    use axum::serve::Listener;

    #[tokio::test]
    async fn accepted_connections_are_in_quickack_mode_without_nagle() {
        let mut listener = QuickAckListener(TcpListener::bind("127.0.0.1:0").await.unwrap());
        let addr = listener.local_addr().unwrap();
        let client = tokio::spawn(TcpStream::connect(addr));
        let (accepted, _) = listener.accept().await;
        let _client = client.await.unwrap().unwrap();
        let socket = socket2::SockRef::from(&accepted.0);
        assert!(socket.tcp_quickack().unwrap());
        assert!(socket.tcp_nodelay().unwrap());
    }
}
