//! The outbound address policy against a canary on 127.0.0.1: none of the ways of writing a
//! loopback or internal address, resolving a name to one, or redirecting to one reaches it, and
//! each refusal is a `communication` error naming the rule.

#![allow(clippy::expect_used, clippy::unwrap_used)] // helpers of tests may fail loudly

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use baton_core::{ErrorKind, Format, NoResolver, Workflow, load_str};
use baton_engine::outbound::AddressPolicy;
use baton_engine::{HttpOptions, Runner};
use serde_json::json;

/// A server that counts every request it gets, on `ip`, any port.
async fn canary(ip: &str) -> (SocketAddr, Arc<AtomicU32>) {
    let hits = Arc::new(AtomicU32::new(0));
    let h = Arc::clone(&hits);
    let app = axum::Router::new().fallback(move || {
        h.fetch_add(1, Ordering::SeqCst);
        async { "reached" }
    });
    let listener = tokio::net::TcpListener::bind((ip, 0)).await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await });
    (addr, hits)
}

fn get(endpoint: &str, redirect: bool) -> Workflow {
    let text = format!(
        "document: {{dsl: '1.0.0', namespace: test, name: t, version: '1.0.0'}}\n\
         do:\n  - c:\n      call: http\n      with:\n        method: get\n        \
         endpoint: '{endpoint}'\n        redirect: {redirect}\n"
    );
    load_str(&text, Format::Yaml, &NoResolver).unwrap_or_else(|e| panic!("{endpoint}: {e:?}"))
}

/// Ways to write the canary's address (or another internal one) that a naive check misses.
fn bypass_forms(port: u16) -> Vec<String> {
    [
        "127.0.0.1",
        "localhost",
        "LOCALHOST",
        "0X7F.0.0.1",
        "127.1",
        "127.0.1",
        "127.000.000.001",
        "2130706433",
        "017700000001",
        "0x7f000001",
        "0x7f.0x0.0x0.0x1",
        "0x7f.1",
        "0177.0.0.1",
        "0177.0000.0000.0001",
        "127.0.0.1.",
        "%31%32%37.0.0.1",
        "127%2e0%2e0%2e1",
        "127\u{3002}0\u{3002}0\u{3002}1",
        "\u{24db}\u{24de}\u{24d2}\u{24d0}\u{24db}\u{24d7}\u{24de}\u{24e2}\u{24e3}",
        "user:pass@127.0.0.1",
        "127.0.0.2",
        "127.255.255.254",
        "0.0.0.0",
        "0",
        "0x0",
        "[::]",
        "[::1]",
        "[0:0:0:0:0:0:0:1]",
        "[::ffff:127.0.0.1]",
        "[::ffff:7f00:1]",
        "[0:0:0:0:0:ffff:127.0.0.1]",
        "[::127.0.0.1]",
        "[64:ff9b::127.0.0.1]",
        "[2002:7f00:1::]",
        "169.254.169.254",
        "10.0.0.1",
        "192.168.0.1",
        "172.16.0.1",
        "100.64.0.1",
        "[fd00::1]",
        "[fe80::1]",
    ]
    .iter()
    .map(|host| format!("http://{host}:{port}/canary"))
    .collect()
}

#[tokio::test]
async fn no_form_of_an_internal_address_reaches_the_canary() {
    let (addr, hits) = canary("127.0.0.1").await;
    let runner = Runner::builder().build().expect("runner");
    let forms = bypass_forms(addr.port());
    assert!(forms.len() >= 30);
    for endpoint in &forms {
        let run = runner.run(&get(endpoint, false), json!({})).await;
        let e = run
            .error
            .unwrap_or_else(|| panic!("{endpoint} was called: {:?}", run.output));
        assert_eq!(e.kind(), Some(ErrorKind::Communication), "{endpoint}: {e}");
        assert!(
            e.detail
                .as_deref()
                .unwrap_or("")
                .contains("outbound address policy blocks"),
            "{endpoint}: {e}"
        );
    }
    assert_eq!(hits.load(Ordering::SeqCst), 0, "the canary was reached");

    // The same canary is reachable once its address is allowed: the policy, not the network,
    // refused the calls above.
    let open = Runner::builder()
        .http(HttpOptions {
            policy: AddressPolicy::allowing(["127.0.0.1/32".parse().unwrap()]),
            ..HttpOptions::default()
        })
        .build()
        .expect("runner");
    let run = open
        .run(&get(&format!("http://{addr}/canary"), false), json!({}))
        .await;
    assert_eq!(run.output, Some(json!("reached")), "{:?}", run.error);
    assert_eq!(hits.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn names_and_redirects_are_checked_where_they_lead() {
    let (addr, hits) = canary("127.0.0.1").await;
    // A redirector on another loopback address, the only one allowed.
    let target = format!("http://{addr}/canary");
    let redirect = axum::Router::new().fallback(move || {
        let to = target.clone();
        async move { axum::response::Redirect::temporary(&to) }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.2:0")
        .await
        .expect("bind 127.0.0.2");
    let redirector = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, redirect).await });

    let runner = Runner::builder()
        .http(HttpOptions {
            policy: AddressPolicy::allowing(["127.0.0.2/32".parse().unwrap()]),
            // A name the operator pointed at the canary is still checked.
            resolve: vec![("internal.example".to_owned(), addr)],
            ..HttpOptions::default()
        })
        .build()
        .expect("runner");
    // A 3xx is an answer, never followed (`redirect: true` accepts it as the result, else it
    // is an error), so a redirect cannot lead a call anywhere the policy has not seen.
    let accepted = runner
        .run(&get(&format!("http://{redirector}/go"), true), json!({}))
        .await;
    assert!(accepted.error.is_none(), "{:?}", accepted.error);
    let refused = runner
        .run(&get(&format!("http://{redirector}/go"), false), json!({}))
        .await;
    let e = refused
        .error
        .expect("a 3xx without `redirect: true` is an error");
    assert_eq!((e.kind(), e.status), (Some(ErrorKind::Communication), 307));
    let named = runner
        .run(
            &get(&format!("http://internal.example:{}/", addr.port()), false),
            json!({}),
        )
        .await;
    let e = named.error.expect("the name's address is refused");
    assert!(e.to_string().contains("blocks 127.0.0.1"), "{e}");
    assert_eq!(hits.load(Ordering::SeqCst), 0, "the canary was reached");
}
