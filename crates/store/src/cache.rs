//! The writer's in-memory indexes (identifier → profile id, metric name →
//! metric id), so ingest does not pay a query per lookup. Entries written by
//! a job are staged and only become visible to the shared map when the
//! transaction that wrote them commits; a rolled-back job or batch leaves no
//! trace.

/// Slots are already hashes: SipHash over them again is wasted work.
type HashMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Key {
    Email(String, String),
    Phone(String, String),
    External(String, String),
    Metric(String, String),
    /// Fingerprint of the last profile input applied to a profile id, so a
    /// repeat of the same attributes (most events carry the same name and
    /// properties every time) costs no read.
    Applied(String),
}

/// Keys are kept as 128-bit hashes and ULID-shaped values as 128-bit
/// numbers: a million profiles' identifiers then cost tens of megabytes, not
/// hundreds. (A collision of two 128-bit keys is not a practical concern.)
type Slot = u128;

fn slot(key: &Key) -> Slot {
    use std::hash::{Hash, Hasher};
    let half = |seed: u8| {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        seed.hash(&mut h);
        key.hash(&mut h);
        h.finish()
    };
    (u128::from(half(0)) << 64) | u128::from(half(1))
}

pub struct WriteCache {
    enabled: bool,
    /// The cache holds every key (preloaded at start): a miss means absent.
    complete: bool,
    /// Values that are ULIDs (profile ids, fingerprints), stored as numbers.
    committed: HashMap<Slot, u128>,
    /// Any other value (metric ids).
    committed_text: HashMap<Slot, Box<str>>,
    batch: HashMap<Slot, Option<String>>,
    job: HashMap<Slot, Option<String>>,
    /// A job of this batch stored an event (for the writer's batch hook).
    event_noted: bool,
}

impl WriteCache {
    pub fn new(enabled: bool) -> Self {
        Self {
            enabled,
            complete: false,
            committed: HashMap::default(),
            committed_text: HashMap::default(),
            batch: HashMap::default(),
            job: HashMap::default(),
            event_noted: false,
        }
    }

    /// `Some(Some(id))`: known; `Some(None)`: known absent (removed in this
    /// batch); `None`: ask the database.
    pub fn get(&self, key: &Key) -> Option<Option<String>> {
        if !self.enabled {
            return None;
        }
        let k = slot(key);
        if let Some(v) = self.job.get(&k).or_else(|| self.batch.get(&k)) {
            return Some(v.clone());
        }
        if let Some(n) = self.committed.get(&k) {
            return Some(Some(ulid::Ulid(*n).to_string()));
        }
        match self.committed_text.get(&k) {
            Some(v) => Some(Some(v.to_string())),
            None if self.complete => Some(None),
            None => None,
        }
    }

    fn commit_value(&mut self, k: Slot, v: Option<String>) {
        self.committed.remove(&k);
        self.committed_text.remove(&k);
        if let Some(v) = v {
            // Only canonical ULID text round-trips through the number.
            match ulid::Ulid::from_string(&v) {
                Ok(u) if u.to_string() == v => {
                    self.committed.insert(k, u.0);
                }
                _ => {
                    self.committed_text.insert(k, v.into_boxed_str());
                }
            }
        }
    }

    /// Fills the committed map directly (at start, from the store).
    pub fn preload(&mut self, key: Key, id: String) {
        if self.enabled {
            self.commit_value(slot(&key), Some(id));
        }
    }

    /// Declares the preload finished: from now on a miss means absent.
    pub fn mark_complete(&mut self) {
        self.complete = self.enabled;
    }

    pub fn put(&mut self, key: Key, id: String) {
        if self.enabled {
            self.job.insert(slot(&key), Some(id));
        }
    }

    pub fn remove(&mut self, key: Key) {
        if self.enabled {
            self.job.insert(slot(&key), None);
        }
    }

    /// Records that the batch stored an event (whether or not its job is
    /// kept: a hook run for a rolled-back event finds nothing new).
    pub fn note_event(&mut self) {
        self.event_noted = true;
    }

    pub(crate) fn take_event_noted(&mut self) -> bool {
        std::mem::take(&mut self.event_noted)
    }

    pub(crate) fn keep_job(&mut self) {
        self.batch.extend(self.job.drain());
    }

    pub(crate) fn drop_job(&mut self) {
        self.job.clear();
    }

    pub(crate) fn commit_batch(&mut self) {
        let staged: Vec<_> = self.batch.drain().collect();
        for (k, v) in staged {
            self.commit_value(k, v);
        }
    }

    pub(crate) fn abort_batch(&mut self) {
        self.event_noted = false;
        self.batch.clear();
        self.job.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn k(s: &str) -> Key {
        Key::Email("acct".into(), s.into())
    }

    #[test]
    fn staged_entries_surface_only_after_commit() {
        let mut c = WriteCache::new(true);
        c.put(k("a"), "p1".into());
        assert_eq!(c.get(&k("a")), Some(Some("p1".to_string())));
        c.keep_job();
        c.put(k("b"), "p2".into());
        c.drop_job();
        assert_eq!(c.get(&k("b")), None);
        c.abort_batch();
        assert_eq!(c.get(&k("a")), None);
        c.put(k("a"), "p1".into());
        c.keep_job();
        c.commit_batch();
        assert_eq!(c.get(&k("a")), Some(Some("p1".to_string())));
        c.remove(k("a"));
        assert_eq!(c.get(&k("a")), Some(None));
    }

    #[test]
    fn disabled_cache_always_defers_to_the_database() {
        let mut c = WriteCache::new(false);
        c.put(k("a"), "p1".into());
        c.keep_job();
        c.commit_batch();
        assert_eq!(c.get(&k("a")), None);
    }
}

#[cfg(test)]
mod compact_tests {
    use super::*;

    #[test]
    fn ulid_and_other_values_round_trip() {
        let mut c = WriteCache::new(true);
        let id = ulid::Ulid::new().to_string();
        c.preload(Key::Email("a".into(), "x@y.co".into()), id.clone());
        c.preload(
            Key::Metric("a".into(), "Placed Order".into()),
            "Ab3dEf".into(),
        );
        c.preload(Key::External("a".into(), "lower".into()), id.to_lowercase());
        c.mark_complete();
        assert_eq!(
            c.get(&Key::Email("a".into(), "x@y.co".into())),
            Some(Some(id.clone()))
        );
        assert_eq!(
            c.get(&Key::Metric("a".into(), "Placed Order".into())),
            Some(Some("Ab3dEf".into()))
        );
        assert_eq!(
            c.get(&Key::External("a".into(), "lower".into())),
            Some(Some(id.to_lowercase()))
        );
        assert_eq!(c.get(&Key::Email("b".into(), "x@y.co".into())), Some(None));
        c.remove(Key::Email("a".into(), "x@y.co".into()));
        c.keep_job();
        c.commit_batch();
        assert_eq!(c.get(&Key::Email("a".into(), "x@y.co".into())), Some(None));
    }
}
