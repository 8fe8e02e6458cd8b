//! The bounded queue between the redirect handlers and the batcher.
//!
//! Why not a channel of owned clicks: that costs three small heap allocations per
//! click (code, referrer, user agent), made on a handler's thread and freed in a burst
//! on the batcher's. Profiles showed glibc's slow paths (`_int_malloc`,
//! `malloc_consolidate`) as the largest single part of what analytics cost. Here a handler copies the click's bytes into one of a few
//! shards, each a byte buffer behind a mutex that its threads nearly always find
//! free; the batcher swaps a shard's buffer for an empty one it kept from the last
//! swap and reads the clicks back in place. In steady state no click allocates.
//!
//! The bound is a number of clicks per shard (the configured capacity divided among
//! them; a thread whose shard is full uses another's room), so memory stays bounded
//! however slow the batcher is; a click that finds every shard full, or the queue
//! closed for shutdown, is handed back to the caller, who spools it. Clicks of
//! different shards are not ordered with each other, which nothing needs: every click
//! carries its own time.

use std::cell::Cell;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use chrono::{DateTime, Utc};

use super::event::Captured;

/// Lengths are stored as `u16`; this one means "no such header".
const ABSENT: u16 = u16::MAX;

pub struct CaptureQueue {
    shards: Box<[Mutex<Shard>]>,
    per_shard: usize,
}

#[derive(Default)]
struct Shard {
    bytes: Vec<u8>,
    clicks: usize,
    closed: bool,
}

impl CaptureQueue {
    /// A queue holding at most `capacity` clicks, in twice as many shards as the
    /// machine has cores: the runtime's workers (one per core) are numbered in the
    /// order they first push, so each has a shard to itself, and a thread that does
    /// share one only waits for a copy of a few hundred bytes.
    pub fn new(capacity: usize) -> Self {
        let capacity = capacity.max(1);
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        let n = (cores * 2).clamp(2, 64).min(capacity);
        Self {
            shards: (0..n).map(|_| Mutex::default()).collect(),
            per_shard: capacity / n,
        }
    }

    /// Copies the click in, or hands it back if the queue is full or closed. A
    /// thread whose own shard is full tries the others, so the whole capacity is
    /// there for whichever threads are busy: a bound per shard alone spooled
    /// thousands of clicks in the benchmark while the batcher waited for a turn.
    pub fn push<'a>(&self, click: Captured<'a>) -> Result<(), Captured<'a>> {
        let n = self.shards.len();
        let own = thread_slot();
        for k in 0..n {
            let Some(Ok(mut shard)) = self.shards.get((own + k) % n).map(Mutex::lock) else {
                continue;
            };
            if shard.closed {
                return Err(click);
            }
            if shard.clicks < self.per_shard {
                encode(&mut shard.bytes, &click);
                shard.clicks += 1;
                return Ok(());
            }
        }
        Err(click)
    }

    /// Swaps the buffer of shard `i` (a clicks' byte log) for `spare`, which must be
    /// empty, and returns how many clicks `spare` now holds. Read them with
    /// [`decode`].
    pub fn take(&self, i: usize, spare: &mut Vec<u8>) -> usize {
        let Some(Ok(mut shard)) = self.shards.get(i).map(Mutex::lock) else {
            return 0;
        };
        if shard.clicks == 0 {
            return 0;
        }
        std::mem::swap(&mut shard.bytes, spare);
        std::mem::take(&mut shard.clicks)
    }

    pub fn shards(&self) -> usize {
        self.shards.len()
    }

    /// Clicks waiting, summed over the shards.
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .filter_map(|s| s.lock().ok().map(|s| s.clicks))
            .sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Refuses every later push; what is queued can still be taken.
    pub fn close(&self) {
        for shard in &self.shards {
            if let Ok(mut s) = shard.lock() {
                s.closed = true;
            }
        }
    }
}

/// Which shard this thread uses: threads are numbered in the order they first push.
fn thread_slot() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static SLOT: Cell<Option<usize>> = const { Cell::new(None) };
    }
    SLOT.with(|slot| {
        slot.get().unwrap_or_else(|| {
            let n = NEXT.fetch_add(1, Ordering::Relaxed);
            slot.set(Some(n));
            n
        })
    })
}

/// Record layout: time (i64 seconds, u32 nanoseconds), IP (tag 4 or 6, then its
/// octets), CF-IPCountry (0, or 1 and two bytes), then code, referrer and user agent,
/// each a little-endian u16 length ([`ABSENT`] for a missing header) and its bytes.
/// Header values are already cut to [`super::event::MAX_HEADER_BYTES`], and codes are
/// far shorter, so every length fits.
fn encode(out: &mut Vec<u8>, c: &Captured<'_>) {
    out.extend_from_slice(&c.at.timestamp().to_le_bytes());
    out.extend_from_slice(&c.at.timestamp_subsec_nanos().to_le_bytes());
    match c.ip {
        IpAddr::V4(v4) => {
            out.push(4);
            out.extend_from_slice(&v4.octets());
        }
        IpAddr::V6(v6) => {
            out.push(6);
            out.extend_from_slice(&v6.octets());
        }
    }
    match c.cf_country {
        Some(cc) => {
            out.push(1);
            out.extend_from_slice(&cc);
        }
        None => out.push(0),
    }
    for field in [Some(c.code.as_bytes()), c.referer, c.user_agent] {
        match field {
            Some(b) => {
                let b = &b[..b.len().min(usize::from(ABSENT - 1))];
                out.extend_from_slice(&(b.len() as u16).to_le_bytes());
                out.extend_from_slice(b);
            }
            None => out.extend_from_slice(&ABSENT.to_le_bytes()),
        }
    }
}

/// Reads the clicks [`encode`] wrote, in order. A buffer only ever holds whole
/// records written by this module, so a short or malformed one means a bug; it ends
/// the iteration rather than panicking.
pub fn decode(mut bytes: &[u8]) -> impl Iterator<Item = Captured<'_>> {
    std::iter::from_fn(move || {
        let (click, rest) = decode_one(bytes)?;
        bytes = rest;
        Some(click)
    })
}

fn decode_one(b: &[u8]) -> Option<(Captured<'_>, &[u8])> {
    let (secs, b) = b.split_first_chunk::<8>()?;
    let (nanos, b) = b.split_first_chunk::<4>()?;
    let at = DateTime::<Utc>::from_timestamp(i64::from_le_bytes(*secs), u32::from_le_bytes(*nanos))?;
    let (tag, b) = b.split_first()?;
    let (ip, b) = match tag {
        4 => {
            let (o, b) = b.split_first_chunk::<4>()?;
            (IpAddr::V4(Ipv4Addr::from(*o)), b)
        }
        _ => {
            let (o, b) = b.split_first_chunk::<16>()?;
            (IpAddr::V6(Ipv6Addr::from(*o)), b)
        }
    };
    let (has_cc, b) = b.split_first()?;
    let (cf_country, b) = if *has_cc == 1 {
        let (cc, b) = b.split_first_chunk::<2>()?;
        (Some(*cc), b)
    } else {
        (None, b)
    };
    let (code, b) = field(b)?;
    let (referer, b) = field(b)?;
    let (user_agent, b) = field(b)?;
    let code = std::str::from_utf8(code?).ok()?;
    Some((
        Captured {
            code,
            at,
            referer,
            user_agent,
            ip,
            cf_country,
        },
        b,
    ))
}

fn field(b: &[u8]) -> Option<(Option<&[u8]>, &[u8])> {
    let (len, b) = b.split_first_chunk::<2>()?;
    let len = u16::from_le_bytes(*len);
    if len == ABSENT {
        return Some((None, b));
    }
    let (value, b) = b.split_at_checked(usize::from(len))?;
    Some((Some(value), b))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn click(i: u8) -> Captured<'static> {
        Captured {
            code: "abc1234",
            at: DateTime::from_timestamp(1_700_000_000 + i64::from(i), u32::from(i) * 1000).unwrap(),
            referer: i
                .is_multiple_of(2)
                .then_some(b"https://news.example.com/x".as_slice()),
            user_agent: (!i.is_multiple_of(3)).then_some(b"Mozilla/5.0 Firefox/130.0".as_slice()),
            ip: if i.is_multiple_of(4) {
                IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, u16::from(i)))
            } else {
                IpAddr::V4(Ipv4Addr::new(192, 0, 2, i))
            },
            cf_country: i.is_multiple_of(5).then_some(*b"DE"),
        }
    }

    #[test]
    fn clicks_come_back_as_they_went_in() {
        let q = CaptureQueue::new(1000);
        let sent: Vec<_> = (0..50).map(click).collect();
        for c in &sent {
            q.push(*c).unwrap();
        }
        assert_eq!(q.len(), 50);
        let mut got = Vec::new();
        let mut spare = Vec::new();
        for i in 0..q.shards() {
            let n = q.take(i, &mut spare);
            let before = got.len();
            // Debug shows every field.
            got.extend(decode(&spare).map(|c| format!("{c:?}")));
            assert_eq!(got.len() - before, n, "take counts what it hands over");
            spare.clear();
        }
        let want: Vec<_> = sent.iter().map(|c| format!("{c:?}")).collect();
        // One thread pushed, so one shard holds them all, in order.
        assert_eq!(got, want);
        assert!(q.is_empty());
    }

    #[test]
    fn one_thread_can_fill_the_whole_queue_and_no_more() {
        let q = CaptureQueue::new(8);
        assert!(q.shards() > 1, "the test needs several shards");
        let room = q.per_shard * q.shards();
        for i in 0..room {
            assert!(q.push(click(i as u8)).is_ok(), "click {i} of {room}");
        }
        let back = q.push(click(99)).unwrap_err();
        assert_eq!(back.at, click(99).at, "the refused click is the one pushed");
        assert_eq!(q.len(), room);
        assert!(room <= 8, "never more than the capacity");
        let mut spare = Vec::new();
        assert_eq!(q.take(0, &mut spare), q.per_shard, "a whole shard is taken");
        spare.clear();
        q.push(click(3)).unwrap();
        q.close();
        assert!(q.push(click(4)).is_err(), "closed");
        assert_eq!(
            q.len(),
            room - q.per_shard + 1,
            "what was queued before closing stays"
        );
    }

    #[test]
    fn a_truncated_buffer_ends_the_clicks_without_panicking() {
        let mut bytes = Vec::new();
        encode(&mut bytes, &click(1));
        encode(&mut bytes, &click(2));
        for cut in 0..bytes.len() {
            let n = decode(&bytes[..cut]).count();
            assert!(n <= 1, "cut at {cut}: {n}");
        }
        assert_eq!(decode(&bytes).count(), 2);
    }
}
