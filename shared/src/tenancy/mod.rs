//! Who a request is for and where its data lives: validated ids and
//! [`TenantCtx`](ids::TenantCtx) ([`ids`]), every storage key ([`keys`]) and
//! every NATS subject ([`subjects`]), built here and nowhere else.
//!
//! The lowest layer: it uses nothing else of this crate, so any module may
//! build a key or a subject without a circle.

pub mod ids;
pub mod keys;
pub mod limits;
pub mod subjects;
