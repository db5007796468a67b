-- SPDX-License-Identifier: MIT
package.path = (os.getenv("BENCH_DIR") or "bench") .. "/?.lua;" .. package.path
local c = require("common")
setup, done = c.setup, c.done
-- search: GET /api/v1/products?q=… with 1–3 words from real product names; half of the
-- queries add a filter (category, price range, in_stock + sort).
function init(args) c.init_thread { search = true } end
request = c.request_fn(c.search)
