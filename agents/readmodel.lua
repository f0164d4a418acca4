-- churnguard read model: one write of an output event into Redis, atomic and idempotent.
-- Layout and rules: docs/read-model.md. Arguments are built by agents/readmodel.py.
-- ARGV[1] = operation, ARGV[2] = key prefix; the rest depends on the operation.
-- Keys a write derives from stored data (a customer's previous tier set, its alerts when it
-- churns) are built from the prefix here: the read model lives on one Redis, not a cluster.

local op = ARGV[1]
local prefix = ARGV[2]

-- Give the keys the customer's TTL (churned customers) or, when it has none, nothing.
local function follow_customer_ttl(customer_key, keys)
  local ttl = redis.call('TTL', customer_key)
  if ttl > 0 then
    for _, key in ipairs(keys) do
      redis.call('EXPIRE', key, ttl)
    end
  end
end

-- KEYS: customer hash, health history, at-risk, at-risk:tier:{tier}, tiers, customer alerts,
--       customer tasks, customer order (writer-only)
-- ARGV: op, prefix, customer_id, as_of_ms, health score ('' without), risk, tier ('' without),
--       churned ('1'/'0'), churned TTL s, history kept, field count, field, value, ...
local function snapshot()
  local customer_id = ARGV[3]
  local as_of = tonumber(ARGV[4])
  local score = ARGV[5]
  if score ~= '' then
    -- history is a time series: a late point still belongs in it, one point per as_of
    redis.call('ZREMRANGEBYSCORE', KEYS[2], as_of, as_of)
    redis.call('ZADD', KEYS[2], as_of, ARGV[4] .. ':' .. score)
    redis.call('ZREMRANGEBYRANK', KEYS[2], 0, -(tonumber(ARGV[10]) + 1))
  end
  local stored = redis.call('HGET', KEYS[1], 'as_of_ms')
  if stored and tonumber(stored) > as_of then
    return 0
  end
  local had_ttl = redis.call('TTL', KEYS[1]) > 0
  if stored then
    local old_tier = redis.call('HGET', KEYS[1], 'tier') or 'none'
    redis.call('ZREM', prefix .. 'at-risk:tier:' .. old_tier, customer_id)
  end
  redis.call('DEL', KEYS[1])
  local count = tonumber(ARGV[11])
  redis.call('HSET', KEYS[1], unpack(ARGV, 12, 11 + 2 * count))

  local churned = ARGV[8] == '1'
  if score ~= '' and not churned then
    redis.call('ZADD', KEYS[3], tonumber(ARGV[6]), customer_id)
    redis.call('ZADD', KEYS[4], tonumber(ARGV[6]), customer_id)
  else
    redis.call('ZREM', KEYS[3], customer_id)
    redis.call('ZREM', KEYS[4], customer_id)
  end
  if ARGV[7] ~= '' then
    redis.call('SADD', KEYS[5], ARGV[7])
  end

  local ttl = tonumber(ARGV[9])
  local alert_ids = redis.call('HKEYS', KEYS[6])
  local own = {KEYS[1], KEYS[2], KEYS[6], KEYS[7], KEYS[8]}
  for _, alert_id in ipairs(alert_ids) do
    table.insert(own, prefix .. 'alert:' .. alert_id)
  end
  if churned and ttl > 0 then
    for _, key in ipairs(own) do
      redis.call('EXPIRE', key, ttl)
    end
  elseif had_ttl then
    for _, key in ipairs(own) do
      redis.call('PERSIST', key)
    end
  end
  return 1
end

-- KEYS: alert, customer alerts, alerts:firing, alerts:firing:rule:{rule}, alerts:recent,
--       customer hash, customer order (writer-only)
-- ARGV: op, prefix, alert_id, alert JSON, order time ms (resolved_at or fired_at),
--       emitted_at ms, status, fired_at ms, recent cap
local function alert()
  local alert_id = ARGV[3]
  local json = ARGV[4]
  local at = tonumber(ARGV[5])
  local emitted = tonumber(ARGV[6])
  local field = 'alert:' .. alert_id
  local stored = redis.call('HGET', KEYS[7], field)
  if stored then
    local stored_at, stored_emitted = string.match(stored, '^(%-?%d+):(%-?%d+)$')
    stored_at, stored_emitted = tonumber(stored_at), tonumber(stored_emitted)
    if stored_at > at or (stored_at == at and stored_emitted > emitted) then
      return 0
    end
    if stored_at == at and stored_emitted == emitted and redis.call('GET', KEYS[1]) == json then
      return 0 -- the same event again (replay): nothing changes, not even the recent stream
    end
  end
  redis.call('SET', KEYS[1], json)
  redis.call('HSET', KEYS[2], alert_id, json)
  redis.call('HSET', KEYS[7], field, ARGV[5] .. ':' .. ARGV[6])
  local status = ARGV[7]
  if status == 'firing' then
    redis.call('ZADD', KEYS[3], tonumber(ARGV[8]), alert_id)
    redis.call('ZADD', KEYS[4], tonumber(ARGV[8]), alert_id)
  elseif status == 'resolved' then
    redis.call('ZREM', KEYS[3], alert_id)
    redis.call('ZREM', KEYS[4], alert_id)
  end
  redis.call('XADD', KEYS[5], 'MAXLEN', '~', ARGV[9], '*', 'alert', json)
  follow_customer_ttl(KEYS[6], {KEYS[1], KEYS[2], KEYS[7]})
  return 1
end

-- KEYS: customer tasks, customer order (writer-only), customer hash
-- ARGV: op, prefix, task_id, task JSON, created_at ms
local function task()
  local field = 'task:' .. ARGV[3]
  local created = tonumber(ARGV[5])
  local stored = redis.call('HGET', KEYS[2], field)
  if stored and tonumber(stored) > created then
    return 0
  end
  redis.call('HSET', KEYS[1], ARGV[3], ARGV[4])
  redis.call('HSET', KEYS[2], field, ARGV[5])
  follow_customer_ttl(KEYS[3], {KEYS[1], KEYS[2]})
  return 1
end

-- KEYS: sink:applied
-- ARGV: op, prefix, field, offset, field, offset, ... (an offset never goes back)
local function applied()
  local written = 0
  for i = 3, #ARGV, 2 do
    local stored = redis.call('HGET', KEYS[1], ARGV[i])
    if not stored or tonumber(stored) < tonumber(ARGV[i + 1]) then
      redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
      written = written + 1
    end
  end
  return written
end

if op == 'snapshot' then
  return snapshot()
elseif op == 'alert' then
  return alert()
elseif op == 'task' then
  return task()
elseif op == 'applied' then
  return applied()
end
return redis.error_reply('churnguard read model: unknown operation ' .. tostring(op))
