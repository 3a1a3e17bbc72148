//! Spin component: the secrets broker, the only component that declares the
//! `secrets` key-value store.
//!
//! Two faces, one handler ([`api::handle`]):
//! - the admin REST API under `/api/v1/secrets` (JWT, same auth as the session API);
//! - internal operations under `/internal/v1/secrets/...` for other components,
//!   reached only through Spin service chaining (`http://secrets-broker.spin.internal`):
//!   no public route of the application leads to those paths.

pub mod api;

pub use api::{COMPONENT, handle};

#[cfg(target_arch = "wasm32")]
#[spin_sdk::http_component]
async fn serve(req: spin_sdk::http::IncomingRequest) -> spin_sdk::http::Response {
    // The largest any route takes; the handler applies each route's own.
    let request = spin_host::read_request(req, api::INTERNAL_BODY_LIMIT).await;
    spin_host::into_spin_response(handle(&request, &spin_host::SpinHost))
}
