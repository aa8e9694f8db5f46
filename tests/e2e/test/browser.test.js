'use strict';
// The chat page at `/` in Debian's chromium, driven by playwright-core: two
// browsers signed in as users 1 and 18 (--demo mode) chat in real time,
// see typing and presence, follow the server going away and coming back,
// and catch up on a message sent while one of them was offline.
const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { chromium } = require('playwright-core');
const { startServer } = require('../lib/server');

const CHROMIUM = process.env.TIDINGS_E2E_CHROMIUM || '/usr/bin/chromium';
const ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];
// Where the screenshots go (printed at the end, kept for a person to look at).
const SHOTS = process.env.TIDINGS_E2E_SHOTS || fs.mkdtempSync(path.join(os.tmpdir(), 'tidings-e2e-shots-'));

let server;
const browsers = [];
const tmpDirs = [];

before(async () => {
  if (!fs.existsSync(CHROMIUM)) {
    throw new Error(`${CHROMIUM} does not exist: apt-get install -y chromium (tests/e2e/run.sh does)`);
  }
  server = await startServer({ args: ['--demo'] });
});

after(async () => {
  for (const b of browsers) await b.close().catch(() => {});
  if (server && server.running) await server.stop();
  if (server) server.cleanup();
  for (const d of tmpDirs) fs.rmSync(d, { recursive: true, force: true });
});

/** A separate chromium with a fresh user-data-dir: one person's browser. */
async function browser(name) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `tidings-e2e-chromium-${name}-`));
  tmpDirs.push(dir);
  const context = await chromium.launchPersistentContext(dir, {
    executablePath: CHROMIUM,
    headless: true,
    args: ARGS,
    viewport: { width: 900, height: 640 },
  });
  browsers.push(context);
  const page = context.pages()[0] || (await context.newPage());
  page.setDefaultTimeout(15000);
  page.on('pageerror', (e) => console.log(`# [${name}] page error: ${e.message}`));
  page.on('response', (r) => {
    if (r.status() >= 400) console.log(`# [${name}] HTTP ${r.status()} for ${r.request().method()} ${r.url()}`);
  });
  return { context, page };
}

const byId = (page, id) => page.locator(`[data-testid="${id}"]`);

async function waitAttr(page, id, attr, value, timeout = 15000) {
  await page.waitForFunction(
    ([id, attr, value]) => {
      const el = document.querySelector(`[data-testid="${id}"]`);
      return el && el.getAttribute(attr) === value;
    },
    [id, attr, value],
    { timeout },
  );
}

/** The received message with this body on `page`. */
function message(page, body) {
  return page.locator('[data-testid="message"]', { has: page.locator('[data-testid="message-body"]', { hasText: body }) });
}

test('two users chat in the browser: delivery, typing, presence, offline and catch-up', async () => {
  const one = await browser('user1');
  const eighteen = await browser('user18');

  // User 1 signs in through the form; user 18 with the demo shortcut.
  await one.page.goto(server.url + '/');
  await byId(one.page, 'signin-input').fill('1');
  await byId(one.page, 'signin-button').click();
  await eighteen.page.goto(`${server.url}/?user=18`);
  await waitAttr(one.page, 'connection', 'data-state', 'connected');
  await waitAttr(eighteen.page, 'connection', 'data-state', 'connected');
  assert.equal(await byId(one.page, 'me').getAttribute('data-user'), '1');
  assert.equal(await byId(eighteen.page, 'me').getAttribute('data-user'), '18');

  // Each opens the conversation with the other.
  await byId(one.page, 'peer-input').fill('18');
  await byId(one.page, 'open-conversation').click();
  await waitAttr(one.page, 'peer-name', 'data-peer', '18');
  await byId(eighteen.page, 'peer-input').fill('1');
  await byId(eighteen.page, 'open-conversation').click();
  await waitAttr(eighteen.page, 'peer-name', 'data-peer', '1');

  // 1 sees that 18 is online (and the other way round).
  await waitAttr(one.page, 'presence', 'data-state', 'online');
  await waitAttr(eighteen.page, 'presence', 'data-state', 'online');

  // 18 sees "1 is typing…" while 1 types.
  await byId(one.page, 'composer-input').pressSequentially('hello eigh', { delay: 30 });
  await eighteen.page.waitForFunction(() =>
    /1 is typing/.test(document.querySelector('[data-testid="typing-indicator"]').textContent),
  );
  await eighteen.page.screenshot({ path: path.join(SHOTS, '0-user18-sees-typing.png') });

  // 1 sends; 18 sees it. Time from the click on 1's page to the message
  // being in 18's DOM, both read from the machine's clock in the pages.
  await eighteen.page.evaluate(() => {
    window.__rendered = {};
    new MutationObserver(() => {
      for (const el of document.querySelectorAll('[data-testid="message"]')) {
        const body = el.querySelector('[data-testid="message-body"]');
        if (body && !(body.textContent in window.__rendered)) {
          window.__rendered[body.textContent] = performance.timeOrigin + performance.now();
        }
      }
    }).observe(document.querySelector('[data-testid="message-list"]'), { childList: true, subtree: true, characterData: true });
  });
  const figures = [];
  for (let i = 0; i < 5; i++) {
    const body = i === 0 ? 'hello eighteen' : `message ${i} from 1`;
    await byId(one.page, 'composer-input').fill(body);
    await one.page.evaluate(() => {
      document.querySelector('[data-testid="send-button"]').addEventListener(
        'click',
        () => {
          window.__clicked = performance.timeOrigin + performance.now();
        },
        { once: true, capture: true },
      );
    });
    await byId(one.page, 'send-button').click();
    const clicked = await one.page.evaluate(() => window.__clicked);
    await message(eighteen.page, body).waitFor();
    const rendered = await eighteen.page.evaluate((b) => window.__rendered[b], body);
    assert.ok(rendered, `18's page recorded when "${body}" appeared`);
    figures.push(rendered - clicked);
    assert.equal(await message(eighteen.page, body).getAttribute('data-sender'), '1');
    // On 1's page the message is stored (not pending, not failed).
    await one.page.waitForFunction(
      (b) =>
        [...document.querySelectorAll('[data-testid="message"]')].some(
          (el) =>
            el.querySelector('[data-testid="message-body"]').textContent === b &&
            ['sent', 'read'].includes(el.dataset.status),
        ),
      body,
    );
  }
  const sorted = [...figures].sort((a, b) => a - b);
  console.log(
    `# send-click-to-render on the other page: ${figures.map((f) => f.toFixed(1)).join(', ')} ms ` +
      `(median ${sorted[Math.floor(sorted.length / 2)].toFixed(1)} ms)`,
  );
  // De-duplication: each message once on both pages.
  for (const page of [one.page, eighteen.page]) {
    assert.equal(await message(page, 'hello eighteen').count(), 1);
  }
  await one.page.screenshot({ path: path.join(SHOTS, '1-user1-chat.png') });
  await eighteen.page.screenshot({ path: path.join(SHOTS, '1-user18-chat.png') });

  // The server stops: both pages show offline.
  const stopped = await server.stop();
  assert.equal(stopped.code, 0, server.stderr);
  await waitAttr(one.page, 'connection', 'data-state', 'offline', 20000);
  await waitAttr(eighteen.page, 'connection', 'data-state', 'offline', 20000);
  await eighteen.page.screenshot({ path: path.join(SHOTS, '2-user18-offline.png') });

  // 18 loses its network; the server comes back on the same port and
  // data directory; 1 reconnects and sends while 18 is still offline.
  await eighteen.context.setOffline(true);
  server = await server.restart();
  await waitAttr(one.page, 'connection', 'data-state', 'connected', 40000);
  await waitAttr(one.page, 'presence', 'data-state', 'offline', 15000);
  const missed = 'sent while you were away';
  await byId(one.page, 'composer-input').fill(missed);
  await byId(one.page, 'send-button').click();
  await one.page.waitForFunction(
    (b) =>
      [...document.querySelectorAll('[data-testid="message"]')].some(
        (el) => el.querySelector('[data-testid="message-body"]').textContent === b && el.dataset.status === 'sent',
      ),
    missed,
  );
  assert.equal(await message(eighteen.page, missed).count(), 0, '18 is offline and cannot have it yet');
  assert.notEqual(await byId(eighteen.page, 'connection').getAttribute('data-state'), 'connected');

  // 18's network is back: connected again, and the missed message appears.
  await eighteen.context.setOffline(false);
  await waitAttr(eighteen.page, 'connection', 'data-state', 'connected', 40000);
  await message(eighteen.page, missed).waitFor({ timeout: 15000 });
  assert.equal(await message(eighteen.page, missed).count(), 1);
  await waitAttr(one.page, 'presence', 'data-state', 'online');
  // Nothing was lost or doubled across the restart.
  const bodies = await eighteen.page.$$eval('[data-testid="message-body"]', (els) => els.map((e) => e.textContent));
  assert.deepEqual(bodies, ['hello eighteen', 'message 1 from 1', 'message 2 from 1', 'message 3 from 1', 'message 4 from 1', missed]);

  await one.page.screenshot({ path: path.join(SHOTS, '3-user1-after-reconnect.png') });
  await eighteen.page.screenshot({ path: path.join(SHOTS, '3-user18-after-reconnect.png') });
  console.log(`# screenshots in ${SHOTS}`);
});
