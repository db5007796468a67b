-- SPDX-License-Identifier: MIT
-- common.lua sits next to this script (wrk loads it as "@/path/to/script.lua").
local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or os.getenv("BENCH_DIR") or "bench"
package.path = here .. "/?.lua;" .. package.path
local c = require("common")
setup, done = c.setup, c.done
-- add-to-cart: POST /api/v1/cart/items {product_id, quantity: 1}; the users are spread
-- over the threads and taken round robin (10,000 distinct carts), each adding one of 4
-- well-stocked products (carts stay <= 4 lines).
function init(args) c.init_thread { users = true, products = true } end
request = c.request_fn(function() return c.add_to_cart() end)
