//! A hyper server on 127.0.0.1 for the `tower` tests: answers from a closure, logs every
//! request, and can be killed (its port then refuses connections).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::{Method, Request, Response};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::Body;

/// One request as the server saw it.
#[derive(Clone, Debug)]
pub(crate) struct Seen {
    pub(crate) n: usize,
    pub(crate) method: Method,
    pub(crate) path: String,
    pub(crate) at: Instant,
}

type Reply = dyn Fn(&Seen) -> (Duration, Response<Body>) + Send + Sync;

/// A hyper server on 127.0.0.1 that answers by `reply` and logs every request; `kill` stops
/// it (the port then refuses connections).
pub(crate) struct Server {
    pub(crate) addr: SocketAddr,
    log: Arc<Mutex<Vec<Seen>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Server {
    pub(crate) async fn start(
        reply: impl Fn(&Seen) -> (Duration, Response<Body>) + Send + Sync + 'static,
    ) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let reply: Arc<Reply> = Arc::new(reply);
        let task = tokio::spawn(accept(listener, Arc::clone(&log), reply));
        Server { addr, log, task }
    }

    pub(crate) fn base(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub(crate) fn seen(&self) -> Vec<Seen> {
        self.log.lock().unwrap().clone()
    }

    pub(crate) fn count(&self, method: Method) -> usize {
        self.seen().iter().filter(|s| s.method == method).count()
    }

    /// Stops accepting and closes every connection; returns once the port refuses.
    pub(crate) async fn kill(&mut self) {
        self.task.abort();
        let _ = (&mut self.task).await;
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Accepts connections until aborted; aborting drops the `JoinSet`, which ends every
/// connection.
async fn accept(listener: TcpListener, log: Arc<Mutex<Vec<Seen>>>, reply: Arc<Reply>) {
    let mut conns = JoinSet::new();
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        while conns.try_join_next().is_some() {}
        let (log, reply) = (Arc::clone(&log), Arc::clone(&reply));
        conns.spawn(async move {
            let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                let seen = {
                    let mut log = log.lock().unwrap();
                    let seen = Seen {
                        n: log.len(),
                        method: req.method().clone(),
                        path: req.uri().path().to_owned(),
                        at: Instant::now(),
                    };
                    log.push(seen.clone());
                    seen
                };
                let (delay, res) = reply(&seen);
                async move {
                    tokio::time::sleep(delay).await;
                    Ok::<_, Infallible>(res)
                }
            });
            let io = TokioIo::new(stream);
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(io, svc)
                .await;
        });
    }
}
