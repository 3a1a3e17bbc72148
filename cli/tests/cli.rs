//! The CLI as a newcomer runs it.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;

use greentic::http::Request;
use greentic::secrets::client::{BrokerClient, SecretsClient, SecretsClientError};
use greentic::service::auth::AuthConfig;
use greentic::tenancy::ids::{SecretName, TenantCtx};
use greentic::testing::{MemoryHost, TEST_HS256_SECRET, TEST_MASTER_KEY};

const SECRET: &str = "cli-test-secret-0123456789abcdef0123";

fn greentic() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_greentic"));
    for var in [
        "SPIN_VARIABLE_AUTH_HS256_SECRET",
        "GREENTIC_TOKEN",
        "GREENTIC_URL",
    ] {
        cmd.env_remove(var);
    }
    cmd
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[test]
fn a_minted_token_passes_the_apis_verification() {
    let out = greentic()
        .args([
            "token", "mint", "--tenant", "acme", "--env", "prod", "--team", "support", "--role",
            "writer",
        ])
        .env("SPIN_VARIABLE_AUTH_HS256_SECRET", SECRET)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = String::from_utf8(out.stdout).unwrap();
    let config = AuthConfig::new("greentic-dev", "greentic")
        .with_hs256_secret(SECRET.as_bytes())
        .unwrap();
    let principal = config
        .authenticate(Some(&format!("Bearer {}", token.trim())), now())
        .unwrap();
    assert_eq!(
        (principal.tenant.as_str(), principal.env.as_str()),
        ("acme", "prod")
    );
    assert_eq!(principal.teams, Some(vec!["support".to_string()]));
    assert_eq!(principal.roles, ["writer"]);
}

#[test]
fn minting_refuses_a_missing_or_weak_secret_and_bad_ids() {
    let out = greentic()
        .args(["token", "mint", "--tenant", "acme", "--env", "prod"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let out = greentic()
        .args(["token", "mint", "--tenant", "acme", "--env", "prod"])
        .env("SPIN_VARIABLE_AUTH_HS256_SECRET", "short")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("at least 32 bytes"));
    let out = greentic()
        .args(["token", "mint", "--tenant", "Acme.Corp", "--env", "prod"])
        .env("SPIN_VARIABLE_AUTH_HS256_SECRET", SECRET)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("tenant id is not valid"));
}

#[test]
fn the_demo_bundle_validates_and_a_broken_one_is_explained() {
    let demo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../bundles/demo.yaml");
    let out = greentic()
        .args(["bundle", "validate"])
        .arg(&demo)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout)
            .contains("ok (2 tenants, 3 teams, 4 channels, 2 flows)")
    );

    let dir = std::env::temp_dir().join(format!("greentic-cli-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let broken = dir.join("broken.yaml");
    std::fs::write(
        &broken,
        "tenants:\n  acme:\n    name: A\n    environments: []\n",
    )
    .unwrap();
    let out = greentic()
        .args(["bundle", "validate"])
        .arg(&broken)
        .output()
        .unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(
            "broken.yaml: tenants.acme.environments: a tenant needs at least one environment"
        ),
        "{stderr}"
    );
}

/// The secrets broker's handler behind a real HTTP listener on loopback, as
/// the CLI meets it under `spin up`.
fn serve_broker(host: Arc<MemoryHost>) -> String {
    serve(host, secrets_broker::handle)
}

/// A component's handler over `host` behind a real HTTP listener on loopback.
fn serve(
    host: Arc<MemoryHost>,
    handle: fn(&Request, &dyn greentic::host::Host) -> greentic::http::Response,
) -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    listener.set_nonblocking(true).unwrap();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let app = axum::Router::new().fallback(move |req: axum::extract::Request| {
                let host = host.clone();
                async move {
                    let (parts, body) = req.into_parts();
                    let body = axum::body::to_bytes(body, 1 << 20).await.unwrap();
                    let mut request = Request::new(parts.method.as_str(), &parts.uri.to_string())
                        .with_body(body.to_vec());
                    for (name, value) in &parts.headers {
                        request = request.with_header(name.as_str(), value.as_bytes());
                    }
                    let response = handle(&request, host.as_ref());
                    let mut builder = axum::http::Response::builder().status(response.status);
                    for (name, value) in &response.headers {
                        builder = builder.header(name, value);
                    }
                    builder.body(axum::body::Body::from(response.body)).unwrap()
                }
            });
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            axum::serve(listener, app).await.unwrap();
        });
    });
    url
}

fn broker_host() -> Arc<MemoryHost> {
    let host = MemoryHost::new(&[
        greentic::secrets::STORE_LABEL,
        greentic::service::limits::STORE_LABEL,
    ]);
    host.set_variable(greentic::secrets::crypto::VAR_MASTER_KEY, TEST_MASTER_KEY);
    // Tokens the CLI mints carry the real time.
    host.set_now_ms(now() as i64 * 1000);
    Arc::new(host)
}

/// `greentic secret {args}` against `url`, minting its token from the test secret.
fn secret_command(url: &str, args: &[&str]) -> Command {
    let mut cmd = greentic();
    cmd.arg("secret")
        .args(args)
        .env("GREENTIC_URL", url)
        .env("SPIN_VARIABLE_AUTH_HS256_SECRET", TEST_HS256_SECRET);
    cmd
}

fn run_with_stdin(mut cmd: Command, stdin: &str) -> std::process::Output {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The CLI may refuse (a bad name) and exit before it reads stdin.
    let _ = child.stdin.take().unwrap().write_all(stdin.as_bytes());
    child.wait_with_output().unwrap()
}

fn secret_cli(url: &str, args: &[&str], stdin: &str) -> std::process::Output {
    run_with_stdin(secret_command(url, args), stdin)
}

#[test]
fn secret_put_stores_a_team_secret_the_broker_resolves_for_that_team_only() {
    let host = broker_host();
    let url = serve_broker(host.clone());
    let put = secret_cli(
        &url,
        &[
            "put",
            "slack_signing_secret",
            "--tenant",
            "acme",
            "--env",
            "prod",
            "--team",
            "support",
        ],
        "8f742231b10e8888abcd99yyyzzz85a5\n",
    );
    assert!(
        put.status.success(),
        "{}",
        String::from_utf8_lossy(&put.stderr)
    );
    let meta: serde_json::Value = serde_json::from_slice(&put.stdout).unwrap();
    assert_eq!(meta["name"], "slack_signing_secret");
    assert_eq!(meta["scope"], "team");
    assert!(!String::from_utf8_lossy(&put.stdout).contains("8f742231b10e8888abcd99yyyzzz85a5"));

    // The value arrived without the newline, for acme/prod/support alone.
    let component = MemoryHost::new(&[]);
    let broker = host.clone();
    component.serve_internal(
        "secrets-broker",
        Arc::new(move |req| secrets_broker::handle(req, broker.as_ref())),
    );
    let secrets = BrokerClient::new(&component, "test");
    let name = SecretName::parse("slack_signing_secret").unwrap();
    let support = TenantCtx::new("acme", "prod", Some("support")).unwrap();
    assert_eq!(
        secrets.resolve(&support, &name).unwrap(),
        b"8f742231b10e8888abcd99yyyzzz85a5"
    );
    // Secrets are per tenant/team, not per env (SPEC's layout).
    let staging = TenantCtx::new("acme", "staging", Some("support")).unwrap();
    assert_eq!(
        secrets.resolve(&staging, &name).unwrap(),
        b"8f742231b10e8888abcd99yyyzzz85a5"
    );
    for other in [
        TenantCtx::new("acme", "prod", Some("sales")).unwrap(),
        TenantCtx::new("acme", "prod", None).unwrap(),
        TenantCtx::new("bigcorp", "prod", Some("support")).unwrap(),
    ] {
        assert_eq!(
            secrets.resolve(&other, &name),
            Err(SecretsClientError::NotFound),
            "{other:?}"
        );
    }

    let list = secret_cli(
        &url,
        &[
            "list", "--tenant", "acme", "--env", "prod", "--team", "support",
        ],
        "",
    );
    assert!(
        list.status.success(),
        "{}",
        String::from_utf8_lossy(&list.stderr)
    );
    let listed = String::from_utf8(list.stdout).unwrap();
    assert!(listed.contains("\"slack_signing_secret\""), "{listed}");
    assert!(
        !listed.contains("8f742231b10e8888abcd99yyyzzz85a5"),
        "{listed}"
    );

    let delete = secret_cli(
        &url,
        &[
            "delete",
            "slack_signing_secret",
            "--tenant",
            "acme",
            "--env",
            "prod",
            "--team",
            "support",
        ],
        "",
    );
    assert!(
        delete.status.success(),
        "{}",
        String::from_utf8_lossy(&delete.stderr)
    );
    assert_eq!(
        secrets.resolve(&support, &name),
        Err(SecretsClientError::NotFound)
    );
}

#[test]
fn secret_put_explains_refusals_and_stores_nothing() {
    let host = broker_host();
    let url = serve_broker(host.clone());
    let store = host.store(greentic::secrets::STORE_LABEL);

    let empty = secret_cli(
        &url,
        &["put", "api_key", "--tenant", "acme", "--env", "prod"],
        "",
    );
    assert!(!empty.status.success());
    assert!(String::from_utf8_lossy(&empty.stderr).contains("no value on stdin"));

    let bad_name = secret_cli(
        &url,
        &["put", "Api.Key", "--tenant", "acme", "--env", "prod"],
        "v",
    );
    assert!(!bad_name.status.success());
    assert!(String::from_utf8_lossy(&bad_name.stderr).contains("not valid"));

    let no_token = greentic()
        .args(["secret", "list", "--tenant", "acme", "--env", "prod"])
        .env("GREENTIC_URL", &url)
        .output()
        .unwrap();
    assert!(!no_token.status.success());
    assert!(String::from_utf8_lossy(&no_token.stderr).contains("GREENTIC_TOKEN"));

    // Another tenant's token is refused by the broker, and the CLI says so
    // without echoing the value.
    let acme_admin = greentic()
        .args([
            "token", "mint", "--tenant", "acme", "--env", "prod", "--role", "admin",
        ])
        .env("SPIN_VARIABLE_AUTH_HS256_SECRET", TEST_HS256_SECRET)
        .output()
        .unwrap()
        .stdout;
    let mut as_acme = secret_command(
        &url,
        &["put", "api_key", "--tenant", "bigcorp", "--env", "prod"],
    );
    as_acme.env_remove("SPIN_VARIABLE_AUTH_HS256_SECRET");
    as_acme.env("GREENTIC_TOKEN", String::from_utf8(acme_admin).unwrap());
    let forbidden = run_with_stdin(as_acme, "s3cr3t-value");
    assert!(!forbidden.status.success());
    let stderr = String::from_utf8_lossy(&forbidden.stderr);
    assert!(stderr.contains("answered 403"), "{stderr}");
    assert!(!stderr.contains("s3cr3t-value"), "{stderr}");

    let down = secret_cli(
        "http://127.0.0.1:9",
        &["put", "api_key", "--tenant", "acme", "--env", "prod"],
        "v",
    );
    assert!(!down.status.success());
    assert!(
        String::from_utf8_lossy(&down.stderr)
            .contains("PUT http://127.0.0.1:9/api/v1/secrets/api_key")
    );

    assert_eq!(
        store.snapshot(),
        Default::default(),
        "a refused put stored something"
    );
}

/// The tenant API over a fresh `config` store (no tenant yet), with the real clock.
fn tenant_api_host() -> Arc<MemoryHost> {
    let host = MemoryHost::new(&[greentic::service::limits::STORE_LABEL]);
    let config = host.store(greentic::store::config::STORE_LABEL);
    for key in config.snapshot().keys() {
        greentic::store::kv::KeyValue::delete(config, key).unwrap();
    }
    host.set_now_ms(now() as i64 * 1000);
    Arc::new(host)
}

fn tenant_apply(url: &str, args: &[&str]) -> std::process::Output {
    greentic()
        .args(["tenant", "apply"])
        .args(args)
        .env("GREENTIC_URL", url)
        .env("SPIN_VARIABLE_AUTH_HS256_SECRET", TEST_HS256_SECRET)
        .output()
        .unwrap()
}

#[test]
fn tenant_apply_creates_then_updates_only_what_changed() {
    let host = tenant_api_host();
    let url = serve(host.clone(), tenant_api::handle);
    let demo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../bundles/demo.yaml");
    let demo = demo.to_str().unwrap();
    let first = tenant_apply(&url, &[demo]);
    let stdout = String::from_utf8_lossy(&first.stdout);
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    assert_eq!(
        stdout,
        "acme: created (version 1)\nbigcorp: created (version 1)\n"
    );
    let again = tenant_apply(&url, &[demo]);
    assert_eq!(
        String::from_utf8_lossy(&again.stdout),
        "acme: unchanged (version 1)\nbigcorp: unchanged (version 1)\n"
    );

    // acme's own admin changes acme's name in a copy of the bundle.
    let dir = std::env::temp_dir().join(format!("greentic-apply-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("flows")).unwrap();
    let bundles = Path::new(env!("CARGO_MANIFEST_DIR")).join("../bundles");
    for flow in std::fs::read_dir(bundles.join("flows")).unwrap() {
        let flow = flow.unwrap().path();
        std::fs::copy(&flow, dir.join("flows").join(flow.file_name().unwrap())).unwrap();
    }
    let text = std::fs::read_to_string(bundles.join("demo.yaml")).unwrap();
    let changed = dir.join("demo.yaml");
    std::fs::write(&changed, text.replace("ACME Corporation", "ACME Corp.")).unwrap();
    let changed = changed.to_str().unwrap();
    let own = tenant_apply(&url, &["--tenant", "acme", changed]);
    assert!(
        own.status.success(),
        "{}",
        String::from_utf8_lossy(&own.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&own.stdout),
        "acme: updated to version 2\n"
    );
    let config = greentic::flows::tenant_config::TenantConfig::load(host.as_ref(), "acme")
        .unwrap()
        .unwrap();
    assert_eq!(
        (config.version, config.tenant.name.as_str()),
        (2, "ACME Corp.")
    );

    // A tenant admin cannot create a tenant; the refusal is explained.
    let newcomer = changed.replace("demo.yaml", "newcomer.yaml");
    std::fs::write(&newcomer, text.replace("  bigcorp:", "  newco:")).unwrap();
    let refused = tenant_apply(&url, &["--tenant", "newco", &newcomer]);
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    // (Its token names a tenant this platform does not have: refused at the door.)
    assert!(
        stderr.contains("answered 403") && stderr.contains("not configured on this instance"),
        "{stderr}"
    );
    assert!(
        greentic::flows::tenant_config::TenantConfig::load(host.as_ref(), "newco")
            .unwrap()
            .is_none()
    );
}

/// `greentic tenant delete` calls the deletion until the tenant is gone,
/// printing each call; a second run finds no tenant and says so.
#[test]
fn tenant_delete_calls_until_the_tenant_is_gone() {
    let host = MemoryHost::new(&[
        greentic::service::limits::STORE_LABEL,
        greentic::messaging::executor::STORE_LABEL,
        greentic::store::webchat_log::STORE_LABEL,
        greentic::messaging::egress::STORE_LABEL,
    ]);
    host.set_now_ms(now() as i64 * 1000);
    greentic::testing::FakeBridge::serve(&host);
    let broker = broker_host();
    host.serve_internal(
        secrets_broker::COMPONENT,
        Arc::new(move |req| secrets_broker::handle(req, broker.as_ref())),
    );
    let host = Arc::new(host);
    let url = serve(host.clone(), tenant_api::handle);
    let delete = || {
        greentic()
            .args(["tenant", "delete", "acme"])
            .env("GREENTIC_URL", &url)
            .env("SPIN_VARIABLE_AUTH_HS256_SECRET", TEST_HS256_SECRET)
            .output()
            .unwrap()
    };
    let first = delete();
    let stdout = String::from_utf8_lossy(&first.stdout);
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    assert!(
        stdout
            .lines()
            .last()
            .unwrap()
            .starts_with("acme: deleted ("),
        "{stdout}"
    );
    assert!(
        greentic::flows::tenant_config::TenantConfig::load(host.as_ref(), "acme")
            .unwrap()
            .is_none()
    );
    let again = delete();
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("answered 404"));
}

#[test]
fn slack_sign_matches_slacks_documented_example() {
    // The example of Slack's "Verifying requests from Slack" guide.
    let body = "token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c";
    let mut cmd = greentic();
    cmd.args(["slack", "sign", "--timestamp", "1531420618"])
        .env("SLACK_SIGNING_SECRET", "8f742231b10e8888abcd99yyyzzz85a5");
    let out = run_with_stdin(cmd, body);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8(out.stdout).unwrap().trim(),
        "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503"
    );
}

#[test]
fn export_writes_every_session_of_the_scope_as_ndjson_across_pages() {
    let host = MemoryHost::new(&[
        session_api::STORE_LABEL,
        greentic::service::limits::STORE_LABEL,
    ]);
    host.set_now_ms(now() as i64 * 1000);
    let store = greentic::store::sessions::SessionStore::new(host.store(session_api::STORE_LABEL));
    let support = TenantCtx::new("acme", "prod", Some("support")).unwrap();
    let other = TenantCtx::new("bigcorp", "prod", Some("helpdesk")).unwrap();
    for i in 0..150 {
        let new = greentic::testing::new_session("slack", &format!("U{i}"));
        store.create(&support, new, i).unwrap();
    }
    store
        .create(&other, greentic::testing::new_session("webchat", "V1"), 0)
        .unwrap();
    let url = serve(Arc::new(host), session_api::handle);
    let run = greentic()
        .args(["export", "--tenant", "acme", "--env", "prod"])
        .env("GREENTIC_URL", &url)
        .env("SPIN_VARIABLE_AUTH_HS256_SECRET", TEST_HS256_SECRET)
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&run.stderr),
        "exported 150 sessions\n"
    );
    let stdout = String::from_utf8(run.stdout).unwrap();
    let lines: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 150);
    let users: std::collections::BTreeSet<&str> = lines
        .iter()
        .map(|l| l["user_id"].as_str().unwrap())
        .collect();
    assert_eq!(users.len(), 150, "each session once, across two pages");
    assert!(
        lines
            .iter()
            .all(|l| l["tenant"] == "acme" && l["transcript"].is_array() && l["state"].is_object())
    );
}
