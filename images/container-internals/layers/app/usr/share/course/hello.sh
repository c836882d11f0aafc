#!/bin/sh
# The layered image's program: it reads what the layers above it added.
echo "hello from the layered image"
cat /etc/course/motd 2>/dev/null
