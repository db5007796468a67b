-- SPDX-License-Identifier: MIT
-- common.lua sits next to this script (wrk loads it as "@/path/to/script.lua").
local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or os.getenv("BENCH_DIR") or "bench"
package.path = here .. "/?.lua;" .. package.path
local c = require("common")
setup, done = c.setup, c.done
-- product-get: GET /api/v1/products/{id}; 90 % from a hot set of 1,000 ids, 10 % uniformly
-- from the rest of the seeded catalog.
function init(args) c.init_thread { products = true } end
request = c.request_fn(c.product_get)
