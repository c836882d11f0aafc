#!/bin/sh
# Makes this host's cluster identity at first boot: a CA, the serving and
# client certificates of every daemon, the service-account key, and the
# kubeconfigs. Each clone makes its own, so no two hosts of a class share
# a key and the golden image holds none.
set -eu
PKI=/etc/kubernetes/pki
[ -f "$PKI/.done" ] && exit 0
# The node keeps the name of the host's first boot: a host restored from a
# warm state takes a new hostname, while its kubelet certificate, its Node
# object and its pods stay those of this name.
NODE=$(cat /etc/kubernetes/node-name 2>/dev/null || hostname)
IP=$(ip -4 -o route get 1.1.1.1 2>/dev/null | sed -n 's/.* src \([0-9.]*\).*/\1/p')
[ -n "$IP" ] || IP=10.0.2.15
umask 077
rm -rf "$PKI.new" && mkdir -p "$PKI.new" && cd "$PKI.new"

openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -days 3650 \
	-subj "/CN=kubernetes-ca" 2>/dev/null

# cert NAME CN [O] [SANS]
cert() {
	name=$1 cn=$2 org=${3:-} sans=${4:-}
	subj="/CN=$cn"
	[ -n "$org" ] && subj="/O=$org$subj"
	openssl req -newkey rsa:2048 -nodes -keyout "$name.key" -out "$name.csr" -subj "$subj" 2>/dev/null
	{
		echo "basicConstraints=CA:FALSE"
		echo "keyUsage=critical,digitalSignature,keyEncipherment"
		if [ -n "$sans" ]; then
			echo "extendedKeyUsage=serverAuth,clientAuth"
			echo "subjectAltName=$sans"
		else
			echo "extendedKeyUsage=clientAuth"
		fi
	} > "$name.ext"
	openssl x509 -req -in "$name.csr" -CA ca.crt -CAkey ca.key -CAcreateserial \
		-out "$name.crt" -days 3650 -extfile "$name.ext" 2>/dev/null
	rm -f "$name.csr" "$name.ext"
}

cert apiserver kube-apiserver "" "DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local,DNS:$NODE,DNS:localhost,IP:10.96.0.1,IP:127.0.0.1,IP:$IP"
cert apiserver-kubelet-client kube-apiserver-kubelet-client system:masters
cert admin kubernetes-admin system:masters
cert controller-manager system:kube-controller-manager
cert scheduler system:kube-scheduler
cert kube-proxy system:kube-proxy
cert kubelet "system:node:$NODE" system:nodes
cert kubelet-serving "$NODE" "" "DNS:$NODE,IP:$IP,IP:127.0.0.1"
openssl genrsa -out sa.key 2048 2>/dev/null
openssl rsa -in sa.key -pubout -out sa.pub 2>/dev/null
rm -f ca.srl

# kubeconfig NAME CERT
kubeconfig() {
	cat > "/etc/kubernetes/$1.conf.new" <<CONF
apiVersion: v1
kind: Config
clusters:
- name: labforge
  cluster:
    certificate-authority-data: $(base64 -w0 ca.crt)
    server: https://127.0.0.1:6443
users:
- name: $2
  user:
    client-certificate-data: $(base64 -w0 "$2.crt")
    client-key-data: $(base64 -w0 "$2.key")
contexts:
- name: $2@labforge
  context:
    cluster: labforge
    user: $2
current-context: $2@labforge
CONF
	mv "/etc/kubernetes/$1.conf.new" "/etc/kubernetes/$1.conf"
}
kubeconfig admin admin
kubeconfig controller-manager controller-manager
kubeconfig scheduler scheduler
kubeconfig kube-proxy kube-proxy
kubeconfig kubelet kubelet

echo "$NODE" > /etc/kubernetes/node-name.new && chmod 0644 /etc/kubernetes/node-name.new
mv /etc/kubernetes/node-name.new /etc/kubernetes/node-name
cd / && rm -rf "$PKI" && mv "$PKI.new" "$PKI"
restorecon -R /etc/kubernetes 2>/dev/null || true

# kubectl for root and for every user of the lab (uid 1000 and up).
install -d -m 0700 /root/.kube
install -m 0600 /etc/kubernetes/admin.conf /root/.kube/config
getent passwd | awk -F: '$3 >= 1000 && $3 < 60000 {print $1 ":" $6}' | while IFS=: read -r user home; do
	[ -d "$home" ] || continue
	install -d -m 0700 -o "$user" -g "$user" "$home/.kube"
	install -m 0600 -o "$user" -g "$user" /etc/kubernetes/admin.conf "$home/.kube/config"
	restorecon -R "$home/.kube" 2>/dev/null || true
done
touch "$PKI/.done"
