//! The `/health` + `/metrics` service of `examples/health_endpoint.rs`, driven through a
//! failover by a real HTTP client on 127.0.0.1: the status goes pass → warn → pass, the
//! timeline's phases add up to the workload's own measured gap, and the metrics text parses
//! and counts the switch. Real time (real sockets): only outcomes and bounds are asserted.

#[path = "../examples/health_endpoint.rs"]
mod health_endpoint;

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use health_endpoint::{Demo, prometheus, serve};
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;
use tokio::time::{Instant, sleep};

type HttpClient = Client<HttpConnector, Empty<Bytes>>;

async fn get(client: &HttpClient, addr: SocketAddr, path: &str) -> (u16, String) {
    let uri = format!("http://{addr}{path}").parse().unwrap();
    let resp = client.get(uri).await.unwrap();
    let code = resp.status().as_u16();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (code, String::from_utf8(body.to_vec()).unwrap())
}

async fn health(client: &HttpClient, addr: SocketAddr) -> (u16, Value) {
    let (code, body) = get(client, addr, "/health").await;
    (code, serde_json::from_str(&body).unwrap())
}

/// Polls `/health` until its status is `want` (at most `limit`); returns the document.
async fn wait_for(client: &HttpClient, addr: SocketAddr, want: &str, limit: Duration) -> Value {
    let until = Instant::now() + limit;
    loop {
        let (code, h) = health(client, addr).await;
        if h["status"] == want {
            assert_eq!(code, 200, "pass and warn are served with 200");
            return h;
        }
        assert!(
            Instant::now() < until,
            "status stayed {} (wanted {want})",
            h["status"]
        );
        sleep(Duration::from_millis(20)).await;
    }
}

/// Every sample line of a Prometheus text: (name, labels, value).
fn parse_metrics(text: &str) -> Vec<(String, String, f64)> {
    text.lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            let (series, value) = l.rsplit_once(' ').expect("`series value`");
            let value: f64 = value
                .parse()
                .unwrap_or_else(|_| panic!("a number in {l:?}"));
            let (name, labels) = match series.split_once('{') {
                Some((n, rest)) => (n, rest.strip_suffix('}').expect("closed labels")),
                None => (series, ""),
            };
            assert!(
                name.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
                "metric name {name:?}"
            );
            (name.to_owned(), labels.to_owned(), value)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_timeline_and_metrics_through_a_failover() {
    let demo = Demo::start(prometheus()).unwrap();
    let addr = serve(demo.clone(), SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .unwrap();
    assert!(addr.ip().is_loopback());
    let client: HttpClient = Client::builder(TokioExecutor::new()).build_http();

    let h = wait_for(&client, addr, "pass", Duration::from_secs(2)).await;
    assert_eq!(h["checks"]["sim:primary"][0]["componentId"], "primary");
    assert_eq!(h["checks"]["sim:secondary"].as_array().unwrap().len(), 2);
    sleep(Duration::from_millis(200)).await;

    // The primary refuses every connection: failed over, still serving → warn.
    demo.sim.set_down("primary", true);
    let h = wait_for(&client, addr, "warn", Duration::from_secs(3)).await;
    let primary = &h["checks"]["sim:primary"][0];
    assert_eq!(primary["componentId"], "secondary-1");
    assert_eq!(primary["status"], "warn");
    assert_eq!(primary["observedValue"]["generation"], 1);
    let old = h["checks"]["sim:secondary"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["componentId"] == "primary")
        .unwrap();
    assert_eq!(old["status"], "warn");
    assert_ne!(old["observedValue"]["state"], "up");

    // The timeline's phases of that failover add up to the gap the workload measured.
    let until = Instant::now() + Duration::from_secs(3);
    let gap = loop {
        if let Some(g) = demo.gap.lock().unwrap().measured() {
            break g;
        }
        assert!(
            Instant::now() < until,
            "the workload never succeeded on the new primary"
        );
        sleep(Duration::from_millis(10)).await;
    };
    let (code, body) = get(&client, addr, "/timeline").await;
    assert_eq!(code, 200);
    let tl: Value = serde_json::from_str(&body).unwrap();
    let f = &tl["failovers"][0];
    assert_eq!(
        (f["from"].as_str(), f["to"].as_str()),
        (Some("primary"), Some("secondary-1"))
    );
    let p = &f["phases"];
    let sum: f64 = ["detectionMs", "rediscoveryMs", "switchMs", "firstSuccessMs"]
        .iter()
        .map(|k| p[k].as_f64().unwrap())
        .sum();
    assert!((sum - p["totalMs"].as_f64().unwrap()).abs() < 0.01);
    let gap_ms = gap.as_secs_f64() * 1e3;
    assert!(
        (sum - gap_ms).abs() <= 0.05 * gap_ms + 0.1,
        "phases sum {sum:.3} ms vs measured gap {gap_ms:.3} ms"
    );
    let names: Vec<_> = tl["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event"].as_str().unwrap().to_owned())
        .collect();
    let at = |k: &str| {
        names
            .iter()
            .position(|n| n == k)
            .unwrap_or_else(|| panic!("{k} in {names:?}"))
    };
    assert!(
        at("down") < at("switch") && at("switch") < at("failover"),
        "{names:?}"
    );

    // Back: the router fails back once the primary has stayed up → pass.
    demo.sim.set_down("primary", false);
    let h = wait_for(&client, addr, "pass", Duration::from_secs(5)).await;
    assert_eq!(h["checks"]["sim:primary"][0]["componentId"], "primary");

    // The metrics parse, and count the switch and the attempts.
    let (code, text) = get(&client, addr, "/metrics").await;
    assert_eq!(code, 200);
    let samples = parse_metrics(&text);
    let sum_of = |name: &str, label: &str| -> f64 {
        samples
            .iter()
            .filter(|(n, l, _)| n == name && l.contains(label) && l.contains("router=\"sim\""))
            .map(|(_, _, v)| v)
            .sum()
    };
    assert_eq!(
        sum_of("switchover_switches", "reason=\"failover\""),
        1.0,
        "{text}"
    );
    assert_eq!(sum_of("switchover_switches", "reason=\"failback\""), 1.0);
    assert!(sum_of("switchover_attempts", "outcome=\"success\"") > 10.0);
    // Probes count toward the ejection too, so the calls saw at least one refusal, not three.
    assert!(sum_of("switchover_attempts", "outcome=\"transient\"") >= 1.0);
    assert_eq!(sum_of("switchover_generation", ""), 2.0);
    assert_eq!(
        sum_of(
            "switchover_endpoint_state",
            "endpoint=\"primary\",state=\"up\""
        ),
        1.0
    );
    assert!(sum_of("switchover_failover_duration_count", "reason=\"failover\"") >= 1.0);
    demo.stop();
}
