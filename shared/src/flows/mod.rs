//! What a tenant configures and what runs it: bundles ([`bundle`]), the
//! control plane that keeps each tenant's configuration as versions
//! ([`control`]) and what a request reads of it ([`tenant_config`]), flow documents
//! ([`flow`]), their templates ([`template`]) and the engine that runs a
//! turn ([`engine`]), and the YAML loading they share ([`yaml`]).
//!
//! Uses everything below `messaging`; nothing here sends or receives a message.

pub mod bundle;
pub mod control;
pub mod engine;
pub mod flow;
pub mod template;
pub mod tenant_config;
pub mod yaml;
