// The web console in a real browser (Debian's Chromium driven by
// playwright-core): every view renders without console errors, filters and
// time ranges change the data as the API says, a row opens its flow, the
// token prompt works, a URL reproduces a view, and markup in flow data stays
// text. Waits on the page's own "rendered" mark, never on sleeps.
//
//   node console.test.mjs --seed PATH/fs_console_seed [--shots DIR] [--doc-shots DIR]
// Screenshots go to --shots (the build tree); with FLOWSCOPE_DOC_SHOTS=1 in
// the environment they go to --doc-shots (docs/console) instead, to refresh
// the pictures the docs show (scripts/console-shots.sh).
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync, chmodSync, rmSync, mkdirSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import * as fmt from '../../web/src/fmt.js';

const require = createRequire(new URL('../../web/package.json', import.meta.url));
const { chromium } = require('playwright-core');

const arg = (name) => {
  const i = process.argv.indexOf(name);
  return i > 0 ? process.argv[i + 1] : undefined;
};
const seedBin = arg('--seed');
const shots = process.env.FLOWSCOPE_DOC_SHOTS === '1' && arg('--doc-shots') ? arg('--doc-shots') : arg('--shots');
assert.ok(seedBin, '--seed PATH is required');
const work = mkdtempSync(join(tmpdir(), 'fs-console-'));
const children = [];

function startSeed(extra = []) {
  const child = spawn(seedBin, ['--db', join(work, `flows${children.length}.db`), ...extra], {
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  children.push(child);
  return new Promise((resolve, reject) => {
    const rl = createInterface({ input: child.stdout });
    rl.once('line', (line) => resolve(JSON.parse(line)));
    child.once('exit', (code) => reject(new Error(`fs_console_seed exited with ${code}`)));
  });
}

async function apiGet(base, path, token) {
  const r = await fetch(base + path, { headers: token ? { Authorization: `Bearer ${token}` } : {} });
  assert.equal(r.status, 200, `${path}: HTTP ${r.status}`);
  return r.json();
}

const started = Date.now();
let last = started;
const step = (name) => {
  const now = Date.now();
  console.log(`${((now - started) / 1000).toFixed(1)} s (+${((now - last) / 1000).toFixed(1)}): ${name}`);
  last = now;
};
let context;
try {
  const seed = await startSeed();
  const base = `http://127.0.0.1:${seed.port}`;
  context = await chromium.launchPersistentContext(join(work, 'profile'), {
    executablePath: '/usr/bin/chromium',
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
      '--disable-component-update', '--disable-sync', '--no-first-run'],
    viewport: { width: 1400, height: 900 },
  });
  const errors = [];
  let dialogs = 0;
  const watch = (page, allow = () => false) => {
    page.on('console', (m) => { if (m.type() === 'error' && !allow(m.text())) errors.push(m.text()); });
    page.on('pageerror', (e) => errors.push(String(e)));
    page.on('dialog', (d) => { dialogs++; d.dismiss(); });
  };
  const page = context.pages()[0] || await context.newPage();
  watch(page);
  // Waits until the page has drawn the view for its current URL.
  const rendered = (p = page) => p.waitForFunction(
    () => document.body.dataset.state === 'ready' && document.body.dataset.rendered === location.hash,
    null, { timeout: 15000 });
  const open = async (hash, p = page) => {
    await p.goto(`${base}/#/${hash}`);
    await rendered(p);
  };
  const shot = async (name) => {
    if (!shots) return;
    mkdirSync(shots, { recursive: true });
    await page.screenshot({ path: join(shots, `${name}.png`), fullPage: true });
  };
  const cells = (sel, col) => page.$$eval(`${sel} tbody tr`, (trs, c) =>
    trs.map((tr) => tr.children[c].textContent), col);
  const own = `&exclude_port=${seed.port}`;

  step('browser started');
  // Overview: five series with a current rate, top tables, failing list.
  await open('overview');
  assert.equal(await page.locator('.card .chart canvas').count() >= 5, true, 'five charts drawn');
  const procs = await page.locator('main table').first().locator('tbody td:first-child').allTextContents();
  const topProcs = await apiGet(base, `/api/top?group=process&limit=10&from=-1h${own}`);
  assert.deepEqual(procs, topProcs.top.map((t) => t.process));
  assert.ok(!procs.includes('apiself'), 'the console hides its own API traffic');
  // Bytes each way: the top processes' out and in columns are the API's, and
  // the bytes chart has a line each way.
  assert.ok(topProcs.top.some((t) => t.bytes_in > 0 && t.bytes_out > 0), 'seeded flows move bytes both ways');
  const outIn = await page.locator('main table').first().locator('tbody tr').evaluateAll((trs) =>
    trs.map((tr) => [tr.children[1].textContent, tr.children[2].textContent]));
  assert.deepEqual(outIn, topProcs.top.map((t) => [fmt.bytes(t.bytes_out), fmt.bytes(t.bytes_in)]));
  const bytesCard = page.locator('.card[data-series="bytes/s sent and received"]');
  assert.match(await bytesCard.locator('.rate').textContent(), /^↑ .+\/s ↓ .+\/s$/);
  const ts = await apiGet(base, `/api/timeseries?from=-1h${own}`);
  assert.ok(ts.points.every((pt) => pt.bytes === pt.bytes_out + pt.bytes_in), 'bytes is the sum of both ways');
  // Failing now: the pairs the API ranks by failures and by drops over the
  // last 15 minutes, merged.
  const [byFail, byDrop] = await Promise.all(['failures', 'drops'].map((by) =>
    apiGet(base, `/api/top?group=pair&by=${by}&limit=10&from=-15m${own}`)));
  const failingPairs = new Set([...byFail.top, ...byDrop.top].filter((t) => t.failures > 0 || t.drops > 0)
    .map((t) => `${t.src}>${t.dst}`));
  const shownPairs = await page.$$eval('#failing tbody tr', (trs) =>
    trs.map((tr) => `${tr.children[0].textContent}>${tr.children[1].textContent}`));
  assert.deepEqual(new Set(shownPairs), failingPairs);
  assert.ok(failingPairs.has('10.0.0.5>10.0.0.6') && failingPairs.has('10.0.0.7>10.0.0.8'), [...failingPairs].join(' '));
  await shot('overview');
  // A failing pair opens its flows.
  await page.locator('#failing tr', { hasText: '10.0.0.6' }).click();
  await page.waitForFunction(() => location.hash.startsWith('#/flows') && location.hash.includes('10.0.0.6'));
  await rendered();
  assert.deepEqual(await cells('#flowtable', 7), ['refuser (1004)']);
  await open('overview');
  // A process row opens its flows, even with a name that needs quoting.
  await page.locator('main table').first().locator('tr', { hasText: '<img' }).click();
  await page.waitForFunction(() => location.hash.startsWith('#/flows'));
  await rendered();
  assert.equal(await page.inputValue('#filter'), 'process="<img src=x onerror=alert(1)>"');
  assert.deepEqual(await cells('#flowtable', 7), ['<img src=x onerror=alert(1)> (1006)']);

  step('overview');
  // Flows: default range and filters as the API answers them.
  await open('flows');
  const api1h = await apiGet(base, `/api/flows?from=-1h&limit=50${own}`);
  assert.equal(await page.locator('#flowtable tbody tr').count(), api1h.count);
  let procCol = await cells('#flowtable', 7);
  assert.ok(!procCol.some((t) => t.startsWith('oldjob')), 'a 3 h old flow is outside the last hour');
  // The markup process name is text.
  assert.ok(procCol.includes('<img src=x onerror=alert(1)> (1006)'), 'markup shown as text');
  assert.equal(await page.locator('#flowtable img').count(), 0);
  // Readable units, [v6]:port, protocol names, drops badge.
  const pg = await page.locator('#flowtable tr', { hasText: 'postgres' }).textContent();
  assert.ok(pg.includes('[fd00::1]:41000') && pg.includes('[fd00::2]:5432') && pg.includes('tcp'), pg);
  const curl = await page.locator('#flowtable tr', { hasText: 'curl' }).first().textContent();
  assert.ok(curl.includes('1.00 MiB'), curl);
  assert.equal(await page.locator('#flowtable tr', { hasText: 'dropper' }).locator('.badge').textContent(), '4');
  assert.ok((await page.locator('#flowtable tr', { hasText: 'resolver' }).textContent()).includes('udp'));

  step('flows');
  // Sorting by bytes, largest first, then smallest first.
  await page.click('#flowtable th[data-key=bytes]');
  await page.waitForFunction(() => location.hash.includes('sort=bytes'));
  await rendered();
  assert.ok((await cells('#flowtable', 7))[0].startsWith('nginx'));
  await page.click('#flowtable th[data-key=bytes]');
  await page.waitForFunction(() => location.hash.includes('dir=asc'));
  await rendered();
  assert.equal((await cells('#flowtable', 5))[0], '0 B');
  await open('flows');

  step('sorting');
  // Time range: 6 h takes in the old flow.
  await page.selectOption('#range', '6h');
  await rendered();
  const api6h = await apiGet(base, `/api/flows?from=-6h&limit=50${own}`);
  assert.equal(api6h.count, api1h.count + 1);
  assert.equal(await page.locator('#flowtable tbody tr').count(), api6h.count);
  assert.ok((await cells('#flowtable', 7)).some((t) => t.startsWith('oldjob')));

  step('range');
  // Filter bar.
  await page.fill('#filter', 'process=curl');
  await page.press('#filter', 'Enter');
  await page.waitForFunction(() => location.hash.includes('f=process'));
  await rendered();
  procCol = await cells('#flowtable', 7);
  const apiCurl = await apiGet(base, `/api/flows?from=-6h&limit=50&process=curl${own}`);
  assert.equal(procCol.length, apiCurl.count);
  assert.ok(procCol.length === 3 && procCol.every((t) => t === 'curl (1001)'), procCol.join(','));

  step('filter');
  // The API's refusal of a filter is shown, not swallowed.
  await page.fill('#filter', 'port=99999');
  await page.press('#filter', 'Enter');
  await page.waitForFunction(() => document.body.dataset.state === 'error' && location.hash.includes('99999'));
  assert.match(await page.locator('#error').textContent(), /parameter 'port'/);

  // The toggle shows the API's own traffic.
  await page.fill('#filter', '');
  await page.press('#filter', 'Enter');
  await page.waitForFunction(() => !location.hash.includes('f='));
  await rendered();
  assert.ok(!(await cells('#flowtable', 7)).some((t) => t.startsWith('apiself')));
  await page.check('#showself');
  await page.waitForFunction(() => location.hash.includes('self=1'));
  await rendered();
  assert.ok((await cells('#flowtable', 7)).some((t) => t.startsWith('apiself')));
  await page.uncheck('#showself');
  await page.waitForFunction(() => !location.hash.includes('self=1'));
  await rendered();

  step('toggle');
  // A row opens its flow.
  const pgFlow = api6h.flows.find((f) => f.comm === 'postgres');
  await page.locator('#flowtable tr', { hasText: 'postgres' }).click();
  await page.waitForFunction(() => location.hash.includes('flow='));
  await rendered();
  const detail = await page.locator('#flowdetail').textContent();
  assert.ok(detail.includes(`Flow ${pgFlow.id}:`), detail.slice(0, 80));
  assert.equal(await page.locator('#tracecmd').textContent(),
    "sudo flowscope trace 'tcp and host fd00::1 and host fd00::2 and port 41000 and port 5432'");
  await shot('flow-detail');

  step('detail');
  // The URL reproduces the view, in a page of its own.
  const url = page.url();
  const page2 = await context.newPage();
  watch(page2);
  await page2.goto(url);
  await rendered(page2);
  assert.equal(await page2.locator('#flowdetail h2').textContent(), await page.locator('#flowdetail h2').textContent());
  assert.equal(await page2.inputValue('#range'), '6h');
  // Still found once newer flows have pushed it off the page (here: a far page).
  await page2.goto(url.replace('#/flows?', '#/flows?offset=5000&'));
  await rendered(page2);
  assert.equal(await page2.locator('#flowtable tbody tr').count(), 0);
  assert.equal(await page2.locator('#flowdetail h2').textContent(), await page.locator('#flowdetail h2').textContent());
  await page2.close();
  await open('flows');
  await shot('flows');

  step('url');
  // Explore: top processes by connections, lines; the stats table's totals
  // are the API's counts.
  await open('explore?group=process&by=flows&type=lines&n=5');
  const apiTop = await apiGet(base, `/api/top?group=process&by=flows&limit=5&from=-1h${own}`);
  assert.deepEqual(await cells('#toptable', 0), apiTop.top.map((t) => t.process));
  assert.equal(await page.inputValue('select[data-key=group]'), 'process');
  const statNames = await cells('#stats', 0);
  const statTotals = await cells('#stats', 5);
  assert.deepEqual(statNames.slice(0, apiTop.top.length), apiTop.top.map((t) => t.process));
  assert.deepEqual(statTotals.slice(0, apiTop.top.length), apiTop.top.map((t) => String(t.flows)));
  await shot('explore');
  // Groups the console adds: host, close reason, drop reason.
  for (const [group, by, key] of [['host', 'failures', 'host'], ['close', 'flows', 'close'],
    ['drop_reason', 'drops', 'drop_reason']]) {
    await open(`explore?group=${group}&by=${by}&type=stacked&n=5`);
    const t = await apiGet(base, `/api/top?group=${group}&by=${by}&limit=5&from=-1h${own}`);
    assert.ok(t.top.length > 0, group);
    assert.deepEqual(await cells('#toptable', 0), t.top.map((x) => String(x[key])), group);
  }
  assert.deepEqual(await cells('#toptable', 0), ['NO_SOCKET', 'TCP_CSUM']);
  // A drop reason row opens the flows that had it.
  await page.locator('#toptable tr', { hasText: 'TCP_CSUM' }).click();
  await page.waitForFunction(() => location.hash.startsWith('#/flows') && location.hash.includes('TCP_CSUM'));
  await rendered();
  assert.deepEqual(await cells('#flowtable', 7), ['dropper (1005)']);
  // By destination network: the API's networks, the prefix picker in the
  // URL, and a row opens the network's flows.
  await open('explore?group=dst_cidr&cidr4=16&by=bytes&type=stacked&n=10');
  const nets = await apiGet(base, `/api/top?group=dst_cidr&cidr4=16&cidr6=64&by=bytes&limit=10&from=-1h${own}`);
  assert.ok(nets.top.length > 0 && nets.top.every((t) => /\/(16|64)$/.test(t.dst_cidr)), JSON.stringify(nets.top));
  assert.deepEqual(await cells('#toptable', 0), nets.top.map((t) => t.dst_cidr));
  assert.equal(await page.inputValue('select[data-key=cidr4]'), '16');
  await page.locator('#toptable tbody tr').first().click();
  await page.waitForFunction(() => location.hash.startsWith('#/flows'));
  await rendered();
  assert.equal(await page.inputValue('#filter'), `dst=${nets.top[0].dst_cidr}`);
  // By the other end's workload: the API's ranking, its series drawn from
  // the answer itself, and an unnamed end opens the flows to its address.
  await open('explore?group=remote_workload&by=bytes&type=stacked&n=5');
  const remotes = await apiGet(base, `/api/top?group=remote_workload&by=bytes&limit=5&from=-1h${own}`);
  // Each entry's series adds up to its total.
  assert.ok(remotes.top.length > 0, JSON.stringify(remotes.top));
  for (const t of remotes.top) assert.equal(t.points.reduce((a, pt) => a + pt.bytes, 0), t.bytes, t.remote_workload);
  assert.deepEqual(await cells('#toptable', 0), remotes.top.map((t) => t.remote_workload));
  assert.deepEqual((await cells('#stats', 0)).slice(0, remotes.top.length), remotes.top.map((t) => t.remote_workload));
  const at = remotes.top.findIndex((t) => !t.attributed);
  assert.ok(at >= 0, JSON.stringify(remotes.top));
  const unnamed = remotes.top[at];
  await page.locator('#toptable tbody tr').nth(at).click();
  await page.waitForFunction(() => location.hash.startsWith('#/flows'));
  await rendered();
  assert.equal(await page.inputValue('#filter'), `dst=${unnamed.remote_workload}`);
  // Sankey: source → destination pairs as the API ranks them.
  await open('explore?type=sankey&by=bytes&n=5');
  const sk = await apiGet(base, `/api/top?group=pair&by=bytes&limit=15&from=-1h${own}`);
  assert.deepEqual(await page.evaluate(() => window.flowscopeSankey),
    sk.top.filter((t) => t.bytes > 0).map((t) => [t.src, `→ ${t.dst}`, t.bytes]));
  assert.equal(await page.locator('#sankey canvas').count(), 1);
  await shot('explore-sankey');
  // Filter bar completion: field names, then values seen.
  await open('flows');
  await page.fill('#filter', 'pro');
  await page.waitForFunction(() => document.getElementById('filtervalues').dataset.for === 'pro');
  assert.deepEqual(await page.$$eval('#filtervalues option', (o) => o.map((x) => x.value)), ['protocol=', 'process=']);
  await page.fill('#filter', 'port=443 process=cu');
  await page.waitForFunction(() => document.getElementById('filtervalues').dataset.for === 'port=443 process=cu');
  assert.deepEqual(await page.$$eval('#filtervalues option', (o) => o.map((x) => x.value)), ['port=443 process=curl']);
  await page.fill('#filter', 'process=<im');
  await page.waitForFunction(() => document.getElementById('filtervalues').dataset.for === 'process=<im');
  assert.deepEqual(await page.$$eval('#filtervalues option', (o) => o.map((x) => x.value)),
    ['process="<img src=x onerror=alert(1)>"']);
  await page.fill('#filter', '');

  step('explore');
  // Map, workloads (the default): the fleet graph's edges; the refused
  // connection is a red edge from its workload to the address nobody owns,
  // and opens its flows.
  await open('map');
  const apiGraph = await apiGet(base, `/api/graph?level=workload&limit=60&from=-1h${own}`);
  assert.equal(await page.evaluate(() => window.flowscopeGraph.edges().length),
    apiGraph.edges.filter((e) => e.src !== 'other').length);
  const refusedEdge = (filter) => page.evaluate((f) => {
    const e = window.flowscopeGraph.edges().filter((x) => x.data('filter') === f);
    return e.length === 1 ? { failing: e.data('failing') } : null;
  }, filter);
  assert.deepEqual(await refusedEdge('workload=refuser dst=10.0.0.6'), { failing: true });
  await shot('map');
  await page.evaluate(() => {
    window.flowscopeGraph.edges().filter((x) => x.data('filter') === 'workload=refuser dst=10.0.0.6').emit('tap');
  });
  await page.waitForFunction(() => location.hash.startsWith('#/flows') && location.hash.includes('refuser'));
  await rendered();
  assert.deepEqual(await cells('#flowtable', 7), ['refuser (1004)']);
  // Processes → remote address: the same edge, from the top lists.
  await open('map?nodes=process');
  assert.deepEqual(await refusedEdge('process=refuser dst=10.0.0.6'), { failing: true });
  // Addresses: one edge per pair the API ranks.
  await open('map?nodes=addr');
  const apiPairs = await apiGet(base, `/api/top?group=pair&limit=60&from=-1h${own}`);
  assert.equal(await page.evaluate(() => window.flowscopeGraph.edges().length), apiPairs.top.length);
  step('map');
  // Drops: counts by reason; a reason lists its flows.
  await open('drops');
  assert.deepEqual(await cells('#dropreasons', 0), ['NO_SOCKET', 'TCP_CSUM']);
  assert.deepEqual(await cells('#dropreasons', 1), ['3', '1']);
  const dropHosts = await apiGet(base, `/api/top?group=host&by=drops&drops=any&limit=10&from=-1h${own}`);
  assert.deepEqual(await cells('#drophosts', 0), dropHosts.top.map((t) => t.host));
  assert.deepEqual(await cells('#drophosts', 1), ['4']);
  assert.deepEqual(await cells('#dropprocs', 0), ['dropper']);
  assert.deepEqual(await page.evaluate(() => window.flowscopeDropSeries.map((x) => [x.name,
    x.points.reduce((a, p) => a + p[1], 0)])), [['NO_SOCKET', 3], ['TCP_CSUM', 1]]);
  await page.locator('#dropreasons tr', { hasText: 'NO_SOCKET' }).click();
  await page.waitForFunction(() => location.hash.includes('reason=NO_SOCKET'));
  await rendered();
  assert.deepEqual(await cells('#dropflows', 7), ['dropper (1005)']);
  await shot('drops');

  step('drops');
  assert.equal(dialogs, 0, 'no script from flow data ran');
  // Chromium logs the one refused request (port=99999) itself.
  const refused = (t) => t.includes('status of 400');
  assert.equal(errors.filter(refused).length, 1, errors.join('\n'));
  assert.deepEqual(errors.filter((t) => !refused(t)), [], 'no console errors');
  errors.length = 0;

  step('checks');
  // Token: the page and its assets load without it, the page asks, then shows data.
  const tokenFile = join(work, 'token');
  const token = 'console-test-token-0123456789abcdef';
  writeFileSync(tokenFile, token);
  chmodSync(tokenFile, 0o600);
  const secured = await startSeed(['--token-file', tokenFile]);
  const tpage = await context.newPage();
  watch(tpage, (t) => t.includes('401'));
  await tpage.goto(`http://127.0.0.1:${secured.port}/#/flows`);
  await tpage.waitForSelector('#tokenform:not([hidden])', { timeout: 15000 });
  await tpage.fill('#token', 'not-the-token-at-all');
  await tpage.press('#token', 'Enter');
  await tpage.waitForFunction(() => !document.getElementById('tokenform').hidden &&
    document.querySelector('#tokenform p').textContent.includes('refused'), null, { timeout: 15000 });
  await tpage.fill('#token', token);
  await tpage.press('#token', 'Enter');
  await rendered(tpage);
  const tflows = await apiGet(`http://127.0.0.1:${secured.port}`, `/api/flows?from=-1h&limit=50&exclude_port=${secured.port}`, token);
  assert.equal(await tpage.locator('#flowtable tbody tr').count(), tflows.count);
  assert.equal(await tpage.evaluate(() => sessionStorage.getItem('flowscope-token')), token);
  assert.deepEqual(errors, [], 'no console errors besides the 401s');
  console.log(`console browser test passed in ${((Date.now() - started) / 1000).toFixed(1)} s`);
} finally {
  if (context) await context.close();
  for (const c of children) c.stdin.end();
  await Promise.all(children.map((c) => (c.exitCode !== null ? null : new Promise((r) => c.once('exit', r)))));
  rmSync(work, { recursive: true, force: true });
}
