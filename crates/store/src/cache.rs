//! The writer's in-memory indexes (identifier → profile id, metric name →
//! metric id), so ingest does not pay a query per lookup. Entries written by
//! a job are staged and only become visible to the shared map when the
//! transaction that wrote them commits; a rolled-back job or batch leaves no
//! trace.

use std::collections::HashMap;

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

pub struct WriteCache {
    enabled: bool,
    /// The cache holds every key (preloaded at start): a miss means absent.
    complete: bool,
    committed: HashMap<Key, String>,
    batch: HashMap<Key, Option<String>>,
    job: HashMap<Key, Option<String>>,
}

impl WriteCache {
    pub fn new(enabled: bool) -> Self {
        Self {
            enabled,
            complete: false,
            committed: HashMap::new(),
            batch: HashMap::new(),
            job: HashMap::new(),
        }
    }

    /// `Some(Some(id))`: known; `Some(None)`: known absent (removed in this
    /// batch); `None`: ask the database.
    pub fn get(&self, key: &Key) -> Option<Option<&str>> {
        if !self.enabled {
            return None;
        }
        if let Some(v) = self.job.get(key).or_else(|| self.batch.get(key)) {
            return Some(v.as_deref());
        }
        match self.committed.get(key) {
            Some(v) => Some(Some(v.as_str())),
            None if self.complete => Some(None),
            None => None,
        }
    }

    /// Fills the committed map directly (at start, from the store).
    pub fn preload(&mut self, key: Key, id: String) {
        if self.enabled {
            self.committed.insert(key, id);
        }
    }

    /// Declares the preload finished: from now on a miss means absent.
    pub fn mark_complete(&mut self) {
        self.complete = self.enabled;
    }

    pub fn put(&mut self, key: Key, id: String) {
        if self.enabled {
            self.job.insert(key, Some(id));
        }
    }

    pub fn remove(&mut self, key: Key) {
        if self.enabled {
            self.job.insert(key, None);
        }
    }

    pub(crate) fn keep_job(&mut self) {
        self.batch.extend(self.job.drain());
    }

    pub(crate) fn drop_job(&mut self) {
        self.job.clear();
    }

    pub(crate) fn commit_batch(&mut self) {
        for (k, v) in self.batch.drain() {
            match v {
                Some(id) => {
                    self.committed.insert(k, id);
                }
                None => {
                    self.committed.remove(&k);
                }
            }
        }
    }

    pub(crate) fn abort_batch(&mut self) {
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
        assert_eq!(c.get(&k("a")), Some(Some("p1")));
        c.keep_job();
        c.put(k("b"), "p2".into());
        c.drop_job();
        assert_eq!(c.get(&k("b")), None);
        c.abort_batch();
        assert_eq!(c.get(&k("a")), None);
        c.put(k("a"), "p1".into());
        c.keep_job();
        c.commit_batch();
        assert_eq!(c.get(&k("a")), Some(Some("p1")));
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
