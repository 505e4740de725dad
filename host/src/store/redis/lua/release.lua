-- KEYS: g. ARGV: owner, now.
-- Answer: 1 when the record had that owner (now cleared), else 0.
if redis.call('HGET', KEYS[1], 'owner') ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'owner', '', 'update_time', ARGV[2])
return 1
