#!/bin/sh
# ExaBGP's helper process for filterctl: copies the FIFO filterctl serve
# writes into to standard output, which ExaBGP reads as API commands.
# Opening the FIFO read-write keeps it open between filterctl's writes, so
# cat never sees end-of-file.
set -eu
fifo=${FILTERCTL_EXABGP_FIFO:-/run/filterctl/exabgp.fifo}
mkdir -p "$(dirname "$fifo")"
[ -p "$fifo" ] || mkfifo -m 600 "$fifo"
exec cat 0<>"$fifo"
