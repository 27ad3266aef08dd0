//! Byte layout of the embedded store's records.
//!
//! Hand-rolled rather than serde: the records are tiny, fixed and on the
//! write path of every transaction, and a self-describing format (JSON)
//! would store keys and values as arrays of numbers. All integers are
//! big-endian `i64`; lengths are big-endian `u32`.
//!
//! ```text
//! kv record     := create_rev mod_rev version lease(0 = none) value...
//! history entry := count:u32 event*
//! event         := tag:u8 (0 put, 1 delete) has_prev:u8 key:bytes
//!                  [put: record:bytes] [has_prev: prev_record:bytes]
//! bytes         := len:u32 data
//! ```
//!
//! The revision of a delete event is the history entry's key, so it is not
//! repeated per event.

use crate::error::{Result, StoreError};
use crate::types::{KeyValue, LeaseId, Revision, WatchEvent};

const HEADER_SIZE: usize = 32;

/// Encodes a key's stored record (everything but the key itself).
pub(crate) fn encode_record(kv: &KeyValue) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_SIZE + kv.value.len());
    out.extend_from_slice(&kv.create_revision.to_be_bytes());
    out.extend_from_slice(&kv.mod_revision.to_be_bytes());
    out.extend_from_slice(&kv.version.to_be_bytes());
    out.extend_from_slice(&kv.lease.map_or(0, |l| l.0).to_be_bytes());
    out.extend_from_slice(&kv.value);
    out
}

/// Decodes a record stored under `key`.
pub(crate) fn decode_record(key: &[u8], bytes: &[u8]) -> Result<KeyValue> {
    if bytes.len() < HEADER_SIZE {
        return Err(StoreError::Corrupt(format!(
            "kv record of {} bytes, expected at least {HEADER_SIZE}",
            bytes.len()
        )));
    }
    let int = |i: usize| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&bytes[i * 8..i * 8 + 8]);
        i64::from_be_bytes(b)
    };
    let lease = int(3);
    Ok(KeyValue {
        key: key.to_vec(),
        value: bytes[HEADER_SIZE..].to_vec(),
        create_revision: int(0),
        mod_revision: int(1),
        version: int(2),
        lease: (lease != 0).then_some(LeaseId(lease)),
    })
}

fn put_bytes(out: &mut Vec<u8>, data: &[u8]) {
    // Keys and values are far below 4 GiB (etcd caps requests at 1.5 MiB).
    let len = u32::try_from(data.len()).expect("key or value larger than 4 GiB");
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(data);
}

/// Encodes the events of one revision.
pub(crate) fn encode_events(events: &[WatchEvent]) -> Vec<u8> {
    let mut out = Vec::new();
    let count = u32::try_from(events.len()).expect("more than 4G events in one revision");
    out.extend_from_slice(&count.to_be_bytes());
    for ev in events {
        let (tag, kv, prev) = match ev {
            WatchEvent::Put { kv, prev } => (0u8, Some(kv), prev),
            WatchEvent::Delete { prev, .. } => (1u8, None, prev),
        };
        out.push(tag);
        out.push(u8::from(prev.is_some()));
        put_bytes(&mut out, ev.key());
        if let Some(kv) = kv {
            put_bytes(&mut out, &encode_record(kv));
        }
        if let Some(prev) = prev {
            put_bytes(&mut out, &encode_record(prev));
        }
    }
    out
}

struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        if self.bytes.len() < n {
            return Err(StoreError::Corrupt(format!(
                "history entry truncated: need {n} bytes, {} left",
                self.bytes.len()
            )));
        }
        let (head, tail) = self.bytes.split_at(n);
        self.bytes = tail;
        Ok(head)
    }

    fn u8(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }

    fn u32(&mut self) -> Result<u32> {
        let mut b = [0u8; 4];
        b.copy_from_slice(self.take(4)?);
        Ok(u32::from_be_bytes(b))
    }

    fn bytes(&mut self) -> Result<&'a [u8]> {
        let len = self.u32()? as usize;
        self.take(len)
    }
}

/// Decodes the events of revision `revision`.
pub(crate) fn decode_events(revision: Revision, bytes: &[u8]) -> Result<Vec<WatchEvent>> {
    let mut r = Reader { bytes };
    let count = r.u32()?;
    // Do not trust `count` for preallocation: a corrupt entry could claim
    // billions of events.
    let mut events = Vec::new();
    for _ in 0..count {
        let tag = r.u8()?;
        let has_prev = r.u8()? != 0;
        let key = r.bytes()?;
        let kv = match tag {
            0 => Some(decode_record(key, r.bytes()?)?),
            1 => None,
            other => return Err(StoreError::Corrupt(format!("unknown event tag {other}"))),
        };
        let prev = if has_prev { Some(decode_record(key, r.bytes()?)?) } else { None };
        events.push(match kv {
            Some(kv) => WatchEvent::Put { kv, prev },
            None => WatchEvent::Delete { key: key.to_vec(), revision, prev },
        });
    }
    if !r.bytes.is_empty() {
        return Err(StoreError::Corrupt(format!(
            "{} trailing bytes after history entry",
            r.bytes.len()
        )));
    }
    Ok(events)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kv(key: &[u8], value: &[u8], rev: i64, lease: Option<LeaseId>) -> KeyValue {
        KeyValue {
            key: key.to_vec(),
            value: value.to_vec(),
            create_revision: 2,
            mod_revision: rev,
            version: rev - 1,
            lease,
        }
    }

    #[test]
    fn record_round_trip() {
        let k = kv(b"/a", b"\x00value\xff", 9, Some(LeaseId(77)));
        let bytes = encode_record(&k);
        assert_eq!(bytes.len(), HEADER_SIZE + k.value.len());
        assert_eq!(&bytes[..8], &2i64.to_be_bytes());
        assert_eq!(decode_record(b"/a", &bytes).expect("decodes"), k);
        let no_lease = kv(b"/b", b"", 3, None);
        assert_eq!(decode_record(b"/b", &encode_record(&no_lease)).expect("decodes"), no_lease);
    }

    #[test]
    fn events_round_trip() {
        let events = vec![
            WatchEvent::Put { kv: kv(b"/a", b"1", 5, None), prev: None },
            WatchEvent::Put { kv: kv(b"/b", b"2", 5, None), prev: Some(kv(b"/b", b"1", 4, None)) },
            WatchEvent::Delete {
                key: b"/c".to_vec(),
                revision: 5,
                prev: Some(kv(b"/c", b"x", 3, None)),
            },
            WatchEvent::Delete { key: b"/d".to_vec(), revision: 5, prev: None },
        ];
        let bytes = encode_events(&events);
        assert_eq!(decode_events(5, &bytes).expect("decodes"), events);
    }

    #[test]
    fn truncated_and_garbage_entries_are_errors_not_panics() {
        let bytes = encode_events(&[WatchEvent::Put { kv: kv(b"/a", b"1", 5, None), prev: None }]);
        for cut in 0..bytes.len() {
            assert!(decode_events(5, &bytes[..cut]).is_err(), "cut at {cut}");
        }
        let mut extra = bytes.clone();
        extra.push(0);
        assert!(decode_events(5, &extra).is_err());
        assert!(decode_events(5, &[0, 0, 0, 1, 9, 0, 0, 0, 0, 0]).is_err());
        assert!(decode_record(b"k", &[0; 31]).is_err());
    }
}
