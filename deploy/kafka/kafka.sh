#!/usr/bin/env bash
# Local single-node Apache Kafka (KRaft, combined broker+controller) for segstream.
#
# Usage: deploy/kafka/kafka.sh {start|stop [--wipe]|reset|status|bootstrap|logs [-f]}
#
# No Docker, no Kafka tarball: the broker jars are resolved from Maven Central via
# deploy/kafka/pom.xml and cached in $SEGSTREAM_KAFKA_HOME/lib. See README.md.
set -euo pipefail

KAFKA_VERSION="4.1.1"

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$SCRIPT_DIR/../.." && pwd)"
POM="$SCRIPT_DIR/pom.xml"

PORT="${SEGSTREAM_KAFKA_PORT:-9092}"
CONTROLLER_PORT="${SEGSTREAM_KAFKA_CONTROLLER_PORT:-}"   # default: PORT+1 (set in validate_ports)
HOST="127.0.0.1"
KHOME="${SEGSTREAM_KAFKA_HOME:-$REPO_ROOT/.local/kafka}"
START_TIMEOUT="${SEGSTREAM_KAFKA_START_TIMEOUT:-90}"
STOP_TIMEOUT="${SEGSTREAM_KAFKA_STOP_TIMEOUT:-30}"
HEAP_OPTS="${SEGSTREAM_KAFKA_HEAP_OPTS:--Xms256m -Xmx1g}"

# One broker instance = config, data, pid file and lock below INSTANCE_DIR. It is the
# KAFKA home unless SEGSTREAM_KAFKA_DATA names another directory, so a second broker (other
# ports) shares the downloaded jars of the first but nothing else.
INSTANCE_DIR="${SEGSTREAM_KAFKA_DATA:-$KHOME}"

LIB_DIR="$KHOME/lib"                  # jar cache (survives stop --wipe / reset)
LIB_MARKER="$LIB_DIR/.segstream-kafka-jars"
CONF_DIR="$INSTANCE_DIR/config"       # regenerated on every start
DATA_DIR="$INSTANCE_DIR/data"         # everything below is deleted by --wipe/reset
LOG_DIRS="$DATA_DIR/kraft-combined-logs"
APP_LOG_DIR="$DATA_DIR/logs"          # server.log (log4j2) + kafka.out (stdout/stderr)
CLUSTER_ID_FILE="$DATA_DIR/cluster.id"
PID_FILE="$INSTANCE_DIR/kafka.pid"
LOCK_FILE="$INSTANCE_DIR/.kafka.sh.lock"
SERVER_PROPS="$CONF_DIR/server.properties"

log() { printf '[kafka.sh] %s\n' "$*"; }
err() { printf '[kafka.sh] ERROR: %s\n' "$*" >&2; }
die() { err "$*"; exit 1; }

usage() {
  cat <<EOF
Usage: $(basename "$0") <command>

  start          provision jars (first run only), format storage (first run only),
                 start the broker and wait until it answers Kafka requests
  stop [--wipe]  graceful stop (SIGTERM, SIGKILL after ${STOP_TIMEOUT}s); --wipe also
                 deletes the data folder ($DATA_DIR), keeping the jar cache
  reset          same as: stop --wipe
  status         exit 0 if the local broker is running and reachable, 3 otherwise
  bootstrap      print the bootstrap address (KAFKA_BOOTSTRAP_SERVERS if set)
  logs [-f]      show (or follow) the broker log

Environment: KAFKA_BOOTSTRAP_SERVERS (use an existing cluster, start nothing),
  SEGSTREAM_KAFKA_PORT (9092), SEGSTREAM_KAFKA_CONTROLLER_PORT (port+1),
  SEGSTREAM_KAFKA_HOME (<repo>/.local/kafka; jar cache in its lib/),
  SEGSTREAM_KAFKA_DATA (SEGSTREAM_KAFKA_HOME; this broker's config/, data/, pid and lock),
  SEGSTREAM_KAFKA_START_TIMEOUT (90),
  SEGSTREAM_KAFKA_STOP_TIMEOUT (30), SEGSTREAM_KAFKA_HEAP_OPTS (-Xms256m -Xmx1g)
EOF
}

# KAFKA_BOOTSTRAP_SERVERS set => use that cluster and manage nothing locally.
# Exception: if it is exactly this script's own local address (typically because a
# caller exported "$(kafka.sh bootstrap)") and that address is ours or free, the
# local broker is still managed, so start/stop keep working in such shells.
EXTERNAL=0
detect_external() {
  local bs="${KAFKA_BOOTSTRAP_SERVERS:-}"
  [[ -n "$bs" ]] || return 1
  if [[ "$bs" == "$HOST:$PORT" || "$bs" == "localhost:$PORT" ]]; then
    broker_pid >/dev/null && return 1     # our own broker runs there
    port_open "$PORT" && return 0         # someone else's broker runs there
    return 1                              # nothing there yet: ours to start
  fi
  return 0
}
external_cluster() { ((EXTERNAL)); }

validate_ports() {
  local p
  [[ "$PORT" =~ ^[0-9]+$ ]] || die "invalid SEGSTREAM_KAFKA_PORT '$PORT'"
  [[ -n "$CONTROLLER_PORT" ]] || CONTROLLER_PORT=$((10#$PORT + 1))
  for p in "$PORT" "$CONTROLLER_PORT"; do
    if ! [[ "$p" =~ ^[1-9][0-9]{0,4}$ ]] || ((p > 65535)); then
      die "invalid port '$p' (SEGSTREAM_KAFKA_PORT / SEGSTREAM_KAFKA_CONTROLLER_PORT)"
    fi
  done
  [[ "$PORT" != "$CONTROLLER_PORT" ]] || die "broker port and controller port must differ (both $PORT)"
}

# ---------------------------------------------------------------- java / mvn
JAVA=""
find_java() {
  if [[ -n "${JAVA_HOME:-}" && -x "$JAVA_HOME/bin/java" ]]; then
    JAVA="$JAVA_HOME/bin/java"
  elif command -v java >/dev/null 2>&1; then
    JAVA="$(command -v java)"
  else
    die "java not found. Kafka $KAFKA_VERSION needs Java 17+ (e.g. 'apt-get install openjdk-17-jre-headless'), or set JAVA_HOME."
  fi
  local ver major
  ver="$("$JAVA" -version 2>&1 | sed -n 's/.*version "\([^"]*\)".*/\1/p' | head -n1)"
  major="${ver%%.*}"
  [[ "$major" == "1" ]] && major="$(cut -d. -f2 <<<"$ver")"
  if [[ ! "$major" =~ ^[0-9]+$ ]]; then
    err "could not parse the Java version of $JAVA ('$ver'); trying anyway"
  elif ((major < 17)); then
    die "$JAVA is Java $ver; Kafka $KAFKA_VERSION needs Java 17 or newer (set JAVA_HOME)."
  fi
}

expected_marker() {
  local pom_sum
  pom_sum="$(sha256sum "$POM" | cut -d' ' -f1)"
  printf 'kafka=%s pom-sha256=%s\n' "$KAFKA_VERSION" "$pom_sum"
}

ensure_jars() {
  local want
  want="$(expected_marker)"
  if [[ -f "$LIB_MARKER" && "$(cat "$LIB_MARKER")" == "$want" ]] \
     && [[ -f "$LIB_DIR/kafka_2.13-$KAFKA_VERSION.jar" ]]; then
    return 0
  fi
  command -v mvn >/dev/null 2>&1 \
    || die "mvn (Apache Maven) not found; it is needed once to fetch the Kafka jars into $LIB_DIR ('apt-get install maven')."
  log "resolving Kafka $KAFKA_VERSION jars with Maven into $LIB_DIR (one-time) ..."
  local tmp="$LIB_DIR.tmp.$$"
  rm -rf "$tmp"
  mkdir -p "$KHOME"
  if ! mvn -B -q -f "$POM" -Dkafka.version="$KAFKA_VERSION" -Dkafka.lib.dir="$tmp" generate-resources >"$KHOME/mvn.log" 2>&1; then
    tail -n 40 "$KHOME/mvn.log" >&2 || true
    rm -rf "$tmp"
    die "Maven could not resolve the Kafka jars (full output: $KHOME/mvn.log)."
  fi
  [[ -f "$tmp/kafka_2.13-$KAFKA_VERSION.jar" ]] || { rm -rf "$tmp"; die "Maven finished but kafka_2.13-$KAFKA_VERSION.jar is missing in $tmp"; }
  printf '%s' "$want" >"$tmp/.segstream-kafka-jars"
  rm -rf "$LIB_DIR"
  mv "$tmp" "$LIB_DIR"
  log "cached $(find "$LIB_DIR" -name '*.jar' | wc -l) jars in $LIB_DIR"
}

# Run a Kafka tool class from the cached jars (small, fast-starting JVM; killed after 60 s).
run_tool() {
  timeout 60 "$JAVA" -Xmx256m -XX:TieredStopAtLevel=1 -XX:+UseSerialGC -Djava.awt.headless=true \
    -Dlog4j2.configurationFile="$CONF_DIR/tools-log4j2.properties" \
    -cp "$LIB_DIR/*" "$@"
}

# ---------------------------------------------------------------- process helpers
port_open() { # port -> 0 if something accepts TCP connections on 127.0.0.1:port
  timeout 2 bash -c "exec 3<>/dev/tcp/$HOST/$1" 2>/dev/null
}

port_owner() { # best effort description of who listens on a port
  if command -v ss >/dev/null 2>&1; then
    ss -Hltnp "sport = :$1" 2>/dev/null | head -n3
  fi
}

is_our_broker() { # pid -> 0 if it is a live kafka.Kafka started with our config
  local pid="$1" cmd
  [[ -n "$pid" && -r "/proc/$pid/cmdline" ]] || return 1
  cmd="$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null)" || return 1
  [[ "$cmd" == *"kafka.Kafka $SERVER_PROPS"* ]]
}

# Prints the pid of our broker: from the pid file, else by scanning /proc for a
# kafka.Kafka process started with exactly our server.properties (lost pid file).
broker_pid() {
  local pid=""
  if [[ -f "$PID_FILE" ]]; then
    pid="$(tr -dc '0-9' <"$PID_FILE")"
    if is_our_broker "$pid"; then echo "$pid"; return 0; fi
    rm -f "$PID_FILE"   # stale
  fi
  local d
  for d in /proc/[0-9]*; do
    pid="${d#/proc/}"
    if is_our_broker "$pid"; then echo "$pid" >"$PID_FILE"; echo "$pid"; return 0; fi
  done
  return 1
}

probe_ready() { # 0 if the broker answers a real Kafka request (Metadata + ApiVersions)
  run_tool org.apache.kafka.tools.BrokerApiVersionsCommand \
    --bootstrap-server "$HOST:$PORT" --command-config "$CONF_DIR/probe.properties" \
    >"$APP_LOG_DIR/probe.out" 2>&1 \
    && grep -q "$HOST:$PORT" "$APP_LOG_DIR/probe.out"
}

SERVER_LOG_OFFSET=0   # size of server.log before this start: only newer lines are shown
show_log_tail() {
  local f="$APP_LOG_DIR/kafka.out"
  if [[ -s "$f" ]]; then
    printf -- '----- last 40 lines of %s -----\n' "$f" >&2
    tail -n 40 "$f" >&2
  fi
  f="$APP_LOG_DIR/server.log"
  if [[ -f "$f" ]] && (($(stat -c %s "$f") > SERVER_LOG_OFFSET)); then
    printf -- '----- last 40 lines of %s (this start) -----\n' "$f" >&2
    tail -c +$((SERVER_LOG_OFFSET + 1)) "$f" | tail -n 40 >&2
  fi
}

# ---------------------------------------------------------------- config
write_config() {
  mkdir -p "$CONF_DIR" "$LOG_DIRS" "$APP_LOG_DIR"
  cat >"$SERVER_PROPS" <<EOF
# Generated by deploy/kafka/kafka.sh on every start - do not edit (changes are lost).
# Single-node KRaft: this process is both broker and controller.
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@$HOST:$CONTROLLER_PORT
controller.listener.names=CONTROLLER
listeners=PLAINTEXT://$HOST:$PORT,CONTROLLER://$HOST:$CONTROLLER_PORT
advertised.listeners=PLAINTEXT://$HOST:$PORT
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
log.dirs=$LOG_DIRS

# Replication: one node, so every internal topic has RF 1 / min ISR 1.
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
default.replication.factor=1
min.insync.replicas=1
# Fewer internal partitions than the default 50: faster first group/txn use on a small box.
offsets.topic.num.partitions=10
transaction.state.log.num.partitions=10

# Topics must be created explicitly (as in production).
auto.create.topics.enable=false
delete.topic.enable=true
num.partitions=1
group.initial.rebalance.delay.ms=0
# KIP-848 consumer groups: session timeouts are set per group by the workers
# (SEGSTREAM_SESSION_TIMEOUT_MS); allow the short ones that tests and small clusters use.
group.consumer.min.session.timeout.ms=6000
group.consumer.min.heartbeat.interval.ms=1000

# Small-machine sizing.
num.network.threads=2
num.io.threads=4
num.recovery.threads.per.data.dir=1
background.threads=4
log.cleaner.enable=true
log.cleaner.threads=1
log.cleaner.dedupe.buffer.size=16777216
log.cleaner.io.buffer.size=524288
log.segment.bytes=134217728
log.retention.hours=168
log.retention.check.interval.ms=300000
EOF

  # Broker logging: log4j2 -> rolling file in the data folder, nothing on stdout.
  cat >"$CONF_DIR/log4j2.properties" <<'EOF'
status = warn
name = segstream-kafka-broker
property.logDir = ${sys:kafka.logs.dir}

appender.server.type = RollingFile
appender.server.name = SERVER
appender.server.fileName = ${logDir}/server.log
appender.server.filePattern = ${logDir}/server.log.%i
appender.server.layout.type = PatternLayout
appender.server.layout.pattern = [%d] %p %m (%c)%n
appender.server.policies.type = Policies
appender.server.policies.size.type = SizeBasedTriggeringPolicy
appender.server.policies.size.size = 20MB
appender.server.strategy.type = DefaultRolloverStrategy
appender.server.strategy.max = 5

rootLogger.level = INFO
rootLogger.appenderRef.server.ref = SERVER

logger.request.name = kafka.request.logger
logger.request.level = WARN
logger.authorizer.name = kafka.authorizer.logger
logger.authorizer.level = INFO
logger.statechange.name = state.change.logger
logger.statechange.level = INFO
EOF

  # CLI tools (format, readiness probe): warnings only, to stderr.
  cat >"$CONF_DIR/tools-log4j2.properties" <<'EOF'
status = warn
name = segstream-kafka-tools
appender.stderr.type = Console
appender.stderr.name = STDERR
appender.stderr.target = SYSTEM_ERR
appender.stderr.layout.type = PatternLayout
appender.stderr.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = WARN
rootLogger.appenderRef.stderr.ref = STDERR
EOF

  cat >"$CONF_DIR/probe.properties" <<'EOF'
request.timeout.ms=5000
default.api.timeout.ms=10000
EOF
}

ensure_formatted() {
  if [[ -f "$LOG_DIRS/meta.properties" ]]; then
    return 0
  fi
  local cid
  if [[ -s "$CLUSTER_ID_FILE" ]]; then
    cid="$(tr -d '[:space:]' <"$CLUSTER_ID_FILE")"
  else
    cid="$(run_tool kafka.tools.StorageTool random-uuid | tail -n1 | tr -d '[:space:]')"
    [[ -n "$cid" ]] || die "kafka.tools.StorageTool random-uuid returned nothing"
    printf '%s\n' "$cid" >"$CLUSTER_ID_FILE"
  fi
  log "formatting KRaft storage in $LOG_DIRS (cluster id $cid)"
  # Static quorum (controller.quorum.voters) => no --standalone; the ports can then
  # change between runs without touching the stored metadata.
  if ! run_tool kafka.tools.StorageTool format -t "$cid" -c "$SERVER_PROPS" >"$APP_LOG_DIR/format.out" 2>&1; then
    cat "$APP_LOG_DIR/format.out" >&2
    die "formatting the storage failed"
  fi
}

# One kafka.sh at a time per KAFKA home; fd 9 holds the lock until the script exits
# (the broker itself is started with 9>&- so it does not inherit it).
take_lock() {
  mkdir -p "$KHOME" "$INSTANCE_DIR"
  exec 9>"$LOCK_FILE"
  flock -w "$1" 9 || die "another kafka.sh is busy with $INSTANCE_DIR (lock $LOCK_FILE)"
}

# ---------------------------------------------------------------- commands
cmd_start() {
  if external_cluster; then
    log "KAFKA_BOOTSTRAP_SERVERS=$KAFKA_BOOTSTRAP_SERVERS is set: using that existing cluster, starting nothing."
    return 0
  fi
  take_lock $((START_TIMEOUT + 60))

  find_java
  local pid
  if pid="$(broker_pid)"; then
    if port_open "$PORT"; then
      log "Kafka already running (pid $pid) at $HOST:$PORT"
      return 0
    fi
    log "Kafka process $pid exists but $HOST:$PORT is not answering yet; waiting for it"
  else
    local p
    for p in "$PORT" "$CONTROLLER_PORT"; do
      if port_open "$p"; then
        err "port $HOST:$p is already in use by another process (not the broker managed in $INSTANCE_DIR):"
        port_owner "$p" >&2 || true
        die "stop that process or choose other ports via SEGSTREAM_KAFKA_PORT / SEGSTREAM_KAFKA_CONTROLLER_PORT (or point KAFKA_BOOTSTRAP_SERVERS at an existing cluster)"
      fi
    done
    ensure_jars
    write_config
    ensure_formatted
    # kafka.out only holds this run's stdout/stderr (previous run kept as kafka.out.prev).
    [[ -f "$APP_LOG_DIR/kafka.out" ]] && mv -f "$APP_LOG_DIR/kafka.out" "$APP_LOG_DIR/kafka.out.prev"
    SERVER_LOG_OFFSET="$(stat -c %s "$APP_LOG_DIR/server.log" 2>/dev/null || echo 0)"
    log "starting Kafka $KAFKA_VERSION (KRaft, node 1) on $HOST:$PORT (controller $HOST:$CONTROLLER_PORT)"
    # shellcheck disable=SC2086  # HEAP_OPTS is intentionally word-split
    nohup "$JAVA" $HEAP_OPTS -server \
      -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:InitiatingHeapOccupancyPercent=35 \
      -XX:+ExplicitGCInvokesConcurrent -Djava.awt.headless=true \
      -Dkafka.logs.dir="$APP_LOG_DIR" \
      -Dlog4j2.configurationFile="$CONF_DIR/log4j2.properties" -Dlog4j2.shutdownHookEnabled=false \
      -cp "$LIB_DIR/*" kafka.Kafka "$SERVER_PROPS" \
      >>"$APP_LOG_DIR/kafka.out" 2>&1 </dev/null 9>&- &   # 9>&-: the broker must not inherit the lock
    pid=$!
    echo "$pid" >"$PID_FILE"
  fi

  local deadline=$((SECONDS + START_TIMEOUT))
  while :; do
    if ! kill -0 "$pid" 2>/dev/null; then
      rm -f "$PID_FILE"
      show_log_tail
      die "Kafka (pid $pid) exited during startup; logs in $APP_LOG_DIR"
    fi
    if port_open "$PORT" && probe_ready; then
      break
    fi
    if ((SECONDS >= deadline)); then
      show_log_tail
      [[ -s "$APP_LOG_DIR/probe.out" ]] && { echo "----- last readiness probe -----" >&2; tail -n 5 "$APP_LOG_DIR/probe.out" >&2; }
      die "Kafka (pid $pid) not ready after ${START_TIMEOUT}s; it is left running (see '$0 logs', '$0 stop')"
    fi
    sleep 0.5
  done
  log "Kafka ready at $HOST:$PORT (pid $pid, ${SECONDS}s); logs: $APP_LOG_DIR/server.log"
}

cmd_stop() {
  local wipe=0
  case "${1:-}" in
    "") ;;
    --wipe) wipe=1 ;;
    *) die "unknown option for stop: $1 (expected --wipe)" ;;
  esac
  if external_cluster; then
    log "KAFKA_BOOTSTRAP_SERVERS=$KAFKA_BOOTSTRAP_SERVERS is set: external cluster, nothing to stop."
    return 0
  fi
  take_lock $((STOP_TIMEOUT + 60))

  local pid
  if pid="$(broker_pid)"; then
    log "stopping Kafka (pid $pid) ..."
    kill -TERM "$pid" 2>/dev/null || true
    local deadline=$((SECONDS + STOP_TIMEOUT))
    while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.5; done
    if kill -0 "$pid" 2>/dev/null; then
      err "Kafka did not stop within ${STOP_TIMEOUT}s; sending SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
      while kill -0 "$pid" 2>/dev/null; do sleep 0.2; done
    fi
    log "Kafka stopped"
  else
    log "Kafka is not running"
  fi
  rm -f "$PID_FILE"
  if ((wipe)); then
    rm -rf "$DATA_DIR" "$CONF_DIR"
    log "wiped $DATA_DIR (jar cache $LIB_DIR kept)"
  fi
}

cmd_status() {
  if external_cluster; then
    log "external cluster: KAFKA_BOOTSTRAP_SERVERS=$KAFKA_BOOTSTRAP_SERVERS (not managed here)"
    return 0
  fi
  local pid
  if pid="$(broker_pid)"; then
    if port_open "$PORT"; then
      log "running (pid $pid) at $HOST:$PORT; data in $DATA_DIR"
      return 0
    fi
    log "process $pid exists but $HOST:$PORT is not answering (starting or stuck?)"
    return 3
  fi
  log "not running"
  return 3
}

cmd_bootstrap() {
  if external_cluster; then
    echo "$KAFKA_BOOTSTRAP_SERVERS"
  else
    echo "$HOST:$PORT"
  fi
}

cmd_logs() {
  local f="$APP_LOG_DIR/server.log"
  [[ -f "$f" ]] || die "no broker log yet ($f)"
  if [[ "${1:-}" == "-f" ]]; then
    exec tail -n 50 -F "$f"
  fi
  tail -n "${SEGSTREAM_KAFKA_LOG_LINES:-200}" "$f"
}

main() {
  local cmd="${1:-}"
  shift || true
  case "$cmd" in
    start|stop|reset|status|bootstrap)
      if detect_external; then EXTERNAL=1; else validate_ports; fi ;;
  esac
  case "$cmd" in
    start) cmd_start "$@" ;;
    stop) cmd_stop "$@" ;;
    reset) cmd_stop --wipe ;;
    status) cmd_status ;;
    bootstrap) cmd_bootstrap ;;
    logs) cmd_logs "$@" ;;
    -h|--help|help) usage ;;
    "") usage >&2; exit 2 ;;
    *) err "unknown command: $cmd"; usage >&2; exit 2 ;;
  esac
}

main "$@"
