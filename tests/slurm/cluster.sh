#!/usr/bin/env bash
# A single-node SLURM cluster on 127.0.0.1 for convscope's SLURM test
# (Debian 12, slurm-wlm 22.05, as root, no systemd, no slurmdbd).
#
#   tests/slurm/cluster.sh start    install (only if missing) and start; idempotent
#                                   (exit 3: the packages could not be installed)
#   tests/slurm/cluster.sh stop     cancel our jobs, stop only the daemons we started
#   tests/slurm/cluster.sh status   exit 0 when the controller answers and the node is usable
#
# State, logs and fake devices live under $CONVSCOPE_SLURM_DIR (default
# /var/lib/convscope-slurm); the daemons use their own ports. The configuration must be
# /etc/slurm/slurm.conf, where every client looks: the jobstep plugin clears SLURM_CONF
# (all SLURM_* variables) before its `srun`, so a private path fails inside jobs. The
# script writes it only when there is none or it wrote it before (a marker line), so
# the configuration of a real SLURM installation is never replaced.
# Knobs (environment): CONVSCOPE_SLURM_DIR, SLURM_FAKE_GPUS (1), SLURM_PARTITION (debug),
# SLURM_PORT (6917; slurmd uses +1), SLURM_WAIT (60 s per wait).
# Pitfalls this encodes (measured with snakemake-executor-plugin-slurm 2.8.0):
#  - no slurmdbd, so `sacct` cannot answer: Snakemake must use --slurm-status-command
#    squeue, and MinJobAge must keep finished jobs visible to squeue long enough;
#  - TaskPlugin=task/affinity: the jobstep plugin runs `srun --cpu-bind=q`;
#  - DefMemPerCPU: without it a job without --mem takes the whole node (one at a time);
#  - gres/gpu devices must be character devices: fake GPUs are /dev/null clones;
#  - proctrack/pgid, not linuxproc: a cancelled job's Snakemake can outlive its
#    shell (re-parented to init, hung on shutdown) and linuxproc then loses it.
set -euo pipefail

DIR=${CONVSCOPE_SLURM_DIR:-/var/lib/convscope-slurm}
FAKE_GPUS=${SLURM_FAKE_GPUS:-1}
PARTITION=${SLURM_PARTITION:-debug}
PORT=${SLURM_PORT:-6917}
WAIT=${SLURM_WAIT:-60}
ETC=/etc/slurm
CONF=$ETC/slurm.conf
MARK="# written by convscope tests/slurm/cluster.sh"
STATE=$DIR/run        # PID files of the daemons this script started
LOGS=$DIR/log
H=$(hostname -s)
export DEBIAN_FRONTEND=noninteractive
unset SLURM_CONF

log() { echo "[convscope-slurm] $*" >&2; }
die() { echo "[convscope-slurm] ERROR: $*" >&2; exit 1; }
wait_for() {  # wait_for SECONDS CMD... : poll CMD every 0.5 s until it succeeds
  local end=$((SECONDS + $1)); shift
  until "$@" >/dev/null 2>&1; do [ "$SECONDS" -ge "$end" ] && return 1; sleep 0.5; done
}
alive() {  # alive PIDFILE COMM : the pid in the file runs and has the expected name
  local p; [ -s "$1" ] || return 1; p=$(cat "$1")
  [ -r "/proc/$p/comm" ] && [ "$(cat "/proc/$p/comm")" = "$2" ]
}
record() {  # record NAME DAEMON_PIDFILE : wait for the daemon's pid file, keep a copy
  wait_for "$WAIT" alive "$2" "$1" || die "$1 did not start (see $LOGS/$1.log)"
  cp "$2" "$STATE/$1.pid"
}
stop_ours() {  # stop_ours NAME : TERM (then KILL) a daemon that this script started
  local f=$STATE/$1.pid p
  if alive "$f" "$1"; then
    p=$(cat "$f"); kill -TERM "$p"
    wait_for 30 bash -c "! kill -0 $p" || { log "$1 ($p) ignored TERM, sending KILL"; kill -KILL "$p"; }
    log "stopped $1 ($p)"
  fi
  rm -f "$f"
}
node_ok() { sinfo -h -N -n "$H" -o %T | grep -qE '^(idle|mixed|allocated|completing)$'; }

install_missing() {
  local pkgs=(munge slurmctld slurmd slurm-client) missing=() p tmp_policy=0
  for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  command -v apt-get >/dev/null || { echo "[convscope-slurm] ERROR: apt-get not found: install ${missing[*]} by hand" >&2; exit 3; }
  log "installing ${missing[*]} (apt, once)"
  if [ ! -e /usr/sbin/policy-rc.d ]; then  # keep postinst scripts from starting daemons
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; chmod 755 /usr/sbin/policy-rc.d; tmp_policy=1
  fi
  local rc=0
  { timeout 300 apt-get update -qq && \
    timeout 600 apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; } || rc=$?
  [ "$tmp_policy" = 1 ] && rm -f /usr/sbin/policy-rc.d
  # Exit 3: the test skips (cannot install here) rather than fails.
  [ "$rc" = 0 ] || { echo "[convscope-slurm] ERROR: apt-get could not install ${missing[*]} (exit $rc)" >&2; exit 3; }
}

ours() {  # ours FILE : absent, or written by this script
  [ ! -e "$1" ] || head -1 "$1" | grep -qxF "$MARK"
}

write_config() {
  local f
  for f in "$CONF" "$ETC/gres.conf"; do
    ours "$f" || die "$f exists and was not written by this script: a real SLURM installation? Not touching it"
  done
  mkdir -p "$ETC" "$STATE" "$LOGS" "$DIR/ctld" "$DIR/slurmd"
  # Real CPU topology (jobs really share these cores); memory is declared, not probed
  # (config_overrides), so the profile's mem_mb requests fit on any test machine.
  # Memory is not enforced here (no cgroups), only accounted for scheduling.
  local topo
  topo=$(slurmd -C 2>/dev/null | head -1 |
    grep -o 'CPUs=[0-9]* Boards=[0-9]* SocketsPerBoard=[0-9]* CoresPerSocket=[0-9]* ThreadsPerCore=[0-9]*' || true)
  [ -n "$topo" ] || topo="CPUs=$(nproc)"
  local gres_types="" gres_node="" gres_conf=""
  if [ "$FAKE_GPUS" -gt 0 ]; then
    mkdir -p "$DIR/fakegpu"
    local i files
    for i in $(seq 0 $((FAKE_GPUS - 1))); do
      [ -c "$DIR/fakegpu/nvidia$i" ] || mknod -m 666 "$DIR/fakegpu/nvidia$i" c 1 3
    done
    files=$DIR/fakegpu/nvidia0
    [ "$FAKE_GPUS" -gt 1 ] && files="$DIR/fakegpu/nvidia[0-$((FAKE_GPUS - 1))]"
    gres_types="GresTypes=gpu"
    gres_node="Gres=gpu:fake:$FAKE_GPUS"
    gres_conf="NodeName=$H Name=gpu Type=fake File=$files"
  fi
  cat > "$CONF.new" <<EOF
$MARK
ClusterName=convscope
SlurmctldHost=$H(127.0.0.1)
AuthType=auth/munge
SlurmUser=root
SlurmctldPort=$PORT
SlurmdPort=$((PORT + 1))
StateSaveLocation=$DIR/ctld
SlurmdSpoolDir=$DIR/slurmd
SlurmctldPidFile=$DIR/ctld/slurmctld.pid
SlurmdPidFile=$DIR/slurmd/slurmd.pid
SlurmctldLogFile=$LOGS/slurmctld.log
SlurmdLogFile=$LOGS/slurmd.log
ProctrackType=proctrack/pgid
TaskPlugin=task/affinity
MpiDefault=none
MailProg=/bin/true
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
SlurmdParameters=config_overrides
DefMemPerCPU=1000
ReturnToService=2
MinJobAge=600
KillWait=5
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
$gres_types
NodeName=$H NodeAddr=127.0.0.1 $topo RealMemory=65536 $gres_node State=UNKNOWN
PartitionName=$PARTITION Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
  printf '%s\n%s\n' "$MARK" "$gres_conf" > "$ETC/gres.conf.new"
  local changed=0
  for f in "$CONF" "$ETC/gres.conf"; do
    if ! cmp -s "$f.new" "$f"; then mv "$f.new" "$f"; changed=1; else rm -f "$f.new"; fi
  done
  chmod 644 "$CONF" "$ETC/gres.conf"
  if [ "$changed" = 1 ]; then
    log "configuration written to $CONF"
    stop_ours slurmd; stop_ours slurmctld   # restarted below with the new configuration
  fi
}

start_munge() {
  if [ ! -s /etc/munge/munge.key ]; then
    mungekey --create --keyfile=/etc/munge/munge.key 2>/dev/null ||
      dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
  fi
  chown munge:munge /etc/munge/munge.key; chmod 0400 /etc/munge/munge.key
  install -d -o munge -g munge -m 0755 /run/munge
  if alive "$STATE/munged.pid" munged; then return 0; fi
  if munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
    log "using a munged not started by this script"; return 0
  fi
  runuser -u munge -- /usr/sbin/munged 9>&-   # daemons must not inherit the lock
  record munged /run/munge/munged.pid
  wait_for "$WAIT" bash -c 'munge -n | unmunge' || die "munge does not work"
  log "munged started"
}

start() {
  [ "$(id -u)" = 0 ] || die "run as root"
  install_missing
  exec 9>"${DIR}.lock"; flock -w 120 9 || die "another start/stop holds ${DIR}.lock"
  write_config
  start_munge
  if ! alive "$STATE/slurmctld.pid" slurmctld; then
    # -c: a fresh controller state (no jobs left over from an earlier run).
    slurmctld -c -f "$CONF" 9>&-
    record slurmctld "$DIR/ctld/slurmctld.pid"
    wait_for "$WAIT" bash -c 'scontrol ping | grep -q UP' || die "slurmctld not UP, see $LOGS/slurmctld.log"
    log "slurmctld started"
  fi
  if ! alive "$STATE/slurmd.pid" slurmd; then
    slurmd -f "$CONF" -N "$H" 9>&-
    record slurmd "$DIR/slurmd/slurmd.pid"
    log "slurmd started"
  fi
  if ! wait_for 20 node_ok; then
    scontrol update nodename="$H" state=resume 2>/dev/null || true
    wait_for "$WAIT" node_ok || die "node $H not usable: $(sinfo -h -N -o '%T %E'); see $LOGS/"
  fi
  timeout "$WAIT" srun -t 1 -N1 -n1 true || die "srun smoke test failed, see $LOGS/"
  log "cluster ready: partition=$PARTITION node=$H fake GPUs=$FAKE_GPUS config=$CONF"
}

stop() {
  [ -d "$STATE" ] || { log "nothing started under $DIR"; return 0; }
  exec 9>"${DIR}.lock"; flock -w 120 9 || die "another start/stop holds ${DIR}.lock"
  if alive "$STATE/slurmctld.pid" slurmctld; then
    # Cancel this cluster's jobs first, so that no slurmstepd is orphaned.
    local ids
    ids=$(timeout 10 squeue -h -t PD,R,CG,S -o %i 2>/dev/null | tr '\n' ' ' || true)
    if [ -n "${ids// /}" ]; then
      log "cancelling jobs: $ids"
      timeout 10 scancel $ids 2>/dev/null || true
      wait_for 30 bash -c '[ -z "$(squeue -h -t PD,R,CG -o %i)" ]' || log "jobs still ending: $(squeue -h -o '%i %T')"
    fi
  fi
  stop_ours slurmd
  stop_ours slurmctld
  stop_ours munged
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) scontrol ping 2>/dev/null | grep -q UP && node_ok ;;
  *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
