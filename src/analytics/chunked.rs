//! [`Chunked`]: a list that grows by fixed-size chunks instead of by doubling.
//!
//! Why: a store write under load holds several hundred thousand clicks in one list
//! ([`super::batch::ClickBatch`]), and the next hold fills while it is written. A
//! `Vec` that doubles holds up to twice what it stores (700,000 clicks of 28 bytes in
//! a 28 MiB allocation, not 19 MiB), and each doubling copies the whole list into a
//! new allocation while the old one is still there (14 MiB and 28 MiB at once). In
//! chunks of [`CHUNK`] items, a list takes what it stores plus at most one chunk, and
//! growing never copies what is already there. Small lists (a part of a write, a
//! test) stay in one `Vec` that grows as usual up to one chunk.

/// Items per chunk: a power of two, so an index splits with a shift and a mask,
/// and the first chunk's doublings end exactly at a chunk's size. 16,384 clicks
/// of 28 bytes are 448 KiB.
pub const CHUNK: usize = 16_384;

#[derive(Debug, Clone)]
pub struct Chunked<T> {
    chunks: Vec<Vec<T>>,
    len: usize,
}

impl<T> Default for Chunked<T> {
    fn default() -> Self {
        Self {
            chunks: Vec::new(),
            len: 0,
        }
    }
}

impl<T> Chunked<T> {
    pub fn push(&mut self, item: T) {
        match self.chunks.last_mut() {
            Some(last) if last.len() < CHUNK => last.push(item),
            _ => {
                // The first chunk grows as a `Vec` does (most lists are small); every
                // later one is allocated at its full size once.
                let mut chunk = if self.chunks.is_empty() {
                    Vec::new()
                } else {
                    Vec::with_capacity(CHUNK)
                };
                chunk.push(item);
                self.chunks.push(chunk);
            }
        }
        self.len += 1;
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn get(&self, index: usize) -> Option<&T> {
        self.chunks.get(index / CHUNK)?.get(index % CHUNK)
    }

    /// The items from `start` to `end` (clamped to the length), in order.
    pub fn range(&self, start: usize, end: usize) -> Range<'_, T> {
        let end = end.min(self.len);
        Range {
            list: self,
            next: start.min(end),
            end,
        }
    }

    pub fn iter(&self) -> Range<'_, T> {
        self.range(0, self.len)
    }

    /// Bytes allocated for items: what the list costs beside the items' own heap.
    pub fn allocated_bytes(&self) -> usize {
        self.chunks.iter().map(Vec::capacity).sum::<usize>() * std::mem::size_of::<T>()
    }
}

pub struct Range<'a, T> {
    list: &'a Chunked<T>,
    next: usize,
    end: usize,
}

impl<'a, T> Iterator for Range<'a, T> {
    type Item = &'a T;

    fn next(&mut self) -> Option<&'a T> {
        if self.next >= self.end {
            return None;
        }
        let item = self.list.get(self.next);
        self.next += 1;
        item
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = self.end - self.next;
        (left, Some(left))
    }
}

impl<T> ExactSizeIterator for Range<'_, T> {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items_come_back_by_index_and_in_order_across_chunks() {
        let mut list = Chunked::default();
        let n = 3 * CHUNK + 7;
        for i in 0..n {
            list.push(i as u64);
        }
        assert_eq!(list.len(), n);
        assert_eq!(list.get(CHUNK - 1), Some(&(CHUNK as u64 - 1)));
        assert_eq!(list.get(CHUNK), Some(&(CHUNK as u64)));
        assert_eq!(list.get(n), None);
        assert!(list.iter().copied().eq(0..n as u64));
        let tail: Vec<u64> = list.range(CHUNK - 2, CHUNK + 2).copied().collect();
        assert_eq!(tail, [CHUNK - 2, CHUNK - 1, CHUNK, CHUNK + 1].map(|i| i as u64));
        assert_eq!(list.range(n - 1, n + 10).len(), 1);
        assert_eq!(list.range(n + 5, n + 10).count(), 0);
    }

    #[test]
    fn a_long_list_allocates_what_it_holds_plus_at_most_one_chunk() {
        // Just past a power of two, where a doubling `Vec` holds nearly twice what it
        // stores: 524,289 items of 32 bytes would sit in 32 MiB, not 16.
        let n = (1 << 19) + 1;
        let mut list = Chunked::default();
        for i in 0..n {
            list.push([i as u64; 4]);
        }
        let item = std::mem::size_of::<[u64; 4]>();
        assert!(
            list.allocated_bytes() <= (n + CHUNK) * item,
            "{} bytes for {n} items",
            list.allocated_bytes()
        );
        let mut doubling = Vec::new();
        for i in 0..n {
            doubling.push([i as u64; 4]);
        }
        assert!(
            doubling.capacity() * item > (n + CHUNK) * item,
            "the bound is one a Vec misses"
        );
    }

    #[test]
    fn a_short_list_stays_one_small_allocation() {
        let mut list = Chunked::default();
        for i in 0..100u32 {
            list.push(i);
        }
        assert!(list.allocated_bytes() < 1024);
        assert_eq!(list.iter().len(), 100);
    }
}
