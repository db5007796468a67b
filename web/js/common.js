// SPDX-License-Identifier: MIT
// common.js — what the storefront and the back office share: the API client (bearer token,
// guest cart token), safe DOM building (text only, never HTML from data), money and dates,
// and a small History-API router. Bundled in front of shop.js and admin.js at build time.

const store = {
  get token() { return localStorage.getItem('emp.token'); },
  set token(v) { v ? localStorage.setItem('emp.token', v) : localStorage.removeItem('emp.token'); },
  get cartToken() { return localStorage.getItem('emp.cart'); },
  set cartToken(v) { v ? localStorage.setItem('emp.cart', v) : localStorage.removeItem('emp.cart'); },
  get user() { try { return JSON.parse(localStorage.getItem('emp.user')); } catch (e) { return null; } },
  set user(v) { v ? localStorage.setItem('emp.user', JSON.stringify(v)) : localStorage.removeItem('emp.user'); },
};

// One API call. Resolves to {status, ok, data, error} and never throws for HTTP errors;
// a network failure becomes status 0 with a message a person can read. opts: headers,
// signal, cache ('no-cache' revalidates what the API lets browsers keep for a while),
// noCart (leave the guest cart token out), keepToken (a 401 does not sign out).
async function api(method, path, body, opts = {}) {
  const headers = { Accept: 'application/json' };
  if (store.token) headers.Authorization = 'Bearer ' + store.token;
  if (store.cartToken && !opts.noCart) headers['X-Cart-Token'] = store.cartToken;
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  Object.assign(headers, opts.headers || {});
  let res;
  try {
    res = await fetch('/api/v1' + path, {
      method, headers, body: body === undefined ? undefined : JSON.stringify(body),
      signal: opts.signal, credentials: 'omit', cache: opts.cache || 'default',
    });
  } catch (e) {
    if (e.name === 'AbortError') throw e;
    return { status: 0, ok: false, data: null, error: { code: 'network', message: 'The shop cannot be reached. Check your connection and try again.' } };
  }
  const ct = res.headers.get('X-Cart-Token');
  if (ct && !store.token) store.cartToken = ct;
  let data = null;
  if (res.status !== 204) {
    try { data = await res.json(); } catch (e) { data = null; }
  }
  if (res.status === 401 && store.token && !opts.keepToken) {
    store.token = null; // expired or revoked
    store.user = null;
  }
  const error = res.ok ? null : (data && data.error) || { code: 'http_' + res.status, message: 'Something went wrong (' + res.status + ').' };
  return { status: res.status, ok: res.ok, data, error };
}

// h('a', {href: '/x', class: 'btn'}, 'text', child…) — attributes are set as attributes
// (on* names become listeners), children as text nodes or elements.
function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else if (k === 'class') el.className = v;
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  appendAll(el, children);
  return el;
}
// Replaces el's children (null/false entries are skipped).
function setChildren(el, ...children) {
  el.replaceChildren();
  return appendAll(el, children);
}
function appendAll(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}
const SVGNS = 'http://www.w3.org/2000/svg';
function s(tag, attrs, ...children) {
  const el = document.createElementNS(SVGNS, tag);
  for (const [k, v] of Object.entries(attrs || {})) el.setAttribute(k, String(v));
  for (const c of children.flat()) el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return el;
}

function money(m) {
  if (!m) return '';
  try {
    return new Intl.NumberFormat('en-US', { style: 'currency', currency: m.currency || 'USD' }).format(m.amount / 100);
  } catch (e) {
    return (m.amount / 100).toFixed(2) + ' ' + m.currency;
  }
}
function when(iso) {
  if (!iso) return '';
  const d = new Date(iso);
  return isNaN(d) ? iso : d.toLocaleString('en-US', { dateStyle: 'medium', timeStyle: 'short' });
}
const STATUS_TEXT = {
  pending: 'Pending', paid: 'Paid', fulfilling: 'Being packed', shipped: 'Shipped', delivered: 'Delivered',
  failed: 'Payment failed', cancelled: 'Cancelled', on_hold: 'Under review', label_created: 'Label created',
  in_transit: 'In transit', returned: 'Returned',
};
const statusText = (st) => STATUS_TEXT[st] || st;
function badge(st) { return h('span', { class: 'badge badge-' + st }, statusText(st)); }

// Sets the page's main content, title and focus (so screen readers announce the new view).
function show(title, ...content) {
  const main = document.getElementById('main');
  main.replaceChildren(...content.flat().filter(Boolean));
  document.title = title + ' · ' + document.body.dataset.site;
  const h1 = main.querySelector('h1');
  if (h1 && show.moved) { h1.setAttribute('tabindex', '-1'); h1.focus({ preventScroll: false }); }
}
show.moved = false;

function alertBox(msg, kind = 'error') {
  return h('div', { class: 'notice notice-' + kind, role: kind === 'error' ? 'alert' : 'status' }, msg);
}
function loading() { return h('p', { class: 'muted', role: 'status' }, 'Loading…'); }

let toastTimer;
function toast(msg) {
  const t = document.getElementById('toast');
  t.textContent = msg;
  t.classList.add('on');
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => t.classList.remove('on'), 4000); // only hides the visual pop-up
}

// A labelled form field: field('Email', {name: 'email', type: 'email'}).
let fieldSeq = 0;
function field(label, attrs, hint) {
  const id = attrs.id || 'f' + (++fieldSeq);
  const errId = id + '-err';
  const input = attrs.tag === 'select'
    ? h('select', { ...attrs, tag: null, id, 'aria-describedby': errId }, attrs.options.map(([v, t]) => h('option', { value: v, selected: v === attrs.value }, t)))
    : attrs.tag === 'textarea'
      ? h('textarea', { ...attrs, tag: null, id, 'aria-describedby': errId }, attrs.value || '')
      : h('input', { type: 'text', ...attrs, id, 'aria-describedby': errId });
  if (attrs.tag === 'select') input.removeAttribute('options');
  return h('div', { class: 'field' },
    h('label', { for: id }, label),
    hint ? h('span', { class: 'hint' }, hint) : null,
    input,
    h('span', { class: 'field-error', id: errId }));
}
// Marks the field named `name` in form as invalid with a message (from an API error).
function fieldError(form, name, msg) {
  const input = name && form.querySelector('[name="' + CSS.escape(name) + '"]');
  if (!input) return false;
  input.setAttribute('aria-invalid', 'true');
  const err = document.getElementById(input.id + '-err');
  if (err) err.textContent = msg;
  input.focus();
  return true;
}
function clearErrors(form) {
  form.querySelectorAll('[aria-invalid]').forEach((el) => el.removeAttribute('aria-invalid'));
  form.querySelectorAll('.field-error').forEach((el) => { el.textContent = ''; });
  form.querySelectorAll('.form-error').forEach((el) => el.remove());
}
function formError(form, msg) {
  const box = alertBox(msg);
  box.classList.add('form-error');
  form.prepend(box);
  return box;
}

// Client-side routing: same-origin links render without a page load; back/forward work.
const router = { routes: [], notFound: null };
function route(re, fn) { router.routes.push([re, fn]); }
async function render() {
  const path = location.pathname;
  for (const [re, fn] of router.routes) {
    const m = path.match(re);
    if (m) { await fn(...m.slice(1).map(decodeURIComponent)); return; }
  }
  router.notFound();
}
async function go(url, replace) {
  if (replace) history.replaceState(null, '', url); else history.pushState(null, '', url);
  show.moved = true;
  window.scrollTo(0, 0);
  if (router.onNav) router.onNav();
  await render();
}
function startRouter(onNav) {
  document.addEventListener('click', (e) => {
    const a = e.target.closest('a[href]');
    if (!a || e.defaultPrevented || e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey || e.altKey) return;
    const url = new URL(a.href, location.href);
    if (url.origin !== location.origin || a.target || a.hasAttribute('download')) return;
    if (!router.routes.some(([re]) => re.test(url.pathname))) return;
    e.preventDefault();
    go(url.pathname + url.search);
  });
  router.onNav = onNav;
  window.addEventListener('popstate', () => { show.moved = true; if (onNav) onNav(); render(); });
  return render();
}
const params = () => new URLSearchParams(location.search);
