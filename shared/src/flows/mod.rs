//! What a tenant configures and what runs it: bundles ([`bundle`]) and the
//! per-tenant file a request reads of them ([`tenant_config`]), flow documents
//! ([`flow`]), their templates ([`template`]) and the engine that runs a
//! turn ([`engine`]), and the YAML loading they share ([`yaml`]).
//!
//! Uses everything below `messaging`; nothing here sends or receives a message.

pub mod bundle;
pub mod engine;
pub mod flow;
pub mod template;
pub mod tenant_config;
pub mod yaml;
