# Written by labforge: the administrators' tools (getenforce, ovs-vsctl,
# ip) on every login shell's PATH, as on RHEL-like hosts.
case ":$PATH:" in
  *:/usr/sbin:*) ;;
  *) PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin" ;;
esac
export PATH
