// SPDX-License-Identifier: MIT
// shop.js — the storefront: home, search as you type, product, cart, checkout, orders,
// sign up / in / out. Everything goes through the public API (/api/v1).

let categories = [];
let cartCount = 0;

async function loadCategories() {
  if (categories.length) return categories;
  const r = await api('GET', '/categories');
  categories = r.ok ? r.data.items : [];
  return categories;
}
const categoryName = (slug) => (categories.find((c) => c.slug === slug) || {}).name || slug;

// --- header: account links and the cart count ---
function drawAccount() {
  const box = document.getElementById('account');
  const u = store.user;
  if (store.token && u) {
    setChildren(box, 
      u.role === 'admin' ? h('a', { href: '/admin/' }, 'Back office') : null,
      h('a', { href: '/orders' }, 'Orders'),
      h('button', { type: 'button', class: 'linklike', onclick: signOut }, 'Sign out'),
    );
  } else {
    setChildren(box, h('a', { href: '/signin' }, 'Sign in'), h('a', { href: '/signup' }, 'Create account'));
  }
}
function setCartCount(cart) {
  cartCount = cart ? cart.item_count ?? cart.items.reduce((n, l) => n + l.quantity, 0) : 0;
  const link = document.getElementById('cart-link');
  link.querySelector('.count').textContent = String(cartCount);
  link.setAttribute('aria-label', 'Cart, ' + cartCount + (cartCount === 1 ? ' item' : ' items'));
}
async function refreshCart() {
  if (!store.token && !store.cartToken) { setCartCount(null); return null; }
  const r = await api('GET', '/cart');
  setCartCount(r.ok ? r.data : null);
  return r.ok ? r.data : null;
}
async function signOut() {
  await api('POST', '/auth/logout', undefined, { noCart: true });
  store.token = null;
  store.user = null;
  store.cartToken = null;
  drawAccount();
  setCartCount(null);
  toast('You are signed out.');
  go('/');
}

// --- product cards ---
function stockText(p) {
  const n = p.stock ? p.stock.available : 0;
  if (n <= 0) return h('span', { class: 'stock out' }, 'Out of stock');
  if (n < 10) return h('span', { class: 'stock low' }, 'Only ' + n + ' left');
  return h('span', { class: 'stock in' }, 'In stock');
}
function productImage(p, size) {
  return h('img', {
    src: p.image_url || '/images/products/' + p.id + '.svg', alt: size === 'big' ? p.name : '', width: size === 'big' ? 400 : 200,
    height: size === 'big' ? 300 : 150, loading: size === 'big' ? 'eager' : 'lazy', decoding: 'async',
  });
}
async function addToCart(p, qty, button) {
  if (button) button.disabled = true;
  const r = await api('POST', '/cart/items', { product_id: p.id, quantity: qty });
  if (button) button.disabled = false;
  if (r.ok) {
    setCartCount(r.data);
    toast('Added ' + qty + ' × ' + p.name + ' to your cart.');
    return true;
  }
  toast(r.error.code === 'out_of_stock' ? p.name + ' is out of stock.' : r.error.message);
  return false;
}
function card(p) {
  const out = !p.stock || p.stock.available <= 0;
  return h('li', { class: 'card' },
    h('a', { href: '/products/' + p.id, class: 'card-link' }, productImage(p), h('span', { class: 'card-name' }, p.name)),
    h('p', { class: 'card-meta' }, h('span', { class: 'price' }, money(p.price)), ' ', stockText(p)),
    h('button', {
      type: 'button', class: 'btn', disabled: out, 'aria-label': 'Add to cart: ' + p.name,
      onclick: (e) => addToCart(p, 1, e.currentTarget),
    }, 'Add to cart'));
}
const grid = (items) => h('ul', { class: 'grid' }, items.map(card));

// --- views ---
async function viewHome() {
  show('Home', loading());
  const [cats, feat] = await Promise.all([loadCategories(), api('GET', '/products?limit=8&in_stock=true&sort=newest')]);
  show('Home',
    h('section', { class: 'hero' },
      h('h1', {}, 'Good things for everyday life'),
      h('p', {}, 'Hand-picked homeware, gear and gifts, shipped in days.')),
    h('section', { 'aria-labelledby': 'cat-h' },
      h('h2', { id: 'cat-h' }, 'Shop by category'),
      h('ul', { class: 'chips' }, cats.map((c) => h('li', {}, h('a', { href: '/search?category=' + encodeURIComponent(c.slug) }, c.name, h('span', { class: 'muted' }, ' (' + c.product_count + ')')))))),
    h('section', { 'aria-labelledby': 'feat-h' },
      h('h2', { id: 'feat-h' }, 'New arrivals'),
      feat.ok ? grid(feat.data.items) : alertBox(feat.error.message)));
}

let searchAbort = null;
function searchQuery() {
  const p = params();
  const q = new URLSearchParams();
  for (const k of ['q', 'category', 'sort']) if (p.get(k)) q.set(k, p.get(k));
  for (const k of ['min_price', 'max_price']) {
    const v = parseFloat(p.get(k));
    if (!isNaN(v) && v >= 0) q.set(k, String(Math.round(v * 100)));
  }
  if (p.get('in_stock') === '1') q.set('in_stock', 'true');
  q.set('limit', '24');
  return q;
}
async function viewSearch() {
  const p = params();
  await loadCategories();
  const results = h('div', { id: 'results', 'aria-live': 'polite' }, loading());
  const filters = h('form', { class: 'filters', 'aria-label': 'Filters', onsubmit: (e) => { e.preventDefault(); applyFilters(e.currentTarget); } },
    h('h2', {}, 'Filter'),
    field('Category', { tag: 'select', name: 'category', value: p.get('category') || '', options: [['', 'All categories'], ...categories.map((c) => [c.slug, c.name])] }),
    field('Minimum price ($)', { name: 'min_price', type: 'number', min: 0, step: '0.01', inputmode: 'decimal', value: p.get('min_price') || '' }),
    field('Maximum price ($)', { name: 'max_price', type: 'number', min: 0, step: '0.01', inputmode: 'decimal', value: p.get('max_price') || '' }),
    h('div', { class: 'field check' }, h('input', { type: 'checkbox', id: 'f-instock', name: 'in_stock', value: '1', checked: p.get('in_stock') === '1' }), h('label', { for: 'f-instock' }, 'In stock only')),
    field('Sort by', { tag: 'select', name: 'sort', value: p.get('sort') || '', options: [['', p.get('q') ? 'Relevance' : 'Newest'], ['price_asc', 'Price: low to high'], ['price_desc', 'Price: high to low'], ['newest', 'Newest']] }),
    h('button', { type: 'submit', class: 'btn' }, 'Apply filters'));
  filters.addEventListener('change', () => applyFilters(filters));
  const title = p.get('q') ? 'Results for “' + p.get('q') + '”' : p.get('category') ? categoryName(p.get('category')) : 'All products';
  show(title, h('h1', {}, title), h('div', { class: 'search-layout' }, filters, results));
  await runSearch(results);
}
function applyFilters(form) {
  const q = new URLSearchParams();
  const cur = params().get('q');
  if (cur) q.set('q', cur);
  for (const [k, v] of new FormData(form)) if (v) q.set(k, v);
  history.replaceState(null, '', '/search?' + q);
  runSearch(document.getElementById('results'));
}
async function runSearch(results, cursor) {
  if (searchAbort && !cursor) searchAbort.abort();
  const ctl = new AbortController();
  searchAbort = ctl;
  const q = searchQuery();
  if (cursor) q.set('cursor', cursor);
  let r;
  try { r = await api('GET', '/products?' + q, undefined, { signal: ctl.signal }); } catch (e) { return; }
  if (ctl.signal.aborted) return;
  if (!r.ok) { results.replaceChildren(alertBox(r.error.message)); return; }
  const items = r.data.items;
  let list = results.querySelector('ul.grid');
  if (!cursor || !list) {
    list = grid(items);
    results.replaceChildren(h('p', { class: 'muted', role: 'status' }, items.length ? (r.data.next_cursor ? 'Showing the first ' + items.length + ' products' : items.length + (items.length === 1 ? ' product' : ' products')) : 'No products match. Try fewer words or other filters.'), list);
  } else {
    items.forEach((p) => list.append(card(p)));
    results.querySelector('.more')?.remove();
    results.querySelector('[role=status]').textContent = 'Showing ' + list.children.length + ' products';
  }
  if (r.data.next_cursor) {
    results.append(h('button', { type: 'button', class: 'btn secondary more', onclick: () => runSearch(results, r.data.next_cursor) }, 'Show more products'));
  }
}

async function viewProduct(id) {
  show('Product', loading());
  const [r, rec] = await Promise.all([api('GET', '/products/' + encodeURIComponent(id), undefined, { cache: 'no-cache' }), api('GET', '/products/' + encodeURIComponent(id) + '/recommendations?limit=4')]);
  if (!r.ok) {
    show('Not found', h('h1', {}, 'Product not found'), h('p', {}, 'This product does not exist or is no longer sold. ', h('a', { href: '/' }, 'Back to the shop')));
    return;
  }
  const p = r.data;
  await loadCategories();
  const out = !p.stock || p.stock.available <= 0;
  const qty = h('input', { id: 'qty', name: 'quantity', type: 'number', min: 1, max: Math.max(1, Math.min(99, p.stock ? p.stock.available : 1)), value: 1, inputmode: 'numeric' });
  const attrs = Object.entries(p.attributes || {});
  const recs = rec.ok ? (rec.data.items || []).filter((x) => x.id !== p.id) : [];
  show(p.name,
    h('nav', { 'aria-label': 'Breadcrumb', class: 'crumbs' }, h('a', { href: '/' }, 'Home'), ' › ', h('a', { href: '/search?category=' + encodeURIComponent(p.category) }, categoryName(p.category))),
    h('article', { class: 'product' },
      h('div', { class: 'product-img' }, productImage(p, 'big')),
      h('div', { class: 'product-info' },
        h('h1', {}, p.name),
        h('p', { class: 'price big' }, money(p.price)),
        h('p', {}, stockText(p), out ? null : h('span', { class: 'muted' }, ' · ' + p.stock.available + ' available')),
        h('form', { class: 'buy', onsubmit: async (e) => { e.preventDefault(); const n = parseInt(qty.value, 10); if (n >= 1) await addToCart(p, n, e.submitter); } },
          h('label', { for: 'qty' }, 'Quantity'), qty,
          h('button', { type: 'submit', class: 'btn', disabled: out }, 'Add to cart')),
        h('p', {}, p.description || ''),
        attrs.length ? h('dl', { class: 'attrs' }, attrs.map(([k, v]) => [h('dt', {}, k[0].toUpperCase() + k.slice(1)), h('dd', {}, String(v))])) : null,
        h('p', { class: 'muted small' }, 'SKU ' + p.sku))),
    recs.length ? h('section', { 'aria-labelledby': 'rec-h' }, h('h2', { id: 'rec-h' }, 'You may also like'), grid(recs)) : null);
}

function cartTable(cart, editable) {
  return h('table', { class: 'lines' },
    h('caption', { class: 'vh' }, 'Items in your cart'),
    h('thead', {}, h('tr', {}, h('th', { scope: 'col' }, 'Product'), h('th', { scope: 'col' }, 'Price'), h('th', { scope: 'col' }, 'Quantity'), h('th', { scope: 'col' }, 'Total'), editable ? h('th', { scope: 'col' }, h('span', { class: 'vh' }, 'Actions')) : null)),
    h('tbody', {}, cart.items.map((l) => h('tr', {},
      h('th', { scope: 'row' }, h('a', { href: '/products/' + l.product_id }, l.name)),
      h('td', { 'data-label': 'Price' }, money(l.unit_price)),
      h('td', { 'data-label': 'Quantity' }, editable
        ? h('input', { type: 'number', min: 0, max: 99, value: l.quantity, class: 'qty', 'aria-label': 'Quantity of ' + l.name, onchange: (e) => setQty(l, e.currentTarget.value) })
        : String(l.quantity)),
      h('td', { 'data-label': 'Total' }, money(l.line_total)),
      editable ? h('td', {}, h('button', { type: 'button', class: 'linklike', 'aria-label': 'Remove ' + l.name, onclick: () => setQty(l, 0) }, 'Remove')) : null))),
    h('tfoot', {}, h('tr', {}, h('th', { scope: 'row', colspan: 3 }, 'Subtotal'), h('td', {}, money(cart.subtotal)), editable ? h('td') : null)));
}
async function setQty(line, v) {
  const n = Math.max(0, Math.min(99, parseInt(v, 10) || 0));
  const r = await api('PATCH', '/cart/items/' + line.product_id, { quantity: n });
  if (!r.ok) toast(r.error.message);
  else toast(n ? 'Updated ' + line.name + '.' : 'Removed ' + line.name + '.');
  await viewCart(true);
}
async function viewCart(keepFocus) {
  if (!keepFocus) show('Cart', loading());
  const cart = await refreshCart();
  if (!cart || !cart.items.length) {
    show('Cart', h('h1', {}, 'Your cart'), h('p', {}, 'Your cart is empty. ', h('a', { href: '/' }, 'Continue shopping')));
    return;
  }
  const main = document.getElementById('main');
  const focusedLabel = keepFocus && document.activeElement && document.activeElement.getAttribute('aria-label');
  const prevMoved = show.moved;
  if (keepFocus) show.moved = false;
  show('Cart', h('h1', {}, 'Your cart'), cartTable(cart, true),
    h('p', { class: 'actions' }, h('a', { href: '/', class: 'btn secondary' }, 'Continue shopping'), h('a', { href: '/checkout', class: 'btn' }, 'Check out')));
  show.moved = prevMoved;
  if (focusedLabel) { const el = main.querySelector('[aria-label="' + CSS.escape(focusedLabel) + '"]'); if (el) el.focus(); }
}

// --- checkout ---
const COUNTRIES = [['US', 'United States'], ['CA', 'Canada'], ['GB', 'United Kingdom'], ['DE', 'Germany'], ['FR', 'France'], ['NL', 'Netherlands'], ['ES', 'Spain'], ['IT', 'Italy'], ['AU', 'Australia'], ['JP', 'Japan']];
const DECLINE_TEXT = {
  card_declined: 'Your card was declined. Please try a different card.',
  insufficient_funds: 'Your card was declined for insufficient funds. Please try a different card.',
  processing_error: 'The payment could not be processed. Nothing was charged; please try again.',
};
function priceChanges(err) {
  const list = err.items || err.lines || err.changes || err.products || [];
  return Array.isArray(list) ? list : [];
}
async function viewCheckout() {
  if (!store.token) {
    show('Checkout', h('h1', {}, 'Checkout'),
      h('p', {}, 'Please sign in or create an account to check out. Your cart comes with you.'),
      h('p', { class: 'actions' }, h('a', { class: 'btn', href: '/signin?next=/checkout' }, 'Sign in'), h('a', { class: 'btn secondary', href: '/signup?next=/checkout' }, 'Create account')));
    return;
  }
  show('Checkout', loading());
  const cart = await refreshCart();
  if (!cart || !cart.items.length) {
    show('Checkout', h('h1', {}, 'Checkout'), h('p', {}, 'Your cart is empty. ', h('a', { href: '/' }, 'Continue shopping')));
    return;
  }
  const u = store.user || {};
  let quotes = [];
  let idemKey = null, lastBody = null;
  const summary = h('div', { class: 'summary', 'aria-live': 'polite' });
  const methods = h('div', { class: 'methods' }, h('p', { class: 'muted' }, 'Enter your postal code to see shipping options.'));
  const year = new Date().getFullYear();
  const form = h('form', { class: 'checkout', novalidate: true },
    h('fieldset', {}, h('legend', {}, 'Shipping address'),
      field('Full name', { name: 'name', autocomplete: 'name', required: true, value: u.name || '' }),
      field('Address', { name: 'line1', autocomplete: 'address-line1', required: true }),
      field('City', { name: 'city', autocomplete: 'address-level2', required: true }),
      field('Postal code', { name: 'postal_code', autocomplete: 'postal-code', required: true }),
      field('Country', { tag: 'select', name: 'country', autocomplete: 'country', value: 'US', options: COUNTRIES })),
    h('fieldset', {}, h('legend', {}, 'Shipping method'), methods),
    h('fieldset', {}, h('legend', {}, 'Payment'),
      field('Card number', { name: 'card_number', autocomplete: 'cc-number', inputmode: 'numeric', required: true }, 'Test cards: 4242 4242 4242 4242 succeeds, 4000 0000 0000 0002 is declined.'),
      h('div', { class: 'row' },
        field('Expiry month', { tag: 'select', name: 'exp_month', autocomplete: 'cc-exp-month', value: '12', options: Array.from({ length: 12 }, (_, i) => [String(i + 1), String(i + 1).padStart(2, '0')]) }),
        field('Expiry year', { tag: 'select', name: 'exp_year', autocomplete: 'cc-exp-year', value: String(year + 2), options: Array.from({ length: 10 }, (_, i) => [String(year + i), String(year + i)]) }),
        field('Security code (CVC)', { name: 'cvc', autocomplete: 'cc-csc', inputmode: 'numeric', required: true, maxlength: 4 }))),
    h('h2', {}, 'Order summary'), cartTable(cart, false), summary,
    h('button', { type: 'submit', class: 'btn big' }, 'Place order'));

  const drawSummary = () => {
    const sel = form.querySelector('input[name=shipping_method]:checked');
    const q = quotes.find((o) => sel && o.method === sel.value);
    const ship = q ? q.price : null;
    summary.replaceChildren(h('dl', { class: 'totals' },
      h('dt', {}, 'Subtotal'), h('dd', {}, money(cart.subtotal)),
      h('dt', {}, 'Shipping'), h('dd', {}, ship ? money(ship) : '—'),
      h('dt', {}, 'Total'), h('dd', { class: 'price' }, money({ amount: cart.subtotal.amount + (ship ? ship.amount : 0), currency: cart.subtotal.currency }))));
  };
  const address = () => {
    const f = new FormData(form);
    return { name: f.get('name').trim(), line1: f.get('line1').trim(), city: f.get('city').trim(), postal_code: f.get('postal_code').trim(), country: f.get('country') };
  };
  let quoteSeq = 0;
  const loadQuotes = async () => {
    const a = address();
    if (!a.postal_code) return;
    const seq = ++quoteSeq;
    const r = await api('POST', '/shipping/quotes', { items: cart.items.map((l) => ({ product_id: l.product_id, quantity: l.quantity })), address: { ...a, name: a.name || 'x', line1: a.line1 || 'x', city: a.city || 'x' } });
    if (seq !== quoteSeq) return;
    if (!r.ok) { methods.replaceChildren(alertBox(r.error.message)); return; }
    const prev = form.querySelector('input[name=shipping_method]:checked');
    const keep = prev ? prev.value : 'standard';
    quotes = r.data.options;
    methods.replaceChildren(...quotes.map((o, i) => h('div', { class: 'field check' },
      h('input', { type: 'radio', name: 'shipping_method', id: 'ship-' + o.method, value: o.method, checked: o.method === keep || (i === 0 && !quotes.some((x) => x.method === keep)), onchange: drawSummary }),
      h('label', { for: 'ship-' + o.method }, o.method[0].toUpperCase() + o.method.slice(1) + ' — ' + o.carrier + ', ' + money(o.price) + ', about ' + o.estimated_days + (o.estimated_days === 1 ? ' day' : ' days')))));
    drawSummary();
  };
  form.querySelector('[name=postal_code]').addEventListener('change', loadQuotes);
  form.querySelector('[name=country]').addEventListener('change', loadQuotes);
  drawSummary();

  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    clearErrors(form);
    const a = address();
    const f = new FormData(form);
    for (const [k, label] of [['name', 'your name'], ['line1', 'your address'], ['city', 'your city'], ['postal_code', 'your postal code']]) {
      if (!a[k]) { fieldError(form, k, 'Please enter ' + label + '.'); return; }
    }
    const card = String(f.get('card_number')).replace(/[\s-]/g, '');
    if (!/^\d{12,19}$/.test(card)) { fieldError(form, 'card_number', 'Please enter the card number (digits only).'); return; }
    if (!/^\d{3,4}$/.test(String(f.get('cvc')))) { fieldError(form, 'cvc', 'Please enter the 3 or 4 digit security code.'); return; }
    if (!quotes.length) await loadQuotes();
    const sel = form.querySelector('input[name=shipping_method]:checked');
    const body = {
      shipping_address: a,
      payment: { card_number: card, exp_month: parseInt(f.get('exp_month'), 10), exp_year: parseInt(f.get('exp_year'), 10), cvc: String(f.get('cvc')) },
      shipping_method: sel ? sel.value : 'standard',
    };
    // The same body keeps its key (a double submit is one order); a new attempt gets a new one.
    const text = JSON.stringify(body);
    if (text !== lastBody) { idemKey = crypto.randomUUID(); lastBody = text; }
    const btn = form.querySelector('button[type=submit]');
    btn.disabled = true;
    btn.textContent = 'Placing order…';
    const r = await api('POST', '/orders', body, { headers: { 'Idempotency-Key': idemKey } });
    btn.disabled = false;
    btn.textContent = 'Place order';
    if (r.ok) {
      refreshCart();
      go('/orders/' + r.data.id + '?placed=1');
      return;
    }
    lastBody = null; // whatever failed, the next attempt is a new one
    const err = r.error;
    const failed = r.data && (r.data.order || (r.data.status === 'failed' ? r.data : null));
    const reason = err.code && DECLINE_TEXT[err.code] ? err.code : failed && failed.failure_reason;
    if (r.status === 402 || DECLINE_TEXT[reason]) {
      formError(form, DECLINE_TEXT[reason] || err.message || 'Your card was declined.');
      fieldError(form, 'card_number', 'Try another card.');
      form.querySelector('.form-error').scrollIntoView({ block: 'center' });
      return;
    }
    if (err.code === 'out_of_stock') {
      const line = cart.items.find((l) => l.product_id === err.product_id);
      formError(form, (line ? line.name : 'An item') + ' is no longer available in the quantity you chose. Please update your cart.')
        .append(' ', h('a', { href: '/cart' }, 'Review your cart'));
      return;
    }
    if (err.code === 'product_unavailable') {
      const line = cart.items.find((l) => l.product_id === err.product_id);
      formError(form, (line ? line.name : 'An item') + ' is no longer sold. Please remove it from your cart.')
        .append(' ', h('a', { href: '/cart' }, 'Review your cart'));
      return;
    }
    if (err.code === 'price_changed') {
      const said = err.message ? err.message[0].toUpperCase() + err.message.slice(1).replace(/\.?$/, '.') : 'Prices changed since you filled your cart.';
      const box = formError(form, said + ' Please check the new total and place the order again.');
      const changes = priceChanges(err);
      if (changes.length) {
        box.append(h('ul', {}, changes.map((c) => {
          const line = cart.items.find((l) => l.product_id === c.product_id);
          const now = c.unit_price || c.new_price || c.price;
          const was = c.old_price || c.previous_price || c.was;
          return h('li', {}, (c.name || (line && line.name) || 'Item') + ': now ' + money(now) + (was ? ' (was ' + money(was) + ')' : ''));
        })));
      }
      const fresh = await refreshCart();
      if (fresh) { cart.items = fresh.items; cart.subtotal = fresh.subtotal; form.querySelector('table.lines').replaceWith(cartTable(cart, false)); drawSummary(); }
      box.scrollIntoView({ block: 'center' });
      return;
    }
    if (r.status === 401) { formError(form, 'Your session has ended. Please sign in again.'); drawAccount(); return; }
    const fieldName = (err.field || '').replace(/^(shipping_address|payment)\./, '');
    if (!fieldError(form, fieldName, err.message)) formError(form, err.message);
  });
  show('Checkout', h('h1', {}, 'Checkout'), form);
  loadQuotes();
}

// --- orders ---
async function viewOrders() {
  if (!store.token) { go('/signin?next=/orders', true); return; }
  show('Your orders', loading());
  const r = await api('GET', '/orders?limit=50');
  if (!r.ok) { show('Your orders', h('h1', {}, 'Your orders'), alertBox(r.error.message)); return; }
  const items = r.data.items;
  show('Your orders', h('h1', {}, 'Your orders'),
    items.length ? h('table', { class: 'lines' },
      h('thead', {}, h('tr', {}, ['Order', 'Placed', 'Status', 'Total'].map((t) => h('th', { scope: 'col' }, t)))),
      h('tbody', {}, items.map((o) => h('tr', {},
        h('th', { scope: 'row' }, h('a', { href: '/orders/' + o.id }, 'Order ' + o.id)),
        h('td', { 'data-label': 'Placed' }, when(o.created_at)),
        h('td', { 'data-label': 'Status' }, badge(o.status)),
        h('td', { 'data-label': 'Total' }, money(o.total))))))
      : h('p', {}, 'You have no orders yet. ', h('a', { href: '/' }, 'Start shopping')));
}
function orderDetails(o) {
  const sh = o.shipment;
  const ad = o.shipping_address;
  return [
    h('p', {}, 'Status: ', badge(o.status), o.failure_reason ? h('span', { class: 'muted' }, ' (' + (DECLINE_TEXT[o.failure_reason] || o.failure_reason) + ')') : null),
    h('table', { class: 'lines' },
      h('thead', {}, h('tr', {}, ['Product', 'Price', 'Quantity', 'Total'].map((t) => h('th', { scope: 'col' }, t)))),
      h('tbody', {}, o.items.map((l) => h('tr', {}, h('th', { scope: 'row' }, h('a', { href: '/products/' + l.product_id }, l.name)), h('td', { 'data-label': 'Price' }, money(l.unit_price)), h('td', { 'data-label': 'Quantity' }, String(l.quantity)), h('td', { 'data-label': 'Total' }, money(l.line_total))))),
      h('tfoot', {},
        h('tr', {}, h('th', { scope: 'row', colspan: 3 }, 'Subtotal'), h('td', {}, money(o.subtotal))),
        h('tr', {}, h('th', { scope: 'row', colspan: 3 }, 'Shipping'), h('td', {}, money(o.shipping))),
        h('tr', {}, h('th', { scope: 'row', colspan: 3 }, 'Total'), h('td', {}, money(o.total))))),
    h('div', { class: 'two' },
      ad ? h('section', {}, h('h2', {}, 'Shipping to'), h('address', {}, ad.name, h('br'), ad.line1, h('br'), ad.city + ' ' + ad.postal_code, h('br'), ad.country)) : null,
      h('section', {}, h('h2', {}, 'Shipment'),
        sh ? h('dl', { class: 'attrs' },
          h('dt', {}, 'Carrier'), h('dd', {}, sh.carrier || '—'),
          h('dt', {}, 'Tracking number'), h('dd', {}, sh.tracking_number || '—'),
          h('dt', {}, 'Status'), h('dd', {}, statusText(sh.status)))
          : h('p', { class: 'muted' }, 'Not shipped yet.'))),
    o.history && o.history.length ? h('section', {}, h('h2', {}, 'History'),
      h('ol', { class: 'history' }, o.history.map((e) => h('li', {}, h('strong', {}, statusText(e.status)), ' — ', h('time', { datetime: e.at }, when(e.at)))))) : null,
  ];
}
async function viewOrder(id) {
  if (!store.token) { go('/signin?next=' + encodeURIComponent(location.pathname), true); return; }
  show('Order', loading());
  const r = await api('GET', '/orders/' + encodeURIComponent(id));
  if (!r.ok) { show('Order', h('h1', {}, 'Order not found'), alertBox(r.error.message)); return; }
  const o = r.data;
  const placed = params().get('placed') === '1';
  show(placed ? 'Order confirmed' : 'Order ' + o.id,
    h('h1', {}, placed ? (o.status === 'on_hold' ? 'Thank you! Your order is being reviewed' : 'Thank you! Your order is confirmed') : 'Order ' + o.id),
    placed ? h('p', { class: 'notice notice-ok', role: 'status' }, 'Order ' + o.id + ' is placed. Follow its shipment here or in your order history.') : null,
    placed ? null : h('p', { class: 'muted' }, 'Placed ' + when(o.created_at)),
    orderDetails(o),
    h('p', {}, h('a', { href: '/orders' }, 'All your orders')));
}

// --- sign up / in ---
function nextUrl() {
  const n = params().get('next');
  return n && n.startsWith('/') && !n.startsWith('//') ? n : '/';
}
function viewAuth(kind) {
  const up = kind === 'signup';
  const title = up ? 'Create your account' : 'Sign in';
  const form = h('form', { class: 'auth', novalidate: true },
    up ? field('Name', { name: 'name', autocomplete: 'name', required: true }) : null,
    field('Email', { name: 'email', type: 'email', autocomplete: 'email', required: true }),
    field('Password', { name: 'password', type: 'password', autocomplete: up ? 'new-password' : 'current-password', required: true, minlength: up ? 8 : null }, up ? 'At least 8 characters.' : null),
    h('button', { type: 'submit', class: 'btn' }, up ? 'Create account' : 'Sign in'));
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    clearErrors(form);
    const f = Object.fromEntries(new FormData(form));
    if (up && !f.name.trim()) { fieldError(form, 'name', 'Please enter your name.'); return; }
    if (!/^[^@\s]+@[^@\s]+$/.test(f.email)) { fieldError(form, 'email', 'Please enter a valid email address.'); return; }
    if (!f.password) { fieldError(form, 'password', 'Please enter your password.'); return; }
    const btn = form.querySelector('button');
    btn.disabled = true;
    // The guest cart token goes along: the server merges the guest cart into the account's.
    const r = await api('POST', up ? '/auth/register' : '/auth/login', up ? { name: f.name.trim(), email: f.email.trim(), password: f.password } : { email: f.email.trim(), password: f.password }, { keepToken: true });
    btn.disabled = false;
    if (!r.ok) {
      const msg = r.status === 401 ? 'The email or password is not right.' : r.status === 409 ? 'An account with this email already exists. Sign in instead.' : r.error.message;
      if (!fieldError(form, r.error.field, msg)) formError(form, msg);
      return;
    }
    store.token = r.data.token;
    store.user = r.data.user;
    store.cartToken = null;
    drawAccount();
    await refreshCart();
    toast(up ? 'Welcome, ' + r.data.user.name + '!' : 'Signed in as ' + r.data.user.email + '.');
    go(nextUrl(), true);
  });
  const other = up ? ['Already have an account? ', '/signin', 'Sign in'] : ['New here? ', '/signup', 'Create an account'];
  const next = params().get('next');
  show(title, h('h1', {}, title), form,
    h('p', {}, other[0], h('a', { href: other[1] + (next ? '?next=' + encodeURIComponent(next) : '') }, other[2])));
}

// --- start ---
route(/^\/$/, viewHome);
route(/^\/search$/, viewSearch);
route(/^\/products\/([^/]+)$/, viewProduct);
route(/^\/cart$/, () => viewCart(false));
route(/^\/checkout$/, viewCheckout);
route(/^\/orders$/, viewOrders);
route(/^\/orders\/([^/]+)$/, viewOrder);
route(/^\/signin$/, () => viewAuth('signin'));
route(/^\/signup$/, () => viewAuth('signup'));
router.notFound = () => show('Not found', h('h1', {}, 'Page not found'), h('p', {}, h('a', { href: '/' }, 'Back to the shop')));

// Search as you type: the header's search box updates the results after a short pause.
function initSearchBox() {
  const form = document.getElementById('search');
  const input = document.getElementById('q');
  input.value = location.pathname === '/search' ? params().get('q') || '' : '';
  let timer;
  const apply = (push) => {
    const q = new URLSearchParams(location.pathname === '/search' ? location.search : '');
    q.delete('cursor');
    if (input.value.trim()) q.set('q', input.value.trim()); else q.delete('q');
    const url = '/search' + (q.toString() ? '?' + q : '');
    if (location.pathname === '/search') {
      history.replaceState(null, '', url);
      const h1 = document.querySelector('#main h1');
      if (h1) h1.textContent = input.value.trim() ? 'Results for “' + input.value.trim() + '”' : 'All products';
      const results = document.getElementById('results');
      if (results) { runSearch(results); return; }
    }
    show.moved = false;
    if (push) history.pushState(null, '', url); else history.replaceState(null, '', url);
    render();
  };
  input.addEventListener('input', () => {
    clearTimeout(timer);
    if (input.value.trim().length < 2 && location.pathname !== '/search') return;
    timer = setTimeout(() => apply(location.pathname !== '/search'), 250);
  });
  form.addEventListener('submit', (e) => { e.preventDefault(); clearTimeout(timer); apply(location.pathname !== '/search'); });
}

document.addEventListener('DOMContentLoaded', async () => {
  drawAccount();
  initSearchBox();
  setCartCount(null);
  refreshCart();
  if (store.token) {
    api('GET', '/users/me').then((r) => { if (r.ok) { store.user = r.data; drawAccount(); } else if (r.status === 401) drawAccount(); });
  }
  await startRouter(() => { document.getElementById('q').value = location.pathname === '/search' ? params().get('q') || '' : ''; });
});
