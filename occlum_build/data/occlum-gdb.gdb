# gdb commands of `occlum gdb` (occlum_build/runtime.py; docs/runtime.md "occlum gdb").
#
# gdb runs occlum-run, which performs the verified boot and starts the program in its sandbox
# (fresh mount, pid and user namespaces).  These commands make gdb follow that sandbox's
# first process, then the program, and come back to occlum-run at the next `run`:
#   1. occlum-run calls ocb_gdb_enter_sandbox() right before it clones the sandbox's init:
#      from there gdb follows the child of a fork (the init, then the program it forks) and
#      lets the parent go (detach-on-fork, gdb's default);
#   2. once the program has exec'd (the first exec after that), forks are followed in the
#      parent again, as gdb does by default, so the program's own children are not followed;
#   3. `run` goes back to occlum-run (inferior 1) first.
# occlum-run's own symbols are dropped, so `break main` means the program's main; breakpoints
# stay pending until the program is loaded.
set print inferior-events off
set breakpoint pending on
# Quietly: what follows only prints that occlum-run has no symbols and the two stops are pending.
set logging file /dev/null
set logging redirect on
set logging enabled on
symbol-file
break ocb_gdb_enter_sandbox
commands
  silent
  set follow-fork-mode child
  continue
end
catch exec
commands
  silent
  set follow-fork-mode parent
  continue
end
set logging enabled off
set logging redirect off
set logging file gdb.txt
define hook-run
  inferior 1
  set follow-fork-mode parent
end
