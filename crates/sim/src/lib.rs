//! midonet-sim (placeholder; see ARCHITECTURE.md).
