//! What is kept in the key-value stores and how: the [`kv::KeyValue`]
//! contract with Spin's semantics, slot indexes for listing without a scan,
//! session records and memory, sessions with their indexes, usage counters
//! and web chat logs.
//!
//! Uses `tenancy` (keys) and `http` (each store error becomes an `ApiError`
//! where it is defined). A new kind of stored data (a tenant's config store,
//! retention and deletion of a tenant's data) belongs here.

pub mod budget;
pub mod config;
pub mod index;
pub mod kv;
pub mod lifecycle;
pub mod offboard;
pub mod people;
pub mod rate;
pub mod session;
pub mod sessions;
pub mod teams;
pub mod usage;
pub mod webchat_log;
