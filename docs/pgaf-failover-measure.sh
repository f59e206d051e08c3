#!/bin/bash
# Measures one pg_auto_failover failover on one machine (see docs/pg_auto_failover.md).
# usage (as root): pgaf-failover-measure.sh kill|stop|switchover VICTIM_KEEPER_PID VICTIM_PORT OTHER_PORT
#   (switchover: runs `pg_autoctl perform switchover` with --pgdata $SWITCHOVER_PGDATA instead)
# env: PGAF_USER (OS user running the keepers), SSLROOT (CA file), PGPASSWORD (role app),
#      DB (default appdb), OUT (directory for the logs).
# A writer inserts a counter through the multi-host string (target_session_attrs=read-write),
# one connection per write, each attempt bounded to 3 s and using a new counter value
# (a commit that timed out waiting for a synchronous standby may still be committed);
# a probe per node writes to that node only (split-brain check). The victim's keeper and every descendant get SIGKILL (kill) or
# SIGSTOP, then SIGCONT 5 s after the first write through the new primary (stop).
# Needs in DB, owned by role app: counter(n bigint primary key, at timestamptz default
# clock_timestamp()) and probe(port int, at timestamptz default clock_timestamp()).
set -u
MODE=$1 VPID=$2 VPORT=$3 OPORT=$4
DB=${DB:-appdb} OUT=${OUT:-/tmp/pgaf-measure} U=${PGAF_USER:-pgaf}
mkdir -p "$OUT"; rm -f "$OUT"/*.log
TLS="sslmode=verify-full sslrootcert=$SSLROOT"
URI="host=127.0.0.1,127.0.0.1 port=$VPORT,$OPORT dbname=$DB user=app target_session_attrs=read-write connect_timeout=2 $TLS"
now() { date +%s.%N; }
tree() { local p; echo "$1"; for p in $(pgrep -P "$1"); do tree "$p"; done; }
n0=$(psql "$URI" -Atc 'select coalesce(max(n),0) from counter')
writer() { local n=$((n0+1)) stop=$(( $(date +%s) + 150 ))
  while [ ! -e "$OUT/stop" ] && [ "$(date +%s)" -lt "$stop" ]; do
    s=$(now); if timeout 3 psql "$URI" -Atqc "insert into counter(n) values ($n)" >/dev/null 2>&1
    then echo "$(now) ok $n $s"; else echo "$(now) fail $n $s"; sleep 0.1; fi; n=$((n+1))
  done >> "$OUT/writer.log"; }
probe() { local stop=$(( $(date +%s) + 150 ))
  while [ ! -e "$OUT/stop" ] && [ "$(date +%s)" -lt "$stop" ]; do
    s=$(now); if timeout 2 psql "host=127.0.0.1 port=$1 dbname=$DB user=app connect_timeout=1 $TLS" \
        -Atqc "insert into probe(port) values ($1)" >/dev/null 2>&1
    then echo "$(now) ok $s"; else echo "$(now) fail $s"; fi; sleep 0.2
  done >> "$OUT/probe-$1.log"; }
rm -f "$OUT/stop"; writer & W=$!; probe "$VPORT" & P1=$!; probe "$OPORT" & P2=$!
sleep 5
PIDS=$(tree "$VPID" | tr '\n' ' ')
T0=$(now)
case $MODE in kill) kill -KILL $PIDS;; stop) kill -STOP $PIDS;;
  switchover) su "$U" -c "env -u PGPASSWORD pg_autoctl perform switchover --pgdata '$SWITCHOVER_PGDATA'" \
                > "$OUT/switchover.log" 2>&1 & SW=$! ;; esac
echo "$T0 $MODE $PIDS" > "$OUT/fault.log"
first=""; while [ -z "$first" ]; do
  first=$(awk -v t="$T0" '$4>t && $2=="ok"{print $1; exit}' "$OUT/writer.log")
  [ "$(echo "$(now) - $T0 > 120" | bc)" = 1 ] && break; sleep 0.2; done
[ "$MODE" = switchover ] && { wait "$SW"; sleep 5; }
if [ "$MODE" = stop ] && [ -n "$first" ]; then sleep 5; TC=$(now); kill -CONT $PIDS; sleep 15; fi
sleep 3; touch "$OUT/stop"; wait $W $P1 $P2
echo "mode=$MODE fault_at=$T0"
[ -n "$first" ] && echo "first_write_after=$(echo "$first - $T0" | bc) s" || echo "no write within 120 s"
echo "longest_gap_between_acked_writes=$(awk '$2=="ok"{if(p&&$1-p>g)g=$1-p;p=$1}END{printf "%.2f", g}' "$OUT/writer.log") s"
awk '$2=="ok"{print $3}' "$OUT/writer.log" | sort > "$OUT/acked"
psql "$URI" -Atc "select n from counter where n > $n0 order by n" | sort > "$OUT/present"
echo "acked=$(wc -l < "$OUT/acked") lost=$(comm -23 "$OUT/acked" "$OUT/present" | wc -l) committed_but_not_acked=$(comm -13 "$OUT/acked" "$OUT/present" | wc -l)"
nf=$(awk -v t="${first:-9e18}" '$1>=t && $2=="ok"' "$OUT/probe-$OPORT.log" | head -1 | cut -d' ' -f1)
echo "old primary ($VPORT) probe writes acked after the new primary's first probe write: $(awk -v t="${nf:-9e18}" '$1>=t && $2=="ok"' "$OUT/probe-$VPORT.log" | wc -l)"
[ "$MODE" = stop ] && echo "resumed_at=+$(echo "$TC - $T0" | bc) s; old-primary probe oks after resume: $(awk -v t="$TC" '$1>=t && $2=="ok"' "$OUT/probe-$VPORT.log" | wc -l)"
