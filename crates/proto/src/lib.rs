//! midonet-proto (placeholder; see ARCHITECTURE.md).
