//! The spool: an append-only local file of click events a sink could not take yet.
//!
//! Events land here when their sink fails, while a backlog is still being replayed (so
//! order is kept), or when the in-memory queue is full. They are read back in file
//! order and handed to the sink again; once everything is replayed the file is
//! truncated. Each record is `u32 LE length | u32 LE CRC-32 | JSON event`, so a record
//! torn by a crash is detected and skipped instead of replayed as garbage.
//!
//! The replay position is kept in a small side file, rewritten atomically after each
//! replayed chunk, together with the spool's generation: a random id, new whenever
//! the file is truncated, so a (generation, offset) pair names one chunk for ever. A
//! crash after a sink took a chunk but before the position was written replays that
//! chunk again; a sink that records the pair with the chunk ([`super::batch::Replay`],
//! the store does) skips it, the others get it twice (at-least-once).
//!
//! A write that failed may still have committed: a timeout can fire after the
//! database took the COMMIT. The store's failed holds wait in their journal
//! ([`super::journal`]); one that could not be journaled (a disk error) has its
//! events spooled *marked* with the write's name
//! (a record `{"w":[writer, n],"e":event}`), and the replay asks the sink whether
//! that write is in before it hands them over ([`super::store_writer`]).
//! The file is locked while open, so two instances can never share one spool.

use std::fs::{File, OpenOptions};
use std::io::{self, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use super::batch::Replay;
use super::event::ClickEvent;

/// A record larger than this is corrupt: events are a few hundred bytes.
const MAX_RECORD: u32 = 64 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    #[error("spool {0}: {1}")]
    Io(PathBuf, io::Error),
    #[error("spool {0} is in use by another kurz process")]
    Locked(PathBuf),
}

struct Inner {
    file: File,
    /// Bytes in the file.
    len: u64,
    /// Bytes already replayed.
    offset: u64,
    /// See the module comment.
    generation: String,
}

fn new_generation() -> String {
    format!("{:032x}", rand::random::<u128>())
}

/// A marked record as written: see the module comment.
#[derive(serde::Serialize)]
struct MarkedRef<'a> {
    w: (&'a str, u64),
    e: &'a ClickEvent,
}

/// A marked record as read.
#[derive(serde::Deserialize)]
struct Marked {
    w: (String, u64),
    e: ClickEvent,
}

/// A record's event, and the write it is marked with. A plain event's JSON never
/// starts with the marked record's first field.
fn decode(body: &[u8]) -> Option<(ClickEvent, Option<Replay>)> {
    if body.starts_with(br#"{"w":"#) {
        let m: Marked = serde_json::from_slice(body).ok()?;
        let (spool, through) = m.w;
        Some((m.e, Some(Replay { spool, through })))
    } else {
        Some((serde_json::from_slice(body).ok()?, None))
    }
}

pub struct Spool {
    path: PathBuf,
    offset_path: PathBuf,
    inner: Mutex<Inner>,
    /// A second handle on the same open file, so an fsync runs outside the lock: a
    /// request thread spooling an overflowing click must never wait out another
    /// writer's fsync (C-08 caught a 670 ms redirect on a loaded machine).
    durable: File,
}

/// What a read returned: events in order, where the next read starts, and how many
/// corrupt records were skipped.
pub struct Chunk {
    pub events: Vec<ClickEvent>,
    /// For each event, the failed write it was spooled from, if it was marked.
    pub written_as: Vec<Option<Replay>>,
    pub next_offset: u64,
    pub corrupt: u64,
}

impl Spool {
    /// Opens (or creates) `dir/name.spool` and takes an exclusive lock on it.
    pub fn open(dir: &Path, name: &str) -> Result<Self, SpoolError> {
        let path = dir.join(format!("{name}.spool"));
        let io = |e| SpoolError::Io(path.clone(), e);
        std::fs::create_dir_all(dir).map_err(io)?;
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .read(true)
            .open(&path)
            .map_err(io)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => return Err(SpoolError::Locked(path)),
            Err(std::fs::TryLockError::Error(e)) => return Err(io(e)),
        }
        let len = file.metadata().map_err(io)?.len();
        let offset_path = dir.join(format!("{name}.offset"));
        let durable = file.try_clone().map_err(io)?;
        // "<offset> <generation>"; an old file holds only the offset.
        let saved = std::fs::read_to_string(&offset_path).unwrap_or_default();
        let mut fields = saved.split_whitespace();
        let offset = fields
            .next()
            .and_then(|s| s.parse::<u64>().ok())
            .filter(|o| *o <= len)
            .unwrap_or(0);
        let known = fields.next().filter(|g| g.len() == 32).map(str::to_owned);
        let spool = Self {
            path,
            offset_path,
            durable,
            inner: Mutex::new(Inner {
                file,
                len,
                offset,
                generation: known.clone().unwrap_or_else(new_generation),
            }),
        };
        if known.is_none() {
            // On disk before any sink can record a replay under it.
            let g = spool.lock();
            spool.save_position(&g)?;
        }
        Ok(spool)
    }

    fn save_position(&self, g: &Inner) -> Result<(), SpoolError> {
        let io = |e| SpoolError::Io(self.path.clone(), e);
        let tmp = self.offset_path.with_extension("offset.tmp");
        std::fs::write(&tmp, format!("{} {}", g.offset, g.generation)).map_err(io)?;
        std::fs::rename(&tmp, &self.offset_path).map_err(io)
    }

    /// The name of the chunk that ends at `through`: a replayed chunk is written under it.
    pub fn replay_at(&self, through: u64) -> super::batch::Replay {
        super::batch::Replay {
            spool: self.lock().generation.clone(),
            through,
        }
    }

    #[cfg(test)]
    fn generation(&self) -> String {
        self.lock().generation.clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave the file inconsistent beyond a
        // torn record, which reads detect; keep going.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Bytes not yet replayed.
    pub fn backlog(&self) -> u64 {
        let g = self.lock();
        g.len - g.offset
    }

    /// Appends events as one write. `sync` forces them to disk (the batcher's path);
    /// the overflow path skips it, as it runs on request threads.
    pub fn append<'a>(
        &self,
        events: impl IntoIterator<Item = &'a ClickEvent>,
        sync: bool,
    ) -> Result<(), SpoolError> {
        self.append_marked(events, sync, None)
    }

    /// Appends events as one write, each marked with `written_as` if given: the name
    /// of a failed write that may have committed all the same.
    pub fn append_marked<'a>(
        &self,
        events: impl IntoIterator<Item = &'a ClickEvent>,
        sync: bool,
        written_as: Option<&Replay>,
    ) -> Result<(), SpoolError> {
        let mut buf = Vec::new();
        for e in events {
            let json = match written_as {
                None => serde_json::to_vec(e),
                Some(w) => serde_json::to_vec(&MarkedRef {
                    w: (&w.spool, w.through),
                    e,
                }),
            }
            .map_err(|e| SpoolError::Io(self.path.clone(), e.into()))?;
            buf.extend_from_slice(&(json.len() as u32).to_le_bytes());
            buf.extend_from_slice(&crc32fast::hash(&json).to_le_bytes());
            buf.extend_from_slice(&json);
        }
        if buf.is_empty() {
            return Ok(());
        }
        let io = |e| SpoolError::Io(self.path.clone(), e);
        {
            let mut g = self.lock();
            g.file.write_all(&buf).map_err(io)?;
            g.len += buf.len() as u64;
        }
        if sync {
            self.durable.sync_data().map_err(io)?;
        }
        Ok(())
    }

    /// Reads up to `max` events from the replay position, without moving it.
    pub fn read(&self, max: usize) -> Result<Chunk, SpoolError> {
        let (start, end) = {
            let g = self.lock();
            (g.offset, g.len)
        };
        let io = |e| SpoolError::Io(self.path.clone(), e);
        let mut file = File::open(&self.path).map_err(io)?;
        file.seek(SeekFrom::Start(start)).map_err(io)?;
        let mut reader = BufReader::new(file.take(end - start));
        let mut chunk = Chunk {
            events: Vec::new(),
            written_as: Vec::new(),
            next_offset: start,
            corrupt: 0,
        };
        let mut header = [0u8; 8];
        while chunk.events.len() < max {
            if reader.read_exact(&mut header).is_err() {
                // A torn header at the very end: skip the rest.
                if chunk.next_offset < end {
                    chunk.corrupt += 1;
                    chunk.next_offset = end;
                }
                break;
            }
            let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]);
            let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
            let mut body = vec![0u8; len.min(MAX_RECORD) as usize];
            if len > MAX_RECORD || reader.read_exact(&mut body).is_err() {
                // Nothing after a torn or absurd length can be framed again.
                chunk.corrupt += 1;
                chunk.next_offset = end;
                break;
            }
            chunk.next_offset += 8 + u64::from(len);
            match (crc32fast::hash(&body) == crc).then(|| decode(&body)).flatten() {
                Some((e, written_as)) => {
                    chunk.events.push(e);
                    chunk.written_as.push(written_as);
                }
                None => chunk.corrupt += 1,
            }
        }
        Ok(chunk)
    }

    /// Marks everything before `offset` as replayed. When the whole file is replayed
    /// it is truncated, so the spool does not grow forever.
    pub fn commit(&self, offset: u64) -> Result<(), SpoolError> {
        let mut g = self.lock();
        let io = |e| SpoolError::Io(self.path.clone(), e);
        g.offset = offset.min(g.len);
        if g.offset == g.len {
            g.file.set_len(0).map_err(io)?;
            g.file.sync_data().map_err(io)?;
            g.len = 0;
            g.offset = 0;
            // Offsets start again at 0: a new name for what comes next.
            g.generation = new_generation();
        }
        self.save_position(&g)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analytics::event::Device;

    fn ev(i: u64) -> ClickEvent {
        ClickEvent {
            short_code: format!("code{i}").into(),
            clicked_at: chrono::DateTime::from_timestamp_millis(1_700_000_000_000 + i as i64).unwrap(),
            referrer: "direct".into(),
            device: Device::Desktop,
            browser: "Firefox".into(),
            os: "Linux".into(),
            is_bot: false,
            country: "unknown".into(),
            city: None,
            visitor_hash: i,
        }
    }

    #[test]
    fn replays_in_order_across_reopen_and_truncates_when_done() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = Spool::open(dir.path(), "store").unwrap();
            s.append(&[ev(1), ev(2)], true).unwrap();
            s.append(&[ev(3)], false).unwrap();
            let c = s.read(2).unwrap();
            assert_eq!(c.events, vec![ev(1), ev(2)]);
            s.commit(c.next_offset).unwrap();
        }
        let s = Spool::open(dir.path(), "store").unwrap();
        let c = s.read(10).unwrap();
        assert_eq!(c.events, vec![ev(3)]);
        assert_eq!(c.corrupt, 0);
        s.commit(c.next_offset).unwrap();
        assert_eq!(s.backlog(), 0);
        assert_eq!(
            std::fs::metadata(dir.path().join("store.spool")).unwrap().len(),
            0
        );
    }

    #[test]
    fn marked_events_come_back_with_the_write_they_were_spooled_from() {
        let dir = tempfile::tempdir().unwrap();
        let s = Spool::open(dir.path(), "store").unwrap();
        let w = Replay {
            spool: "w0123".into(),
            through: 7,
        };
        s.append(&[ev(1)], true).unwrap();
        s.append_marked(&[ev(2), ev(3)], true, Some(&w)).unwrap();
        s.append(&[ev(4)], true).unwrap();
        let c = s.read(10).unwrap();
        assert_eq!(c.events, vec![ev(1), ev(2), ev(3), ev(4)]);
        assert_eq!(c.written_as, vec![None, Some(w.clone()), Some(w), None]);
        assert_eq!(c.corrupt, 0);
    }

    #[test]
    fn a_chunk_keeps_its_name_across_a_crash_and_truncation_starts_a_new_generation() {
        let dir = tempfile::tempdir().unwrap();
        let (first, name) = {
            let s = Spool::open(dir.path(), "store").unwrap();
            s.append(&[ev(1), ev(2)], true).unwrap();
            let c = s.read(1).unwrap();
            // A sink took the chunk; the process dies before `commit`.
            (s.generation(), s.replay_at(c.next_offset))
        };
        let s = Spool::open(dir.path(), "store").unwrap();
        assert_eq!(s.generation(), first, "the generation survives a restart");
        let c = s.read(1).unwrap();
        assert_eq!(c.events, vec![ev(1)], "the chunk is replayed again");
        assert_eq!(s.replay_at(c.next_offset), name, "under the same name");
        s.commit(s.read(10).unwrap().next_offset).unwrap();
        assert_ne!(s.generation(), first, "a truncated spool starts a new generation");
        drop(s);
        // A position file from before generations existed: the offset is kept.
        std::fs::write(dir.path().join("store.offset"), "0").unwrap();
        let s = Spool::open(dir.path(), "store").unwrap();
        assert_eq!(s.generation().len(), 32);
    }

    #[test]
    fn a_second_process_cannot_open_the_same_spool() {
        let dir = tempfile::tempdir().unwrap();
        let _a = Spool::open(dir.path(), "store").unwrap();
        assert!(matches!(
            Spool::open(dir.path(), "store"),
            Err(SpoolError::Locked(_))
        ));
    }

    #[test]
    fn corrupt_and_torn_records_are_skipped_not_replayed() {
        let dir = tempfile::tempdir().unwrap();
        let s = Spool::open(dir.path(), "store").unwrap();
        s.append(&[ev(1), ev(2)], true).unwrap();
        // Flip a byte inside the first record's JSON, then add a torn tail.
        let mut bytes = std::fs::read(dir.path().join("store.spool")).unwrap();
        bytes[12] ^= 0x20;
        bytes.extend_from_slice(&[40, 0, 0, 0, 1, 2]);
        drop(s);
        std::fs::write(dir.path().join("store.spool"), &bytes).unwrap();
        let s = Spool::open(dir.path(), "store").unwrap();
        let c = s.read(10).unwrap();
        assert_eq!(c.events, vec![ev(2)]);
        assert_eq!(c.corrupt, 2);
        assert_eq!(c.next_offset, bytes.len() as u64);
    }
}
