// Drives the master-data page (`/admin` on the query API) in Debian's Chromium: signs in with an
// administrator's token, defines a programme, registers a facility and activates it, checking
// what the page shows after each step, and saves a screenshot. Prints one JSON line with what it
// saw; exits non-zero (with the reason) on the first thing that is not as expected.
//
// Environment: ADMIN_URL (the page), TOKEN (bearer token), SCREENSHOT (where to save it),
// PROGRAMME and FACILITY (ids to create).
import { chromium } from 'playwright-core';

const { ADMIN_URL, TOKEN, SCREENSHOT, PROGRAMME, FACILITY } = process.env;
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
const seen = {};
try {
  const page = await browser.newPage({ viewport: { width: 1400, height: 1000 } });
  const errors = [];
  page.on('pageerror', e => errors.push(String(e)));
  await page.goto(ADMIN_URL);
  await page.fill('#token', TOKEN);
  await page.click('#login button');
  await page.waitForSelector('body[data-loaded="true"]', { timeout: 15000 });

  const programme = page.locator('#programme');
  await programme.locator('[name=id]').fill(PROGRAMME);
  await programme.locator('[name=name]').fill('Admin page programme');
  await programme.locator('[name=diseases]').fill('COVID-19');
  await programme.locator('[name=updateLimit]').fill('2');
  await programme.locator('[name=timeZone]').fill('Asia/Kolkata');
  await programme.locator('button').click();
  await page.waitForSelector(`#programmes td:text-is("${PROGRAMME}")`, { timeout: 15000 });
  seen.programmeMessage = await page.textContent('#message');

  const facility = page.locator('#facility');
  await facility.locator('[name=id]').fill(FACILITY);
  await facility.locator('[name=name]').fill('PHC Admin Page');
  await facility.locator('[name=district]').fill('Bengaluru');
  await facility.locator('[name=state]').fill('Karnataka');
  await facility.locator('button').click();
  const row = page.locator('#facilities tr', { hasText: FACILITY });
  await row.locator('td.suspended').waitFor({ timeout: 15000 });
  seen.registered = await row.locator('td.suspended').textContent();
  await row.locator(`button[data-facility="${FACILITY}"]`).click();
  await row.locator('td.active').waitFor({ timeout: 15000 });
  seen.activated = await row.locator('td.active').textContent();
  seen.message = await page.textContent('#message');

  // A bad body is refused with the field named, and the page says so.
  await programme.locator('[name=id]').fill(PROGRAMME);
  await programme.locator('[name=timeZone]').fill('Mars/Olympus');
  await programme.locator('button').click();
  await page.waitForSelector('#message.error', { timeout: 15000 });
  seen.refused = await page.textContent('#message');

  await page.screenshot({ path: SCREENSHOT, fullPage: true });
  seen.pageErrors = errors;
  console.log(JSON.stringify(seen));
} catch (e) {
  console.error(String(e), JSON.stringify(seen));
  process.exitCode = 1;
} finally {
  await browser.close();
}
