#!/bin/sh
# Writes the node's address and name for the units that need them (clones differ only
# in name, but the address comes from the network the host boots on).
IP=$(ip -4 -o route get 1.1.1.1 2>/dev/null | sed -n 's/.* src \([0-9.]*\).*/\1/p')
[ -n "$IP" ] || IP=10.0.2.15
NAME=$(cat /etc/kubernetes/node-name 2>/dev/null || hostname)
printf 'NODE_IP=%s\nNODE_NAME=%s\n' "$IP" "$NAME" > /etc/kubernetes/node.env.new && mv /etc/kubernetes/node.env.new /etc/kubernetes/node.env
