#!/bin/sh
# Prints its arguments (one per line) and the JSON it received on stdin.
echo "argc=$#"
for arg in "$@"; do printf 'arg=%s\n' "$arg"; done
printf 'stdin='
cat
echo
