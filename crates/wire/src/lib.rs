//! midonet-wire (placeholder; see ARCHITECTURE.md).
