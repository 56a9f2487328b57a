#!/usr/bin/env bash
# Benchmark how each command's cost grows as the host fills up: at N live busybox
# `sleep 1000` containers per runtime (corten, runc, crun; each its own --root, all from
# the minimal `runc spec` config hack/mkbundle.sh writes), one more container, the probe,
# is timed: create+start, `state` of it, `list` (of the N and the probe) and `delete -f`,
# each in one hyperfine run with the three runtimes side by side. N grows through the
# levels given (default 0 50 100 200); every container is deleted at the end (also on
# failure or ^C). RUNS=30 by default; CORTEN=path skips the cargo build.
# Usage: hack/bench-scale.sh [N...]
# Like hack/bench.sh it runs in a private mount namespace (hack/bench-lib.sh).
set -euo pipefail
cd "$(dirname "$0")/.."

# shellcheck source=hack/bench-lib.sh
source hack/bench-lib.sh

levels=("$@")
((${#levels[@]})) || levels=(0 50 100 200)
prev=-1
for n in "${levels[@]}"; do
    [[ $n =~ ^[0-9]+$ ]] || die "N must be a number, not $n"
    ((n > prev)) || die "the levels must grow: $n after $prev"
    prev=$n
done

bench_enter_ns "$@"
[[ -x ${bin[corten]} ]] || die "no corten binary at ${bin[corten]}"

runtimes=(corten runc crun)
work=$(mktemp -d -t corten-bench-scale.XXXXXX)
live=0  # containers scale-NAME-1..live exist for every runtime (and maybe more, up to the last level)
cleanup() {
    local name i
    for name in "${runtimes[@]}"; do
        [[ -d $work/$name/state ]] || continue
        for ((i = 1; i <= ${levels[-1]}; i++)); do
            "${bin[$name]}" --root "$work/$name/state" delete -f "scale-$name-$i" >/dev/null 2>&1 || true
        done
        "${bin[$name]}" --root "$work/$name/state" delete -f "probe-$name" >/dev/null 2>&1 || true
    done
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

bench_versions

# The runtime NAME's command line: `ARGS...` with its binary and --root, shell-quoted.
rt() {
    local name=$1
    shift
    printf '%q --root %q' "${bin[$name]}" "$work/$name/state"
    printf ' %q' "$@"
}

for name in "${runtimes[@]}"; do
    mkdir -p "$work/$name/state"
    CORTEN='' hack/mkbundle.sh "$work/$name/bundle" sleep 1000 >/dev/null
done

# hyperfine WHAT N: the three runtimes side by side; the probe is removed (or made) in
# --prepare when the timed command needs it absent (or present). hyperfine -N runs every
# command line without a shell: those with && or || go through `sh -c`.
measure() {
    local what=$1 n=$2 name probe bundle up cmd args=()
    for name in "${runtimes[@]}"; do
        probe=probe-$name bundle=$work/$name/bundle
        up="$(rt "$name" create -b "$bundle" "$probe") && $(rt "$name" start "$probe")"
        case $what in
            create+start) args+=(--prepare "sh -c $(printf %q "$(rt "$name" delete -f "$probe") >/dev/null 2>&1 || true")")
                          cmd=$up ;;
            delete) args+=(--prepare "sh -c $(printf %q "$up")")
                    cmd=$(rt "$name" delete -f "$probe") ;;
            state) cmd=$(rt "$name" state "$probe") ;;
            list) cmd=$(rt "$name" list) ;;
        esac
        args+=(--command-name "$name" "sh -c $(printf %q "$cmd")")
    done
    hyperfine --warmup 3 --runs "${RUNS:-30}" -N --output null \
        --export-json "$work/$what-$n.json" "${args[@]}" >&2
    # state and list need the probe alive, delete needs it absent at its first prepare.
    for name in "${runtimes[@]}"; do
        sh -c "$(rt "$name" delete -f "probe-$name")" >/dev/null 2>&1 || true
    done
}

whats=(create+start state list delete)
for n in "${levels[@]}"; do
    for name in "${runtimes[@]}"; do
        echo "$name: $n live containers" >&2
        for ((i = live + 1; i <= n; i++)); do
            "${bin[$name]}" --root "$work/$name/state" run -d -b "$work/$name/bundle" \
                "scale-$name-$i" >/dev/null </dev/null || die "$name: run of container $i failed"
        done
    done
    live=$n
    for name in "${runtimes[@]}"; do
        count=$("${bin[$name]}" --root "$work/$name/state" list -q | wc -l)
        ((count == n)) || die "$name lists $count containers, not $n"
    done
    for what in "${whats[@]}"; do
        if [[ $what == state || $what == list ]]; then
            for name in "${runtimes[@]}"; do
                sh -c "$(rt "$name" create -b "$work/$name/bundle" "probe-$name") && $(rt "$name" start "probe-$name")" ||
                    die "$name: the probe did not start"
            done
        fi
        measure "$what" "$n"
    done
done

# One table: a row per command and N, the medians side by side, corten's ratio to crun.
echo
echo "busybox 'sleep 1000' containers, ${RUNS:-30} runs each; medians in ms at N live containers"
echo "(the probe is the N+1st: created+started, its state, list of all, its delete -f):"
echo
echo "| command | N | corten | crun | runc | corten/crun |"
echo "|---|---|---|---|---|---|"
for what in "${whats[@]}"; do
    for n in "${levels[@]}"; do
        jq -r --arg what "$what" --arg n "$n" '
            def ms: . * 1000 * 100 | round / 100;
            (.results | map({key: .command, value: .median}) | from_entries) as $m
            | "| \($what) | \($n) | \($m.corten | ms) | \($m.crun | ms) | \($m.runc | ms) | \($m.corten / $m.crun * 100 | round / 100)x |"
            ' "$work/$what-$n.json"
    done
done
