//! midonet-agent (placeholder; see ARCHITECTURE.md).
