//! midonet-cli (placeholder; see ARCHITECTURE.md).
