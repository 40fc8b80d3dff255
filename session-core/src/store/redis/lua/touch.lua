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

local ABSENT_TIME = string.rep('-', 20)
local ABSENT_DIGEST = string.rep('-', 64)

local head = redis.call('GETRANGE', KEYS[1], 0, 132)
if head == '' then
  -- An empty string under the key is not a session either.
  if redis.call('EXISTS', KEYS[1]) == 1 then
    return {'malformed', '', 0}
  end
  return {'missing', '', 0}
end
if #head ~= 133 or string.sub(head, 1, 2) ~= 's1' then
  return {'malformed', '', 0}
end

local now = tonumber(ARGV[2])
local expires = string.sub(head, 24, 43)
if expires ~= ABSENT_TIME and tonumber(expires) <= now then
  return {'missing', '', 0}
end
if string.sub(head, 4, 23) ~= ARGV[1] then
  return {'conflict', '', 0}
end

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
