#!/bin/sh
# Seal: remove what the build left, so every clone makes its own identity
# at first boot and no build secret ships in the image. Runs as root in the
# build guest, then powers it off.
set -eu
build_user="$1"
rm -f "$0"
# cloud-init's last stages may still run after SSH answers (a minute or more
# under TCG when the steps are quick): sealed meanwhile, it writes its
# instance state back after the clean below.
timeout 900 cloud-init status --wait >/dev/null 2>&1 || true
# Nothing may log after the logs are emptied: stop the loggers first.
systemctl stop systemd-journald.socket systemd-journald-dev-log.socket \
  systemd-journald-audit.socket systemd-journald.service 2>/dev/null || true
# auditd refuses a manual stop through systemd; it ends cleanly on TERM,
# writing a last record: wait until it is gone, before the logs are emptied.
if pkill -TERM -x auditd 2>/dev/null; then
  for _ in $(seq 60); do pgrep -x auditd >/dev/null || break; sleep 0.5; done
fi
# Daemons that write log files of their own (ovs-vswitchd) hold them open
# and would write on into the disk after the truncation below: stop every
# service with a file under /var/log open.
for unit in $(for fd in /proc/[0-9]*/fd/*; do
    case "$(readlink "$fd" 2>/dev/null)" in /var/log/*)
      pid=${fd#/proc/}; cat "/proc/${pid%%/*}/cgroup" 2>/dev/null ;;
    esac
  done | sed -n 's|^0::.*/\([^/]*\.service\)$|\1|p' | sort -u); do
  systemctl stop "$unit" 2>/dev/null || true
done
cloud-init clean --logs --seed || cloud-init clean --logs
rm -f /etc/ssh/ssh_host_*
: > /etc/machine-id
rm -f /var/lib/dbus/machine-id
rm -f /etc/sudoers.d/90-cloud-init-users
rm -rf /tmp/labforge
rm -f /etc/labforge/build-guest
rmdir /etc/labforge 2>/dev/null || true
apt-get clean 2>/dev/null || dnf clean all 2>/dev/null || true
rm -rf /var/lib/apt/lists/*
# Whatever steps left in the temporary directories (tmpfiles makes the
# standard ones again at each clone's first boot).
find /tmp /var/tmp -mindepth 1 -delete 2>/dev/null || true
find /var/log -type f -exec truncate -s 0 {} +
# utmp accounting appends a shutdown record to wtmp at poweroff, but never
# creates the file: removed, it stays empty; systemd-tmpfiles makes a fresh
# one at each clone's first boot.
rm -f /var/log/wtmp /var/log/btmp
rm -rf /var/log/journal/*
# From here on no log reaches the disk: a logger that systemd starts again
# during shutdown (socket activation brought journald back and it wrote a
# fresh journal into a sealed layer) now writes into a tmpfs that dies
# with the guest.
mount -t tmpfs -o mode=0755 labforge-seal /var/log
rm -f /root/.bash_history /home/*/.bash_history /root/.lesshst
# cloud-init writes root's authorized_keys (with a "log in as" prefix).
rm -rf /root/.ssh
# The build user's session is still open: -f removes it regardless.
userdel -f -r "$build_user" 2>/dev/null || userdel -f "$build_user"
fstrim -a 2>/dev/null || true
sync
systemctl poweroff --no-block
