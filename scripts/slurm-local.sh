#!/usr/bin/env bash
# slurm-local.sh: a throwaway one-node SLURM cluster on this machine, with accounting, for trying
# the Hydra submitit launcher (conf/hydra/launcher/slurm.yaml) and for CI. Debian 12, run as root.
#
#   eval "$(scripts/slurm-local.sh start)"   # install if missing, start, export SLURM_CONF
#   scripts/slurm-local.sh status            # daemons + sinfo; exit 0 if all run, else 3
#   scripts/slurm-local.sh stop              # cancel jobs, stop the daemons this script started
#
# `start` prints exactly one line on stdout, `export SLURM_CONF=<state dir>/slurm.conf`; all
# progress goes to stderr. Clients (sinfo, sbatch, sacct, submitit) find the cluster through
# SLURM_CONF only: nothing is written to /etc/slurm. Both commands are idempotent.
#
# Everything lives in one state folder, SLURM_LOCAL_DIR (default /tmp/initlab-slurm): configs,
# MariaDB data, munge key, spool, logs (log/) and PID files (run/). The one exception is munged's
# socket, which must be the default /run/munge/munge.socket.2 (slurm's link to slurmdbd ignores a
# custom one). All daemons listen on 127.0.0.1 only. Settings (environment, defaults):
#   SLURM_LOCAL_DIR=/tmp/initlab-slurm  SLURM_LOCAL_CLUSTER=initlab  SLURM_LOCAL_PARTITION=debug
#   SLURM_LOCAL_CTLD_PORT=6817  SLURM_LOCAL_SLURMD_PORT=6818  SLURM_LOCAL_DBD_PORT=6819
#   SLURM_LOCAL_DB_PORT=3307 (MariaDB; not 3306, to stay clear of a system MariaDB)
set -euo pipefail

STATE_DIR=${SLURM_LOCAL_DIR:-/tmp/initlab-slurm}
CLUSTER=${SLURM_LOCAL_CLUSTER:-initlab}
PARTITION=${SLURM_LOCAL_PARTITION:-debug}
CTLD_PORT=${SLURM_LOCAL_CTLD_PORT:-6817}
SLURMD_PORT=${SLURM_LOCAL_SLURMD_PORT:-6818}
DBD_PORT=${SLURM_LOCAL_DBD_PORT:-6819}
DB_PORT=${SLURM_LOCAL_DB_PORT:-3307}

ADDR=127.0.0.1
NODE=localhost
MUNGE_SOCKET=/run/munge/munge.socket.2
RUN_DIR=$STATE_DIR/run
LOG_DIR=$STATE_DIR/log
DB_DIR=$STATE_DIR/mysql
DB_SOCKET=$RUN_DIR/mysqld.sock
export SLURM_CONF=$STATE_DIR/slurm.conf

# Start order; stop goes in reverse (slurmd, slurmctld, slurmdbd, mariadbd, munged).
DAEMONS=(munged mariadbd slurmdbd slurmctld slurmd)
PACKAGES=(slurm-wlm munge mariadb-server slurmdbd)

log() { printf 'slurm-local: [%s] %s\n' "$(date +%T.%2N)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

# Print the last lines of a daemon's log (after a failed start).
show_log() { if [[ -f $LOG_DIR/$1.log ]]; then tail -n 20 "$LOG_DIR/$1.log" >&2; fi; }

# alive PID: the process exists and is not a zombie. (Here PID 1 reaps orphans only after ~2 s;
# a zombie has already exited.)
alive() { [[ -r /proc/$1/stat ]] && [[ $(awk '{print $3}' "/proc/$1/stat" 2>/dev/null) != Z ]]; }

# pid_of NAME: print the PID from run/NAME.pid if that process is alive and really is NAME
# (guards against a stale PID file whose number was reused).
pid_of() {
    local pid
    pid=$(cat "$RUN_DIR/$1.pid" 2>/dev/null) || return 1
    [[ $pid =~ ^[0-9]+$ ]] || return 1
    [[ $(cat "/proc/$pid/comm" 2>/dev/null) == "$1" ]] && alive "$pid" || return 1
    echo "$pid"
}

# wait_for SECONDS DESCRIPTION CMD...: retry CMD every 0.2 s until it succeeds.
wait_for() {
    local secs=$1 what=$2 i
    shift 2
    for ((i = 0; i < secs * 5; i++)); do
        "$@" >/dev/null 2>&1 && return 0
        sleep 0.2
    done
    log "timed out after ${secs}s waiting for $what"
    return 1
}

# ---------------------------------------------------------------------------------- install --
install_packages() {
    local missing=() pkg
    for pkg in "${PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' ||
            missing+=("$pkg")
    done
    ((${#missing[@]} == 0)) && return 0
    log "installing ${missing[*]} (apt-get)"
    export DEBIAN_FRONTEND=noninteractive
    local apt=(apt-get install -y -q --no-install-recommends "${missing[@]}")
    # stdout of apt goes to stderr: stdout is reserved for the export line.
    "${apt[@]}" >&2 || { apt-get update -q >&2 && "${apt[@]}" >&2; }
}

# ----------------------------------------------------------------------------------- config --
write_configs() {
    mkdir -p "$STATE_DIR" "$RUN_DIR" "$LOG_DIR" "$STATE_DIR/ctld" "$STATE_DIR/spool"

    # Node topology as slurmd sees it; declare only ~90% of the memory (declaring more than
    # slurmd measures drains the node).
    local hw field topo="" mem
    hw=$(slurmd -C | head -n 1)
    for field in CPUs Boards SocketsPerBoard CoresPerSocket ThreadsPerCore; do
        topo+=" $(grep -o "\b$field=[0-9]*" <<<"$hw")"
    done
    mem=$(grep -o 'RealMemory=[0-9]*' <<<"$hw" | cut -d= -f2)
    mem=$((mem * 9 / 10))

    cat >"$SLURM_CONF" <<EOF
# Written by scripts/slurm-local.sh: one node, loopback only.
ClusterName=$CLUSTER
SlurmctldHost=$NODE($ADDR)
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
# Without these the daemons also listen on every interface.
CommunicationParameters=NoCtldInAddrAny,NoInAddrAny
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CryptoType=crypto/munge
MpiDefault=none
# No cgroups needed. task/affinity pins each job to its allocated cores (sched_setaffinity),
# so os.sched_getaffinity() in a job sees only its share.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/affinity
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
ReturnToService=2
KillWait=10
MailProg=/bin/true
StateSaveLocation=$STATE_DIR/ctld
SlurmdSpoolDir=$STATE_DIR/spool
SlurmctldPidFile=$RUN_DIR/slurmctld.pid
SlurmdPidFile=$RUN_DIR/slurmd.pid
SlurmctldLogFile=$LOG_DIR/slurmctld.log
SlurmdLogFile=$LOG_DIR/slurmd.log
JobAcctGatherType=jobacct_gather/linux
JobCompType=jobcomp/none
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=$ADDR
AccountingStoragePort=$DBD_PORT
NodeName=$NODE NodeAddr=$ADDR$topo RealMemory=$mem State=UNKNOWN
PartitionName=$PARTITION Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
EOF

    # The MariaDB password for slurmdbd is made once and kept with the database.
    [[ -s $STATE_DIR/db.pass ]] ||
        (umask 077 && head -c 24 /dev/urandom | base64 | tr -dc 'A-Za-z0-9' >"$STATE_DIR/db.pass")

    # slurmdbd reads slurmdbd.conf from the folder of SLURM_CONF and insists on mode 600.
    (umask 077 && cat >"$STATE_DIR/slurmdbd.conf" <<EOF
# Written by scripts/slurm-local.sh.
AuthType=auth/munge
DbdHost=$NODE
DbdAddr=$ADDR
DbdPort=$DBD_PORT
CommunicationParameters=NoInAddrAny
SlurmUser=root
PidFile=$RUN_DIR/slurmdbd.pid
LogFile=$LOG_DIR/slurmdbd.log
StorageType=accounting_storage/mysql
StorageHost=$ADDR
StoragePort=$DB_PORT
StorageUser=slurm
StoragePass=$(cat "$STATE_DIR/db.pass")
StorageLoc=slurm_acct_db
EOF
    )
    chmod 600 "$STATE_DIR/slurmdbd.conf"
}

# ---------------------------------------------------------------------------------- daemons --
munge_works() { munge -n -S "$MUNGE_SOCKET" | unmunge -S "$MUNGE_SOCKET" >/dev/null; }

start_munged() {
    local key=$STATE_DIR/munge.key
    if [[ ! -s $key ]]; then
        (umask 277 && head -c 1024 /dev/urandom >"$key")
    fi
    chmod 400 "$key"
    install -d -m 755 /run/munge
    # --force: run as root and replace a stale socket left by a killed munged.
    munged --force --key-file="$key" --socket="$MUNGE_SOCKET" --pid-file="$RUN_DIR/munged.pid" \
        --log-file="$LOG_DIR/munged.log" --seed-file="$STATE_DIR/munged.seed" 9>&- ||
        { show_log munged; die "munged did not start"; }
    wait_for 10 munged munge_works || { show_log munged; die "munged does not answer"; }
}

db() { mariadb --no-defaults -S "$DB_SOCKET" -u root "$@"; }

start_mariadbd() {
    if [[ ! -d $DB_DIR/mysql ]]; then
        log "creating the accounting database in $DB_DIR"
        mariadb-install-db --no-defaults --user=root --datadir="$DB_DIR" --skip-test-db \
            --auth-root-authentication-method=socket >"$LOG_DIR/mariadb-install.log" 2>&1 ||
            { tail -n 20 "$LOG_DIR/mariadb-install.log" >&2; die "mariadb-install-db failed"; }
    fi
    # mariadbd stays in the foreground: detach it with setsid; it writes its own PID file.
    setsid mariadbd --no-defaults --user=root --datadir="$DB_DIR" --socket="$DB_SOCKET" \
        --pid-file="$RUN_DIR/mariadbd.pid" --bind-address=$ADDR --port="$DB_PORT" \
        --skip-name-resolve --log-error="$LOG_DIR/mariadbd.log" </dev/null >/dev/null 2>&1 9>&- &
    wait_for 30 mariadbd db -e 'SELECT 1' || { show_log mariadbd; die "mariadbd did not start"; }
    # (Re)create slurmdbd's user; with skip-name-resolve, TCP clients are '...'@'127.0.0.1'.
    db --batch <<EOF
CREATE USER IF NOT EXISTS 'slurm'@'$ADDR';
ALTER USER 'slurm'@'$ADDR' IDENTIFIED BY '$(cat "$STATE_DIR/db.pass")';
GRANT ALL ON slurm_acct_db.* TO 'slurm'@'$ADDR';
EOF
}

start_slurmdbd() {
    slurmdbd 9>&- || { show_log slurmdbd; die "slurmdbd did not start"; }
    wait_for 30 slurmdbd sacctmgr -n list cluster || { show_log slurmdbd; die "slurmdbd does not answer"; }
    # Register the cluster once (before slurmctld, which then registers itself at start).
    if ! sacctmgr -n -P list cluster format=cluster | grep -qx "$CLUSTER"; then
        sacctmgr -i add cluster "$CLUSTER" >&2
    fi
}

start_slurmctld() {
    slurmctld -f "$SLURM_CONF" 9>&- || { show_log slurmctld; die "slurmctld did not start"; }
    wait_for 30 slurmctld bash -c 'scontrol ping | grep -q UP' || { show_log slurmctld; die "slurmctld does not answer"; }
}

start_slurmd() {
    # -N: this node is called localhost in slurm.conf, whatever the machine's hostname.
    slurmd -f "$SLURM_CONF" -N "$NODE" 9>&- || { show_log slurmd; die "slurmd did not start"; }
}

# Wait until the node is usable; resume it if slurm drained or downed it.
wait_node_ready() {
    local state i
    for ((i = 0; i < 150; i++)); do
        state=$(sinfo -h -n "$NODE" -o %T 2>/dev/null || true)
        case $state in
        idle | mixed | allocated | completing) log "node $NODE is $state"; return 0 ;;
        drain* | down)
            log "node $NODE is $state: resuming"
            scontrol update NodeName="$NODE" State=RESUME >&2 || true
            ;;
        esac
        sleep 0.2
    done
    show_log slurmd
    die "node $NODE not ready (state: ${state:-unknown})"
}

cmd_start() {
    ((EUID == 0)) || die "run as root"
    local d pid all=1
    for d in slurmd slurmctld slurmdbd mariadbd; do
        pid_of "$d" >/dev/null || { all=0 && break; }
    done
    # munged last: probing a stale munge socket costs ~2 s (the client retries).
    if ((all)) && ! pid_of munged >/dev/null && ! munge_works 2>/dev/null; then all=0; fi
    if ((all)); then
        log "already running (state in $STATE_DIR)"
        echo "export SLURM_CONF=$SLURM_CONF"
        return 0
    fi

    install_packages
    mkdir -p "$STATE_DIR"
    # Serialise concurrent starts. Every daemon is started with 9>&- so that it does not
    # inherit (and keep holding) this lock.
    exec 9>"$STATE_DIR/.lock"
    flock -w 120 9 || die "another slurm-local.sh holds $STATE_DIR/.lock"
    # Only (re)write the configs while slurm itself is down.
    pid_of slurmctld >/dev/null || pid_of slurmd >/dev/null || pid_of slurmdbd >/dev/null ||
        write_configs

    for d in "${DAEMONS[@]}"; do
        if pid=$(pid_of "$d"); then
            log "$d already running (pid $pid)"
        elif [[ $d == munged ]] && munge_works 2>/dev/null; then
            log "munged already answers on $MUNGE_SOCKET (not started by this script; stop leaves it alone)"
        else
            log "starting $d"
            "start_$d"
        fi
    done
    wait_node_ready
    log "cluster '$CLUSTER' is up: partition '$PARTITION', node $NODE; logs in $LOG_DIR"
    echo "export SLURM_CONF=$SLURM_CONF"
}

# --------------------------------------------------------------------------------- stop/status --
stop_daemon() {
    local name=$1 pid i
    # Read the PID first: slurmctld deletes its PID file before it has exited.
    if ! pid=$(pid_of "$name"); then
        log "$name not running"
        rm -f "$RUN_DIR/$name.pid"
        return 0
    fi
    log "stopping $name (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 150; i++)); do # up to 30 s
        alive "$pid" || break
        sleep 0.2
    done
    if alive "$pid"; then
        log "$name did not exit after 30 s: killing it"
        kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -f "$RUN_DIR/$name.pid"
}

cmd_stop() {
    [[ -d $RUN_DIR ]] || { log "not running (no $RUN_DIR)"; return 0; }
    if pid_of slurmctld >/dev/null; then
        local jobs i
        # A sweep's last task ends ~1 s after the launcher returns: give jobs 2 s to finish on
        # their own, so that sacct records them COMPLETED, not CANCELLED.
        for ((i = 0; i < 10; i++)); do
            [[ -z $(squeue -h -o %A 2>/dev/null) ]] && break
            sleep 0.2
        done
        jobs=$(squeue -h -o %A 2>/dev/null | sort -u | tr '\n' ' ')
        if [[ -n ${jobs// /} ]]; then
            log "cancelling jobs: $jobs"
            # shellcheck disable=SC2086
            scancel $jobs || true
            for ((i = 0; i < 100; i++)); do # up to 20 s (KillWait=10)
                [[ -z $(squeue -h -o %A 2>/dev/null) ]] && break
                sleep 0.2
            done
        fi
    fi
    local d
    for d in slurmd slurmctld slurmdbd mariadbd munged; do
        stop_daemon "$d"
    done
    log "stopped"
}

cmd_status() {
    local d pid rc=0
    for d in "${DAEMONS[@]}"; do
        if pid=$(pid_of "$d"); then
            printf '%-10s running (pid %s)\n' "$d" "$pid"
        elif [[ $d == munged ]] && munge_works 2>/dev/null; then
            printf '%-10s running (not started by this script)\n' "$d"
        else
            printf '%-10s not running\n' "$d"
            rc=3
        fi
    done
    echo "SLURM_CONF=$SLURM_CONF"
    if pid_of slurmctld >/dev/null; then
        sinfo || rc=3
        squeue || true
    fi
    return "$rc"
}

case ${1:-} in
start) cmd_start ;;
stop) cmd_stop ;;
status) cmd_status ;;
*)
    echo "usage: $0 start|stop|status   (see the header of this script)" >&2
    exit 2
    ;;
esac
