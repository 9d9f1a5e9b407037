# Pid files that can be trusted (sourced by hack/cluster.sh and hack/realnode.sh).
#
# A pid file outlives its process: after a crash, a reboot, or on a machine restored from a
# snapshot (which keeps the checkout and /run), the number in it may since have been given to
# another process, and `kill` would then stop something that is not ours. A process is the one a
# pid file names only if it still runs (not a zombie) and started no later than the file was
# written (the file is written just after the process starts; a process that reused the pid
# started after that).

# pid_file_alive FILE: 0 when the process FILE names is alive and is the one it was written for
pid_file_alive() {
  local file=$1 pid stat btime tck started written
  [ -f "$file" ] || return 1
  pid=$(cat "$file" 2>/dev/null) || return 1
  [[ $pid =~ ^[0-9]+$ ]] || return 1
  stat=$(cat "/proc/$pid/stat" 2>/dev/null) || return 1
  # fields after "pid (comm) ": state is the 1st, starttime (clock ticks after boot) the 20th
  # shellcheck disable=SC2086
  set -- ${stat##*) }
  [ "$1" != Z ] || return 1
  btime=$(awk '$1 == "btime" {print $2}' /proc/stat)
  tck=$(getconf CLK_TCK)
  started=$((btime + ${20} / tck))
  written=$(stat -c %Y "$file")
  # btime is whole seconds: allow two
  [ "$started" -le $((written + 2)) ]
}
