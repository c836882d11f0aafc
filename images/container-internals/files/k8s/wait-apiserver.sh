#!/bin/sh
# ExecStartPost of kube-apiserver: the unit counts as started only once the
# API server answers /readyz, so the controller manager, scheduler, kubelet
# and kube-proxy (ordered After= it) do not crowd a starting API server.
# Under emulation (TCG) its start takes minutes, and clients that come too
# early time out, exit and restart, which starves it further. Gives up
# quietly after 15 minutes: the others then start anyway and retry.
for i in $(seq 180); do
	if curl -sfk --max-time 10 https://127.0.0.1:6443/readyz >/dev/null 2>&1; then
		echo "kube-apiserver ready after about $((i * 5))s"
		exit 0
	fi
	sleep 5
done
echo "kube-apiserver not ready after 15 minutes; starting its clients anyway"
