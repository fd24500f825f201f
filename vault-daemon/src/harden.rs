//! Process hardening for `qvault serve`, through nix's safe wrappers (no
//! `unsafe` here): no core dumps and not ptrace-attachable by the same user
//! (non-dumpable), memory locked where permitted, and a check that the vault
//! really has no network.

use nix::sys::resource::{setrlimit, Resource};

/// Applies what can be applied; returns warnings for what could not.
pub fn harden_process() -> Vec<String> {
    let mut warnings = Vec::new();
    if let Err(e) = nix::sys::prctl::set_dumpable(false) {
        warnings.push(format!("cannot make the process non-dumpable: {e}"));
    }
    if let Err(e) = setrlimit(Resource::RLIMIT_CORE, 0, 0) {
        warnings.push(format!("cannot disable core files: {e}"));
    }
    use nix::sys::mman::{mlockall, MlockAllFlags};
    // MCL_ONFAULT (Linux 4.4): lock pages as they are touched rather than
    // populating every new mapping at once. Without it each thread's whole
    // 2 MiB stack and every malloc arena became resident and stayed so
    // (locked pages cannot be given back): the idle daemon grew from 15 to
    // 60 MiB after a load. Secrets are still never swapped out.
    let on_fault = MlockAllFlags::from_bits_retain(nix::libc::MCL_ONFAULT);
    let all = MlockAllFlags::MCL_CURRENT | MlockAllFlags::MCL_FUTURE;
    if let Err(e) = mlockall(all | on_fault).or_else(|_| mlockall(all)) {
        warnings.push(format!("cannot lock memory (mlockall: {e}); secrets could be swapped out"));
    }
    warnings
}

/// Network interfaces that are up and not loopback.
pub fn non_loopback_up() -> Vec<String> {
    use nix::net::if_::InterfaceFlags;
    let mut v: Vec<String> = match nix::ifaddrs::getifaddrs() {
        Ok(addrs) => addrs
            .filter(|a| a.flags.contains(InterfaceFlags::IFF_UP) && !a.flags.contains(InterfaceFlags::IFF_LOOPBACK))
            .map(|a| a.interface_name)
            .collect(),
        Err(_) => Vec::new(),
    };
    v.sort();
    v.dedup();
    v
}
