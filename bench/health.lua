-- SPDX-License-Identifier: MIT
-- common.lua sits next to this script (wrk loads it as "@/path/to/script.lua").
local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or os.getenv("BENCH_DIR") or "bench"
package.path = here .. "/?.lua;" .. package.path
local c = require("common")
setup, done = c.setup, c.done
-- health: GET /health with wrk's static request (no request()/response() in Lua, so the
-- client costs as little as possible). The ceiling every other row is compared with.
wrk.path = "/health"
