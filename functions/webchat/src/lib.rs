//! Spin component: the platform's web chat for people.
//!
//! - `GET /webchat`: one static page (no build step) that gets a token, sends
//!   messages to the channel's webhook and shows the flow's replies;
//! - `GET /webchat/v1/{env}/{tenant}/{team}/{channel}/activities?watermark=N`:
//!   the bot's activities of the token's conversation after `N`.
//!
//! Sending is the ingress webhook's job (`POST /webhooks/.../{channel}` with
//! the same token); tokens come from `POST /webhooks/.../{channel}/tokens`.

pub mod api;

pub use api::{COMPONENT, handle};

#[cfg(target_arch = "wasm32")]
#[spin_sdk::http_component]
async fn serve(req: spin_sdk::http::IncomingRequest) -> spin_sdk::http::Response {
    let request = spin_host::read_request(req, greentic::http::DEFAULT_BODY_LIMIT).await;
    spin_host::into_spin_response(handle(&request, &spin_host::SpinHost))
}
