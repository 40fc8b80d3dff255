//! The Lua scripts of the Redis store. Each one touches a single key, so it
//! runs unchanged on Redis Cluster. They need Redis 7.0 or later
//! (`PEXPIREAT ... GT`).

use std::sync::LazyLock;

use deadpool_redis::redis::Script;

/// Compare-and-set write of a session value.
pub(super) static SAVE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(concat!(
        include_str!("lua/check_version.lua"),
        include_str!("lua/save.lua")
    ))
});

/// Compare-and-set change of a session's expiry.
pub(super) static TOUCH: LazyLock<Script> = LazyLock::new(|| {
    Script::new(concat!(
        include_str!("lua/check_version.lua"),
        include_str!("lua/touch.lua")
    ))
});

/// Deletion that returns the identity digest of the deleted value.
pub(super) static DELETE: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("lua/delete.lua")));

/// Source of the identity index upkeep script. Pipelines send it with
/// `EVAL`, because a pipeline cannot fall back from `EVALSHA` when the
/// server lost its script cache.
pub(super) const INDEX_ADD_SOURCE: &str = include_str!("lua/index_add.lua");

/// Identity index upkeep: add a member and extend the TTL.
pub(super) static INDEX_ADD: LazyLock<Script> = LazyLock::new(|| Script::new(INDEX_ADD_SOURCE));
