#!/usr/bin/env bash
# A one-node SLURM on this machine, for trying the cluster path and for the tests.
#
#   bash scripts/local_slurm.sh up       # install if missing, start; last line: SLURM_CONF=PATH
#   bash scripts/local_slurm.sh status   # the node as sinfo sees it
#   bash scripts/local_slurm.sh down     # stop the daemons this script started, by pid
#
# Everything (config, munge key and socket, state, spool, logs, pid files) lives in one
# folder, $LOCAL_SLURM_DIR (default /tmp/flowers_sweep_slurm); nothing under /etc is
# touched. One partition, `debug`, holds the one node with this machine's CPUs and most
# of its memory. Clients and submitit find it through SLURM_CONF:
#
#   export SLURM_CONF=$(bash scripts/local_slurm.sh up | tail -1 | cut -d= -f2)
#
# Installing the packages (Debian's slurmctld, slurmd, slurm-client, munge) needs root.
# Short credential and scheduler intervals make a requeued job run again within about
# 15 s instead of nearly 3 minutes.
set -euo pipefail
DIR="${LOCAL_SLURM_DIR:-/tmp/flowers_sweep_slurm}"
CONF="$DIR/slurm.conf"
NODE="$(hostname -s)"
export SLURM_CONF="$CONF"

install_packages() {
  command -v slurmctld >/dev/null && command -v slurmd >/dev/null \
    && command -v sbatch >/dev/null && command -v munged >/dev/null && return
  echo "installing slurmctld slurmd slurm-client munge" >&2
  if ! apt-get install -y -qq slurmctld slurmd slurm-client munge >/dev/null 2>&1; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
      slurmctld slurmd slurm-client munge >/dev/null
  fi
}

write_config() {
  local cpus mem_mb
  cpus="$(nproc)"
  mem_mb=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 * 3 / 4 ))
  cat > "$CONF" <<CONF
ClusterName=local
SlurmctldHost=$NODE(127.0.0.1)
SlurmUser=root
SlurmdUser=root
SlurmctldPort=${LOCAL_SLURM_PORT:-6817}
SlurmdPort=$(( ${LOCAL_SLURM_PORT:-6817} + 1 ))
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$DIR/munge/munge.socket,cred_expire=10
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=5,bf_interval=2
ReturnToService=2
KillWait=10
NodeName=$NODE NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem_mb State=UNKNOWN
PartitionName=debug Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
CONF
}

running() {  # running PIDFILE: the daemon named by the file's name runs under that pid
  local pid name
  [[ -f "$1" ]] || return 1
  pid="$(cat "$1")"
  name="$(basename "$1" .pid)"
  [[ "$(cat "/proc/$pid/comm" 2>/dev/null)" == "$name" ]]
}

up() {
  install_packages
  if running "$DIR/slurmctld.pid" && running "$DIR/slurmd.pid"; then
    echo "already up" >&2
    echo "SLURM_CONF=$CONF"
    return
  fi
  mkdir -p "$DIR"/{state,spool,log,munge}
  chmod 700 "$DIR" "$DIR/munge"
  [[ -f "$DIR/munge/munge.key" ]] || {
    dd if=/dev/urandom of="$DIR/munge/munge.key" bs=1024 count=1 status=none
    chmod 400 "$DIR/munge/munge.key"
  }
  write_config
  running "$DIR/munged.pid" || munged --force --key-file="$DIR/munge/munge.key" \
    --socket="$DIR/munge/munge.socket" --pid-file="$DIR/munged.pid" \
    --log-file="$DIR/log/munged.log" --seed-file="$DIR/munge/munged.seed"
  running "$DIR/slurmctld.pid" || slurmctld -c -f "$CONF"  # -c: no jobs from a past run
  running "$DIR/slurmd.pid" || slurmd -f "$CONF" -N "$NODE"
  for _ in $(seq 1 60); do
    if sinfo -h -o '%T' 2>/dev/null | grep -qx idle; then
      echo "SLURM_CONF=$CONF"
      return
    fi
    sleep 0.5
  done
  echo "local_slurm: the node did not become idle within 30 s; logs in $DIR/log" >&2
  sinfo >&2 || true
  exit 1
}

down() {
  local name pid
  for name in slurmd slurmctld munged; do
    [[ -f "$DIR/$name.pid" ]] || continue
    pid="$(cat "$DIR/$name.pid")"
    if running "$DIR/$name.pid"; then
      kill "$pid"
      for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
      kill -0 "$pid" 2>/dev/null && kill -9 "$pid"
    fi
    rm -f "$DIR/$name.pid"
  done
  echo "down"
}

status() {
  if running "$DIR/slurmctld.pid"; then
    sinfo
  else
    echo "down (no slurmctld of $DIR running)"
    return 1
  fi
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  status) status ;;
  *) echo "usage: bash scripts/local_slurm.sh up|down|status" >&2; exit 2 ;;
esac
