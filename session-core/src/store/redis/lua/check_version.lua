-- Shared start of the compare-and-set scripts: reads the header of the
-- session value and returns early unless it is a live session stored at
-- the expected version. Each script is this text followed by its own.
--
-- KEYS[1]  session key
-- ARGV[1]  expected version, 20 zero-padded digits as in the header
-- ARGV[2]  now, Unix ms, from the application's clock
--
-- Leaves `head` (the 133-byte header), `now` and the constants below set.

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
