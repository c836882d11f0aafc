# Sourced by every setup, solution, reset and wrong-attempt script (bash,
# as root, with -e -u). LAB_ID, LAB_USER, LAB_HOME and LAB_DIR are set.

# as_student runs a command as the student, in the exercise's directory.
as_student() { (cd "$LAB_DIR" && runuser -u "$LAB_USER" -- "$@"); }

# lab_own gives files the script made in the student's directory to the student.
lab_own() { chown -R "$LAB_USER:$LAB_USER" "$@"; }

# write_file PATH writes standard input to PATH, owned by the student.
write_file() { install -d -o "$LAB_USER" -g "$LAB_USER" "$(dirname "$1")"; cat >"$1"; chown "$LAB_USER:$LAB_USER" "$1"; }

# wait_for SECONDS CMD... retries CMD every 2 s until it succeeds.
wait_for() {
	local t=$1; shift
	local end=$(( $(date +%s) + t ))
	until "$@"; do
		[ "$(date +%s)" -lt "$end" ] || { echo "timed out after ${t}s: $*" >&2; return 1; }
		sleep 2
	done
}

# kns NS makes a namespace if it is missing (idempotent setup).
kns() { kubectl get namespace "$1" >/dev/null 2>&1 || kubectl create namespace "$1" >/dev/null; }

# pod_ip NS SELECTOR prints the address of the first Running pod.
pod_ip() { kubectl -n "$1" get pods -l "$2" --field-selector=status.phase=Running -o jsonpath='{.items[0].status.podIP}'; }

# REG is the lab's registry; every image the course uses is there.
REG=localhost:5000

# kns_rm NS deletes a namespace and waits until it is gone. Its pods go at
# once (no grace period): the course's containers do not handle SIGTERM,
# and each would hold the deletion for its 30 s grace. A namespace being
# deleted takes no new pods, so nothing comes back in between.
kns_rm() {
	kubectl delete namespace "$1" --ignore-not-found --wait=false >/dev/null
	kubectl -n "$1" delete pods --all --grace-period=0 --force >/dev/null 2>&1 || true
	kubectl wait --for=delete "namespace/$1" --timeout=300s >/dev/null 2>&1 || ! kubectl get namespace "$1" >/dev/null 2>&1
}
