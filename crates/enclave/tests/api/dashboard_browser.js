// Drives the dashboard in Debian's chromium with playwright-core, as people would, and prints
// what it saw as one JSON document (the Rust test asserts on it).
//   node dashboard_browser.js BASE_URL EMAIL PASSWORD ANALYST_EMAIL ANALYST_PASSWORD SCREENSHOT_DIR
// (CHROMIUM: the browser.)
const { squash, launch, logIn, run, go } = require('./dashboard_common.js');
const [base, email, password, analystEmail, analystPassword, shots] = process.argv.slice(2);

async function tab(page, name) {
  await go(page, page.getByRole('navigation', { name: 'Environment' }).getByRole('link', { name }));
}

// Runs a statement in the SQL console with Ctrl+Enter; the summary line, or the error.
async function runSql(page, sql) {
  await page.getByLabel('SQL (Ctrl+Enter runs it)').fill(sql);
  const ran = page.waitForResponse((r) => r.request().method() === 'POST' && r.url().endsWith('/console'));
  await page.getByLabel('SQL (Ctrl+Enter runs it)').press('Control+Enter');
  await ran;
  await page.waitForLoadState();
  await page.waitForSelector('#query-summary, #query-error');
  const error = page.locator('#query-error');
  if (await error.count()) return squash(await error.innerText());
  return squash(await page.locator('#query-summary').innerText());
}

run(async () => {
  const { browser, out, watch } = await launch(base);
  const context = await browser.newContext({
    viewport: { width: 1100, height: 700 }, permissions: ['clipboard-read', 'clipboard-write'] });
  const page = watch(await context.newPage());

  // Without a session, a page leads to the log-in page.
  await page.goto(base + '/environments');
  out.unauthenticated = new URL(page.url()).pathname;

  // A wrong password shows the API's message.
  await page.getByLabel('E-mail').fill(email);
  await page.getByLabel('Password').fill('not-the-password');
  await go(page, page.getByRole('button', { name: 'Log in' }));
  out.wrong_password = squash(await page.getByRole('alert').innerText());

  // Log in with the keyboard alone.
  await page.getByLabel('E-mail').fill(email);
  await page.getByLabel('Password').fill(password);
  await page.getByLabel('Password').press('Enter');
  await page.waitForURL('**/environments');
  out.heading = await page.locator('h1').innerText();
  out.slugs = await page.locator('tbody td code').allTextContents();
  out.header = squash(await page.locator('header').innerText());

  // Create an environment with every field.
  await page.getByLabel('Name', { exact: true }).fill('Preview 7');
  await page.getByLabel('Slug').fill('preview-7');
  await page.getByLabel('Type').selectOption('custom');
  await page.getByLabel('Colour (#RRGGBB)').fill('#7c3aed');
  await page.getByLabel('Description').fill('A preview for branch 7');
  await page.getByLabel('Parent (its default promotion source)').selectOption({ label: 'Staging' });
  await page.getByLabel('Query timeout (ms, 100–3 600 000)').fill('5000');
  await go(page, page.getByRole('button', { name: 'Create environment' }));
  await page.waitForURL('**/environments/env_*');
  out.created = squash(await page.getByRole('status').innerText());
  out.created_heading = squash(await page.locator('h1').innerText());
  out.created_timeout = squash(await page.locator('dl').innerText());
  // Lock it: the API refuses changes while locked, and the page says why.
  await go(page, page.getByRole('button', { name: 'Lock', exact: true }));
  await page.waitForLoadState();
  out.locked_heading = squash(await page.locator('h1').innerText());
  await go(page, page.getByRole('button', { name: 'Suspend' }));
  await page.waitForLoadState();
  out.suspend_while_locked = squash(await page.getByRole('alert').innerText());
  await go(page, page.getByRole('button', { name: 'Unlock' }));
  await page.waitForLoadState();
  // Delete it, after the impact preview and typing its slug.
  await go(page, page.getByRole('link', { name: 'Delete this environment…' }));
  out.impact = squash(await page.locator('#impact').innerText());
  await page.getByLabel('Type preview-7 to confirm').fill('preview-7');
  await go(page, page.getByRole('button', { name: 'Delete environment' }));
  await page.waitForURL('**/environments?done=deleted');
  out.after_delete = await page.locator('tbody td code').allTextContents();

  // Move Production up one place, then back.
  await go(page, page.getByRole('button', { name: 'Move Production up' }));
  await page.waitForLoadState();
  out.moved = await page.locator('tbody td code').allTextContents();
  await go(page, page.getByRole('button', { name: 'Move Production down' }));
  await page.waitForLoadState();
  await page.screenshot({ path: shots + '/environments.png', fullPage: true });

  // Development: its overview, then a key seen once, copied, used and revoked.
  await go(page, page.getByRole('link', { name: 'Development' }));
  await page.waitForURL('**/environments/env_*');
  const development = page.url();
  out.env_heading = squash(await page.locator('h1').innerText());
  out.psql = squash(await page.locator('#psql').innerText());
  await page.screenshot({ path: shots + '/environment.png', fullPage: true });
  await tab(page, 'API keys');
  await page.getByLabel('Name').fill('ci-bot');
  await page.getByLabel('Role').selectOption('analyst');
  await page.getByLabel('query:read').check();
  await go(page, page.getByRole('button', { name: 'Create key' }));
  out.secret = await page.getByLabel('API key').inputValue();
  await page.getByRole('button', { name: 'Copy' }).click();
  await page.waitForFunction(() => document.querySelector('button[data-copy]').textContent !== 'Copy');
  out.copy_button = await page.locator('button[data-copy]').innerText();
  out.clipboard = await page.evaluate(() => navigator.clipboard.readText());
  await page.screenshot({ path: shots + '/keys.png', fullPage: true });
  const query = await page.request.post(base + '/v1/query', {
    headers: { 'x-api-key': out.secret }, data: { sql: 'SELECT 41 + 1 AS answer' } });
  out.query_with_key = query.status();
  await page.reload();
  out.secret_after_reload = await page.locator('#new-key').count();
  await page.getByLabel('Name').fill('no-scopes');
  await go(page, page.getByRole('button', { name: 'Create key' }));
  out.no_scope_error = squash(await page.getByRole('alert').innerText());
  await go(page, page.getByRole('button', { name: 'Revoke ci-bot' }));
  await page.waitForLoadState();
  out.after_revoke = squash(await page.locator('tbody tr').filter({ hasText: 'ci-bot' }).innerText());
  const refused = await page.request.post(base + '/v1/query', {
    headers: { 'x-api-key': out.secret }, data: { sql: 'SELECT 1' } });
  out.query_after_revoke = refused.status();

  // Secrets: set one (hidden until revealed), import a .env after its preview, export.
  await tab(page, 'Secrets');
  await page.getByLabel('Key', { exact: true }).fill('DB_URL');
  await page.getByLabel('Value', { exact: true }).fill('postgres://db.internal/app');
  await page.getByLabel('Comment').fill('the app database');
  await go(page, page.getByRole('button', { name: 'Add secret' }));
  await page.waitForURL('**/secrets?done=saved');
  out.secret_hidden = squash(await page.locator('#secrets tbody').innerText());
  await go(page, page.getByRole('link', { name: 'Reveal values' }));
  out.secret_revealed = squash(await page.locator('#secrets tbody').innerText());
  await page.getByLabel('.env text (KEY=value lines)').fill('API_HOST=api.internal\nDB_URL=changed\n');
  await go(page, page.getByRole('button', { name: 'Preview import' }));
  out.import_preview = squash(await page.locator('section.preview').innerText());
  await go(page, page.getByRole('button', { name: 'Import', exact: true }));
  out.import_done = squash(await page.locator('section.preview').innerText());
  const download = await page.request.get(development + '/secrets/export');
  out.export = await download.text();
  out.export_disposition = download.headers()['content-disposition'];
  await page.screenshot({ path: shots + '/secrets.png', fullPage: true });

  // The SQL console: a table with rows, made by the owner.
  await tab(page, 'SQL console');
  out.create_table = await runSql(page, 'CREATE TABLE customers (id INTEGER, email VARCHAR, region VARCHAR)');
  out.insert = await runSql(page,
    "INSERT INTO customers VALUES (1, 'ana@example.com', 'eu'), (2, 'bo@example.com', 'us')");
  out.owner_select = await runSql(page, 'SELECT id, email FROM customers ORDER BY id');
  out.owner_cells = await page.locator('#results tbody td').allTextContents();
  out.column_types = squash(await page.locator('#results thead').innerText());
  out.syntax_error = await runSql(page, 'SELEC 1');

  // Policies: a mask that owners and admins are exempt from, then the explainer.
  await tab(page, 'Policies');
  await page.locator('#mask-name').fill('mask-email');
  await page.locator('#mask-table').fill('customers');
  await page.locator('#mask-column').fill('email');
  await page.locator('#mask-function').selectOption('partial');
  await page.locator('#mask-visible').fill('4');
  await page.locator('#mask-exempt-owner').check();
  await page.locator('#mask-exempt-admin').check();
  await go(page, page.getByRole('button', { name: 'Create mask' }));
  await page.waitForURL('**/policies?done=created');
  out.policies = squash(await page.locator('#policies tbody').innerText());
  // Edit it (its JSON), see the new version, restore the first.
  await go(page, page.getByRole('link', { name: 'Edit mask-email or restore a version' }));
  const content = await page.getByLabel(/^Policy \(JSON/).inputValue();
  await page.getByLabel(/^Policy \(JSON/).fill(content.replace('"visible_chars": 4', '"visible_chars": 3'));
  await go(page, page.getByRole('button', { name: 'Save policy' }));
  out.edited = squash(await page.locator('h2').first().innerText());
  await page.getByLabel(/^Policy \(JSON/).fill('{"rules": "not rules"}');
  await go(page, page.getByRole('button', { name: 'Save policy' }));
  out.bad_edit = squash(await page.getByRole('alert').innerText());
  await go(page, page.getByRole('button', { name: 'Restore version 1' }));
  out.restored = squash(await page.locator('#policies tbody').innerText());
  await page.getByLabel('As role').selectOption('analyst');
  await page.getByLabel('Action', { exact: true }).selectOption('query');
  await page.getByLabel('Tables (comma-separated)').fill('customers');
  await go(page, page.getByRole('button', { name: 'Explain' }));
  out.explained = squash(await page.locator('#evaluation').innerText());
  // A filter that is not SQL: the API's reason, nothing made.
  await page.locator('#filter-name').fill('broken');
  await page.locator('#filter-table').fill('customers');
  await page.locator('#filter-expr').fill('region = = 1');
  await go(page, page.getByRole('button', { name: 'Create row filter' }));
  out.bad_filter = squash(await page.getByRole('alert').innerText());
  await page.screenshot({ path: shots + '/policies.png', fullPage: true });

  // Promote to staging: the dry run's changes first, then for real; the history shows it.
  await tab(page, 'Promote');
  await page.getByLabel('To').selectOption({ label: 'Staging' });
  await go(page, page.getByRole('button', { name: 'Preview (dry run)' }));
  out.dry_run = squash(await page.locator('#promotion-preview').innerText());
  await page.screenshot({ path: shots + '/promote.png', fullPage: true });
  await go(page, page.getByRole('button', { name: 'Promote now' }));
  await page.waitForURL('**/promote?done=promoted');
  out.history = squash(await page.locator('#promotions tbody').innerText());

  // The audit: the organization's trail filtered, its chain verified; the query audit too.
  await go(page, page.getByRole('navigation', { name: 'Organization' }).getByRole('link', { name: 'Audit' }));
  await page.getByLabel('Action (e.g. environment.created)').fill('policy.created');
  await go(page, page.getByRole('button', { name: 'Filter' }));
  out.audit_actions = await page.locator('#audit tbody td code').allTextContents();
  await go(page, page.getByRole('link', { name: 'Verify chain' }));
  out.verdict = squash(await page.locator('#verdict').innerText());
  await page.screenshot({ path: shots + '/audit.png', fullPage: true });
  await page.goto(development);
  await tab(page, 'Query audit');
  await go(page, page.getByRole('link', { name: 'Verify chain' }));
  out.query_verdict = squash(await page.locator('#verdict').innerText());
  out.query_audit_rows = await page.locator('#audit tbody tr').count();

  // A narrow window still shows the list.
  await page.goto(base + '/environments');
  await page.setViewportSize({ width: 380, height: 700 });
  out.narrow_rows = await page.locator('tbody tr').count();

  // Log out; the session is gone here and on the server.
  await go(page, page.getByRole('button', { name: 'Log out' }));
  await page.waitForURL('**/login');
  await page.goto(base + '/environments');
  out.after_logout = new URL(page.url()).pathname;

  // The analyst: the same console shows the email masked; no forms to change policies or keys.
  const analyst = watch(await (await browser.newContext({ viewport: { width: 1100, height: 700 } })).newPage());
  await logIn(analyst, base, analystEmail, analystPassword);
  await analyst.goto(development);
  await tab(analyst, 'SQL console');
  out.analyst_select = await runSql(analyst, 'SELECT id, email FROM customers ORDER BY id');
  out.analyst_cells = await analyst.locator('#results tbody td').allTextContents();
  await analyst.screenshot({ path: shots + '/console.png', fullPage: true });
  out.analyst_write = await runSql(analyst, "DELETE FROM customers");
  await tab(analyst, 'Policies');
  out.analyst_policy_forms = await analyst.locator('#mask-name').count();
  out.analyst_policy_buttons = await analyst.getByRole('button', { name: 'Delete mask-email' }).count();
  await tab(analyst, 'API keys');
  out.analyst_key_forms = await analyst.getByRole('button', { name: 'Create key' }).count();
  await tab(analyst, 'Overview');
  out.analyst_lifecycle = await analyst.getByRole('button', { name: 'Suspend' }).count();

  await browser.close();
  return out;
});
