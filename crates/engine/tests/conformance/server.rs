//! A local HTTPS stand-in for the public hosts the conformance kit calls (petstore.swagger.io,
//! httpbin.org): axum over tokio-rustls on 127.0.0.1:0, with a self-signed certificate for those
//! names made by rcgen at start-up. The runner reaches it through `HttpOptions::resolve` and
//! trusts it through `HttpOptions::extra_roots`.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Query};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio_rustls::server::TlsStream;

/// The host names the scenarios name.
pub const HOSTS: [&str; 2] = ["petstore.swagger.io", "httpbin.org"];

/// A running stand-in.
#[derive(Debug)]
pub struct StandIn {
    pub addr: SocketAddr,
    /// The self-signed certificate, PEM.
    pub cert_pem: Vec<u8>,
}

/// Generates the certificate, binds 127.0.0.1:0 and serves in the background.
pub async fn start() -> anyhow::Result<StandIn> {
    let certified = rcgen::generate_simple_self_signed(
        HOSTS.iter().map(|h| (*h).to_owned()).collect::<Vec<_>>(),
    )?;
    let cert_pem = certified.cert.pem().into_bytes();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
        certified.signing_key.serialize_der(),
    ));
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(vec![certified.cert.der().clone()], key)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let acceptor = TlsAcceptor::from(Arc::new(config));

    let tcp = TcpListener::bind("127.0.0.1:0").await?;
    let addr = tcp.local_addr()?;
    // Handshakes run in their own tasks so one slow client cannot hold up the others.
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            let Ok((stream, peer)) = tcp.accept().await else {
                continue;
            };
            let acceptor = acceptor.clone();
            let tx = tx.clone();
            tokio::spawn(async move {
                match acceptor.accept(stream).await {
                    Ok(tls) => {
                        let _ = tx.send((tls, peer));
                    }
                    Err(e) => eprintln!("stand-in: TLS handshake with {peer} failed: {e}"),
                }
            });
        }
    });
    tokio::spawn(async move {
        if let Err(e) = axum::serve(TlsListener { rx, addr }, app()).await {
            eprintln!("stand-in: server stopped: {e}");
        }
    });
    Ok(StandIn { addr, cert_pem })
}

/// Connections whose TLS handshake succeeded.
struct TlsListener {
    rx: mpsc::UnboundedReceiver<(TlsStream<tokio::net::TcpStream>, SocketAddr)>,
    addr: SocketAddr,
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<tokio::net::TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.rx.recv().await {
            Some(conn) => conn,
            // The accept loop never ends while the process lives.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.addr)
    }
}

fn app() -> axum::Router {
    axum::Router::new()
        // petstore.swagger.io
        .route("/v2/swagger.json", get(|| async { Json(swagger()) }))
        .route("/v2/pet/findByStatus", get(find_by_status))
        .route("/v2/pet/getPetByName/{name}", get(pet_by_name))
        .route("/v2/pet/{id}", get(pet_by_id))
        // httpbin.org
        .route("/basic-auth/{user}/{passwd}", get(basic_auth))
}

/// A Swagger 2.0 description of the operations above, as the petstore publishes its own.
fn swagger() -> Value {
    let pet_ref = json!({"$ref": "#/definitions/Pet"});
    json!({
        "swagger": "2.0",
        "info": {"title": "Petstore stand-in", "version": "1.0.0"},
        "host": "petstore.swagger.io",
        "basePath": "/v2",
        "schemes": ["https", "http"],
        "produces": ["application/json"],
        "paths": {
            "/pet/findByStatus": {"get": {
                "operationId": "findPetsByStatus",
                "parameters": [{
                    "name": "status", "in": "query", "required": true, "type": "array",
                    "items": {"type": "string", "enum": ["available", "pending", "sold"]},
                    "collectionFormat": "multi",
                }],
                "responses": {"200": {"description": "the pets", "schema": {"type": "array", "items": pet_ref}}},
            }},
            "/pet/{petId}": {"get": {
                "operationId": "getPetById",
                "parameters": [{"name": "petId", "in": "path", "required": true, "type": "integer"}],
                "responses": {"200": {"description": "the pet", "schema": pet_ref}, "404": {"description": "no such pet"}},
            }},
        },
        "definitions": {"Pet": {"type": "object", "required": ["name", "photoUrls"], "properties": {
            "id": {"type": "integer"}, "name": {"type": "string"}, "status": {"type": "string"},
        }}},
    })
}

fn pets() -> Vec<Value> {
    let pet = |id: u64, name: &str, status: &str| {
        json!({
            "id": id,
            "category": {"id": 1, "name": "Dogs"},
            "name": name,
            "photoUrls": [],
            "tags": [],
            "status": status,
        })
    };
    vec![
        pet(1, "doggie", "available"),
        pet(2, "Rex", "available"),
        pet(3, "Bella", "pending"),
        pet(4, "Max", "sold"),
    ]
}

fn pet_not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        Json(json!({"code": 1, "type": "error", "message": "Pet not found"})),
    )
        .into_response()
}

async fn find_by_status(Query(q): Query<Vec<(String, String)>>) -> Json<Value> {
    let wanted: Vec<&str> = q
        .iter()
        .filter(|(k, _)| k == "status")
        .flat_map(|(_, v)| v.split(','))
        .collect();
    Json(Value::Array(
        pets()
            .into_iter()
            .filter(|p| wanted.iter().any(|w| p["status"] == *w))
            .collect(),
    ))
}

async fn pet_by_id(Path(id): Path<String>) -> Response {
    match id.parse::<u64>() {
        Ok(id @ (1 | 2)) => pets()
            .into_iter()
            .find(|p| p["id"] == id)
            .map_or_else(pet_not_found, |p| Json(p).into_response()),
        _ => pet_not_found(),
    }
}

/// The real petstore has no such operation: it answers 404.
async fn pet_by_name(Path(_name): Path<String>) -> Response {
    pet_not_found()
}

async fn basic_auth(Path((user, passwd)): Path<(String, String)>, headers: HeaderMap) -> Response {
    let expected = format!(
        "Basic {}",
        baton_core::interp::base64(format!("{user}:{passwd}").as_bytes())
    );
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    if given == Some(expected.as_str()) {
        Json(json!({"authenticated": true, "user": user})).into_response()
    } else {
        (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Basic realm=\"Fake Realm\"")],
        )
            .into_response()
    }
}
