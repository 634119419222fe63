//! Children that die with their parent: a lab or agent killed with SIGKILL runs no cleanup
//! code, so the kernel has to end its peers (`PR_SET_PDEATHSIG`).

use std::os::unix::process::CommandExt;
use std::process::Command;

/// Make the child started by `cmd` get SIGKILL when the thread that spawns it exits — spawn
/// from a thread that lives as long as the child should (ours spawn from the main thread).
/// Add it after any other `pre_exec` step: entering a user namespace clears the setting.
pub fn die_with_parent(cmd: &mut Command) {
    let parent = std::process::id() as libc::pid_t;
    // SAFETY: between fork and exec; prctl and getppid are async-signal-safe, nothing allocates.
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // The parent may have died before prctl: then no signal comes, so do not run.
            if libc::getppid() != parent {
                return Err(std::io::Error::from_raw_os_error(libc::ESRCH));
            }
            Ok(())
        });
    }
}
