//! A test-only Spin component for spin-test-host's self-tests: it answers
//! with what its host gave it, so a test can check the harness against
//! Spin's rules (declared stores, allowed hosts, variables, routing headers,
//! a fresh instance per request) through a real spin-sdk 5.2 wasm build.
//!
//! The operation is chosen by the query (`?op=...`), never by the path, so
//! the same component answers on any route and when chained to.
//! Native builds are empty: only the wasm build has a Spin host to probe.

#[cfg(target_arch = "wasm32")]
mod probe;
