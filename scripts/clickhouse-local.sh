#!/usr/bin/env bash
# Starts a throwaway ClickHouse server for flowscope in its own directory
# (config, data, logs), on loopback ports, in the foreground; Ctrl-C stops it.
# Never touches the system service or /var/lib/clickhouse.
#
#   scripts/clickhouse-local.sh [--dir DIR] [--http-port 8123]
#   scripts/clickhouse-local.sh --cluster [--dir DIR] [--http-port 8123]
#       two servers (HTTP ports P and P+1) forming the 2-shard cluster
#       "flowscope"; use: flowscope collector --store clickhouse://127.0.0.1:P/flowscope \
#         --clickhouse-cluster flowscope --clickhouse-shard 127.0.0.1:P --clickhouse-shard 127.0.0.1:P+1
#
# Then: flowscope collector --store clickhouse://127.0.0.1:8123/flowscope
# (the script creates the database flowscope on each server).
set -euo pipefail

dir=""
http=8123
cluster=0
while [[ $# -gt 0 ]]; do
  case "$1" in
    --dir) dir="$2"; shift 2 ;;
    --http-port) http="$2"; shift 2 ;;
    --cluster) cluster=1; shift ;;
    -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
server=$(command -v clickhouse-server || true)
[[ -n "$server" ]] || { echo "clickhouse-server is not installed (scripts/setup.sh installs it)" >&2; exit 1; }
[[ -n "$dir" ]] || dir=$(mktemp -d /tmp/flowscope-clickhouse.XXXXXX)

shards=$((cluster ? 2 : 1))
remote=""
for ((i = 0; i < shards; i++)); do
  remote+="<shard><replica><host>127.0.0.1</host><port>$((http + 100 + i))</port></replica></shard>"
done

# One node's config: HTTP on $http+i, native TCP on $http+100+i, interserver off.
write_config() {
  local d="$1" i="$2"
  mkdir -p "$d/data" "$d/tmp" "$d/user_files" "$d/log"
  cat > "$d/config.xml" <<XML
<?xml version="1.0"?>
<yandex>
  <logger><level>warning</level><log>$d/log/server.log</log><errorlog>$d/log/error.log</errorlog><console>0</console></logger>
  <listen_host>127.0.0.1</listen_host>
  <http_port>$((http + i))</http_port>
  <tcp_port>$((http + 100 + i))</tcp_port>
  <path>$d/data/</path>
  <tmp_path>$d/tmp/</tmp_path>
  <user_files_path>$d/user_files/</user_files_path>
  <users_config>$d/users.xml</users_config>
  <default_profile>default</default_profile>
  <default_database>default</default_database>
  <mark_cache_size>67108864</mark_cache_size>
  <max_concurrent_queries>50</max_concurrent_queries>
  <remote_servers><flowscope>$remote</flowscope></remote_servers>
</yandex>
XML
  cat > "$d/users.xml" <<XML
<?xml version="1.0"?>
<yandex>
  <profiles><default><max_memory_usage>2000000000</max_memory_usage></default></profiles>
  <users><default><password></password><networks><ip>127.0.0.1</ip><ip>::1</ip></networks>
    <profile>default</profile><quota>default</quota></default></users>
  <quotas><default><interval><duration>3600</duration><queries>0</queries><errors>0</errors>
    <result_rows>0</result_rows><read_rows>0</read_rows><execution_time>0</execution_time></interval></default></quotas>
</yandex>
XML
}

pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait || true; }
trap cleanup EXIT INT TERM
for ((i = 0; i < shards; i++)); do
  d="$dir/node$i"
  write_config "$d" "$i"
  (cd "$d" && exec "$server" --config-file="$d/config.xml") &
  pids+=($!)
done
for ((i = 0; i < shards; i++)); do
  for _ in $(seq 1 300); do
    curl -sf "http://127.0.0.1:$((http + i))/ping" >/dev/null 2>&1 && break
    kill -0 "${pids[$i]}" 2>/dev/null || { echo "server $i exited; see $dir/node$i/log" >&2; exit 1; }
    sleep 0.1
  done
  curl -sf "http://127.0.0.1:$((http + i))/" --data-binary 'CREATE DATABASE IF NOT EXISTS flowscope' >/dev/null
  echo "ClickHouse node $i: http://127.0.0.1:$((http + i)) (data in $dir/node$i)"
done
[[ $cluster == 1 ]] && echo "cluster name: flowscope (2 shards)"
extra=""
[[ $cluster == 1 ]] && extra=" --clickhouse-cluster flowscope --clickhouse-shard 127.0.0.1:$http --clickhouse-shard 127.0.0.1:$((http + 1))"
echo "flowscope collector --store clickhouse://127.0.0.1:$http/flowscope$extra"
wait
