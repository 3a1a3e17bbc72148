//! The harness against Spin's rules, through the probe component
//! (`probe/`, built for wasm32-wasip1) and the fixture manifest
//! `tests/fixtures/spin.toml`: stores, outbound hosts, private routes and
//! chaining, routing headers, variables, and a fresh instance per request.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::PathBuf;

use greentic::store::kv::KeyValue;
use serde_json::{Value, json};
use spin_test_host::{Builder, Request, SpinApp};

fn fixture() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/spin.toml")
}

/// The fixture app with its one required variable set.
fn builder() -> Builder {
    SpinApp::builder()
        .manifest(fixture())
        .variable("api_token", "t0ken")
}

fn start(builder: Builder) -> SpinApp {
    builder.build().unwrap_or_else(|e| panic!("{e:#}"))
}

/// Asks the component behind `path` to run `query`, and returns its report.
#[track_caller]
fn probe(app: &SpinApp, path: &str, query: &str) -> Value {
    let r = app.send(Request::new("GET", &format!("{path}?{query}")));
    assert_eq!(
        r.status,
        200,
        "{path}?{query}: {} {:?}",
        String::from_utf8_lossy(&r.body),
        app.failures()
    );
    r.json_body()
}

/// `op=fetch` of `url` from the component behind `path`.
fn fetch(app: &SpinApp, path: &str, url: &str) -> Value {
    let url: String = form_encode(url);
    probe(app, path, &format!("op=fetch&url={url}"))
}

fn form_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'.' | b'_' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn header<'a>(report: &'a Value, name: &str) -> Vec<&'a str> {
    report["headers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|h| h[0] == name)
        .map(|h| h[1].as_str().unwrap())
        .collect()
}

#[test]
fn a_component_opening_an_undeclared_store_is_denied() {
    let app = start(builder());
    // `probe` declares `default` and `sessions`; no component declares `secrets`.
    for store in ["secrets", "nonexistent"] {
        let report = probe(&app, "/probe", &format!("op=kv&store={store}"));
        assert_eq!(
            (report["spin"].as_str(), report["wasi"].as_str()),
            (
                Some(&*format!("AccessDenied(\"{store}\")")),
                Some("Error::AccessDenied")
            ),
            "{store}: {report}"
        );
    }
    let report = probe(&app, "/probe", "op=kv&store=default");
    assert_eq!(
        (report["spin"].as_str(), report["wasi"].as_str()),
        (Some("ok"), Some("ok"))
    );
    assert_eq!(
        report["read_back"],
        "Ok(Some([112, 114, 111, 98, 101, 45, 118, 97, 108, 117, 101]))"
    );
    assert_eq!(report["counter"], "Ok(1)");

    // `hidden` declares nothing: `default` exists, and is still refused to it.
    let chained = fetch(
        &app,
        "/probe",
        "http://hidden.spin.internal/?op=kv&store=default",
    );
    let report: Value = serde_json::from_str(chained["body"].as_str().unwrap()).unwrap();
    assert_eq!(report["spin"], "AccessDenied(\"default\")", "{report}");
    assert_eq!(report["wasi"], "Error::AccessDenied");
    assert_eq!(
        app.store("default").get_keys().unwrap(),
        ["probe-counter", "probe-key"],
        "only the probe wrote"
    );
}

#[test]
fn components_declaring_one_label_share_its_store_and_tests_see_it() {
    let app = start(builder());
    app.store("default").set("seeded", b"by the test").unwrap();
    probe(&app, "/probe", "op=kv&store=default");
    let second = probe(&app, "/probe/exact", "op=kv&store=default");
    assert_eq!(
        second["counter"], "Ok(2)",
        "`exact` counts on from `probe`'s write"
    );
    let kv = app.store("default");
    assert_eq!(
        kv.get("probe-key").unwrap().as_deref(),
        Some(&b"probe-value"[..])
    );
    assert_eq!(
        kv.get("probe-counter").unwrap(),
        Some(2i64.to_le_bytes().to_vec())
    );
    assert_eq!(
        kv.get("seeded").unwrap().as_deref(),
        Some(&b"by the test"[..])
    );
    assert!(
        app.store("sessions").get_keys().unwrap().is_empty(),
        "labels are separate stores"
    );
}

/// A server on loopback that answers one request with `body`, and reports the request line.
fn one_shot_server(body: &'static str) -> (u16, std::thread::JoinHandle<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = std::thread::spawn(move || {
        let (mut socket, _) = listener.accept().unwrap();
        let mut buf = [0u8; 4096];
        let n = socket.read(&mut buf).unwrap();
        let answer = format!(
            "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        );
        socket.write_all(answer.as_bytes()).unwrap();
        String::from_utf8_lossy(&buf[..n])
            .lines()
            .next()
            .unwrap_or_default()
            .to_owned()
    });
    (port, server)
}

#[test]
fn outbound_calls_reach_only_allowed_hosts() {
    let (port, server) = one_shot_server("upstream says hi");
    let other = TcpListener::bind("127.0.0.1:0").unwrap();
    let other_port = other.local_addr().unwrap().port();
    // `allowed_outbound_hosts = ["{{ upstream }}", ...]`, the variable set at start.
    let app = start(builder().variable("upstream", &format!("http://127.0.0.1:{port}")));

    let allowed = fetch(
        &app,
        "/probe",
        &format!("http://127.0.0.1:{port}/hello?x=1"),
    );
    assert_eq!(
        allowed,
        json!({ "status": 200, "body": "upstream says hi" })
    );
    assert_eq!(server.join().unwrap(), "GET /hello?x=1 HTTP/1.1");

    for refused in [
        format!("http://127.0.0.1:{other_port}/"),
        format!("http://localhost:{port}/"),
        format!("https://127.0.0.1:{port}/"),
        "http://example.com/".to_owned(),
        // Chaining is outbound HTTP too: only to components listed.
        "http://exact.spin.internal/".to_owned(),
        "http://probe.spin.internal/".to_owned(),
    ] {
        let report = fetch(&app, "/probe", &refused);
        assert!(report.get("denied").is_some(), "{refused}: {report}");
    }
    // `hidden` may call only the probe: a host its caller may reach is still refused to it.
    let report = fetch(
        &app,
        "/probe",
        &format!(
            "http://hidden.spin.internal/?op=fetch&url={}",
            form_encode(&format!("http://127.0.0.1:{port}/"))
        ),
    );
    let inner: Value = serde_json::from_str(report["body"].as_str().unwrap()).unwrap();
    assert!(inner.get("denied").is_some(), "{inner}");
    drop(other);
}

#[test]
fn a_private_route_is_unreachable_from_outside() {
    let app = start(builder());
    for path in ["/", "/hidden", "/hidden/x", "/private", "/..."] {
        let r = app.send(Request::new("GET", &format!("{path}?op=statics")));
        assert_eq!((r.status, r.body.len()), (404, 0), "{path}");
    }
    assert!(app.failures().is_empty());
    // The very same component answers when chained to, on any path.
    for path in ["/", "/hidden/x", "/api/v1/anything"] {
        let report = fetch(
            &app,
            "/probe",
            &format!("http://hidden.spin.internal{path}?op=headers"),
        );
        assert_eq!(report["status"], 200, "{path}: {report}");
        let inner: Value = serde_json::from_str(report["body"].as_str().unwrap()).unwrap();
        assert_eq!(inner["path"], path);
        assert_eq!(header(&inner, "spin-matched-route"), ["/..."]);
        assert_eq!(header(&inner, "spin-path-info"), [path]);
        assert_eq!(header(&inner, "spin-client-addr"), ["0.0.0.0:0"]);
        assert_eq!(
            header(&inner, "spin-full-url"),
            [format!("http://localhost{path}?op=headers").as_str()]
        );
    }
}

#[test]
fn routes_match_as_in_spin_and_the_component_sees_spin_headers() {
    let app = start(builder());
    let exact = probe(&app, "/probe/exact", "op=headers");
    assert_eq!(header(&exact, "spin-matched-route"), ["/probe/exact"]);
    assert_eq!(header(&exact, "spin-path-info"), [""]);

    let wildcard = probe(&app, "/probe/exact/more", "op=headers");
    assert_eq!(header(&wildcard, "spin-matched-route"), ["/probe/..."]);
    assert_eq!(header(&wildcard, "spin-component-route"), ["/probe"]);
    assert_eq!(header(&wildcard, "spin-path-info"), ["/exact/more"]);
    assert_eq!(
        header(&wildcard, "spin-full-url"),
        ["http://127.0.0.1:3000/probe/exact/more?op=headers"]
    );
    assert_eq!(header(&wildcard, "spin-base-path"), ["/"]);
    // wasi-http keeps `Host` from the guest; the URL carries it instead.
    assert!(header(&wildcard, "host").is_empty());
    assert!(!header(&wildcard, "spin-client-addr").is_empty());

    let named = probe(&app, "/tenants/acme/items/a/b", "op=headers");
    assert_eq!(
        header(&named, "spin-matched-route"),
        ["/tenants/:tenant/items/..."]
    );
    assert_eq!(
        header(&named, "spin-component-route"),
        ["/tenants/:tenant/items"]
    );
    assert_eq!(header(&named, "spin-path-match-tenant"), ["acme"]);
    assert_eq!(header(&named, "spin-path-info"), ["/a/b"]);
    assert_eq!(named["path"], "/tenants/acme/items/a/b");

    assert_eq!(app.send(Request::new("GET", "/tenants/acme")).status, 404);
    // A header value that is not UTF-8 cannot be handed to a component: Spin answers 500.
    let binary = Request::new("GET", "/probe?op=headers").with_header("x-bin", [0xff, 0xfe]);
    assert_eq!(app.send(binary).status, 500);
}

#[test]
fn variables_resolve_as_spin_resolves_them() {
    let app = start(builder());
    let var = |path: &str, name: &str| probe(&app, path, &format!("op=var&name={name}"));
    // Required and set at start; a template over two defaults; a literal.
    assert_eq!(var("/probe", "api_token"), json!({ "value": "t0ken" }));
    assert_eq!(
        var("/probe", "message"),
        json!({ "value": "hello, eu-west!" })
    );
    assert_eq!(var("/probe", "fixed"), json!({ "value": "literal" }));
    // Application variables are not component variables.
    assert_eq!(var("/probe", "greeting"), json!({ "error": "undefined" }));
    assert_eq!(
        var("/probe", "Bad-Name"),
        json!({ "error": "invalid-name" })
    );
    // Each component reads only what it maps.
    let hidden = |name: &str| {
        let report = fetch(
            &app,
            "/probe",
            &format!("http://hidden.spin.internal/?op=var&name={name}"),
        );
        serde_json::from_str::<Value>(report["body"].as_str().unwrap()).unwrap()
    };
    assert_eq!(hidden("region"), json!({ "value": "eu-west" }));
    assert_eq!(hidden("api_token"), json!({ "error": "undefined" }));
    assert_eq!(
        var("/probe/exact", "api_token"),
        json!({ "error": "undefined" })
    );

    // A value given at start beats the default, everywhere it is used.
    let app = start(
        builder()
            .variable("region", "us-east")
            .variable("greeting", ""),
    );
    let message = probe(&app, "/probe", "op=var&name=message");
    assert_eq!(
        message,
        json!({ "value": ", us-east!" }),
        "an empty value is a value"
    );
}

#[test]
fn a_required_variable_without_a_value_stops_the_start() {
    let err = SpinApp::builder()
        .manifest(fixture())
        .build()
        .err()
        .expect("an app missing a required variable must not start");
    let err = format!("{err:#}");
    assert!(
        err.contains("required") && err.contains("api_token"),
        "{err}"
    );
    let typo = builder().variable("api_tokn", "x").build().err().unwrap();
    assert!(format!("{typo:#}").contains("api_tokn"));
}

#[test]
fn mounted_files_are_readable_only_where_mounted() {
    let app = start(builder());
    let read = |path: &str| probe(&app, "/probe", &format!("op=file&path={path}"));
    assert_eq!(
        read("/data/hello.txt"),
        json!({ "content": "mounted read-only" })
    );
    assert_eq!(read("/data/missing.txt"), json!({ "error": "NotFound" }));
    assert!(
        read("/etc/hostname").get("error").is_some(),
        "nothing else of the host is visible"
    );
    let report = fetch(
        &app,
        "/probe",
        "http://hidden.spin.internal/?op=file&path=/data/hello.txt",
    );
    let inner: Value = serde_json::from_str(report["body"].as_str().unwrap()).unwrap();
    assert!(
        inner.get("error").is_some(),
        "`hidden` mounts nothing: {inner}"
    );
}

#[test]
fn a_store_label_missing_from_the_runtime_config_stops_the_start() {
    let err = builder().runtime_config(None).build().err().unwrap();
    let err = format!("{err:#}");
    assert!(
        err.contains("`probe`: unknown key_value_stores label `sessions`"),
        "{err}"
    );
}

#[test]
fn every_request_gets_a_fresh_instance() {
    let app = start(builder());
    for _ in 0..3 {
        assert_eq!(probe(&app, "/probe", "op=statics"), json!({ "calls": 1 }));
    }
}

#[test]
fn a_missing_wasm_names_the_command_that_builds_it() {
    let empty = std::env::temp_dir().join(format!("spin-test-host-empty-{}", std::process::id()));
    std::fs::create_dir_all(&empty).unwrap();
    let err = builder().wasm_dir(&empty).build().err().unwrap();
    let err = format!("{err:#}");
    for component in ["probe", "exact", "hidden"] {
        assert!(err.contains(&format!("\n  {component}: ")), "{err}");
    }
    assert!(
        err.contains("cargo build --target wasm32-wasip1 --release -p spin-test-probe")
            && err.contains("scripts/build-components"),
        "{err}"
    );
    std::fs::remove_dir(&empty).unwrap();
}
