#!/bin/sh
# Applies the lab's add-ons once the API server answers.
set -eu
export KUBECONFIG=/etc/kubernetes/admin.conf
for i in $(seq 1 120); do
	kubectl get --raw /readyz >/dev/null 2>&1 && break
	sleep 2
done
kubectl apply -f /etc/kubernetes/addons/
