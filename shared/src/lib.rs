//! Greentic's host-independent core: everything a component knows about
//! tenants, storage keys, auth, sessions and bundles.
//!
//! **Architecture Invariant:** this crate never depends on `spin-sdk` (or any
//! host API). Components reach their host through [`host::Host`], so this code
//! compiles natively and for `wasm32-wasip1`, and is tested natively.

pub mod auth;
pub mod bridge;
pub mod bundle;
pub mod delivery;
pub mod egress;
pub mod engine;
pub mod envelope;
pub mod error;
pub mod executor;
pub mod flow;
pub mod host;
pub mod http;
pub mod index;
pub mod keys;
pub mod kv;
pub mod log;
pub mod providers;
pub mod secrets;
pub mod service;
pub mod session;
pub mod session_store;
pub mod subjects;
pub mod tenant;
pub mod tenant_config;
pub mod usage;
pub mod webchat_log;
pub mod yaml;

#[cfg(any(test, feature = "testing"))]
pub mod testing;

pub use error::ApiError;
pub use tenant::TenantCtx;
