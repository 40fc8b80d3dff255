//! A cache of signed cookie values that already passed the HMAC check.

use std::sync::Mutex;

use crate::id::SIGNED_ID_LEN;
use crate::keys::constant_time_eq;
use crate::{SessionConfig, SessionId};

/// Default number of slots of a [`VerifiedIdCache`].
pub const DEFAULT_VERIFIED_ID_SLOTS: usize = 4096;

/// Remembers signed session cookie values that passed
/// [`SessionId::verify_cookie_value`], so that a client sending the same
/// cookie again costs a constant-time comparison instead of an HMAC.
///
/// - Only values that verified are stored, and a hit requires the whole
///   value to match byte for byte, so the cache never accepts a value the
///   HMAC check would refuse.
/// - The comparison is constant-time: timing reveals nothing to a client about
///   the values other clients sent.
/// - It is direct-mapped: each value has one slot, chosen from its first
///   bytes, and a newer value evicts an older one. A miss costs what the
///   check costs without a cache, so a client that sends many values only
///   evicts entries.
/// - It checks values against the key ring and cookie name of the
///   configuration it was built with.
///
/// ```
/// use session_core::{SessionConfig, SessionId, VerifiedIdCache};
///
/// let config = SessionConfig::development([7u8; 32]).build().unwrap();
/// let cache = VerifiedIdCache::new(&config, 1024);
/// let id = SessionId::random();
/// let value = id.to_cookie_value(config.keys(), config.cookie().name());
///
/// assert_eq!(cache.verify(&value), Some((id.clone(), false)));
/// // The second call finds the value in the cache.
/// assert_eq!(cache.verify(&value), Some((id, false)));
/// assert_eq!(cache.verify("not-a-session-cookie"), None);
/// ```
pub struct VerifiedIdCache {
    config: SessionConfig,
    slots: Box<[Mutex<Option<Box<Verified>>>]>,
}

struct Verified {
    value: [u8; SIGNED_ID_LEN],
    id: SessionId,
    signed_by_retired_key: bool,
}

impl VerifiedIdCache {
    /// Creates a cache for the session cookie of `config`, with `slots`
    /// entries rounded up to a power of two. With 0 slots nothing is cached
    /// and every call runs the HMAC check.
    pub fn new(config: &SessionConfig, slots: usize) -> Self {
        let slots = if slots == 0 {
            0
        } else {
            slots.next_power_of_two()
        };
        Self {
            config: config.clone(),
            slots: (0..slots).map(|_| Mutex::new(None)).collect(),
        }
    }

    /// Returns the number of slots.
    pub fn slots(&self) -> usize {
        self.slots.len()
    }

    /// Checks a cookie value as [`SessionId::verify_cookie_value`] does and
    /// returns the id and whether a retired key signed it.
    pub fn verify(&self, value: &str) -> Option<(SessionId, bool)> {
        // Malformed values are rejected before they can take a slot.
        if value.len() != SIGNED_ID_LEN || self.slots.is_empty() {
            return self.check(value);
        }
        let slot = &self.slots[self.slot_index(value.as_bytes())];

        if let Some(hit) = lock(slot)
            .as_deref()
            .filter(|entry| constant_time_eq(&entry.value, value.as_bytes()))
        {
            return Some((hit.id.clone(), hit.signed_by_retired_key));
        }

        let (id, signed_by_retired_key) = self.check(value)?;
        let mut stored = [0u8; SIGNED_ID_LEN];
        stored.copy_from_slice(value.as_bytes());
        let verified = Verified {
            value: stored,
            id: id.clone(),
            signed_by_retired_key,
        };
        let mut entry = lock(slot);
        match entry.as_deref_mut() {
            // Reuse the allocation of the entry this one evicts.
            Some(old) => *old = verified,
            None => *entry = Some(Box::new(verified)),
        }
        Some((id, signed_by_retired_key))
    }

    fn check(&self, value: &str) -> Option<(SessionId, bool)> {
        SessionId::verify_cookie_value(self.config.keys(), self.config.cookie().name(), value)
    }

    /// Picks a slot from the first eight characters of the id, which carry
    /// 48 random bits for any value the server issued.
    fn slot_index(&self, value: &[u8]) -> usize {
        let mut prefix = [0u8; 8];
        prefix.copy_from_slice(&value[..8]);
        let mixed = u64::from_le_bytes(prefix).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        (mixed >> 32) as usize & (self.slots.len() - 1)
    }
}

impl std::fmt::Debug for VerifiedIdCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerifiedIdCache")
            .field("cookie_name", &self.config.cookie().name())
            .field("slots", &self.slots.len())
            .finish_non_exhaustive()
    }
}

fn lock(slot: &Mutex<Option<Box<Verified>>>) -> std::sync::MutexGuard<'_, Option<Box<Verified>>> {
    slot.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{KeyRing, Secret};

    fn config(secret: u8, cookie_name: &str) -> SessionConfig {
        SessionConfig::development([secret; 32])
            .cookie_name(cookie_name)
            .build()
            .unwrap()
    }

    fn value_for(config: &SessionConfig, id: &SessionId) -> String {
        id.to_cookie_value(config.keys(), config.cookie().name())
    }

    #[test]
    fn cache_matches_hmac_check() {
        let config = config(1, "id");
        let cache = VerifiedIdCache::new(&config, 8);
        let ids: Vec<SessionId> = (0..64).map(|_| SessionId::random()).collect();
        // Three passes over more ids than slots: hits, misses and evictions.
        for _ in 0..3 {
            for id in &ids {
                assert_eq!(
                    cache.verify(&value_for(&config, id)),
                    Some((id.clone(), false))
                );
            }
        }
    }

    #[test]
    fn altered_cached_value_is_rejected() {
        let config = config(1, "id");
        let cache = VerifiedIdCache::new(&config, 16);
        let value = value_for(&config, &SessionId::random());
        assert!(cache.verify(&value).is_some());

        for position in 0..value.len() {
            let mut bytes = value.clone().into_bytes();
            bytes[position] = if bytes[position] == b'A' { b'B' } else { b'A' };
            let altered = String::from_utf8(bytes).unwrap();
            assert_eq!(cache.verify(&altered), None, "byte {position} changed");
        }
        // The genuine value is still accepted after the rejections.
        assert!(cache.verify(&value).is_some());
    }

    #[test]
    fn foreign_key_or_name_is_rejected() {
        let cache = VerifiedIdCache::new(&config(1, "id"), 16);
        let id = SessionId::random();
        assert_eq!(cache.verify(&value_for(&config(2, "id"), &id)), None);
        assert_eq!(cache.verify(&value_for(&config(1, "sid"), &id)), None);
    }

    #[test]
    fn retired_key_flag_is_cached() {
        let rotated = SessionConfig::development([2u8; 32])
            .cookie_name("id")
            .retired_secret([1u8; 32])
            .build()
            .unwrap();
        let cache = VerifiedIdCache::new(&rotated, 16);
        let id = SessionId::random();
        let old = KeyRing::new(Secret::try_from_bytes(&[1u8; 32]).unwrap());
        let value = id.to_cookie_value(&old, "id");
        assert_eq!(cache.verify(&value), Some((id.clone(), true)));
        assert_eq!(cache.verify(&value), Some((id, true)));
    }

    #[test]
    fn zero_slots_disable_cache() {
        let config = config(1, "id");
        let cache = VerifiedIdCache::new(&config, 0);
        assert_eq!(cache.slots(), 0);
        let id = SessionId::random();
        assert_eq!(cache.verify(&value_for(&config, &id)), Some((id, false)));
    }

    #[test]
    fn slots_round_to_power_of_two() {
        assert_eq!(VerifiedIdCache::new(&config(1, "id"), 1000).slots(), 1024);
    }
}
