//! The vocabulary of credvault: identifiers, environments, roles and permissions, and the
//! declarative credential-type schemas. No IO, no async, no SQL, no HTTP: everything here is
//! plain data and pure functions that every other crate can share.

pub mod catalogue;
pub mod connectors;
pub mod credential_types;
pub mod destinations;
pub mod ids;
pub mod problems;
pub mod roles;
pub mod secret;
pub mod states;
pub mod time;

pub use ids::*;
