#!/usr/bin/env python3
# Writes the wrk script of .ci/leak-flood: 50 reports of 100 random
# well-formed sk_live_ keys each, cycled, with the answers counted by status.
# 100 random well-formed sk_live_ keys per report, as a wrk Lua script that
# cycles through 50 such reports.
import json, random, zlib, sys
A = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
def key():
    body = "sk_live_" + "".join(random.choice(A) for _ in range(32))
    v = zlib.crc32(body.encode())
    cs = []
    for _ in range(6):
        cs.append(A[v % 62]); v //= 62
    return body + "".join(reversed(cs))
bodies = [json.dumps({"keys": [key() for _ in range(100)]}) for _ in range(50)]
print("local bodies = {")
for b in bodies:
    print("  [[" + b + "]],")
print("}")
print(r'''
local i = 0
local threads = {}
setup = function(thread) table.insert(threads, thread) end
s202, s429, s503, sother = 0, 0, 0, 0
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
request = function()
  i = i % #bodies + 1
  return wrk.format(nil, "/v1/leaked-keys", nil, bodies[i])
end
response = function(status, headers, body)
  if status == 202 then s202 = s202 + 1
  elseif status == 429 then s429 = s429 + 1
  elseif status == 503 then s503 = s503 + 1
  else sother = sother + 1 end
end
done = function(summary, latency, requests)
  local a, b, c, d = 0, 0, 0, 0
  for _, t in ipairs(threads) do
    a = a + t:get("s202"); b = b + t:get("s429"); c = c + t:get("s503"); d = d + t:get("sother")
  end
  io.write(string.format("statuses: 202=%d 429=%d 503=%d other=%d\n", a, b, c, d))
end
''')
