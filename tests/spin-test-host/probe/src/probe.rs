//! The probe's operations. Each answers 200 with a JSON report, whatever
//! the host did, so the test (not the probe) decides what is right.
//!
//! - `op=headers`: method, path, query and every request header.
//! - `op=kv&store=L`: opens `L` through `fermyon:spin/key-value` and
//!   `wasi:keyvalue`; when both open, writes, reads back and increments.
//! - `op=var&name=N`: `fermyon:spin/variables` `get(N)`, value or error kind.
//! - `op=fetch&url=U`: a GET through `spin_host::SpinHost::send`, the path
//!   every component's outbound call takes.
//! - `op=resolve&tenant=T&env=E[&team=M]&name=N`: `BrokerClient::resolve`,
//!   as a component resolves a secret by service chaining.
//! - `op=verify&tenant=T&env=E[&team=M]&name=N&mac_hex=..`, the message as the
//!   body: `BrokerClient::verify_hmac_sha256`, the secret never leaving the broker.
//! - `op=file&path=P`: reads `P` from the component's mounted `files`.
//! - `op=statics`: bumps a static counter, which a fresh instance starts at 0.

use std::sync::atomic::{AtomicU32, Ordering};

use greentic::host::{Host, OutboundError};
use greentic::http::{Request, Response};
use greentic::secrets::client::{BrokerClient, SecretsClient, SecretsClientError};
use greentic::tenancy::ids::{SecretName, TenantCtx};
use serde_json::{Value, json};
use spin_host::SpinHost;
use spin_sdk::wit::wasi::keyvalue::store as wasi_store;

#[spin_sdk::http_component]
async fn serve(req: spin_sdk::http::IncomingRequest) -> spin_sdk::http::Response {
    // Twice what any component takes: the probe relays the largest messages.
    let request = spin_host::read_request(req, 2 * greentic::http::DEFAULT_BODY_LIMIT).await;
    let report = handle(&request);
    spin_host::into_spin_response(Response::json(200, &report))
}

fn handle(req: &Request) -> Value {
    let params: Vec<(String, String)> = form_urlencoded::parse(req.query.as_bytes())
        .into_owned()
        .collect();
    let param = |name: &str| {
        params
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    };
    match param("op") {
        Some("headers") => headers(req),
        Some("kv") => kv(param("store").unwrap_or_default()),
        Some("var") => variable(param("name").unwrap_or_default()),
        Some("fetch") => fetch(param("url").unwrap_or_default()),
        Some(op @ ("resolve" | "verify")) => {
            let scope = (
                param("tenant").unwrap_or_default(),
                param("env").unwrap_or_default(),
                param("team"),
            );
            let name = param("name").unwrap_or_default();
            let (Ok(ctx), Ok(name)) = (
                TenantCtx::new(scope.0, scope.1, scope.2),
                SecretName::parse(name),
            ) else {
                return json!({ "error": "bad scope or name" });
            };
            if op == "resolve" {
                resolve(&ctx, &name)
            } else {
                let hex = |p: &str| hex::decode(param(p).unwrap_or_default()).unwrap_or_default();
                verify(&ctx, &name, &req.body, &hex("mac_hex"))
            }
        }
        Some("file") => file(param("path").unwrap_or_default()),
        Some("statics") => statics(),
        other => json!({ "error": format!("unknown op {other:?}") }),
    }
}

fn headers(req: &Request) -> Value {
    let headers: Vec<Value> = req
        .headers
        .iter()
        .map(|(n, v)| json!([n, String::from_utf8_lossy(v)]))
        .collect();
    json!({ "method": req.method, "path": req.path, "query": req.query, "headers": headers })
}

fn kv(label: &str) -> Value {
    let spin = SpinHost.open_store(label);
    let wasi = wasi_store::open(label);
    let mut report = json!({
        "spin": spin.as_ref().err().map_or("ok".to_owned(), |e| format!("{e:?}")),
        "wasi": wasi.as_ref().err().map_or("ok".to_owned(), |e| format!("{e:?}")),
    });
    if let (Ok(store), Ok(_)) = (spin, wasi) {
        let written = store
            .set("probe-key", b"probe-value")
            .and_then(|()| store.get("probe-key"));
        let counter = store.increment("probe-counter", 1);
        report["read_back"] = json!(format!("{written:?}"));
        report["counter"] = json!(format!("{counter:?}"));
    }
    report
}

fn variable(name: &str) -> Value {
    use spin_sdk::variables::Error;
    match spin_sdk::variables::get(name) {
        Ok(value) => json!({ "value": value }),
        Err(e) => {
            let kind = match e {
                Error::InvalidName(_) => "invalid-name",
                Error::Undefined(_) => "undefined",
                Error::Provider(_) => "provider",
                Error::Other(_) => "other",
            };
            json!({ "error": kind })
        }
    }
}

fn fetch(url: &str) -> Value {
    // `Host::send` takes a base URL and a request path, as components call it.
    let (base, path) = match url.find("://").map(|at| at + 3) {
        Some(after) => match url[after..].find('/') {
            Some(slash) => url.split_at(after + slash),
            None => (url, "/"),
        },
        None => (url, "/"),
    };
    match SpinHost.send(base, Request::new("GET", path)) {
        Ok(response) => json!({
            "status": response.status,
            "body": String::from_utf8_lossy(&response.body),
        }),
        Err(OutboundError::Denied(to)) => json!({ "denied": to }),
        Err(OutboundError::Failed(why)) => json!({ "failed": why }),
    }
}

fn broker() -> BrokerClient<'static> {
    BrokerClient::new(&SpinHost, "probe")
}

fn client_error(e: SecretsClientError) -> Value {
    match e {
        SecretsClientError::NotFound => json!({ "error": "not-found" }),
        SecretsClientError::Unavailable(why) => json!({ "error": "unavailable", "why": why }),
    }
}

fn resolve(ctx: &TenantCtx, name: &SecretName) -> Value {
    match broker().resolve(ctx, name) {
        Ok(value) => json!({ "value": String::from_utf8_lossy(&value) }),
        Err(e) => client_error(e),
    }
}

fn verify(ctx: &TenantCtx, name: &SecretName, message: &[u8], mac: &[u8]) -> Value {
    match broker().verify_hmac_sha256(ctx, name, message, mac) {
        Ok(valid) => json!({ "valid": valid }),
        Err(e) => client_error(e),
    }
}

fn file(path: &str) -> Value {
    match std::fs::read(path) {
        Ok(bytes) => json!({ "content": String::from_utf8_lossy(&bytes) }),
        Err(e) => json!({ "error": format!("{:?}", e.kind()) }),
    }
}

fn statics() -> Value {
    static CALLS: AtomicU32 = AtomicU32::new(0);
    json!({ "calls": CALLS.fetch_add(1, Ordering::Relaxed) + 1 })
}
