-- SPDX-License-Identifier: MIT
package.path = (os.getenv("BENCH_DIR") or "bench") .. "/?.lua;" .. package.path
local c = require("common")
setup, done = c.setup, c.done
-- health: GET /health with wrk's static request (no request()/response() in Lua, so the
-- client costs as little as possible). The ceiling every other row is compared with.
wrk.path = "/health"
