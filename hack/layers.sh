#!/usr/bin/env bash
# Keeps the module layers of src/ one-way (issue 15): builds the import graph of the crate
# from its `use crate::…`, `crate::…`, `super::…` (and, in src/bin, `corten::…`) paths and
# from a directory module's plain paths into its own children, one node per file, then fails,
# printing the offending edges with the line that makes each, when
#   (a) files import each other in a cycle (a file's use of its own parent module, the
#       items a directory's mod.rs keeps for its files, is not counted as closing one), or
#   (b) an arrow goes from a lower layer to a higher one.
# The layers, top to bottom: 5 bin -> 4 commands -> 3 config (loading a bundle, which calls
# the validation of each concern) -> 2 spec concerns -> 1 plumbing. Every module needs a
# line in LAYERS below (a new file without one fails the check, so its layer is a decision
# someone makes). Arrows within a layer are fine as long as they make no cycle.
# Comments, strings and char literals are stripped before paths are read; `mod x { … }`
# blocks (tests) count as part of their file.
#
# Usage: hack/layers.sh [SRC_DIR] [-v]   (SRC_DIR defaults to this tree's src; -v also
# prints every edge). hack/test.sh runs it after clippy.
set -euo pipefail

src=${1:-"$(dirname "$0")/../src"}
verbose=${2:-}
if [[ $src == -v ]]; then
    src="$(dirname "$0")/../src" verbose=-v
fi
[[ -d $src ]] || {
    echo "layers: no such directory: $src" >&2
    exit 2
}

# Module (or module prefix: `init` covers init::*) and its layer; the longest match wins.
LAYERS='
5 bin             the two binaries: argument parsing, then one call into a command

4 runtime         one file per command (create, start, exec, ...)

3 config          loading a bundle: parses config.json, calls the validate of each concern

2 container       the state directory of a container and its state.json
2 criu            the CRIU RPC (criu swrk) for checkpoint and restore
2 cgroups         linux.resources and cgroupsPath, cgroupfs and systemd
2 hooks           the hooks of the spec, their state JSON and timeouts
2 seccomp         linux.seccomp: the filter and the listener socket
2 netdev          the loopback device and linux.netDevices
2 intelrdt        linux.intelRdt
2 sched           process.scheduler, ioPriority and execCPUAffinity
2 numa            linux.memoryPolicy
2 idmap           the binds made by create: id-mapped, and all in a user namespace
2 init            everything between clone() and execve() inside the container
2 image           corten-image: registries, the image store, unpacking, bundles
2 default_spec    the default config.json (corten spec, corten-image)
2 spec_version    the runtime-spec version corten implements

1 sys             raw syscalls and small kernel probes
1 sync            the parent/init message channel
1 safepath        paths resolved inside a root without following links out of it
1 console         the pty and the console socket
1 relay           relaying an attached terminal
1 wait            waiting for a child and forwarding signals to it
1 pid             a process as pid and start time
1 passwd          /etc/passwd and /etc/group entries (host, container, image)
1 error           the errors callers tell apart (no such container, not running, ...)
1 idrange         /proc/<pid>/uid_map and gid_map lines
1 idlist          the kernel list format for CPUs and nodes ("0-3,7")
1 log             the log file and its format
1 output          stdout that tolerates a closed pipe (out!, outln!)
1 args            CLI value types and checks shared by the binaries and the commands
1 selfprotect     keeps the corten binary unwritable from a container (CVE-2019-5736)
'

# Known upward edges allowed for now: "from to  why, and until when" per line. None today: hooks.rs no longer calls runtime::kill (start decides what a
# failing poststart does), which was the last one issue 15 named.
EXCEPTIONS='
'

find "$src" -name '*.rs' | LC_ALL=C sort | awk -v src="$src" -v layers="$LAYERS" \
    -v exceptions="$EXCEPTIONS" -v verbose="$verbose" '
function modname(f,    m) {
    m = substr(f, length(src) + 2)
    sub(/\.rs$/, "", m)
    if (m == "lib") return ""
    sub(/\/mod$/, "", m)
    gsub(/\//, "::", m)
    return m
}
function parent(m) {
    if (m !~ /::/) return ""
    sub(/::[^:]*$/, "", m)
    return m
}
# The file module a path (segments from the crate root, "::"-joined) lands in: the longest
# known prefix, or a #[macro_export] macro defined in some file; "" for the crate root.
function land(p,    q, n, s, k, i) {
    n = split(p, s, "::")
    for (k = n; k >= 1; k--) {
        q = s[1]
        for (i = 2; i <= k; i++) q = q "::" s[i]
        if (q in known) return q
    }
    if (s[1] in macro) return macro[s[1]]
    return ""
}
# Resolves path p seen in module cur (which may be an inline module) of file module fm.
function resolve(p, cur, fm, isbin,    s, n, base, i, rest) {
    gsub(/[ \t]/, "", p)
    sub(/::(self|\*)$/, "", p)
    n = split(p, s, "::")
    i = 1
    if (s[1] == "crate" || s[1] == "$crate") {
        if (isbin) return ""
        base = ""; i = 2
    } else if (s[1] == "corten" && isbin) {
        base = ""; i = 2
    } else if (s[1] == "self") {
        base = cur; i = 2
    } else if (s[1] == "super") {
        base = cur
        while (i <= n && s[i] == "super") { base = parent(base); i++ }
    } else if ((cur == "" ? s[1] : cur "::" s[1]) in known && !isbin) {
        base = cur
    } else return ""
    rest = ""
    for (; i <= n; i++) rest = rest (rest == "" ? "" : "::") s[i]
    if (base == "") return land(rest)
    return land(rest == "" ? base : base "::" rest)
}
function edge(from, to, where) {
    if (to == "" || to == from) return
    if (!((from, to) in seen)) { seen[from, to] = where; ne++; efrom[ne] = from; eto[ne] = to }
}
# Expands a use tree ("crate::a::{b, c::{d, e}}") and records an edge for each leaf.
function use_tree(t, cur, fm, isbin, where,    i, c, sp, pre, cp) {
    gsub(/[ \t]+as[ \t]+[A-Za-z0-9_]+/, "", t)
    gsub(/[ \t]/, "", t)
    sp = 0; pre[0] = ""; cp = ""
    for (i = 1; i <= length(t); i++) {
        c = substr(t, i, 1)
        if (c == "{") { sp++; pre[sp] = cp; }
        else if (c == ",") { if (cp != pre[sp]) edge(fm, resolve(cp, cur, fm, isbin), where); cp = pre[sp] }
        else if (c == "}") { if (cp != pre[sp]) edge(fm, resolve(cp, cur, fm, isbin), where); sp--; cp = pre[sp] }
        else cp = cp c
    }
    if (cp != pre[sp]) edge(fm, resolve(cp, cur, fm, isbin), where)
}
# Records an edge for every path expression (a::b::c) in code text t.
function exprs(t, cur, fm, isbin, where) {
    while (match(t, /[$]?[A-Za-z_][A-Za-z0-9_]*(::[A-Za-z_][A-Za-z0-9_]*)+/)) {
        edge(fm, resolve(substr(t, RSTART, RLENGTH), cur, fm, isbin), where)
        t = substr(t, RSTART + RLENGTH)
    }
}
function layer_of(m,    best, bl, p) {
    best = -1; bl = -1
    for (p in layer)
        if ((m == p || index(m, p "::") == 1) && length(p) > bl) { bl = length(p); best = layer[p] }
    return best
}
BEGIN {
    n = split(layers, l, "\n")
    for (i = 1; i <= n; i++) if (split(l[i], fl, " ") >= 2) layer[fl[2]] = fl[1]
    n = split(exceptions, l, "\n")
    for (i = 1; i <= n; i++) if (split(l[i], fl, " ") >= 2) allowed[fl[1], fl[2]] = 1
}
# The file list: remember the files and their modules, then read them (pass 1: strip
# comments/strings and track inline modules; pass 2: paths) file by file.
{
    nf++; file[nf] = $0; fmod[nf] = modname($0); known[fmod[nf]] = 1
}
END {
    # Pass 0: #[macro_export] macros are reached as crate::name!; find their files.
    for (k = 1; k <= nf; k++)
        while ((getline line < file[k]) > 0)
            if (line ~ /^[ \t]*macro_rules![ \t]*[A-Za-z_]/) {
                sub(/^[ \t]*macro_rules![ \t]*/, "", line); sub(/[^A-Za-z0-9_].*/, "", line)
                macro[line] = fmod[k]
            }
    for (k = 1; k <= nf; k++) {
        close(file[k])
        f = file[k]; fm = fmod[k]; isbin = (fm ~ /^bin::/)
        blk = 0; instr = 0; inraw = 0; depth = 0; sn = 0; cur = fm; pw = ""; pend = ""
        ubuf = ""; lineno = 0
        while ((getline line < f) > 0) {
            lineno++; out = ""; L = length(line); i = 1; linecur = cur
            while (i <= L) {
                c = substr(line, i, 1)
                if (blk > 0) {
                    if (substr(line, i, 2) == "*/") { blk--; i += 2 }
                    else if (substr(line, i, 2) == "/*") { blk++; i += 2 }
                    else i++
                    continue
                }
                if (instr) {
                    if (c == "\\") i += 2
                    else { if (c == "\"") { instr = 0; out = out "\"" } i++ }
                    continue
                }
                if (inraw) {
                    if (c == "\"" && substr(line, i + 1, hashes) == hs) { inraw = 0; out = out "\""; i += 1 + hashes }
                    else i++
                    continue
                }
                if (substr(line, i, 2) == "//") break
                if (substr(line, i, 2) == "/*") { blk = 1; i += 2; continue }
                if (c == "\"") { instr = 1; out = out "\""; i++; continue }
                if (c == "'\''") {
                    rest = substr(line, i + 1)
                    if (substr(rest, 1, 1) == "\\" && (match(rest, /^\\.'\''/) || match(rest, /^\\[^'\'']*'\''/))) { out = out "'\'''\''"; i += 1 + RLENGTH; continue }
                    if (match(rest, /^[^'\'']'\''/) || (substr(rest, 1, 1) > "~" && match(rest, /^[^'\'' ]+'\''/))) { out = out "'\'''\''"; i += 1 + RLENGTH; continue }
                    out = out c; i++; continue   # a lifetime
                }
                if (match(substr(line, i), /^[A-Za-z_][A-Za-z0-9_]*/)) {
                    w = substr(line, i, RLENGTH)
                    if (i > 1 && substr(line, i - 1, 1) ~ /[A-Za-z0-9_]/) { out = out w; i += RLENGTH; continue }
                    if ((w == "r" || w == "br") && substr(line, i + RLENGTH, 1) ~ /["#]/ && match(substr(line, i + length(w)), /^#*"/)) {
                        hashes = RLENGTH - 1; hs = substr(line, i + length(w), hashes)
                        inraw = 1; out = out "\""; i += length(w) + RLENGTH; continue
                    }
                    if (w == "b" && substr(line, i + 1, 1) == "\"") { instr = 1; out = out "\""; i += 2; continue }
                    if (pw == "mod") pend = w
                    pw = w; out = out w; i += length(w); continue
                }
                if (c == "{") {
                    depth++
                    if (pend != "") { sn++; sd[sn] = depth; sc[sn] = cur; cur = cur (cur == "" ? "" : "::") pend }
                    pend = ""
                } else if (c == "}") {
                    if (sn > 0 && sd[sn] == depth) { cur = sc[sn]; sn-- }
                    depth--
                } else if (c == ";") pend = ""
                if (c !~ /[ \t]/) pw = ""
                out = out c; i++
            }
            where = "src/" substr(f, length(src) + 2) ":" lineno
            # use statements (possibly over several lines) end at ";"
            if (ubuf != "") {
                j = index(out, ";")
                if (j == 0) { ubuf = ubuf " " out; continue }
                use_tree(ubuf " " substr(out, 1, j - 1), ucur, fm, isbin, uwhere)
                ubuf = ""; out = substr(out, j + 1)
            }
            while (match(out, /(^|[^A-Za-z0-9_])use[ \t]/)) {
                pre = substr(out, 1, RSTART); rest = substr(out, RSTART + RLENGTH)
                exprs(pre, linecur, fm, isbin, where)
                j = index(rest, ";")
                if (j == 0) { ubuf = rest; ucur = linecur; uwhere = where; out = ""; break }
                use_tree(substr(rest, 1, j - 1), linecur, fm, isbin, where)
                out = substr(rest, j + 1)
            }
            exprs(out, linecur, fm, isbin, where)
        }
        close(f)
    }

    # Layers of the nodes; every module needs one.
    bad = 0
    for (k = 1; k <= nf; k++) {
        if (fmod[k] == "") continue
        lay[fmod[k]] = layer_of(fmod[k])
        if (lay[fmod[k]] < 0) { print "layers: src/" substr(file[k], length(src) + 2) " (" fmod[k] ") has no layer: add it to LAYERS in hack/layers.sh"; bad = 1 }
    }
    # Reachability (Floyd-Warshall; a few dozen nodes) for the cycles.
    # A file using its own parent module (super::, the items a directory module mod.rs
    # holds for its files) is no cycle: the parent declares and calls its files.
    for (e = 1; e <= ne; e++) if (index(efrom[e], eto[e] "::") != 1) reach[efrom[e], eto[e]] = 1
    for (k = 1; k <= nf; k++) for (i = 1; i <= nf; i++) if ((fmod[i], fmod[k]) in reach)
        for (j = 1; j <= nf; j++) if ((fmod[k], fmod[j]) in reach) reach[fmod[i], fmod[j]] = 1
    ncyc = 0; nup = 0; nexc = 0
    for (i = 1; i <= nf; i++) {
        a = fmod[i]
        if (!((a, a) in reach) || (a in done)) continue
        ncyc++; members = ""
        for (j = 1; j <= nf; j++) { b = fmod[j]; if ((a, b) in reach && (b, a) in reach) { done[b] = 1; members = members " " b } }
        print "cycle" ncyc ":" members
        for (e = 1; e <= ne; e++)
            if (index(efrom[e], eto[e] "::") != 1 && (efrom[e], a) in reach && (a, efrom[e]) in reach && (eto[e], a) in reach && (a, eto[e]) in reach)
                print "    " efrom[e] " -> " eto[e] "   (" seen[efrom[e], eto[e]] ")"
    }
    for (e = 1; e <= ne; e++) {
        a = efrom[e]; b = eto[e]
        if (verbose != "") print "edge: " a " (" lay[a] ") -> " b " (" lay[b] ")   " seen[a, b]
        if (lay[b] > lay[a]) {
            if ((a, b) in allowed) { nexc++; print "upward edge (known exception): " a " (layer " lay[a] ") -> " b " (layer " lay[b] ")   " seen[a, b]; continue }
            nup++
            print "upward edge: " a " (layer " lay[a] ") -> " b " (layer " lay[b] ")   " seen[a, b]
        }
    }
    printf "layers: %d modules, %d edges, %d cycles, %d upward edges (%d known exceptions)\n", nf, ne, ncyc, nup, nexc
    if (ncyc || nup || bad) exit 1
}'
