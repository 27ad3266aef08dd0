//! midonet-flow (placeholder; see ARCHITECTURE.md).
