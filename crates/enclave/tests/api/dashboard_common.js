// What both dashboard browser scripts share: Debian's chromium launched with playwright-core,
// the record of requests outside the origin and of console errors, logging in.
const { chromium } = require('playwright-core');

const squash = (s) => (s || '').replace(/\s+/g, ' ').trim();

// The browser, and `out` with `foreign` (requests that left `base`) and `console_errors`
// filled in for every page `watch` is given.
async function launch(base) {
  const browser = await chromium.launch({ executablePath: process.env.CHROMIUM, args: ['--no-sandbox'] });
  const out = { foreign: [], console_errors: [] };
  const watch = (p) => {
    p.on('request', (r) => { if (!r.url().startsWith(base)) out.foreign.push(r.url()); });
    p.on('console', (m) => { if (m.type() === 'error') out.console_errors.push(m.text()); });
    return p;
  };
  return { browser, out, watch };
}

async function logIn(page, base, who, secret) {
  await page.goto(base + '/login');
  await page.getByLabel('E-mail').fill(who);
  await page.getByLabel('Password').fill(secret);
  await page.getByLabel('Password').press('Enter');
  await page.waitForURL('**/environments');
}

// Clicks a link, or a button that submits a form, and waits for the page that answers it.
async function go(page, control) {
  const loaded = page.waitForEvent('load');
  await control.click();
  await loaded;
}

// Runs `body` and prints what it gathered as one JSON document; any failure exits non-zero.
function run(body) {
  body().then((out) => console.log(JSON.stringify(out)))
    .catch((e) => { console.error(e); process.exit(1); });
}

module.exports = { squash, launch, logIn, run, go };
