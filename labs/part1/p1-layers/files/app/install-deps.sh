#!/bin/sh
# Stands in for a slow package install: one directory per dependency.
set -e
while read -r name version; do
	[ -n "$name" ] || continue
	echo "installing $name $version"
	sleep 2
	mkdir -p "/opt/deps/$name" && echo "$version" > "/opt/deps/$name/VERSION"
done < "$1"
