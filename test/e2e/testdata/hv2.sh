#!/usr/bin/env bash
# hv2.sh: a second libvirt hypervisor on this machine, for the end-to-end
# test that splits a class across two hosts. It lives in its own network
# namespace and its own (private) mount namespace, runs its own virtlogd,
# libvirtd and sshd, and is reached over SSH like any remote host.
#
#   hv2.sh up DIR      make it (idempotent), then prove it answers
#   hv2.sh check DIR   prove it answers (list, pool-list, nodeinfo; host unaffected)
#   hv2.sh probe DIR   pool + volume upload + a tiny domain, over qemu+ssh; cleaned after
#   hv2.sh uri DIR     print the qemu+ssh URI
#   hv2.sh down DIR    kill what up started (by pid files under DIR), delete netns, veth, DIR
#
# DIR is a scratch directory (e.g. /tmp/hv2) that every QEMU user can
# traverse (libvirt-qemu must reach DIR/pool). Inside the mount namespace
# DIR/root/{run,var/lib/libvirt,var/log/libvirt,var/cache/libvirt,etc/libvirt}
# are bind-mounted over the real paths, so the host's libvirtd (its sockets
# in /run/libvirt, its domains in /etc/libvirt/qemu) is neither seen nor
# touched. Pid files land in DIR/root/run (the namespace's /run).
#
# Needs root, iproute2, util-linux (nsenter, unshare), openssh-server and
# openssh-client, libvirt-daemon-system, qemu-utils.
set -euo pipefail

NS=${HV2_NS:-labforge-hv2}
HOST_IF=${HV2_HOST_IF:-lfhv2-h}
NS_IF=${HV2_NS_IF:-lfhv2-n}
HOST_IP=${HV2_HOST_IP:-10.231.0.1}
NS_IP=${HV2_NS_IP:-10.231.0.2}
PREFIX=30

die() { echo "hv2: $*" >&2; exit 1; }
log() { echo "hv2: $*" >&2; }

usage() { die "usage: $0 up|check|probe|uri|down DIR"; }

[ $# -eq 2 ] || usage
cmd=$1
[ "$(id -u)" -eq 0 ] || die "run as root"
case $2 in /*) ;; *) die "DIR must be absolute" ;; esac
DIR=${2%/}
[ -n "$DIR" ] && [ "$DIR" != / ] || die "refusing DIR=/"
R=$DIR/root            # the namespace's private tree
RUN=$R/run             # the namespace's /run (pid files, libvirt sockets)

# uri: what a client on the host uses. command= points libvirt's ssh
# transport (virsh) at a wrapper that pins DIR/known_hosts; known_hosts=
# names the same file to labforge, which speaks SSH itself (host key
# checked, root's ~/.ssh untouched).
uri() { echo "qemu+ssh://root@$NS_IP/system?keyfile=$DIR/id_ed25519&known_hosts=$DIR/known_hosts&command=$DIR/ssh&no_tty=1"; }

# in_ns runs a command inside hv2's network and mount namespaces.
in_ns() { nsenter -t "$(cat "$DIR/holder.pid")" -m -n -- "$@"; }

ns_inode() { stat -L -c %i "/run/netns/$NS" 2>/dev/null || true; }

# ours PID: alive and in hv2's network namespace (guards against pid reuse).
ours() {
  local pid=$1 want
  want=$(ns_inode)
  [ -n "$pid" ] && [ -n "$want" ] && [ -e "/proc/$pid" ] || return 1
  [ "$(readlink "/proc/$pid/ns/net" 2>/dev/null)" = "net:[$want]" ]
}

pidof_file() { [ -s "$1" ] && tr -dc 0-9 <"$1" || true; }

wait_for() { # wait_for SECONDS DESC CMD...
  local t=$1 what=$2; shift 2
  for _ in $(seq "$((t * 5))"); do "$@" >/dev/null 2>&1 && return 0; sleep 0.2; done
  die "timed out waiting for $what"
}

up() {
  local t0=$SECONDS
  mkdir -p "$DIR"
  touch "$DIR/.hv2"
  chmod 0755 "$DIR"
  mkdir -p "$RUN/sshd" "$R/var/lib/libvirt" "$R/var/log/libvirt" "$R/var/cache/libvirt" "$R/etc/libvirt" "$DIR/pool"
  chmod 0755 "$RUN" "$RUN/sshd"

  # libvirt's configuration: the host's conf files only, none of its
  # domains, networks or pools (those live in /etc/libvirt/qemu, storage).
  if [ ! -e "$R/etc/libvirt/libvirtd.conf" ]; then
    find /etc/libvirt -maxdepth 1 -type f -exec cp -p {} "$R/etc/libvirt/" \;
    [ -d /etc/libvirt/nwfilter ] && cp -a /etc/libvirt/nwfilter "$R/etc/libvirt/"
    mkdir -p "$R/etc/libvirt/qemu" "$R/etc/libvirt/storage" "$R/etc/libvirt/secrets"
  fi
  # QEMU's capabilities cache, copied so the new libvirtd need not re-probe
  # QEMU (CPU the 2 cores lack); libvirt re-probes if it is stale anyway.
  if [ -d /var/cache/libvirt/qemu ] && [ ! -e "$R/var/cache/libvirt/qemu" ]; then
    cp -a /var/cache/libvirt/qemu "$R/var/cache/libvirt/" || true
  fi

  # keys: client key, host key, authorized_keys, known_hosts, ssh wrapper.
  [ -e "$DIR/id_ed25519" ] || ssh-keygen -q -t ed25519 -N '' -C hv2-client -f "$DIR/id_ed25519"
  [ -e "$DIR/ssh_host_ed25519_key" ] || ssh-keygen -q -t ed25519 -N '' -C hv2-host -f "$DIR/ssh_host_ed25519_key"
  cp "$DIR/id_ed25519.pub" "$DIR/authorized_keys"
  echo "$NS_IP $(cut -d' ' -f1,2 "$DIR/ssh_host_ed25519_key.pub")" >"$DIR/known_hosts"
  cat >"$DIR/ssh" <<EOF
#!/bin/sh
exec /usr/bin/ssh -o UserKnownHostsFile=$DIR/known_hosts -o StrictHostKeyChecking=yes -o BatchMode=yes -o ConnectTimeout=10 "\$@"
EOF
  chmod 0755 "$DIR/ssh"
  cat >"$DIR/sshd_config" <<EOF
ListenAddress $NS_IP:22
HostKey $DIR/ssh_host_ed25519_key
PidFile /run/sshd.pid
AuthorizedKeysFile $DIR/authorized_keys
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
AllowStreamLocalForwarding yes
AllowTcpForwarding yes
UseDNS no
LogLevel INFO
EOF

  # network namespace and veth pair.
  [ -e "/run/netns/$NS" ] || ip netns add "$NS"
  ip -n "$NS" link set lo up
  if ! ip link show "$HOST_IF" >/dev/null 2>&1; then
    ip link add "$HOST_IF" type veth peer name "$NS_IF" netns "$NS"
  fi
  ip addr replace "$HOST_IP/$PREFIX" dev "$HOST_IF"
  ip link set "$HOST_IF" up
  ip -n "$NS" addr replace "$NS_IP/$PREFIX" dev "$NS_IF"
  ip -n "$NS" link set "$NS_IF" up
  ip -n "$NS" route replace default via "$HOST_IP" dev "$NS_IF"

  # the holder: keeps the private mount namespace (inside the netns) alive;
  # every daemon is started in it with nsenter.
  if ! ours "$(pidof_file "$DIR/holder.pid")"; then
    rm -f "$DIR/holder.pid"
    setsid nsenter --net="/run/netns/$NS" -- unshare --mount --propagation private -- /bin/sh -c '
      set -e; R=$1
      exec 3>"$2.tmp"
      mount --bind "$R/var/lib/libvirt" /var/lib/libvirt
      mount --bind "$R/var/log/libvirt" /var/log/libvirt
      mount --bind "$R/var/cache/libvirt" /var/cache/libvirt
      mount --bind "$R/etc/libvirt" /etc/libvirt
      mount --bind "$R/run" /run        # last: DIR may itself be under /run
      echo $$ >&3; exec 3>&-
      exec sleep infinity' hv2-holder "$R" "$DIR/holder.pid" \
      </dev/null >"$DIR/holder.log" 2>&1 &
    wait_for 10 "the namespace holder" test -s "$DIR/holder.pid.tmp"
    mv "$DIR/holder.pid.tmp" "$DIR/holder.pid"
  fi
  ours "$(pidof_file "$DIR/holder.pid")" || die "holder not in $NS (see $DIR/holder.log)"

  # the daemons, each only if its pid file names a live process of ours.
  if ! ours "$(pidof_file "$RUN/virtlogd.pid")"; then
    in_ns virtlogd -d
    wait_for 10 virtlogd test -S "$RUN/libvirt/virtlogd-sock"
  fi
  if ! ours "$(pidof_file "$RUN/libvirtd.pid")"; then
    in_ns libvirtd -d
    wait_for 60 libvirtd in_ns virsh -c qemu:///system version
  fi
  if ! ours "$(pidof_file "$RUN/sshd.pid")"; then
    in_ns /usr/sbin/sshd -f "$DIR/sshd_config" -E "$DIR/sshd.log"
    wait_for 10 sshd "$DIR/ssh" -i "$DIR/id_ed25519" "root@$NS_IP" true
  fi
  log "up in $((SECONDS - t0)) s: netns $NS, $NS_IF $NS_IP <-> $HOST_IF $HOST_IP"
  check
  log "URI: $(uri)"
}

check() {
  local u rc=0 hv2 host
  u=$(uri)
  virsh -c "$u" list --all >"$DIR/hv2.list" || { log "FAIL virsh list over qemu+ssh"; rc=1; }
  virsh -c "$u" pool-list --all >/dev/null || { log "FAIL virsh pool-list over qemu+ssh"; rc=1; }
  virsh -c "$u" nodeinfo >/dev/null || { log "FAIL virsh nodeinfo over qemu+ssh"; rc=1; }
  virsh -c qemu:///system list --all >"$DIR/host.list" || { log "FAIL host virsh list"; rc=1; }
  # the two libvirtds must be distinct: different hostnames are not a
  # given (same UTS namespace), so compare their sockets' inodes.
  hv2=$(in_ns stat -L -c %i /run/libvirt/libvirt-sock)
  host=$(stat -L -c %i /run/libvirt/libvirt-sock)
  [ "$hv2" != "$host" ] || { log "FAIL hv2 and host share a libvirt socket"; rc=1; }
  # go-libvirt's SSH dialer forwards a unix socket over SSH (streamlocal);
  # prove sshd allows it, with virsh through a forwarded socket.
  local fwd=$DIR/fwd.sock
  rm -f "$fwd"
  "$DIR/ssh" -i "$DIR/id_ed25519" -N -o ExitOnForwardFailure=yes \
    -L "$fwd:/var/run/libvirt/libvirt-sock" "root@$NS_IP" &
  local sp=$!
  for _ in $(seq 50); do [ -S "$fwd" ] && break; sleep 0.2; done
  virsh -c "qemu:///system?socket=$fwd" list --all >"$DIR/fwd.list" 2>&1 || { log "FAIL virsh over a forwarded unix socket"; rc=1; }
  kill "$sp" 2>/dev/null; wait "$sp" 2>/dev/null || true
  rm -f "$fwd"
  cmp -s "$DIR/hv2.list" "$DIR/fwd.list" || { log "FAIL forwarded socket reached another libvirtd"; rc=1; }
  [ $rc -eq 0 ] && log "check: ok (list, pool-list, nodeinfo over qemu+ssh; streamlocal forward; host libvirtd distinct)"
  return $rc
}

probe() {
  local u pool=hv2probe dom=hv2-probe rc=0
  u=$(uri)
  v() { virsh -q -c "$u" "$@"; }
  # storage: a dir pool under DIR/pool, a qcow2 volume uploaded over SSH.
  v pool-define-as "$pool" dir --target "$DIR/pool" >/dev/null
  v pool-build "$pool" >/dev/null
  v pool-start "$pool" >/dev/null
  qemu-img create -q -f qcow2 "$DIR/probe-src.qcow2" 32M
  v vol-create-as "$pool" probe.qcow2 32M --format qcow2 >/dev/null
  v vol-upload --pool "$pool" probe.qcow2 "$DIR/probe-src.qcow2"
  if qemu-img info "$DIR/pool/probe.qcow2" | grep -q 'file format: qcow2' &&
     cmp -s "$DIR/probe-src.qcow2" "$DIR/pool/probe.qcow2"; then
    log "probe: pool $pool + vol-upload ok"
  else
    log "FAIL probe: uploaded volume differs"; rc=1
  fi
  # a tiny domain: the volume as its disk, slirp through qemu:commandline as
  # labforge does (libvirt 9.0's portForward needs passt), forward on NS_IP.
  cat >"$DIR/probe.xml" <<EOF
<domain type='qemu' xmlns:qemu='http://libvirt.org/schemas/domain/qemu/1.0'>
  <name>$dom</name>
  <memory unit='MiB'>64</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64' machine='q35'>hvm</type></os>
  <on_poweroff>destroy</on_poweroff>
  <devices>
    <disk type='volume' device='disk'>
      <driver name='qemu' type='qcow2'/>
      <source pool='$pool' volume='probe.qcow2'/>
      <target dev='vda' bus='virtio'/>
    </disk>
    <interface type='user'><model type='virtio'/></interface>
  </devices>
  <qemu:commandline>
    <qemu:arg value='-netdev'/>
    <qemu:arg value='user,id=lfnet0,hostfwd=tcp:$NS_IP:2222-:22,hostfwd=tcp:127.0.0.1:2223-:22'/>
    <qemu:arg value='-device'/>
    <qemu:arg value='virtio-net-pci,netdev=lfnet0,bus=pcie.0,addr=0x10'/>
  </qemu:commandline>
</domain>
EOF
  v define "$DIR/probe.xml" >/dev/null
  if v start "$dom" >/dev/null; then
    local qpid; qpid=$(pidof_file "$RUN/libvirt/qemu/$dom.pid")
    if ours "$qpid"; then log "probe: domain running, QEMU pid $qpid in netns $NS"; else log "FAIL probe: QEMU ($qpid) not in $NS"; rc=1; fi
    sleep 1
    if in_ns ss -Hltn | grep -q "$NS_IP:2222" && timeout 5 bash -c "exec 3<>/dev/tcp/$NS_IP/2222"; then
      log "probe: hostfwd $NS_IP:2222 listens in the netns and is reachable from the host"
    else
      log "FAIL probe: hostfwd $NS_IP:2222 not reachable"; rc=1
    fi
    in_ns ss -Hltn | grep -q "127.0.0.1:2223" && ! ss -Hltn | grep -q "127.0.0.1:2223 " &&
      log "probe: hostfwd 127.0.0.1:2223 is the netns' loopback (not the host's)"
    [ -z "$(virsh -q -c qemu:///system list --all --name | grep -x "$dom" || true)" ] &&
      log "probe: host libvirtd does not see $dom"
    v destroy "$dom" >/dev/null
  else
    log "FAIL probe: domain did not start (see $R/var/log/libvirt/qemu/$dom.log)"; rc=1
  fi
  v undefine "$dom" >/dev/null
  v vol-delete --pool "$pool" probe.qcow2 >/dev/null
  v pool-destroy "$pool" >/dev/null
  v pool-undefine "$pool" >/dev/null
  rm -f "$DIR/probe-src.qcow2"
  [ $rc -eq 0 ] && log "probe: ok, domain and pool removed"
  return $rc
}

down() {
  [ -e "$DIR" ] || { log "nothing at $DIR"; }
  if [ -e "$DIR" ] && [ ! -e "$DIR/.hv2" ]; then die "$DIR was not made by hv2.sh up; not touching it"; fi
  local f pid name names=""
  # running domains: destroyed through hv2's libvirtd, which then removes
  # their cgroups (shared with the host's: /sys/fs/cgroup/*/machine).
  for f in "$RUN"/libvirt/qemu/*.pid; do
    name=$(basename "$f" .pid)
    [ -e "$RUN/libvirt/qemu/$name.xml" ] || continue   # driver.pid is the driver's own lock
    # cgroup name qemu-ID-NAME: ID from the status file, so a host domain of the same name is spared.
    names="$names $(grep -o "<domain type='[a-z]*' id='[0-9]*'" "$RUN/libvirt/qemu/$name.xml" 2>/dev/null | grep -o "id='[0-9]*'" | tr -dc 0-9 || true)-$name"
    ours "$(pidof_file "$DIR/holder.pid")" && in_ns virsh -q -c qemu:///system destroy "$name" >/dev/null 2>&1 || true
  done
  # then by pid file: QEMU still left (libvirt leaves it when libvirtd dies), the daemons.
  for f in "$RUN"/libvirt/qemu/*.pid "$RUN/sshd.pid" "$RUN/libvirtd.pid" "$RUN/virtlockd.pid" "$RUN/virtlogd.pid" "$DIR/holder.pid"; do
    pid=$(pidof_file "$f")
    if ours "$pid"; then
      kill "$pid" 2>/dev/null || true
      for _ in $(seq 50); do [ -e "/proc/$pid" ] || break; sleep 0.2; done
      [ -e "/proc/$pid" ] && kill -9 "$pid" 2>/dev/null || true
    fi
  done
  # anything else left in the netns was started there by us (ssh sessions).
  if [ -e "/run/netns/$NS" ]; then
    for pid in $(ip netns pids "$NS" 2>/dev/null); do
      log "killing leftover pid $pid ($(tr '\0' ' ' </proc/"$pid"/cmdline 2>/dev/null | cut -c1-60))"
      kill -9 "$pid" 2>/dev/null || true
    done
  fi
  # cgroups of domains killed above without libvirt (empty ones only).
  for name in $names; do
    case $name in -*) continue ;; esac
    find /sys/fs/cgroup -maxdepth 3 -type d -name "qemu-$name.libvirt-qemu" 2>/dev/null |
      while read -r d; do find "$d" -depth -type d -exec rmdir {} \; 2>/dev/null || true; done
  done
  ip link del "$HOST_IF" 2>/dev/null || true
  [ -e "/run/netns/$NS" ] && ip netns del "$NS"
  [ -e "$DIR/.hv2" ] && rm -rf "$DIR"
  log "down: $NS, $HOST_IF and $DIR removed"
}

case $cmd in
  up) up ;;
  check) check ;;
  probe) probe ;;
  uri) uri ;;
  down) down ;;
  *) usage ;;
esac
