//! Process hardening for the processes that serve calls (`qvault serve` and
//! each `qvault rpc`), through nix's safe wrappers (no `unsafe` here): no core
//! dumps and not ptrace-attachable by the same user (non-dumpable), memory
//! locked where permitted, and a check that the vault really has no network.

use nix::sys::resource::{getrlimit, setrlimit, Resource, RLIM_INFINITY};

/// What both serving modes do before they touch a key: hardens the process
/// (warnings for what could not be applied go to the log) and refuses to
/// serve with a network interface up unless the operator allowed it.
pub fn prepare_to_serve(allow_network: bool) -> anyhow::Result<()> {
    for w in harden_process() {
        tracing::warn!("{w}");
    }
    let up = non_loopback_up();
    if !up.is_empty() {
        anyhow::ensure!(
            allow_network,
            "network interfaces are up ({}): a vault is meant to have no network; \
             give it no netvm, or pass --allow-network",
            up.join(", ")
        );
        tracing::warn!(interfaces = %up.join(","), "serving with network interfaces up (--allow-network)");
    }
    Ok(())
}

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
    // Under a finite RLIMIT_MEMLOCK (an exec-service call run as an ordinary
    // user), MCL_FUTURE would make every allocation past the limit fail, and
    // a failed allocation aborts: lock what is mapped now, and say so.
    let limited = !nix::unistd::geteuid().is_root()
        && getrlimit(Resource::RLIMIT_MEMLOCK).is_ok_and(|(soft, _)| soft != RLIM_INFINITY);
    let all = if limited {
        warnings.push("RLIMIT_MEMLOCK is finite: only memory mapped at start is locked".to_owned());
        MlockAllFlags::MCL_CURRENT
    } else {
        MlockAllFlags::MCL_CURRENT | MlockAllFlags::MCL_FUTURE
    };
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
