//! Runs the real wasm components of `spin.toml` in-process under wasmtime, the
//! way `spin up` would, so end-to-end tests exercise the very `.wasm` files
//! Spin will run (no Spin CLI can be installed where the tests run).
//!
//! The harness reads the manifest ([`manifest`]), routes requests by it
//! ([`router`]), gives every request a fresh instance of its component (as
//! Spin does, `instance`), and provides the Spin host interfaces the
//! components import: key-value stores in memory ([`kv`]), variables
//! ([`variables`]) and outbound HTTP with Spin's allow-list and service
//! chaining ([`outbound`]), plus `files` mounted read-only. It is a test
//! harness, not a product runtime: no listener, no timeouts, no TLS, outbound
//! requests only to loopback, `files` only as `{ source, destination }` folders.
//!
//! ```no_run
//! use spin_test_host::{Request, SpinApp};
//! let app = SpinApp::builder().variable("auth_hs256_secret", "0123...").build().unwrap();
//! let response = app.send(Request::new("GET", "/api/v1/sessions"));
//! assert_eq!(response.status, 401);
//! ```

mod compile;
pub mod environment;
mod instance;
pub mod kv;
pub mod manifest;
pub mod outbound;
pub mod router;
pub mod runtime_config;
pub mod variables;

use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use anyhow::{Context, anyhow, bail};
use greentic::store::kv::TestKv;
use http_body_util::BodyExt;
use wasmtime_wasi_http::p2::bindings::ProxyPre;

pub use greentic::http::{Request, Response};

use crate::instance::{Clock, State};
use crate::kv::{KvAccess, Stores};
use crate::manifest::Manifest;
use crate::outbound::AllowedHosts;
use crate::router::Router;
use crate::variables::ComponentVariables;

mod bindings {
    wasmtime::component::bindgen!({
        path: "wit",
        world: "spin-imports",
        imports: { default: trappable },
        with: {
            "fermyon:spin/key-value.store": crate::kv::OpenStore,
            "wasi:keyvalue/store.bucket": crate::kv::OpenStore,
            "wasi:keyvalue/atomics.cas": crate::kv::CasHandle,
        },
    });
}

/// Overrides where the `.wasm` files are looked up (default: the workspace's
/// `target/wasm32-wasip1/release`, where `spin.toml`'s `source`s point).
pub const WASM_DIR_ENV: &str = "SPIN_TEST_HOST_WASM_DIR";

/// Log lines kept per application (the oldest go first), so long benchmarks stay bounded.
const MAX_LOG_LINES: usize = 10_000;

/// The repository root (this crate lives in `tests/spin-test-host`).
pub fn workspace_dir() -> PathBuf {
    let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    crate_dir
        .ancestors()
        .nth(2)
        .unwrap_or(crate_dir)
        .to_path_buf()
}

/// Where the components' `.wasm` files are: [`WASM_DIR_ENV`], else the workspace's release build.
pub fn default_wasm_dir() -> PathBuf {
    std::env::var_os(WASM_DIR_ENV)
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_dir().join("target/wasm32-wasip1/release"))
}

/// `runtime-config.toml` in the manifest's folder, if there is one.
fn beside(manifest: &Path) -> Option<PathBuf> {
    let file = manifest.with_file_name("runtime-config.toml");
    file.is_file().then_some(file)
}

/// Configures an application before it starts.
#[derive(Clone)]
pub struct Builder {
    manifest: PathBuf,
    extra_manifest: String,
    runtime_config: Option<PathBuf>,
    wasm_dir: PathBuf,
    variables: BTreeMap<String, String>,
    wall_clock: Option<SystemTime>,
    backend: Option<StoreBackend>,
}

/// Makes the store for a label (see [`Builder::store_backend`]).
pub type StoreBackend = Arc<dyn Fn(&str) -> TestKv + Send + Sync>;

impl Builder {
    /// The manifest to run (default: the workspace's `spin.toml`).
    pub fn manifest(mut self, path: impl Into<PathBuf>) -> Self {
        self.manifest = path.into();
        self.runtime_config = beside(&self.manifest);
        self
    }

    /// TOML appended to the manifest before it is read: test-only components
    /// and triggers beside the application's own.
    pub fn append_to_manifest(mut self, toml: &str) -> Self {
        self.extra_manifest.push('\n');
        self.extra_manifest.push_str(toml);
        self
    }

    /// The runtime config whose `[key_value_store.<label>]`s must cover every
    /// declared label (default: `runtime-config.toml` beside the manifest if
    /// there is one, as the README runs `spin up --runtime-config-file
    /// runtime-config.toml`; `None`: Spin's own, `default` only).
    pub fn runtime_config(mut self, path: Option<PathBuf>) -> Self {
        self.runtime_config = path;
        self
    }

    /// The folder holding the `.wasm` files the manifest's `source`s name
    /// (default: [`default_wasm_dir`]).
    pub fn wasm_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.wasm_dir = dir.into();
        self
    }

    /// A variable's value, as `spin up --variable name=value` gives it.
    pub fn variable(mut self, name: &str, value: &str) -> Self {
        self.variables.insert(name.to_owned(), value.to_owned());
        self
    }

    /// Stops the components' wall clock at `at` (for fixtures with fixed timestamps).
    pub fn wall_clock(mut self, at: SystemTime) -> Self {
        self.wall_clock = Some(at);
        self
    }

    /// Where the stores keep their data: each label gets `backend(label)`, as
    /// a runtime config points a label at Redis (default: in memory).
    pub fn store_backend(mut self, backend: StoreBackend) -> Self {
        self.backend = Some(backend);
        self
    }

    /// Loads and checks everything `spin up` checks before serving: the
    /// manifest, routes, variables and every component's `.wasm`.
    pub fn build(self) -> anyhow::Result<SpinApp> {
        let manifest = self.load_manifest()?;
        let labels = manifest
            .component
            .values()
            .flat_map(|c| c.key_value_stores.iter().map(String::as_str));
        let stores = Arc::new(Stores::new(labels, |label| match &self.backend {
            Some(backend) => backend(label),
            None => TestKv::new(),
        }));
        let clock = Clock::default();
        if let Some(at) = self.wall_clock {
            clock.stop_at(at);
        }
        let app = self.start(&manifest, stores, clock)?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        Ok(SpinApp {
            rt,
            app: Arc::new(app),
            builder: self,
        })
    }

    fn load_manifest(&self) -> anyhow::Result<Manifest> {
        let path = &self.manifest;
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read manifest {}", path.display()))?;
        Manifest::parse(&format!("{text}{}", self.extra_manifest))
            .with_context(|| format!("manifest {}", path.display()))
    }

    fn start(&self, manifest: &Manifest, stores: Arc<Stores>, clock: Clock) -> anyhow::Result<App> {
        let router = Router::new(manifest)?;
        let labels = runtime_config::store_labels(self.runtime_config.as_deref())?;
        runtime_config::check_labels(manifest, &labels)?;
        self.check_built(manifest)?;
        let app_variables = variables::resolve_app(manifest, &self.variables)?;
        let mut components = BTreeMap::new();
        for (id, component) in &manifest.component {
            let hosts = component
                .allowed_outbound_hosts
                .iter()
                .map(|h| variables::render(h, &app_variables))
                .collect::<anyhow::Result<Vec<_>>>()
                .with_context(|| format!("component `{id}`"))?;
            let loaded = Loaded {
                pre: compile::compiled(&self.wasm_file(id, component)?)?,
                files: self.mounts(id, component)?,
                kv: KvAccess::new(stores.clone(), &component.key_value_stores),
                variables: ComponentVariables::resolve(id, component, &app_variables)?,
                allowed_hosts: AllowedHosts::parse(&hosts)
                    .with_context(|| format!("component `{id}`"))?,
                environment: component.environment.clone().into_iter().collect(),
            };
            components.insert(id.clone(), loaded);
        }
        Ok(App {
            components,
            router,
            stores,
            clock,
            logs: Mutex::new(VecDeque::new()),
            failures: Mutex::new(Vec::new()),
        })
    }

    /// The component's `files` as (folder here, path in the guest). Spin
    /// resolves a `source` against the manifest's folder.
    fn mounts(
        &self,
        id: &str,
        component: &manifest::Component,
    ) -> anyhow::Result<Vec<(PathBuf, String)>> {
        let base = self.manifest.parent().unwrap_or(Path::new("."));
        let mut mounts = Vec::new();
        for files in &component.files {
            let manifest::Files::Mount {
                source,
                destination,
            } = files
            else {
                unreachable!("the manifest refuses other `files` entries");
            };
            let dir = base.join(source);
            if !dir.is_dir() {
                bail!(
                    "component `{id}` mounts {}, which is not a folder{}",
                    dir.display(),
                    component.build.as_ref().map_or(String::new(), |b| format!(
                        " (its build: {})",
                        b.command_line()
                    ))
                );
            }
            mounts.push((dir, destination.clone()));
        }
        Ok(mounts)
    }

    /// The component's `.wasm`, or an error naming the command that builds it.
    fn wasm_file(&self, id: &str, component: &manifest::Component) -> anyhow::Result<PathBuf> {
        let file = Path::new(&component.source)
            .file_name()
            .ok_or_else(|| anyhow!("component `{id}`: source has no file name"))?;
        Ok(self.wasm_dir.join(file))
    }

    /// Every missing `.wasm` at once, each with its build command, so one
    /// message says everything to build before the tests can run.
    fn check_built(&self, manifest: &Manifest) -> anyhow::Result<()> {
        let mut missing = String::new();
        for (id, component) in &manifest.component {
            let wasm = self.wasm_file(id, component)?;
            if !wasm.is_file() {
                let build = component.build.as_ref().map_or_else(
                    || "cargo build --target wasm32-wasip1 --release -p <crate>".to_owned(),
                    manifest::Build::command_line,
                );
                missing += &format!("\n  {id}: {}\n    build it: {build}", wasm.display());
            }
        }
        if !missing.is_empty() {
            bail!(
                "wasm builds are missing:{missing}\n\
                 Build every component of the manifest with \
                 `scripts/build-components`, or set {WASM_DIR_ENV} \
                 to the folder holding the .wasm files."
            );
        }
        Ok(())
    }
}

/// A running application: what `spin up` serves, minus the listener.
pub struct SpinApp {
    rt: tokio::runtime::Runtime,
    app: Arc<App>,
    builder: Builder,
}

impl SpinApp {
    pub fn builder() -> Builder {
        let manifest = workspace_dir().join("spin.toml");
        Builder {
            runtime_config: beside(&manifest),
            manifest,
            extra_manifest: String::new(),
            wasm_dir: default_wasm_dir(),
            variables: BTreeMap::new(),
            wall_clock: None,
            backend: None,
        }
    }

    /// Serves one request from outside, as Spin would: routed by the manifest
    /// (an empty 404 when no public route matches), in a fresh instance, an
    /// empty 500 if the component fails without answering. A request HTTP
    /// cannot carry (a control character in a header, a space in the path)
    /// gets the empty 400 with which Spin's HTTP server refuses it unread.
    pub fn send(&self, request: Request) -> Response {
        let Ok(request) = instance::public_request(request) else {
            return Response {
                status: 400,
                headers: Vec::new(),
                body: Vec::new(),
            };
        };
        let app = self.app.clone();
        self.rt
            .block_on(async { response(app.serve(request).await).await })
    }

    /// Serves `request` as it arrives when a component allowed to chain to
    /// `component` sends it to `http://{component}.spin.internal`: to that
    /// component whatever the path, private routes included.
    pub fn send_chained(&self, component: &str, request: Request) -> Response {
        let url = format!("http://{component}.spin.internal");
        let mut request = instance::public_request(request)
            .unwrap_or_else(|e| panic!("no component could send this request: {e}"));
        // A guest cannot set `Host` (wasi-http forbids it); the URL carries the component.
        request.headers_mut().remove(http::header::HOST);
        let path_and_query = request.uri().path_and_query().map_or("/", |pq| pq.as_str());
        *request.uri_mut() = format!("{url}{path_and_query}")
            .parse()
            .expect("component ids make valid hosts");
        let app = self.app.clone();
        let component = component.to_owned();
        self.rt
            .block_on(async move { response(app.serve_chained(&component, request).await).await })
    }

    /// The store with this label, to seed and inspect through `greentic::store::kv::KeyValue`.
    /// Panics if no component declares it.
    pub fn store(&self, label: &str) -> &TestKv {
        self.app
            .stores
            .get(label)
            .unwrap_or_else(|| panic!("no component declares key-value store `{label}`"))
    }

    /// Moves the components' wall clock to `at`, where it stays.
    pub fn set_wall_clock(&self, at: SystemTime) {
        self.app.clock.stop_at(at);
    }

    /// Restarts the application with `name` set to `value`, as `spin up`
    /// restarted with another `--variable` over the same key-value stores.
    pub fn restart_with_variable(&mut self, name: &str, value: &str) -> anyhow::Result<()> {
        let builder = self.builder.clone().variable(name, value);
        let manifest = builder.load_manifest()?;
        self.app =
            Arc::new(builder.start(&manifest, self.app.stores.clone(), self.app.clock.clone())?);
        self.builder = builder;
        Ok(())
    }

    /// What the components wrote to stdout and stderr (Spin's component
    /// logs), one entry per line, oldest first.
    pub fn logs(&self) -> Vec<String> {
        self.app.logs.lock().unwrap().iter().cloned().collect()
    }

    /// Why instances failed (trapped, or could not start), one entry each.
    pub fn failures(&self) -> Vec<String> {
        self.app.failures.lock().unwrap().clone()
    }
}

async fn response(
    response: hyper::Response<wasmtime_wasi_http::p2::body::HyperOutgoingBody>,
) -> Response {
    let (parts, body) = response.into_parts();
    // `dispatch` has already read the body into memory: this cannot fail.
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes().to_vec())
        .unwrap_or_default();
    Response {
        status: parts.status.as_u16(),
        headers: parts
            .headers
            .iter()
            .map(|(n, v)| (n.to_string(), String::from_utf8_lossy(v.as_bytes()).into()))
            .collect(),
        body,
    }
}

/// A component ready to serve: compiled, with its manifest settings applied.
struct Loaded {
    pre: ProxyPre<State>,
    /// Read-only folders: (here, in the guest).
    files: Vec<(PathBuf, String)>,
    kv: KvAccess,
    variables: ComponentVariables,
    allowed_hosts: AllowedHosts,
    environment: Vec<(String, String)>,
}

/// One started application: what every instance of it shares.
struct App {
    components: BTreeMap<String, Loaded>,
    router: Router,
    stores: Arc<Stores>,
    clock: Clock,
    logs: Mutex<VecDeque<String>>,
    failures: Mutex<Vec<String>>,
}

impl App {
    fn collect_output(&self, output: &[u8]) {
        let mut logs = self.logs.lock().unwrap();
        for line in String::from_utf8_lossy(output).lines() {
            if logs.len() == MAX_LOG_LINES {
                logs.pop_front();
            }
            logs.push_back(line.to_owned());
        }
    }

    fn log_failure(&self, id: &str, why: &str) {
        self.failures
            .lock()
            .unwrap()
            .push(format!("component `{id}` failed: {why}"));
    }
}
