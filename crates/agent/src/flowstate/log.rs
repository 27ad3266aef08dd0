//! The host's flow-state log: every flow-state message applied here (made
//! by a simulation here, or received from a peer) is appended as it is
//! applied, and replayed when the agent starts, so `kill -9` of an agent
//! keeps every tracked and NATed connection (issue 8, item 6).
//!
//! ```text
//!  record = [u32 LE: length of what follows] [u8 origin: 0 here, 1 a peer] [flow-state message]
//! ```
//!
//! * **Durability**: one `write(2)` per message, no `fsync`. The page
//!   cache keeps what an agent crash leaves behind; a host crash loses the
//!   tail of the log, along with the host's VMs and their connections.
//! * **Size**: at start the log is replayed and then rewritten as a
//!   snapshot of the live tables (written aside, then renamed over it);
//!   while running it is rewritten the same way when it passes
//!   [`MAX_LOG_BYTES`] and twice the size of the last snapshot
//!   ([`StateLog::wants_compaction`]): live state larger than the bound is
//!   snapshotted as it doubles, not every second. The snapshot is written
//!   without the log locked ([`StateLog::begin_rewrite`]): records
//!   appended meanwhile go to the old file and are kept for the new one,
//!   so misses that append never wait for the rewrite's write and `fsync`.
//! * **Trust**: the file is the agent's own, but it is read as untrusted
//!   input all the same: the first record that does not parse (a torn
//!   write at a crash) ends the replay, counted, never a panic.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use midonet_wire::flowstate::FlowStateRepr;

/// A log past this many bytes is rewritten as a snapshot.
pub const MAX_LOG_BYTES: u64 = 64 << 20;

/// Where a logged message came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// A simulation on this host (its SNAT bindings use this host's blocks).
    Here,
    /// A peer.
    Peer,
}

/// The open log.
pub struct StateLog {
    path: PathBuf,
    file: File,
    size: u64,
    /// Bytes the last rewrite wrote.
    snapshot: u64,
    /// While a rewrite runs: the records appended since it began, for the
    /// new file.
    pending: Option<Vec<u8>>,
}

/// A rewrite in progress ([`StateLog::begin_rewrite`]): the new file,
/// written aside.
pub struct Rewrite {
    tmp: PathBuf,
    file: File,
    written: u64,
}

impl Rewrite {
    /// Writes the snapshot and syncs it (the log need not be locked).
    pub fn write<'a>(
        &mut self,
        records: impl IntoIterator<Item = (Origin, &'a FlowStateRepr)>,
    ) -> std::io::Result<()> {
        let mut out = Vec::new();
        for (origin, msg) in records {
            encode(&mut out, origin, msg)?;
        }
        self.file.write_all(&out)?;
        self.file.sync_all()?;
        self.written += out.len() as u64;
        Ok(())
    }
}

/// What a replay read.
#[derive(Debug, Default)]
pub struct Replayed {
    pub records: Vec<(Origin, FlowStateRepr)>,
    /// Bytes after the last good record (a torn write), ignored.
    pub torn_bytes: u64,
}

impl StateLog {
    /// Opens (creating) the log at `path` and reads what it holds.
    pub fn open(path: &Path) -> std::io::Result<(StateLog, Replayed)> {
        let mut bytes = Vec::new();
        match File::open(path) {
            Ok(mut f) => {
                f.read_to_end(&mut bytes)?;
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        let replayed = parse(&bytes);
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        let size = file.metadata()?.len();
        Ok((StateLog { path: path.to_owned(), file, size, snapshot: 0, pending: None }, replayed))
    }

    /// Appends one message.
    pub fn append(&mut self, origin: Origin, msg: &FlowStateRepr) -> std::io::Result<()> {
        let mut rec = Vec::with_capacity(5 + msg.buffer_len());
        encode(&mut rec, origin, msg)?;
        self.file.write_all(&rec)?;
        self.size += rec.len() as u64;
        if let Some(p) = &mut self.pending {
            p.extend_from_slice(&rec);
        }
        Ok(())
    }

    /// Bytes in the log.
    pub fn len(&self) -> u64 {
        self.size
    }

    /// Whether the log should be rewritten as a snapshot (module docs):
    /// past [`MAX_LOG_BYTES`] and past twice the last snapshot.
    pub fn wants_compaction(&self) -> bool {
        self.past(MAX_LOG_BYTES)
    }

    fn past(&self, bound: u64) -> bool {
        self.size >= bound.max(self.snapshot.saturating_mul(2))
    }

    pub fn is_empty(&self) -> bool {
        self.size == 0
    }

    /// Replaces the log with `records` (written aside, renamed over it).
    pub fn rewrite<'a>(
        &mut self,
        records: impl IntoIterator<Item = (Origin, &'a FlowStateRepr)>,
    ) -> std::io::Result<()> {
        let mut rw = self.begin_rewrite()?;
        let written = rw.write(records);
        self.end_rewrite(rw, written)
    }

    /// Starts replacing the log with a snapshot taken now (module docs):
    /// from here on appends are kept for the new file as well. Write the
    /// snapshot with [`Rewrite::write`], then pass what that returned to
    /// [`end_rewrite`](Self::end_rewrite) with the log locked again.
    pub fn begin_rewrite(&mut self) -> std::io::Result<Rewrite> {
        let tmp = self.path.with_extension("tmp");
        let file = File::create(&tmp)?;
        self.pending = Some(Vec::new());
        Ok(Rewrite { tmp, file, written: 0 })
    }

    /// Ends a rewrite: when the snapshot was `written`, appends what came
    /// since the rewrite began and puts the new file in the log's place;
    /// otherwise gives it up and returns the write's error. On any error
    /// the old file stays, whole, and the log goes on as it was.
    pub fn end_rewrite(
        &mut self,
        rw: Rewrite,
        written: std::io::Result<()>,
    ) -> std::io::Result<()> {
        match written {
            Ok(()) => self.finish_rewrite(rw),
            Err(e) => {
                self.pending = None;
                let _ = std::fs::remove_file(&rw.tmp);
                Err(e)
            }
        }
    }

    fn finish_rewrite(&mut self, mut rw: Rewrite) -> std::io::Result<()> {
        let pending = self.pending.take().unwrap_or_default();
        let done = (|| {
            rw.file.write_all(&pending)?;
            rw.file.sync_all()?;
            std::fs::rename(&rw.tmp, &self.path)?;
            OpenOptions::new().append(true).open(&self.path)
        })();
        match done {
            Ok(file) => {
                self.file = file;
                self.snapshot = rw.written;
                self.size = rw.written + pending.len() as u64;
                Ok(())
            }
            Err(e) => {
                let _ = std::fs::remove_file(&rw.tmp);
                Err(e)
            }
        }
    }
}

fn encode(out: &mut Vec<u8>, origin: Origin, msg: &FlowStateRepr) -> std::io::Result<()> {
    let mut body = Vec::new();
    msg.emit_vec(&mut body)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    let len = u32::try_from(body.len() + 1)
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidInput, "record too long"))?;
    out.extend_from_slice(&len.to_le_bytes());
    out.push(match origin {
        Origin::Here => 0,
        Origin::Peer => 1,
    });
    out.extend_from_slice(&body);
    Ok(())
}

/// Every good record up to the first bad one.
fn parse(mut bytes: &[u8]) -> Replayed {
    let mut r = Replayed::default();
    loop {
        if bytes.is_empty() {
            return r;
        }
        let rec = (|| {
            let len = u32::from_le_bytes(bytes.get(..4)?.try_into().ok()?) as usize;
            let body = bytes.get(4..4 + len)?;
            let (&origin, msg) = body.split_first()?;
            let origin = match origin {
                0 => Origin::Here,
                1 => Origin::Peer,
                _ => return None,
            };
            let msg = FlowStateRepr::parse_bytes(msg).ok()?;
            Some((4 + len, origin, msg))
        })();
        match rec {
            Some((n, origin, msg)) => {
                r.records.push((origin, msg));
                bytes = &bytes[n..];
            }
            None => {
                r.torn_bytes = bytes.len() as u64;
                return r;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use midonet_wire::flowstate::{ConnKeyRepr, ConnStateCode, ConntrackRepr};

    use super::*;

    fn msg(port: u16) -> FlowStateRepr {
        let key = ConnKeyRepr {
            tracker: [7; 16],
            src: Ipv4Addr::new(10, 0, 0, 1),
            dst: Ipv4Addr::new(10, 0, 0, 2),
            src_port: port,
            dst_port: 80,
            proto: 6,
        };
        FlowStateRepr {
            conntrack: vec![ConntrackRepr { key, state: ConnStateCode::Replied }],
            ..FlowStateRepr::default()
        }
    }

    #[test]
    fn a_snapshot_past_the_bound_is_rewritten_again_only_once_the_log_doubles() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut log, _) = StateLog::open(&dir.path().join("flowstate.log")).expect("open");
        let one = {
            log.append(Origin::Here, &msg(1)).expect("append");
            log.len()
        };
        let bound = 3 * one;
        assert!(!log.past(bound));
        for i in 2..=3 {
            log.append(Origin::Here, &msg(i)).expect("append");
        }
        assert!(log.past(bound), "past the bound");
        // Live state larger than the bound: four records' snapshot.
        let live: Vec<_> = (1..=4).map(msg).collect();
        log.rewrite(live.iter().map(|m| (Origin::Here, m))).expect("rewrite");
        assert_eq!(log.len(), 4 * one);
        assert!(!log.past(bound), "not again at once (it was rewritten every second)");
        for i in 5..=7 {
            log.append(Origin::Here, &msg(i)).expect("append");
        }
        assert!(!log.past(bound), "7 records: under twice the snapshot");
        log.append(Origin::Here, &msg(8)).expect("append");
        assert!(log.past(bound), "doubled");
    }

    #[test]
    fn records_appended_while_the_snapshot_is_written_are_kept_and_an_abort_loses_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("flowstate.log");
        let (mut log, _) = StateLog::open(&path).expect("open");
        for i in 1..=3 {
            log.append(Origin::Here, &msg(i)).expect("append");
        }
        // The snapshot (of records 1-3, as two live entries) is taken, then
        // a miss appends while it is written with the log unlocked.
        let mut rw = log.begin_rewrite().expect("begin");
        log.append(Origin::Peer, &msg(4)).expect("append during the rewrite");
        let snap = [msg(1), msg(3)];
        let written = rw.write(snap.iter().map(|m| (Origin::Here, m)));
        log.append(Origin::Here, &msg(5)).expect("append during the rewrite");
        log.end_rewrite(rw, written).expect("finish");
        log.append(Origin::Here, &msg(6)).expect("append after");
        assert_eq!(log.len(), std::fs::metadata(&path).expect("stat").len());
        let (_, r) = StateLog::open(&path).expect("reopen");
        let want = vec![
            (Origin::Here, msg(1)),
            (Origin::Here, msg(3)),
            (Origin::Peer, msg(4)),
            (Origin::Here, msg(5)),
            (Origin::Here, msg(6)),
        ];
        assert_eq!(r.records, want);
        // A rewrite given up leaves the log as it was, appends included.
        let (mut log, _) = StateLog::open(&path).expect("open again");
        let rw = log.begin_rewrite().expect("begin");
        log.append(Origin::Here, &msg(7)).expect("append during");
        let failed = std::io::Error::other("disk full");
        assert_eq!(
            log.end_rewrite(rw, Err(failed)).expect_err("given up").to_string(),
            "disk full",
            "the write's error comes back"
        );
        log.append(Origin::Here, &msg(8)).expect("append after");
        assert!(!path.with_extension("tmp").exists(), "the new file is removed");
        let (_, r) = StateLog::open(&path).expect("reopen");
        let mut want = want;
        want.extend([(Origin::Here, msg(7)), (Origin::Here, msg(8))]);
        assert_eq!(r.records, want);
    }

    #[test]
    fn appended_records_come_back_and_a_torn_tail_is_skipped() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("flowstate.log");
        let (mut log, r) = StateLog::open(&path).expect("open");
        assert!(r.records.is_empty() && log.is_empty());
        log.append(Origin::Here, &msg(1)).expect("append");
        log.append(Origin::Peer, &msg(2)).expect("append");
        drop(log);
        // A crash in the middle of a write.
        let mut f = OpenOptions::new().append(true).open(&path).expect("reopen");
        f.write_all(&[40, 0, 0, 0, 0, 1, 2]).expect("torn");
        drop(f);
        let (mut log, r) = StateLog::open(&path).expect("open again");
        assert_eq!(r.records, vec![(Origin::Here, msg(1)), (Origin::Peer, msg(2))]);
        assert_eq!(r.torn_bytes, 7);
        // The snapshot replaces everything, torn tail included.
        let snap = msg(3);
        log.rewrite([(Origin::Here, &snap)]).expect("rewrite");
        log.append(Origin::Peer, &msg(4)).expect("append after rewrite");
        let (_, r) = StateLog::open(&path).expect("open a third time");
        assert_eq!(r.records, vec![(Origin::Here, msg(3)), (Origin::Peer, msg(4))]);
        assert_eq!(r.torn_bytes, 0);
    }

    #[test]
    fn garbage_is_not_a_record() {
        let r = parse(&[0xff; 64]);
        assert!(r.records.is_empty());
        assert_eq!(r.torn_bytes, 64);
        let r = parse(&[3, 0, 0, 0, 9, 1, 1]);
        assert!(r.records.is_empty(), "unknown origin");
    }
}
