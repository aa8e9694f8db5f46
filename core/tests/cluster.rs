//! Cluster tests (being written).
