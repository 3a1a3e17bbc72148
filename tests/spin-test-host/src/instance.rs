//! One request in one fresh instance, as Spin serves it: the instance's
//! state (WASI, HTTP, stores, variables), the outbound-HTTP hook that applies
//! `allowed_outbound_hosts` and service chaining, and the dispatch itself.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use wasmtime::Store;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::runtime::AbortOnDropJoinHandle;
use wasmtime_wasi::{DirPerms, FilePerms, HostWallClock, WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::WasiHttpCtx;
use wasmtime_wasi_http::p2::bindings::http::types::{ErrorCode, Scheme};
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;
use wasmtime_wasi_http::p2::types::{
    HostFutureIncomingResponse, IncomingResponse, OutgoingRequestConfig,
};
use wasmtime_wasi_http::p2::{HttpResult, WasiHttpCtxView, WasiHttpHooks, WasiHttpView};

use crate::App;
use crate::compile::runtime;
use crate::kv::KvAccess;
use crate::outbound::{self, AllowedHosts, Destination};
use crate::router::{RouteMatch, Router};
use crate::variables::ComponentVariables;

/// The address Spin listens on by default; public requests carry it as their host.
const LISTEN_ADDR: &str = "127.0.0.1:3000";
/// The address public requests appear to come from.
const CLIENT_ADDR: &str = "127.0.0.1:50000";
/// What Spin gives a chained request as its client address.
const CHAINED_CLIENT_ADDR: &str = "0.0.0.0:0";
/// The host of `spin-full-url` for a request without `Host`, as every
/// chained one is (wasi-http forbids a guest to set it).
const NO_HOST: &str = "localhost";
/// Output kept per instance; more is dropped, as a log pipe would.
const OUTPUT_LIMIT: usize = 1 << 20;

pub(crate) type HyperRequest = hyper::Request<HyperOutgoingBody>;
type HyperResponse = hyper::Response<HyperOutgoingBody>;
type Answer = tokio::sync::oneshot::Receiver<Result<HyperResponse, ErrorCode>>;

/// Everything one instance can reach: its WASI context, its HTTP resources,
/// its declared stores and its variables.
pub struct State {
    pub(crate) table: ResourceTable,
    wasi: WasiCtx,
    http: WasiHttpCtx,
    outbound: Outbound,
    pub(crate) kv: KvAccess,
    pub(crate) variables: ComponentVariables,
}

impl WasiView for State {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for State {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.outbound,
        }
    }
}

/// The components' wall clock: real time unless a test has stopped it.
#[derive(Clone, Default)]
pub(crate) struct Clock(Arc<std::sync::Mutex<Option<Duration>>>);

impl Clock {
    pub fn stop_at(&self, at: SystemTime) {
        let since_epoch = at.duration_since(UNIX_EPOCH).unwrap_or_default();
        *self.0.lock().unwrap() = Some(since_epoch);
    }
}

impl HostWallClock for Clock {
    fn resolution(&self) -> Duration {
        Duration::from_nanos(1)
    }

    fn now(&self) -> Duration {
        self.0.lock().unwrap().unwrap_or_else(|| {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default()
        })
    }
}

/// A public request, as a client sends it to `spin up`: with a `Host`, and
/// a `content-length` when it has a body.
pub(crate) fn public_request(request: greentic::http::Request) -> Result<HyperRequest, String> {
    let mut path_and_query = request.path.clone();
    if !request.query.is_empty() {
        path_and_query = format!("{path_and_query}?{}", request.query);
    }
    let mut builder = hyper::Request::builder()
        .method(request.method.as_str())
        .uri(format!("http://{LISTEN_ADDR}{path_and_query}"))
        .header(http::header::HOST, LISTEN_ADDR);
    for (name, value) in &request.headers {
        builder = builder.header(name.as_str(), value.as_slice());
    }
    let has_length = request
        .headers
        .iter()
        .any(|(n, _)| n.eq_ignore_ascii_case("content-length"));
    if !request.body.is_empty() && !has_length {
        builder = builder.header(http::header::CONTENT_LENGTH, request.body.len());
    }
    let body = Full::new(Bytes::from(request.body))
        .map_err(|never| match never {})
        .boxed_unsync();
    builder.body(body).map_err(|e| e.to_string())
}

impl App {
    /// Serves a public request: routed by the manifest (Spin's empty 404
    /// when nothing matches), then [`App::dispatch`].
    pub(crate) async fn serve(self: Arc<Self>, request: HyperRequest) -> HyperResponse {
        match self.router.route(request.uri().path()) {
            Some(route) => {
                let host = request
                    .headers()
                    .get(http::header::HOST)
                    .and_then(|h| std::str::from_utf8(h.as_bytes()).ok())
                    .unwrap_or(NO_HOST)
                    .to_owned();
                self.dispatch(route, request, &host, CLIENT_ADDR).await
            }
            None => empty(404),
        }
    }

    /// Serves a chained request (`http://<id>.spin.internal/...`) the way
    /// Spin does: straight to that component with a synthetic `/...` match,
    /// whatever the path, provided the component has a trigger at all.
    pub(crate) async fn serve_chained(
        self: Arc<Self>,
        id: &str,
        request: HyperRequest,
    ) -> HyperResponse {
        if !self.router.has_trigger(id) {
            self.log_failure(id, &format!("no HTTP trigger for chained component `{id}`"));
            return empty(500);
        }
        let route = Router::chained(id, request.uri().path());
        self.dispatch(route, request, NO_HOST, CHAINED_CLIENT_ADDR)
            .await
    }

    /// Runs the matched component on `request` with Spin's headers added.
    /// Spin answers an empty 500 when the request cannot be handed over
    /// (a header value that is not UTF-8) or the component gives no response.
    async fn dispatch(
        self: Arc<Self>,
        route: RouteMatch,
        mut request: HyperRequest,
        host: &str,
        client_addr: &str,
    ) -> HyperResponse {
        if request
            .headers()
            .values()
            .any(|v| std::str::from_utf8(v.as_bytes()).is_err())
        {
            return empty(500);
        }
        let path_and_query = request
            .uri()
            .path_and_query()
            .map_or("/", |pq| pq.as_str())
            .to_owned();
        let full_url = format!("http://{host}{path_and_query}");
        // Appended, not replacing: Spin keeps a client's own `spin-*` headers too.
        for (name, value) in route.spin_headers(&full_url, client_addr) {
            let name = http::HeaderName::try_from(name).expect("spin header names are valid");
            match http::HeaderValue::try_from(value) {
                Ok(value) => request.headers_mut().append(name, value),
                Err(_) => return empty(500),
            };
        }
        let id = route.component;
        let (answer, task) = match self.start(&id, request) {
            Ok(started) => started,
            Err(e) => {
                self.log_failure(&id, &format!("{e:?}"));
                return empty(500);
            }
        };
        match answer.await {
            Ok(Ok(response)) => {
                // The instance may still be streaming the body: it lives until
                // the body is read, then the worker ends it.
                let (parts, body) = response.into_parts();
                let body = match body.collect().await {
                    Ok(body) => body.to_bytes(),
                    Err(_) => {
                        task.await;
                        return empty(500);
                    }
                };
                task.await;
                hyper::Response::from_parts(parts, full(body))
            }
            _ => {
                task.await;
                empty(500)
            }
        }
    }

    /// Starts a fresh instance of `id` on `request`. Returns where its
    /// response will arrive and the task running it.
    fn start(
        self: &Arc<Self>,
        id: &str,
        request: HyperRequest,
    ) -> anyhow::Result<(Answer, AbortOnDropJoinHandle<()>)> {
        let component = &self.components[id];
        let output = MemoryOutputPipe::new(OUTPUT_LIMIT);
        let mut wasi = WasiCtx::builder();
        wasi.stdout(output.clone())
            .stderr(output.clone())
            .envs(&component.environment)
            .wall_clock(self.clock.clone());
        for (dir, guest) in &component.files {
            wasi.preopened_dir(dir, guest, DirPerms::READ, FilePerms::READ)?;
        }
        let state = State {
            table: ResourceTable::new(),
            wasi: wasi.build(),
            http: WasiHttpCtx::new(),
            outbound: Outbound {
                app: self.clone(),
                allowed: component.allowed_hosts.clone(),
            },
            kv: component.kv.clone(),
            variables: component.variables.clone(),
        };
        let mut store = Store::new(&runtime().engine, state);
        let (sender, receiver) = tokio::sync::oneshot::channel();
        let request = store
            .data_mut()
            .http()
            .new_incoming_request(Scheme::Http, request)?;
        let out = store.data_mut().http().new_response_outparam(sender)?;
        let pre = component.pre.clone();
        let (app, id) = (self.clone(), id.to_owned());
        let task = wasmtime_wasi::runtime::spawn(async move {
            let outcome = async {
                let proxy = pre.instantiate_async(&mut store).await?;
                proxy
                    .wasi_http_incoming_handler()
                    .call_handle(&mut store, request, out)
                    .await
            }
            .await;
            drop(store);
            app.collect_output(&output.contents());
            if let Err(e) = outcome {
                app.log_failure(&id, &format!("{e:?}"));
            }
        });
        Ok((receiver, task))
    }
}

fn full(body: Bytes) -> HyperOutgoingBody {
    Full::new(body)
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// Spin's own answers (no route, failed component) have no body.
fn empty(status: u16) -> HyperResponse {
    let mut response = hyper::Response::new(full(Bytes::new()));
    *response.status_mut() = http::StatusCode::from_u16(status).expect("a valid status");
    response
}

/// The outbound-HTTP hook of one instance.
struct Outbound {
    app: Arc<App>,
    allowed: AllowedHosts,
}

impl WasiHttpHooks for Outbound {
    /// As in Spin, the allow-list is checked when the request is sent, so a
    /// refusal arrives as the response's error (`HttpRequestDenied`).
    fn send_request(
        &mut self,
        request: HyperRequest,
        config: OutgoingRequestConfig,
    ) -> HttpResult<HostFutureIncomingResponse> {
        let destination = self.allowed.check(request.uri());
        let app = self.app.clone();
        let pending = wasmtime_wasi::runtime::spawn(async move {
            Ok(match destination {
                Err(code) => Err(code),
                Ok(Destination::Component(id)) => Ok(IncomingResponse {
                    resp: app.serve_chained(&id, request).await,
                    worker: None,
                    between_bytes_timeout: config.between_bytes_timeout,
                }),
                Ok(Destination::Network) => outbound::send_to_loopback(request, config).await,
            })
        });
        Ok(HostFutureIncomingResponse::pending(pending))
    }
}
