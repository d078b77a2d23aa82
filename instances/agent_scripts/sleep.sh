#!/bin/sh
# Sleeps for --seconds N (default 30) in a child process, printing progress.
seconds=30
while [ $# -gt 0 ]; do
  case "$1" in --seconds) seconds="$2"; shift 2 ;; *) shift ;; esac
done
echo "sleeping ${seconds}s"
sleep "$seconds" &
wait
echo "woke up"
