-- A Telegram webhook as Telegram sends it (an Update with a text message),
-- each request from a person never seen before: a new session, a new
-- update_id (so JetStream's dedupe never drops one). Set by bench/run:
--   SECRET  the channel's webhook secret
--   RUN     a number unique to this run (so ids never repeat across runs)
local secret = os.getenv("SECRET")
local run = tonumber(os.getenv("RUN"))
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
  local id = run * 1000000000 + thread_no * 10000000 + counter
  local body = string.format(
    '{"update_id":%d,"message":{"message_id":1,"from":{"id":%d,"is_bot":false,"first_name":"Bench"},' ..
    '"chat":{"id":-1001234567890,"title":"ACME Support","type":"supergroup"},"date":1700000000,"text":"hi"}}',
    id, id)
  return wrk.format("POST", nil, {
    ["X-Telegram-Bot-Api-Secret-Token"] = secret,
    ["Content-Type"] = "application/json",
  }, body)
end
