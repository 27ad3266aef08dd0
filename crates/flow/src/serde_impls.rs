//! Serde support through the text forms (see `text`): a MAC is
//! `"02:00:00:00:00:01"`, a key is its packet description, a mask and an
//! action list are what `midonet trace` prints. One spelling everywhere, so
//! JSON traces, golden files and the CLI agree.
//!
//! Keys and MACs deserialize too; masks and actions are output-only (nothing
//! reads them back, and a parser would be a second syntax to keep in step).

use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::action::{Action, Actions};
use crate::key::{FlowKey, MacAddr};
use crate::mask::FlowMask;

impl Serialize for MacAddr {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for MacAddr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?.parse().map_err(D::Error::custom)
    }
}

impl Serialize for FlowKey {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for FlowKey {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?.parse().map_err(D::Error::custom)
    }
}

impl Serialize for FlowMask {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl Serialize for Action {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl Serialize for Actions {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::FieldId;

    #[test]
    fn json_forms() {
        let mac = MacAddr([2, 0, 0, 0, 0, 0x1f]);
        assert_eq!(serde_json::to_string(&mac).expect("ser"), "\"02:00:00:00:00:1f\"");
        assert_eq!(serde_json::from_str::<MacAddr>("\"02:00:00:00:00:1f\"").expect("de"), mac);
        assert!(serde_json::from_str::<MacAddr>("\"nope\"").is_err());

        let k: FlowKey =
            "in_port=2,ip4.src=10.0.0.1,ip4.dst=10.0.0.2,udp.dst=53".parse().expect("key");
        let json = serde_json::to_string(&k).expect("ser");
        assert_eq!(json, format!("\"{k}\""));
        assert_eq!(serde_json::from_str::<FlowKey>(&json).expect("de"), k);

        let mut m = FlowMask::empty();
        m.mark(FieldId::InPort);
        assert_eq!(serde_json::to_string(&m).expect("ser"), "\"in_port\"");
        let a: Actions = [Action::Output(3)].into_iter().collect();
        assert_eq!(serde_json::to_string(&a).expect("ser"), "\"output(3)\"");
        assert_eq!(serde_json::to_string(&Actions::new()).expect("ser"), "\"drop\"");
    }
}
