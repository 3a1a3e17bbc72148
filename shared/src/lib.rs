//! Greentic's host-independent core: everything a component knows about
//! tenants, storage keys, auth, sessions and bundles.
//!
//! **Architecture Invariant:** this crate never depends on `spin-sdk` (or any
//! host API). Components reach their host through [`host::Host`], so this code
//! compiles natively and for `wasm32-wasip1`, and is tested natively.
//!
//! The folders are layers, lowest first; a folder uses only the folders
//! before it in this list (ARCHITECTURE.md, "Code map", has the table, and
//! `tests/layers.rs` fails naming file and line when a `crate::` path breaks it):
//!
//! 1. [`tenancy`]: ids, [`TenantCtx`], storage keys, NATS subjects.
//! 2. [`http`]: host-independent request and response, [`ApiError`].
//! 3. [`store`]: the key-value contract and everything kept in it.
//! 4. [`host`]: what a component needs from its host.
//! 5. [`service`]: the steps around every handler, request logs, auth.
//! 6. [`secrets`]: sealed secrets, their store and the broker client.
//! 7. [`flows`]: bundles, flows, templates and the flow engine.
//! 8. [`messaging`]: envelopes, providers, the bridge, the executor, egress.
//! 9. [`testing`] (feature `testing`): fixtures over all of the above.
//!
//! The only re-exports are [`TenantCtx`] (from [`tenancy::ids`]) and
//! [`ApiError`] (from [`http::error`]): nearly every caller names them, and
//! the paths above are where they live.

// In layer order (see above); rustfmt would sort them if they were one block.
pub mod tenancy;

pub mod http;

pub mod store;

pub mod host;

pub mod service;

pub mod secrets;

pub mod flows;

pub mod messaging;

#[cfg(any(test, feature = "testing"))]
pub mod testing;

pub use http::error::ApiError;
pub use tenancy::ids::TenantCtx;
