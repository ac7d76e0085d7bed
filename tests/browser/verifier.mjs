// Drives the verifier page (`/verify` on the query API) in Debian's Chromium with a fake camera:
// the camera shows the QR image in CAMERA (a Y4M file) and the page is asked to scan it. The
// browser profile (PROFILE) persists between runs, so a run after the query API is stopped finds
// the page, its trust bundle and its status lists in the service worker's cache, as a phone
// would. Prints one JSON line with what the page showed; exits non-zero on the first thing that
// is not as expected.
//
// Environment: VERIFY_URL (the page, with ?lang= if wanted), PROFILE (the user data directory),
// CAMERA (the Y4M file), OFFLINE ("1": the context is offline from the start), FORGET_LISTS ("1":
// the status lists are deleted from the service worker's cache and the page reloaded first, as
// on a device that never fetched them), SCREENSHOT.
import { chromium } from 'playwright-core';

const { VERIFY_URL, PROFILE, CAMERA, OFFLINE, FORGET_LISTS, SCREENSHOT } = process.env;
const context = await chromium.launchPersistentContext(PROFILE, {
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync',
    '--use-fake-ui-for-media-stream', '--use-fake-device-for-media-stream',
    `--use-file-for-fake-video-capture=${CAMERA}`],
  viewport: { width: 900, height: 1100 },
  permissions: ['camera'],
});
const seen = { errors: [], requests: [] };
try {
  if (OFFLINE === '1') await context.setOffline(true);
  const page = context.pages()[0] || await context.newPage();
  page.on('pageerror', e => seen.errors.push(String(e)));
  await page.goto(VERIFY_URL);
  await page.waitForSelector('body[data-ready]', { timeout: 30000 });
  if (FORGET_LISTS === '1') {
    seen.forgotten = await page.evaluate(async () => {
      let n = 0;
      for (const name of await caches.keys()) {
        const cache = await caches.open(name);
        for (const request of await cache.keys()) {
          if (new URL(request.url).pathname.startsWith('/v1/status-lists/')) { await cache.delete(request); n++; }
        }
      }
      return n;
    });
    await page.reload();
    await page.waitForSelector('body[data-ready]', { timeout: 30000 });
  }
  seen.ready = await page.getAttribute('body', 'data-ready');
  seen.controlled = await page.evaluate(() => navigator.serviceWorker.controller !== null);
  seen.state = await page.textContent('#state');
  seen.title = await page.textContent('#title');
  await page.click('#scan');
  await page.waitForFunction(() => {
    const outcome = document.querySelector('#answer').dataset.outcome;
    return outcome && outcome !== 'checking';
  }, null, { timeout: 30000 });
  seen.outcome = await page.getAttribute('#answer', 'data-outcome');
  seen.heading = await page.textContent('#answer h2');
  seen.answer = await page.textContent('#answer');
  seen.age = await page.locator('#answer .age').textContent({ timeout: 1000 }).catch(() => null);
  seen.name = await page.locator('#answer .name').textContent({ timeout: 1000 }).catch(() => null);
  await page.screenshot({ path: SCREENSHOT, fullPage: true });
  console.log(JSON.stringify(seen));
} catch (e) {
  console.log(JSON.stringify(seen));
  console.error(String(e && e.stack || e));
  process.exitCode = 1;
} finally {
  await context.close();
}
