//! The invalidation message that the nodes of a clustered store exchange
//! over Redis pub/sub.
//!
//! A message is one line of ASCII text, five fields separated by single
//! spaces:
//!
//! ```text
//! v1 <kind> <version> <node id> <session id>
//! ```
//!
//! - `v1` is the format tag. A message with another tag is ignored, so every
//!   node on a channel must run the same format.
//! - `<kind>` is `save`, `delete` or `touch`.
//! - `<version>` is a decimal `u64`: the session's new version for `save`,
//!   the version whose deadline moved for `touch`, and for `delete` the last
//!   version the publishing node had cached, or 0. Receivers ignore it for
//!   `delete`, because a deleted id is never cached again.
//! - `<node id>` names the publishing node (see [`validate_node_id`]).
//! - `<session id>` is the 43-character base64url session id. The message
//!   travels only between the nodes and Redis, and it is never logged.
//!
//! Anything else, such as an extra space, a sign or leading `+` on the
//! version, or an id that does not decode, makes the whole message invalid.

use std::fmt;

use crate::SessionId;

/// The format tag of the messages this version writes and reads.
const FORMAT_TAG: &str = "v1";

/// The maximum length of a node id, in bytes.
pub(super) const MAX_NODE_ID_LEN: usize = 64;

/// The change made to the session that a message names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ChangeKind {
    /// The session was rewritten; its new version is in the message.
    Save,
    /// The session was deleted.
    Delete,
    /// The session's deadline moved earlier without a new version.
    Touch,
}

impl ChangeKind {
    fn as_str(self) -> &'static str {
        match self {
            ChangeKind::Save => "save",
            ChangeKind::Delete => "delete",
            ChangeKind::Touch => "touch",
        }
    }

    fn parse(text: &str) -> Option<Self> {
        match text {
            "save" => Some(ChangeKind::Save),
            "delete" => Some(ChangeKind::Delete),
            "touch" => Some(ChangeKind::Touch),
            _ => None,
        }
    }
}

/// One decoded invalidation message.
#[derive(PartialEq, Eq)]
pub(super) struct Invalidation<'a> {
    pub(super) kind: ChangeKind,
    pub(super) version: u64,
    pub(super) node_id: &'a str,
    pub(super) id: SessionId,
}

impl fmt::Debug for Invalidation<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Invalidation")
            .field("kind", &self.kind)
            .field("version", &self.version)
            .field("node_id", &self.node_id)
            .finish_non_exhaustive()
    }
}

/// The reason a message was ignored. Carries no part of the message, which
/// may contain a session id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum InvalidMessage {
    NotText,
    FieldCount,
    UnknownFormat,
    UnknownKind,
    Version,
    NodeId,
    SessionId,
}

impl InvalidMessage {
    pub(super) fn as_str(self) -> &'static str {
        match self {
            InvalidMessage::NotText => "not ASCII text",
            InvalidMessage::FieldCount => "not five space-separated fields",
            InvalidMessage::UnknownFormat => "unknown format tag",
            InvalidMessage::UnknownKind => "unknown change kind",
            InvalidMessage::Version => "version is not a decimal u64",
            InvalidMessage::NodeId => "invalid node id",
            InvalidMessage::SessionId => "invalid session id",
        }
    }
}

impl Invalidation<'_> {
    /// Returns the lowest version a node may still cache for this id after
    /// applying the message. `u64::MAX` for a delete, which no real version
    /// reaches, so the id is not cached again.
    pub(super) fn floor(&self) -> u64 {
        match self.kind {
            ChangeKind::Save => self.version,
            // The cached copy of this version has a deadline that is now too
            // late, so this version is not cached again either.
            ChangeKind::Touch => self.version.saturating_add(1),
            ChangeKind::Delete => u64::MAX,
        }
    }
}

/// Encodes a message.
pub(super) fn encode(kind: ChangeKind, version: u64, node_id: &str, id: &SessionId) -> String {
    format!(
        "{FORMAT_TAG} {} {version} {node_id} {}",
        kind.as_str(),
        id.encode()
    )
}

/// Decodes a message, rejecting anything that is not exactly the format
/// [`encode`] writes.
pub(super) fn parse(payload: &[u8]) -> Result<Invalidation<'_>, InvalidMessage> {
    let text = std::str::from_utf8(payload)
        .ok()
        .filter(|text| text.is_ascii())
        .ok_or(InvalidMessage::NotText)?;

    let mut fields = text.split(' ');
    let (Some(tag), Some(kind), Some(version), Some(node_id), Some(id), None) = (
        fields.next(),
        fields.next(),
        fields.next(),
        fields.next(),
        fields.next(),
        fields.next(),
    ) else {
        return Err(InvalidMessage::FieldCount);
    };

    if tag != FORMAT_TAG {
        return Err(InvalidMessage::UnknownFormat);
    }
    let kind = ChangeKind::parse(kind).ok_or(InvalidMessage::UnknownKind)?;
    let version = parse_version(version).ok_or(InvalidMessage::Version)?;
    validate_node_id(node_id).map_err(|_| InvalidMessage::NodeId)?;
    let id = SessionId::parse(id).ok_or(InvalidMessage::SessionId)?;
    Ok(Invalidation {
        kind,
        version,
        node_id,
        id,
    })
}

/// Parses plain decimal digits; `u64::from_str` would also take a `+` sign.
fn parse_version(text: &str) -> Option<u64> {
    if text.is_empty() || !text.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// Checks a node id: 1 to 64 bytes of ASCII letters, digits, `-`, `_`, `.`
/// and `:`, so that it never splits a message field.
///
/// # Errors
///
/// The rule the id breaks.
pub(super) fn validate_node_id(node_id: &str) -> Result<(), &'static str> {
    if node_id.is_empty() || node_id.len() > MAX_NODE_ID_LEN {
        return Err("it must be 1 to 64 bytes long");
    }
    let allowed =
        |byte: u8| byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b':');
    if !node_id.bytes().all(allowed) {
        return Err("it may contain only ASCII letters, digits, `-`, `_`, `.` and `:`");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoded_messages_parse_back() {
        let id = SessionId::random();
        for kind in [ChangeKind::Save, ChangeKind::Delete, ChangeKind::Touch] {
            let text = encode(kind, 42, "node-a:1", &id);
            let parsed = parse(text.as_bytes()).expect("an encoded message parses");
            assert_eq!(parsed.kind, kind);
            assert_eq!(parsed.version, 42);
            assert_eq!(parsed.node_id, "node-a:1");
            assert_eq!(parsed.id, id);
        }
    }

    #[test]
    fn message_layout_is_fixed() {
        let id = SessionId::from_bytes([0; 32]);
        assert_eq!(
            encode(ChangeKind::Save, 7, "n1", &id),
            format!("v1 save 7 n1 {}", "A".repeat(43))
        );
    }

    #[test]
    fn floors_follow_the_change_kind() {
        let id = SessionId::random();
        let floor = |kind| parse(encode(kind, 9, "n", &id).as_bytes()).unwrap().floor();
        assert_eq!(floor(ChangeKind::Save), 9);
        assert_eq!(floor(ChangeKind::Touch), 10);
        assert_eq!(floor(ChangeKind::Delete), u64::MAX);
    }

    #[test]
    fn malformed_messages_are_rejected() {
        let id = SessionId::random().encode();
        let cases: Vec<(Vec<u8>, InvalidMessage)> = vec![
            (b"\xff\xfe".to_vec(), InvalidMessage::NotText),
            ("v1 save 1 n \u{e9}".into(), InvalidMessage::NotText),
            (b"".to_vec(), InvalidMessage::FieldCount),
            (
                format!("v1 save 1 n {id} extra").into(),
                InvalidMessage::FieldCount,
            ),
            (
                format!("v1  save 1 n {id}").into(),
                InvalidMessage::FieldCount,
            ),
            ("v1 save 1 n".into(), InvalidMessage::FieldCount),
            (
                format!("v2 save 1 n {id}").into(),
                InvalidMessage::UnknownFormat,
            ),
            (
                format!("v1 SAVE 1 n {id}").into(),
                InvalidMessage::UnknownKind,
            ),
            (format!("v1 save +1 n {id}").into(), InvalidMessage::Version),
            (format!("v1 save -1 n {id}").into(), InvalidMessage::Version),
            (
                format!("v1 save 18446744073709551616 n {id}").into(),
                InvalidMessage::Version,
            ),
            (format!("v1 save 1 n/x {id}").into(), InvalidMessage::NodeId),
            (
                format!("v1 save 1 {} {id}", "n".repeat(65)).into(),
                InvalidMessage::NodeId,
            ),
            (
                format!("v1 save 1 n {}", &id[..42]).into(),
                InvalidMessage::SessionId,
            ),
            (
                format!("v1 save 1 n {id}=").into(),
                InvalidMessage::SessionId,
            ),
        ];
        for (payload, expected) in cases {
            assert_eq!(
                parse(&payload).map(|_| ()),
                Err(expected),
                "{:?}",
                String::from_utf8_lossy(&payload)
            );
        }
    }

    #[test]
    fn node_ids_are_checked() {
        assert!(validate_node_id("web-1.eu:8080_a").is_ok());
        assert!(validate_node_id(&"n".repeat(64)).is_ok());
        assert!(validate_node_id("").is_err());
        assert!(validate_node_id(&"n".repeat(65)).is_err());
        assert!(validate_node_id("web 1").is_err());
        assert!(validate_node_id("n\u{e9}").is_err());
    }
}
