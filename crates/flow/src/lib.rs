//! midonet-flow: the flow key, the wildcard mask and the actions — the
//! contract between the simulation (`sim`) and the datapath.
//!
//! # THE INVARIANT
//!
//! **A field the simulation read but did not mark is a forwarding bug; a field
//! marked but not read only costs cache hits.**
//!
//! The datapath installs the simulation's result as a megaflow: the packet's
//! key restricted to a [`FlowMask`] → [`Actions`]. Every later packet that
//! agrees with the key on the masked bits gets the same actions without being
//! simulated. If the decision depended on a field that is not in the mask, a
//! packet that differs in that field gets the wrong actions. If the mask holds
//! a field the decision did not depend on, the only cost is that packets
//! differing in it miss and are simulated again. So the simulation reads the
//! packet only through [`FlowMatch`]'s getters, which mark what they return,
//! and marks generously whenever in doubt (OVS `classifier.h` makes the same
//! argument).
//!
//! # Pieces
//!
//! ```text
//!  frame ──FlowKey::extract──> FlowKey ──FlowMatch::new──> sim (getters mark, setters rewrite)
//!                                                            │
//!      megaflow = FlowMask::apply(original) ──> Actions ◄────┘ diff_actions + Output/Tunnel
//!                                                  │
//!  datapath: apply_action(frame, a) for rewrites, emits for Output/Tunnel/Userspace
//! ```
//!
//! * [`FlowKey`], [`MacAddr`], [`InPort`], [`FragType`]: the key (module [`key`]).
//! * [`FlowKey::extract`] and [`ParseError`]: keying untrusted frames.
//! * [`FlowMask`], [`FieldId`], [`MaskedKey`]: wildcards with IP prefixes.
//! * [`FlowMatch`]: the marking view the simulation uses.
//! * [`Action`], [`Actions`], [`diff_actions`]: what to do with a packet.
//! * [`apply_action`], [`apply_actions_to_frame`]: in-place rewrites with
//!   incremental checksums; [`set_field`], [`push_vlan_in_place`],
//!   [`pop_vlan_in_place`]: the same on a byte slice (with headroom for a
//!   VLAN push), for the datapath's receive buffers.
//! * [`FlowKey::to_frame`], [`FlowKey::canonical`], `FromStr`/`Display`:
//!   the `midonet trace` packet syntax and frames built from keys; serde
//!   (de)serializes through the same text forms.
//!
//! Of the workspace crates this one depends only on `midonet-wire`, the
//! other vocabulary crate: the rewriter reads and writes headers through
//! its typed views and uses its checksum arithmetic, so each exists once.

mod action;
mod build;
mod extract;
pub mod key;
mod mask;
mod matching;
mod rewrite;
mod serde_impls;
mod text;

pub use action::{diff_actions, Action, Actions, UserspaceReason};
pub use extract::ParseError;
pub use key::{FlowKey, FragType, InPort, MacAddr, MacParseError};
pub use mask::{FieldId, FlowMask, MaskedKey};
pub use matching::FlowMatch;
pub use rewrite::{
    apply_action, apply_action_partial, apply_actions_to_frame, pop_vlan_in_place,
    push_vlan_in_place, set_field, RewriteError,
};
pub use text::{DescParseError, MaskedDisplay};
