//! Names of the store's live writes: (writer, n), n counting up from 1 under one
//! writer name.
//!
//! A write that fails may have committed anyway (a timeout can fire after the
//! database took the COMMIT), so it is spooled under its name and the writer takes a
//! new one: the old name's mark then stays at n (committed) or below (not) for good,
//! which is what the replay asks the store ([`super::click_writer::ClickWriter::name_through`]).
//! Without this such a write would be counted twice.

use std::time::Duration;

use super::batch::Replay;
use super::click_writer::ClickWriter;
use super::lane::{WriteError, within};

#[derive(Default)]
pub struct WriteNames {
    writer: Option<String>,
    n: u64,
}

impl WriteNames {
    /// The next write's name. A new writer name is claimed in the store first, so the
    /// row its marks go to exists while its first write runs.
    pub async fn next(&mut self, store: &ClickWriter, timeout: Duration) -> Result<Replay, WriteError> {
        let writer = match &self.writer {
            Some(w) => w.clone(),
            None => {
                let w = format!("w{:032x}", rand::random::<u128>());
                within(timeout, store.claim_name(&w)).await?;
                self.writer = Some(w.clone());
                self.n = 0;
                w
            }
        };
        self.n += 1;
        Ok(Replay {
            spool: writer,
            through: self.n,
        })
    }

    /// The last write failed: its name is never used again.
    pub fn drop_writer(&mut self) {
        self.writer = None;
    }
}
