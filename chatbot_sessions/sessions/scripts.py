"""Every Lua script the session store and its operator tools run, each with its contract.

One script per store access: the access, the TTL rule (``keys.py``) and ``lastActivity``
happen in one atomic step. KEYS are always the session's own keys (one hash tag), except
where a contract says otherwise (rate-limit counters ride on an access only on a single
server, see ``_with_limits``), so each script is single-slot on Redis Cluster; where a
script takes the session's keys, KEYS[1..4] are ``keys.session_keys`` (meta, messages,
write log, feedback) and any other key comes after them. Each
write logs its write id (``LOG_WRITE``) so that running it twice changes nothing; see
``store.py`` and docs/reliability.md.

Scripts answer with short status strings, which the store turns into the enums of
``store.py`` (``Outcome``, ``ClaimStatus``).
"""

from __future__ import annotations


# Every reading script opens with the access rule: stop with `if_missing` when the session
# is gone, else re-arm the TTL of all four keys and set lastActivity. `rated` tells the
# rest of the script whether the session has any feedback (its key exists).
# KEYS: meta, messages, writes, feedback. ARGV[1]: ttl, ARGV[2]: now_ms.
def _refresh(if_missing: str) -> str:
    return f"""
if redis.call('EXPIRE', KEYS[1], ARGV[1]) == 0 then return {if_missing} end
redis.call('EXPIRE', KEYS[2], ARGV[1])
redis.call('EXPIRE', KEYS[3], ARGV[1])
local rated = redis.call('EXPIRE', KEYS[4], ARGV[1]) == 1
redis.call('HSET', KEYS[1], 'lastActivity', ARGV[2])
"""


# Every writing script logs its write id the same way (and forgets what is past its window).
# KEYS[3]: writes. ARGV[1]: ttl, ARGV[2]: now_ms. Arguments: the mark and its expiry (ms).
LOG_WRITE = """
local function log_write(mark, forget_at)
  redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', ARGV[2])
  redis.call('ZADD', KEYS[3], forget_at, mark)
  redis.call('EXPIRE', KEYS[3], ARGV[1])
end
"""

# Rate-limit counters (security/rate_limits.py), fixed windows: n counters are KEYS[k ..
# k+n-1]; ARGV[a + 2i], ARGV[a + 2i + 1] are counter i's window (seconds) and amount.
# Increments each, starts its window on its first hit, and returns nil when none is past
# its amount, else {seconds until the longest breached window resets, its number from 1}.
# A counter Redis cannot increment (a key of the wrong type) is skipped: limits fail open.
COUNT_LIMITS = """
local function over_limits(k, a, n)
  local worst = nil
  for i = 0, n - 1 do
    local key = KEYS[k + i]
    local count = redis.pcall('INCR', key)
    if type(count) == 'number' then
      local left = redis.call('TTL', key)
      if left < 0 then
        left = tonumber(ARGV[a + 2 * i])
        redis.call('EXPIRE', key, left)
      end
      if count > tonumber(ARGV[a + 2 * i + 1]) and (worst == nil or left > worst[1]) then
        worst = {math.max(left, 1), i + 1}
      end
    end
  end
  return worst
end
"""

# The limiter's own call, where the counters cannot ride on a session access (a cluster, a
# send that starts a session). KEYS: the counters. ARGV: window, amount per counter.
LIMITS = COUNT_LIMITS + "return over_limits(1, 1, #KEYS) or false\n"


def _with_limits(script: str) -> str:
    """``script`` counting a request's rate limits first, in the same round trip.

    The counters follow the script's own KEYS, their windows and amounts its own ARGV, and
    the last ARGV is their number (0: none). Past a limit the script stops before the
    access and answers ``{seconds, counter}``: a nested reply, which no script answers
    otherwise. Single-node only: the counters' hash tags are not the session's.
    """
    return (
        COUNT_LIMITS
        + """
local limits = tonumber(ARGV[#ARGV])
if limits > 0 then
  local over = over_limits(#KEYS - limits + 1, #ARGV - 2 * limits, limits)
  if over then return {over} end
end
"""
        + script
    )


# KEYS: meta, messages, writes, feedback (+ counters). ARGV: ttl, now_ms (+ limits).
# Returns 1 if the session exists (and was touched), else 0.
TOUCH = _with_limits(_refresh("0") + "return 1\n")

# KEYS: meta, messages, writes, feedback (+ counters). ARGV: ttl, now_ms, write mark, mark
# expiry (ms) (+ limits). Returns 'created', also when replayed (the id exists and the log
# has this write's mark), or 'taken' when the id is another session's.
CREATE = _with_limits(
    LOG_WRITE
    + """
if redis.call('EXISTS', KEYS[1]) == 1 then
  if redis.call('ZSCORE', KEYS[3], ARGV[3]) then return 'created' end
  return 'taken'
end
redis.call('HSET', KEYS[1], 'createdAt', ARGV[2], 'lastActivity', ARGV[2], 'seq', 0)
redis.call('EXPIRE', KEYS[1], ARGV[1])
log_write(ARGV[3], ARGV[4])
return 'created'
"""
)

# KEYS: meta, messages, writes, feedback. ARGV: ttl, now_ms, limit (0 = all), before (-1 =
# newest). Returns nil if missing, else {createdAt, first_abs, start_abs, ratings,
# messages...} where message positions are absolute (counted since the session began) so
# cursors survive trims, and ratings is {position, feedback, ...} for the page's rated
# messages: read (HMGET, 1000 fields at a time) only when the session has feedback at all.
READ = (
    _refresh("false")
    + """
local meta = redis.call('HMGET', KEYS[1], 'createdAt', 'seq')
local len = redis.call('LLEN', KEYS[2])
local seq = tonumber(meta[2]) or len
local first = seq - len
local stop = seq
local before = tonumber(ARGV[4])
if before >= 0 and before < stop then stop = before end
local start = first
local limit = tonumber(ARGV[3])
if limit > 0 and stop - limit > start then start = stop - limit end
local ratings = {}
local result = {meta[1], first, start, ratings}
if stop > start then
  local items = redis.call('LRANGE', KEYS[2], start - first, stop - 1 - first)
  for i = 1, #items do result[#result + 1] = items[i] end
  if rated then
    for from = start, stop - 1, 1000 do
      local fields = {}
      for n = from, math.min(from + 999, stop - 1) do fields[#fields + 1] = n end
      local found = redis.call('HMGET', KEYS[4], unpack(fields))
      for i = 1, #fields do
        if found[i] then
          ratings[#ratings + 1] = fields[i]
          ratings[#ratings + 1] = found[i]
        end
      end
    end
  end
end
return result
"""
)

# KEYS: meta, messages, writes (+ counters). ARGV: ttl, now_ms, cap, from (-1: the newest)
# (+ limits).
# What a reply is built from: an access (the TTL rule), then the session's rolling summary
# and the messages after it. With from = -1: the newest `cap` messages, none older than the
# summary covers; with from >= 0: up to `cap` messages from absolute position `from` (the
# summariser's backlog, oldest first). Returns nil if the session is gone, else
# {summary, summaryThrough, first_abs, start_abs, messages...}.
CONTEXT = _with_limits(
    _refresh("false")
    + """
local meta = redis.call('HMGET', KEYS[1], 'seq', 'summary', 'summaryThrough')
local len = redis.call('LLEN', KEYS[2])
local seq = tonumber(meta[1]) or len
local first = seq - len
local through = tonumber(meta[3]) or 0
local cap = tonumber(ARGV[3])
local from = tonumber(ARGV[4])
local start, stop
if from < 0 then
  start = math.max(first, through, seq - cap)
  stop = seq
else
  start = math.max(first, from)
  stop = math.min(seq, start + cap)
end
local result = {meta[2] or '', through, first, start}
if stop > start then
  local items = redis.call('LRANGE', KEYS[2], start - first, stop - 1 - first)
  for i = 1, #items do result[#result + 1] = items[i] end
end
return result
"""
)

# KEYS: meta. ARGV: summary, through. Moves the rolling summary forward, never back: it is
# written only when it covers more than the stored one (two workers summarising at once:
# the one that got further wins, and neither leaves a gap, since each summary was built
# from an older one plus every message after it). Not an access: the session's TTL is the
# client's to extend. Returns 1 if written, 0 if the stored summary is as far or further
# (or the session is gone).
SUMMARY = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local current = tonumber(redis.call('HGET', KEYS[1], 'summaryThrough')) or 0
if tonumber(ARGV[2]) <= current then return 0 end
redis.call('HSET', KEYS[1], 'summary', ARGV[1], 'summaryThrough', ARGV[2])
return 1
"""

# KEYS: meta, messages, writes, feedback[, record]. ARGV: ttl, now_ms, max_messages, create
# ('1' = new session), write mark, mark expiry (ms); then, used only with a record: record
# ttl, fingerprint, session id, result, origin (name of the session-less record that
# reserved a new session, or ''); messages from ARGV[12].
# Returns {status[, id]}:
#   'stored'   appended now, or earlier by this very write (its mark is in the log); id: the
#              absolute position of the last message appended (a turn's answer). The log
#              entry is '<mark>=<id>', found again by its score (the mark expiry, the same
#              in a run again); an entry of just '<mark>' (written before entries kept
#              the id) answers no id;
#   'gone'     the session no longer exists (never resurrected);
#   'taken'    create hit an id that already exists;
#   'recorded' the record is done: another attempt of the key stored the exchange (the
#              record keeps its answer's id as `mid`, for CLAIM to answer).
# Marking the record done in the same script means no crash can store without recording or
# vice versa; logging it (and the origin) here means DELETE finds both. The ratings of the
# answers the trim drops go with them, so the feedback never outgrows the messages.
APPEND = (
    LOG_WRITE
    + """
local record = KEYS[5]
local mine = ARGV[5] .. '='
for _, name in ipairs(redis.call('ZRANGEBYSCORE', KEYS[3], ARGV[6], ARGV[6])) do
  if name == ARGV[5] then return {'stored'} end
  if string.sub(name, 1, #mine) == mine then
    return {'stored', tonumber(string.sub(name, #mine + 1))}
  end
end
if record and redis.call('HGET', record, 'state') == 'done' then return {'recorded'} end
local exists = redis.call('EXISTS', KEYS[1])
if ARGV[4] == '1' then
  if exists == 1 then return {'taken'} end
  redis.call('HSET', KEYS[1], 'createdAt', ARGV[2], 'seq', 0)
elseif exists == 0 then
  return {'gone'}
end
local length = redis.call('RPUSH', KEYS[2], unpack(ARGV, 12))
redis.call('LTRIM', KEYS[2], -tonumber(ARGV[3]), -1)
local seq = redis.call('HINCRBY', KEYS[1], 'seq', #ARGV - 11)
redis.call('HSET', KEYS[1], 'lastActivity', ARGV[2])
redis.call('EXPIRE', KEYS[1], ARGV[1])
redis.call('EXPIRE', KEYS[2], ARGV[1])
if redis.call('EXPIRE', KEYS[4], ARGV[1]) == 1 then
  -- positions seq - length (the first before the trim) up to the first one kept
  for n = seq - length, seq - tonumber(ARGV[3]) - 1 do redis.call('HDEL', KEYS[4], n) end
end
log_write(mine .. (seq - 1), ARGV[6])
if record then
  redis.call('HSET', record, 'state', 'done', 'fp', ARGV[8], 'sid', ARGV[9], 'result', ARGV[10],
             'mid', seq - 1)
  redis.call('HDEL', record, 'lease', 'owner', 'reply')
  redis.call('EXPIRE', record, ARGV[7])
  local until_ms = tonumber(ARGV[2]) + 1000 * tonumber(ARGV[7])
  redis.call('ZADD', KEYS[3], until_ms, record)
  if ARGV[11] ~= '' then redis.call('ZADD', KEYS[3], until_ms, ARGV[11]) end
end
return {'stored', seq - 1}
"""
)

# KEYS: meta, messages, writes, feedback. ARGV: ttl, now_ms, write mark, mark expiry (ms),
# message id (an absolute position, 0 or more), the rating (codec JSON), the type codes of
# an answer (``codec.ANSWER_CODES``). An access (the session's TTLs re-armed).
# Returns {status, head}:
#   'rated'    stored now (replacing any earlier rating of the answer), or earlier by this
#              very write (its mark is in the log); head: the rated entry's type, stamp and
#              marks (the text before its '|'), '' if it is no longer stored;
#   'gone'     the session does not exist;
#   'missing'  no message by that id is stored (beyond the newest, or trimmed away);
#   'question' the message is not an answer.
# Nothing is written unless 'rated'.
RATE = (
    _refresh("{'gone', ''}")
    + LOG_WRITE
    + """
local len = redis.call('LLEN', KEYS[2])
local seq = tonumber(redis.call('HGET', KEYS[1], 'seq')) or len
local first = seq - len
local n = tonumber(ARGV[5])
local entry = false
if n >= first and n < seq then entry = redis.call('LINDEX', KEYS[2], n - first) end
local head = entry and string.match(entry, '^[^|]*') or ''
if redis.call('ZSCORE', KEYS[3], ARGV[3]) then return {'rated', head} end
if not entry then return {'missing', ''} end
if not string.find(ARGV[7], string.sub(entry, 1, 1), 1, true) then return {'question', ''} end
redis.call('HSET', KEYS[4], ARGV[5], ARGV[6])
redis.call('EXPIRE', KEYS[4], ARGV[1])
log_write(ARGV[3], ARGV[4])
return {'rated', head}
"""
)

# KEYS: record[, writes, meta] (the last two for a record in a session). ARGV: record ttl,
# now_ms, fingerprint, lease_until_ms, owner, proposed session id, reply id ('' unless the
# attempt streams its reply).
# Returns {status, sid[, result or lease_until, message id or reply id]}: 'new' (this
# caller holds the lease: a new record, a lapsed lease taken over, or its own claim run
# again), 'busy' (another holds it; with the id of the reply it is streaming, if any),
# 'done' (with the result and the stored answer's message id, '' in a record written
# before records kept it), 'mismatch', or 'gone' when the session no longer exists
# (nothing written: no record of a deleted session). A new record in a session joins its
# write log, which expires with the session (PTTL of meta).
CLAIM = """
if KEYS[3] and redis.call('EXISTS', KEYS[3]) == 0 then return {'gone', ''} end
local r = redis.call('HMGET', KEYS[1], 'state', 'fp', 'lease', 'sid', 'result', 'owner', 'reply',
                     'mid')
if not r[1] then
  redis.call('HSET', KEYS[1], 'state', 'pending', 'fp', ARGV[3], 'lease', ARGV[4],
             'owner', ARGV[5], 'sid', ARGV[6], 'reply', ARGV[7])
  redis.call('EXPIRE', KEYS[1], ARGV[1])
  if KEYS[2] then
    redis.call('ZADD', KEYS[2], tonumber(ARGV[2]) + 1000 * tonumber(ARGV[1]), KEYS[1])
    local pttl = redis.call('PTTL', KEYS[3])
    if pttl > 0 then redis.call('PEXPIRE', KEYS[2], pttl) end
  end
  return {'new', ARGV[6]}
end
if r[2] ~= ARGV[3] then return {'mismatch', r[4]} end
if r[1] == 'done' then return {'done', r[4], r[5], r[8] or ''} end
if r[6] == ARGV[5] then return {'new', r[4]} end
if tonumber(r[3]) > tonumber(ARGV[2]) then return {'busy', r[4], r[3], r[7] or ''} end
redis.call('HSET', KEYS[1], 'lease', ARGV[4], 'owner', ARGV[5], 'reply', ARGV[7])
return {'new', r[4]}
"""

# KEYS: record. ARGV: owner. Ends the owner's lease early (a failed attempt) but keeps the
# record and its session id: the attempt may still have stored, and a retry must find out.
# Run twice, the second run finds no owner and does nothing.
RELEASE = """
if redis.call('HGET', KEYS[1], 'state') == 'pending'
   and redis.call('HGET', KEYS[1], 'owner') == ARGV[1] then
  redis.call('HSET', KEYS[1], 'lease', 0)
  redis.call('HDEL', KEYS[1], 'owner')
end
return 1
"""

# KEYS: record. ARGV: fingerprint, session id, result, message id ('' when unknown). Copies
# a stored exchange's result onto a session-less record, so its retries find the reply
# without a second lookup. Only onto a record that still exists: if the new session was
# deleted meanwhile, its DELETE removed the record (the append logged it), and it must not
# come back. The record keeps the TTL of its claim. Run twice, it writes the same fields again.
FINISH = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], 'state', 'done', 'fp', ARGV[1], 'sid', ARGV[2], 'result', ARGV[3])
if ARGV[4] ~= '' then redis.call('HSET', KEYS[1], 'mid', ARGV[4]) end
redis.call('HDEL', KEYS[1], 'lease', 'owner', 'reply')
return 1
"""

# KEYS: meta, messages, writes, feedback. ARGV: '1' if the script may delete keys of other
# hash tags (a single server; never on a cluster), the session-less record prefix. Deletes
# the session (meta, messages, feedback), each record its write log names, and the log,
# atomically. Records of this session share its slot; a session-less record does not, so on
# a cluster its name is returned for the caller to delete. Returns {keys deleted (log not
# counted), names...}. Nothing is left behind, not even a tombstone, so a second run finds
# nothing: the caller tells a replay from a missing session by whether it retried
# (``SessionStore.delete``).
DELETE = """
local removed = redis.call('DEL', KEYS[1], KEYS[2], KEYS[4])
local own = KEYS[1] .. ':'
local other = {}
for _, name in ipairs(redis.call('ZRANGE', KEYS[3], 0, -1)) do
  if string.sub(name, 1, #own) == own then
    removed = removed + redis.call('DEL', name)
  elseif string.sub(name, 1, #ARGV[2]) == ARGV[2] then
    if ARGV[1] == '1' then
      removed = removed + redis.call('DEL', name)
    else
      other[#other + 1] = name
    end
  end
end
redis.call('DEL', KEYS[3])
return {removed, unpack(other)}
"""


# KEYS: meta, messages, writes, feedback, reply events stream. ARGV: ttl, now_ms, event id
# (n: the stream entry id is 0-n, so SSE ids are 1, 2, 3...), event name, data (JSON),
# retention (s), maxlen, final ('1' for done/error). Appends one event of a streamed reply,
# unless the session is gone (returns 'gone': never a key naming a deleted session). The
# stream is named in the write log (so DELETE removes it) and lives `retention` after its
# last event. Returns 'stop' when the user asked to stop this reply, else 'ok'; a final
# event clears the stop request. Run twice (a lost reply), the second XADD of the same id is
# refused, and the script answers as the first run did.
PUBLISH = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 'gone' end
local top = redis.call('XREVRANGE', KEYS[5], '+', '-', 'COUNT', 1)[1]
if not top or tonumber(string.sub(top[1], 3)) < tonumber(ARGV[3]) then
  redis.call('XADD', KEYS[5], 'MAXLEN', '~', ARGV[7], '0-' .. ARGV[3], 'e', ARGV[4], 'd', ARGV[5])
end
local keep = 1000 * tonumber(ARGV[6])
local session_left = redis.call('PTTL', KEYS[1])
if session_left > 0 and session_left < keep then keep = session_left end
redis.call('PEXPIRE', KEYS[5], keep)
redis.call('ZADD', KEYS[3], tonumber(ARGV[2]) + 1000 * tonumber(ARGV[6]), KEYS[5])
local pttl = redis.call('PTTL', KEYS[1])
if pttl > 0 and redis.call('PTTL', KEYS[3]) < 0 then redis.call('PEXPIRE', KEYS[3], pttl) end
local stop = 'stop:' .. string.sub(KEYS[5], #KEYS[1] + 8)
if ARGV[8] == '1' then
  redis.call('HDEL', KEYS[1], stop)
  return 'ok'
end
if redis.call('HEXISTS', KEYS[1], stop) == 1 then return 'stop' end
return 'ok'
"""

# KEYS: meta, messages, writes, feedback, reply events stream. ARGV: ttl, now_ms, final
# event names ('done', 'error'). An access (the session's TTLs re-armed). Asks the producer
# of the reply to stop: 'ok', 'done' when the reply has already ended (nothing to stop),
# 'gone' when the session or the reply is unknown.
STOP = (
    _refresh("'gone'")
    + """
local top = redis.call('XREVRANGE', KEYS[5], '+', '-', 'COUNT', 1)[1]
if not top then return 'gone' end
if top[2][2] == ARGV[3] or top[2][2] == ARGV[4] then return 'done' end
redis.call('HSET', KEYS[1], 'stop:' .. string.sub(KEYS[5], #KEYS[1] + 8), 1)
return 'ok'
"""
)

# KEYS: meta, messages, writes, feedback, reply events stream. ARGV: ttl, now_ms. An access:
# the session's TTLs re-armed. Returns {1, last event id, last event name} when the reply's
# events are kept, {0} when the session exists but the reply does not, false when the
# session is gone.
REPLY_EXISTS = (
    _refresh("false")
    + """
local top = redis.call('XREVRANGE', KEYS[5], '+', '-', 'COUNT', 1)[1]
if not top then return {0} end
return {1, tonumber(string.sub(top[1], 3)), top[2][2]}
"""
)

# KEYS: meta, messages (the rest of ``session_keys`` unused). Read-only (no TTL refresh):
# nil if missing, else {createdAt, lastActivity, seq, pttl, raw messages...}.
SNAPSHOT = """
if redis.call('EXISTS', KEYS[1]) == 0 then return false end
local meta = redis.call('HMGET', KEYS[1], 'createdAt', 'lastActivity', 'seq')
local result = {meta[1], meta[2], meta[3], redis.call('PTTL', KEYS[1])}
local items = redis.call('LRANGE', KEYS[2], 0, -1)
for i = 1, #items do result[#result + 1] = items[i] end
return result
"""

# KEYS: meta, messages, writes, feedback. Read-only (no TTL refresh): nil if the session is
# gone, else {position, rating, answer, question, ...} for each rated message: the rating as
# stored, the entry at that position and the one before it (the question), each false when
# no longer stored.
RATED = """
if redis.call('EXISTS', KEYS[1]) == 0 then return false end
local len = redis.call('LLEN', KEYS[2])
local seq = tonumber(redis.call('HGET', KEYS[1], 'seq')) or len
local first = seq - len
local function entry(n)
  if n >= first and n < seq then return redis.call('LINDEX', KEYS[2], n - first) end
  return false
end
local ratings = redis.call('HGETALL', KEYS[4])
local result = {}
for i = 1, #ratings, 2 do
  local n = tonumber(ratings[i])
  local answer = entry(n)
  result[#result + 1] = n
  result[#result + 1] = ratings[i + 1]
  result[#result + 1] = answer
  result[#result + 1] = answer and entry(n - 1)
end
return result
"""

# KEYS: meta, messages, writes, feedback. ARGV: replace ('1'/'0'), pttl (-1 = none),
# createdAt, lastActivity, seq, raw messages... Returns 0 (and writes nothing) when the
# session exists and replace is off. A replaced session loses its feedback (the messages
# it rated are replaced; a document carries messages only). RPUSH goes in chunks: Lua's
# unpack has a stack limit of a few thousand values.
RESTORE = """
if ARGV[1] ~= '1' and redis.call('EXISTS', KEYS[1], KEYS[2]) > 0 then return 0 end
redis.call('DEL', KEYS[1], KEYS[2], KEYS[4])
redis.call('HSET', KEYS[1], 'createdAt', ARGV[3], 'lastActivity', ARGV[4], 'seq', ARGV[5])
for i = 6, #ARGV, 1000 do
  redis.call('RPUSH', KEYS[2], unpack(ARGV, i, math.min(i + 999, #ARGV)))
end
if tonumber(ARGV[2]) > 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  redis.call('PEXPIRE', KEYS[2], ARGV[2])
end
return 1
"""

# KEYS: meta, messages, write log, feedback (the keys every access re-arms). ARGV: ttl in ms, or -1
# to PERSIST. 0 if the session does not exist.
SET_TTL = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
for i = 1, #KEYS do
  if tonumber(ARGV[1]) < 0 then
    redis.call('PERSIST', KEYS[i])
  else
    redis.call('PEXPIRE', KEYS[i], ARGV[1])
  end
end
return 1
"""
