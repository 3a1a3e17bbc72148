//! Spin component: the session REST API (`/api/v1/sessions`).
//!
//! A thin adapter: [`api::handle`] parses the request, resolves the caller's
//! [`greentic::TenantCtx`] and access, calls `greentic::store::sessions` and
//! renders the answer. The `#[http_component]` entry point below only converts
//! Spin's request and response, so everything testable runs natively.

pub mod api;

pub use api::{COMPONENT, STORE_LABEL, handle};

#[cfg(target_arch = "wasm32")]
#[spin_sdk::http_component]
async fn serve(req: spin_sdk::http::IncomingRequest) -> spin_sdk::http::Response {
    let request = spin_host::read_request(req, greentic::http::DEFAULT_BODY_LIMIT).await;
    spin_host::into_spin_response(handle(&request, &spin_host::SpinHost))
}
