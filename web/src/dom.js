// Element building with text only: flow data never goes through innerHTML.
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (k === 'class') el.className = v;
    else if (k === 'dataset') Object.assign(el.dataset, v);
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

// A table: columns [{key, label, num, text(row) -> string|Node, sort(row) -> value}].
export function table(columns, rows, { onRow, sort, onSort } = {}) {
  const head = h('tr', {}, columns.map((c) => {
    const mark = sort && sort.key === c.key ? (sort.dir === 'asc' ? ' ▲' : ' ▼') : '';
    return h('th', {
      class: [c.num ? 'num' : '', onSort && c.sort ? 'sortable' : ''].join(' ').trim() || null,
      dataset: { key: c.key },
      onclick: onSort && c.sort ? () => onSort(c.key) : null,
    }, c.label + mark);
  }));
  const body = rows.map((r) => h('tr', {
    class: onRow ? 'click' : null,
    onclick: onRow ? () => onRow(r) : null,
  }, columns.map((c) => h('td', { class: c.num ? 'num' : null }, c.text(r)))));
  return h('table', {}, h('thead', {}, head), h('tbody', {}, body));
}
