//! Spin component: provider webhooks (`/webhooks/{env}/{tenant}/{team}/{channel}`).
//!
//! A thin adapter: [`api::handle`] resolves the channel from the path and the
//! tenant's configuration, lets `greentic::messaging::providers` verify and normalise
//! the request (secrets come from the broker, by service chaining), and
//! publishes the envelope through the bridge. It answers 200 only once
//! JetStream has stored the message.

pub mod api;

pub use api::{BODY_LIMIT, COMPONENT, handle};

#[cfg(target_arch = "wasm32")]
#[spin_sdk::http_component]
async fn serve(req: spin_sdk::http::IncomingRequest) -> spin_sdk::http::Response {
    let request = spin_host::read_request(req, BODY_LIMIT).await;
    spin_host::into_spin_response(handle(&request, &spin_host::SpinHost))
}
