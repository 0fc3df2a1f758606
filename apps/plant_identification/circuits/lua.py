"""Redis scripts: each breaker operation as one atomic round trip, mirroring ``rules.py`` line for line.

KEYS[1] is the circuit hash, KEYS[2] the sorted set of half-open trial leases (member: lease id, score:
expiry). ARGV[1] is "now" in seconds, or empty to take it from the Redis server clock (``TIME``), so
every host agrees on time with sub-second precision.
"""

PRELUDE = """
local function clock(arg)
  if arg ~= '' then return tonumber(arg) end
  local t = redis.call('TIME')
  return tonumber(t[1]) + tonumber(t[2]) / 1000000
end
local function num(v)
  if v == false or v == nil or v == '' then return nil end
  if v == 'inf' then return math.huge end
  return tonumber(v)
end
local function fmt(seconds)  -- microseconds survive (tostring keeps only 14 significant digits)
  return string.format('%.6f', seconds)
end
local function open(now, until_, reason)
  redis.call('HSET', KEYS[1], 'state', 'open', 'opened_at', fmt(now), 'reason', reason, 'succ', 0)
  if until_ then redis.call('HSET', KEYS[1], 'open_until', fmt(until_))
  else redis.call('HDEL', KEYS[1], 'open_until') end
  redis.call('HDEL', KEYS[1], 'pinned_until')
  redis.call('DEL', KEYS[2])
end
local function close()
  redis.call('HSET', KEYS[1], 'state', 'closed', 'fail', 0, 'succ', 0, 'reason', '')
  redis.call('HDEL', KEYS[1], 'opened_at', 'open_until')
  redis.call('DEL', KEYS[2])
end
local now = clock(ARGV[1])
"""

# ARGV: now, reset_timeout, half_open_max_calls, trial_lease, lease_id
ADMIT = (
    PRELUDE
    + """
local f = redis.call('HMGET', KEYS[1], 'state', 'fail', 'opened_at', 'open_until', 'reason')
local state = f[1] or 'closed'
local fail = tonumber(f[2]) or 0
local reason = f[5] or ''
local transition = ''
if state == 'open' then
  local reopens = num(f[4]) or ((num(f[3]) or 0) + tonumber(ARGV[2]))
  if now < reopens then
    return {'reject', 'open', fail, fmt(reopens - now), reason, ''}
  end
  redis.call('HSET', KEYS[1], 'state', 'half-open', 'succ', 0)
  redis.call('DEL', KEYS[2])
  state = 'half-open'
  transition = 'open>half-open'
end
if state == 'half-open' then
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', fmt(now))
  if redis.call('ZCARD', KEYS[2]) < tonumber(ARGV[3]) then
    redis.call('ZADD', KEYS[2], fmt(now + tonumber(ARGV[4])), ARGV[5])
    redis.call('PEXPIRE', KEYS[2], math.ceil((tonumber(ARGV[4]) + 60) * 1000))
    return {'trial', 'half-open', fail, '', reason, transition}
  end
  local first = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
  return {'reject', 'half-open', fail, fmt(math.max(0, tonumber(first[2]) - now)), reason, transition}
end
return {'admit', 'closed', fail, '', '', ''}
"""
)

# ARGV: now, success_threshold, lease_id, trial (1/0)
SUCCESS = (
    PRELUDE
    + """
local state = redis.call('HGET', KEYS[1], 'state') or 'closed'
if ARGV[4] ~= '1' then
  if state == 'closed' then redis.call('HSET', KEYS[1], 'fail', 0) end
  return ''
end
if redis.call('ZREM', KEYS[2], ARGV[3]) == 0 or state ~= 'half-open' then return '' end
if redis.call('HINCRBY', KEYS[1], 'succ', 1) >= tonumber(ARGV[2]) then
  close()
  return 'half-open>closed'
end
return ''
"""
)

# ARGV: now, fail_max, lease_id, trial (1/0). Returns {transition, consecutive failures}.
FAILURE = (
    PRELUDE
    + """
local f = redis.call('HMGET', KEYS[1], 'state', 'pinned_until', 'fail')
local state = f[1] or 'closed'
local fail = tonumber(f[3]) or 0
if ARGV[4] == '1' then
  if redis.call('ZREM', KEYS[2], ARGV[3]) == 0 or state ~= 'half-open' then return {'', fail} end
  open(now, nil, 'failures')
  return {'half-open>open', fail}
end
if state ~= 'closed' then return {'', fail} end
local pinned = num(f[2])
if pinned and now < pinned then return {'', fail} end
fail = redis.call('HINCRBY', KEYS[1], 'fail', 1)
if fail >= tonumber(ARGV[2]) then
  open(now, nil, 'failures')
  return {'closed>open', fail}
end
return {'', fail}
"""
)

# ARGV: now, lease_id
RELEASE = (
    PRELUDE
    + """
redis.call('ZREM', KEYS[2], ARGV[2])
return ''
"""
)

# ARGV: now, seconds ('inf' for until staff close it), reason
HOLD_OPEN = (
    PRELUDE
    + """
local before = redis.call('HGET', KEYS[1], 'state') or 'closed'
local seconds = num(ARGV[2])
open(now, now + seconds, ARGV[3])
return before .. '>open'
"""
)

# ARGV: now, pin seconds ('' for none)
FORCE_CLOSE = (
    PRELUDE
    + """
local before = redis.call('HGET', KEYS[1], 'state') or 'closed'
close()
local pin = num(ARGV[2])
if pin then redis.call('HSET', KEYS[1], 'pinned_until', fmt(now + pin))
else redis.call('HDEL', KEYS[1], 'pinned_until') end
return before .. '>closed'
"""
)

# ARGV: now
SNAPSHOT = (
    PRELUDE
    + """
local f = redis.call('HMGET', KEYS[1], 'state', 'fail', 'succ', 'opened_at', 'open_until', 'reason', 'pinned_until')
return {f[1] or 'closed', f[2] or '0', f[3] or '0', f[4] or '', f[5] or '', f[6] or '', f[7] or '',
        fmt(now)}
"""
)
