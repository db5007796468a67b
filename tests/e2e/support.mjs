// SPDX-License-Identifier: MIT
// support.mjs — what the browser tests share: the real `emporium serve` on a free port with
// a fresh data dir, Debian's Chromium through playwright-core (never a downloaded browser),
// axe-core, and screenshots under build/e2e-screenshots.
import { spawn, execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync, readFileSync, mkdirSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

const tools = resolve(process.env.E2E_TOOLS || 'build/e2e-tools');
const require = createRequire(join(tools, 'package.json'));
export const { chromium } = require('playwright-core');
const axeSource = readFileSync(require.resolve('axe-core/axe.min.js'), 'utf8');
export const shots = resolve(process.env.E2E_SHOTS || 'build/e2e-screenshots');
mkdirSync(shots, { recursive: true });
const bin = resolve(process.env.EMPORIUM_BIN || 'build/emporium');

export const ADMIN = { email: 'ops@example.com', password: 'an admin password' };
export const TIMEOUT = 60000; // generous: a slow, shared machine (load 30+ on 2 cores seen)

// Starts the server: `--listen 127.0.0.1:0`, the port read from its log line.
export async function startServer() {
  const dir = mkdtempSync(join(tmpdir(), 'emporium-e2e-'));
  const env = { ...process.env, EMPORIUM_LOG_LEVEL: 'info', EMPORIUM_ACCESS_LOG: 'off' };
  delete env.EMPORIUM_DATABASE_URL;
  const proc = spawn(bin, ['serve', '--listen', '127.0.0.1:0', '--data-dir', dir], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  let log = '';
  const port = await new Promise((res, rej) => {
    const onData = (b) => {
      log += b.toString();
      const m = log.match(/listening on \S+ \(port (\d+)/);
      if (m) res(Number(m[1]));
    };
    proc.stdout.on('data', onData);
    proc.stderr.on('data', onData);
    proc.on('exit', (code) => rej(new Error('emporium exited with ' + code + ':\n' + log)));
    setTimeout(() => rej(new Error('emporium did not start within 60 s:\n' + log)), 60000).unref();
  });
  const base = 'http://127.0.0.1:' + port;
  // ready when the demo catalog answers
  for (let i = 0; ; i++) {
    const r = await fetch(base + '/api/v1/products?limit=1').catch(() => null);
    if (r && r.ok && (await r.json()).items.length) break;
    if (i > 600) throw new Error('the demo catalog never appeared');
    await new Promise((r2) => setTimeout(r2, 100)); // polling a condition, not a timed assertion
  }
  const pw = join(dir, 'pw');
  writeFileSync(pw, ADMIN.password + '\n');
  execFileSync(bin, ['user', 'create', '--email', ADMIN.email, '--password-file', pw, '--role', 'admin', '--data-dir', dir], { env, stdio: 'pipe' });
  return {
    base, dir, proc,
    async stop() {
      const exited = new Promise((res) => proc.on('exit', (code, sig) => res(code ?? sig)));
      proc.kill('SIGTERM');
      const code = await exited;
      rmSync(dir, { recursive: true, force: true });
      if (code !== 0) throw new Error('emporium exited with ' + code + ' on SIGTERM');
    },
  };
}

// Debian's Chromium with the flags this machine needs (no network beyond loopback).
// playwright-core gives each launch a new empty profile directory (its own --user-data-dir)
// and removes it on close.
export async function launch() {
  return chromium.launch({
    executablePath: process.env.EMPORIUM_CHROMIUM || '/usr/bin/chromium',
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    timeout: 60000,
  });
}

export async function newPage(browser, base, opts = {}) {
  const context = await browser.newContext({ baseURL: base, viewport: opts.viewport || { width: 1280, height: 900 }, ...opts.context });
  context.setDefaultTimeout(TIMEOUT);
  const page = await context.newPage();
  const problems = [];
  page.on('pageerror', (e) => problems.push('page error: ' + e.message));
  page.on('console', (m) => { if (m.type() === 'error' && !/status of 4\d\d/.test(m.text())) problems.push('console: ' + m.text()); });
  page.problems = problems;
  return page;
}

// Runs fn(page…); on failure saves a screenshot of every page given, then rethrows.
export async function withShots(name, pages, fn) {
  try {
    await fn();
  } catch (e) {
    for (const [i, p] of pages().entries()) {
      if (p && !p.isClosed()) await p.screenshot({ path: join(shots, `FAILED-${name}-${i}.png`), fullPage: true }).catch(() => {});
    }
    throw e;
  }
}
// Saves a screenshot of a page the journey passes through, after checking that no
// "undefined", "null" or "NaN" leaked into the text a person reads.
export async function shot(page, name) {
  const text = await page.locator('body').innerText();
  const leak = text.match(/\b(undefined|null|NaN)\b/);
  if (leak) throw new Error(`page ${name} shows "${leak[0]}": …${text.slice(Math.max(0, leak.index - 60), leak.index + 60)}…`);
  await page.screenshot({ path: join(shots, name + '.png'), fullPage: true });
}

// axe-core in the page (evaluated through the DevTools protocol, which the page's CSP does
// not govern); returns the violations.
export async function axe(page) {
  await page.evaluate(axeSource);
  return page.evaluate(async () => {
    const r = await window.axe.run(document, { runOnly: { type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'best-practice'] } });
    return r.violations.map((v) => ({ id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.slice(0, 3).map((n) => n.target.join(' ')) }));
  });
}

// Presses Tab until `locator` has the focus (at most `max` times); keyboard only.
export async function tabTo(page, locator, max = 80) {
  const handle = await locator.elementHandle();
  for (let i = 0; i < max; i++) {
    if (await handle.evaluate((el) => el === document.activeElement)) return;
    await page.keyboard.press('Tab');
  }
  throw new Error('Tab never reached ' + locator);
}

let seq = 0;
export const uniqueEmail = (tag) => `${tag}-${process.pid}-${Date.now()}-${++seq}@example.com`;
