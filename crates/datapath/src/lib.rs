//! midonet-datapath (in progress).
pub mod sys;
