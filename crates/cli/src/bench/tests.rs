//! The load generator against real servers on 127.0.0.1:0: the echo baseline, one that always
//! answers 500, one that hangs up; and its pure parts (arguments, schedule, body check).

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::http::StatusCode;
use axum::routing::post;
use clap::Parser;
use tokio::net::TcpListener;

use super::BenchArgs;
use super::connection::Connection;
use super::echo::serve_echo;
use super::execute::execute;
use super::plan::{Pace, Plan, Stop};
use super::report::Report;
use super::schedule::{Phase, Schedule, closed_phase};
use super::tally::{self, Tally, Transport};

const BODY: &str = r#"{"Name":{"First":"John","Last":"Doe"},"Tags":[1,2,3]}"#;

#[derive(Debug, Parser)]
struct Cli {
    #[command(flatten)]
    args: BenchArgs,
}

fn parse(args: &[&str]) -> Result<BenchArgs, clap::Error> {
    Cli::try_parse_from(std::iter::once("bench").chain(args.iter().copied())).map(|cli| cli.args)
}

fn plan(addr: SocketAddr, args: &[&str]) -> Plan {
    let url = format!("http://{addr}/echo");
    let mut all = vec!["--url", &url, "--quiet"];
    all.extend_from_slice(args);
    let args = parse(&all).unwrap();
    let url = args.url.clone().unwrap();
    Plan::new(&args, url).unwrap()
}

async fn echo_server() -> SocketAddr {
    let listener = TcpListener::bind(("127.0.0.1", 0)).await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(serve_echo(listener));
    addr
}

async fn server(router: Router) -> SocketAddr {
    let listener = TcpListener::bind(("127.0.0.1", 0)).await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await });
    addr
}

fn json(report: &Report) -> serde_json::Value {
    serde_json::to_value(report.summary()).unwrap()
}

fn assert_percentiles_ordered(report: &Report) {
    let l = report.latency();
    assert!(l.p50 > 0, "{l:?}");
    assert!(
        l.p50 <= l.p90 && l.p90 <= l.p99 && l.p99 <= l.p99_9 && l.p99_9 <= l.max,
        "{l:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closed_loop_counts_every_request_and_each_echo_matches() {
    let addr = echo_server().await;
    let plan = plan(
        addr,
        &[
            "--body-json",
            BODY,
            "-n",
            "300",
            "-c",
            "4",
            "--warmup",
            "0s",
            "--check-echo",
        ],
    );

    let report = execute(plan, true).await.unwrap();

    assert_eq!(report.requests(), 300);
    assert_eq!(report.ok(), 300);
    assert_eq!(report.errors(), 0, "{}", report.text());
    assert!(report.checked_echo);
    assert_eq!(
        report.tally.mismatched, 0,
        "every response body is the request body"
    );
    assert_percentiles_ordered(&report);
    assert!(report.throughput() > 0.0);
    assert_eq!(report.warning(), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_echo_returns_the_body_it_was_sent() {
    let addr = echo_server().await;
    let plan = plan(addr, &["--body-json", BODY]);
    let mut conn = Connection::open(addr).await.unwrap();

    for _ in 0..3 {
        assert!(conn.is_usable().await);
        let answer = conn.exchange(plan.request.request(), true).await.unwrap();
        assert_eq!(answer.status, StatusCode::OK);
        assert_eq!(answer.body.as_deref(), Some(BODY.as_bytes()));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_is_not_the_echo_counts_as_a_mismatch() {
    let addr = server(Router::new().route("/echo", post(|| async { r#"{"other":true}"# }))).await;
    let plan = plan(
        addr,
        &[
            "--body-json",
            BODY,
            "-n",
            "20",
            "-c",
            "2",
            "--warmup",
            "0s",
            "--check-echo",
        ],
    );

    let report = execute(plan, true).await.unwrap();

    assert_eq!(report.requests(), 20);
    assert_eq!(report.errors(), 0);
    assert_eq!(report.tally.mismatched, 20);
    assert!(report.text().contains("MISMATCHED"), "{}", report.text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_loop_sends_at_the_requested_rate() {
    let addr = echo_server().await;
    let plan = plan(
        addr,
        &[
            "--body-json",
            BODY,
            "--rate",
            "200",
            "-d",
            "1s",
            "--warmup",
            "0s",
            "-c",
            "4",
        ],
    );

    let report = execute(plan, true).await.unwrap();

    assert!(
        (150..=250).contains(&report.requests()),
        "{}",
        report.text()
    );
    assert_eq!(report.errors(), 0, "{}", report.text());
    assert_eq!(report.tally.unsent, 0);
    assert_percentiles_ordered(&report);
    assert_eq!(json(&report)["mode"], "open");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_answering_500_shows_as_errors_by_status() {
    let failing = || async { (StatusCode::INTERNAL_SERVER_ERROR, "boom") };
    let addr = server(Router::new().route("/echo", post(failing))).await;
    let plan = plan(
        addr,
        &["--body-json", BODY, "-n", "50", "-c", "4", "--warmup", "0s"],
    );

    let report = execute(plan, true).await.unwrap();

    assert_eq!(report.requests(), 50);
    assert_eq!(report.ok(), 0);
    assert_eq!(report.errors(), 50);
    assert_eq!(report.status_errors().get(&500), Some(&50));
    assert_eq!(report.transport_errors(), 0);
    let text = report.text();
    assert!(
        text.contains("FAILED") && text.contains("status 500: 50"),
        "{text}"
    );
    assert_eq!(json(&report)["errors"]["by_status"]["500"], 50);
    assert!(
        report
            .warning()
            .unwrap()
            .contains("50 of 50 requests failed")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_hangs_up_shows_as_transport_errors() {
    let listener = TcpListener::bind(("127.0.0.1", 0)).await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            drop(stream);
        }
    });
    let plan = plan(
        addr,
        &["--body-json", BODY, "-n", "10", "-c", "2", "--warmup", "0s"],
    );

    let report = execute(plan, true).await.unwrap();

    assert_eq!(report.requests(), 10);
    assert_eq!(report.transport_errors(), 10, "{}", report.text());
    assert_eq!(report.errors(), 10);
    assert!(report.text().contains("transport "), "{}", report.text());
}

#[test]
fn the_open_schedule_spreads_requests_evenly_over_connections() {
    let s = Schedule::new(
        100.0,
        4,
        Duration::from_millis(100),
        Stop::After(Duration::from_secs(1)),
    );

    assert_eq!(s.total(), 110, "10 warm-up requests, then 100 measured");
    assert!(!s.is_measured(9));
    assert!(s.is_measured(10) && s.is_measured(109) && !s.is_measured(110));
    assert_eq!(s.due(0), Duration::ZERO);
    assert_eq!(s.due(10), Duration::from_millis(100));
    assert_eq!(s.measure_start(), Duration::from_millis(100));
    assert_eq!(s.requests_of(1).take(3).collect::<Vec<_>>(), [1, 5, 9]);
    assert!((0..110).all(|i| s.requests_of(s.connection_of(i)).any(|j| j == i)));
    let per_connection: Vec<usize> = (0..4).map(|c| s.requests_of(c).count()).collect();
    assert_eq!(per_connection, [28, 28, 27, 27]);
}

#[test]
fn an_open_schedule_of_n_requests_measures_n() {
    let s = Schedule::new(200.0, 3, Duration::from_secs(1), Stop::Requests(50));
    assert_eq!(s.total(), 250);
    assert_eq!((0..s.total()).filter(|&i| s.is_measured(i)).count(), 50);

    let exact = Schedule::new(
        200.0,
        4,
        Duration::ZERO,
        Stop::After(Duration::from_secs(1)),
    );
    assert_eq!(exact.total(), 200);
}

#[test]
fn closed_loop_phases_follow_the_clock() {
    let warmup = Duration::from_secs(1);
    let stop = Stop::After(Duration::from_secs(2));
    let at = |ms| closed_phase(warmup, stop, Duration::from_millis(ms));
    assert_eq!(at(0), Phase::Warmup);
    assert_eq!(at(999), Phase::Warmup);
    assert_eq!(at(1000), Phase::Measured);
    assert_eq!(at(2999), Phase::Measured);
    assert_eq!(at(3000), Phase::Done);
    let counted = closed_phase(warmup, Stop::Requests(5), Duration::from_secs(3600));
    assert_eq!(
        counted,
        Phase::Measured,
        "a count stops by tickets, not time"
    );
}

#[test]
fn defaults_are_a_post_closed_loop_of_16_connections_for_10s() {
    let args = parse(&["--url", "http://127.0.0.1:1/x?y=1"]).unwrap();
    let plan = Plan::new(&args, args.url.clone().unwrap()).unwrap();

    assert_eq!(plan.request.method(), "POST");
    assert_eq!(plan.connections, 16);
    assert_eq!(plan.stop, Stop::After(Duration::from_secs(10)));
    assert_eq!(plan.warmup, Duration::from_secs(1));
    assert_eq!(plan.pace, super::plan::Pace::Closed);
    let request = plan.request.request();
    assert_eq!(request.uri(), "/x?y=1");
    assert_eq!(request.headers()["host"], "127.0.0.1:1");
    assert!(
        request.headers().get("content-type").is_none(),
        "no body, no type"
    );
}

#[test]
fn a_body_gets_a_json_content_type_unless_one_is_given() {
    let url = "http://127.0.0.1:1/";
    let args = parse(&["--url", url, "--body-json", "{}"]).unwrap();
    let plan = Plan::new(&args, args.url.clone().unwrap()).unwrap();
    assert_eq!(
        plan.request.request().headers()["content-type"],
        "application/json"
    );

    let args = parse(&[
        "--url",
        url,
        "--body-json",
        "{}",
        "-H",
        "Content-Type: text/plain",
    ])
    .unwrap();
    let plan = Plan::new(&args, args.url.clone().unwrap()).unwrap();
    assert_eq!(
        plan.request.request().headers()["content-type"],
        "text/plain"
    );
}

#[test]
fn durations_read_as_people_write_them() {
    for (text, ms) in [("10s", 10_000), ("500ms", 500), ("1m", 60_000), ("0s", 0)] {
        let parsed = super::args::parse_duration(text).unwrap();
        assert_eq!(parsed, Duration::from_millis(ms), "{text}");
    }
}

#[test]
fn bad_arguments_are_usage_errors() {
    let rejected = [
        &["--url", "https://127.0.0.1/"][..],
        &["--url", "127.0.0.1:80"],
        &["--url", "http://127.0.0.1/", "--duration", "10"],
        &["--url", "http://127.0.0.1/", "--duration", "0s"],
        &["--url", "http://127.0.0.1/", "--rate", "0"],
        &["--url", "http://127.0.0.1/", "--connections", "0"],
        &["--url", "http://127.0.0.1/", "--requests", "0"],
        &["--url", "http://127.0.0.1/", "-H", "no colon"],
        &["--url", "http://127.0.0.1/", "--body-json", "{not json"],
        &["--url", "http://127.0.0.1/", "-d", "5s", "-n", "5"],
        &[
            "--url",
            "http://127.0.0.1/",
            "--body",
            "f",
            "--body-json",
            "{}",
        ],
        &["--url", "http://127.0.0.1/", "--echo"],
        &["--url", "http://127.0.0.1/", "--listen", "127.0.0.1:0"],
        &[],
    ];
    for args in rejected {
        let e = parse(args).expect_err(&format!("{args:?} is accepted"));
        assert_eq!(e.exit_code(), 2, "{args:?}");
    }
    assert!(parse(&["--echo-only", "--listen", "127.0.0.1:7099"]).is_ok());

    let missing = parse(&[
        "--url",
        "http://127.0.0.1:1/",
        "--body",
        "/nonexistent/body.json",
    ])
    .unwrap();
    let e = Plan::new(&missing, missing.url.clone().unwrap()).unwrap_err();
    assert!(e.contains("/nonexistent/body.json"), "{e}");
}

#[test]
fn an_echo_may_reformat_the_json() {
    let args = parse(&[
        "--url",
        "http://127.0.0.1:1/",
        "--body-json",
        r#"{ "a" : [1, 2] }"#,
        "--check-echo",
    ])
    .unwrap();
    let plan = Plan::new(&args, args.url.clone().unwrap()).unwrap();
    let expected = plan.expect_echo.unwrap();
    assert!(expected.matches(br#"{ "a" : [1, 2] }"#));
    assert!(expected.matches(br#"{"a":[1,2]}"#));
    assert!(!expected.matches(br#"{"a":[2,1]}"#));
    assert!(!expected.matches(b"not json"));
}

#[test]
fn transport_errors_have_stable_names() {
    let names: Vec<_> = [
        Transport::Connect,
        Transport::Timeout,
        Transport::Closed,
        Transport::Protocol,
    ]
    .iter()
    .map(|t| t.as_str())
    .collect();
    assert_eq!(names, ["connect", "timeout", "closed", "protocol"]);
}

fn open_report(lags_us: &[u64], unsent: u64) -> Report {
    let mut tally = Tally::new(&tally::histogram().unwrap());
    for &lag in lags_us {
        tally.lag.saturating_record(lag);
        tally.response(StatusCode::OK, Duration::from_micros(lag + 100), true);
    }
    tally.unsent = unsent;
    Report {
        method: "POST".into(),
        url: "http://127.0.0.1:1/echo".into(),
        pace: Pace::Open { per_second: 100.0 },
        connections: 4,
        stop: Stop::After(Duration::from_secs(1)),
        warmup: Duration::ZERO,
        checked_echo: false,
        elapsed: Duration::from_secs_f64(lags_us.len() as f64 / 100.0),
        tally,
    }
}

#[test]
fn an_open_loop_on_schedule_has_nothing_to_say() {
    let report = open_report(&[50; 100], 0);
    assert!(!report.fell_behind());
    assert_eq!(report.warning(), None);
    assert!(!report.text().contains("LATE") && !report.text().contains("BEHIND"));
}

#[test]
fn requests_sent_late_are_reported_as_such() {
    let mut lags = vec![50; 95];
    lags.extend([5_000; 5]);
    let report = open_report(&lags, 0);

    assert!(!report.fell_behind(), "the rate was still met");
    assert!(
        report.text().contains("LATE         5 requests (5.0%)"),
        "{}",
        report.text()
    );
    assert!(
        report
            .warning()
            .unwrap()
            .contains("5.0% of the requests were sent late")
    );
    assert_eq!(json(&report)["late"], 5);
}

#[test]
fn requests_never_sent_mean_the_client_fell_behind() {
    let report = open_report(&[50; 100], 7);

    assert!(report.fell_behind());
    assert!(
        report.text().contains("7 requests never sent"),
        "{}",
        report.text()
    );
    assert!(report.warning().unwrap().contains("fell behind"));
    assert_eq!(json(&report)["fell_behind"], true);
}
