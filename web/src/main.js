// flowscope's web console. Each view's state lives in the URL hash
// (#/view?key=value...), so a link reproduces what is on screen.
import './style.css';
import { api, pool, ApiError } from './api.js';
import { h, table } from './dom.js';
import { lineChart, sankeyChart, disposeCharts } from './charts.js';
import * as fmt from './fmt.js';

const VIEWS = ['overview', 'explore', 'map', 'flows', 'drops'];
const FILTER_KEYS = ['addr', 'src', 'dst', 'port', 'protocol', 'direction', 'process', 'workload', 'pid', 'container',
  'close', 'exporter', 'host', 'netns', 'drops', 'record'];
// Filter keys whose values /api/complete offers.
const COMPLETED = ['process', 'container', 'host', 'exporter', 'close', 'direction', 'drops'];
const RANGES = { '15m': 900, '1h': 3600, '6h': 21600, '24h': 86400, '7d': 604800 };
const METRICS = { bytes: 'bytes', flows: 'connections', retransmits: 'retransmits', failures: 'failures',
  drops: 'drops' };

// ---- state in the URL ----
function readState() {
  const raw = location.hash.replace(/^#\/?/, '');
  const [view, query] = raw.split('?');
  const p = new URLSearchParams(query || '');
  return { view: VIEWS.includes(view) ? view : 'overview', p };
}

function go(view, changes = {}, keep = true) {
  const { p } = readState();
  const next = keep ? new URLSearchParams(p) : new URLSearchParams();
  if (!keep) for (const k of ['range', 'f', 'self']) if (p.has(k)) next.set(k, p.get(k));
  for (const [k, v] of Object.entries(changes)) {
    if (v === undefined || v === null || v === '') next.delete(k);
    else next.set(k, String(v));
  }
  const qs = next.toString();
  location.hash = `#/${view}${qs ? `?${qs}` : ''}`;
}

// Filter text: key=value words; a value with spaces is quoted (key="a b").
function parseFilter(text) {
  const out = {};
  const re = /\s*([^\s=]*)=(?:"([^"]*)"|(\S+))\s*/y;
  let rest = text.trim();
  while (rest) {
    re.lastIndex = 0;
    const m = re.exec(rest);
    if (!m || !FILTER_KEYS.includes(m[1]))
      throw new ApiError(`filter '${rest.split(/\s+/)[0]}': expected key=value with key one of ${FILTER_KEYS.join(', ')}`);
    out[m[1]] = m[2] !== undefined ? m[2] : m[3];
    rest = rest.slice(re.lastIndex);
  }
  return out;
}

const term = (k, v) => (/[\s"]/.test(String(v)) ? `${k}="${String(v).replaceAll('"', '')}"` : `${k}=${v}`);

// Parameters every query carries: range, filters, and (unless shown) the
// exclusion of this console's own requests to the API.
// A range's start on a whole minute (Unix seconds): the store then answers
// whole minutes from its per-minute rollup.
const since = (secs) => String(Math.floor(Date.now() / 60000) * 60 - secs);

function baseParams(p, extra = {}) {
  const range = RANGES[p.get('range')] ? p.get('range') : '1h';
  const params = { from: since(RANGES[range]), ...parseFilter(p.get('f') || ''), ...extra };
  if (p.get('self') !== '1') params.exclude_port = location.port || (location.protocol === 'https:' ? 443 : 80);
  return params;
}

function seriesPoints(resp, key, perSecond = true) {
  const secs = resp.interval_ns / 1e9;
  return resp.points.map((pt) => [pt.time_ns / 1e6, perSecond ? pt[key] / secs : pt[key]]);
}

// The newest complete bucket's value (the last one is still filling).
function current(points) {
  if (points.length < 2) return points.length ? points[0][1] : 0;
  return points[points.length - 2][1];
}

// ---- views ----
async function overview(root, p) {
  const base = baseParams(p);
  // Failing now: the pairs with the most failed connections or drops in
  // the last 15 minutes (the API ranks; both lists merged by pair). All five
  // questions at once: the page waits for the slowest, not for their sum.
  const recent = { ...base, from: since(900) };
  const [all, procs, pairs, byFail, byDrop] = await Promise.all([
    api('/api/timeseries', base),
    api('/api/top', { ...base, group: 'process', limit: 10 }),
    api('/api/top', { ...base, group: 'pair', limit: 10 }),
    api('/api/top', { ...recent, group: 'pair', by: 'failures', limit: 10 }),
    api('/api/top', { ...recent, group: 'pair', by: 'drops', limit: 10 }),
  ]);
  // Bytes each way: out is what the source side sent (for agents, the
  // local end), in what it received.
  const out = seriesPoints(all, 'bytes_out'), inb = seriesPoints(all, 'bytes_in');
  const charts = [
    ['connections/s', [{ name: 'connections/s', points: seriesPoints(all, 'flows') }], fmt.rate],
    ['bytes/s sent and received', [{ name: 'sent (out)', points: out }, { name: 'received (in)', points: inb }],
      fmt.byteRate, `↑ ${fmt.byteRate(current(out))} ↓ ${fmt.byteRate(current(inb))}`],
    ['failed connections/s (refused, timeout, reset)',
      [{ name: 'failed connections/s', points: seriesPoints(all, 'failures') }], fmt.rate],
    ['retransmits/s', [{ name: 'retransmits/s', points: seriesPoints(all, 'retransmits') }], fmt.rate],
    ['packets dropped/s', [{ name: 'packets dropped/s', points: seriesPoints(all, 'drops') }], fmt.rate],
  ];
  const grid = h('div', { class: 'grid' });
  root.append(grid);
  for (const [title, series, f, now] of charts) {
    const el = h('div', { class: 'chart' });
    grid.append(h('div', { class: 'card', dataset: { series: title } },
      h('h3', {}, title, h('span', { class: 'rate' }, now ?? f(current(series[0].points)))), el));
    lineChart(el, series, { format: f, legend: series.length > 1 });
  }
  const cols = (first) => [...first,
    { key: 'bytes_out', label: 'bytes out', num: true, text: (r) => fmt.bytes(r.bytes_out) },
    { key: 'bytes_in', label: 'bytes in', num: true, text: (r) => fmt.bytes(r.bytes_in) },
    { key: 'flows', label: 'connections', num: true, text: (r) => r.flows },
    { key: 'retransmits', label: 'retransmits', num: true, text: (r) => r.retransmits }];
  const failing = new Map();
  for (const r of [...byFail.top, ...byDrop.top])
    if (r.failures > 0 || r.drops > 0) failing.set(`${r.src}|${r.dst}`, r);
  const failList = [...failing.values()].sort((a, b) => (b.failures + b.drops) - (a.failures + a.drops));
  root.append(h('div', { class: 'tables' },
    h('div', {}, h('h2', {}, 'Top processes'), table(cols([{ key: 'process', label: 'process', text: (r) => r.process }]),
      procs.top, { onRow: (r) => go('flows', { f: term('process', r.process), offset: '', flow: '' }) })),
    h('div', {}, h('h2', {}, 'Top pairs'), table(cols([
      { key: 'src', label: 'source', text: (r) => r.src }, { key: 'dst', label: 'destination', text: (r) => r.dst }]),
    pairs.top, { onRow: (r) => go('flows', { f: `src=${r.src} dst=${r.dst}`, offset: '', flow: '' }) }))));
  root.append(h('div', { id: 'failing' }, h('h2', {}, 'Failing now (last 15 min): failed connections and drops'),
    failList.length ? table([
      { key: 'src', label: 'source', text: (r) => r.src }, { key: 'dst', label: 'destination', text: (r) => r.dst },
      { key: 'failures', label: 'failed connections', num: true, text: (r) => r.failures },
      { key: 'drops', label: 'packets dropped', num: true, text: (r) => r.drops }],
    failList, { onRow: (r) => go('flows', { f: `src=${r.src} dst=${r.dst}`, range: '15m', offset: '', flow: '' }) })
      : h('p', { class: 'muted' }, 'No refused, timed out or reset connections and no drops.')));
}

const GROUP_FILTER = {
  src: (k) => ({ src: k.src }), dst: (k) => ({ dst: k.dst }), pair: (k) => ({ src: k.src, dst: k.dst }),
  port: (k) => ({ port: k.port }), process: (k) => ({ process: k.process }), container: (k) => ({ container: k.container }),
  host: (k) => ({ host: k.host }), netns: (k) => ({ netns: k.netns }), close: (k) => ({ close: k.close }),
  drop_reason: (k) => ({ drops: k.drop_reason }),
  src_cidr: (k) => ({ src: k.src_cidr }), dst_cidr: (k) => ({ dst: k.dst_cidr }),
  // The other end, as the fleet view names it (or its address: then its
  // flows are those to it; a named one has no filter of its own).
  remote_workload: (k) => (k.attributed ? null : { dst: k.remote_workload }),
  remote_host: (k) => (k.attributed ? null : { dst: k.remote_host }),
};
// Prefix lengths offered for the network groups, per family.
const CIDR4 = ['8', '16', '20', '24', '28', '32'];
const CIDR6 = ['32', '48', '56', '64', '96', '128'];
const keyName = (g, r) => (g === 'pair' ? `${r.src} → ${r.dst}` : String(r[g]));

// min/avg/max/p95 of a series' values as charted, and its total.
function stats(values) {
  const v = [...values].sort((a, b) => a - b);
  if (!v.length) return { min: 0, avg: 0, max: 0, p95: 0 };
  return { min: v[0], avg: v.reduce((a, b) => a + b, 0) / v.length, max: v[v.length - 1],
    p95: v[Math.min(v.length - 1, Math.ceil(0.95 * v.length) - 1)] };
}

async function explore(root, p) {
  const group = GROUP_FILTER[p.get('group')] ? p.get('group') : 'process';
  const by = METRICS[p.get('by')] ? p.get('by') : 'bytes';
  const type = ['lines', 'sankey'].includes(p.get('type')) ? p.get('type') : 'stacked';
  const n = Math.min(Math.max(Number(p.get('n')) || 5, 1), 20);
  // Network groups: IPv4 and IPv6 addresses each at their own prefix length.
  const cidr = group.endsWith('_cidr');
  const cidr4 = CIDR4.includes(p.get('cidr4')) ? p.get('cidr4') : '24';
  const cidr6 = CIDR6.includes(p.get('cidr6')) ? p.get('cidr6') : '64';
  const select = (key, value, options) => h('select', { dataset: { key },
    onchange: (ev) => go('explore', { [key]: ev.target.value }) },
  options.map(([o, label]) => h('option', { value: o, selected: o === String(value) }, label)));
  const same = (list) => list.map((o) => [o, o]);
  root.append(h('div', { class: 'controls' },
    h('label', {}, 'group by ', select('group', group, same(Object.keys(GROUP_FILTER)))),
    h('label', {}, 'metric ', select('by', by, Object.entries(METRICS))),
    h('label', {}, 'chart ', select('type', type, [['stacked', 'stacked'], ['lines', 'lines'],
      ['sankey', 'sankey (source → destination)']])),
    h('label', {}, 'top ', select('n', n, same(['3', '5', '10', '20']))),
    ...(cidr ? [h('label', {}, 'IPv4 /', select('cidr4', cidr4, same(CIDR4))),
      h('label', {}, 'IPv6 /', select('cidr6', cidr6, same(CIDR6)))] : [])));
  const base = baseParams(p);
  const format = by === 'bytes' ? fmt.byteRate : (v) => fmt.rate(v, '');
  const openFlows = (filter) => go('flows', { f: Object.entries(filter).map(([k, v]) => term(k, v)).join(' '),
    offset: '', flow: '' });
  if (type === 'sankey') {
    const pairs = await api('/api/top', { ...base, group: 'pair', by, limit: n * 3 });
    const links = pairs.top.filter((r) => r[by] > 0).map((r) => ({ source: r.src, target: `→ ${r.dst}`, value: r[by],
      pair: r }));
    const el = h('div', { class: 'chart big', id: 'sankey' });
    root.append(el);
    if (links.length) sankeyChart(el, links, { format: by === 'bytes' ? fmt.bytes : String,
      onLink: (l) => openFlows({ src: l.pair.src, dst: l.pair.dst }) });
    window.flowscopeSankey = links.map((l) => [l.source, l.target, l.value]);  // for the browser tests
    root.append(h('h2', {}, `Top ${pairs.top.length} pairs by ${METRICS[by]}`), table([
      { key: 'src', label: 'source', text: (r) => r.src }, { key: 'dst', label: 'destination', text: (r) => r.dst },
      { key: 'v', label: METRICS[by], num: true, text: (r) => (by === 'bytes' ? fmt.bytes(r.bytes) : r[by]) },
    ], pairs.top, { onRow: (r) => openFlows({ src: r.src, dst: r.dst }) }));
    root.lastChild.id = 'toptable';
    return;
  }
  const top = await api('/api/top', { ...base, group, by, limit: n, ...(cidr ? { cidr4, cidr6 } : {}) });
  // "other": everything the top entries leave, from the unfiltered series.
  // The remote groups bring their series along (no filter selects them), in
  // buckets the whole series is then asked for too.
  const remote = group.startsWith('remote_');
  const [series, everything] = await Promise.all([
    remote ? top.top.map((r) => ({ name: keyName(group, r), raw: r.points.map((pt) => pt[by]),
      points: seriesPoints({ interval_ns: top.interval_ns, points: r.points }, by, by === 'bytes') }))
      : pool(top.top, 4, async (r) => {
        const s = await api('/api/timeseries', { ...base, ...GROUP_FILTER[group](r) });
        return { name: keyName(group, r), raw: s.points.map((pt) => pt[by]),
          points: seriesPoints(s, by, by === 'bytes') };
      }),
    api('/api/timeseries', remote ? { ...base, interval: `${top.interval_ns / 1e9}s` } : base),
  ]);
  // Per-reason series count the flows that had the reason: their sum can
  // exceed the whole, so "other" is left out there.
  if (group !== 'drop_reason') {
    const rest = everything.points.map((pt, i) => Math.max(0, pt[by] - series.reduce((a, s) => a + (s.raw[i] || 0), 0)));
    if (rest.some((v) => v > 0)) {
      const secs = by === 'bytes' ? everything.interval_ns / 1e9 : 1;
      series.push({ name: 'other', raw: rest, points: everything.points.map((pt, i) => [pt.time_ns / 1e6, rest[i] / secs]) });
    }
  }
  const el = h('div', { class: 'chart big' });
  root.append(el);
  lineChart(el, series, { stacked: type === 'stacked', legend: true, format });
  const rows = series.map((s) => ({ name: s.name, total: s.raw.reduce((a, b) => a + b, 0),
    ...stats(s.points.map((pt) => pt[1])) }));
  const unit = by === 'bytes' ? 'per second' : `per ${fmt.duration(everything.interval_ns)}`;
  const statsTable = table([
    { key: 'name', label: group, text: (r) => r.name },
    ...['min', 'avg', 'max', 'p95'].map((k) => ({ key: k, label: k, num: true, text: (r) => format(r[k]) })),
    { key: 'total', label: 'total', num: true, text: (r) => (by === 'bytes' ? fmt.bytes(r.total) : r.total) },
  ], rows);
  statsTable.id = 'stats';
  root.append(h('h2', {}, `${METRICS[by]} ${unit}: min, avg, max, p95; total over the range`), statsTable);
  const topTable = table([
    { key: 'key', label: group, text: (r) => keyName(group, r) },
    { key: 'bytes', label: 'bytes', num: true, text: (r) => fmt.bytes(r.bytes) },
    { key: 'bytes_out', label: 'out', num: true, text: (r) => fmt.bytes(r.bytes_out) },
    { key: 'bytes_in', label: 'in', num: true, text: (r) => fmt.bytes(r.bytes_in) },
    { key: 'packets', label: 'packets', num: true, text: (r) => r.packets },
    { key: 'flows', label: 'connections', num: true, text: (r) => r.flows },
    { key: 'retransmits', label: 'retransmits', num: true, text: (r) => r.retransmits },
    { key: 'failures', label: 'failures', num: true, text: (r) => r.failures },
    { key: 'drops', label: 'drops', num: true, text: (r) => r.drops },
  ], top.top, { onRow: (r) => { const f = GROUP_FILTER[group](r); if (f) openFlows(f); } });
  topTable.id = 'toptable';
  root.append(h('h2', {}, `Top ${n} by ${METRICS[by]}`), topTable);
}

const filterText = (f) => Object.entries(f || {}).map(([k, v]) => term(k, v)).join(' ');

// Edges of the map. Workloads or hosts (default: workloads): the fleet graph,
// each connection once from its client to its server, both ends named by
// their own records or the agents' ownership evidence, else an address.
// Processes → remote address, or source → destination address: the top
// lists. An edge is failing when its connections failed or packets dropped.
async function mapEdges(base, mode) {
  if (mode === 'workload' || mode === 'host') {
    const g = await api('/api/graph', { ...base, level: mode, limit: 60 });
    const node = new Map(g.nodes.map((n) => [n.id, n]));
    const ref = (id) => ({ id: `${mode}:${id}`, label: id, filter: filterText(node.get(id)?.filter),
      process: node.get(id)?.attributed });
    return g.edges.filter((e) => e.src !== 'other').map((e) => {
      const to = node.get(e.dst);
      // The client's flows; to an end named by its address, only those to it.
      const dst = to?.filter?.addr ? `dst=${to.filter.addr}` : '';
      const src = filterText(node.get(e.src)?.filter);
      return { from: ref(e.src), to: ref(e.dst), filter: src && dst ? `${src} ${dst}` : src || dst,
        bytes: e.bytes_src_to_dst + e.bytes_dst_to_src, retransmits: e.retransmits,
        failing: e.failed > 0 || e.drops_total > 0, connections: e.connections };
    });
  }
  if (mode === 'addr') {
    const pairs = await api('/api/top', { ...base, group: 'pair', limit: 60 });
    return pairs.top.map((t) => ({
      from: { id: `a:${t.src}`, label: t.src, filter: `addr=${t.src}` },
      to: { id: `a:${t.dst}`, label: t.dst, filter: `addr=${t.dst}` },
      filter: `src=${t.src} dst=${t.dst}`, bytes: t.bytes, retransmits: t.retransmits,
      failing: t.failures > 0 || t.drops > 0,
    }));
  }
  const procs = await api('/api/top', { ...base, group: 'process', limit: 15 });
  const perProc = await pool(procs.top, 4, (t) => api('/api/top', { ...base, process: t.process, group: 'dst', limit: 8 }));
  return procs.top.flatMap((t, i) => perProc[i].top.map((d) => ({
    from: { id: `p:${t.process}`, label: t.process, filter: term('process', t.process), process: true },
    to: { id: `a:${d.dst}`, label: d.dst, filter: `addr=${d.dst}` },
    filter: `${term('process', t.process)} dst=${d.dst}`, bytes: d.bytes, retransmits: d.retransmits,
    failing: d.failures > 0 || d.drops > 0,
  })));
}

const MAP_MODES = { workload: 'workloads (client → server)', host: 'hosts (client → server)',
  process: 'process → remote address', addr: 'source → destination address' };

async function map(root, p) {
  const mode = Object.hasOwn(MAP_MODES, p.get('nodes') || '') ? p.get('nodes') : 'workload';
  root.append(h('div', { class: 'controls' }, h('label', {}, 'nodes ', h('select', { dataset: { key: 'nodes' },
    onchange: (ev) => go('map', { nodes: ev.target.value }) },
  Object.entries(MAP_MODES).map(([v, label]) => h('option', { value: v, selected: mode === v }, label))))));
  // The graph library is the bundle's largest part and only this view
  // draws with it: loaded when the map first opens, not before first paint.
  const [list, { default: cytoscape }] = await Promise.all([mapEdges(baseParams(p), mode), import('cytoscape')]);
  const max = Math.max(1, ...list.map((e) => e.bytes));
  const nodes = new Map();
  const edges = list.map((e, i) => {
    for (const n of [e.from, e.to])
      nodes.set(n.id, { data: { id: n.id, label: n.label, filter: n.filter }, classes: n.process ? 'process' : '' });
    return { data: { id: `e${i}`, source: e.from.id, target: e.to.id, filter: e.filter, failing: e.failing,
      width: 1 + 9 * Math.sqrt(e.bytes / max),
      color: e.failing ? '#b3261e' : e.retransmits > 0 ? '#e08a00' : '#7a8aa6' } };
  });
  root.append(h('p', { class: 'muted' }, 'Edge width: bytes; red: refused, timed out or reset connections, or drops; ',
    'orange: retransmits. Click a node or an edge for its flows.'));
  const el = h('div', { id: 'graph' });
  root.append(el);
  const cy = cytoscape({
    container: el,
    elements: [...nodes.values(), ...edges],
    layout: { name: 'breadthfirst', directed: true, spacingFactor: 1.2, animate: false },
    style: [
      { selector: 'node', style: { label: 'data(label)', 'font-size': 10, 'background-color': '#4da3ff', width: 14,
        height: 14, 'text-valign': 'bottom', 'text-margin-y': 3 } },
      { selector: 'node[[outdegree > 0]]', style: { 'text-valign': 'top', 'text-margin-y': -3 } },
      { selector: 'node.process', style: { shape: 'round-rectangle', 'background-color': '#1d2330' } },
      { selector: 'edge', style: { width: 'data(width)', 'line-color': 'data(color)', 'target-arrow-color': 'data(color)',
        'target-arrow-shape': 'triangle', 'curve-style': 'bezier' } },
    ],
  });
  window.flowscopeGraph = cy;  // for the browser tests
  // A node no filter selects (a workload no record names) opens nothing.
  cy.on('tap', 'node, edge', (ev) => {
    const f = ev.target.data('filter');
    if (f) go('flows', { f, offset: '', flow: '' });
  });
}

const FLOW_COLS = [
  { key: 'end_ns', label: 'end', text: (f) => fmt.time(f.end_ns), sort: (f) => f.end_ns },
  { key: 'src', label: 'source', text: (f) => fmt.endpoint(f.src_addr, f.src_port), sort: (f) => fmt.endpoint(f.src_addr, f.src_port) },
  { key: 'dst', label: 'destination', text: (f) => fmt.endpoint(f.dst_addr, f.dst_port), sort: (f) => fmt.endpoint(f.dst_addr, f.dst_port) },
  { key: 'protocol', label: 'proto', text: (f) => fmt.proto(f.protocol), sort: (f) => f.protocol },
  { key: 'direction', label: 'dir', text: (f) => f.direction || '', sort: (f) => f.direction || '' },
  { key: 'bytes', label: 'bytes out', num: true, text: (f) => fmt.bytes(f.bytes), sort: (f) => f.bytes },
  { key: 'rev_bytes', label: 'bytes in', num: true, text: (f) => fmt.bytes(f.rev_bytes), sort: (f) => f.rev_bytes ?? -1 },
  { key: 'process', label: 'process', text: (f) => (f.comm ? `${f.comm} (${f.pid})` : ''), sort: (f) => f.comm || '' },
  { key: 'close', label: 'close', text: (f) => f.close || '', sort: (f) => f.close || '' },
  { key: 'drops', label: 'drops', num: true, sort: (f) => dropTotal(f),
    text: (f) => (dropTotal(f) ? h('span', { class: 'badge', title: 'packets dropped' }, dropTotal(f)) : '') },
];
const dropTotal = (f) => Object.values(f.drops || {}).reduce((a, b) => a + b, 0);

function flowTable(rows, opts = {}) {
  // The flow's end second goes into the URL too: the link finds the flow
  // after newer flows have pushed it off the page.
  const t = table(FLOW_COLS, rows, {
    onRow: (f) => go('flows', { flow: f.id, at: Math.floor(f.end_ns / 1e9) }), ...opts });
  t.id = opts.id || '';
  return t;
}

async function flows(root, p) {
  const limit = 50;
  const offset = Math.max(0, Number(p.get('offset')) || 0);
  const page = await api('/api/flows', { ...baseParams(p), limit, offset });
  const sortKey = p.get('sort');
  const dir = p.get('dir') === 'asc' ? 'asc' : 'desc';
  const col = FLOW_COLS.find((c) => c.key === sortKey);
  const rows = [...page.flows];
  if (col) {
    rows.sort((a, b) => {
      const x = col.sort(a), y = col.sort(b);
      return (x < y ? -1 : x > y ? 1 : 0) * (dir === 'asc' ? 1 : -1);
    });
  }
  root.append(h('div', { class: 'pager' },
    h('button', { disabled: offset === 0, onclick: () => go('flows', { offset: Math.max(0, offset - limit), flow: '', at: '' }) }, '← newer'),
    h('span', { id: 'pageinfo' }, `flows ${page.count ? offset + 1 : 0}–${offset + page.count}`),
    h('button', { disabled: !page.more, onclick: () => go('flows', { offset: page.next_offset, flow: '', at: '' }) }, 'older →'),
    h('span', { class: 'muted' }, 'newest first; column sorting orders this page')));
  root.append(flowTable(rows, {
    id: 'flowtable',
    sort: col ? { key: sortKey, dir } : null,
    onSort: (key) => go('flows', { sort: key, dir: key === sortKey && dir === 'desc' ? 'asc' : 'desc' }),
  }));
  const id = p.get('flow');
  if (id) {
    let f = page.flows.find((x) => String(x.id) === id);
    const at = Number(p.get('at'));
    if (!f && at > 0) {
      const near = await api('/api/flows', { ...baseParams(p), from: at - 1, to: at + 1, limit: 10000 });
      f = near.flows.find((x) => String(x.id) === id);
    }
    root.append(f ? flowDetail(f) : h('p', { class: 'muted' }, `Flow ${id} is not in this range.`));
  }
}

function fieldText(key, v) {
  if (v === null || v === undefined) return '—';
  if (key.endsWith('_ns')) return `${v} (${fmt.time(v)} UTC)`;
  if (key === 'bytes' || key === 'rev_bytes') return v >= 1024 ? `${v} (${fmt.bytes(v)})` : String(v);
  if (key === 'protocol') return `${v} (${fmt.proto(v)})`;
  return String(v);
}

function flowDetail(f) {
  const cmd = fmt.traceCommand(f);
  const fields = Object.entries(f).filter(([k]) => k !== 'drops');
  const drops = Object.entries(f.drops || {});
  const copy = h('button', { onclick: async () => {
    try {
      await navigator.clipboard.writeText(cmd);
      copy.textContent = 'copied';
    } catch {
      copy.textContent = 'select and copy by hand';
    }
  } }, 'copy');
  const el = h('section', { id: 'flowdetail' },
    h('h2', {}, `Flow ${f.id}: ${fmt.endpoint(f.src_addr, f.src_port)} → ${fmt.endpoint(f.dst_addr, f.dst_port)} ${fmt.proto(f.protocol)}`),
    h('div', { class: 'detail' },
      table([{ key: 'k', label: 'field', text: (r) => r[0] }, { key: 'v', label: 'value', text: (r) => fieldText(r[0], r[1]) }], fields),
      h('div', {},
        h('h3', {}, 'Drops by reason'),
        drops.length ? table([{ key: 'r', label: 'reason', text: (r) => r[0] }, { key: 'c', label: 'packets', num: true, text: (r) => r[1] }], drops,
          { onRow: (r) => go('drops', { reason: r[0] }, false) }) : h('p', { class: 'muted' }, 'none'),
        h('h3', {}, 'Follow these packets through the kernel'),
        h('div', { class: 'cmd', id: 'tracecmd' }, cmd), copy)));
  return el;
}

const withId = (id, el) => {
  el.id = id;
  return el;
};

async function dropsView(root, p) {
  const base = baseParams(p);
  // Counts by reason, host and process from the API; the chart places each
  // flow's drops by its record's end time.
  const [byReason, byHost, byProc, withDrops] = await Promise.all([
    api('/api/top', { ...base, group: 'drop_reason', by: 'drops', limit: 50 }),
    api('/api/top', { ...base, drops: base.drops || 'any', group: 'host', by: 'drops', limit: 10 }),
    api('/api/top', { ...base, drops: base.drops || 'any', group: 'process', by: 'drops', limit: 10 }),
    api('/api/flows', { ...base, drops: base.drops || 'any', limit: 10000 }),
  ]);
  const reasons = byReason.top.filter((r) => r.drops > 0).map((r) => [r.drop_reason, r.drops]);
  if (!reasons.length) {
    root.append(h('p', { class: 'muted' }, 'No drops in this range.'));
    return;
  }
  // Packets dropped per interval and reason, placed by each record's end
  // time on the API's own (zero-filled) bucket grid; counted from each
  // flow's last record, as the API counts them.
  const grid = await api('/api/timeseries', { ...base, drops: base.drops || 'any' });
  const shown = reasons.slice(0, 10).map(([r]) => r);
  const buckets = new Map(shown.map((r) => [r, grid.points.map((pt) => [pt.time_ns / 1e6, 0])]));
  for (const f of withDrops.flows) {
    if (f.record === 'interim' && f.cumulative) continue;
    const k = Math.floor((f.end_ns - grid.from_ns) / grid.interval_ns);
    for (const [r, c] of Object.entries(f.drops || {}))
      if (buckets.has(r) && k >= 0 && k < grid.points.length) buckets.get(r)[k][1] += c;
  }
  const series = shown.map((r) => ({ name: r, points: buckets.get(r) }));
  const el = h('div', { class: 'chart big' });
  root.append(h('h2', {}, withDrops.more ? 'Packets dropped per interval, by reason (first 10,000 flows)'
    : 'Packets dropped per interval, by reason'), el);
  lineChart(el, series, { stacked: true, legend: true });
  window.flowscopeDropSeries = series;  // for the browser tests
  const dropCols = (key, label) => [{ key, label, text: (r) => r[key] },
    { key: 'drops', label: 'packets dropped', num: true, text: (r) => r.drops },
    { key: 'flows', label: 'connections', num: true, text: (r) => r.flows }];
  root.append(h('div', { class: 'tables' },
    h('div', {}, h('h2', {}, 'Drops by reason'), withId('dropreasons',
      table([{ key: 'reason', label: 'reason', text: (r) => r[0] },
        { key: 'packets', label: 'packets dropped', num: true, text: (r) => r[1] }],
      reasons, { onRow: (r) => go('drops', { reason: r[0] }) }))),
    h('div', {}, h('h2', {}, 'By host'), withId('drophosts', table(dropCols('host', 'host'), byHost.top,
      { onRow: (r) => go('flows', { f: `${term('host', r.host)} drops=any`, offset: '', flow: '' }) }))),
    h('div', {}, h('h2', {}, 'By process'), withId('dropprocs', table(dropCols('process', 'process'), byProc.top,
      { onRow: (r) => go('flows', { f: `${term('process', r.process)} drops=any`, offset: '', flow: '' }) })))));
  const sel = p.get('reason');
  if (sel) {
    const list = await api('/api/flows', { ...base, drops: sel, limit: 100 });
    root.append(h('h2', {}, `Flows with ${sel}`), flowTable(list.flows, { id: 'dropflows' }));
  }
}

// Filter bar completion: field names, then the values the API has seen
// (offered through a <datalist>, so they are text, never markup).
let completing = 0;
async function completeFilter() {
  const input = document.getElementById('filter');
  const list = document.getElementById('filtervalues');
  const text = input.value;
  const m = /(^|\s)([^\s=]*)(=("?)([^\s"]*))?$/.exec(text);
  if (!m) return;
  const head = text.slice(0, m.index + m[1].length);
  const gen = ++completing;
  let options;
  if (m[3] === undefined) {
    options = FILTER_KEYS.filter((k) => k.startsWith(m[2])).map((k) => `${head}${k}=`);
  } else if (COMPLETED.includes(m[2])) {
    let resp;
    try {
      resp = await api('/api/complete', { field: m[2], prefix: m[5], limit: 20 });
    } catch {
      return;  // completion is a help: a refusal shows when the filter is applied
    }
    options = resp.values.map((v) => `${head}${term(m[2], v)}`);
  } else {
    options = [];
  }
  if (gen !== completing) return;
  list.replaceChildren(...options.map((o) => h('option', { value: o })));
  list.dataset.for = text;  // for the browser tests
}

const RENDER = { overview, explore, map, flows, drops: dropsView };

// ---- shell ----
let generation = 0;
let refresh = null;
async function render() {
  const gen = ++generation;
  clearTimeout(refresh);
  const { view, p } = readState();
  const hash = location.hash;
  document.body.dataset.view = view;
  document.body.dataset.state = 'loading';
  for (const a of document.querySelectorAll('#nav a')) a.classList.toggle('active', a.dataset.view === view);
  const range = document.getElementById('range');
  range.value = RANGES[p.get('range')] ? p.get('range') : '1h';
  document.getElementById('showself').checked = p.get('self') === '1';
  const filter = document.getElementById('filter');
  if (document.activeElement !== filter) filter.value = p.get('f') || '';
  const err = document.getElementById('error');
  // The new view is attached before it is drawn (charts need their size);
  // a render overtaken by a newer one draws into a detached element.
  const next = h('div');
  disposeCharts(document.getElementById('view'));
  document.getElementById('view').replaceChildren(next);
  try {
    await RENDER[view](next, p);
    if (gen !== generation) return;
    err.textContent = '';
    document.body.dataset.rendered = hash;  // what the tests wait on
    document.body.dataset.state = 'ready';
    // The overview follows the present; the other views hold still under
    // the reader until the range or filter changes.
    const tick = () => { if (document.hidden) refresh = setTimeout(tick, 30000); else render(); };
    if (view === 'overview') refresh = setTimeout(tick, 30000);
  } catch (e) {
    if (gen !== generation) return;
    err.textContent = e instanceof ApiError ? e.message : `error: ${e.message}`;
    document.body.dataset.state = 'error';
  }
}

function setup() {
  document.getElementById('range').onchange = (ev) => go(readState().view, { range: ev.target.value, offset: '' });
  document.getElementById('showself').onchange = (ev) => go(readState().view, { self: ev.target.checked ? '1' : '' });
  let typing = null;
  document.getElementById('filter').addEventListener('input', () => {
    clearTimeout(typing);
    typing = setTimeout(completeFilter, 150);
  });
  document.getElementById('filterbar').onsubmit = (ev) => {
    ev.preventDefault();
    const text = document.getElementById('filter').value.trim();
    try {
      parseFilter(text);
    } catch (e) {
      document.getElementById('error').textContent = e.message;
      return;
    }
    go(readState().view, { f: text, offset: '', flow: '' });
  };
  for (const a of document.querySelectorAll('#nav a'))
    a.onclick = (ev) => {
      ev.preventDefault();
      go(a.dataset.view, {}, false);
    };
  window.addEventListener('hashchange', render);
  render();
}

setup();
