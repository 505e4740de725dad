-- KEYS: entry, category order. ARGV: key, value, now, id.
-- Answer: {'ok'}, or {'conflict'} when the entry exists.
if redis.call('EXISTS', KEYS[1]) == 1 then return {'conflict'} end
redis.call('HSET', KEYS[1], 'id', ARGV[4], 'v', ARGV[2], 'version', '1', 'create_time', ARGV[3],
  'update_time', ARGV[3])
redis.call('ZADD', KEYS[2], ARGV[4], ARGV[1])
return {'ok'}
