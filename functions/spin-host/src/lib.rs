//! The Spin implementation of [`greentic::host::Host`], shared by every component.
//!
//! **Architecture Invariant:** this crate and the `functions/*` components are
//! the only code that depends on `spin-sdk`; it compiles to something only for
//! `wasm32`, since Spin's imports cannot link natively. Handlers never see a
//! Spin type: requests and responses are converted here, at the edge.

#[cfg(target_arch = "wasm32")]
mod spin;

#[cfg(target_arch = "wasm32")]
pub use spin::{SpinHost, into_spin_response, read_request};
