//! The product run for real, shared by the end-to-end tests (tests/) and
//! the benchmark (bench/): servers tied to the test process ([`process`]), a
//! redis-server with a database per store ([`redis`]), nats-server, the bridge
//! and `spin up` of spin.toml with fake provider APIs ([`spin_up`]), provider
//! requests built from the providers' documentation ([`providers`]), and the
//! web chat page in Chromium ([`browser`]). It does not link wasmtime: the
//! test host (tests/spin-test-host) is the e2e crate's business.

pub mod browser;
pub mod process;
pub mod providers;
pub mod redis;
pub mod spin_up;

use std::path::{Path, PathBuf};

/// The repository root (this crate lives in `tests/harness`).
pub fn workspace_dir() -> PathBuf {
    let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    crate_dir
        .ancestors()
        .nth(2)
        .unwrap_or(crate_dir)
        .to_path_buf()
}
