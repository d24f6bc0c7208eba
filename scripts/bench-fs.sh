#!/bin/sh
# A fresh, RAM-backed ext4 file system for the benches (root only):
#   sudo scripts/bench-fs.sh [MOUNTPOINT] [SIZE]   then   TMPDIR=MOUNTPOINT cargo bench ...
# Why: on a shared virtual disk, whatever else writes makes checkouts of 100,000 files vary
# from 2 s to 15 s, and ext4 makes creating files slow for minutes after a mass deletion
# (see `settle` in benches/support). A new file system in RAM (loop device with direct I/O
# onto /dev/shm) keeps ext4's own cost in both figures, git's and arctl's, without either.
# Run it again to start from a fresh one: the old one is unmounted and its image removed.
set -eu
if [ "$(id -u)" != 0 ]; then
    echo "bench-fs.sh: must run as root (it uses losetup and mount)" >&2
    exit 2
fi
mnt=${1:-/mnt/arctl-bench}
size=${2:-12G}
img=/dev/shm/arctl-bench.img
if mountpoint -q "$mnt"; then
    dev=$(findmnt -n -o SOURCE "$mnt")
    umount "$mnt"
    losetup -d "$dev" 2>/dev/null || true
fi
rm -f "$img"
truncate -s "$size" "$img"
# One inode per 4 KiB: the worktree bench keeps ~1.7 million small files to its end.
mkfs.ext4 -q -F -i 4096 "$img"
dev=$(losetup --direct-io=on -f --show "$img")
mkdir -p "$mnt"
mount "$dev" "$mnt"
chmod 1777 "$mnt"
echo "TMPDIR=$mnt"
