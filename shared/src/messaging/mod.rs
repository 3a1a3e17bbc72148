//! A message's way through the platform: webhooks verified and normalised
//! into an [`envelope`] ([`providers`]), published through the bridge
//! ([`bridge`]), pushed back as deliveries ([`delivery`]), applied as a flow
//! turn ([`executor`]) and sent out with the provider's API ([`egress`]).
//!
//! The top layer: it may use every other folder, and none uses it.

pub mod bridge;
pub mod delivery;
pub mod egress;
pub mod envelope;
pub mod executor;
pub mod providers;
