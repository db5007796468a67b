// SPDX-License-Identifier: MIT
// contract.mjs — the acceptance suite: the live server checked against its own OpenAPI
// document by a third-party validator. Stoplight Prism in proxy mode sits between this
// client and the server and validates every request and response against /openapi.json.
// The test walks a shopper's journey, the checkout invariants (a paid order takes its stock
// exactly once, a replayed key answers the same order, a declined or out-of-stock checkout
// changes no stock, totals add up) and an operator's flows (catalog, stock, shipment,
// reports), including error answers; it checks each status and fails if Prism reports any
// response that does not match the document.
//
// usage: node tests/contract/contract.mjs BIN PRISM_BIN
//          starts `BIN serve` on SQLite in a scratch directory (embedded: every service in
//          one process) with an admin account it creates
//        node tests/contract/contract.mjs BIN PRISM_BIN --base-url URL --admin-email EMAIL
//            --admin-password-file FILE
//          the same suite against a running deployment (tests/scaleout/run.sh: the
//          gateway of `make scaleout`), with an admin account that exists there; the names
//          it creates are unique per run, so it can run again against the same data
import { spawn, execFileSync } from 'node:child_process';
import { mkdtempSync, writeFileSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import net from 'node:net';

const [bin, prismBin, ...rest] = process.argv.slice(2);
const opts = {};
for (let i = 0; i < rest.length; i += 2) {
  const k = rest[i], v = rest[i + 1];
  if (!['--base-url', '--admin-email', '--admin-password-file'].includes(k) || v === undefined) {
    opts.bad = k;
    break;
  }
  opts[k.slice(2)] = v;
}
const remote = opts['base-url'];
if (!bin || !prismBin || opts.bad || (remote && (!opts['admin-email'] || !opts['admin-password-file']))) {
  console.error('usage: node contract.mjs BIN PRISM_BIN [--base-url URL --admin-email EMAIL --admin-password-file FILE]');
  process.exit(2);
}

const freePort = () => new Promise((resolve, reject) => {
  const s = net.createServer();
  s.listen(0, '127.0.0.1', () => { const { port } = s.address(); s.close(() => resolve(port)); });
  s.on('error', reject);
});
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

const dir = mkdtempSync(join(tmpdir(), 'emp-contract-'));
const dataDir = join(dir, 'data');
const env = { ...process.env, EMPORIUM_RATE_LIMITS: 'off', EMPORIUM_DATA_DIR: dataDir };
delete env.EMPORIUM_DATABASE_URL;
const appPort = await freePort();
const prismPort = await freePort();
const target = remote || `http://127.0.0.1:${appPort}`;
// unique per run (a deployment keeps its data between runs)
const run = remote ? `${Date.now().toString(36)}${process.pid.toString(36)}` : '1';
const adminEmail = remote ? opts['admin-email'] : 'ops@example.com';
const adminPassword = remote ? readFileSync(opts['admin-password-file'], 'utf8').replace(/\n$/, '') : 'operator password';
let server, prism, prismLog = '', failures = 0;

function fail(msg) { failures++; console.error(`FAIL ${msg}`); }
function check(cond, msg) { if (!cond) fail(msg); }
const lineQty = (cart, pid) => (cart?.items || []).find((l) => l.product_id === pid)?.quantity ?? 0;
// until(what, fn): fn() until it answers true, 30 s at most (a deployment's services may
// apply a change a moment after the answer that caused it)
async function until(what, fn) {
  const end = Date.now() + 30000;
  let last;
  while (Date.now() < end) {
    last = await fn();
    if (last === true) return;
    await sleep(200);
  }
  fail(`${what} (last: ${JSON.stringify(last)})`);
}

async function waitFor(url, ms) {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    try { const r = await fetch(url); if (r.status < 500) return; } catch { /* not yet */ }
    await sleep(100);
  }
  throw new Error(`${url} did not answer within ${ms} ms`);
}

const P = `http://127.0.0.1:${prismPort}`;
async function call(method, path, { token, body, headers = {}, expect } = {}) {
  const h = { ...headers };
  if (token) h.Authorization = `Bearer ${token}`;
  if (body !== undefined) h['Content-Type'] = 'application/json';
  const r = await fetch(P + path, { method, headers: h, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await r.text();
  let json = null;
  try { json = JSON.parse(text); } catch { /* not JSON */ }
  if (expect !== undefined && r.status !== expect)
    fail(`${method} ${path}: expected ${expect}, got ${r.status} ${text.slice(0, 300)}`);
  return { status: r.status, json, headers: r.headers };
}

try {
  // The document under test is the one the binary serves.
  const spec = join(dir, 'openapi.json');
  writeFileSync(spec, execFileSync(bin, ['openapi']));
  if (!remote) {
    execFileSync(bin, ['migrate', '--data-dir', dataDir], { env, stdio: 'ignore' });
    writeFileSync(join(dir, 'pw'), `${adminPassword}\n`);
    execFileSync(bin, ['user', 'create', '--email', adminEmail, '--password-file', join(dir, 'pw'),
      '--role', 'admin', '--data-dir', dataDir], { env, stdio: 'ignore' });
    server = spawn(bin, ['serve', '--listen', `127.0.0.1:${appPort}`, '--data-dir', dataDir], { env, stdio: 'ignore' });
  }
  await waitFor(`${target}/health`, 30000);
  prism = spawn(prismBin, ['proxy', spec, target, '--port', String(prismPort), '--host', '127.0.0.1'],
    { stdio: ['ignore', 'pipe', 'pipe'] });
  prism.stdout.on('data', (d) => { prismLog += d; });
  prism.stderr.on('data', (d) => { prismLog += d; });
  await waitFor(`${P}/health`, 60000);

  // operations
  await call('GET', '/health', { expect: 200 });
  await call('GET', '/ready', { expect: 200 });
  await call('GET', '/openapi.json', { expect: 200 });

  // identity
  const shopperEmail = `shopper-${run}@example.com`;
  const reg = await call('POST', '/api/v1/auth/register', { body: { email: shopperEmail, password: 'shopper password', name: 'Shopper' }, expect: 201 });
  await call('POST', '/api/v1/auth/register', { body: { email: shopperEmail, password: 'shopper password', name: 'Again' }, expect: 409 });
  await call('POST', '/api/v1/auth/login', { body: { email: shopperEmail, password: 'wrong password' }, expect: 401 });
  const login = await call('POST', '/api/v1/auth/login', { body: { email: shopperEmail, password: 'shopper password' }, expect: 200 });
  const token = login.json?.token;
  await call('GET', '/api/v1/users/me', { token, expect: 200 });
  await call('GET', '/api/v1/users/me', { expect: 401 });
  const admin = (await call('POST', '/api/v1/auth/login', { body: { email: adminEmail, password: adminPassword }, expect: 200 })).json?.token;

  // catalog
  const list = await call('GET', '/api/v1/products?limit=5', { expect: 200 });
  const product = list.json?.items?.[0];
  if (!product) throw new Error('the demo catalog is empty');
  const next = list.json.next_cursor;
  if (next) await call('GET', `/api/v1/products?limit=5&cursor=${encodeURIComponent(next)}`, { expect: 200 });
  await call('GET', '/api/v1/products?q=lamp&sort=relevance', { expect: 200 });
  await call('GET', '/api/v1/products?sort=price_asc&min_price=1000&max_price=5000&in_stock=true', { expect: 200 });
  await call('GET', '/api/v1/products?limit=0', { expect: 400 });
  const one = await call('GET', `/api/v1/products/${product.id}`, { expect: 200 });
  const etag = one.headers.get('etag');
  if (etag) await call('GET', `/api/v1/products/${product.id}`, { headers: { 'If-None-Match': etag }, expect: 304 });
  await call('GET', '/api/v1/products/999999999999', { expect: 404 });
  await call('GET', '/api/v1/categories', { expect: 200 });
  await call('GET', `/api/v1/products/${product.id}/recommendations`, { expect: 200 });
  const created = await call('POST', '/api/v1/products', {
    token: admin, expect: 201,
    body: { sku: `CONTRACT-${run}`, name: 'Contract Lamp', description: 'A lamp for the contract test', category: 'lighting', price: { amount: 2500, currency: 'USD' }, image_url: '/images/contract.jpg' },
  });
  const pid = created.json?.id;
  await call('POST', '/api/v1/products', { token, body: { sku: 'X' }, expect: 403 });
  await call('PATCH', `/api/v1/products/${pid}`, { token: admin, body: { price: { amount: 2600, currency: 'USD' } }, expect: 200 });
  await call('PUT', `/api/v1/inventory/${pid}`, { token: admin, body: { available: 10 }, expect: 200 });
  await call('GET', `/api/v1/inventory/${pid}`, { token: admin, expect: 200 });
  // stockIs(available, reserved, what): the inventory's level of the new product reaches it
  const stockIs = (available, reserved, what) => until(`stock of the new product ${what}: ${available} available, ${reserved} reserved`, async () => {
    const r = await call('GET', `/api/v1/inventory/${pid}`, { token: admin, expect: 200 });
    return (r.json?.available === available && r.json?.reserved === reserved) || r.json;
  });
  await stockIs(10, 0, 'after the operator set it');
  await call('GET', `/api/v1/inventory/${pid}`, { token, expect: 403 });

  // guest cart, then the shopper's cart
  const guest = await call('POST', '/api/v1/cart/items', { body: { product_id: pid, quantity: 1 }, expect: 200 });
  const cartToken = guest.headers.get('x-cart-token');
  if (!cartToken) fail('a guest cart answer carries X-Cart-Token');
  await call('GET', '/api/v1/cart', { headers: { 'X-Cart-Token': cartToken }, expect: 200 });
  // logging in with the guest's cart token merges the guest's lines into the account's cart
  await call('POST', '/api/v1/auth/login', { headers: { 'X-Cart-Token': cartToken }, body: { email: shopperEmail, password: 'shopper password' }, expect: 200 });
  const merged = await call('GET', '/api/v1/cart', { token, expect: 200 });
  check(lineQty(merged.json, pid) === 1, `the guest's line is merged at login: ${JSON.stringify(merged.json)}`);
  const added = await call('POST', '/api/v1/cart/items', { token, body: { product_id: pid, quantity: 2 }, expect: 200 });
  check(lineQty(added.json, pid) === 3, `adding to a line adds its quantity: ${JSON.stringify(added.json)}`);
  await call('PATCH', `/api/v1/cart/items/${pid}`, { token, body: { quantity: 3 }, expect: 200 });
  await call('POST', '/api/v1/cart/items', { token, body: { product_id: pid, quantity: 0 }, expect: 400 });
  await call('GET', '/api/v1/cart', { token, expect: 200 });

  // shipping quote and checkout
  const address = { name: 'Shopper', line1: '1 Main Street', city: 'Springfield', postal_code: '12345', country: 'US' };
  await call('POST', '/api/v1/shipping/quotes', { body: { items: [{ product_id: pid, quantity: 3 }], address }, expect: 200 });
  const card = (n) => ({ card_number: n, exp_month: 12, exp_year: 2040, cvc: '123' });
  const order = { shipping_address: address, payment: card('4242424242424242'), shipping_method: 'standard' };
  await call('POST', '/api/v1/orders', { token, body: order, expect: 400 }); // no Idempotency-Key
  const placed = await call('POST', '/api/v1/orders', { token, body: order, headers: { 'Idempotency-Key': `contract-1-${run}` }, expect: 201 });
  const oid = placed.json?.id;
  // checkout invariants: paid, the totals add up, the stock taken once, the cart emptied
  const o = placed.json || {};
  check(o.status === 'paid', `the order is paid: ${o.status}`);
  const sum = (o.items || []).reduce((a, l) => a + l.line_total.amount, 0);
  check((o.items || []).every((l) => l.line_total.amount === l.unit_price.amount * l.quantity)
    && o.subtotal?.amount === sum && o.total?.amount === sum + (o.shipping?.amount ?? -1)
    && sum === 3 * 2600, `line totals, subtotal (3 × 2600) and total (+ shipping) add up: ${JSON.stringify(o)}`);
  await stockIs(7, 0, 'after the paid order of 3');
  check((await call('GET', '/api/v1/cart', { token, expect: 200 })).json?.item_count === 0, 'the cart is empty after the order');
  const replay = await call('POST', '/api/v1/orders', { token, body: order, headers: { 'Idempotency-Key': `contract-1-${run}` }, expect: 201 });
  check(replay.json?.id === oid, `the same key answers the same order (${oid}): ${replay.json?.id}`);
  await stockIs(7, 0, 'after the replayed key (taken once)');
  await call('POST', '/api/v1/orders', { token, body: { ...order, shipping_method: 'express' }, headers: { 'Idempotency-Key': `contract-1-${run}` }, expect: 409 });
  await call('GET', `/api/v1/orders/${oid}`, { token, expect: 200 });
  await call('GET', '/api/v1/orders', { token, expect: 200 });
  await call('GET', `/api/v1/orders/${oid}`, { expect: 401 });
  // a declined card: 402 with the failed order
  await call('POST', '/api/v1/cart/items', { token, body: { product_id: pid, quantity: 1 }, expect: 200 });
  await call('POST', '/api/v1/orders', { token, body: { ...order, payment: card('4000000000000002') }, headers: { 'Idempotency-Key': `contract-2-${run}` }, expect: 402 });
  await stockIs(7, 0, 'after a declined card (nothing held)');
  // out of stock: 409 naming the product
  // (the declined order left its line in the cart)
  await call('PATCH', `/api/v1/cart/items/${pid}`, { token, body: { quantity: 50 }, expect: 200 });
  await call('POST', '/api/v1/orders', { token, body: order, headers: { 'Idempotency-Key': `contract-3-${run}` }, expect: 409 });
  await stockIs(7, 0, 'after an out-of-stock checkout (nothing held)');
  check(lineQty((await call('GET', '/api/v1/cart', { token, expect: 200 })).json, pid) === 50, 'a refused checkout keeps the cart');
  await call('DELETE', `/api/v1/cart/items/${pid}`, { token, expect: 200 });
  // operator: shipment moves the order on; cancel after shipping is refused
  const detail = await call('GET', `/api/v1/orders/${oid}`, { token: admin, expect: 200 });
  const shipmentId = detail.json?.shipment?.id;
  if (shipmentId) {
    await call('POST', `/api/v1/shipments/${shipmentId}/events`, { token: admin, body: { status: 'in_transit' }, expect: 200 });
    await call('POST', `/api/v1/orders/${oid}/cancel`, { token, expect: 409 });
  } else {
    fail('the paid order has no shipment id');
  }
  await call('GET', '/api/v1/admin/orders?status=paid', { token: admin, expect: 200 });
  await call('GET', '/api/v1/admin/analytics/sales?group_by=category', { token: admin, expect: 200 });
  await call('GET', '/api/v1/admin/analytics/sales?group_by=week', { token: admin, expect: 400 });
  await call('POST', '/api/v1/auth/logout', { token, expect: 204 });
  await call('GET', '/api/v1/users/me', { token, expect: 401 });
} catch (e) {
  fail(e.stack || String(e));
} finally {
  if (prism) prism.kill('SIGTERM');
  let code = null;
  if (server) {
    const exited = new Promise((r) => server.on('exit', (c) => r(c)));
    server.kill('SIGTERM');
    code = await Promise.race([exited, sleep(30000).then(() => 'timeout')]);
    if (code !== 0) fail(`server exit status ${code} after SIGTERM`);
  }
  await sleep(200);
  const violations = prismLog.split('\n').filter((l) => l.includes('Violation: response'));
  for (const v of violations) fail(`prism: ${v.replace(/^.*Violation: /, '')}`);
  rmSync(dir, { recursive: true, force: true });
  console.log(failures ? `contract: ${failures} failure(s)` : 'contract: every response matched the OpenAPI document');
  process.exit(failures ? 1 : 0);
}
