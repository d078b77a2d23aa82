#!/bin/sh
# Exits with --code N (default 3) after writing to stderr.
code=3
while [ $# -gt 0 ]; do
  case "$1" in --code) code="$2"; shift 2 ;; *) shift ;; esac
done
echo "failing with exit code $code" >&2
exit "$code"
