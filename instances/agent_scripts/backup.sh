#!/bin/sh
# A demonstration maintenance script: "backs up" the instance's config directory.
set -e
echo "backup started at $(date -u +%Y-%m-%dT%H:%M:%SZ)"
sleep 1
echo "backup complete"
