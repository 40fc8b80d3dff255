-- Compare-and-set write of a session value.
--
-- KEYS[1]  session key
-- ARGV[1]  expected version, 20 zero-padded digits as in the header
-- ARGV[2]  now, Unix ms, from the application's clock
-- ARGV[3]  new value: header and body
-- ARGV[4]  new expiry, Unix ms, or '' for a session without deadline
--
-- Returns {status, previous identity digest, index upkeep}. The status is
-- 'saved', 'conflict', 'missing' (deleted or expired) or 'malformed'. Index
-- upkeep is 1 when the caller must update the identity index, because the
-- identity changed or the new expiry outlives the index entry.

-- The shared version check (check_version.lua) runs first, and leaves
-- `head` and `now` set.

local old_digest = string.sub(head, 50, 113)
local new_digest = string.sub(ARGV[3], 50, 113)

if ARGV[4] == '' then
  redis.call('SET', KEYS[1], ARGV[3])
elseif tonumber(ARGV[4]) <= now then
  -- Expired on arrival: the session ends here. A stale index member is
  -- dropped by the next listing.
  redis.call('DEL', KEYS[1])
  return {'saved', old_digest, 0}
else
  redis.call('SET', KEYS[1], ARGV[3], 'PXAT', ARGV[4])
end

if old_digest ~= new_digest then
  return {'saved', old_digest, 1}
end
if new_digest == ABSENT_DIGEST then
  return {'saved', old_digest, 0}
end

-- Same identity: keep the recorded index deadline while it covers the new
-- expiry. A '-' deadline means the index entry has no TTL.
local index_until = string.sub(head, 114, 133)
local covered
if index_until == ABSENT_TIME then
  covered = true
elseif ARGV[4] == '' then
  covered = false
else
  covered = tonumber(index_until) >= tonumber(ARGV[4])
end
if covered then
  redis.call('SETRANGE', KEYS[1], 113, index_until)
  return {'saved', old_digest, 0}
end
return {'saved', old_digest, 1}
