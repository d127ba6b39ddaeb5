//! An HTTP API with a fallback, called through the `tower` layer: a local hyper server that
//! throttles (`429` + `Retry-After`), fails (`503`), recovers and then dies, a second server as
//! the fallback, and one workload calling `GET /orders` through [`Upstreams`] the whole time.
//!
//! ```text
//! cargo run --all-features --example http_api
//! ```
//!
//! It prints each phase, every switch of the active upstream, and ends with one line:
//! `summary: backend=http switches=N failed_calls=N retry_after_honoured=N max_gap_ms=N`
//! (`retry_after_honoured`: `Retry-After` answers after which the server's next request came
//! no earlier than asked, measured by the server; `max_gap_ms`: the longest time the workload
//! went without a successful call).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use switchover::http::{BaseUrl, HttpPolicy};
use switchover::retry::RetryPolicy;
use switchover::route::{Failback, RouteEvent};
use switchover::tower::Upstreams;
use tokio::net::TcpListener;
use tokio::sync::mpsc::UnboundedReceiver;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tower::{Service, ServiceExt};

type Body = Full<Bytes>;

/// What the primary does now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Serving = 0,
    Throttling = 1,
    Failing = 2,
}

/// A hyper server on 127.0.0.1; it tells how it answers `Retry-After` requests back.
struct Server {
    addr: SocketAddr,
    mode: Arc<AtomicU8>,
    /// `(when a Retry-After went out, the delay it asked for)`, and whether the next request
    /// came late enough.
    asked: Arc<Mutex<Asked>>,
    task: tokio::task::JoinHandle<()>,
}

#[derive(Default)]
struct Asked {
    pending: Option<(Instant, Duration)>,
    honoured: u32,
    early: u32,
    throttled_calls: u32,
}

impl Server {
    async fn start(name: &'static str) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1");
        let addr = listener.local_addr().unwrap();
        let mode = Arc::new(AtomicU8::new(Mode::Serving as u8));
        let asked = Arc::new(Mutex::new(Asked::default()));
        let (m, a) = (Arc::clone(&mode), Arc::clone(&asked));
        let task = tokio::spawn(async move {
            let mut conns = JoinSet::new();
            while let Ok((stream, _)) = listener.accept().await {
                while conns.try_join_next().is_some() {}
                let (m, a) = (Arc::clone(&m), Arc::clone(&a));
                conns.spawn(async move {
                    let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                        let res = answer(name, &req, &m, &a);
                        async move { Ok::<_, Infallible>(res) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Server {
            addr,
            mode,
            asked,
            task,
        }
    }

    fn set(&self, mode: Mode) {
        self.mode.store(mode as u8, Ordering::Relaxed);
    }

    async fn kill(&mut self) {
        self.task.abort();
        let _ = (&mut self.task).await;
    }
}

/// The server's answer, by mode. Throttling is a rate limit: every fifth call is refused with
/// `429` and `Retry-After: 1`, and so is every call that comes back before that second is up.
fn answer(
    name: &str,
    req: &Request<Incoming>,
    mode: &AtomicU8,
    asked: &Mutex<Asked>,
) -> Response<Body> {
    let now = Instant::now();
    let mut asked = asked.lock().unwrap();
    let probe = req.uri().path() == "/health";
    let mut early = false;
    if !probe && let Some((at, delay)) = asked.pending {
        if now - at >= delay {
            asked.honoured += 1;
            asked.pending = None;
        } else {
            asked.early += 1;
            early = true;
        }
    }
    let status = match mode.load(Ordering::Relaxed) {
        m if m == Mode::Throttling as u8 && !probe => {
            asked.throttled_calls += 1;
            if early || asked.throttled_calls.is_multiple_of(5) {
                if !early {
                    asked.pending = Some((now, Duration::from_secs(1)));
                }
                return Response::builder()
                    .status(429)
                    .header("retry-after", "1")
                    .body(Body::default())
                    .unwrap();
            }
            200
        }
        m if m == Mode::Failing as u8 => 503,
        _ => 200,
    };
    Response::builder()
        .status(status)
        .body(Body::from(name.to_owned()))
        .unwrap()
}

/// What the workload saw.
#[derive(Default)]
struct Tally {
    calls: u32,
    failed: u32,
    by_primary: u32,
    by_fallback: u32,
    last_ok: Option<Instant>,
    max_gap: Duration,
}

impl Tally {
    fn ok(&mut self, who: &str, at: Instant) {
        if let Some(prev) = self.last_ok {
            self.max_gap = self.max_gap.max(at - prev);
        }
        self.last_ok = Some(at);
        match who {
            "primary" => self.by_primary += 1,
            _ => self.by_fallback += 1,
        }
    }
}

/// Calls `GET /orders` every 20 ms until `until`.
async fn workload<S>(api: &mut S, tally: &mut Tally, until: Instant)
where
    S: Service<Request<Body>, Response = Response<Incoming>>,
    S::Error: std::fmt::Display,
{
    while Instant::now() < until {
        tally.calls += 1;
        let req = Request::get("/orders").body(Body::default()).unwrap();
        match api.ready().await {
            Err(e) => {
                tally.failed += 1;
                println!("  not ready: {e}");
            }
            Ok(svc) => match svc.call(req).await {
                Ok(res) if res.status().is_success() => {
                    let body = res.into_body().collect().await.map(|b| b.to_bytes());
                    let who = body
                        .as_deref()
                        .map(String::from_utf8_lossy)
                        .unwrap_or_default();
                    tally.ok(&who, Instant::now());
                }
                Ok(res) => {
                    tally.failed += 1;
                    println!("  call answered {}", res.status());
                }
                Err(e) => {
                    tally.failed += 1;
                    println!("  call failed: {e}");
                }
            },
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The API: the primary, then the fallback, over one hyper client.
type Api = Upstreams<&'static str, BaseUrl<Client<HttpConnector, Body>>, HttpPolicy>;

fn api(primary: SocketAddr, fallback: SocketAddr) -> Result<Api, Box<dyn std::error::Error>> {
    let client = Client::builder(TokioExecutor::new()).build_http::<Body>();
    let policy = RetryPolicy::builder()
        .max_attempts(4)
        .deadline(Duration::from_secs(3))
        .attempt_timeout(Duration::from_millis(500))
        .max_delay(Duration::from_secs(2))
        .build()?;
    let api = Upstreams::builder()
        .upstream(
            "primary",
            BaseUrl::new(client.clone(), &format!("http://{primary}"))?,
        )
        .upstream(
            "fallback",
            BaseUrl::new(client, &format!("http://{fallback}"))?,
        )
        .retry_policy(policy)
        .policy(HttpPolicy::new())
        .health(|h| {
            h.failure_threshold(3)
                .ejection_base(Duration::from_millis(300))
                .probe_interval(Duration::from_millis(100))
                .probe_timeout(Duration::from_millis(200))
        })
        .probe(
            || Request::get("/health").body(Body::default()).unwrap(),
            |res: &Response<Incoming>| res.status().is_success(),
        )
        .failback(Failback::After(Duration::from_secs(1)))
        .build()?;
    Ok(api)
}

/// What the primary does in each phase, and for how long (`None`: it dies).
const PHASES: [(&str, u64, Option<Mode>); 5] = [
    ("serving", 1000, Some(Mode::Serving)),
    (
        "throttling (429, Retry-After: 1)",
        2500,
        Some(Mode::Throttling),
    ),
    ("failing (503)", 1500, Some(Mode::Failing)),
    (
        "recovered (failback after 1 s up)",
        2500,
        Some(Mode::Serving),
    ),
    ("dead (process gone, port refused)", 1500, None),
];

/// Prints the switches since the last call; returns how many there were.
fn report_switches(
    events: &mut UnboundedReceiver<RouteEvent<&'static str>>,
    start: Instant,
) -> u32 {
    let mut n = 0;
    while let Ok(ev) = events.try_recv() {
        if let RouteEvent::Switched {
            from,
            to,
            reason,
            at,
            ..
        } = ev
        {
            n += 1;
            let ms = (at - start).as_millis();
            println!("{ms:>6} ms  switched {from} -> {to} ({reason})");
        }
    }
    n
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut primary = Server::start("primary").await;
    let fallback = Server::start("fallback").await;
    println!("primary on {}, fallback on {}", primary.addr, fallback.addr);
    let mut api = api(primary.addr, fallback.addr)?;
    let mut events = api.router().subscribe();
    let start = Instant::now();
    let (mut tally, mut switches) = (Tally::default(), 0);
    for (name, ms, mode) in PHASES {
        match mode {
            Some(mode) => primary.set(mode),
            None => primary.kill().await,
        }
        println!("{:>6} ms  primary {name}", start.elapsed().as_millis());
        let before = (tally.by_primary, tally.by_fallback);
        let until = Instant::now() + Duration::from_millis(ms);
        workload(&mut api, &mut tally, until).await;
        switches += report_switches(&mut events, start);
        println!(
            "          served: {} by primary, {} by fallback",
            tally.by_primary - before.0,
            tally.by_fallback - before.1
        );
    }
    if let Some(last) = tally.last_ok {
        tally.max_gap = tally.max_gap.max(last.elapsed());
    }
    let asked = primary.asked.lock().unwrap();
    println!(
        "{} calls, {} failed; Retry-After: {} honoured, {} retried early",
        tally.calls, tally.failed, asked.honoured, asked.early
    );
    println!(
        "summary: backend=http switches={switches} failed_calls={} retry_after_honoured={} max_gap_ms={}",
        tally.failed,
        asked.honoured,
        tally.max_gap.as_millis()
    );
    Ok(())
}
