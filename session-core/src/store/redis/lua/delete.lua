-- Deletes a session value and returns its identity digest, so that the
-- caller can remove it from the identity index.
--
-- KEYS[1]  session key
-- ARGV[1]  now, Unix ms, from the application's clock
--
-- Returns {status, identity digest}. The status is 'deleted', 'expired'
-- (deleted, but it had already expired), 'missing' or 'malformed' (left in
-- place).

local ABSENT_TIME = string.rep('-', 20)

local head = redis.call('GETRANGE', KEYS[1], 0, 132)
if head == '' then
  -- An empty string under the key is not a session either.
  if redis.call('EXISTS', KEYS[1]) == 1 then
    return {'malformed', ''}
  end
  return {'missing', ''}
end
if #head ~= 133 or string.sub(head, 1, 2) ~= 's1' then
  return {'malformed', ''}
end

redis.call('DEL', KEYS[1])
local digest = string.sub(head, 50, 113)
local expires = string.sub(head, 24, 43)
if expires ~= ABSENT_TIME and tonumber(expires) <= tonumber(ARGV[1]) then
  return {'expired', digest}
end
return {'deleted', digest}
