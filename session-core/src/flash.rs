//! Flash messages with Rails semantics, stored inside the session record.
//!
//! - [`FlashState::set`] queues a message for the next request that loads
//!   the session.
//! - [`FlashState::now`] shows a message in this request only.
//! - Reading never consumes. Messages shown in a request are dropped after it
//!   unless [`FlashState::keep`] or [`FlashState::keep_all`] is called.
//! - [`FlashState::discard`] and [`FlashState::discard_all`] drop messages at
//!   once, whether they were shown, queued or set with `now`.

use serde::{Deserialize, Serialize};

/// A flash message: a key (usually a [`FlashLevel`]) and its text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlashMessage {
    /// The key, such as `notice` or `error`.
    pub key: String,
    /// The message text.
    pub message: String,
}

/// The conventional flash keys, as shortcuts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum FlashLevel {
    /// `notice`: a neutral confirmation.
    Notice,
    /// `alert`: something needs attention.
    Alert,
    /// `error`: an action failed.
    Error,
    /// `success`: an action succeeded.
    Success,
    /// `warning`: an action succeeded with a caveat.
    Warning,
    /// `info`: background information.
    Info,
}

impl FlashLevel {
    /// Returns the key string of the level.
    pub fn as_str(self) -> &'static str {
        match self {
            FlashLevel::Notice => "notice",
            FlashLevel::Alert => "alert",
            FlashLevel::Error => "error",
            FlashLevel::Success => "success",
            FlashLevel::Warning => "warning",
            FlashLevel::Info => "info",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lifetime {
    /// Loaded from the previous request: visible now, dropped after unless kept.
    Shown { keep: bool },
    /// Set with `now`: visible now, dropped after unless kept.
    Now { keep: bool },
    /// Set with `set`: visible on the next request.
    Next,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    message: FlashMessage,
    lifetime: Lifetime,
}

/// The flash of one request: what it shows and what it passes on.
///
/// Created from the messages stored in the record when the session loads,
/// and turned back into the messages to store by [`FlashState::into_pending`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FlashState {
    entries: Vec<Entry>,
    loaded: Vec<FlashMessage>,
}

impl FlashState {
    /// Starts a request's flash from the messages stored by earlier requests.
    pub fn from_pending(pending: Vec<FlashMessage>) -> Self {
        let entries = pending
            .iter()
            .cloned()
            .map(|message| Entry {
                message,
                lifetime: Lifetime::Shown { keep: false },
            })
            .collect();
        Self {
            entries,
            loaded: pending,
        }
    }

    /// Returns the messages visible in this request, in the order they were
    /// set. Reading does not consume them.
    pub fn messages(&self) -> impl Iterator<Item = &FlashMessage> {
        self.entries
            .iter()
            .filter(|entry| !matches!(entry.lifetime, Lifetime::Next))
            .map(|entry| &entry.message)
    }

    /// Returns the visible message with this key.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.messages()
            .find(|message| message.key == key)
            .map(|message| message.message.as_str())
    }

    /// Queues `message` under `key` for the next request, replacing a message
    /// queued under the same key.
    pub fn set(&mut self, key: impl Into<String>, message: impl Into<String>) {
        self.insert(key.into(), message.into(), Lifetime::Next);
    }

    /// Shows `message` under `key` in this request only.
    pub fn now(&mut self, key: impl Into<String>, message: impl Into<String>) {
        self.insert(key.into(), message.into(), Lifetime::Now { keep: false });
    }

    /// Queues a message of a conventional level for the next request.
    pub fn set_level(&mut self, level: FlashLevel, message: impl Into<String>) {
        self.set(level.as_str(), message);
    }

    /// Keeps the visible message with this key for the next request too.
    pub fn keep(&mut self, key: &str) {
        for entry in self
            .entries
            .iter_mut()
            .filter(|entry| entry.message.key == key)
        {
            mark_kept(entry);
        }
    }

    /// Keeps every visible message for the next request too.
    pub fn keep_all(&mut self) {
        self.entries.iter_mut().for_each(mark_kept);
    }

    /// Drops every message with this key now: visible and queued alike.
    pub fn discard(&mut self, key: &str) {
        self.entries.retain(|entry| entry.message.key != key);
    }

    /// Drops every message now.
    pub fn discard_all(&mut self) {
        self.entries.clear();
    }

    /// Returns true when the messages to store differ from those loaded,
    /// so the record must be written back.
    pub fn is_modified(&self) -> bool {
        let mut pending = self.pending();
        let same = pending.by_ref().eq(self.loaded.iter());
        !same
    }

    /// Returns the messages to store for the next request.
    pub fn into_pending(self) -> Vec<FlashMessage> {
        self.pending().cloned().collect()
    }

    fn pending(&self) -> impl Iterator<Item = &FlashMessage> {
        self.entries
            .iter()
            .filter(|entry| match entry.lifetime {
                Lifetime::Next => true,
                Lifetime::Shown { keep } | Lifetime::Now { keep } => keep,
            })
            .map(|entry| &entry.message)
    }

    fn insert(&mut self, key: String, message: String, lifetime: Lifetime) {
        let same_slot = |entry: &Entry| {
            entry.message.key == key
                && matches!(
                    (entry.lifetime, lifetime),
                    (Lifetime::Next, Lifetime::Next)
                        | (Lifetime::Now { .. }, Lifetime::Now { .. })
                        | (Lifetime::Shown { .. }, Lifetime::Now { .. })
                )
        };
        self.entries.retain(|entry| !same_slot(entry));
        self.entries.push(Entry {
            message: FlashMessage { key, message },
            lifetime,
        });
    }
}

fn mark_kept(entry: &mut Entry) {
    match &mut entry.lifetime {
        Lifetime::Shown { keep } | Lifetime::Now { keep } => *keep = true,
        Lifetime::Next => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(key: &str, text: &str) -> FlashMessage {
        FlashMessage {
            key: key.into(),
            message: text.into(),
        }
    }

    /// Simulates the store between requests.
    fn next_request(flash: FlashState) -> FlashState {
        FlashState::from_pending(flash.into_pending())
    }

    #[test]
    fn set_is_shown_on_the_next_request_only() {
        let mut first = FlashState::default();
        first.set("notice", "Saved");
        assert_eq!(first.get("notice"), None);
        assert!(first.is_modified());

        let second = next_request(first);
        assert_eq!(second.get("notice"), Some("Saved"));
        assert_eq!(
            second.get("notice"),
            Some("Saved"),
            "reading twice does not consume"
        );
        assert!(
            second.is_modified(),
            "showing a message changes what is stored"
        );

        let third = next_request(second);
        assert_eq!(third.messages().count(), 0);
        assert!(!third.is_modified());
    }

    #[test]
    fn now_is_shown_in_this_request_only() {
        let mut first = FlashState::default();
        first.now("alert", "Look");
        assert_eq!(first.get("alert"), Some("Look"));
        assert!(!first.is_modified());
        assert_eq!(next_request(first).messages().count(), 0);
    }

    #[test]
    fn keep_carries_one_message_over() {
        let mut first = FlashState::default();
        first.set("notice", "A");
        first.set("error", "B");
        let mut second = next_request(first);
        second.keep("notice");
        let third = next_request(second);
        assert_eq!(
            third.messages().cloned().collect::<Vec<_>>(),
            vec![msg("notice", "A")]
        );
    }

    #[test]
    fn keep_all_carries_everything_over_including_now() {
        let mut first = FlashState::default();
        first.set("notice", "A");
        let mut second = next_request(first);
        second.now("info", "B");
        second.keep_all();
        let third = next_request(second);
        assert_eq!(
            third.messages().cloned().collect::<Vec<_>>(),
            vec![msg("notice", "A"), msg("info", "B")]
        );
    }

    #[test]
    fn discard_drops_shown_and_queued_messages_now() {
        let mut first = FlashState::default();
        first.set("notice", "A");
        let mut second = next_request(first);
        second.set("notice", "queued");
        second.discard("notice");
        assert_eq!(second.get("notice"), None);
        assert_eq!(next_request(second).messages().count(), 0);

        let mut other = FlashState::default();
        other.set("a", "1");
        other.now("b", "2");
        other.discard_all();
        assert_eq!(other.messages().count(), 0);
        assert!(!other.is_modified());
    }

    #[test]
    fn set_replaces_a_queued_message_with_the_same_key() {
        let mut flash = FlashState::default();
        flash.set_level(FlashLevel::Error, "first");
        flash.set_level(FlashLevel::Error, "second");
        assert_eq!(flash.into_pending(), vec![msg("error", "second")]);
    }

    #[test]
    fn level_keys_are_the_conventional_names() {
        let names: Vec<_> = [
            FlashLevel::Notice,
            FlashLevel::Alert,
            FlashLevel::Error,
            FlashLevel::Success,
            FlashLevel::Warning,
            FlashLevel::Info,
        ]
        .iter()
        .map(|level| level.as_str())
        .collect();
        assert_eq!(
            names,
            ["notice", "alert", "error", "success", "warning", "info"]
        );
    }
}
