"""Redis scripts: each breaker operation as one atomic round trip, the shared twin of ``rules.py``.

KEYS[1] is the circuit hash, KEYS[2] the sorted set of half-open trial leases (member: lease id, score:
expiry; the set itself expires with its newest lease), KEYS[3] the list of transitions not yet stored, KEYS[4]
the rate rules' window (a list of '0' success, '1' failure, '2' slow success, oldest first; the hash's ``wfail``
and ``wslow`` count its 1s and 2s), KEYS[5] the recent latency (whole milliseconds of the latest successful
calls, oldest first, capped). The scripts a call goes through (admit, success) and the snapshot take the
durations this worker has not shared yet, so recording latency costs no round trip of its own.
ARGV[1] is "now" in seconds, or empty to take it from the Redis server clock (``TIME``), so every host
agrees on time with sub-second precision. State and reason names come from ``states.py``, substituted
into the prelude's Lua constants.
"""

from string import Template

from apps.plant_identification.circuits.states import CircuitState, OpenReason

PRELUDE = Template("""
local CLOSED, OPEN, HALF_OPEN = '$closed', '$open', '$half_open'
local FAILURES, SLOW = '$failures', '$slow'
local COUNTERS = {['1'] = 'wfail', ['2'] = 'wslow'}  -- the hash field counting each window outcome
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
  redis.call('HSET', KEYS[1], 'state', OPEN, 'opened_at', fmt(now), 'reason', reason, 'succ', 0)
  if until_ then redis.call('HSET', KEYS[1], 'open_until', fmt(until_))
  else redis.call('HDEL', KEYS[1], 'open_until') end
  redis.call('HDEL', KEYS[1], 'pinned_until', 'wfail', 'wslow')
  redis.call('DEL', KEYS[2], KEYS[4])
end
local function close()
  redis.call('HSET', KEYS[1], 'state', CLOSED, 'fail', 0, 'succ', 0, 'reason', '', 'afail', 0)
  redis.call('HDEL', KEYS[1], 'opened_at', 'open_until', 'wfail', 'wslow')
  redis.call('DEL', KEYS[2], KEYS[4])
end
local function pinned(now)
  local until_ = num(redis.call('HGET', KEYS[1], 'pinned_until'))
  return until_ ~= nil and now < until_
end
local function record_outcome(outcome, size)  -- outcome '0', '1' or '2'; returns failures, slow calls, calls
  redis.call('RPUSH', KEYS[4], outcome)
  if COUNTERS[outcome] then redis.call('HINCRBY', KEYS[1], COUNTERS[outcome], 1) end
  local calls = redis.call('LLEN', KEYS[4])
  while calls > size do
    local counter = COUNTERS[redis.call('LPOP', KEYS[4])]
    if counter then redis.call('HINCRBY', KEYS[1], counter, -1) end
    calls = calls - 1
  end
  local counts = redis.call('HMGET', KEYS[1], 'wfail', 'wslow')
  return tonumber(counts[1]) or 0, tonumber(counts[2]) or 0, calls
end
local function push_latency(samples, keep)  -- space-separated milliseconds, oldest first
  if samples == '' then return end
  local values = {}
  for ms in string.gmatch(samples, '%S+') do values[#values + 1] = ms end
  redis.call('RPUSH', KEYS[5], unpack(values))
  redis.call('LTRIM', KEYS[5], -tonumber(keep), -1)
end
local now = clock(ARGV[1])
""").substitute(
    closed=CircuitState.CLOSED,
    open=CircuitState.OPEN,
    half_open=CircuitState.HALF_OPEN,
    failures=OpenReason.FAILURES,
    slow=OpenReason.SLOW,
)

# ARGV: now, reset_timeout, half_open_max_calls, trial_lease, lease_id, latency samples, samples kept
ADMIT = (
    PRELUDE
    + """
push_latency(ARGV[6], ARGV[7])
local f = redis.call('HMGET', KEYS[1], 'state', 'fail', 'opened_at', 'open_until', 'reason', 'afail')
local state = f[1] or CLOSED
local fail = tonumber(f[2]) or 0
local reason = f[5] or ''
local afail = tonumber(f[6]) or 0
local transition = ''
if state == OPEN then
  local reopens = num(f[4]) or ((num(f[3]) or 0) + tonumber(ARGV[2]))
  if now < reopens then
    return {'reject', OPEN, fail, fmt(reopens - now), reason, '', afail}
  end
  redis.call('HSET', KEYS[1], 'state', HALF_OPEN, 'succ', 0)
  redis.call('DEL', KEYS[2])
  state = HALF_OPEN
  transition = OPEN .. '>' .. HALF_OPEN
end
if state == HALF_OPEN then
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', fmt(now))
  if redis.call('ZCARD', KEYS[2]) < tonumber(ARGV[3]) then
    redis.call('ZADD', KEYS[2], fmt(now + tonumber(ARGV[4])), ARGV[5])
    redis.call('PEXPIRE', KEYS[2], math.ceil(tonumber(ARGV[4]) * 1000))
    return {'trial', HALF_OPEN, fail, '', reason, transition, afail}
  end
  local first = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
  return {'reject', HALF_OPEN, fail, fmt(math.max(0, tonumber(first[2]) - now)), reason, transition, afail}
end
return {'admit', CLOSED, fail, '', '', '', afail}
"""
)

# ARGV: now, success_threshold, lease_id, trial (1/0), window size ('' when no rate rule is on), minimum calls,
# duration in seconds ('' when not measured), slow-call duration ('' when the rule is off), slow-call rate in
# percent, latency samples, samples kept. Returns {transition, consecutive failures}.
SUCCESS = (
    PRELUDE
    + """
push_latency(ARGV[10], ARGV[11])
redis.call('HSET', KEYS[1], 'afail', 0)  -- any success ends the fleet's run of failed attempts
local duration, limit = num(ARGV[7]), num(ARGV[8])
local slow = limit ~= nil and duration ~= nil and duration > limit
local f = redis.call('HMGET', KEYS[1], 'state', 'fail')
local state = f[1] or CLOSED
local fail = tonumber(f[2]) or 0
if ARGV[4] ~= '1' then
  if state == CLOSED then
    redis.call('HSET', KEYS[1], 'fail', 0)
    if ARGV[5] ~= '' and not pinned(now) then
      local _, wslow, calls = record_outcome(slow and '2' or '0', tonumber(ARGV[5]))
      if slow and calls >= tonumber(ARGV[6]) and wslow * 100 >= tonumber(ARGV[9]) * calls then
        open(now, nil, SLOW)
        return {CLOSED .. '>' .. OPEN, 0}
      end
    end
    return {'', 0}
  end
  return {'', fail}
end
if redis.call('ZREM', KEYS[2], ARGV[3]) == 0 or state ~= HALF_OPEN then return {'', fail} end
if slow then  -- a slow trial is a failed trial
  fail = redis.call('HINCRBY', KEYS[1], 'fail', 1)
  open(now, nil, SLOW)
  return {HALF_OPEN .. '>' .. OPEN, fail}
end
redis.call('HSET', KEYS[1], 'fail', 0)
if redis.call('HINCRBY', KEYS[1], 'succ', 1) >= tonumber(ARGV[2]) then
  close()
  return {HALF_OPEN .. '>' .. CLOSED, 0}
end
return {'', 0}
"""
)

# ARGV: now, fail_max, lease_id, trial (1/0), failure rate in percent ('' for the consecutive rule), window
# size ('' when no rate rule is on), minimum calls. Returns {transition, consecutive failures}.
FAILURE = (
    PRELUDE
    + """
local f = redis.call('HMGET', KEYS[1], 'state', 'fail')
local state = f[1] or CLOSED
local fail = tonumber(f[2]) or 0
if ARGV[4] == '1' then
  if redis.call('ZREM', KEYS[2], ARGV[3]) == 0 or state ~= HALF_OPEN then return {'', fail} end
  fail = redis.call('HINCRBY', KEYS[1], 'fail', 1)
  open(now, nil, FAILURES)
  return {HALF_OPEN .. '>' .. OPEN, fail}
end
if state ~= CLOSED then return {'', fail} end
if pinned(now) then return {'', fail} end
fail = redis.call('HINCRBY', KEYS[1], 'fail', 1)
local wfail, _, calls = 0, 0, 0
if ARGV[6] ~= '' then  -- a failure is a call in the window whichever rate rule keeps it
  wfail, _, calls = record_outcome('1', tonumber(ARGV[6]))
end
local trips
if ARGV[5] ~= '' then
  trips = calls >= tonumber(ARGV[7]) and wfail * 100 >= tonumber(ARGV[5]) * calls
else
  trips = fail >= tonumber(ARGV[2])
end
if trips then
  open(now, nil, FAILURES)
  return {CLOSED .. '>' .. OPEN, fail}
end
return {'', fail}
"""
)

# ARGV: now. Counts one failed attempt of a call (retried or not). Returns {state, consecutive failures,
# failed attempts in a row}.
ATTEMPT_FAILED = (
    PRELUDE
    + """
local afail = redis.call('HINCRBY', KEYS[1], 'afail', 1)
local f = redis.call('HMGET', KEYS[1], 'state', 'fail')
return {f[1] or CLOSED, f[2] or '0', afail}
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
local before = redis.call('HGET', KEYS[1], 'state') or CLOSED
local seconds = num(ARGV[2])
open(now, now + seconds, ARGV[3])
return before .. '>' .. OPEN
"""
)

# ARGV: now, reason
HALF_OPEN = (
    PRELUDE
    + """
local before = redis.call('HGET', KEYS[1], 'state') or CLOSED
redis.call('HSET', KEYS[1], 'state', HALF_OPEN, 'succ', 0, 'reason', ARGV[2])
redis.call('HDEL', KEYS[1], 'pinned_until', 'wfail', 'wslow')
redis.call('DEL', KEYS[2], KEYS[4])
return before .. '>' .. HALF_OPEN
"""
)

# ARGV: now, pin seconds ('' for none)
FORCE_CLOSE = (
    PRELUDE
    + """
local before = redis.call('HGET', KEYS[1], 'state') or CLOSED
close()
local pin = num(ARGV[2])
if pin then redis.call('HSET', KEYS[1], 'pinned_until', fmt(now + pin))
else redis.call('HDEL', KEYS[1], 'pinned_until') end
return before .. '>' .. CLOSED
"""
)

# ARGV: now, '1' to read the recent latency too, latency samples, samples kept
SNAPSHOT = (
    PRELUDE
    + """
push_latency(ARGV[3], ARGV[4])
local f = redis.call('HMGET', KEYS[1], 'state', 'fail', 'succ', 'opened_at', 'open_until', 'reason', 'pinned_until',
                    'afail')
local latency = {}
if ARGV[2] == '1' then latency = redis.call('LRANGE', KEYS[5], 0, -1) end
return {f[1] or CLOSED, f[2] or '0', f[3] or '0', f[4] or '', f[5] or '', f[6] or '', f[7] or '',
        fmt(now), latency, f[8] or '0'}
"""
)

# ARGV: now, event (JSON), how many events the list keeps
PUSH_EVENT = (
    PRELUDE
    + """
redis.call('RPUSH', KEYS[3], ARGV[2])
redis.call('LTRIM', KEYS[3], -tonumber(ARGV[3]), -1)
return ''
"""
)

# ARGV: now, how many events to take. Returns them, oldest first, and removes them from the list.
TAKE_EVENTS = (
    PRELUDE
    + """
local events = redis.call('LRANGE', KEYS[3], 0, tonumber(ARGV[2]) - 1)
if #events > 0 then redis.call('LTRIM', KEYS[3], #events, -1) end
return events
"""
)

# ARGV: now
CLEAR_LATENCY = (
    PRELUDE
    + """
redis.call('DEL', KEYS[5])
return ''
"""
)
