-- KEYS: g, b. ARGV: now, ttl, outcome count, outcomes.
-- Answer: {'ok'}; {'notfound'} when the record is finished or missing, or a branch record
-- is missing (then nothing is written).
if not unfinished(redis.call('HGET', KEYS[1], 'status')) then return {'notfound'} end
if not set_outcomes(KEYS[2], 4, tonumber(ARGV[3]), ARGV[1]) then return {'notfound'} end
expire(ARGV[2], KEYS[1], KEYS[2])
return {'ok'}
