//! A byte stream that ends at a cut: a pub/sub connection ends when its node is declared down
//! (a frozen or cut-off node never closes the socket itself, and nothing else bounds a
//! subscription).

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::backend::Cut;

/// The error every read and write returns once the cut came.
pub(crate) const CUT_MESSAGE: &str = "the node was declared down: connection ended";

/// `S`, until `cut` resolves; then every read and write fails with
/// [`ConnectionAborted`](io::ErrorKind::ConnectionAborted) ([`CUT_MESSAGE`]).
pub(crate) struct CutIo<S> {
    inner: S,
    /// The node, for the log line at the cut.
    node: String,
    /// `None` once it came.
    cut: Option<Cut>,
}

impl<S> CutIo<S> {
    pub(crate) fn new(inner: S, cut: Cut, node: String) -> Self {
        CutIo {
            inner,
            node,
            cut: Some(cut),
        }
    }

    /// `Err` once the cut came (registering `cx` to be woken when it comes).
    fn check(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        if let Some(cut) = self.cut.as_mut()
            && cut.as_mut().poll(cx).is_ready()
        {
            self.cut = None;
            tracing::info!(target: "switchover::redis", node = %self.node, "ended a pub/sub connection: its node was declared down");
        }
        match self.cut {
            Some(_) => Ok(()),
            None => Err(io::Error::new(
                io::ErrorKind::ConnectionAborted,
                CUT_MESSAGE,
            )),
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for CutIo<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.check(cx)?;
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for CutIo<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        this.check(cx)?;
        Pin::new(&mut this.inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.check(cx)?;
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn reads_and_writes_pass_until_the_cut_then_fail_and_a_pending_read_wakes() {
        let (a, mut b) = tokio::io::duplex(64);
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let mut io = CutIo::new(
            a,
            Box::pin(async move {
                let _ = rx.await;
            }),
            "test".to_owned(),
        );
        io.write_all(b"ping").await.unwrap();
        let mut got = [0u8; 4];
        b.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"ping");
        b.write_all(b"pong").await.unwrap();
        io.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"pong");

        // A read waiting for bytes that never come ends at the cut.
        let reader = tokio::spawn(async move {
            let mut one = [0u8; 1];
            let r = io.read(&mut one).await;
            (r.map_err(|e| (e.kind(), e.to_string())), io)
        });
        tokio::task::yield_now().await;
        tx.send(()).unwrap();
        let (r, mut io) = reader.await.unwrap();
        assert_eq!(
            r,
            Err((io::ErrorKind::ConnectionAborted, CUT_MESSAGE.to_owned()))
        );
        let w = io.write_all(b"x").await.unwrap_err();
        assert_eq!(w.kind(), io::ErrorKind::ConnectionAborted);
        drop(b);
    }
}
