#!/bin/sh
echo "app 1.0 with deps: $(ls /opt/deps | tr '\n' ' ')"
