//! The bench crate's modules, as a library so that more than one binary
//! can share the service start, the load driver and the report.

pub mod cost;
pub mod imports;
pub mod load;
pub mod report;
pub mod scenarios;
pub mod service;
pub mod sync;
