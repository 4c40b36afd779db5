// Readable units and names. Everything returns text: callers put it in
// textContent, never in innerHTML.
export function bytes(n) {
  if (n === null || n === undefined) return '';
  const u = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  let x = Number(n);
  while (Math.abs(x) >= 1024 && i < u.length - 1) {
    x /= 1024;
    i++;
  }
  return i === 0 ? `${x} B` : `${x.toFixed(x < 10 ? 2 : 1)} ${u[i]}`;
}

export function rate(n, unit = '/s') {
  if (n === null || n === undefined || Number.isNaN(n)) return '';
  const x = Number(n);
  if (x >= 1e6) return `${(x / 1e6).toFixed(1)}M${unit}`;
  if (x >= 1e3) return `${(x / 1e3).toFixed(1)}k${unit}`;
  return `${x < 10 ? x.toFixed(2) : x.toFixed(0)}${unit}`;
}

export function byteRate(n) {
  return `${bytes(Math.round(n))}/s`;
}

const PROTO = { 1: 'icmp', 6: 'tcp', 17: 'udp', 58: 'icmp6', 132: 'sctp' };
export function proto(p) {
  return PROTO[p] || String(p);
}

export function endpoint(addr, port) {
  if (addr === null || addr === undefined) return '';
  const a = String(addr).includes(':') ? `[${addr}]` : String(addr);
  return port === null || port === undefined ? a : `${a}:${port}`;
}

export function time(ns) {
  if (!ns) return '';
  const d = new Date(Number(ns) / 1e6);
  return d.toISOString().replace('T', ' ').replace('Z', '');
}

export function traceCommand(f) {
  const p = proto(f.protocol);
  const parts = [PROTO[f.protocol] ? p : `proto ${f.protocol}`];
  parts.push(`host ${f.src_addr}`, `host ${f.dst_addr}`);
  if (f.src_port) parts.push(`port ${f.src_port}`);
  if (f.dst_port) parts.push(`port ${f.dst_port}`);
  return `sudo flowscope trace '${parts.join(' and ')}'`;
}

// An interval in its largest whole unit: "1 min", "30 s", "1 h".
export function duration(ns) {
  const s = Math.round(ns / 1e9);
  if (s % 86400 === 0) return `${s / 86400} d`;
  if (s % 3600 === 0) return `${s / 3600} h`;
  if (s % 60 === 0) return `${s / 60} min`;
  return `${s} s`;
}
