// The organization's pages in Debian's chromium: members and an invitation accepted through
// its link, a webhook with a test delivery, usage, a just-in-time request approved, an agent
// narrowed. Prints what it saw as one JSON document (the Rust test asserts on it).
//   node dashboard_org_browser.js BASE_URL EMAIL PASSWORD ANALYST_EMAIL ANALYST_PASSWORD RECEIVER_URL SCREENSHOT_DIR
const { squash, launch, logIn, run, go } = require('./dashboard_common.js');
const [base, email, password, analystEmail, analystPassword, receiver, shots] = process.argv.slice(2);

run(async () => {
  const { browser, out, watch } = await launch(base);
  const viewport = { width: 1100, height: 700 };
  const page = watch(await (await browser.newContext({ viewport })).newPage());
  const org = (name) => go(page, page.getByRole('navigation', { name: 'Organization' }).getByRole('link', { name }));
  const tab = async (p, name) => {
    await go(p, p.getByRole('navigation', { name: 'Environment' }).getByRole('link', { name }));
  };
  await logIn(page, base, email, password);

  // Members: invite someone; the link is shown once; an analyst's attributes set.
  await org('Members');
  await page.getByLabel('E-mail').fill('new@example.com');
  await page.getByLabel('Name').fill('New Person');
  await page.getByLabel('Role', { exact: true }).selectOption('developer');
  await go(page, page.getByRole('button', { name: 'Invite' }));
  await page.waitForURL('**/members');
  const link = await page.getByLabel('Invitation link (valid 7 days)').inputValue();
  out.invitation_link = link;
  out.invited_row = squash(await page.locator('#members tbody tr').filter({ hasText: 'new@example.com' }).innerText());
  await page.screenshot({ path: shots + '/members.png', fullPage: true });
  await page.reload();
  out.link_after_reload = await page.locator('#invite-link').count();
  const row = page.locator('#members tbody tr').filter({ hasText: analystEmail });
  await row.getByText('Attributes', { exact: true }).click();
  await row.getByLabel(`Attributes of ${analystEmail} (key=value lines)`).fill('department=sales');
  await go(page, row.getByRole('button', { name: 'Save attributes' }));
  await page.waitForURL('**/members?done=attributes');
  out.attributes_row = squash(await page.locator('#members tbody tr').filter({ hasText: analystEmail }).innerText());

  // The invitee opens the link: the token is filled in from it, a password makes them a member.
  const invitee = watch(await (await browser.newContext({ viewport })).newPage());
  await invitee.goto(link);
  out.token_filled = (await invitee.getByLabel('Invitation token (filled in from your link)').inputValue()).length > 20;
  await invitee.getByLabel('Your name').fill('New Person');
  await invitee.getByLabel('Password (new, or your current one if you have an account)').fill('a-new-members-password-1');
  await go(invitee, invitee.getByRole('button', { name: 'Join' }));
  await invitee.waitForURL('**/environments');
  out.invitee_header = squash(await invitee.locator('header').innerText());

  // Webhooks: an endpoint (its secret shown once), a test event, its delivery in the log.
  await org('Webhooks');
  await page.getByLabel('URL (https://…)').fill(receiver);
  await page.getByLabel('Description').fill('the test receiver');
  await page.getByLabel('webhook.test').check();
  await go(page, page.getByRole('button', { name: 'Add webhook' }));
  await page.waitForURL('**/webhooks');
  out.signing_secret = await page.locator('#signing-secret').inputValue();
  await go(page, page.getByRole('button', { name: 'Send test ' + receiver }));
  await page.waitForURL('**/webhooks?done=test');
  await go(page, page.getByRole('link', { name: receiver }));
  for (let i = 0; i < 40; i++) {
    out.deliveries = squash(await page.locator('#deliveries tbody').innerText());
    if (out.deliveries.includes('succeeded')) break;
    await page.waitForTimeout(250);
    await page.reload();
  }
  await page.screenshot({ path: shots + '/webhooks.png', fullPage: true });

  // Usage: this month's credits and a bar a day.
  await org('Usage');
  out.usage_summary = squash(await page.locator('#credits-summary').innerText());
  out.usage_bars = await page.locator('#credits-chart rect').count();
  out.usage_environments = squash(await page.locator('#usage-by-environment tbody').innerText());
  await page.screenshot({ path: shots + '/usage.png', fullPage: true });

  // Just-in-time access: the analyst asks, the owner approves, the analyst may then reveal
  // secret values in that environment (the page follows what the API says they may do).
  const analyst = watch(await (await browser.newContext({ viewport })).newPage());
  await logIn(analyst, base, analystEmail, analystPassword);
  await go(analyst, analyst.getByRole('link', { name: 'Development' }));
  await tab(analyst, 'Secrets');
  out.reveal_before = await analyst.getByRole('link', { name: 'Reveal values' }).count();
  await tab(analyst, 'Access requests');
  await analyst.getByLabel('Role').selectOption('developer');
  await analyst.getByLabel('For how long (minutes, 15–1440)').fill('30');
  await analyst.getByLabel('Why').fill('fix the monthly report');
  await go(analyst, analyst.getByRole('button', { name: 'Ask' }));
  await analyst.waitForURL('**/access?done=requested');
  out.asked = squash(await analyst.locator('#requests tbody').innerText());
  out.analyst_decides = await analyst.getByRole('button', { name: /^Approve/ }).count();
  await go(page, page.getByRole('link', { name: 'Environments' }));
  await go(page, page.getByRole('link', { name: 'Development' }));
  await tab(page, 'Access requests');
  await go(page, page.getByRole('button', { name: /^Approve developer/ }));
  await page.waitForURL('**/access?done=approve');
  out.approved = squash(await page.locator('#requests tbody').innerText());
  await page.screenshot({ path: shots + '/access.png', fullPage: true });
  await tab(analyst, 'Secrets');
  out.reveal_after = await analyst.getByRole('link', { name: 'Reveal values' }).count();
  out.analyst_nav = squash(await analyst.getByRole('navigation', { name: 'Organization' }).innerText());
  await analyst.goto(base + '/members');
  out.analyst_members = squash(await analyst.locator('main').innerText());
  out.analyst_invite_forms = await analyst.getByRole('button', { name: 'Invite' }).count();

  // Agents: the one seen here, narrowed to reading one table.
  await tab(page, 'Agents');
  out.agents = squash(await page.locator('section.agent').first().innerText());
  await page.getByText('Set capabilities').click();
  await page.getByLabel('query', { exact: true }).check();
  await page.getByLabel('Only these tables (comma-separated; empty: any)').fill('orders');
  await page.getByLabel('Rows a statement, at most').fill('10');
  await go(page, page.getByRole('button', { name: 'Save capabilities' }));
  await page.waitForURL('**/agents?done=granted');
  out.granted = squash(await page.locator('section.agent').first().innerText());

  await browser.close();
  return out;
});
