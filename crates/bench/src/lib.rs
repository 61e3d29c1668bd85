//! The bench crate's modules, shared by its two binaries: `crosslink-bench`
//! (`make bench`, every benchmark beside its baseline) and
//! `crosslink-bench-scale` (`make bench-scale`, B15/B9: one PostgreSQL primary
//! with 1,000 dealers and a million links under a mixed load).

pub mod cost;
pub mod imports;
pub mod load;
pub mod report;
pub mod scale;
pub mod scenarios;
pub mod service;
pub mod sync;
pub mod sync_rows;
