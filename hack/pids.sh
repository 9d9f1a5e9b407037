# Pid files that can be trusted (sourced by hack/cluster.sh and hack/realnode.sh).
#
# A pid file outlives its process: after a crash, a reboot, or on a machine restored from a
# snapshot (which keeps the checkout and /run), the number in it may since have been given to
# another process, and `kill` would then stop something that is not ours. A process is the one a
# pid file names only if it still runs (not a zombie) and is the very process it was written for:
# - `write_pid_file` records beside FILE (in FILE.start) the process's start time in clock ticks
#   after boot, as the kernel keeps it (/proc/PID/stat): a later process with the same number
#   started at another tick. No wall clock is involved, so a clock that jumps or drifts (a VM's,
#   corrected now and then) cannot make our own process look like a stranger;
# - a pid file written without it (by Python: the bench's and the tests' operators) is trusted
#   when the process started no later than the file was written (wall clock, 2 s of slack).

# start_ticks PID: the process's start time, in clock ticks after boot (empty if it is gone)
start_ticks() {
  local stat
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 0
  # fields after "pid (comm) ": state is the 1st, starttime the 20th
  # shellcheck disable=SC2086
  set -- ${stat##*) }
  echo "${20}"
}

# write_pid_file FILE PID: FILE names PID, FILE.start (written after it) its start time
write_pid_file() {
  echo "$2" >"$1"
  start_ticks "$2" >"$1.start"
}

# remove_pid_file FILE
remove_pid_file() { rm -f "$1" "$1.start"; }

# pid_file_alive FILE: 0 when the process FILE names is alive and is the one it was written for
pid_file_alive() {
  local file=$1 pid stat btime tck started written recorded
  [ -f "$file" ] || return 1
  pid=$(cat "$file" 2>/dev/null) || return 1
  [[ $pid =~ ^[0-9]+$ ]] || return 1
  stat=$(cat "/proc/$pid/stat" 2>/dev/null) || return 1
  # shellcheck disable=SC2086
  set -- ${stat##*) }
  [ "$1" != Z ] || return 1
  # FILE.start counts only when written with FILE or after it (not left by an earlier writer)
  if [ -f "$file.start" ] && [ ! "$file.start" -ot "$file" ]; then
    recorded=$(cat "$file.start" 2>/dev/null)
    [ -n "$recorded" ] && [ "$recorded" = "${20}" ]
    return
  fi
  btime=$(awk '$1 == "btime" {print $2}' /proc/stat)
  tck=$(getconf CLK_TCK)
  started=$((btime + ${20} / tck))
  written=$(stat -c %Y "$file")
  # btime is whole seconds: allow two
  [ "$started" -le $((written + 2)) ]
}
