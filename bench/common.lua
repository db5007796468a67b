-- SPDX-License-Identifier: MIT
-- common.lua — shared by every bench/*.lua wrk script (loaded with require "common").
--
-- wrk runs one Lua state per thread plus one for setup()/done(); each loads this module
-- separately. Inputs come from files that bench/run.sh prepares in $BENCH_WORK:
--   tokens.txt      one session token per line (user i = line i)
--   ids.txt         product ids, shuffled; the first BENCH_HOT (1,000) are the hot set
--   cart_ids.txt    products whose stock run.sh set very high (cart and order traffic)
--   names.txt       a sample of product names (search queries are taken from them)
--   categories.txt  category slugs
--   prices.txt      "low high" price bounds (minor units) seen in the catalog sample
--   orders.txt      "user_index order_id" lines, written by the place-order scenario
--
-- Every request that matters carries an X-Request-Id "<kind><thread>x<seq>"; the server
-- echoes it, so response() knows what the answer belongs to (wrk itself does not say which
-- connection or request a response is for). That gives per-kind status counts and latency
-- (CLOCK_MONOTONIC from request() to response(), via LuaJIT's ffi), and it drives the cart
-- state machine: a user is sent POST /orders only after an add-to-cart for that user has
-- been answered 200 and no other request that changes the cart is in flight.
local M = {}

local ffi = require("ffi")
ffi.cdef [[
typedef struct { long tv_sec; long tv_nsec; } bench_timespec;
int clock_gettime(int clk, bench_timespec *tp);
]]
local tsbuf = ffi.new("bench_timespec")
function M.now_us()
    ffi.C.clock_gettime(1, tsbuf) -- CLOCK_MONOTONIC
    return tonumber(tsbuf.tv_sec) * 1000000 + tonumber(tsbuf.tv_nsec) / 1000
end

local WORK = os.getenv("BENCH_WORK") or "."
M.WORK = WORK

local function read_lines(name, limit)
    local t = {}
    local f = io.open(WORK .. "/" .. name, "r")
    if not f then return t end
    for line in f:lines() do
        if line ~= "" then
            t[#t + 1] = line
            if limit and #t >= limit then break end
        end
    end
    f:close()
    return t
end
M.read_lines = read_lines

-- Kinds of request, one letter each (the X-Request-Id prefix).
M.KINDS = {
    h = "health", p = "product", s = "search", l = "listing", v = "view-cart",
    a = "add-to-cart", o = "place-order", g = "order-status",
}
local KIND_ORDER = { "h", "p", "s", "l", "v", "a", "o", "g" }

---------------------------------------------------------------------------------------------
-- main state: setup() hands each thread its number; done() merges the threads' counters.
---------------------------------------------------------------------------------------------
local threads = {}
function M.setup(thread)
    threads[#threads + 1] = thread
    thread:set("tid", #threads)
end

local function pct(sorted, p)
    local n = #sorted
    if n == 0 then return 0 end
    local i = math.ceil(n * p / 100)
    if i < 1 then i = 1 end
    if i > n then i = n end
    return sorted[i]
end

-- Prints machine-readable lines that run.sh parses:
--   BENCH_RESULT requests= duration_us= p50_us= p90_us= p99_us= max_us= sock_errors= status_errors=
--   BENCH_KIND kind= n= ok= err= p50_us= p90_us= p99_us=     (one per kind seen)
--   BENCH_STATUS 200=… 201=… …
function M.done(summary, latency, requests)
    local e = summary.errors
    local sock = e.connect + e.read + e.write + e.timeout
    io.write(string.format(
        "BENCH_RESULT requests=%d duration_us=%d p50_us=%d p90_us=%d p99_us=%d max_us=%d " ..
        "sock_errors=%d status_errors=%d connect=%d read=%d write=%d timeout=%d\n",
        summary.requests, summary.duration, latency:percentile(50), latency:percentile(90),
        latency:percentile(99), latency.max, sock, e.status, e.connect, e.read, e.write,
        e.timeout))
    local lat, n, ok, status = {}, {}, {}, {}
    for _, t in ipairs(threads) do
        -- wrk's thread:get copies flat tables only (nested ones crash it): one array per kind.
        for _, k in ipairs(KIND_ORDER) do
            local arr = t:get("lat_" .. k)
            if arr then
                local dst = lat[k] or {}
                lat[k] = dst
                for i = 1, #arr do dst[#dst + 1] = arr[i] end
            end
        end
        for k, v in pairs(t:get("n_by_kind") or {}) do n[k] = (n[k] or 0) + v end
        for k, v in pairs(t:get("ok_by_kind") or {}) do ok[k] = (ok[k] or 0) + v end
        for k, v in pairs(t:get("status_count") or {}) do status[k] = (status[k] or 0) + v end
    end
    for _, k in ipairs(KIND_ORDER) do
        if n[k] then
            local arr = lat[k] or {}
            table.sort(arr)
            io.write(string.format("BENCH_KIND kind=%s n=%d ok=%d err=%d p50_us=%d p90_us=%d p99_us=%d\n",
                M.KINDS[k], n[k], ok[k] or 0, n[k] - (ok[k] or 0), pct(arr, 50), pct(arr, 90),
                pct(arr, 99)))
        end
    end
    local codes = {}
    for code, _ in pairs(status) do codes[#codes + 1] = code end
    table.sort(codes)
    local parts = {}
    for _, code in ipairs(codes) do parts[#parts + 1] = code .. "=" .. status[code] end
    io.write("BENCH_STATUS " .. table.concat(parts, " ") .. "\n")
end

---------------------------------------------------------------------------------------------
-- thread states
---------------------------------------------------------------------------------------------
-- Globals read by done() through thread:get (they must be globals of the thread's state, and
-- flat tables): lat_<kind> arrays of microseconds, counters by kind and by status.
n_by_kind, ok_by_kind, status_count = {}, {}, {}
-- The orders made go straight from each thread to BENCH_ORDERS_OUT (one line-buffered
-- O_APPEND write per order), not through thread:get: Debian's wrk 4.1.0 handed done() a
-- corrupted string now and then from a thread's table of them ("38814P\xef..." in
-- orders.txt: one order-status request in 1,400 was then a 400).
local orders_f

local seq = 0
local pend_t, pend_k, pend_u = {}, {}, {}
local pend_del = {}           -- requests of kind "a" that are a line's DELETE (add_to_cart)

local tokens, auth = {}, {}
local my_users = {}          -- user indexes this thread drives
local ids, hot_n = {}, 0
local cart_ids = {}
local names, categories = {}, {}
local price_lo, price_hi = 0, 100000
local order_list = {}        -- {user, id} pairs for order-status

-- cart state per user: pending[u] = requests that change u's cart in flight,
-- ordering[u] = a POST /orders in flight, ready queue = users whose cart holds an item.
local pending, ordering, queued = {}, {}, {}
local ready, ready_head, ready_tail = {}, 1, 0
local add_cursor = 0

function M.init_thread(opts)
    opts = opts or {}
    local t = tid or 1
    local nthreads = tonumber(os.getenv("BENCH_THREADS") or "2")
    math.randomseed(os.time() * 1000 + t * 7919)
    for i = 1, 50 do math.random() end
    if opts.users then
        tokens = read_lines("tokens.txt")
        for i = 1, #tokens do
            auth[i] = "Bearer " .. tokens[i]
            if (i - 1) % nthreads == t - 1 then my_users[#my_users + 1] = i end
        end
        add_cursor = math.random(#my_users > 0 and #my_users or 1) - 1
    end
    if opts.products then
        ids = read_lines("ids.txt")
        hot_n = math.min(tonumber(os.getenv("BENCH_HOT") or "1000"), #ids)
        cart_ids = read_lines("cart_ids.txt")
        if #cart_ids == 0 then cart_ids = { ids[1] } end
    end
    if opts.search then
        names = read_lines("names.txt")
        categories = read_lines("categories.txt")
        local p = read_lines("prices.txt")
        if p[1] then
            local lo, hi = p[1]:match("(%d+)%s+(%d+)")
            price_lo, price_hi = tonumber(lo) or 0, tonumber(hi) or 100000
        end
    end
    if opts.orders then
        for _, line in ipairs(read_lines("orders.txt")) do
            local u, id = line:match("^(%d+)%s+(%d+)")
            if u then order_list[#order_list + 1] = { tonumber(u), id } end
        end
    end
end

function M.have(what)
    if what == "users" then return #my_users > 0 end
    if what == "products" then return #ids > 0 end
    if what == "orders" then return #order_list > 0 end
    return true
end

-- Scenarios that look at responses set M.track (and define response()); the others send
-- untagged requests and rely on wrk's own counters, which keeps the client cheap.
M.track = false

local function tag(kind, user)
    if not M.track then return nil end
    seq = seq + 1
    local rid = kind .. (tid or 1) .. "x" .. seq
    pend_t[rid] = M.now_us()
    pend_k[rid] = kind
    if user then pend_u[rid] = user end
    return rid
end

-- One response: per-kind counts and latency; cart state; order ids.
function M.response(status, headers, body)
    status_count[status] = (status_count[status] or 0) + 1
    local rid = headers["X-Request-Id"] or headers["x-request-id"]
    if not rid then return end
    local t0 = pend_t[rid]
    if not t0 then return end
    local kind, u, del = pend_k[rid], pend_u[rid], pend_del[rid]
    pend_t[rid], pend_k[rid], pend_u[rid], pend_del[rid] = nil, nil, nil, nil
    local arr = _G["lat_" .. kind]
    if not arr then arr = {}; _G["lat_" .. kind] = arr end
    arr[#arr + 1] = M.now_us() - t0
    n_by_kind[kind] = (n_by_kind[kind] or 0) + 1
    local good = status >= 200 and status < 400
    if good then ok_by_kind[kind] = (ok_by_kind[kind] or 0) + 1 end
    if kind == "a" and u then
        pending[u] = (pending[u] or 1) - 1
        -- (a line's DELETE may leave the cart empty: that user is not sent to check out)
        if good and not del and not ordering[u] and not queued[u] then
            queued[u] = true
            ready_tail = ready_tail + 1
            ready[ready_tail] = u
        end
    elseif kind == "o" and u then
        ordering[u] = nil
        if good then M.cart_emptied(u) end
        if good and body and orders_f == nil then
            local out = os.getenv("BENCH_ORDERS_OUT")
            orders_f = out and io.open(out, "a") or false
            if orders_f then orders_f:setvbuf("line") end
        end
        if good and body and orders_f then
            local id = body:match('"id"%s*:%s*"?(%d+)')
            if id then orders_f:write(u, " ", id, "\n") end
        end
    end
end

---------------------------------------------------------------------------------------------
-- request builders (each returns one HTTP request as a string)
---------------------------------------------------------------------------------------------
function M.product_id()
    if #ids == 0 then return "1" end
    if hot_n > 0 and (math.random() < 0.9 or #ids <= hot_n) then
        return ids[math.random(hot_n)]
    end
    return ids[hot_n + math.random(#ids - hot_n)]
end

function M.health()
    return wrk.format("GET", "/health", { ["X-Request-Id"] = tag("h") })
end

function M.product_get()
    return wrk.format("GET", "/api/v1/products/" .. M.product_id(), { ["X-Request-Id"] = tag("p") })
end

local function urlenc(s)
    return (s:gsub("[^%w%-_%.~]", function(c)
        if c == " " then return "+" end
        return string.format("%%%02X", string.byte(c))
    end))
end

-- 1–3 words taken from one real product name (so queries look like what shoppers type and
-- mostly match something); half of them with filters.
function M.search_path()
    local words = {}
    if #names > 0 then
        local name = names[math.random(#names)]
        for w in name:gmatch("[%a][%a]+") do
            if #w >= 3 then words[#words + 1] = w:lower() end
        end
    end
    if #words == 0 then words = { "shirt" } end
    local want = math.random(3)
    local start = math.random(#words)
    local q = {}
    for i = 0, want - 1 do
        local w = words[((start - 1 + i) % #words) + 1]
        if i == 0 or w ~= q[#q] then q[#q + 1] = w end
    end
    local path = "/api/v1/products?q=" .. urlenc(table.concat(q, " "))
    if math.random() < 0.5 then
        local r = math.random(4)
        if r == 1 and #categories > 0 then
            path = path .. "&category=" .. urlenc(categories[math.random(#categories)])
        elseif r == 2 then
            local lo = math.random(price_lo, math.max(price_lo, math.floor((price_lo + price_hi) / 2)))
            path = path .. "&min_price=" .. lo .. "&max_price=" .. math.random(lo, math.max(lo, price_hi))
        elseif r == 3 then
            path = path .. "&in_stock=true&sort=price_asc"
        else
            if #categories > 0 then
                path = path .. "&category=" .. urlenc(categories[math.random(#categories)])
            end
            path = path .. "&max_price=" .. price_hi .. "&sort=price_desc"
        end
    end
    return path
end

function M.search()
    return wrk.format("GET", M.search_path(), { ["X-Request-Id"] = tag("s") })
end

function M.listing()
    local path = "/api/v1/products?limit=20"
    if #categories > 0 and math.random() < 0.7 then
        path = path .. "&category=" .. urlenc(categories[math.random(#categories)])
    end
    return wrk.format("GET", path, { ["X-Request-Id"] = tag("l") })
end

local function some_user()
    return my_users[math.random(#my_users)]
end

function M.view_cart()
    local u = some_user()
    return wrk.format("GET", "/api/v1/cart", { ["Authorization"] = auth[u], ["X-Request-Id"] = tag("v") })
end

-- The next user (round robin over this thread's users) with nothing in flight and, when
-- orders are tracked, not already waiting to order (adding to a waiting user's cart would
-- only delay that order). Each user adds only from a window of 4 of the stocked products,
-- so carts stay at most 4 lines long.
local function next_add_user()
    local n = #my_users
    for _ = 1, n do
        add_cursor = add_cursor % n + 1
        local u = my_users[add_cursor]
        if not M.track or (not ordering[u] and not queued[u] and (pending[u] or 0) == 0) then
            return u
        end
    end
    return my_users[math.random(n)]
end

-- A cart line holds at most 99 of a product (the API answers 400 beyond that), and a fast
-- server reaches that in well under a second with few users: every 45th add a user sends
-- for one line (counted in this wrk process) is a DELETE of that line instead, also a cart
-- write answered 200. Carts the previous row left (up to 44 a line) stay under the limit.
local LINE_RESET = 45
local line_adds = {}
function M.cart_emptied(u)
    for slot = 0, 3 do line_adds[u * 4 + slot] = nil end
end

function M.add_to_cart(u)
    u = u or next_add_user()
    if M.track then pending[u] = (pending[u] or 0) + 1 end
    local slot = math.random(0, 3)
    local pid = cart_ids[((u * 7 + slot) % #cart_ids) + 1]
    local key = u * 4 + slot
    local n = (line_adds[key] or 0) + 1
    if n >= LINE_RESET then
        line_adds[key] = 0
        local rid = tag("a", u)
        if rid then pend_del[rid] = true end
        return wrk.format("DELETE", "/api/v1/cart/items/" .. pid, {
            ["Authorization"] = auth[u],
            ["X-Request-Id"] = rid,
        })
    end
    line_adds[key] = n
    return wrk.format("POST", "/api/v1/cart/items", {
        ["Authorization"] = auth[u],
        ["Content-Type"] = "application/json",
        ["X-Request-Id"] = tag("a", u),
    }, '{"product_id":"' .. pid .. '","quantity":1}')
end

local ORDER_BODY = '{"shipping_address":{"name":"Bench User","line1":"1 Load Street",' ..
    '"city":"Springfield","postal_code":"12345","country":"US"},' ..
    '"payment":{"card_number":"4242424242424242","exp_month":12,"exp_year":2035,"cvc":"123"},' ..
    '"shipping_method":"standard"}'

-- A user whose cart is known to hold an item and has nothing in flight; nil if none.
local function pop_ready()
    while ready_head <= ready_tail do
        local u = ready[ready_head]
        ready[ready_head] = nil
        ready_head = ready_head + 1
        queued[u] = nil
        if (pending[u] or 0) == 0 and not ordering[u] then return u end
    end
    return nil
end

local key_seq = 0
-- POST /orders for a user with a filled cart, or (when none is ready yet) an add-to-cart.
-- Returns the request and whether it is an order.
function M.place_order_or_add()
    local u = pop_ready()
    if not u then return M.add_to_cart(), false end
    ordering[u] = true
    key_seq = key_seq + 1
    local key = string.format("bench-%d-%d-%d-%d", os.time(), tid or 1, key_seq, math.random(1e9))
    return wrk.format("POST", "/api/v1/orders", {
        ["Authorization"] = auth[u],
        ["Content-Type"] = "application/json",
        ["Idempotency-Key"] = key,
        ["X-Request-Id"] = tag("o", u),
    }, ORDER_BODY), true
end

function M.order_status()
    if #order_list == 0 then return M.health() end
    local o = order_list[math.random(#order_list)]
    return wrk.format("GET", "/api/v1/orders/" .. o[2], {
        ["Authorization"] = auth[o[1]],
        ["X-Request-Id"] = tag("g"),
    })
end

-- wrk calls request() once on thread 1 before the run to count pipelined requests, and
-- throws that request away: answer it with an untracked GET /health so no cart state or
-- counter waits for a response that never comes.
function M.request_fn(fn)
    local first = true
    return function()
        if first then
            first = false
            if (tid or 1) == 1 then return wrk.format("GET", "/health") end
        end
        return fn()
    end
end

-- Weighted choice over {weight, fn} pairs.
function M.mix(entries)
    local total = 0
    for _, e in ipairs(entries) do total = total + e[1] end
    return function()
        local r = math.random() * total
        for _, e in ipairs(entries) do
            r = r - e[1]
            if r < 0 then return e[2]() end
        end
        return entries[#entries][2]()
    end
end

return M
