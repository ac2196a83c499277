//! Keys as Azure Functions has them: every route × {no key, wrong key, another function's key,
//! the function's own key, a host key}, in the header and in `?code=`.

#![allow(clippy::expect_used, clippy::unwrap_used)]

mod support;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use baton_host::Keys;
use serde_json::json;
use support::*;

const WF: &str = "document: {dsl: '1.0.0', namespace: t, name: echo, version: '1.0.0'}\ndo:\n  - e: {set: '${ . }'}\n";

#[tokio::test]
async fn every_route_checks_its_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let app = app_dir(
        dir.path(),
        "[functions.Open]\nworkflow = \"echo\"\nauth = \"anonymous\"\n\
         [functions.Mine]\nworkflow = \"echo\"\nauth = \"function\"\n\
         [functions.Other]\nworkflow = \"echo\"\nauth = \"function\"\n\
         [functions.Admin]\nworkflow = \"echo\"\nauth = \"admin\"\n",
        &[("echo.yaml", WF)],
    );
    let mut keys = Keys::default();
    let host = keys.create(None, "master", "t").expect("key");
    let mine = keys.create(Some("Mine"), "default", "t").expect("key");
    let other = keys.create(Some("Other"), "default", "t").expect("key");
    let admin_fn = keys.create(Some("Admin"), "default", "t").expect("key");
    let s = state(app, keys).await;

    // (route, no key, wrong key, other function's key, own key, host key)
    let own = |route: &str| match route {
        "Mine" => Some(mine.clone()),
        "Other" => Some(other.clone()),
        "Admin" => Some(admin_fn.clone()),
        _ => None,
    };
    let expect = |route: &str, who: &str| -> StatusCode {
        match (route, who) {
            ("Open", _) | (_, "host") => StatusCode::OK,
            ("Mine" | "Other", "own") => StatusCode::OK,
            _ => StatusCode::UNAUTHORIZED,
        }
    };
    for route in ["Open", "Mine", "Other", "Admin"] {
        let foreign = if route == "Mine" {
            other.clone()
        } else {
            mine.clone()
        };
        let presented: Vec<(&str, Option<String>)> = vec![
            ("none", None),
            ("wrong", Some("0".repeat(64))),
            ("foreign", Some(foreign)),
            ("own", own(route)),
            ("host", Some(host.clone())),
        ];
        for (who, key) in presented {
            if who == "own" && key.is_none() {
                continue;
            }
            for via_query in [false, true] {
                let mut uri = format!("/api/{route}");
                let mut req = Request::post(&uri).header("content-type", "application/json");
                if let Some(k) = &key {
                    if via_query {
                        uri = format!("{uri}?code={k}");
                        req = Request::post(&uri).header("content-type", "application/json");
                    } else {
                        req = req.header("x-functions-key", k);
                    }
                }
                let a = send(&s, req.body(Body::from(r#"{"a":1}"#)).expect("request")).await;
                let want = expect(route, who);
                assert_eq!(
                    a.status, want,
                    "{route} with {who} key (query: {via_query}): {}",
                    a.text
                );
                if want == StatusCode::UNAUTHORIZED {
                    assert!(is_problem(&a), "{}", a.text);
                    assert!(
                        !a.text.contains(&host) && !a.text.contains(&mine),
                        "keys must never be echoed"
                    );
                }
            }
        }
    }
}

#[tokio::test]
async fn status_routes_open_to_the_starting_functions_keys_and_host_keys() {
    let dir = tempfile::tempdir().expect("tempdir");
    let app = app_dir(
        dir.path(),
        "[functions.Slow]\nworkflow = \"slow\"\nmode = \"async\"\n[functions.Other]\nworkflow = \"slow\"\n",
        &[(
            "slow.yaml",
            "document: {dsl: '1.0.0', namespace: t, name: slow, version: '1.0.0'}\ndo:\n  - w: {wait: PT0.05S}\n",
        )],
    );
    let mut keys = Keys::default();
    let host = keys.create(None, "master", "t").expect("key");
    let slow = keys.create(Some("Slow"), "default", "t").expect("key");
    let other = keys.create(Some("Other"), "default", "t").expect("key");
    let s = state(app, keys).await;
    let a = send(
        &s,
        Request::post("/api/Slow")
            .header("content-type", "application/json")
            .header("x-functions-key", &slow)
            .body(Body::from("{}"))
            .unwrap(),
    )
    .await;
    assert_eq!(a.status, StatusCode::ACCEPTED);
    let location = a.headers["location"].to_str().unwrap().to_owned();
    for (key, want) in [
        (None, StatusCode::UNAUTHORIZED),
        (Some(&other), StatusCode::UNAUTHORIZED),
        (Some(&slow), StatusCode::ACCEPTED),
        (Some(&host), StatusCode::ACCEPTED),
    ] {
        let mut req = Request::get(&location);
        if let Some(k) = key {
            req = req.header("x-functions-key", k);
        }
        let a = send(&s, req.body(Body::empty()).unwrap()).await;
        assert!(
            a.status == want || (want == StatusCode::ACCEPTED && a.status == StatusCode::OK),
            "{key:?}: {} {}",
            a.status,
            a.text
        );
    }
    // An unknown instance is only revealed as such to a host key.
    let a = send(
        &s,
        Request::get("/api/instances/ffff")
            .header("x-functions-key", &slow)
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    let a = send(
        &s,
        Request::get("/api/instances/ffff")
            .header("x-functions-key", &host)
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);
}

/// Every route of the sample app, over real HTTP, × {no key, wrong key, another function's key,
/// its own key, a host key}.
#[tokio::test]
async fn every_sample_route_checks_its_key_over_http() {
    let app = baton_host::App::sample().expect("sample");
    let names: Vec<String> = app
        .functions
        .iter()
        .filter(|f| f.queue.is_none())
        .map(|f| f.name.clone())
        .collect();
    assert_eq!(names.len(), 16);
    let mut keys = Keys::default();
    let host = keys.create(None, "master", "t").expect("key");
    let own: Vec<String> = names
        .iter()
        .map(|n| keys.create(Some(n), "default", "t").expect("key"))
        .collect();
    // ValidateHttp calls the Check* routes with the host key, from its secret.
    let secrets = serde_json::Map::from_iter([("checks".to_owned(), json!({"key": host}))]);
    let (_, s) = serve(app, keys, secrets).await;
    let body = r#"{"Name": {"First": "Ada", "Last": "Lovelace"}, "Address": {"Line1": "1", "City": "L", "State": "LN", "Zip": "10001"}}"#;
    for (i, name) in names.iter().enumerate() {
        let foreign = &own[(i + 1) % own.len()];
        for (who, key, ok) in [
            ("none", None, false),
            ("wrong", Some("f".repeat(64)), false),
            ("foreign", Some(foreign.clone()), false),
            ("own", Some(own[i].clone()), true),
            ("host", Some(host.clone()), true),
        ] {
            if ok && name.ends_with("Delayed") {
                // Accepted keys make these wait 1.5–7.5 s; the accepting path is the same as
                // their undelayed twins', which run above.
                continue;
            }
            let mut req =
                Request::post(format!("/api/{name}")).header("content-type", "application/json");
            if let Some(k) = &key {
                req = req.header("x-functions-key", k);
            }
            let a = s.send(req.body(Body::from(body)).expect("request")).await;
            if ok {
                assert!(
                    a.status.is_success(),
                    "{name} with {who} key: {} {}",
                    a.status,
                    a.text
                );
            } else {
                assert_eq!(
                    a.status,
                    StatusCode::UNAUTHORIZED,
                    "{name} with {who} key: {}",
                    a.text
                );
                assert!(is_problem(&a));
            }
        }
    }
}
