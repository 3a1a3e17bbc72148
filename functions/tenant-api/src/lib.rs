//! Spin component: the tenant control plane (`/api/v1/tenants`).
//!
//! A thin adapter: [`api::handle`] parses the request, resolves the caller's
//! access, calls `greentic::flows::control` and renders the answer. The only
//! component that writes the `config` store, and the one that deletes a
//! tenant (`offboard.rs`: it declares every store a tenant's data is in).

pub mod api;
mod offboard;

pub use api::{COMPONENT, handle};

#[cfg(target_arch = "wasm32")]
#[spin_sdk::http_component]
async fn serve(req: spin_sdk::http::IncomingRequest) -> spin_sdk::http::Response {
    let request = spin_host::read_request(req, api::BODY_LIMIT).await;
    spin_host::into_spin_response(handle(&request, &spin_host::SpinHost))
}
