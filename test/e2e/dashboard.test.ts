/**
 * The web dashboard in a real browser (Debian's Chromium, headless, driven by playwright-core) against a real
 * `remex serve` with tokens, its local bubblewrap workers and real programs: it asks for a token and is
 * refused without one (API and live feed), shows each platform, shows a job submitted through the API
 * appear and complete without a reload, a long job's progress bar move and its log lines arrive, cancels a job, drains and undrains
 * workers with the buttons, shows a comparison run through the API with the numbers of its JSON, and an
 * autoscaler's pools and decisions (or that a server has none). It takes the docs' screenshots
 * (REMEX_SCREENSHOTS=docs/images).
 */
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { after, before, describe, test } from 'node:test';
import type { Browser, Page } from 'playwright-core';
import { DEFAULT_DASHBOARD_DIR } from '../../src/api/http/dashboard-assets.js';
import { Authenticator } from '../../src/auth/tokens.js';
import { parseAutoscaleConfig } from '../../src/autoscale/config.js';
import type { AutoscalerState } from '../../src/autoscale/controller.js';
import type { ComparisonDocument } from '../../src/compare/comparison.js';
import { RemexClient } from '../../src/client/remex-client.js';
import { digestOf } from '../../src/core/digest.js';
import type { Digest } from '../../src/core/digest.js';
import { launchChromium, requireChromium, screenshotPath } from '../helpers/browser.js';
import { startTestServer } from '../helpers/server.js';
import type { TestServer } from '../helpers/server.js';
import { compileC, requireTools } from '../helpers/tools.js';

const CLIENT_TOKEN = 'dashboard-client-token-0123456789';
const WORKER_TOKEN = 'dashboard-worker-token-0123456789';

let ts: TestServer | undefined;
let browser: Browser | undefined;
let page: Page;
let client: RemexClient;

async function upload(file: string): Promise<Digest> {
  const bytes = readFileSync(compileC({ file }, 'x86_64'));
  const digest = digestOf(bytes);
  await client.putBlob(digest, bytes);
  return digest;
}

/** How the page's own WebSocket fares with these subprotocols: 'open', or 'refused'. */
async function wsFrom(p: Page, protocols: string[]): Promise<string> {
  const url = `ws://${new URL(p.url()).host}/v1/events`;
  return p.evaluate(
    ([to, offered]) =>
      new Promise<string>((resolve) => {
        const ws = new WebSocket(to, offered);
        ws.onopen = () => (ws.close(), resolve('open'));
        ws.onclose = () => resolve('refused');
      }),
    [url, protocols] as const,
  );
}

/** The page's global object, as far as these tests mark it. */
type Marked = { notReloaded?: boolean };

describe('the web dashboard in a real browser', () => {
  before(async () => {
    ts = await startTestServer({
      workerSlots: 2,
      auth: Authenticator.fromTokens({ client: [CLIENT_TOKEN], worker: [WORKER_TOKEN] }),
      localPricePerHour: 0.5,
      // Heartbeats every 250 ms carry progress; a worker that stops heartbeating stays listed a minute.
      scheduler: { leaseTimeoutMs: 2_000, heartbeatIntervalMs: 250, workerSilenceMs: 60_000, reaperIntervalMs: 250 },
    });
    client = new RemexClient(ts.server.url, { token: CLIENT_TOKEN });
  });
  after(async () => {
    await browser?.close();
    await ts?.close();
  });

  test('the built JavaScript is within 200 KB compressed and loads nothing from elsewhere', () => {
    const assets = join(DEFAULT_DASHBOARD_DIR, 'assets');
    const scripts = readdirSync(assets).filter((f) => f.endsWith('.js'));
    assert.ok(scripts.length > 0, `no script in ${assets}: run npm run build`);
    const compressed = scripts.reduce((sum, f) => sum + gzipSync(readFileSync(join(assets, f))).length, 0);
    assert.ok(compressed <= 200 * 1024, `${compressed} bytes of gzip-compressed JavaScript`);
    const html = readFileSync(join(DEFAULT_DASHBOARD_DIR, 'index.html'), 'utf8');
    assert.doesNotMatch(html, /(src|href)="(https?:)?\/\//, 'every asset is served by remex');
  });

  test('without a token the page asks for one; the API and the live feed refuse it; a wrong token is refused', async (t) => {
    if (!requireChromium(t) || !ts) return;
    browser = await launchChromium();
    page = await browser.newPage({ viewport: { width: 1280, height: 860 } });
    const requested: string[] = [];
    page.on('request', (r) => requested.push(r.url()));
    await page.goto(ts.server.url);
    await page.waitForSelector('#token-form');
    assert.equal((await fetch(`${ts.server.url}/v1/platforms`)).status, 401);
    assert.equal((await fetch(`${ts.server.url}/v1/workers`)).status, 401);
    assert.equal(await wsFrom(page, ['remex.v1']), 'refused', 'the live feed without a token');
    assert.equal(await wsFrom(page, ['remex.v1', `bearer.${Buffer.from('not-a-token-at-all').toString('base64url')}`]), 'refused');
    assert.equal(await wsFrom(page, ['remex.v1', `bearer.${Buffer.from(CLIENT_TOKEN).toString('base64url')}`]), 'open');

    await page.fill('input[name=token]', 'wrong-token-wrong-token');
    await page.click('#token-form button');
    assert.match(await page.textContent('#token-error', { timeout: 10_000 }) ?? '', /UNAUTHENTICATED: invalid token/);
    await page.screenshot({ path: screenshotPath('dashboard-token') });
    await page.fill('input[name=token]', CLIENT_TOKEN);
    await page.click('#token-form button');
    await page.waitForSelector('#live-state.ok');
    for (const url of [page.url(), ...requested]) assert.ok(!url.includes(CLIENT_TOKEN) && !url.includes(Buffer.from(CLIENT_TOKEN).toString('base64url')), `token in ${url}`);
  });

  test('the overview shows each platform the server offers, native or emulated', async (t) => {
    if (!browser || !ts) return t.skip('no browser');
    const { platforms } = await client.status();
    assert.ok(platforms.length >= 1);
    for (const p of platforms) {
      const how = await page.textContent(`tr[data-platform="${p.platform}"] td:nth-child(2)`, { timeout: 10_000 });
      assert.equal(how, p.emulated ? 'emulated' : 'native', p.platform);
    }
    assert.ok(platforms.some((p) => !p.emulated), 'this host runs one natively');
  });

  test('a job submitted through the API appears and completes in the list without a reload', async (t) => {
    if (!browser || !ts || !requireTools(t, 'bwrap', 'gcc')) return;
    await page.click('nav a[href="#/jobs"]');
    await page.waitForSelector('#jobs');
    await page.evaluate(() => ((globalThis as Marked).notReloaded = true));
    const echo = await upload('programs/echo.c');
    const job = await client.submit({ executable: echo, args: ['from', 'the', 'api'], name: 'dashboard-hello', labels: { suite: 'docs' }, doNotCache: true });
    await page.waitForSelector(`tr[data-id="${job.id}"]`, { timeout: 30_000 });
    await page.waitForSelector(`tr[data-id="${job.id}"][data-state="completed"]`, { timeout: 30_000 });
    assert.equal(await page.evaluate(() => (globalThis as Marked).notReloaded), true, 'the page was not reloaded');
    assert.equal(await page.textContent(`tr[data-id="${job.id}"] td:nth-child(2)`), 'dashboard-hello');
    await page.screenshot({ path: screenshotPath('dashboard-jobs') });

    // Filters go to the server: another platform lists none of it; an unknown one is a clear error.
    const other = (await client.status()).platforms.find((p) => p.platform !== job.platform);
    if (other) {
      await page.selectOption('select[name=platform]', other.platform);
      await page.click('#job-filters button');
      await page.waitForSelector(`tr[data-id="${job.id}"]`, { state: 'detached', timeout: 10_000 });
      await page.selectOption('select[name=platform]', '');
      await page.click('#job-filters button');
      await page.waitForSelector(`tr[data-id="${job.id}"]`, { timeout: 10_000 });
    }
    const bad = await fetch(`${ts.server.url}/v1/executions?platform=vax-linux-cpu`, { headers: { authorization: `Bearer ${CLIENT_TOKEN}` } });
    assert.equal(bad.status, 400);
    assert.match(((await bad.json()) as { detail: string }).detail, /unknown ISA "vax"/);
  });

  test("a long job's page: its progress bar moves, its output arrives, its command, cost and machine show", async (t) => {
    if (!browser || !ts || !requireTools(t, 'bwrap', 'gcc')) return;
    const progress = await upload('programs/progress.c');
    // 3 s between reports: each is on screen for a while, however loaded the machine.
    const job = await client.submit({ executable: progress, args: ['3000'], progress: true, name: 'dashboard-long', doNotCache: true });
    await page.goto(`${ts.server.url}/#/jobs/${job.id}`);
    await page.waitForSelector('#progress[data-percent="10"]', { timeout: 30_000 });
    await page.waitForSelector('#progress[data-percent="55.5"]', { timeout: 30_000 });
    await page.screenshot({ path: screenshotPath('dashboard-job') });
    await page.waitForSelector('#job[data-state="completed"]', { timeout: 30_000 });
    await page.waitForSelector('#progress[data-percent="100"]');
    assert.match((await page.textContent('#stdout')) ?? '', /channel at \/work\/\.remex-progress/);
    assert.match((await page.textContent('.facts')) ?? '', /command\.\/program 3000platform/);
    assert.match((await page.textContent('#host')) ?? '', /cores, .*slots, 0\.5\/h/);
    assert.match((await page.textContent('#cost')) ?? '', /^\d+\.\d{6}$/);
  });

  test("a long job's live log: its lines arrive on the page while it still runs, stdout and stderr apart", async (t) => {
    if (!browser || !ts || !requireTools(t, 'bwrap', 'gcc')) return;
    const lines = await upload('programs/log-lines.c');
    // Six lines 150 ms apart, then it holds until cancelled: whatever the page shows came while it ran.
    const job = await client.submit({ executable: lines, args: ['6', '150', 'hold'], logs: true, name: 'dashboard-logs', doNotCache: true });
    try {
      await page.goto(`${ts.server.url}/#/jobs/${job.id}`);
      await page.waitForSelector('#stdout:has-text("line 5")', { timeout: 30_000 });
      assert.equal((await client.getExecution(job.id)).state, 'running', 'the lines came while the program ran');
      const stdout = (await page.textContent('#stdout')) ?? '';
      assert.deepEqual(stdout.match(/line \d/g), ['line 0', 'line 1', 'line 2', 'line 3', 'line 4', 'line 5'], 'every line once, in order');
      assert.match((await page.textContent('#stderr')) ?? '', /note 0[\s\S]*note 5/);
    } finally {
      await client.cancel(job.id);
    }
  });

  test("cancel on a running job's page cancels it", async (t) => {
    if (!browser || !ts || !requireTools(t, 'bwrap', 'gcc')) return;
    const sleepy = await upload('programs/sleepy.c');
    const job = await client.submit({ executable: sleepy, args: ['60000'], name: 'dashboard-cancel', doNotCache: true });
    await page.goto(`${ts.server.url}/#/jobs/${job.id}`);
    await page.waitForSelector('#job[data-state="running"]', { timeout: 30_000 });
    await page.click('#cancel');
    await page.waitForSelector('#job[data-state="cancelled"]', { timeout: 30_000 });
    assert.equal((await client.getExecution(job.id)).state, 'cancelled');
  });

  test('the overview charts the last hour as points arrive', async (t) => {
    if (!browser || !ts) return t.skip('no browser');
    await page.goto(`${ts.server.url}/#/overview`);
    // A point every 5 s (the first ones came while the tests above ran).
    await page.waitForSelector('.charts:not([data-points="0"])', { timeout: 30_000 });
    await page.screenshot({ path: screenshotPath('dashboard-overview') });
  });

  test("comparisons: one run through the API is listed, and its page shows a row per entry with its JSON's numbers", async (t) => {
    if (!browser || !ts || !requireTools(t, 'bwrap', 'gcc')) return;
    const echo = await upload('programs/echo.c');
    const X86 = 'x86_64-linux-cpu';
    const execution = { platform: X86, executable: echo, args: ['same', 'answer'] };
    const started = await client.request<ComparisonDocument>('POST', '/v1/comparisons', { repeat: 2, warmup: 0, entries: [{ execution }, { execution }] });
    let doc = started;
    while (doc.state === 'running') {
      await new Promise((r) => setTimeout(r, 200));
      doc = await client.request<ComparisonDocument>('GET', `/v1/comparisons/${started.id}`);
    }
    assert.equal(doc.state, 'completed', doc.failure ?? '');
    const listed = await client.request<{ comparisons: Array<{ id: string }>; next: string | null }>('GET', '/v1/comparisons?limit=1');
    assert.deepEqual(listed.comparisons.map((c) => c.id), [doc.id]);
    const badLimit = await fetch(`${ts.server.url}/v1/comparisons?limit=0`, { headers: { authorization: `Bearer ${CLIENT_TOKEN}` } });
    assert.equal(badLimit.status, 400);
    assert.match(((await badLimit.json()) as { detail: string }).detail, /limit must be an integer from 1 to 1000/);

    await page.goto(`${ts.server.url}/#/comparisons`);
    await page.click(`tr[data-id="${doc.id}"] a`);
    await page.waitForSelector('#comparison[data-state="completed"]', { timeout: 10_000 });
    const entries = doc.report.entries;
    assert.deepEqual(entries.map((e) => e.label), [X86, `${X86}#2`]);
    assert.equal(await page.locator('#entries tbody tr').count(), entries.length);
    for (const e of entries) {
      const cell = async (c: string) => (await page.textContent(`#entries tr[data-label="${e.label}"] td.${c}`))?.trim();
      assert.equal(await cell('n'), String(e.runs.counted));
      assert.equal(e.runs.counted, 2);
      assert.equal(await cell('median'), `${e.wallTimeMs!.median.toFixed(1)} ms`);
      const i = e.wallTimeMs!.medianInterval;
      assert.equal(await cell('interval'), i ? `[${i.low.toFixed(1)} ms, ${i.high.toFixed(1)} ms]` : '');
      assert.equal(await cell('cost'), e.cost!.per1000Runs.median.toPrecision(3));
      if (e.label === doc.report.baseline) assert.equal(await cell('ratio'), 'baseline');
      else assert.match((await cell('ratio')) ?? '', new RegExp(`^${e.vsBaseline!.estimate.toFixed(3)} `));
      assert.equal(await page.textContent(`#entries tr[data-label="${e.label}"] td:nth-child(3)`), 'native');
    }
    assert.equal(await page.locator('#outputs-differ').count(), 0, 'the same program gives the same output');
    assert.equal(await page.locator('#comparison-chart g[data-label]').count(), entries.length);
    await page.screenshot({ path: screenshotPath('dashboard-comparison') });
  });

  test('workers: drain and undrain with the buttons; the local worker drains and leaves; a worker that left cannot be undrained', async (t) => {
    if (!browser || !ts) return t.skip('no browser');
    // A worker registered through the worker protocol that takes no work and sends no heartbeat: its drain
    // order waits, so it can be withdrawn.
    const registered = await fetch(`${ts.server.url}/v1/workers`, {
      method: 'POST',
      headers: { authorization: `Bearer ${WORKER_TOKEN}`, 'content-type': 'application/json' },
      body: JSON.stringify({ name: 'idle-1', platforms: [{ platform: 'x86_64-linux-cpu', emulated: false }], slots: 4, labels: { pool: 'spare' } }),
    });
    const { workerId: idle } = (await registered.json()) as { workerId: string };
    await page.goto(`${ts.server.url}/#/workers`);
    await page.click(`tr[data-worker="${idle}"] button.drain`);
    await page.waitForSelector(`tr[data-worker="${idle}"][data-state="drain-ordered"]`, { timeout: 10_000 });
    await page.click(`tr[data-worker="${idle}"] button.undrain`);
    await page.waitForSelector(`tr[data-worker="${idle}"][data-state="active"]`, { timeout: 10_000 });
    assert.equal((await client.workers()).find((w) => w.id === idle)?.drainRequested, false);
    await page.screenshot({ path: screenshotPath('dashboard-workers') });

    const local = ts.server.localWorker?.id;
    assert.ok(local);
    await page.click(`tr[data-worker="${local}"] button.drain`);
    await page.waitForSelector(`tr[data-worker="${local}"][data-state="gone"]`, { timeout: 30_000 });
    const refused = await fetch(`${ts.server.url}/v1/workers/${encodeURIComponent(local)}/undrain`, { method: 'POST', headers: { authorization: `Bearer ${CLIENT_TOKEN}` } });
    assert.equal(refused.status, 400);
    const problem = (await refused.json()) as { code: string; detail: string };
    assert.equal(problem.code, 'FAILED_PRECONDITION');
    assert.match(problem.detail, /has left; it cannot be undrained/);
  });

  test('the autoscaler page says a server runs none, and shows a pool: desired against actual, its decisions with reasons', async (t) => {
    if (!browser || !ts) return t.skip('no browser');
    await page.goto(`${ts.server.url}/#/autoscaler`);
    assert.match((await page.textContent('#no-autoscaler', { timeout: 10_000 })) ?? '', /No autoscaler configured/);

    // A server with one pool that must keep a worker: its scale-out command (`true`) starts nothing, so the
    // worker stays starting and the pool wants one it does not have.
    const config = parseAutoscaleConfig(
      {
        decisionIntervalSeconds: 0.5,
        pools: [{ name: 'spare', platforms: ['x86_64-linux-cpu'], provider: { type: 'command', scaleOut: ['true'], scaleIn: ['true'], timeoutSeconds: 10, attempts: 1 }, minWorkers: 1, maxWorkers: 2, registerTimeoutSeconds: 600 }],
      },
      'test',
    );
    const scaled = await startTestServer({ workerSlots: 0, autoscale: config, scheduler: { acceptPlatforms: ['x86_64-linux-cpu'] } });
    try {
      const other = await browser.newPage({ viewport: { width: 1280, height: 700 } });
      await other.goto(`${scaled.server.url}/#/autoscaler`);
      await other.waitForSelector('.pool[data-pool="spare"][data-desired="1"] .decisions tr[data-direction="up"]', { timeout: 30_000 });
      const state = (await (await fetch(`${scaled.server.url}/v1/autoscaler`)).json()) as AutoscalerState;
      const pool = state.pools.find((p) => p.name === 'spare')!;
      assert.equal(pool.desired, 1);
      assert.equal(await other.textContent('.pool[data-pool="spare"] .active'), String(pool.active));
      const up = pool.changes.find((d) => d.direction === 'up')!;
      assert.ok(up.reason.length > 0);
      assert.ok(((await other.textContent('.pool[data-pool="spare"] .decisions')) ?? '').includes(up.reason), up.reason);
      await other.screenshot({ path: screenshotPath('dashboard-autoscaler') });
      await other.close();
    } finally {
      await scaled.close();
    }
  });
});
