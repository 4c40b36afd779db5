#include "collector/web_console.h"

namespace flowscope {

std::string_view web_console_html() {
  // Everything the page shows comes from the API; values are inserted as
  // text nodes (never as HTML), so flow data cannot inject markup.
  static constexpr std::string_view kPage = R"html(<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>flowscope</title>
<style>
body{font:14px system-ui,sans-serif;margin:1.5em;color:#222}
table{border-collapse:collapse;margin-bottom:1.5em}td,th{padding:2px 10px;border-bottom:1px solid #ddd;text-align:left}
th{background:#f4f4f4}.num{text-align:right}#err{color:#b00}
</style></head><body>
<h1>flowscope</h1>
<p>Token (only when the API needs one): <input id="token" type="password" size="40">
<button id="reload">Reload</button> <span id="err"></span></p>
<h2>Top talkers (last hour, by bytes)</h2>
<table id="top"><thead><tr><th>source</th><th>destination</th><th class="num">bytes</th><th class="num">flows</th><th class="num">retransmits</th></tr></thead><tbody></tbody></table>
<h2>Recent flows</h2>
<table id="flows"><thead><tr><th>end</th><th>source</th><th>destination</th><th>proto</th><th>dir</th><th class="num">bytes</th><th class="num">rev bytes</th><th>process</th><th>close</th></tr></thead><tbody></tbody></table>
<script>
const tok = document.getElementById('token');
tok.value = sessionStorage.getItem('flowscope-token') || '';
async function api(path) {
  const h = tok.value ? {'Authorization': 'Bearer ' + tok.value} : {};
  const r = await fetch(path, {headers: h});
  const j = await r.json();
  if (!r.ok) throw new Error(j.error || r.statusText);
  return j;
}
function fill(id, rows) {
  const tb = document.querySelector('#' + id + ' tbody');
  tb.replaceChildren();
  for (const cells of rows) {
    const tr = document.createElement('tr');
    for (const [v, num] of cells) {
      const td = document.createElement('td');
      if (num) td.className = 'num';
      td.textContent = v === null || v === undefined ? '' : String(v);
      tr.appendChild(td);
    }
    tb.appendChild(tr);
  }
}
async function load() {
  sessionStorage.setItem('flowscope-token', tok.value);
  document.getElementById('err').textContent = '';
  try {
    const top = await api('/api/top?group=pair&by=bytes&limit=20');
    fill('top', top.top.map(t => [[t.src], [t.dst], [t.bytes, 1], [t.flows, 1], [t.retransmits, 1]]));
    const fl = await api('/api/flows?limit=100');
    fill('flows', fl.flows.map(f => [[new Date(f.end_ns / 1e6).toISOString()], [f.src_addr + ':' + f.src_port],
      [f.dst_addr + ':' + f.dst_port], [f.protocol], [f.direction], [f.bytes, 1], [f.rev_bytes, 1],
      [f.comm ? f.comm + ' (' + f.pid + ')' : ''], [f.close]]));
  } catch (e) { document.getElementById('err').textContent = e.message; }
}
document.getElementById('reload').onclick = load;
load(); setInterval(load, 10000);
</script></body></html>
)html";
  return kPage;
}

}  // namespace flowscope
