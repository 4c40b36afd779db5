// The web console over a big store: each view's API calls (as the page makes
// them: last hour, ranges on whole minutes, the console's own port left out)
// timed one at a time, p50/p95 per call; the page's time to interactive per
// view in Debian's Chromium (playwright-core) on loopback; the bundle's size
// gzipped. Prints one JSON object.
//
//   node bench/console_bench.mjs --server build/bench/fs_api_latency --db /tmp/c.db [--rows 1000000] [--reps 15]
//        [--port 19740]
import { spawn } from 'node:child_process';
import { createRequire } from 'node:module';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { gzipSync } from 'node:zlib';

const require = createRequire(new URL('../web/package.json', import.meta.url));
const { chromium } = require('playwright-core');

const arg = (name, def) => {
  const i = process.argv.indexOf(name);
  return i > 0 ? process.argv[i + 1] : def;
};
const server = arg('--server');
const db = arg('--db');
const rows = arg('--rows', '1000000');
const reps = Number(arg('--reps', '15'));
// Below 32768 like the default 9740: the store answers the console's
// exclude_port filter from its rollup only for ports that cannot be ephemeral.
const apiPort = arg('--port', '19740');
if (!server || !db) {
  console.error('usage: node console_bench.mjs --server PATH/fs_api_latency --db PATH [--rows N] [--reps N]');
  process.exit(2);
}

const t0 = Date.now();
const child = spawn(server, ['--db', db, '--rows', rows, '--port', apiPort, '--serve'], { stdio: ['pipe', 'pipe', 'inherit'] });
const { port } = await new Promise((resolve, reject) => {
  createInterface({ input: child.stdout }).once('line', (l) => resolve(JSON.parse(l)));
  child.once('exit', (c) => reject(new Error(`${server} exited with ${c}`)));
});
const fillSeconds = (Date.now() - t0) / 1000;
const base = `http://127.0.0.1:${port}`;

// The calls each view makes (web/src/main.js), with its defaults.
const since = (secs) => String(Math.floor(Date.now() / 60000) * 60 - secs);
const q = (path, params) => `${path}?${new URLSearchParams({ from: since(3600), exclude_port: port, ...params })}`;
const get = async (path) => {
  const r = await fetch(base + path);
  if (!r.ok) throw new Error(`${path}: HTTP ${r.status} ${await r.text()}`);
  return r.json();
};
const procs = (await get(q('/api/top', { group: 'process', limit: 15 }))).top.map((t) => t.process);
const views = {
  overview: [q('/api/timeseries', {}), q('/api/top', { group: 'process', limit: 10 }),
    q('/api/top', { group: 'pair', limit: 10 }),
    q('/api/top', { group: 'pair', by: 'failures', limit: 10, from: since(900) }),
    q('/api/top', { group: 'pair', by: 'drops', limit: 10, from: since(900) })],
  explore: [q('/api/top', { group: 'process', by: 'bytes', limit: 5 }), q('/api/timeseries', {}),
    ...procs.slice(0, 5).map((p) => q('/api/timeseries', { process: p }))],
  'explore sankey': [q('/api/top', { group: 'pair', by: 'bytes', limit: 15 })],
  'explore remote': [q('/api/top', { group: 'remote_workload', by: 'bytes', limit: 5 }), q('/api/timeseries', {})],
  map: [q('/api/graph', { level: 'workload', limit: 60 })],
  'map processes': [q('/api/top', { group: 'process', limit: 15 }),
    ...procs.map((p) => q('/api/top', { process: p, group: 'dst', limit: 8 }))],
  flows: [q('/api/flows', { limit: 50, offset: 0 })],
  drops: [q('/api/top', { group: 'drop_reason', by: 'drops', limit: 50 }),
    q('/api/top', { drops: 'any', group: 'host', by: 'drops', limit: 10 }),
    q('/api/top', { drops: 'any', group: 'process', by: 'drops', limit: 10 }),
    q('/api/flows', { drops: 'any', limit: 10000 }), q('/api/timeseries', { drops: 'any' })],
  complete: [`/api/complete?field=process&prefix=`, `/api/complete?field=process&prefix=ng`],
};
const pct = (xs, p) => {
  const v = [...xs].sort((a, b) => a - b);
  return v[Math.min(v.length - 1, Math.ceil(p * v.length) - 1)];
};
const api = {};
for (const [view, calls] of Object.entries(views)) {
  const perCall = [];
  for (const path of calls) {
    const ms = [];
    await get(path);  // warm
    for (let k = 0; k < reps; k++) {
      const s = performance.now();
      await get(path);
      ms.push(performance.now() - s);
    }
    perCall.push({ path: path.replace(/from=\d+&/, '').replace(`exclude_port=${port}`, 'exclude_port=P'),
      p50_ms: pct(ms, 0.5), p95_ms: pct(ms, 0.95) });
  }
  api[view] = { calls: perCall, worst_p95_ms: Math.max(...perCall.map((c) => c.p95_ms)) };
}

// Time to interactive: navigation to the view drawn with its data (the
// page's own "ready" mark), a fresh page each time.
const work = mkdtempSync(join(tmpdir(), 'fs-console-bench-'));
const tti = {};
const context = await chromium.launchPersistentContext(join(work, 'profile'), {
  executablePath: '/usr/bin/chromium', headless: true,
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--no-first-run'],
  viewport: { width: 1400, height: 900 },
});
try {
  for (const view of ['overview', 'explore', 'map', 'flows', 'drops']) {
    const ms = [];
    for (let k = 0; k < 5; k++) {
      const page = await context.newPage();
      const s = performance.now();
      await page.goto(`${base}/#/${view}`);
      await page.waitForFunction(() => document.body.dataset.state === 'ready', null, { timeout: 60000 });
      ms.push(performance.now() - s);
      await page.close();
    }
    tti[view] = { p50_ms: pct(ms, 0.5), max_ms: Math.max(...ms) };
  }
} finally {
  await context.close();
  rmSync(work, { recursive: true, force: true });
}

let raw = 0;
let gz = 0;
for (const path of ['/', '/app.js', '/app.css']) {
  const body = Buffer.from(await (await fetch(base + path)).arrayBuffer());
  raw += body.length;
  gz += gzipSync(body, { level: 9 }).length;
}
child.stdin.end();
await new Promise((r) => (child.exitCode !== null ? r() : child.once('exit', r)));
console.log(JSON.stringify({ rows: Number(rows), fill_seconds: fillSeconds, reps, api, tti,
  bundle: { bytes: raw, gzip_bytes: gz } }));
