#!/usr/bin/env python3
"""flowscope benchmark harness (started by bench/run.sh, as root).

Runs every benchmark scenario with repeated, interleaved runs of each
contender against the same baseline, measures the contenders from /proc and
the kernel's BPF statistics, and writes BENCHMARKS.md, bench/results.json and
a PNG chart. Traffic only on loopback or in two network namespaces it creates
and removes. Standard library only (plus gnuplot for the chart).
"""
import argparse
import atexit
import json
import threading
import struct
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILD = os.environ.get("FLOWSCOPE_BUILD", os.path.join(ROOT, "build"))
FS = os.path.join(BUILD, "flowscope")
GEN = os.path.join(BUILD, "bench")
CLK_TCK = os.sysconf("SC_CLK_TCK")

NS_A, NS_B = "fsbench-a", "fsbench-b"
NS_A4, NS_B4 = "10.253.77.1", "10.253.77.2"
CHURN_PORT, BULK_PORT, IPFIX_PORT, HTTP_PORT = 17001, 17002, 17004, 17008
HOLD_PORT = 17100  # fs_holdopen worker i listens on HOLD_PORT + i
ONE_CONN_PORT = 17099  # local port of bulk stream 0: "a filter matching one connection"
NOMATCH_FILTER = "tcp port 9"  # discard port: nothing on this host uses it

WORK = tempfile.mkdtemp(prefix="fsbench-")


def log(msg):
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def sh(cmd, check=True, capture=True, timeout=120):
    r = subprocess.run(cmd, shell=isinstance(cmd, str), capture_output=capture, text=True, timeout=timeout)
    if check and r.returncode != 0:
        raise RuntimeError(f"command failed ({r.returncode}): {cmd}\n{r.stderr}")
    return r.stdout if capture else ""


def in_ns(ns, argv):
    return (["ip", "netns", "exec", ns] if ns else []) + argv


# ---------------------------------------------------------------- /proc probes

def cpu_of(pid):
    """(user_ns, sys_ns, total_ns) of a process: user/sys from /proc/PID/stat
    (clock ticks), total from the sum of its threads' schedstat (ns)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        user = int(fields[11]) * 1e9 / CLK_TCK
        sys_ = int(fields[12]) * 1e9 / CLK_TCK
        total = 0
        for t in os.listdir(f"/proc/{pid}/task"):
            try:
                with open(f"/proc/{pid}/task/{t}/schedstat") as f:
                    total += int(f.read().split()[0])
            except OSError:
                pass
        return user, sys_, total
    except OSError:
        return 0.0, 0.0, 0


def rss_kib(pid):
    out = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(("VmRSS:", "VmHWM:")):
                    out[line.split(":")[0]] = int(line.split()[1])
    except OSError:
        pass
    return out.get("VmRSS", 0), out.get("VmHWM", 0)


def bpf_objects(pid):
    """BPF programs (ids) and maps (id -> memlock bytes) a process holds, from
    /proc/PID/fdinfo: exact per process (this bpftool lacks the pids view)."""
    progs, maps = set(), {}
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return progs, maps
    for fd in fds:
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
            if "bpf" not in target:
                continue
            with open(f"/proc/{pid}/fdinfo/{fd}") as f:
                info = dict(l.split(":", 1) for l in f.read().splitlines() if ":" in l)
        except OSError:
            continue
        info = {k.strip(): v.strip() for k, v in info.items()}
        if "prog_id" in info:
            progs.add(int(info["prog_id"]))
        if "map_id" in info:
            maps[int(info["map_id"])] = int(info.get("memlock", 0))
    return progs, maps


def bpf_runtime(prog_ids):
    """(run_time_ns, run_cnt) summed over programs, from bpftool prog show -j
    (needs kernel.bpf_stats_enabled=1)."""
    if not prog_ids:
        return 0, 0
    try:
        progs = json.loads(sh(["bpftool", "prog", "show", "-j"]))
    except Exception:
        return 0, 0
    ns = cnt = 0
    for p in progs:
        if p.get("id") in prog_ids:
            ns += p.get("run_time_ns", 0)
            cnt += p.get("run_cnt", 0)
    return ns, cnt


# ---------------------------------------------------------------- processes

LIVE = []  # every contender process started; none may outlive its run


def kill_leftovers():
    """A contender left running (a crash between start and stop) would tax
    every later run: stop any that is still alive."""
    for p in LIVE:
        if p.alive():
            log(f"  warning: {p.name} (pid {p.pid}) outlived its run; killed")
            p.p.kill()
            p.p.wait()
    LIVE.clear()


atexit.register(kill_leftovers)


class Proc:
    def __init__(self, name, argv, ns=None, stdout=None, stderr_file=None):
        LIVE.append(self)
        self.name = name
        self.argv = in_ns(ns, argv)
        self.err_path = stderr_file or os.path.join(WORK, f"{name}.{time.time_ns()}.err")
        self.out_path = stdout
        out = open(stdout, "w") if stdout else subprocess.DEVNULL
        self.err = open(self.err_path, "w")
        self.p = subprocess.Popen(self.argv, stdout=out, stderr=self.err, stdin=subprocess.DEVNULL)
        if stdout:
            out.close()

    @property
    def pid(self):
        return self.p.pid

    def alive(self):
        return self.p.poll() is None

    def stderr(self):
        try:
            with open(self.err_path, errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def stop(self, sig=signal.SIGINT, timeout=20):
        if self.alive():
            self.p.send_signal(sig)
            try:
                self.p.wait(timeout)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()
        self.err.close()
        return self.p.returncode


def wait_for(pred, timeout, step=0.05):
    end = time.time() + timeout
    while time.time() < end:
        if pred():
            return True
        time.sleep(step)
    return False


class Server:
    """A load generator's server side, started once per scenario."""

    def __init__(self, argv, ns=None):
        self.p = subprocess.Popen(in_ns(ns, argv), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = self.p.stdout.readline()
        if '"ready"' not in line:
            raise RuntimeError(f"server {argv} did not start: {line}{self.p.stderr.read()}")

    def stop(self):
        self.p.terminate()
        self.p.wait(10)


class ClickHouse:
    """A throwaway clickhouse-server: its own config, users and data folder
    under WORK, loopback ports, never the system service."""

    HTTP, TCP = 17020, 17021

    def __init__(self):
        exe = shutil.which("clickhouse-server") or "/usr/bin/clickhouse-server"
        if not os.access(exe, os.X_OK):
            raise RuntimeError("clickhouse-server not installed (scripts/setup.sh installs it)")
        self.dir = d = os.path.join(WORK, f"clickhouse-{time.time_ns()}")
        for sub in ("data", "tmp", "user_files", "log"):
            os.makedirs(os.path.join(d, sub))
        with open(os.path.join(d, "config.xml"), "w") as f:
            f.write(f"""<?xml version="1.0"?>
<yandex>
  <logger><level>warning</level><log>{d}/log/server.log</log><errorlog>{d}/log/error.log</errorlog><console>0</console></logger>
  <listen_host>127.0.0.1</listen_host>
  <http_port>{self.HTTP}</http_port>
  <tcp_port>{self.TCP}</tcp_port>
  <path>{d}/data/</path>
  <tmp_path>{d}/tmp/</tmp_path>
  <user_files_path>{d}/user_files/</user_files_path>
  <users_config>{d}/users.xml</users_config>
  <default_profile>default</default_profile>
  <default_database>default</default_database>
  <mark_cache_size>268435456</mark_cache_size>
  <max_concurrent_queries>50</max_concurrent_queries>
</yandex>
""")
        with open(os.path.join(d, "users.xml"), "w") as f:
            f.write("""<?xml version="1.0"?>
<yandex>
  <profiles><default><max_memory_usage>4000000000</max_memory_usage></default></profiles>
  <users><default><password></password><networks><ip>127.0.0.1</ip></networks>
    <profile>default</profile><quota>default</quota></default></users>
  <quotas><default><interval><duration>3600</duration><queries>0</queries><errors>0</errors>
    <result_rows>0</result_rows><read_rows>0</read_rows><execution_time>0</execution_time></interval></default></quotas>
</yandex>
""")
        self.proc = Proc("clickhouse", [exe, f"--config-file={d}/config.xml"])
        if not wait_for(self.ping, 60):
            self.proc.stop(signal.SIGKILL)
            raise RuntimeError(f"clickhouse-server did not start: {self.proc.stderr()[-300:]}")
        self.version = self.query("SELECT version()").strip()

    def ping(self):
        import urllib.request
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.HTTP}/ping", timeout=1) as r:
                return r.status == 200
        except Exception:
            return False

    def query(self, sql, timeout=600):
        import urllib.request
        req = urllib.request.Request(f"http://127.0.0.1:{self.HTTP}/", data=sql.encode(), method="POST")
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.read().decode()

    def url(self, db):
        return f"clickhouse://127.0.0.1:{self.HTTP}/{db}"

    def rows(self, db, table="flows"):
        try:
            return int(self.query(f"SELECT count() FROM {db}.{table}", timeout=5).strip() or 0)
        except Exception:
            return 0

    def disk_bytes(self, db, table):
        return int(self.query(f"SELECT sum(bytes_on_disk) FROM system.parts WHERE database = '{db}' "
                              f"AND table = '{table}' AND active").strip() or 0)

    def stop(self):
        self.proc.stop(signal.SIGTERM, timeout=30)
        shutil.rmtree(self.dir, ignore_errors=True)


# ---------------------------------------------------------------- topologies

def netns_up():
    netns_down()
    cmds = [
        f"ip netns add {NS_A}", f"ip netns add {NS_B}",
        f"ip link add fsb0 netns {NS_A} type veth peer name fsb1 netns {NS_B}",
        f"ip -n {NS_A} addr add {NS_A4}/24 dev fsb0", f"ip -n {NS_B} addr add {NS_B4}/24 dev fsb1",
        f"ip -n {NS_A} link set fsb0 up", f"ip -n {NS_B} link set fsb1 up",
        f"ip -n {NS_A} link set lo up", f"ip -n {NS_B} link set lo up",
        # The client reuses TIME_WAIT ports (loopback does by default).
        f"ip netns exec {NS_A} sysctl -qw net.ipv4.tcp_tw_reuse=1",
        f"ip netns exec {NS_B} sysctl -qw net.ipv4.tcp_max_tw_buckets=1000000",
    ]
    for c in cmds:
        sh(c)


def netns_down():
    for ns in (NS_A, NS_B):
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)


TOPOLOGIES = {
    # name: (client ns, server ns, server address)
    "loopback": (None, None, "127.0.0.1"),
    "netns": (NS_A, NS_B, NS_B4),
}


# ---------------------------------------------------------------- features

def help_text(*args):
    """`flowscope ARGS --help`, or None when this build lacks the subcommand."""
    try:
        top = subprocess.run([FS, "--help"], capture_output=True, text=True, timeout=10).stdout
        if args and not re.search(rf"^\s+{re.escape(args[0])}\b", top, re.M):
            return None
        r = subprocess.run([FS, *args, "--help"], capture_output=True, text=True, timeout=10)
        return r.stdout + r.stderr if r.returncode == 0 else None
    except Exception:
        return None


def option_matching(text, *words):
    """The first --option in a help text whose name contains all words."""
    for opt in re.findall(r"(--[a-z0-9][a-z0-9-]*)", text or ""):
        if all(w in opt for w in words):
            return opt
    return None


class Features:
    def __init__(self):
        self.agent_help = help_text("agent") or ""
        self.collector_help = help_text("collector")
        self.trace_help = help_text("trace")
        self.ipfix_opt = option_matching(self.agent_help, "ipfix")
        self.tcplife = next((p for p in ("/usr/sbin/tcplife", "/usr/lib/libbpf-tools/tcplife", shutil.which("tcplife") or "")
                             if p and os.access(p, os.X_OK)), None)
        self.softflowd = shutil.which("softflowd")
        self.nfcapd = shutil.which("nfcapd")

    def collector_argv(self, udp_port, tcp_port, db):
        """The collector's command line, from the option names its --help
        offers; (None, reason) when they cannot be recognised. Options named
        *port* get a bare port, others HOST:PORT; a *dir* option gets a
        directory (the SQLite file is then found inside it)."""
        h = self.collector_help
        if h is None:
            return None, "not available in this build (no `flowscope collector`)"
        udp = option_matching(h, "udp")
        tcp = option_matching(h, "tcp")
        dbo = option_matching(h, "db") or option_matching(h, "sqlite") or option_matching(h, "database") \
            or option_matching(h, "storage") or option_matching(h, "data")
        if not udp or not dbo:
            return None, "collector options not recognised (update collector_argv in bench/harness.py)"

        def ep(opt, port):
            return str(port) if "port" in opt else f"127.0.0.1:{port}"

        if "dir" in dbo:
            os.makedirs(db, exist_ok=True)
        argv = [FS, "collector", udp, ep(udp, udp_port), dbo, db]
        if tcp:
            argv += [tcp, ep(tcp, tcp_port)]
        http = option_matching(h, "http", "port") or option_matching(h, "api", "port") or option_matching(h, "http")
        if http:
            argv += [http, ep(http, HTTP_PORT)]
        return argv, None


# ---------------------------------------------------------------- contenders

class Contender:
    """Something attached while the load runs. start() returns a list of
    processes (the first is the one measured) or raises Unavailable."""
    name = "?"
    measured = True

    def start(self, ctx):
        return []

    def finish(self, procs, ctx):
        return {}


class Unavailable(Exception):
    pass


class Baseline(Contender):
    name = "baseline"
    measured = False


def parse_agent_stats(text):
    stats = None
    for line in text.splitlines():
        if line.startswith('{"type":"stats"'):
            try:
                stats = json.loads(line)
            except ValueError:
                pass
    return stats


def start_agent(extra, stdout=None, name="agent", binary=None):
    p = Proc(name, [binary or FS, "agent", "--stats", "86400", *extra], stdout=stdout)
    if not wait_for(lambda: "agent running" in p.stderr() or not p.alive(), 30) or not p.alive():
        p.stop()
        raise Unavailable(f"agent failed to start: {p.stderr().strip()[-300:]}")
    time.sleep(0.3)
    return p


class AgentJson(Contender):
    name = "flowscope agent (JSON > /dev/null)"

    def __init__(self, binary=None, label=None):
        self.binary = binary
        if label:
            self.name = f"flowscope agent {label} (JSON > /dev/null)"

    def start(self, ctx):
        return [start_agent([], binary=self.binary)]

    def finish(self, procs, ctx):
        procs[0].stop()
        st = parse_agent_stats(procs[0].stderr())
        return {"records": st["records_received"], "kernel_lost": st["lost"]} if st else {"error": "no stats"}


class AgentIpfix(Contender):
    """The agent exporting IPFIX over UDP (no JSON) to a local collector:
    `flowscope collector` when the build has it, else nfdump's nfcapd so the
    agent's export path is still measured."""

    def __init__(self, features):
        self.use_nfcapd = features.collector_help is None and features.nfcapd is not None
        self.name = "flowscope agent -> IPFIX -> " + ("nfcapd (no collector in this build)" if self.use_nfcapd
                                                      else "collector")

    def start(self, ctx):
        f = ctx.features
        if not f.ipfix_opt:
            raise Unavailable("not available in this build (agent has no --ipfix)")
        if self.use_nfcapd:
            d = os.path.join(WORK, f"nfcapd-{time.time_ns()}")
            os.makedirs(d)
            col = Proc("nfcapd", ["nfcapd", "-b", "127.0.0.1", "-p", str(IPFIX_PORT), "-w", d, "-B", "8388608"])
        else:
            if f.collector_help is None:
                raise Unavailable("not available in this build (no `flowscope collector`)")
            db = os.path.join(WORK, f"collector-{time.time_ns()}.db")
            argv, why = f.collector_argv(IPFIX_PORT, IPFIX_PORT + 1, db)
            if not argv:
                raise Unavailable(why)
            col = Proc("collector", argv)
        time.sleep(1.0)
        if not col.alive():
            raise Unavailable(f"collector failed to start: {col.stderr().strip()[-300:]}")
        extra = [f.ipfix_opt, f"udp://127.0.0.1:{IPFIX_PORT}"]
        if "--no-json" in f.agent_help:
            extra.append("--no-json")
        try:
            agent = start_agent(extra, name="agent-ipfix")
        except Unavailable:
            col.stop()
            raise
        return [agent, col]

    def finish(self, procs, ctx):
        procs[0].stop()
        time.sleep(1.0)
        procs[1].stop(signal.SIGTERM)
        st = parse_agent_stats(procs[0].stderr())
        if not st:
            return {"error": "no stats"}
        sent = sum(d.get("records_sent", 0) for d in st.get("ipfix", []))
        dropped = sum(d.get("dropped_queue_full", 0) + d.get("dropped_send_failed", 0) for d in st.get("ipfix", []))
        # Lost on the way = not read from the ring buffer, or read but not sent.
        return {"records": min(st["records_received"], sent) if st.get("ipfix") else st["records_received"],
                "kernel_lost": st["lost"] + dropped}


class Tcplife(Contender):
    name = "libbpf-tools tcplife (> /dev/null)"

    def start(self, ctx):
        if not ctx.features.tcplife:
            raise Unavailable("tcplife not installed (Debian package libbpf-tools)")
        p = Proc("tcplife", [ctx.features.tcplife])
        ok = wait_for(lambda: bpf_objects(p.pid)[0] or not p.alive(), 20)
        if not ok or not p.alive():
            p.stop()
            raise Unavailable(f"tcplife failed on this kernel: {p.stderr().strip()[-300:]}")
        time.sleep(0.5)
        return [p]

    def finish(self, procs, ctx):
        procs[0].stop()
        lost = sum(int(n) for n in re.findall(r"[Ll]ost (\d+)", procs[0].stderr()))
        return {"tool_lost": lost}


class Trace(Contender):
    def __init__(self, filt, label):
        self.filt = filt
        self.name = f"flowscope trace ({label})"

    def start(self, ctx):
        if ctx.features.trace_help is None:
            raise Unavailable("not available in this build (no `flowscope trace`)")
        p = Proc("trace", [FS, "trace", self.filt])
        wait_for(lambda: bpf_objects(p.pid)[0] or not p.alive(), 30)
        time.sleep(1.0)
        if not p.alive():
            raise Unavailable(f"trace failed: {p.stderr().strip()[-300:]}")
        return [p]

    def finish(self, procs, ctx):
        procs[0].stop()
        return {}


class Softflowd(Contender):
    name = "softflowd (libpcap, IPFIX)"

    def start(self, ctx):
        if not ctx.features.softflowd:
            raise Unavailable("softflowd not installed")
        self.ctl = os.path.join(WORK, "softflowd.ctl")
        p = Proc("softflowd", ["softflowd", "-d", "-i", "fsb0", "-v", "10", "-n", "127.0.0.1:9995",
                               "-c", self.ctl, "-p", os.path.join(WORK, "softflowd.pid")], ns=NS_A)
        if not wait_for(lambda: os.path.exists(self.ctl) or not p.alive(), 10) or not p.alive():
            p.stop()
            raise Unavailable(f"softflowd failed: {p.stderr().strip()[-300:]}")
        time.sleep(0.5)
        return [p]

    def finish(self, procs, ctx):
        out = subprocess.run(in_ns(NS_A, ["softflowctl", "-c", self.ctl, "statistics"]), capture_output=True,
                             text=True).stdout
        procs[0].stop(signal.SIGTERM)
        m = re.search(r"Packets processed:\s*(\d+)", out)
        d = re.search(r"Packets dropped by libpcap:\s*(\d+)", out)
        return {"packets_processed": int(m.group(1)) if m else None, "pcap_dropped": int(d.group(1)) if d else None,
                "softflowctl": out.strip()[:600]}


# ---------------------------------------------------------------- running

class Ctx:
    def __init__(self, args, features):
        self.args = args
        self.features = features


def measure_run(ctx, contender, load):
    """Starts a contender, runs `load()` (returns a dict), measures the
    contender over exactly the load's window."""
    rec = {"contender": contender.name}
    kill_leftovers()
    try:
        procs = contender.start(ctx)
    except Unavailable as e:
        rec["unavailable"] = str(e)
        return rec
    main = procs[0] if procs else None
    others = procs[1:]
    if main:
        progs, maps = bpf_objects(main.pid)
        c0 = cpu_of(main.pid)
        o0 = [cpu_of(p.pid) for p in others]
        b0 = bpf_runtime(progs)
    rec.update(load())
    if main:
        time.sleep(0.5)  # records of the last connections drain
        c1 = cpu_of(main.pid)
        o1 = [cpu_of(p.pid) for p in others]
        progs, maps = bpf_objects(main.pid)
        b1 = bpf_runtime(progs)
        rss, hwm = rss_kib(main.pid)
        rec.update({
            "user_ms": (c1[0] - c0[0]) / 1e6, "sys_ms": (c1[1] - c0[1]) / 1e6, "cpu_ms": (c1[2] - c0[2]) / 1e6,
            "other_cpu_ms": sum((b[2] - a[2]) for a, b in zip(o0, o1)) / 1e6,
            "bpf_ms": (b1[0] - b0[0]) / 1e6, "bpf_runs": b1[1] - b0[1],
            "rss_kib": rss, "hwm_kib": hwm, "map_bytes": sum(maps.values()), "nprogs": len(progs),
        })
        rec.update(contender.finish(procs, ctx))
    return rec


def interleaved(ctx, contenders, load, reps):
    """reps rounds; each round runs every contender once, order rotated each
    round so slow drift of the machine does not favour anyone."""
    runs = []
    unavailable = {}
    for r in range(reps):
        order = contenders[r % len(contenders):] + contenders[:r % len(contenders)]
        for c in order:
            if c.name in unavailable:
                continue
            log(f"  round {r + 1}/{reps}: {c.name}")
            rec = measure_run(ctx, c, load)
            rec["round"] = r
            if "unavailable" in rec:
                unavailable[c.name] = rec["unavailable"]
                log(f"    unavailable: {rec['unavailable']}")
            else:
                runs.append(rec)
            time.sleep(ctx.args.pause)
    return runs, unavailable


def round_ratios(runs, name, key):
    """Contender / baseline of the same round, for each round."""
    base = {r["round"]: r[key] for r in runs if r["contender"] == "baseline" and r.get(key)}
    return [r[key] / base[r["round"]] for r in runs if r["contender"] == name and r["round"] in base]


def spread(xs):
    return f"{min(xs):.2f}–{max(xs):.2f}" if xs else "–"


# Student's t, two-sided 95%, by degrees of freedom (1..9); 1.96 beyond.
T95 = {1: 12.71, 2: 4.30, 3: 3.18, 4: 2.78, 5: 2.57, 6: 2.45, 7: 2.36, 8: 2.31, 9: 2.26}


def ci95(xs):
    """Mean of the per-round ratios and its 95% confidence interval (rounds
    taken as independent samples), or None with fewer than 3 rounds."""
    if len(xs) < 3:
        return None
    m = statistics.mean(xs)
    h = T95.get(len(xs) - 1, 1.96) * statistics.stdev(xs) / len(xs) ** 0.5
    return m, m - h, m + h


def ratio_verdict(ratio, rounds, target):
    """The target's verdict from the median ratio, and where the target falls
    in the rounds' 95% interval: inside it, this run cannot tell either way."""
    if not ratio:
        return "–", ""
    ci = ci95(rounds)
    note = f"; mean {ci[0]:.2f}, 95% CI {ci[1]:.2f}–{ci[2]:.2f}" if ci else ""
    ok = "met" if ratio >= target else "**not met**"
    if ci and ci[1] <= target <= ci[2]:
        ok += f" ({target} inside the 95% CI: undecided)"
    return ok, note


def median(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def selected(ctx, contenders):
    """--contenders: keep the baseline and the contenders whose name contains
    one of the given words (e.g. `trace` for the tracer rows only)."""
    words = [w for w in (ctx.args.contenders or "").split(",") if w]
    if not words:
        return contenders
    return [c for c in contenders if c.name == "baseline" or any(w in c.name for w in words)]


def before_agent(ctx):
    """--before-build: the agent of another build (e.g. the commit before a
    change) as one more contender, interleaved with this build's in every round."""
    b = ctx.args.before_build
    return [AgentJson(os.path.join(b, "flowscope"), "before")] if b else []


def churn_scenario(ctx, topo):
    cns, sns, saddr = TOPOLOGIES[topo]
    a = ctx.args
    server = Server([f"{GEN}/fs_churn", "server", "--addr", saddr, "--port", str(CHURN_PORT),
                     "--threads", str(a.churn_threads)], ns=sns)

    def load():
        out = sh(in_ns(cns, [f"{GEN}/fs_churn", "client", "--addr", saddr, "--port", str(CHURN_PORT),
                             "--threads", str(a.churn_threads), "--duration", str(a.churn_secs)]))
        return json.loads(out.strip().splitlines()[-1])

    contenders = selected(ctx, [Baseline(), AgentJson(), *before_agent(ctx), AgentIpfix(ctx.features), Tcplife(),
                                Trace(NOMATCH_FILTER, "non-matching filter")])
    try:
        runs, unavailable = interleaved(ctx, contenders, load, a.reps)
    finally:
        server.stop()
    return summarize_churn(contenders, runs, unavailable)


def summarize_churn(contenders, runs, unavailable):
    base = median([r["cps"] for r in runs if r["contender"] == "baseline"])
    rows = []
    for c in contenders:
        rs = [r for r in runs if r["contender"] == c.name]
        if not rs:
            rows.append({"contender": c.name, "unavailable": unavailable.get(c.name, "no runs")})
            continue
        row = {"contender": c.name, "runs": len(rs), "cps": median([r["cps"] for r in rs]),
               "errors": sum(r.get("errors", 0) for r in rs)}
        row["ratio"] = row["cps"] / base if base else None
        row["round_ratios"] = round_ratios(runs, c.name, "cps")
        if c.measured:
            per = []
            lost = []
            for r in rs:
                n = r["connections"]
                per.append((r["cpu_ms"] + r["bpf_ms"]) * 1e6 / n if n else None)
                if "records" in r:
                    lost.append(max(0, 2 * n - r["records"]) + 0)
            row.update({
                "cpu_ms": median([r["cpu_ms"] for r in rs]), "user_ms": median([r["user_ms"] for r in rs]),
                "sys_ms": median([r["sys_ms"] for r in rs]), "bpf_ms": median([r["bpf_ms"] for r in rs]),
                "other_cpu_ms": median([r["other_cpu_ms"] for r in rs]),
                "ns_per_conn": median(per),
                "bpf_ns_per_run": median([r["bpf_ms"] * 1e6 / r["bpf_runs"] if r["bpf_runs"] else None for r in rs]),
                "rss_kib": median([r["rss_kib"] for r in rs]), "map_bytes": median([r["map_bytes"] for r in rs]),
                "bpf_runs": median([r["bpf_runs"] for r in rs]),
                "bpf_ns_per_conn": median([r["bpf_ms"] * 1e6 / r["connections"] if r["connections"] else None for r in rs]),
            })
            if lost:
                row["flows_lost_max"] = max(lost)
                row["kernel_lost_max"] = max(r.get("kernel_lost", 0) for r in rs)
                row["expected_max"] = max(2 * r["connections"] for r in rs)
            if any("tool_lost" in r for r in rs):
                row["tool_lost_max"] = max(r.get("tool_lost", 0) for r in rs)
        rows.append(row)
    return {"baseline_cps": base, "rows": rows, "runs": runs}


def bulk_scenario(ctx):
    cns, sns, saddr = TOPOLOGIES["netns"]
    a = ctx.args
    server = Server([f"{GEN}/fs_bulk", "server", "--addr", saddr, "--port", str(BULK_PORT)], ns=sns)

    def load():
        out = sh(in_ns(cns, [f"{GEN}/fs_bulk", "client", "--addr", saddr, "--port", str(BULK_PORT),
                             "--streams", str(a.bulk_streams), "--duration", str(a.bulk_secs),
                             "--first-local-port", str(ONE_CONN_PORT)]))
        return json.loads(out.strip().splitlines()[-1])

    contenders = selected(ctx, [Baseline(), AgentJson(), *before_agent(ctx), Softflowd(), Trace(NOMATCH_FILTER, "non-matching filter"),
                                Trace(f"tcp port {ONE_CONN_PORT}", "filter matching one connection")])
    try:
        runs, unavailable = interleaved(ctx, contenders, load, a.reps)
    finally:
        server.stop()
    return summarize_bulk(contenders, runs, unavailable)


def summarize_bulk(contenders, runs, unavailable):
    base = median([r["gbps"] for r in runs if r["contender"] == "baseline"])
    rows = []
    for c in contenders:
        rs = [r for r in runs if r["contender"] == c.name]
        if not rs:
            rows.append({"contender": c.name, "unavailable": unavailable.get(c.name, "no runs")})
            continue
        row = {"contender": c.name, "runs": len(rs), "gbps": median([r["gbps"] for r in rs])}
        row["ratio"] = row["gbps"] / base if base else None
        row["round_ratios"] = round_ratios(runs, c.name, "gbps")
        if c.measured:
            row.update({"cpu_ms": median([r["cpu_ms"] for r in rs]), "bpf_ms": median([r["bpf_ms"] for r in rs]),
                        "total_ms": median([r["cpu_ms"] + r["bpf_ms"] for r in rs]),
                        "rss_kib": median([r["rss_kib"] for r in rs])})
            pk = [r.get("packets_processed") for r in rs if r.get("packets_processed") is not None]
            if any("packets_processed" in r for r in rs):
                row["packets_processed"] = median(pk) if pk else None
                row["softflowctl"] = rs[-1].get("softflowctl", "")
        rows.append(row)
    return {"baseline_gbps": base, "rows": rows, "runs": runs}


def hold_scenario(ctx, extra_args):
    a = ctx.args
    out_path = os.path.join(WORK, "hold-agent.jsonl")
    timeout = a.hold_timeout
    res = {"connections": a.hold_conns, "active_timeout_s": timeout,
           "agent_args": f"--active-timeout {timeout} --max-flows {a.hold_max_flows} {extra_args}".strip()}
    try:
        agent = start_agent(["--active-timeout", str(timeout), "--max-flows", str(a.hold_max_flows),
                             *extra_args.split()], stdout=out_path)
    except Unavailable as e:
        return {"unavailable": str(e)}
    idle_rss, _ = rss_kib(agent.pid)
    _, maps = bpf_objects(agent.pid)
    hold = subprocess.Popen([f"{GEN}/fs_holdopen", "--conns", str(a.hold_conns), "--port", str(HOLD_PORT),
                             "--hold", "3600"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = hold.stdout.readline()
    t_est = time.time()
    try:
        est = json.loads(line)
    except ValueError:
        hold.kill()
        agent.stop()
        return {"unavailable": f"fs_holdopen failed: {line}{hold.stderr.read()[-300:]}"}
    res.update(est)
    # One active-timeout period plus the agent's check interval (timeout/10)
    # and a little slack for the dump itself.
    deadline = t_est + timeout * 1.1 + 1.0
    peak = 0
    while time.time() < deadline:
        peak = max(peak, rss_kib(agent.pid)[0])
        time.sleep(0.2)
    rss, hwm = rss_kib(agent.pid)
    cpu = cpu_of(agent.pid)
    idle_maps = sum(maps.values())
    _, maps = bpf_objects(agent.pid)  # maps are not preallocated: memory follows the open flows
    res.update({"idle_rss_kib": idle_rss, "rss_kib": rss, "hwm_kib": hwm, "map_bytes": sum(maps.values()),
                "idle_map_bytes": idle_maps,
                "map_count": len(maps), "agent_cpu_ms": cpu[2] / 1e6})
    seen_by = time.time()
    hold.send_signal(signal.SIGTERM)
    hold.wait(60)
    agent.stop()
    st = parse_agent_stats(agent.stderr()) or {}
    res["agent_stats"] = st
    # Interim records for our connections emitted before `seen_by`: both ends
    # of each connection, so 2 x connections distinct socket tuples.
    interim = set()
    t_limit_ns = int(seen_by * 1e9)
    hold_ports = range(HOLD_PORT, HOLD_PORT + est.get("processes", 1))
    with open(out_path, errors="replace") as f:
        for line in f:
            if '"record":"interim"' not in line:
                continue
            try:
                r = json.loads(line)
            except ValueError:
                continue
            if not (r["local_port"] in hold_ports or r["remote_port"] in hold_ports) or r["end_ns"] > t_limit_ns:
                continue
            interim.add((r["local_addr"], r["local_port"], r["remote_addr"], r["remote_port"]))
    res["interim_tuples"] = len(interim)
    res["interim_expected"] = 2 * est["established"]
    os.unlink(out_path)
    return res


def collector_scenario(ctx):
    """IPFIX replayed at full speed into flowscope collector (SQLite and
    ClickHouse stores) and nfcapd, side by side: every contender once per
    round, `reps` rounds, order rotated; medians and ranges reported."""
    a = ctx.args
    res = {"records": a.ipfix_records, "rows": [], "reps": a.reps}
    gen = f"{GEN}/fs_ipfix_gen"
    if not os.access(gen, os.X_OK):
        return {"unavailable": "fs_ipfix_gen not built"}

    def replay(proto, port):
        out = sh([gen, "--proto", proto, "--addr", "127.0.0.1", "--port", str(port),
                  "--records", str(a.ipfix_records)], timeout=600)
        return json.loads(out.strip().splitlines()[-1])

    def hostile_flood(stop, counts):
        """One-field templates from 127.0.0.2 (100 source ports, a new
        observation domain per round): the session and template floods the
        collector's budgets are built for, as fast as Python sends them."""
        socks = []
        for _ in range(100):
            so = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            so.bind(("127.0.0.2", 0))
            socks.append(so)
        n, domain = 0, 0
        while not stop.is_set():
            domain += 1
            body = struct.pack("!HHHH", 256 + domain % 60000, 1, 1, 8)
            msg = struct.pack("!HHIII", 10, 16 + 4 + len(body), int(time.time()), 0, domain) + \
                struct.pack("!HH", 2, 4 + len(body)) + body
            for so in socks:
                try:
                    so.sendto(msg, ("127.0.0.1", IPFIX_PORT))
                    n += 1
                except OSError:
                    pass
        counts["datagrams"] = n
        for so in socks:
            so.close()

    ch, ch_why = None, None
    try:
        ch = ClickHouse()
        res["clickhouse_version"] = ch.version
    except Exception as e:
        ch_why = str(e)

    def flowscope_run(variant, rnd):
        """flowscope collector into SQLite or ClickHouse over UDP or TCP,
        optionally during a hostile UDP flood."""
        store, proto = variant.split("-")[:2]
        flood = variant.endswith("flood")
        name = "ClickHouse" if store == "clickhouse" else "SQLite"
        row = {"contender": f"flowscope collector ({proto.upper()}) -> {name}" +
               (", during a hostile UDP flood" if flood else "")}
        db = os.path.join(WORK, f"collector-{variant}-{rnd}.db")
        argv, why = ctx.features.collector_argv(IPFIX_PORT, IPFIX_PORT + 1, db)
        if argv and store == "clickhouse":
            if not ch:
                why, argv = f"ClickHouse: {ch_why}", None
            else:
                chdb = f"ingest_{proto}_{rnd}"
                ch.query(f"CREATE DATABASE {chdb}")
                i = argv.index(db)
                argv[i - 1:i + 1] = ["--store", ch.url(chdb)]
        if not argv:
            row["unavailable"] = why
            return row
        col = Proc("collector", argv)
        if not wait_for(lambda: "collector running" in col.stderr() or not col.alive(), 60) or not col.alive():
            row["unavailable"] = f"collector failed to start: {col.stderr().strip()[-300:]}"
            col.stop()
            return row
        stop_flood, flood_counts, flood_thread = threading.Event(), {}, None
        if flood:
            flood_thread = threading.Thread(target=hostile_flood, args=(stop_flood, flood_counts))
            flood_thread.start()
        c0 = cpu_of(col.pid)
        s0 = cpu_of(ch.proc.pid) if store == "clickhouse" else None
        t0 = time.time()
        try:
            sent = replay(proto, IPFIX_PORT if proto == "udp" else IPFIX_PORT + 1)
        except Exception as e:
            row["unavailable"] = f"replay failed: {e}"
            stop_flood.set()
            if flood_thread:
                flood_thread.join()
            col.stop()
            return row
        if store == "clickhouse":
            # End to end: rows the server has (count() of a MergeTree is
            # read from its parts' metadata: cheap to poll).
            # One 50 000-row insert (and its three rollup views) can take
            # seconds on a loaded server: a longer quiet spell before giving up.
            written, t1 = wait_stable(lambda: ch.rows(chdb), sent["records"], 180, quiet=20.0)
        else:
            # Progress from the collector's own count of committed rows (cheap to
            # ask; counting a growing table with sqlite3 every 50 ms would take a
            # good part of a core from the collector), else from the file. What
            # is reported as stored is counted in the SQLite file at the end.
            written, t1 = wait_stable(lambda: collector_written(db), sent["records"], 120)
        c1 = cpu_of(col.pid)
        s1 = cpu_of(ch.proc.pid) if store == "clickhouse" else None
        stop_flood.set()
        if flood_thread:
            flood_thread.join()
            row["flood_datagrams"] = flood_counts.get("datagrams", 0)
            row["flood_datagrams_per_s"] = row["flood_datagrams"] / max(t1 - t0, 1e-9)
        ingest = api_json("/api/exporters?limit=1000") or {}
        # Time for a clean stop: the ClickHouse store hands its backlog to the
        # server first (killing it would lose rows the collector accepted).
        col.stop(timeout=90)
        rec = ingest.get("receivers", {})
        if store == "clickhouse":
            stored = ch.rows(chdb)
            row["server_cpu_ms"] = (s1[2] - s0[2]) / 1e6
            row["disk_bytes_raw"] = ch.disk_bytes(chdb, "flows")
            row["disk_bytes_rollups"] = sum(ch.disk_bytes(chdb, t) for t in ("flows_1m", "flows_5m", "flows_1h"))
            ch.query(f"DROP DATABASE {chdb}")
        else:
            stored = count_sqlite_rows(db)
            row["disk_bytes_raw"] = sum(os.path.getsize(db + x) for x in ("", "-wal") if os.path.exists(db + x))
            for x in ("", "-wal", "-shm"):
                if os.path.exists(db + x):
                    os.unlink(db + x)
        row.update({"sent": sent["records"], "stored": stored, "seconds": t1 - t0,
                    "cpu_ms": (c1[2] - c0[2]) / 1e6, "sender_seconds": sent.get("seconds"),
                    # Where records that were not stored went, as the collector counts them.
                    "udp_queue_drops": rec.get("udp_queue_drops"),
                    "store_drops": ingest.get("store", {}).get("dropped"),
                    "store_failed": ingest.get("store", {}).get("failed"),
                    "records_lost": ingest.get("decoder", {}).get("records_lost")})
        row["records_per_s"] = stored / row["seconds"] if stored else 0
        row["records_per_cpu_s"] = stored / (row["cpu_ms"] / 1e3) if row["cpu_ms"] else None
        if "server_cpu_ms" in row and row["cpu_ms"] + row["server_cpu_ms"] > 0:
            row["records_per_cpu_s_with_server"] = stored / ((row["cpu_ms"] + row["server_cpu_ms"]) / 1e3)
        return row

    def nfcapd_run(rnd):
        """nfcapd (UDP only: nfcapd has no TCP listener)."""
        row = {"contender": "nfdump nfcapd (UDP) -> nfcapd files"}
        if not ctx.features.nfcapd:
            row["unavailable"] = "nfcapd not installed"
            return row
        d = os.path.join(WORK, f"nfcapd-{rnd}")
        os.makedirs(d, exist_ok=True)
        p = Proc("nfcapd", ["nfcapd", "-b", "127.0.0.1", "-p", str(IPFIX_PORT + 2), "-w", d, "-B", "8388608"])
        time.sleep(1.0)
        c0 = cpu_of(p.pid)
        t0 = time.time()
        sent = replay("udp", IPFIX_PORT + 2)
        # nfcapd writes its file at exit; give the socket a moment to drain.
        time.sleep(1.0)
        c1 = cpu_of(p.pid)
        p.stop(signal.SIGTERM)
        t1 = time.time()
        out = subprocess.run(["nfdump", "-R", d, "-I"], capture_output=True, text=True).stdout
        m = re.search(r"^Flows:\s*(\d+)", out, re.M)
        stored = int(m.group(1)) if m else 0
        row.update({"sent": sent["records"], "stored": stored, "seconds": t1 - t0 - 1.0,
                    "cpu_ms": (c1[2] - c0[2]) / 1e6})
        row["records_per_s"] = stored / row["seconds"] if row["seconds"] > 0 else 0
        row["records_per_cpu_s"] = stored / (row["cpu_ms"] / 1e3) if row["cpu_ms"] else None
        row["disk_bytes_raw"] = sum(os.path.getsize(os.path.join(r, f)) for r, _, fs in os.walk(d) for f in fs)
        shutil.rmtree(d, ignore_errors=True)
        return row

    variants = ["sqlite-udp", "sqlite-tcp", "clickhouse-udp", "clickhouse-tcp", "nfcapd"]
    runs = {}
    try:
        for rnd in range(a.reps):
            k = rnd % len(variants)
            order = variants[k:] + variants[:k]
            if rnd == 0:
                order.append("sqlite-tcp-flood")  # once: it shows robustness, not speed
            for v in order:
                log(f"  round {rnd + 1}/{a.reps}: {v}")
                row = nfcapd_run(rnd) if v == "nfcapd" else flowscope_run(v, rnd)
                runs.setdefault(row["contender"], []).append(row)
    finally:
        if ch:
            ch.stop()
    for name in [r[0]["contender"] for r in runs.values()]:
        res["rows"].append(summarize_ingest(runs[name]))
    return res


def summarize_ingest(runs):
    """One contender's rounds: medians, the range of stored/s, the worst loss."""
    ok = [r for r in runs if "unavailable" not in r]
    if not ok:
        return runs[0]
    out = dict(ok[len(ok) // 2])
    for key in ("seconds", "records_per_s", "records_per_cpu_s", "cpu_ms", "server_cpu_ms",
                "records_per_cpu_s_with_server", "sender_seconds", "disk_bytes_raw", "disk_bytes_rollups"):
        vals = [r[key] for r in ok if r.get(key) is not None]
        if vals:
            out[key] = median(vals)
    out["stored"] = min(r["stored"] for r in ok)  # the worst round
    out["rounds"] = len(ok)
    out["runs_records_per_s"] = [r["records_per_s"] for r in ok]
    out["runs_records_per_cpu_s"] = [r["records_per_cpu_s"] for r in ok]
    out["runs_stored"] = [r["stored"] for r in ok]
    return out


def store_query_scenario(ctx):
    """/api/top and /api/timeseries over 1 h, 24 h and 7 days on a store of
    query_rows flows (ClickHouse: from the rollups and from the raw table;
    SQLite: query_rows_sqlite flows), p50/p95 of `query_reps` requests, two
    runs each; and the stores' disk bytes per flow."""
    a = ctx.args
    exe = f"{GEN}/fs_store_query"
    if not os.access(exe, os.X_OK):
        return {"unavailable": "fs_store_query not built"}
    res = {"rows_clickhouse": a.query_rows, "rows_sqlite": a.query_rows_sqlite, "reps": a.query_reps,
           "queries": [], "fill": {}, "disk": {}}

    def run(store, rows, runs, pid=None):
        c0 = cpu_of(pid) if pid else None
        t0 = time.time()
        out = sh([exe, "--store", store, "--rows", str(rows), "--fill-only"], timeout=3600)
        fill = next((json.loads(l) for l in out.splitlines() if l.startswith('{"fill"')), {})
        fill["wall_s"] = time.time() - t0
        if pid:
            fill["server_cpu_s"] = (cpu_of(pid)[2] - c0[2]) / 1e9
        settle()
        for k in range(runs):
            out = sh([exe, "--store", store, "--rows", str(rows), "--reps", str(a.query_reps)], timeout=3600)
            for l in out.splitlines():
                if l.startswith('{"store"'):
                    q = json.loads(l)
                    q["run"] = k + 1
                    res["queries"].append(q)
        return fill

    ch = None
    settle = lambda: None
    try:
        ch = ClickHouse()
        res["clickhouse_version"] = ch.version
        ch.query("CREATE DATABASE q")

        def settle():
            # Queries after the server's background merges of the fill are
            # done (as on a server that has been running a while).
            quiet = [0.0]

            def idle():
                n = int(ch.query("SELECT count() FROM system.merges").strip() or 0)
                if n:
                    quiet[0] = time.time()
                return n == 0 and time.time() - quiet[0] > 3
            wait_for(idle, 300, step=0.5)
        log(f"  ClickHouse: {a.query_rows} flows")
        res["fill"]["clickhouse"] = run(ch.url("q"), a.query_rows, 2, ch.proc.pid)
        rows = ch.rows("q")
        res["disk"]["clickhouse"] = {"rows": rows, "raw": ch.disk_bytes("q", "flows"),
                                     **{t: ch.disk_bytes("q", t) for t in ("flows_1m", "flows_5m", "flows_1h")}}
    except Exception as e:
        res["clickhouse_unavailable"] = str(e)
    finally:
        if ch:
            ch.stop()
    settle = lambda: None
    db = os.path.join(WORK, "query.db")
    log(f"  SQLite: {a.query_rows_sqlite} flows")
    res["fill"]["sqlite"] = run("sqlite:" + db, a.query_rows_sqlite, 2)
    res["disk"]["sqlite"] = {"rows": count_sqlite_rows(db),
                             "raw": sum(os.path.getsize(db + x) for x in ("", "-wal") if os.path.exists(db + x))}
    for x in ("", "-wal", "-shm"):
        if os.path.exists(db + x):
            os.unlink(db + x)
    return res


def count_sqlite_rows(db):
    """Rows in the biggest table of a SQLite file (the flow table); for a
    directory, of the SQLite files in it."""
    if os.path.isdir(db):
        return sum(count_sqlite_rows(os.path.join(db, f)) for f in os.listdir(db)
                   if f.endswith((".db", ".sqlite", ".sqlite3")))
    if not os.path.exists(db):
        return 0
    try:
        tables = sh(["sqlite3", db, "select name from sqlite_master where type='table'"]).split()
        best = 0
        for t in tables:
            best = max(best, int(sh(["sqlite3", db, f'select count(*) from "{t}"']).strip() or 0))
        return best
    except Exception:
        return 0


def api_json(path):
    """GET a path of the collector's HTTP API (HTTP_PORT); None when it does not answer."""
    import urllib.request
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{HTTP_PORT}{path}", timeout=2) as r:
            return json.loads(r.read())
    except Exception:
        return None


def collector_written(db):
    """Rows the running collector has committed (its /api/exporters), else
    the rows in its SQLite file."""
    j = api_json("/api/exporters")
    if j and "store" in j:
        return int(j["store"].get("written", 0))
    return count_sqlite_rows(db)


def wait_stable(f, target, timeout, quiet=2.0):
    """Polls f() until it reaches target or stops growing for `quiet` s;
    returns (value, time it first reached that value)."""
    last, t_last, end = -1, time.time(), time.time() + timeout
    while time.time() < end:
        v = f()
        now = time.time()
        if v != last:
            last, t_last = v, now
        if v >= target or (v > 0 and now - t_last > quiet):
            break
        time.sleep(0.05)
    return max(last, 0), t_last


def micro_scenario(ctx):
    exe = f"{GEN}/fs_micro"
    if not os.access(exe, os.X_OK):
        return {"unavailable": "Google Benchmark not found at build time"}
    out = sh([exe, "--benchmark_format=json", f"--benchmark_min_time={ctx.args.micro_min_time}"], timeout=300)
    data = json.loads(out)
    res = {"rows": [{"name": b["name"], "cpu_ns": b["cpu_time"], "real_ns": b["real_time"]}
                    for b in data["benchmarks"]]}
    # The floor under the agent's kernel side: what one run of each building
    # block costs on this kernel (one program attached at a time, churn load).
    costs = f"{GEN}/fs_bpf_costs"
    if os.access(costs, os.X_OK):
        secs = 0.5 if ctx.args.smoke else 3
        out = sh([costs, "--seconds", str(secs)], timeout=120)
        res["bpf_costs"] = [json.loads(l) for l in out.splitlines() if l.startswith("{")]
    return res


def attribution_scenario(ctx):
    """The collector's conversation join (ingest) and ownership attribution
    (query) per record, each against the path it adds to; in-process."""
    exe = f"{GEN}/fs_attribution"
    scale = dict(records=20000, open=20000, addresses=2000, rows=5000) if ctx.args.smoke else \
        dict(records=1000000, open=1000000, addresses=100000, rows=100000)
    runs = []
    for _ in range(ctx.args.reps):
        d = os.path.join(WORK, "attribution")
        out = sh([exe, "--dir", d] + [f"--{k}={v}" for k, v in scale.items()], timeout=1800)
        shutil.rmtree(d, ignore_errors=True)
        runs.append(json.loads(out.strip().splitlines()[-1]))
    return {"runs": runs, **scale}


def attribution_report(a):
    L = ["## 8. Naming both ends: the collector's join and attribution cost\n"]
    w = L.append
    w(f"In-process (bench/attribution.cpp), {len(a['runs'])} runs. Ingest: {a['records']:,} IPFIX records through "
      "the collector's path (decode, row, SQLite insert in the writer's batches) with the conversation join "
      f"holding {a['open']:,} conversations at the start (its bound raised so none is forgotten); each record is joined as a new end and a mirrored copy as its "
      f"second end. Query: {a['rows']:,} flows to {a['addresses']:,} owned addresses (one claim each, 100 agents), "
      "read a page of 1000 at a time (query and JSON), then attributed by ownership.\n")
    w("| run | ingest ns/record | join: new end ns | join: second end ns | join share | bytes per held conversation "
      "| read ns/row | attribution ns/row | attribution share |")
    w("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for i, r in enumerate(a["runs"], 1):
        w(f"| {i} | {r['ingest_ns_per_record']:.0f} | {r['join_new_ns']:.0f} | {r['join_second_ns']:.0f} | "
          f"{r['join_share'] * 100:.0f}% | {r['bytes_per_conversation']:.0f} | {r['read_ns_per_row']:.0f} | "
          f"{r['attribution_ns_per_row']:.0f} | {r['attribution_share'] * 100:.0f}% |")
    w("\nJoin share: the mean of the two join costs over the ingest cost. Attribution share: its cost over the "
      "page read's. Memory is the resident growth while the held conversations were made.\n")
    return "\n".join(L) + "\n"


def console_scenario(ctx):
    """The web console over 1M stored flows in SQLite: each view's API calls
    (p50/p95, one at a time), the page's time to interactive in Chromium on
    loopback, the bundle's size gzipped (bench/console_bench.mjs)."""
    server = f"{GEN}/fs_api_latency"
    node = shutil.which("node")
    if not os.access(server, os.X_OK) or not node or not os.access("/usr/bin/chromium", os.X_OK):
        return {"unavailable": "needs build/bench/fs_api_latency, node and /usr/bin/chromium"}
    rows = 20000 if ctx.args.smoke else 1000000
    out = sh([node, os.path.join(ROOT, "bench", "console_bench.mjs"), "--server", server, "--db",
              os.path.join(WORK, "console.db"), "--rows", str(rows), "--reps", "3" if ctx.args.smoke else "15",
              # A fixed port below 32768, like the default 9740 (smoke: any free one).
              "--port", "0" if ctx.args.smoke else "19740"],
             timeout=1800)
    return json.loads(out.strip().splitlines()[-1])


# ---------------------------------------------------------------- report

def machine():
    model = "?"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    mem = 0
    with open("/proc/meminfo") as f:
        mem = int(f.readline().split()[1]) // 1024
    return {"cpu": model, "cores": os.cpu_count(), "kernel": platform.release(), "mem_mib": mem,
            "load": os.getloadavg()}


def fmt(v, spec=".0f", none="–"):
    return none if v is None else format(v, spec)


def report(results, args):
    m = results["machine"]
    L = []
    w = L.append
    w("# flowscope benchmarks\n")
    w(f"Written by `bench/run.sh{' --smoke' if args.smoke else ''}` on {results['date']} — do not edit by hand; "
      "re-run the harness instead. Raw numbers: `bench/results.json`.\n")
    w(f"**Machine:** {m['cpu']}, {m['cores']} cores, {m['mem_mib']} MiB, Linux {m['kernel']}. "
      f"Load average at start: {m['load'][0]:.2f}. Each scenario: {args.reps} interleaved rounds "
      "(every contender once per round, order rotated), medians shown.\n")
    for k, d in results.get("remeasured", {}).items():
        w(f"Scenario `{k}` re-measured on {d} (`--only`).\n")
    w("**Noise:** this is a shared 2-core virtual machine; other jobs ran during the measurement, so absolute "
      "numbers move by tens of percent between runs. Ratios to the baseline measured in the same rounds are the "
      "figures to read.\n")
    w("How it is measured: contender CPU is the sum of its threads' run time (`/proc/PID/task/*/schedstat`; "
      "user/sys split from `/proc/PID/stat`) over exactly the load's window; BPF run time is `run_time_ns` of "
      "the programs the contender holds (ids from `/proc/PID/fdinfo`, times from `bpftool prog show -j` with "
      "`kernel.bpf_stats_enabled=1`); BPF map memory is the `memlock` of the maps it holds; flows lost = "
      "connections × 2 ends − records the agent read from its ring buffer (IPFIX contender: records it sent), "
      "next to the agent's own loss counters (ring buffer full, flow map full, IPFIX queue/send drops); tcplife's "
      "own count is the perf-buffer losses it prints.\n")
    w(targets(results))
    if "micro" in results:
        w("## Micro-benchmarks (agent user-space path per record)\n")
        mr = results["micro"]
        if "unavailable" in mr:
            w(f"Not run: {mr['unavailable']}\n")
        else:
            w("| benchmark | CPU ns/record |\n|---|---:|")
            for r in mr["rows"]:
                w(f"| {r['name']} | {r['cpu_ns']:.0f} |")
            w("")
            if mr.get("bpf_costs"):
                w("## BPF building blocks on this kernel (ns per program run)\n")
                w("Each row is a program doing only that, attached alone to `inet_sock_set_state` (the agent's "
                  "busiest hook) during loopback churn (`fs_bpf_costs`, programs in `bpf/costs.bpf.c`); run time from "
                  "the kernel's BPF statistics, which include their own two clock reads. The agent's cost per "
                  "connection is a sum of these: about 10 runs of its state program (6 of them return at once), "
                  "one hash insert and delete, one ring-buffer record and two clock reads per flow, both ends. "
                  "`hash_flow_life` and `sk_storage_flow_life` do a flow's whole life on every run of the hook "
                  "(created at the first transition, looked up at each later one, deleted at CLOSE) in a hash map "
                  "keyed by the socket, as the agent does, and in socket-local storage, the alternative store.\n")
                w("| building block | ns per run | minus empty program |\n|---|---:|---:|")
                empty = next((c["ns_per_run"] for c in mr["bpf_costs"] if c["program"] == "empty"), 0)
                for c in mr["bpf_costs"]:
                    w(f"| {c['program']} | {c['ns_per_run']:.0f} | {c['ns_per_run'] - empty:.0f} |")
                w("")
    for topo in ("loopback", "netns"):
        key = f"churn_{topo}"
        if key not in results:
            continue
        s = results[key]
        w(f"## 1. Connection churn ({topo}{', client and server in two namespaces over veth' if topo == 'netns' else ''})\n")
        w(f"{args.churn_threads} client threads, {args.churn_threads} server threads, 64-byte request and answer, "
          f"{args.churn_secs} s per run. Baseline: {fmt(s['baseline_cps'])} connections/s.\n")
        w("| contender | conn/s | ratio | per-round ratios | CPU ms (user/sys) | BPF ms | BPF ns/run | cost ns/conn | RSS MiB | maps KiB | flows lost |")
        w("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        for r in s["rows"]:
            if "unavailable" in r:
                w(f"| {r['contender']} | {r['unavailable']} ||||||||||")
                continue
            if "cpu_ms" not in r:
                w(f"| {r['contender']} | {fmt(r['cps'])} | 1.00 | – | – | – | – | – | – | – | – |")
                continue
            lost = "–"
            if "flows_lost_max" in r:
                lost = f"{r['flows_lost_max']} of {r['expected_max']} (own counters {r['kernel_lost_max']})"
            elif "tool_lost_max" in r:
                lost = f"{r['tool_lost_max']} (tool's own count)"
            other = f" + collector {fmt(r['other_cpu_ms'])}" if r.get("other_cpu_ms") else ""
            w(f"| {r['contender']} | {fmt(r['cps'])} | {fmt(r['ratio'], '.2f')} | {spread(r.get('round_ratios', []))} | {fmt(r['cpu_ms'])} "
              f"({fmt(r['user_ms'])}/{fmt(r['sys_ms'])}){other} | {fmt(r['bpf_ms'])} | {fmt(r['bpf_ns_per_run'])} | "
              f"{fmt(r['ns_per_conn'])} | {fmt(r['rss_kib'] / 1024, '.1f')} | {fmt(r['map_bytes'] / 1024)} | {lost} |")
        w("\ncost ns/conn = (contender CPU + its BPF run time) / connections; both ends of each connection are "
          "on this host, so it is the cost of two flows.\n")
    if "bulk" in results:
        s = results["bulk"]
        w("## 2. Bulk transfer (netns over veth)\n")
        if "unavailable" in s:
            w(f"Not run: {s['unavailable']}\n")
        else:
            w(f"{args.bulk_streams} TCP streams, {args.bulk_secs} s per run. Baseline: {fmt(s['baseline_gbps'], '.2f')} Gbit/s.\n")
            w("| contender | Gbit/s | ratio | per-round ratios | CPU ms | BPF ms | CPU+BPF ms | RSS MiB | notes |")
            w("|---|---:|---:|---:|---:|---:|---:|---:|---|")
            for r in s["rows"]:
                if "unavailable" in r:
                    w(f"| {r['contender']} | {r['unavailable']} ||||||||")
                    continue
                if "cpu_ms" not in r:
                    w(f"| {r['contender']} | {fmt(r['gbps'], '.2f')} | 1.00 | – | – | – | – | – | |")
                    continue
                note = ""
                if "packets_processed" in r:
                    note = f"packets processed (softflowctl): {r['packets_processed']}"
                w(f"| {r['contender']} | {fmt(r['gbps'], '.2f')} | {fmt(r['ratio'], '.2f')} | {spread(r.get('round_ratios', []))} | {fmt(r['cpu_ms'], '.1f')} | "
                  f"{fmt(r['bpf_ms'], '.2f')} | {fmt(r['total_ms'], '.1f')} | {fmt(r['rss_kib'] / 1024, '.1f')} | {note} |")
            ag = next((r for r in s["rows"] if r["contender"].startswith("flowscope agent") and "total_ms" in r), None)
            sf = next((r for r in s["rows"] if r["contender"].startswith("softflowd") and "total_ms" in r), None)
            if ag and sf:
                ratio = sf["total_ms"] / ag["total_ms"] if ag["total_ms"] > 0 else float("inf")
                w(f"\nsoftflowd uses {ratio:.0f}× the CPU of flowscope agent on the same transfer.\n")
    if "hold" in results:
        w("## 3. Many open connections\n")
        hs = results["hold"]
        ok = [h for h in hs if "unavailable" not in h]
        for h in hs:
            if "unavailable" in h:
                w(f"Not run (`{h.get('agent_args', '')}`): {h['unavailable']}\n")
        if ok:
            h0 = ok[0]
            w(f"{h0['established']} connections held open on loopback (both ends on this host: "
              f"{2 * h0['established']} sockets, so {2 * h0['established']} flows; spread over "
              f"{h0.get('processes', 1)} fs_holdopen processes because of the fd limit).\n")
            w("| metric | " + " | ".join(f"`{h['agent_args']}`" for h in ok) + " |")
            w("|---|" + "---:|" * len(ok))

            def line(label, f):
                w(f"| {label} | " + " | ".join(f(h) for h in ok) + " |")
            line("agent RSS idle (MiB)", lambda h: f"{h['idle_rss_kib'] / 1024:.1f}")
            line("agent RSS with all flows open (MiB)", lambda h: f"{h['rss_kib'] / 1024:.1f}")
            line("agent peak RSS, VmHWM (MiB)", lambda h: f"{h['hwm_kib'] / 1024:.1f}")
            line("BPF map memory idle, memlock (MiB)",
                 lambda h: f"{h['idle_map_bytes'] / 1048576:.1f}" if "idle_map_bytes" in h else "–")
            line("BPF map memory with all flows open, memlock (MiB)",
                 lambda h: f"{h['map_bytes'] / 1048576:.1f} ({h['map_count']} maps)")
            line("flows with an interim record within 1.1 × active timeout",
                 lambda h: f"{h['interim_tuples']} of {h['interim_expected']}")
            line("kernel: flows not tracked (map full)", lambda h: str(h.get("agent_stats", {}).get("flow_map_full", "?")))
            line("kernel: records lost (ring buffer full)", lambda h: str(h.get("agent_stats", {}).get("ringbuf_full", "?")))
            line("agent CPU during the hold (ms)", lambda h: f"{h['agent_cpu_ms']:.0f}")
            w("\nRSS includes the ring buffer's data pages, which libbpf maps twice (for wrap-around reads).\n")
    if "collector" in results:
        s = results["collector"]
        w("## 4. Collector ingest\n")
        if "unavailable" in s:
            w(f"Not run: {s['unavailable']}\n")
        else:
            w(f"{s['records']} IPFIX data records (synthetic TCP flows from `fs_ipfix_gen`) replayed at full speed "
              f"on loopback, {s.get('reps', 1)} rounds (every receiver once per round, order rotated; medians, and "
              "the range of stored/s over the rounds). Stored = in the store at the end (ClickHouse: rows in the "
              "server's table, end to end; the worst round). The ClickHouse server"
              + (f" ({s['clickhouse_version']})" if s.get("clickhouse_version") else "") +
              " runs on the same machine; its CPU is shown separately and is not in the collector's records per "
              "CPU-second.\n")
            w("| receiver | sent | stored (worst round) | seconds | stored/s | stored/s range | records per CPU-second "
              "| server CPU ms | per CPU-second incl. server | disk bytes per flow |")
            w("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
            for r in s["rows"]:
                if "unavailable" in r:
                    w(f"| {r['contender']} | {r['unavailable']} |||||||||")
                    continue
                rng = r.get("runs_records_per_s") or [r["records_per_s"]]
                disk = (r.get("disk_bytes_raw") or 0) + (r.get("disk_bytes_rollups") or 0)
                disk_s = fmt(disk / r["stored"], ".0f") if disk and r.get("stored") else "–"
                if r.get("disk_bytes_rollups"):
                    disk_s += f" ({fmt(r['disk_bytes_raw'] / r['stored'])} raw)"
                w(f"| {r['contender']} | {r['sent']} | {r['stored']} | {r['seconds']:.2f} | "
                  f"{fmt(r['records_per_s'])} | {fmt(min(rng))}–{fmt(max(rng))} | {fmt(r['records_per_cpu_s'])} | "
                  f"{fmt(r.get('server_cpu_ms'))} | {fmt(r.get('records_per_cpu_s_with_server'))} | {disk_s} |")
            w("")
            notes = [r for r in s["rows"] if r.get("sender_seconds") is not None and "unavailable" not in r]
            if notes:
                w("The sender's own time, and where the collector counted records it did not store (datagrams "
                  "dropped from its full decode queue; rows dropped from its full store queue; records missing "
                  "per the IPFIX sequence numbers, which includes datagrams the kernel dropped at a full socket "
                  "buffer):\n")
                for r in notes:
                    w(f"- {r['contender']}: sent in {r['sender_seconds']:.2f} s; decode queue drops "
                      f"{fmt(r.get('udp_queue_drops'))} datagrams, store queue drops {fmt(r.get('store_drops'))} "
                      f"rows, sequence-number loss {fmt(r.get('records_lost'))} records")
                w("")
            quiet = next((r for r in s["rows"] if r["contender"] == "flowscope collector (TCP) -> SQLite"
                          and "unavailable" not in r), None)
            for r in s["rows"]:
                if "flood_datagrams" not in r or "unavailable" in r:
                    continue
                ratio = (f"; {r['records_per_s'] / quiet['records_per_s']:.2f}x the quiet TCP ingest rate"
                         if quiet and quiet.get("records_per_s") else "")
                w(f"During the flood row, a second sender on 127.0.0.2 sent {r['flood_datagrams']} one-template "
                  f"datagrams ({fmt(r['flood_datagrams_per_s'])}/s) from 100 ports, a new observation domain per "
                  f"round, on the same two cores{ratio}.\n")
    w("## 5. Tracer cost\n")
    w("`flowscope trace` rows in the churn and bulk tables above (non-matching filter "
      f"`{NOMATCH_FILTER}`; in bulk also a filter matching exactly one of the streams).\n")
    if "console" in results:
        s = results["console"]
        w("## 6. Web console\n")
        if "unavailable" in s:
            w(f"Not run: {s['unavailable']}\n")
        else:
            w(f"{s['rows']} flows over the last 24 h in SQLite (`fs_api_latency --serve`, filled in "
              f"{s['fill_seconds']:.0f} s), served by the collector's API; each view's API calls as the page makes "
              f"them (last hour, range start on a whole minute), one at a time, {s['reps']} times each "
              "(`bench/console_bench.mjs`).\n")
            w("| view | API calls | worst call p95 (ms) | slowest call |")
            w("|---|---:|---:|---|")
            for view, v in s["api"].items():
                slow = max(v["calls"], key=lambda c: c["p95_ms"])
                w(f"| {view} | {len(v['calls'])} | {v['worst_p95_ms']:.0f} | `{slow['path']}` (p50 {slow['p50_ms']:.0f}) |")
            w("\nTime to interactive (navigation to the view drawn with its data, Chromium headless on loopback, "
              "5 loads each):\n")
            w("| view | p50 (ms) | max (ms) |")
            w("|---|---:|---:|")
            for view, t in s["tti"].items():
                w(f"| {view} | {t['p50_ms']:.0f} | {t['max_ms']:.0f} |")
            b = s["bundle"]
            w(f"\nBundle (page, script, style): {b['bytes'] / 1024:.0f} KiB, {b['gzip_bytes'] / 1024:.0f} KiB "
              "gzipped.\n")
    if "query" in results:
        w(query_report(results["query"]))
    if "attribution" in results:
        w(attribution_report(results["attribution"]))
    if os.path.exists(os.path.join(args.outdir, "benchmarks.png")):
        w("## Chart\n\n![throughput ratio to baseline](bench/benchmarks.png)\n")
    return "\n".join(L) + "\n"


def query_report(q):
    L = ["## 7. Query latency and disk per flow: ClickHouse and SQLite\n"]
    w = L.append
    if "unavailable" in q:
        w(f"Not run: {q['unavailable']}\n")
        return "\n".join(L) + "\n"
    w(f"Synthetic flows (20 exporters, 2,000 local and 50,000 remote addresses, 6 programs, 6 service ports) "
      f"ending evenly over the last 8 days: {q['rows_clickhouse']} in ClickHouse"
      + (f" {q['clickhouse_version']}" if q.get("clickhouse_version") else "") +
      f", {q['rows_sqlite']} in SQLite. `fs_store_query` serves each store with the collector's HTTP API in "
      f"process and asks each query {q['reps']} times, one request at a time; two runs (p95 of each shown). "
      "Ranges end at the last whole hour (so whole rollup buckets cover them); `top` is "
      "`group=process&by=bytes&limit=10`, `timeseries` has 60, 96 and 168 points (intervals 1m, 15m, 1h). "
      "ClickHouse answers each query twice: as the API does (the coarsest rollup that covers it; "
      "the table is shown) and from the raw table (rollups off); SQLite answers as the API does (its 1-minute "
      "rollup `flows_1m` where the range and filter allow, else `flows`). Queries start after the server's "
      "background merges of the load have finished. The machine is a 2-core VM shared with other jobs: p95 moves "
      "by tens of percent between the two runs.\n")
    if q.get("clickhouse_unavailable"):
        w(f"ClickHouse not run: {q['clickhouse_unavailable']}\n")
    sq = q.get("fill", {}).get("sqlite", {})
    if q["rows_sqlite"] < q["rows_clickhouse"] and sq.get("rows_per_s"):
        w(f"SQLite holds fewer flows than ClickHouse in this run: it loads {sq['rows_per_s']:.0f} flows/s from one "
          f"thread, and slower as its indexes grow, so {q['rows_clickhouse']} flows would take over "
          f"{q['rows_clickhouse'] / sq['rows_per_s'] / 60:.0f} minutes (`--query-rows-sqlite` sets its size).\n")
    w("| store | answered from | endpoint | range | p50 ms | p95 ms (run 1 / run 2) |")
    w("|---|---|---|---|---:|---:|")
    groups = {}
    for r in q["queries"]:
        groups.setdefault((r["store"], r["source"], r["table"], r["endpoint"], r["range"]), []).append(r)
    for (store, source, table, ep, rng), rs in groups.items():
        failed = sum(r["failed"] for r in rs)
        note = f" ({failed} failed)" if failed else ""
        w(f"| {store} | {source} (`{table}`) | {ep} | {rng} | {median([r['p50_ms'] for r in rs]):.1f} | "
          + " / ".join(f"{r['p95_ms']:.1f}" for r in rs) + f"{note} |")
    w("")
    f = q.get("fill", {})
    for k, v in f.items():
        if v.get("rows"):
            extra = f", server CPU {v['server_cpu_s']:.1f} s" if "server_cpu_s" in v else ""
            w(f"- Loading {k}: {v['rows']} flows in {v['wall_s']:.0f} s ({v['rows_per_s']:.0f} flows/s from one "
              f"thread through `FlowStore::insert`, rows generated in place (bench/flow_fill.h), "
              f"50 000 rows per insert{extra}).")
    w("")
    d = q.get("disk", {})
    if d:
        w("| store | flows | raw table bytes per flow | rollups (1m+5m+1h) bytes per flow | total bytes per flow |")
        w("|---|---:|---:|---:|---:|")
        for k, v in d.items():
            if not v.get("rows"):
                continue
            roll = sum(v.get(t, 0) for t in ("flows_1m", "flows_5m", "flows_1h"))
            roll_s = f"{roll / v['rows']:.1f}" if roll else "–"
            w(f"| {k} | {v['rows']} | {v['raw'] / v['rows']:.1f} | {roll_s} | {(v['raw'] + roll) / v['rows']:.1f} |")
        w("\nClickHouse: `bytes_on_disk` of the active parts (compressed columns, after merges); SQLite: the "
          "database file and its WAL (rows, indexes and the 1-minute rollup). The synthetic rows repeat more than real traffic "
          "does, which flatters ClickHouse's compression; the collector-ingest table above has the same measure "
          "for `fs_ipfix_gen`'s flows.\n")
    return "\n".join(L) + "\n"


def targets(results):
    """The project's speed and memory targets next to what this run measured."""
    def row_of(key, prefix):
        for r in results.get(key, {}).get("rows", []) if isinstance(results.get(key), dict) else []:
            if r["contender"].startswith(prefix):
                return r
        return None

    def verdict(ok):
        return "–" if ok is None else ("met" if ok else "**not met**")
    T = ["## Targets and this run\n", "| target | measured | verdict |", "|---|---|---|"]
    for key, label in (("churn_loopback", "loopback"), ("churn_netns", "netns")):
        a = row_of(key, "flowscope agent (JSON")
        if not a or "unavailable" in a:
            continue
        rr = a.get("round_ratios", [])
        ok, note = ratio_verdict(a.get("ratio"), rr, 0.95)
        T.append(f"| churn {label}: throughput with agent ≥ 0.95 of baseline | {fmt(a['ratio'], '.2f')} "
                 f"(rounds {spread(rr)}{note}) | {ok} |")
        if "flows_lost_max" in a:
            T.append(f"| churn {label}: zero flows lost | {a['flows_lost_max']} of {a['expected_max']} "
                     f"| {verdict(a['flows_lost_max'] == 0)} |")
        T.append(f"| churn {label}: agent user+sys+BPF ≤ 2 µs per connection | {a['ns_per_conn'] / 1000:.1f} µs "
                 f"(of which BPF {a['bpf_ns_per_conn'] / 1000:.1f} µs) "
                 f"| {verdict(a['ns_per_conn'] <= 2000)} |")
    b = row_of("bulk", "flowscope agent (JSON")
    sf = row_of("bulk", "softflowd")
    if b and "unavailable" not in b:
        rr = b.get("round_ratios", [])
        ok, note = ratio_verdict(b.get("ratio"), rr, 0.98)
        T.append(f"| bulk: throughput ratio ≥ 0.98 | {fmt(b['ratio'], '.2f')} (rounds {spread(rr)}{note}) | {ok} |")
        if sf and "total_ms" in sf and b.get("total_ms"):
            x = sf["total_ms"] / b["total_ms"]
            T.append(f"| bulk: agent uses ≥ 10× less CPU than softflowd | {x:.0f}× less | {verdict(x >= 10)} |")
    for h in results.get("hold", [])[:1]:
        if "unavailable" not in h:
            T.append(f"| memory: RSS ≤ 64 MiB with 100k connections (here {h['established']}: {2 * h['established']} flows) | "
                     f"{h['rss_kib'] / 1024:.1f} MiB (maps {h['map_bytes'] / 1048576:.1f} MiB) | "
                     f"{verdict(h['rss_kib'] <= 65536)} |")
            T.append(f"| interim records for all within one active timeout | {h['interim_tuples']} of "
                     f"{h['interim_expected']} | {verdict(h['interim_tuples'] >= h['interim_expected'])} |")
    col = results.get("collector", {})
    rows = col.get("rows", []) if isinstance(col, dict) else []
    nf = next((r for r in rows if r["contender"].startswith("nfdump") and "records_per_s" in r), None)
    for r in rows:
        if r["contender"].startswith("flowscope") and "ClickHouse" not in r["contender"] and "records_per_s" in r:
            # "Per core": records stored per CPU-second of the collector process.
            per_cpu = r.get("records_per_cpu_s") or 0
            all_stored = r["stored"] >= r["sent"]
            ok = per_cpu >= 500000 and all_stored and (nf is None or r["records_per_s"] >= nf["records_per_s"])
            T.append(f"| collector {r['contender'].split('(')[1].split(')')[0]} -> SQLite"
                     f"{', hostile flood' if 'flood' in r['contender'] else ''}: ≥ 500k records per CPU-second, "
                     f"all stored, and ≥ nfcapd's records/s | {fmt(per_cpu)} per CPU-s, {r['stored']} of {r['sent']} "
                     f"stored, {fmt(r['records_per_s'])}/s (nfcapd {fmt(nf['records_per_s']) if nf else '–'}/s) "
                     f"| {verdict(ok)} |")
    for r in rows:
        if "ClickHouse" in r["contender"] and "records_per_s" in r:
            per_cpu = r.get("records_per_cpu_s") or 0
            rng = r.get("runs_records_per_cpu_s") or [per_cpu]
            T.append(f"| collector -> ClickHouse {r['contender'].split('(')[1].split(')')[0]}: ≥ 1M records per "
                     f"collector CPU-second | {fmt(per_cpu)} (rounds {fmt(min(rng))}–{fmt(max(rng))}; server "
                     f"{fmt(r.get('server_cpu_ms'))} ms CPU more) | {verdict(per_cpu >= 1e6)} |")
            rs = r.get("runs_records_per_s") or [r["records_per_s"]]
            ok = r["stored"] >= r["sent"] and (nf is None or r["records_per_s"] >= nf["records_per_s"])
            T.append(f"| collector -> ClickHouse {r['contender'].split('(')[1].split(')')[0]}: ≥ nfcapd's records/s "
                     f"end to end, 0 lost | {fmt(r['records_per_s'])}/s (rounds {fmt(min(rs))}–{fmt(max(rs))}), "
                     f"{r['sent'] - r['stored']} lost in the worst round (nfcapd {fmt(nf['records_per_s']) if nf else '–'}/s, "
                     f"{(nf['sent'] - nf['stored']) if nf else '–'} lost) | {verdict(ok)} |")
    qr = results.get("query", {})
    for r in qr.get("queries", []) if isinstance(qr, dict) else []:
        if r["store"] == "clickhouse" and r["source"] == "rollups" and r["range"] == "24h" and r.get("run") == 1:
            p95s = [x["p95_ms"] for x in qr["queries"] if x["store"] == "clickhouse" and x["source"] == "rollups"
                    and x["range"] == "24h" and x["endpoint"] == r["endpoint"]]
            T.append(f"| ClickHouse, {qr['rows_clickhouse']} flows: /api/{r['endpoint']} over 24 h from rollups, "
                     f"p95 ≤ 300 ms | p95 {' / '.join(f'{p:.0f}' for p in p95s)} ms (`{r['table']}`) "
                     f"| {verdict(max(p95s) <= 300) if qr['rows_clickhouse'] >= 10000000 else '– (measured below 10M flows)'} |")
    for key in ("churn_loopback", "churn_netns", "bulk"):
        t = row_of(key, "flowscope trace (non")
        if t and "unavailable" not in t:
            rr = t.get("round_ratios", [])
            ok, note = ratio_verdict(t.get("ratio"), rr, 0.95)
            T.append(f"| tracer, non-matching filter, {key.replace('_', ' ')}: ≥ 0.95 | {fmt(t['ratio'], '.2f')} "
                     f"(rounds {spread(rr)}{note}) | {ok} |")
        elif t:
            T.append(f"| tracer, non-matching filter, {key.replace('_', ' ')}: ≥ 0.95 | {t['unavailable']} | – |")
    c = results.get("console")
    if c and "unavailable" not in c:
        worst = max(c["api"].items(), key=lambda kv: kv[1]["worst_p95_ms"])
        T.append(f"| console: each view's API calls p95 ≤ 300 ms over {c['rows']} flows in SQLite | worst "
                 f"{worst[1]['worst_p95_ms']:.0f} ms ({worst[0]}) | {verdict(worst[1]['worst_p95_ms'] <= 300)} |")
        slow = max(c["tti"].items(), key=lambda kv: kv[1]["p50_ms"])
        T.append(f"| console: page interactive ≤ 1.5 s on loopback | slowest view {slow[0]}: p50 "
                 f"{slow[1]['p50_ms']:.0f} ms | {verdict(slow[1]['p50_ms'] <= 1500)} |")
        T.append(f"| console: bundle ≤ 600 KB gzipped | {c['bundle']['gzip_bytes'] / 1000:.0f} KB | "
                 f"{verdict(c['bundle']['gzip_bytes'] <= 600000)} |")
    a = results.get("attribution")
    if a and a.get("runs"):
        share = median([r["join_share"] for r in a["runs"]])
        T.append(f"| collector: joining both ends adds ≤ 20% to the per-record ingest cost, {a['open']:,} "
                 f"conversations held | {share * 100:.0f}% (runs {spread([r['join_share'] for r in a['runs']])}) "
                 f"| {verdict(share <= 0.2)} |")
        ashare = median([r["attribution_share"] for r in a["runs"]])
        T.append(f"| collector: attribution by ownership adds ≤ 20% per flow read, {a['addresses']:,} owned "
                 f"addresses | {ashare * 100:.0f}% (runs {spread([r['attribution_share'] for r in a['runs']])}) "
                 f"| {verdict(ashare <= 0.2)} |")
        mem = median([r["bytes_per_conversation"] for r in a["runs"]])
        T.append(f"| collector: join state bounded and reported | {mem:.0f} B per conversation, "
                 f"{mem * a['open'] / 2**20:.0f} MiB for {a['open']:,} (the default bound) | – |")
    T.append("\nA ratio whose per-round range spans 1.0 is within this machine's noise; read it with the range. "
             "The 95% confidence interval treats each round's ratio (contender over the baseline of the same round) "
             "as an independent sample; where the target lies inside it, this run cannot tell met from not met.\n")
    return "\n".join(T) + "\n"


def chart(results, path):
    if not shutil.which("gnuplot"):
        return False
    rows = []
    for key, label in (("churn_loopback", "churn lo"), ("churn_netns", "churn netns"), ("bulk", "bulk")):
        for r in results.get(key, {}).get("rows", []):
            if r.get("ratio") is not None and r["contender"] != "baseline":
                short = r["contender"].split(" (")[0].replace("flowscope ", "").replace("libbpf-tools ", "")
                if "->" in r["contender"]:
                    short = "agent->IPFIX"
                if "trace" in r["contender"]:
                    short = "trace " + ("1 conn" if "one" in r["contender"] else "no match")
                rows.append((f"{label}: {short}", r["ratio"]))
    if not rows:
        return False
    dat = path + ".dat"
    with open(dat, "w") as f:
        for name, v in rows:
            f.write(f'"{name}" {v:.3f}\n')
    script = f"""
set terminal pngcairo size 1000,{200 + 28 * len(rows)} font ",10"
set output '{path}'
set title "Throughput with contender / baseline (same rounds, medians)"
set style fill solid 0.8
set boxwidth 0.6
set yrange [0:*]
set xtics rotate by -35
set grid ytics
set arrow from graph 0, first 0.95 to graph 1, first 0.95 nohead dt 2 lc rgb "red"
unset key
plot '{dat}' using 0:2:xtic(1) with boxes lc rgb "#4477aa", '' using 0:2:(sprintf("%.2f",$2)) with labels offset 0,0.7
"""
    r = subprocess.run(["gnuplot"], input=script, text=True, capture_output=True)
    os.unlink(dat)
    if r.returncode != 0:
        log(f"gnuplot failed: {r.stderr.strip()}")
        return False
    return True


# ---------------------------------------------------------------- smoke checks

def smoke_checks(results):
    """Fail on real breakage only: nothing measured, the agent saw nothing or
    lost most records, a load generator failed. Never on speed."""
    problems = []
    for key in ("churn_loopback", "churn_netns"):
        s = results.get(key)
        if not s:
            continue
        if not s["baseline_cps"]:
            problems.append(f"{key}: the baseline made no connections")
        for r in s["rows"]:
            if r["contender"].startswith("flowscope agent (JSON") :
                if "unavailable" in r:
                    problems.append(f"{key}: agent did not run: {r['unavailable']}")
                elif "flows_lost_max" in r and r["expected_max"] and r["flows_lost_max"] > 0.5 * r["expected_max"]:
                    problems.append(f"{key}: agent lost {r['flows_lost_max']} of {r['expected_max']} flows")
                elif r.get("bpf_runs", 1) == 0:
                    problems.append(f"{key}: agent's BPF programs never ran")
    for h in results.get("hold", [])[:1]:  # the agent as shipped
        if "unavailable" in h:
            problems.append(f"hold: {h['unavailable']}")
        elif h["interim_tuples"] < 0.5 * h["interim_expected"]:
            problems.append(f"hold: only {h['interim_tuples']} of {h['interim_expected']} interim records")
    for r in (results.get("attribution") or {}).get("runs", []):
        if r["owner"] != r["rows"] or r["joined"] == 0:
            problems.append(f"attribution: {r['owner']} of {r['rows']} rows named, {r['joined']} joins")
    b = results.get("bulk")
    if b and not b.get("baseline_gbps"):
        problems.append("bulk: the baseline transferred nothing")
    return problems


# ---------------------------------------------------------------- main

class _Named:
    def __init__(self, name):
        self.name = name
        self.measured = name != "baseline"


def rewrite_report(args):
    """Re-summarises the stored runs (so format changes need no new
    measurement) and rewrites the report and chart."""
    path = os.path.join(ROOT, "bench", "results.json")
    with open(path) as f:
        results = json.load(f)
    for k, v in results.get("args", {}).items():
        setattr(args, k, v)
    args.report_only = True
    for key in ("churn_loopback", "churn_netns", "bulk"):
        s = results.get(key)
        if not s or "rows" not in s:
            continue
        names = [_Named(r["contender"]) for r in s["rows"]]
        unavailable = {r["contender"]: r["unavailable"] for r in s["rows"] if "unavailable" in r}
        summ = summarize_bulk if key == "bulk" else summarize_churn
        results[key] = summ(names, s["runs"], unavailable)
    if isinstance(results.get("hold"), dict):
        results["hold"] = [results["hold"]]
    write_outputs(results, args, args.out or os.path.join(ROOT, "BENCHMARKS.md"))


def write_outputs(results, args, out):
    default = os.path.abspath(out) == os.path.join(ROOT, "BENCHMARKS.md")
    with open(os.path.join(ROOT, "bench", "results.json") if default else out + ".json", "w") as f:
        json.dump(results, f, indent=1, default=str)
    args.outdir = ROOT
    if default and chart(results, os.path.join(ROOT, "bench", "benchmarks.png")):
        args.outdir = os.path.join(ROOT, "bench")
    with open(out, "w") as f:
        f.write(report(results, args))
    log(f"wrote {out}")


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--smoke", action="store_true", help="seconds, not minutes; fails only on real breakage")
    ap.add_argument("--only", default="", help="comma-separated: micro,churn,bulk,hold,collector,console,query,attribution")
    ap.add_argument("--query-rows", type=int, help="flows in the ClickHouse store of the query scenario")
    ap.add_argument("--query-rows-sqlite", type=int, help="flows in the SQLite store of the query scenario")
    ap.add_argument("--query-reps", type=int, help="requests per query in the query scenario")
    ap.add_argument("--reps", type=int)
    ap.add_argument("--before-build", help="build dir of another flowscope whose agent runs as one more contender")
    ap.add_argument("--contenders", default="",
                    help="comma-separated words: run only the baseline and contenders whose name contains one, e.g. 'trace'")
    ap.add_argument("--hold-agent-args", default="", help="extra agent options for scenario 3, e.g. '--ringbuf-size 67108864'")
    ap.add_argument("--out", help="report path (default BENCHMARKS.md; smoke: none unless given)")
    ap.add_argument("--report-only", action="store_true",
                    help="rewrite BENCHMARKS.md and the chart from bench/results.json without measuring")
    args = ap.parse_args()
    smoke = args.smoke
    d = dict(reps=1 if smoke else 3, churn_secs=1.5 if smoke else 6, churn_threads=2, bulk_secs=1.5 if smoke else 6,
             bulk_streams=2, hold_conns=2000 if smoke else 100000, hold_timeout=2 if smoke else 10,
             hold_max_flows=262144, ipfix_records=20000 if smoke else 2000000, pause=0.2 if smoke else 1.0,
             micro_min_time=0.05 if smoke else 0.5, query_rows=20000 if smoke else 10000000,
             query_rows_sqlite=20000 if smoke else 10000000, query_reps=5 if smoke else 20)
    for k, v in d.items():
        if getattr(args, k, None) is None:
            setattr(args, k, v)
    args.outdir = ROOT
    # Scenario 3 runs the agent as shipped, then (full run) with a ring buffer
    # big enough for one interim report of every flow, to show the trade-off.
    args.hold_variants = [args.hold_agent_args] if (smoke or args.hold_agent_args) else ["", "--ringbuf-size 67108864"]
    only = set(x for x in args.only.split(",") if x) or {"micro", "churn", "bulk", "hold", "collector", "console", "query", "attribution"}

    if args.report_only:
        return rewrite_report(args)
    if os.geteuid() != 0:
        sys.exit("bench: run as root (loads BPF programs, creates network namespaces)")
    if not os.access(FS, os.X_OK):
        sys.exit(f"bench: {FS} not built (bench/run.sh builds it)")

    features = Features()
    ctx = Ctx(args, features)
    old_stats = sh(["sysctl", "-n", "kernel.bpf_stats_enabled"]).strip()
    sh(["sysctl", "-qw", "kernel.bpf_stats_enabled=1"])
    results = {"args": {k: v for k, v in vars(args).items() if k not in ("outdir",)}, "machine": machine(), "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "smoke": smoke,
               "features": {"collector": features.collector_help is not None, "trace": features.trace_help is not None,
                            "agent_ipfix": features.ipfix_opt, "tcplife": features.tcplife}}
    t_start = time.time()
    try:
        if "micro" in only:
            log("micro-benchmarks")
            results["micro"] = micro_scenario(ctx)
        if "churn" in only:
            log("scenario 1: churn on loopback")
            results["churn_loopback"] = churn_scenario(ctx, "loopback")
            netns_up()
            log("scenario 1: churn between two namespaces")
            results["churn_netns"] = churn_scenario(ctx, "netns")
        if "bulk" in only:
            netns_up()
            log("scenario 2: bulk between two namespaces")
            results["bulk"] = bulk_scenario(ctx)
        if "hold" in only:
            results["hold"] = []
            for extra in args.hold_variants:
                log(f"scenario 3: {args.hold_conns} connections held open, agent options '{extra}'")
                results["hold"].append(hold_scenario(ctx, extra))
        if "collector" in only:
            log("scenario 4: collector ingest")
            results["collector"] = collector_scenario(ctx)
        if "console" in only:
            log("scenario 6: web console over 1M stored flows")
            results["console"] = console_scenario(ctx)
        if "query" in only:
            log("scenario 5: query latency and disk per flow, ClickHouse and SQLite")
            results["query"] = store_query_scenario(ctx)
        if "attribution" in only:
            log("scenario 8: the collector's join and attribution cost")
            results["attribution"] = attribution_scenario(ctx)
    finally:
        netns_down()
        sh(["sysctl", "-qw", f"kernel.bpf_stats_enabled={old_stats}"], check=False)
        shutil.rmtree(WORK, ignore_errors=True)
    results["seconds"] = time.time() - t_start
    log(f"done in {results['seconds']:.0f} s")

    out = args.out or (None if smoke else os.path.join(ROOT, "BENCHMARKS.md"))
    stored = os.path.join(ROOT, "bench", "results.json")
    if out and args.only and not args.out and os.path.exists(stored):
        # A partial run updates its scenarios in the stored results and keeps the rest.
        with open(stored) as f:
            merged = json.load(f)
        for k in ("micro", "churn_loopback", "churn_netns", "bulk", "hold", "collector", "console", "query",
                  "attribution"):
            if k in results:
                merged[k] = results[k]
                merged.setdefault("remeasured", {})[k] = results["date"]
        results = merged
    if out:
        write_outputs(results, args, out)
    else:
        print(report(results, args))
    problems = smoke_checks(results)
    for p in problems:
        log(f"BROKEN: {p}")
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
