//! End to end: where two writers meet on a field (placeholder, being written).

mod support;
