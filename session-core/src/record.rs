//! The session record: the user's data plus everything the library tracks.

use bytes::Bytes;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use time::{Duration, OffsetDateTime};

use crate::binding::Fingerprint;
use crate::codec::{schema_version, CodecError, RecordCodec};
use crate::flash::FlashMessage;
use crate::store::StoredSession;
use crate::{SessionData, SessionId};

/// How long a session lives, as chosen by a handler for one session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SessionExpiry {
    /// The configuration's idle timeout, absolute lifetime and cookie kind.
    Configured,
    /// "Remember me": the session expires at a fixed instant this far from
    /// now, ignores the idle timeout, and its cookie is persistent with a
    /// `Max-Age` equal to the time left.
    RememberFor(Duration),
}

/// One session: its id, the user's data `T`, the pending flash messages and
/// the timing and binding metadata.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionRecord<T> {
    id: SessionId,
    /// The user's data.
    pub data: T,
    /// Flash messages waiting for the next request that loads the session.
    pub flash: Vec<FlashMessage>,
    created_at: OffsetDateTime,
    last_seen: OffsetDateTime,
    idle_timeout: Option<Duration>,
    absolute_deadline: Option<OffsetDateTime>,
    persistent: bool,
    binding: Option<Fingerprint>,
    id_issued_at: OffsetDateTime,
    version: u64,
}

/// The persisted part of a record, in postcard. Timestamps are Unix
/// milliseconds to keep the encoding small.
#[derive(Serialize, Deserialize)]
struct Payload<T> {
    created_at_ms: i64,
    last_seen_ms: i64,
    idle_timeout_ms: Option<u64>,
    absolute_deadline_ms: Option<i64>,
    persistent: bool,
    binding: Option<Fingerprint>,
    flash: Vec<FlashMessage>,
    data: T,
    /// Added in layout 2: when the current id was issued.
    id_issued_at_ms: i64,
}

/// The layout-1 form of [`Payload`], without `id_issued_at_ms`, still
/// decoded so that sessions stored before the upgrade stay valid.
#[derive(Deserialize)]
struct PayloadV1<T> {
    created_at_ms: i64,
    last_seen_ms: i64,
    idle_timeout_ms: Option<u64>,
    absolute_deadline_ms: Option<i64>,
    persistent: bool,
    binding: Option<Fingerprint>,
    flash: Vec<FlashMessage>,
    data: T,
}

impl<T> From<PayloadV1<T>> for Payload<T> {
    fn from(old: PayloadV1<T>) -> Self {
        Self {
            // The id of a layout-1 record was issued no later than this.
            id_issued_at_ms: old.created_at_ms,
            created_at_ms: old.created_at_ms,
            last_seen_ms: old.last_seen_ms,
            idle_timeout_ms: old.idle_timeout_ms,
            absolute_deadline_ms: old.absolute_deadline_ms,
            persistent: old.persistent,
            binding: old.binding,
            flash: old.flash,
            data: old.data,
        }
    }
}

/// The first bytes of a renewal marker's payload, followed by the new id.
/// They differ from a record's, so a marker never decodes as a record.
const RENEWAL_MARKER_MAGIC: [u8; 2] = *b"SM";

impl<T: SessionData> SessionRecord<T> {
    /// Creates a record for a new session at `now` with the configured limits.
    pub fn new(
        id: SessionId,
        data: T,
        now: OffsetDateTime,
        idle_timeout: Option<Duration>,
        absolute_lifetime: Option<Duration>,
        persistent: bool,
    ) -> Self {
        Self {
            id,
            data,
            flash: Vec::new(),
            created_at: now,
            last_seen: now,
            idle_timeout,
            absolute_deadline: absolute_lifetime.map(|lifetime| now + lifetime),
            persistent,
            binding: None,
            id_issued_at: now,
            version: 0,
        }
    }

    /// Returns the id.
    pub fn id(&self) -> &SessionId {
        &self.id
    }

    /// Moves the record to a new id, keeping everything else. Used when the
    /// id is regenerated; the version restarts because the new id is a new
    /// store entry.
    pub fn set_id(&mut self, id: SessionId) {
        self.id = id;
        self.version = 0;
    }

    /// Moves the record to a new id issued at `now`, for a renewal or a
    /// regeneration. Like [`SessionRecord::set_id`], the version restarts.
    pub fn renew_id(&mut self, id: SessionId, now: OffsetDateTime) {
        self.set_id(id);
        self.id_issued_at = now;
    }

    /// Returns when the current id was issued.
    pub fn id_issued_at(&self) -> OffsetDateTime {
        self.id_issued_at
    }

    /// Returns true when the current id has been in use for `interval` or
    /// longer at `now`.
    pub fn renewal_due(&self, now: OffsetDateTime, interval: Duration) -> bool {
        now - self.id_issued_at >= interval
    }

    /// Returns the version last read from or written to the store.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// Returns when the session was created.
    pub fn created_at(&self) -> OffsetDateTime {
        self.created_at
    }

    /// Returns when the server last saw the session in use.
    pub fn last_seen(&self) -> OffsetDateTime {
        self.last_seen
    }

    /// Returns true when the cookie should carry `Max-Age`.
    pub fn is_persistent(&self) -> bool {
        self.persistent
    }

    /// Returns the idle timeout of this session.
    pub fn idle_timeout(&self) -> Option<Duration> {
        self.idle_timeout
    }

    /// Returns the absolute deadline, which activity never extends.
    pub fn absolute_deadline(&self) -> Option<OffsetDateTime> {
        self.absolute_deadline
    }

    /// Returns the binding fingerprint recorded when the session was created.
    pub fn binding(&self) -> Option<&Fingerprint> {
        self.binding.as_ref()
    }

    /// Records the client's binding fingerprint.
    pub fn set_binding(&mut self, binding: Option<Fingerprint>) {
        self.binding = binding;
    }

    /// Returns when the session expires: the earlier of `last_seen + idle`
    /// and the absolute deadline.
    pub fn expires_at(&self) -> Option<OffsetDateTime> {
        let idle = self.idle_timeout.map(|idle| self.last_seen + idle);
        match (idle, self.absolute_deadline) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Returns true when the session has expired at `now`.
    pub fn is_expired(&self, now: OffsetDateTime) -> bool {
        self.expires_at().is_some_and(|deadline| now >= deadline)
    }

    /// Returns true when a sliding refresh is due: an idle timeout applies,
    /// at least `interval` has passed since the server last recorded
    /// activity, and moving `last_seen` would still extend the session
    /// (it is not already capped by the absolute deadline).
    pub fn refresh_due(&self, now: OffsetDateTime, interval: Duration) -> bool {
        let Some(idle) = self.idle_timeout else {
            return false;
        };
        if now - self.last_seen < interval {
            return false;
        }
        match self.absolute_deadline {
            Some(absolute) => self.last_seen + idle < absolute,
            None => true,
        }
    }

    /// Records activity at `now`, sliding the idle deadline.
    pub fn mark_seen(&mut self, now: OffsetDateTime) {
        self.last_seen = now;
    }

    /// Applies a per-session expiry chosen by a handler.
    pub fn set_expiry(
        &mut self,
        expiry: SessionExpiry,
        now: OffsetDateTime,
        config_idle: Option<Duration>,
        config_absolute: Option<Duration>,
        config_persistent: bool,
    ) {
        match expiry {
            SessionExpiry::Configured => {
                self.idle_timeout = config_idle;
                self.absolute_deadline = config_absolute.map(|lifetime| self.created_at + lifetime);
                self.persistent = config_persistent;
            }
            SessionExpiry::RememberFor(duration) => {
                self.idle_timeout = None;
                self.absolute_deadline = Some(now + duration);
                self.persistent = true;
            }
        }
    }

    /// Encodes the record for a store. The version of the result is
    /// `self.version() + 1`; call [`SessionRecord::committed`] once the store
    /// accepted it.
    ///
    /// # Errors
    ///
    /// [`CodecError`] when the data cannot be encoded or is over the cap.
    pub fn to_stored(&self, codec: &RecordCodec) -> Result<StoredSession, CodecError> {
        let payload = Payload {
            created_at_ms: unix_ms(self.created_at),
            last_seen_ms: unix_ms(self.last_seen),
            idle_timeout_ms: self
                .idle_timeout
                .map(|d| d.whole_milliseconds().clamp(0, u64::MAX as i128) as u64),
            absolute_deadline_ms: self.absolute_deadline.map(unix_ms),
            persistent: self.persistent,
            binding: self.binding.clone(),
            flash: self.flash.clone(),
            data: &self.data,
            id_issued_at_ms: unix_ms(self.id_issued_at),
        };
        Ok(StoredSession {
            id: self.id.clone(),
            version: self.version + 1,
            expires_at: self.expires_at(),
            identity: self.data.identity(),
            payload: Bytes::from(codec.encode(&payload)?),
        })
    }

    /// Marks the record as written at `version`.
    pub fn committed(&mut self, version: u64) {
        self.version = version;
    }

    /// Decodes a record read from a store.
    ///
    /// `stored.expires_at` is authoritative for `last_seen`, because a store
    /// `touch` moves the expiry without rewriting the payload.
    ///
    /// # Errors
    ///
    /// [`CodecError`] for bytes that are not a record of this type.
    pub fn from_stored(stored: StoredSession, codec: &RecordCodec) -> Result<Self, CodecError>
    where
        T: DeserializeOwned,
    {
        let payload: Payload<T> = match schema_version(&stored.payload)? {
            1 => codec.decode::<PayloadV1<T>>(&stored.payload)?.into(),
            _ => codec.decode(&stored.payload)?,
        };
        let idle_timeout = payload
            .idle_timeout_ms
            .map(|ms| Duration::milliseconds(ms.min(i64::MAX as u64) as i64));
        let mut last_seen = from_unix_ms(payload.last_seen_ms)?;

        // A touch moved the idle deadline: recover last_seen from it, unless
        // the deadline is the absolute one.
        if let (Some(idle), Some(expires_at)) = (idle_timeout, stored.expires_at) {
            let absolute = payload.absolute_deadline_ms.map(from_unix_ms).transpose()?;
            if absolute != Some(expires_at) && expires_at - idle > last_seen {
                last_seen = expires_at - idle;
            }
        }

        Ok(Self {
            id: stored.id,
            data: payload.data,
            flash: payload.flash,
            created_at: from_unix_ms(payload.created_at_ms)?,
            last_seen,
            idle_timeout,
            absolute_deadline: payload.absolute_deadline_ms.map(from_unix_ms).transpose()?,
            persistent: payload.persistent,
            binding: payload.binding,
            id_issued_at: from_unix_ms(payload.id_issued_at_ms)?,
            version: stored.version,
        })
    }
}

/// Returns the stored form that replaces `old_id`, stored at `old_version`,
/// after a renewal moved its session to `new_id`: it points requests that
/// still carry the old id to the new one until `until`, then expires. It
/// belongs to no identity, so per-user listings never show it.
pub fn renewal_marker(
    old_id: &SessionId,
    old_version: u64,
    new_id: &SessionId,
    until: OffsetDateTime,
) -> StoredSession {
    let mut payload = Vec::with_capacity(RENEWAL_MARKER_MAGIC.len() + new_id.as_bytes().len());
    payload.extend_from_slice(&RENEWAL_MARKER_MAGIC);
    payload.extend_from_slice(new_id.as_bytes());
    StoredSession {
        id: old_id.clone(),
        version: old_version + 1,
        expires_at: Some(until),
        identity: None,
        payload: Bytes::from(payload),
    }
}

/// Returns the new id when `stored` is a renewal marker (see
/// [`renewal_marker`]), `None` for anything else.
pub fn renewed_to(stored: &StoredSession) -> Option<SessionId> {
    let rest = stored.payload.strip_prefix(&RENEWAL_MARKER_MAGIC)?;
    let bytes: [u8; 32] = rest.try_into().ok()?;
    Some(SessionId::from_bytes(bytes))
}

fn unix_ms(at: OffsetDateTime) -> i64 {
    (at.unix_timestamp_nanos() / 1_000_000) as i64
}

fn from_unix_ms(ms: i64) -> Result<OffsetDateTime, CodecError> {
    OffsetDateTime::from_unix_timestamp_nanos(ms as i128 * 1_000_000)
        .map_err(|_| CodecError::Deserialize(format!("timestamp {ms} ms is out of range")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
    struct Data {
        user: Option<String>,
    }

    impl SessionData for Data {
        fn identity(&self) -> Option<String> {
            self.user.clone()
        }
    }

    const T0: OffsetDateTime = datetime!(2030-01-01 0:00 UTC);

    fn record(idle: Option<i64>, absolute: Option<i64>) -> SessionRecord<Data> {
        SessionRecord::new(
            SessionId::random(),
            Data::default(),
            T0,
            idle.map(Duration::minutes),
            absolute.map(Duration::minutes),
            false,
        )
    }

    #[test]
    fn expiry_is_the_earlier_of_idle_and_absolute() {
        assert_eq!(
            record(Some(30), Some(60)).expires_at(),
            Some(T0 + Duration::minutes(30))
        );
        assert_eq!(
            record(Some(90), Some(60)).expires_at(),
            Some(T0 + Duration::minutes(60))
        );
        assert_eq!(
            record(None, Some(60)).expires_at(),
            Some(T0 + Duration::minutes(60))
        );
        assert_eq!(record(None, None).expires_at(), None);
    }

    #[test]
    fn expiry_boundary_is_exclusive_of_the_deadline() {
        let r = record(Some(30), None);
        assert!(!r.is_expired(T0 + Duration::minutes(30) - Duration::milliseconds(1)));
        assert!(r.is_expired(T0 + Duration::minutes(30)));
    }

    #[test]
    fn activity_never_extends_the_absolute_deadline() {
        let mut r = record(Some(30), Some(60));
        r.mark_seen(T0 + Duration::minutes(50));
        assert_eq!(r.expires_at(), Some(T0 + Duration::minutes(60)));
    }

    #[test]
    fn refresh_is_due_only_after_the_interval() {
        let r = record(Some(30), None);
        assert!(!r.refresh_due(T0 + Duration::minutes(4), Duration::minutes(5)));
        assert!(r.refresh_due(T0 + Duration::minutes(5), Duration::minutes(5)));
        assert!(
            !record(None, Some(60)).refresh_due(T0 + Duration::minutes(50), Duration::minutes(5))
        );
    }

    #[test]
    fn refresh_is_not_due_once_capped_by_the_absolute_deadline() {
        let mut r = record(Some(30), Some(60));
        r.mark_seen(T0 + Duration::minutes(40));
        assert!(!r.refresh_due(T0 + Duration::minutes(50), Duration::minutes(5)));
    }

    #[test]
    fn remember_me_sets_a_fixed_persistent_deadline() {
        let mut r = record(Some(30), Some(60));
        r.set_expiry(
            SessionExpiry::RememberFor(Duration::days(60)),
            T0,
            None,
            None,
            false,
        );
        assert!(r.is_persistent());
        assert_eq!(r.expires_at(), Some(T0 + Duration::days(60)));
        assert!(!r.is_expired(T0 + Duration::minutes(31)));
    }

    #[test]
    fn stored_round_trip_keeps_every_field() {
        let codec = RecordCodec::default();
        let mut r = record(Some(30), Some(60));
        r.data.user = Some("alice".into());
        r.flash.push(FlashMessage {
            key: "notice".into(),
            message: "hi".into(),
        });
        let stored = r.to_stored(&codec).unwrap();
        assert_eq!(stored.version, 1);
        assert_eq!(stored.identity.as_deref(), Some("alice"));
        assert_eq!(stored.expires_at, Some(T0 + Duration::minutes(30)));

        let mut back = SessionRecord::<Data>::from_stored(stored, &codec).unwrap();
        r.committed(1);
        back.committed(1);
        assert_eq!(back, r);
    }

    #[test]
    fn layout_1_records_still_decode() {
        #[derive(Serialize)]
        struct Layout1<'a> {
            created_at_ms: i64,
            last_seen_ms: i64,
            idle_timeout_ms: Option<u64>,
            absolute_deadline_ms: Option<i64>,
            persistent: bool,
            binding: Option<Fingerprint>,
            flash: Vec<FlashMessage>,
            data: &'a Data,
        }
        let data = Data {
            user: Some("ada".to_owned()),
        };
        let created = unix_ms(T0);
        let old = Layout1 {
            created_at_ms: created,
            last_seen_ms: created,
            idle_timeout_ms: Some(60_000),
            absolute_deadline_ms: None,
            persistent: false,
            binding: None,
            flash: Vec::new(),
            data: &data,
        };
        let mut payload = vec![b'S', b'R', 1, 0];
        payload.extend(postcard::to_stdvec(&old).unwrap());
        let stored = StoredSession {
            id: SessionId::random(),
            version: 4,
            expires_at: Some(T0 + Duration::minutes(1)),
            identity: Some("ada".to_owned()),
            payload: Bytes::from(payload),
        };

        let record = SessionRecord::<Data>::from_stored(stored, &RecordCodec::default()).unwrap();
        assert_eq!(record.data, data);
        assert_eq!(record.created_at(), T0);
        assert_eq!(record.id_issued_at(), T0, "taken from created_at");
        assert_eq!(record.version(), 4);
    }

    #[test]
    fn renewal_is_due_after_the_interval_since_issue() {
        let mut record = record(Some(60), None);
        assert!(!record.renewal_due(T0 + Duration::minutes(9), Duration::minutes(10)));
        assert!(record.renewal_due(T0 + Duration::minutes(10), Duration::minutes(10)));

        record.renew_id(SessionId::random(), T0 + Duration::minutes(10));
        assert!(!record.renewal_due(T0 + Duration::minutes(19), Duration::minutes(10)));
        assert_eq!(record.version(), 0);
    }

    #[test]
    fn renewal_marker_points_to_the_new_id_only() {
        let record = record(Some(60), None);
        let new_id = SessionId::random();
        let until = T0 + Duration::seconds(30);
        let marker = renewal_marker(record.id(), record.version(), &new_id, until);
        assert_eq!(marker.id, *record.id());
        assert_eq!(marker.version, record.version() + 1);
        assert_eq!(marker.expires_at, Some(until));
        assert_eq!(marker.identity, None);
        assert_eq!(renewed_to(&marker), Some(new_id));
        assert!(
            SessionRecord::<Data>::from_stored(marker, &RecordCodec::default()).is_err(),
            "a marker never decodes as a record"
        );

        let stored = record.to_stored(&RecordCodec::default()).unwrap();
        assert_eq!(renewed_to(&stored), None);
    }

    #[test]
    fn touched_expiry_moves_last_seen() {
        let codec = RecordCodec::default();
        let r = record(Some(30), None);
        let mut stored = r.to_stored(&codec).unwrap();
        stored.expires_at = Some(T0 + Duration::minutes(40));
        let back = SessionRecord::<Data>::from_stored(stored, &codec).unwrap();
        assert_eq!(back.last_seen(), T0 + Duration::minutes(10));
    }
}
