-- Compare-and-set change of a session's expiry, without rewriting its body.
--
-- KEYS[1]  session key
-- ARGV[1]  expected version, 20 zero-padded digits as in the header
-- ARGV[2]  now, Unix ms, from the application's clock
-- ARGV[3]  new expiry header fields: 20 digits of Unix ms and 6 of
--          nanoseconds, or dashes for none
-- ARGV[4]  new expiry, Unix ms, or '' for none
-- ARGV[5]  index deadline header field to record when the index entry must
--          be extended
--
-- Returns {status, identity digest, index upkeep}, as the save script does.

-- The shared version check (check_version.lua) runs first, and leaves
-- `head` and `now` set.

local digest = string.sub(head, 50, 113)
if ARGV[4] ~= '' and tonumber(ARGV[4]) <= now then
  redis.call('DEL', KEYS[1])
  return {'saved', digest, 0}
end

redis.call('SETRANGE', KEYS[1], 23, ARGV[3])
if ARGV[4] == '' then
  redis.call('PERSIST', KEYS[1])
else
  redis.call('PEXPIREAT', KEYS[1], ARGV[4])
end

if digest == ABSENT_DIGEST then
  return {'saved', digest, 0}
end
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
  return {'saved', digest, 0}
end
redis.call('SETRANGE', KEYS[1], 113, ARGV[5])
return {'saved', digest, 1}
