//! End to end: features whose coverage was thin (placeholder, being written).
