-- SPDX-License-Identifier: MIT
-- common.lua sits next to this script (wrk loads it as "@/path/to/script.lua").
local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or os.getenv("BENCH_DIR") or "bench"
package.path = here .. "/?.lua;" .. package.path
local c = require("common")
setup, done = c.setup, c.done
-- order-status: GET /api/v1/orders/{id} of orders made by place-order, with the owner's token.
function init(args) c.init_thread { users = true, orders = true } end
request = c.request_fn(c.order_status)
