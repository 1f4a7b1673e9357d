#!/bin/sh
# The CI gate of a rules repository (layout: README.md beside this file):
#   1. filterctl check --strict on every rules/*.toml: invalid files and
#      warnings both fail;
#   2. filterctl replay --expect replay.toml: the rules against the
#      repository's recorded attacks and baseline traffic (with --against,
#      the frames whose verdict the change moves are listed too).
# Both steps always run, so that one log shows everything wrong. Exit
# status 0 when both pass, 1 when either fails (what failed is listed
# last), 2 on a usage error.
#
# Usage: rules-gate.sh [--against OLD_RULES] [--expect FILE] [REPO]
#   REPO         the rules repository's root (default: the current folder)
#   --expect     the gate's file, relative to REPO (default: replay.toml)
#   --against    the rules before the change (the merge base's), to compare
#   FILTERCTL    environment: the filterctl to run (default: filterctl on
#                PATH); replay needs root or CAP_BPF, CAP_NET_ADMIN and
#                CAP_PERFMON
set -u

usage() {
    sed -n 's/^# \{0,1\}//; 12,18p' "$0"
}

filterctl=${FILTERCTL:-filterctl}
repo=.
expect=replay.toml
against=
while [ $# -gt 0 ]; do
    case $1 in
    --against | --expect)
        if [ $# -lt 2 ]; then
            echo "rules-gate: $1 needs a file" >&2
            exit 2
        fi
        if [ "$1" = --against ]; then against=$2; else expect=$2; fi
        shift 2
        ;;
    -h | --help)
        usage
        exit 0
        ;;
    -*)
        echo "rules-gate: unknown option $1 (see --help)" >&2
        exit 2
        ;;
    *)
        repo=$1
        shift
        ;;
    esac
done

if ! command -v "$filterctl" >/dev/null 2>&1; then
    echo "rules-gate: cannot run $filterctl: install filterctl or set FILTERCTL" >&2
    exit 1
fi

failed=
fail() {
    failed="$failed
  - $1"
}

# 1. Every rule file, warnings included: a warning is a likely mistake.
echo "== filterctl check --strict $repo/rules/*.toml"
set -- "$repo"/rules/*.toml
if [ ! -e "$1" ]; then
    fail "no rule files: $repo/rules/*.toml matches nothing"
elif ! "$filterctl" check --strict "$@"; then
    fail "filterctl check --strict: a rule file is invalid or has warnings (above)"
fi

# 2. The gate: replay's own paths (rules, captures) are relative to the
#    expect file, wherever this runs from.
echo
if [ ! -f "$repo/$expect" ]; then
    fail "no $repo/$expect: the gate needs it (see replay.toml beside rules-gate.sh)"
else
    set -- replay --expect "$repo/$expect"
    if [ -n "$against" ]; then
        set -- "$@" --against "$against"
    fi
    echo "== filterctl $*"
    "$filterctl" "$@"
    status=$?
    case $status in
    0) ;;
    3) fail "filterctl replay --expect $expect: the gate failed (failed checks above)" ;;
    *) fail "filterctl replay --expect $expect could not judge (exit status $status): see its error above" ;;
    esac
fi

echo
if [ -n "$failed" ]; then
    echo "rules-gate: FAILED:$failed"
    exit 1
fi
echo "rules-gate: passed"
