#!/usr/bin/env bash
# A real single-node Slurm on localhost (Debian's packages; root; no systemd), for the tests of
# profiles/slurm.  slurm-up.sh [--with-dbd] [--fake-gpu N]
#   --with-dbd     MariaDB + slurmdbd, so that sacct works: the status path real clusters use.
#   --fake-gpu N   the node advertises N GPUs (stand-in devices), to test GPU scheduling.
set -euo pipefail
WITH_DBD=0; GPUS=0
while [ $# -gt 0 ]; do case "$1" in
  --with-dbd) WITH_DBD=1;;
  --fake-gpu) GPUS=$2; shift;;
  *) echo "slurm-up.sh: unknown argument $1" >&2; exit 2;; esac; shift; done
log() { echo "[slurm-up $(date +%T)] $*"; }
wait_for() { local secs=$1 what=$2; shift 2
  for _ in $(seq 1 $((secs * 4))); do "$@" >/dev/null 2>&1 && return 0; sleep 0.25; done
  log "timed out waiting for $what"; tail -n 30 /var/log/slurm/*.log 2>/dev/null || true; return 1; }

export DEBIAN_FRONTEND=noninteractive
pkgs="slurmctld slurmd slurm-client munge"
[ "$WITH_DBD" = 1 ] && pkgs="$pkgs slurmdbd mariadb-server"
if ! dpkg -s $pkgs >/dev/null 2>&1; then
  apt-get update -q >/dev/null
  apt-get install -y -q --no-install-recommends $pkgs >/dev/null
fi
HOST=$(hostname -s)
getent hosts "$HOST" >/dev/null || echo "127.0.0.1 $HOST" >> /etc/hosts
read -r CPUS MEM < <(slurmd -C | sed -n 's/.*CPUs=\([0-9]*\).*RealMemory=\([0-9]*\).*/\1 \2/p')
MEM=$(( MEM * 90 / 100 ))

if [ "$WITH_DBD" = 1 ]; then
  ACCT=$'AccountingStorageType=accounting_storage/slurmdbd\nAccountingStorageHost=localhost\nJobAcctGatherType=jobacct_gather/linux'
else
  ACCT=$'AccountingStorageType=accounting_storage/none\nJobAcctGatherType=jobacct_gather/none'
fi
GRES=""; NODE_GRES=""; rm -f /etc/slurm/gres.conf
if [ "$GPUS" -gt 0 ]; then
  GRES=$'GresTypes=gpu\nAccountingStorageTRES=gres/gpu'; NODE_GRES=" Gres=gpu:$GPUS"
  # File= is required (a count alone is rejected) and must be a device, one per GPU
  install -d /run/fake-gpu; : > /etc/slurm/gres.conf
  for i in $(seq 0 $((GPUS - 1))); do
    [ -c "/run/fake-gpu/nvidia$i" ] || mknod "/run/fake-gpu/nvidia$i" c 1 3   # a /dev/null twin
    echo "NodeName=$HOST Name=gpu File=/run/fake-gpu/nvidia$i" >> /etc/slurm/gres.conf
  done
fi
cat > /etc/slurm/slurm.conf <<CONF
ClusterName=ci
SlurmctldHost=$HOST
AuthType=auth/munge
CredType=cred/munge
MpiDefault=none
SlurmUser=slurm
SlurmdUser=root
StateSaveLocation=/var/lib/slurm/slurmctld
SlurmdSpoolDir=/var/lib/slurm/slurmd
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/affinity
ReturnToService=2
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
MinJobAge=300
$ACCT
$GRES
NodeName=$HOST CPUs=$CPUS RealMemory=$MEM$NODE_GRES State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
CONF
install -d -o slurm -g slurm /var/lib/slurm/slurmctld /var/log/slurm
install -d /var/lib/slurm/slurmd
pgrep -x slurmctld >/dev/null && { log "slurmctld already running: run slurm-down.sh first"; exit 1; }

if [ ! -s /etc/munge/munge.key ]; then
  dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key 2>/dev/null
  chown munge:munge /etc/munge/munge.key; chmod 400 /etc/munge/munge.key
fi
install -d -o munge -g munge -m 0755 /run/munge
runuser -u munge -- /usr/sbin/munged
wait_for 10 munged sh -c 'munge -n | unmunge'

if [ "$WITH_DBD" = 1 ]; then
  install -d -o mysql -g mysql /run/mysqld
  setsid /usr/sbin/mariadbd --user=mysql --skip-networking >/var/log/slurm/mariadbd.log 2>&1 </dev/null &
  wait_for 30 mariadb mariadb-admin ping
  mariadb -e "CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY 'slurmci';
              GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost'; FLUSH PRIVILEGES;"
  cat > /etc/slurm/slurmdbd.conf <<CONF
AuthType=auth/munge
DbdHost=localhost
SlurmUser=slurm
LogFile=/var/log/slurm/slurmdbd.log
PidFile=/run/slurmdbd.pid
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageUser=slurm
StoragePass=slurmci
StorageLoc=slurm_acct_db
CONF
  chown slurm:slurm /etc/slurm/slurmdbd.conf; chmod 600 /etc/slurm/slurmdbd.conf
  /usr/sbin/slurmdbd
  wait_for 30 slurmdbd sacctmgr -n list cluster
fi
# A throwaway cluster starts empty: jobs recovered from an earlier run that was cut off (a reboot
# mid-test) would hold the node, and the wait for an idle node below would time out.
rm -rf /var/lib/slurm/slurmd/*
/usr/sbin/slurmctld -c; wait_for 30 slurmctld scontrol ping
/usr/sbin/slurmd;    wait_for 60 "an idle node" sh -c "sinfo -h -N -o %T | grep -qx idle"
if [ "$WITH_DBD" = 1 ]; then   # slurmctld registers the cluster and root's association itself
  wait_for 30 "root's association" sh -c "sacctmgr -n -P list assoc format=user | grep -qx root"
fi
log "up: $(sinfo -h -o '%P %a %D %T %N %G')"
