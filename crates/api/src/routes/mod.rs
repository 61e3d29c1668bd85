//! The HTTP routes, one module per resource, each handler beside its OpenAPI annotation.

pub mod connections;
pub mod docs;
pub mod health;
pub mod providers;
