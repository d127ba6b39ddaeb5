//! A real `/health` + `/metrics` service in front of a simulated failover (no server needed).
//!
//! ```text
//! cargo run --example health_endpoint --features serde,metrics
//! ```
//!
//! It serves, on 127.0.0.1 (a free port, or `PORT`):
//!
//! - `GET /health`: the router's [`Health`] document (IETF health-check draft shape), HTTP 200
//!   for `pass` and `warn`, 503 for `fail`;
//! - `GET /timeline`: the incident timeline as JSON (events and failovers with their phases);
//! - `GET /metrics`: the Prometheus text of every `switchover.*` metric.
//!
//! Meanwhile a workload writes through the router to a simulated primary with two
//! secondaries; after a second the primary refuses every connection, two seconds later it is
//! back (and the router fails back once it has stayed up). It prints `/health` as it goes and
//! the timeline of the failover, and ends with `gap_ms=N phases_sum_ms=N`: the workload's own
//! measured gap (first failed request to the first success on the new primary) and the sum
//! of the timeline's phases. `tests/observability.rs` drives the same service with a real
//! HTTP client.

#![allow(dead_code)] // Also compiled into tests/observability.rs, which uses a part of it.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use switchover::health::{HealthTracker, ProbeResult};
use switchover::observe::{Components, Health, Observe};
use switchover::retry::{ConstantBackoff, RetryPolicy};
use switchover::route::Router;
use switchover::{Classification, Classify};
use tokio::net::TcpListener;
use tokio::time::{Instant, sleep};

pub const NODES: [&str; 3] = ["primary", "secondary-1", "secondary-2"];

#[derive(Debug)]
pub struct Refused;

impl Classify for Refused {
    fn classify(&self) -> Classification {
        Classification::transient().not_executed()
    }
}

/// The simulated nodes: which ones refuse connections.
#[derive(Clone, Default)]
pub struct Sim {
    down: Arc<Mutex<HashMap<&'static str, bool>>>,
}

impl Sim {
    pub fn set_down(&self, node: &'static str, down: bool) {
        self.down.lock().unwrap().insert(node, down);
    }

    async fn call(&self, node: &str) -> Result<(), Refused> {
        if self
            .down
            .lock()
            .unwrap()
            .get(node)
            .copied()
            .unwrap_or(false)
        {
            return Err(Refused);
        }
        sleep(Duration::from_millis(1)).await;
        Ok(())
    }
}

/// The workload's own measure of the first failover: when the first request (a call or a probe)
/// failed, and when the first call after the switch succeeded on the new active endpoint.
#[derive(Default)]
pub struct Gap {
    first_failure: Option<Instant>,
    first_success: Option<Instant>,
}

impl Gap {
    fn failed(&mut self, started: Instant) {
        if self.first_success.is_none() {
            self.first_failure = Some(self.first_failure.map_or(started, |t| t.min(started)));
        }
    }

    /// The gap, once the first failover is over.
    pub fn measured(&self) -> Option<Duration> {
        Some(self.first_success? - self.first_failure?)
    }
}

/// The running demo: the router, the simulated nodes, the workload's gap and the metrics.
#[derive(Clone)]
pub struct Demo {
    pub tracker: HealthTracker<&'static str>,
    pub router: Router<&'static str>,
    pub sim: Sim,
    pub gap: Arc<Mutex<Gap>>,
    pub metrics: PrometheusHandle,
    running: Arc<AtomicBool>,
}

/// Installs the process's Prometheus recorder (once) and returns its handle.
pub fn prometheus() -> PrometheusHandle {
    static HANDLE: std::sync::OnceLock<PrometheusHandle> = std::sync::OnceLock::new();
    HANDLE
        .get_or_init(|| {
            PrometheusBuilder::new()
                .install_recorder()
                .expect("a recorder is installed once")
        })
        .clone()
}

impl Demo {
    /// Builds the tracker and router (install the recorder first) and starts the workload.
    pub fn start(metrics: PrometheusHandle) -> Result<Demo, switchover::ConfigError> {
        let sim = Sim::default();
        let gap = Arc::new(Mutex::new(Gap::default()));
        let (probe_sim, probe_gap) = (sim.clone(), Arc::clone(&gap));
        let tracker = HealthTracker::builder()
            .endpoints(NODES)
            .ejection_base(Duration::from_millis(300))
            .probe(move |id: &&'static str| {
                let (sim, gap, id) = (probe_sim.clone(), Arc::clone(&probe_gap), *id);
                async move {
                    let t = Instant::now();
                    match sim.call(id).await {
                        Ok(()) => ProbeResult::up().with_latency(t.elapsed()),
                        Err(_) => {
                            gap.lock().unwrap().failed(t);
                            ProbeResult::down()
                        }
                    }
                }
            })
            .probe_interval(Duration::from_millis(100))
            .heartbeat(Duration::from_millis(200))
            .build()?;
        let router = Router::builder(&tracker)
            .endpoints(NODES)
            .failback_after(Duration::from_millis(500))
            .observe(Observe::new("sim"))
            .build()?;
        let demo = Demo {
            tracker,
            router,
            sim,
            gap,
            metrics,
            running: Arc::new(AtomicBool::new(true)),
        };
        for _ in 0..2 {
            tokio::spawn(demo.clone().write_loop());
        }
        Ok(demo)
    }

    async fn write_loop(self) {
        let policy = RetryPolicy::builder()
            .max_attempts(6)
            .deadline(Duration::from_secs(1))
            .backoff(ConstantBackoff::new(Duration::from_millis(5)))
            .build()
            .expect("a valid policy");
        while self.running.load(Ordering::Relaxed) {
            let _ = self
                .router
                .run(&policy, |attempt| {
                    let (sim, gap, router) =
                        (self.sim.clone(), Arc::clone(&self.gap), &self.router);
                    let started = Instant::now();
                    async move {
                        let result = sim.call(attempt.id()).await;
                        let mut gap = gap.lock().unwrap();
                        match &result {
                            Err(_) => gap.failed(started),
                            Ok(())
                                if attempt.generation() >= 1
                                    && gap.first_failure.is_some()
                                    && gap.first_success.is_none()
                                    && router.active().endpoint().ptr_eq(attempt.endpoint()) =>
                            {
                                gap.first_success = Some(Instant::now());
                            }
                            Ok(()) => {}
                        }
                        result
                    }
                })
                .await;
            sleep(Duration::from_millis(10)).await;
        }
    }

    /// Stops the workload.
    pub fn stop(&self) {
        self.running.store(false, Ordering::Relaxed);
    }

    /// The health document served on `/health`.
    pub fn health(&self) -> Health {
        self.router
            .health(&Components::new("sim").others("secondary"))
    }
}

/// Serves `/health`, `/timeline` and `/metrics` on `addr` until the task is dropped; returns
/// the bound address.
pub async fn serve(demo: Demo, addr: SocketAddr) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let demo = demo.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req| respond(demo.clone(), req));
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    Ok(local)
}

async fn respond(demo: Demo, req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let (code, kind, body) = match req.uri().path() {
        "/health" => {
            let health = demo.health();
            let body = serde_json::to_vec_pretty(&health).unwrap_or_default();
            (health.status.http_code(), "application/health+json", body)
        }
        "/timeline" => {
            let body = serde_json::to_vec_pretty(&demo.router.timeline()).unwrap_or_default();
            (200, "application/json", body)
        }
        "/metrics" => (
            200,
            "text/plain; version=0.0.4",
            demo.metrics.render().into_bytes(),
        ),
        _ => (404, "text/plain", b"not found\n".to_vec()),
    };
    let response = Response::builder()
        .status(code)
        .header("content-type", kind)
        .body(Full::new(Bytes::from(body)))
        .unwrap_or_else(|_| Response::new(Full::new(Bytes::new())));
    Ok(response)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let demo = Demo::start(prometheus())?;
    let port = std::env::var("PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    let addr = serve(demo.clone(), SocketAddr::from(([127, 0, 0, 1], port))).await?;
    println!("serving http://{addr}/health, /timeline and /metrics");
    let start = Instant::now();
    let show = |what: &str| {
        let h = demo.health();
        let primary = &h.checks("sim:primary")[0];
        println!(
            "[{:>5.2}s] {what:<28} /health status={} primary={}",
            start.elapsed().as_secs_f64(),
            h.status,
            primary.component_id
        );
    };
    sleep(Duration::from_millis(500)).await;
    show("steady state");
    sleep(Duration::from_millis(500)).await;
    demo.sim.set_down("primary", true);
    show("OUTAGE: primary refuses");
    sleep(Duration::from_millis(500)).await;
    show("failed over");
    sleep(Duration::from_millis(1500)).await;
    demo.sim.set_down("primary", false);
    show("primary is back");
    sleep(Duration::from_millis(1500)).await;
    show("failed back");
    demo.stop();

    println!();
    for e in demo.router.timeline().events() {
        if e.kind.name() == "probe" {
            continue;
        }
        let at = e.at.saturating_duration_since(start).as_secs_f64();
        println!(
            "[{at:>5.2}s] timeline {:<22} {}",
            e.kind.name(),
            e.endpoint.unwrap_or("-")
        );
    }
    let failover = demo.router.timeline().failovers().into_iter().next();
    let gap = demo.gap.lock().unwrap().measured();
    if let (Some(f), Some(gap)) = (failover, gap) {
        let p = f.phases;
        println!(
            "failover {} -> {}: detection {:?}, rediscovery {:?}, switch {:?}, first success {:?}",
            f.from, f.to, p.detection, p.rediscovery, p.switch, p.first_success
        );
        println!(
            "gap_ms={} phases_sum_ms={}",
            gap.as_millis(),
            p.total().as_millis()
        );
    }
    if std::env::var_os("HOLD").is_some() {
        println!("serving until interrupted (HOLD is set)");
        tokio::signal::ctrl_c().await?;
    }
    Ok(())
}
