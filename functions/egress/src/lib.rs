//! Spin component: egress (`POST /internal/v1/deliveries/egress`).
//!
//! The bridge pushes every reply here with its delivery token; the handler
//! hands it to `greentic::messaging::egress::deliver`, which sends it with the provider
//! of its channel and that tenant/team's credentials (from the broker).

pub mod api;

pub use api::{BODY_LIMIT, COMPONENT, ROUTE, handle};

#[cfg(target_arch = "wasm32")]
#[spin_sdk::http_component]
async fn serve(req: spin_sdk::http::IncomingRequest) -> spin_sdk::http::Response {
    let request = spin_host::read_request(req, BODY_LIMIT).await;
    spin_host::into_spin_response(handle(&request, &spin_host::SpinHost))
}
