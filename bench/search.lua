-- SPDX-License-Identifier: MIT
-- common.lua sits next to this script (wrk loads it as "@/path/to/script.lua").
local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or os.getenv("BENCH_DIR") or "bench"
package.path = here .. "/?.lua;" .. package.path
local c = require("common")
setup, done = c.setup, c.done
-- search: GET /api/v1/products?q=… with 1–3 words from real product names; half of the
-- queries add a filter (category, price range, in_stock + sort).
function init(args) c.init_thread { search = true } end
request = c.request_fn(c.search)
