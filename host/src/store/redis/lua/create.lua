-- KEYS: g, b. ARGV: ttl, field count F, F field/value entries, branch count, branches.
-- Answer: {'ok'}; {'conflict', create_time of the existing record} when the record exists;
-- {'conflict', ''} when one of the branch records is named twice or exists.
if redis.call('EXISTS', KEYS[1]) == 1 then
  return {'conflict', redis.call('HGET', KEYS[1], 'create_time') or ''}
end
local nf = tonumber(ARGV[2])
local nb = tonumber(ARGV[3 + nf])
if duplicate_branch(KEYS[2], 4 + nf, nb) then return {'conflict', ''} end
redis.call('HSET', KEYS[1], unpack(ARGV, 3, 2 + nf))
add_branches(KEYS[2], 0, 4 + nf, nb)
expire(ARGV[1], KEYS[1], KEYS[2])
return {'ok'}
