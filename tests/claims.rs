//! End to end: claims before acting upstream (placeholder, being written).

mod support;
