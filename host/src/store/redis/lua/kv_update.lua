-- KEYS: entry. ARGV: value, expected version, now.
-- Answer: {'ok'}, or {'notfound'} unless the entry exists with the expected version.
local v = redis.call('HGET', KEYS[1], 'version')
if not v or tonumber(v) ~= tonumber(ARGV[2]) then return {'notfound'} end
redis.call('HSET', KEYS[1], 'v', ARGV[1], 'update_time', ARGV[3])
redis.call('HINCRBY', KEYS[1], 'version', 1)
return {'ok'}
