-- The floor's webhook: the same body size as a Telegram update, and an id of
-- its own per request (the floor publishes it as its Nats-Msg-Id).
local run = tonumber(os.getenv("RUN"))
local threads = 0
local body = string.rep("x", 260)

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
  return wrk.format("POST", nil, { ["X-Floor-Id"] = string.format("%d", id) }, body)
end
