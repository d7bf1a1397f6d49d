// Drives the dashboard in Debian's chromium with playwright-core, as a person would, and prints
// what it saw as one JSON document (the Rust test asserts on it).
//   node dashboard_browser.js BASE_URL EMAIL PASSWORD SCREENSHOT_DIR   (CHROMIUM: the browser)
const { chromium } = require('playwright-core');
const [base, email, password, shots] = process.argv.slice(2);

(async () => {
  const browser = await chromium.launch({ executablePath: process.env.CHROMIUM, args: ['--no-sandbox'] });
  const context = await browser.newContext({
    viewport: { width: 1100, height: 700 }, permissions: ['clipboard-read', 'clipboard-write'] });
  const page = await context.newPage();
  const out = { foreign: [], console_errors: [] };
  page.on('request', (r) => { if (!r.url().startsWith(base)) out.foreign.push(r.url()); });
  page.on('console', (m) => { if (m.type() === 'error') out.console_errors.push(m.text()); });

  // Without a session, a page leads to the log-in page.
  await page.goto(base + '/environments');
  out.unauthenticated = new URL(page.url()).pathname;

  // A wrong password shows the API's message.
  await page.getByLabel('E-mail').fill(email);
  await page.getByLabel('Password').fill('not-the-password');
  await page.getByRole('button', { name: 'Log in' }).click();
  out.wrong_password = (await page.getByRole('alert').textContent()).trim();

  // Log in with the keyboard alone.
  await page.getByLabel('E-mail').fill(email);
  await page.getByLabel('Password').fill(password);
  await page.getByLabel('Password').press('Enter');
  await page.waitForURL('**/environments');
  out.heading = await page.locator('h1').textContent();
  out.slugs = await page.locator('tbody td code').allTextContents();
  out.header = (await page.locator('header').textContent()).replace(/\s+/g, ' ').trim();
  await page.screenshot({ path: shots + '/environments.png', fullPage: true });

  // An environment: create a key, see its secret once, copy it, use it, revoke it.
  await page.getByRole('link', { name: 'Development' }).click();
  await page.waitForURL('**/environments/env_*');
  out.env_heading = (await page.locator('h1').textContent()).replace(/\s+/g, ' ').trim();
  out.psql = (await page.locator('pre code').textContent()).trim();
  await page.getByLabel('Name').fill('ci-bot');
  await page.getByLabel('Role').selectOption('analyst');
  await page.getByLabel('query:read').check();
  await page.getByRole('button', { name: 'Create key' }).click();
  out.secret = await page.getByLabel('API key').inputValue();
  await page.getByRole('button', { name: 'Copy' }).click();
  await page.waitForFunction(() => document.querySelector('button[data-copy]').textContent !== 'Copy');
  out.copy_button = await page.locator('button[data-copy]').textContent();
  out.clipboard = await page.evaluate(() => navigator.clipboard.readText());
  await page.screenshot({ path: shots + '/environment.png', fullPage: true });
  const query = await page.request.post(base + '/v1/query', {
    headers: { 'x-api-key': out.secret }, data: { sql: 'SELECT 41 + 1 AS answer' } });
  out.query_with_key = query.status();
  await page.reload();
  out.secret_after_reload = await page.locator('#new-key').count();
  // A key without a scope is refused by the API, whose reason the page shows.
  await page.getByLabel('Name').fill('no-scopes');
  await page.getByRole('button', { name: 'Create key' }).click();
  out.no_scope_error = (await page.getByRole('alert').textContent()).trim();
  await page.getByRole('button', { name: 'Revoke ci-bot' }).click();
  await page.waitForLoadState();
  out.after_revoke = (await page.locator('tbody tr').filter({ hasText: 'ci-bot' }).textContent()).replace(/\s+/g, ' ');
  const refused = await page.request.post(base + '/v1/query', {
    headers: { 'x-api-key': out.secret }, data: { sql: 'SELECT 1' } });
  out.query_after_revoke = refused.status();
  await page.goto(base + '/environments');

  // A narrow window still shows the list.
  await page.setViewportSize({ width: 380, height: 700 });
  out.narrow_rows = await page.locator('tbody tr').count();

  // Log out; the session is gone here and on the server.
  await page.getByRole('button', { name: 'Log out' }).click();
  await page.waitForURL('**/login');
  await page.goto(base + '/environments');
  out.after_logout = new URL(page.url()).pathname;

  console.log(JSON.stringify(out));
  await browser.close();
})().catch((e) => { console.error(e); process.exit(1); });
