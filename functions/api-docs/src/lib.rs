//! Spin component: the OpenAPI 3.1 document of the application's HTTP
//! surface, `GET /api/openapi.yaml` as written (`api/openapi.yaml`) and
//! `GET /api/openapi.json` converted when the component is built. The
//! document describes every public route of spin.toml; tests/openapi.rs
//! checks the two against each other and against the running components.

pub mod api;

pub use api::{COMPONENT, handle};

#[cfg(target_arch = "wasm32")]
#[spin_sdk::http_component]
async fn serve(req: spin_sdk::http::IncomingRequest) -> spin_sdk::http::Response {
    let request = spin_host::read_request(req, greentic::http::DEFAULT_BODY_LIMIT).await;
    spin_host::into_spin_response(handle(&request, &spin_host::SpinHost))
}
