-- A Telegram webhook as Telegram sends it (an Update with a text message),
-- each request from a person never seen before: a new session, a new
-- update_id (so JetStream's dedupe never drops one). Set by bench/run:
--   SECRET  the channel's webhook secret
--   RUN     a number below 10^6 unique to this run (so ids never repeat
--           across runs)
--   PHASE   0 or 1: the phase of the run (so its phases never share an id)
-- Ids stay below 2^53: Lua's numbers are doubles, and a larger id would
-- silently share its value with its neighbours (JetStream would drop them
-- as duplicates).
local secret = os.getenv("SECRET")
local run = tonumber(os.getenv("RUN"))
local phase = tonumber(os.getenv("PHASE") or "0")
local threads = 0

function setup(thread)
  thread:set("thread_no", threads)
  threads = threads + 1
end

function init(args)
  counter = 0
end

function request()
  counter = counter + 1
  local id = run * 1000000000 + phase * 500000000 + thread_no * 10000000 + counter
  local body = string.format(
    '{"update_id":%d,"message":{"message_id":1,"from":{"id":%d,"is_bot":false,"first_name":"Bench"},' ..
    '"chat":{"id":-1001234567890,"title":"ACME Support","type":"supergroup"},"date":1700000000,"text":"hi"}}',
    id, id)
  return wrk.format("POST", nil, {
    ["X-Telegram-Bot-Api-Secret-Token"] = secret,
    ["Content-Type"] = "application/json",
  }, body)
end
