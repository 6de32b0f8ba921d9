/**
 * 10,000 held locks in a real browser: the page loads them, keeps the DOM to the rows in view
 * (the tree is virtualized), scrolls to the last key, filters and collapses, and the keyboard
 * reaches the end. Times are printed as diagnostics (measured under whatever load the machine
 * has), never asserted.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { Page } from 'playwright-core';
import { openLocks } from '../../src/index.js';
import { ServerProcess, freePort, launchBrowser, type Browser } from './harness.js';

const RACKS = 100;
const HOSTS = 100;
const PER_LEASE = 64;

describe('the dashboard with 10,000 held locks', () => {
  let dir: string;
  let server: ServerProcess;
  let browser: Browser;
  let page: Page;
  let leases = 0;
  let store = '';

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'holdfast-browser-scale-'));
    store = `sqlite:${join(dir, 'locks.db')}`;
    const locks = await openLocks(store, { owner: 'seed' });
    try {
      const keys: string[] = [];
      for (let r = 0; r < RACKS; r++) for (let h = 0; h < HOSTS; h++) keys.push(`fleet/r${r}/host-${h}`);
      for (let i = 0; i < keys.length; i += PER_LEASE) {
        const resources = keys.slice(i, i + PER_LEASE).map((key) => ({ key, mode: 'exclusive' as const }));
        await locks.grant(resources, { owner: `agent-${leases}`, ttlMs: 3_600_000, metadata: { message: `Patching batch ${leases}` } });
        leases++;
      }
    } finally {
      await locks.close();
    }
    server = new ServerProcess({ store, port: await freePort() });
    await server.start();
    browser = await launchBrowser();
    page = await browser.page({ width: 1366, height: 768 });
  });

  after(async () => {
    await browser?.close();
    await server?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  test('loads, stays a bounded DOM, scrolls to the last key, filters, collapses, and the keyboard reaches the end', async (t) => {
    let started = performance.now();
    await page.goto(server.url);
    await page.locator('#locks-count', { hasText: `10000 keys held by ${leases} leases` }).waitFor({ timeout: 60_000 });
    t.diagnostic(`first render of 10,000 locks: ${Math.round(performance.now() - started)} ms after navigation`);
    const rows = await page.locator('.tree .row').count();
    assert.ok(rows > 10 && rows < 200, `${rows} rows in the DOM`);

    started = performance.now();
    await page.locator('#tree').evaluate((tree) => (tree.scrollTop = tree.scrollHeight));
    await page.locator('.tree .row.node', { hasText: 'agent-156' }).last().waitFor();
    t.diagnostic(`scroll to the end: ${Math.round(performance.now() - started)} ms`);
    const names = await page.locator('.tree .row.node .name').allTextContents();
    assert.equal(names.at(-1), 'host-99', 'the last row is the last host (natural order)');
    assert.ok((await page.locator('.tree .row').count()) < 200);

    await page.focus('#tree');
    await page.keyboard.press('Home');
    assert.match(await page.locator('.tree .row.active').innerText(), /fleet/);
    await page.keyboard.press('End');
    assert.match(await page.locator('.tree .row.active').innerText(), /host-99[\s\S]*agent-156/);

    started = performance.now();
    await page.fill('#search', 'r42/host-7');
    await page.locator('#locks-count', { hasText: '11 of 10000 shown' }).waitFor();
    t.diagnostic(`filter 10,000 locks to 11: ${Math.round(performance.now() - started)} ms`);
    assert.deepEqual((await page.locator('.tree .row.node .name').allTextContents()).slice(0, 4), ['fleet', 'r42', 'host-7', 'host-70']);
    await page.fill('#search', 'Patching batch 156');
    await page.locator('#locks-count', { hasText: `${10_000 - 156 * PER_LEASE} of 10000 shown` }).waitFor();
    await page.fill('#search', '');

    await page.click('#collapse-all');
    assert.deepEqual(await page.locator('.tree .row.node .name').allTextContents(), ['fleet']);
    await page.click('#expand-all');
    await page.locator('.tree .row.node .name', { hasText: 'r0' }).waitFor();
    assert.deepEqual(browser.problems, []);
  });

  test('stays responsive while another process makes 300 grants and releases', async (t) => {
    // The page's longest stall: a timer meant to fire every 50 ms, and how late it came.
    await page.evaluate(`(() => {
      window.__lag = 0; let last = performance.now();
      window.__lagTimer = setInterval(() => { const now = performance.now(); window.__lag = Math.max(window.__lag, now - last - 50); last = now; }, 50);
    })()`);
    const locks = await openLocks(store, { owner: 'burst' });
    const started = performance.now();
    try {
      for (let i = 0; i < 300; i++) await (await locks.acquire(`burst/k${i % 10}`, { ttlMs: 60_000 })).release();
    } finally {
      await locks.close();
    }
    const burstMs = performance.now() - started;
    await page.locator('#history tbody tr', { hasText: 'burst/k9' }).first().waitFor({ timeout: 10_000 });
    await page.locator('#locks-count', { hasText: `10000 keys held by ${leases} leases, 0 waiting` }).waitFor();
    const lag = Number(await page.evaluate('clearInterval(window.__lagTimer), window.__lag'));
    t.diagnostic(`300 grants and releases in ${Math.round(burstMs)} ms; the page's longest stall meanwhile: ${Math.round(lag)} ms (10,000 locks held, under the machine's load)`);
    assert.deepEqual(browser.problems, []);
  });
});
