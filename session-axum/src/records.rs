//! Decoded records of recently read sessions, so that a request whose
//! stored bytes (or sealed cookie) did not change since the last one skips
//! the decode.

use std::hash::{BuildHasher, RandomState};
use std::sync::{Arc, Mutex, MutexGuard};

use session_core::__private::constant_time_eq;

use session_core::{IdBuildHasher, SessionId, SessionRecord, StoredSession};

/// Default number of slots of the record cache.
pub(crate) const DEFAULT_RECORD_SLOTS: usize = 4096;

/// Largest stored payload or sealed cookie, in bytes, whose record is kept.
/// Larger sessions are decoded on every request, so that a full cache contains
/// at most about slots x (2 KiB + a decoded record) however big sessions get.
pub(crate) const MAX_CACHED_BYTES: usize = 2048;

/// A direct-mapped cache from a stored session to its decoded record.
///
/// An entry matches only the exact stored form it was made from: same
/// id, version, expiry and payload bytes. Decoding is a pure function of
/// those, so a hit returns what a decode would, and the store stays the
/// source of truth: every request still loads from it first.
pub(crate) struct RecordCache<T> {
    slots: Box<[Slot<T>]>,
}

type Slot<T> = Mutex<Option<Box<Cached<T>>>>;

struct Cached<T> {
    stored: StoredSession,
    record: Arc<SessionRecord<T>>,
}

impl<T> RecordCache<T> {
    /// Creates a cache with `slots` entries rounded up to a power of two; 0
    /// turns it off.
    pub(crate) fn new(slots: usize) -> Self {
        Self {
            slots: empty_slots(slots),
        }
    }

    /// Returns the decoded record of `stored` if this exact stored form is cached.
    pub(crate) fn get(&self, stored: &StoredSession) -> Option<Arc<SessionRecord<T>>> {
        let slot = self.slot(&stored.id)?;
        let entry = lock(slot);
        let cached = entry.as_deref()?;
        let same = cached.stored.version == stored.version
            && cached.stored.expires_at == stored.expires_at
            && cached.stored.id == stored.id
            && cached.stored.payload == stored.payload;
        same.then(|| cached.record.clone())
    }

    /// Remembers `record` as the decoded form of `stored`, evicting the
    /// slot's previous entry.
    pub(crate) fn put(&self, stored: StoredSession, record: Arc<SessionRecord<T>>) {
        if stored.payload.len() > MAX_CACHED_BYTES {
            return;
        }
        let Some(slot) = self.slot(&stored.id) else {
            return;
        };
        let cached = Cached { stored, record };
        let mut entry = lock(slot);
        match entry.as_deref_mut() {
            // Reuse the allocation of the entry this one evicts.
            Some(old) => *old = cached,
            None => *entry = Some(Box::new(cached)),
        }
    }

    /// Drops the entry of `id`, for a session that was deleted.
    pub(crate) fn forget(&self, id: &SessionId) {
        if let Some(slot) = self.slot(id) {
            let mut entry = lock(slot);
            if entry.as_ref().is_some_and(|cached| cached.stored.id == *id) {
                *entry = None;
            }
        }
    }

    fn slot(&self, id: &SessionId) -> Option<&Slot<T>> {
        if self.slots.is_empty() {
            return None;
        }
        let index = IdBuildHasher::default().hash_one(id) as usize & (self.slots.len() - 1);
        Some(&self.slots[index])
    }
}

/// A direct-mapped cache from a sealed cookie-store value to the record it
/// opened to.
///
/// A sealed value is authenticated encryption of the record, so equal
/// values open to equal records; a hit skips the decryption and the decode.
/// The expiry and revocation checks do not depend on the value alone, so
/// the caller runs them on every request. Values are compared in constant
/// time and placed by a hash with a per-process random key, so a client can
/// neither aim at another client's slot nor time the comparison.
pub(crate) struct SealedCache<T> {
    hasher: RandomState,
    slots: Box<[SealedSlot<T>]>,
}

type SealedSlot<T> = Mutex<Option<Box<Sealed<T>>>>;

struct Sealed<T> {
    value: Box<str>,
    record: Arc<SessionRecord<T>>,
}

impl<T> SealedCache<T> {
    /// Creates a cache with `slots` entries rounded up to a power of two; 0
    /// turns it off.
    pub(crate) fn new(slots: usize) -> Self {
        Self {
            hasher: RandomState::new(),
            slots: empty_slots(slots),
        }
    }

    /// Returns the record `value` opened to, if this exact value is cached.
    /// Only cookies sealed under the current key are cached, since others
    /// are resealed at once.
    pub(crate) fn get(&self, value: &str) -> Option<Arc<SessionRecord<T>>> {
        let slot = self.slot(value)?;
        let entry = lock(slot);
        let cached = entry.as_deref()?;
        constant_time_eq(cached.value.as_bytes(), value.as_bytes()).then(|| cached.record.clone())
    }

    /// Remembers what `value` opened to, evicting the slot's previous entry.
    pub(crate) fn put(&self, value: &str, record: Arc<SessionRecord<T>>) {
        if value.len() > MAX_CACHED_BYTES {
            return;
        }
        let Some(slot) = self.slot(value) else {
            return;
        };
        let sealed = Sealed {
            value: value.into(),
            record,
        };
        let mut entry = lock(slot);
        *entry = Some(Box::new(sealed));
    }

    fn slot(&self, value: &str) -> Option<&SealedSlot<T>> {
        if self.slots.is_empty() {
            return None;
        }
        let index = self.hasher.hash_one(value) as usize & (self.slots.len() - 1);
        Some(&self.slots[index])
    }
}

/// Returns `count` empty slots, rounded up to a power of two so that a slot
/// index is a mask of a hash; none for 0.
fn empty_slots<E>(count: usize) -> Box<[Mutex<Option<E>>]> {
    let count = if count == 0 {
        0
    } else {
        count.next_power_of_two()
    };
    (0..count).map(|_| Mutex::new(None)).collect()
}

fn lock<T>(slot: &Mutex<T>) -> MutexGuard<'_, T> {
    slot.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use session_core::{RecordCodec, SessionData};
    use time::OffsetDateTime;

    #[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
    struct Counter {
        count: u32,
    }

    impl SessionData for Counter {
        fn identity(&self) -> Option<String> {
            None
        }
    }

    fn stored(count: u32) -> (StoredSession, SessionRecord<Counter>) {
        let record = SessionRecord::new(
            SessionId::random(),
            Counter { count },
            OffsetDateTime::UNIX_EPOCH,
            None,
            None,
            false,
        );
        let stored = record.to_stored(&RecordCodec::default()).unwrap();
        (stored, record)
    }

    #[test]
    fn exact_stored_form_hits() {
        let cache = RecordCache::new(16);
        let (stored, record) = stored(1);
        cache.put(stored.clone(), Arc::new(record.clone()));
        assert_eq!(cache.get(&stored).as_deref(), Some(&record));
    }

    #[test]
    fn any_changed_field_misses() {
        let cache = RecordCache::new(16);
        let (stored, record) = stored(1);
        cache.put(stored.clone(), Arc::new(record));

        let mut newer = stored.clone();
        newer.version += 1;
        assert!(cache.get(&newer).is_none(), "version");

        let mut touched = stored.clone();
        touched.expires_at = Some(OffsetDateTime::UNIX_EPOCH);
        assert!(cache.get(&touched).is_none(), "expiry");

        let mut rewritten = stored.clone();
        let mut bytes = rewritten.payload.to_vec();
        *bytes.last_mut().unwrap() ^= 1;
        rewritten.payload = Bytes::from(bytes);
        assert!(cache.get(&rewritten).is_none(), "payload");

        let mut other = stored.clone();
        other.id = SessionId::random();
        assert!(cache.get(&other).is_none(), "id");
    }

    #[test]
    fn forgotten_session_misses() {
        let cache = RecordCache::new(16);
        let (stored, record) = stored(1);
        cache.put(stored.clone(), Arc::new(record));
        cache.forget(&stored.id);
        assert!(cache.get(&stored).is_none());
    }

    #[test]
    fn sealed_value_hits_only_when_equal() {
        let cache = SealedCache::new(16);
        let (_, record) = stored(1);
        cache.put("sealed-value-a", Arc::new(record.clone()));

        let hit = cache.get("sealed-value-a").expect("cached");
        assert_eq!(*hit, record);
        assert!(cache.get("sealed-value-b").is_none());
        assert!(cache.get("sealed-value-").is_none());
        assert!(SealedCache::<Counter>::new(0)
            .get("sealed-value-a")
            .is_none());
    }

    #[test]
    fn large_sessions_are_not_kept() {
        let records = RecordCache::new(16);
        let (mut stored, record) = stored(1);
        stored.payload = Bytes::from(vec![0u8; MAX_CACHED_BYTES + 1]);
        records.put(stored.clone(), Arc::new(record.clone()));
        assert!(records.get(&stored).is_none());

        let sealed = SealedCache::new(16);
        let long_value = "v".repeat(MAX_CACHED_BYTES + 1);
        sealed.put(&long_value, Arc::new(record));
        assert!(sealed.get(&long_value).is_none());
    }

    #[test]
    fn zero_slots_cache_nothing() {
        let cache = RecordCache::new(0);
        let (stored, record) = stored(1);
        cache.put(stored.clone(), Arc::new(record));
        assert!(cache.get(&stored).is_none());
    }
}
