-- SPDX-License-Identifier: MIT
-- common.lua sits next to this script (wrk loads it as "@/path/to/script.lua").
local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or os.getenv("BENCH_DIR") or "bench"
package.path = here .. "/?.lua;" .. package.path
local c = require("common")
setup, done = c.setup, c.done
-- place-order: POST /api/v1/orders with a fresh Idempotency-Key, for a user whose
-- add-to-cart has been answered (the cart must hold an item). Adds and orders therefore
-- alternate; the row reports orders only: orders/s and the latency of POST /orders alone
-- (measured in Lua per request via the echoed X-Request-Id), and errors of both kinds.
-- The ids of the orders made are appended to orders.txt for order-status.
c.track = true
response = c.response
function init(args) c.init_thread { users = true, products = true } end
request = c.request_fn(function() return (c.place_order_or_add()) end)
