-- KEYS: entry, category order. ARGV: key.
-- Answer: {'ok'}, or {'notfound'} when the entry does not exist.
if redis.call('DEL', KEYS[1]) == 0 then return {'notfound'} end
redis.call('ZREM', KEYS[2], ARGV[1])
return {'ok'}
