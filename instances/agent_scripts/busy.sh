#!/bin/sh
# Keeps a CPU busy for --seconds N (default 2), then exits: load for stats.
s=2; [ "$1" = --seconds ] && s=$2
end=$(($(date +%s) + s))
while [ "$(date +%s)" -lt "$end" ]; do :; done
echo "busy for ${s}s"
