//! midonet-cluster (placeholder; see ARCHITECTURE.md).
