//! Typed object ids.
//!
//! `Id<T>` is a UUID tagged with the kind of object it names. The tag is a
//! zero-sized phantom, so ids are 16 bytes, `Copy`, hash like UUIDs and
//! serialize as the plain UUID string MidoNet uses.

use std::cmp::Ordering;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::marker::PhantomData;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use uuid::Uuid;

/// A UUID naming an object of kind `T`.
pub struct Id<T> {
    uuid: Uuid,
    _kind: PhantomData<fn() -> T>,
}

impl<T> Id<T> {
    pub const fn from_uuid(uuid: Uuid) -> Self {
        Id { uuid, _kind: PhantomData }
    }
    /// A fresh random id (v4).
    pub fn random() -> Self {
        Self::from_uuid(Uuid::new_v4())
    }
    /// The nil id; used as "not yet assigned" in create requests.
    pub const fn nil() -> Self {
        Self::from_uuid(Uuid::nil())
    }
    pub fn is_nil(&self) -> bool {
        self.uuid.is_nil()
    }
    pub const fn uuid(&self) -> Uuid {
        self.uuid
    }
    /// The same UUID seen as an id of another kind (e.g. a port's device id
    /// as a bridge id once the port type says it is a bridge).
    pub const fn cast<U>(self) -> Id<U> {
        Id::from_uuid(self.uuid)
    }
}

impl<T> Clone for Id<T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T> Copy for Id<T> {}
impl<T> PartialEq for Id<T> {
    fn eq(&self, other: &Self) -> bool {
        self.uuid == other.uuid
    }
}
impl<T> Eq for Id<T> {}
impl<T> PartialOrd for Id<T> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl<T> Ord for Id<T> {
    fn cmp(&self, other: &Self) -> Ordering {
        self.uuid.cmp(&other.uuid)
    }
}
impl<T> Hash for Id<T> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.uuid.hash(state)
    }
}
impl<T> Default for Id<T> {
    fn default() -> Self {
        Self::nil()
    }
}
impl<T> fmt::Debug for Id<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.uuid)
    }
}
impl<T> fmt::Display for Id<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.uuid)
    }
}
impl<T> FromStr for Id<T> {
    type Err = uuid::Error;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Uuid::parse_str(s.trim()).map(Self::from_uuid)
    }
}
impl<T> From<Uuid> for Id<T> {
    fn from(u: Uuid) -> Self {
        Self::from_uuid(u)
    }
}
impl<T> Serialize for Id<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.uuid.serialize(s)
    }
}
impl<'de, T> Deserialize<'de> for Id<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Uuid::deserialize(d).map(Self::from_uuid)
    }
}

pub type BridgeId = Id<crate::Bridge>;
pub type RouterId = Id<crate::Router>;
pub type PortId = Id<crate::Port>;
pub type RouteId = Id<crate::Route>;
pub type ChainId = Id<crate::Chain>;
pub type RuleId = Id<crate::Rule>;
pub type PortGroupId = Id<crate::PortGroup>;
pub type IpAddrGroupId = Id<crate::IpAddrGroup>;
pub type HostId = Id<crate::Host>;
pub type TunnelZoneId = Id<crate::TunnelZone>;
pub type LoadBalancerId = Id<crate::LoadBalancer>;
pub type PoolId = Id<crate::Pool>;
pub type PoolMemberId = Id<crate::PoolMember>;
pub type VipId = Id<crate::Vip>;
pub type HealthMonitorId = Id<crate::HealthMonitor>;
pub type MirrorId = Id<crate::Mirror>;
/// A bridge or a router: the device a port belongs to, or a device named in
/// a `traversedDevice` condition.
pub type DeviceId = Id<Device>;

/// Marker for ids that may name either a bridge or a router.
pub enum Device {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_round_trips_as_plain_uuid_string() {
        let id = BridgeId::random();
        let json = serde_json::to_string(&id).expect("serialize");
        assert_eq!(json, format!("\"{}\"", id.uuid()));
        let back: BridgeId = serde_json::from_str(&json).expect("parse");
        assert_eq!(back, id);
    }

    #[test]
    fn id_parse_rejects_garbage() {
        assert!("not-a-uuid".parse::<PortId>().is_err());
        assert!(PortId::nil().is_nil());
    }
}
