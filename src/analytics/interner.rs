//! [`Interner`]: the strings of a [`super::batch::ClickBatch`], each kept once and
//! named by a dense id.
//!
//! Why its own tables: under a saturating load the store writer holds two batches
//! of up to 800,000 clicks over ~100,000 links, so each has a table of ~100,000
//! codes. As two `HashMap`s (text → id, address → id) beside the list of strings,
//! that table took 10–15 MB a hold at its peak (`bench/results/2026-12-06.md`, the
//! heap profile). Here both indexes are [`HashTable`]s of bare ids (4 bytes a slot)
//! that look the key up through the list, so a table of 100,000 strings is the list
//! (16 bytes a string) and about 13 bytes a string of index. The strings themselves
//! are the callers' shared `Arc<str>`s (the batcher's memo of codes, the enricher's
//! labels), not copies.

use std::hash::BuildHasher;
use std::sync::Arc;

use hashbrown::HashTable;

type Map<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;

/// The address of a shared string: what [`Interner::id_of_label`] looks up first.
fn address(label: &Arc<str>) -> usize {
    Arc::as_ptr(label).cast::<u8>().addr()
}

#[derive(Debug, Clone, Default)]
pub(super) struct Interner {
    strings: Vec<Arc<str>>,
    /// Ids by their string's text.
    by_text: HashTable<u32>,
    /// Ids by the address of their own entry in `strings`: a click's labels are
    /// found without hashing or comparing their text.
    by_address: HashTable<u32>,
    /// Ids of other shared strings with the same text as an entry (a link reloaded
    /// into the cache, a replayed event), by address. Each address here is kept
    /// alive by `pinned`, so it cannot be reused for another string meanwhile.
    other_addresses: Map<usize, u32>,
    pinned: Vec<Arc<str>>,
    hasher: foldhash::fast::RandomState,
}

impl Interner {
    /// The id of `s`, adding a copy of it if it is new.
    pub(super) fn id(&mut self, s: &str) -> u32 {
        match self.find_text(s) {
            Some(id) => id,
            None => self.add(s.into()),
        }
    }

    /// The id of a shared string's text, found by its address when it was seen
    /// before; a new text keeps `label` itself, not a copy.
    pub(super) fn id_of_label(&mut self, label: &Arc<str>) -> u32 {
        let at = address(label);
        let strings = &self.strings;
        let hash = self.hasher.hash_one(at);
        if let Some(id) = self
            .by_address
            .find(hash, |&id| address(&strings[id as usize]) == at)
        {
            return *id;
        }
        if let Some(id) = self.other_addresses.get(&at) {
            return *id;
        }
        match self.find_text(label) {
            Some(id) => {
                self.pinned.push(label.clone());
                self.other_addresses.insert(at, id);
                id
            }
            None => self.add(label.clone()),
        }
    }

    fn find_text(&self, s: &str) -> Option<u32> {
        let strings = &self.strings;
        self.by_text
            .find(self.hasher.hash_one(s), |&id| &*strings[id as usize] == s)
            .copied()
    }

    /// Adds a string whose text is not in the table yet.
    fn add(&mut self, s: Arc<str>) -> u32 {
        let id = self.strings.len() as u32;
        let Self {
            strings,
            by_text,
            by_address,
            hasher,
            ..
        } = self;
        by_text.insert_unique(hasher.hash_one(&*s), id, |&i| {
            hasher.hash_one(&*strings[i as usize])
        });
        by_address.insert_unique(hasher.hash_one(address(&s)), id, |&i| {
            hasher.hash_one(address(&strings[i as usize]))
        });
        strings.push(s);
        id
    }

    /// The string of `id`; `""` for an id this table did not give out.
    pub(super) fn get(&self, id: u32) -> &str {
        self.strings.get(id as usize).map_or("", |s| s)
    }

    /// Every string, by id.
    pub(super) fn strings(&self) -> &[Arc<str>] {
        &self.strings
    }

    pub(super) fn len(&self) -> usize {
        self.strings.len()
    }

    /// Bytes the table itself has allocated (not the strings, which are shared).
    #[cfg(test)]
    fn allocated_bytes(&self) -> usize {
        self.strings.capacity() * std::mem::size_of::<Arc<str>>()
            + self.by_text.allocation_size()
            + self.by_address.allocation_size()
            + self.other_addresses.capacity() * std::mem::size_of::<(usize, u32)>()
            + self.pinned.capacity() * std::mem::size_of::<Arc<str>>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_text_has_one_id_whichever_string_carries_it() {
        let mut t = Interner::default();
        let a: Arc<str> = "abc".into();
        let a_again: Arc<str> = "abc".into();
        let b: Arc<str> = "xyz".into();
        let id_a = t.id_of_label(&a);
        assert_eq!(t.id_of_label(&a), id_a);
        assert_eq!(t.id_of_label(&a_again), id_a, "same text, another allocation");
        assert_eq!(t.id("abc"), id_a);
        let id_b = t.id_of_label(&b);
        assert_ne!(id_a, id_b);
        assert_eq!(t.id("new"), 2);
        assert_eq!(
            (t.get(id_a), t.get(id_b), t.get(2), t.get(99)),
            ("abc", "xyz", "new", "")
        );
        assert_eq!(t.len(), 3);
        // A new text keeps the caller's string rather than a copy of it.
        assert!(Arc::ptr_eq(&t.strings()[id_b as usize], &b));
    }

    #[test]
    fn another_allocation_of_a_known_text_gets_its_id_and_is_kept_alive() {
        let mut t = Interner::default();
        // The table keeps each label it was given alive, so an address it knows
        // cannot be freed and handed out again for another text while it is in use.
        for i in 0..1_000 {
            let s: Arc<str> = format!("code{i}").into();
            assert_eq!(t.id_of_label(&s), i);
        }
        for i in 0..1_000 {
            let s: Arc<str> = format!("code{i}").into();
            assert_eq!(t.id_of_label(&s), i);
            assert_eq!(t.get(i), format!("code{i}"));
        }
    }

    #[test]
    fn a_table_of_100_000_codes_takes_under_40_bytes_a_code() {
        // A hold under load interns ~100,000 codes. With `HashMap`s for the two
        // indexes this was ~75 bytes a code (their slots hold the keys), not
        // counting the copies each made while it grew.
        let codes: Vec<Arc<str>> = (0..100_000).map(|i| Arc::from(format!("c{i:06}"))).collect();
        let mut t = Interner::default();
        for (i, c) in codes.iter().enumerate() {
            assert_eq!(t.id_of_label(c), i as u32);
        }
        for (i, c) in codes.iter().enumerate() {
            assert_eq!(t.id_of_label(c), i as u32);
        }
        let per_code = t.allocated_bytes() / codes.len();
        assert!(per_code < 40, "{per_code} bytes a code");
    }
}
