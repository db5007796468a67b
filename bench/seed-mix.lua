-- SPDX-License-Identifier: MIT
-- common.lua sits next to this script (wrk loads it as "@/path/to/script.lua").
local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or os.getenv("BENCH_DIR") or "bench"
package.path = here .. "/?.lua;" .. package.path
local c = require("common")
setup, done = c.setup, c.done
-- seed-mix: the seed design's own ratio, 250–500 orders/s in 2,500–5,000 req/s, i.e. about
-- 10 % order placement. The rest: product page 35, search 25, add to cart 15 (orders need
-- filled carts), view cart 5, order status 10.
c.track = true
response = c.response
function init(args) c.init_thread { users = true, products = true, search = true, orders = true } end
request = c.request_fn(c.mix {
    { 35, c.product_get },
    { 25, c.search },
    { 15, function() return c.add_to_cart() end },
    { 5, c.view_cart },
    { 10, function() return (c.place_order_or_add()) end },
    { 10, c.order_status },
})
