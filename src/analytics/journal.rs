//! The store lane's journal: every batch the lane takes in is on disk before the lane
//! holds it, so a crash (SIGKILL, OOM, a panic abort) loses at most the clicks the
//! batcher had not cut yet (one flush interval), not the seconds a held write gathers.
//!
//! One file per hold (what one store write carries), `hold-<time>-<random>.clicks` in
//! the spool folder (locked by the store's spool while open, so no other instance
//! touches it). Each batch taken in appends one record, written with one `write` and
//! one `fdatasync`: the clicks it added in [`ClickBatch::encode_since`]'s binary form
//! (about 42 bytes a click, no per-click serialisation). When the write that carries
//! the hold starts, its name (see [`super::names`]) is appended too; once the write has
//! committed, the file is deleted. A file that is still there is a hold whose write
//! failed, or one a crash interrupted: it is replayed later
//! ([`super::store_writer::StoreWriter`]), and its names make that exactly once —
//! a write that committed although it failed or was cut off by the crash is found in
//! the store under its name and skipped; otherwise the clicks are written in parts
//! under a replay name recorded in the file first, so a replay cut off by another
//! crash resumes without counting a part twice.
//!
//! Record: `u32 LE length | u32 LE CRC-32 | kind | payload`, length and CRC over kind
//! and payload. A record torn by a crash fails its check and ends the file there.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use super::batch::{ClickBatch, Decoder, Encoded, Replay};
use super::event::ClickEvent;
use super::lane::{Batch, Held};
use super::off_workers;

const CLICKS: u8 = 1;
/// The name of the live write that carried the hold.
const WRITTEN_AS: u8 = 2;
/// The name the hold's replay writes its parts under.
const REPLAY_AS: u8 = 3;
/// The hold goes to the store in parts: the first part's name, the parts' count and
/// their size in link-hours; part `i` is written as (writer, first + i).
const SPLIT_AS: u8 = 4;

const PREFIX: &str = "hold-";
const SUFFIX: &str = ".clicks";

/// The held batch of the store's lane, journaled as it grows.
#[derive(Default)]
pub struct Journaled {
    pub batch: ClickBatch,
    /// The spool folder; `None` journals nothing (a pipeline without a folder).
    dir: Option<PathBuf>,
    file: Option<(PathBuf, File)>,
    encoded: Encoded,
    buf: Vec<u8>,
}

impl Journaled {
    pub fn new(dir: Option<PathBuf>) -> Self {
        Self {
            dir,
            ..Self::default()
        }
    }

    /// The journal file, once a batch was taken in.
    pub fn path(&self) -> Option<&Path> {
        self.file.as_ref().map(|(p, _)| p.as_path())
    }

    /// Appends what the batch took in since the last record.
    fn journal(&mut self) -> io::Result<()> {
        let Some(dir) = &self.dir else { return Ok(()) };
        if self.file.is_none() {
            let path = dir.join(format!(
                "{PREFIX}{:016x}-{:08x}{SUFFIX}",
                chrono::Utc::now().timestamp_micros(),
                rand::random::<u32>()
            ));
            let file = OpenOptions::new().create_new(true).append(true).open(&path)?;
            // The new name itself on disk, so the file survives a machine crash too.
            File::open(dir)?.sync_all()?;
            self.file = Some((path, file));
        }
        self.buf.clear();
        self.encoded = self.batch.encode_since(self.encoded, &mut self.buf);
        let payload = std::mem::take(&mut self.buf);
        let appended = self.append(CLICKS, &payload);
        self.buf = payload;
        appended
    }

    fn append(&mut self, kind: u8, payload: &[u8]) -> io::Result<()> {
        let Some((_, file)) = &mut self.file else {
            return Ok(());
        };
        file.write_all(&frame(kind, payload))?;
        file.sync_data()
    }

    /// Records the name of the write about to carry the hold.
    pub fn written_as(&mut self, name: &Replay) -> io::Result<()> {
        off_workers(|| self.append(WRITTEN_AS, &name_bytes(name)))
    }

    /// Records that the hold is written in `parts` parts of at most `rows` link-hours
    /// (see [`ClickBatch::parts`]), the first named `first`, the others after it.
    pub fn split_as(&mut self, first: &Replay, parts: u64, rows: u64) -> io::Result<()> {
        let mut payload = parts.to_le_bytes().to_vec();
        payload.extend_from_slice(&rows.to_le_bytes());
        payload.extend_from_slice(&name_bytes(first));
        off_workers(|| self.append(SPLIT_AS, &payload))
    }

    /// The hold is in the store: its journal goes.
    pub fn written(&mut self) {
        if let Some((path, _)) = self.file.take()
            && let Err(e) = std::fs::remove_file(&path)
        {
            tracing::error!(error = %e, path = %path.display(), "cannot remove a written hold's journal: it will be replayed, and skipped, at the next start");
        }
    }
}

impl Held for Journaled {
    fn add(&mut self, batch: Batch) {
        off_workers(|| {
            self.batch.add(batch.iter());
            if let Err(e) = self.journal() {
                // Still held and written as usual; only a crash before the write would
                // lose these clicks now.
                metrics::counter!("kurz_click_journal_errors_total").increment(1);
                tracing::error!(error = %e, "cannot journal a click batch");
            }
        });
    }

    fn events(&self) -> usize {
        self.batch.events()
    }

    fn rows(&self) -> usize {
        self.batch.rows()
    }

    fn with_events(&self, f: &mut dyn FnMut(&[&ClickEvent])) {
        self.batch.with_events(f);
    }

    fn oldest(&self) -> Option<chrono::DateTime<chrono::Utc>> {
        self.batch.oldest()
    }
}

fn frame(kind: u8, payload: &[u8]) -> Vec<u8> {
    let mut body = Vec::with_capacity(payload.len() + 1);
    body.push(kind);
    body.extend_from_slice(payload);
    let mut out = Vec::with_capacity(body.len() + 8);
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(&body).to_le_bytes());
    out.extend_from_slice(&body);
    out
}

fn name_bytes(name: &Replay) -> Vec<u8> {
    let mut out = name.through.to_le_bytes().to_vec();
    out.extend_from_slice(name.spool.as_bytes());
    out
}

fn name_of(payload: &[u8]) -> Option<Replay> {
    let (through, writer) = payload.split_at_checked(8)?;
    Some(Replay {
        spool: std::str::from_utf8(writer).ok()?.to_owned(),
        through: u64::from_le_bytes(through.try_into().ok()?),
    })
}

/// The journal files left in `dir`, oldest first.
pub fn leftovers(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| {
                    p.file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| n.starts_with(PREFIX) && n.ends_with(SUFFIX))
                })
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
}

/// A hold read back from its journal.
#[derive(Debug, Default)]
pub struct Kept {
    pub events: Vec<ClickEvent>,
    pub written_as: Option<Replay>,
    /// A write in parts: (first part's name, parts, link-hours a part).
    pub split_as: Option<(Replay, u64, usize)>,
    pub replay_as: Option<Replay>,
    /// Records that did not check out (a torn tail): the file ends there.
    pub torn: bool,
}

fn split_of(payload: &[u8]) -> Option<(Replay, u64, usize)> {
    let parts = u64::from_le_bytes(payload.get(..8)?.try_into().ok()?);
    let rows = u64::from_le_bytes(payload.get(8..16)?.try_into().ok()?);
    Some((name_of(payload.get(16..)?)?, parts, usize::try_from(rows).ok()?))
}

/// Reads a hold's journal.
pub fn read(path: &Path) -> io::Result<Kept> {
    let mut bytes = Vec::new();
    File::open(path)?.read_to_end(&mut bytes)?;
    let mut kept = Kept::default();
    let mut decoder = Decoder::default();
    let mut rest = bytes.as_slice();
    while !rest.is_empty() {
        let Some((header, tail)) = rest.split_at_checked(8) else {
            kept.torn = true;
            break;
        };
        let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
        let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
        let Some((body, tail)) = tail.split_at_checked(len) else {
            kept.torn = true;
            break;
        };
        rest = tail;
        if crc32fast::hash(body) != crc {
            kept.torn = true;
            break;
        }
        let Some((&kind, payload)) = body.split_first() else {
            continue;
        };
        match kind {
            CLICKS if decoder.decode(payload, &mut kept.events).is_err() => {
                kept.torn = true;
                break;
            }
            WRITTEN_AS => kept.written_as = name_of(payload),
            REPLAY_AS => kept.replay_as = name_of(payload),
            SPLIT_AS => kept.split_as = split_of(payload),
            _ => {}
        }
    }
    Ok(kept)
}

/// Records, in a kept hold's journal, the name its replay writes under.
pub fn set_replay_as(path: &Path, name: &Replay) -> io::Result<()> {
    let mut file = OpenOptions::new().append(true).open(path)?;
    file.write_all(&frame(REPLAY_AS, &name_bytes(name)))?;
    file.sync_data()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::analytics::batch::test_clicks::event;

    #[test]
    fn a_hold_reads_back_with_its_names_and_a_torn_tail_ends_it() {
        let dir = tempfile::tempdir().unwrap();
        let mut held = Journaled::new(Some(dir.path().to_owned()));
        let one = vec![
            event("a", "2026-03-01T10:05:00Z", "DE", 1, false),
            event("b", "2026-03-01T10:06:00Z", "US", 2, true),
        ];
        let two = vec![event("a", "2026-03-01T10:07:00Z", "FR", 3, false)];
        held.add(Arc::new(one.clone()));
        held.add(Arc::new(two.clone()));
        let name = Replay {
            spool: "w01".into(),
            through: 7,
        };
        held.written_as(&name).unwrap();
        let path = held.path().unwrap().to_owned();
        assert_eq!(leftovers(dir.path()), vec![path.clone()]);
        let kept = read(&path).unwrap();
        assert_eq!(kept.events, [one, two].concat());
        assert_eq!(kept.written_as, Some(name));
        assert!(kept.replay_as.is_none() && !kept.torn);

        let again = Replay {
            spool: "j02".into(),
            through: 0,
        };
        set_replay_as(&path, &again).unwrap();
        // A crash in the middle of an append.
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(&[9, 0, 0, 0, 1, 2]).unwrap();
        let kept = read(&path).unwrap();
        assert_eq!(kept.events.len(), 3);
        assert_eq!(kept.replay_as, Some(again));
        assert!(kept.torn);

        held.written();
        assert!(leftovers(dir.path()).is_empty(), "a written hold leaves nothing");
    }
}
