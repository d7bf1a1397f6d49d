// Drives the dashboard in Debian's chromium with playwright-core, as a person would, and prints
// what it saw as one JSON document (the Rust test asserts on it).
//   node dashboard_browser.js BASE_URL EMAIL PASSWORD SCREENSHOT_DIR   (CHROMIUM: the browser)
const { chromium } = require('playwright-core');
const [base, email, password, shots] = process.argv.slice(2);

(async () => {
  const browser = await chromium.launch({ executablePath: process.env.CHROMIUM, args: ['--no-sandbox'] });
  const page = await browser.newPage({ viewport: { width: 1100, height: 700 } });
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
