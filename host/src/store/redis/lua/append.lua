-- KEYS: g, b. ARGV: expected status, ttl, branch count, branches.
-- Answer: {'ok'}; {'notfound'} unless the record has the expected status; {'conflict'} when
-- a branch record is named twice or exists.
if redis.call('HGET', KEYS[1], 'status') ~= ARGV[1] then return {'notfound'} end
local nb = tonumber(ARGV[3])
if duplicate_branch(KEYS[2], 4, nb) then return {'conflict'} end
add_branches(KEYS[2], tonumber(redis.call('HGET', KEYS[2], 'n') or '0'), 4, nb)
expire(ARGV[2], KEYS[1], KEYS[2])
return {'ok'}
