#!/usr/bin/env bash
# A throw-away single-node Slurm cluster for the sharded-sweep test:
#   slurm-test-cluster.sh start DIR   configure in DIR and start munged, slurmctld, slurmd
#   slurm-test-cluster.sh stop DIR    stop exactly the daemons `start` started
# Runs as root with Debian's munge/slurmctld/slurmd (scripts/setup.sh --test
# installs them). Everything lives under DIR; the daemons' pids go to DIR/*.pid.
set -euo pipefail
cmd="${1:?usage: $0 start|stop DIR}"
DIR="$(mkdir -p "${2:?usage: $0 start|stop DIR}" && cd "$2" && pwd)"
HOST="$(hostname -s)"

stop() {
    for d in slurmd slurmctld munged; do
        if [ -f "$DIR/$d.pid" ]; then
            pid="$(cat "$DIR/$d.pid")"
            kill "$pid" 2>/dev/null || true
            for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
            kill -9 "$pid" 2>/dev/null || true
            rm -f "$DIR/$d.pid"
        fi
    done
}

start() {
    for b in munged slurmctld slurmd sbatch squeue; do
        command -v "$b" >/dev/null || { echo "$b not found: run scripts/setup.sh --test" >&2; exit 1; }
    done
    mkdir -p "$DIR/munge" "$DIR/spool/ctld" "$DIR/spool/d" "$DIR/log"
    chmod 700 "$DIR/munge"
    # munged wants a private key file owned by the user it runs as.
    [ -f "$DIR/munge/munge.key" ] || dd if=/dev/urandom of="$DIR/munge/munge.key" bs=1024 count=1 status=none
    chmod 400 "$DIR/munge/munge.key"
    munged --force --key-file="$DIR/munge/munge.key" --socket="$DIR/munge/munge.socket" \
        --pid-file="$DIR/munged.pid" --log-file="$DIR/log/munged.log" --seed-file="$DIR/munge/seed"
    cat > "$DIR/slurm.conf" <<CONF
ClusterName=harttest
SlurmctldHost=$HOST
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket=$DIR/munge/munge.socket
CredType=cred/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SwitchType=switch/none
MpiDefault=none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
ReturnToService=2
StateSaveLocation=$DIR/spool/ctld
SlurmdSpoolDir=$DIR/spool/d
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
SlurmctldPort=$((6817 + RANDOM % 1000))
SlurmdPort=$((7900 + RANDOM % 1000))
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
MaxArraySize=1000
NodeName=$HOST CPUs=2 State=UNKNOWN
PartitionName=test Nodes=$HOST Default=YES MaxTime=INFINITE State=UP
CONF
    export SLURM_CONF="$DIR/slurm.conf"
    slurmctld -f "$DIR/slurm.conf" -i
    slurmd -f "$DIR/slurm.conf"
    for _ in $(seq 100); do
        if sinfo -h -o %T 2>/dev/null | grep -qE '^(idle|mixed|allocated)'; then
            echo "slurm up: SLURM_CONF=$DIR/slurm.conf"
            return 0
        fi
        sleep 0.2
    done
    echo "slurm did not come up; logs in $DIR/log" >&2
    tail -5 "$DIR"/log/*.log >&2 || true
    stop
    exit 1
}

case "$cmd" in
    start) start ;;
    stop) stop ;;
    *) echo "usage: $0 start|stop DIR" >&2; exit 2 ;;
esac
