-- Adds a session id to an identity index and makes the index live at least
-- until the given deadline.
--
-- KEYS[1]  identity index key
-- ARGV[1]  session id
-- ARGV[2]  deadline, Unix ms, or '' when the session has no deadline
--
-- An index without TTL stays without TTL, because it contains a session
-- without deadline. A TTL is only ever extended (PEXPIREAT GT), because other
-- sessions of the same identity may need the later one.

local existed = redis.call('EXISTS', KEYS[1])
redis.call('SADD', KEYS[1], ARGV[1])
if ARGV[2] == '' then
  redis.call('PERSIST', KEYS[1])
elseif existed == 0 then
  redis.call('PEXPIREAT', KEYS[1], ARGV[2])
else
  redis.call('PEXPIREAT', KEYS[1], ARGV[2], 'GT')
end
return 1
