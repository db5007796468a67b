// SPDX-License-Identifier: MIT
// admin.js — the back office: sales charts (SVG drawn here), products (create, edit, price,
// stock, hide), orders with their history, events and shipment, and the fraud review queue
// (orders on_hold: why the rules held them, approve or reject). Needs the admin role; the
// API enforces it, this page only asks for a sign-in first.

function nav() {
  const u = store.user;
  const links = [['/admin/', 'Sales'], ['/admin/products', 'Products'], ['/admin/orders', 'Orders'], ['/admin/review', 'Review']];
  const here = location.pathname.replace(/\/$/, '') || '/admin';
  setChildren(document.getElementById('admin-nav'),
    u && u.role === 'admin' ? h('span', { class: 'tabs' }, links.map(([href, t]) => {
      const base = href.replace(/\/$/, '');
      const cur = here === base || (base !== '/admin' && here.startsWith(base + '/'));
      return h('a', { href, 'aria-current': cur ? 'page' : null }, t);
    })) : null,
    h('a', { href: '/' }, 'Storefront'),
    u ? h('button', { type: 'button', class: 'linklike', onclick: signOutAdmin }, 'Sign out') : null);
}
async function signOutAdmin() {
  await api('POST', '/auth/logout', undefined, { noCart: true, cache: 'no-cache' });
  store.token = null;
  store.user = null;
  nav();
  go('/admin/');
}

// Every view goes through this: signed in as an admin, or a sign-in form.
async function needAdmin() {
  if (store.token) {
    const r = await api('GET', '/users/me', undefined, { noCart: true, cache: 'no-cache' });
    if (r.ok) store.user = r.data;
  }
  nav();
  const u = store.user;
  if (store.token && u && u.role === 'admin') return true;
  const form = h('form', { class: 'auth', novalidate: true },
    field('Email', { name: 'email', type: 'email', autocomplete: 'username', required: true }),
    field('Password', { name: 'password', type: 'password', autocomplete: 'current-password', required: true }),
    h('button', { type: 'submit', class: 'btn' }, 'Sign in'));
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    clearErrors(form);
    const f = Object.fromEntries(new FormData(form));
    const r = await api('POST', '/auth/login', { email: f.email.trim(), password: f.password }, { noCart: true, keepToken: true });
    if (!r.ok) { formError(form, r.status === 401 ? 'The email or password is not right.' : r.error.message); return; }
    store.token = r.data.token;
    store.user = r.data.user;
    if (r.data.user.role !== 'admin') { formError(form, 'This account is not an administrator.'); nav(); return; }
    show.moved = true;
    render();
  });
  show('Sign in', h('h1', {}, 'Back office sign in'),
    store.token && u && u.role !== 'admin' ? alertBox('You are signed in as ' + u.email + ', which is not an administrator account.') : null,
    form);
  return false;
}

// --- sales ---
const isoDay = (d) => d.toISOString().slice(0, 10);
function barChart(title, rows, label, opts = {}) {
  // rows: [{label, value, text}] drawn as vertical bars (by day) or horizontal bars.
  const horizontal = !!opts.horizontal;
  const max = Math.max(1, ...rows.map((r) => r.value));
  const W = 720, rowH = 26;
  const H = horizontal ? 30 + rows.length * rowH : 260;
  const svg = s('svg', { viewBox: `0 0 ${W} ${H}`, class: 'chart', role: 'img', 'aria-labelledby': opts.id + '-t' });
  svg.append(s('title', { id: opts.id + '-t' }, title));
  if (!rows.length) {
    svg.append(s('text', { x: W / 2, y: H / 2, 'text-anchor': 'middle' }, 'No sales in this period'));
    return svg;
  }
  if (horizontal) {
    const left = 150, right = 110;
    rows.forEach((r, i) => {
      const y = 15 + i * rowH;
      const w = Math.max(1, (r.value / max) * (W - left - right));
      svg.append(s('text', { x: left - 8, y: y + 14, 'text-anchor': 'end' }, r.label),
        s('rect', { class: 'bar', x: left, y: y + 2, width: w, height: rowH - 8, rx: 3 }),
        s('text', { x: left + w + 6, y: y + 14 }, r.text));
    });
  } else {
    const left = 60, bottom = 40, top = 15, plotH = H - top - bottom, plotW = W - left - 10;
    for (let k = 0; k <= 4; k++) {
      const y = top + plotH - (k / 4) * plotH;
      svg.append(s('line', { class: 'grid-line', x1: left, x2: W - 10, y1: y, y2: y }),
        s('text', { x: left - 6, y: y + 4, 'text-anchor': 'end' }, opts.tick((k / 4) * max)));
    }
    const bw = plotW / rows.length;
    rows.forEach((r, i) => {
      const bh = (r.value / max) * plotH;
      const x = left + i * bw;
      const bar = s('rect', { class: 'bar', x: x + bw * 0.15, y: top + plotH - bh, width: Math.max(1, bw * 0.7), height: Math.max(0, bh), rx: 2 });
      bar.append(s('title', {}, r.label + ': ' + r.text));
      svg.append(bar);
      const every = Math.ceil(rows.length / 8);
      if (i % every === 0) svg.append(s('text', { x: x + bw / 2, y: H - bottom + 16, 'text-anchor': 'middle' }, r.label.slice(5)));
    });
    svg.append(s('line', { class: 'axis', x1: left, x2: W - 10, y1: top + plotH, y2: top + plotH }));
  }
  return svg;
}
function dataTable(caption, head, rows) {
  return h('details', {}, h('summary', {}, 'Show the numbers: ' + caption),
    h('table', { class: 'lines' }, h('caption', { class: 'vh' }, caption),
      h('thead', {}, h('tr', {}, head.map((t) => h('th', { scope: 'col' }, t)))),
      h('tbody', {}, rows.map((r) => h('tr', {}, h('th', { scope: 'row' }, r[0]), r.slice(1).map((c) => h('td', {}, c)))))));
}
async function viewSales() {
  if (!(await needAdmin())) return;
  const p = params();
  const to = p.get('to') || isoDay(new Date());
  const from = p.get('from') || isoDay(new Date(Date.now() - 29 * 86400000));
  show('Sales', loading());
  const [byDay, byCat] = await Promise.all([
    api('GET', `/admin/analytics/sales?group_by=day&from=${from}&to=${to}`, undefined, { noCart: true, cache: 'no-cache' }),
    api('GET', `/admin/analytics/sales?group_by=category&from=${from}&to=${to}`, undefined, { noCart: true, cache: 'no-cache' })]);
  const form = h('form', { class: 'toolbar', onsubmit: (e) => { e.preventDefault(); const f = new FormData(e.currentTarget); go(`/admin/?from=${f.get('from')}&to=${f.get('to')}`, true); } },
    field('From', { name: 'from', type: 'date', value: from }), field('To', { name: 'to', type: 'date', value: to }),
    h('button', { type: 'submit', class: 'btn' }, 'Show'));
  if (!byDay.ok || !byCat.ok) { show('Sales', h('h1', {}, 'Sales'), form, alertBox((byDay.error || byCat.error).message)); return; }
  // One currency is charted (the first seen); the tables list every row.
  const cur = (byDay.data.items[0] && byDay.data.items[0].revenue.currency) || 'USD';
  const dayMap = new Map(byDay.data.items.filter((r) => r.revenue.currency === cur).map((r) => [r.day, r]));
  const days = [];
  for (let d = new Date(from + 'T00:00:00Z'); isoDay(d) <= to && days.length < 367; d = new Date(d.getTime() + 86400000)) {
    const r = dayMap.get(isoDay(d));
    days.push({ label: isoDay(d), value: r ? r.revenue.amount : 0, text: money({ amount: r ? r.revenue.amount : 0, currency: cur }) + (r ? ', ' + r.orders + ' orders' : '') });
  }
  const cats = byCat.data.items.filter((r) => r.revenue.currency === cur).sort((a, b) => b.revenue.amount - a.revenue.amount)
    .map((r) => ({ label: r.category, value: r.revenue.amount, text: money(r.revenue) }));
  const total = byDay.data.items.filter((r) => r.revenue.currency === cur).reduce((a, r) => ({ rev: a.rev + r.revenue.amount, orders: a.orders + r.orders, units: a.units + r.units }), { rev: 0, orders: 0, units: 0 });
  const tick = (v) => '$' + (v / 100 >= 1000 ? Math.round(v / 100000) + 'k' : Math.round(v / 100));
  show('Sales', h('h1', {}, 'Sales'), form,
    h('ul', { class: 'kpis' },
      h('li', {}, 'Revenue', h('strong', {}, money({ amount: total.rev, currency: cur }))),
      h('li', {}, 'Orders', h('strong', {}, String(total.orders))),
      h('li', {}, 'Units sold', h('strong', {}, String(total.units)))),
    h('figure', {}, h('figcaption', {}, 'Revenue by day'), barChart(`Revenue by day from ${from} to ${to}`, days, 'day', { id: 'c-day', tick }),
      dataTable('revenue by day', ['Day', 'Revenue', 'Orders', 'Units'], byDay.data.items.map((r) => [r.day, money(r.revenue), String(r.orders), String(r.units)]))),
    h('figure', {}, h('figcaption', {}, 'Revenue by category'), barChart(`Revenue by category from ${from} to ${to}`, cats, 'category', { id: 'c-cat', horizontal: true }),
      dataTable('revenue by category', ['Category', 'Revenue', 'Orders', 'Units'], byCat.data.items.map((r) => [r.category, money(r.revenue), String(r.orders), String(r.units)]))));
}

// --- products ---
async function viewProducts() {
  if (!(await needAdmin())) return;
  const q = params().get('q') || '';
  const tbody = h('tbody');
  const status = h('p', { class: 'muted', role: 'status' }, 'Loading…');
  let cursor = null;
  const more = h('button', { type: 'button', class: 'btn secondary more', hidden: true, onclick: () => load() }, 'Show more products');
  const load = async () => {
    const qs = new URLSearchParams({ limit: '50' });
    if (q) qs.set('q', q);
    if (cursor) qs.set('cursor', cursor);
    const r = await api('GET', '/products?' + qs, undefined, { noCart: true, cache: 'no-cache' });
    if (!r.ok) { status.textContent = r.error.message; return; }
    for (const p of r.data.items) {
      tbody.append(h('tr', {},
        h('th', { scope: 'row' }, h('a', { href: '/admin/products/' + p.id }, p.name)),
        h('td', { 'data-label': 'SKU' }, p.sku), h('td', { 'data-label': 'Category' }, p.category),
        h('td', { 'data-label': 'Price' }, money(p.price)), h('td', { 'data-label': 'Stock' }, String(p.stock ? p.stock.available : 0))));
    }
    cursor = r.data.next_cursor;
    more.hidden = !cursor;
    status.textContent = tbody.children.length + ' products shown' + (cursor ? '' : ' (all)');
  };
  show('Products', h('h1', {}, 'Products'),
    h('form', { class: 'toolbar', role: 'search', onsubmit: (e) => { e.preventDefault(); go('/admin/products?q=' + encodeURIComponent(new FormData(e.currentTarget).get('q')), true); } },
      field('Find products', { name: 'q', type: 'search', value: q }), h('button', { type: 'submit', class: 'btn' }, 'Find'),
      h('a', { href: '/admin/products/new', class: 'btn secondary' }, 'New product')),
    h('p', { class: 'muted small' }, 'Hidden products are not listed here (the catalog search shows active products only); open one by its link to show it again.'),
    status,
    h('table', { class: 'lines' }, h('caption', { class: 'vh' }, 'Products'),
      h('thead', {}, h('tr', {}, ['Name', 'SKU', 'Category', 'Price', 'Stock'].map((t) => h('th', { scope: 'col' }, t)))), tbody),
    more);
  await load();
}

const toMinor = (v) => Math.round(parseFloat(String(v).replace(',', '.')) * 100);
async function viewProduct(id) {
  if (!(await needAdmin())) return;
  const isNew = id === 'new';
  let p = { name: '', sku: '', category: '', description: '', price: { amount: 0, currency: 'USD' }, weight_grams: 500, active: true };
  let inv = null;
  if (!isNew) {
    show('Product', loading());
    const [r, ir] = await Promise.all([api('GET', '/products/' + encodeURIComponent(id), undefined, { noCart: true, cache: 'no-cache' }), api('GET', '/inventory/' + encodeURIComponent(id), undefined, { noCart: true, cache: 'no-cache' })]);
    if (!r.ok) { show('Product', h('h1', {}, 'Product not found'), alertBox(r.error.message)); return; }
    p = r.data;
    inv = ir.ok ? ir.data : null;
  }
  const form = h('form', { class: 'checkout', novalidate: true },
    field('Name', { name: 'name', required: true, value: p.name, maxlength: 200 }),
    field('SKU', { name: 'sku', required: true, value: p.sku, maxlength: 64 }, 'Letters, digits, dot, dash, underscore.'),
    field('Category', { name: 'category', required: true, value: p.category }, 'A category slug such as kitchen; a new one is created.'),
    field('Price (USD)', { name: 'price', type: 'number', min: 0, step: '0.01', inputmode: 'decimal', required: true, value: (p.price.amount / 100).toFixed(2) }),
    field('Weight (grams)', { name: 'weight_grams', type: 'number', min: 0, value: p.weight_grams ?? '' }),
    field('Description', { tag: 'textarea', name: 'description', rows: 4, value: p.description || '' }),
    h('div', { class: 'field check' }, h('input', { type: 'checkbox', id: 'f-active', name: 'active', checked: p.active !== false }), h('label', { for: 'f-active' }, 'Visible in the shop')),
    h('button', { type: 'submit', class: 'btn' }, isNew ? 'Create product' : 'Save changes'));
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    clearErrors(form);
    const f = new FormData(form);
    const price = toMinor(f.get('price'));
    if (!(price >= 0)) { fieldError(form, 'price', 'Enter a price such as 19.99.'); return; }
    const body = {
      name: f.get('name').trim(), sku: f.get('sku').trim(), category: f.get('category').trim(),
      description: f.get('description'), price: { amount: price, currency: p.price.currency || 'USD' },
      active: f.get('active') === 'on',
    };
    if (f.get('weight_grams') !== '') body.weight_grams = parseInt(f.get('weight_grams'), 10);
    if (isNew) body.image_url = '/images/products/' + body.sku + '.svg';
    const r = await api(isNew ? 'POST' : 'PATCH', isNew ? '/products' : '/products/' + p.id, body, { noCart: true, cache: 'no-cache' });
    if (!r.ok) {
      const fieldName = (r.error.field || '').replace(/^price\..*/, 'price');
      if (!fieldError(form, fieldName, r.error.message)) formError(form, r.error.message);
      return;
    }
    if (isNew) {
      // now that it has an id, its picture can be drawn from its name and category
      await api('PATCH', '/products/' + r.data.id, { image_url: '/images/products/' + r.data.id + '.svg' }, { noCart: true });
    }
    toast(isNew ? 'Product created.' : 'Saved.');
    go('/admin/products/' + r.data.id, true);
  });
  let stockForm = null;
  if (!isNew) {
    stockForm = h('form', { class: 'toolbar', novalidate: true },
      field('Available stock', { name: 'available', type: 'number', min: 0, value: inv ? inv.available : p.stock ? p.stock.available : 0 }),
      h('button', { type: 'submit', class: 'btn' }, 'Update stock'));
    stockForm.addEventListener('submit', async (e) => {
      e.preventDefault();
      clearErrors(stockForm);
      const n = parseInt(new FormData(stockForm).get('available'), 10);
      if (!(n >= 0)) { fieldError(stockForm, 'available', 'Enter a whole number, 0 or more.'); return; }
      const r = await api('PUT', '/inventory/' + p.id, { available: n }, { noCart: true, cache: 'no-cache' });
      if (!r.ok) { if (!fieldError(stockForm, r.error.field, r.error.message)) formError(stockForm, r.error.message); return; }
      toast('Stock set to ' + r.data.available + '.');
      stockForm.querySelector('.muted')?.remove();
      stockForm.append(h('p', { class: 'muted', role: 'status' }, 'Available ' + r.data.available + ', reserved ' + (r.data.reserved ?? 0) + '.'));
    });
    if (inv) stockForm.append(h('p', { class: 'muted' }, 'Available ' + inv.available + ', reserved ' + (inv.reserved ?? 0) + '.'));
  }
  show(isNew ? 'New product' : p.name,
    h('p', { class: 'crumbs' }, h('a', { href: '/admin/products' }, '← Products')),
    h('h1', {}, isNew ? 'New product' : 'Edit ' + p.name),
    !isNew && p.active === false ? alertBox('This product is hidden: shoppers cannot see or buy it.', 'ok') : null,
    form,
    stockForm ? h('section', {}, h('h2', {}, 'Stock'), stockForm) : null,
    !isNew ? h('p', {}, h('a', { href: '/products/' + p.id }, 'View in the shop')) : null);
}

// --- orders ---
async function viewOrders() {
  if (!(await needAdmin())) return;
  const st = params().get('status') || '';
  const tbody = h('tbody');
  const status = h('p', { class: 'muted', role: 'status' }, 'Loading…');
  let cursor = null;
  const more = h('button', { type: 'button', class: 'btn secondary more', hidden: true, onclick: () => load() }, 'Show more orders');
  const load = async () => {
    const qs = new URLSearchParams({ limit: '50' });
    if (st) qs.set('status', st);
    if (cursor) qs.set('cursor', cursor);
    const r = await api('GET', '/admin/orders?' + qs, undefined, { noCart: true, cache: 'no-cache' });
    if (!r.ok) { status.textContent = r.error.message; return; }
    for (const o of r.data.items) {
      tbody.append(h('tr', {},
        h('th', { scope: 'row' }, h('a', { href: '/admin/orders/' + o.id }, o.id)),
        h('td', { 'data-label': 'Placed' }, when(o.created_at)), h('td', { 'data-label': 'Customer' }, o.user_id || ''),
        h('td', { 'data-label': 'Status' }, badge(o.status)), h('td', { 'data-label': 'Total' }, money(o.total))));
    }
    cursor = r.data.next_cursor;
    more.hidden = !cursor;
    status.textContent = tbody.children.length ? tbody.children.length + ' orders shown' : 'No orders.';
  };
  const statuses = ['', 'pending', 'paid', 'fulfilling', 'shipped', 'delivered', 'failed', 'cancelled', 'on_hold'];
  const filter = h('form', { class: 'toolbar' },
    field('Status', { tag: 'select', name: 'status', value: st, options: statuses.map((x) => [x, x ? statusText(x) : 'Any status']) }));
  filter.addEventListener('change', () => go('/admin/orders' + (filter.status.value ? '?status=' + filter.status.value : ''), true));
  show('Orders', h('h1', {}, 'Orders'), filter, status,
    h('table', { class: 'lines' }, h('caption', { class: 'vh' }, 'Orders'),
      h('thead', {}, h('tr', {}, ['Order', 'Placed', 'Customer', 'Status', 'Total'].map((t) => h('th', { scope: 'col' }, t)))), tbody), more);
  await load();
}
async function viewOrder(id) {
  if (!(await needAdmin())) return;
  show('Order', loading());
  const [r, ev] = await Promise.all([api('GET', '/orders/' + encodeURIComponent(id), undefined, { noCart: true, cache: 'no-cache' }), api('GET', '/admin/orders/' + encodeURIComponent(id) + '/events', undefined, { noCart: true, cache: 'no-cache' })]);
  if (!r.ok) { show('Order', h('h1', {}, 'Order not found'), alertBox(r.error.message)); return; }
  const o = r.data;
  const sh = o.shipment;
  const ship = async (to) => {
    const res = await api('POST', '/shipments/' + sh.id + '/events', { status: to, at: new Date().toISOString() }, { noCart: true, cache: 'no-cache' });
    if (!res.ok) { toast(res.error.message); return; }
    toast('Shipment marked ' + statusText(to).toLowerCase() + '.');
    show.moved = false;
    render();
  };
  show('Order ' + o.id,
    h('p', { class: 'crumbs' }, h('a', { href: '/admin/orders' }, '← Orders')),
    h('h1', {}, 'Order ' + o.id),
    h('p', {}, 'Status: ', badge(o.status), ' · placed ', when(o.created_at), o.payment ? ' · paid with ' + (o.payment.brand || 'card') + ' •••• ' + (o.payment.last4 || '') : ''),
    o.status === 'on_hold' ? h('section', {}, h('h2', {}, 'Fraud review'), h('p', {}, await reasonsOf(o.id)),
      reviewButtons(o.id, () => { show.moved = false; render(); })) : null,
    h('table', { class: 'lines' },
      h('thead', {}, h('tr', {}, ['Product', 'Price', 'Quantity', 'Total'].map((t) => h('th', { scope: 'col' }, t)))),
      h('tbody', {}, o.items.map((l) => h('tr', {}, h('th', { scope: 'row' }, h('a', { href: '/admin/products/' + l.product_id }, l.name)), h('td', {}, money(l.unit_price)), h('td', {}, String(l.quantity)), h('td', {}, money(l.line_total))))),
      h('tfoot', {}, h('tr', {}, h('th', { scope: 'row', colspan: 3 }, 'Total (with ' + money(o.shipping) + ' shipping)'), h('td', {}, money(o.total))))),
    h('section', {}, h('h2', {}, 'Shipment'),
      sh ? [h('dl', { class: 'attrs' }, h('dt', {}, 'Carrier'), h('dd', {}, sh.carrier || '—'), h('dt', {}, 'Tracking number'), h('dd', {}, sh.tracking_number || '—'), h('dt', {}, 'Status'), h('dd', {}, statusText(sh.status))),
        h('p', { class: 'actions' },
          h('button', { type: 'button', class: 'btn secondary', disabled: !['label_created', 'pending'].includes(sh.status), onclick: () => ship('in_transit') }, 'Mark in transit'),
          h('button', { type: 'button', class: 'btn secondary', disabled: sh.status === 'delivered', onclick: () => ship('delivered') }, 'Mark delivered'))]
        : h('p', { class: 'muted' }, 'No shipment (the order was not paid).')),
    h('section', {}, h('h2', {}, 'History'),
      h('ol', { class: 'history' }, (o.history || []).map((e) => h('li', {}, h('strong', {}, statusText(e.status)), ' — ', when(e.at))))),
    h('section', {}, h('h2', {}, 'Events'),
      ev.ok ? h('table', { class: 'lines' }, h('thead', {}, h('tr', {}, ['Event', 'At', 'Published'].map((t) => h('th', { scope: 'col' }, t)))),
        h('tbody', {}, ev.data.items.map((e) => h('tr', {}, h('th', { scope: 'row' }, e.type), h('td', {}, when(e.created_at)), h('td', {}, e.published ? 'yes' : 'not yet')))))
        : alertBox(ev.error.message)));
}

// --- fraud review: the on_hold queue ---
const REASONS = { amount: 'large amount', velocity: 'many orders from this customer', card_velocity: 'many orders on this card', failed_payments: 'failed payments', new_country: 'new shipping country' };
async function decide(id, action) {
  const r = await api('POST', '/admin/orders/' + encodeURIComponent(id) + '/' + action, undefined, { noCart: true, cache: 'no-cache' });
  toast(r.ok ? 'Order ' + id + (action === 'approve' ? ' approved: payment captured.' : ' rejected: payment voided, stock released.') : r.error.message);
  return r.ok;
}
function reviewButtons(id, done) {
  return h('span', { class: 'actions' },
    h('button', { type: 'button', class: 'btn', onclick: async () => { if (await decide(id, 'approve')) done(); } }, 'Approve'),
    h('button', { type: 'button', class: 'btn secondary', onclick: async () => { if (await decide(id, 'reject')) done(); } }, 'Reject'));
}
async function reasonsOf(id) {
  const a = await api('GET', '/admin/fraud/assessments/' + encodeURIComponent(id), undefined, { noCart: true, cache: 'no-cache' });
  return a.ok ? 'score ' + a.data.score + (a.data.reasons.length ? ': ' + a.data.reasons.map((x) => REASONS[x] || x).join(', ') : '') : '—';
}
async function viewReview() {
  if (!(await needAdmin())) return;
  const status = h('p', { class: 'muted', role: 'status' }, 'Loading…');
  const tbody = h('tbody');
  show('Review', h('h1', {}, 'Orders held for review'),
    h('p', {}, 'The fraud rules held these orders before charging them: the card is authorized, the stock set aside. Approve to capture the payment and ship; reject to void it and release the stock (the customer is told).'),
    status, h('table', { class: 'lines' }, h('caption', { class: 'vh' }, 'Orders held for review'),
      h('thead', {}, h('tr', {}, ['Order', 'Placed', 'Customer', 'Total', 'Why', 'Decision'].map((t) => h('th', { scope: 'col' }, t)))), tbody));
  const r = await api('GET', '/admin/orders?status=on_hold&limit=100', undefined, { noCart: true, cache: 'no-cache' });
  if (!r.ok) { status.textContent = r.error.message; return; }
  const why = await Promise.all(r.data.items.map((o) => reasonsOf(o.id)));
  r.data.items.forEach((o, i) => {
    const row = h('tr', {},
      h('th', { scope: 'row' }, h('a', { href: '/admin/orders/' + o.id }, o.id)),
      h('td', { 'data-label': 'Placed' }, when(o.created_at)), h('td', { 'data-label': 'Customer' }, o.user_id || ''),
      h('td', { 'data-label': 'Total' }, money(o.total)), h('td', { 'data-label': 'Why' }, why[i]),
      h('td', { 'data-label': 'Decision' }, reviewButtons(o.id, () => { row.remove(); status.textContent = tbody.children.length ? tbody.children.length + ' orders to review' : 'Nothing to review.'; })));
    tbody.append(row);
  });
  status.textContent = tbody.children.length ? tbody.children.length + ' orders to review' : 'Nothing to review.';
}

route(/^\/admin\/?$/, viewSales);
route(/^\/admin\/review$/, viewReview);
route(/^\/admin\/sales$/, viewSales);
route(/^\/admin\/products$/, viewProducts);
route(/^\/admin\/products\/([^/]+)$/, viewProduct);
route(/^\/admin\/orders$/, viewOrders);
route(/^\/admin\/orders\/([^/]+)$/, viewOrder);
router.notFound = () => show('Not found', h('h1', {}, 'Page not found'), h('p', {}, h('a', { href: '/admin/' }, 'Back office home')));
document.addEventListener('DOMContentLoaded', () => { nav(); startRouter(nav); });
