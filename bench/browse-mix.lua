-- SPDX-License-Identifier: MIT
-- common.lua sits next to this script (wrk loads it as "@/path/to/script.lua").
local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or os.getenv("BENCH_DIR") or "bench"
package.path = here .. "/?.lua;" .. package.path
local c = require("common")
setup, done = c.setup, c.done
-- browse-mix: the task weights of Online Boutique's load generator (locustfile.py):
-- browse product 10, view cart 3, add to cart 2, home/listing 1, checkout 1.
-- "checkout" is POST /api/v1/orders for a user with a filled cart (an add when none is ready).
c.track = true
response = c.response
function init(args) c.init_thread { users = true, products = true, search = true } end
request = c.request_fn(c.mix {
    { 10, c.product_get },
    { 3, c.view_cart },
    { 2, function() return c.add_to_cart() end },
    { 1, c.listing },
    { 1, function() return (c.place_order_or_add()) end },
})
