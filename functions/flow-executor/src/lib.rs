//! Spin component: the flow executor (`POST /internal/v1/deliveries/ingress`).
//!
//! The bridge pushes every ingress message here with its delivery token; the
//! handler checks the token and hands the delivery to
//! `greentic::messaging::executor::deliver_ingress`. 2xx means applied (or applied
//! before); 4xx means it never can be (dead-lettered with the reason); 5xx
//! means try again.

pub mod api;

pub use api::{BODY_LIMIT, COMPONENT, ROUTE, handle};

#[cfg(target_arch = "wasm32")]
#[spin_sdk::http_component]
async fn serve(req: spin_sdk::http::IncomingRequest) -> spin_sdk::http::Response {
    let request = spin_host::read_request(req, BODY_LIMIT).await;
    spin_host::into_spin_response(handle(&request, &spin_host::SpinHost))
}
