#!/usr/bin/env bash
# Apache Kafka on loopback, for Weir's tests and benches and for trying Weir by hand.
#
#   scripts/kafka.sh install                        fetch the pinned broker from Maven Central
#   scripts/kafka.sh start [--brokers N] [--dir D]  start a KRaft cluster, print its bootstrap
#   scripts/kafka.sh ensure [--dir D]               start one unless D's cluster runs already
#   scripts/kafka.sh stop [--dir D]                 stop it cleanly (SIGTERM, then SIGKILL)
#   scripts/kafka.sh bootstrap [--dir D]            print the bootstrap servers of a running one
#   scripts/kafka.sh start-node I [--dir D]         start node I of a cluster again
#   scripts/kafka.sh kill-node I [--dir D]          SIGKILL node I (failover tests)
#
# The broker is `org.apache.kafka:kafka_2.13` with its runtime dependencies, copied by
# Maven from scripts/kafka/pom.xml into $WEIR_CACHE/kafka/<version>/libs (about 80 MB,
# once). Each node is one JVM running broker and controller together (KRaft combined
# mode) with its data, config and server.log in D/node-I; D defaults to
# $WEIR_CACHE/kafka-cluster. A cluster of three has replication factor 3 and
# min.insync.replicas=2 everywhere, so any one node can die. `start` wipes D first;
# `stop` leaves it, so a failed test's broker logs can be read afterwards.
set -euo pipefail

KAFKA_VERSION=4.1.1 # keep in step with scripts/kafka/pom.xml
here="$(cd "$(dirname "$0")" && pwd)"
cache="${WEIR_CACHE:-$HOME/.cache/weir}"
home="$cache/kafka/$KAFKA_VERSION"
libs="$home/libs"

die() {
    echo "kafka.sh: $*" >&2
    exit 1
}

install() {
    [ -f "$home/installed" ] && return 0
    command -v java >/dev/null || die "java is missing: install a JDK 17 or newer (apt-get install openjdk-17-jre-headless)"
    command -v mvn >/dev/null || die "mvn is missing: install Maven (apt-get install maven)"
    echo "kafka.sh: fetching Apache Kafka $KAFKA_VERSION from Maven Central into $libs" >&2
    rm -rf "$libs"
    mkdir -p "$libs"
    if ! mvn -q -B -Dstyle.color=never -f "$here/kafka/pom.xml" dependency:copy-dependencies \
        -DincludeScope=runtime -DoutputDirectory="$libs" >&2; then
        die "Maven could not fetch org.apache.kafka:kafka_2.13:$KAFKA_VERSION (output above); is Maven Central reachable?"
    fi
    touch "$home/installed"
}

# Free loopback ports, chosen by the kernel.
free_ports() {
    python3 - "$1" <<'EOF'
import socket, sys
socks = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in socks))
EOF
}

write_node_config() {
    local dir=$1 node=$2 brokers=$3 port=$4 controller_port=$5 voters=$6
    local rf=$((brokers < 3 ? brokers : 3))
    local min_isr=$((rf < 2 ? 1 : 2))
    mkdir -p "$dir/node-$node/data"
    cat >"$dir/node-$node/server.properties" <<EOF
process.roles=broker,controller
node.id=$node
controller.quorum.voters=$voters
listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$controller_port
advertised.listeners=PLAINTEXT://127.0.0.1:$port
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
log.dirs=$dir/node-$node/data
num.partitions=1
default.replication.factor=$rf
min.insync.replicas=$min_isr
offsets.topic.replication.factor=$rf
offsets.topic.num.partitions=10
transaction.state.log.replication.factor=$rf
transaction.state.log.min.isr=$min_isr
transaction.state.log.num.partitions=10
# Tests start groups one after another: no waiting for more members to join.
group.initial.rebalance.delay.ms=0
# Short session timeouts, so zombie and lost-partition tests run in seconds, under
# both group protocols (the classic one's minimum is already 6 s).
group.consumer.min.session.timeout.ms=6000
group.consumer.session.timeout.ms=10000
group.consumer.min.heartbeat.interval.ms=500
group.consumer.heartbeat.interval.ms=1000
# The log cleaner looks for work every second, so compaction tests see it promptly.
log.cleaner.backoff.ms=1000
# No time-based retention: tests, benches and examples use fixed event times (2023),
# which the default seven days would delete within five minutes of the broker's start
# (the active segment too), leaving a consumer nothing to read and nothing to commit.
log.retention.ms=-1
# Transactions left open by a killed producer abort after transaction.timeout.ms;
# check for them every second rather than every ten.
transaction.abort.timed.out.transaction.cleanup.interval.ms=1000
EOF
}

cluster_dir() {
    echo "${dir:-$cache/kafka-cluster}"
}

start_node() {
    local dir=$1 node=$2
    local nd="$dir/node-$node"
    [ -f "$nd/server.properties" ] || die "no node $node in $dir"
    if [ -f "$nd/pid" ] && kill -0 "$(cat "$nd/pid")" 2>/dev/null; then
        die "node $node of $dir is already running (pid $(cat "$nd/pid"))"
    fi
    : >"$nd/server.log"
    # setsid: a test's SIGINT to its process group does not reach the broker.
    # The heap and collector settings of Kafka's own kafka-server-start.sh and
    # kafka-run-class.sh. (A 256 MiB starting heap ran a G1 marking cycle every few
    # seconds under the latency bench, with remark pauses up to 90 ms.)
    setsid java -Xms1g -Xmx1g -server -XX:+UseG1GC -XX:MaxGCPauseMillis=20 \
        -XX:InitiatingHeapOccupancyPercent=35 -XX:+ExplicitGCInvokesConcurrent \
        -Xlog:gc:file="$nd/gc.log":time,uptime \
        -Djava.awt.headless=true \
        -Dlog4j2.configurationFile="$here/kafka/log4j2.properties" \
        -Dkafka.logs.dir="$nd" \
        -cp "$libs/*" kafka.Kafka "$nd/server.properties" \
        >"$nd/stdout.log" 2>&1 </dev/null 9>&- &
    echo $! >"$nd/pid"
}

wait_started() {
    local dir=$1
    shift
    local deadline=$((SECONDS + 120)) node
    for node in "$@"; do
        local nd="$dir/node-$node"
        until grep -q "Kafka Server started" "$nd/server.log" 2>/dev/null; do
            if ! kill -0 "$(cat "$nd/pid")" 2>/dev/null; then
                tail -n 30 "$nd/stdout.log" "$nd/server.log" >&2 || true
                die "node $node exited while starting (logs above, all of them in $nd)"
            fi
            ((SECONDS < deadline)) || die "node $node did not start within 120 s (logs in $nd)"
            sleep 0.2
        done
    done
}

start() {
    local brokers=1
    while (($#)); do
        case $1 in
        --brokers) brokers=$2 && shift 2 ;;
        --dir) dir=$2 && shift 2 ;;
        *) die "start: unknown argument $1" ;;
        esac
    done
    [[ $brokers =~ ^[1-9][0-9]*$ ]] || die "--brokers takes a positive number, not $brokers"
    install
    local d
    d="$(cluster_dir)"
    # Whatever ran here before goes, even a start that never finished.
    [ -d "$d" ] && stop_cluster "$d"
    rm -rf "$d"
    mkdir -p "$d"
    local ports
    read -r -a ports <<<"$(free_ports $((2 * brokers)))"
    local voters="" bootstrap="" node
    for ((node = 1; node <= brokers; node++)); do
        voters+="${voters:+,}$node@127.0.0.1:${ports[2 * node - 1]}"
        bootstrap+="${bootstrap:+,}127.0.0.1:${ports[2 * node - 2]}"
    done
    # A base64 id starting with '-' reads as an option to the storage tool's parser
    # (one id in 64): draw again, as Kafka's own Uuid.randomUuid does.
    local cluster_id
    cluster_id="$(python3 -c '
import base64, uuid
while True:
    id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
    if not id.startswith("-"):
        print(id)
        break
')"
    local nodes=()
    for ((node = 1; node <= brokers; node++)); do
        write_node_config "$d" "$node" "$brokers" "${ports[2 * node - 2]}" "${ports[2 * node - 1]}" "$voters"
        java -cp "$libs/*" -Dlog4j2.configurationFile="$here/kafka/log4j2.properties" \
            -Dkafka.logs.dir="$d/node-$node" \
            kafka.tools.StorageTool format -t "$cluster_id" -c "$d/node-$node/server.properties" \
            >"$d/node-$node/format.log" 2>&1 9>&- || {
            cat "$d/node-$node/format.log" >&2
            die "formatting node $node failed (above)"
        }
        start_node "$d" "$node"
        nodes+=("$node")
    done
    wait_started "$d" "${nodes[@]}"
    echo "$bootstrap" >"$d/bootstrap"
    echo "$bootstrap"
}

stop_cluster() {
    local d=$1 nd pid
    for nd in "$d"/node-*; do
        [ -f "$nd/pid" ] || continue
        pid="$(cat "$nd/pid")"
        kill -TERM "$pid" 2>/dev/null || true
    done
    for nd in "$d"/node-*; do
        [ -f "$nd/pid" ] || continue
        pid="$(cat "$nd/pid")"
        for _ in $(seq 150); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.2
        done
        kill -KILL "$pid" 2>/dev/null || true
        rm -f "$nd/pid"
    done
}

# Every node of cluster D is alive.
running() {
    local d=$1 nd
    [ -f "$d/bootstrap" ] || return 1
    for nd in "$d"/node-*; do
        [ -f "$nd/pid" ] && kill -0 "$(cat "$nd/pid")" 2>/dev/null || return 1
    done
}

ensure() {
    local args=("$@")
    while (($#)); do
        case $1 in
        --dir) dir=$2 && shift 2 ;;
        *) shift ;;
        esac
    done
    local d
    d="$(cluster_dir)"
    mkdir -p "$(dirname "$d")"
    # Test processes start at once: the first starts the cluster, the others wait for it.
    exec 9>"$d.lock"
    flock 9
    if running "$d"; then
        cat "$d/bootstrap"
    else
        start "${args[@]}"
    fi
}

cmd=${1:-}
[ -n "$cmd" ] && shift
case $cmd in
install) install ;;
start) start "$@" ;;
ensure) ensure "$@" ;;
stop | bootstrap | start-node | kill-node)
    node=""
    if [[ $cmd == *-node ]]; then
        node=${1:-}
        [[ $node =~ ^[1-9][0-9]*$ ]] || die "$cmd takes a node number"
        shift
    fi
    while (($#)); do
        case $1 in
        --dir) dir=$2 && shift 2 ;;
        *) die "$cmd: unknown argument $1" ;;
        esac
    done
    d="$(cluster_dir)"
    case $cmd in
    stop) stop_cluster "$d" ;;
    bootstrap) cat "$d/bootstrap" 2>/dev/null || die "no cluster in $d: run scripts/kafka.sh start" ;;
    start-node)
        start_node "$d" "$node"
        wait_started "$d" "$node"
        ;;
    kill-node)
        [ -f "$d/node-$node/pid" ] || die "node $node of $d is not running"
        kill -KILL "$(cat "$d/node-$node/pid")" 2>/dev/null || true
        rm -f "$d/node-$node/pid"
        ;;
    esac
    ;;
*) die "usage: scripts/kafka.sh install | start [--brokers N] [--dir DIR] | ensure | stop | bootstrap | start-node I | kill-node I  [--dir DIR]" ;;
esac
