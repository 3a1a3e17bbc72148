//! The least a Spin HTTP component can do: answer 200. What every other
//! figure of the benchmark is divided by.

#[cfg(target_arch = "wasm32")]
#[spin_sdk::http_component]
async fn serve(_req: spin_sdk::http::IncomingRequest) -> spin_sdk::http::Response {
    spin_sdk::http::Response::new(200, "ok")
}
