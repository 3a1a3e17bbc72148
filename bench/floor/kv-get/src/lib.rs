//! The callee of the floor's chained call: one key-value get, as the secrets
//! broker does one read to resolve a secret or verify an HMAC.

#[cfg(target_arch = "wasm32")]
#[spin_sdk::http_component]
async fn serve(_req: spin_sdk::http::IncomingRequest) -> spin_sdk::http::Response {
    let store = spin_sdk::key_value::Store::open("cache").expect("the floor declares the store");
    let value = store.get("floor/secret").expect("the store answers");
    spin_sdk::http::Response::new(200, value.unwrap_or_default())
}
